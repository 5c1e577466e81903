//! Dependencies, measured in the collector alone: a simulation of N frames × 3 layers,
//! each layer after the one before, and a render of N frames × 3 chained layers that runs
//! after it frame by frame (`after_frames`). Both are planned, then the `task.started` and
//! `task.done` events a farm would send for every task are stored — in an order a farm
//! could send them, both jobs in one event partition so that one collector reads them in
//! that order — while no collector runs; then one collector is started and timed to the
//! second `job.done`. Every `task.done` of the simulation releases the next layer of its
//! frame and, once a frame's three layers are done, the render's first layer of it; each
//! of the render's releases its next layer. Beside it, in the same run, the same jobs and
//! events with no dependency: the collector's time releasing dependents is the difference,
//! measured at N and 2N frames. Linear means the difference doubles with N.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::catchup::store_events;
use super::{Summary, bench_sync, ms, submit_json, tempfile_dir};
use crate::bus::protocol::{self, EventKind};
use crate::config::{Deps, Patience, connect, file_url, wait_for_nats};
use crate::core::job::{Job, JobId};
use crate::farm::{free_port, start_nats};
use crate::store::Store;

/// Measures `runs` rounds of each kind at `frames` frames and at twice as many.
pub async fn chain(frames: u32, runs: usize) -> anyhow::Result<Summary> {
    let dir = tempfile_dir()?.join("chain");
    let port = free_port()?;
    let mut nats = start_nats(&dir.join("nats"), port, bench_sync())?;
    let url = format!("nats://127.0.0.1:{port}");
    let result = rounds(&url, &file_url(&dir.join("store")), frames, runs).await;
    let _ = nats.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn rounds(url: &str, store: &str, frames: u32, runs: usize) -> anyhow::Result<Summary> {
    let client = wait_for_nats(url, Duration::from_secs(15)).await?;
    let deps = Deps::with_client(client, Store::open(store)?).await?;
    let stop = CancellationToken::new();
    let planner = tokio::spawn(crate::roles::planner::run(
        deps.clone(),
        Default::default(),
        stop.child_token(),
    ));
    println!(
        "dependencies: a simulation of N frames x 3 chained layers and a render of N frames x 3 chained layers after it frame by frame; their events stored, then one collector timed to both job.done ({runs} runs each, medians)"
    );
    let mut rows = Vec::new();
    for size in [frames, 2 * frames] {
        let (mut chained, mut free) = (Vec::new(), Vec::new());
        for run in 0..runs {
            for dependent in [true, false] {
                let id = format!("chain-{size}-{}-{run}", if dependent { "c" } else { "u" });
                let took = round(&deps, url, store, &id, size, dependent).await?;
                match dependent {
                    true => chained.push(took),
                    false => free.push(took),
                }
            }
        }
        chained.sort();
        free.sort();
        let (chained, free) = (chained[runs / 2], free[runs / 2]);
        let releasing = chained.saturating_sub(free);
        let tasks = 6 * size;
        println!(
            "  N = {size} ({tasks} tasks, {} events): chained {:.2} s, no dependency {:.2} s; releasing {:.0} ms, {:.0} us per done task",
            2 * tasks,
            chained.as_secs_f64(),
            free.as_secs_f64(),
            ms(releasing),
            releasing.as_secs_f64() * 1e6 / f64::from(tasks)
        );
        rows.push((size, chained, free, releasing));
    }
    stop.cancel();
    planner.await??;
    let ((n, small_chained, small_free, small), (large_n, _, _, large)) = (rows[0], rows[1]);
    let line = format!(
        "(8) dependencies: {n} frames x 3 chained layers and a job after it frame by frame, in the collector: {:.2} s against {:.2} s without dependencies, so releasing takes {:.0} ms ({:.0} us per done task); at {large_n} frames {:.0} ms, {:.2}x (linear: 2x)",
        small_chained.as_secs_f64(),
        small_free.as_secs_f64(),
        ms(small),
        small.as_secs_f64() * 1e6 / f64::from(6 * n),
        ms(large),
        large.as_secs_f64() / small.as_secs_f64().max(1e-9)
    );
    println!("  {line}");
    Ok(vec![line])
}

/// Plans the simulation `<id>-sim` and the render `<id>-<n>` (in the same event
/// partition) of `frames` frames × 3 layers — chained, the render after the simulation
/// frame by frame, when `dependent` — stores their events, then times one collector to
/// both `job.done`.
async fn round(
    deps: &Deps,
    url: &str,
    store: &str,
    id: &str,
    frames: u32,
    dependent: bool,
) -> anyhow::Result<Duration> {
    let sim = format!("{id}-sim");
    let partition = protocol::event_partition(&sim);
    let render = (0..)
        .map(|i| format!("{id}-{i}"))
        .find(|r| protocol::event_partition(r) == partition)
        .expect("some id falls in every partition");
    let layers = match dependent {
        true => r#"[{"name": "a"}, {"name": "b", "after": ["a"]}, {"name": "c", "after": ["b"]}]"#,
        false => r#"[{"name": "a"}, {"name": "b"}, {"name": "c"}]"#,
    };
    let spec = |id: &str, extra: &str| {
        format!(
            r#"{{"id": "{id}", "renderer": "noop", "frames": {{"range": "1-{frames}"}}, "layers": {layers}{extra}}}"#
        )
    };
    let after = match dependent {
        true => format!(r#", "after_frames": "{sim}""#),
        false => String::new(),
    };
    submit_json(&deps.js, spec(&sim, "")).await?;
    let sim_job = planned(deps, &sim, |_| true).await?;
    submit_json(&deps.js, spec(&render, &after)).await?;
    let render_job = planned(deps, &render, |_| true).await?;
    // The render is in the simulation's record (and its change announced) before any
    // event of theirs is stored.
    if dependent {
        planned(deps, &sim, |job| !job.frame_waiters.is_empty()).await?;
    }
    let mut done = deps
        .client
        .subscribe(protocol::every_job_events_filter(EventKind::JobDone))
        .await?;
    store_events(&deps.js, &sim_job).await?;
    store_events(&deps.js, &render_job).await?;

    let t0 = Instant::now();
    let round = CancellationToken::new();
    let collector_deps = Deps::with_client(
        connect(url, "tessera-bench", Patience::FailFast).await?,
        Store::open(store)?,
    )
    .await?;
    let collector = tokio::spawn(crate::roles::collector::run(
        collector_deps,
        Default::default(),
        round.child_token(),
    ));
    let mut left = [sim.clone(), render.clone()].to_vec();
    while !left.is_empty() {
        let msg = tokio::time::timeout(Duration::from_secs(600), done.next())
            .await
            .with_context(|| format!("jobs {left:?} were not done within ten minutes"))?
            .context("the subscription ended")?;
        if let Some(job) = protocol::parse_event_job(msg.subject.as_str()) {
            left.retain(|j| j != job.as_str());
        }
    }
    let took = t0.elapsed();
    round.cancel();
    collector.await??;
    Ok(took)
}

/// Waits until the planner has queued job `id` and its record satisfies `ready`.
async fn planned(deps: &Deps, id: &str, ready: impl Fn(&Job) -> bool) -> anyhow::Result<Job> {
    let job_id = JobId::parse(id).map_err(anyhow::Error::msg)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some((record, _)) = deps.ledger.job(&job_id).await?
            && record.published
        {
            let job = record.job().map_err(anyhow::Error::msg)?;
            if ready(&job) {
                return Ok(job);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "job {id} was never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
