//! A job from submission to assembled frames, with every role a separate process.

use std::collections::{BTreeSet, HashMap};

use tessera::bus::protocol::EventKind;
use tessera::core::job::JobId;
use tessera::store::keys;

use crate::support::{Farm, last_line};

const ANIMATION: &str = r#"
name = "it animation"
renderer = "builtin"
scene = "../../scene/turntable.toml"
[image]
width = 64
height = 36
[frames]
range = "1-24"
chunk = 4
[settings]
samples = 2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_four_frames_on_two_workers_end_done_and_distinct() {
    twenty_four_frames(&Farm::with_workers(2)).await;
}

/// The same job with the store on a real S3 server, and a 4K EXR frame (over 100 MB)
/// uploaded in parts and assembled by a server-side copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_job_runs_on_s3_with_outputs_under_the_documented_keys() {
    let farm = Farm::on_s3(2).await;
    let big = farm.submit(
        "big",
        "id = \"big-exr\"\nrenderer = \"builtin\"\n[image]\nwidth = 3840\nheight = 2160\nformat = \"exr\"\n[settings]\nsamples = 1\nbounces = 0\n",
    );
    twenty_four_frames(&farm).await;
    farm.wait_done(&big);
    let deps = farm.deps().await;
    let job = JobId::parse(&big).unwrap();
    let bytes = deps
        .store
        .get(&keys::unversioned_output(&job, "frame_0001.exr"))
        .await
        .unwrap();
    assert!(
        bytes.len() > 64 << 20,
        "a 4K float EXR is large: {} bytes",
        bytes.len()
    );
    let image = tessera::core::raster::decode(&bytes).unwrap();
    assert_eq!((image.width(), image.height()), (3840, 2160));
    // The raw attempt output was moved into place, not kept twice; the log is kept under
    // its documented key.
    let task = tessera::core::plan::task(&load(&deps, &job).await, 0);
    assert!(
        !deps
            .store
            .exists(&keys::attempt_output(&job, &task.id, 1, "frame_0001.exr"))
            .await
            .unwrap()
    );
    assert!(
        deps.store
            .exists(&keys::attempt_log(&job, &task.id, 1))
            .await
            .unwrap()
    );
}

async fn load(deps: &tessera::config::Deps, job: &JobId) -> tessera::core::job::Job {
    let (record, _) = deps.ledger.job(job).await.unwrap().unwrap();
    record.spec.validate().unwrap()
}

async fn twenty_four_frames(farm: &Farm) {
    let scene_dir = farm.dir.path().join("scene");
    std::fs::create_dir_all(&scene_dir).unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/turntable/scene");
    for entry in std::fs::read_dir(example).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, scene_dir.join(path.file_name().unwrap())).unwrap();
    }
    let job_file = farm.job_file("anim.toml", &ANIMATION.replace("../../scene", "../scene"));

    let out = farm.cli(&["submit", job_file.to_str().unwrap(), "--wait"]);
    assert!(
        out.status.success(),
        "submit --wait failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        farm.logs()
    );
    let id = last_line(&out);

    // Status says done, 6 tasks done, 24 outputs.
    let status = farm.status(&id);
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["state"], "done");
    assert_eq!(status["tasks"]["total"], 6);
    assert_eq!(status["tasks"]["done"], 6);
    assert_eq!(status["tasks"]["failed"], 0);
    let outputs: Vec<String> = status["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .filter(|key| key.contains("/frame_"))
        .collect();
    let job = JobId::parse(&id).unwrap();
    let expected: Vec<String> = (1..=24)
        .map(|f| keys::unversioned_output(&job, &format!("frame_{f:04}.png")))
        .collect();
    assert_eq!(outputs, expected);

    // 24 decodable, distinct frames of the requested size, fetched through the CLI.
    let fetched = farm.dir.path().join("fetched");
    let out = farm.cli(&["fetch", &id, "-o", fetched.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut distinct = BTreeSet::new();
    for f in 1..=24 {
        let bytes = std::fs::read(fetched.join(format!("frame_{f:04}.png"))).unwrap();
        let image = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (64, 36));
        distinct.insert(image.into_raw());
    }
    assert_eq!(distinct.len(), 24, "every frame differs from every other");

    // Events in a sensible order: accepted first, each task started before done (as stored,
    // not as the tests' support puts starts back), done last.
    let deps = farm.deps().await;
    let events = tessera::roles::client::events(&deps.js, job.as_str())
        .await
        .unwrap();
    assert_eq!(events.first().unwrap().kind, EventKind::JobAccepted);
    assert_eq!(events.last().unwrap().kind, EventKind::JobDone);
    let mut started: HashMap<u32, usize> = HashMap::new();
    let mut done = BTreeSet::new();
    for (i, event) in events.iter().enumerate() {
        match event.kind {
            EventKind::TaskStarted => {
                started.entry(event.index.unwrap()).or_insert(i);
            }
            EventKind::TaskDone => {
                // Its start was reported before it, or (a task done before its start was
                // due, on a busy worker) in it, never both.
                let index = event.index.unwrap();
                match event.started_ms {
                    None => assert!(
                        started.get(&index).is_some_and(|&s| s < i),
                        "task {index} done before started"
                    ),
                    Some(at) => {
                        assert!(!started.contains_key(&index), "task {index} started twice");
                        assert!(
                            at <= event.time_ms,
                            "task {index} started after it was done"
                        );
                    }
                }
                assert_eq!(event.outputs.len(), 4, "a chunk of 4 frames has 4 outputs");
                done.insert(index);
            }
            EventKind::JobDone => assert_eq!(i, events.len() - 1),
            _ => {}
        }
    }
    assert_eq!(done, (0..6).collect());
    // `tessera watch` of an ended job shows where it stands, then its outputs, and exits
    // 0 for a done one.
    let watch = farm.cli(&["watch", &id, "--json"]);
    assert!(watch.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&watch.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["status"]["tasks"]["done"], 6);
    assert_eq!(lines[1]["state"], "done");
    assert_eq!(lines[1]["outputs"], status["outputs"]);
    // Every task's log is kept.
    let logs = deps.store.list(&keys::logs_prefix(&job)).await.unwrap();
    assert_eq!(logs.len(), 6, "{logs:?}");
}

/// A job that ended long ago, whose events the stream no longer holds: `tessera wait`
/// answers from the job record at once instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_job_whose_events_expired_answers_from_its_record() {
    let farm = Farm::with_workers(1);
    let deps = farm.deps().await;
    let job = farm.submit(
        "expired",
        "id = \"expired\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-2\"\n",
    );
    farm.wait_done(&job);
    deps.js
        .get_stream(tessera::bus::streams::EVENTS_STREAM)
        .await
        .unwrap()
        .purge()
        .filter(tessera::bus::protocol::stored_job_events_filter(&job))
        .await
        .unwrap();
    let mut wait = farm
        .command("tessera")
        .args(["wait", &job])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = crate::support::exits_within(&mut wait, std::time::Duration::from_secs(10));
    let _ = wait.kill();
    assert!(
        status.is_some_and(|s| s.success()),
        "tessera wait on a done job with no events: {status:?}"
    );
}

/// A busy worker (its slots taking tasks, not all waiting) reports a short task's start in its `task.done`
/// (`started_ms`) instead of a `task.started` of its own, and a longer one's start once it
/// has run a moment: never both, never neither. The jobs still start, run and end as
/// before, with their start times recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_reports_a_short_tasks_start_with_its_end_and_a_long_ones_on_its_own() {
    let farm = crate::sharing::one_worker_of(4).await;
    let deps = farm.deps().await;
    let noop = |id: &str, frames: &str, ms: u32| {
        format!(
            "id = \"{id}\"\nrenderer = \"noop\"\n[frames]\nrange = \"{frames}\"\n[settings]\nsleep_ms = {ms}\n"
        )
    };
    farm.submit("long", &noop("long", "1-3", 600));
    farm.submit("short", &noop("short", "1-60", 10));
    for job in ["long", "short"] {
        farm.wait_done(job);
    }
    let mut folded = 0;
    for (job, tasks) in [("long", 3), ("short", 60)] {
        // As stored: the support's `job_events` would put the folded starts back.
        let events = tessera::roles::client::events(&deps.js, job).await.unwrap();
        let mut started = HashMap::new();
        let mut done = BTreeSet::new();
        for event in &events {
            let index = event.index.unwrap_or(u32::MAX);
            match event.kind {
                EventKind::TaskStarted => {
                    assert!(started.insert(index, event.time_ms).is_none());
                }
                EventKind::TaskDone => {
                    let at = match event.started_ms {
                        Some(at) => {
                            assert!(
                                !started.contains_key(&index),
                                "{job}: task {index}'s start was reported twice"
                            );
                            folded += 1;
                            at
                        }
                        None => *started.get(&index).unwrap_or_else(|| {
                            panic!("{job}: task {index} done without a start: {events:#?}")
                        }),
                    };
                    assert!(
                        at <= event.time_ms,
                        "{job}: task {index} done before it started"
                    );
                    assert!(done.insert(index), "{job}: task {index} done twice");
                }
                _ => {}
            }
        }
        assert_eq!(done.len(), tasks, "{job}: {events:#?}");
        if job == "long" {
            // 600 ms on a busy worker: each start is reported on its own, at once or
            // once the task has run a moment.
            assert_eq!(started.len(), 3, "{events:#?}");
        }
        let id = JobId::parse(job).unwrap();
        let (record, _) = deps.ledger.job(&id).await.unwrap().unwrap();
        assert!(record.started_ms.is_some(), "{job} has no start time");
    }
    assert!(
        folded > 0,
        "no short task on a busy worker had its start folded into its end"
    );
}
