//! The builtin renderer's scene file (TOML) and its checked, resolved form, [`Scene`].
//!
//! A scene has a `[camera]` (with `[[camera.keys]]` keyframes), a `[sky]`, `[[lights]]`
//! (`point`, `area`, `sun`), `[textures.<name>]` (`checker`, `image`),
//! `[materials.<name>]` (`diffuse`, `metal`, `glass`, `emissive`) and `[[objects]]`
//! (`sphere`, `plane`, `box`, `mesh`) with keyframed transforms. Files it names (OBJ
//! meshes, PNG textures) are paths relative to the scene file's folder, checked like every
//! path from a job. Every error names the field, and the line where the file has one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::math::{Affine, V3, v3};
use super::shapes::{Mesh, Shape};

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

// ---------------------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SceneFile {
    #[serde(default)]
    camera: CameraSpec,
    #[serde(default)]
    sky: SkySpec,
    #[serde(default)]
    passes: PassSpec,
    #[serde(default)]
    lights: Vec<LightSpec>,
    #[serde(default)]
    textures: BTreeMap<String, TextureSpec>,
    #[serde(default)]
    materials: BTreeMap<String, MaterialSpec>,
    #[serde(default)]
    objects: Vec<ObjectSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CameraSpec {
    position: [f64; 3],
    target: [f64; 3],
    up: [f64; 3],
    fov: f64,
    aperture: f64,
    focus_distance: Option<f64>,
    interpolation: Interpolation,
    keys: Vec<CameraKeySpec>,
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
struct CameraKeySpec {
    frame: Spanned<f64>,
    position: Option<[f64; 3]>,
    target: Option<[f64; 3]>,
    fov: Option<f64>,
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
struct SkySpec {
    zenith: [f64; 3],
    horizon: [f64; 3],
    ground: [f64; 3],
    intensity: f64,
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
struct PassSpec {
    ao_distance: f64,
    depth_far: f64,
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
struct LightSpec {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    color: Option<[f64; 3]>,
    intensity: Option<f64>,
    position: Option<[f64; 3]>,
    radius: Option<f64>,
    corner: Option<[f64; 3]>,
    edge_u: Option<[f64; 3]>,
    edge_v: Option<[f64; 3]>,
    two_sided: Option<bool>,
    direction: Option<[f64; 3]>,
    angle: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextureSpec {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    colors: Option<[[f64; 3]; 2]>,
    size: Option<f64>,
    file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaterialSpec {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    color: Option<[f64; 3]>,
    texture: Option<Spanned<String>>,
    roughness: Option<f64>,
    ior: Option<f64>,
    intensity: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectSpec {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    material: Spanned<String>,
    center: Option<[f64; 3]>,
    radius: Option<f64>,
    point: Option<[f64; 3]>,
    normal: Option<[f64; 3]>,
    min: Option<[f64; 3]>,
    max: Option<[f64; 3]>,
    file: Option<Spanned<String>>,
    #[serde(default)]
    translate: Option<[f64; 3]>,
    #[serde(default)]
    rotate: Option<[f64; 3]>,
    #[serde(default)]
    scale: Option<ScaleSpec>,
    #[serde(default)]
    interpolation: Interpolation,
    #[serde(default)]
    keys: Vec<ObjectKeySpec>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum ScaleSpec {
    Uniform(f64),
    Axes([f64; 3]),
}

impl ScaleSpec {
    fn vector(self) -> V3 {
        match self {
            ScaleSpec::Uniform(k) => V3::splat(k),
            ScaleSpec::Axes(a) => V3::from(a),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectKeySpec {
    frame: Spanned<f64>,
    translate: Option<[f64; 3]>,
    rotate: Option<[f64; 3]>,
    scale: Option<ScaleSpec>,
}

// ---------------------------------------------------------------------------------------
// The checked scene.

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

// ---------------------------------------------------------------------------------------
// Checking.

/// The line (1-based) of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

struct Checker<'a> {
    text: &'a str,
    dir: Option<&'a Path>,
    errors: Vec<String>,
}

impl Checker<'_> {
    fn at<T>(&self, spanned: &Spanned<T>) -> String {
        format!("line {}", line_of(self.text, spanned.span().start))
    }

    fn error(
        &mut self,
        field: impl std::fmt::Display,
        line: &str,
        message: impl std::fmt::Display,
    ) {
        self.errors.push(format!("{field} ({line}): {message}"));
    }

    fn finite(&mut self, field: &str, line: &str, values: &[f64]) {
        if values.iter().any(|v| !v.is_finite()) {
            self.error(field, line, "must be finite numbers");
        }
    }

    fn color(&mut self, field: &str, line: &str, c: [f64; 3]) -> V3 {
        if c.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
            self.error(field, line, "colour components must be 0 or more");
        }
        V3::from(c)
    }

    fn positive(&mut self, field: &str, line: &str, v: f64) -> f64 {
        if !(v.is_finite() && v > 0.0) {
            self.error(field, line, format!("{v} must be above 0"));
        }
        v
    }

    fn non_negative(&mut self, field: &str, line: &str, v: f64) -> f64 {
        if !(v.is_finite() && v >= 0.0) {
            self.error(field, line, format!("{v} must be 0 or more"));
        }
        v
    }

    /// Reports fields that do not apply to this `type`.
    fn only(
        &mut self,
        what: &str,
        line: &str,
        kind: &str,
        given: &[(&str, bool)],
        allowed: &[&str],
    ) {
        for (name, present) in given {
            if *present && !allowed.contains(name) {
                self.error(
                    format!("{what}.{name}"),
                    line,
                    format!(
                        "does not apply to a {kind} (it takes: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn required<T: Copy>(
        &mut self,
        what: &str,
        line: &str,
        name: &str,
        kind: &str,
        v: Option<T>,
    ) -> Option<T> {
        if v.is_none() {
            self.error(
                format!("{what}.{name}"),
                line,
                format!("a {kind} needs `{name}`"),
            );
        }
        v
    }

    /// Resolves a file named by the scene to a path inside its folder.
    fn file(&mut self, field: &str, name: &Spanned<String>) -> Option<PathBuf> {
        let line = self.at(name);
        if let Err(e) = crate::core::paths::check_relative_path(name.get_ref()) {
            self.error(field, &line, e);
            return None;
        }
        match self.dir {
            Some(dir) => Some(dir.join(name.get_ref())),
            None => {
                self.error(
                    field,
                    &line,
                    "files need a scene folder (load the scene from a file)",
                );
                None
            }
        }
    }
}

impl Scene {
    /// Reads a scene file and the files it names from its folder.
    pub fn load(path: &Path) -> Result<Scene, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading scene {}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Scene::parse(&text, Some(dir)).map_err(|e| format!("scene {}: {e}", path.display()))
    }

    /// The scene used when a job names none.
    pub fn default_scene() -> Scene {
        Scene::parse(DEFAULT_SCENE, None).expect("the default scene is valid")
    }

    /// Parses and checks scene text; files are looked up in `dir`.
    pub fn parse(text: &str, dir: Option<&Path>) -> Result<Scene, String> {
        let file: SceneFile = toml::from_str(text).map_err(|e| {
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })?;
        let mut c = Checker {
            text,
            dir,
            errors: Vec::new(),
        };
        let scene = c.scene(file);
        if c.errors.is_empty() {
            Ok(scene)
        } else {
            Err(c.errors.join("; "))
        }
    }
}

impl Checker<'_> {
    fn scene(&mut self, file: SceneFile) -> Scene {
        let camera = self.camera(&file.camera);
        let sky = {
            let s = &file.sky;
            let k = self.non_negative("sky.intensity", "[sky]", s.intensity);
            Sky {
                zenith: self.color("sky.zenith", "[sky]", s.zenith) * k,
                horizon: self.color("sky.horizon", "[sky]", s.horizon) * k,
                ground: self.color("sky.ground", "[sky]", s.ground) * k,
            }
        };
        let ao_distance = self.positive("passes.ao_distance", "[passes]", file.passes.ao_distance);
        let depth_far = self.positive("passes.depth_far", "[passes]", file.passes.depth_far);
        let lights = file
            .lights
            .iter()
            .enumerate()
            .filter_map(|(i, l)| self.light(i, l))
            .collect();
        let mut textures = BTreeMap::new();
        for (name, t) in &file.textures {
            if let Some(texture) = self.texture(name, t) {
                textures.insert(name.clone(), Arc::new(texture));
            }
        }
        let mut materials = Vec::new();
        let mut material_index = BTreeMap::new();
        for (name, m) in &file.materials {
            if let Some(material) = self.material(name, m, &textures, &file.textures) {
                material_index.insert(name.clone(), materials.len());
                materials.push(material);
            }
        }
        let mut meshes: BTreeMap<String, Arc<Mesh>> = BTreeMap::new();
        let mut objects = Vec::new();
        for (i, o) in file.objects.iter().enumerate() {
            if let Some(object) = self.object(i, o, &material_index, &file.materials, &mut meshes) {
                objects.push(object);
            }
        }
        Scene {
            camera,
            sky,
            lights,
            materials,
            objects,
            ao_distance,
            depth_far,
        }
    }

    fn camera(&mut self, spec: &CameraSpec) -> CameraTrack {
        let line = "[camera]";
        let mut flat = [spec.position, spec.target, spec.up].concat();
        flat.extend([spec.fov, spec.aperture]);
        self.finite("camera", line, &flat);
        let fov_ok = |fov: f64| fov > 0.0 && fov < 180.0;
        if !fov_ok(spec.fov) {
            self.error("camera.fov", line, "must be between 0 and 180 degrees");
        }
        self.non_negative("camera.aperture", line, spec.aperture);
        if let Some(f) = spec.focus_distance {
            self.positive("camera.focus_distance", line, f);
        }
        let base = Pose {
            position: V3::from(spec.position),
            target: V3::from(spec.target),
            fov: spec.fov,
        };
        let up = V3::from(spec.up);
        let mut keys = Vec::new();
        for (i, k) in spec.keys.iter().enumerate() {
            let line = self.at(&k.frame);
            let field = format!("camera.keys[{i}]");
            let pose = Pose {
                position: k.position.map_or(base.position, V3::from),
                target: k.target.map_or(base.target, V3::from),
                fov: k.fov.unwrap_or(base.fov),
            };
            if !fov_ok(pose.fov) {
                self.error(
                    format!("{field}.fov"),
                    &line,
                    "must be between 0 and 180 degrees",
                );
            }
            self.key_frame(
                &field,
                &line,
                *k.frame.get_ref(),
                keys.last().map(|k: &(f64, Pose)| k.0),
            );
            if (pose.target - pose.position).length() < 1e-9
                || !(pose.target - pose.position).is_finite()
            {
                self.error(&field, &line, "position and target must differ");
            } else if (pose.target - pose.position)
                .normalized()
                .cross(up)
                .length()
                < 1e-9
            {
                self.error(
                    &field,
                    &line,
                    "the view direction must not be parallel to camera.up",
                );
            }
            keys.push((*k.frame.get_ref(), pose));
        }
        if keys.is_empty() {
            let d = base.target - base.position;
            if d.length() < 1e-9 {
                self.error("camera.target", line, "must differ from camera.position");
            } else if d.normalized().cross(up).length() < 1e-9 {
                self.error(
                    "camera.up",
                    line,
                    "must not be parallel to the view direction",
                );
            }
        }
        CameraTrack {
            base,
            keys,
            interpolation: spec.interpolation,
            up,
            aperture: spec.aperture,
            focus_distance: spec.focus_distance,
        }
    }

    fn key_frame(&mut self, field: &str, line: &str, frame: f64, previous: Option<f64>) {
        if !frame.is_finite() {
            self.error(format!("{field}.frame"), line, "must be a number");
        } else if previous.is_some_and(|p| frame <= p) {
            self.error(
                format!("{field}.frame"),
                line,
                "keys must be in increasing frame order",
            );
        }
    }

    fn light(&mut self, i: usize, l: &LightSpec) -> Option<Light> {
        let what = format!("lights[{i}]");
        let line = self.at(&l.kind);
        let kind = l.kind.get_ref().as_str();
        let given = [
            ("position", l.position.is_some()),
            ("radius", l.radius.is_some()),
            ("corner", l.corner.is_some()),
            ("edge_u", l.edge_u.is_some()),
            ("edge_v", l.edge_v.is_some()),
            ("two_sided", l.two_sided.is_some()),
            ("direction", l.direction.is_some()),
            ("angle", l.angle.is_some()),
        ];
        let color = self.color(&format!("{what}.color"), &line, l.color.unwrap_or([1.0; 3]));
        let intensity = self.non_negative(
            &format!("{what}.intensity"),
            &line,
            l.intensity.unwrap_or(1.0),
        );
        let emitted = color * intensity;
        match kind {
            "point" => {
                self.only(&what, &line, kind, &given, &["position", "radius"]);
                let position = self.required(&what, &line, "position", kind, l.position)?;
                self.finite(&format!("{what}.position"), &line, &position);
                let radius =
                    self.non_negative(&format!("{what}.radius"), &line, l.radius.unwrap_or(0.0));
                Some(Light::Point {
                    position: V3::from(position),
                    radius,
                    power: emitted,
                })
            }
            "area" => {
                self.only(
                    &what,
                    &line,
                    kind,
                    &given,
                    &["corner", "edge_u", "edge_v", "two_sided"],
                );
                let corner = self.required(&what, &line, "corner", kind, l.corner)?;
                let edge_u = V3::from(self.required(&what, &line, "edge_u", kind, l.edge_u)?);
                let edge_v = V3::from(self.required(&what, &line, "edge_v", kind, l.edge_v)?);
                let normal = edge_u.cross(edge_v);
                let area = normal.length();
                if !(area.is_finite() && area > 1e-12) {
                    self.error(&what, &line, "edge_u and edge_v must span a rectangle");
                    return None;
                }
                Some(Light::Area {
                    corner: V3::from(corner),
                    edge_u,
                    edge_v,
                    normal: normal / area,
                    area,
                    radiance: emitted,
                    two_sided: l.two_sided.unwrap_or(false),
                })
            }
            "sun" => {
                self.only(&what, &line, kind, &given, &["direction", "angle"]);
                let direction =
                    V3::from(self.required(&what, &line, "direction", kind, l.direction)?);
                if !(direction.is_finite() && direction.length() > 1e-12) {
                    self.error(
                        format!("{what}.direction"),
                        &line,
                        "must be a non-zero vector",
                    );
                    return None;
                }
                let angle = l.angle.unwrap_or(0.53);
                if !(angle.is_finite() && (0.0..90.0).contains(&angle)) {
                    self.error(
                        format!("{what}.angle"),
                        &line,
                        "must be from 0 to 90 degrees",
                    );
                }
                Some(Light::Sun {
                    direction: direction.normalized(),
                    cos_max: (angle / 2.0).to_radians().cos(),
                    irradiance: emitted,
                })
            }
            other => {
                self.error(
                    format!("{what}.type"),
                    &line,
                    format!("{other:?} is not a light type (point, area, sun)"),
                );
                None
            }
        }
    }

    fn texture(&mut self, name: &str, t: &TextureSpec) -> Option<Texture> {
        let what = format!("textures.{name}");
        let line = self.at(&t.kind);
        let size = self.positive(&format!("{what}.size"), &line, t.size.unwrap_or(1.0));
        let given = [("colors", t.colors.is_some()), ("file", t.file.is_some())];
        match t.kind.get_ref().as_str() {
            "checker" => {
                self.only(&what, &line, "checker", &given, &["colors"]);
                let [a, b] = t.colors.unwrap_or([[0.8; 3], [0.2; 3]]);
                Some(Texture::Checker {
                    colors: [
                        self.color(&format!("{what}.colors"), &line, a),
                        self.color(&format!("{what}.colors"), &line, b),
                    ],
                    size,
                })
            }
            "image" => {
                self.only(&what, &line, "image", &given, &["file"]);
                let Some(file) = &t.file else {
                    self.error(
                        format!("{what}.file"),
                        &line,
                        "an image texture needs `file` (a PNG in the scene folder)",
                    );
                    return None;
                };
                let field = format!("{what}.file");
                let path = self.file(&field, file)?;
                let line = self.at(file);
                match load_image(&path) {
                    Ok((width, height, pixels)) => Some(Texture::Image {
                        width,
                        height,
                        pixels,
                        size,
                    }),
                    Err(e) => {
                        self.error(field, &line, e);
                        None
                    }
                }
            }
            other => {
                self.error(
                    format!("{what}.type"),
                    &line,
                    format!("{other:?} is not a texture type (checker, image)"),
                );
                None
            }
        }
    }

    fn material(
        &mut self,
        name: &str,
        m: &MaterialSpec,
        textures: &BTreeMap<String, Arc<Texture>>,
        specs: &BTreeMap<String, TextureSpec>,
    ) -> Option<Material> {
        let what = format!("materials.{name}");
        let line = self.at(&m.kind);
        let kind = m.kind.get_ref().as_str();
        let given = [
            ("texture", m.texture.is_some()),
            ("roughness", m.roughness.is_some()),
            ("ior", m.ior.is_some()),
            ("intensity", m.intensity.is_some()),
        ];
        let color = |c: &mut Self, default: [f64; 3]| -> Option<Color> {
            let base = c.color(
                &format!("{what}.color"),
                &line,
                m.color.unwrap_or(if m.texture.is_some() {
                    [1.0; 3]
                } else {
                    default
                }),
            );
            let texture = match &m.texture {
                None => None,
                Some(t) => match textures.get(t.get_ref()) {
                    Some(tex) => Some(tex.clone()),
                    None if specs.contains_key(t.get_ref()) => return None, // already reported
                    None => {
                        let message = no_such("texture", t.get_ref(), specs.keys());
                        c.error(format!("{what}.texture"), &c.at(t), message);
                        return None;
                    }
                },
            };
            Some(Color { base, texture })
        };
        match kind {
            "diffuse" => {
                self.only(&what, &line, kind, &given, &["texture"]);
                Some(Material::Diffuse {
                    color: color(self, [0.8; 3])?,
                })
            }
            "metal" => {
                self.only(&what, &line, kind, &given, &["texture", "roughness"]);
                let roughness = m.roughness.unwrap_or(0.0);
                if !(roughness.is_finite() && (0.0..=1.0).contains(&roughness)) {
                    self.error(format!("{what}.roughness"), &line, "must be from 0 to 1");
                }
                Some(Material::Metal {
                    color: color(self, [0.9; 3])?,
                    exponent: if roughness < 1e-3 {
                        f64::INFINITY
                    } else {
                        (2.0 / (roughness * roughness) - 2.0).max(1.0)
                    },
                })
            }
            "glass" => {
                self.only(&what, &line, kind, &given, &["ior"]);
                let ior = m.ior.unwrap_or(1.5);
                if !(ior.is_finite() && (1.0..=4.0).contains(&ior)) {
                    self.error(format!("{what}.ior"), &line, "must be from 1 to 4");
                }
                Some(Material::Glass {
                    color: self.color(&format!("{what}.color"), &line, m.color.unwrap_or([1.0; 3])),
                    ior,
                })
            }
            "emissive" => {
                self.only(&what, &line, kind, &given, &["intensity"]);
                let k = self.non_negative(
                    &format!("{what}.intensity"),
                    &line,
                    m.intensity.unwrap_or(1.0),
                );
                Some(Material::Emissive {
                    radiance: self.color(
                        &format!("{what}.color"),
                        &line,
                        m.color.unwrap_or([1.0; 3]),
                    ) * k,
                })
            }
            other => {
                self.error(
                    format!("{what}.type"),
                    &line,
                    format!("{other:?} is not a material type (diffuse, metal, glass, emissive)"),
                );
                None
            }
        }
    }

    fn object(
        &mut self,
        i: usize,
        o: &ObjectSpec,
        materials: &BTreeMap<String, usize>,
        specs: &BTreeMap<String, MaterialSpec>,
        meshes: &mut BTreeMap<String, Arc<Mesh>>,
    ) -> Option<Object> {
        let what = format!("objects[{i}]");
        let line = self.at(&o.kind);
        let kind = o.kind.get_ref().as_str();
        let given = [
            ("center", o.center.is_some()),
            ("radius", o.radius.is_some()),
            ("point", o.point.is_some()),
            ("normal", o.normal.is_some()),
            ("min", o.min.is_some()),
            ("max", o.max.is_some()),
            ("file", o.file.is_some()),
        ];
        let shape = match kind {
            "sphere" => {
                self.only(&what, &line, kind, &given, &["center", "radius"]);
                let center = o.center.unwrap_or([0.0; 3]);
                self.finite(&format!("{what}.center"), &line, &center);
                let radius =
                    self.positive(&format!("{what}.radius"), &line, o.radius.unwrap_or(1.0));
                Shape::Sphere {
                    center: V3::from(center),
                    radius,
                }
            }
            "plane" => {
                self.only(&what, &line, kind, &given, &["point", "normal"]);
                let point = o.point.unwrap_or([0.0; 3]);
                let normal = V3::from(o.normal.unwrap_or([0.0, 1.0, 0.0]));
                self.finite(&format!("{what}.point"), &line, &point);
                if !(normal.is_finite() && normal.length() > 1e-12) {
                    self.error(format!("{what}.normal"), &line, "must be a non-zero vector");
                }
                Shape::Plane {
                    point: V3::from(point),
                    normal: normal.normalized(),
                }
            }
            "box" => {
                self.only(&what, &line, kind, &given, &["min", "max"]);
                let min = o.min.unwrap_or([-0.5; 3]);
                let max = o.max.unwrap_or([0.5; 3]);
                self.finite(&what, &line, &[min, max].concat());
                if (0..3).any(|a| min[a] >= max[a]) {
                    self.error(
                        format!("{what}.max"),
                        &line,
                        "must be above min on every axis",
                    );
                }
                Shape::Cuboid {
                    min: V3::from(min),
                    max: V3::from(max),
                }
            }
            "mesh" => {
                self.only(&what, &line, kind, &given, &["file"]);
                let Some(file) = &o.file else {
                    self.error(
                        format!("{what}.file"),
                        &line,
                        "a mesh needs `file` (an OBJ file in the scene folder)",
                    );
                    return None;
                };
                let field = format!("{what}.file");
                let mesh = match meshes.get(file.get_ref()) {
                    Some(mesh) => mesh.clone(),
                    None => {
                        let path = self.file(&field, file)?;
                        let line = self.at(file);
                        let text = match std::fs::read_to_string(&path) {
                            Ok(text) => text,
                            Err(e) => {
                                self.error(
                                    field,
                                    &line,
                                    format!("reading {}: {e}", file.get_ref()),
                                );
                                return None;
                            }
                        };
                        match Mesh::parse_obj(&text) {
                            Ok(mesh) => {
                                let mesh = Arc::new(mesh);
                                meshes.insert(file.get_ref().clone(), mesh.clone());
                                mesh
                            }
                            Err(e) => {
                                self.error(field, &line, format!("{}: {e}", file.get_ref()));
                                return None;
                            }
                        }
                    }
                };
                Shape::Mesh(mesh)
            }
            other => {
                self.error(
                    format!("{what}.type"),
                    &line,
                    format!("{other:?} is not an object type (sphere, plane, box, mesh)"),
                );
                return None;
            }
        };
        let material = match materials.get(o.material.get_ref()) {
            Some(&m) => m,
            None if specs.contains_key(o.material.get_ref()) => return None, // already reported
            None => {
                let message = no_such("material", o.material.get_ref(), specs.keys());
                self.error(format!("{what}.material"), &self.at(&o.material), message);
                return None;
            }
        };
        let base = Trs {
            translate: V3::from(o.translate.unwrap_or([0.0; 3])),
            rotate: V3::from(o.rotate.unwrap_or([0.0; 3])),
            scale: o.scale.map_or(V3::ONE, ScaleSpec::vector),
        };
        self.trs(&what, &line, base);
        let mut keys: Vec<(f64, Trs)> = Vec::new();
        for (k, key) in o.keys.iter().enumerate() {
            let field = format!("{what}.keys[{k}]");
            let line = self.at(&key.frame);
            let trs = Trs {
                translate: key.translate.map_or(base.translate, V3::from),
                rotate: key.rotate.map_or(base.rotate, V3::from),
                scale: key.scale.map_or(base.scale, ScaleSpec::vector),
            };
            self.key_frame(
                &field,
                &line,
                *key.frame.get_ref(),
                keys.last().map(|k| k.0),
            );
            self.trs(&field, &line, trs);
            keys.push((*key.frame.get_ref(), trs));
        }
        Some(Object {
            shape,
            material,
            base,
            keys,
            interpolation: o.interpolation,
        })
    }

    fn trs(&mut self, what: &str, line: &str, trs: Trs) {
        if !(trs.translate.is_finite() && trs.rotate.is_finite() && trs.scale.is_finite()) {
            self.error(what, line, "translate, rotate and scale must be finite");
        } else if Affine::from_trs(trs.translate, trs.rotate, trs.scale)
            .inverse()
            .is_none()
        {
            self.error(format!("{what}.scale"), line, "must not be 0 on any axis");
        }
    }
}

/// "no <kind> named <name> (the scene has: <known>)".
fn no_such<'a>(kind: &str, name: &str, known: impl Iterator<Item = &'a String>) -> String {
    let known: Vec<&str> = known.map(String::as_str).collect();
    let known = if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    };
    format!("no {kind} named {name:?} (the scene has: {known})")
}

/// Loads a PNG (or any format the image crate reads here) as linear RGB.
fn load_image(path: &Path) -> Result<(u32, u32, Vec<V3>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let image = crate::core::raster::decode(&bytes)
        .map_err(|e| format!("decoding {}: {e}", path.display()))?;
    let rgb = image.to_rgb32f();
    let (width, height) = rgb.dimensions();
    if width == 0 || height == 0 {
        return Err(format!("{} is empty", path.display()));
    }
    // Integer images (PNG) hold sRGB values; float images are linear already.
    let srgb = !matches!(
        image,
        image::DynamicImage::ImageRgb32F(_) | image::DynamicImage::ImageRgba32F(_)
    );
    let pixels = rgb
        .pixels()
        .map(|p| {
            let c = |v: f32| {
                let v = f64::from(v);
                if srgb { srgb_to_linear(v) } else { v }
            };
            v3(c(p.0[0]), c(p.0[1]), c(p.0[2]))
        })
        .collect();
    Ok((width, height, pixels))
}

fn srgb_to_linear(v: f64) -> f64 {
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
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
            let err = Scene::parse(text, None).unwrap_err();
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
