//! Priorities, hardware classes, the starvation guard, renderer matching and the worker
//! registry, with real workers pulling from real consumers.

use std::time::Duration;

use tessera::bus::protocol::{Event, EventKind};
use tessera::bus::streams::TASKS_STREAM;

use crate::support::{Farm, PATIENCE, eventually, stream_messages, wait_event};

/// Submits a noop job through the CLI and returns its id.
fn submit(farm: &Farm, id: &str, extra: &str, frames: &str, sleep_ms: u64) -> String {
    let toml = format!(
        "id = \"{id}\"\nrenderer = \"noop\"\n{extra}\n[frames]\nrange = \"{frames}\"\n[settings]\nsleep_ms = {sleep_ms}\n"
    );
    farm.submit(id, &toml)
}

/// The `task.started` events of `jobs`, in the order the tasks started.
async fn starts(farm: &Farm, jobs: &[&str]) -> Vec<Event> {
    let deps = farm.deps().await;
    let mut all = Vec::new();
    for job in jobs {
        let events = crate::support::job_events(&deps.js, job).await.unwrap();
        all.extend(
            events
                .into_iter()
                .filter(|e| e.kind == EventKind::TaskStarted),
        );
    }
    all.sort_by_key(|e| e.time_ms);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_slot_busy_a_high_job_submitted_after_a_low_one_runs_first() {
    let farm = Farm::with_workers(1);
    let deps = farm.deps().await;
    submit(&farm, "busy", "", "1", 1500);
    wait_event(&farm, &deps.js, "busy", EventKind::TaskStarted).await;
    submit(&farm, "low", "priority = \"low\"", "1", 200);
    submit(&farm, "high", "priority = \"high\"", "1", 200);
    wait_event(&farm, &deps.js, "low", EventKind::JobDone).await;
    wait_event(&farm, &deps.js, "high", EventKind::JobDone).await;
    let order: Vec<String> = starts(&farm, &["busy", "low", "high"])
        .await
        .into_iter()
        .map(|e| e.job)
        .collect();
    assert_eq!(order, ["busy", "high", "low"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_work_never_runs_on_a_cpu_worker_and_a_gpu_cpu_worker_takes_gpu_first() {
    let mut farm = Farm::with_workers(0);
    let deps = farm.deps().await;
    submit(&farm, "on-gpu", "class = \"gpu\"", "1-6", 50);
    submit(&farm, "on-cpu", "", "1-6", 50);
    wait_event(&farm, &deps.js, "on-gpu", EventKind::JobAccepted).await;
    wait_event(&farm, &deps.js, "on-cpu", EventKind::JobAccepted).await;
    farm.start_worker(0, &["--class", "cpu"]);
    farm.start_worker(1, &["--class", "gpu,cpu"]);
    wait_event(&farm, &deps.js, "on-gpu", EventKind::JobDone).await;
    wait_event(&farm, &deps.js, "on-cpu", EventKind::JobDone).await;

    let all = starts(&farm, &["on-gpu", "on-cpu"]).await;
    assert!(
        all.iter()
            .filter(|e| e.job == "on-gpu")
            .all(|e| e.worker.as_deref() == Some("w1")),
        "a gpu task ran on the cpu-only worker: {all:#?}"
    );
    let w1: Vec<&str> = all
        .iter()
        .filter(|e| e.worker.as_deref() == Some("w1"))
        .map(|e| e.job.as_str())
        .collect();
    let first_cpu = w1.iter().position(|j| *j == "on-cpu").unwrap_or(w1.len());
    assert!(
        w1[first_cpu..].iter().all(|j| *j == "on-cpu"),
        "w1 took cpu work before gpu work: {w1:?}"
    );
    assert_eq!(w1.iter().filter(|j| **j == "on-gpu").count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_constant_flow_of_high_work_low_work_gets_one_pick_in_five() {
    let mut farm = Farm::with_workers(0);
    let deps = farm.deps().await;
    submit(&farm, "flood", "priority = \"high\"", "1-30", 20);
    submit(&farm, "trickle", "priority = \"low\"", "1-4", 20);
    wait_event(&farm, &deps.js, "flood", EventKind::JobAccepted).await;
    wait_event(&farm, &deps.js, "trickle", EventKind::JobAccepted).await;
    farm.start_worker(0, &[]);
    wait_event(&farm, &deps.js, "trickle", EventKind::JobDone).await;
    wait_event(&farm, &deps.js, "flood", EventKind::JobDone).await;

    // One slot: picks 4, 9, 14 and 19 look at low first (ARCHITECTURE.md, worker.rs).
    let order: Vec<String> = starts(&farm, &["flood", "trickle"])
        .await
        .into_iter()
        .map(|e| e.job)
        .collect();
    let low_picks: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, j)| *j == "trickle")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(low_picks, [4, 9, 14, 19], "{order:?}");
}

/// `tessera workers --json`, parsed.
fn workers_listed(farm: &Farm) -> Option<serde_json::Value> {
    let out = farm.cli(&["workers", "--json"]);
    serde_json::from_slice(&out.stdout).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_no_worker_can_render_stays_queued_and_status_says_why_and_dead_workers_drop_off() {
    let mut farm = Farm::with_workers(0);
    let worker = farm.start_worker(0, &["--renderers", "noop", "--slots", "2"]);
    let deps = farm.deps().await;

    // The registry lists the worker with what it can do.
    let registered =
        async || workers_listed(&farm).filter(|l| l.as_array().is_some_and(|a| !a.is_empty()));
    let never = || "the worker never registered".to_string();
    let listed = eventually(PATIENCE, Duration::from_millis(100), never, registered).await;
    let w = &listed[0];
    assert_eq!(w["id"], "w0");
    assert_eq!(w["classes"], serde_json::json!(["cpu"]));
    assert_eq!(w["renderers"], serde_json::json!(["noop"]));
    assert_eq!(w["slots"], 2);
    assert!(
        w["heartbeat_ms"].as_u64().unwrap() > 0 && w["running"].is_array() && w["host"].is_string()
    );

    // A builtin job waits; a noop job submitted after it runs (so the worker was polling).
    let file = farm.job_file(
        "builtin.toml",
        "id = \"needs-builtin\"\nrenderer = \"builtin\"\n[frames]\nrange = \"1-3\"\n",
    );
    assert!(
        farm.cli(&["submit", file.to_str().unwrap()])
            .status
            .success()
    );
    submit(&farm, "runs", "", "1-2", 10);
    wait_event(&farm, &deps.js, "runs", EventKind::JobDone).await;
    let status = farm.status("needs-builtin");
    assert_eq!(status["state"], "queued");
    assert_eq!(status["tasks"]["queued"], 3);
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no live worker") && message.contains("builtin"),
        "{message}"
    );
    // Queued, whole: it was alone in its queue.
    assert_eq!(
        stream_messages(&deps.js, TASKS_STREAM).await,
        3,
        "the job is still queued"
    );
    let events = crate::support::job_events(&deps.js, "needs-builtin")
        .await
        .unwrap();
    assert!(
        events.iter().all(|e| e.kind == EventKind::JobAccepted),
        "{events:#?}"
    );

    // A worker killed outright drops off the list on its own.
    farm.roles[worker].kill();
    let gone = async || {
        let list = workers_listed(&farm)?;
        list.as_array().is_some_and(|a| a.is_empty()).then_some(())
    };
    let stayed = || "the dead worker stayed listed".to_string();
    eventually(PATIENCE, Duration::from_millis(500), stayed, gone).await;
}

/// A server that still holds task consumers of the layout before the renderer token
/// (whose filters overlap today's on the work-queue stream) is taken over: the old
/// consumers are removed and work flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_consumers_of_an_older_layout_are_replaced() {
    let mut farm = Farm::new();
    let deps = farm.deps().await;
    let stream = deps.js.get_stream(TASKS_STREAM).await.unwrap();
    for priority in ["high", "normal", "low"] {
        stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config {
                durable_name: Some(format!("tasks-cpu-{priority}")),
                filter_subject: format!("tessera.tasks.cpu.{priority}.>"),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    farm.start("tessera-planner", &[]);
    farm.start("tessera-collector", &[]);
    farm.start_worker(0, &[]);
    farm.start_worker(1, &[]);
    let id = submit(&farm, "after-upgrade", "", "1-4", 10);
    farm.wait_done(&id);
}

/// A job's end purges its tasks. On nats-server 2.9 that left the queue's consumer counting
/// tasks that were gone, so the server parked every no-wait pull on that queue and each
/// idle scan of a worker lost half a second on it. On the servers Tessera accepts, the
/// pulls after a purge answer at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_whose_tasks_were_purged_answers_pulls_at_once_again() {
    use tessera::core::job::{Class, Priority, RendererKind};
    use tessera::roles::worker::Group;
    let mut farm = Farm::new();
    let deps = farm.deps().await;
    farm.start("tessera-planner", &[]);
    farm.start("tessera-collector", &[]);
    let consumer = tessera::bus::streams::task_consumer(
        &deps.js,
        &Class::parse("cpu").unwrap(),
        Priority::Normal,
        RendererKind::Command,
        false,
        Default::default(),
    )
    .await
    .unwrap();
    let toml = "id = \"purged\"\nrenderer = \"command\"\n[frames]\nrange = \"1-20\"\n[settings]\ncommand = [\"true\"]\n";
    let id = farm.submit("purged", toml);
    wait_event(&farm, &deps.js, &id, EventKind::JobAccepted).await;
    // A worker takes one task; the job is canceled while the other 19 are queued.
    let taken = tessera::roles::worker::pull_one(&consumer, Some(&Group::workers(None)))
        .await
        .unwrap();
    assert!(taken.message.is_some(), "{taken:?}");
    let out = farm.cli(&["cancel", &id]);
    assert!(out.status.success(), "{out:?}");
    wait_event(&farm, &deps.js, &id, EventKind::JobCanceled).await;
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 0);

    let mut pulls = Vec::new();
    for _ in 0..4 {
        let pull = tessera::roles::worker::pull_one(&consumer, Some(&Group::workers(None)))
            .await
            .unwrap();
        assert!(pull.message.is_none(), "{pull:?}");
        pulls.push(pull.parked);
    }
    assert!(
        !pulls[1..].contains(&true),
        "pulls after the first were parked: {pulls:?}"
    );
}

/// Liveness and times come from the server's clock: a worker whose own clock is 60 s
/// behind stays listed, with a fresh heartbeat, and is handed work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_clock_is_a_minute_behind_stays_listed_and_gets_work() {
    let mut farm = Farm::with_workers(0);
    farm.start_skewed_worker(0, "-60s", "noop");
    let listed = async || {
        let out = farm.cli(&["workers", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        list.as_array()
            .filter(|l| l.len() == 1)
            .map(|l| l[0].clone())
    };
    let never = || "the skewed worker never registered".to_string();
    let every = std::time::Duration::from_millis(100);
    let first = crate::support::eventually(crate::support::PATIENCE, every, never, listed).await;
    assert_eq!(first["id"], "w0");
    // Still listed a few lease lifetimes later, with a heartbeat of the server's time.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let out = farm.cli(&["workers", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let heartbeat = list[0]["heartbeat_ms"].as_i64().unwrap();
    assert!(
        (now - heartbeat).abs() < 5_000,
        "heartbeat {heartbeat} is {} ms from now",
        now - heartbeat
    );
    let job = farm.submit(
        "skewed",
        "id = \"skewed\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-3\"\n",
    );
    farm.wait_done(&job);
}
