//! Readable reports: `tessera status` (a job's summary) and `tessera jobs` (the list).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tessera::bus::protocol::WorkerInfo;
use tessera::roles::client::{JobLine, Status};

/// Milliseconds since the epoch as `2026-12-03T07:50:01Z`.
pub(crate) fn clock(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// How long ago `ms` was, roughly: `3m 12s`, `2h 5m`, `4d 1h`.
pub(crate) fn ago(ms: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    span(Duration::from_millis(now.saturating_sub(ms)))
}

/// A duration in its two largest units: `45s`, `3m 12s`, `2h 5m`, `4d 1h`.
pub(crate) fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m {}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h {}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// `420/1000 (42%)`.
pub(crate) fn progress(done: u32, total: u32) -> String {
    let percent = if total == 0 {
        0
    } else {
        u64::from(done) * 100 / u64::from(total)
    };
    format!("{done}/{total} ({percent}%)")
}

/// How many failures `tessera status` lists before it only counts them.
const FAILURES_SHOWN: usize = 10;
/// How many outputs it lists before it only counts them.
const OUTPUTS_SHOWN: usize = 20;

/// `tessera status JOB` for a person.
pub(crate) fn print_status(status: &Status) {
    let t = &status.tasks;
    let b = &status.by_state;
    println!("{} ({}): {}", status.id, status.name, status.state);
    println!("progress: {} tasks done", progress(t.done, t.total));
    if !status.renderer.is_empty() {
        println!(
            "renderer {}, class {}, priority {}",
            status.renderer, status.class, status.priority
        );
    }
    println!(
        "tasks: {} total, {} queued, {} running, {} done, {} failed",
        t.total, t.queued, t.running, t.done, t.failed
    );
    println!(
        "  by state: {} waiting, {} held, {} queued, {} running, {} done, {} failed, {} canceled",
        b.waiting, b.held, b.queued, b.running, b.done, b.failed, b.canceled
    );
    let mut times = vec![format!(
        "accepted {} ({} ago)",
        clock(status.created_ms),
        ago(status.created_ms)
    )];
    if let Some(started) = status.started_ms {
        times.push(format!("started {}", clock(started)));
    }
    if let Some(finished) = status.finished_ms {
        times.push(format!("ended {}", clock(finished)));
        if let Some(started) = status.started_ms {
            times.push(format!(
                "took {}",
                span(Duration::from_millis(finished.saturating_sub(started)))
            ));
        }
    }
    println!("{}", times.join(", "));
    if let Some(message) = &status.message {
        println!("{message}");
    }
    match (status.window, status.alone) {
        (0, _) => {}
        (window, true) => println!(
            "window: {window} tasks queued at most (alone in its queue; the next job cuts it to its share)"
        ),
        (window, false) => println!("window: {window} tasks queued at most"),
    }
    if !status.failures.is_empty() {
        let retried = status.failures.iter().filter(|f| f.retried).count();
        println!(
            "failures: {} attempts ({} retried, {} for good)",
            status.failures.len(),
            retried,
            status.failures.len() - retried
        );
        let skip = status.failures.len().saturating_sub(FAILURES_SHOWN);
        if skip > 0 {
            println!("  … {skip} earlier ones");
        }
        for f in &status.failures[skip..] {
            let worker = f
                .worker
                .as_deref()
                .map(|w| format!(" on {w}"))
                .unwrap_or_default();
            let end = if f.retried { "retried" } else { "failed" };
            println!(
                "  {} attempt {}{worker} ({end}): {}",
                f.task, f.attempt, f.reason
            );
        }
    }
    if let Some(version) = &status.version {
        println!("version: {version}");
    }
    println!(
        "{} outputs in {}",
        status.outputs.len(),
        status.outputs_folder
    );
    for key in status.outputs.iter().take(OUTPUTS_SHOWN) {
        println!("  {key}");
    }
    if status.outputs.len() > OUTPUTS_SHOWN {
        println!("  … {} more", status.outputs.len() - OUTPUTS_SHOWN);
    }
}

/// `tessera jobs` for a person: one line a job under a header.
pub(crate) fn print_jobs(jobs: &[JobLine]) {
    if jobs.is_empty() {
        println!("no jobs");
        return;
    }
    let name_width = jobs
        .iter()
        .map(|j| j.name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 32);
    println!(
        "{:<26}  {:<name_width$}  {:<9}  {:<18}  {:<8}  AGE",
        "ID", "NAME", "STATE", "PROGRESS", "PRIORITY"
    );
    for j in jobs {
        let mut state = j.state.clone();
        if j.suspended && !matches!(state.as_str(), "done" | "failed" | "canceled") {
            state = "suspended".into();
        }
        let name: String = j.name.chars().take(32).collect();
        println!(
            "{:<26}  {:<name_width$}  {:<9}  {:<18}  {:<8}  {}",
            j.id,
            name,
            state,
            progress(j.tasks.done, j.tasks.total),
            j.priority,
            ago(j.created_ms)
        );
    }
}

/// `tessera workers` for a person: a line a worker (host, classes, renderers with their
/// versions, slots in use, burst and paused state, heartbeat), then a line a busy slot
/// (its task and how far it is).
pub(crate) fn print_workers(
    workers: &[WorkerInfo],
    paused_for: impl Fn(&WorkerInfo) -> Vec<String>,
) {
    if workers.is_empty() {
        println!("no live workers");
        return;
    }
    let now = tessera::bus::protocol::now_ms();
    println!(
        "{:<24} {:<16} {:<12} {:<28} {:>5}  {:<14} {:>9}  PAUSED",
        "ID", "HOST", "CLASSES", "RENDERERS", "BUSY", "MODE", "HEARTBEAT"
    );
    for w in workers {
        let paused = paused_for(w).join(",");
        let classes: Vec<&str> = w.classes.iter().map(|c| c.as_str()).collect();
        let renderers: Vec<String> = w
            .renderers
            .iter()
            .map(|r| match w.versions.get(r) {
                Some(version) => format!("{} {version}", r.as_str()),
                None => r.as_str().to_string(),
            })
            .collect();
        let mut mode = match w.burst {
            Some(n) => format!("burst >= {n}"),
            None => "farm".to_string(),
        };
        if w.speed != 1.0 {
            mode.push_str(&format!(" x{}", w.speed));
        }
        println!(
            "{:<24} {:<16} {:<12} {:<28} {:>5}  {:<14} {:>7.1}s  {}",
            w.id,
            w.host,
            classes.join(","),
            renderers.join(","),
            format!("{}/{}", w.running.len(), w.slots),
            mode,
            now.saturating_sub(w.heartbeat_ms) as f64 / 1000.0,
            if paused.is_empty() { "-" } else { &paused }
        );
        for (i, task) in w.running.iter().enumerate() {
            let progress = w.progress.get(i).copied().unwrap_or(0.0);
            println!("    slot {}: {task} {:.0}%", i + 1, progress * 100.0);
        }
    }
}
