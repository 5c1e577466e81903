//! The builtin renderer's own speed: samples per second by thread count.

use std::time::Instant;

use anyhow::Context as _;

use super::Samples;

/// What `tessera-bench render` renders (its flags).
#[derive(clap::Args, Debug)]
pub struct RenderBench {
    /// Scene file (default: the built-in scene).
    #[arg(long)]
    pub scene: Option<std::path::PathBuf>,
    /// Image width.
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    /// Image height.
    #[arg(long, default_value_t = 360)]
    pub height: u32,
    /// Samples per pixel.
    #[arg(long, default_value_t = 16)]
    pub samples: u32,
    /// Bounces after the first hit.
    #[arg(long, default_value_t = crate::render::builtin::settings::DEFAULT_BOUNCES)]
    pub bounces: u32,
    /// Frame number.
    #[arg(long, default_value_t = 1)]
    pub frame: u32,
    /// Renders per thread count.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Thread counts to compare, the first being the baseline.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Also write the image (PNG).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// Renders a scene with the builtin renderer `runs` times per thread count and prints the
/// median samples (camera paths) per second, and the speed-up over the first thread count.
pub fn render(bench: &RenderBench) -> anyhow::Result<()> {
    use crate::render::builtin::{Pass, RenderJob, Scene};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32};

    let scene = match &bench.scene {
        Some(path) => Scene::load(path).map_err(anyhow::Error::msg)?,
        None => Scene::default_scene(),
    };
    let job = RenderJob {
        scene: Arc::new(scene),
        frame: bench.frame,
        width: bench.width,
        height: bench.height,
        region: crate::core::tiles::Rect::full(bench.width, bench.height),
        samples: bench.samples,
        bounces: bench.bounces,
        pass: Pass::Beauty,
        format: crate::core::job::ImageFormat::Png,
    };
    let paths = f64::from(bench.width) * f64::from(bench.height) * f64::from(bench.samples);
    let mut baseline = None;
    let mut last = None;
    for &threads in &bench.threads {
        let mut times = Vec::new();
        for _ in 0..bench.runs.max(1) {
            let started = Instant::now();
            last = job.render(threads, &AtomicBool::new(false), &AtomicU32::new(0));
            times.push(started.elapsed());
        }
        let median = Samples::new(times).percentile(50.0).as_secs_f64();
        let rate = paths / median;
        let speedup = rate / *baseline.get_or_insert(rate);
        println!(
            "builtin {}x{} {} spp, {threads} thread(s): median {median:.3} s, {:.0} samples/s ({:.2}x the first)",
            bench.width, bench.height, bench.samples, rate, speedup
        );
    }
    if let (Some(out), Some(raster)) = (&bench.out, last) {
        let bytes = crate::core::raster::encode(&raster, crate::core::job::ImageFormat::Png, 8)
            .map_err(anyhow::Error::msg)?;
        std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
