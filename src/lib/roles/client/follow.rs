//! Following a job: where it stands, then its events until it ends; its events so far.

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use crate::bus::protocol::{self, Event, EventKind};
use crate::bus::streams;
use crate::config::Deps;
use crate::core::job::JobId;

/// What a watcher is told, in order: where the job stood when the watch began, then
/// each event after that.
pub enum Watched<'a> {
    /// The job's status as the watch began, and the job; `None` before a planner has
    /// taken it.
    Began(Option<(&'a super::Status, Option<&'a crate::core::job::Job>)>),
    /// A job not planned when the watch began was accepted: the job.
    Planned(&'a crate::core::job::Job),
    /// An event after that.
    Event(&'a Event),
}

/// Watches `job` as a person does: where it stands now, then every change, until it
/// ends; returns its final event (made from its record when it had ended already).
pub async fn watch(
    deps: &Deps,
    job: &JobId,
    mut on: impl FnMut(Watched<'_>),
) -> anyhow::Result<Event> {
    // The stream's position first, then the status: every event the status may not
    // reflect comes after the position.
    let stream = deps.js.get_stream(streams::EVENTS_STREAM).await?;
    let last = stream.get_info().await?.state.last_sequence;
    // A job with no record yet is not planned yet; one planned in between is read again.
    let mut status = None;
    for tries in 1..=3 {
        match super::status(deps, job).await {
            Ok(found) => {
                status = Some(found);
                break;
            }
            Err(_) if deps.ledger.job(job).await?.is_none() => break,
            // Not a job planned while its status was read: the status cannot be read.
            Err(e) if tries == 3 => return Err(e.context(format!("reading the status of {job}"))),
            Err(e) => {
                tracing::debug!(error = %e, "the job was planned while its status was read");
            }
        }
    }
    let planned = |record: Option<(crate::core::state::JobRecord, u64)>| {
        record.and_then(|(r, _)| r.job().ok())
    };
    let mut known = None;
    if status.is_some() {
        known = planned(deps.ledger.job(job).await?);
    }
    on(Watched::Began(status.as_ref().map(|s| (s, known.as_ref()))));
    let ended = |s: &&super::Status| {
        matches!(
            s.state.as_str(),
            "done" | "failed" | "canceled" | "rejected"
        )
    };
    if let Some(status) = status.as_ref().filter(ended) {
        let kind = match status.state.as_str() {
            "done" => EventKind::JobDone,
            "canceled" => EventKind::JobCanceled,
            "rejected" => EventKind::JobRejected,
            _ => EventKind::JobFailed,
        };
        let mut event = Event::new(kind, job.as_str());
        event.message = status.message.clone();
        event.outputs = status.outputs.clone();
        event.time_ms = status.finished_ms.unwrap_or(event.time_ms);
        return Ok(event);
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: protocol::stored_job_events_filter(job.as_str()),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: last + 1,
            },
            ..Default::default()
        })
        .await
        .with_context(|| format!("watching the events of {job}"))?;
    let mut messages = consumer.messages().await?;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| anyhow::anyhow!("reading events: {e}"))?;
        let Ok(event) = protocol::decode::<Event>(&msg.payload) else {
            continue;
        };
        if known.is_none()
            && event.kind == EventKind::JobAccepted
            && let Some(planned) = planned(deps.ledger.job(job).await?)
        {
            on(Watched::Planned(&planned));
            known = Some(planned);
        }
        on(Watched::Event(&event));
        if event.kind.is_final() {
            return Ok(event);
        }
    }
    anyhow::bail!("the event stream ended before job {job} did")
}

/// The events of a job seen so far, oldest first. `job` is the subject token: a job id,
/// or `_invalid` for rejections of submissions without a usable id.
pub async fn events(js: &jetstream::Context, job: &str) -> anyhow::Result<Vec<Event>> {
    crate::bus::history::stored(js, protocol::stored_job_events_filter(job)).await
}
