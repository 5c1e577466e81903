//! Job on job (`after = [...]`): a job waits, its tasks held, until every job it names is
//! done — also one submitted after it — and fails naming the one that failed.

use std::time::Duration;

use tessera::bus::protocol::{Event, EventKind};

use crate::sharing::{times, two_slots};
use crate::support::{events_of, wait_event};

/// Long enough for two slots to start several 50 ms tasks, were any queued.
const QUIET: Duration = Duration::from_millis(1500);

fn noop(id: &str, frames: &str, extra: &str) -> String {
    format!(
        "id = \"{id}\"\nrenderer = \"noop\"\n{extra}\n[frames]\nrange = \"{frames}\"\n[settings]\nsleep_ms = 50\n"
    )
}

fn started(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| e.kind == EventKind::TaskStarted)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_only_after_the_jobs_it_names_are_done_even_one_submitted_after_it() {
    let farm = two_slots().await;
    let deps = farm.deps().await;
    // B waits for A, which nobody has submitted yet, and for C.
    farm.submit("b", &noop("b", "1-6", "after = [\"a\", \"c\"]"));
    wait_event(&farm, &deps.js, "b", EventKind::JobAccepted).await;
    farm.submit("c", &noop("c", "1-4", ""));
    wait_event(&farm, &deps.js, "c", EventKind::JobDone).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        started(&events_of(&farm, "b").await),
        0,
        "b started before a"
    );
    let status = farm.status("b");
    assert_eq!(status["waiting_for"], serde_json::json!(["a"]), "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("a (not submitted yet)"), "{status}");
    let out = farm.cli(&["status", "b"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("held until job a"),
        "{out:?}"
    );

    farm.submit("a", &noop("a", "1-10", ""));
    wait_event(&farm, &deps.js, "b", EventKind::JobDone).await;
    let (a, b) = (events_of(&farm, "a").await, events_of(&farm, "b").await);
    let a_done = times(&a, EventKind::JobDone)[0];
    let b_first = times(&b, EventKind::TaskStarted)[0];
    assert!(
        b_first >= a_done,
        "b started {} ms before a was done",
        a_done - b_first
    );
    assert_eq!(times(&b, EventKind::TaskDone).len(), 6);
    let released: Vec<_> = b
        .iter()
        .filter(|e| e.kind == EventKind::JobChanged)
        .filter_map(|e| e.message.clone())
        .collect();
    assert_eq!(released.len(), 1, "{released:?}");
    assert!(released[0].contains("job a is done"), "{released:?}");

    // A job after one that is done already runs at once.
    farm.submit("d", &noop("d", "1-2", "after = [\"a\"]"));
    wait_event(&farm, &deps.js, "d", EventKind::JobDone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_after_one_that_fails_or_is_canceled_fails_naming_it() {
    let farm = two_slots().await;
    let deps = farm.deps().await;
    farm.submit("render", &noop("render", "1-4", "after = [\"sim\"]"));
    farm.submit("comp", &noop("comp", "1-4", "after = [\"render\"]"));
    let failing = "id = \"sim\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-2\"\n[retry]\nmax_attempts = 1\n[settings]\nfail = true\n";
    farm.submit("sim", failing);
    wait_event(&farm, &deps.js, "sim", EventKind::JobFailed).await;
    // Down the chain: render fails naming sim, comp naming render.
    for (job, upstream) in [("render", "sim"), ("comp", "render")] {
        let failed = wait_event(&farm, &deps.js, job, EventKind::JobFailed).await;
        let reason = failed.message.unwrap_or_default();
        assert!(
            reason.contains(&format!("job {upstream}, which it runs after, failed")),
            "{job}: {reason}"
        );
        assert_eq!(started(&events_of(&farm, job).await), 0, "{job} started");
    }
    // Canceled: the job after it fails too.
    farm.submit("late", &noop("late", "1-2", "after = [\"long\"]"));
    farm.submit("long", &noop("long", "1-400", ""));
    wait_event(&farm, &deps.js, "long", EventKind::TaskStarted).await;
    assert!(farm.cli(&["cancel", "long"]).status.success());
    let failed = wait_event(&farm, &deps.js, "late", EventKind::JobFailed).await;
    let reason = failed.message.unwrap_or_default();
    assert!(
        reason.contains("job long, which it runs after, was canceled"),
        "{reason}"
    );
}
