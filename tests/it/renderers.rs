//! The real renderers through the farm: POV-Ray and Blender frames and tiles equal the
//! programs run directly, pixel for pixel; progress events during their renders; their
//! errors as failure reasons; scene references checked at submit; renderers offered only
//! where their program is.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tessera::bus::protocol::EventKind;
use tessera::bus::streams::TASKS_STREAM;

use crate::support::{Farm, PATIENCE, events_of, last_line, stream_messages, wait_event};

/// The repository's example folder.
fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs a program to the end; fails the test with its output unless it succeeds.
fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fetches a job's outputs into `dir`.
fn fetch(farm: &Farm, job: &str, dir: &Path) {
    let out = farm.cli(&["fetch", job, "-o", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The RGB pixels of a PNG file, 8 bits.
fn pixels(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// Asserts two PNG files hold the same pixels, at 16 bits (8-bit files widen exactly).
fn assert_same_pixels(farm_frame: &Path, direct: &Path) {
    let wide = |path: &Path| {
        image::open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .to_rgb16()
    };
    let (a, b) = (wide(farm_frame), wide(direct));
    assert_eq!(a.dimensions(), b.dimensions(), "{}", farm_frame.display());
    let differ = a.pixels().zip(b.pixels()).filter(|(p, q)| p != q).count();
    assert_eq!(
        differ,
        0,
        "{} differs from {} in {differ} pixels",
        farm_frame.display(),
        direct.display()
    );
}

/// Submits a job file with the CLI; returns the job id.
fn submit(farm: &Farm, file: &Path) -> String {
    let out = farm.cli(&["submit", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "submit {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    last_line(&out)
}

/// Progress events between 0 and 1 exclusive, each before its task's `task.done`.
async fn assert_progress_during_render(farm: &Farm, job: &str) {
    let events = events_of(farm, job).await;
    let progress: Vec<f32> = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskProgress)
        .filter_map(|e| e.progress)
        .collect();
    assert!(
        progress.iter().any(|p| *p > 0.0 && *p < 1.0),
        "no task.progress between 0 and 1 during {job}: {progress:?}"
    );
    let first_progress = events
        .iter()
        .position(|e| e.kind == EventKind::TaskProgress);
    let last_done = events.iter().rposition(|e| e.kind == EventKind::TaskDone);
    assert!(first_progress < last_done, "progress came after the render");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn povray_frames_and_tiles_equal_povray_run_directly() {
    let farm = Farm::with_workers(2);
    let dir = farm.dir.path().join("pov");
    copy_dir(&examples().join("povray/scene"), &dir.join("scene"));
    let animation = dir.join("animation.toml");
    std::fs::write(
        &animation,
        "renderer = \"povray\"\nscene = \"scene/scene.pov\"\n[image]\nwidth = 160\nheight = 120\n[frames]\nrange = \"1-8\"\nchunk = 3\n[settings]\nantialias = 0.3\nclock = [0, 1]\n",
    )
    .unwrap();
    let tiles = dir.join("tiles.toml");
    std::fs::write(
        &tiles,
        "renderer = \"povray\"\nscene = \"scene/scene.pov\"\n[image]\nwidth = 320\nheight = 240\ndepth = 16\n[frames]\nrange = \"3\"\n[tiles]\ngrid = [4, 4]\noverscan = 4\n[settings]\nantialias = 0.3\nclock = [0.25, 1]\n",
    )
    .unwrap();
    let big = dir.join("big.toml");
    std::fs::write(
        &big,
        "renderer = \"povray\"\nscene = \"scene/scene.pov\"\n[image]\nwidth = 960\nheight = 720\n[settings]\nantialias = 0.05\nantialias_depth = 4\n",
    )
    .unwrap();
    let jobs = [
        submit(&farm, &animation),
        submit(&farm, &tiles),
        submit(&farm, &big),
    ];
    for job in &jobs {
        farm.wait_done(job);
    }
    let [animation_job, tiles_job, big_job] = &jobs;

    // POV-Ray run directly on the same scene, the whole animation in one run.
    let scene = dir.join("scene");
    let direct = dir.join("direct");
    std::fs::create_dir_all(direct.join("tile")).unwrap();
    let povray = |out: &Path, args: &[&str]| {
        let mut command = Command::new("povray");
        command
            .current_dir(&scene)
            .arg("+Iscene.pov")
            .arg(format!("+O{}", out.display()))
            .args(["-D", "-P", "+Q9", "+A0.3", "+AM1", "+R3", "-J"])
            .args(args);
        run(&mut command);
    };
    povray(
        &direct.join("a.png"),
        &["+W160", "+H120", "+FN8", "+KFI1", "+KFF8", "+KI0", "+KF1"],
    );
    // The still, 16 bits: a job of one frame renders at the clock's start.
    povray(
        &direct.join("tile/t.png"),
        &["+W320", "+H240", "+FN16", "+K0.25"],
    );

    let fetched = dir.join("fetched");
    fetch(&farm, animation_job, &fetched.join("a"));
    for frame in 1..=8 {
        assert_same_pixels(
            &fetched.join(format!("a/frame_{frame:04}.png")),
            &direct.join(format!("a{frame}.png")),
        );
    }
    fetch(&farm, tiles_job, &fetched.join("t"));
    let still = std::fs::read_dir(direct.join("tile"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_same_pixels(&fetched.join("t/frame_0003.png"), &still);
    let depth = image::open(fetched.join("t/frame_0003.png"))
        .unwrap()
        .color();
    assert_eq!(
        depth,
        image::ColorType::Rgb16,
        "a 16-bit job stitches 16-bit tiles"
    );
    // The scene really rendered: its red sphere is in the picture.
    let red = pixels(&still)
        .pixels()
        .filter(|p| p[0] > 150 && p[1] < 90 && p[2] < 90)
        .count();
    assert!(red > 200, "the red sphere covers only {red} pixels");
    let events = events_of(&farm, tiles_job).await;
    let tasks = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskDone)
        .count();
    assert_eq!(tasks, 16, "a 4x4 grid is 16 tasks");
    assert_progress_during_render(&farm, big_job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blender_frames_tiles_and_view_layers_equal_blender_run_directly() {
    let farm = Farm::with_workers(2);
    let dir = farm.dir.path().join("blend");
    let scene = dir.join("scene/scene.blend");
    run(Command::new("blender")
        .args(["-b", "--factory-startup", "--python"])
        .arg(examples().join("blender/make_scene.py"))
        .arg("--")
        .arg(&scene));
    let animation = dir.join("animation.toml");
    std::fs::write(
        &animation,
        "renderer = \"blender\"\nscene = \"scene/scene.blend\"\n[image]\nwidth = 96\nheight = 54\n[frames]\nrange = \"1-24\"\nchunk = 12\n[settings]\nsamples = 16\nseed = 1\n",
    )
    .unwrap();
    let tiles = dir.join("tiles.toml");
    std::fs::write(
        &tiles,
        "renderer = \"blender\"\nscene = \"scene/scene.blend\"\n[image]\nwidth = 120\nheight = 72\n[frames]\nrange = \"12\"\n[tiles]\ngrid = [3, 3]\noverscan = 2\n[[layers]]\nname = \"main\"\n[[layers]]\nname = \"floor\"\n[settings]\nsamples = 16\nseed = 1\n",
    )
    .unwrap();
    let animation_job = submit(&farm, &animation);
    let tiles_job = submit(&farm, &tiles);
    farm.wait_done(&animation_job);
    farm.wait_done(&tiles_job);

    // Blender run directly, frame by frame, with the scene's own settings.
    let direct = dir.join("direct");
    let blender = |out: &str, python: &str, frames: &[&str]| {
        run(Command::new("blender")
            .args(["-b", "--factory-startup"])
            .arg(&scene)
            .args(["--python-expr", python, "-o"])
            .arg(direct.join(out))
            .args(["-F", "PNG"])
            .args(frames));
    };
    let size = |w: u32, h: u32, layer: &str| {
        format!(
            "import bpy\ns = bpy.context.scene\ns.render.resolution_x = {w}\ns.render.resolution_y = {h}\nfor v in s.view_layers:\n    v.use = v.name == {layer:?} or {layer:?} == ''\n"
        )
    };
    blender(
        "frame_####",
        &size(96, 54, ""),
        &["-s", "1", "-e", "24", "-a"],
    );
    blender("main_####", &size(120, 72, "main"), &["-f", "12"]);
    blender("floor_####", &size(120, 72, "floor"), &["-f", "12"]);

    let fetched = dir.join("fetched");
    fetch(&farm, &animation_job, &fetched.join("a"));
    for frame in 1..=24 {
        let name = format!("frame_{frame:04}.png");
        assert_same_pixels(&fetched.join("a").join(&name), &direct.join(&name));
    }
    fetch(&farm, &tiles_job, &fetched.join("t"));
    for layer in ["main", "floor"] {
        assert_same_pixels(
            &fetched.join(format!("t/{layer}/frame_0012.png")),
            &direct.join(format!("{layer}_0012.png")),
        );
    }
    let (main, floor) = (
        pixels(&fetched.join("t/main/frame_0012.png")),
        pixels(&fetched.join("t/floor/frame_0012.png")),
    );
    assert_ne!(main, floor, "the two view layers render different things");
    assert_progress_during_render(&farm, &animation_job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renderer_errors_are_the_failure_reason_and_fail_the_task_at_once() {
    let farm = Farm::with_workers(1);
    let dir = farm.dir.path().join("errors");
    copy_dir(&examples().join("povray/scene"), &dir.join("pov"));
    std::fs::write(
        dir.join("pov/broken.pov"),
        "#include \"colors.inc\"\n\nsphere { <0, 1, 0>, 1 pigment { color Rd } }\n",
    )
    .unwrap();
    let pov = dir.join("pov.toml");
    std::fs::write(
        &pov,
        "renderer = \"povray\"\nscene = \"pov/broken.pov\"\n[image]\nwidth = 32\nheight = 24\n",
    )
    .unwrap();
    run(Command::new("blender")
        .args(["-b", "--factory-startup", "--python"])
        .arg(examples().join("blender/make_scene.py"))
        .arg("--")
        .arg(dir.join("blend/scene.blend")));
    let blend = dir.join("blend.toml");
    std::fs::write(
        &blend,
        "renderer = \"blender\"\nscene = \"blend/scene.blend\"\n[image]\nwidth = 32\nheight = 18\n[settings]\naddons = [\"tessera_no_such_addon\"]\n",
    )
    .unwrap();
    for (file, reason) in [
        (&pov, "POV-Ray: broken.pov line 3:"),
        (&blend, "add-on 'tessera_no_such_addon'"),
    ] {
        let job = submit(&farm, file);
        let out = farm.cli(&["wait", &job]);
        assert!(!out.status.success(), "{job} should fail");
        let events = events_of(&farm, &job).await;
        let failed: Vec<&str> = events
            .iter()
            .filter(|e| e.kind == EventKind::TaskFailed)
            .filter_map(|e| e.message.as_deref())
            .collect();
        assert!(
            failed.len() == 1 && failed[0].contains(reason),
            "{job}: one task.failed saying {reason:?}: {failed:?}"
        );
        let started = events
            .iter()
            .filter(|e| e.kind == EventKind::TaskStarted)
            .count();
        assert_eq!(started, 1, "a scene error is not retried");
    }
}

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
    run(Command::new("blender")
        .args(["-b", "--factory-startup", "--python"])
        .arg(examples().join("blender/make_scene.py"))
        .arg("--")
        .arg(dir.join("blend/scene.blend")));
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
        "id = \"writer\"\nrenderer = \"command\"\nscene = \"scene/input.txt\"\n[frames]\nrange = \"1-3\"\n[settings]\ncommand = [\"sh\", \"-c\", {script:?}, \"{{scene}}\", \"{{output}}\", \"{{frame}}\"]\n"
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
            "id = \"cached-{n}\"\nrenderer = \"command\"\nscene = \"scene-{n}/input.txt\"\n[settings]\ncommand = [\"cp\", \"{{scene}}\", \"{{output}}\"]\n"
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
async fn renderers_are_offered_only_where_their_program_is_and_a_job_without_one_is_said_so() {
    let mut farm = Farm::with_workers(0);
    // Told to run POV-Ray with a program that is not there: the worker refuses to start.
    let out = farm
        .command("tessera-worker")
        .args(["--renderers", "povray", "--povray", "/nonexistent/povray"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/nonexistent/povray"), "{stderr}");

    // A worker offers the external renderers it finds, with their versions.
    farm.start_worker(0, &[]);
    let listed = crate::support::eventually(
        PATIENCE,
        Duration::from_millis(100),
        || "the worker never registered".to_string(),
        async || {
            let out = farm.cli(&["workers", "--json"]);
            let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            list.as_array()
                .filter(|l| l.len() == 1)
                .map(|l| l[0].clone())
        },
    )
    .await;
    assert_eq!(
        listed["versions"]["povray"]
            .as_str()
            .map(|v| v.starts_with("3.")),
        Some(true),
        "{listed}"
    );
    assert!(listed["versions"]["blender"].is_string(), "{listed}");

    // A farm whose only worker runs noop: a POV-Ray job waits, and says why within 5 s.
    let mut farm = Farm::with_workers(0);
    farm.start_worker(0, &["--renderers", "noop"]);
    let dir = farm.dir.path().join("jobs");
    copy_dir(&examples().join("povray/scene"), &dir.join("scene"));
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        "id = \"unserved\"\nrenderer = \"povray\"\nscene = \"scene/scene.pov\"\n",
    )
    .unwrap();
    let started = Instant::now();
    let mut waiting = farm
        .command("tessera")
        .args(["submit", "--wait", job.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = waiting.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("no live worker"))
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !said.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let in_time = said.is_finished();
    let _ = waiting.kill();
    let _ = waiting.wait();
    let line = said.join().unwrap();
    assert!(
        in_time,
        "submit --wait said nothing within 5 s (it said {line:?} after {:?})",
        started.elapsed()
    );
    let line = line.unwrap();
    assert!(line.contains("povray"), "{line}");
    assert_eq!(
        farm.status("unserved")["state"],
        "queued",
        "the job keeps waiting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_worker_without_a_gpu_renders_blender_on_the_cpu_into_multilayer_exr() {
    let mut farm = Farm::with_workers(0);
    farm.start_worker(0, &["--class", "gpu", "--renderers", "blender"]);
    let dir = farm.dir.path().join("gpu");
    run(Command::new("blender")
        .args(["-b", "--factory-startup", "--python"])
        .arg(examples().join("blender/make_scene.py"))
        .arg("--")
        .arg(dir.join("scene/scene.blend")));
    let file = dir.join("job.toml");
    std::fs::write(
        &file,
        "class = \"gpu\"\nrenderer = \"blender\"\nscene = \"scene/scene.blend\"\n[image]\nwidth = 32\nheight = 18\nformat = \"exr\"\n[[layers]]\nname = \"main\"\n[settings]\nsamples = 4\nmultilayer = true\n",
    )
    .unwrap();
    let job = submit(&farm, &file);
    farm.wait_done(&job);
    let fetched = dir.join("fetched");
    fetch(&farm, &job, &fetched);
    let exr = std::fs::read(fetched.join("main/frame_0001.exr")).unwrap();
    assert!(
        exr.starts_with(&[0x76, 0x2f, 0x31, 0x01]),
        "an OpenEXR file"
    );
    let text = String::from_utf8_lossy(&exr);
    for channel in ["main.Combined.R", "main.Depth.Z"] {
        assert!(text.contains(channel), "the multilayer EXR lacks {channel}");
    }
    let events = events_of(&farm, &job).await;
    let log_key = events
        .iter()
        .find(|e| e.kind == EventKind::TaskDone)
        .and_then(|e| e.log.clone())
        .expect("task.done names its log");
    let log = farm.deps().await.store.get(&log_key).await.unwrap();
    let log = String::from_utf8_lossy(&log);
    assert!(
        log.contains("no GPU device found; rendering on the CPU"),
        "the log says which device rendered: {log}"
    );
}
