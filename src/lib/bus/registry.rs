//! The worker registry, which is also the workers' liveness: one [`WorkerInfo`] per live
//! worker in the `tessera-workers` KV bucket, written with a lifetime of [`LEASE_TTL`] and
//! renewed every [`LEASE_RENEW`]. An entry exists exactly while its worker answers, whatever
//! the machines' clocks say. A worker that stops renewing (dead, frozen, cut off) leaves an
//! expiry marker that [`watch`] reports as [`Lease::Expired`], with the deliveries it held.
//!
//! [`LEASE_TTL`]: super::protocol::LEASE_TTL
//! [`LEASE_RENEW`]: super::protocol::LEASE_RENEW

use std::collections::{BTreeSet, HashMap};

use anyhow::Context as _;
use async_nats::header::{self, HeaderMap};
use async_nats::jetstream::{self, kv};
use futures::{Stream, StreamExt};

use super::protocol::{self, Delivery, Event, EventKind, LEASE_TTL, WorkerInfo};
use super::publish;
use super::streams::{self, WORKERS_BUCKET};

/// How long the claim on an expired lease's hand-back is kept.
const CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// A worker's handle on its own lease.
pub struct Entry {
    js: jetstream::Context,
    kv: kv::Store,
    id: String,
}

impl Entry {
    /// Binds the lease of worker `id`.
    pub async fn bind(js: &jetstream::Context, id: &str) -> anyhow::Result<Entry> {
        Ok(Entry {
            js: js.clone(),
            kv: streams::workers_bucket(js).await?,
            id: id.to_string(),
        })
    }

    /// Writes `info` as the worker's lease, alive for [`LEASE_TTL`] from now.
    pub async fn renew(&self, info: &WorkerInfo) -> anyhow::Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert(header::NATS_MESSAGE_TTL, LEASE_TTL.as_secs().to_string());
        self.js
            .publish_with_headers(
                protocol::lease_subject(WORKERS_BUCKET, &self.id),
                headers,
                protocol::encode(info).into(),
            )
            .await
            .with_context(|| format!("renewing the lease of {}", self.id))?
            .await
            .with_context(|| format!("the lease of {} was not stored", self.id))?;
        Ok(())
    }

    /// The lease a previous run of this worker (the same id) left, if it is still live:
    /// read before this run's first renewal, it lists what that run held when it died.
    pub async fn previous(&self) -> anyhow::Result<Option<WorkerInfo>> {
        let entry = self
            .kv
            .entry(&self.id)
            .await
            .with_context(|| format!("reading the lease of {}", self.id))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| protocol::decode(&e.value).ok()))
    }

    /// Gives the lease up (the worker stops): no hand-back follows.
    pub async fn remove(&self) {
        if let Err(e) = self.kv.delete(&self.id).await {
            tracing::debug!(error = %e, "removing the lease");
        }
    }
}

/// The live workers, by id; `heartbeat_ms` is when the server stored each one's last
/// renewal.
pub async fn live_workers(js: &jetstream::Context) -> anyhow::Result<Vec<WorkerInfo>> {
    let kv = streams::workers_bucket(js).await?;
    let mut keys = kv.keys().await.context("listing workers")?;
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| anyhow::anyhow!("listing workers: {e}"))?;
        if key.contains('.') {
            continue; // a hand-back claim, not a worker
        }
        let Some(entry) = kv.entry(&key).await.context("reading a worker entry")? else {
            continue;
        };
        if entry.operation != async_nats::jetstream::kv::Operation::Put {
            continue;
        }
        match protocol::decode::<WorkerInfo>(&entry.value) {
            Ok(mut info) => {
                // The last renewal as the server stored it: a worker's own clock may be off.
                info.heartbeat_ms = (entry.created.unix_timestamp_nanos() / 1_000_000) as u64;
                out.push(info);
            }
            Err(e) => tracing::warn!(key, error = %e, "unreadable worker entry"),
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// What happened to a lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Lease {
    /// A worker renewed its lease (or was there when the watch began).
    Renewed(Box<WorkerInfo>),
    /// A worker gave its lease up on stopping.
    Left(String),
    /// A worker's lease ran out: `last` is its last renewal, if the watch saw one;
    /// `revision` tells this expiry from any other.
    Expired {
        /// The worker.
        worker: String,
        /// Its last renewal seen.
        last: Option<Box<WorkerInfo>>,
        /// The expiry marker's revision.
        revision: u64,
        /// How long after that renewal the server wrote the marker, by the server's
        /// clock: about [`LEASE_TTL`] when the worker stopped, much longer when the
        /// bucket had no leader for a while (a server of a cluster died) and every lease
        /// that fell due meanwhile ran out at once.
        silent: Option<std::time::Duration>,
    },
}

/// Follows every lease from its current state on: renewals, departures and expiries. Each
/// expiry carries the worker's last lease seen by this watch. The stream ends when the
/// connection does; callers watch again.
pub async fn watch(
    js: &jetstream::Context,
) -> anyhow::Result<impl Stream<Item = anyhow::Result<Lease>> + use<>> {
    let kv = streams::workers_bucket(js).await?;
    let entries = kv.watch_all().await.context("watching the worker leases")?;
    let mut last: HashMap<String, (Box<WorkerInfo>, _)> = HashMap::new();
    Ok(entries.filter_map(move |entry| {
        let lease = match entry {
            Err(e) => Some(Err(anyhow::anyhow!("watching the worker leases: {e}"))),
            Ok(entry) if entry.key.contains('.') => None,
            Ok(entry) => match entry.operation {
                kv::Operation::Put => match protocol::decode::<WorkerInfo>(&entry.value) {
                    Ok(info) => {
                        let info = Box::new(info);
                        last.insert(entry.key, (info.clone(), entry.created));
                        Some(Ok(Lease::Renewed(info)))
                    }
                    Err(e) => {
                        tracing::warn!(key = entry.key, error = %e, "unreadable lease");
                        None
                    }
                },
                kv::Operation::Delete => {
                    last.remove(&entry.key);
                    Some(Ok(Lease::Left(entry.key)))
                }
                kv::Operation::Purge => {
                    let seen = last.remove(&entry.key);
                    let silent = seen
                        .as_ref()
                        .and_then(|(_, at)| (entry.created - *at).try_into().ok());
                    Some(Ok(Lease::Expired {
                        last: seen.map(|(info, _)| info),
                        worker: entry.key,
                        revision: entry.revision,
                        silent,
                    }))
                }
            },
        };
        std::future::ready(lease)
    }))
}

/// Hands back `deliveries`, which `worker` held and will not finish: a negative
/// acknowledgement on each one's reply subject (the server redelivers it at once), a
/// `task.retry` event saying `why` of it, then the doorbell of each queue they came from.
pub async fn hand_back(
    client: &async_nats::Client,
    js: &jetstream::Context,
    worker: &str,
    deliveries: &[Delivery],
    why: impl Fn(&Delivery) -> String,
) -> anyhow::Result<()> {
    let mut queues = BTreeSet::new();
    for delivery in deliveries {
        if !protocol::is_task_ack_subject(&delivery.reply, streams::TASKS_STREAM) {
            tracing::warn!(
                worker,
                reply = delivery.reply,
                "a lease lists a delivery that is not a task's; ignoring it"
            );
            continue;
        }
        // Unanswered, the task still comes back at its ack deadline; the retry event
        // below says why either way.
        if let Err(e) = publish::nak_delivery(client, &delivery.reply).await {
            tracing::warn!(
                worker,
                error = format!("{e:#}"),
                "the task comes back at its ack deadline"
            );
        }
        let mut event = Event::new(EventKind::TaskRetry, delivery.job.as_str());
        event.task = Some(delivery.task.clone());
        event.index = Some(delivery.index);
        event.attempt = Some(delivery.attempt);
        event.worker = Some(worker.to_string());
        event.incarnation = Some(delivery.incarnation.clone());
        event.message = Some(why(delivery));
        publish::event(js, &event).await?;
        let key = protocol::is_key_task_subject(&delivery.subject);
        let queue = protocol::parse_task_queue(&delivery.subject);
        queues.extend(queue.map(|(class, priority, renderer)| (class, priority, renderer, key)));
    }
    for (class, priority, renderer, key) in queues {
        publish::doorbell(client, &class, priority, renderer, key).await;
    }
    Ok(())
}

/// Whether `worker` wrote its lease again after the expiry marker at `revision`: it is
/// alive, and what it holds stays with it.
pub async fn renewed_since(kv: &kv::Store, worker: &str, revision: u64) -> anyhow::Result<bool> {
    let entry = kv
        .entry(worker)
        .await
        .with_context(|| format!("reading the lease of {worker}"))?;
    Ok(entry.is_some_and(|e| e.operation == kv::Operation::Put && e.revision > revision))
}

/// Claims the hand-back of `worker`'s lease that expired at `revision`: true for exactly
/// one of the collectors that ask.
pub async fn claim_expiry(
    js: &jetstream::Context,
    worker: &str,
    revision: u64,
) -> anyhow::Result<bool> {
    let kv = streams::workers_bucket(js).await?;
    let key = protocol::lease_claim_key(worker, revision);
    match kv.create_with_ttl(&key, "claimed".into(), CLAIM_TTL).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("claiming {key}")),
    }
}
