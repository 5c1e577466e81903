//! Limits: a farm-wide count of tokens that jobs' tasks hold while queued or running —
//! never more tasks than tokens run at once across every worker and job, a token held by
//! a worker that dies is not lost, and tasks waiting for a token hold no slot.

use std::collections::HashMap;

use tessera::bus::protocol::{Event, EventKind};

use crate::support::{Farm, events_of, wait_event, wait_events, worker_role};

/// A noop job of `frames` one-frame tasks of `sleep_ms` each, holding tokens of `limits`.
fn job(id: &str, frames: u32, sleep_ms: u32, limits: &str) -> String {
    format!(
        "id = \"{id}\"\nrenderer = \"noop\"\nlimits = [{limits}]\n[frames]\nrange = \"1-{frames}\"\n[settings]\nsleep_ms = {sleep_ms}\n"
    )
}

/// The attempts of `events` as (start, end) times: an attempt ends at its `task.done`,
/// `task.retry` or `task.failed`, or, if its worker died, when the task starts again (or
/// at `killed`, the kill's time, if it never did).
fn attempts(events: &[Event], killed: u64) -> Vec<(u64, u64)> {
    let mut started: HashMap<(u32, u32), u64> = HashMap::new();
    let mut ended: HashMap<(u32, u32), u64> = HashMap::new();
    for e in events {
        let (Some(index), Some(attempt)) = (e.index, e.attempt) else {
            continue;
        };
        match e.kind {
            EventKind::TaskStarted => {
                started.insert((index, attempt), e.time_ms);
            }
            EventKind::TaskDone | EventKind::TaskRetry | EventKind::TaskFailed => {
                ended.insert((index, attempt), e.time_ms);
            }
            _ => {}
        }
    }
    started
        .iter()
        .map(|(&(index, attempt), &start)| {
            let end = ended.get(&(index, attempt)).copied().unwrap_or_else(|| {
                started
                    .iter()
                    .filter(|((i, a), _)| *i == index && *a > attempt)
                    .map(|(_, &t)| t)
                    .min()
                    .unwrap_or(killed)
            });
            (start, end)
        })
        .collect()
}

/// The most attempts running at once.
fn most_at_once(attempts: &[(u64, u64)]) -> usize {
    let mut edges: Vec<(u64, i32)> = attempts
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    // An end before a start at the same millisecond: one slot handed on.
    edges.sort_unstable();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

fn limit_list(farm: &Farm) -> serde_json::Value {
    let out = farm.cli(&["limit", "list", "--json"]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_two_keeps_two_tasks_running_across_workers_and_jobs_and_loses_no_token() {
    let mut farm = Farm::with_workers(0);
    for i in 0..3 {
        farm.start_worker(i, &["--slots", "2"]);
    }
    let deps = farm.deps().await;
    let out = farm.cli(&["limit", "set", "lic", "2"]);
    assert!(out.status.success(), "{out:?}");

    // A job naming a limit the farm lacks is refused, naming it.
    let out = farm.cli(&[
        "submit",
        &farm
            .job_file("nolimit", &job("nolimit", 1, 10, "\"nuke\""))
            .display()
            .to_string(),
    ]);
    let rejected = wait_event(&farm, &deps.js, "nolimit", EventKind::JobRejected).await;
    assert!(
        rejected
            .message
            .as_deref()
            .is_some_and(|m| m.contains("limit set nuke")),
        "{rejected:?} {out:?}"
    );

    farm.submit("a", &job("a", 10, 400, "\"lic\""));
    farm.submit("b", &job("b", 10, 400, "\"lic\""));
    // While both wait for tokens, a job without limits is not held behind them.
    farm.submit("free", &job("free", 6, 50, ""));
    wait_event(&farm, &deps.js, "free", EventKind::JobDone).await;
    let a = events_of(&farm, "a").await;
    assert!(
        a.iter().all(|e| e.kind != EventKind::JobDone),
        "the unlimited job waited behind the limited ones"
    );

    // A worker killed while its task holds a token.
    let running = wait_events(&farm, &deps.js, "a", |events| {
        events.iter().any(|e| e.kind == EventKind::TaskStarted)
    })
    .await;
    let worker = running
        .iter()
        .find(|e| e.kind == EventKind::TaskStarted)
        .and_then(|e| e.worker.clone())
        .expect("a started task names its worker");
    farm.roles[worker_role(&worker)].kill();
    let killed = tessera::bus::protocol::now_ms();

    wait_event(&farm, &deps.js, "a", EventKind::JobDone).await;
    wait_event(&farm, &deps.js, "b", EventKind::JobDone).await;
    let (a, b) = (events_of(&farm, "a").await, events_of(&farm, "b").await);
    let mut all = attempts(&a, killed);
    all.extend(attempts(&b, killed));
    assert_eq!(
        most_at_once(&all),
        2,
        "the limit's two tokens, used and never exceeded"
    );
    // The jobs took turns: b did not wait for the whole of a.
    let time = |events: &[Event], kind| events.iter().find(|e| e.kind == kind).map(|e| e.time_ms);
    assert!(
        time(&b, EventKind::TaskStarted) < time(&a, EventKind::JobDone),
        "b started only once a was done"
    );

    // Every token came back: the dead worker's too.
    let limits = limit_list(&farm);
    assert_eq!(limits[0]["name"], "lic", "{limits}");
    assert_eq!(limits[0]["in_use"], 0, "{limits}");
    assert_eq!(
        limits[0]["waiting"].as_array().map(Vec::len),
        Some(0),
        "{limits}"
    );
}
