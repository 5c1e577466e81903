//! Deleting jobs: `tessera delete` and the collector's retention leave nothing of a job in
//! the store, the ledger, the events or the queue, and its id can be used again.

use std::time::Duration;

use futures::TryStreamExt as _;
use tessera::bus::streams;
use tessera::config::Deps;
use tessera::core::job::JobId;
use tessera::store::keys;

use crate::support::{Farm, command_farm, command_job, eventually, output_text, wait_event};

/// A frame that says when it was rendered: two renders never write the same one.
const STAMP: &str = "date +%s%N > {output}";

/// Messages on `filter` in `stream`.
async fn messages_on(deps: &Deps, stream: &str, filter: &str) -> u64 {
    let stream = deps.js.get_stream(stream).await.unwrap();
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(filter)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    subjects.iter().map(|(_, n)| *n as u64).sum()
}

/// What is left of `job` anywhere: objects, record and pages, events, queued tasks.
async fn leftovers(deps: &Deps, job: &str) -> Vec<String> {
    let id = JobId::parse(job).unwrap();
    let mut left = deps.store.list(&keys::job_prefix(&id)).await.unwrap();
    let kv = format!("KV_{}", streams::JOBS_BUCKET);
    for filter in [
        format!("$KV.{}.{job}", streams::JOBS_BUCKET),
        format!("$KV.{}.{job}.>", streams::JOBS_BUCKET),
    ] {
        let n = messages_on(deps, &kv, &filter).await;
        if n > 0 {
            left.push(format!("{n} KV entries on {filter}"));
        }
    }
    for (stream, filter) in [
        (streams::EVENTS_STREAM, format!("tessera.events.*.{job}.>")),
        (streams::TASKS_STREAM, format!("tessera.tasks.*.*.{job}.*")),
    ] {
        let n = messages_on(deps, stream, &filter).await;
        if n > 0 {
            left.push(format!("{n} messages on {filter}"));
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_job_leaves_nothing_and_its_id_renders_fresh_frames() {
    let (farm, deps) = command_farm(1, &[]).await;
    let job = command_job(&farm, "reused", "1-3", STAMP, "");
    farm.wait_done(&job);
    let old = output_text(&farm, &job, 2).await;
    assert!(!leftovers(&deps, &job).await.is_empty());

    let out = farm.cli(&["delete", &job]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers(&deps, &job).await, Vec::<String>::new());
    let again = farm.cli(&["delete", &job]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no job reused"));

    // The same spec under the same id, well inside the two-minute dedup windows of the
    // submissions and the task queue: planned and rendered afresh.
    let job = command_job(&farm, "reused", "1-3", STAMP, "");
    farm.wait_done(&job);
    let new = output_text(&farm, &job, 2).await;
    assert_ne!(old, new, "frame 2 was rendered again, not inherited");
    let status = farm.status(&job);
    assert_eq!(status["tasks"]["done"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_job_is_deleted_only_with_force_which_stops_its_renders() {
    let (farm, deps) = command_farm(1, &[]).await;
    let job = command_job(&farm, "busy", "1", "sleep 60; echo late > {output}", "");
    wait_event(
        &farm,
        &deps.js,
        &job,
        tessera::bus::protocol::EventKind::TaskStarted,
    )
    .await;

    let refused = farm.cli(&["delete", &job]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("busy is running") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(farm.status(&job)["state"], "running");

    let out = farm.cli(&["delete", &job, "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers(&deps, &job).await, Vec::<String>::new());
    // The worker is free again: a new job runs at once.
    let next = command_job(&farm, "next", "1", "echo next > {output}", "");
    farm.wait_done(&next);
    // Nothing of the deleted job came back (a late log or event of its stopped render).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(leftovers(&deps, &job).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_jobs_that_ended_long_enough_ago_and_keeps_the_rest() {
    let mut farm = Farm::new();
    farm.start("tessera-planner", &[]);
    farm.start("tessera-collector", &["--keep-jobs", "3s"]);
    farm.start_worker(0, &["--allow-command"]);
    let deps = farm.deps().await;
    // Two jobs with scenes of their own: one ends, one runs on.
    let scene_job = |id: &str, text: &str, script: &str| {
        let dir = farm.dir.path().join(format!("scene-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("input.txt"), text).unwrap();
        let toml = format!(
            "id = \"{id}\"\nrenderer = \"command\"\nscene = \"../scene-{id}/input.txt\"\n[frames]\nrange = \"1-2\"\n[settings]\ncheck_outputs = false\ncommand = [\"sh\", \"-c\", {script:?}, \"{{scene}}\", \"{{output}}\"]\n"
        );
        farm.submit(id, &toml)
    };
    let done = scene_job("short", "short scene", "cp \"$0\" \"$1\"");
    farm.wait_done(&done);
    let running = scene_job("long", "long scene", "sleep 30; cp \"$0\" \"$1\"");
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            format!(
                "the ended job and its scene were not deleted\n{}",
                farm.logs()
            )
        },
        async || {
            let scenes = deps.store.list(keys::MANIFESTS).await.unwrap();
            let blobs = deps.store.list(keys::BLOBS).await.unwrap();
            (leftovers(&deps, &done).await.is_empty() && scenes.len() == 1 && blobs.len() == 1)
                .then_some(())
        },
    )
    .await;
    // The running job is kept, whatever its age, and so is its scene.
    assert_eq!(farm.status(&running)["state"], "running");
    let (record, _) = deps
        .ledger
        .job(&JobId::parse(&running).unwrap())
        .await
        .unwrap()
        .unwrap();
    let hex = record
        .spec
        .scene_manifest
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    assert!(deps.store.exists(&keys::manifest(&hex)).await.unwrap());
    let blob = deps.store.list(keys::BLOBS).await.unwrap().remove(0);
    assert_eq!(deps.store.get(&blob).await.unwrap().as_ref(), b"long scene");
}
