//! Paused queues and burst workers: a paused queue keeps its tasks queued through a restart
//! of every role until it is resumed; a burst worker takes tasks only while enough wait.

use std::time::Duration;

use tessera::bus::protocol::{Event, EventKind};
use tessera::bus::streams::TASKS_STREAM;

use crate::support::{Farm, events_of, stream_messages, wait_event, wait_events};

/// A noop job of `tasks` one-frame tasks of `sleep_ms` each.
fn noop_job(id: &str, tasks: u32, sleep_ms: u32) -> String {
    format!(
        "id = \"{id}\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-{tasks}\"\n[settings]\nsleep_ms = {sleep_ms}\n"
    )
}

fn started(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| e.kind == EventKind::TaskStarted)
        .count()
}

/// Long enough for an idle worker to have pulled a task it was allowed to take (it polls
/// every 500 ms, and a doorbell wakes it at once).
const QUIET: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_keeps_its_tasks_through_a_restart_of_every_role_until_resumed() {
    let mut farm = Farm::with_workers(1);
    let deps = farm.deps().await;
    let out = farm.cli(&["pause", "--class", "cpu", "--priority", "normal"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("paused cpu/normal/noop"),
        "{said}"
    );

    let job = farm.submit("held", &noop_job("held", 3, 50));
    wait_event(&farm, &deps.js, &job, EventKind::JobAccepted).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        started(&events_of(&farm, &job).await),
        0,
        "a paused queue gave out a task"
    );
    // Alone in its queue, it is queued whole (its window is cut when another job comes).
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 3);
    assert_eq!(farm.status(&job)["tasks"]["queued"], 3);
    let status = farm.status(&job);
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("paused")),
        "{status}"
    );
    let out = farm.cli(&["workers", "--json"]);
    let workers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        workers[0]["paused"]
            .as_array()
            .is_some_and(|p| p.contains(&"cpu/normal".into())),
        "{workers}"
    );

    // Every role restarts; the queue stays paused.
    for role in 0..farm.roles.len() {
        farm.roles[role].kill();
    }
    farm.start("tessera-planner", &[]);
    farm.start("tessera-collector", &[]);
    farm.start_worker(0, &[]);
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        started(&events_of(&farm, &job).await),
        0,
        "the pause did not survive"
    );
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 3);

    let out = farm.cli(&["resume", "--class", "cpu", "--priority", "normal"]);
    assert!(out.status.success(), "{out:?}");
    farm.wait_done(&job);
    assert_eq!(started(&events_of(&farm, &job).await), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_worker_takes_tasks_only_while_enough_wait() {
    let mut farm = Farm::with_workers(0);
    let deps = farm.deps().await;
    farm.start_worker(0, &["--renderers", "noop", "--burst", "3"]);

    // Two tasks waiting: fewer than three, so the burst worker leaves them. (A burst worker
    // counts the queued tasks: these jobs' windows, as large as their caps, queue them all.)
    let capped = |id, tasks| {
        let job = noop_job(id, tasks, 20);
        job.replace(
            "renderer = \"noop\"\n",
            "renderer = \"noop\"\nmax_workers = 10\n",
        )
    };
    let small = farm.submit("small", &capped("small", 2));
    wait_event(&farm, &deps.js, &small, EventKind::JobAccepted).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        started(&events_of(&farm, &small).await),
        0,
        "a burst worker took work from a short queue"
    );

    // Four more: six wait, so it takes tasks while at least three wait, and stops at two.
    let big = farm.submit("big", &capped("big", 4));
    wait_events(&farm, &deps.js, &big, |e| started(e) > 0).await;
    tokio::time::sleep(QUIET).await;
    let taken = started(&events_of(&farm, &small).await) + started(&events_of(&farm, &big).await);
    assert_eq!(
        taken, 4,
        "the burst worker should take tasks while 3 or more wait"
    );
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 2);

    // A regular worker takes the rest, however few.
    farm.start_worker(1, &["--renderers", "noop"]);
    farm.wait_done(&small);
    farm.wait_done(&big);
}

/// The farm's own workers are served before burst workers: an idle own worker takes each
/// new task, although an idle burst worker (whose threshold the queue meets) is woken too
/// and polls often.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_farms_own_workers_are_served_before_burst_workers() {
    let mut farm = Farm::with_workers(0);
    // The burst worker starts first, so it would hear each doorbell first, and it polls
    // every 20 ms, so a poll often falls just after a task is queued. It leaves new work
    // to the farm's own workers for 3 s, time enough on a loaded machine.
    farm.start_worker(
        0,
        &[
            "--renderers",
            "noop",
            "--burst",
            "1",
            "--idle-poll",
            "20ms",
            "--burst-defer",
            "3s",
        ],
    );
    let burst_registered = async || {
        let out = farm.cli(&["workers", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (list.as_array()?.len() == 1).then_some(())
    };
    let never = || "the burst worker never registered".to_string();
    let every = Duration::from_millis(100);
    crate::support::eventually(crate::support::PATIENCE, every, never, burst_registered).await;
    farm.start_worker(1, &["--renderers", "noop"]);
    let registered = async || {
        let out = farm.cli(&["workers", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (list.as_array()?.len() == 2).then_some(())
    };
    let never = || "the workers never registered".to_string();
    crate::support::eventually(crate::support::PATIENCE, every, never, registered).await;
    for n in 0..3 {
        // Each job reaches an idle farm: both workers are waiting when its doorbell rings
        // (and the burst worker's wait for the last job's backlog is over).
        tokio::time::sleep(Duration::from_millis(3200)).await;
        let id = format!("own-{n}");
        let job = farm.submit(&id, &noop_job(&id, 1, 0));
        farm.wait_done(&job);
        let events = events_of(&farm, &job).await;
        let who: Vec<_> = events
            .iter()
            .filter(|e| e.kind == EventKind::TaskStarted)
            .map(|e| e.worker.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            who,
            ["w1"],
            "job {n} ran on {who:?}, not on the farm's own worker"
        );
    }
}
