//! Following a job: its events so far, and waiting for its end.

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use crate::bus::protocol::{self, Event, EventKind};
use crate::bus::streams;
use crate::config::Deps;
use crate::core::job::JobId;

/// Waits for the job's final event (`job.done`, `job.failed`, `job.rejected`,
/// `job.canceled`), calling `on_event` for each event on the way. After `tessera retry`,
/// only a final event following the latest `job.retried` counts.
pub async fn wait(
    deps: &Deps,
    job: &JobId,
    mut on_event: impl FnMut(&Event),
) -> anyhow::Result<Event> {
    let generation = deps.ledger.job(job).await?.map_or(0, |(r, _)| r.generation);
    let mut messages = job_events(&deps.js, job.as_str()).await?.messages().await?;
    let mut retries_seen = 0;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| anyhow::anyhow!("reading events: {e}"))?;
        let Ok(event) = protocol::decode::<Event>(&msg.payload) else {
            continue;
        };
        if event.kind == EventKind::JobRetried {
            retries_seen += 1;
        }
        on_event(&event);
        if event.kind.is_final() && retries_seen >= generation {
            return Ok(event);
        }
    }
    anyhow::bail!("the event stream ended before job {job} did")
}

/// An ordered consumer of every event of `job` (a subject token), from the first.
async fn job_events(
    js: &jetstream::Context,
    job: &str,
) -> anyhow::Result<consumer::Consumer<consumer::pull::OrderedConfig>> {
    js.get_stream(streams::EVENTS_STREAM)
        .await?
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: protocol::job_events_filter(job),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .with_context(|| format!("watching the events of {job}"))
}

/// The events of a job seen so far, oldest first. `job` is the subject token: a job id,
/// or `_invalid` for rejections of submissions without a usable id.
pub async fn events(js: &jetstream::Context, job: &str) -> anyhow::Result<Vec<Event>> {
    let consumer = job_events(js, job).await?;
    let pending = consumer.cached_info().num_pending;
    let mut out = Vec::new();
    if pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer.messages().await?;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| anyhow::anyhow!("reading events: {e}"))?;
        if let Ok(event) = protocol::decode::<Event>(&msg.payload) {
            out.push(event);
        }
        if msg.info().map(|i| i.pending).unwrap_or(0) == 0 {
            break;
        }
    }
    Ok(out)
}
