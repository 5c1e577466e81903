//! Every subject, filter, consumer name and message id Tessera uses, built and parsed in
//! one place.

use super::messages::EventKind;
use crate::core::job::{Class, JobId, Priority, RendererKind};
use crate::core::plan::TaskId;
use crate::core::state::Round;

/// The subject jobs are submitted on.
pub const SUBMIT_SUBJECT: &str = "tessera.jobs.submit";

/// `tessera.tasks.<class>.<priority>.<job>.<renderer>`: the design's subject plus the
/// renderer, so that each worker pulls only what it can run; a key task (a frame the job
/// asks for first) has `.key` after it, so that it goes through the queue's key consumer,
/// whose prioritized pulls give it to the fastest idle workers.
pub fn task_subject(
    class: &Class,
    priority: Priority,
    job: &JobId,
    renderer: RendererKind,
    key: bool,
) -> String {
    let key = if key { ".key" } else { "" };
    format!("tessera.tasks.{class}.{priority}.{job}.{renderer}{key}")
}

/// The class and priority of a task subject.
pub fn parse_task_subject(subject: &str) -> Option<(Class, Priority)> {
    let mut tokens = subject.strip_prefix("tessera.tasks.")?.split('.');
    let class = Class::parse(tokens.next()?).ok()?;
    let priority = Priority::parse(tokens.next()?)?;
    Some((class, priority))
}

/// The job of a task subject.
pub fn parse_task_job(subject: &str) -> Option<JobId> {
    let mut tokens = subject.strip_prefix("tessera.tasks.")?.split('.');
    JobId::parse(tokens.nth(2)?).ok()
}

/// The queue of a task subject: its class, priority and renderer.
pub fn parse_task_queue(subject: &str) -> Option<(Class, Priority, RendererKind)> {
    let (class, priority) = parse_task_subject(subject)?;
    let renderer = RendererKind::parse(subject.strip_prefix("tessera.tasks.")?.split('.').nth(3)?)?;
    Some((class, priority, renderer))
}

/// Whether a task subject is a key task's (see [`task_subject`]).
pub fn is_key_task_subject(subject: &str) -> bool {
    subject
        .strip_prefix("tessera.tasks.")
        .is_some_and(|rest| rest.split('.').nth(4) == Some("key"))
}

/// The filter of the consumer serving (`class`, `priority`, `renderer`).
pub fn task_filter(class: &Class, priority: Priority, renderer: RendererKind) -> String {
    format!("tessera.tasks.{class}.{priority}.*.{renderer}")
}

/// The filter of the key consumer serving (`class`, `priority`, `renderer`): its key
/// tasks, one token longer than [`task_filter`]'s, so the two never overlap.
pub fn key_filter(class: &Class, priority: Priority, renderer: RendererKind) -> String {
    format!("tessera.tasks.{class}.{priority}.*.{renderer}.key")
}

/// Every task of (`class`, `priority`), key tasks too, of every job and renderer.
pub fn priority_tasks_filter(class: &Class, priority: Priority) -> String {
    format!("tessera.tasks.{class}.{priority}.>")
}

/// Every task subject of `job`, whatever its class, priority and renderer, key tasks too
/// (for purging).
pub fn job_tasks_filter(job: &JobId) -> String {
    format!("tessera.tasks.*.*.{job}.>")
}

/// The durable consumer serving (`class`, `priority`, `renderer`):
/// `tasks-<class>-<priority>-<renderer>`.
pub fn task_consumer(class: &Class, priority: Priority, renderer: RendererKind) -> String {
    format!("tasks-{class}-{priority}-{renderer}")
}

/// The durable key consumer serving (`class`, `priority`, `renderer`):
/// `keys-<class>-<priority>-<renderer>`.
pub fn key_consumer(class: &Class, priority: Priority, renderer: RendererKind) -> String {
    format!("keys-{class}-{priority}-{renderer}")
}

/// The queue a task consumer serves, from its name (the inverse of [`task_consumer`]).
pub fn parse_task_consumer(name: &str) -> Option<(Class, Priority, RendererKind)> {
    parse_queue_consumer(name, "tasks-")
}

/// The queue a task or key consumer serves, from its name.
pub fn parse_any_task_consumer(name: &str) -> Option<(Class, Priority, RendererKind)> {
    parse_task_consumer(name).or_else(|| parse_queue_consumer(name, "keys-"))
}

fn parse_queue_consumer(name: &str, prefix: &str) -> Option<(Class, Priority, RendererKind)> {
    let rest = name.strip_prefix(prefix)?;
    let (rest, renderer) = rest.rsplit_once('-')?;
    let (class, priority) = rest.rsplit_once('-')?;
    Some((
        Class::parse(class).ok()?,
        Priority::parse(priority)?,
        RendererKind::parse(renderer)?,
    ))
}

/// The doorbell hint: which queue just got tasks (`<priority>.<renderer>`), and `.key`
/// after it when key tasks were among them.
pub fn doorbell_hint(priority: Priority, renderer: RendererKind, key: bool) -> String {
    let key = if key { ".key" } else { "" };
    format!("{priority}.{renderer}{key}")
}

/// `tessera.events.<job>.<kind>`.
pub fn event_subject(job: &str, kind: EventKind) -> String {
    format!("tessera.events.{job}.{}", kind.as_str())
}

/// The job of an event subject (`tessera.events.<job>.…`).
pub fn parse_event_job(subject: &str) -> Option<JobId> {
    let rest = subject.strip_prefix("tessera.events.")?;
    JobId::parse(rest.split('.').next()?).ok()
}

/// Every event of every job, as the events stream stores them.
pub const EVERY_STORED_EVENT: &str = "tessera.events.>";

/// Every job-level event of every job (`job.accepted`, `job.done`, …).
pub const EVERY_JOB_LEVEL_EVENT: &str = "tessera.events.*.job.>";

/// The kind of an event from its subject (`tessera.events.<job>.<kind>`).
pub fn parse_event_kind(subject: &str) -> Option<EventKind> {
    let rest = subject.strip_prefix("tessera.events.")?;
    let (_, kind) = rest.split_once('.')?;
    serde_json::from_value(serde_json::Value::String(kind.to_string())).ok()
}

/// The events of `kind` of every job (benchmarks watch starts across jobs).
pub fn every_job_events_filter(kind: EventKind) -> String {
    format!("tessera.events.*.{}", kind.as_str())
}

/// Whether `filter` is a task consumer's filter of the layout before the renderer token
/// (`tessera.tasks.<class>.<priority>.>`), which overlaps today's on the work queue.
pub fn is_legacy_task_filter(filter: &str) -> bool {
    filter.starts_with("tessera.tasks.") && filter.ends_with(".>")
}

/// Every event of `job` as published (what a core NATS subscriber names).
pub fn job_events_filter(job: &str) -> String {
    format!("tessera.events.{job}.>")
}

/// Partitions of the events stream: the stream stores the events of a job under
/// `tessera.events.<partition>.<job>.<kind>`, its partition a hash of the job id (the
/// stream's subject transform, `streams/TESSERA_EVENTS.json`, must say the same number).
pub const EVENT_PARTITIONS: u32 = 8;

/// Every event of `job` as the events stream stores it (what a stream consumer names).
pub fn stored_job_events_filter(job: &str) -> String {
    format!("tessera.events.*.{job}.>")
}

/// The subject under which the events stream stores `job`'s events of `kind`.
pub fn stored_event_subject(job: &str, kind: EventKind) -> String {
    format!(
        "tessera.events.{}.{job}.{}",
        event_partition(job),
        kind.as_str()
    )
}

/// The partition of `job`'s events, as the server's `{{partition(n,1)}}` computes it: the
/// 32-bit FNV-1a hash of the job id, modulo [`EVENT_PARTITIONS`].
pub fn event_partition(job: &str) -> u32 {
    let hash = job.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    hash % EVENT_PARTITIONS
}

/// The collectors' durable consumer of partition `partition` (as
/// `streams/consumer-collector.json` names it).
pub fn collector_consumer(partition: u32) -> String {
    format!("collector-{partition}")
}

/// Every event stored in partition `partition`.
pub fn partition_events_filter(partition: u32) -> String {
    format!("tessera.events.{partition}.>")
}

/// Events stored before the stream was partitioned (`tessera.events.<job>.<kind>`, one
/// token fewer than today's).
pub const UNPARTITIONED_EVENTS: &str = "tessera.events.*.*.*";

/// The subjects of `job`'s keys in the jobs bucket: its record (`<job>`) and its task
/// pages (`<job>.p<n>`).
pub fn job_record_subjects(bucket: &str, job: &JobId) -> [String; 2] {
    [
        format!("$KV.{bucket}.{job}"),
        format!("$KV.{bucket}.{job}.>"),
    ]
}

/// `tessera.control.<job>`.
pub fn control_subject(job: &JobId) -> String {
    format!("tessera.control.{job}")
}

/// `tessera.doorbell.<class>`.
pub fn doorbell_subject(class: &Class) -> String {
    format!("tessera.doorbell.{class}")
}

/// The message id of a task queued again by the collector after attempt `attempt`.
pub fn task_again_msg_id(
    job: &JobId,
    incarnation: &str,
    task: &TaskId,
    round: Round,
    attempt: u32,
) -> String {
    format!("{}:a{attempt}", task_msg_id(job, incarnation, task, round))
}

/// The `Nats-Msg-Id` of a task message: the same task of the same [`Round`] (0 and 0 when
/// planned; the generation is n after the n-th `tessera retry`, the withdrawals m after
/// the m-th suspend or priority change) of the same incarnation of the job is deduplicated
/// within the window; a job deleted and submitted again is a new incarnation.
pub fn task_msg_id(job: &JobId, incarnation: &str, task: &TaskId, round: Round) -> String {
    let mut id = format!("{job}:{incarnation}:{task}");
    if round.generation > 0 {
        id.push_str(&format!(":r{}", round.generation));
    }
    if round.withdrawals > 0 {
        id.push_str(&format!(":w{}", round.withdrawals));
    }
    id
}

/// The `Nats-Msg-Id` of the announcement of `job`'s change number `withdrawals` (a
/// suspend, resume or priority change): a change finished by running it again announces
/// it once.
pub fn changed_msg_id(job: &JobId, incarnation: &str, withdrawals: u32, what: &str) -> String {
    format!("{job}:{incarnation}:job.changed:{withdrawals}:{what}")
}

/// Parses a doorbell hint: the queue, and whether key tasks were among those queued.
pub fn parse_doorbell_hint(payload: &[u8]) -> Option<(Priority, RendererKind, bool)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (priority, rest) = text.split_once('.')?;
    let (renderer, key) = match rest.strip_suffix(".key") {
        Some(renderer) => (renderer, true),
        None => (rest, false),
    };
    Some((
        Priority::parse(priority)?,
        RendererKind::parse(renderer)?,
        key,
    ))
}

/// The subject a worker's lease is written to: its key in the `tessera-workers` bucket
/// (written directly, because a KV put cannot carry a per-message lifetime).
pub fn lease_subject(bucket: &str, worker: &str) -> String {
    format!("$KV.{bucket}.{worker}")
}

/// Whether `reply` is the acknowledgement subject of a task delivery (`$JS.ACK.`, in the
/// v1 or the v2 layout, naming `stream` and then a task consumer): the only subjects a
/// collector handing back an expired lease's deliveries publishes to, whatever a lease says.
pub fn is_task_ack_subject(reply: &str, stream: &str) -> bool {
    let tokens: Vec<&str> = reply.split('.').collect();
    tokens.len() >= 4
        && tokens[..2] == ["$JS", "ACK"]
        && tokens
            .iter()
            .all(|t| !t.is_empty() && *t != "*" && *t != ">" && !t.contains(' '))
        && tokens
            .windows(2)
            .skip(2)
            .any(|w| w[0] == stream && parse_any_task_consumer(w[1]).is_some())
}

/// The key that one collector creates to claim the hand-back of a lease that expired at
/// `revision` (a worker id has no dots, so a claim is never taken for a worker).
pub fn lease_claim_key(worker: &str, revision: u64) -> String {
    format!("claim.{worker}.{revision}")
}

/// Every job's control subject, `tessera.control.*`: what a worker listens on.
pub const CONTROL_ALL: &str = "tessera.control.*";

/// The job a control subject is about.
pub fn parse_control_subject(subject: &str) -> Option<JobId> {
    JobId::parse(subject.strip_prefix("tessera.control.")?).ok()
}

/// The `Nats-Msg-Id` of the announcement that `job` (of `incarnation`) was accepted: a
/// resumed planning announces it once.
pub fn accepted_msg_id(job: &JobId, incarnation: &str) -> String {
    format!("{job}:{incarnation}:job.accepted")
}

/// The `Nats-Msg-Id` of the announcement of `job`'s retry number `generation`: a retry
/// finished by a second `tessera retry` announces it once.
pub fn retried_msg_id(job: &JobId, incarnation: &str, generation: u32) -> String {
    format!("{job}:{incarnation}:job.retried:{generation}")
}

/// The `Nats-Msg-Id` of the event that ended `job` at `finished_ms`: a collector restarted
/// between recording the end and announcing it does not announce twice.
pub fn end_msg_id(job: &JobId, incarnation: &str, kind: &str, finished_ms: u64) -> String {
    format!("{job}:{incarnation}:{kind}:{finished_ms}")
}

/// The subject attempt `attempt` of task `index` of `job` streams its log on.
pub fn log_subject(job: &JobId, index: u32, attempt: u32) -> String {
    format!("tessera.logs.{job}.{index}.{attempt}")
}

/// The streamed logs of `job`: every task's, task `index`'s, or one attempt's.
pub fn log_filter(job: &JobId, index: Option<u32>, attempt: Option<u32>) -> String {
    match (index, attempt) {
        (Some(index), Some(attempt)) => log_subject(job, index, attempt),
        (Some(index), None) => format!("tessera.logs.{job}.{index}.*"),
        (None, _) => format!("tessera.logs.{job}.>"),
    }
}

/// The task index and attempt of a streamed log's subject.
pub fn parse_log_subject(subject: &str) -> Option<(u32, u32)> {
    let mut tokens = subject.strip_prefix("tessera.logs.")?.rsplit('.');
    let attempt = tokens.next()?.parse().ok()?;
    let index = tokens.next()?.parse().ok()?;
    Some((index, attempt))
}

/// The header naming a streamed log chunk's task id.
pub const LOG_TASK_HEADER: &str = "Tessera-Task";
/// The header of an attempt's last log chunk.
pub const LOG_END_HEADER: &str = "Tessera-Log-End";
