//! A job's sequence outputs that need nothing installed: the animated preview (an animated
//! PNG, played by every browser) and the contact sheet (every frame small, in order, its
//! number under it). Both are built one frame at a time, so a sequence of any length holds
//! one frame in memory at once. Pure; the movie (through ffmpeg) is the collector's.

use image::{Rgb, RgbImage};

/// Widest a contact sheet's cell is, in pixels.
pub const CELL_WIDTH: u32 = 192;

/// Most cells in one row of a contact sheet.
pub const MAX_COLUMNS: u32 = 10;

/// Pixels between cells and around the sheet.
const GAP: u32 = 6;

/// Digits are drawn from a 3×5 pixel font at this scale.
const DIGIT_SCALE: u32 = 2;

/// The band under each thumbnail that holds its number.
const LABEL: u32 = 5 * DIGIT_SCALE + 6;

/// The sheet's background and the numbers' colour.
const BACKGROUND: Rgb<u8> = Rgb([24, 24, 24]);
const INK: Rgb<u8> = Rgb([235, 235, 235]);

/// Rows of each digit's 3×5 glyph, three bits each (the highest is the left pixel).
const GLYPHS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b001, 0b001, 0b001],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// Where a contact sheet's frames go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SheetLayout {
    /// Cells per row.
    pub columns: u32,
    /// Rows of cells.
    pub rows: u32,
    /// A thumbnail's size.
    pub thumb: (u32, u32),
}

impl SheetLayout {
    /// The layout of `frames` frames of `width`×`height`: about as many columns as rows,
    /// at most [`MAX_COLUMNS`], thumbnails at most [`CELL_WIDTH`] wide.
    pub fn new(frames: u32, width: u32, height: u32) -> SheetLayout {
        let frames = frames.max(1);
        let columns = ((frames as f64).sqrt().ceil() as u32).clamp(1, MAX_COLUMNS);
        let rows = frames.div_ceil(columns);
        let thumb = crate::core::post::fit_width(width, height, CELL_WIDTH);
        SheetLayout {
            columns,
            rows,
            thumb,
        }
    }

    /// The sheet's size in pixels.
    pub fn size(&self) -> (u32, u32) {
        let (w, h) = self.thumb;
        (
            GAP + self.columns * (w + GAP),
            GAP + self.rows * (h + LABEL + GAP),
        )
    }

    /// The top-left corner of cell `i` (frames in order, row by row).
    pub fn cell(&self, i: u32) -> (u32, u32) {
        let (w, h) = self.thumb;
        let (column, row) = (i % self.columns, i / self.columns);
        (GAP + column * (w + GAP), GAP + row * (h + LABEL + GAP))
    }
}

/// A contact sheet being filled.
pub struct Sheet {
    layout: SheetLayout,
    image: RgbImage,
}

impl Sheet {
    /// An empty sheet for `layout`.
    pub fn new(layout: SheetLayout) -> Sheet {
        let (w, h) = layout.size();
        Sheet {
            layout,
            image: RgbImage::from_pixel(w, h, BACKGROUND),
        }
    }

    /// Places the `i`-th frame (`frame`, its thumbnail `thumb`) and its number.
    pub fn place(&mut self, i: u32, frame: u32, thumb: &RgbImage) {
        let (x, y) = self.layout.cell(i);
        image::imageops::replace(&mut self.image, thumb, i64::from(x), i64::from(y));
        let digits = frame.to_string();
        let text_width = digits.len() as u32 * 4 * DIGIT_SCALE - DIGIT_SCALE;
        let left = x + self.layout.thumb.0.saturating_sub(text_width) / 2;
        let top = y + self.layout.thumb.1 + 3;
        for (n, digit) in digits.bytes().enumerate() {
            let glyph = GLYPHS[usize::from(digit - b'0')];
            let origin = left + n as u32 * 4 * DIGIT_SCALE;
            draw_glyph(&mut self.image, glyph, origin, top);
        }
    }

    /// The finished sheet.
    pub fn finish(self) -> RgbImage {
        self.image
    }
}

fn draw_glyph(image: &mut RgbImage, glyph: [u8; 5], left: u32, top: u32) {
    for (row, bits) in glyph.iter().enumerate() {
        for column in 0..3u32 {
            if bits & (0b100 >> column) == 0 {
                continue;
            }
            for dy in 0..DIGIT_SCALE {
                for dx in 0..DIGIT_SCALE {
                    let (px, py) = (
                        left + column * DIGIT_SCALE + dx,
                        top + row as u32 * DIGIT_SCALE + dy,
                    );
                    if px < image.width() && py < image.height() {
                        image.put_pixel(px, py, INK);
                    }
                }
            }
        }
    }
}

/// The digits a sheet shows under the cell at (`x`, `y`) of `layout`, read back from
/// `image`: what a person reads there. For tests, and to check a sheet end to end.
pub fn read_label(image: &RgbImage, layout: &SheetLayout, i: u32) -> String {
    let (x, y) = layout.cell(i);
    let top = y + layout.thumb.1 + 3;
    let inked = |px: u32, py: u32| {
        px < image.width() && py < image.height() && image.get_pixel(px, py) == &INK
    };
    let mut text = String::new();
    // Digits sit centred; scan the band from the cell's left for glyph starts.
    let mut px = x;
    while px < x + layout.thumb.0 {
        let column_inked = (0..5).any(|row| inked(px, top + row * DIGIT_SCALE));
        if !column_inked {
            px += 1;
            continue;
        }
        let glyph: [u8; 5] = std::array::from_fn(|row| {
            (0..3u32).fold(0u8, |bits, column| {
                let on = inked(px + column * DIGIT_SCALE, top + row as u32 * DIGIT_SCALE);
                bits | (u8::from(on) << (2 - column))
            })
        });
        match GLYPHS.iter().position(|g| *g == glyph) {
            Some(d) => text.push(char::from(b'0' + d as u8)),
            None => text.push('?'),
        }
        px += 4 * DIGIT_SCALE;
    }
    text
}

/// An animated PNG being written: frames of one size, each shown for `1/fps` s, looping.
pub struct Animation {
    writer: png::Writer<Buffer>,
    buffer: Buffer,
    size: (u32, u32),
}

/// The file an [`Animation`] is written into, kept by it too (png's writer never gives
/// its writer back).
#[derive(Clone, Default)]
struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut file = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The delay of one frame at `fps` frames a second, as a fraction png can hold.
pub fn frame_delay(fps: f64) -> (u16, u16) {
    // Whole frames a second are exact; others to the millisecond.
    if fps.fract() == 0.0 && fps >= 1.0 && fps <= f64::from(u16::MAX) {
        return (1, fps as u16);
    }
    (
        (1000.0 / fps).round().clamp(1.0, f64::from(u16::MAX)) as u16,
        1000,
    )
}

impl Animation {
    /// An animation of `frames` frames of `width`×`height` at `fps`.
    pub fn new(
        frames: u32,
        width: u32,
        height: u32,
        fps: f64,
    ) -> Result<Animation, png::EncodingError> {
        let buffer = Buffer::default();
        let mut encoder = png::Encoder::new(buffer.clone(), width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        encoder.set_animated(frames.max(1), 0)?;
        let (num, den) = frame_delay(fps);
        encoder.set_frame_delay(num, den)?;
        Ok(Animation {
            writer: encoder.write_header()?,
            buffer,
            size: (width, height),
        })
    }

    /// Adds the next frame (of the animation's size).
    pub fn push(&mut self, frame: &RgbImage) -> Result<(), png::EncodingError> {
        debug_assert_eq!(frame.dimensions(), self.size);
        self.writer.write_image_data(frame.as_raw())
    }

    /// The file.
    pub fn finish(self) -> Result<Vec<u8>, png::EncodingError> {
        self.writer.finish()?;
        let mut file = self
            .buffer
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(std::mem::take(&mut *file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sheet_is_about_square_and_capped_in_width() {
        for (frames, size, columns, rows, thumb) in [
            (1, (640, 360), 1, 1, (192, 108)),
            (24, (640, 360), 5, 5, (192, 108)),
            (25, (100, 50), 5, 5, (100, 50)),
            (1000, (1920, 1080), 10, 100, (192, 108)),
        ] {
            let layout = SheetLayout::new(frames, size.0, size.1);
            assert_eq!(
                (layout.columns, layout.rows, layout.thumb),
                (columns, rows, thumb),
                "{frames} frames"
            );
        }
        let layout = SheetLayout::new(24, 640, 360);
        assert_eq!(layout.cell(0), (GAP, GAP));
        assert_eq!(layout.cell(6), (GAP + 192 + GAP, GAP + 108 + LABEL + GAP));
        let (w, h) = layout.size();
        assert_eq!(
            (w, h),
            (GAP + 5 * (192 + GAP), GAP + 5 * (108 + LABEL + GAP))
        );
    }

    #[test]
    fn each_cell_shows_its_frame_and_its_number() {
        let layout = SheetLayout::new(3, 40, 20);
        let mut sheet = Sheet::new(layout);
        let frames = [7, 120, 4096];
        for (i, frame) in frames.iter().enumerate() {
            let shade = 50 * (i as u8 + 1);
            sheet.place(
                i as u32,
                *frame,
                &RgbImage::from_pixel(40, 20, Rgb([shade, 0, 0])),
            );
        }
        let image = sheet.finish();
        for (i, frame) in frames.iter().enumerate() {
            let (x, y) = layout.cell(i as u32);
            assert_eq!(image.get_pixel(x + 5, y + 5).0, [50 * (i as u8 + 1), 0, 0]);
            assert_eq!(read_label(&image, &layout, i as u32), frame.to_string());
        }
    }

    #[test]
    fn an_animation_holds_every_frame_at_its_rate() {
        let mut animation = Animation::new(3, 8, 4, 24.0).unwrap();
        for v in [0u8, 100, 200] {
            animation
                .push(&RgbImage::from_pixel(8, 4, Rgb([v, v, v])))
                .unwrap();
        }
        let bytes = animation.finish().unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        let control = reader.info().animation_control.unwrap();
        assert_eq!((control.num_frames, control.num_plays), (3, 0));
        let frame = reader.info().frame_control.unwrap();
        assert_eq!((frame.delay_num, frame.delay_den), (1, 24));
        assert_eq!(frame_delay(23.976), (42, 1000));
    }
}
