//! The `builtin` renderer: Tessera's own deterministic path tracer, so every farm has
//! something real to render and tile stitching and layer compositing can be checked to the
//! bit.
//!
//! - [`scene`]: the TOML scene file (camera keys, objects, materials, lights, textures) and
//!   its checked form;
//! - [`shapes`]: spheres, planes, boxes and OBJ triangle meshes;
//! - [`bvh`]: the bounding volume hierarchy over triangles and over a frame's objects;
//! - [`trace`]: the path tracer and how its passes add up;
//! - [`math`]: vectors, transforms and the per-sample random generator.
//!
//! Determinism: every random number of a pixel comes from a generator seeded by
//! (frame, x, y, sample) only, in full-image coordinates, and all arithmetic is `f64` in
//! a fixed order. A render of any rectangle is therefore bit-identical to the same
//! rectangle of the full render, whatever the thread count or the order rows are taken in.

pub mod bvh;
pub mod math;
pub mod pass;
pub mod scene;
pub mod settings;
pub mod shapes;
pub mod trace;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::{BoxFuture, Output, RenderError, Renderer, Request};
use crate::core::frames::frame_file_name;
use crate::core::job::{ImageFormat, RendererKind};
use crate::core::raster::{self, Raster, Transfer};
use crate::core::tiles::Rect;
use math::{Rng, V3};
pub use pass::Pass;
pub use scene::Scene;
pub use settings::Settings;
use trace::Frame;

/// The `builtin` renderer.
pub struct Builtin;

impl Renderer for Builtin {
    fn kind(&self) -> RendererKind {
        RendererKind::Builtin
    }

    fn render(&self, request: Request) -> BoxFuture<'_, Result<Vec<Output>, RenderError>> {
        Box::pin(async move {
            let task = &request.task;
            let pass = Pass::from_layer(task.layer.as_deref())
                .map_err(|e| RenderError::Permanent(e.to_string()))?;
            let Settings { samples, bounces } = Settings::parse(&task.settings)
                .map_err(|e| RenderError::Permanent(e.to_string()))?;
            let scene = match request.scene.clone() {
                Some(path) => tokio::task::spawn_blocking(move || Scene::load(&path))
                    .await
                    .map_err(|e| RenderError::Failed(format!("scene loader: {e}")))?
                    .map_err(|e| RenderError::Permanent(e.to_string()))?,
                None => Scene::default_scene(),
            };
            let scene = Arc::new(scene);
            let region = task.region.unwrap_or(Rect::full(task.width, task.height));
            let mut outputs = Vec::new();
            let frames = task.frames.clone();
            for (i, &frame) in frames.iter().enumerate() {
                request.log.line(format!(
                    "builtin: frame {frame}, pass {}, region {}x{}+{}+{} of {}x{}, {samples} samples, {bounces} bounces, {} threads",
                    pass.name(), region.width, region.height, region.x, region.y, task.width, task.height, request.threads
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
                    bounces,
                    pass,
                    format: task.format,
                };
                let threads = request.threads.max(1);
                let (stop2, rows2) = (stop.clone(), rows_done.clone());
                let started = std::time::Instant::now();
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
                let seconds = started.elapsed().as_secs_f64();
                let paths = f64::from(region.width) * f64::from(region.height) * f64::from(samples);
                request.log.line(format!(
                    "builtin: frame {frame} rendered in {seconds:.2} s ({:.0} samples/s)",
                    paths / seconds.max(1e-9)
                ));
                let transfer = if pass.is_data() {
                    Transfer::Linear
                } else {
                    Transfer::Srgb
                };
                let bytes = raster::encode_with(&raster, task.format, task.depth, transfer)
                    .map_err(|e| RenderError::Failed(e.to_string()))?;
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

/// One frame (or a rectangle of it) of one pass to render.
#[derive(Clone)]
pub struct RenderJob {
    /// The scene.
    pub scene: Arc<Scene>,
    /// Frame number (drives the keys and the sample seeds).
    pub frame: u32,
    /// Full image width.
    pub width: u32,
    /// Full image height.
    pub height: u32,
    /// The rectangle to render, in full-image pixels.
    pub region: Rect,
    /// Samples per pixel.
    pub samples: u32,
    /// Bounces after the first hit.
    pub bounces: u32,
    /// The pass.
    pub pass: Pass,
    /// The file format it will be stored in (`depth` is scaled for PNG).
    pub format: ImageFormat,
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
        let frame = Frame::new(&self.scene, self.frame);
        let next_row = AtomicU32::new(0);
        let width = region.width as usize;
        let mut raster = Raster::new(region.width, region.height);
        let rows: Vec<std::sync::Mutex<&mut [[f32; 3]]>> = raster
            .pixels
            .chunks_mut(width.max(1))
            .map(std::sync::Mutex::new)
            .collect();
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
                            *pixel = self.pixel(&frame, region.x + i as u32, y);
                        }
                        rows_done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        drop(rows);
        (!stop.load(Ordering::Relaxed)).then_some(raster)
    }

    /// The pass's value at full-image pixel (`x`, `y`).
    pub fn pixel(&self, frame: &Frame<'_>, x: u32, y: u32) -> [f32; 3] {
        let aspect = f64::from(self.width) / f64::from(self.height);
        let data = matches!(self.pass, Pass::Shadow | Pass::Ao);
        let mut sum = trace::Sample::default();
        for s in 0..self.samples {
            let mut rng = Rng::seeded(self.frame, x, y, s);
            let mut aux = data.then(|| Rng::seeded(self.frame, x, y, s | 0x8000_0000));
            let px = (f64::from(x) + rng.uniform()) / f64::from(self.width) * 2.0 - 1.0;
            let py = 1.0 - (f64::from(y) + rng.uniform()) / f64::from(self.height) * 2.0;
            let ray = frame.camera_ray(px, py, aspect, &mut rng);
            let one = frame.trace(ray, self.bounces, &mut rng, aux.as_mut());
            sum.emission = sum.emission + one.emission;
            sum.diffuse = sum.diffuse + one.diffuse;
            sum.specular = sum.specular + one.specular;
            sum.albedo = sum.albedo + one.albedo;
            sum.normal = sum.normal + one.normal;
            sum.depth += one.depth;
            sum.shadow += one.shadow;
            sum.ao += one.ao;
        }
        let n = f64::from(self.samples.max(1));
        let value = match self.pass {
            Pass::Beauty => sum.emission + sum.diffuse + sum.specular,
            Pass::Albedo => sum.albedo,
            Pass::Diffuse => sum.diffuse,
            Pass::Specular => sum.specular,
            Pass::Emission => sum.emission,
            Pass::Shadow => V3::splat(sum.shadow),
            Pass::Ao => V3::splat(sum.ao),
            Pass::Normal => sum.normal * 0.5 + V3::splat(0.5 * n),
            Pass::Depth => {
                let scale = if self.format == ImageFormat::Png {
                    self.scene.depth_far
                } else {
                    1.0
                };
                V3::splat(sum.depth / scale)
            }
        };
        (value / n).to_f32()
    }
}

#[cfg(test)]
mod tests;
