//! Taking one task: a no-wait pull of a single message per free slot, never a pre-fetch,
//! and the sweep of a pull the server parked.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;

use super::pick::Queue;

/// One task from the first non-empty queue of `order`; never more.
pub(super) async fn take_task(
    consumers: &HashMap<Queue, PullConsumer>,
    order: &[Queue],
) -> Option<jetstream::Message> {
    for queue in order {
        let Some(consumer) = consumers.get(queue) else {
            continue;
        };
        match pull_one(consumer).await {
            Ok(Pull {
                message: Some(msg), ..
            }) => return Some(msg),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(?queue, error = %e, "fetching a task");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    None
}

/// How long a no-wait pull may take before the queue is taken for empty.
const FETCH_TIMEOUT: Duration = Duration::from_millis(500);

/// How long the pull that clears a parked request stays open.
const SWEEP_EXPIRES: Duration = Duration::from_millis(100);

/// At most one message from `consumer`, without waiting when it has none.
///
/// A no-wait pull normally ends at once, with a message or "no messages". nats-server
/// parks it instead, with no expiry, when it thinks messages are pending but has none to
/// give: the loser of a race for the last message, a consumer at its ack-pending limit,
/// and, on 2.9, every pull after a job's tasks were purged (a purge by job leaves the
/// consumer's count of pending messages stale). Two things follow from a parked pull:
///
/// - Dropped, the request would stay in the consumer's waiting list without interest. On
///   servers before 2.10.14, a redelivery (a nak's delay or an ack deadline running out)
///   that meets such a request is lost, and the message comes back one ack deadline later
///   as a first delivery (nats-server #5305): a late retry whose attempt number restarts
///   at 1. A short pull that expires makes the server drop the orphaned request while it
///   has no redelivery to give; a task that is due comes back through it.
/// - A stale count makes every later pull on the queue park too, costing each idle scan
///   half a second. Reading the consumer's info makes the server count again.
pub async fn pull_one(consumer: &jetstream::consumer::PullConsumer) -> anyhow::Result<Pull> {
    async fn first<E: std::fmt::Display>(
        batch: impl std::future::Future<Output = Result<jetstream::consumer::pull::Batch, E>>,
    ) -> anyhow::Result<Option<jetstream::Message>> {
        let mut batch = batch.await.map_err(|e| anyhow::anyhow!("{e}"))?;
        batch
            .next()
            .await
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
    let no_wait = first(consumer.fetch().max_messages(1).messages());
    if let Ok(result) = tokio::time::timeout(FETCH_TIMEOUT, no_wait).await {
        return Ok(Pull {
            message: result?,
            parked: false,
        });
    }
    tracing::debug!(consumer = %consumer.cached_info().name, "a no-wait pull was parked; sweeping it");
    let sweep = first(
        consumer
            .batch()
            .max_messages(1)
            .expires(SWEEP_EXPIRES)
            .messages(),
    );
    // The server ends the sweep at its expiry; the margin only guards against a lost reply.
    let swept = tokio::time::timeout(SWEEP_EXPIRES + FETCH_TIMEOUT, sweep)
        .await
        .unwrap_or(Ok(None));
    if let Err(e) = consumer.get_info().await {
        tracing::debug!(error = %e, "reading the consumer's info after a parked pull");
    }
    Ok(Pull {
        message: swept?,
        parked: true,
    })
}

/// What [`pull_one`] got.
#[derive(Debug)]
pub struct Pull {
    /// The task, if the queue had one.
    pub message: Option<jetstream::Message>,
    /// Whether the server parked the no-wait pull (see [`pull_one`]).
    pub parked: bool,
}
