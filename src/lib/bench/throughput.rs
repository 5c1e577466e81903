//! Throughput: a job of many one-frame tasks from submit to `job.done` on a local farm (two
//! workers of eight slots), with the renderer in process (noop) and with a child process
//! per task (the command renderer running `cp`), beside a raw JetStream loop on
//! the same server in the same run — the tasks published (confirmed, a thousand in flight)
//! while sixteen pullers each fetch one, publish an event and wait for it to be stored,
//! then acknowledge with confirmation — which is the floor any JetStream work queue stands
//! on — and, for the child processes, as many `cp` processes started straight from sixteen
//! loops, the floor of a process per task on this machine. The raw loop is also run with
//! its tasks stored before the clock starts, a floor that leaves the publishing out (Tessera
//! publishes its tasks while its workers take them). Also reported: how long the collector
//! takes from the last `task.done` to `job.done`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use futures::StreamExt as _;

use super::{
    BenchFarm, Samples, Summary, bench_worker, ms, publish_stored, raw_consumer, stream_sequences,
    submit_json, tempfile_dir, writes_per_task,
};
use crate::bus::protocol::{self, EventKind};

/// Pullers of the raw loop (two workers × eight slots).
const PULLERS: usize = 16;

/// Runs `runs` rounds of `tasks` tasks each, raw loop and Tessera in turn.
pub async fn throughput(tasks: u32, runs: usize) -> anyhow::Result<Summary> {
    let dir = tempfile_dir()?;
    let mut worker = bench_worker(dir.join("cache"));
    worker.slots = 8;
    let farm = BenchFarm::start_with(dir, 2, worker).await?;
    let (client, js) = (&farm.client, &farm.deps.js);
    // The noop renderer runs in the worker; the command renderer starts a process per task.
    let renderers = [
        (
            "renderer in process",
            r#""renderer": "noop", "settings": {"sleep_ms": 0}"#.to_string(),
        ),
        (
            "a child process per task",
            r#""renderer": "command", "settings": {"check_outputs": false, "command": ["cp", "/etc/hostname", "{output}"]}"#.to_string(),
        ),
    ];
    let (mut raw, mut stored_first) = (Vec::new(), Vec::new());
    let mut spawned = Vec::new();
    let mut rows = Vec::new();
    for (name, renderer) in &renderers {
        let (mut ours, mut lag, mut shares) = (Vec::new(), Vec::new(), Vec::new());
        let mut strict = Vec::new();
        for run in 0..runs {
            let mut floor = raw_loop(js, tasks as usize, Publish::InTheLoop).await?;
            raw.push(floor);
            let before = raw_loop(js, tasks as usize, Publish::Beforehand).await?;
            stored_first.push(before);
            if rows.len() == 1 {
                floor = raw_spawn(&farm.dir, tasks as usize).await?;
                spawned.push(floor);
            }
            let id = format!("throughput-{}-{run}", rows.len());
            let mut events = client.subscribe(protocol::job_events_filter(&id)).await?;
            let body =
                format!(r#"{{"id": "{id}", "frames": {{"range": "1-{tasks}"}}, {renderer}}}"#);
            let sequences = stream_sequences(js).await?;
            let t0 = Instant::now();
            submit_json(js, body).await?;
            let mut last_done = t0;
            loop {
                let msg = tokio::time::timeout(Duration::from_secs(300), events.next())
                    .await
                    .context("no event of the job for five minutes")?
                    .context("the subscription ended")?;
                match protocol::parse_event_kind(&msg.subject) {
                    Some(EventKind::TaskDone) => last_done = Instant::now(),
                    Some(EventKind::JobDone) => break,
                    Some(kind) if kind.is_final() => {
                        anyhow::bail!("job {id} ended with {kind:?}")
                    }
                    _ => {}
                }
            }
            ours.push(t0.elapsed());
            lag.push(last_done.elapsed());
            shares.push(floor.as_secs_f64() / t0.elapsed().as_secs_f64());
            strict.push(before.as_secs_f64() / t0.elapsed().as_secs_f64());
            let writes = writes_per_task(&sequences, &stream_sequences(js).await?, tasks);
            println!("  {name}, run {run}: messages stored per task {writes}");
        }
        let shares = (median(shares), median(strict));
        rows.push((*name, Samples::new(ours), Samples::new(lag), shares));
    }
    let rate = |samples: &Samples| f64::from(tasks) / samples.percentile(50.0).as_secs_f64();
    let (raw, spawned) = (Samples::new(raw), Samples::new(spawned));
    let stored_first = Samples::new(stored_first);
    println!(
        "throughput: {tasks} one-frame tasks, 2 workers x 8 slots ({runs} runs each, medians)"
    );
    println!(
        "{}",
        raw.line("raw loop (publish, fetch 1, event, confirmed ack)")
    );
    println!(
        "{}",
        stored_first.line("raw loop, its tasks stored beforehand")
    );
    println!("{}", spawned.line("raw: start `cp` from 16 loops"));
    let mut summary = Summary::new();
    for (i, (name, ours, lag, (share, strict))) in rows.iter().enumerate() {
        println!("{}", ours.line(&format!("submit -> job.done, {name}")));
        println!("{}", lag.line("  last task.done -> job.done"));
        let (floor, floor_name, target) = match i {
            0 => (&raw, "the raw loop", "target >= 50 % and >= 2,000/s"),
            _ => (&spawned, "starting `cp` alone", "target >= 1,000/s"),
        };
        let beside = match i {
            0 => format!(
                "; {:.0} % of the loop with its tasks stored beforehand ({:.0}/s)",
                100.0 * strict,
                rate(&stored_first)
            ),
            _ => String::new(),
        };
        let line = format!(
            "{:.0} tasks/s, {:.0} % of {floor_name} ({:.0}/s; the median of each run's share of the floor measured just before it){beside}; last task.done -> job.done {:.0} ms ({target}; <= 500 ms)",
            rate(ours),
            100.0 * share,
            rate(floor),
            ms(lag.percentile(50.0)),
        );
        println!("  {name}: {line}");
        summary.push(format!("(1) throughput, {name}: {line}"));
    }
    summary.push(format!(
        "(1) throughput, raw JetStream loop: {:.0} tasks/s ({:.0}/s with its tasks stored beforehand)",
        rate(&raw),
        rate(&stored_first)
    ));
    farm.stop().await;
    Ok(summary)
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Starts `tasks` `cp` processes from sixteen loops, each copying a small file as the
/// command renderer's benchmark job does, then removing the copy; returns the time taken.
async fn raw_spawn(dir: &std::path::Path, tasks: usize) -> anyhow::Result<Duration> {
    let dir = dir.join("raw-spawn");
    std::fs::create_dir_all(&dir)?;
    let left = Arc::new(AtomicUsize::new(tasks));
    let t0 = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..PULLERS {
        let (dir, left) = (dir.clone(), left.clone());
        loops.spawn(async move {
            loop {
                let n = left.fetch_sub(1, Ordering::Relaxed);
                if n == 0 || n > tasks {
                    return anyhow::Ok(());
                }
                let target = dir.join(format!("frame_{n:06}"));
                let status = tokio::process::Command::new("cp")
                    .arg("/etc/hostname")
                    .arg(&target)
                    .status()
                    .await?;
                anyhow::ensure!(status.success(), "cp failed: {status}");
                tokio::fs::remove_file(&target).await?;
            }
        });
    }
    while let Some(done) = loops.join_next().await {
        done??;
    }
    let elapsed = t0.elapsed();
    std::fs::remove_dir_all(&dir)?;
    Ok(elapsed)
}

/// When the raw loop's tasks are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// While the pullers take them, on the clock (the issue's loop: publish, fetch one,
    /// event, confirmed ack).
    InTheLoop,
    /// All stored before the clock starts.
    Beforehand,
}

/// Drains `tasks` messages through [`PULLERS`] pullers, their tasks published as `publish`
/// says; returns the time from the first fetch to the last acknowledgement.
async fn raw_loop(
    js: &jetstream::Context,
    tasks: usize,
    publish: Publish,
) -> anyhow::Result<Duration> {
    let work = js
        .get_or_create_stream(stream::Config {
            name: "BENCH_TP".into(),
            subjects: vec!["bench.tp.task".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await?;
    js.get_or_create_stream(stream::Config {
        name: "BENCH_TP_EVENTS".into(),
        subjects: vec!["bench.tp.event".into()],
        ..Default::default()
    })
    .await?;
    let consumer = raw_consumer(&work).await?;
    if publish == Publish::Beforehand {
        publish_stored(js, "bench.tp.task", tasks, "task".into()).await?;
    }
    let left = Arc::new(AtomicUsize::new(tasks));
    let t0 = Instant::now();
    let mut pullers = tokio::task::JoinSet::new();
    if publish == Publish::InTheLoop {
        let js = js.clone();
        pullers
            .spawn(async move { publish_stored(&js, "bench.tp.task", tasks, "task".into()).await });
    }
    for _ in 0..PULLERS {
        let (consumer, js, left) = (consumer.clone(), js.clone(), left.clone());
        pullers.spawn(async move {
            while left.load(Ordering::Relaxed) > 0 {
                let mut batch = consumer
                    .batch()
                    .max_messages(1)
                    .expires(Duration::from_millis(200))
                    .messages()
                    .await?;
                let Some(msg) = batch.next().await else {
                    continue;
                };
                let msg = msg.map_err(|e| anyhow::anyhow!("{e}"))?;
                js.publish("bench.tp.event", msg.payload.clone())
                    .await?
                    .await?;
                msg.double_ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                left.fetch_sub(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = pullers.join_next().await {
        done??;
    }
    let elapsed = t0.elapsed();
    js.delete_stream("BENCH_TP").await?;
    js.delete_stream("BENCH_TP_EVENTS").await?;
    Ok(elapsed)
}
