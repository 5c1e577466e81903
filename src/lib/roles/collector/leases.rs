//! Failover in about a second: the collector watches the workers' leases, and when one
//! expires (its worker died, froze or was cut off) it hands that worker's deliveries back
//! at once — a negative acknowledgement on each one's reply subject — instead of leaving
//! them to the ack deadline. One collector per expiry does it (a claim in the bucket), and
//! a `task.retry` event says why. A worker that was only cut off and finishes late changes
//! nothing: its outputs are attempt-scoped and the first `task.done` wins.
//!
//! An expiry that comes late — long after the lease's last renewal, because the bucket
//! had no leader for a while (a server of a cluster died, or the one server restarted)
//! and every lease that fell due meanwhile ran out at once — is checked first: a worker
//! that writes its lease again within [`GRACE`] is alive, and keeps its tasks. Otherwise a
//! cluster's failover would hand back every running task at once and spend an attempt of
//! each.

use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::bus::protocol::{LEASE_TTL, WorkerInfo};
use crate::bus::registry::{self, Lease};
use crate::config::Deps;

/// An expiry this long after the last renewal came late (see the module's notes).
const LATE: Duration = Duration::from_millis(LEASE_TTL.as_millis() as u64 + 1500);

/// How long a worker whose lease ran out late has to write it again.
const GRACE: Duration = Duration::from_secs(5);

/// Watches the leases until `shutdown`, watching again after a lost connection.
pub(super) async fn watch(deps: Deps, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        match registry::watch(&deps.js).await {
            Ok(leases) => {
                tokio::pin!(leases);
                loop {
                    let lease = tokio::select! {
                        () = shutdown.cancelled() => return,
                        lease = leases.next() => lease,
                    };
                    match lease {
                        Some(Ok(Lease::Expired {
                            worker,
                            last: Some(info),
                            revision,
                            silent,
                        })) if silent.is_some_and(|s| s > LATE) => {
                            // Checked apart, so that the expiries that come together
                            // wait out their grace together.
                            let deps = deps.clone();
                            tokio::spawn(async move {
                                if !alive_after_late_expiry(&deps, &worker, revision).await {
                                    handed_back(&deps, &worker, &info, revision).await;
                                }
                            });
                        }
                        Some(Ok(Lease::Expired {
                            worker,
                            last: Some(info),
                            revision,
                            ..
                        })) => handed_back(&deps, &worker, &info, revision).await,
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = format!("{e:#}"), "watching the leases");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(e) => tracing::warn!(error = format!("{e:#}"), "watching the leases"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Whether `worker`, whose lease ran out late, writes it again within [`GRACE`].
async fn alive_after_late_expiry(deps: &Deps, worker: &str, revision: u64) -> bool {
    let deadline = tokio::time::Instant::now() + GRACE;
    let Ok(leases) = crate::bus::streams::workers_bucket(&deps.js).await else {
        return false;
    };
    while tokio::time::Instant::now() < deadline {
        if registry::renewed_since(&leases, worker, revision)
            .await
            .unwrap_or(false)
        {
            tracing::info!(
                worker,
                "a lease that ran out late was renewed: its worker is alive and keeps its tasks"
            );
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// [`expired`], its failure logged.
async fn handed_back(deps: &Deps, worker: &str, info: &WorkerInfo, revision: u64) {
    if let Err(e) = expired(deps, worker, info, revision).await {
        tracing::error!(
            worker,
            error = format!("{e:#}"),
            "handing back the tasks of an expired lease"
        );
    }
}

/// Hands back what `worker` held when its lease ran out, unless another collector does.
async fn expired(
    deps: &Deps,
    worker: &str,
    info: &WorkerInfo,
    revision: u64,
) -> anyhow::Result<()> {
    if info.deliveries.is_empty() || !registry::claim_expiry(&deps.js, worker, revision).await? {
        return Ok(());
    }
    registry::hand_back(
        &deps.client,
        &deps.js,
        worker,
        &info.deliveries,
        |delivery| {
            format!(
                "worker {worker} stopped renewing its lease; attempt {} handed back",
                delivery.attempt
            )
        },
    )
    .await?;
    tracing::warn!(
        worker,
        tasks = info.deliveries.len(),
        "a worker's lease expired; its tasks were handed back"
    );
    Ok(())
}
