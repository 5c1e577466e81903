//! Stitching tiles into a frame as they arrive: each tile is placed at once, so the frame
//! is written the moment its last tile lands, and memory stays at one frame per frame in
//! progress.
//!
//! Pure and in memory. Two blends:
//!
//! - **crop**: a tile's overscan is cut away and its inner rectangle copied, pixel for
//!   pixel, in the file's own pixel type: stitching a deterministic renderer's tiles gives
//!   the bytes of the untiled frame.
//! - **feather**: each tile is weighted by a ramp that runs across `2 × overscan` pixels
//!   centred on each inner edge shared with a neighbour (weight 1 elsewhere, and at the
//!   image border). The two ramps over an edge add up to exactly 1 at every pixel, and
//!   separably so at corners, so the weighted sum needs no normalisation and can be
//!   accumulated tile by tile in any order. A pixel covered by one tile only keeps its value
//!   exactly.
//!
//! The seam metric used to test feathering is [`seam_step`].

use crate::core::problem::ValueError;
use image::{DynamicImage, ImageBuffer, Rgb};

use crate::core::job::Blend;
use crate::core::tiles::Tile;

/// The pixel type of a frame's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelKind {
    /// 8-bit PNG.
    U8,
    /// 16-bit PNG.
    U16,
    /// 32-bit float EXR.
    F32,
}

impl PixelKind {
    /// The kind of the files of `format` at `depth` bits per channel.
    pub fn of_format(format: crate::core::job::ImageFormat, depth: u8) -> PixelKind {
        match (format, depth) {
            (crate::core::job::ImageFormat::Exr, _) => PixelKind::F32,
            (_, 16) => PixelKind::U16,
            _ => PixelKind::U8,
        }
    }

    /// The kind of a decoded image (alpha is dropped when stitching).
    pub fn of(image: &DynamicImage) -> PixelKind {
        match image {
            DynamicImage::ImageRgb16(_) | DynamicImage::ImageRgba16(_) => PixelKind::U16,
            DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_) => PixelKind::F32,
            _ => PixelKind::U8,
        }
    }
}

enum Pixels {
    U8(Vec<u8>),
    U16(Vec<u16>),
    /// Feather accumulation, or float frames.
    F32(Vec<f32>),
}

/// The memory a `width`×`height` canvas of `kind` takes with `blend` (feathering
/// accumulates in floats): three channels, alpha dropped.
pub fn canvas_bytes(width: u32, height: u32, kind: PixelKind, blend: Blend) -> u64 {
    let sample = match (blend, kind) {
        (Blend::Crop, PixelKind::U8) => 1,
        (Blend::Crop, PixelKind::U16) => 2,
        _ => 4,
    };
    u64::from(width) * u64::from(height) * 3 * sample
}

/// A frame being stitched.
pub struct Canvas {
    width: u32,
    height: u32,
    kind: PixelKind,
    blend: Blend,
    overscan: u32,
    pixels: Pixels,
    placed: Vec<bool>,
}

impl Canvas {
    /// An empty `width`×`height` frame of `tiles` tiles, stored as `kind`.
    pub fn new(
        width: u32,
        height: u32,
        kind: PixelKind,
        blend: Blend,
        overscan: u32,
        tiles: usize,
    ) -> Canvas {
        let len = width as usize * height as usize * 3;
        let pixels = match (blend, kind) {
            (Blend::Crop, PixelKind::U8) => Pixels::U8(vec![0; len]),
            (Blend::Crop, PixelKind::U16) => Pixels::U16(vec![0; len]),
            _ => Pixels::F32(vec![0.0; len]),
        };
        Canvas {
            width,
            height,
            kind,
            blend,
            overscan,
            pixels,
            placed: vec![false; tiles],
        }
    }

    /// The memory its pixels take (see [`canvas_bytes`]).
    pub fn bytes(&self) -> u64 {
        canvas_bytes(self.width, self.height, self.kind, self.blend)
    }

    /// Whether tile `slot` (its position in the frame's group) is in.
    pub fn has(&self, slot: usize) -> bool {
        self.placed.get(slot).copied().unwrap_or(false)
    }

    /// Whether every tile is in.
    pub fn complete(&self) -> bool {
        self.placed.iter().all(|p| *p)
    }

    /// Places tile `slot`, whose rendered rectangle (`tile.render`) is `part`. Placing the
    /// same slot twice does nothing.
    pub fn place(
        &mut self,
        slot: usize,
        tile: &Tile,
        part: &DynamicImage,
    ) -> Result<(), ValueError> {
        if slot >= self.placed.len() {
            return Err(ValueError::from(format!(
                "tile slot {slot} is outside the frame's {} tiles",
                self.placed.len()
            )));
        }
        if self.placed[slot] {
            return Ok(());
        }
        let r = tile.render;
        if (part.width(), part.height()) != (r.width, r.height) {
            return Err(ValueError::from(format!(
                "tile is {}x{}, expected {}x{}",
                part.width(),
                part.height(),
                r.width,
                r.height
            )));
        }
        if r.right() > self.width || r.bottom() > self.height || !r.contains(tile.inner) {
            return Err(ValueError::from(format!(
                "tile {r:?} does not fit the {}x{} frame",
                self.width, self.height
            )));
        }
        if PixelKind::of(part) != self.kind {
            return Err(ValueError::from(format!(
                "tile is {:?}, the frame's other tiles are {:?}",
                PixelKind::of(part),
                self.kind
            )));
        }
        let width = self.width as usize;
        match (&mut self.pixels, self.blend) {
            (Pixels::U8(frame), Blend::Crop) => {
                let src = part.to_rgb8();
                copy_inner(frame, width, tile, src.as_raw());
            }
            (Pixels::U16(frame), Blend::Crop) => {
                let src = part.to_rgb16();
                copy_inner(frame, width, tile, src.as_raw());
            }
            (Pixels::F32(frame), Blend::Crop) => {
                let src = part.to_rgb32f();
                copy_inner(frame, width, tile, src.as_raw());
            }
            (Pixels::F32(frame), Blend::Feather) => {
                let values: Vec<f32> = match self.kind {
                    PixelKind::U8 => part
                        .to_rgb8()
                        .into_raw()
                        .into_iter()
                        .map(f32::from)
                        .collect(),
                    PixelKind::U16 => part
                        .to_rgb16()
                        .into_raw()
                        .into_iter()
                        .map(f32::from)
                        .collect(),
                    PixelKind::F32 => part.to_rgb32f().into_raw(),
                };
                let wx: Vec<f32> = (r.x..r.right())
                    .map(|x| {
                        ramp(
                            x,
                            tile.inner.x,
                            tile.inner.right(),
                            self.width,
                            self.overscan,
                        )
                    })
                    .collect();
                for y in r.y..r.bottom() {
                    let wy = ramp(
                        y,
                        tile.inner.y,
                        tile.inner.bottom(),
                        self.height,
                        self.overscan,
                    );
                    if wy == 0.0 {
                        continue;
                    }
                    let row = (y - r.y) as usize * r.width as usize * 3;
                    let dst = (y as usize * width + r.x as usize) * 3;
                    for (i, w) in wx.iter().enumerate() {
                        let w = w * wy;
                        if w == 0.0 {
                            continue;
                        }
                        for c in 0..3 {
                            let v = values[row + i * 3 + c];
                            // Weight 1 copies exactly (no rounding through a multiply-add).
                            let cell = &mut frame[dst + i * 3 + c];
                            *cell = if w == 1.0 { v } else { *cell + v * w };
                        }
                    }
                }
            }
            _ => return Err(ValueError::from("the canvas does not match its blend")),
        }
        self.placed[slot] = true;
        Ok(())
    }

    /// The finished frame, in its file's pixel type.
    pub fn finish(self) -> DynamicImage {
        let (w, h) = (self.width, self.height);
        match self.pixels {
            Pixels::U8(v) => {
                DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, v).expect("sized"))
            }
            Pixels::U16(v) => {
                DynamicImage::ImageRgb16(ImageBuffer::from_raw(w, h, v).expect("sized"))
            }
            Pixels::F32(v) => match self.kind {
                PixelKind::F32 => {
                    DynamicImage::ImageRgb32F(ImageBuffer::from_raw(w, h, v).expect("sized"))
                }
                PixelKind::U8 => {
                    let v = v
                        .into_iter()
                        .map(|x| x.round().clamp(0.0, 255.0) as u8)
                        .collect();
                    DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, v).expect("sized"))
                }
                PixelKind::U16 => {
                    let v = v
                        .into_iter()
                        .map(|x| x.round().clamp(0.0, 65535.0) as u16)
                        .collect();
                    DynamicImage::ImageRgb16(ImageBuffer::from_raw(w, h, v).expect("sized"))
                }
            },
        }
    }

    /// The frame so far, shrunk to at most `max_side` pixels a side (8-bit sRGB, for a
    /// preview; float frames are shown through the sRGB curve).
    pub fn preview(&self, max_side: u32) -> DynamicImage {
        let step = self.width.max(self.height).div_ceil(max_side.max(1)).max(1);
        let (pw, ph) = (self.width.div_ceil(step), self.height.div_ceil(step));
        let width = self.width as usize;
        let mut out: ImageBuffer<Rgb<u8>, Vec<u8>> = ImageBuffer::new(pw, ph);
        for (px, py, pixel) in out.enumerate_pixels_mut() {
            let i = ((py * step) as usize * width + (px * step) as usize) * 3;
            let value = |c: usize| -> u8 {
                match &self.pixels {
                    Pixels::U8(v) => v[i + c],
                    Pixels::U16(v) => (v[i + c] >> 8) as u8,
                    Pixels::F32(v) => match self.kind {
                        PixelKind::U8 => v[i + c].round().clamp(0.0, 255.0) as u8,
                        PixelKind::U16 => (v[i + c] / 257.0).round().clamp(0.0, 255.0) as u8,
                        PixelKind::F32 => {
                            (crate::core::raster::linear_to_srgb(v[i + c]) * 255.0 + 0.5) as u8
                        }
                    },
                }
            };
            *pixel = Rgb([value(0), value(1), value(2)]);
        }
        DynamicImage::ImageRgb8(out)
    }
}

/// Copies the inner rectangle of a tile (`src` holds its rendered rectangle) into `frame`.
fn copy_inner<T: Copy>(frame: &mut [T], width: usize, tile: &Tile, src: &[T]) {
    let (inner, render) = (tile.inner, tile.render);
    let row_len = inner.width as usize * 3;
    for y in inner.y..inner.bottom() {
        let s = (((y - render.y) * render.width + (inner.x - render.x)) * 3) as usize;
        let d = (y as usize * width + inner.x as usize) * 3;
        frame[d..d + row_len].copy_from_slice(&src[s..s + row_len]);
    }
}

/// Feather weight along one axis at pixel `p` of a tile whose inner span is
/// `[start, end)` in an image `len` long: a ramp across `[edge - o, edge + o)` at each
/// inner edge shared with a neighbour, 1 elsewhere inside, 0 outside the ramps.
pub fn ramp(p: u32, start: u32, end: u32, len: u32, o: u32) -> f32 {
    let (p, start, end, o) = (
        f64::from(p) + 0.5,
        f64::from(start),
        f64::from(end),
        f64::from(o),
    );
    let mut w = 1.0f64;
    if start > 0.0 {
        w = w.min(((p - (start - o)) / (2.0 * o)).clamp(0.0, 1.0));
    }
    if end < f64::from(len) {
        w = w.min((((end + o) - p) / (2.0 * o)).clamp(0.0, 1.0));
    }
    w as f32
}

/// The seam metric: the worst, over the inner edges between tiles, of the mean absolute
/// difference between the step across the edge in `stitched` and the step across it in
/// `reference` (both single-channel rows of `width`). A stitch that adds no seam scores
/// near 0; a crop of tiles whose levels differ by `d` scores `d`.
pub fn seam_step(
    stitched: &[f32],
    reference: &[f32],
    width: usize,
    edges_x: &[usize],
    edges_y: &[usize],
) -> f32 {
    let height = stitched.len() / width;
    let mut worst = 0f32;
    for &x in edges_x {
        let sum: f32 = (0..height)
            .map(|y| {
                let i = y * width + x;
                ((stitched[i] - stitched[i - 1]) - (reference[i] - reference[i - 1])).abs()
            })
            .sum();
        worst = worst.max(sum / height as f32);
    }
    for &y in edges_y {
        let sum: f32 = (0..width)
            .map(|x| {
                let i = y * width + x;
                ((stitched[i] - stitched[i - width]) - (reference[i] - reference[i - width])).abs()
            })
            .sum();
        worst = worst.max(sum / width as f32);
    }
    worst
}

/// Where tile inner edges fall inside an image (not at its border).
pub fn inner_edges(tiles: &[Tile]) -> (Vec<usize>, Vec<usize>) {
    let mut xs: Vec<usize> = tiles
        .iter()
        .filter(|t| t.inner.x > 0)
        .map(|t| t.inner.x as usize)
        .collect();
    let mut ys: Vec<usize> = tiles
        .iter()
        .filter(|t| t.inner.y > 0)
        .map(|t| t.inner.y as usize)
        .collect();
    xs.sort_unstable();
    xs.dedup();
    ys.sort_unstable();
    ys.dedup();
    (xs, ys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::job::Tiles;
    use crate::core::tiles;

    /// A smooth 8-bit test image with fine detail.
    fn reference(w: u32, h: u32) -> ImageBuffer<Rgb<u8>, Vec<u8>> {
        ImageBuffer::from_fn(w, h, |x, y| {
            let v = |k: u32| ((x * k + y * 3 + (x * y) % 7) % 200) as u8 + 20;
            Rgb([v(1), v(2), v(5)])
        })
    }

    fn stitch(
        w: u32,
        h: u32,
        grid: Tiles,
        tile_image: impl Fn(&Tile) -> DynamicImage,
    ) -> DynamicImage {
        let all: Vec<Tile> = tiles::all(&grid, w, h).collect();
        let mut canvas = Canvas::new(w, h, PixelKind::U8, grid.blend, grid.overscan, all.len());
        // Out of order, as tiles land on a farm.
        for slot in (0..all.len())
            .rev()
            .step_by(2)
            .chain((0..all.len()).rev().skip(1).step_by(2))
        {
            canvas
                .place(slot, &all[slot], &tile_image(&all[slot]))
                .unwrap();
            canvas
                .place(slot, &all[slot], &tile_image(&all[slot]))
                .unwrap();
        }
        assert!(canvas.complete());
        canvas.finish()
    }

    fn grid(columns: u32, rows: u32, overscan: u32, blend: Blend) -> Tiles {
        Tiles {
            columns,
            rows,
            overscan,
            blend,
        }
    }

    #[test]
    fn crop_and_feather_of_exact_tiles_give_the_frame_back() {
        for (w, h, c, r, o, blend) in [
            (101, 77, 7, 5, 0, Blend::Crop),
            (101, 77, 7, 5, 3, Blend::Crop),
            (101, 77, 7, 5, 3, Blend::Feather),
            (64, 64, 1, 1, 4, Blend::Feather),
            (30, 20, 3, 2, 5, Blend::Feather),
        ] {
            let full = DynamicImage::ImageRgb8(reference(w, h));
            let out = stitch(w, h, grid(c, r, o, blend), |t| {
                full.crop_imm(t.render.x, t.render.y, t.render.width, t.render.height)
            });
            assert_eq!(out, full, "{w}x{h} in {c}x{r}, overscan {o}, {blend:?}");
        }
    }

    #[test]
    fn feather_weights_add_up_to_one() {
        let (len, o) = (100u32, 6u32);
        let spans = [(0, 33), (33, 66), (66, 100)];
        for p in 0..len {
            let total: f32 = spans
                .iter()
                .filter(|(s, e)| p + o >= *s && p < e + o)
                .map(|(s, e)| ramp(p, *s, *e, len, o))
                .sum();
            assert!((total - 1.0).abs() < 1e-6, "pixel {p}: {total}");
        }
    }

    #[test]
    fn feather_hides_a_seam_that_crop_shows() {
        // Tiles whose levels differ (as with renderers whose noise differs tile to tile).
        let (w, h, o) = (120u32, 80u32, 8u32);
        let full = reference(w, h);
        let offset = |t: &Tile| {
            if (t.column + t.row).is_multiple_of(2) {
                6i16
            } else {
                -6
            }
        };
        let shifted = |t: &Tile| {
            let part = DynamicImage::ImageRgb8(full.clone())
                .crop_imm(t.render.x, t.render.y, t.render.width, t.render.height)
                .to_rgb8();
            let d = offset(t);
            DynamicImage::ImageRgb8(ImageBuffer::from_fn(part.width(), part.height(), |x, y| {
                Rgb(part
                    .get_pixel(x, y)
                    .0
                    .map(|v| (i16::from(v) + d).clamp(0, 255) as u8))
            }))
        };
        let luma = |img: &DynamicImage| -> Vec<f32> {
            img.to_rgb8().pixels().map(|p| f32::from(p.0[0])).collect()
        };
        let all: Vec<Tile> = tiles::all(&grid(4, 3, o, Blend::Crop), w, h).collect();
        let (ex, ey) = inner_edges(&all);
        let reference = luma(&DynamicImage::ImageRgb8(full.clone()));
        let crop = luma(&stitch(w, h, grid(4, 3, o, Blend::Crop), shifted));
        let feather = luma(&stitch(w, h, grid(4, 3, o, Blend::Feather), shifted));
        let crop_seam = seam_step(&crop, &reference, w as usize, &ex, &ey);
        let feather_seam = seam_step(&feather, &reference, w as usize, &ex, &ey);
        // Crop shows the whole 12-level step; feather spreads it over 2 x 8 pixels, under
        // one 8-bit level per pixel.
        assert!(crop_seam >= 11.0, "crop seam {crop_seam}");
        assert!(feather_seam <= 1.0, "feather seam {feather_seam}");
    }

    #[test]
    fn tiles_that_do_not_fit_are_refused() {
        let g = grid(2, 1, 0, Blend::Crop);
        let all: Vec<Tile> = tiles::all(&g, 10, 4).collect();
        let mut canvas = Canvas::new(10, 4, PixelKind::U8, Blend::Crop, 0, 2);
        let wrong = DynamicImage::ImageRgb8(ImageBuffer::new(4, 4));
        assert!(
            canvas
                .place(0, &all[0], &wrong)
                .unwrap_err()
                .message()
                .contains("expected 5x4")
        );
        let float = DynamicImage::ImageRgb32F(ImageBuffer::new(5, 4));
        assert!(canvas.place(0, &all[0], &float).is_err());
        assert!(canvas.place(7, &all[0], &wrong).is_err());
        assert!(!canvas.has(0) && !canvas.has(1));
    }

    #[test]
    fn preview_shrinks_the_frame() {
        let mut canvas = Canvas::new(3000, 1000, PixelKind::U8, Blend::Crop, 0, 1);
        let tile = tiles::all(&grid(1, 1, 0, Blend::Crop), 3000, 1000)
            .next()
            .unwrap();
        let white =
            DynamicImage::ImageRgb8(ImageBuffer::from_pixel(3000, 1000, Rgb([255, 255, 255])));
        canvas.place(0, &tile, &white).unwrap();
        let p = canvas.preview(1024);
        assert!(p.width() <= 1024 && p.height() <= 1024);
        assert_eq!(p.to_rgb8().get_pixel(10, 10).0, [255, 255, 255]);
    }
}
