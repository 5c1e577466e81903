//! The worker: stateless; each free slot takes one task (highest priority first, classes
//! in preference order, never pre-fetching), fetches the scene through a local
//! content-addressed cache, runs the renderer, uploads the outputs attempt-scoped and the
//! log, publishes the outcome, and acks. While a render runs it sends progress acks well
//! inside the consumer's ack deadline, so only a dead worker loses its task — and then
//! within seconds.
//!
//! What JetStream is told after an attempt is decided in one pure function,
//! [`disposition`]. Shutdown drains in two phases: stop pulling, let renders finish within
//! the grace period, then stop them and hand their tasks back for immediate redelivery.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Deps;
use crate::core::job::{Class, JobId, Priority, RendererKind};
use crate::bus::protocol::{self, Event, EventKind, TaskMessage};
use crate::render::{self, Log, RenderError, Request};
use crate::store::package::Cache;
use crate::store::keys;
use crate::bus::streams;

/// A worker's validated configuration.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique worker id (shown in events and `tessera workers`).
    pub id: String,
    /// Classes served, in preference order.
    pub classes: Vec<Class>,
    /// Tasks run at once.
    pub slots: usize,
    /// Threads each slot's renderer may use.
    pub threads: usize,
    /// Local blob cache and work folders.
    pub cache_dir: PathBuf,
    /// Renderers this worker runs.
    pub renderers: Vec<RendererKind>,
    /// The task consumers' ack deadline.
    pub ack_wait: Duration,
    /// How long renders may finish after SIGTERM before they are stopped.
    pub grace: Duration,
    /// How often an idle slot polls when no doorbell rings.
    pub idle_poll: Duration,
    /// Deliveries after which JetStream gives up on a task, if not the definition's.
    pub max_deliver: Option<i64>,
}

/// What the worker tells JetStream about one delivery of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done; never redeliver.
    Ack,
    /// Transient failure; redeliver after `delay` (counts as an attempt).
    Retry {
        /// Wait before the next attempt.
        delay: Duration,
    },
    /// Hand back for immediate redelivery to another worker (shutdown).
    HandBack,
    /// Permanent failure; publish the failure event and stop redelivery.
    Reject,
}

/// How an attempt ended, as far as the disposition cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Outputs uploaded.
    Succeeded,
    /// The attempt failed (renderer error, timeout); another may succeed.
    Failed,
    /// The input can never render.
    Invalid,
    /// The worker is shutting down.
    ShuttingDown,
    /// The job was canceled.
    Canceled,
}

/// The delay before retry `attempt + 1`: 1 s, 2 s, 4 s … capped at 60 s.
pub fn retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// The disposition of attempt `attempt` (1-based) of a task allowed `max_attempts`.
pub fn disposition(outcome: Outcome, attempt: u32, max_attempts: u32) -> Disposition {
    match outcome {
        Outcome::Succeeded | Outcome::Canceled => Disposition::Ack,
        Outcome::Invalid => Disposition::Reject,
        Outcome::ShuttingDown => Disposition::HandBack,
        Outcome::Failed if attempt < max_attempts => Disposition::Retry {
            delay: retry_delay(attempt),
        },
        Outcome::Failed => Disposition::Reject,
    }
}

/// A running attempt: its number in this worker, its task id, its cancel token.
type Running = (u64, String, CancellationToken);

struct Shared {
    deps: Deps,
    config: WorkerConfig,
    cache: Cache,
    /// One consumer per (class, priority, renderer) served.
    consumers: HashMap<Queue, PullConsumer>,
    /// Doorbell hints: a queue that just got tasks.
    doorbell: broadcast::Sender<Queue>,
    /// Running attempts by job (id, task, cancel token), so a cancel reaches them and the
    /// registry lists them.
    running: Mutex<HashMap<JobId, Vec<Running>>>,
    /// When the worker started.
    started_ms: u64,
    /// Failed attempts per job, for the blocklist.
    failures: Mutex<HashMap<JobId, u32>>,
    /// Numbers running attempts, to find them again in `running`.
    next_attempt_id: std::sync::atomic::AtomicU64,
    /// Cancelled when the grace period after shutdown ends.
    kill: CancellationToken,
}

/// Runs the worker until `shutdown` (then drains).
pub async fn run(
    deps: Deps,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cache = Cache::new(config.cache_dir.clone())
        .with_context(|| format!("creating the cache in {}", config.cache_dir.display()))?;
    let mut consumers = HashMap::new();
    for class in &config.classes {
        for priority in Priority::ALL {
            for &renderer in &config.renderers {
                let consumer = streams::task_consumer(
                    &deps.js,
                    class,
                    priority,
                    renderer,
                    streams::Overrides {
                        ack_wait: Some(config.ack_wait),
                        max_deliver: config.max_deliver,
                    },
                )
                .await?;
                consumers.insert(
                    Queue {
                        class: class.clone(),
                        priority,
                        renderer,
                    },
                    consumer,
                );
            }
        }
    }
    let shared = Arc::new(Shared {
        deps: deps.clone(),
        cache,
        consumers,
        doorbell: broadcast::channel(64).0,
        running: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
        started_ms: protocol::now_ms(),
        next_attempt_id: std::sync::atomic::AtomicU64::new(0),
        kill: CancellationToken::new(),
        config,
    });
    let tracker = TaskTracker::new();
    let listeners = CancellationToken::new();

    for class in shared.config.classes.clone() {
        let mut bell = deps
            .client
            .subscribe(protocol::doorbell_subject(&class))
            .await?;
        let (shared, stop) = (shared.clone(), listeners.clone());
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    msg = bell.next() => match msg {
                        Some(msg) => {
                            if let Some((priority, renderer)) = protocol::parse_doorbell_hint(&msg.payload) {
                                let queue = Queue { class: class.clone(), priority, renderer };
                                let _ = shared.doorbell.send(queue);
                            }
                        }
                        None => break,
                    },
                }
            }
        });
    }
    let mut control = deps.client.subscribe("tessera.control.*").await?;
    {
        let (shared, stop) = (shared.clone(), listeners.clone());
        tracker.spawn(async move {
            loop {
                let msg = tokio::select! {
                    () = stop.cancelled() => break,
                    msg = control.next() => match msg { Some(m) => m, None => break },
                };
                let Some(job) = msg.subject.as_str().strip_prefix("tessera.control.") else {
                    continue;
                };
                let Ok(job) = JobId::parse(job) else { continue };
                let tokens = shared
                    .running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&job)
                    .cloned();
                for (_, _, token) in tokens.unwrap_or_default() {
                    token.cancel();
                }
            }
        });
    }

    {
        let (shared, stop) = (shared.clone(), listeners.clone());
        tracker.spawn(async move { heartbeat(&shared, stop).await });
    }

    tracing::info!(
        worker = %shared.config.id,
        classes = ?shared.config.classes.iter().map(Class::as_str).collect::<Vec<_>>(),
        slots = shared.config.slots,
        renderers = ?shared.config.renderers,
        "worker ready"
    );
    let slots = TaskTracker::new();
    for slot in 0..shared.config.slots {
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        slots.spawn(async move { slot_loop(shared, slot, shutdown).await });
    }
    slots.close();

    shutdown.cancelled().await;
    tracing::info!(grace = ?shared.config.grace, "draining: no new tasks; running renders may finish");
    tokio::select! {
        () = slots.wait() => {}
        () = tokio::time::sleep(shared.config.grace) => {
            tracing::warn!("grace period over: stopping renders and handing their tasks back");
            shared.kill.cancel();
            slots.wait().await;
        }
    }
    listeners.cancel();
    tracker.close();
    tracker.wait().await;
    tracing::info!("worker stopped");
    Ok(())
}

/// A queue a worker pulls from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Queue {
    /// Hardware class.
    pub class: Class,
    /// Priority.
    pub priority: Priority,
    /// Renderer.
    pub renderer: RendererKind,
}

/// The order in which a slot's `pick`-th pick looks at the priorities — the starvation
/// guard. Of every five picks, picks 0, 1 and 3 look at high first, pick 2 at normal first
/// and pick 4 at low first; a pick whose first choice is empty falls back to the others,
/// most urgent first. Under a constant flow of high-priority work, normal and low work
/// each still get at least one pick in five of every slot.
pub fn priority_order(pick: u64) -> [Priority; 3] {
    use Priority::*;
    match pick % 5 {
        2 => [Normal, High, Low],
        4 => [Low, High, Normal],
        _ => [High, Normal, Low],
    }
}

/// Every queue of the worker in the order a pick looks at them: classes in preference
/// order, then priorities in `order`, then renderers — with `hint` (a queue whose doorbell
/// just rang while the slot was idle) first.
pub fn pick_order(
    classes: &[Class],
    renderers: &[RendererKind],
    order: [Priority; 3],
    hint: Option<&Queue>,
) -> Vec<Queue> {
    let mut queues: Vec<Queue> = hint.into_iter().cloned().collect();
    for class in classes {
        for priority in order {
            for &renderer in renderers {
                let queue = Queue {
                    class: class.clone(),
                    priority,
                    renderer,
                };
                if Some(&queue) != hint {
                    queues.push(queue);
                }
            }
        }
    }
    queues
}

async fn slot_loop(shared: Arc<Shared>, slot: usize, shutdown: CancellationToken) {
    let mut bell = shared.doorbell.subscribe();
    let mut picks: u64 = 0;
    let mut hint: Option<Queue> = None;
    while !shutdown.is_cancelled() {
        let order = pick_order(
            &shared.config.classes,
            &shared.config.renderers,
            priority_order(picks),
            hint.take().as_ref(),
        );
        match take_task(&shared, &order).await {
            Some(msg) => {
                picks += 1;
                if run_task(&shared, msg).await == Ran::HandedBack {
                    // Let the others take it before this slot pulls again.
                    tokio::time::sleep(shared.config.idle_poll).await;
                }
            }
            None => {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    rung = bell.recv() => hint = rung.ok(),
                    () = tokio::time::sleep(shared.config.idle_poll) => {}
                }
            }
        }
    }
    tracing::debug!(slot, "slot stopped");
}

/// One task from the first non-empty queue of `order`; never more.
async fn take_task(shared: &Shared, order: &[Queue]) -> Option<jetstream::Message> {
    for queue in order {
        let Some(consumer) = shared.consumers.get(queue) else {
            continue;
        };
        match pull_one(consumer).await {
            Ok(Pull {
                message: Some(msg), ..
            }) => return Some(msg),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(?queue, error = %e, "fetching a task");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    None
}

/// How long the pull that clears a parked request stays open.
const SWEEP_EXPIRES: Duration = Duration::from_millis(100);

/// At most one message from `consumer`, without waiting when it has none.
///
/// A no-wait pull normally ends at once, with a message or "no messages". nats-server
/// parks it instead, with no expiry, when it thinks messages are pending but has none to
/// give: the loser of a race for the last message, a consumer at its ack-pending limit,
/// and, on 2.9, every pull after a job's tasks were purged (a purge by job leaves the
/// consumer's count of pending messages stale). Two things follow from a parked pull:
///
/// - Dropped, the request would stay in the consumer's waiting list without interest. On
///   servers before 2.10.14, a redelivery (a nak's delay or an ack deadline running out)
///   that meets such a request is lost, and the message comes back one ack deadline later
///   as a first delivery (nats-server #5305): a late retry whose attempt number restarts
///   at 1. A short pull that expires makes the server drop the orphaned request while it
///   has no redelivery to give; a task that is due comes back through it.
/// - A stale count makes every later pull on the queue park too, costing each idle scan
///   half a second. Reading the consumer's info makes the server count again.
pub async fn pull_one(consumer: &jetstream::consumer::PullConsumer) -> anyhow::Result<Pull> {
    async fn first<E: std::fmt::Display>(
        batch: impl std::future::Future<Output = Result<jetstream::consumer::pull::Batch, E>>,
    ) -> anyhow::Result<Option<jetstream::Message>> {
        let mut batch = batch.await.map_err(|e| anyhow::anyhow!("{e}"))?;
        batch
            .next()
            .await
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
    let no_wait = first(consumer.fetch().max_messages(1).messages());
    if let Ok(result) = tokio::time::timeout(FETCH_TIMEOUT, no_wait).await {
        return Ok(Pull {
            message: result?,
            parked: false,
        });
    }
    tracing::debug!(consumer = %consumer.cached_info().name, "a no-wait pull was parked; sweeping it");
    let sweep = first(
        consumer
            .batch()
            .max_messages(1)
            .expires(SWEEP_EXPIRES)
            .messages(),
    );
    // The server ends the sweep at its expiry; the margin only guards against a lost reply.
    let swept = tokio::time::timeout(SWEEP_EXPIRES + FETCH_TIMEOUT, sweep)
        .await
        .unwrap_or(Ok(None));
    if let Err(e) = consumer.get_info().await {
        tracing::debug!(error = %e, "reading the consumer's info after a parked pull");
    }
    Ok(Pull {
        message: swept?,
        parked: true,
    })
}

/// What [`pull_one`] got.
#[derive(Debug)]
pub struct Pull {
    /// The task, if the queue had one.
    pub message: Option<jetstream::Message>,
    /// Whether the server parked the no-wait pull (see [`pull_one`]).
    pub parked: bool,
}

/// Keeps this worker's entry in the registry fresh until `stop`, then removes it.
async fn heartbeat(shared: &Shared, stop: CancellationToken) {
    let kv = match streams::workers_bucket(&shared.deps.js).await {
        Ok(kv) => kv,
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "no worker registry; `tessera workers` will not list this worker"
            );
            return;
        }
    };
    let host = crate::farm::hostname();
    loop {
        let running = shared
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flat_map(|(job, attempts)| {
                attempts
                    .iter()
                    .map(move |(_, task, _)| format!("{job}/{task}"))
            })
            .collect();
        let info = protocol::WorkerInfo {
            schema: protocol::SCHEMA,
            id: shared.config.id.clone(),
            host: host.clone(),
            classes: shared.config.classes.clone(),
            renderers: shared.config.renderers.clone(),
            slots: shared.config.slots as u32,
            running,
            blocklist: shared
                .failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(_, n)| **n >= BLOCKLIST_AFTER)
                .map(|(job, _)| job.to_string())
                .collect(),
            started_ms: shared.started_ms,
            heartbeat_ms: protocol::now_ms(),
        };
        if let Err(e) = kv
            .put(&shared.config.id, protocol::encode(&info).into())
            .await
        {
            tracing::warn!(error = %e, "refreshing the registry entry");
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(protocol::HEARTBEAT) => {}
        }
    }
    let _ = kv.delete(&shared.config.id).await;
}

/// How long a no-wait pull may take before the queue is taken for empty.
const FETCH_TIMEOUT: Duration = Duration::from_millis(500);

/// After this many failed attempts of one job's tasks, a worker stops taking that job.
pub const BLOCKLIST_AFTER: u32 = 3;
/// A task handed back this often by blocklisting workers fails for good (a safety net: a
/// worker hands back only while some live worker has not blocklisted the job).
pub const MAX_HANDBACKS: u32 = 100;

/// What a worker reports about one delivery, and how it disposes of it.
struct Report {
    attempt: u32,
    disposition: Disposition,
    event: Option<EventKind>,
    message: Option<String>,
    log: Option<String>,
    outputs: Vec<String>,
}

impl Report {
    fn failed(attempt: u32, message: String) -> Report {
        Report {
            attempt,
            disposition: Disposition::Reject,
            event: Some(EventKind::TaskFailed),
            message: Some(message),
            log: None,
            outputs: Vec::new(),
        }
    }
}

/// Whether a slot rendered what it took or handed it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// Rendered, failed or disposed of.
    Handled,
    /// Handed back without running (blocklisted job).
    HandedBack,
}

async fn run_task(shared: &Shared, msg: jetstream::Message) -> Ran {
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
        finish(shared, &msg, &task, Report::failed(attempt, e)).await;
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
    let failures = shared
        .failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&task.job)
        .copied();
    if failures.unwrap_or(0) >= BLOCKLIST_AFTER && another_worker_can_run(shared, &msg, &task).await
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
        };
        finish(shared, &msg, &task, report).await;
        return Ran::HandedBack;
    }

    let span = tracing::info_span!("task", job = %task.job, task = %task.task, attempt);
    let _enter = span.enter();
    let started = Event::task(EventKind::TaskStarted, &task, attempt, &shared.config.id);
    if let Err(e) = protocol::publish_event(&shared.deps.js, &started).await {
        tracing::warn!(error = %e, "publishing task.started");
    }

    let cancel = shared.kill.child_token();
    let job_cancel = CancellationToken::new();
    let running_id = shared
        .next_attempt_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    shared
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(task.job.clone())
        .or_default()
        .push((running_id, task.task.to_string(), job_cancel.clone()));

    let log = Log::default();
    let work = shared.config.cache_dir.join("work").join(format!(
        "{}-{}-{}-{}",
        task.job,
        task.task,
        attempt,
        std::process::id()
    ));
    let result = attempt_render(
        shared,
        &msg,
        &task,
        attempt,
        &work,
        &log,
        &cancel,
        &job_cancel,
    )
    .await;
    {
        let mut running = shared.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tokens) = running.get_mut(&task.job) {
            tokens.retain(|(id, _, _)| *id != running_id);
            if tokens.is_empty() {
                running.remove(&task.job);
            }
        }
    }
    let log_key = keys::attempt_log(&task.job, &task.task, attempt);
    let (outcome, message, outputs) = match result {
        Ok(outputs) => (Outcome::Succeeded, None, outputs),
        Err((outcome, message)) => {
            log.line(format!("attempt failed: {message}"));
            (outcome, Some(message), Vec::new())
        }
    };
    if outcome == Outcome::Failed {
        *shared
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(task.job.clone())
            .or_default() += 1;
    }
    if let Err(e) = shared
        .deps
        .store
        .put(&log_key, Bytes::from(log.text()))
        .await
    {
        tracing::warn!(error = %e, "uploading the log");
    }
    let _ = tokio::fs::remove_dir_all(&work).await;
    let disposition = disposition(outcome, attempt, task.max_attempts);
    let event = match (outcome, disposition) {
        (Outcome::Canceled, _) => None,
        (_, Disposition::Ack) => Some(EventKind::TaskDone),
        (_, Disposition::Retry { .. } | Disposition::HandBack) => Some(EventKind::TaskRetry),
        (_, Disposition::Reject) => Some(EventKind::TaskFailed),
    };
    let report = Report {
        attempt,
        disposition,
        event,
        message,
        log: Some(log_key),
        outputs,
    };
    finish(shared, &msg, &task, report).await;
    Ran::Handled
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
    match crate::roles::client::workers(&shared.deps).await {
        Ok(workers) => workers.iter().any(|w| {
            w.id != shared.config.id
                && w.renderers.contains(&task.renderer)
                && w.classes.contains(&class)
                && !w.blocklist.iter().any(|j| j == task.job.as_str())
        }),
        Err(_) => false,
    }
}

/// Publishes the report's event, then disposes of the delivery. Without a stored event the
/// collector could not learn the outcome, so a failed publish leaves the task to be
/// redelivered instead.
async fn finish(shared: &Shared, msg: &jetstream::Message, task: &TaskMessage, report: Report) {
    if let Some(kind) = report.event {
        let mut event = Event::task(kind, task, report.attempt, &shared.config.id);
        event.outputs = report.outputs;
        event.log = report.log;
        event.message = report.message.clone();
        if let Err(e) = protocol::publish_event(&shared.deps.js, &event).await {
            tracing::error!(error = %e, "publishing {}; the task will be redelivered", kind.as_str());
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
            return;
        }
    }
    let ack = match report.disposition {
        Disposition::Ack => msg.double_ack().await.map_err(|e| e.to_string()),
        Disposition::Retry { delay } => msg
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| e.to_string()),
        Disposition::HandBack => {
            hand_back(shared, msg, task, report.attempt, report.event.is_none()).await
        }
        Disposition::Reject => msg.ack_with(AckKind::Term).await.map_err(|e| e.to_string()),
    };
    match (&ack, report.disposition) {
        (Err(e), _) => tracing::warn!(error = %e, "disposing of the task"),
        (Ok(()), Disposition::Ack) => tracing::info!("task done"),
        (Ok(()), other) => tracing::warn!(
            ?other,
            message = report.message.as_deref().unwrap_or(""),
            "task not done"
        ),
    }
}

/// Hands a task back for immediate redelivery without spending its attempt budget: the
/// task is republished, then the delivery is terminated (a nak would count as a delivery,
/// and attempts are counted from deliveries). An attempt interrupted by shutdown keeps its
/// number (its log stays its own) and the budget grows by one; a task a blocklisted worker
/// never started keeps its count and notes the hand-back. Should the worker die in between,
/// the task exists twice, and the first completion wins.
async fn hand_back(
    shared: &Shared,
    msg: &jetstream::Message,
    task: &TaskMessage,
    attempt: u32,
    blocklisted: bool,
) -> Result<(), String> {
    let mut next = task.clone();
    if blocklisted {
        next.attempts_before = attempt - 1;
        next.handbacks += 1;
    } else {
        next.attempts_before = attempt;
        next.max_attempts += 1;
    }
    shared
        .deps
        .js
        .publish_with_headers(
            msg.subject.clone(),
            protocol::headers(None),
            protocol::encode(&next).into(),
        )
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    msg.ack_with(AckKind::Term)
        .await
        .map_err(|e| e.to_string())?;
    if let Some((class, priority)) = protocol::parse_task_subject(&msg.subject) {
        protocol::ring_doorbell(&shared.deps.client, &class, priority, task.renderer).await;
    }
    Ok(())
}

#[expect(
    clippy::too_many_arguments,
    reason = "the attempt's whole context, passed once"
)]
async fn attempt_render(
    shared: &Shared,
    msg: &jetstream::Message,
    task: &TaskMessage,
    attempt: u32,
    work: &std::path::Path,
    log: &Log,
    kill: &CancellationToken,
    job_cancel: &CancellationToken,
) -> Result<Vec<String>, (Outcome, String)> {
    let failed = |e: String| (Outcome::Failed, e);
    let out_dir = work.join("out");
    tokio::fs::create_dir_all(&out_dir)
        .await
        .map_err(|e| failed(format!("creating {}: {e}", out_dir.display())))?;
    let scene = match &task.scene_manifest {
        Some(hex) => Some(
            shared
                .cache
                .materialize(&shared.deps.store, hex, &work.join("scene"))
                .await
                .map_err(|e| failed(format!("fetching the scene: {e:#}")))?,
        ),
        None => None,
    };
    let renderer = render::adapter(task.renderer).ok_or_else(|| {
        (
            Outcome::Invalid,
            format!("renderer {} is not built in", task.renderer),
        )
    })?;
    let cancel = CancellationToken::new();
    let progress = Arc::new(AtomicU32::new(0));
    let mut reported = 0;
    let request = Request {
        task: task.clone(),
        attempt,
        scene,
        out_dir,
        threads: shared.config.threads,
        cancel: cancel.clone(),
        log: log.clone(),
        progress: progress.clone(),
    };
    let render = renderer.render(request);
    tokio::pin!(render);
    let mut keepalive = tokio::time::interval(shared.config.ack_wait / 3);
    keepalive.tick().await;
    let deadline = task.timeout_ms.map(Duration::from_millis);
    let timeout = async {
        match deadline {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);
    let mut stopped_by: Option<Outcome> = None;
    let result = loop {
        tokio::select! {
            result = &mut render => break result,
            _ = keepalive.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    tracing::warn!(error = %e, "progress ack");
                }
                let now = progress.load(std::sync::atomic::Ordering::Relaxed);
                if now != reported {
                    reported = now;
                    let mut event = Event::task(EventKind::TaskProgress, task, attempt, &shared.config.id);
                    event.progress = Some(now as f32 / 1e6);
                    if let Err(e) = protocol::publish_event(&shared.deps.js, &event).await {
                        tracing::debug!(error = %e, "publishing task.progress");
                    }
                }
            }
            () = &mut timeout, if stopped_by.is_none() => {
                log.line(format!("timeout: the attempt ran past {:?}", deadline.unwrap_or_default()));
                stopped_by = Some(Outcome::Failed);
                cancel.cancel();
            }
            () = kill.cancelled(), if stopped_by.is_none() => {
                stopped_by = Some(Outcome::ShuttingDown);
                cancel.cancel();
            }
            () = job_cancel.cancelled(), if stopped_by.is_none() => {
                log.line("the job was canceled");
                stopped_by = Some(Outcome::Canceled);
                cancel.cancel();
            }
        }
    };
    let files = match result {
        Ok(files) => files,
        Err(RenderError::Permanent(e)) => return Err((Outcome::Invalid, e)),
        Err(RenderError::Failed(e)) => return Err(failed(e)),
        Err(RenderError::Stopped(e)) => {
            let outcome = stopped_by.unwrap_or(Outcome::Failed);
            let why = match outcome {
                Outcome::Failed => format!("timed out after {:?}", deadline.unwrap_or_default()),
                Outcome::ShuttingDown => "the worker is shutting down".to_string(),
                Outcome::Canceled => "the job was canceled".to_string(),
                _ => e,
            };
            return Err((outcome, why));
        }
    };
    let mut outputs = Vec::with_capacity(files.len());
    for file in files {
        crate::core::job::check_relative_path(&file.name)
            .map_err(|e| failed(format!("output name {e}")))?;
        let bytes = tokio::fs::read(&file.path)
            .await
            .map_err(|e| failed(format!("reading output {}: {e}", file.path.display())))?;
        let key = keys::attempt_output(&task.job, &task.task, attempt, &file.name);
        shared
            .deps
            .store
            .put(&key, Bytes::from(bytes))
            .await
            .map_err(|e| failed(format!("uploading {key}: {e}")))?;
        outputs.push(key);
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions() {
        let cases = [
            (Outcome::Succeeded, 1, 3, Disposition::Ack),
            (Outcome::Canceled, 1, 3, Disposition::Ack),
            (
                Outcome::Failed,
                1,
                3,
                Disposition::Retry {
                    delay: Duration::from_secs(1),
                },
            ),
            (
                Outcome::Failed,
                2,
                3,
                Disposition::Retry {
                    delay: Duration::from_secs(2),
                },
            ),
            (Outcome::Failed, 3, 3, Disposition::Reject),
            (Outcome::Failed, 1, 1, Disposition::Reject),
            (Outcome::Invalid, 1, 3, Disposition::Reject),
            (Outcome::ShuttingDown, 3, 3, Disposition::HandBack),
        ];
        for (outcome, attempt, max, expect) in cases {
            assert_eq!(
                disposition(outcome, attempt, max),
                expect,
                "{outcome:?} {attempt}/{max}"
            );
        }
    }

    #[test]
    fn priority_order_gives_normal_and_low_a_share() {
        let picks: Vec<[Priority; 3]> = (0..10).map(priority_order).collect();
        let first = |p: Priority| picks.iter().filter(|o| o[0] == p).count();
        assert_eq!(
            (
                first(Priority::High),
                first(Priority::Normal),
                first(Priority::Low)
            ),
            (6, 2, 2)
        );
        for order in picks {
            let mut sorted = order;
            sorted.sort();
            assert_eq!(sorted, Priority::ALL, "every priority is looked at");
        }
    }

    #[test]
    fn pick_order_prefers_classes_then_priorities_and_the_hint() {
        let gpu = Class::parse("gpu").unwrap();
        let cpu = Class::cpu();
        let order = pick_order(
            &[gpu.clone(), cpu.clone()],
            &[RendererKind::Noop],
            priority_order(0),
            None,
        );
        let names: Vec<String> = order
            .iter()
            .map(|q| format!("{}-{}", q.class, q.priority))
            .collect();
        assert_eq!(
            names,
            [
                "gpu-high",
                "gpu-normal",
                "gpu-low",
                "cpu-high",
                "cpu-normal",
                "cpu-low"
            ]
        );
        let hint = Queue {
            class: cpu,
            priority: Priority::Low,
            renderer: RendererKind::Noop,
        };
        let order = pick_order(
            &[gpu],
            &[RendererKind::Noop],
            priority_order(0),
            Some(&hint),
        );
        assert_eq!(order[0], hint);
        assert_eq!(order.len(), 4);
    }

    #[test]
    fn retry_delay_grows_and_caps() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(4));
        assert_eq!(retry_delay(10), Duration::from_secs(60));
    }
}
