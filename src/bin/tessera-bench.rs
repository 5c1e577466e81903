//! `tessera-bench`: benchmarks that start what they measure and print medians beside a raw
//! baseline from the same run.

use clap::{Parser, Subcommand};

/// Tessera benchmarks.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Submit-to-start latency on an idle local farm.
    Dispatch {
        /// Jobs to submit.
        #[arg(long, default_value_t = 200)]
        runs: usize,
    },
    /// Time from SIGKILL of the rendering worker to the task running on another.
    Failover {
        /// Kills to measure.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Tile assembly: last tile stored to the stitched 4K frame stored.
    Stitch {
        /// Frames to measure.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Builtin renderer throughput: samples (camera paths) per second by thread count.
    Render {
        /// Scene file (default: the built-in scene).
        #[arg(long)]
        scene: Option<std::path::PathBuf>,
        /// Image width.
        #[arg(long, default_value_t = 640)]
        width: u32,
        /// Image height.
        #[arg(long, default_value_t = 360)]
        height: u32,
        /// Samples per pixel.
        #[arg(long, default_value_t = 16)]
        samples: u32,
        /// Bounces after the first hit.
        #[arg(long, default_value_t = tessera::render::builtin::DEFAULT_BOUNCES)]
        bounces: u32,
        /// Frame number.
        #[arg(long, default_value_t = 1)]
        frame: u32,
        /// Renders per thread count.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Thread counts to compare, the first being the baseline.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        threads: Vec<usize>,
        /// Also write the image (PNG).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tessera::telemetry::init_with("warn");
    let result = match Args::parse().bench {
        Bench::Dispatch { runs } => tessera::bench::dispatch(runs).await,
        Bench::Failover { runs } => tessera::bench::failover(runs).await,
        Bench::Stitch { runs } => tessera::bench::stitch(runs).await,
        Bench::Render {
            scene,
            width,
            height,
            samples,
            bounces,
            frame,
            runs,
            threads,
            out,
        } => tessera::bench::render(&tessera::bench::RenderBench {
            scene,
            width,
            height,
            samples,
            bounces,
            frame,
            runs,
            threads,
            out,
        }),
    };
    tessera::telemetry::exit(result)
}
