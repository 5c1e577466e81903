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
    /// Every benchmark of the README's performance table in one run (throughput, dispatch,
    /// failover, tile assembly, utilisation, planning, collector catch-up, dependencies,
    /// status at scale, the dashboard), then their summary. Build every binary first
    /// (failover starts tessera-worker processes).
    All,
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
    /// Status at scale: `tessera status` of a job of a million tasks, planned, not rendered.
    Status {
        /// Tasks in the job.
        #[arg(long, default_value_t = 1_000_000)]
        tasks: u32,
        /// Status reads to measure.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// The dashboard: a job page's first render (status and every task drawn) in headless
    /// Chromium, for a job of many tasks against a job of one.
    Dashboard {
        /// Tasks in the large job.
        #[arg(long, default_value_t = 10_000)]
        tasks: u32,
        /// Page loads of each job to measure.
        #[arg(long, default_value_t = 5)]
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
    /// Utilisation: jobs of one-second tasks on 2 workers x 8 slots; the share of slot time
    /// spent rendering while work was queued.
    Utilisation {
        /// Tasks per slot in each job.
        #[arg(long, default_value_t = 6)]
        waves: u32,
        /// Jobs to measure.
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// Collector catch-up: a job's events stored with no collector running, then 1 (and 2,
    /// ...) collectors timed to job.done.
    Catchup {
        /// Tasks in the job (two events each).
        #[arg(long, default_value_t = 20_000)]
        tasks: u32,
        /// Most collectors to compare.
        #[arg(long, default_value_t = 2)]
        collectors: usize,
    },
    /// Dependencies: N frames x 3 chained layers and a job after it frame by frame, at N
    /// and 2N frames; the collector's time spent releasing dependents.
    Chain {
        /// Frames of each job (the second round has twice as many).
        #[arg(long, default_value_t = 1000)]
        frames: u32,
        /// Rounds of each size.
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
    tessera::telemetry::init_with("warn", tessera::telemetry::LogFormat::Text);
    use tessera::bench;
    let result = match Args::parse().bench {
        Bench::All => bench::all().await,
        Bench::Dispatch { runs } => bench::dispatch(runs).await.map(drop),
        Bench::Failover { runs } => bench::failover(runs).await.map(drop),
        Bench::Stitch { runs } => bench::stitch(runs).await.map(drop),
        Bench::Plan { tasks, runs } => bench::plan(tasks, runs).await.map(drop),
        Bench::Status { tasks, runs } => bench::status(tasks, runs).await.map(drop),
        Bench::Dashboard { tasks, runs } => bench::dashboard(tasks, runs).await.map(drop),
        Bench::Render(flags) => bench::render(&flags),
        Bench::Programs { runs } => bench::programs(runs).await,
        Bench::Throughput { tasks, runs } => bench::throughput(tasks, runs).await.map(drop),
        Bench::Utilisation { waves, runs } => bench::utilisation(waves, runs).await.map(drop),
        Bench::Catchup { tasks, collectors } => bench::catchup(tasks, collectors).await.map(drop),
        Bench::Chain { frames, runs } => bench::chain(frames, runs).await.map(drop),
        Bench::Soak { jobs, every } => bench::soak(jobs, every.max(1)).await,
    };
    tessera::telemetry::exit(result)
}
