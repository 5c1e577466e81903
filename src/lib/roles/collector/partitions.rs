//! Scaling out: the events stream stores each job's events in one of [`EVENT_PARTITIONS`]
//! partitions (a hash of the job id), each with its own durable consumer, and the live
//! collectors divide the partitions between them. Two collectors thus never apply events of
//! the same job: no compare-and-swap between them on a job's pages, and a tiled frame's
//! canvas in one memory.
//!
//! Each collector keeps a lease in the `tessera-collectors` bucket (renewed every
//! [`LEASE_RENEW`], living [`LEASE_TTL`]). Every collector watches the leases, ranks the
//! live collectors by id, and serves the partitions whose number modulo their count is its
//! rank ([`owned`]). A collector that dies stops renewing; when its lease expires, about a
//! second later, the others take its partitions over from where their consumers stand.
//! While the collectors change, a partition may be served by two for a moment (every step
//! is idempotent) or by none (its events wait).
//!
//! [`EVENT_PARTITIONS`]: protocol::EVENT_PARTITIONS

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_nats::header::{self, HeaderMap};
use async_nats::jetstream::kv;
use futures::StreamExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::assemble::Stitching;
use super::events::{Collector, Shared};
use crate::bus::consume::{self, Puller};
use crate::bus::legacy;
use crate::bus::protocol::{self, EVENT_PARTITIONS, LEASE_RENEW, LEASE_TTL};
use crate::bus::streams::{self, COLLECTORS_BUCKET};
use crate::config::Deps;

/// The partitions of `partitions` that collector `me` serves when `live` are the live
/// collectors (`me` counts among them even before its own lease is seen).
pub(super) fn owned(partitions: u32, live: &BTreeSet<String>, me: &str) -> Vec<u32> {
    let mut ids: BTreeSet<&str> = live.iter().map(String::as_str).collect();
    ids.insert(me);
    let rank = ids.iter().position(|id| *id == me).unwrap_or(0) as u32;
    let count = ids.len() as u32;
    (0..partitions).filter(|p| p % count == rank).collect()
}

/// Serves this collector's share of the partitions until `shutdown`, following the other
/// collectors' arrivals and departures; the batches in hand are finished first.
pub(super) async fn run(
    deps: Deps,
    id: String,
    stitching: Shared<Stitching>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let kv = streams::collectors_bucket(&deps.js).await?;
    let mut serving: HashMap<u32, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    let mut live = BTreeSet::new();
    let mut watch = None;
    let mut renew = tokio::time::interval(LEASE_RENEW);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if watch.is_none() {
            match kv.watch_all().await {
                Ok(entries) => {
                    live.clear();
                    watch = Some(entries);
                }
                Err(e) => tracing::warn!(error = %e, "watching the collector leases"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = renew.tick() => {
                if let Err(e) = renew_lease(&deps, &id).await {
                    tracing::warn!(error = format!("{e:#}"), "renewing this collector's lease");
                }
            }
            entry = next(&mut watch) => match entry {
                Some(entry) if entry.operation == kv::Operation::Put => {
                    live.insert(entry.key);
                }
                Some(entry) => {
                    live.remove(&entry.key);
                }
                None => {
                    watch = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
        let wanted = owned(EVENT_PARTITIONS, &live, &id);
        serving.retain(|partition, (stop, _)| {
            let keep = wanted.contains(partition);
            if !keep {
                tracing::info!(partition, "another collector takes this partition");
                stop.cancel();
            }
            keep
        });
        for partition in wanted {
            serving.entry(partition).or_insert_with(|| {
                tracing::info!(partition, "serving this partition");
                let stop = shutdown.child_token();
                let task = tokio::spawn(serve(
                    deps.clone(),
                    partition,
                    stitching.clone(),
                    stop.clone(),
                ));
                (stop, task)
            });
        }
    }
    // Gone at once: the others take the partitions over without waiting for the expiry.
    if let Err(e) = kv.delete(&id).await {
        tracing::debug!(error = %e, "removing this collector's lease");
    }
    for (_, (stop, task)) in serving {
        stop.cancel();
        let _ = task.await;
    }
    Ok(())
}

/// The next change of the watched leases; `None` when there is no watch or it ended.
async fn next(watch: &mut Option<kv::Watch>) -> Option<kv::Entry> {
    match watch {
        Some(entries) => match entries.next().await {
            Some(Ok(entry)) => Some(entry),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "watching the collector leases");
                None
            }
            None => None,
        },
        None => None,
    }
}

/// Writes this collector's lease, alive for [`LEASE_TTL`].
async fn renew_lease(deps: &Deps, id: &str) -> anyhow::Result<()> {
    let mut headers = HeaderMap::new();
    headers.insert(header::NATS_MESSAGE_TTL, LEASE_TTL.as_secs().to_string());
    deps.js
        .publish_with_headers(
            protocol::lease_subject(COLLECTORS_BUCKET, id),
            headers,
            bytes::Bytes::new(),
        )
        .await?
        .await?;
    Ok(())
}

/// Serves partition `partition` until `stop`.
async fn serve(deps: Deps, partition: u32, stitching: Shared<Stitching>, stop: CancellationToken) {
    let consumer = loop {
        match streams::collector_consumer(&deps.js, partition).await {
            Ok(consumer) => break consumer,
            Err(e) => tracing::warn!(
                partition,
                error = format!("{e:#}"),
                "the partition's consumer"
            ),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    let mut puller = Puller::new(consumer, consume::BATCH);
    let mut collector = Collector {
        deps,
        jobs: Default::default(),
        stitching,
        windows: Default::default(),
        started: Default::default(),
    };
    consume::serve(&mut puller, &stop, "an event", &mut collector).await;
}

/// Hands what the consumer of the layout before partitions still holds to a collector
/// handler, then removes that consumer (any collector may; the first to see it drained
/// does).
pub(super) async fn drain_legacy(
    deps: Deps,
    stitching: Shared<Stitching>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(consumer) = legacy::legacy_collector_consumer(&deps.js).await? else {
        return Ok(());
    };
    tracing::warn!("events stored before partitions are waiting: handling them first");
    let stop = shutdown.child_token();
    let mut puller = Puller::new(consumer.clone(), consume::BATCH);
    let mut consumer = consumer;
    let watcher = async {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            match consumer.info().await {
                Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => {
                    stop.cancel();
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "reading the old collector consumer"),
            }
        }
    };
    let mut collector = Collector {
        deps: deps.clone(),
        jobs: Default::default(),
        stitching,
        windows: Default::default(),
        started: Default::default(),
    };
    let served = consume::serve(&mut puller, &stop, "an event", &mut collector);
    tokio::join!(watcher, served);
    if !shutdown.is_cancelled() {
        legacy::remove_legacy_collector_consumer(&deps.js).await?;
        tracing::info!("the events stored before partitions are handled");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_live_collectors_divide_the_partitions_between_them() {
        let cases: &[(&[&str], &str, &[u32])] = &[
            (&[], "a", &[0, 1, 2, 3, 4, 5, 6, 7]),
            (&["a"], "a", &[0, 1, 2, 3, 4, 5, 6, 7]),
            (&["a", "b"], "a", &[0, 2, 4, 6]),
            (&["a", "b"], "b", &[1, 3, 5, 7]),
            // Its own lease not seen yet: it counts itself.
            (&["a"], "b", &[1, 3, 5, 7]),
            (&["a", "b", "c"], "c", &[2, 5]),
        ];
        for (live, me, expected) in cases {
            assert_eq!(owned(8, &ids(live), me), *expected, "{live:?} {me}");
        }
        // Every partition has exactly one owner.
        let live = ids(&["x", "y", "z"]);
        let mut all: Vec<u32> = live.iter().flat_map(|me| owned(8, &live, me)).collect();
        all.sort();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
    }
}
