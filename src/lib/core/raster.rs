//! Float RGB images: what renderers produce and the collector assembles, and their encoding
//! to PNG (8- or 16-bit, sRGB) and EXR (32-bit float, linear).
//!
//! Pure and in memory. Encoding one pixel depends on that pixel alone, so a crop of an
//! encoded image equals the encoding of the crop: tiles stitched from their files are
//! bit-identical to the image rendered whole.

use std::io::Cursor;

use image::{DynamicImage, ImageBuffer, ImageFormat as FileFormat, Rgb, Rgb32FImage};

use crate::core::job::ImageFormat;
use crate::core::tiles::Rect;

/// A linear-light RGB float image.
#[derive(Debug, Clone, PartialEq)]
pub struct Raster {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major RGB triples.
    pub pixels: Vec<[f32; 3]>,
}

impl Raster {
    /// A black image.
    pub fn new(width: u32, height: u32) -> Raster {
        Raster {
            width,
            height,
            pixels: vec![[0.0; 3]; width as usize * height as usize],
        }
    }

    /// The pixel at (`x`, `y`).
    pub fn get(&self, x: u32, y: u32) -> [f32; 3] {
        self.pixels[y as usize * self.width as usize + x as usize]
    }

    /// The part of the image inside `rect` (relative to this image).
    pub fn crop(&self, rect: Rect) -> Raster {
        let mut out = Raster::new(rect.width, rect.height);
        for y in 0..rect.height {
            let src = (rect.y + y) as usize * self.width as usize + rect.x as usize;
            let dst = y as usize * rect.width as usize;
            out.pixels[dst..dst + rect.width as usize]
                .copy_from_slice(&self.pixels[src..src + rect.width as usize]);
        }
        out
    }
}

/// Linear to sRGB transfer, clamped to [0, 1].
pub fn linear_to_srgb(v: f32) -> f32 {
    let v = v.clamp(0.0, 1.0);
    if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

/// sRGB to linear transfer (the inverse of [`linear_to_srgb`] on [0, 1]).
pub fn srgb_to_linear(v: f32) -> f32 {
    let v = v.clamp(0.0, 1.0);
    if v <= 0.040_45 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// How PNG values are stored: colour through the sRGB curve, data (normals, depth,
/// occlusion) as is. EXR is always linear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// sRGB-encoded colour.
    Srgb,
    /// Linear values, clamped to [0, 1].
    Linear,
}

impl Transfer {
    fn apply(self, v: f32) -> f32 {
        match self {
            Transfer::Srgb => linear_to_srgb(v),
            Transfer::Linear => v.clamp(0.0, 1.0),
        }
    }
}

/// Why an image could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The raster's size does not match its pixels (a bug, never input).
    #[error("raster size does not match its pixels")]
    Size,
    /// The encoder failed.
    #[error("encoding {format:?}: {message}")]
    Encode {
        /// The format asked for.
        format: ImageFormat,
        /// What the encoder said.
        message: String,
    },
    /// The bytes are not an image this build reads.
    #[error("{0}")]
    Decode(String),
}

/// Encodes `raster` as PNG (`depth` 8 or 16, sRGB) or EXR (linear float).
pub fn encode(raster: &Raster, format: ImageFormat, depth: u8) -> Result<Vec<u8>, ImageError> {
    encode_with(raster, format, depth, Transfer::Srgb)
}

/// Encodes `raster` as PNG (`depth` 8 or 16, through `transfer`) or EXR (linear float).
pub fn encode_with(
    raster: &Raster,
    format: ImageFormat,
    depth: u8,
    transfer: Transfer,
) -> Result<Vec<u8>, ImageError> {
    let size = ImageError::Size;
    let (w, h) = (raster.width, raster.height);
    let image = match format {
        ImageFormat::Exr => {
            let flat: Vec<f32> = raster.pixels.iter().flatten().copied().collect();
            let buffer: Rgb32FImage = ImageBuffer::from_raw(w, h, flat).ok_or(size)?;
            DynamicImage::ImageRgb32F(buffer)
        }
        ImageFormat::Png if depth == 16 => {
            let flat: Vec<u16> = raster
                .pixels
                .iter()
                .flatten()
                .map(|&v| (transfer.apply(v) * 65535.0 + 0.5) as u16)
                .collect();
            let buffer: ImageBuffer<Rgb<u16>, Vec<u16>> =
                ImageBuffer::from_raw(w, h, flat).ok_or(size)?;
            DynamicImage::ImageRgb16(buffer)
        }
        ImageFormat::Png => {
            let flat: Vec<u8> = raster
                .pixels
                .iter()
                .flatten()
                .map(|&v| (transfer.apply(v) * 255.0 + 0.5) as u8)
                .collect();
            let buffer: ImageBuffer<Rgb<u8>, Vec<u8>> =
                ImageBuffer::from_raw(w, h, flat).ok_or(size)?;
            DynamicImage::ImageRgb8(buffer)
        }
    };
    encode_image(&image, format)
}

/// Writes an image already in its file's pixel type as PNG (fast compression: this is on
/// the path from a render to a stored frame) or EXR.
pub fn encode_image(image: &DynamicImage, format: ImageFormat) -> Result<Vec<u8>, ImageError> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut out = Cursor::new(Vec::new());
    let result = match format {
        ImageFormat::Exr => image.write_to(&mut out, FileFormat::OpenExr),
        ImageFormat::Png => image.write_with_encoder(PngEncoder::new_with_quality(
            &mut out,
            CompressionType::Fast,
            FilterType::Adaptive,
        )),
    };
    result.map_err(|e| ImageError::Encode {
        format,
        message: e.to_string(),
    })?;
    Ok(out.into_inner())
}

/// Decodes a PNG or EXR file that must be `width`×`height`: the header is read first, so
/// a file declaring any other size (65,535² pixels, say) is refused before anything is
/// allocated for it, and the decoder may allocate no more than such an image needs.
pub fn decode_sized(bytes: &[u8], width: u32, height: u32) -> Result<DynamicImage, ImageError> {
    let reader = || {
        image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ImageError::Decode(e.to_string()))
    };
    let format = reader()?
        .format()
        .ok_or_else(|| ImageError::Decode("not a PNG or EXR file".into()))?;
    let (w, h) = reader()?
        .into_dimensions()
        .map_err(|e| ImageError::Decode(format!("{format:?}: {e}")))?;
    if (w, h) != (width, height) {
        return Err(ImageError::Decode(format!(
            "the {format:?} image is {w}x{h} pixels, not {width}x{height}"
        )));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // Four channels of 32-bit float, twice over for the decoder's own buffers.
    limits.max_alloc = Some(u64::from(width) * u64::from(height) * 32 + (1 << 20));
    let mut reader = reader()?;
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| ImageError::Decode(format!("{format:?}: {e}")))
}

/// Checks, from its header only, that `bytes` is an image of `format`, `width`×`height`, and
/// for PNG of `depth` bits per channel: what a renderer's output must be before it is
/// uploaded. The error says what is wrong.
pub fn check_header(
    bytes: &[u8],
    format: ImageFormat,
    width: u32,
    height: u32,
    depth: u8,
) -> Result<(), String> {
    use image::ImageDecoder as _;
    if bytes.is_empty() {
        return Err("is empty (0 bytes)".into());
    }
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let found = match reader.format() {
        Some(FileFormat::Png) => ImageFormat::Png,
        Some(FileFormat::OpenExr) => ImageFormat::Exr,
        Some(other) => return Err(format!("is {other:?}, not {}", format.extension())),
        None => return Err(format!("is not an image (expected {})", format.extension())),
    };
    if found != format {
        return Err(format!(
            "is {}, not {}",
            found.extension(),
            format.extension()
        ));
    }
    let decoder = reader
        .into_decoder()
        .map_err(|e| format!("is not a readable {}: {e}", format.extension()))?;
    let (w, h) = decoder.dimensions();
    if (w, h) != (width, height) {
        return Err(format!("is {w}x{h} pixels, not {width}x{height}"));
    }
    if format == ImageFormat::Png {
        let bits =
            decoder.color_type().bits_per_pixel() / u16::from(decoder.color_type().channel_count());
        if bits != u16::from(depth) {
            return Err(format!("has {bits} bits per channel, not {depth}"));
        }
    }
    Ok(())
}

/// Decodes a PNG or EXR file (no size limit: frames may be 16K).
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, ImageError> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    reader.no_limits();
    reader
        .decode()
        .map_err(|e| ImageError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient() -> Raster {
        let mut r = Raster::new(7, 5);
        for (i, p) in r.pixels.iter_mut().enumerate() {
            *p = [i as f32 / 35.0, 0.5, 2.0];
        }
        r
    }

    /// PNG's CRC-32 (ISO 3309), bit by bit.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_sized_decode_refuses_other_sizes_before_allocating() {
        let png = encode(&gradient(), ImageFormat::Png, 8).unwrap();
        assert_eq!(decode_sized(&png, 7, 5).unwrap().width(), 7);
        let err = decode_sized(&png, 8, 5).unwrap_err().to_string();
        assert!(err.contains("is 7x5 pixels, not 8x5"), "{err}");
        // A header declaring 65,535² pixels over a few bytes of data (with a valid CRC).
        let mut huge = png.clone();
        huge[16..24].copy_from_slice(&[0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff]);
        let crc = crc32(&huge[12..29]).to_be_bytes();
        huge[29..33].copy_from_slice(&crc);
        let err = decode_sized(&huge, 7, 5).unwrap_err().to_string();
        assert!(err.contains("is 65535x65535 pixels, not 7x5"), "{err}");
        let err = decode_sized(b"not an image", 7, 5).unwrap_err().to_string();
        assert!(err.contains("not a PNG or EXR"), "{err}");
    }

    #[test]
    fn headers_are_checked_for_format_size_and_depth() {
        let png8 = encode(&gradient(), ImageFormat::Png, 8).unwrap();
        let png16 = encode(&gradient(), ImageFormat::Png, 16).unwrap();
        let exr = encode(&gradient(), ImageFormat::Exr, 32).unwrap();
        assert_eq!(check_header(&png8, ImageFormat::Png, 7, 5, 8), Ok(()));
        assert_eq!(check_header(&png16, ImageFormat::Png, 7, 5, 16), Ok(()));
        assert_eq!(check_header(&exr, ImageFormat::Exr, 7, 5, 32), Ok(()));
        for (bytes, format, w, depth, says) in [
            (&b""[..], ImageFormat::Png, 7, 8, "is empty"),
            (&b"hello"[..], ImageFormat::Png, 7, 8, "is not an image"),
            (&png8[..20], ImageFormat::Png, 7, 8, "not a readable png"),
            (&png8[..], ImageFormat::Exr, 7, 32, "is png, not exr"),
            (&png8[..], ImageFormat::Png, 8, 8, "is 7x5 pixels, not 8x5"),
            (
                &png8[..],
                ImageFormat::Png,
                7,
                16,
                "has 8 bits per channel, not 16",
            ),
        ] {
            let err = check_header(bytes, format, w, 5, depth).unwrap_err();
            assert!(err.contains(says), "{says}: {err}");
        }
    }

    #[test]
    fn encodes_and_decodes_each_format() {
        let r = gradient();
        let png8 = decode(&encode(&r, ImageFormat::Png, 8).unwrap()).unwrap();
        assert_eq!(png8.color(), image::ColorType::Rgb8);
        assert_eq!((png8.width(), png8.height()), (7, 5));
        let png16 = decode(&encode(&r, ImageFormat::Png, 16).unwrap()).unwrap();
        assert_eq!(png16.color(), image::ColorType::Rgb16);
        let exr = decode(&encode(&r, ImageFormat::Exr, 32).unwrap()).unwrap();
        let exr = exr.to_rgb32f();
        assert_eq!(
            exr.get_pixel(6, 4).0,
            r.get(6, 4),
            "EXR keeps floats exactly"
        );
    }

    #[test]
    fn crops() {
        let r = gradient();
        let c = r.crop(Rect {
            x: 2,
            y: 1,
            width: 3,
            height: 2,
        });
        assert_eq!(c.get(0, 0), r.get(2, 1));
        assert_eq!(c.get(2, 1), r.get(4, 2));
    }
}
