//! The real renderers through the farm against the same renderer run directly: the
//! examples' POV-Ray animation (8 frames, chunks of 3) and Blender animation (24 frames,
//! chunks of 4), each rendered by one direct run of the program with every core, and by a
//! local farm of two one-slot workers (submit to `job.done`, outputs stored). The ratio is
//! what the farm costs, or saves, on one machine; the farm's gain is in adding machines.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;

use super::{BenchFarm, Samples, bench_worker, print_against, tempfile_dir};
use crate::bus::protocol;
use crate::core::job::RendererKind;
use crate::render::program;

/// One renderer's benchmark: the job, and the direct run it compares with.
struct Case {
    kind: RendererKind,
    /// The scene file (its folder is packaged).
    scene: PathBuf,
    /// The job, as JSON, without id and scene.
    job: &'static str,
    /// The direct run: program arguments, run in the scene's folder.
    direct: Vec<String>,
}

/// Runs each renderer found on this machine `runs` times both ways.
pub async fn programs(runs: usize) -> anyhow::Result<()> {
    let examples = Path::new("examples");
    anyhow::ensure!(
        examples.join("povray").is_dir(),
        "run this from the repository (it renders the examples in ./examples)"
    );
    let dir = tempfile_dir()?;
    let mut cases = Vec::new();
    if let Ok(povray) = program::find(RendererKind::Povray, None) {
        let out = dir.join("direct-povray");
        std::fs::create_dir_all(&out)?;
        cases.push((
            povray,
            Case {
                kind: RendererKind::Povray,
                scene: std::fs::canonicalize(examples.join("povray/scene/scene.pov"))?,
                job: r#""image": {"width": 320, "height": 240}, "frames": {"range": "1-8", "chunk": 3},
                        "settings": {"antialias": 0.3, "clock": [0, 1]}"#,
                direct: [
                    "+Iscene.pov", "+W320", "+H240", "+FN8", "-D", "-P", "+Q9", "+A0.3",
                    "+AM1", "+R3", "-J", "+KFI1", "+KFF8", "+KI0", "+KF1",
                ]
                .iter()
                .map(|s| s.to_string())
                .chain([format!("+O{}", out.join("f.png").display())])
                .collect(),
            },
        ));
    } else {
        println!("povray: not installed, skipped");
    }
    if let Ok(blender) = program::find(RendererKind::Blender, None) {
        let scene = dir.join("blender/scene.blend");
        let made = Command::new(&blender.path)
            .args(["-b", "--factory-startup", "--python"])
            .arg(examples.join("blender/make_scene.py"))
            .arg("--")
            .arg(&scene)
            .output()?;
        anyhow::ensure!(made.status.success(), "making the Blender scene failed");
        let out = dir.join("direct-blender");
        cases.push((
            blender,
            Case {
                kind: RendererKind::Blender,
                scene: scene.clone(),
                job: r#""image": {"width": 160, "height": 90}, "frames": {"range": "1-24", "chunk": 4},
                        "settings": {"samples": 16, "seed": 1}"#,
                direct: vec![
                    "-b".into(),
                    "--factory-startup".into(),
                    scene.display().to_string(),
                    "-o".into(),
                    format!("{}/frame_####", out.display()),
                    "-F".into(),
                    "PNG".into(),
                    "-s".into(),
                    "1".into(),
                    "-e".into(),
                    "24".into(),
                    "-a".into(),
                ],
            },
        ));
    } else {
        println!("blender: not installed, skipped");
    }
    for (found, case) in cases {
        let mut worker = bench_worker(dir.join(format!("cache-{}", case.kind)));
        worker.renderers = vec![case.kind];
        worker.programs.insert(case.kind, found.clone());
        let farm =
            BenchFarm::start_with(dir.join(format!("farm-{}", case.kind)), 2, worker).await?;
        let hex = crate::store::package::package(&farm.deps.store, &case.scene)
            .await?
            .hex;
        let (mut direct, mut farmed) = (Vec::new(), Vec::new());
        for run in 0..runs {
            let started = Instant::now();
            let status = Command::new(&found.path)
                .args(&case.direct)
                .current_dir(case.scene.parent().unwrap_or(Path::new(".")))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "{} run directly failed", case.kind);
            direct.push(started.elapsed());

            let id = format!("{}-{run}", case.kind);
            let mut events = farm
                .client
                .subscribe(protocol::job_events_filter(&id))
                .await?;
            let body = format!(
                r#"{{"id": "{id}", "renderer": "{}", "scene_manifest": "sha256:{hex}", {}}}"#,
                case.kind, case.job
            );
            let started = Instant::now();
            super::submit_json(&farm.deps.js, body).await?;
            loop {
                let msg = tokio::time::timeout(Duration::from_secs(600), events.next())
                    .await
                    .context("the job did not end within 600 s")?
                    .context("subscription ended")?;
                match msg
                    .subject
                    .as_str()
                    .rsplit_once(&format!("{id}."))
                    .map(|(_, k)| k)
                {
                    Some("job.done") => break,
                    Some("job.failed") | Some("job.rejected") => {
                        anyhow::bail!("job {id} failed; see {}", farm.dir.display())
                    }
                    _ => {}
                }
            }
            farmed.push(started.elapsed());
        }
        println!(
            "{} {}: the example animation, {runs} runs",
            case.kind, found.version
        );
        print_against(
            (
                "run directly, one process, every core",
                &Samples::new(direct),
            ),
            (
                "through the farm, 2 workers x 1 slot",
                &Samples::new(farmed),
            ),
            "farm / direct",
        );
        farm.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
