//! The soak benchmark: a farm of separate processes (nats-server, planner, collector, a
//! worker) renders and deletes many small tiled jobs, and at each checkpoint reports what
//! it holds — objects and bytes in the store, entries in the jobs bucket, messages in the
//! streams — and every process's resident memory. Flat rows are the result: nothing of a
//! deleted job stays, and no role grows with the jobs it has seen.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;

use crate::bus::protocol::{self, EventKind};
use crate::bus::streams;
use crate::config::Deps;
use crate::store::Store;

/// Jobs in flight at once.
const IN_FLIGHT: usize = 16;

/// Renders and deletes `jobs` jobs, reporting every `every`.
pub async fn soak(jobs: usize, every: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("tessera-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = crate::farm::free_port()?;
    let mut nats = crate::farm::start_nats(&dir.join("nats"), port, crate::farm::Fsync::Always)?;
    let url = format!("nats://127.0.0.1:{port}");
    let store_url = format!("file://{}", dir.join("store").display());
    let client = crate::config::wait_for_nats(&url, Duration::from_secs(15)).await?;
    let deps = Deps::with_client(client.clone(), Store::open(&store_url)?).await?;
    let beside = std::env::current_exe()?
        .parent()
        .context("no folder beside tessera-bench")?
        .to_path_buf();
    let cache = dir.join("cache").display().to_string();
    let roles = [
        ("planner", vec![]),
        ("collector", vec![]),
        (
            "worker",
            vec!["--id", "soak", "--threads", "1", "--cache", &cache],
        ),
    ];
    let mut children = BTreeMap::new();
    for (role, args) in roles {
        let binary = beside.join(format!("tessera-{role}"));
        let child = std::process::Command::new(&binary)
            .args(args)
            .env("NATS_URL", &url)
            .env("TESSERA_STORE", &store_url)
            .env("RUST_LOG", "warn")
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build every binary first: cargo build --release)",
                    binary.display()
                )
            })?;
        children.insert(role, child);
    }
    super::wait_for_workers(&deps, 1).await?;
    let mut ends = client.subscribe(protocol::EVERY_JOB_LEVEL_EVENT).await?;
    println!(
        "soak: {jobs} tiled jobs (32x18, 2 tiles, 2 frames) rendered, then deleted, {IN_FLIGHT} at a time"
    );
    println!(
        "{:>6} {:>8} {:>9} {:>12} {:>9} {:>9} {:>9} {:>11} {:>11} {:>11} {:>11}",
        "jobs",
        "secs",
        "objects",
        "store bytes",
        "kv msgs",
        "events",
        "tasks",
        "nats MiB",
        "planner MiB",
        "collect MiB",
        "worker MiB"
    );
    let started = Instant::now();
    let (mut submitted, mut deleted) = (0, 0);
    let mut pending = std::collections::HashSet::new();
    report(&deps, &dir, &nats, &children, 0, started).await?;
    while deleted < jobs {
        while submitted < jobs && pending.len() < IN_FLIGHT {
            let id = format!("soak-{submitted}");
            let body = format!(
                r#"{{"id": "{id}", "image": {{"width": 32, "height": 18}}, "frames": {{"range": "1-2"}}, "tiles": {{"grid": [2, 1]}}, "settings": {{"samples": 1}}}}"#
            );
            super::submit_json(&deps.js, body).await?;
            pending.insert(id);
            submitted += 1;
        }
        let msg = tokio::time::timeout(Duration::from_secs(120), ends.next())
            .await
            .context("no job ended for two minutes")?
            .context("the event subscription ended")?;
        let Some(job) = protocol::parse_event_job(&msg.subject) else {
            continue;
        };
        let kind = protocol::parse_event_kind(&msg.subject);
        if !kind.is_some_and(EventKind::is_final) || !pending.remove(job.as_str()) {
            continue;
        }
        if kind != Some(EventKind::JobDone) {
            anyhow::bail!("job {job} ended with {kind:?}");
        }
        crate::roles::client::delete(&deps, &job, false).await?;
        deleted += 1;
        if deleted % every == 0 {
            report(&deps, &dir, &nats, &children, deleted, started).await?;
        }
    }
    for (_, mut child) in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = nats.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// One row: what the farm holds after `done` jobs.
async fn report(
    deps: &Deps,
    dir: &Path,
    nats: &tokio::process::Child,
    children: &BTreeMap<&str, std::process::Child>,
    done: usize,
    started: Instant,
) -> anyhow::Result<()> {
    let (objects, bytes) = folder_size(&dir.join("store"));
    let messages = |name: String| {
        let js = deps.js.clone();
        async move { anyhow::Ok(js.get_stream(name).await?.info().await?.state.messages) }
    };
    let kv = messages(format!("KV_{}", streams::JOBS_BUCKET)).await?;
    let events = messages(streams::EVENTS_STREAM.into()).await?;
    let tasks = messages(streams::TASKS_STREAM.into()).await?;
    let mib = |pid: Option<u32>| pid.and_then(rss_kib).map_or(0.0, |k| k as f64 / 1024.0);
    println!(
        "{done:>6} {:>8.1} {objects:>9} {bytes:>12} {kv:>9} {events:>9} {tasks:>9} {:>11.1} {:>11.1} {:>11.1} {:>11.1}",
        started.elapsed().as_secs_f64(),
        mib(nats.id()),
        mib(children.get("planner").map(|c| c.id())),
        mib(children.get("collector").map(|c| c.id())),
        mib(children.get("worker").map(|c| c.id())),
    );
    Ok(())
}

/// Files and bytes under `dir`.
fn folder_size(dir: &Path) -> (u64, u64) {
    let mut total = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return total;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let (n, b) = folder_size(&path);
            total = (total.0 + n, total.1 + b);
        } else if let Ok(meta) = entry.metadata() {
            total = (total.0 + 1, total.1 + meta.len());
        }
    }
    total
}

/// A process's resident memory in KiB (`VmRSS` in `/proc/<pid>/status`).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
