//! Benchmarks run by `tessera-bench`: each starts what it measures (a private nats-server,
//! a local farm) and prints medians next to a raw baseline measured in the same run, so
//! figures from a noisy machine can be compared as ratios. [`all`] runs the ten that
//! make the performance table in one go and ends with their summary. The real renderers'
//! benchmark is [`fn@programs`].

pub mod browser;
mod catchup;
mod chain;
mod dashboard;
mod dispatch;
mod failover;
mod plan;
mod programs;
mod render;
mod soak;
mod status;
mod stitch;
mod throughput;
mod utilisation;

pub use catchup::catchup;
pub use chain::chain;
pub use dashboard::dashboard;
pub use dispatch::dispatch;
pub use failover::failover;
pub use plan::plan;
pub use programs::programs;
pub use render::{RenderBench, render};
pub use soak::soak;
pub use status::status;
pub use stitch::stitch;
pub use throughput::throughput;
pub use utilisation::utilisation;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use async_nats::jetstream::consumer::PullConsumer;
use tokio_util::sync::CancellationToken;

use crate::bus::protocol;
use crate::config::Deps;
use crate::core::job::Class;
use crate::farm::{FarmConfig, up};
use crate::roles::worker::WorkerConfig;
use crate::store::Store;

/// The lines a benchmark adds to the summary of [`all`]: each figure with its baseline and
/// its target.
pub type Summary = Vec<String>;

/// Runs every benchmark of the performance table, one after the other, each on its own
/// server and farm, and prints the summary of them all at the end. Failover starts
/// `tessera-worker` processes: build every binary first.
pub async fn all() -> anyhow::Result<()> {
    let mut summary = Summary::new();
    summary.extend(throughput(3000, 3).await?);
    println!();
    summary.extend(dispatch(200).await?);
    println!();
    summary.extend(failover(3).await?);
    println!();
    summary.extend(stitch(3).await?);
    println!();
    summary.extend(utilisation(6, 1).await?);
    println!();
    summary.extend(plan(100_000, 3).await?);
    println!();
    summary.extend(catchup(20_000, 2).await?);
    println!();
    summary.extend(chain(1000, 1).await?);
    println!();
    summary.extend(status(1_000_000, 5).await?);
    println!();
    if browser::available() {
        summary.extend(dashboard(10_000, 5).await?);
        println!();
    } else {
        println!("dashboard: skipped (no chromium and chromedriver on PATH)\n");
    }
    println!("summary (medians; ratios within this run):");
    summary.sort();
    for line in summary {
        println!("  {line}");
    }
    Ok(())
}

/// The durable pull consumer `raw` of a raw baseline's `stream`.
async fn raw_consumer(stream: &jetstream::stream::Stream) -> anyhow::Result<PullConsumer> {
    let config = jetstream::consumer::pull::Config {
        durable_name: Some("raw".into()),
        ack_wait: Duration::from_secs(30),
        ..Default::default()
    };
    Ok(stream.get_or_create_consumer("raw", config).await?)
}

/// Publishes `count` copies of `payload` on `subject` and waits until all are stored, in
/// windows: the client allows a bounded number of unconfirmed publishes.
async fn publish_stored(
    js: &jetstream::Context,
    subject: &'static str,
    count: usize,
    payload: bytes::Bytes,
) -> anyhow::Result<()> {
    let mut left = count;
    while left > 0 {
        let window = left.min(1000);
        let mut acks = Vec::with_capacity(window);
        for _ in 0..window {
            acks.push(js.publish(subject, payload.clone()).await?);
        }
        for ack in acks {
            ack.await?;
        }
        left -= window;
    }
    Ok(())
}

/// The last sequence of every stream on the server, by name: what was stored in each
/// between two calls is the difference (a write the server made, and with `sync_interval:
/// always` synced).
pub(super) async fn stream_sequences(
    js: &jetstream::Context,
) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    use futures::TryStreamExt as _;
    let mut sequences = std::collections::BTreeMap::new();
    let mut streams = js.streams();
    while let Some(info) = streams.try_next().await? {
        sequences.insert(info.config.name.clone(), info.state.last_sequence);
    }
    Ok(sequences)
}

/// The messages each stream stored between `before` and `after`, per task of `tasks`,
/// largest first, as `name 1.02` entries; streams that stored nothing are left out.
pub(super) fn writes_per_task(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    tasks: u32,
) -> String {
    let mut writes: Vec<(String, f64)> = after
        .iter()
        .map(|(name, last)| {
            let first = before.get(name).copied().unwrap_or(0);
            (
                name.clone(),
                last.saturating_sub(first) as f64 / f64::from(tasks),
            )
        })
        .filter(|(_, n)| *n > 0.0)
        .collect();
    writes.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = writes.iter().map(|(_, n)| n).sum();
    let each: Vec<String> = writes
        .iter()
        .map(|(name, n)| format!("{name} {n:.2}"))
        .collect();
    format!("{total:.2} ({})", each.join(", "))
}

/// How the benchmark's nats-server syncs: `tessera up`'s default (every write) unless
/// TESSERA_BENCH_SYNC names another interval (e.g. "2m").
fn bench_sync() -> crate::farm::Fsync {
    std::env::var("TESSERA_BENCH_SYNC")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(crate::farm::Fsync::Always)
}

/// `d` in milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Sorted durations with percentiles.
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Sorts `samples`.
    pub fn new(mut samples: Vec<Duration>) -> Samples {
        samples.sort();
        Samples(samples)
    }

    /// The `p`-th percentile (0 to 100), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    /// One line: median, p90, p99, max in milliseconds.
    pub fn line(&self, name: &str) -> String {
        format!(
            "{name:<40} n={:<5} median {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms",
            self.0.len(),
            ms(self.percentile(50.0)),
            ms(self.percentile(90.0)),
            ms(self.percentile(99.0)),
            ms(self.percentile(100.0)),
        )
    }
}

/// A worker configuration for benchmarks: one slot, every renderer, short timings.
pub fn bench_worker(cache: std::path::PathBuf) -> WorkerConfig {
    WorkerConfig {
        id: "bench".into(),
        classes: vec![Class::cpu()],
        slots: 1,
        threads: 1,
        cache_dir: cache,
        cache_size: None,
        renderers: crate::render::built_in(),
        programs: Default::default(),
        ack_wait: crate::bus::streams::default_task_ack_wait(),
        grace: Duration::from_secs(5),
        max_attempt_time: None,
        idle_poll: Duration::from_millis(500),
        max_deliver: None,
        burst: None,
        burst_defer: Duration::from_secs(1),
        speed: 1.0,
    }
}

/// Starts a local farm with `workers` workers in the background; returns its NATS URL,
/// store URL and the token that stops it.
pub async fn start_farm(
    dir: &std::path::Path,
    workers: usize,
) -> anyhow::Result<(String, String, CancellationToken)> {
    start_farm_with(dir, workers, bench_worker(dir.join("cache"))).await
}

/// [`start_farm`] with workers configured as `worker`.
async fn start_farm_with(
    dir: &std::path::Path,
    workers: usize,
    worker: WorkerConfig,
) -> anyhow::Result<(String, String, CancellationToken)> {
    let stop = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let config = FarmConfig {
        data: dir.to_path_buf(),
        workers,
        port: 0,
        servers: 1,
        worker,
        sync: bench_sync(),
        collector: Default::default(),
        // Served, as `tessera up` serves them, on a port of its own.
        metrics: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        web: crate::web::WebArgs {
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            token: None,
        },
    };
    let token = stop.clone();
    tokio::spawn(async move {
        let result = up(config, token, move |ready| {
            let _ = tx.send((ready.nats.clone(), ready.store.clone()));
        })
        .await;
        if let Err(e) = result {
            eprintln!("farm: {e:#}");
        }
    });
    let (nats, store) = rx.await.context("the farm did not start")?;
    Ok((nats, store, stop))
}

/// A local farm started for a benchmark, connected, with its workers registered.
struct BenchFarm {
    dir: std::path::PathBuf,
    nats: String,
    store: String,
    client: async_nats::Client,
    deps: Deps,
    stop: CancellationToken,
}

impl BenchFarm {
    async fn start(workers: usize) -> anyhow::Result<BenchFarm> {
        let dir = tempfile_dir()?;
        let worker = bench_worker(dir.join("cache"));
        BenchFarm::start_with(dir, workers, worker).await
    }

    async fn start_with(
        dir: std::path::PathBuf,
        workers: usize,
        worker: WorkerConfig,
    ) -> anyhow::Result<BenchFarm> {
        let (nats, store, stop) = start_farm_with(&dir, workers, worker).await?;
        let client =
            crate::config::connect(&nats, "tessera-bench", crate::config::Patience::FailFast)
                .await?;
        let deps = Deps::with_client(client.clone(), Store::open(&store)?).await?;
        wait_for_workers(&deps, workers).await?;
        Ok(BenchFarm {
            dir,
            nats,
            store,
            client,
            deps,
            stop,
        })
    }

    /// Stops the farm and removes its folder.
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Submits a job as any NATS client can, JSON on the submission subject, and waits until
/// the stream has it.
pub(super) async fn submit_json(js: &jetstream::Context, body: String) -> anyhow::Result<()> {
    js.publish(protocol::SUBMIT_SUBJECT, body.into())
        .await?
        .await
        .context("submitting")?;
    Ok(())
}

/// Waits until `job` is planned (its record says its tasks are queued), at most `patience`.
pub(super) async fn planned(
    deps: &Deps,
    job: &crate::core::job::JobId,
    patience: Duration,
) -> anyhow::Result<crate::core::state::JobRecord> {
    let started = Instant::now();
    loop {
        if let Some((record, _)) = deps.ledger.job(job).await?
            && record.published
        {
            return Ok(record);
        }
        anyhow::ensure!(started.elapsed() < patience, "job {job} was never planned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prints Tessera's samples beside a baseline measured in the same run, and the ratio of
/// their medians (returned): on a shared machine only such ratios compare across runs.
pub(super) fn print_against(
    baseline: (&str, &Samples),
    ours: (&str, &Samples),
    ratio: &str,
) -> f64 {
    println!("{}", baseline.1.line(baseline.0));
    println!("{}", ours.1.line(ours.0));
    let base = baseline.1.percentile(50.0).as_secs_f64().max(1e-9);
    let times = ours.1.percentile(50.0).as_secs_f64() / base;
    println!("ratio of medians ({ratio}): {times:.1}");
    times
}

/// Waits until `n` workers are registered.
pub async fn wait_for_workers(deps: &Deps, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::roles::client::workers(deps).await?.len() < n {
        if Instant::now() > deadline {
            anyhow::bail!("workers did not register within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

pub(super) fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("tessera-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::job::RendererKind;

    #[test]
    fn percentiles_by_nearest_rank() {
        let s = Samples::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(s.percentile(50.0), Duration::from_millis(50));
        assert_eq!(s.percentile(99.0), Duration::from_millis(99));
        assert_eq!(s.percentile(100.0), Duration::from_millis(100));
        assert_eq!(Samples::new(vec![]).percentile(50.0), Duration::ZERO);
    }

    #[test]
    fn bench_worker_runs_every_renderer() {
        assert!(
            bench_worker("/tmp".into())
                .renderers
                .contains(&RendererKind::Noop)
        );
    }
}
