//! The builtin renderer's shapes in object space — sphere, infinite plane, box and
//! triangle mesh (with its own BVH) — and the OBJ reader that makes meshes.

use crate::core::problem::ValueError;
use std::sync::Arc;

use super::bvh::Bvh;
use super::math::{Aabb, Ray, V3, v3};

/// The smallest distance a hit may be at, so a ray leaving a surface does not hit it again.
pub const T_MIN: f64 = 1e-9;

/// A shape in its own coordinates.
#[derive(Debug, Clone)]
pub enum Shape {
    /// A sphere.
    Sphere {
        /// Centre.
        center: V3,
        /// Radius.
        radius: f64,
    },
    /// An infinite plane through `point`.
    Plane {
        /// A point on it.
        point: V3,
        /// Unit normal.
        normal: V3,
    },
    /// An axis-aligned box.
    Cuboid {
        /// Smallest corner.
        min: V3,
        /// Largest corner.
        max: V3,
    },
    /// A triangle mesh.
    Mesh(Arc<Mesh>),
}

/// A hit in object space.
#[derive(Debug, Clone, Copy)]
pub struct LocalHit {
    /// Ray parameter.
    pub t: f64,
    /// Outward normal (not necessarily unit).
    pub normal: V3,
    /// Texture coordinates.
    pub uv: [f64; 2],
}

impl Shape {
    /// Object-space bounds; `None` for the infinite plane.
    pub fn bounds(&self) -> Option<Aabb> {
        match self {
            Shape::Sphere { center, radius } => Some(Aabb {
                min: *center - V3::splat(*radius),
                max: *center + V3::splat(*radius),
            }),
            Shape::Plane { .. } => None,
            Shape::Cuboid { min, max } => Some(Aabb {
                min: *min,
                max: *max,
            }),
            Shape::Mesh(mesh) => Some(mesh.bvh.bounds()),
        }
    }

    /// The nearest hit with `T_MIN < t < t_max`. `ray.dir` need not be unit length.
    pub fn intersect(&self, ray: &Ray, t_max: f64) -> Option<LocalHit> {
        match self {
            Shape::Sphere { center, radius } => {
                let oc = ray.origin - *center;
                let a = ray.dir.dot(ray.dir);
                let half_b = oc.dot(ray.dir);
                let c = oc.dot(oc) - radius * radius;
                let disc = half_b * half_b - a * c;
                if disc < 0.0 {
                    return None;
                }
                let sq = disc.sqrt();
                let near = (-half_b - sq) / a;
                let t = if near > T_MIN {
                    near
                } else {
                    (-half_b + sq) / a
                };
                if !(t > T_MIN && t < t_max) {
                    return None;
                }
                let n = (ray.at(t) - *center) / *radius;
                let u = 0.5 + n.z.atan2(n.x) / (2.0 * std::f64::consts::PI);
                let v = 1.0 - n.y.clamp(-1.0, 1.0).acos() / std::f64::consts::PI;
                Some(LocalHit {
                    t,
                    normal: n,
                    uv: [u, v],
                })
            }
            Shape::Plane { point, normal } => {
                let denom = ray.dir.dot(*normal);
                if denom.abs() < 1e-12 {
                    return None;
                }
                let t = (*point - ray.origin).dot(*normal) / denom;
                if !(t > T_MIN && t < t_max) {
                    return None;
                }
                let (tu, tv) = normal.basis();
                let d = ray.at(t) - *point;
                Some(LocalHit {
                    t,
                    normal: *normal,
                    uv: [d.dot(tu), d.dot(tv)],
                })
            }
            Shape::Cuboid { min, max } => cuboid(ray, *min, *max, t_max),
            Shape::Mesh(mesh) => mesh.intersect(ray, t_max),
        }
    }
}

fn cuboid(ray: &Ray, min: V3, max: V3, t_max: f64) -> Option<LocalHit> {
    let mut t_near = f64::NEG_INFINITY;
    let mut t_far = f64::INFINITY;
    let (mut near_axis, mut far_axis) = (0, 0);
    for i in 0..3 {
        let d = ray.dir.axis(i);
        let o = ray.origin.axis(i);
        if d.abs() < 1e-300 {
            if o < min.axis(i) || o > max.axis(i) {
                return None;
            }
            continue;
        }
        let (mut a, mut b) = ((min.axis(i) - o) / d, (max.axis(i) - o) / d);
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        if a > t_near {
            t_near = a;
            near_axis = i;
        }
        if b < t_far {
            t_far = b;
            far_axis = i;
        }
    }
    if t_near > t_far {
        return None;
    }
    let (t, axis) = if t_near > T_MIN {
        (t_near, near_axis)
    } else {
        (t_far, far_axis)
    };
    if !(t > T_MIN && t < t_max) {
        return None;
    }
    let p = ray.at(t);
    let mid = (min + max) * 0.5;
    let sign = if p.axis(axis) > mid.axis(axis) {
        1.0
    } else {
        -1.0
    };
    let mut normal = [0.0; 3];
    normal[axis] = sign;
    let rel = p - min;
    let (a, b) = match axis {
        0 => (rel.z, rel.y),
        1 => (rel.x, rel.z),
        _ => (rel.x, rel.y),
    };
    Some(LocalHit {
        t,
        normal: V3::from(normal),
        uv: [a, b],
    })
}

/// A triangle mesh with optional per-vertex normals and texture coordinates.
#[derive(Debug, Clone, Default)]
pub struct Mesh {
    positions: Vec<V3>,
    normals: Vec<V3>,
    uvs: Vec<[f64; 2]>,
    triangles: Vec<Triangle>,
    bvh: Bvh,
}

#[derive(Debug, Clone, Copy)]
struct Triangle {
    v: [u32; 3],
    n: Option<[u32; 3]>,
    t: Option<[u32; 3]>,
}

impl Mesh {
    /// Number of triangles.
    pub fn triangle_count(&self) -> usize {
        self.triangles.len()
    }

    fn intersect(&self, ray: &Ray, t_max: f64) -> Option<LocalHit> {
        let mut best: Option<(u32, f64, f64, f64)> = None;
        self.bvh.traverse(ray, t_max, |i, t_max| {
            let tri = &self.triangles[i as usize];
            let [a, b, c] = tri.v.map(|k| self.positions[k as usize]);
            // Möller–Trumbore.
            let e1 = b - a;
            let e2 = c - a;
            let p = ray.dir.cross(e2);
            let det = e1.dot(p);
            if det.abs() < 1e-300 {
                return None;
            }
            let inv = 1.0 / det;
            let s = ray.origin - a;
            let u = s.dot(p) * inv;
            if !(0.0..=1.0).contains(&u) {
                return None;
            }
            let q = s.cross(e1);
            let v = ray.dir.dot(q) * inv;
            if v < 0.0 || u + v > 1.0 {
                return None;
            }
            let t = e2.dot(q) * inv;
            if t > T_MIN && t < t_max {
                best = Some((i, t, u, v));
                Some(t)
            } else {
                None
            }
        });
        let (i, t, u, v) = best?;
        let tri = &self.triangles[i as usize];
        let w = 1.0 - u - v;
        let [a, b, c] = tri.v.map(|k| self.positions[k as usize]);
        let geometric = (b - a).cross(c - a);
        let normal = match tri.n {
            Some([na, nb, nc]) => {
                let n = self.normals[na as usize] * w
                    + self.normals[nb as usize] * u
                    + self.normals[nc as usize] * v;
                // Keep the shading normal on the geometric side.
                if n.dot(geometric) < 0.0 { -n } else { n }
            }
            None => geometric,
        };
        let uv = match tri.t {
            Some([ta, tb, tc]) => {
                let (ta, tb, tc) = (
                    self.uvs[ta as usize],
                    self.uvs[tb as usize],
                    self.uvs[tc as usize],
                );
                [
                    ta[0] * w + tb[0] * u + tc[0] * v,
                    ta[1] * w + tb[1] * u + tc[1] * v,
                ]
            }
            None => [u, v],
        };
        Some(LocalHit { t, normal, uv })
    }

    /// Reads a Wavefront OBJ file: `v`, `vt`, `vn` and `f` (polygons are split into
    /// triangle fans; negative indices count from the end). Other statements (`o`, `g`,
    /// `s`, `usemtl`, `mtllib`, …) are ignored. Errors give the line.
    pub fn parse_obj(text: &str) -> Result<Mesh, ValueError> {
        Mesh::parse_obj_text(text).map_err(ValueError)
    }

    fn parse_obj_text(text: &str) -> Result<Mesh, String> {
        let mut mesh = Mesh::default();
        for (n, line) in text.lines().enumerate() {
            let at = |msg: String| format!("line {}: {msg}", n + 1);
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(tag) = words.next() else { continue };
            let numbers =
                |words: std::str::SplitWhitespace, want: usize| -> Result<Vec<f64>, String> {
                    let values: Vec<f64> = words
                        .map(|w| {
                            w.parse::<f64>()
                                .ok()
                                .filter(|x| x.is_finite())
                                .ok_or_else(|| at(format!("{w:?} is not a number")))
                        })
                        .collect::<Result<_, _>>()?;
                    if values.len() < want {
                        return Err(at(format!(
                            "`{tag}` needs {want} numbers, found {}",
                            values.len()
                        )));
                    }
                    Ok(values)
                };
            match tag {
                "v" => {
                    let p = numbers(words, 3)?;
                    mesh.positions.push(v3(p[0], p[1], p[2]));
                }
                "vn" => {
                    let p = numbers(words, 3)?;
                    mesh.normals.push(v3(p[0], p[1], p[2]).normalized());
                }
                "vt" => {
                    let p = numbers(words, 2)?;
                    mesh.uvs.push([p[0], p[1]]);
                }
                "f" => {
                    let mut corners = Vec::new();
                    for word in words {
                        corners.push(mesh.corner(word).map_err(at)?);
                    }
                    if corners.len() < 3 {
                        return Err(at(format!(
                            "a face needs 3 corners, found {}",
                            corners.len()
                        )));
                    }
                    for k in 1..corners.len() - 1 {
                        let (a, b, c) = (corners[0], corners[k], corners[k + 1]);
                        mesh.triangles.push(Triangle {
                            v: [a.0, b.0, c.0],
                            n: a.2.zip(b.2).zip(c.2).map(|((a, b), c)| [a, b, c]),
                            t: a.1.zip(b.1).zip(c.1).map(|((a, b), c)| [a, b, c]),
                        });
                    }
                }
                _ => {}
            }
        }
        if mesh.triangles.is_empty() {
            return Err("no faces (`f` lines)".into());
        }
        let bounds: Vec<Aabb> = mesh
            .triangles
            .iter()
            .map(|t| {
                t.v.iter()
                    .fold(Aabb::EMPTY, |b, &k| b.with(mesh.positions[k as usize]))
            })
            .collect();
        mesh.bvh = Bvh::build(&bounds);
        Ok(mesh)
    }

    /// Parses one face corner, `v`, `v/t`, `v//n` or `v/t/n`, into indices.
    fn corner(&self, word: &str) -> Result<(u32, Option<u32>, Option<u32>), String> {
        let mut parts = word.split('/');
        let index = |part: Option<&str>, len: usize, what: &str| -> Result<Option<u32>, String> {
            let Some(part) = part.filter(|p| !p.is_empty()) else {
                return Ok(None);
            };
            let i: i64 = part
                .parse()
                .map_err(|_| format!("face corner {word:?}: {part:?} is not an index"))?;
            let resolved = if i < 0 { len as i64 + i } else { i - 1 };
            if i == 0 || resolved < 0 || resolved >= len as i64 {
                return Err(format!(
                    "face corner {word:?}: {what} index {i} is out of range (there are {len})"
                ));
            }
            Ok(Some(resolved as u32))
        };
        let v = index(parts.next(), self.positions.len(), "vertex")?
            .ok_or_else(|| format!("face corner {word:?} has no vertex index"))?;
        let t = index(parts.next(), self.uvs.len(), "texture coordinate")?;
        let n = index(parts.next(), self.normals.len(), "normal")?;
        Ok((v, t, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ray(origin: V3, dir: V3) -> Ray {
        Ray { origin, dir }
    }

    #[test]
    fn shapes_are_hit_where_expected() {
        let z = v3(0.0, 0.0, 1.0);
        let from = v3(0.0, 0.0, -5.0);
        let cases: Vec<(Shape, f64, V3)> = vec![
            (
                Shape::Sphere {
                    center: V3::ZERO,
                    radius: 1.0,
                },
                4.0,
                v3(0.0, 0.0, -1.0),
            ),
            (
                Shape::Plane {
                    point: V3::ZERO,
                    normal: v3(0.0, 0.0, -1.0),
                },
                5.0,
                v3(0.0, 0.0, -1.0),
            ),
            (
                Shape::Cuboid {
                    min: V3::splat(-2.0),
                    max: V3::splat(2.0),
                },
                3.0,
                v3(0.0, 0.0, -1.0),
            ),
        ];
        for (shape, t, normal) in cases {
            let hit = shape.intersect(&ray(from, z), f64::INFINITY).unwrap();
            assert!((hit.t - t).abs() < 1e-12, "{shape:?}: t = {}", hit.t);
            assert!(
                (hit.normal.normalized() - normal).length() < 1e-12,
                "{shape:?}"
            );
            assert!(
                shape.intersect(&ray(from, -z), f64::INFINITY).is_none(),
                "{shape:?}"
            );
        }
        // From inside, the far side is hit.
        let inside = Shape::Sphere {
            center: V3::ZERO,
            radius: 1.0,
        }
        .intersect(&ray(V3::ZERO, z), f64::INFINITY)
        .unwrap();
        assert!((inside.t - 1.0).abs() < 1e-12);
    }

    #[test]
    fn obj_quads_become_triangles_and_are_hit() {
        let obj = "# a unit quad at z = 0\nv -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nf 1/1 2/2 3/3 4/4\n";
        let mesh = Mesh::parse_obj(obj).unwrap();
        assert_eq!(mesh.triangle_count(), 2);
        let hit = Shape::Mesh(Arc::new(mesh))
            .intersect(&ray(v3(0.5, 0.5, -2.0), v3(0.0, 0.0, 1.0)), f64::INFINITY)
            .unwrap();
        assert!((hit.t - 2.0).abs() < 1e-12);
        assert!((hit.uv[0] - 0.75).abs() < 1e-12 && (hit.uv[1] - 0.75).abs() < 1e-12);
    }

    #[test]
    fn obj_errors_name_the_line() {
        for (text, want) in [
            ("v 0 0 0\nv 1 0 0\nf 1 2 3\n", "line 3"),
            ("v 0 0\n", "line 1"),
            ("v 0 0 x\n", "line 1"),
            ("v 0 0 0\n", "no faces"),
            ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "line 4"),
            (
                "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1/4 2 3\n",
                "texture coordinate index 4",
            ),
        ] {
            let err = Mesh::parse_obj(text).unwrap_err();
            assert!(err.message().contains(want), "{text:?}: {err}");
        }
    }
}
