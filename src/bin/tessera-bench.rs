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
    /// Planning: submit to every task queued, for a large job.
    Plan {
        /// Tasks in the job.
        #[arg(long, default_value_t = 100_000)]
        tasks: u32,
        /// Jobs to measure.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Builtin renderer throughput: samples (camera paths) per second by thread count.
    Render(tessera::bench::RenderBench),
    /// Throughput: a job of many one-frame tasks, submit to job.done, the renderer in
    /// process and as a child process per task, beside a raw JetStream loop on the same
    /// server in the same run.
    Throughput {
        /// Tasks in the job.
        #[arg(long, default_value_t = 3000)]
        tasks: u32,
        /// Rounds (raw loop and Tessera each).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Soak: render and delete many small jobs; the store, the jobs bucket, the streams
    /// and every process's memory at each checkpoint (separate role processes: build every
    /// binary first).
    Soak {
        /// Jobs to render and delete.
        #[arg(long, default_value_t = 1000)]
        jobs: usize,
        /// Jobs between two reports.
        #[arg(long, default_value_t = 100)]
        every: usize,
    },
    /// POV-Ray and Blender (where installed): the example animations through the farm
    /// against the program run directly.
    Programs {
        /// Runs of each.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tessera::telemetry::init_with("warn");
    let result = match Args::parse().bench {
        Bench::Dispatch { runs } => tessera::bench::dispatch(runs).await,
        Bench::Failover { runs } => tessera::bench::failover(runs).await,
        Bench::Stitch { runs } => tessera::bench::stitch(runs).await,
        Bench::Plan { tasks, runs } => tessera::bench::plan(tasks, runs).await,
        Bench::Render(bench) => tessera::bench::render(&bench),
        Bench::Programs { runs } => tessera::bench::programs(runs).await,
        Bench::Throughput { tasks, runs } => tessera::bench::throughput(tasks, runs).await,
        Bench::Soak { jobs, every } => tessera::bench::soak(jobs, every.max(1)).await,
    };
    tessera::telemetry::exit(result)
}
