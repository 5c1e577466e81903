//! Path tracing of one frame: the frame's placed objects and camera, ray intersection,
//! light sampling, and the estimator that splits each sample's light by how it reached
//! the camera.
//!
//! # How the light passes add up
//!
//! Every path's light is counted in exactly one of three light passes, chosen by the first
//! surface it meets:
//!
//! - `emission`: light seen directly — an emissive surface or the sky hit by the camera ray;
//! - `diffuse`: light that reached a diffuse surface first and was scattered from there
//!   (direct light from the lights and everything bounced after);
//! - `specular`: light that first met a metal or glass surface (reflections, refractions,
//!   glossy highlights, and everything bounced after).
//!
//! So `beauty = emission + diffuse + specular` for every sample, and for every pixel up to
//! float rounding (the unit tests check 1e-4). The other passes are data about the first
//! surface: `albedo` (its colour), `normal` (facing the camera, mapped to 0–1), `depth`
//! (distance from the camera), `shadow` (the share of the lights' unoccluded light that is
//! blocked) and `ao` (the share of the hemisphere open within `passes.ao_distance`). These
//! draw their random numbers from a second stream, so asking for them never changes the
//! light passes.

use super::bvh::Bvh;
use super::math::{Affine, Ray, Rng, V3, cone_direction, cosine_direction};
use super::scene::{Camera, Light, Material, Scene};

/// A surface hit in world space.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    /// Distance along the ray.
    pub t: f64,
    /// Where.
    pub point: V3,
    /// Unit outward normal.
    pub normal: V3,
    /// Texture coordinates.
    pub uv: [f64; 2],
    /// Index into the scene's materials.
    pub material: usize,
}

struct Instance {
    to_object: Affine,
    object: usize,
}

/// A scene placed at one frame.
pub struct Frame<'a> {
    scene: &'a Scene,
    /// The camera at this frame.
    pub camera: Camera,
    instances: Vec<Instance>,
    bounded: Vec<u32>,
    unbounded: Vec<u32>,
    bvh: Bvh,
}

/// One path sample's contributions to every pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Light seen directly.
    pub emission: V3,
    /// Light scattered first by a diffuse surface.
    pub diffuse: V3,
    /// Light scattered first by a metal or glass surface.
    pub specular: V3,
    /// Colour of the first surface.
    pub albedo: V3,
    /// Normal of the first surface, facing the camera (zero on a miss).
    pub normal: V3,
    /// Distance to the first surface (0 on a miss).
    pub depth: f64,
    /// Share of the lights' light blocked at the first surface.
    pub shadow: f64,
    /// Share of the hemisphere open at the first surface.
    pub ao: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Lobe {
    Diffuse,
    Specular,
}

impl Sample {
    fn add(&mut self, lobe: Option<Lobe>, light: V3) {
        match lobe {
            None => self.emission = self.emission + light,
            Some(Lobe::Diffuse) => self.diffuse = self.diffuse + light,
            Some(Lobe::Specular) => self.specular = self.specular + light,
        }
    }
}

/// Moves a point off a surface along `n`, so a ray leaving it does not hit it again.
fn offset(p: V3, n: V3) -> V3 {
    let scale = 1.0 + p.x.abs().max(p.y.abs()).max(p.z.abs());
    p + n * (1e-7 * scale)
}

impl<'a> Frame<'a> {
    /// Places the scene's objects and camera at `frame`.
    pub fn new(scene: &'a Scene, frame: u32) -> Frame<'a> {
        let f = f64::from(frame);
        let mut instances = Vec::with_capacity(scene.objects.len());
        let mut bounded = Vec::new();
        let mut unbounded = Vec::new();
        let mut bounds = Vec::new();
        for (i, object) in scene.objects.iter().enumerate() {
            let to_world = object.transform(f);
            let to_object = to_world.inverse().unwrap_or(Affine::IDENTITY);
            match object.shape.bounds() {
                Some(b) => {
                    bounded.push(i as u32);
                    bounds.push(b.transformed(&to_world));
                }
                None => unbounded.push(i as u32),
            }
            instances.push(Instance {
                to_object,
                object: i,
            });
        }
        Frame {
            scene,
            camera: scene.camera.at(f),
            instances,
            bounded,
            unbounded,
            bvh: Bvh::build(&bounds),
        }
    }

    fn hit_instance(&self, index: u32, ray: &Ray, t_max: f64) -> Option<Hit> {
        let instance = &self.instances[index as usize];
        let object = &self.scene.objects[instance.object];
        let local = Ray {
            origin: instance.to_object.point(ray.origin),
            dir: instance.to_object.vector(ray.dir),
        };
        let hit = object.shape.intersect(&local, t_max)?;
        Some(Hit {
            t: hit.t,
            point: ray.at(hit.t),
            normal: instance.to_object.transpose_vector(hit.normal).normalized(),
            uv: hit.uv,
            material: object.material,
        })
    }

    /// The nearest hit before `t_max`.
    pub fn intersect(&self, ray: &Ray, t_max: f64) -> Option<Hit> {
        let mut best: Option<Hit> = None;
        let mut limit = t_max;
        for &i in &self.unbounded {
            if let Some(hit) = self.hit_instance(i, ray, limit) {
                limit = hit.t;
                best = Some(hit);
            }
        }
        self.bvh.traverse(ray, limit, |k, t_max| {
            let hit = self.hit_instance(self.bounded[k as usize], ray, t_max)?;
            best = Some(hit);
            Some(hit.t)
        });
        best
    }

    /// The light that gets through from `origin` along `dir` for `distance`: glass tints
    /// it, anything else stops it.
    fn transmittance(&self, origin: V3, dir: V3, distance: f64) -> V3 {
        let mut through = V3::ONE;
        let mut ray = Ray { origin, dir };
        let mut left = distance;
        for _ in 0..16 {
            let Some(hit) = self.intersect(&ray, left) else {
                return through;
            };
            match &self.scene.materials[hit.material] {
                Material::Glass { color, .. } => through = through * *color,
                _ => return V3::ZERO,
            }
            let step = hit.t + 1e-7 * (1.0 + hit.point.length());
            ray.origin = ray.at(step);
            left -= step;
            if left <= 0.0 {
                return through;
            }
        }
        V3::ZERO
    }

    /// One sample of a light seen from `p`: direction, distance and arriving radiance
    /// (already divided by the sampling density).
    fn sample_light(light: &Light, p: V3, rng: &mut Rng) -> Option<(V3, f64, V3)> {
        match *light {
            Light::Point {
                position,
                radius,
                power,
            } => {
                let (u, v) = (rng.uniform(), rng.uniform());
                let z = 2.0 * u - 1.0;
                let r = (1.0 - z * z).max(0.0).sqrt();
                let phi = 2.0 * std::f64::consts::PI * v;
                let target = position
                    + V3 {
                        x: r * phi.cos(),
                        y: r * phi.sin(),
                        z,
                    } * radius;
                let d = target - p;
                let dist2 = d.dot(d);
                if dist2 < 1e-18 {
                    return None;
                }
                let dist = dist2.sqrt();
                Some((d / dist, dist, power / dist2))
            }
            Light::Area {
                corner,
                edge_u,
                edge_v,
                normal,
                area,
                radiance,
                two_sided,
            } => {
                let (u, v) = (rng.uniform(), rng.uniform());
                let q = corner + edge_u * u + edge_v * v;
                let d = q - p;
                let dist2 = d.dot(d);
                if dist2 < 1e-18 {
                    return None;
                }
                let dist = dist2.sqrt();
                let wi = d / dist;
                let mut cos_light = -wi.dot(normal);
                if two_sided {
                    cos_light = cos_light.abs();
                }
                if cos_light <= 0.0 {
                    return None;
                }
                Some((wi, dist, radiance * (cos_light * area / dist2)))
            }
            Light::Sun {
                direction,
                cos_max,
                irradiance,
            } => {
                let wi = if cos_max < 1.0 {
                    cone_direction(direction, cos_max, rng)
                } else {
                    direction
                };
                Some((wi, f64::INFINITY, irradiance))
            }
        }
    }

    /// Light arriving at `p` (normal `n`) straight from the lights, through `brdf`.
    fn direct(&self, p: V3, n: V3, rng: &mut Rng, brdf: impl Fn(V3) -> V3) -> V3 {
        let mut sum = V3::ZERO;
        self.each_light(p, n, rng, |wi, dist, li, cos| {
            let f = brdf(wi);
            if f != V3::ZERO {
                sum = sum + f * li * self.transmittance(p, wi, dist) * cos;
            }
        });
        sum
    }

    /// Calls `f(direction, distance, radiance, cosine)` with one sample of every light
    /// that faces the surface at `p` (normal `n`), in the scene's order.
    fn each_light(&self, p: V3, n: V3, rng: &mut Rng, mut f: impl FnMut(V3, f64, V3, f64)) {
        for light in &self.scene.lights {
            let Some((wi, dist, li)) = Self::sample_light(light, p, rng) else {
                continue;
            };
            let cos = n.dot(wi);
            if cos > 0.0 {
                f(wi, dist, li, cos);
            }
        }
    }

    /// The share of the lights' light blocked at `p`.
    fn shadow(&self, p: V3, n: V3, rng: &mut Rng) -> f64 {
        let (mut open, mut reached) = (0.0, 0.0);
        self.each_light(p, n, rng, |wi, dist, li, cos| {
            let amount = li.luminance() * cos;
            open += amount;
            reached += amount * self.transmittance(p, wi, dist).luminance();
        });
        if open > 0.0 {
            1.0 - reached / open
        } else {
            0.0
        }
    }

    /// The camera ray through image position (`px`, `py`), each from -1 to 1.
    pub fn camera_ray(&self, px: f64, py: f64, aspect: f64, rng: &mut Rng) -> Ray {
        let c = &self.camera;
        let dir =
            (c.forward + c.right * (px * c.half_height * aspect) + c.up * (py * c.half_height))
                .normalized();
        let (u, v) = (rng.uniform(), rng.uniform());
        if c.aperture <= 0.0 {
            return Ray { origin: c.eye, dir };
        }
        let focal = c.eye + dir * (c.focus / dir.dot(c.forward));
        let r = u.sqrt() * c.aperture / 2.0;
        let phi = 2.0 * std::f64::consts::PI * v;
        let origin = c.eye + c.right * (r * phi.cos()) + c.up * (r * phi.sin());
        Ray {
            origin,
            dir: (focal - origin).normalized(),
        }
    }

    /// Traces one path. `rng` drives the light passes; `aux`, when given,
    /// drives the `shadow` and `ao` estimates.
    pub fn trace(
        &self,
        mut ray: Ray,
        bounces: u32,
        rng: &mut Rng,
        aux: Option<&mut Rng>,
    ) -> Sample {
        let mut s = Sample::default();
        let mut throughput = V3::ONE;
        let mut lobe: Option<Lobe> = None;
        let mut aux = aux;
        for depth in 0..=bounces {
            let Some(hit) = self.intersect(&ray, f64::INFINITY) else {
                s.add(lobe, throughput * self.scene.sky.radiance(ray.dir));
                break;
            };
            let material = &self.scene.materials[hit.material];
            let front = ray.dir.dot(hit.normal) < 0.0;
            let n = if front { hit.normal } else { -hit.normal };
            if depth == 0 {
                s.albedo = material.albedo(hit.uv);
                s.normal = n;
                s.depth = hit.t;
                if let Some(aux) = aux.take() {
                    let p = offset(hit.point, n);
                    s.shadow = self.shadow(p, n, aux);
                    let dir = cosine_direction(n, aux);
                    s.ao = if self
                        .intersect(&Ray { origin: p, dir }, self.scene.ao_distance)
                        .is_some()
                    {
                        0.0
                    } else {
                        1.0
                    };
                }
            }
            match material {
                Material::Emissive { radiance } => {
                    s.add(lobe, throughput * *radiance);
                    break;
                }
                Material::Diffuse { color } => {
                    let albedo = color.at(hit.uv);
                    let first = *lobe.get_or_insert(Lobe::Diffuse);
                    let p = offset(hit.point, n);
                    let direct = self.direct(p, n, rng, |_| albedo * std::f64::consts::FRAC_1_PI);
                    s.add(Some(first), throughput * direct);
                    if depth == bounces {
                        break;
                    }
                    ray = Ray {
                        origin: p,
                        dir: cosine_direction(n, rng),
                    };
                    throughput = throughput * albedo;
                }
                Material::Metal { color, exponent } => {
                    let albedo = color.at(hit.uv);
                    let first = *lobe.get_or_insert(Lobe::Specular);
                    let p = offset(hit.point, n);
                    let mirror = ray.dir.reflect(n);
                    let e = *exponent;
                    if e.is_finite() {
                        let norm = (e + 2.0) / (2.0 * std::f64::consts::PI);
                        let direct = self.direct(p, n, rng, |wi| {
                            albedo * (norm * mirror.dot(wi).max(0.0).powf(e))
                        });
                        s.add(Some(first), throughput * direct);
                        if depth == bounces {
                            break;
                        }
                        let cos_a = rng.uniform().powf(1.0 / (e + 1.0));
                        let dir = cone_around(mirror, cos_a, rng);
                        let cos = dir.dot(n);
                        if cos <= 0.0 {
                            break;
                        }
                        throughput = throughput * albedo * ((e + 2.0) / (e + 1.0) * cos);
                        ray = Ray { origin: p, dir };
                    } else {
                        if depth == bounces {
                            break;
                        }
                        throughput = throughput * albedo;
                        ray = Ray {
                            origin: p,
                            dir: mirror,
                        };
                    }
                }
                Material::Glass { color, ior } => {
                    lobe.get_or_insert(Lobe::Specular);
                    if depth == bounces {
                        break;
                    }
                    let eta = if front { 1.0 / ior } else { *ior };
                    let cos_i = (-ray.dir.dot(n)).clamp(0.0, 1.0);
                    let sin2_t = eta * eta * (1.0 - cos_i * cos_i);
                    let r0 = ((1.0 - ior) / (1.0 + ior)).powi(2);
                    let fresnel = r0 + (1.0 - r0) * (1.0 - cos_i).powi(5);
                    let choice = rng.uniform();
                    if sin2_t > 1.0 || choice < fresnel {
                        ray = Ray {
                            origin: offset(hit.point, n),
                            dir: ray.dir.reflect(n),
                        };
                    } else {
                        let dir = (ray.dir * eta + n * (eta * cos_i - (1.0 - sin2_t).sqrt()))
                            .normalized();
                        ray = Ray {
                            origin: offset(hit.point, -n),
                            dir,
                        };
                        throughput = throughput * *color;
                    }
                }
            }
            if throughput.max_component() <= 0.0 {
                break;
            }
        }
        s
    }
}

/// A direction at angle cosine `cos_a` from the unit axis `a`, at a random azimuth.
fn cone_around(a: V3, cos_a: f64, rng: &mut Rng) -> V3 {
    let sin = (1.0 - cos_a * cos_a).max(0.0).sqrt();
    let phi = 2.0 * std::f64::consts::PI * rng.uniform();
    let (t, b) = a.basis();
    (t * (sin * phi.cos()) + b * (sin * phi.sin()) + a * cos_a).normalized()
}
