//! Vectors, affine transforms, bounding boxes, rays and the per-sample random generator of
//! the builtin renderer. Everything is `f64` and free of global state, so a pixel's value
//! depends on its inputs alone.

use std::ops::{Add, Div, Mul, Neg, Sub};

/// A 3-vector: a point, a direction or an RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct V3 {
    /// x, or red.
    pub x: f64,
    /// y, or green.
    pub y: f64,
    /// z, or blue.
    pub z: f64,
}

/// Shorthand constructor.
pub const fn v3(x: f64, y: f64, z: f64) -> V3 {
    V3 { x, y, z }
}

impl V3 {
    /// All zeros.
    pub const ZERO: V3 = v3(0.0, 0.0, 0.0);
    /// All ones.
    pub const ONE: V3 = v3(1.0, 1.0, 1.0);

    /// Same value in every component.
    pub const fn splat(v: f64) -> V3 {
        v3(v, v, v)
    }

    /// Dot product.
    pub fn dot(self, o: V3) -> f64 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }

    /// Cross product.
    pub fn cross(self, o: V3) -> V3 {
        v3(
            self.y * o.z - self.z * o.y,
            self.z * o.x - self.x * o.z,
            self.x * o.y - self.y * o.x,
        )
    }

    /// Euclidean length.
    pub fn length(self) -> f64 {
        self.dot(self).sqrt()
    }

    /// Unit vector in the same direction (zero stays zero).
    pub fn normalized(self) -> V3 {
        let len = self.length();
        if len > 0.0 { self / len } else { self }
    }

    /// Component-wise minimum.
    pub fn min(self, o: V3) -> V3 {
        v3(self.x.min(o.x), self.y.min(o.y), self.z.min(o.z))
    }

    /// Component-wise maximum.
    pub fn max(self, o: V3) -> V3 {
        v3(self.x.max(o.x), self.y.max(o.y), self.z.max(o.z))
    }

    /// Component `i` (0 = x).
    pub fn axis(self, i: usize) -> f64 {
        match i {
            0 => self.x,
            1 => self.y,
            _ => self.z,
        }
    }

    /// The largest component.
    pub fn max_component(self) -> f64 {
        self.x.max(self.y).max(self.z)
    }

    /// Rec. 709 luminance.
    pub fn luminance(self) -> f64 {
        0.2126 * self.x + 0.7152 * self.y + 0.0722 * self.z
    }

    /// Linear interpolation towards `o`.
    pub fn lerp(self, o: V3, t: f64) -> V3 {
        self + (o - self) * t
    }

    /// Whether every component is finite.
    pub fn is_finite(self) -> bool {
        self.x.is_finite() && self.y.is_finite() && self.z.is_finite()
    }

    /// Mirror reflection of `self` about `n`.
    pub fn reflect(self, n: V3) -> V3 {
        self - n * (2.0 * self.dot(n))
    }

    /// Two unit vectors completing `self` (a unit vector) to an orthonormal basis.
    pub fn basis(self) -> (V3, V3) {
        // Duff et al., "Building an orthonormal basis, revisited".
        let sign = 1f64.copysign(self.z);
        let a = -1.0 / (sign + self.z);
        let b = self.x * self.y * a;
        (
            v3(1.0 + sign * self.x * self.x * a, sign * b, -sign * self.x),
            v3(b, sign + self.y * self.y * a, -self.y),
        )
    }

    /// As `f32` RGB.
    pub fn to_f32(self) -> [f32; 3] {
        [self.x as f32, self.y as f32, self.z as f32]
    }
}

impl From<[f64; 3]> for V3 {
    fn from(a: [f64; 3]) -> V3 {
        v3(a[0], a[1], a[2])
    }
}

impl Add for V3 {
    type Output = V3;
    fn add(self, o: V3) -> V3 {
        v3(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}

impl Sub for V3 {
    type Output = V3;
    fn sub(self, o: V3) -> V3 {
        v3(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}

impl Mul<f64> for V3 {
    type Output = V3;
    fn mul(self, k: f64) -> V3 {
        v3(self.x * k, self.y * k, self.z * k)
    }
}

impl Mul for V3 {
    type Output = V3;
    fn mul(self, o: V3) -> V3 {
        v3(self.x * o.x, self.y * o.y, self.z * o.z)
    }
}

impl Div<f64> for V3 {
    type Output = V3;
    fn div(self, k: f64) -> V3 {
        v3(self.x / k, self.y / k, self.z / k)
    }
}

impl Neg for V3 {
    type Output = V3;
    fn neg(self) -> V3 {
        v3(-self.x, -self.y, -self.z)
    }
}

/// A ray: `origin + t * dir`. `dir` is unit length in world space and carried untouched
/// into object space, so `t` means the same distance in both.
#[derive(Debug, Clone, Copy)]
pub struct Ray {
    /// Where it starts.
    pub origin: V3,
    /// Where it goes.
    pub dir: V3,
}

impl Ray {
    /// The point at parameter `t`.
    pub fn at(&self, t: f64) -> V3 {
        self.origin + self.dir * t
    }
}

/// An affine transform: a 3×3 linear part (rows) and a translation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    m: [[f64; 3]; 3],
    t: V3,
}

impl Affine {
    /// The identity.
    pub const IDENTITY: Affine = Affine {
        m: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        t: V3::ZERO,
    };

    /// Scale, then rotate about x, y and z (degrees, in that order), then translate.
    pub fn from_trs(translate: V3, rotate_degrees: V3, scale: V3) -> Affine {
        let (sx, cx) = rotate_degrees.x.to_radians().sin_cos();
        let (sy, cy) = rotate_degrees.y.to_radians().sin_cos();
        let (sz, cz) = rotate_degrees.z.to_radians().sin_cos();
        let rx = [[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]];
        let ry = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
        let rz = [[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]];
        let r = matmul(rz, matmul(ry, rx));
        let mut m = r;
        for row in &mut m {
            row[0] *= scale.x;
            row[1] *= scale.y;
            row[2] *= scale.z;
        }
        Affine { m, t: translate }
    }

    /// Applies the linear part to a direction.
    pub fn vector(&self, v: V3) -> V3 {
        let m = &self.m;
        v3(
            m[0][0] * v.x + m[0][1] * v.y + m[0][2] * v.z,
            m[1][0] * v.x + m[1][1] * v.y + m[1][2] * v.z,
            m[2][0] * v.x + m[2][1] * v.y + m[2][2] * v.z,
        )
    }

    /// Transforms a point.
    pub fn point(&self, p: V3) -> V3 {
        self.vector(p) + self.t
    }

    /// Applies the transposed linear part: with the inverse transform, this carries
    /// object-space normals to world space.
    pub fn transpose_vector(&self, v: V3) -> V3 {
        let m = &self.m;
        v3(
            m[0][0] * v.x + m[1][0] * v.y + m[2][0] * v.z,
            m[0][1] * v.x + m[1][1] * v.y + m[2][1] * v.z,
            m[0][2] * v.x + m[1][2] * v.y + m[2][2] * v.z,
        )
    }

    /// The inverse, or `None` if the transform is singular (a zero scale).
    pub fn inverse(&self) -> Option<Affine> {
        let m = &self.m;
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        if det.abs() < 1e-12 || !det.is_finite() {
            return None;
        }
        let inv_det = 1.0 / det;
        let c = |r0: usize, c0: usize, r1: usize, c1: usize| {
            m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]
        };
        let inv = [
            [
                c(1, 1, 2, 2) * inv_det,
                -c(0, 1, 2, 2) * inv_det,
                c(0, 1, 1, 2) * inv_det,
            ],
            [
                -c(1, 0, 2, 2) * inv_det,
                c(0, 0, 2, 2) * inv_det,
                -c(0, 0, 1, 2) * inv_det,
            ],
            [
                c(1, 0, 2, 1) * inv_det,
                -c(0, 0, 2, 1) * inv_det,
                c(0, 0, 1, 1) * inv_det,
            ],
        ];
        let mut out = Affine {
            m: inv,
            t: V3::ZERO,
        };
        out.t = -out.vector(self.t);
        Some(out)
    }
}

fn matmul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// An axis-aligned bounding box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aabb {
    /// Smallest corner.
    pub min: V3,
    /// Largest corner.
    pub max: V3,
}

impl Aabb {
    /// The empty box (the identity of `union`).
    pub const EMPTY: Aabb = Aabb {
        min: V3::splat(f64::INFINITY),
        max: V3::splat(f64::NEG_INFINITY),
    };

    /// The smallest box holding both.
    pub fn union(self, o: Aabb) -> Aabb {
        Aabb {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }

    /// The box grown to hold `p`.
    pub fn with(self, p: V3) -> Aabb {
        Aabb {
            min: self.min.min(p),
            max: self.max.max(p),
        }
    }

    /// The centre.
    pub fn center(&self) -> V3 {
        (self.min + self.max) * 0.5
    }

    /// The box of the eight transformed corners.
    pub fn transformed(&self, a: &Affine) -> Aabb {
        let mut out = Aabb::EMPTY;
        for i in 0..8 {
            let corner = v3(
                if i & 1 == 0 { self.min.x } else { self.max.x },
                if i & 2 == 0 { self.min.y } else { self.max.y },
                if i & 4 == 0 { self.min.z } else { self.max.z },
            );
            out = out.with(a.point(corner));
        }
        out
    }

    /// Entry distance of a ray (with precomputed `1/dir`) if it meets the box before `t_max`.
    pub fn hit(&self, origin: V3, inv_dir: V3, t_max: f64) -> Option<f64> {
        let mut t0 = 0.0f64;
        let mut t1 = t_max;
        for i in 0..3 {
            let inv = inv_dir.axis(i);
            let o = origin.axis(i);
            let mut near = (self.min.axis(i) - o) * inv;
            let mut far = (self.max.axis(i) - o) * inv;
            if near > far {
                std::mem::swap(&mut near, &mut far);
            }
            // NaN (0 * inf) keeps the current bounds.
            if near > t0 {
                t0 = near;
            }
            if far < t1 {
                t1 = far;
            }
            if t0 > t1 {
                return None;
            }
        }
        Some(t0)
    }
}

/// A PCG32 generator seeded from the identity of one pixel sample, so every random number
/// a pixel uses is fixed by (frame, x, y, sample) alone.
pub struct Rng(u64);

impl Rng {
    /// The generator of sample `sample` of pixel (`x`, `y`) in frame `frame`.
    pub fn seeded(frame: u32, x: u32, y: u32, sample: u32) -> Rng {
        let mut h = 0x243f_6a88_85a3_08d3u64;
        for v in [frame, x, y, sample] {
            h = splitmix(h ^ u64::from(v));
        }
        Rng(h)
    }

    /// A number in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        let old = self.0;
        self.0 = old
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        f64::from(xorshifted.rotate_right(rot)) / 4_294_967_296.0
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A cosine-weighted direction about the unit normal `n`.
pub fn cosine_direction(n: V3, rng: &mut Rng) -> V3 {
    let (u, v) = (rng.uniform(), rng.uniform());
    let r = u.sqrt();
    let phi = 2.0 * std::f64::consts::PI * v;
    let (t, b) = n.basis();
    (t * (r * phi.cos()) + b * (r * phi.sin()) + n * (1.0 - u).max(0.0).sqrt()).normalized()
}

/// A direction within `cos_max` of the unit axis `a`, uniform over that cone.
pub fn cone_direction(a: V3, cos_max: f64, rng: &mut Rng) -> V3 {
    let (u, v) = (rng.uniform(), rng.uniform());
    let cos = 1.0 - u * (1.0 - cos_max);
    let sin = (1.0 - cos * cos).max(0.0).sqrt();
    let phi = 2.0 * std::f64::consts::PI * v;
    let (t, b) = a.basis();
    (t * (sin * phi.cos()) + b * (sin * phi.sin()) + a * cos).normalized()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: V3, b: V3) -> bool {
        (a - b).length() < 1e-9
    }

    #[test]
    fn inverse_undoes_the_transform() {
        let a = Affine::from_trs(v3(1.0, -2.0, 3.0), v3(10.0, 45.0, -30.0), v3(2.0, 0.5, 1.5));
        let inv = a.inverse().unwrap();
        for p in [V3::ZERO, v3(1.0, 2.0, 3.0), v3(-4.0, 0.5, 9.0)] {
            assert!(close(inv.point(a.point(p)), p));
        }
        assert!(
            Affine::from_trs(V3::ZERO, V3::ZERO, v3(1.0, 0.0, 1.0))
                .inverse()
                .is_none()
        );
    }

    #[test]
    fn rotation_about_y_turns_x_towards_minus_z() {
        let a = Affine::from_trs(V3::ZERO, v3(0.0, 90.0, 0.0), V3::ONE);
        assert!(close(a.vector(v3(1.0, 0.0, 0.0)), v3(0.0, 0.0, -1.0)));
    }

    #[test]
    fn basis_is_orthonormal() {
        for n in [
            v3(0.0, 0.0, 1.0),
            v3(0.0, 0.0, -1.0),
            v3(1.0, 2.0, 3.0).normalized(),
        ] {
            let (t, b) = n.basis();
            assert!(t.dot(n).abs() < 1e-12 && b.dot(n).abs() < 1e-12 && t.dot(b).abs() < 1e-12);
            assert!((t.length() - 1.0).abs() < 1e-12 && (b.length() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn boxes_are_hit_only_in_front() {
        let b = Aabb {
            min: V3::splat(-1.0),
            max: V3::ONE,
        };
        let dir = v3(0.0, 0.0, 1.0);
        let inv = v3(1.0 / dir.x, 1.0 / dir.y, 1.0 / dir.z);
        assert_eq!(b.hit(v3(0.0, 0.0, -5.0), inv, f64::INFINITY), Some(4.0));
        assert_eq!(b.hit(v3(0.0, 0.0, 5.0), inv, f64::INFINITY), None);
        assert_eq!(b.hit(v3(0.0, 0.0, -5.0), inv, 3.0), None);
    }
}
