//! Taking one task: a no-wait pull of a single message per free slot, never a pre-fetch,
//! in the task consumers' priority group, with a client-side timeout on every pull.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;

use super::pick::{Emptiness, Queue};
use crate::bus::streams::WORKERS_GROUP;

/// One task from the first non-empty queue of `order`, pulled in `group` (a key queue in
/// `key_group`); never more. Queues found empty a moment ago are passed over (see
/// [`Emptiness`]).
pub(super) async fn take_task(
    consumers: &HashMap<Queue, PullConsumer>,
    order: &[Queue],
    (group, key_group): (&Group, &Group),
    empty: &Emptiness,
) -> Option<jetstream::Message> {
    for queue in order {
        let Some(consumer) = consumers.get(queue) else {
            continue;
        };
        let asked = Instant::now();
        if empty.passed_over(queue, asked) {
            continue;
        }
        let group = if queue.key { key_group } else { group };
        match pull_one(consumer, Some(group)).await {
            Ok(Pull {
                message: Some(msg), ..
            }) => return Some(msg),
            // As of when it asked: a doorbell that rang meanwhile still counts.
            Ok(_) => empty.found_empty(queue, asked),
            Err(e) => {
                tracing::warn!(?queue, error = %e, "fetching a task");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    None
}

/// Whether any of `consumers` has at least `threshold` tasks waiting (a burst worker's
/// test before it pulls; the pull itself checks again on the server).
pub(super) async fn backlog(consumers: &HashMap<Queue, PullConsumer>, threshold: usize) -> bool {
    for (queue, consumer) in consumers {
        match consumer.get_info().await {
            Ok(info) if info.num_pending as usize >= threshold => return true,
            Ok(_) => {}
            Err(e) => tracing::warn!(?queue, error = %e, "reading a queue's backlog"),
        }
    }
    false
}

/// How long a no-wait pull may take before the queue is taken for empty.
const FETCH_TIMEOUT: Duration = Duration::from_millis(500);

/// The priority group a pull names, and for a burst worker the backlog it waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// The group's name (the task consumers' is [`WORKERS_GROUP`]).
    pub name: String,
    /// Take a task only while at least this many wait in the queue (overflow).
    pub min_pending: Option<usize>,
    /// The pull's priority, 0 first (prioritized: the key consumers).
    pub priority: Option<usize>,
}

impl Group {
    /// The task consumers' group; `burst` makes the pull a burst worker's.
    pub fn workers(burst: Option<usize>) -> Group {
        Group {
            name: WORKERS_GROUP.to_string(),
            min_pending: burst,
            priority: None,
        }
    }

    /// The key consumers' group, pulled at `priority`.
    pub fn keys(priority: usize) -> Group {
        Group {
            name: WORKERS_GROUP.to_string(),
            min_pending: None,
            priority: Some(priority),
        }
    }
}

/// At most one message from `consumer`, without waiting when it has none; in `group` when
/// the consumer has priority groups.
///
/// A no-wait pull normally ends at once, with a message or "no messages". The server parks
/// it instead, with no expiry, when it counts messages pending but has none to give: the
/// loser of a race for the last message, or a consumer at its ack-pending limit (still so
/// on 2.15). So every pull has a client-side timeout, and a parked pull counts as "no task".
/// (Before 2.10.14 a parked pull left behind could make the server lose the next
/// redelivery, nats-server #5305; Tessera refuses servers that old, so no sweep follows.)
pub async fn pull_one(consumer: &PullConsumer, group: Option<&Group>) -> anyhow::Result<Pull> {
    let mut fetch = consumer.fetch().max_messages(1);
    if let Some(group) = group {
        fetch = fetch.group(group.name.clone());
        if let Some(n) = group.min_pending {
            fetch = fetch.min_pending(n);
        }
        if let Some(n) = group.priority {
            fetch = fetch.priority(n);
        }
    }
    let no_wait = async {
        let mut batch = fetch.messages().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        batch
            .next()
            .await
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    match tokio::time::timeout(FETCH_TIMEOUT, no_wait).await {
        Ok(result) => Ok(Pull {
            message: result?,
            parked: false,
        }),
        Err(_) => {
            tracing::debug!(consumer = %consumer.cached_info().name, "a no-wait pull was parked");
            Ok(Pull {
                message: None,
                parked: true,
            })
        }
    }
}

/// What [`pull_one`] got.
#[derive(Debug)]
pub struct Pull {
    /// The task, if the queue had one.
    pub message: Option<jetstream::Message>,
    /// Whether the server parked the no-wait pull (see [`pull_one`]).
    pub parked: bool,
}
