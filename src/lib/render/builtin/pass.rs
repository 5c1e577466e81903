//! The passes the builtin renderer writes, selected by a task's layer name.

use crate::core::problem::ValueError;

/// What a render writes: the task's layer names one of these (`beauty` without layers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Everything: `emission + diffuse + specular`.
    Beauty,
    /// Colour of the first surface.
    Albedo,
    /// Light scattered first by a diffuse surface.
    Diffuse,
    /// Light scattered first by metal or glass.
    Specular,
    /// Light seen directly: emissive surfaces and the sky.
    Emission,
    /// Share of the lights' light blocked at the first surface (white = in shadow).
    Shadow,
    /// Ambient occlusion (white = open).
    Ao,
    /// Surface normal facing the camera, mapped from -1–1 to 0–1.
    Normal,
    /// Distance from the camera (divided by `passes.depth_far` in PNG).
    Depth,
}

impl Pass {
    /// Every pass, in documentation order.
    pub const ALL: [Pass; 9] = [
        Pass::Beauty,
        Pass::Albedo,
        Pass::Diffuse,
        Pass::Specular,
        Pass::Emission,
        Pass::Shadow,
        Pass::Ao,
        Pass::Normal,
        Pass::Depth,
    ];

    /// The layer name that selects it.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Beauty => "beauty",
            Pass::Albedo => "albedo",
            Pass::Diffuse => "diffuse",
            Pass::Specular => "specular",
            Pass::Emission => "emission",
            Pass::Shadow => "shadow",
            Pass::Ao => "ao",
            Pass::Normal => "normal",
            Pass::Depth => "depth",
        }
    }

    /// The pass a layer name selects.
    pub fn from_layer(layer: Option<&str>) -> Result<Pass, ValueError> {
        let Some(name) = layer else {
            return Ok(Pass::Beauty);
        };
        Pass::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Pass::ALL.iter().map(|p| p.name()).collect();
                ValueError::from(format!(
                    "layer {name:?} is not a pass of the builtin renderer ({})",
                    names.join(", ")
                ))
            })
    }

    /// Whether it holds data rather than colour (stored linear in PNG, not sRGB).
    pub fn is_data(self) -> bool {
        matches!(self, Pass::Shadow | Pass::Ao | Pass::Normal | Pass::Depth)
    }
}
