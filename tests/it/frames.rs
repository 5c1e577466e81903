//! Frame by frame across jobs (`after_frames = "<job>"`): frame N of a job waits only for
//! frame N of the job it names — also one submitted after it — so the second starts with
//! the first's first frame; a failing frame fails only its counterpart; a chain of jobs
//! survives a restart of every role, nothing lost or done twice.

use std::collections::HashMap;
use std::time::Duration;

use tessera::bus::protocol::{Event, EventKind};

use crate::sharing::{done_tasks, two_slots};
use crate::support::{events_of, tasks_done, wait_event};

/// Long enough for two slots to start several 50 ms tasks, were any queued.
const QUIET: Duration = Duration::from_millis(1500);

fn noop(id: &str, frames: &str, extra: &str, settings: &str) -> String {
    format!(
        "id = \"{id}\"\nrenderer = \"noop\"\n{extra}\n[frames]\nrange = \"{frames}\"\n[settings]\nsleep_ms = 50\n{settings}"
    )
}

/// When each task (by index) had an event of `kind`: the earliest such event when
/// `first`, else the latest.
fn times_by_task(events: &[Event], kind: EventKind, first: bool) -> HashMap<u32, u64> {
    let mut times = HashMap::new();
    for e in events.iter().filter(|e| e.kind == kind) {
        if let Some(index) = e.index {
            let t = times.entry(index).or_insert(e.time_ms);
            *t = if first {
                (*t).min(e.time_ms)
            } else {
                (*t).max(e.time_ms)
            };
        }
    }
    times
}

fn first_times(events: &[Event], kind: EventKind) -> HashMap<u32, u64> {
    times_by_task(events, kind, true)
}

fn last_times(events: &[Event], kind: EventKind) -> HashMap<u32, u64> {
    times_by_task(events, kind, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_n_waits_only_for_frame_n_of_the_job_it_runs_after_even_one_submitted_after_it() {
    let farm = two_slots().await;
    let deps = farm.deps().await;
    // The render is submitted before the simulation it runs after.
    farm.submit(
        "render",
        &noop("render", "1-40", "after_frames = \"sim\"", ""),
    );
    wait_event(&farm, &deps.js, "render", EventKind::JobAccepted).await;
    tokio::time::sleep(QUIET).await;
    let render = events_of(&farm, "render").await;
    assert!(
        !render.iter().any(|e| e.kind == EventKind::TaskStarted),
        "the render started before the simulation existed"
    );
    let status = farm.status("render");
    assert_eq!(status["after_frames"], "sim", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("sim (not submitted yet)"), "{status}");

    farm.submit("sim", &noop("sim", "1-40", "", ""));
    wait_event(&farm, &deps.js, "render", EventKind::JobDone).await;
    let (sim, render) = (
        events_of(&farm, "sim").await,
        events_of(&farm, "render").await,
    );
    let sim_done = last_times(&sim, EventKind::TaskDone);
    let render_started = first_times(&render, EventKind::TaskStarted);
    // Frame N (task N - 1) of the render starts only once the simulation has it done.
    for frame in 0..40 {
        assert!(
            render_started[&frame] >= sim_done[&frame],
            "render frame {} started {} ms before the simulation's",
            frame + 1,
            sim_done[&frame] - render_started[&frame]
        );
    }
    // And the render does not wait for the whole simulation.
    assert!(
        render_started[&1] < sim_done[&39],
        "render frame 2 started only after simulation frame 40 was done"
    );
    assert_eq!(done_tasks(&render), (0..40).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_frame_fails_only_its_counterpart_and_a_failed_job_what_still_waits() {
    let farm = two_slots().await;
    let deps = farm.deps().await;
    let go_on = "[retry]\nmax_attempts = 1\non_failure = \"continue\"";
    // Frame 3 of the simulation fails; the render goes on without it, the strict comp
    // fails.
    farm.submit(
        "render",
        &noop(
            "render",
            "1-6",
            &format!("after_frames = \"sim\"\n{go_on}"),
            "",
        ),
    );
    farm.submit("comp", &noop("comp", "1-6", "after_frames = \"sim\"", ""));
    wait_event(&farm, &deps.js, "comp", EventKind::JobAccepted).await;
    farm.submit("sim", &noop("sim", "1-6", go_on, "fail_frames = [3]\n"));
    let failed = wait_event(&farm, &deps.js, "render", EventKind::JobFailed).await;
    assert!(
        failed
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("1 of 6 tasks failed"),
        "{failed:?}"
    );
    let render = events_of(&farm, "render").await;
    assert_eq!(done_tasks(&render), [0, 1, 3, 4, 5]);
    let third = render
        .iter()
        .find(|e| e.kind == EventKind::TaskFailed && e.index == Some(2))
        .expect("render frame 3 failed");
    assert!(
        third
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("frame 3 of job sim, which it runs after frame by frame, failed"),
        "{third:?}"
    );
    assert!(
        !render
            .iter()
            .any(|e| e.kind == EventKind::TaskStarted && e.index == Some(2)),
        "render frame 3 ran"
    );
    let comp = wait_event(&farm, &deps.js, "comp", EventKind::JobFailed).await;
    let reason = comp.message.unwrap_or_default();
    assert!(reason.contains("frame 3 of job sim"), "{reason}");

    // A job it runs after frame by frame that is canceled fails what still waits for it.
    farm.submit(
        "late",
        &noop("late", "1-400", "after_frames = \"long\"", ""),
    );
    farm.submit("long", &noop("long", "1-400", "", ""));
    tasks_done(&farm, &deps.js, "late", 1).await;
    assert!(farm.cli(&["cancel", "long"]).status.success());
    let failed = wait_event(&farm, &deps.js, "late", EventKind::JobFailed).await;
    let reason = failed.message.unwrap_or_default();
    assert!(
        reason.contains("job long, which it runs after frame by frame, was canceled"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_jobs_loses_and_doubles_nothing_through_a_restart_of_every_role() {
    let mut farm = two_slots().await;
    let deps = farm.deps().await;
    // A layered simulation in chunks of two frames, a render frame by frame after it, a
    // comp after the whole render.
    let layers = "[[layers]]\nname = \"fluid\"\n[[layers]]\nname = \"foam\"\nafter = [\"fluid\"]\n";
    let sim = format!(
        "id = \"sim\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-30\"\nchunk = 2\n{layers}[settings]\nsleep_ms = 50\n"
    );
    farm.submit("comp", &noop("comp", "1-30", "after = [\"render\"]", ""));
    farm.submit(
        "render",
        &noop("render", "1-30", "after_frames = \"sim\"", ""),
    );
    farm.submit("sim", &sim);
    tasks_done(&farm, &deps.js, "render", 3).await;

    for role in 0..farm.roles.len() {
        farm.roles[role].kill();
    }
    farm.start("tessera-planner", &[]);
    farm.start("tessera-collector", &[]);
    farm.start_worker(0, &["--slots", "2"]);
    farm.wait_done("comp");

    let sim = events_of(&farm, "sim").await;
    let render = events_of(&farm, "render").await;
    let comp = events_of(&farm, "comp").await;
    assert_eq!(done_tasks(&sim), (0..30).collect::<Vec<_>>());
    assert_eq!(done_tasks(&render), (0..30).collect::<Vec<_>>());
    assert_eq!(done_tasks(&comp), (0..30).collect::<Vec<_>>());
    // Render frame N after both layers of the simulation's chunk holding frame N.
    let sim_done = last_times(&sim, EventKind::TaskDone);
    let render_started = first_times(&render, EventKind::TaskStarted);
    for frame in 0..30u32 {
        let chunk = frame / 2;
        for layer in 0..2 {
            let upstream = sim_done[&(chunk * 2 + layer)];
            assert!(
                render_started[&frame] >= upstream,
                "render frame {} started before the simulation's",
                frame + 1
            );
        }
    }
    let comp_first = first_times(&comp, EventKind::TaskStarted);
    let render_last = last_times(&render, EventKind::TaskDone);
    let render_end = render_last.values().max().copied().unwrap_or_default();
    assert!(comp_first.values().all(|&t| t >= render_end));
}
