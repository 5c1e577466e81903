//! The `builtin` renderer: Tessera's own small deterministic ray tracer — spheres on a
//! checkered floor, one spherical light (soft shadows), mirror reflections, a sky, and a
//! camera orbiting its target with the frame number.
//!
//! Determinism: every random number of a pixel comes from a generator seeded by
//! (frame, x, y, sample) only, in full-image coordinates. A render of any rectangle is
//! therefore bit-identical to the same rectangle of the full render, whatever the thread
//! count or the order rows are taken in.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use serde::Deserialize;

use super::{BoxFuture, Output, RenderError, Renderer, Request};
use crate::frames::frame_file_name;
use crate::job::RendererKind;
use crate::raster::{self, Raster};
use crate::tiles::Rect;

/// The `builtin` renderer.
pub struct Builtin;

/// Samples per pixel when `settings.samples` is absent.
pub const DEFAULT_SAMPLES: u32 = 16;

impl Renderer for Builtin {
    fn kind(&self) -> RendererKind {
        RendererKind::Builtin
    }

    fn render(&self, request: Request) -> BoxFuture<'_, Result<Vec<Output>, RenderError>> {
        Box::pin(async move {
            let scene = match &request.scene {
                Some(path) => Scene::load(path).map_err(RenderError::Permanent)?,
                None => Scene::default(),
            };
            let task = &request.task;
            let samples = task
                .settings
                .get("samples")
                .and_then(|v| v.as_u64())
                .map_or(DEFAULT_SAMPLES, |n| n as u32);
            let region = task.region.unwrap_or(Rect::full(task.width, task.height));
            let mut outputs = Vec::new();
            let frames = task.frames.clone();
            for (i, &frame) in frames.iter().enumerate() {
                request.log.line(format!(
                    "builtin: frame {frame}, region {}x{}+{}+{} of {}x{}, {samples} samples, {} threads",
                    region.width, region.height, region.x, region.y, task.width, task.height, request.threads
                ));
                let stop = Arc::new(AtomicBool::new(false));
                let rows_done = Arc::new(AtomicU32::new(0));
                let job = RenderJob {
                    scene: scene.clone(),
                    frame,
                    width: task.width,
                    height: task.height,
                    region,
                    samples,
                };
                let threads = request.threads.max(1);
                let (stop2, rows2) = (stop.clone(), rows_done.clone());
                let mut handle =
                    tokio::task::spawn_blocking(move || job.render(threads, &stop2, &rows2));
                let raster = loop {
                    tokio::select! {
                        result = &mut handle => {
                            break result.map_err(|e| RenderError::Failed(format!("render thread: {e}")))?
                        }
                        () = request.cancel.cancelled() => {
                            stop.store(true, Ordering::Relaxed);
                            let _ = handle.await;
                            return Err(RenderError::Stopped("render stopped".into()));
                        }
                        () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                            let rows = f64::from(rows_done.load(Ordering::Relaxed)) / f64::from(region.height);
                            request.set_progress((i as f64 + rows) / frames.len() as f64);
                        }
                    }
                };
                let Some(raster) = raster else {
                    return Err(RenderError::Stopped("render stopped".into()));
                };
                let bytes = raster::encode(&raster, task.format, task.depth)
                    .map_err(RenderError::Failed)?;
                let name = frame_file_name(frame, task.format.extension());
                let path = request.out_dir.join(&name);
                tokio::fs::write(&path, bytes)
                    .await
                    .map_err(|e| RenderError::Failed(format!("writing {}: {e}", path.display())))?;
                outputs.push(Output { name, path });
            }
            request.set_progress(1.0);
            Ok(outputs)
        })
    }
}

/// A scene file for the builtin renderer (TOML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scene {
    /// The orbiting camera.
    pub camera: Camera,
    /// The light.
    pub light: Light,
    /// The floor.
    pub floor: Floor,
    /// The spheres.
    pub spheres: Vec<Sphere>,
}

/// `[camera]`: orbits `target` at `distance`, `height` above it, `degrees_per_frame`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Camera {
    /// What it looks at.
    pub target: [f64; 3],
    /// Horizontal distance from the target.
    pub distance: f64,
    /// Height above the target.
    pub height: f64,
    /// Angle at frame 0.
    pub start_degrees: f64,
    /// Orbit per frame.
    pub degrees_per_frame: f64,
    /// Vertical field of view.
    pub fov: f64,
}

/// `[light]`: a spherical light.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Light {
    /// Centre.
    pub position: [f64; 3],
    /// Radius (soft shadows).
    pub radius: f64,
    /// Brightness.
    pub intensity: f64,
}

/// `[floor]`: a checkered plane.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Floor {
    /// Height of the plane.
    pub y: f64,
    /// Checker square size.
    pub square: f64,
    /// The two colours.
    pub colors: [[f64; 3]; 2],
    /// Mirror reflectance.
    pub mirror: f64,
}

/// `[[spheres]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sphere {
    /// Centre.
    pub center: [f64; 3],
    /// Radius.
    pub radius: f64,
    /// Diffuse colour.
    pub color: [f64; 3],
    /// Mirror reflectance, 0 to 1.
    #[serde(default)]
    pub mirror: f64,
}

impl Default for Camera {
    fn default() -> Camera {
        Camera {
            target: [0.0, 0.8, 0.0],
            distance: 7.0,
            height: 2.2,
            start_degrees: 0.0,
            degrees_per_frame: 7.5,
            fov: 40.0,
        }
    }
}

impl Default for Light {
    fn default() -> Light {
        Light {
            position: [4.0, 7.0, 3.0],
            radius: 0.8,
            intensity: 1.0,
        }
    }
}

impl Default for Floor {
    fn default() -> Floor {
        Floor {
            y: 0.0,
            square: 1.0,
            colors: [[0.85, 0.85, 0.8], [0.2, 0.22, 0.28]],
            mirror: 0.1,
        }
    }
}

impl Default for Scene {
    fn default() -> Scene {
        Scene {
            camera: Camera::default(),
            light: Light::default(),
            floor: Floor::default(),
            spheres: vec![
                Sphere {
                    center: [0.0, 1.0, 0.0],
                    radius: 1.0,
                    color: [0.9, 0.9, 0.9],
                    mirror: 0.8,
                },
                Sphere {
                    center: [-2.2, 0.7, 0.8],
                    radius: 0.7,
                    color: [0.85, 0.25, 0.2],
                    mirror: 0.05,
                },
                Sphere {
                    center: [2.0, 0.6, -0.6],
                    radius: 0.6,
                    color: [0.2, 0.45, 0.85],
                    mirror: 0.2,
                },
                Sphere {
                    center: [0.6, 0.35, 2.0],
                    radius: 0.35,
                    color: [0.95, 0.75, 0.2],
                    mirror: 0.0,
                },
            ],
        }
    }
}

impl Scene {
    /// Reads and checks a scene file; errors name the line and field.
    pub fn load(path: &Path) -> Result<Scene, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading scene {}: {e}", path.display()))?;
        Scene::parse(&text).map_err(|e| format!("scene {}: {e}", path.display()))
    }

    /// Parses and checks scene text.
    pub fn parse(text: &str) -> Result<Scene, String> {
        let scene: Scene = toml::from_str(text).map_err(|e| {
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })?;
        for (i, s) in scene.spheres.iter().enumerate() {
            if !positive(s.radius) {
                return Err(format!("spheres[{i}].radius must be above 0"));
            }
            if !(0.0..=1.0).contains(&s.mirror) {
                return Err(format!("spheres[{i}].mirror must be from 0 to 1"));
            }
        }
        if !positive(scene.camera.fov) || scene.camera.fov >= 180.0 {
            return Err("camera.fov must be between 0 and 180 degrees".into());
        }
        if !positive(scene.floor.square) {
            return Err("floor.square must be above 0".into());
        }
        Ok(scene)
    }
}

/// Whether `v` is a number above zero (NaN is not).
fn positive(v: f64) -> bool {
    v > 0.0
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct V(f64, f64, f64);

impl V {
    fn from(a: [f64; 3]) -> V {
        V(a[0], a[1], a[2])
    }
    fn dot(self, o: V) -> f64 {
        self.0 * o.0 + self.1 * o.1 + self.2 * o.2
    }
    fn cross(self, o: V) -> V {
        V(
            self.1 * o.2 - self.2 * o.1,
            self.2 * o.0 - self.0 * o.2,
            self.0 * o.1 - self.1 * o.0,
        )
    }
    fn len(self) -> f64 {
        self.dot(self).sqrt()
    }
    fn norm(self) -> V {
        self * (1.0 / self.len())
    }
    fn mul(self, o: V) -> V {
        V(self.0 * o.0, self.1 * o.1, self.2 * o.2)
    }
}

impl std::ops::Add for V {
    type Output = V;
    fn add(self, o: V) -> V {
        V(self.0 + o.0, self.1 + o.1, self.2 + o.2)
    }
}

impl std::ops::Sub for V {
    type Output = V;
    fn sub(self, o: V) -> V {
        V(self.0 - o.0, self.1 - o.1, self.2 - o.2)
    }
}

impl std::ops::Mul<f64> for V {
    type Output = V;
    fn mul(self, k: f64) -> V {
        V(self.0 * k, self.1 * k, self.2 * k)
    }
}

/// A small PCG32 generator, seeded per pixel sample.
struct Rng(u64);

impl Rng {
    fn seeded(frame: u32, x: u32, y: u32, sample: u32) -> Rng {
        let mut h = 0x243f_6a88_85a3_08d3u64;
        for v in [frame, x, y, sample] {
            h = splitmix(h ^ u64::from(v));
        }
        Rng(h)
    }

    fn next(&mut self) -> f64 {
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

/// One frame (or a region of it) to render.
pub struct RenderJob {
    /// The scene.
    pub scene: Scene,
    /// Frame number (drives the camera and the sample seeds).
    pub frame: u32,
    /// Full image width.
    pub width: u32,
    /// Full image height.
    pub height: u32,
    /// The rectangle to render.
    pub region: Rect,
    /// Samples per pixel.
    pub samples: u32,
}

struct Hit {
    t: f64,
    point: V,
    normal: V,
    color: V,
    mirror: f64,
}

impl RenderJob {
    /// Renders the region with `threads` threads; `None` if `stop` was raised.
    pub fn render(
        &self,
        threads: usize,
        stop: &AtomicBool,
        rows_done: &AtomicU32,
    ) -> Option<Raster> {
        let region = self.region;
        let next_row = AtomicU32::new(0);
        let width = region.width as usize;
        let mut raster = Raster::new(region.width, region.height);
        let rows: Vec<std::sync::Mutex<&mut [[f32; 3]]>> = raster
            .pixels
            .chunks_mut(width.max(1))
            .map(std::sync::Mutex::new)
            .collect();
        let camera = self.camera();
        std::thread::scope(|scope| {
            for _ in 0..threads.max(1) {
                scope.spawn(|| {
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let row = next_row.fetch_add(1, Ordering::Relaxed);
                        if row >= region.height {
                            return;
                        }
                        let y = region.y + row;
                        let mut line = rows[row as usize].lock().expect("each row is locked once");
                        for (i, pixel) in line.iter_mut().enumerate() {
                            *pixel = self.pixel(&camera, region.x + i as u32, y);
                        }
                        rows_done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        drop(rows);
        (!stop.load(Ordering::Relaxed)).then_some(raster)
    }

    fn camera(&self) -> (V, V, V, V) {
        let c = &self.scene.camera;
        let angle = (c.start_degrees + c.degrees_per_frame * f64::from(self.frame)).to_radians();
        let target = V::from(c.target);
        let eye = target + V(c.distance * angle.sin(), c.height, c.distance * angle.cos());
        let forward = (target - eye).norm();
        let right = forward.cross(V(0.0, 1.0, 0.0)).norm();
        let up = right.cross(forward);
        (eye, forward, right, up)
    }

    fn pixel(&self, camera: &(V, V, V, V), x: u32, y: u32) -> [f32; 3] {
        let (eye, forward, right, up) = *camera;
        let half = (self.scene.camera.fov.to_radians() / 2.0).tan();
        let aspect = f64::from(self.width) / f64::from(self.height);
        let mut sum = V(0.0, 0.0, 0.0);
        for s in 0..self.samples {
            let mut rng = Rng::seeded(self.frame, x, y, s);
            let px = (f64::from(x) + rng.next()) / f64::from(self.width) * 2.0 - 1.0;
            let py = 1.0 - (f64::from(y) + rng.next()) / f64::from(self.height) * 2.0;
            let dir = (forward + right * (px * half * aspect) + up * (py * half)).norm();
            sum = sum + self.trace(eye, dir, 0, &mut rng);
        }
        let c = sum * (1.0 / f64::from(self.samples.max(1)));
        [c.0 as f32, c.1 as f32, c.2 as f32]
    }

    fn intersect(&self, origin: V, dir: V) -> Option<Hit> {
        let mut best: Option<Hit> = None;
        for s in &self.scene.spheres {
            let center = V::from(s.center);
            let oc = origin - center;
            let b = oc.dot(dir);
            let c = oc.dot(oc) - s.radius * s.radius;
            let disc = b * b - c;
            if disc < 0.0 {
                continue;
            }
            let sq = disc.sqrt();
            let t = if -b - sq > 1e-6 { -b - sq } else { -b + sq };
            if t > 1e-6 && best.as_ref().is_none_or(|h| t < h.t) {
                let point = origin + dir * t;
                best = Some(Hit {
                    t,
                    point,
                    normal: (point - center).norm(),
                    color: V::from(s.color),
                    mirror: s.mirror,
                });
            }
        }
        let floor = &self.scene.floor;
        if dir.1.abs() > 1e-9 {
            let t = (floor.y - origin.1) / dir.1;
            if t > 1e-6 && best.as_ref().is_none_or(|h| t < h.t) {
                let point = origin + dir * t;
                let cell = (point.0 / floor.square).floor() as i64
                    + (point.2 / floor.square).floor() as i64;
                let color = V::from(floor.colors[cell.rem_euclid(2) as usize]);
                best = Some(Hit {
                    t,
                    point,
                    normal: V(0.0, 1.0, 0.0),
                    color,
                    mirror: floor.mirror,
                });
            }
        }
        best
    }

    fn sky(dir: V) -> V {
        let t = 0.5 * (dir.1 + 1.0);
        V(1.0, 1.0, 1.0) * (1.0 - t) * 0.9 + V(0.45, 0.65, 1.0) * t * 0.9
    }

    fn trace(&self, origin: V, dir: V, depth: u32, rng: &mut Rng) -> V {
        let Some(hit) = self.intersect(origin, dir) else {
            return Self::sky(dir);
        };
        let light = &self.scene.light;
        // A point on the light sphere, for soft shadows.
        let (u, v) = (rng.next(), rng.next());
        let z = 2.0 * u - 1.0;
        let r = (1.0 - z * z).max(0.0).sqrt();
        let phi = 2.0 * std::f64::consts::PI * v;
        let target = V::from(light.position) + V(r * phi.cos(), r * phi.sin(), z) * light.radius;
        let to_light = target - hit.point;
        let distance = to_light.len();
        let l = to_light * (1.0 / distance);
        let origin2 = hit.point + hit.normal * 1e-6;
        let lit = match self.intersect(origin2, l) {
            Some(blocker) => blocker.t > distance,
            None => true,
        };
        let lambert = hit.normal.dot(l).max(0.0);
        let direct = if lit { lambert * light.intensity } else { 0.0 };
        let ambient = 0.12 + 0.08 * hit.normal.1.max(0.0);
        let mut color = hit.color * (direct + ambient);
        if hit.mirror > 0.0 && depth < 3 {
            let reflected = dir - hit.normal * (2.0 * dir.dot(hit.normal));
            let bounce = self.trace(origin2, reflected.norm(), depth + 1, rng);
            color = color * (1.0 - hit.mirror) + bounce.mul(V(1.0, 1.0, 1.0)) * hit.mirror;
        }
        color
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(region: Rect) -> RenderJob {
        RenderJob {
            scene: Scene::default(),
            frame: 3,
            width: 48,
            height: 32,
            region,
            samples: 2,
        }
    }

    fn render(region: Rect, threads: usize) -> Raster {
        job(region)
            .render(threads, &AtomicBool::new(false), &AtomicU32::new(0))
            .unwrap()
    }

    #[test]
    fn regions_match_the_full_render_bit_for_bit() {
        let full = render(Rect::full(48, 32), 2);
        for rect in [
            Rect {
                x: 0,
                y: 0,
                width: 1,
                height: 1,
            },
            Rect {
                x: 47,
                y: 31,
                width: 1,
                height: 1,
            },
            Rect {
                x: 5,
                y: 7,
                width: 20,
                height: 3,
            },
            Rect {
                x: 0,
                y: 20,
                width: 48,
                height: 12,
            },
        ] {
            assert_eq!(render(rect, 1), full.crop(rect), "{rect:?}");
        }
    }

    #[test]
    fn thread_count_does_not_change_pixels() {
        assert_eq!(render(Rect::full(48, 32), 1), render(Rect::full(48, 32), 3));
    }

    #[test]
    fn frames_differ() {
        let a = render(Rect::full(48, 32), 2);
        let mut j = job(Rect::full(48, 32));
        j.frame = 4;
        let b = j
            .render(2, &AtomicBool::new(false), &AtomicU32::new(0))
            .unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn scene_errors_name_the_field() {
        let err = Scene::parse("[[spheres]]\ncenter = [0, 1, 0]\nradius = -1\ncolor = [1, 1, 1]")
            .unwrap_err();
        assert!(err.contains("spheres[0].radius"), "{err}");
        let err = Scene::parse("[camera]\nfov = \"wide\"").unwrap_err();
        assert!(err.contains("fov") && err.contains("line 2"), "{err}");
    }
}
