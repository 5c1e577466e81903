//! `[outputs]`: the sequence outputs the collector writes once every frame is in — an
//! H.264 movie (through ffmpeg, where the collector has it), an animated PNG and a contact
//! sheet — with the post-processing applied to them on the way, and its validation.
//!
//! ```toml
//! [outputs]
//! movie = true            # default: true for a job of more than one frame
//! animation = true        # likewise
//! contact_sheet = true    # likewise
//! fps = 24                # default 24
//! preview_width = 640     # the animation's width (never enlarged), default 640
//! display = "srgb"        # srgb (default) or none: the chain ends in display values
//! post = [
//!   { exposure = 0.5 },                                   # stops
//!   { matrix = [[1, 0, 0], [0, 1, 0], [0, 0, 1]] },       # rows give the output channels
//!   { gamma = 1.2 },                                      # each channel to 1/gamma
//!   { lut = "looks/grade.cube" },                         # a 3D LUT in the scene folder
//! ]
//! ```
//!
//! The frames themselves are stored as rendered; only the sequence outputs are graded.

use serde::{Deserialize, Serialize};

use super::vocab::RendererKind;
use crate::core::post::{Display, Lut3d, Post};
use crate::core::problem::Problems;

/// Frames a second when the job does not say.
pub const DEFAULT_FPS: f64 = 24.0;

/// The animation's width when the job does not say.
pub const DEFAULT_PREVIEW_WIDTH: u32 = 640;

/// `[outputs]` as submitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsSpec {
    /// An H.264 MP4 of the frames (where the collector has ffmpeg).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub movie: Option<bool>,
    /// An animated PNG of the frames, `preview_width` wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub animation: Option<bool>,
    /// Every frame small, in order, with its number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_sheet: Option<bool>,
    /// Frames a second of the movie and the animation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// The animation's width in pixels (height by the aspect; never enlarged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_width: Option<u32>,
    /// `srgb` (default) or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// Post-processing steps, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<PostStepSpec>,
}

/// One step of `post`, a table of one key: `{ exposure = 1.0 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PostStepSpec {
    /// Stops.
    Exposure(f32),
    /// Each channel raised to 1/gamma.
    Gamma(f32),
    /// A 3×3 matrix, rows giving the output channels.
    Matrix([[f32; 3]; 3]),
    /// A `.cube` file in the scene folder.
    Lut(String),
}

/// The validated `[outputs]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// Write the movie (where ffmpeg is).
    pub movie: bool,
    /// Write the animated PNG.
    pub animation: bool,
    /// Write the contact sheet.
    pub contact_sheet: bool,
    /// Frames a second.
    pub fps: f64,
    /// The animation's width.
    pub preview_width: u32,
    /// The display transfer after the chain.
    pub display: Display,
    /// The chain, LUTs still named by their scene path.
    pub post: Vec<PostStep>,
}

impl Outputs {
    /// Whether any sequence output is written.
    pub fn any(&self) -> bool {
        self.movie || self.animation || self.contact_sheet
    }
}

/// A validated post-processing step; a LUT is still a path in the scene.
#[derive(Debug, Clone, PartialEq)]
pub enum PostStep {
    /// Stops.
    Exposure(f32),
    /// Each channel to 1/gamma.
    Gamma(f32),
    /// Rows give the output channels.
    Matrix([[f32; 3]; 3]),
    /// A `.cube` file, relative to the scene folder.
    Lut(String),
}

impl PostStep {
    /// The step ready to apply, its LUT (if it is one) read by `lut`.
    pub fn resolve<E>(&self, lut: impl FnOnce(&str) -> Result<Lut3d, E>) -> Result<Post, E> {
        Ok(match self {
            PostStep::Exposure(stops) => Post::Exposure(*stops),
            PostStep::Gamma(gamma) => Post::Gamma(*gamma),
            PostStep::Matrix(m) => Post::Matrix(*m),
            PostStep::Lut(path) => Post::Lut(lut(path)?),
        })
    }
}

/// Checks `spec` for a job of `frames` frames rendered by `renderer`, with a scene folder
/// or not; `unchecked` when its outputs are not checked to be images (a command job's
/// `check_outputs = false`), which then get no sequence outputs unless they ask. Every
/// problem goes to `errors`, naming its field.
pub fn validate(
    spec: Option<&OutputsSpec>,
    frames: usize,
    renderer: RendererKind,
    (has_scene, unchecked): (bool, bool),
    errors: &mut Problems,
) -> Outputs {
    let default = frames > 1 && renderer != RendererKind::Noop && !unchecked;
    let empty = OutputsSpec::default();
    let spec = spec.unwrap_or(&empty);
    let movie = spec.movie.unwrap_or(default);
    let animation = spec.animation.unwrap_or(default);
    let contact_sheet = spec.contact_sheet.unwrap_or(default);
    if renderer == RendererKind::Noop {
        for (asked, field) in [
            (spec.movie, "outputs.movie"),
            (spec.animation, "outputs.animation"),
            (spec.contact_sheet, "outputs.contact_sheet"),
        ] {
            if asked == Some(true) {
                errors.add(field, "the noop renderer writes no images to make it of");
            }
        }
    }
    let fps = spec.fps.unwrap_or(DEFAULT_FPS);
    if !(fps.is_finite() && fps > 0.0 && fps <= 240.0) {
        errors.add(
            "outputs.fps",
            format!("{fps} is not above 0 and at most 240"),
        );
    }
    let preview_width = spec.preview_width.unwrap_or(DEFAULT_PREVIEW_WIDTH);
    if !(16..=4096).contains(&preview_width) {
        errors.add(
            "outputs.preview_width",
            format!("{preview_width} pixels: use 16 to 4096"),
        );
    }
    let display = match Display::parse(spec.display.as_deref().unwrap_or("srgb")) {
        Ok(display) => display,
        Err(why) => {
            errors.add("outputs.display", why);
            Display::Srgb
        }
    };
    let mut post = Vec::with_capacity(spec.post.len());
    for (i, step) in spec.post.iter().enumerate() {
        let field = |what: &str| format!("outputs.post[{i}].{what}");
        let checked = match step {
            PostStepSpec::Exposure(stops) => {
                let ok = stops.is_finite() && stops.abs() <= super::composite::MAX_EXPOSURE;
                ok.then_some(PostStep::Exposure(*stops)).ok_or_else(|| {
                    let max = super::composite::MAX_EXPOSURE;
                    (
                        field("exposure"),
                        format!("{stops} stops: use -{max} to {max}"),
                    )
                })
            }
            PostStepSpec::Gamma(gamma) => {
                let ok = gamma.is_finite() && (0.01..=10.0).contains(gamma);
                ok.then_some(PostStep::Gamma(*gamma))
                    .ok_or_else(|| (field("gamma"), format!("{gamma} is not from 0.01 to 10")))
            }
            PostStepSpec::Matrix(m) => {
                let ok = m
                    .iter()
                    .flatten()
                    .all(|v| v.is_finite() && v.abs() <= 1000.0);
                ok.then_some(PostStep::Matrix(*m)).ok_or_else(|| {
                    (
                        field("matrix"),
                        "every entry must be a number from -1000 to 1000".to_string(),
                    )
                })
            }
            PostStepSpec::Lut(path) => check_lut_path(path, has_scene)
                .map(|()| PostStep::Lut(path.clone()))
                .map_err(|why| (field("lut"), why)),
        };
        match checked {
            Ok(step) => post.push(step),
            Err((field, why)) => errors.add(field, why),
        }
    }
    let outputs = Outputs {
        movie,
        animation,
        contact_sheet,
        fps,
        preview_width,
        display,
        post,
    };
    if !spec.post.is_empty() && !outputs.any() {
        errors.add(
            "outputs.post",
            "no sequence output is written to apply it to: ask for one (animation = true)",
        );
    }
    outputs
}

fn check_lut_path(path: &str, has_scene: bool) -> Result<(), String> {
    crate::core::paths::check_relative_path(path).map_err(|e| e.to_string())?;
    if !path.to_ascii_lowercase().ends_with(".cube") {
        return Err(format!("{path:?} is not a .cube file"));
    }
    if !has_scene {
        return Err(format!(
            "{path:?} is read from the scene folder, and the job has no scene"
        ));
    }
    Ok(())
}

/// Checks `output`, the name a job's outputs are published under (see
/// [`core::version`](crate::core::version)); the problem goes to `errors`.
pub fn validate_name(output: Option<&str>, errors: &mut Problems) -> Option<String> {
    let name = output?;
    match crate::core::version::check_name(name) {
        Ok(()) => Some(name.to_string()),
        Err(why) => {
            errors.add("output", why);
            None
        }
    }
}
