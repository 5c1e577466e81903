//! What the planner accepts, deduplicates and rejects — from the CLI and from any NATS client.

use tessera::bus::protocol::EventKind;
use tessera::bus::streams::{JOBS_STREAM, TASKS_STREAM};
use tessera::core::job::JobId;
use tessera::store::keys;

use crate::support::{Farm, last_line, stream_messages, wait_event, wait_events};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_published_as_raw_json_by_a_plain_client_renders() {
    let farm = Farm::with_workers(1);
    let deps = farm.deps().await;
    // A plain core-NATS publish of JSON bytes: no Tessera types, no headers.
    let plain = async_nats::connect(farm.nats.url()).await.unwrap();
    let body = br#"{"id": "raw-json", "renderer": "builtin", "image": {"width": 32, "height": 18},
                    "frames": {"range": "1-3"}, "settings": {"samples": 1}}"#;
    plain
        .publish("tessera.jobs.submit", body.as_slice().into())
        .await
        .unwrap();
    plain.flush().await.unwrap();

    let done = wait_event(&farm, &deps.js, "raw-json", EventKind::JobDone).await;
    let job = JobId::parse("raw-json").unwrap();
    let expected: Vec<String> = (1..=3)
        .map(|f| keys::unversioned_output(&job, &format!("frame_{f:04}.png")))
        .collect();
    let frames: Vec<&String> = done
        .outputs
        .iter()
        .filter(|k| k.contains("/frame_"))
        .collect();
    assert_eq!(frames, expected.iter().collect::<Vec<_>>());
    for key in &expected {
        let bytes = deps.store.get(key).await.unwrap();
        assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 32);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_job_id_submitted_twice_is_planned_once() {
    let farm = Farm::with_workers(1);
    let deps = farm.deps().await;
    let file = farm.job_file(
        "twice.toml",
        "id = \"twice\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-5\"\n[settings]\nsleep_ms = 20\n",
    );
    let first = farm.cli(&["submit", file.to_str().unwrap()]);
    let second = farm.cli(&["submit", file.to_str().unwrap()]);
    assert!(first.status.success() && second.status.success());
    assert_eq!(last_line(&first), "twice");
    assert_eq!(last_line(&second), "twice");
    wait_event(&farm, &deps.js, "twice", EventKind::JobDone).await;

    // Once more after it ended, with a different Nats-Msg-Id so the stream's dedup window
    // cannot help: only the KV create-if-absent stands between this and a second plan.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "another-message-id");
    let body = br#"{"id": "twice", "renderer": "noop", "frames": {"range": "1-5"}, "settings": {"sleep_ms": 20}}"#;
    deps.js
        .publish_with_headers("tessera.jobs.submit", headers, body.as_slice().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let taken = async || (stream_messages(&deps.js, JOBS_STREAM).await == 0).then_some(());
    let never = || "the planner never took the submission".to_string();
    let every = std::time::Duration::from_millis(50);
    crate::support::eventually(crate::support::PATIENCE, every, never, taken).await;

    let job = JobId::parse("twice").unwrap();
    let events = crate::support::job_events(&deps.js, job.as_str())
        .await
        .unwrap();
    let count = |kind| events.iter().filter(|e| e.kind == kind).count();
    assert_eq!(count(EventKind::JobAccepted), 1, "{events:#?}");
    assert_eq!(count(EventKind::TaskStarted), 5);
    assert_eq!(count(EventKind::TaskDone), 5);
    assert_eq!(count(EventKind::JobDone), 1);
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 0);
}

/// Invalid jobs: (TOML for the CLI, JSON for NATS, the field the error must name).
const INVALID: &[(&str, &str, &str)] = &[
    ("id = \"../escape\"", r#"{"id": "../escape"}"#, "id"),
    (
        "priority = \"urgent\"",
        r#"{"priority": "urgent"}"#,
        "priority",
    ),
    ("class = \"g/pu\"", r#"{"class": "g/pu"}"#, "class"),
    ("renderer = \"maya\"", r#"{"renderer": "maya"}"#, "renderer"),
    (
        "[image]\nwidth = 0",
        r#"{"image": {"width": 0}}"#,
        "image.width",
    ),
    (
        "[image]\nheight = 100000",
        r#"{"image": {"height": 100000}}"#,
        "image.height",
    ),
    (
        "[image]\nformat = \"jpg\"",
        r#"{"image": {"format": "jpg"}}"#,
        "image.format",
    ),
    (
        "[frames]\nrange = \"48-1\"",
        r#"{"frames": {"range": "48-1"}}"#,
        "frames.range",
    ),
    (
        "[frames]\nchunk = 0",
        r#"{"frames": {"chunk": 0}}"#,
        "frames.chunk",
    ),
    (
        "[frames]\nrange = \"1-999999\"\n[tiles]\ngrid = [3, 3]",
        r#"{"frames": {"range": "1-999999"}, "tiles": {"grid": [3, 3]}}"#,
        "frames",
    ),
    (
        "[tiles]\ngrid = [0, 4]",
        r#"{"tiles": {"grid": [0, 4]}}"#,
        "tiles.grid",
    ),
    (
        "[[layers]]\nname = \"a/b\"",
        r#"{"layers": [{"name": "a/b"}]}"#,
        "layers[0].name",
    ),
    (
        "[retry]\nmax_attempts = 0",
        r#"{"retry": {"max_attempts": 0}}"#,
        "retry.max_attempts",
    ),
    (
        "[retry]\ntimeout = \"later\"",
        r#"{"retry": {"timeout": "later"}}"#,
        "retry.timeout",
    ),
    (
        "[settings]\nsamples = 0",
        r#"{"settings": {"samples": 0}}"#,
        "settings.samples",
    ),
    (
        "[image]\nwidth = \"wide\"",
        r#"{"image": {"width": "wide"}}"#,
        "image.width",
    ),
    ("colour = \"red\"", r#"{"colour": "red"}"#, "unknown field"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_jobs_are_refused_by_the_cli_with_the_field_named_and_nothing_queued() {
    let farm = Farm::with_workers(0);
    let deps = farm.deps().await;
    for (i, (toml, _, field)) in INVALID.iter().enumerate() {
        let file = farm.job_file(&format!("bad-{i}.toml"), toml);
        let out = farm.cli(&["submit", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {stderr}");
        assert!(
            stderr.contains(field),
            "{toml}: {stderr} does not name {field}"
        );
    }
    let missing = farm.job_file("no-scene.toml", "scene = \"nowhere/scene.toml\"");
    let out = farm.cli(&["submit", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scene"));
    assert_eq!(
        stream_messages(&deps.js, JOBS_STREAM).await,
        0,
        "nothing was queued"
    );
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_jobs_over_nats_are_rejected_with_reasons_and_the_planner_carries_on() {
    let mut farm = Farm::with_workers(1);
    let deps = farm.deps().await;
    let plain = async_nats::connect(farm.nats.url()).await.unwrap();
    for (i, (_, json, _)) in INVALID.iter().enumerate() {
        let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
        if value.get("id").is_none() {
            value["id"] = format!("bad-{i}").into();
        }
        plain
            .publish(
                "tessera.jobs.submit",
                serde_json::to_vec(&value).unwrap().into(),
            )
            .await
            .unwrap();
    }
    // Garbage that is neither JSON nor msgpack of a job.
    plain
        .publish("tessera.jobs.submit", "{not json".into())
        .await
        .unwrap();
    plain
        .publish("tessera.jobs.submit", vec![0xc1, 0x00].into())
        .await
        .unwrap();
    plain.flush().await.unwrap();
    // Three rejections without a usable id: the bad id and the two pieces of garbage.
    let unusable = |events: &[tessera::bus::protocol::Event]| events.len() == 3;
    let events = wait_events(&farm, &deps.js, "_invalid", unusable).await;
    assert!(
        events
            .iter()
            .all(|e| e.kind == EventKind::JobRejected && !e.reasons.is_empty())
    );

    for (i, (_, _, field)) in INVALID.iter().enumerate() {
        let id = if i == 0 {
            "_invalid".to_string()
        } else {
            format!("bad-{i}")
        };
        let names_field = |events: &[tessera::bus::protocol::Event]| {
            events.iter().any(|e| {
                e.kind == EventKind::JobRejected
                    && e.reasons.iter().any(|r| r.to_string().contains(field))
            })
        };
        wait_events(&farm, &deps.js, &id, names_field).await;
        if i > 0 {
            let status = farm.status(&id);
            assert_eq!(status["state"], "rejected");
        }
    }
    // Nothing of the rejected jobs was queued or recorded, and the planner still plans.
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 0);
    assert!(
        deps.ledger
            .job(&JobId::parse("bad-1").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    plain
        .publish(
            "tessera.jobs.submit",
            r#"{"id": "good", "renderer": "noop"}"#.into(),
        )
        .await
        .unwrap();
    wait_event(&farm, &deps.js, "good", EventKind::JobDone).await;
    assert!(farm.roles[0].running(), "the planner is still running");
}

/// Planning is all or nothing: a planner SIGKILLed while it queues a large job leaves none
/// of its tasks queued (or, had it committed, all of them), and the submission, delivered
/// again to the restarted planner, queues every task exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planner_killed_while_queuing_a_large_job_leaves_all_or_nothing_then_queues_it_once() {
    const TASKS: u64 = 100_000;
    let mut farm = Farm::new();
    let deps = farm.deps().await;
    let planner = farm.start("tessera-planner", &[]);
    // Its cap is its size: its window takes every task, queued in one atomic batch.
    let toml = format!(
        "id = \"large\"\nrenderer = \"noop\"\nmax_workers = {TASKS}\n[frames]\nrange = \"1-{TASKS}\"\n"
    );
    let job = farm.submit("large", &toml);
    // The job's record is written just before its tasks are queued: kill the planner then.
    let id = JobId::parse(&job).unwrap();
    let recorded = async || deps.ledger.job(&id).await.unwrap().map(|_| ());
    let never = || format!("the job was never recorded\n{}", farm.logs());
    let soon = std::time::Duration::from_millis(2);
    crate::support::eventually(crate::support::PATIENCE, soon, never, recorded).await;
    farm.roles[planner].kill();
    let left = stream_messages(&deps.js, TASKS_STREAM).await;
    assert!(
        left == 0 || left == TASKS,
        "a killed planner left {left} of {TASKS} tasks queued"
    );
    farm.start("tessera-planner", &[]);
    let all = async || (stream_messages(&deps.js, TASKS_STREAM).await == TASKS).then_some(());
    let never = || format!("the job was never queued whole\n{}", farm.logs());
    let every = std::time::Duration::from_millis(200);
    crate::support::eventually(crate::support::PATIENCE, every, never, all).await;
    // The resumed planning marks the job queued; nothing more arrives.
    let published = async || {
        let (record, _) = deps
            .ledger
            .job(&JobId::parse(&job).unwrap())
            .await
            .unwrap()?;
        record.published.then_some(())
    };
    let never = || "the resumed planning never finished".to_string();
    crate::support::eventually(crate::support::PATIENCE, every, never, published).await;
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, TASKS);
    eprintln!("the planner was killed with {left} of {TASKS} tasks queued");
}

/// A job whose task messages could never be stored (larger than the server's
/// `max_payload`) is rejected with the limit named, and the planner carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_tasks_exceed_the_servers_payload_limit_is_rejected_with_the_limit() {
    let farm = Farm::with_workers(1);
    let deps = farm.deps().await;
    let limit = deps.client.server_info().max_payload;
    // 400,000 frames in one task: about 2 MB of frame numbers in one message.
    let job = farm.submit(
        "huge-chunk",
        "id = \"huge-chunk\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-400000\"\nchunk = 400000\n",
    );
    let rejected = wait_event(&farm, &deps.js, &job, EventKind::JobRejected).await;
    let message = rejected.message.unwrap_or_default();
    assert!(
        message.contains("frames.chunk")
            && message.contains(&format!("max_payload of {limit} bytes")),
        "{message}"
    );
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 0);
    // The planner carries on.
    let job = farm.submit(
        "ok-after",
        "id = \"ok-after\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-3\"\n",
    );
    farm.wait_done(&job);
}

/// A tiled frame whose stitching canvas alone exceeds the farm's canvas budget is refused
/// at submit with the budget named, instead of taking a collector's memory; one within a
/// budget set lower by the environment stitches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiled_frame_larger_than_the_canvas_budget_is_rejected_with_the_budget() {
    let farm = Farm::with_workers(1);
    let deps = farm.deps().await;
    // 65,536² in 8-bit RGB: 12 GiB, over the default budget of 8 GiB.
    let job = farm.submit(
        "vast",
        "id = \"vast\"\nrenderer = \"noop\"\n[image]\nwidth = 65536\nheight = 65536\n[tiles]\ngrid = [8, 8]\n",
    );
    let rejected = wait_event(&farm, &deps.js, &job, EventKind::JobRejected).await;
    let message = rejected.message.unwrap_or_default();
    assert!(
        message.contains("image")
            && message.contains("12.0 GiB")
            && message.contains("canvas budget of 8.0 GiB"),
        "{message}"
    );
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 0);

    // A planner with a 1 MiB budget refuses a 1024² feathered frame (12 MiB of floats)
    // and takes a 256² one.
    let mut small = Farm::new();
    small
        .env
        .push(("TESSERA_CANVAS_BUDGET".into(), "1MiB".into()));
    small.start("tessera-planner", &[]);
    small.start("tessera-collector", &[]);
    small.start_worker(0, &[]);
    let deps = small.deps().await;
    let tiled = |id: &str, side: u32| {
        format!(
            "id = \"{id}\"\nrenderer = \"builtin\"\n[image]\nwidth = {side}\nheight = {side}\n[tiles]\ngrid = [2, 2]\noverscan = 4\nblend = \"feather\"\n[settings]\nsamples = 1\n"
        )
    };
    let job = small.submit("big", &tiled("big", 1024));
    let rejected = wait_event(&small, &deps.js, &job, EventKind::JobRejected).await;
    assert!(
        rejected
            .message
            .unwrap_or_default()
            .contains("12.0 MiB to stitch, more than this farm's canvas budget of 1.0 MiB")
    );
    let job = small.submit("fits", &tiled("fits", 256));
    small.wait_done(&job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_started_with_log_format_json_writes_one_json_object_a_line() {
    let mut farm = Farm::with_workers(0);
    let deps = farm.deps().await;
    let json = farm.start("tessera-worker", &["--log-format", "json"]);
    let id = farm.submit(
        "logged",
        "id = \"logged\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-2\"\n",
    );
    wait_event(&farm, &deps.js, &id, EventKind::JobDone).await;
    let text = std::fs::read_to_string(farm.dir.path().join(format!("tessera-worker-{json}.log")))
        .unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(!lines.is_empty(), "the worker logged nothing");
    for line in &lines {
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(line["level"].is_string(), "{line}");
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    // The others write readable text.
    let planner = std::fs::read_to_string(farm.dir.path().join("tessera-planner-0.log")).unwrap();
    let first = planner.lines().next().expect("the planner logged");
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_err(),
        "{first}"
    );
}
