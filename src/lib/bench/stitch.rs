//! Tile assembly: the last tile of a 4K frame stored to the stitched frame stored.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;

use super::{BenchFarm, Samples, Summary, ms, print_against, submit_json};
use crate::bus::protocol;

/// Tile assembly: a 3840×2160 frame in a 10×10 grid, `runs` times; the time from the last
/// tile's `task.done` (sent once its output is stored) to `job.done` (sent once the stitched
/// frame is stored), next to the time to encode that frame alone in the same run.
pub async fn stitch(runs: usize) -> anyhow::Result<Summary> {
    let farm = BenchFarm::start(2).await?;
    let (client, deps) = (&farm.client, &farm.deps);
    let mut last_tile_to_frame = Vec::new();
    let mut encode_only = Vec::new();
    for run in 0..runs {
        let id = format!("stitch-{run}");
        let mut events = client.subscribe(protocol::job_events_filter(&id)).await?;
        let body = format!(
            r#"{{"id": "{id}", "renderer": "builtin", "image": {{"width": 3840, "height": 2160}},
                "tiles": {{"grid": [10, 10]}}, "settings": {{"samples": 1, "bounces": 0}}}}"#
        );
        submit_json(&deps.js, body).await?;
        let mut last_tile = None;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(300), events.next())
                .await
                .context("the job did not end within 300 s")?
                .context("subscription ended")?;
            let at = Instant::now();
            let kind = msg.subject.as_str().rsplit_once(&format!("{id}."));
            match kind.map(|(_, k)| k) {
                Some("task.done") => last_tile = Some(at),
                Some("job.done") => {
                    let last = last_tile.context("job.done before any task.done")?;
                    last_tile_to_frame.push(at - last);
                    break;
                }
                Some("job.failed") | Some("job.rejected") => anyhow::bail!("job {id} failed"),
                _ => {}
            }
        }
        let job = crate::core::job::JobId::parse(&id).map_err(anyhow::Error::msg)?;
        let folder = crate::store::keys::unversioned_output_prefix(&job);
        let bytes = deps.store.get(&format!("{folder}frame_0001.png")).await?;
        let image = crate::core::raster::decode(&bytes).map_err(anyhow::Error::msg)?;
        let t0 = Instant::now();
        crate::core::raster::encode_image(&image, crate::core::job::ImageFormat::Png)
            .map_err(anyhow::Error::msg)?;
        encode_only.push(t0.elapsed());
    }
    println!("stitch: 3840x2160 frame in 10x10 tiles, PNG 8-bit (2 workers, builtin renderer)");
    let (alone, ours) = (Samples::new(encode_only), Samples::new(last_tile_to_frame));
    let times = print_against(
        ("encode the 4K PNG alone", &alone),
        ("last tile stored -> frame stored", &ours),
        "tessera / encode alone",
    );
    farm.stop().await;
    Ok(vec![format!(
        "(4) tile assembly, last of 100 tiles stored -> 4K frame stored: median {:.0} ms; encoding the PNG alone {:.0} ms; {times:.1}x",
        ms(ours.percentile(50.0)),
        ms(alone.percentile(50.0)),
    )])
}
