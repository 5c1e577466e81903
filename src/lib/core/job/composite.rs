//! `[composite]`: how a layered job's layers are combined into one more frame output, and
//! its validation. The collector composites each frame as soon as the frame of every layer
//! it names is stored (after stitching, for a tiled job), in float, and stores it beside
//! the layers as `<name>/frame_NNNN.<ext>` in each format the job asks for.
//!
//! ```toml
//! [composite]
//! name = "comp"                 # default "composite"
//! formats = ["exr", "png"]      # default: the job's image format
//! [[composite.layers]]
//! layer = "diffuse"
//! op = "add"                    # over (default), add, multiply, screen
//! opacity = 1.0                 # 0-1, default 1
//! exposure = 0.0                # stops, default 0
//! ```

use serde::{Deserialize, Serialize};

use super::validate::Layer;
use super::vocab::{ImageFormat, RendererKind, is_token};
use crate::core::composite::{Op, Step};
use crate::core::problem::Problems;

/// The most stops a layer's exposure may change it by, either way.
pub const MAX_EXPOSURE: f32 = 32.0;

/// `[composite]` as submitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositeSpec {
    /// The output folder of the composite: `composite` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `png` and/or `exr`; the job's image format by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub formats: Vec<String>,
    /// The layers, bottom first.
    #[serde(default)]
    pub layers: Vec<CompositeLayerSpec>,
}

/// One `[[composite.layers]]` entry as submitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositeLayerSpec {
    /// One of the job's `[[layers]]`, by name.
    pub layer: String,
    /// `over` (default), `add`, `multiply` or `screen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// 0 to 1; 1 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opacity: Option<f32>,
    /// Stops; 0 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<f32>,
}

/// The validated `[composite]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Composite {
    /// The output folder.
    pub name: String,
    /// The formats it is stored in (at least one, no repeats).
    pub formats: Vec<ImageFormat>,
    /// The layers (indices into the job's layers), bottom first, each with its step.
    pub layers: Vec<(usize, Step)>,
}

/// Checks `spec` against the job's `layers`, `renderer` and image format; every problem
/// goes to `errors`, naming its field.
pub fn validate(
    spec: Option<&CompositeSpec>,
    layers: &[Layer],
    renderer: RendererKind,
    format: ImageFormat,
    errors: &mut Problems,
) -> Option<Composite> {
    let spec = spec?;
    let before = errors.len();
    if layers.is_empty() {
        errors.add(
            "composite",
            "a composite needs a layered job: add [[layers]]",
        );
    }
    if renderer == RendererKind::Noop {
        errors.add(
            "composite",
            "the noop renderer writes no images to composite",
        );
    }
    let name = spec.name.clone().unwrap_or_else(|| "composite".into());
    if !is_token(&name, 32, true) {
        errors.add(
            "composite.name",
            format!("{name:?}: use 1 to 32 of letters, digits, '_' and '-'"),
        );
    } else if layers.iter().any(|l| l.name == name) {
        errors.add(
            "composite.name",
            format!("{name:?} is a layer's name: the composite is stored beside the layers"),
        );
    }
    let mut formats = Vec::new();
    for (i, text) in spec.formats.iter().enumerate() {
        let field = format!("composite.formats[{i}]");
        match text.as_str() {
            "png" | "exr" => {
                let parsed = if text == "png" {
                    ImageFormat::Png
                } else {
                    ImageFormat::Exr
                };
                if formats.contains(&parsed) {
                    errors.add(field, format!("{text:?} is named twice"));
                } else {
                    formats.push(parsed);
                }
            }
            other => errors.add(field, format!("{other:?} is not a format: use png or exr")),
        }
    }
    if spec.formats.is_empty() {
        formats.push(format);
    }
    if spec.layers.is_empty() {
        errors.add("composite.layers", "name at least one layer to composite");
    }
    let mut steps = Vec::new();
    for (i, entry) in spec.layers.iter().enumerate() {
        let field = |what: &str| format!("composite.layers[{i}].{what}");
        let index = layers.iter().position(|l| l.name == entry.layer);
        if index.is_none() && !layers.is_empty() {
            let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
            errors.add(
                field("layer"),
                format!(
                    "{:?} is not one of the job's layers ({})",
                    entry.layer,
                    names.join(", ")
                ),
            );
        }
        let op = match Op::parse(entry.op.as_deref().unwrap_or("over")) {
            Ok(op) => op,
            Err(why) => {
                errors.add(field("op"), why);
                Op::Over
            }
        };
        let opacity = entry.opacity.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&opacity) {
            errors.add(field("opacity"), format!("{opacity} is not from 0 to 1"));
        }
        let exposure = entry.exposure.unwrap_or(0.0);
        if !(-MAX_EXPOSURE..=MAX_EXPOSURE).contains(&exposure) {
            errors.add(
                field("exposure"),
                format!("{exposure} stops: use -{MAX_EXPOSURE} to {MAX_EXPOSURE}"),
            );
        }
        if let Some(index) = index {
            steps.push((
                index,
                Step {
                    op,
                    opacity,
                    exposure,
                },
            ));
        }
    }
    (errors.len() == before).then_some(Composite {
        name,
        formats,
        layers: steps,
    })
}
