//! One delivery of a task, from the message to its disposition: the checks that may fail
//! or hand it back without running it (malformed, wrong renderer, its last attempt lost
//! with a dead worker, a job this worker has blocklisted), then the attempt, and its
//! report — the log, and what [`finish`] turns into an event and an ack — returned for the
//! slot to send while it takes its next task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use tracing::Instrument as _;

use super::Shared;
use super::attempt::{self, Attempt};
use super::outcome::{Disposition, Outcome, Report, disposition, finish};
use super::running::Stop;
use crate::bus::protocol::{self, Delivery, Event, EventKind, TaskMessage};
use crate::bus::publish::{self, Pending};
use crate::bus::registry;
use crate::core::job::JobId;
use crate::metrics::{DispatchLabels, QueueLabels, RenderLabels};
use crate::render::{BoxFuture, Log};
use crate::store::keys;

/// After this many failed attempts of one job's tasks, a worker stops taking that job.
pub const BLOCKLIST_AFTER: u32 = 3;
/// A task handed back this often by blocklisting workers fails for good (a safety net: a
/// worker hands back only while some live worker has not blocklisted the job).
pub const MAX_HANDBACKS: u32 = 100;

/// Failed attempts per job on this worker, behind the blocklist.
#[derive(Default)]
pub(super) struct Failures(Mutex<HashMap<JobId, u32>>);

impl Failures {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, u32>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, job: &JobId) -> u32 {
        self.lock().get(job).copied().unwrap_or(0)
    }

    fn add(&self, job: &JobId) {
        *self.lock().entry(job.clone()).or_default() += 1;
    }

    /// Forgets `job`'s failures (it ended): the counts never outgrow the running jobs.
    pub(super) fn forget(&self, job: &JobId) {
        self.lock().remove(job);
    }

    /// The jobs this worker no longer takes.
    pub(super) fn blocklist(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, n)| **n >= BLOCKLIST_AFTER)
            .map(|(job, _)| job.to_string())
            .collect()
    }
}

/// What a slot did with what it took.
pub(super) enum Ran {
    /// Failed or disposed of without rendering.
    Handled,
    /// Rendered: what is left is to report it (the log, the event, the acknowledgement),
    /// which the slot lets run while it takes its next task.
    Rendered {
        /// The report.
        report: BoxFuture<'static, ()>,
        /// Whether the attempt ran at least [`REPORT_START_AFTER`]: slots that took their
        /// tasks together then end them together, and their pulls go first.
        long: bool,
    },
    /// Handed back without running (blocklisted job).
    HandedBack,
}

/// Handles one delivery; `idle_worker` when every slot of the worker was idle as this
/// one took it.
pub(super) async fn run(shared: &Arc<Shared>, msg: jetstream::Message, idle_worker: bool) -> Ran {
    let delivered = msg.info().map(|i| i.delivered as u32).unwrap_or(1).max(1);
    let task: TaskMessage = match protocol::decode(&msg.payload) {
        Ok(task) => task,
        Err(e) => {
            tracing::error!(subject = %msg.subject, error = %e, "malformed task message; removing it");
            let _ = msg.ack_with(AckKind::Term).await;
            return Ran::Handled;
        }
    };
    let attempt = task.attempts_before + delivered;
    if let Err(e) = task.check() {
        tracing::error!(job = %task.job, task = %task.task, error = %e, "invalid task; failing it");
        finish(shared, &msg, &task, Report::failed(attempt, e.to_string())).await;
        return Ran::Handled;
    }
    if !shared.config.renderers.contains(&task.renderer) {
        // Only a message whose subject and payload disagree gets here.
        let message = format!(
            "task for renderer {} arrived on {}",
            task.renderer, msg.subject
        );
        finish(shared, &msg, &task, Report::failed(attempt, message)).await;
        return Ran::Handled;
    }
    if attempt > task.max_attempts {
        let message = format!(
            "attempt {} of {} was lost: its worker stopped without reporting",
            attempt - 1,
            task.max_attempts
        );
        finish(shared, &msg, &task, Report::failed(attempt - 1, message)).await;
        return Ran::Handled;
    }
    if shared.failures.count(&task.job) >= BLOCKLIST_AFTER
        && another_worker_can_run(shared, &msg, &task).await
    {
        if task.handbacks >= MAX_HANDBACKS {
            let message = format!(
                "handed back {} times by workers that failed this job's tasks {BLOCKLIST_AFTER} times each",
                task.handbacks
            );
            finish(shared, &msg, &task, Report::failed(attempt - 1, message)).await;
            return Ran::Handled;
        }
        tracing::info!(job = %task.job, task = %task.task, "blocklisted job: handing the task back");
        let report = Report {
            attempt,
            disposition: Disposition::HandBack,
            event: None,
            message: Some("this worker failed the job's tasks too often".into()),
            log: None,
            outputs: Vec::new(),
            frame_ms: None,
            started_ms: None,
        };
        finish(shared, &msg, &task, report).await;
        return Ran::HandedBack;
    }
    let span = tracing::info_span!("task", job = %task.job, task = %task.task, attempt);
    let report = render(shared, &msg, &task, attempt, idle_worker)
        .instrument(span.clone())
        .await;
    let long = report.ran >= REPORT_START_AFTER;
    Ran::Rendered {
        report: Box::pin(report.send(shared.clone(), msg, task).instrument(span)),
        long,
    }
}

/// Runs attempt `attempt` of `task`; returns what its report needs.
async fn render(
    shared: &Shared,
    msg: &jetstream::Message,
    task: &TaskMessage,
    attempt: u32,
    idle_worker: bool,
) -> Rendered {
    // The lease lists the delivery by the time anyone hears it started: a worker killed
    // from then on has its task handed back as soon as its lease runs out.
    let stop = Stop::under(&shared.kill);
    let delivery = Delivery {
        job: task.job.clone(),
        task: task.task.clone(),
        index: task.index,
        attempt,
        subject: msg.subject.to_string(),
        reply: msg
            .reply
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default(),
        incarnation: task.incarnation.clone(),
    };
    let progress = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let running = shared
        .attempts
        .start(delivery, stop.clone(), progress.clone());
    // The lease is rewritten by the heartbeat, which folds the starts and ends of every
    // slot into one write a gap (shorter than `REPORT_START_AFTER`), and writes at once
    // when the start is reported at once.
    match idle_worker {
        true => shared.lease_now.notify_one(),
        false => shared.lease_changed.notify_one(),
    }
    let start_events = Event::tasks(EventKind::TaskStarted, task, attempt, &shared.config.id);
    let began = std::time::Instant::now();
    let metrics = &crate::metrics::METRICS;
    let labels = queue_labels(msg, task);
    metrics
        .started
        .get_or_create(&labels)
        .inc_by(start_events.len() as u64);
    if attempt == 1
        && let Ok(info) = msg.info()
    {
        let stored_ns = info.published.unix_timestamp_nanos();
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let waited = (now_ns - stored_ns).max(0) as f64 / 1e9;
        metrics
            .dispatch
            .get_or_create(&DispatchLabels {
                class: labels.class.clone(),
                priority: labels.priority.clone(),
            })
            .observe(waited);
    }
    metrics.slots("busy", 1);
    metrics.slots("free", -1);

    let (live, lines) = tokio::sync::mpsc::unbounded_channel();
    let log = Log::live(live);
    let streaming = tokio::spawn(stream_log(
        shared.deps.client.clone(),
        task.job.clone(),
        (task.index, task.task.clone()),
        attempt,
        lines,
    ));
    let work = shared.config.cache_dir.join("work").join(format!(
        "{}-{}-{}-{}",
        task.job,
        task.task,
        attempt,
        std::process::id()
    ));
    // On a busy worker (one that was taking tasks, not waiting for them), the start is
    // reported once the attempt has run for `REPORT_START_AFTER`: an attempt that
    // succeeds sooner reports it in its `task.done` instead, which spares the events
    // stream (one synced write at a time) a message per short task. The first attempt of
    // an idle worker reports it at once.
    // `task.started` goes out without waiting; its storage is confirmed before the
    // attempt is reported.
    let mut started = Vec::new();
    if idle_worker {
        started = report_start(shared, &start_events).await;
    }
    let result = {
        let run = attempt::run(
            shared,
            Attempt {
                msg,
                task,
                attempt,
                work: &work,
                log: &log,
                stop: &stop,
                progress: &progress,
            },
        );
        tokio::pin!(run);
        tokio::select! {
            biased;
            result = &mut run => result,
            () = tokio::time::sleep(REPORT_START_AFTER), if !idle_worker => {
                started = report_start(shared, &start_events).await;
                run.await
            }
        }
    };
    // A start not reported yet is, unless the attempt succeeded (and then it is, should
    // its outputs fail to upload).
    let unreported = if !started.is_empty() {
        Vec::new()
    } else if result.is_err() {
        started = report_start(shared, &start_events).await;
        Vec::new()
    } else {
        start_events
    };
    let frame_ms = (began.elapsed().as_millis() as u64) / task.frames.len().max(1) as u64;
    metrics.slots("busy", -1);
    metrics.slots("free", 1);
    metrics
        .render
        .get_or_create(&RenderLabels {
            class: labels.class.clone(),
            renderer: labels.renderer.clone(),
        })
        .observe(began.elapsed().as_secs_f64());
    let (outcome, message, outputs) = match result {
        Ok(outputs) => (Outcome::Succeeded, None, outputs),
        Err((outcome, message)) => {
            log.line(format!("attempt failed: {message}"));
            (outcome, Some(message), Vec::new())
        }
    };
    if outcome == Outcome::Failed {
        shared.failures.add(&task.job);
    }
    Rendered {
        attempt,
        ran: began.elapsed(),
        streaming,
        running,
        started,
        unreported,
        frame_ms,
        log,
        work,
        outcome,
        message,
        outputs,
    }
}

/// How long an attempt runs before its start is reported on its own (see [`render`]).
pub(super) const REPORT_START_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// Publishes the `task.started` events of an attempt without waiting for their storage.
async fn report_start(shared: &Shared, events: &[Event]) -> Vec<anyhow::Result<Pending>> {
    let mut pending = Vec::with_capacity(events.len());
    for event in events {
        pending.push(publish::event_pending(&shared.deps.js, event, None).await);
    }
    pending
}

/// How long a streamed log chunk gathers lines, and how large it grows at most.
const LOG_CHUNK_TIME: std::time::Duration = std::time::Duration::from_millis(250);
const LOG_CHUNK_BYTES: usize = 64 * 1024;

/// Streams an attempt's log lines as they are written, in chunks of at most
/// [`LOG_CHUNK_TIME`], until the log stops sending. The chunk gathered when it stops is
/// marked as the end, so an attempt shorter than a chunk costs one stored message; an
/// empty end mark follows only a log that stopped between chunks.
async fn stream_log(
    client: async_nats::Client,
    job: JobId,
    task: (u32, crate::core::plan::TaskId),
    attempt: u32,
    mut lines: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut open = true;
    let mut sent = false;
    while open {
        let Some(first) = lines.recv().await else {
            break;
        };
        let mut chunk = first + "\n";
        let until = tokio::time::Instant::now() + LOG_CHUNK_TIME;
        while chunk.len() < LOG_CHUNK_BYTES {
            match tokio::time::timeout_at(until, lines.recv()).await {
                Ok(Some(line)) => {
                    chunk.push_str(&line);
                    chunk.push('\n');
                }
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        publish::log_chunk(&client, &job, (task.0, &task.1), attempt, chunk, !open).await;
        sent = true;
    }
    // An attempt that wrote no line (a noop task) streams nothing at all.
    if sent && open {
        publish::log_chunk(
            &client,
            &job,
            (task.0, &task.1),
            attempt,
            String::new(),
            true,
        )
        .await;
    }
}

/// The metrics labels of the queue `msg` came from.
pub(super) fn queue_labels(msg: &jetstream::Message, task: &TaskMessage) -> QueueLabels {
    match protocol::parse_task_subject(&msg.subject) {
        Some((class, priority)) => QueueLabels::of(&class, priority, task.renderer),
        None => QueueLabels {
            class: "unknown".into(),
            priority: "unknown".into(),
            renderer: task.renderer.as_str().into(),
        },
    }
}

/// A rendered attempt, to be reported.
struct Rendered {
    attempt: u32,
    /// How long it ran.
    ran: std::time::Duration,
    /// Its number among the running attempts: it stays listed (the lease shows it) until
    /// its outputs are uploaded.
    running: u64,
    started: Vec<anyhow::Result<Pending>>,
    /// Its `task.started` events, if they were not published (it succeeded first).
    unreported: Vec<Event>,
    frame_ms: u64,
    log: Log,
    /// The log's live stream, ended by the report (after the slot's next pull).
    streaming: tokio::task::JoinHandle<()>,
    work: std::path::PathBuf,
    outcome: Outcome,
    message: Option<String>,
    /// Its outputs, checked, to be uploaded.
    outputs: Vec<attempt::Output>,
}

impl Rendered {
    /// Uploads the outputs and stores the log, then publishes the attempt's event and
    /// disposes of the delivery; `task.started` is confirmed stored first. The slot renders
    /// its next task meanwhile. An output that cannot be uploaded fails the attempt.
    async fn send(mut self, shared: Arc<Shared>, msg: jetstream::Message, task: TaskMessage) {
        let attempt = self.attempt;
        let outputs = std::mem::take(&mut self.outputs);
        let outputs = match attempt::upload(&shared, outputs).await {
            Ok(keys) => keys,
            Err(why) => {
                self.log.line(format!("attempt failed: {why}"));
                self.outcome = Outcome::Failed;
                self.message = Some(why);
                shared.failures.add(&task.job);
                // A failure has its start reported on its own, before it.
                let unreported = std::mem::take(&mut self.unreported);
                self.started
                    .extend(report_start(&shared, &unreported).await);
                Vec::new()
            }
        };
        self.log.end_live();
        let _ = (&mut self.streaming).await;
        shared.attempts.end(&task.job, self.running);
        shared.lease_changed.notify_one();
        for started in self.started {
            if let Err(e) = async { started?.confirmed().await }.await {
                tracing::warn!(error = %e, "publishing task.started");
            }
        }
        // Each task of a bundle keeps its own log.
        let log_key = keys::attempt_log(&task.job, &task.task, attempt);
        let text = Bytes::from(self.log.text());
        let mut keys = vec![log_key.clone()];
        keys.extend(
            task.bundle
                .iter()
                .map(|b| keys::attempt_log(&task.job, &b.task, attempt)),
        );
        for key in keys {
            if let Err(e) = shared.deps.store.put(&key, text.clone()).await {
                tracing::warn!(error = %e, "uploading the log");
            }
        }
        let _ = tokio::fs::remove_dir_all(&self.work).await;
        let disposition = disposition(self.outcome, attempt, task.max_attempts);
        let event = match (self.outcome, disposition) {
            (Outcome::Canceled, _) => None,
            (_, Disposition::Ack) => Some(EventKind::TaskDone),
            (_, Disposition::Retry { .. } | Disposition::HandBack) => Some(EventKind::TaskRetry),
            (_, Disposition::Reject) => Some(EventKind::TaskFailed),
        };
        let report = Report {
            attempt,
            disposition,
            event,
            message: self.message,
            log: Some(log_key),
            outputs,
            frame_ms: Some(self.frame_ms),
            started_ms: self.unreported.first().map(|e| e.time_ms),
        };
        finish(&shared, &msg, &task, report).await;
    }
}

/// Whether a live worker other than this one serves the task's class and renderer and has
/// not blocklisted its job.
async fn another_worker_can_run(
    shared: &Shared,
    msg: &jetstream::Message,
    task: &TaskMessage,
) -> bool {
    let Some((class, _)) = protocol::parse_task_subject(&msg.subject) else {
        return false;
    };
    match registry::live_workers(&shared.deps.js).await {
        Ok(workers) => workers.iter().any(|w| {
            w.id != shared.config.id
                && w.renderers.contains(&task.renderer)
                && w.classes.contains(&class)
                && !w.blocklist.iter().any(|j| j == task.job.as_str())
        }),
        Err(_) => false,
    }
}
