//! Failover in about a second: the collector watches the workers' leases, and when one
//! expires (its worker died, froze or was cut off) it hands that worker's deliveries back
//! at once — a negative acknowledgement on each one's reply subject — instead of leaving
//! them to the ack deadline. One collector per expiry does it (a claim in the bucket), and
//! a `task.retry` event says why. A worker that was only cut off and finishes late changes
//! nothing: its outputs are attempt-scoped and the first `task.done` wins.

use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::bus::protocol::WorkerInfo;
use crate::bus::registry::{self, Lease};
use crate::config::Deps;

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
                        })) => {
                            if let Err(e) = expired(&deps, &worker, &info, revision).await {
                                tracing::error!(
                                    worker,
                                    error = format!("{e:#}"),
                                    "handing back the tasks of an expired lease"
                                );
                            }
                        }
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
