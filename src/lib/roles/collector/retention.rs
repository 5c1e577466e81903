//! Retention: a farm started with `--keep-jobs` deletes each job that ended longer ago
//! than that (objects, events, records; published versions stay), so that a farm running
//! for months holds only its recent jobs. Several collectors may sweep at once: deleting
//! is idempotent.
//!
//! Scenes go the same way, less often: a manifest that no job record names and that no
//! submission has written for as long as jobs are kept, then each blob that no manifest
//! lists any more and is as old. A scene is written before its job is recorded, so a
//! submission in the few milliseconds between the two could lose a scene unused for the
//! whole retention period; its job then fails with the missing scene named, never renders
//! other bytes.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::protocol;
use crate::config::Deps;
use crate::lifecycle;
use crate::store::package::Manifest;
use crate::store::{StoreError, keys};

/// How often the records are swept, at most.
const SWEEP: Duration = Duration::from_secs(60);

/// Scenes are swept once every this many sweeps of the records.
const SCENE_SWEEP_EVERY: u32 = 10;

/// Deletes jobs that ended more than `keep` ago, sweeping until `shutdown`.
pub(super) async fn run(deps: Deps, keep: Duration, shutdown: CancellationToken) {
    let every = (keep / 4).clamp(Duration::from_secs(1), SWEEP);
    for round in 0u32.. {
        match sweep(&deps, keep).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "retention deleted finished jobs"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "retention sweep"),
        }
        if round % SCENE_SWEEP_EVERY == 0 {
            match sweep_scenes(&deps, keep).await {
                Ok((0, 0)) => {}
                Ok((manifests, blobs)) => {
                    tracing::info!(manifests, blobs, "retention deleted unused scenes")
                }
                Err(e) => tracing::warn!(error = format!("{e:#}"), "retention sweep of scenes"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One pass over the job records; returns how many jobs it deleted.
async fn sweep(deps: &Deps, keep: Duration) -> anyhow::Result<usize> {
    let now = protocol::now_ms();
    let keep_ms = keep.as_millis() as u64;
    let mut expired = Vec::new();
    for id in deps.ledger.jobs().await? {
        let Some((record, _)) = deps.ledger.job(&id).await? else {
            continue;
        };
        if record.state.is_terminal()
            && record
                .finished_ms
                .is_some_and(|t| now.saturating_sub(t) > keep_ms)
        {
            expired.push(id);
        }
    }
    for id in &expired {
        lifecycle::delete_job(deps, id).await?;
    }
    Ok(expired.len())
}

/// Deletes the manifests that no job record names and the blobs that no manifest lists,
/// each only once unwritten for `keep`; returns how many of each it deleted.
async fn sweep_scenes(deps: &Deps, keep: Duration) -> anyhow::Result<(usize, usize)> {
    let now = std::time::SystemTime::now();
    let old =
        |written: std::time::SystemTime| now.duration_since(written).is_ok_and(|age| age > keep);
    // Listed in this order so that whatever a submission writes meanwhile counts as used:
    // blobs, then the manifests that list them, then the jobs that name those.
    let blobs = deps.store.list_dated(keys::BLOBS).await?;
    let manifests = deps.store.list_dated(keys::MANIFESTS).await?;
    let mut named = HashSet::new();
    for id in deps.ledger.jobs().await? {
        if let Some((record, _)) = deps.ledger.job(&id).await?
            && let Some(reference) = &record.spec.scene_manifest
        {
            named.insert(reference.trim_start_matches("sha256:").to_string());
        }
    }
    let mut listed = HashSet::new();
    let mut gone = 0;
    for (key, written) in &manifests {
        let Some(hex) = keys::digest_of(key) else {
            continue;
        };
        if !named.contains(hex) && old(*written) {
            deps.store.delete(key).await?;
            gone += 1;
            continue;
        }
        match deps.store.get(key).await.map(|b| Manifest::parse(&b)) {
            Ok(Ok(manifest)) => listed.extend(manifest.files.into_values()),
            // An unreadable manifest keeps no blob; a vanished one (another sweep) neither.
            Ok(Err(e)) => tracing::warn!(key, error = %e, "retention: unreadable scene manifest"),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut blobs_gone = 0;
    for (key, written) in &blobs {
        if keys::digest_of(key).is_some_and(|hex| !listed.contains(hex)) && old(*written) {
            deps.store.delete(key).await?;
            blobs_gone += 1;
        }
    }
    Ok((gone, blobs_gone))
}
