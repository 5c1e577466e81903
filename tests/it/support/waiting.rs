//! Waiting in tests: every deadline loop is [`eventually`] (or [`exits_within`] for a
//! process), and the event waits are built on it.

use std::process::{Child, ExitStatus};
use std::time::Duration;

use async_nats::jetstream;
use tessera::bus::protocol::{Event, EventKind};

use super::{Farm, PATIENCE};

/// Polls `check` every `every` until it gives a value, failing the test with `what()` once
/// `limit` has passed: the one deadline loop of the async tests.
pub(crate) async fn eventually<T>(
    limit: Duration,
    every: Duration,
    what: impl Fn() -> String,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} (waited {limit:?})",
            what()
        );
        tokio::time::sleep(every).await;
    }
}

/// The exit status of `child` if it exits within `limit`; else it is killed and `None`.
pub(crate) fn exits_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The events of `job` as stored, with the start of every task that was done before its
/// start was reported (a `task.done` with `started_ms`, from a busy worker) put back as a `task.started` just before its `task.done`: tests ask when tasks
/// started the same way, whichever way the worker said it.
pub(crate) async fn job_events(js: &jetstream::Context, job: &str) -> anyhow::Result<Vec<Event>> {
    let stored = tessera::roles::client::events(js, job).await?;
    let mut events = Vec::with_capacity(stored.len());
    for event in stored {
        if let (EventKind::TaskDone, Some(at)) = (event.kind, event.started_ms) {
            events.push(Event {
                kind: EventKind::TaskStarted,
                time_ms: at,
                outputs: Vec::new(),
                log: None,
                frame_ms: None,
                renderer_version: None,
                started_ms: None,
                ..event.clone()
            });
        }
        events.push(event);
    }
    Ok(events)
}

/// Waits until the events of `job` (a job id or `_invalid`) satisfy `done`; panics with
/// the farm's logs after `PATIENCE`.
pub(crate) async fn wait_events(
    farm: &Farm,
    js: &jetstream::Context,
    job: &str,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let last_seen = std::cell::RefCell::new(Vec::new());
    let what = || {
        format!(
            "events of {job} never got there: {:#?}\n{}",
            last_seen.borrow(),
            farm.logs()
        )
    };
    eventually(PATIENCE, Duration::from_millis(100), what, async || {
        // Reading can fail for a moment while a restarted server recovers its streams.
        match job_events(js, job).await {
            Ok(events) if done(&events) => Some(events),
            Ok(events) => {
                last_seen.replace(events);
                None
            }
            Err(e) => {
                eprintln!("reading the events of {job}: {e:#}; trying again");
                None
            }
        }
    })
    .await
}

/// The events of `job` so far.
pub(crate) async fn events_of(farm: &Farm, job: &str) -> Vec<Event> {
    job_events(&farm.deps().await.js, job).await.unwrap()
}

/// Waits until `n` tasks of `job` are done.
pub(crate) async fn tasks_done(farm: &Farm, js: &jetstream::Context, job: &str, n: usize) {
    wait_events(farm, js, job, |e| {
        e.iter().filter(|e| e.kind == EventKind::TaskDone).count() >= n
    })
    .await;
}

/// Waits for an event of `kind` for `job`.
pub(crate) async fn wait_event(
    farm: &Farm,
    js: &jetstream::Context,
    job: &str,
    kind: EventKind,
) -> Event {
    let events = wait_events(farm, js, job, |events| {
        events.iter().any(|e| e.kind == kind)
    })
    .await;
    events
        .into_iter()
        .find(|e| e.kind == kind)
        .expect("waited for it")
}

/// Messages stored in a stream now.
pub(crate) async fn stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

/// The keys of task `task`'s attempt logs in `job`, in order.
pub(crate) async fn attempt_logs(
    deps: &tessera::config::Deps,
    job: &str,
    task: &str,
) -> Vec<String> {
    let id = tessera::core::job::JobId::parse(job).unwrap();
    let prefix = format!("{}{task}/", tessera::store::keys::logs_prefix(&id));
    deps.store.list(&prefix).await.unwrap()
}
