//! Post-processing of a job's sequence outputs (`[outputs] post`): exposure, gamma, a 3×3
//! colour matrix and a `.cube` 3D LUT, applied in float in the order the job lists them,
//! then the display transfer; and the resize of previews. Pure: the collector reads the
//! frames and the LUT, this turns pixels into pixels.
//!
//! Values start linear, premultiplied (a frame composited over black): what every stored
//! frame decodes to ([`to_linear`](crate::core::composite::to_linear)).

use std::fmt;

use image::{RgbImage, imageops};

/// One step of a post-processing chain, resolved (a LUT read and parsed).
#[derive(Debug, Clone, PartialEq)]
pub enum Post {
    /// Multiply by 2^stops.
    Exposure(f32),
    /// Raise each channel to 1/gamma (negative values are left as they are).
    Gamma(f32),
    /// Each pixel becomes `matrix × [r, g, b]`; rows give the output channels.
    Matrix([[f32; 3]; 3]),
    /// Look each pixel up in a 3D LUT, trilinearly.
    Lut(Lut3d),
}

/// What the values are turned into once the chain is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Display {
    /// The sRGB transfer (the chain's values are linear light).
    #[default]
    Srgb,
    /// None: the chain's values are display values already (e.g. its LUT outputs them).
    None,
}

impl Display {
    /// `srgb` or `none`.
    pub fn parse(text: &str) -> Result<Display, String> {
        match text {
            "srgb" => Ok(Display::Srgb),
            "none" => Ok(Display::None),
            other => Err(format!("{other:?} is not srgb or none")),
        }
    }
}

/// A 3D LUT as a `.cube` file holds it: `size`³ entries, red changing fastest, over the
/// input domain `min`..`max`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lut3d {
    /// Entries per axis (2 to 256).
    pub size: usize,
    /// The lower corner of the input domain.
    pub min: [f32; 3],
    /// The upper corner of the input domain.
    pub max: [f32; 3],
    /// `size`³ outputs, red fastest, then green, then blue.
    pub table: Vec<[f32; 3]>,
}

/// Why a `.cube` file cannot be used, with its line where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LutError {
    /// 1-based line, or 0 for the file as a whole.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}", self.message),
            line => write!(f, "line {line}: {}", self.message),
        }
    }
}

impl std::error::Error for LutError {}

/// The largest `LUT_3D_SIZE` accepted (256³ entries, 200 MB in memory).
pub const MAX_LUT_SIZE: usize = 256;

impl Lut3d {
    /// Parses a `.cube` file (Adobe's and Resolve's format): `TITLE`, `LUT_3D_SIZE`,
    /// `DOMAIN_MIN`, `DOMAIN_MAX`, `#` comments, then one `r g b` line per entry.
    pub fn parse(text: &str) -> Result<Lut3d, LutError> {
        let err = |line: usize, message: String| LutError { line, message };
        let mut size = None;
        let mut min = [0.0; 3];
        let mut max = [1.0; 3];
        let mut table = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let text = raw.split('#').next().unwrap_or("").trim();
            if text.is_empty() {
                continue;
            }
            let mut words = text.split_whitespace();
            let first = words.next().unwrap_or_default();
            let triple = |words: std::str::SplitWhitespace<'_>| -> Result<[f32; 3], LutError> {
                let values: Vec<&str> = words.collect();
                let parsed: Result<Vec<f32>, _> = values.iter().map(|w| w.parse::<f32>()).collect();
                match parsed {
                    Ok(v) if v.len() == 3 && v.iter().all(|x| x.is_finite()) => {
                        Ok([v[0], v[1], v[2]])
                    }
                    _ => Err(err(line, format!("{text:?} is not three numbers"))),
                }
            };
            match first {
                "TITLE" => {}
                "LUT_1D_SIZE" => {
                    return Err(err(
                        line,
                        "a 1D LUT; only 3D LUTs (LUT_3D_SIZE) are supported".into(),
                    ));
                }
                "LUT_3D_SIZE" => {
                    let n: usize = words
                        .next()
                        .and_then(|w| w.parse().ok())
                        .filter(|n| (2..=MAX_LUT_SIZE).contains(n))
                        .ok_or_else(|| {
                            err(line, format!("LUT_3D_SIZE must be 2 to {MAX_LUT_SIZE}"))
                        })?;
                    size = Some(n);
                    table.reserve(n * n * n);
                }
                "DOMAIN_MIN" => min = triple(words)?,
                "DOMAIN_MAX" => max = triple(words)?,
                word if word.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                    return Err(err(line, format!("unknown keyword {word:?}")));
                }
                _ => {
                    let Some(n) = size else {
                        return Err(err(line, "an entry before LUT_3D_SIZE".into()));
                    };
                    if table.len() == n * n * n {
                        return Err(err(line, format!("more than {} entries", n * n * n)));
                    }
                    table.push(triple(text.split_whitespace())?);
                }
            }
        }
        let size = size.ok_or_else(|| err(0, "no LUT_3D_SIZE line".into()))?;
        if table.len() != size * size * size {
            return Err(err(
                0,
                format!(
                    "{} entries for a size of {size} ({} wanted)",
                    table.len(),
                    size * size * size
                ),
            ));
        }
        if (0..3).any(|c| max[c] <= min[c]) {
            return Err(err(
                0,
                "DOMAIN_MAX must be above DOMAIN_MIN on every channel".into(),
            ));
        }
        Ok(Lut3d {
            size,
            min,
            max,
            table,
        })
    }

    /// The LUT's output for `rgb`, trilinearly interpolated; inputs outside the domain
    /// are clamped to it.
    pub fn apply(&self, rgb: [f32; 3]) -> [f32; 3] {
        let last = (self.size - 1) as f32;
        let mut base = [0usize; 3];
        let mut frac = [0f32; 3];
        for c in 0..3 {
            let t = ((rgb[c] - self.min[c]) / (self.max[c] - self.min[c])).clamp(0.0, 1.0) * last;
            let i = (t.floor() as usize).min(self.size - 2);
            base[c] = i;
            frac[c] = t - i as f32;
        }
        let at = |r: usize, g: usize, b: usize| self.table[(b * self.size + g) * self.size + r];
        let mut out = [0f32; 3];
        for (corner, weight) in (0..8).map(|k| {
            let pick = |c: usize| (k >> c) & 1;
            let w = (0..3)
                .map(|c| if pick(c) == 1 { frac[c] } else { 1.0 - frac[c] })
                .product::<f32>();
            ([base[0] + pick(0), base[1] + pick(1), base[2] + pick(2)], w)
        }) {
            if weight == 0.0 {
                continue;
            }
            let v = at(corner[0], corner[1], corner[2]);
            for c in 0..3 {
                out[c] += v[c] * weight;
            }
        }
        out
    }
}

impl Post {
    /// This step applied to one pixel.
    pub fn apply(&self, rgb: [f32; 3]) -> [f32; 3] {
        match self {
            Post::Exposure(stops) => rgb.map(|v| v * stops.exp2()),
            Post::Gamma(gamma) => rgb.map(|v| if v > 0.0 { v.powf(1.0 / gamma) } else { v }),
            Post::Matrix(m) => {
                [0, 1, 2].map(|row| m[row][0] * rgb[0] + m[row][1] * rgb[1] + m[row][2] * rgb[2])
            }
            Post::Lut(lut) => lut.apply(rgb),
        }
    }
}

/// One pixel through `chain` and `display`, as display values in [0, 1].
pub fn grade(chain: &[Post], display: Display, rgb: [f32; 3]) -> [f32; 3] {
    let graded = chain.iter().fold(rgb, |v, step| step.apply(v));
    match display {
        Display::Srgb => graded.map(crate::core::raster::linear_to_srgb),
        Display::None => graded.map(|v| v.clamp(0.0, 1.0)),
    }
}

/// `image` (linear, premultiplied RGBA) through `chain` and `display`, as 8-bit RGB.
pub fn to_display(image: &image::Rgba32FImage, chain: &[Post], display: Display) -> RgbImage {
    let (width, height) = image.dimensions();
    let mut out = RgbImage::new(width, height);
    for (dst, src) in out.pixels_mut().zip(image.pixels()) {
        let [r, g, b, _] = src.0;
        let v = grade(chain, display, [r, g, b]);
        dst.0 = v.map(|c| (c * 255.0 + 0.5) as u8);
    }
    out
}

/// The size of `width`×`height` scaled to `target` wide (never up), keeping the aspect,
/// each side at least one pixel.
pub fn fit_width(width: u32, height: u32, target: u32) -> (u32, u32) {
    if width <= target {
        return (width, height);
    }
    let scaled = (u64::from(height) * u64::from(target) + u64::from(width) / 2) / u64::from(width);
    (target, scaled.max(1) as u32)
}

/// `image` resized to `width`×`height` (a triangle filter: cheap and smooth).
pub fn resize(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    imageops::resize(image, width, height, imageops::FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f32; 3], b: [f32; 3]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn each_step_maps_a_pixel_as_documented() {
        let swap = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]];
        let cases: &[(Post, [f32; 3], [f32; 3])] = &[
            (Post::Exposure(1.0), [0.25, 0.5, 0.0], [0.5, 1.0, 0.0]),
            (Post::Exposure(-2.0), [1.0, 0.5, 4.0], [0.25, 0.125, 1.0]),
            (Post::Gamma(2.0), [0.25, 0.0, 1.0], [0.5, 0.0, 1.0]),
            (Post::Gamma(2.0), [-0.5, 0.04, 9.0], [-0.5, 0.2, 3.0]),
            (Post::Matrix(swap), [0.1, 0.2, 0.3], [0.2, 0.1, 0.6]),
        ];
        for (step, input, expected) in cases {
            let got = step.apply(*input);
            assert!(
                close(got, *expected),
                "{step:?} of {input:?}: {got:?}, not {expected:?}"
            );
        }
    }

    /// A LUT of size 2 whose output is 1 - input (an inversion), as a `.cube` file.
    fn inverting_cube() -> String {
        let mut text = "TITLE \"invert\"\n# a comment\nLUT_3D_SIZE 2\n".to_string();
        for b in 0..2 {
            for g in 0..2 {
                for r in 0..2 {
                    text += &format!("{} {} {}\n", 1 - r, 1 - g, 1 - b);
                }
            }
        }
        text
    }

    #[test]
    fn a_cube_lut_is_parsed_and_interpolated() {
        let lut = Lut3d::parse(&inverting_cube()).unwrap();
        assert_eq!(lut.size, 2);
        for (input, expected) in [
            ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
            ([1.0, 0.5, 0.25], [0.0, 0.5, 0.75]),
            ([2.0, -1.0, 0.5], [0.0, 1.0, 0.5]), // clamped to the domain
        ] {
            let got = lut.apply(input);
            assert!(close(got, expected), "{input:?}: {got:?}, not {expected:?}");
        }
        // A 17-point identity LUT over a wider domain gives back what it is given.
        let n = 17;
        let mut text = format!("LUT_3D_SIZE {n}\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 2 2 2\n");
        for b in 0..n {
            for g in 0..n {
                for r in 0..n {
                    let v = |i: usize| 2.0 * i as f32 / (n - 1) as f32;
                    text += &format!("{} {} {}\n", v(r), v(g), v(b));
                }
            }
        }
        let identity = Lut3d::parse(&text).unwrap();
        let input = [0.3, 1.7, 0.01];
        assert!(close(identity.apply(input), input));
    }

    #[test]
    fn a_bad_cube_file_says_what_and_where() {
        let cases = [
            ("", "no LUT_3D_SIZE line"),
            ("LUT_1D_SIZE 4\n", "line 1: a 1D LUT"),
            ("LUT_3D_SIZE 1\n", "line 1: LUT_3D_SIZE must be 2 to 256"),
            ("0 0 0\n", "line 1: an entry before LUT_3D_SIZE"),
            (
                "LUT_3D_SIZE 2\n0 0\n",
                "line 2: \"0 0\" is not three numbers",
            ),
            (
                "LUT_3D_SIZE 2\n0 0 0\n",
                "1 entries for a size of 2 (8 wanted)",
            ),
            ("LUT_3D_SIZE 2\nFOO 1\n", "line 2: unknown keyword \"FOO\""),
            (
                "LUT_3D_SIZE 2\nDOMAIN_MIN 1 1 1\nDOMAIN_MAX 1 2 2\n0 0 0\n0 0 0\n0 0 0\n0 0 0\n0 0 0\n0 0 0\n0 0 0\n0 0 0\n",
                "DOMAIN_MAX must be above",
            ),
        ];
        for (text, expected) in cases {
            let got = Lut3d::parse(text).unwrap_err().to_string();
            assert!(got.starts_with(expected), "{text:?}: {got}");
        }
        let mut long = inverting_cube();
        long += "0 0 0\n";
        assert_eq!(
            Lut3d::parse(&long).unwrap_err().to_string(),
            "line 12: more than 8 entries"
        );
    }

    #[test]
    fn a_chain_runs_in_order_then_the_display_transfer() {
        let chain = [
            Post::Exposure(1.0),
            Post::Matrix([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
            Post::Gamma(2.0),
        ];
        // 0.125 × 2 = 0.25 → moved to blue → √ = 0.5; display none keeps it.
        let got = grade(&chain, Display::None, [0.125, 0.0, 0.5]);
        assert!(close(got, [1.0, 0.0, 0.5]), "{got:?}");
        let srgb = grade(&[], Display::Srgb, [0.214_041_14, 0.0, 1.0]);
        assert!(close(srgb, [0.5, 0.0, 1.0]), "{srgb:?}");
        let lut = Lut3d::parse(&inverting_cube()).unwrap();
        let got = grade(
            &[Post::Lut(lut), Post::Exposure(-1.0)],
            Display::None,
            [0.2, 0.4, 1.0],
        );
        assert!(close(got, [0.4, 0.3, 0.0]), "{got:?}");
    }

    #[test]
    fn previews_keep_the_aspect_and_never_grow() {
        for (size, target, expected) in [
            ((1920, 1080), 640, (640, 360)),
            ((640, 480), 640, (640, 480)),
            ((320, 240), 640, (320, 240)),
            ((1000, 1), 10, (10, 1)),
            ((3, 2), 2, (2, 1)),
        ] {
            assert_eq!(
                fit_width(size.0, size.1, target),
                expected,
                "{size:?} to {target}"
            );
        }
    }
}
