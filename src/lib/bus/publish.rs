//! The one place that publishes: submissions, tasks, events, hand-backs, doorbells and
//! cancel broadcasts. "Where is a task published?" has one answer: [`task`].
//!
//! Publishes to JetStream come in two kinds: confirmed ones return once the stream has
//! stored the message; pipelined ones return a [`Pending`] store acknowledgement that the
//! caller confirms later, so many can be in flight at once (planning a large job). Core NATS
//! publishes (doorbells, cancels) are hints: nothing is lost if nobody hears them.

use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;

use super::protocol::{self, Event, TaskMessage};
use crate::core::job::{Class, Job, JobId, JobSpec, Priority, RendererKind};
use crate::core::order;
use crate::core::plan::TaskPlan;
use crate::core::state::Round;

/// A message handed to JetStream whose storage is not yet confirmed.
pub struct Pending {
    ack: PublishAckFuture,
    what: String,
}

impl Pending {
    /// Waits until the stream has stored the message.
    pub async fn confirmed(self) -> anyhow::Result<()> {
        self.ack
            .await
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{} was not stored: {e}", self.what))
    }

    /// Waits until the stream has stored the message; returns its stream sequence.
    pub async fn stored_at(self) -> anyhow::Result<u64> {
        self.ack
            .await
            .map(|ack| ack.sequence)
            .map_err(|e| anyhow::anyhow!("{} was not stored: {e}", self.what))
    }
}

async fn send(
    js: &jetstream::Context,
    subject: String,
    msg_id: Option<&str>,
    payload: Vec<u8>,
    what: String,
) -> anyhow::Result<Pending> {
    let ack = js
        .publish_with_headers(subject, protocol::headers(msg_id), Bytes::from(payload))
        .await
        .map_err(|e| anyhow::anyhow!("publishing {what}: {e}"))?;
    Ok(Pending { ack, what })
}

/// Publishes `event` and waits until it is stored.
pub async fn event(js: &jetstream::Context, event: &Event) -> anyhow::Result<()> {
    event_pending(js, event, None).await?.confirmed().await
}

/// Publishes `event`, deduplicated by `msg_id` when given, without waiting for storage.
pub async fn event_pending(
    js: &jetstream::Context,
    event: &Event,
    msg_id: Option<&str>,
) -> anyhow::Result<Pending> {
    let what = format!("{} for job {}", event.kind.as_str(), event.job);
    send(js, event.subject(), msg_id, protocol::encode(event), what).await
}

/// Publishes planned task `task` of `job` without waiting for storage. `round` keys the
/// task's `Nats-Msg-Id`, so a republish after a crash is deduplicated (see [`Round`]);
/// `attempts_before` is the attempts the task already had (when `tessera retry` queues it
/// again: its numbering goes on, its budget starts afresh).
pub async fn task(
    js: &jetstream::Context,
    job: &Job,
    task: &TaskPlan,
    round: Round,
    attempts_before: u32,
) -> anyhow::Result<Pending> {
    let mut message = TaskMessage::new(job, task);
    message.attempts_before = attempts_before;
    message.max_attempts += attempts_before;
    let subject = task_subject(job, std::slice::from_ref(task));
    let msg_id = protocol::task_msg_id(&job.id, &job.incarnation, &task.id, round);
    let what = format!("task {}", task.id);
    send(js, subject, Some(&msg_id), protocol::encode(&message), what).await
}

/// Publishes tasks `tasks` of `job` (consecutive single frames of a `chunk = "auto"` job)
/// as one bundle, rendered at once (see [`TaskMessage::bundle`]), without waiting for
/// storage; deduplicated like [`task`], by its first task and its size.
pub async fn bundle(
    js: &jetstream::Context,
    job: &Job,
    tasks: &[TaskPlan],
    round: Round,
    attempts_before: u32,
) -> anyhow::Result<Pending> {
    if tasks.len() == 1 {
        return task(js, job, &tasks[0], round, attempts_before).await;
    }
    let mut message = TaskMessage::bundle(job, tasks);
    message.attempts_before = attempts_before;
    message.max_attempts += attempts_before;
    let subject = task_subject(job, tasks);
    let lead = protocol::task_msg_id(&job.id, &job.incarnation, &tasks[0].id, round);
    let msg_id = format!("{lead}:b{}", tasks.len());
    let what = format!("bundle {}", message.task);
    send(js, subject, Some(&msg_id), protocol::encode(&message), what).await
}

/// Publishes task `task` of `job` again after its attempt `attempt` ended without a usable
/// result that its worker could not see (the collector found its output bad): the next
/// attempt is `attempt + 1`. Deduplicated per attempt, so a repeated step queues it once.
pub async fn task_again(
    js: &jetstream::Context,
    job: &Job,
    task: &TaskPlan,
    round: Round,
    attempt: u32,
) -> anyhow::Result<Pending> {
    let mut message = TaskMessage::new(job, task);
    message.attempts_before = attempt;
    message.max_attempts = job.retry.max_attempts.max(attempt + 1);
    let subject = task_subject(job, std::slice::from_ref(task));
    let msg_id = protocol::task_again_msg_id(&job.id, &job.incarnation, &task.id, round, attempt);
    let what = format!("task {} again", task.id);
    send(js, subject, Some(&msg_id), protocol::encode(&message), what).await
}

/// The subject of a message carrying `tasks` of `job`: a key task's when any renders a key
/// frame ([`order::is_key`]).
fn task_subject(job: &Job, tasks: &[TaskPlan]) -> String {
    let key = tasks.iter().any(|task| order::is_key(job, task));
    protocol::task_subject(&job.class, job.priority, &job.id, job.renderer, key)
}

/// Why a batch of tasks was not queued.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The server takes atomic batches of at most this many messages
    /// (`jetstream { limits { batch { max_msgs } } }` in its configuration).
    #[error("the server takes atomic batches of at most {0} messages")]
    TooLarge(usize),
    /// A task of the batch was queued before: the whole batch was, since batches are
    /// atomic (a planning resumed after its batch was committed).
    #[error("the batch was queued before")]
    AlreadyQueued,
    /// Anything else; nothing of the batch was stored.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Queues `tasks` of `job` as one atomic batch: every one of them is stored, or none is
/// (a single task goes as one plain message, which is stored whole or not at all).
/// The messages go out without waiting; the last commits the batch, and its
/// acknowledgement says whether the server stored the whole batch. Each task keeps its
/// `Nats-Msg-Id` (see [`task`]).
pub async fn task_batch(
    client: &async_nats::Client,
    js: &jetstream::Context,
    job: &Job,
    tasks: &[TaskPlan],
    round: Round,
) -> Result<(), BatchError> {
    use async_nats::header::{NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE};
    let Some((last, rest)) = tasks.split_last() else {
        return Ok(());
    };
    if rest.is_empty() {
        // One message is stored whole or not at all: no batch needed, and a batch commit
        // costs the server about 4 ms more (measured), which a single-frame job would feel.
        return Ok(task(js, job, last, round, 0).await?.confirmed().await?);
    }
    let batch = nuid::next().to_string();
    let headers = |task: &TaskPlan, sequence: usize| {
        let mut headers = protocol::headers(Some(&protocol::task_msg_id(
            &job.id,
            &job.incarnation,
            &task.id,
            round,
        )));
        headers.insert(NATS_BATCH_ID, batch.as_str());
        headers.insert(NATS_BATCH_SEQUENCE, sequence.to_string().as_str());
        headers
    };
    for (i, task) in rest.iter().enumerate() {
        let payload = protocol::encode(&TaskMessage::new(job, task));
        let subject = task_subject(job, std::slice::from_ref(task));
        client
            .publish_with_headers(subject, headers(task, i + 1), payload.into())
            .await
            .map_err(|e| anyhow::anyhow!("publishing task {}: {e}", task.id))?;
    }
    let mut commit = headers(last, tasks.len());
    commit.insert(NATS_BATCH_COMMIT, "1");
    let payload = protocol::encode(&TaskMessage::new(job, last));
    let ack = js
        .publish_with_headers(
            task_subject(job, std::slice::from_ref(last)),
            commit,
            payload.into(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("committing the tasks of {}: {e}", job.id))?
        .await;
    let Err(e) = ack else {
        return Ok(());
    };
    // The server's answer to the commit: its error code says what happened to the batch.
    let server = std::error::Error::source(&e)
        .and_then(|source| source.downcast_ref::<async_nats::jetstream::Error>());
    let text = server.map_or_else(|| e.to_string(), ToString::to_string);
    match server.map(|s| s.error_code().0) {
        Some(BATCH_DUPLICATE_MSG_ID) => Err(BatchError::AlreadyQueued),
        Some(BATCH_TOO_LARGE) => {
            let limit = text
                .rsplit(|c: char| !c.is_ascii_digit())
                .find(|part| !part.is_empty())
                .and_then(|digits| digits.parse().ok())
                .unwrap_or(1000);
            Err(BatchError::TooLarge(limit))
        }
        _ => Err(anyhow::anyhow!("the tasks of {} were not queued: {text}", job.id).into()),
    }
}

/// JetStream's error code for an atomic batch with more messages than the server takes.
const BATCH_TOO_LARGE: u64 = 10199;
/// JetStream's error code for an atomic batch holding a message id stored before.
const BATCH_DUPLICATE_MSG_ID: u64 = 10201;

/// Publishes `next`, a task handed back, on the subject it came from, and waits until it
/// is stored (the caller then terminates the delivery it replaces).
pub async fn hand_back(
    js: &jetstream::Context,
    subject: &str,
    next: &TaskMessage,
) -> anyhow::Result<()> {
    let what = format!("hand-back of task {}", next.task);
    send(js, subject.to_string(), None, protocol::encode(next), what)
        .await?
        .confirmed()
        .await
}

/// Hands back a delivery its worker can no longer finish (its lease expired): a negative
/// acknowledgement on the delivery's reply subject makes JetStream deliver the task again
/// at once, to whichever worker pulls next.
///
/// The nak is a request, answered by the consumer's leader once it has taken it, and is
/// sent up to six times more, half a second apart, while none answers (3 to 9 s: with no
/// leader the answer is "no responders" at once, a busy one may not answer within 1 s).
/// A lease that runs out is often the sign of a server lost, and a nak sent while the
/// consumer elects a new leader is dropped (the task would then wait out its ack deadline).
pub async fn nak_delivery(client: &async_nats::Client, reply: &str) -> anyhow::Result<()> {
    use backon::Retryable as _;
    let nak = || async {
        let request = client.request(reply.to_string(), Bytes::from_static(b"-NAK"));
        tokio::time::timeout(NAK_ANSWER, request)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {NAK_ANSWER:?}"))?
            .map_err(anyhow::Error::from)
    };
    nak.retry(
        backon::ConstantBuilder::default()
            .with_delay(std::time::Duration::from_millis(500))
            .with_max_times(6),
    )
    .await
    .map(drop)
    .with_context(|| format!("handing back the delivery {reply}"))
}

/// How long a nak waits for the consumer's answer before it is sent again.
const NAK_ANSWER: std::time::Duration = std::time::Duration::from_secs(1);

/// Publishes a job submission and waits until it is stored. Its `Nats-Msg-Id` is the id
/// plus a token of this submission: a resend of it is deduplicated, while the same id
/// submitted again after `tessera delete` is a new submission (the window would otherwise
/// drop it for two minutes).
pub async fn submission(js: &jetstream::Context, id: &JobId, spec: &JobSpec) -> anyhow::Result<()> {
    let msg_id = format!("{id}:{}", nuid::next());
    send(
        js,
        protocol::SUBMIT_SUBJECT.to_string(),
        Some(&msg_id),
        protocol::encode(spec),
        format!("job {id}"),
    )
    .await?
    .confirmed()
    .await
    .with_context(|| format!("submitting job {id}"))
}

/// Rings the doorbell of `class`: idle workers of the class pull at once, trying the queue
/// of (`priority`, `renderer`) first; `key` says key tasks were among those queued (see
/// [`order::is_key`]).
pub async fn doorbell(
    client: &async_nats::Client,
    class: &Class,
    priority: Priority,
    renderer: RendererKind,
    key: bool,
) {
    let hint = protocol::doorbell_hint(priority, renderer, key);
    if let Err(e) = client
        .publish(protocol::doorbell_subject(class), hint.into())
        .await
    {
        tracing::debug!(error = %e, "ringing the doorbell");
    }
}

/// Sends what core NATS publishes are still buffered (doorbells, cancels): a process that
/// is about to exit (the CLI) calls it, or its last doorbell would never ring.
pub async fn flush(client: &async_nats::Client) {
    if let Err(e) = client.flush().await {
        tracing::debug!(error = %e, "flushing core NATS publishes");
    }
}

/// Tells every worker to stop its renders of `job`.
pub async fn stop_renders(client: &async_nats::Client, job: &JobId) -> anyhow::Result<()> {
    client
        .publish(
            protocol::control_subject(job),
            Bytes::from_static(b"cancel"),
        )
        .await
        .with_context(|| format!("broadcasting the cancel of {job}"))
}

/// Publishes a chunk of attempt `attempt`'s log lines of task `task` (index `index`) of
/// `job` to the logs stream, without waiting: a chunk lost costs a follower some lines,
/// never the stored log. `end` marks the attempt's last chunk.
pub async fn log_chunk(
    client: &async_nats::Client,
    job: &JobId,
    task: (u32, &crate::core::plan::TaskId),
    attempt: u32,
    text: String,
    end: bool,
) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(protocol::LOG_TASK_HEADER, task.1.as_str());
    if end {
        headers.insert(protocol::LOG_END_HEADER, "1");
    }
    let subject = protocol::log_subject(job, task.0, attempt);
    if let Err(e) = client
        .publish_with_headers(subject, headers, Bytes::from(text))
        .await
    {
        tracing::debug!(error = %e, "streaming log lines");
    }
}
