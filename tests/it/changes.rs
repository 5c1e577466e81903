//! Changing a job while it runs: `tessera suspend` takes its queued tasks out of the queue
//! and keeps them through a restart of every role until `tessera resume`; `tessera
//! priority` moves its remaining tasks to another priority's queue.

use std::time::Duration;

use tessera::bus::protocol::{Event, EventKind};
use tessera::bus::streams::TASKS_STREAM;

use crate::sharing::{done_tasks, submit, times, two_slots};
use crate::support::{events_of, stream_messages, tasks_done, wait_event};

fn count(events: &[Event], kind: EventKind) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

/// Long enough for the two slots to start several 50 ms tasks, were any queued.
const QUIET: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_job_keeps_its_tasks_through_a_restart_of_every_role_until_resumed() {
    let mut farm = two_slots().await;
    let deps = farm.deps().await;
    // Ten key frames: some are still queued in the key queue when it is suspended.
    let first = "40,36,32,28,24,20,16,12,8,4";
    let shot = format!(
        "id = \"shot\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-40\"\nfirst = \"{first}\"\n[settings]\nsleep_ms = 50\n"
    );
    farm.submit("shot", &shot);
    tasks_done(&farm, &deps.js, "shot", 4).await;

    let out = farm.cli(&["suspend", "shot"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("suspended"),
        "{said} {out:?}"
    );
    let at_suspend = count(&events_of(&farm, "shot").await, EventKind::TaskStarted);
    tokio::time::sleep(QUIET).await;
    // What the two slots held when it was suspended (a task each, and the next one each
    // may have pulled while reporting the last) is all that starts after.
    let started = count(&events_of(&farm, "shot").await, EventKind::TaskStarted);
    assert!(
        started <= at_suspend + 4,
        "{} tasks started after the suspend",
        started - at_suspend
    );
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 0);
    let status = farm.status("shot");
    assert_eq!(status["suspended"], true, "{status}");
    assert_eq!(status["state"], "running", "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("tessera resume shot")),
        "{status}"
    );
    let waiting = status["tasks"]["queued"].as_u64().unwrap();
    assert!(waiting >= 20, "{status}");

    // Every role restarts: the job stays suspended.
    for role in 0..farm.roles.len() {
        farm.roles[role].kill();
    }
    farm.start("tessera-planner", &[]);
    farm.start("tessera-collector", &[]);
    farm.start_worker(0, &["--slots", "2"]);
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        count(&events_of(&farm, "shot").await, EventKind::TaskStarted),
        started,
        "a suspended job's task started after the restart"
    );
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 0);

    let out = farm.cli(&["resume", "shot"]);
    assert!(out.status.success(), "{out:?}");
    farm.wait_done("shot");
    let events = events_of(&farm, "shot").await;
    let status = farm.status("shot");
    assert_eq!(status["suspended"], false, "{status}");
    // Every frame was rendered, none twice.
    assert_eq!(done_tasks(&events), (0..40).collect::<Vec<_>>());
    // Suspended, then resumed, announced in that order.
    let changes: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::JobChanged)
        .filter_map(|e| e.message.clone())
        .collect();
    assert_eq!(changes, ["suspended", "resumed"]);
    let out = farm.cli(&["suspend", "shot"]);
    assert!(!out.status.success(), "an ended job cannot be suspended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_given_a_higher_priority_has_its_remaining_tasks_queued_at_it() {
    let farm = two_slots().await;
    let deps = farm.deps().await;
    submit(&farm, "normal", "1-60", "");
    wait_event(&farm, &deps.js, "normal", EventKind::TaskStarted).await;
    // Its first frames are key tasks, queued in the low queue's key consumer.
    let late = "id = \"late\"\nrenderer = \"noop\"\npriority = \"low\"\n[frames]\nrange = \"1-20\"\nfirst = \"20,10\"\n[settings]\nsleep_ms = 50\n";
    farm.submit("late", late);
    wait_event(&farm, &deps.js, "late", EventKind::JobAccepted).await;

    let out = farm.cli(&["priority", "late", "high"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("is now high"),
        "{said} {out:?}"
    );
    // Nothing of it waits in the low queue any more: what was queued there moved (what
    // a worker already holds finishes where it is).
    let stream = deps.js.get_stream(TASKS_STREAM).await.unwrap();
    for queue in ["tasks-cpu-low-noop", "keys-cpu-low-noop"] {
        let low = stream.consumer_info(queue).await.unwrap();
        assert_eq!(
            low.num_pending, 0,
            "tasks left queued at the old priority in {queue}"
        );
    }
    farm.wait_done("late");
    // At low, it would have waited for the normal job's 60 tasks; at high it runs first.
    let normal_done = count(&events_of(&farm, "normal").await, EventKind::TaskDone);
    assert!(
        normal_done < 50,
        "the normal job did {normal_done} of 60 first"
    );
    let late = events_of(&farm, "late").await;
    assert_eq!(count(&late, EventKind::TaskDone), 20);
    assert!(!times(&late, EventKind::JobDone).is_empty());
    let out = farm.cli(&["priority", "late", "urgent"]);
    assert!(!out.status.success(), "an unknown priority is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not high, normal or low"));
}
