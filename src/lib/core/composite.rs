//! Compositing a frame's layers in float: each layer in turn, with an operation (`over`,
//! `add`, `multiply`, `screen`), an opacity and an exposure, onto what the layers before
//! it made (the first onto transparent black).
//!
//! Pixels are linear-light RGBA with premultiplied alpha, as renderers write EXR. A
//! layer's exposure scales its colour by 2^exposure, then its opacity scales colour and
//! alpha. With `L` the layer so scaled, `o` its opacity and `B` what is below:
//!
//! | op | colour | alpha |
//! | --- | --- | --- |
//! | `over` | L + B·(1 − L.a) | L.a + B.a·(1 − L.a) |
//! | `add` | B + L | L.a + B.a·(1 − L.a) |
//! | `multiply` | B·(1 − o) + B·L′·o | B.a |
//! | `screen` | B + L − B·L | L.a + B.a·(1 − L.a) |
//!
//! where `L′` is the layer's colour with exposure but before opacity: `multiply` blends
//! toward the product, `o` of the way. `add` keeps alpha a union (light passes of one
//! render, each opaque, add up to the beauty with alpha 1, not 3). Pure: the collector
//! decodes the layers ([`to_linear`]), calls [`composite`] and encodes the result
//! ([`encode`]).

use image::{DynamicImage, ImageBuffer, Rgba, Rgba32FImage};

use crate::core::job::ImageFormat;
use crate::core::raster::{self, ImageError};

/// A stored frame as linear, premultiplied RGBA: an EXR as it is (opaque without alpha);
/// a PNG's colour through the inverse sRGB curve, its alpha multiplied in.
pub fn to_linear(image: DynamicImage, format: ImageFormat) -> Rgba32FImage {
    let mut out = image.into_rgba32f();
    if format == ImageFormat::Png {
        for pixel in out.pixels_mut() {
            let [r, g, b, a] = pixel.0;
            let linear = |v: f32| raster::srgb_to_linear(v) * a;
            pixel.0 = [linear(r), linear(g), linear(b), a];
        }
    }
    out
}

/// `image` (linear, premultiplied) as a file: an RGBA float EXR, or a PNG of `depth` 8 or
/// 16 bits with straight alpha and sRGB colour.
pub fn encode(image: &Rgba32FImage, format: ImageFormat, depth: u8) -> Result<Vec<u8>, ImageError> {
    let straight = |p: &Rgba<f32>| {
        let [r, g, b, a] = p.0;
        let colour = |v: f32| match a > 0.0 {
            true => raster::linear_to_srgb(v / a),
            false => 0.0,
        };
        [colour(r), colour(g), colour(b), a.clamp(0.0, 1.0)]
    };
    let (width, height) = image.dimensions();
    let file = match format {
        ImageFormat::Exr => DynamicImage::ImageRgba32F(image.clone()),
        ImageFormat::Png if depth == 16 => {
            let flat = image
                .pixels()
                .flat_map(straight)
                .map(|v| (v * 65535.0 + 0.5) as u16);
            let buffer = ImageBuffer::from_raw(width, height, flat.collect());
            DynamicImage::ImageRgba16(buffer.ok_or(ImageError::Size)?)
        }
        ImageFormat::Png => {
            let flat = image
                .pixels()
                .flat_map(straight)
                .map(|v| (v * 255.0 + 0.5) as u8);
            let buffer = ImageBuffer::from_raw(width, height, flat.collect());
            DynamicImage::ImageRgba8(buffer.ok_or(ImageError::Size)?)
        }
    };
    raster::encode_image(&file, format)
}

/// How a layer combines with what is below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The layer in front, covering by its alpha.
    Over,
    /// Colours summed (light passes).
    Add,
    /// Colours multiplied (shadow and occlusion passes).
    Multiply,
    /// The inverse of multiplying the inverses (glows).
    Screen,
}

impl Op {
    /// Every operation, as a job names it.
    pub const NAMES: [&'static str; 4] = ["over", "add", "multiply", "screen"];

    /// The operation a job names, or an error that lists the ones there are.
    pub fn parse(text: &str) -> Result<Op, String> {
        match text {
            "over" => Ok(Op::Over),
            "add" => Ok(Op::Add),
            "multiply" => Ok(Op::Multiply),
            "screen" => Ok(Op::Screen),
            other => Err(format!(
                "{other:?} is not a compositing operation: use one of {}",
                Op::NAMES.join(", ")
            )),
        }
    }
}

/// One layer's part in a composite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// How it combines with what is below.
    pub op: Op,
    /// 0 (no effect) to 1 (full).
    pub opacity: f32,
    /// Stops: the layer's colour is scaled by 2^exposure.
    pub exposure: f32,
}

impl Step {
    /// `op` at full opacity and no exposure change.
    pub fn plain(op: Op) -> Step {
        Step {
            op,
            opacity: 1.0,
            exposure: 0.0,
        }
    }
}

/// Why layers could not be composited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompositeError {
    /// No layer to composite.
    #[error("a composite needs at least one layer")]
    Empty,
    /// A layer's size differs from the first's.
    #[error("layer {index} is {got_width}x{got_height}, the first is {width}x{height}")]
    Size {
        /// The layer's place in the composite.
        index: usize,
        /// The first layer's width.
        width: u32,
        /// The first layer's height.
        height: u32,
        /// This layer's width.
        got_width: u32,
        /// This layer's height.
        got_height: u32,
    },
}

/// `layers` composited in order, each by its step, the first onto transparent black.
pub fn composite(layers: &[(&Rgba32FImage, Step)]) -> Result<Rgba32FImage, CompositeError> {
    let Some(((first, _), _)) = layers.split_first() else {
        return Err(CompositeError::Empty);
    };
    let (width, height) = first.dimensions();
    let mut out = Rgba32FImage::new(width, height);
    for (index, (layer, step)) in layers.iter().enumerate() {
        if layer.dimensions() != (width, height) {
            return Err(CompositeError::Size {
                index,
                width,
                height,
                got_width: layer.width(),
                got_height: layer.height(),
            });
        }
        let gain = step.exposure.exp2();
        let opacity = step.opacity.clamp(0.0, 1.0);
        for (below, above) in out.pixels_mut().zip(layer.pixels()) {
            below.0 = combine(below.0, above.0, step.op, gain, opacity);
        }
    }
    Ok(out)
}

/// One pixel of `layer` combined onto `below` (see the table in this module's docs).
fn combine(below: [f32; 4], layer: [f32; 4], op: Op, gain: f32, opacity: f32) -> [f32; 4] {
    let exposed = [layer[0] * gain, layer[1] * gain, layer[2] * gain];
    let l = [
        exposed[0] * opacity,
        exposed[1] * opacity,
        exposed[2] * opacity,
        layer[3] * opacity,
    ];
    let union = l[3] + below[3] * (1.0 - l[3]);
    let mut out = [0.0; 4];
    for c in 0..3 {
        let b = below[c];
        out[c] = match op {
            Op::Over => l[c] + b * (1.0 - l[3]),
            Op::Add => b + l[c],
            Op::Multiply => b * (1.0 - opacity) + b * exposed[c] * opacity,
            Op::Screen => b + l[c] - b * l[c],
        };
    }
    out[3] = match op {
        Op::Multiply => below[3],
        _ => union,
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(pixel: [f32; 4]) -> Rgba32FImage {
        Rgba32FImage::from_pixel(2, 1, image::Rgba(pixel))
    }

    fn close(a: [f32; 4], b: [f32; 4]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn each_operation_on_known_pixels() {
        let grey = [0.5, 0.5, 0.5, 1.0];
        let half_red = [0.5, 0.0, 0.0, 0.5]; // premultiplied: red at half coverage
        let step = |op, opacity, exposure| Step {
            op,
            opacity,
            exposure,
        };
        // (below, layer, step, expected)
        let cases = [
            (
                grey,
                half_red,
                Step::plain(Op::Over),
                [0.75, 0.25, 0.25, 1.0],
            ),
            (
                grey,
                half_red,
                step(Op::Over, 0.5, 0.0),
                [0.625, 0.375, 0.375, 1.0],
            ),
            (
                [0.0; 4],
                half_red,
                step(Op::Over, 1.0, 1.0),
                [1.0, 0.0, 0.0, 0.5],
            ),
            (grey, grey, Step::plain(Op::Add), [1.0, 1.0, 1.0, 1.0]),
            (grey, grey, step(Op::Add, 0.5, 0.0), [0.75, 0.75, 0.75, 1.0]),
            (
                grey,
                grey,
                step(Op::Add, 1.0, -1.0),
                [0.75, 0.75, 0.75, 1.0],
            ),
            (
                grey,
                grey,
                Step::plain(Op::Multiply),
                [0.25, 0.25, 0.25, 1.0],
            ),
            (
                grey,
                grey,
                step(Op::Multiply, 0.5, 0.0),
                [0.375, 0.375, 0.375, 1.0],
            ),
            (grey, grey, Step::plain(Op::Screen), [0.75, 0.75, 0.75, 1.0]),
            (grey, [0.0, 0.0, 0.0, 0.0], Step::plain(Op::Over), grey),
            (grey, half_red, step(Op::Over, 0.0, 3.0), grey),
        ];
        for (below, layer, step, expected) in cases {
            let out = composite(&[(&flat(below), Step::plain(Op::Over)), (&flat(layer), step)])
                .expect("same sizes");
            let got = out.get_pixel(1, 0).0;
            assert!(
                close(got, expected),
                "{layer:?} {step:?} onto {below:?}: {got:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn light_passes_added_make_the_beauty() {
        let passes = [
            [0.1, 0.2, 0.3, 1.0],
            [0.25, 0.05, 0.0, 1.0],
            [0.4, 0.5, 0.6, 1.0],
        ];
        let images: Vec<Rgba32FImage> = passes.iter().map(|&p| flat(p)).collect();
        let layers: Vec<_> = images.iter().map(|i| (i, Step::plain(Op::Add))).collect();
        let out = composite(&layers).expect("same sizes");
        assert!(close(out.get_pixel(0, 0).0, [0.75, 0.75, 0.9, 1.0]));
    }

    #[test]
    fn png_layers_are_composited_in_linear_light_and_written_back_in_srgb() {
        // Mid-grey in sRGB (188) is about 0.5 in linear light; two of them added make
        // white, and 0.5 linear alone comes back as 188.
        let grey = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(2, 1, image::Rgb([188; 3])));
        let layer = to_linear(grey, ImageFormat::Png);
        assert!(
            (layer.get_pixel(0, 0).0[0] - 0.5).abs() < 0.01,
            "{:?}",
            layer.get_pixel(0, 0)
        );
        assert_eq!(layer.get_pixel(0, 0).0[3], 1.0);
        let again = raster::decode(&encode(&layer, ImageFormat::Png, 8).unwrap()).unwrap();
        assert_eq!(again.to_rgba8().get_pixel(1, 0).0, [188, 188, 188, 255]);
        let sum = composite(&[
            (&layer, Step::plain(Op::Add)),
            (&layer, Step::plain(Op::Add)),
        ]);
        let white = raster::decode(&encode(&sum.unwrap(), ImageFormat::Png, 16).unwrap());
        assert_eq!(white.unwrap().to_rgba16().get_pixel(0, 0).0, [65535; 4]);
        // EXR keeps the floats, alpha included.
        let exr = encode(&flat([2.0, 0.25, 0.0, 0.5]), ImageFormat::Exr, 32).unwrap();
        let back = to_linear(raster::decode(&exr).unwrap(), ImageFormat::Exr);
        assert_eq!(back.get_pixel(0, 0).0, [2.0, 0.25, 0.0, 0.5]);
    }

    #[test]
    fn layers_must_match_and_be_there() {
        assert_eq!(composite(&[]), Err(CompositeError::Empty));
        let small = Rgba32FImage::new(1, 1);
        let wide = Rgba32FImage::new(2, 1);
        let error = composite(&[
            (&wide, Step::plain(Op::Over)),
            (&small, Step::plain(Op::Add)),
        ])
        .expect_err("sizes differ");
        assert_eq!(error.to_string(), "layer 1 is 1x1, the first is 2x1");
        assert_eq!(Op::parse("add"), Ok(Op::Add));
        assert!(
            Op::parse("plus")
                .unwrap_err()
                .contains("over, add, multiply, screen")
        );
    }
}
