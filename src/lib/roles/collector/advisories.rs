//! Fails the tasks JetStream gave up on. A task whose worker died on its last delivery
//! (`max_deliver`) stays in the work-queue stream, undelivered (still so on current
//! servers); its MAX_DELIVERIES advisory, kept in `TESSERA_ADVISORIES` so that none is lost
//! while no collector runs, is turned into `task.failed`, and the message is removed.

use async_nats::jetstream;
use async_nats::jetstream::stream::RawMessageErrorKind;

use crate::bus::consume::Handler;
use crate::bus::protocol::{self, Event, EventKind};
use crate::bus::{publish, streams};
use crate::config::Deps;

/// The handler of MAX_DELIVERIES advisories.
pub(super) struct Advisories {
    pub(super) deps: Deps,
}

impl Handler for Advisories {
    async fn handle(&mut self, msg: &jetstream::Message) -> anyhow::Result<()> {
        handle_advisory(&self.deps, msg).await
    }
}

async fn handle_advisory(deps: &Deps, msg: &jetstream::Message) -> anyhow::Result<()> {
    let advisory: protocol::MaxDeliveries = match serde_json::from_slice(&msg.payload) {
        Ok(advisory) => advisory,
        Err(e) => {
            tracing::warn!(subject = %msg.subject, error = %e, "ignoring a malformed advisory");
            return Ok(());
        }
    };
    if advisory.stream != streams::TASKS_STREAM {
        return Ok(());
    }
    let stream = deps.js.get_stream(streams::TASKS_STREAM).await?;
    let raw = match stream.get_raw_message(advisory.stream_seq).await {
        Ok(raw) => raw,
        // Already gone: done, failed or purged meanwhile.
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => return Ok(()),
        // A timeout or a server hiccup: the advisory comes back (nak) until the message is
        // read or known gone, so the task is failed rather than left in the stream.
        Err(e) => anyhow::bail!("reading task message {}: {e}", advisory.stream_seq),
    };
    match protocol::decode::<protocol::TaskMessage>(&raw.payload) {
        Ok(task) => {
            let attempt = task.attempts_before + advisory.deliveries as u32;
            // Every task of a bundle fails with it.
            for mut event in Event::tasks(EventKind::TaskFailed, &task, attempt, "") {
                event.worker = None;
                event.message = Some(format!(
                    "attempt {attempt} was lost with its worker, and JetStream gives up after {} deliveries",
                    advisory.deliveries
                ));
                publish::event(&deps.js, &event).await?;
            }
            tracing::warn!(job = %task.job, task = %task.task, attempt, "task lost on its last delivery; failed");
        }
        Err(e) => {
            tracing::warn!(seq = advisory.stream_seq, error = %e, "removing an unreadable task")
        }
    }
    stream
        .delete_message(advisory.stream_seq)
        .await
        .map_err(|e| anyhow::anyhow!("removing task message {}: {e}", advisory.stream_seq))?;
    Ok(())
}
