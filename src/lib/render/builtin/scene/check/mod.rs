//! The scene checker: every field of the file checked and resolved into a [`Scene`], each
//! problem filed with its field and line. Camera, sky, lights and textures here;
//! materials and objects in `objects`.

mod objects;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use super::file::{CameraSpec, LightSpec, SceneFile, TextureSpec};
use super::{CameraTrack, Light, Pose, Scene, Sky, Texture};
use crate::core::job::wire::line_of;
use crate::core::paths::check_relative_path;
use crate::core::problem::Problems;
use crate::render::builtin::math::V3;
use crate::render::builtin::shapes::Mesh;
use objects::load_image;

/// Where a problem is: the line of the file, or nowhere in particular (a section the
/// file may not even have, such as a missing `[sky]`).
type Line = Option<u32>;

/// Checks one scene file, collecting every problem.
pub(super) struct Checker<'a> {
    /// The file's text, for line numbers.
    pub(super) text: &'a str,
    /// The scene's folder, where the files it names are.
    pub(super) dir: Option<&'a Path>,
    /// What is wrong so far.
    pub(super) problems: Problems,
}

impl Checker<'_> {
    fn at<T>(&self, spanned: &Spanned<T>) -> Line {
        Some(line_of(self.text, spanned.span().start))
    }

    fn error(
        &mut self,
        field: impl std::fmt::Display,
        line: Line,
        message: impl std::fmt::Display,
    ) {
        match line {
            Some(line) => self.problems.add_at(field.to_string(), line, message),
            None => self.problems.add(field.to_string(), message),
        }
    }

    fn finite(&mut self, field: &str, line: Line, values: &[f64]) {
        if values.iter().any(|v| !v.is_finite()) {
            self.error(field, line, "must be finite numbers");
        }
    }

    fn color(&mut self, field: &str, line: Line, c: [f64; 3]) -> V3 {
        if c.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
            self.error(field, line, "colour components must be 0 or more");
        }
        V3::from(c)
    }

    fn positive(&mut self, field: &str, line: Line, v: f64) -> f64 {
        if !(v.is_finite() && v > 0.0) {
            self.error(field, line, format!("{v} must be above 0"));
        }
        v
    }

    fn non_negative(&mut self, field: &str, line: Line, v: f64) -> f64 {
        if !(v.is_finite() && v >= 0.0) {
            self.error(field, line, format!("{v} must be 0 or more"));
        }
        v
    }

    /// Reports fields that do not apply to this `type`.
    fn only(
        &mut self,
        what: &str,
        line: Line,
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
        line: Line,
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
        if let Err(e) = check_relative_path(name.get_ref()) {
            self.error(field, line, e);
            return None;
        }
        match self.dir {
            Some(dir) => Some(dir.join(name.get_ref())),
            None => {
                self.error(
                    field,
                    line,
                    "files need a scene folder (load the scene from a file)",
                );
                None
            }
        }
    }
}

impl Checker<'_> {
    /// The checked scene of `file`.
    pub(super) fn scene(&mut self, file: SceneFile) -> Scene {
        let camera = self.camera(&file.camera);
        let sky = {
            let s = &file.sky;
            let k = self.non_negative("sky.intensity", None, s.intensity);
            Sky {
                zenith: self.color("sky.zenith", None, s.zenith) * k,
                horizon: self.color("sky.horizon", None, s.horizon) * k,
                ground: self.color("sky.ground", None, s.ground) * k,
            }
        };
        let ao_distance = self.positive("passes.ao_distance", None, file.passes.ao_distance);
        let depth_far = self.positive("passes.depth_far", None, file.passes.depth_far);
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
        let line = None;
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
                    line,
                    "must be between 0 and 180 degrees",
                );
            }
            self.key_frame(
                &field,
                line,
                *k.frame.get_ref(),
                keys.last().map(|k: &(f64, Pose)| k.0),
            );
            if (pose.target - pose.position).length() < 1e-9
                || !(pose.target - pose.position).is_finite()
            {
                self.error(&field, line, "position and target must differ");
            } else if (pose.target - pose.position)
                .normalized()
                .cross(up)
                .length()
                < 1e-9
            {
                self.error(
                    &field,
                    line,
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

    fn key_frame(&mut self, field: &str, line: Line, frame: f64, previous: Option<f64>) {
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
        let color = self.color(&format!("{what}.color"), line, l.color.unwrap_or([1.0; 3]));
        let intensity = self.non_negative(
            &format!("{what}.intensity"),
            line,
            l.intensity.unwrap_or(1.0),
        );
        let emitted = color * intensity;
        match kind {
            "point" => {
                self.only(&what, line, kind, &given, &["position", "radius"]);
                let position = self.required(&what, line, "position", kind, l.position)?;
                self.finite(&format!("{what}.position"), line, &position);
                let radius =
                    self.non_negative(&format!("{what}.radius"), line, l.radius.unwrap_or(0.0));
                Some(Light::Point {
                    position: V3::from(position),
                    radius,
                    power: emitted,
                })
            }
            "area" => {
                self.only(
                    &what,
                    line,
                    kind,
                    &given,
                    &["corner", "edge_u", "edge_v", "two_sided"],
                );
                let corner = self.required(&what, line, "corner", kind, l.corner)?;
                let edge_u = V3::from(self.required(&what, line, "edge_u", kind, l.edge_u)?);
                let edge_v = V3::from(self.required(&what, line, "edge_v", kind, l.edge_v)?);
                let normal = edge_u.cross(edge_v);
                let area = normal.length();
                if !(area.is_finite() && area > 1e-12) {
                    self.error(&what, line, "edge_u and edge_v must span a rectangle");
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
                self.only(&what, line, kind, &given, &["direction", "angle"]);
                let direction =
                    V3::from(self.required(&what, line, "direction", kind, l.direction)?);
                if !(direction.is_finite() && direction.length() > 1e-12) {
                    self.error(
                        format!("{what}.direction"),
                        line,
                        "must be a non-zero vector",
                    );
                    return None;
                }
                let angle = l.angle.unwrap_or(0.53);
                if !(angle.is_finite() && (0.0..90.0).contains(&angle)) {
                    self.error(
                        format!("{what}.angle"),
                        line,
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
                    line,
                    format!("{other:?} is not a light type (point, area, sun)"),
                );
                None
            }
        }
    }

    fn texture(&mut self, name: &str, t: &TextureSpec) -> Option<Texture> {
        let what = format!("textures.{name}");
        let line = self.at(&t.kind);
        let size = self.positive(&format!("{what}.size"), line, t.size.unwrap_or(1.0));
        let given = [("colors", t.colors.is_some()), ("file", t.file.is_some())];
        match t.kind.get_ref().as_str() {
            "checker" => {
                self.only(&what, line, "checker", &given, &["colors"]);
                let [a, b] = t.colors.unwrap_or([[0.8; 3], [0.2; 3]]);
                Some(Texture::Checker {
                    colors: [
                        self.color(&format!("{what}.colors"), line, a),
                        self.color(&format!("{what}.colors"), line, b),
                    ],
                    size,
                })
            }
            "image" => {
                self.only(&what, line, "image", &given, &["file"]);
                let Some(file) = &t.file else {
                    self.error(
                        format!("{what}.file"),
                        line,
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
                        self.error(field, line, e);
                        None
                    }
                }
            }
            other => {
                self.error(
                    format!("{what}.type"),
                    line,
                    format!("{other:?} is not a texture type (checker, image)"),
                );
                None
            }
        }
    }
}
