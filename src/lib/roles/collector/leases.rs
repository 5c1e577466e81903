//! Failover in about a second: the collector watches the workers' leases, and when one
//! expires (its worker died, froze or was cut off) it hands that worker's deliveries back
//! at once — a negative acknowledgement on each one's reply subject — instead of leaving
//! them to the ack deadline. One collector per expiry does it (a claim in the bucket), and
//! a `task.retry` event says why. A worker that was only cut off and finishes late changes
//! nothing: its outputs are attempt-scoped and the first `task.done` wins.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::bus::protocol::{self, Event, EventKind, WorkerInfo};
use crate::bus::registry::{self, Lease};
use crate::bus::{publish, streams};
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
    let mut queues = BTreeSet::new();
    for delivery in &info.deliveries {
        if !protocol::is_task_ack_subject(&delivery.reply, streams::TASKS_STREAM) {
            tracing::warn!(
                worker,
                reply = delivery.reply,
                "a lease lists a delivery that is not a task's; ignoring it"
            );
            continue;
        }
        publish::nak_delivery(&deps.client, &delivery.reply).await?;
        let mut event = Event::new(EventKind::TaskRetry, delivery.job.as_str());
        event.task = Some(delivery.task.clone());
        event.index = Some(delivery.index);
        event.attempt = Some(delivery.attempt);
        event.worker = Some(worker.to_string());
        event.incarnation = Some(delivery.incarnation.clone());
        event.message = Some(format!(
            "worker {worker} stopped renewing its lease; attempt {} handed back",
            delivery.attempt
        ));
        publish::event(&deps.js, &event).await?;
        let key = protocol::is_key_task_subject(&delivery.subject);
        let queue = protocol::parse_task_queue(&delivery.subject);
        queues.extend(queue.map(|(class, priority, renderer)| (class, priority, renderer, key)));
    }
    for (class, priority, renderer, key) in queues {
        publish::doorbell(&deps.client, &class, priority, renderer, key).await;
    }
    tracing::warn!(
        worker,
        tasks = info.deliveries.len(),
        "a worker's lease expired; its tasks were handed back"
    );
    Ok(())
}
