//! Scenes on their way to the renderer: references checked at submit (by the CLI and by
//! the planner), uploads that send only what the store lacks, and the worker's cache —
//! copies a renderer cannot corrupt, and a cap it stays under.

use tessera::bus::protocol::EventKind;
use tessera::bus::streams::TASKS_STREAM;

use crate::support::{Farm, copy_dir, examples, make_blender_scene, stream_messages, wait_event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_scene_files_are_refused_at_submit_and_nothing_is_queued() {
    let farm = Farm::with_workers(0);
    let deps = farm.deps().await;
    let dir = farm.dir.path().join("missing");
    copy_dir(&examples().join("povray/scene"), &dir.join("pov"));
    std::fs::remove_file(dir.join("pov/lights.inc")).unwrap();
    std::fs::remove_file(dir.join("pov/checker.png")).unwrap();
    let pov = dir.join("pov.toml");
    std::fs::write(&pov, "renderer = \"povray\"\nscene = \"pov/scene.pov\"\n").unwrap();
    make_blender_scene(&dir.join("blend/scene.blend"));
    std::fs::remove_file(dir.join("blend/textures/checker.png")).unwrap();
    let blend = dir.join("blend.toml");
    std::fs::write(
        &blend,
        "renderer = \"blender\"\nscene = \"blend/scene.blend\"\n[[layers]]\nname = \"main\"\n[[layers]]\nname = \"fog\"\n",
    )
    .unwrap();
    for (file, expected) in [
        (
            &pov,
            &[
                "scene.pov line 5: #include \"lights.inc\": no such file",
                "scene.pov line 13: png \"checker.png\": no such file",
            ][..],
        ),
        (
            &blend,
            &[
                "image \"checker\" refers to \"//textures/checker.png\": no such file",
                "layers[1].name: the scene has no view layer \"fog\" (it has: main, floor)",
            ][..],
        ),
    ] {
        let out = farm.cli(&["submit", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        for needle in expected {
            assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
        }
    }
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 0);
    let store = farm.dir.path().join("store");
    assert!(
        !store.exists() || std::fs::read_dir(&store).unwrap().next().is_none(),
        "nothing was uploaded"
    );

    // The same scene uploaded by another client and submitted over NATS: the planner
    // checks it against its manifest and rejects the job, naming the file.
    let packaged = tessera::store::package::package(&deps.store, &dir.join("pov/scene.pov"))
        .await
        .unwrap();
    let plain = async_nats::connect(farm.nats.url()).await.unwrap();
    for (id, manifest) in [
        ("raw-missing", packaged.hex.as_str()),
        ("raw-unknown", &"0".repeat(64)[..]),
    ] {
        let body = format!(
            r#"{{"id": "{id}", "renderer": "povray", "scene_manifest": "sha256:{manifest}"}}"#
        );
        plain
            .publish("tessera.jobs.submit", body.into())
            .await
            .unwrap();
    }
    plain.flush().await.unwrap();
    let missing = wait_event(&farm, &deps.js, "raw-missing", EventKind::JobRejected).await;
    let message = missing.message.unwrap_or_default();
    assert!(
        message.contains("scene.pov line 5: #include \"lights.inc\": no such file"),
        "{message}"
    );
    let unknown = wait_event(&farm, &deps.js, "raw-unknown", EventKind::JobRejected).await;
    let message = unknown.message.unwrap_or_default();
    assert!(message.contains("no scene sha256:000"), "{message}");
    assert_eq!(
        stream_messages(&deps.js, TASKS_STREAM).await,
        0,
        "nothing queued"
    );
}

/// `tessera submit`'s line about the scene: `(files, uploaded files, uploaded bytes)`.
fn uploaded(out: &std::process::Output) -> (u64, u64, u64) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("scene: "))
        .unwrap_or_else(|| panic!("no scene line: {stderr}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    (numbers[0], numbers[1], numbers[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_an_unchanged_scene_uploads_no_blob() {
    let farm = Farm::with_workers(0);
    let dir = farm.dir.path().join("again");
    copy_dir(&examples().join("povray/scene"), &dir.join("scene"));
    let job = dir.join("job.toml");
    std::fs::write(&job, "renderer = \"povray\"\nscene = \"scene/scene.pov\"\n").unwrap();
    let first = farm.cli(&["submit", job.to_str().unwrap()]);
    let (files, sent, bytes) = uploaded(&first);
    assert_eq!(
        (files, sent),
        (3, 3),
        "the first submission uploads every file"
    );
    let on_disk: u64 = ["scene.pov", "lights.inc", "checker.png"]
        .iter()
        .map(|f| std::fs::metadata(dir.join("scene").join(f)).unwrap().len())
        .sum();
    assert_eq!(bytes, on_disk);
    let again = farm.cli(&["submit", job.to_str().unwrap()]);
    assert_eq!(
        uploaded(&again),
        (3, 0, 0),
        "an unchanged scene uploads nothing"
    );
    std::fs::write(
        dir.join("scene/lights.inc"),
        "light_source { <1, 5, -3> color rgb 1 }\n",
    )
    .unwrap();
    let changed = farm.cli(&["submit", job.to_str().unwrap()]);
    let (_, sent, bytes) = uploaded(&changed);
    assert_eq!((sent, bytes), (1, 40), "only the changed file goes up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_overwrites_its_scene_leaves_the_next_task_the_original_bytes() {
    let mut farm = Farm::with_workers(0);
    farm.start_worker(0, &["--allow-command", "--renderers", "command"]);
    let dir = farm.dir.path().join("jobs");
    std::fs::create_dir_all(dir.join("scene")).unwrap();
    std::fs::write(dir.join("scene/input.txt"), "the original scene").unwrap();
    // Each frame copies its scene to its output, then writes over the scene.
    let script = "cat \"$0\" > \"$1\" && echo corrupted by frame $2 > \"$0\"";
    let toml = format!(
        "id = \"writer\"\nrenderer = \"command\"\nscene = \"scene/input.txt\"\n[frames]\nrange = \"1-3\"\n[settings]\ncheck_outputs = false\ncommand = [\"sh\", \"-c\", {script:?}, \"{{scene}}\", \"{{output}}\", \"{{frame}}\"]\n"
    );
    let job = farm.submit("writer", &toml);
    farm.wait_done(&job);
    for frame in 1..=3 {
        assert_eq!(
            crate::support::output_text(&farm, &job, frame).await,
            "the original scene",
            "frame {frame} rendered the original bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_cache_renders_jobs_larger_than_it_and_stays_under_its_cap() {
    const CAP: u64 = 3000;
    let mut farm = Farm::with_workers(0);
    farm.start_worker(
        0,
        &[
            "--allow-command",
            "--renderers",
            "command",
            "--cache-size",
            "3000",
        ],
    );
    let dir = farm.dir.path().join("jobs");
    let mut jobs = Vec::new();
    for n in 0..4 {
        let scene = dir.join(format!("scene-{n}"));
        std::fs::create_dir_all(&scene).unwrap();
        std::fs::write(scene.join("input.txt"), format!("scene {n}")).unwrap();
        // 1,600 bytes of its own in each scene: two scenes exceed the cap.
        std::fs::write(scene.join("texture.bin"), vec![b'a' + n as u8; 1600]).unwrap();
        let toml = format!(
            "id = \"cached-{n}\"\nrenderer = \"command\"\nscene = \"scene-{n}/input.txt\"\n[settings]\ncheck_outputs = false\ncommand = [\"cp\", \"{{scene}}\", \"{{output}}\"]\n"
        );
        jobs.push(farm.submit(&format!("cached-{n}"), &toml));
    }
    for (n, job) in jobs.iter().enumerate() {
        farm.wait_done(job);
        assert_eq!(
            crate::support::output_text(&farm, job, 1).await,
            format!("scene {n}")
        );
    }
    let blobs = farm.dir.path().join("cache-0/blobs");
    let held: u64 = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        held <= CAP,
        "the cache holds {held} bytes, over its cap of {CAP}"
    );
    assert!(held > 0, "the cache keeps what fits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sweeps_the_work_folders_a_dead_run_left() {
    let mut farm = Farm::with_workers(0);
    let stale = farm.dir.path().join("cache-0/work/job-x/task-y/attempt-1");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("partial.png"), vec![0u8; 4096]).unwrap();
    farm.start_worker(0, &["--renderers", "noop"]);
    let job = farm.submit("after-sweep", "id = \"after-sweep\"\nrenderer = \"noop\"\n");
    farm.wait_done(&job);
    assert!(
        !farm.dir.path().join("cache-0/work/job-x").exists(),
        "the dead run's work folder is gone"
    );
}
