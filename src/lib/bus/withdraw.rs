//! Taking a job's queued tasks back out of a queue (`tessera suspend`, a priority change)
//! while leaving alone the ones a worker holds.
//!
//! A task consumer delivers its queue in stream order, so the queue's messages past the
//! consumer's last delivered stream sequence have never been delivered: those are the
//! queued ones, and deleting them takes them back. The ones at or before it that are still
//! in the stream are held by workers (or wait out a failed attempt's delay), and stay.
//!
//! The queue is paused while it is read and its messages deleted, so that nothing is
//! delivered in between; the pause ends by itself after [`PAUSE_AT_MOST`], so a client
//! killed half-way leaves the queue paused no longer than that. A queue that an operator
//! paused (`tessera pause`) stays paused.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream::RawMessageErrorKind};
use futures::StreamExt as _;

use super::protocol::{self, TaskMessage};
use super::streams::TASKS_STREAM;
use crate::core::job::{Class, JobId, Priority, RendererKind};

/// The longest a queue stays paused for a withdrawal, should the client die during it.
pub const PAUSE_AT_MOST: Duration = Duration::from_secs(5);

/// Deletes at once.
const DELETES_AT_ONCE: usize = 32;

/// One queue of a job's tasks: its class, priority and renderer.
#[derive(Debug, Clone, Copy)]
pub struct JobQueue<'a> {
    /// The job.
    pub job: &'a JobId,
    /// Hardware class.
    pub class: &'a Class,
    /// Priority.
    pub priority: Priority,
    /// Renderer.
    pub renderer: RendererKind,
    /// Its key tasks (the key consumer's), or the rest.
    pub key: bool,
}

/// The queue paused for a withdrawal: what it found queued, to be taken out with
/// [`Paused::take`] once the ledger holds those tasks back.
pub struct Paused<'a> {
    stream: jetstream::stream::Stream,
    consumer: Option<String>,
    /// The job's queued tasks: (stream sequence, task index).
    pub queued: Vec<(u64, u32)>,
    queue: JobQueue<'a>,
}

/// Pauses `queue` (unless it is paused already) and finds the job's queued tasks in it.
pub async fn pause_and_find<'a>(
    js: &jetstream::Context,
    queue: JobQueue<'a>,
) -> anyhow::Result<Paused<'a>> {
    let stream = js.get_stream(TASKS_STREAM).await?;
    let (class, priority, renderer) = (queue.class, queue.priority, queue.renderer);
    let name = match queue.key {
        true => protocol::key_consumer(class, priority, renderer),
        false => protocol::task_consumer(class, priority, renderer),
    };
    // A queue no worker has opened has delivered nothing: everything in it is queued.
    let mut delivered = 0;
    let mut paused_here = None;
    if let Ok(info) = stream.consumer_info(&name).await {
        if !info.paused {
            let until =
                async_nats::datetime::add_std_duration(async_nats::datetime::now(), PAUSE_AT_MOST)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            stream
                .pause_consumer(&name, until)
                .await
                .with_context(|| format!("pausing queue {name} to withdraw tasks"))?;
            paused_here = Some(name.clone());
        }
        // Read once paused: nothing is delivered past this any more.
        delivered = stream
            .consumer_info(&name)
            .await
            .with_context(|| format!("reading queue {name}"))?
            .delivered
            .stream_sequence;
    }
    let mut paused = Paused {
        stream,
        consumer: paused_here,
        queued: Vec::new(),
        queue,
    };
    let found = find(&paused.stream, queue, delivered + 1).await;
    match found {
        Ok(queued) => paused.queued = queued,
        Err(e) => {
            paused.resume().await;
            return Err(e);
        }
    }
    Ok(paused)
}

/// The job's messages in `queue` from stream sequence `from` on.
async fn find(
    stream: &jetstream::stream::Stream,
    queue: JobQueue<'_>,
    mut from: u64,
) -> anyhow::Result<Vec<(u64, u32)>> {
    let (class, priority, renderer) = (queue.class, queue.priority, queue.renderer);
    let subject = protocol::task_subject(class, priority, queue.job, renderer, queue.key);
    let mut queued = Vec::new();
    loop {
        let message = stream
            .raw_message_builder()
            .sequence(from)
            .next_by_subject(subject.clone())
            .send()
            .await;
        let message = match message {
            Ok(message) => message,
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => return Ok(queued),
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "reading the queued tasks of {}: {e}",
                    queue.job
                ));
            }
        };
        // A message that is not a task of the job is left where it is.
        if let Ok(task) = protocol::decode::<TaskMessage>(&message.payload)
            && task.job == *queue.job
        {
            queued.push((message.sequence, task.index));
        }
        from = message.sequence + 1;
    }
}

impl Paused<'_> {
    /// Deletes the queued tasks found, then resumes the queue (if this paused it).
    pub async fn take(self) -> anyhow::Result<()> {
        let job = self.queue.job.clone();
        let sequences: Vec<u64> = self.queued.iter().map(|&(sequence, _)| sequence).collect();
        let deletes = sequences.into_iter().map(|sequence| {
            let (stream, job) = (self.stream.clone(), job.clone());
            async move {
                match stream.delete_message(sequence).await {
                    Ok(_) => Ok(()),
                    // Taken meanwhile (a job end's purge): gone all the same.
                    Err(e) if e.to_string().contains("no message found") => Ok(()),
                    Err(e) => Err(anyhow::anyhow!("withdrawing a task of {job}: {e}")),
                }
            }
        });
        let deleted: Vec<anyhow::Result<()>> = futures::stream::iter(deletes)
            .buffer_unordered(DELETES_AT_ONCE)
            .collect()
            .await;
        self.resume().await;
        deleted.into_iter().collect()
    }

    /// Resumes the queue if this paused it (its pause would end by itself soon anyway).
    pub async fn resume(&self) {
        if let Some(name) = &self.consumer
            && let Err(e) = self.stream.resume_consumer(name).await
        {
            tracing::warn!(queue = %name, error = %e, "resuming a queue after a withdrawal (its pause ends by itself)");
        }
    }
}
