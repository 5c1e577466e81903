//! The real renderers through the farm: POV-Ray and Blender frames and tiles equal the
//! programs run directly, pixel for pixel; progress events during their renders; their
//! errors as failure reasons; renderers offered only where their program is. (Scene checks
//! and the cache: `scenes.rs`.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tessera::bus::protocol::EventKind;

use crate::support::{
    Farm, PATIENCE, copy_dir, events_of, examples, last_line, make_blender_scene, run,
};

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
    make_blender_scene(&scene);
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
    make_blender_scene(&dir.join("blend/scene.blend"));
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
    make_blender_scene(&dir.join("scene/scene.blend"));
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
