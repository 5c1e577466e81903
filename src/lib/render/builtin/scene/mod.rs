//! The builtin renderer's scene file (TOML) and its checked, resolved form, [`Scene`].
//!
//! A scene has a `[camera]` (with `[[camera.keys]]` keyframes), a `[sky]`, `[[lights]]`
//! (`point`, `area`, `sun`), `[textures.<name>]` (`checker`, `image`),
//! `[materials.<name>]` (`diffuse`, `metal`, `glass`, `emissive`) and `[[objects]]`
//! (`sphere`, `plane`, `box`, `mesh`) with keyframed transforms. Files it names (OBJ
//! meshes, PNG textures) are paths relative to the scene file's folder, checked like every
//! path from a job. Every error names the field, and the line where the file has one.
//!
//! - `file`: the TOML schema as written, and the default scene;
//! - `check`: the checker that turns it into a [`Scene`], every problem with its field
//!   and line.

mod check;
mod file;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::math::{Affine, V3};
use super::shapes::Shape;
use crate::core::job::wire::{line_of, one_line};
use crate::core::problem::{FieldError, Invalid, Problems};
pub use file::{DEFAULT_SCENE, Interpolation};

/// A checked scene with its meshes and textures loaded; the same for every frame.
#[derive(Debug, Clone)]
pub struct Scene {
    /// The camera and its keys.
    pub camera: CameraTrack,
    /// The environment seen where rays escape.
    pub sky: Sky,
    /// Lights sampled at every diffuse or glossy bounce.
    pub lights: Vec<Light>,
    /// Materials, indexed by objects.
    pub materials: Vec<Material>,
    /// Objects.
    pub objects: Vec<Object>,
    /// Rays of the `ao` pass count as occluded within this distance.
    pub ao_distance: f64,
    /// PNG `depth` passes store distance divided by this.
    pub depth_far: f64,
}

/// A camera pose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Eye position.
    pub position: V3,
    /// What it looks at.
    pub target: V3,
    /// Vertical field of view, degrees.
    pub fov: f64,
}

/// The camera over time.
#[derive(Debug, Clone)]
pub struct CameraTrack {
    base: Pose,
    keys: Vec<(f64, Pose)>,
    interpolation: Interpolation,
    up: V3,
    /// Lens diameter (0: pinhole).
    pub aperture: f64,
    focus_distance: Option<f64>,
}

/// The camera at one frame, ready to make rays.
#[derive(Debug, Clone, Copy)]
pub struct Camera {
    /// Eye position.
    pub eye: V3,
    /// Unit view direction.
    pub forward: V3,
    /// Unit right vector.
    pub right: V3,
    /// Unit up vector.
    pub up: V3,
    /// tan(fov / 2).
    pub half_height: f64,
    /// Lens diameter.
    pub aperture: f64,
    /// Distance to the plane in focus.
    pub focus: f64,
}

/// A sky: a gradient from the ground through the horizon to the zenith.
#[derive(Debug, Clone, Copy)]
pub struct Sky {
    zenith: V3,
    horizon: V3,
    ground: V3,
}

/// A light, sampled explicitly (lights are not visible to rays themselves).
#[derive(Debug, Clone, Copy)]
pub enum Light {
    /// A point, or a small sphere when `radius` is above 0 (soft shadows).
    Point {
        /// Centre.
        position: V3,
        /// Radius.
        radius: f64,
        /// Colour × intensity (radiant intensity).
        power: V3,
    },
    /// A rectangle `corner + s·edge_u + t·edge_v`, emitting towards `edge_u × edge_v`.
    Area {
        /// One corner.
        corner: V3,
        /// First edge.
        edge_u: V3,
        /// Second edge.
        edge_v: V3,
        /// Unit normal.
        normal: V3,
        /// Area.
        area: f64,
        /// Colour × intensity (radiance).
        radiance: V3,
        /// Whether it emits from both faces.
        two_sided: bool,
    },
    /// A distant disc in the sky.
    Sun {
        /// Unit direction towards the sun.
        direction: V3,
        /// Cosine of the sun's angular radius.
        cos_max: f64,
        /// Colour × intensity (irradiance).
        irradiance: V3,
    },
}

/// A colour, optionally multiplied by a texture.
#[derive(Debug, Clone)]
pub struct Color {
    /// The base colour.
    pub base: V3,
    /// A texture, looked up by the hit's texture coordinates.
    pub texture: Option<Arc<Texture>>,
}

impl Color {
    /// The colour at texture coordinates `uv`.
    pub fn at(&self, uv: [f64; 2]) -> V3 {
        match &self.texture {
            Some(t) => self.base * t.at(uv),
            None => self.base,
        }
    }
}

/// A material.
#[derive(Debug, Clone)]
pub enum Material {
    /// Lambertian.
    Diffuse {
        /// Albedo.
        color: Color,
    },
    /// A metal: a mirror at roughness 0, a widening glossy lobe above.
    Metal {
        /// Reflectance.
        color: Color,
        /// Phong exponent of the lobe; infinite for a mirror.
        exponent: f64,
    },
    /// A dielectric with Fresnel reflection and refraction.
    Glass {
        /// Transmission tint.
        color: V3,
        /// Index of refraction.
        ior: f64,
    },
    /// A surface giving off light (seen by rays; not sampled as a light).
    Emissive {
        /// Colour × intensity (radiance).
        radiance: V3,
    },
}

impl Material {
    /// The colour the `albedo` pass shows.
    pub fn albedo(&self, uv: [f64; 2]) -> V3 {
        match self {
            Material::Diffuse { color } | Material::Metal { color, .. } => color.at(uv),
            Material::Glass { color, .. } => *color,
            Material::Emissive { radiance } => *radiance / radiance.max_component().max(1.0),
        }
    }
}

/// A texture.
#[derive(Debug, Clone)]
pub enum Texture {
    /// Alternating squares of two colours, `size` texture units wide.
    Checker {
        /// The two colours.
        colors: [V3; 2],
        /// Square size.
        size: f64,
    },
    /// A PNG, repeated every `size` texture units, in linear light.
    Image {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Linear RGB, top row first.
        pixels: Vec<V3>,
        /// Size of one repetition.
        size: f64,
    },
}

impl Texture {
    /// The colour at `uv`.
    pub fn at(&self, uv: [f64; 2]) -> V3 {
        match self {
            Texture::Checker { colors, size } => {
                let cell = (uv[0] / size).floor() as i64 + (uv[1] / size).floor() as i64;
                colors[cell.rem_euclid(2) as usize]
            }
            Texture::Image {
                width,
                height,
                pixels,
                size,
            } => {
                // Bilinear, repeating; v runs up the image.
                let (w, h) = (f64::from(*width), f64::from(*height));
                let x = (uv[0] / size).rem_euclid(1.0) * w - 0.5;
                let y = (1.0 - (uv[1] / size).rem_euclid(1.0)) * h - 0.5;
                let (x0, y0) = (x.floor(), y.floor());
                let (fx, fy) = (x - x0, y - y0);
                let texel = |xi: f64, yi: f64| {
                    let xi = (xi as i64).rem_euclid(i64::from(*width)) as usize;
                    let yi = (yi as i64).rem_euclid(i64::from(*height)) as usize;
                    pixels[yi * *width as usize + xi]
                };
                let top = texel(x0, y0).lerp(texel(x0 + 1.0, y0), fx);
                let bottom = texel(x0, y0 + 1.0).lerp(texel(x0 + 1.0, y0 + 1.0), fx);
                top.lerp(bottom, fy)
            }
        }
    }
}

/// Scale, rotation (degrees about x, y, z) and translation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trs {
    /// Translation.
    pub translate: V3,
    /// Rotation in degrees.
    pub rotate: V3,
    /// Scale per axis.
    pub scale: V3,
}

/// An object: a shape, a material and a transform over time.
#[derive(Debug, Clone)]
pub struct Object {
    /// The shape in object space.
    pub shape: Shape,
    /// Index into [`Scene::materials`].
    pub material: usize,
    base: Trs,
    keys: Vec<(f64, Trs)>,
    interpolation: Interpolation,
}

impl Object {
    /// The object-to-world transform at `frame`.
    pub fn transform(&self, frame: f64) -> Affine {
        let trs = interpolate(
            &self.keys,
            self.interpolation,
            frame,
            self.base,
            |a, b, s| Trs {
                translate: a.translate.lerp(b.translate, s),
                rotate: a.rotate.lerp(b.rotate, s),
                scale: a.scale.lerp(b.scale, s),
            },
        );
        Affine::from_trs(trs.translate, trs.rotate, trs.scale)
    }
}

impl CameraTrack {
    /// The camera at `frame` for an image `width`×`height`.
    pub fn at(&self, frame: f64) -> Camera {
        let pose = interpolate(
            &self.keys,
            self.interpolation,
            frame,
            self.base,
            |a, b, s| Pose {
                position: a.position.lerp(b.position, s),
                target: a.target.lerp(b.target, s),
                fov: a.fov + (b.fov - a.fov) * s,
            },
        );
        let forward = (pose.target - pose.position).normalized();
        let right = forward.cross(self.up).normalized();
        let up = right.cross(forward);
        Camera {
            eye: pose.position,
            forward,
            right,
            up,
            half_height: (pose.fov.to_radians() / 2.0).tan(),
            aperture: self.aperture,
            focus: self
                .focus_distance
                .unwrap_or_else(|| (pose.target - pose.position).length()),
        }
    }
}

impl Sky {
    /// Radiance arriving from direction `dir` (unit).
    pub fn radiance(&self, dir: V3) -> V3 {
        if dir.y >= 0.0 {
            self.horizon.lerp(self.zenith, dir.y.sqrt())
        } else {
            self.horizon.lerp(self.ground, (-dir.y).sqrt().min(1.0))
        }
    }
}

/// The value at `frame` of a keyed track: before the first key the first, after the last
/// the last, in between `mix`ed by the interpolation.
fn interpolate<T: Copy>(
    keys: &[(f64, T)],
    interpolation: Interpolation,
    frame: f64,
    base: T,
    mix: impl Fn(T, T, f64) -> T,
) -> T {
    let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
        return base;
    };
    if frame <= first.0 {
        return first.1;
    }
    if frame >= last.0 {
        return last.1;
    }
    let i = keys.partition_point(|k| k.0 <= frame) - 1;
    let (a, b) = (keys[i], keys[i + 1]);
    let mut s = (frame - a.0) / (b.0 - a.0);
    if interpolation == Interpolation::Smooth {
        s = s * s * (3.0 - 2.0 * s);
    }
    mix(a.1, b.1, s)
}

/// A scene file that cannot render: which file, and every problem with its field and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scene {}: {problems}", path.display())]
pub struct SceneError {
    /// The scene file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problems: Invalid,
}

impl Scene {
    /// Reads a scene file and the files it names from its folder.
    pub fn load(path: &Path) -> Result<Scene, SceneError> {
        let error = |problems| SceneError {
            path: path.to_path_buf(),
            problems,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(Invalid::one("(file)", format!("cannot be read: {e}"))))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Scene::parse(&text, Some(dir)).map_err(error)
    }

    /// The scene used when a job names none.
    pub fn default_scene() -> Scene {
        Scene::parse(DEFAULT_SCENE, None).expect("the default scene is valid")
    }

    /// Parses and checks scene text; files are looked up in `dir`.
    pub fn parse(text: &str, dir: Option<&Path>) -> Result<Scene, Invalid> {
        let file: file::SceneFile = toml::from_str(text).map_err(|e| {
            let mut error = FieldError::new("(file)", one_line(&e.to_string()));
            error.line = e.span().map(|span| line_of(text, span.start));
            Invalid::from(error)
        })?;
        let mut checker = check::Checker {
            text,
            dir,
            problems: Problems::default(),
        };
        let scene = checker.scene(file);
        checker.problems.into_result(scene)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scene_is_valid() {
        let scene = Scene::default_scene();
        assert_eq!(scene.objects.len(), 4);
    }

    #[test]
    fn errors_name_the_field_and_line() {
        for (text, want) in [
            ("[camera]\nfov = \"wide\"", "line 2"),
            ("[camera]\nfov = 200", "camera.fov"),
            (
                "[materials.red]\ntype = \"diffuse\"\n\n[[objects]]\ntype = \"sphere\"\nmaterial = \"blue\"\n",
                "objects[0].material (line 6): no material named \"blue\" (the scene has: red)",
            ),
            (
                "[materials.m]\ntype = \"diffuse\"\n[[objects]]\ntype = \"sphere\"\nradius = -1\nmaterial = \"m\"\n",
                "objects[0].radius (line 4)",
            ),
            (
                "[materials.m]\ntype = \"diffuse\"\n[[objects]]\ntype = \"sphere\"\nfile = \"x.obj\"\nmaterial = \"m\"\n",
                "objects[0].file (line 4): does not apply to a sphere",
            ),
            (
                "[materials.m]\ntype = \"diffuse\"\n[[objects]]\ntype = \"cone\"\nmaterial = \"m\"\n",
                "\"cone\" is not an object type",
            ),
            (
                "[materials.m]\ntype = \"diffuse\"\ntexture = \"wood\"\n",
                "materials.m.texture (line 3): no texture named \"wood\"",
            ),
            (
                "[materials.m]\ntype = \"metal\"\nroughness = 2\n",
                "materials.m.roughness",
            ),
            (
                "[[lights]]\ntype = \"point\"\n",
                "lights[0].position (line 2): a point needs `position`",
            ),
            ("[[lights]]\ntype = \"laser\"\n", "lights[0].type"),
            (
                "[textures.t]\ntype = \"image\"\nfile = \"../etc/passwd\"\n",
                "textures.t.file (line 3)",
            ),
            (
                "[materials.m]\ntype = \"diffuse\"\n[[objects]]\ntype = \"mesh\"\nfile = \"/abs.obj\"\nmaterial = \"m\"\n",
                "objects[0].file (line 5)",
            ),
            (
                "[camera]\n[[camera.keys]]\nframe = 5\n[[camera.keys]]\nframe = 2\n",
                "camera.keys[1].frame (line 5): keys must be in increasing frame order",
            ),
            (
                "[materials.m]\ntype = \"diffuse\"\n[[objects]]\ntype = \"box\"\nmaterial = \"m\"\nscale = [1, 0, 1]\n",
                "objects[0].scale",
            ),
            ("[sky]\nhue = 3\n", "unknown field `hue`"),
        ] {
            let err = Scene::parse(text, None).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{text:?}\n  gave: {err}\n  want: {want}"
            );
        }
    }

    #[test]
    fn keys_interpolate_and_hold_at_the_ends() {
        let keys = [(1.0, 0.0), (11.0, 10.0)];
        let mix = |a: f64, b: f64, s: f64| a + (b - a) * s;
        assert_eq!(
            interpolate(&keys, Interpolation::Linear, 0.0, -1.0, mix),
            0.0
        );
        assert_eq!(
            interpolate(&keys, Interpolation::Linear, 6.0, -1.0, mix),
            5.0
        );
        assert_eq!(
            interpolate(&keys, Interpolation::Smooth, 6.0, -1.0, mix),
            5.0
        );
        assert!(interpolate(&keys, Interpolation::Smooth, 2.0, -1.0, mix) < 1.0);
        assert_eq!(
            interpolate(&keys, Interpolation::Linear, 99.0, -1.0, mix),
            10.0
        );
        assert_eq!(
            interpolate(&[], Interpolation::Linear, 5.0, -1.0, mix),
            -1.0
        );
    }

    #[test]
    fn checker_alternates() {
        let t = Texture::Checker {
            colors: [V3::ZERO, V3::ONE],
            size: 1.0,
        };
        assert_eq!(t.at([0.5, 0.5]), V3::ZERO);
        assert_eq!(t.at([1.5, 0.5]), V3::ONE);
        assert_eq!(t.at([-0.5, 0.5]), V3::ONE);
    }
}
