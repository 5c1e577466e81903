//! Following a job: its events so far, and waiting for its end.

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use crate::bus::protocol::{self, Event, EventKind};
use crate::bus::streams;
use crate::config::Deps;
use crate::core::job::JobId;
use crate::core::state::JobState;

/// Waits for the job's final event (`job.done`, `job.failed`, `job.rejected`,
/// `job.canceled`), calling `on_event` for each event on the way. After `tessera retry`,
/// only a final event following the latest `job.retried` counts. A job that ended and
/// whose events are gone (older than the events stream keeps) is answered from its record.
pub async fn wait(
    deps: &Deps,
    job: &JobId,
    mut on_event: impl FnMut(&Event),
) -> anyhow::Result<Event> {
    let record = deps.ledger.job(job).await?.map(|(r, _)| r);
    let generation = record.as_ref().map_or(0, |r| r.generation);
    let consumer = job_events(&deps.js, job.as_str()).await?;
    // A job that ended longer ago than the events stream keeps its events: its record
    // answers.
    if consumer.cached_info().num_pending == 0
        && let Some(record) = record.filter(|r| r.state.is_terminal())
    {
        let kind = match record.state {
            JobState::Done => EventKind::JobDone,
            JobState::Canceled => EventKind::JobCanceled,
            _ => EventKind::JobFailed,
        };
        let mut event = Event::new(kind, job.as_str());
        event.message = record.message.clone();
        event.time_ms = record.finished_ms.unwrap_or(event.time_ms);
        on_event(&event);
        return Ok(event);
    }
    let mut messages = consumer.messages().await?;
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
            filter_subject: protocol::stored_job_events_filter(job),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .with_context(|| format!("watching the events of {job}"))
}

/// The events of a job seen so far, oldest first. `job` is the subject token: a job id,
/// or `_invalid` for rejections of submissions without a usable id.
pub async fn events(js: &jetstream::Context, job: &str) -> anyhow::Result<Vec<Event>> {
    crate::bus::history::stored(js, protocol::stored_job_events_filter(job)).await
}
