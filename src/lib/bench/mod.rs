//! Benchmarks run by `tessera-bench`: each starts what it measures (a private nats-server,
//! a local farm) and prints medians next to a raw baseline measured in the same run, so
//! figures from a noisy machine can be compared as ratios. The real renderers' benchmark
//! is [`fn@programs`].

mod programs;
mod soak;
mod throughput;

pub use programs::programs;
pub use soak::soak;
pub use throughput::throughput;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::bus::protocol::{self, EventKind};
use crate::config::Deps;
use crate::core::job::Class;
use crate::farm::{FarmConfig, up};
use crate::roles::worker::WorkerConfig;
use crate::store::Store;

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
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
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
        worker,
        // `tessera up`'s default unless TESSERA_BENCH_SYNC names another (e.g. "2m").
        sync: std::env::var("TESSERA_BENCH_SYNC")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(crate::farm::Fsync::Always),
        collector: Default::default(),
    };
    let token = stop.clone();
    tokio::spawn(async move {
        let result = up(config, token, move |nats, store| {
            let _ = tx.send((nats.to_string(), store.to_string()));
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

/// Submit-to-start latency on an idle farm: from publishing a submission to the worker's
/// `task.started` event, `runs` times, next to a raw JetStream publish-to-pull loop.
pub async fn dispatch(runs: usize) -> anyhow::Result<()> {
    let farm = BenchFarm::start(1).await?;
    let (client, deps) = (&farm.client, &farm.deps);

    let raw = raw_publish_to_pull(&deps.js, runs).await?;

    let mut started = client
        .subscribe(protocol::every_job_events_filter(EventKind::TaskStarted))
        .await?;
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let id = format!("bench-{i}");
        let body =
            format!(r#"{{"id": "{id}", "renderer": "noop", "settings": {{"sleep_ms": 0}}}}"#);
        tokio::time::sleep(Duration::from_millis(20)).await; // idle again
        let t0 = Instant::now();
        submit_json(&deps.js, body).await?;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), started.next())
                .await
                .context("no task.started within 10 s")?
                .context("subscription ended")?;
            if msg.subject.as_str() == protocol::event_subject(&id, EventKind::TaskStarted) {
                samples.push(t0.elapsed());
                break;
            }
        }
    }
    println!("dispatch: submit-to-start on an idle farm (1 worker, noop renderer)");
    print_against(
        ("raw JetStream publish -> waiting pull", &raw),
        ("tessera submit -> task.started", &Samples::new(samples)),
        "tessera / raw",
    );
    farm.stop().await;
    Ok(())
}

/// Submits a job as any NATS client can, JSON on the submission subject, and waits until
/// the stream has it.
async fn submit_json(js: &jetstream::Context, body: String) -> anyhow::Result<()> {
    js.publish(protocol::SUBMIT_SUBJECT, body.into())
        .await?
        .await
        .context("submitting")?;
    Ok(())
}

/// Prints Tessera's samples beside a baseline measured in the same run, and the ratio of
/// their medians: on a shared machine only such ratios compare across runs.
fn print_against(baseline: (&str, &Samples), ours: (&str, &Samples), ratio: &str) {
    println!("{}", baseline.1.line(baseline.0));
    println!("{}", ours.1.line(ours.0));
    let base = baseline.1.percentile(50.0).as_secs_f64().max(1e-9);
    println!(
        "ratio of medians ({ratio}): {:.1}",
        ours.1.percentile(50.0).as_secs_f64() / base
    );
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

/// Planning: from publishing a submission of a `tasks`-task noop job to every task queued
/// (the job record says so), `runs` times, on a farm without workers; beside it, the raw
/// time to publish and confirm as many task-sized messages one by one in the same run.
pub async fn plan(tasks: u32, runs: usize) -> anyhow::Result<()> {
    let farm = BenchFarm::start(0).await?;
    let deps = &farm.deps;
    let mut samples = Vec::with_capacity(runs);
    for run in 0..runs {
        let id = format!("plan-{run}");
        let body =
            format!(r#"{{"id": "{id}", "renderer": "noop", "frames": {{"range": "1-{tasks}"}}}}"#);
        let job = crate::core::job::JobId::parse(&id).map_err(anyhow::Error::msg)?;
        let t0 = Instant::now();
        submit_json(&deps.js, body).await?;
        loop {
            if let Some((record, _)) = deps.ledger.job(&job).await?
                && record.published
            {
                samples.push(t0.elapsed());
                break;
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(120),
                "job {id} was never queued"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        crate::roles::client::cancel(deps, &job).await?;
    }
    let samples = Samples::new(samples);
    println!("plan: submit -> every task queued (one atomic batch), {tasks} tasks, no workers");
    println!("{}", samples.line(&format!("plan {tasks} tasks")));
    farm.stop().await;
    Ok(())
}

/// The raw baseline: a work-queue stream, one durable pull consumer with a pull waiting,
/// timed from publish to the message in hand.
async fn raw_publish_to_pull(js: &jetstream::Context, runs: usize) -> anyhow::Result<Samples> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: "BENCH_RAW".into(),
            subjects: vec!["bench.raw".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            "raw",
            consumer::pull::Config {
                durable_name: Some("raw".into()),
                ..Default::default()
            },
        )
        .await?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await?;
        tokio::time::sleep(Duration::from_millis(5)).await; // the pull is waiting
        let t0 = Instant::now();
        js.publish("bench.raw", "x".into()).await?.await?;
        let msg = batch
            .next()
            .await
            .context("no message")?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        samples.push(t0.elapsed());
        msg.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    js.delete_stream("BENCH_RAW").await?;
    Ok(Samples::new(samples))
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("tessera-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Failover: SIGKILL the worker rendering a task and time until the task starts on another
/// worker, `runs` times, with the default ack deadline. Workers are separate processes (the
/// `tessera-worker` binary beside this one); the rest of the farm runs in this process.
pub async fn failover(runs: usize) -> anyhow::Result<()> {
    let farm = BenchFarm::start(0).await?;
    let (client, deps) = (&farm.client, &farm.deps);
    let binary = std::env::current_exe()?
        .parent()
        .context("no folder beside tessera-bench")?
        .join("tessera-worker");
    let spawn = |n: usize| {
        std::process::Command::new(&binary)
            .args(["--id", &format!("fo{n}"), "--renderers", "noop"])
            .env("NATS_URL", &farm.nats)
            .env("TESSERA_STORE", &farm.store)
            .env("RUST_LOG", "warn")
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))
    };
    let mut workers: std::collections::BTreeMap<String, std::process::Child> =
        std::collections::BTreeMap::new();
    let mut next = 0;
    for _ in 0..2 {
        workers.insert(format!("fo{next}"), spawn(next)?);
        next += 1;
    }
    wait_for_workers(deps, 2).await?;
    let mut started = client
        .subscribe(protocol::every_job_events_filter(EventKind::TaskStarted))
        .await?;
    let mut samples = Vec::new();
    for run in 0..runs {
        let id = format!("failover-{run}");
        let body =
            format!(r#"{{"id": "{id}", "renderer": "noop", "settings": {{"sleep_ms": 600000}}}}"#);
        submit_json(&deps.js, body).await?;
        let first = next_start(&mut started, &id).await?;
        let victim = first
            .worker
            .clone()
            .context("task.started without a worker")?;
        let mut child = workers
            .remove(&victim)
            .context("the task started on an unknown worker")?;
        child.kill()?;
        let killed = Instant::now();
        child.wait()?;
        next_start(&mut started, &id).await?;
        samples.push(killed.elapsed());
        crate::roles::client::cancel(
            deps,
            &crate::core::job::JobId::parse(&id).map_err(anyhow::Error::msg)?,
        )
        .await?;
        workers.insert(format!("fo{next}"), spawn(next)?);
        next += 1;
        wait_for_workers(deps, 2).await?;
    }
    let samples = Samples::new(samples);
    println!(
        "failover: SIGKILL of the rendering worker to the task started on another (ack deadline {:?})",
        crate::bus::streams::default_task_ack_wait()
    );
    println!("{}", samples.line("SIGKILL -> task.started elsewhere"));
    for (_, mut child) in workers {
        let _ = child.kill();
        let _ = child.wait();
    }
    farm.stop().await;
    Ok(())
}

async fn next_start(
    sub: &mut async_nats::Subscriber,
    job: &str,
) -> anyhow::Result<protocol::Event> {
    let subject = protocol::event_subject(job, EventKind::TaskStarted);
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .context("no task.started within 60 s")?
            .context("subscription ended")?;
        if msg.subject.as_str() == subject {
            return protocol::decode(&msg.payload).map_err(anyhow::Error::msg);
        }
    }
}

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

/// Tile assembly: a 3840×2160 frame in a 10×10 grid, `runs` times; the time from the last
/// tile's `task.done` (sent once its output is stored) to `job.done` (sent once the stitched
/// frame is stored), next to the time to encode that frame alone in the same run.
pub async fn stitch(runs: usize) -> anyhow::Result<()> {
    let farm = BenchFarm::start(2).await?;
    let (client, deps) = (&farm.client, &farm.deps);
    let mut last_tile_to_frame = Vec::new();
    let mut encode_only = Vec::new();
    for run in 0..runs {
        let id = format!("stitch-{run}");
        let mut events = client.subscribe(protocol::job_events_filter(&id)).await?;
        let body = format!(
            r#"{{"id": "{id}", "renderer": "builtin", "image": {{"width": 3840, "height": 2160}},
                "tiles": {{"grid": [10, 10]}}, "settings": {{"samples": 1, "bounces": 0}}}}"#
        );
        submit_json(&deps.js, body).await?;
        let mut last_tile = None;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(300), events.next())
                .await
                .context("the job did not end within 300 s")?
                .context("subscription ended")?;
            let at = Instant::now();
            let kind = msg.subject.as_str().rsplit_once(&format!("{id}."));
            match kind.map(|(_, k)| k) {
                Some("task.done") => last_tile = Some(at),
                Some("job.done") => {
                    let last = last_tile.context("job.done before any task.done")?;
                    last_tile_to_frame.push(at - last);
                    break;
                }
                Some("job.failed") | Some("job.rejected") => anyhow::bail!("job {id} failed"),
                _ => {}
            }
        }
        let job = crate::core::job::JobId::parse(&id).map_err(anyhow::Error::msg)?;
        let bytes = deps
            .store
            .get(&crate::store::keys::output(&job, "frame_0001.png"))
            .await?;
        let image = crate::core::raster::decode(&bytes).map_err(anyhow::Error::msg)?;
        let t0 = Instant::now();
        crate::core::raster::encode_image(&image, crate::core::job::ImageFormat::Png)
            .map_err(anyhow::Error::msg)?;
        encode_only.push(t0.elapsed());
    }
    println!("stitch: 3840x2160 frame in 10x10 tiles, PNG 8-bit (2 workers, builtin renderer)");
    print_against(
        ("encode the 4K PNG alone", &Samples::new(encode_only)),
        (
            "last tile stored -> frame stored",
            &Samples::new(last_tile_to_frame),
        ),
        "tessera / encode alone",
    );
    farm.stop().await;
    Ok(())
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
