//! Tiled jobs through the farm: stitched frames are bit-identical to the frame rendered
//! whole (crop, with and without overscan, even and uneven sizes), feathered frames are
//! within 50 dB PSNR of it, animated tiled jobs assemble every frame, and a preview is kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32};

use tessera::core::job::{ImageFormat, JobId};
use tessera::core::raster;
use tessera::core::tiles::Rect;
use tessera::render::builtin::{Pass, RenderJob, Scene};
use tessera::store::keys;

use crate::support::Farm;

/// The builtin's default scene rendered whole in this process, encoded as the farm would.
fn untiled(width: u32, height: u32, frame: u32, samples: u32, bounces: u32) -> image::RgbImage {
    let job = RenderJob {
        scene: Arc::new(Scene::default_scene()),
        frame,
        width,
        height,
        region: Rect::full(width, height),
        samples,
        bounces,
        pass: Pass::Beauty,
        format: ImageFormat::Png,
    };
    let raster = job
        .render(2, &AtomicBool::new(false), &AtomicU32::new(0))
        .unwrap();
    let png = raster::encode(&raster, ImageFormat::Png, 8).unwrap();
    raster::decode(&png).unwrap().to_rgb8()
}

fn job_toml(
    id: &str,
    width: u32,
    height: u32,
    frames: &str,
    tiles: &str,
    samples: u32,
    bounces: u32,
) -> String {
    format!(
        "id = \"{id}\"\nrenderer = \"builtin\"\n[image]\nwidth = {width}\nheight = {height}\n[frames]\nrange = \"{frames}\"\n[tiles]\n{tiles}\n[settings]\nsamples = {samples}\nbounces = {bounces}\n"
    )
}

/// Waits for the job with the CLI and returns the stitched frame.
async fn stitched(farm: &Farm, id: &str, frame: u32) -> image::RgbImage {
    farm.wait_done(id);
    let deps = farm.deps().await;
    let job = JobId::parse(id).unwrap();
    let bytes = deps
        .store
        .get(&keys::unversioned_output(
            &job,
            &format!("frame_{frame:04}.png"),
        ))
        .await
        .unwrap();
    raster::decode(&bytes).unwrap().to_rgb8()
}

fn psnr(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    let se: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let mse = se / a.as_raw().len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4k_frame_in_100_tiles_is_bit_identical_to_the_untiled_render() {
    let farm = Farm::with_workers(2);
    let plain = farm.submit(
        "plain",
        &job_toml("uhd-plain", 3840, 2160, "1", "grid = [10, 10]", 1, 1),
    );
    let overscan = farm.submit(
        "overscan",
        &job_toml(
            "uhd-overscan",
            3840,
            2160,
            "1",
            "grid = [10, 10]\noverscan = 16\nblend = \"crop\"",
            1,
            1,
        ),
    );
    let reference = untiled(3840, 2160, 1, 1, 1);
    for id in [plain, overscan] {
        let frame = stitched(&farm, &id, 1).await;
        assert_eq!(frame.dimensions(), (3840, 2160));
        assert!(
            frame == reference,
            "{id}: the stitched frame differs from the untiled render"
        );
        let status = farm.status(&id);
        assert_eq!(status["tasks"]["done"], 100);
    }
    // The preview of the frame is in the store, small.
    let deps = farm.deps().await;
    let preview = deps
        .store
        .get(&keys::preview(
            &JobId::parse("uhd-plain").unwrap(),
            "frame_0001",
        ))
        .await
        .unwrap();
    let preview = raster::decode(&preview).unwrap();
    assert_eq!((preview.width(), preview.height()), (960, 540));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uneven_tiles_are_exact_and_feathering_is_seamless() {
    let farm = Farm::with_workers(2);
    let uneven = farm.submit(
        "uneven",
        &job_toml(
            "uneven",
            1001,
            777,
            "1",
            "grid = [7, 5]\noverscan = 5",
            2,
            2,
        ),
    );
    let by_size = farm.submit(
        "by-size",
        &job_toml("by-size", 1001, 777, "1", "size = [128, 100]", 2, 2),
    );
    let feather = farm.submit(
        "feather",
        &job_toml(
            "feather",
            1001,
            777,
            "1",
            "grid = [7, 5]\noverscan = 8\nblend = \"feather\"",
            2,
            2,
        ),
    );
    let reference = untiled(1001, 777, 1, 2, 2);
    for id in [uneven, by_size] {
        let frame = stitched(&farm, &id, 1).await;
        assert!(
            frame == reference,
            "{id}: the stitched frame differs from the untiled render"
        );
    }
    let frame = stitched(&farm, &feather, 1).await;
    let db = psnr(&frame, &reference);
    assert!(
        db >= 50.0,
        "feathered stitch: PSNR {db:.1} dB against the untiled render"
    );
    assert_eq!(farm.status(&feather)["tasks"]["done"], 35);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_animated_tiled_job_assembles_every_frame() {
    let farm = Farm::with_workers(2);
    let id = farm.submit(
        "animated",
        &job_toml(
            "animated",
            200,
            120,
            "1-6",
            "grid = [3, 2]\noverscan = 4",
            2,
            2,
        ),
    );
    let mut frames = Vec::new();
    for f in 1..=6 {
        let frame = stitched(&farm, &id, f).await;
        assert!(
            frame == untiled(200, 120, f, 2, 2),
            "frame {f} differs from its untiled render"
        );
        frames.push(frame);
    }
    frames.dedup();
    assert_eq!(frames.len(), 6, "every frame differs");
    let status = farm.status(&id);
    assert_eq!(status["tasks"]["total"], 36);
    let outputs = status["outputs"].as_array().unwrap();
    let frames = outputs
        .iter()
        .filter(|o| o.as_str().unwrap().contains("/frame_"));
    assert_eq!(frames.count(), 6, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiled_layers_in_float_exr_are_exact_per_pass() {
    let farm = Farm::with_workers(2);
    let id = farm.submit(
        "layers",
        "id = \"tiled-passes\"\nrenderer = \"builtin\"\n[image]\nwidth = 96\nheight = 64\nformat = \"exr\"\n[tiles]\ngrid = [3, 2]\noverscan = 3\n[[layers]]\nname = \"beauty\"\n[[layers]]\nname = \"depth\"\n[[layers]]\nname = \"normal\"\nafter = [\"beauty\"]\n[settings]\nsamples = 2\nbounces = 2\n",
    );
    farm.wait_done(&id);
    let deps = farm.deps().await;
    let job = JobId::parse(&id).unwrap();
    for pass in [Pass::Beauty, Pass::Depth, Pass::Normal] {
        let bytes = deps
            .store
            .get(&keys::unversioned_output(
                &job,
                &format!("{}/frame_0001.exr", pass.name()),
            ))
            .await
            .unwrap();
        let stitched = raster::decode(&bytes).unwrap().to_rgb32f();
        let whole = RenderJob {
            scene: Arc::new(Scene::default_scene()),
            frame: 1,
            width: 96,
            height: 64,
            region: Rect::full(96, 64),
            samples: 2,
            bounces: 2,
            pass,
            format: ImageFormat::Exr,
        }
        .render(1, &AtomicBool::new(false), &AtomicU32::new(0))
        .unwrap();
        let flat: Vec<f32> = whole.pixels.iter().flatten().copied().collect();
        assert!(
            stitched.as_raw() == &flat,
            "{pass:?} differs from the untiled render"
        );
    }
    assert_eq!(farm.status(&id)["tasks"]["done"], 18);
}

/// Raw attempt outputs are removed once their frame is stored: tiles once stitched, and an
/// untiled frame is moved, not kept twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_are_removed_once_their_frame_is_stored() {
    let farm = Farm::with_workers(2);
    let deps = farm.deps().await;
    let tiled = farm.submit(
        "parts-tiled",
        "id = \"parts-tiled\"\n[image]\nwidth = 64\nheight = 48\n[frames]\nrange = \"1-2\"\n[tiles]\ngrid = [2, 2]\n[settings]\nsamples = 1\n",
    );
    let whole = farm.submit(
        "parts-whole",
        "id = \"parts-whole\"\n[image]\nwidth = 32\nheight = 18\n[frames]\nrange = \"1-3\"\n[settings]\nsamples = 1\n",
    );
    for (job, frames) in [(&tiled, 2), (&whole, 3)] {
        farm.wait_done(job);
        let id = JobId::parse(job).unwrap();
        let mut outputs = deps
            .store
            .list(&keys::unversioned_output_prefix(&id))
            .await
            .unwrap();
        outputs.retain(|key| key.contains("/frame_"));
        assert_eq!(outputs.len(), frames, "{job}: {outputs:?}");
        let parts = deps.store.list(&keys::parts_prefix(&id)).await.unwrap();
        assert!(parts.is_empty(), "{job} keeps raw outputs: {parts:?}");
    }
    // A task.done delivered again after its frame was assembled (its part is gone) changes
    // nothing and announces no failure, even on the last attempt the job allows.
    let events = crate::support::events_of(&farm, &tiled).await;
    let mut again = events
        .iter()
        .find(|e| e.kind == tessera::bus::protocol::EventKind::TaskDone)
        .unwrap()
        .clone();
    again.attempt = Some(3);
    tessera::bus::publish::event(&deps.js, &again)
        .await
        .unwrap();
    let marker = farm.submit("parts-after", "id = \"parts-after\"\nrenderer = \"noop\"\n");
    farm.wait_done(&marker);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let kinds: Vec<_> = crate::support::events_of(&farm, &tiled)
        .await
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        !kinds.contains(&tessera::bus::protocol::EventKind::TaskFailed)
            && !kinds.contains(&tessera::bus::protocol::EventKind::TaskRetry),
        "a replayed task.done of an assembled frame: {kinds:?}"
    );
    assert_eq!(farm.status(&tiled)["state"], "done");

    // A job that asks to keep its parts keeps every tile after stitching.
    let kept = farm.submit(
        "parts-kept",
        "id = \"parts-kept\"\nkeep_parts = true\n[image]\nwidth = 64\nheight = 48\n[tiles]\ngrid = [2, 2]\n[settings]\nsamples = 1\n",
    );
    farm.wait_done(&kept);
    let id = JobId::parse(&kept).unwrap();
    let parts = deps.store.list(&keys::parts_prefix(&id)).await.unwrap();
    assert_eq!(parts.len(), 4, "{parts:?}");
    assert_eq!(
        deps.store
            .list(&keys::unversioned_output_prefix(&id))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A tile's `task.done` that comes back after its frame was stored and its part removed
/// (the end check after it failed: the store stopped answering, a stream was electing a
/// leader, the collector died) still ends the job: the steps after it run again without
/// the part. Before, the missing part settled the event, and such a job never ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiles_event_back_after_its_frame_was_stored_still_ends_the_job() {
    use tessera::bus::protocol::EventKind;
    let farm = Farm::with_workers(1);
    let deps = farm.deps().await;
    let job = farm.submit(
        "back-after",
        "id = \"back-after\"\n[image]\nwidth = 64\nheight = 48\n[tiles]\ngrid = [2, 2]\n[settings]\nsamples = 1\n",
    );
    farm.wait_done(&job);
    let id = JobId::parse(&job).unwrap();
    assert!(
        deps.store
            .list(&keys::parts_prefix(&id))
            .await
            .unwrap()
            .is_empty()
    );
    // Where a collector that died before its end check left the job: every tile done, the
    // frame stored, its parts removed, the job still running.
    deps.ledger
        .update_job(&id, |r| {
            r.state = tessera::core::state::JobState::Running;
            r.finished_ms = None;
            true
        })
        .await
        .unwrap();
    assert_eq!(farm.status(&job)["state"], "running");
    let events = crate::support::events_of(&farm, &job).await;
    let last = events
        .iter()
        .rfind(|e| e.kind == EventKind::TaskDone)
        .unwrap()
        .clone();
    tessera::bus::publish::event(&deps.js, &last).await.unwrap();
    farm.wait_done(&job);
    let kinds: Vec<_> = crate::support::events_of(&farm, &job)
        .await
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == EventKind::JobDone).count(),
        2,
        "announced done again: {kinds:?}"
    );
    assert!(!kinds.contains(&EventKind::TaskRetry), "{kinds:?}");
}
