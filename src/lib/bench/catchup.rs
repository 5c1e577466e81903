//! Collector catch-up: the `task.started` and `task.done` events of every task of sixteen
//! jobs (two in each event partition) are stored while no collector runs, then one
//! collector (and in a second round two, sharing the partitions) are started and timed
//! until the last `job.done`: events applied per second. Beside it, the floor: as many
//! messages drained from a plain stream by one puller in batches.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::{Summary, bench_sync, publish_stored, raw_consumer, submit_json, tempfile_dir};
use crate::bus::protocol::{self, Event, EventKind, TaskMessage};
use crate::bus::publish;
use crate::config::{Deps, Patience, connect, file_url, wait_for_nats};
use crate::core::job::JobId;
use crate::core::plan;
use crate::farm::{free_port, start_nats};
use crate::store::Store;

/// Measures catch-up on a job of `tasks` tasks with 1 to `collectors` collectors.
pub async fn catchup(tasks: u32, collectors: usize) -> anyhow::Result<Summary> {
    let dir = tempfile_dir()?.join("catchup");
    let port = free_port()?;
    let mut nats = start_nats(&dir.join("nats"), port, bench_sync())?;
    let url = format!("nats://127.0.0.1:{port}");
    let store_url = file_url(&dir.join("store"));
    let server = nats.id().context("nats-server has no pid")?;
    let result = rounds(&url, &store_url, tasks, collectors, server).await;
    let _ = nats.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn rounds(
    url: &str,
    store_url: &str,
    tasks: u32,
    collectors: usize,
    server: u32,
) -> anyhow::Result<Summary> {
    let client = wait_for_nats(url, Duration::from_secs(15)).await?;
    let deps = Deps::with_client(client, Store::open(store_url)?).await?;
    let stop = CancellationToken::new();
    let planner = tokio::spawn(crate::roles::planner::run(
        deps.clone(),
        Default::default(),
        stop.child_token(),
    ));
    let tasks = tasks / JOBS as u32 * JOBS as u32;
    let events = 2 * tasks as usize;
    let raw = raw_drain(&deps.js, events).await?;
    let raw_rate = events as f64 / raw.as_secs_f64();
    println!(
        "catch-up: {events} events ({tasks} tasks) stored, then the collectors started, to job.done"
    );
    println!("raw: drain {events} messages, one puller, batches of 64, acks: {raw_rate:.0}/s");
    let mut rates = Vec::new();
    for n in 1..=collectors.max(1) {
        let ids = spread_jobs(&format!("catchup-{n}"));
        let mut done = deps
            .client
            .subscribe(protocol::every_job_events_filter(EventKind::JobDone))
            .await?;
        for id in &ids {
            let job = planned(&deps, id, tasks / JOBS as u32).await?;
            store_events(&deps.js, &job).await?;
        }
        let cpu = (cpu_seconds("self"), cpu_seconds(&server.to_string()));
        let t0 = Instant::now();
        let round = CancellationToken::new();
        let mut running = tokio::task::JoinSet::new();
        for _ in 0..n {
            let deps = Deps::with_client(
                connect(url, "tessera-bench", Patience::FailFast).await?,
                Store::open(store_url)?,
            )
            .await?;
            running.spawn(crate::roles::collector::run(
                deps,
                Default::default(),
                round.child_token(),
            ));
        }
        for _ in &ids {
            tokio::time::timeout(Duration::from_secs(600), done.next())
                .await
                .context("no job.done within ten minutes")?;
        }
        let elapsed = t0.elapsed();
        let busy = (
            cpu_seconds("self") - cpu.0,
            cpu_seconds(&server.to_string()) - cpu.1,
        );
        round.cancel();
        while let Some(ended) = running.join_next().await {
            ended??;
        }
        let rate = events as f64 / elapsed.as_secs_f64();
        println!(
            "{n} collector(s): {events} events in {:.2} s, {rate:.0} events/s ({:.0} % of the raw drain); CPU: collectors {:.2} s, nats-server {:.2} s ({:.0} % of {} cores)",
            elapsed.as_secs_f64(),
            100.0 * rate / raw_rate,
            busy.0,
            busy.1,
            100.0 * (busy.0 + busy.1) / (elapsed.as_secs_f64() * cores() as f64),
            cores()
        );
        rates.push(rate);
    }
    stop.cancel();
    planner.await??;
    let mut line = format!(
        "(7) collector catch-up: 1 collector {:.0} events/s ({:.0} % of a raw drain's {raw_rate:.0})",
        rates[0],
        100.0 * rates[0] / raw_rate
    );
    if let Some(two) = rates.get(1) {
        line.push_str(&format!(
            "; 2 collectors {two:.0} events/s, {:.2}x one (target >= 1.6x with the cores for it; this machine has {})",
            two / rates[0],
            cores()
        ));
    }
    Ok(vec![line])
}

/// The cores of this machine.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU time used so far by process `pid` ("self" for this one), from `/proc` (Linux; 0
/// elsewhere), in seconds of the kernel's 100 Hz clock ticks.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (in parentheses, which may hold spaces): utime is the 12th
    // field, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Jobs of each round.
const JOBS: usize = 16;

/// [`JOBS`] job ids starting with `prefix`, two in each event partition: the jobs of a busy
/// farm, spread over the partitions as many jobs are on average.
fn spread_jobs(prefix: &str) -> Vec<String> {
    let per_partition = JOBS / protocol::EVENT_PARTITIONS as usize;
    let mut taken = vec![0; protocol::EVENT_PARTITIONS as usize];
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|id| {
            let slot = &mut taken[protocol::event_partition(id) as usize];
            *slot += 1;
            *slot <= per_partition
        })
        .take(per_partition * protocol::EVENT_PARTITIONS as usize)
        .collect()
}

/// Submits a noop job of `tasks` tasks and waits until the planner has queued it.
async fn planned(deps: &Deps, id: &str, tasks: u32) -> anyhow::Result<crate::core::job::Job> {
    let body =
        format!(r#"{{"id": "{id}", "renderer": "noop", "frames": {{"range": "1-{tasks}"}}}}"#);
    submit_json(&deps.js, body).await?;
    let job_id = JobId::parse(id).map_err(anyhow::Error::msg)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some((record, _)) = deps.ledger.job(&job_id).await?
            && record.published
        {
            return record.job().map_err(anyhow::Error::msg);
        }
        anyhow::ensure!(Instant::now() < deadline, "job {id} was never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stores what workers would send for every task of `job`: started, then done.
pub(super) async fn store_events(
    js: &jetstream::Context,
    job: &crate::core::job::Job,
) -> anyhow::Result<()> {
    let indexes: Vec<u32> = (0..plan::task_count(job)).collect();
    for window in indexes.chunks(500) {
        let mut pending = Vec::with_capacity(window.len() * 2);
        for &index in window {
            let task = TaskMessage::new(job, &plan::task(job, index));
            for kind in [EventKind::TaskStarted, EventKind::TaskDone] {
                let event = Event::task(kind, &task, 1, "bench");
                pending.push(publish::event_pending(js, &event, None).await?);
            }
        }
        for p in pending {
            p.confirmed().await?;
        }
    }
    Ok(())
}

/// Drains `count` event-sized messages from a plain stream with one puller taking batches
/// of 64 and acknowledging each; returns the time from the first pull to the last ack.
async fn raw_drain(js: &jetstream::Context, count: usize) -> anyhow::Result<Duration> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: "BENCH_DRAIN".into(),
            subjects: vec!["bench.drain".into()],
            ..Default::default()
        })
        .await?;
    publish_stored(js, "bench.drain", count, vec![b'x'; 160].into()).await?;
    let consumer = raw_consumer(&stream).await?;
    let t0 = Instant::now();
    let mut left = count;
    while left > 0 {
        let mut batch = consumer
            .batch()
            .max_messages(64)
            .expires(Duration::from_secs(1))
            .messages()
            .await?;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| anyhow::anyhow!("{e}"))?;
            msg.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            left = left.saturating_sub(1);
        }
    }
    let elapsed = t0.elapsed();
    js.delete_stream("BENCH_DRAIN").await?;
    Ok(elapsed)
}
