//! Published versions on a real farm: jobs that name one output get consecutive versions
//! however they race, their files land straight in the version's folder and can never be
//! overwritten, `tessera approve`, `tessera versions` and `--approved` work, and a resubmitted
//! version renders the same frames from its stored scene after the artist's folder changed.

use std::collections::BTreeSet;

use tessera::bus::protocol::EventKind;
use tessera::core::job::from_toml;
use tessera::core::version::{Listed, Standing, Trace, VersionRecord};
use tessera::lifecycle::versions;
use tessera::store::{StoreError, keys};

use crate::support::{Farm, command_farm, wait_event};

/// A job of `frames` frames publishing `output` that copies the scene's `flat.png`.
fn copying_job(id: &str, output: &str, frames: &str) -> String {
    format!(
        r#"id = "{id}"
output = "{output}"
renderer = "command"
scene = "shot/flat.png"
[image]
width = 32
height = 18
[frames]
range = "{frames}"
[outputs]
movie = false
animation = false
[settings]
command = ["cp", "{{scene}}", "{{output}}"]
"#
    )
}

fn paint(farm: &Farm, colour: [u8; 3]) {
    let scene = farm.dir.path().join("jobs/shot");
    std::fs::create_dir_all(&scene).unwrap();
    image::RgbImage::from_pixel(32, 18, image::Rgb(colour))
        .save(scene.join("flat.png"))
        .unwrap();
}

fn listing(farm: &Farm, name: &str, extra: &[&str]) -> Vec<Listed> {
    let mut args = vec!["versions", name, "--json"];
    args.extend(extra);
    let out = farm.cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_one_output_are_consecutive_immutable_versions_approved_later() {
    let (farm, deps) = command_farm(1, &[]).await;
    paint(&farm, [10, 200, 30]);
    let name = "shot010/lighting";
    // Two submissions at the same moment.
    let files =
        ["a", "b"].map(|id| farm.job_file(&format!("{id}.toml"), &copying_job(id, name, "1-3")));
    std::thread::scope(|s| {
        let submits: Vec<_> = files
            .iter()
            .map(|f| s.spawn(|| farm.cli(&["submit", f.to_str().unwrap()])))
            .collect();
        for submit in submits {
            let out = submit.join().unwrap();
            assert!(out.status.success(), "{}", said(&out));
        }
    });
    // Published as soon as accepted, before a frame is in.
    wait_event(&farm, &deps.js, "a", EventKind::JobAccepted).await;
    wait_event(&farm, &deps.js, "b", EventKind::JobAccepted).await;
    let early = listing(&farm, name, &[]);
    assert_eq!(early.iter().map(|l| l.version).collect::<Vec<_>>(), [1, 2]);
    let jobs: BTreeSet<String> = early.iter().map(|l| l.job.to_string()).collect();
    assert_eq!(jobs, BTreeSet::from(["a".to_string(), "b".to_string()]));

    // An approval waits for the version to be complete; then it is kept.
    let a_label = early
        .iter()
        .find(|l| l.job.as_str() == "a")
        .unwrap()
        .label
        .clone();
    wait_event(&farm, &deps.js, "a", EventKind::JobDone).await;
    wait_event(&farm, &deps.js, "b", EventKind::JobDone).await;
    let done = listing(&farm, name, &[]);
    assert!(
        done.iter().all(|l| l.standing == Standing::Complete),
        "{done:?}"
    );
    let a = done.iter().find(|l| l.job.as_str() == "a").unwrap();
    assert_eq!(a.label, a_label);
    assert!(a.location.starts_with("file:///"), "{}", a.location);
    assert!(a.location.ends_with(&format!("versions/{name}/{a_label}/")));

    // The files are in the version's folder, with what made them and who rendered them.
    let folder = keys::version_prefix(name, a.version);
    let frame = format!("{folder}frame_0002.png");
    let first = deps.store.get(&frame).await.unwrap();
    assert!(
        deps.store
            .exists(&format!("{folder}contact_sheet.png"))
            .await
            .unwrap()
    );
    let record: VersionRecord = serde_json::from_slice(
        &deps
            .store
            .get(&keys::version_record(name, a.version))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record.spec.id.as_deref(), Some("a"));
    let manifest = record
        .spec
        .scene_manifest
        .clone()
        .expect("the scene's manifest");
    assert!(manifest.starts_with("sha256:"));
    let scene = record.scene.expect("the manifest itself");
    assert!(scene["files"]["flat.png"].is_string(), "{scene}");
    let trace: Trace = serde_json::from_slice(
        &deps
            .store
            .get(&keys::version_trace(name, a.version))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(trace.tasks.len(), 3);
    assert!(
        trace.tasks.iter().all(|t| t.worker == "w0"),
        "{:?}",
        trace.tasks
    );
    assert_eq!(trace.renderer_versions.get("command"), Some(&3));
    assert!(
        trace.files.contains(&"frame_0003.png".to_string()),
        "{:?}",
        trace.files
    );

    // Nothing overwrites or removes a published file: not the store, not deleting the job.
    let refused = deps
        .store
        .put(&frame, bytes::Bytes::from_static(b"x"))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Published(_))),
        "{refused:?}"
    );
    assert!(
        !deps
            .store
            .put_if_absent(&frame, bytes::Bytes::from_static(b"x"))
            .await
            .unwrap()
    );
    let out = farm.cli(&["delete", "a"]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(deps.store.get(&frame).await.unwrap(), first);

    // Approvals: by name and version, by job; --approved resolves the latest.
    let out = farm.cli(&["versions", name, "--approved"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let out = farm.cli(&["approve", name, "v001", "--by", "ana", "--note", "good"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("shot010/lighting v001 approved by ana"),
        "{}",
        said(&out)
    );
    let out = farm.cli(&["versions", name, "--approved"]);
    assert!(out.status.success(), "{}", said(&out));
    let approved = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        approved.ends_with("versions/shot010/lighting/v001/"),
        "{approved}"
    );
    let b = done.iter().find(|l| l.job.as_str() == "b").unwrap();
    let out = farm.cli(&["approve", "b", "--by", "ben"]);
    assert!(out.status.success(), "{}", said(&out));
    let out = farm.cli(&["versions", name, "--approved"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .ends_with(&format!("{}/", b.label))
    );
    let out = farm.cli(&["approve", name, "v001", "--by", "cy"]);
    assert!(
        said(&out).contains("approved already, by ana"),
        "{}",
        said(&out)
    );
    let listed = listing(&farm, name, &[]);
    let v1 = &listed[0];
    assert_eq!(v1.approval.as_ref().map(|a| a.by.as_str()), Some("ana"));
    assert_eq!(
        v1.approval.as_ref().and_then(|a| a.note.as_deref()),
        Some("good")
    );
    let out = farm.cli(&["approve", name, "v009"]);
    assert!(!out.status.success());
    assert!(said(&out).contains("has no version v009"), "{}", said(&out));

    // A version is approved only once complete: not while rendering, not once canceled.
    let slow = "id = \"slow\"\noutput = \"shot030/fx\"\nrenderer = \"command\"\n[settings]\ncommand = [\"sleep\", \"60\"]\ncheck_outputs = false\n";
    farm.submit("slow", slow);
    wait_event(&farm, &deps.js, "slow", EventKind::TaskStarted).await;
    let out = farm.cli(&["approve", "slow"]);
    assert!(!out.status.success());
    assert!(
        said(&out).contains("shot030/fx v001 is still rendering (job slow)"),
        "{}",
        said(&out)
    );
    let out = farm.cli(&["cancel", "slow"]);
    assert!(out.status.success(), "{}", said(&out));
    let out = farm.cli(&["approve", "shot030/fx", "v001"]);
    assert!(said(&out).contains("is incomplete"), "{}", said(&out));
    assert_eq!(
        listing(&farm, "shot030/fx", &[])[0].standing,
        Standing::Incomplete
    );

    // A third job comes after both; racing allocations never share a number.
    let c = farm.submit("c", &copying_job("c", name, "1"));
    wait_event(&farm, &deps.js, &c, EventKind::JobAccepted).await;
    assert_eq!(listing(&farm, name, &[]).last().map(|l| l.version), Some(3));
    let mut racing = tokio::task::JoinSet::new();
    for i in 0..8 {
        let deps = deps.clone();
        racing.spawn(async move {
            let mut job = from_toml(&format!("id = \"race{i}\"\nrenderer = \"noop\"\n"))
                .unwrap()
                .validate()
                .unwrap();
            job.incarnation = format!("inc{i}");
            versions::allocate(&deps, "race/shot", &job).await.unwrap()
        });
    }
    let numbers: BTreeSet<u32> = racing.join_all().await.into_iter().collect();
    assert_eq!(numbers, (1..=8).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubmitted_version_renders_its_stored_scene_after_the_folder_changed() {
    let (farm, deps) = command_farm(1, &[]).await;
    paint(&farm, [250, 120, 0]);
    let name = "shot020/comp";
    farm.submit("first", &copying_job("first", name, "1-2"));
    farm.wait_done("first");
    // The artist repaints the scene.
    paint(&farm, [0, 0, 255]);
    let out = farm.cli(&["resubmit", name, "v001", "--id", "again", "--wait"]);
    assert!(out.status.success(), "{}\n{}", said(&out), farm.logs());
    let fresh = farm.submit("fresh", &copying_job("fresh", name, "1-2"));
    farm.wait_done(&fresh);
    let listed = listing(&farm, name, &[]);
    let by_job = |job: &str| {
        listed
            .iter()
            .find(|l| l.job.as_str() == job)
            .unwrap()
            .version
    };
    assert_eq!(
        (by_job("first"), by_job("again"), by_job("fresh")),
        (1, 2, 3)
    );
    let frame = async |version: u32| {
        let key = format!("{}frame_0002.png", keys::version_prefix(name, version));
        let bytes = deps.store.get(&key).await.unwrap();
        image::load_from_memory(&bytes)
            .unwrap()
            .to_rgb8()
            .get_pixel(5, 5)
            .0
    };
    assert_eq!(frame(1).await, [250, 120, 0]);
    assert_eq!(
        frame(2).await,
        [250, 120, 0],
        "the stored scene, not the folder"
    );
    assert_eq!(frame(3).await, [0, 0, 255], "the folder did change");
    let out = farm.cli(&["resubmit", name, "v007"]);
    assert!(!out.status.success());
    assert!(said(&out).contains("has no version v007"), "{}", said(&out));
}
