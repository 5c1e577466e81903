//! Sharing the farm: jobs of one priority share their queue's slots (each keeps only its
//! window queued), a small job behind a large one starts at once, weights divide the
//! slots, and `max_workers` caps a job's running tasks — all read from the jobs' own
//! events.

use std::time::Duration;

use tessera::bus::protocol::{Event, EventKind};

use crate::support::{Farm, PATIENCE, events_of, eventually, wait_event};

/// A farm of one worker with two slots, registered before any job is planned (the planner
/// sizes windows by the live workers' slots).
pub(crate) async fn two_slots() -> Farm {
    one_worker_of(2).await
}

/// A farm of one worker with `slots` slots, registered before any job is planned.
pub(crate) async fn one_worker_of(slots: u32) -> Farm {
    let mut farm = Farm::with_workers(0);
    farm.start_worker(0, &["--slots", &slots.to_string()]);
    let deps = farm.deps().await;
    let never = || "the worker never registered".to_string();
    eventually(PATIENCE, Duration::from_millis(50), never, async || {
        let live = tessera::bus::registry::live_workers(&deps.js).await.ok()?;
        (live.len() == 1).then_some(())
    })
    .await;
    farm
}

/// Submits a noop job of `frames` tasks of 50 ms.
pub(crate) fn submit(farm: &Farm, id: &str, frames: &str, extra: &str) {
    let toml = format!(
        "id = \"{id}\"\nrenderer = \"noop\"\n{extra}\n[frames]\nrange = \"{frames}\"\n[settings]\nsleep_ms = 50\n"
    );
    farm.submit(id, &toml);
}

/// The events of `kind` among `events`, by the time they were sent.
pub(crate) fn times(events: &[Event], kind: EventKind) -> Vec<u64> {
    let mut times: Vec<u64> = events
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.time_ms)
        .collect();
    times.sort_unstable();
    times
}

/// How many tasks of job `first` (its events) started between job `second`'s acceptance
/// and its first start.
fn started_ahead(first: &[Event], second: &[Event]) -> usize {
    let accepted = times(second, EventKind::JobAccepted)[0];
    let start = times(second, EventKind::TaskStarted)[0];
    times(first, EventKind::TaskStarted)
        .into_iter()
        .filter(|&t| t > accepted && t < start)
        .count()
}

/// A two-slot farm running job `first` of `frames`, and job `second` (of `its_frames`,
/// with `extra` fields) submitted once `first` has started.
pub(crate) async fn one_behind_another(
    (first, frames): (&str, &str),
    (second, its_frames, extra): (&str, &str, &str),
) -> (Farm, tessera::config::Deps) {
    let farm = two_slots().await;
    let deps = farm.deps().await;
    submit(&farm, first, frames, "");
    wait_event(&farm, &deps.js, first, EventKind::TaskStarted).await;
    submit(&farm, second, its_frames, extra);
    (farm, deps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_job_behind_a_large_one_starts_at_once_and_ends_long_before_it() {
    let (farm, deps) = one_behind_another(("large", "1-400"), ("small", "1-10", "")).await;
    wait_event(&farm, &deps.js, "small", EventKind::JobDone).await;
    let (large, small) = (
        events_of(&farm, "large").await,
        events_of(&farm, "small").await,
    );
    // Only the large job's window (two tasks, one per slot) was queued ahead of it, plus
    // what the slots had already pulled: a first-in, first-out queue would have run all
    // 400 first.
    let ahead = started_ahead(&large, &small);
    assert!(
        ahead <= 4,
        "{ahead} tasks of the large job started between the small job's acceptance and its first task"
    );
    let ended = times(&small, EventKind::JobDone)[0];
    let large_done = times(&large, EventKind::TaskDone)
        .into_iter()
        .filter(|&t| t <= ended)
        .count();
    assert!(
        large_done < 100,
        "the small job ended only when the large one had {large_done} of its 400 tasks done"
    );
    // Planned alone, it had queued far more than its window: the small job cut it.
    let cut = large
        .iter()
        .find(|e| e.kind == EventKind::JobChanged)
        .and_then(|e| e.message.clone())
        .unwrap_or_default();
    assert!(cut.contains("another job shares its queue"), "{cut:?}");
    let status = farm.status("large");
    assert_eq!(
        (&status["window"], &status["alone"]),
        (&2.into(), &false.into()),
        "{status}"
    );
    tessera::roles::client::cancel(&deps, &tessera::core::job::JobId::parse("large").unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_task_job_behind_a_large_one_planned_alone_starts_at_once() {
    // One task needs no window: it is queued at once, behind the large job's, and then
    // cuts the large one, whose tasks past its window leave the queue.
    let farm = two_slots().await;
    let deps = farm.deps().await;
    submit(&farm, "large", "1-100", "");
    wait_event(&farm, &deps.js, "large", EventKind::TaskStarted).await;
    let status = farm.status("large");
    assert_eq!(
        (&status["window"], &status["alone"]),
        (&256.into(), &true.into()),
        "{status}"
    );
    let out = farm.cli(&["status", "large"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("window: 256 tasks queued at most (alone"),
        "{said}"
    );
    submit(&farm, "single", "1", "");
    wait_event(&farm, &deps.js, "single", EventKind::JobDone).await;
    wait_event(&farm, &deps.js, "large", EventKind::JobDone).await;
    let (large, single) = (
        events_of(&farm, "large").await,
        events_of(&farm, "single").await,
    );
    let ahead = started_ahead(&large, &single);
    // Its window of two and what the slots had pulled, and one that may start before
    // the cut pauses the queue; not the rest of the 100 the large job queued alone.
    assert!(
        ahead <= 6,
        "{ahead} tasks of the large job started between the one-task job's acceptance and its start"
    );
    // The cut lost and doubled nothing: each of the large job's tasks was done once.
    let mut done: Vec<_> = large
        .iter()
        .filter(|e| e.kind == EventKind::TaskDone)
        .filter_map(|e| e.task.clone())
        .collect();
    assert_eq!(done.len(), 100);
    done.sort_unstable();
    done.dedup();
    assert_eq!(done.len(), 100, "a task of the large job was done twice");
    assert!(large.iter().any(|e| e.kind == EventKind::JobChanged));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_long_jobs_active_together_keep_their_done_counts_close() {
    keep_close(two_slots().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_long_jobs_planned_by_two_planners_at_once_keep_their_done_counts_close() {
    // Each planner may find the queue empty and plan its job alone; the one that finds
    // the other's tasks once its own are queued cuts both to their fair windows.
    let mut farm = two_slots().await;
    farm.start("tessera-planner", &[]);
    keep_close(farm).await;
}

/// Submits two 60-task jobs together and checks that, once both run, neither gets ahead.
async fn keep_close(farm: Farm) {
    let deps = farm.deps().await;
    // Published back to back (not through two CLI runs, whose start-up on a loaded
    // machine would be the first job's head start).
    for id in ["left", "right"] {
        let toml = format!(
            "id = \"{id}\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-60\"\n[settings]\nsleep_ms = 50\n"
        );
        let spec = tessera::core::job::from_toml(&toml).unwrap();
        let job = tessera::core::job::JobId::parse(id).unwrap();
        tessera::bus::publish::submission(&deps.js, &job, &spec)
            .await
            .unwrap();
    }
    wait_event(&farm, &deps.js, "left", EventKind::JobDone).await;
    wait_event(&farm, &deps.js, "right", EventKind::JobDone).await;
    let (left, right) = (
        events_of(&farm, "left").await,
        events_of(&farm, "right").await,
    );
    // Both are active from the first start of the one submitted second; what the first
    // did before that is its head start, which the window keeps from growing.
    let both = times(&right, EventKind::TaskStarted)[0];
    let head_start = times(&left, EventKind::TaskDone)
        .into_iter()
        .filter(|&t| t <= both)
        .count() as u32;
    let mut dones: Vec<(u64, bool)> = Vec::new();
    for (events, is_left) in [(&left, true), (&right, false)] {
        let after = times(events, EventKind::TaskDone)
            .into_iter()
            .filter(|&t| t > both);
        dones.extend(after.map(|t| (t, is_left)));
    }
    dones.sort_unstable();
    // Done since both were active; while both run, neither gets ahead by more than a tenth
    // (and two tasks per slot: those running, and those a second planner queued before
    // the first one cut both jobs to their windows).
    let (mut left, mut right) = (0u32, 0u32);
    for (_, is_left) in dones {
        match is_left {
            true => left += 1,
            false => right += 1,
        }
        if head_start + left < 60 && right < 60 {
            assert!(
                left.abs_diff(right) <= left.max(right) / 10 + 4,
                "done counts since both were active drifted apart: {left} and {right}"
            );
        }
    }
    assert!(
        head_start <= 6,
        "the first job ran {head_start} tasks alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_workers_keeps_a_job_to_one_running_task() {
    let farm = two_slots().await;
    let deps = farm.deps().await;
    submit(&farm, "capped", "1-12", "max_workers = 1");
    wait_event(&farm, &deps.js, "capped", EventKind::JobDone).await;
    let events = events_of(&farm, "capped").await;
    // The tasks' starts and ends in time order (an end before a start of the same
    // millisecond: the next task is queued only once the last one's end is handled).
    let mut moves: Vec<(u64, i32)> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::TaskStarted => Some((e.time_ms, 1)),
            EventKind::TaskDone => Some((e.time_ms, -1)),
            _ => None,
        })
        .collect();
    moves.sort_unstable();
    let mut running = 0;
    for (time, change) in &moves {
        running += change;
        assert!(running <= 1, "{running} tasks running at {time}: {moves:?}");
    }
    assert_eq!(times(&events, EventKind::TaskDone).len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_weight_two_gets_about_twice_the_slots() {
    let farm = two_slots().await;
    let deps = farm.deps().await;
    submit(&farm, "heavy", "1-90", "weight = 2");
    submit(&farm, "light", "1-90", "");
    wait_event(&farm, &deps.js, "heavy", EventKind::JobDone).await;
    let (heavy, light) = (
        events_of(&farm, "heavy").await,
        events_of(&farm, "light").await,
    );
    // Counted from the first start of the job submitted second until the heavy one ends.
    let both = times(&light, EventKind::TaskStarted)[0];
    let end = times(&heavy, EventKind::TaskDone)[89];
    let done_between = |events: &[Event]| {
        times(events, EventKind::TaskDone)
            .into_iter()
            .filter(|&t| t > both && t <= end)
            .count() as f64
    };
    let (h, l) = (done_between(&heavy), done_between(&light));
    let ratio = h / l.max(1.0);
    assert!(
        (1.5..=2.7).contains(&ratio),
        "the job of weight 2 did {h} tasks against {l} ({ratio:.2}x)"
    );
}

/// The frames of `events`' task starts, in the order they started (one-frame tasks).
fn frames_started(events: &[Event]) -> Vec<u32> {
    let mut starts: Vec<(u64, u32)> = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskStarted)
        .filter_map(|e| Some((e.time_ms, e.index? + 1)))
        .collect();
    starts.sort_unstable();
    starts.into_iter().map(|(_, frame)| frame).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_frames_start_first_in_preview_order_or_as_listed() {
    let farm = one_worker_of(1).await;
    let deps = farm.deps().await;
    let job = |id: &str, order: &str| {
        format!(
            "id = \"{id}\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-48\"\n{order}\n[settings]\nsleep_ms = 20\n"
        )
    };
    farm.submit("preview", &job("preview", "order = \"preview\""));
    wait_event(&farm, &deps.js, "preview", EventKind::JobDone).await;
    let started = frames_started(&events_of(&farm, "preview").await);
    assert_eq!(started[..7], [1, 48, 24, 12, 36, 6, 18], "{started:?}");
    let mut all = started.clone();
    all.sort_unstable();
    assert_eq!(all, (1..=48).collect::<Vec<_>>(), "every frame once");

    farm.submit("listed", &job("listed", "first = \"30,5\""));
    wait_event(&farm, &deps.js, "listed", EventKind::JobDone).await;
    let started = frames_started(&events_of(&farm, "listed").await);
    assert_eq!(started[..4], [30, 5, 1, 2], "{started:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_frames_go_to_the_fastest_idle_workers() {
    use tessera::bus::protocol::key_consumer;
    use tessera::core::job::{Class, Priority, RendererKind};
    let mut farm = Farm::with_workers(0);
    // w1 is 8 times as fast as the usual machine, w2 twice, w0 the usual one.
    for (i, speed) in ["1", "8", "2"].into_iter().enumerate() {
        farm.start_worker(i, &["--slots", "3", "--speed", speed]);
    }
    let deps = farm.deps().await;
    let keys = key_consumer(&Class::cpu(), Priority::Normal, RendererKind::Noop);
    let listed = || "tessera workers never listed w1's speed".to_string();
    eventually(PATIENCE, Duration::from_millis(100), listed, async || {
        let out = farm.cli(&["workers", "--json"]);
        let workers: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let w1 = workers.as_array()?.iter().find(|w| w["id"] == "w1")?;
        (w1["speed"] == 8.0).then_some(())
    })
    .await;
    let waiting = || "the idle workers never waited for key tasks".to_string();
    eventually(PATIENCE, Duration::from_millis(50), waiting, async || {
        let stream = deps.js.get_stream("TESSERA_TASKS").await.ok()?;
        let info = stream.consumer_info(&keys).await.ok()?;
        (info.num_waiting == 3).then_some(())
    })
    .await;
    let toml = "id = \"keys\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-30\"\nfirst = \"5,10,15,20,25,30\"\n[settings]\nsleep_ms = 300\n";
    farm.submit("keys", toml);
    wait_event(&farm, &deps.js, "keys", EventKind::JobDone).await;
    let events = events_of(&farm, "keys").await;
    let worker_of = |frame: u32| {
        let started = events
            .iter()
            .find(|e| e.kind == EventKind::TaskStarted && e.index == Some(frame - 1));
        started.and_then(|e| e.worker.clone()).unwrap_or_default()
    };
    let keys: Vec<(u32, String)> = [5, 10, 15, 20, 25, 30]
        .into_iter()
        .map(|frame| (frame, worker_of(frame)))
        .collect();
    // The fastest takes as many as it has slots, in the order asked; the next fastest
    // the rest; the usual machine none.
    let expected: Vec<(u32, String)> = [(5, "w1"), (10, "w1"), (15, "w1")]
        .into_iter()
        .chain([(20, "w2"), (25, "w2"), (30, "w2")])
        .map(|(frame, worker)| (frame, worker.to_string()))
        .collect();
    assert_eq!(keys, expected);
    let done = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskDone)
        .count();
    assert_eq!(done, 30, "every frame once");
    let by_w0 = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskStarted && e.worker.as_deref() == Some("w0"))
        .count();
    assert!(by_w0 > 0, "the rest are shared by every worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_chunks_start_as_single_frames_and_grow_to_the_target_time() {
    let farm = two_slots().await;
    let deps = farm.deps().await;
    // Frames of 50 ms and a target of one second: bundles of about 20 frames.
    let toml = "id = \"auto\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-160\"\nchunk = \"auto\"\ntarget_task_time = \"1s\"\n[settings]\nframe_ms = 50\n";
    farm.submit("auto", toml);
    wait_event(&farm, &deps.js, "auto", EventKind::JobDone).await;
    let events = events_of(&farm, "auto").await;
    // Messages in the order they started: a bundle's tasks start together, naming it.
    let mut starts: Vec<(u64, String)> = Vec::new();
    let mut sizes: std::collections::HashMap<String, usize> = Default::default();
    for e in events.iter().filter(|e| e.kind == EventKind::TaskStarted) {
        let message = e
            .bundle
            .clone()
            .or(e.task.clone())
            .map(|t| format!("{t}/{}", e.attempt.unwrap_or(0)))
            .unwrap();
        if !sizes.contains_key(&message) {
            starts.push((e.time_ms, message.clone()));
        }
        *sizes.entry(message).or_default() += 1;
    }
    starts.sort();
    let in_order: Vec<usize> = starts.iter().map(|(_, m)| sizes[m]).collect();
    eprintln!("auto chunk sizes in start order: {in_order:?}");
    assert_eq!(
        in_order[0], 1,
        "the first task is a single frame: {in_order:?}"
    );
    // Once timed, every bundle but the last holds about a second of frames.
    let grown = &in_order[in_order.iter().position(|&n| n > 1).unwrap()..in_order.len() - 1];
    assert!(grown.len() >= 4, "{in_order:?}");
    assert!(
        grown.iter().all(|&n| (15..=24).contains(&n)),
        "bundles should hold about 20 frames: {in_order:?}"
    );
    // Every frame rendered once, each with its own event.
    assert_eq!(done_tasks(&events), (0..160).collect::<Vec<_>>());
}

/// The tasks of `events`' `task.done`s, ascending (a task done twice, twice).
pub(crate) fn done_tasks(events: &[Event]) -> Vec<u32> {
    let mut done: Vec<u32> = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskDone)
        .filter_map(|e| e.index)
        .collect();
    done.sort_unstable();
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_chunks_stay_single_frames_while_a_worker_from_before_bundles_serves_the_queue() {
    let farm = two_slots().await;
    let deps = farm.deps().await;
    // A live worker whose lease says nothing of bundles (one from before them): it would
    // report only a bundle's first task. It never pulls; its lease is kept alive here.
    let live = tessera::bus::registry::live_workers(&deps.js)
        .await
        .unwrap();
    let mut old = serde_json::to_value(&live[0]).unwrap();
    old["id"] = "old".into();
    old.as_object_mut().unwrap().remove("bundles");
    let old: tessera::bus::protocol::WorkerInfo = serde_json::from_value(old).unwrap();
    assert!(!old.bundles);
    let lease = tessera::bus::registry::Entry::bind(&deps.js, "old")
        .await
        .unwrap();
    let renewing = tokio::spawn(async move {
        loop {
            lease.renew(&old).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let toml = "id = \"careful\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-40\"\nchunk = \"auto\"\ntarget_task_time = \"1s\"\n[settings]\nframe_ms = 20\n";
    farm.submit("careful", toml);
    wait_event(&farm, &deps.js, "careful", EventKind::JobDone).await;
    renewing.abort();
    let events = events_of(&farm, "careful").await;
    assert!(
        events.iter().all(|e| e.bundle.is_none()),
        "a bundle went to a queue an old worker serves"
    );
    assert_eq!(done_tasks(&events), (0..40).collect::<Vec<_>>());
}
