//! Checking materials and objects: colours, textures and materials by name, shapes and
//! their meshes, keyframed transforms.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::super::file::{MaterialSpec, ObjectSpec, ScaleSpec, TextureSpec};
use super::super::{Color, Material, Object, Texture, Trs};
use super::{Checker, Line};
use crate::render::builtin::math::{Affine, V3, v3};
use crate::render::builtin::shapes::{Mesh, Shape};

impl Checker<'_> {
    pub(super) fn material(
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
                line,
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
                        c.error(format!("{what}.texture"), c.at(t), message);
                        return None;
                    }
                },
            };
            Some(Color { base, texture })
        };
        match kind {
            "diffuse" => {
                self.only(&what, line, kind, &given, &["texture"]);
                Some(Material::Diffuse {
                    color: color(self, [0.8; 3])?,
                })
            }
            "metal" => {
                self.only(&what, line, kind, &given, &["texture", "roughness"]);
                let roughness = m.roughness.unwrap_or(0.0);
                if !(roughness.is_finite() && (0.0..=1.0).contains(&roughness)) {
                    self.error(format!("{what}.roughness"), line, "must be from 0 to 1");
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
                self.only(&what, line, kind, &given, &["ior"]);
                let ior = m.ior.unwrap_or(1.5);
                if !(ior.is_finite() && (1.0..=4.0).contains(&ior)) {
                    self.error(format!("{what}.ior"), line, "must be from 1 to 4");
                }
                Some(Material::Glass {
                    color: self.color(&format!("{what}.color"), line, m.color.unwrap_or([1.0; 3])),
                    ior,
                })
            }
            "emissive" => {
                self.only(&what, line, kind, &given, &["intensity"]);
                let k = self.non_negative(
                    &format!("{what}.intensity"),
                    line,
                    m.intensity.unwrap_or(1.0),
                );
                Some(Material::Emissive {
                    radiance: self.color(
                        &format!("{what}.color"),
                        line,
                        m.color.unwrap_or([1.0; 3]),
                    ) * k,
                })
            }
            other => {
                self.error(
                    format!("{what}.type"),
                    line,
                    format!("{other:?} is not a material type (diffuse, metal, glass, emissive)"),
                );
                None
            }
        }
    }

    pub(super) fn object(
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
                self.only(&what, line, kind, &given, &["center", "radius"]);
                let center = o.center.unwrap_or([0.0; 3]);
                self.finite(&format!("{what}.center"), line, &center);
                let radius =
                    self.positive(&format!("{what}.radius"), line, o.radius.unwrap_or(1.0));
                Shape::Sphere {
                    center: V3::from(center),
                    radius,
                }
            }
            "plane" => {
                self.only(&what, line, kind, &given, &["point", "normal"]);
                let point = o.point.unwrap_or([0.0; 3]);
                let normal = V3::from(o.normal.unwrap_or([0.0, 1.0, 0.0]));
                self.finite(&format!("{what}.point"), line, &point);
                if !(normal.is_finite() && normal.length() > 1e-12) {
                    self.error(format!("{what}.normal"), line, "must be a non-zero vector");
                }
                Shape::Plane {
                    point: V3::from(point),
                    normal: normal.normalized(),
                }
            }
            "box" => {
                self.only(&what, line, kind, &given, &["min", "max"]);
                let min = o.min.unwrap_or([-0.5; 3]);
                let max = o.max.unwrap_or([0.5; 3]);
                self.finite(&what, line, &[min, max].concat());
                if (0..3).any(|a| min[a] >= max[a]) {
                    self.error(
                        format!("{what}.max"),
                        line,
                        "must be above min on every axis",
                    );
                }
                Shape::Cuboid {
                    min: V3::from(min),
                    max: V3::from(max),
                }
            }
            "mesh" => {
                self.only(&what, line, kind, &given, &["file"]);
                let Some(file) = &o.file else {
                    self.error(
                        format!("{what}.file"),
                        line,
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
                                self.error(field, line, format!("reading {}: {e}", file.get_ref()));
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
                                self.error(field, line, format!("{}: {e}", file.get_ref()));
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
                    line,
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
                self.error(format!("{what}.material"), self.at(&o.material), message);
                return None;
            }
        };
        let base = Trs {
            translate: V3::from(o.translate.unwrap_or([0.0; 3])),
            rotate: V3::from(o.rotate.unwrap_or([0.0; 3])),
            scale: o.scale.map_or(V3::ONE, ScaleSpec::vector),
        };
        self.trs(&what, line, base);
        let mut keys: Vec<(f64, Trs)> = Vec::new();
        for (k, key) in o.keys.iter().enumerate() {
            let field = format!("{what}.keys[{k}]");
            let line = self.at(&key.frame);
            let trs = Trs {
                translate: key.translate.map_or(base.translate, V3::from),
                rotate: key.rotate.map_or(base.rotate, V3::from),
                scale: key.scale.map_or(base.scale, ScaleSpec::vector),
            };
            self.key_frame(&field, line, *key.frame.get_ref(), keys.last().map(|k| k.0));
            self.trs(&field, line, trs);
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

    fn trs(&mut self, what: &str, line: Line, trs: Trs) {
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

pub(super) fn no_such<'a>(
    kind: &str,
    name: &str,
    known: impl Iterator<Item = &'a String>,
) -> String {
    let known: Vec<&str> = known.map(String::as_str).collect();
    let known = if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    };
    format!("no {kind} named {name:?} (the scene has: {known})")
}

/// Loads a PNG (or any format the image crate reads here) as linear RGB.
pub(super) fn load_image(path: &Path) -> Result<(u32, u32, Vec<V3>), String> {
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
