//! The events stored so far: every event on a subject filter of the events stream, read
//! once from the first with an ordered consumer (`tessera status`'s history, a version's
//! trace); and the one pass over what a stream holds that it and the ledger's listings
//! share ([`each_stored`]).

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;

use super::protocol::{self, Event};
use super::streams;

/// Every event stored under `filter` (a subject of the events stream), oldest first;
/// messages that do not decode are passed over.
pub async fn stored(js: &jetstream::Context, filter: String) -> anyhow::Result<Vec<Event>> {
    let stream = js.get_stream(streams::EVENTS_STREAM).await?;
    let config = consumer::pull::OrderedConfig {
        filter_subject: filter.clone(),
        deliver_policy: consumer::DeliverPolicy::All,
        ..Default::default()
    };
    let mut out = Vec::new();
    each_stored(&stream, config, &format!("the events on {filter}"), |msg| {
        if let Ok(event) = protocol::decode::<Event>(&msg.payload) {
            out.push(event);
        }
    })
    .await?;
    Ok(out)
}

/// Calls `each` with every message an ordered consumer of `stream` made with `config`
/// delivers, until it has caught up with what was stored when it was made: one pass.
/// `what` names the messages in errors.
pub async fn each_stored(
    stream: &jetstream::stream::Stream,
    config: consumer::pull::OrderedConfig,
    what: &str,
    mut each: impl FnMut(&jetstream::Message),
) -> anyhow::Result<()> {
    let consumer = stream
        .create_consumer(config)
        .await
        .with_context(|| format!("reading {what}"))?;
    let _gone = Removed(stream.clone(), consumer.cached_info().name.clone());
    if consumer.cached_info().num_pending == 0 {
        return Ok(());
    }
    let mut messages = consumer
        .messages()
        .await
        .with_context(|| format!("reading {what}"))?;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| anyhow::anyhow!("reading {what}: {e}"))?;
        each(&msg);
        if msg.info().map(|i| i.pending).unwrap_or(0) == 0 {
            break;
        }
    }
    Ok(())
}

/// A one-pass consumer, removed (in the background) once its pass is over. Left to
/// itself, it would stay on the server until its last pull request expired and its
/// inactivity threshold passed, more than half a minute: a dashboard or a script reading
/// a job's history every second would then keep dozens of them, and a stream takes at most
/// 1,000 consumers (nats-server 2.15's default limit), past which no role can make one.
struct Removed(jetstream::stream::Stream, String);

impl Drop for Removed {
    fn drop(&mut self) {
        let (stream, name) = (self.0.clone(), std::mem::take(&mut self.1));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = stream.delete_consumer(&name).await {
                    tracing::debug!(consumer = name, error = %e, "removing a one-pass consumer");
                }
            });
        }
    }
}
