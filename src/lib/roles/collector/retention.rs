//! Retention: a farm started with `--keep-jobs` deletes each job that ended longer ago
//! than that (objects, events, records; published versions stay), so that a farm running
//! for months holds only its recent jobs. Several collectors may sweep at once: deleting
//! is idempotent.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::protocol;
use crate::config::Deps;
use crate::lifecycle;

/// How often the records are swept, at most.
const SWEEP: Duration = Duration::from_secs(60);

/// Deletes jobs that ended more than `keep` ago, sweeping until `shutdown`.
pub(super) async fn run(deps: Deps, keep: Duration, shutdown: CancellationToken) {
    let every = (keep / 4).clamp(Duration::from_secs(1), SWEEP);
    loop {
        match sweep(&deps, keep).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "retention deleted finished jobs"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "retention sweep"),
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
