//! The scene file as written: the TOML schema the checker reads, and the default scene.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::render::builtin::math::V3;

/// The scene used when a job names none: four spheres on a checkered floor.
pub const DEFAULT_SCENE: &str = r#"
[camera]
position = [5.5, 2.6, 5.0]
target = [0.0, 0.7, 0.0]
fov = 38
[[lights]]
type = "point"
position = [4.0, 7.0, 3.0]
radius = 0.8
intensity = 60
[textures.checker]
type = "checker"
colors = [[0.8, 0.8, 0.75], [0.15, 0.17, 0.22]]
[materials.floor]
type = "diffuse"
texture = "checker"
[materials.mirror]
type = "metal"
color = [0.9, 0.9, 0.9]
[materials.red]
type = "diffuse"
color = [0.8, 0.2, 0.15]
[materials.glass]
type = "glass"
[[objects]]
type = "plane"
material = "floor"
[[objects]]
type = "sphere"
center = [0.0, 1.0, 0.0]
radius = 1.0
material = "mirror"
[[objects]]
type = "sphere"
center = [-2.2, 0.7, 0.8]
radius = 0.7
material = "red"
[[objects]]
type = "sphere"
center = [1.6, 0.5, 1.2]
radius = 0.5
material = "glass"
"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SceneFile {
    #[serde(default)]
    pub(super) camera: CameraSpec,
    #[serde(default)]
    pub(super) sky: SkySpec,
    #[serde(default)]
    pub(super) passes: PassSpec,
    #[serde(default)]
    pub(super) lights: Vec<LightSpec>,
    #[serde(default)]
    pub(super) textures: BTreeMap<String, TextureSpec>,
    #[serde(default)]
    pub(super) materials: BTreeMap<String, MaterialSpec>,
    #[serde(default)]
    pub(super) objects: Vec<ObjectSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct CameraSpec {
    pub(super) position: [f64; 3],
    pub(super) target: [f64; 3],
    pub(super) up: [f64; 3],
    pub(super) fov: f64,
    pub(super) aperture: f64,
    pub(super) focus_distance: Option<f64>,
    pub(super) interpolation: Interpolation,
    pub(super) keys: Vec<CameraKeySpec>,
}

impl Default for CameraSpec {
    fn default() -> CameraSpec {
        CameraSpec {
            position: [0.0, 1.0, 6.0],
            target: [0.0, 0.5, 0.0],
            up: [0.0, 1.0, 0.0],
            fov: 40.0,
            aperture: 0.0,
            focus_distance: None,
            interpolation: Interpolation::Linear,
            keys: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CameraKeySpec {
    pub(super) frame: Spanned<f64>,
    pub(super) position: Option<[f64; 3]>,
    pub(super) target: Option<[f64; 3]>,
    pub(super) fov: Option<f64>,
}

/// How keyframed values move between keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Straight lines at constant speed.
    #[default]
    Linear,
    /// Eased in and out of every key (smoothstep).
    Smooth,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct SkySpec {
    pub(super) zenith: [f64; 3],
    pub(super) horizon: [f64; 3],
    pub(super) ground: [f64; 3],
    pub(super) intensity: f64,
}

impl Default for SkySpec {
    fn default() -> SkySpec {
        SkySpec {
            zenith: [0.18, 0.34, 0.75],
            horizon: [0.75, 0.82, 0.92],
            ground: [0.25, 0.23, 0.21],
            intensity: 1.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct PassSpec {
    pub(super) ao_distance: f64,
    pub(super) depth_far: f64,
}

impl Default for PassSpec {
    fn default() -> PassSpec {
        PassSpec {
            ao_distance: 1.0,
            depth_far: 100.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LightSpec {
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    pub(super) color: Option<[f64; 3]>,
    pub(super) intensity: Option<f64>,
    pub(super) position: Option<[f64; 3]>,
    pub(super) radius: Option<f64>,
    pub(super) corner: Option<[f64; 3]>,
    pub(super) edge_u: Option<[f64; 3]>,
    pub(super) edge_v: Option<[f64; 3]>,
    pub(super) two_sided: Option<bool>,
    pub(super) direction: Option<[f64; 3]>,
    pub(super) angle: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TextureSpec {
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    pub(super) colors: Option<[[f64; 3]; 2]>,
    pub(super) size: Option<f64>,
    pub(super) file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MaterialSpec {
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    pub(super) color: Option<[f64; 3]>,
    pub(super) texture: Option<Spanned<String>>,
    pub(super) roughness: Option<f64>,
    pub(super) ior: Option<f64>,
    pub(super) intensity: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ObjectSpec {
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    pub(super) material: Spanned<String>,
    pub(super) center: Option<[f64; 3]>,
    pub(super) radius: Option<f64>,
    pub(super) point: Option<[f64; 3]>,
    pub(super) normal: Option<[f64; 3]>,
    pub(super) min: Option<[f64; 3]>,
    pub(super) max: Option<[f64; 3]>,
    pub(super) file: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) translate: Option<[f64; 3]>,
    #[serde(default)]
    pub(super) rotate: Option<[f64; 3]>,
    #[serde(default)]
    pub(super) scale: Option<ScaleSpec>,
    #[serde(default)]
    pub(super) interpolation: Interpolation,
    #[serde(default)]
    pub(super) keys: Vec<ObjectKeySpec>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub(super) enum ScaleSpec {
    Uniform(f64),
    Axes([f64; 3]),
}

impl ScaleSpec {
    pub(super) fn vector(self) -> V3 {
        match self {
            ScaleSpec::Uniform(k) => V3::splat(k),
            ScaleSpec::Axes(a) => V3::from(a),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ObjectKeySpec {
    pub(super) frame: Spanned<f64>,
    pub(super) translate: Option<[f64; 3]>,
    pub(super) rotate: Option<[f64; 3]>,
    pub(super) scale: Option<ScaleSpec>,
}
