//! The events stored so far: every event on a subject filter of the events stream, read
//! once from the first with an ordered consumer (`tessera status`'s history, a version's
//! trace).

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;

use super::protocol::{self, Event};
use super::streams;

/// Every event stored under `filter` (a subject of the events stream), oldest first;
/// messages that do not decode are passed over.
pub async fn stored(js: &jetstream::Context, filter: String) -> anyhow::Result<Vec<Event>> {
    let consumer = js
        .get_stream(streams::EVENTS_STREAM)
        .await?
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.clone(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .with_context(|| format!("reading the events on {filter}"))?;
    let mut out = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer.messages().await?;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| anyhow::anyhow!("reading the events on {filter}: {e}"))?;
        if let Ok(event) = protocol::decode::<Event>(&msg.payload) {
            out.push(event);
        }
        if msg.info().map(|i| i.pending).unwrap_or(0) == 0 {
            break;
        }
    }
    Ok(out)
}
