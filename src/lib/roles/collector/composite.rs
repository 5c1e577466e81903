//! A frame's composite (`[composite]`): once the frame of every layer it names is stored in
//! `output/` (stitched, for a tiled job), the layers are read back, composited in float
//! ([`core::composite`](crate::core::composite)) and stored beside them in each format the
//! job asks for. Written only if absent, so a redelivered event composites at most once
//! more and never overwrites.

use anyhow::Context as _;
use bytes::Bytes;

use crate::config::Deps;
use crate::core::composite::{self, Step};
use crate::core::job::{ImageFormat, Job};
use crate::core::outputs::{composite_name, output_name};
use crate::core::raster;
use crate::store::keys;

/// Composites `frame` of `job` if it has a composite, the composite is not stored yet in
/// every format, and every layer it names has the frame stored.
pub(super) async fn composite_frame(deps: &Deps, job: &Job, frame: u32) -> anyhow::Result<()> {
    let Some(spec) = &job.composite else {
        return Ok(());
    };
    let began = std::time::Instant::now();
    let mut missing: Vec<(ImageFormat, String)> = Vec::new();
    for &format in &spec.formats {
        let key = keys::output(job, &composite_name(spec, frame, format));
        if !deps.store.exists(&key).await? {
            missing.push((format, key));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let mut sources = Vec::with_capacity(spec.layers.len());
    for &(layer, _) in &spec.layers {
        let name = output_name(job, Some(layer), frame);
        let key = keys::output(job, &name);
        if !deps.store.exists(&key).await? {
            return Ok(()); // that layer's frame is still to come
        }
        sources.push((name, key));
    }
    let mut files = Vec::with_capacity(sources.len());
    for (name, key) in &sources {
        let bytes = deps.store.get(key).await;
        files.push((
            name.clone(),
            bytes.with_context(|| format!("reading {name}"))?,
        ));
    }
    let steps: Vec<Step> = spec.layers.iter().map(|&(_, step)| step).collect();
    let image = job.image;
    let formats: Vec<ImageFormat> = missing.iter().map(|&(format, _)| format).collect();
    let encoded = tokio::task::spawn_blocking(move || -> Result<Vec<Vec<u8>>, String> {
        let mut layers = Vec::with_capacity(files.len());
        for (name, bytes) in &files {
            let decoded = raster::decode_sized(bytes, image.width, image.height)
                .map_err(|e| format!("{name} cannot be composited: {e}"))?;
            layers.push(composite::to_linear(decoded, image.format));
        }
        let pairs: Vec<_> = layers.iter().zip(steps).collect();
        let out = composite::composite(&pairs).map_err(|e| e.to_string())?;
        formats
            .iter()
            .map(|&format| composite::encode(&out, format, image.depth).map_err(|e| e.to_string()))
            .collect()
    })
    .await?
    .map_err(|why| anyhow::anyhow!("compositing frame {frame}: {why}"))?;
    for ((_, key), bytes) in missing.iter().zip(encoded) {
        deps.store.put_if_absent(key, Bytes::from(bytes)).await?;
    }
    crate::metrics::METRICS.assembled("composite", began.elapsed());
    tracing::debug!(job = %job.id, frame, "composited");
    Ok(())
}
