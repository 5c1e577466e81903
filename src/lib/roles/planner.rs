//! The planner: takes job submissions off `TESSERA_JOBS`, validates them, records the job
//! (create-if-absent on the id), publishes its ready tasks and announces `job.accepted` — or
//! `job.rejected` with every reason, changing nothing else.
//!
//! A job with more ready tasks than its window (see [`Window`]) queues only its window;
//! the rest are recorded as held, and the collector queues them as the queued ones start.
//!
//! Planning is idempotent: a redelivered submission (planner killed mid-way) finds the record
//! and republishes with the same `Nats-Msg-Id`s; a job already published is acked and left.
//! Stateless: any number of planners may share the durable consumer.

use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use async_nats::jetstream::{self, AckKind};
use tokio_util::sync::CancellationToken;

use crate::bus::consume::{self, Handler, Puller};
use crate::bus::ledger::Created;
use crate::bus::protocol::WorkerInfo;
use crate::bus::protocol::{self, Event, EventKind, TaskMessage};
use crate::bus::publish::BatchError;
use crate::bus::registry;
use crate::bus::{publish, streams};
use crate::config::{CanvasBudget, Deps};
use crate::core::job::{self, Job, JobId, MAX_TASKS};
use crate::core::plan;
use crate::core::problem::Invalid;
use crate::core::state::{JobRecord, JobState, Round, TaskState, Window};
use crate::core::stitch::{PixelKind, canvas_bytes};
use crate::lifecycle::{after, alone, frames, held, versions};

/// How a planner runs.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct PlannerConfig {
    /// The largest tiled frame it accepts.
    #[command(flatten)]
    pub canvas: CanvasBudget,
}

/// Runs the planner until `shutdown`; the submission in hand is finished first.
pub async fn run(
    deps: Deps,
    config: PlannerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut submissions = Puller::new(streams::planner_consumer(&deps.js).await?, 1);
    if crate::metrics::METRICS.is_served() {
        tokio::spawn(gauge_queues(deps.js.clone(), shutdown.clone()));
    }
    tracing::info!("planner ready");
    let mut planner = Planner {
        deps,
        config,
        batch_limit: AtomicUsize::new(MAX_TASKS as usize),
        workers: FarmSlots::default(),
    };
    consume::serve(&mut submissions, &shutdown, "a submission", &mut planner).await;
    tracing::info!("planner stopped");
    Ok(())
}

/// How often the planner reads the task queues' depths for the metrics.
const QUEUES_GAUGED_EVERY: Duration = Duration::from_secs(5);

/// Sets the queue gauges (`tessera_queue_depth`, `tessera_queue_running`) from the task
/// consumers every [`QUEUES_GAUGED_EVERY`], until `shutdown`.
async fn gauge_queues(js: async_nats::jetstream::Context, shutdown: CancellationToken) {
    let metrics = &crate::metrics::METRICS;
    let mut every = tokio::time::interval(QUEUES_GAUGED_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let queues = match streams::task_queues(&js).await {
            Ok(queues) => queues,
            Err(e) => {
                tracing::debug!(error = %e, "reading the task queues for the metrics");
                continue;
            }
        };
        let mut depths = std::collections::HashMap::new();
        for q in &queues {
            let labels = crate::metrics::QueueLabels::of(&q.class, q.priority, q.renderer);
            let sums: &mut (u64, u64) = depths.entry(labels).or_default();
            sums.0 += q.pending;
            sums.1 += q.delivered;
        }
        for (labels, (pending, delivered)) in depths {
            metrics
                .queue_depth
                .get_or_create(&labels)
                .set(pending as i64);
            metrics
                .queue_running
                .get_or_create(&labels)
                .set(delivered as i64);
        }
    }
}

/// The planner's handler of submissions.
struct Planner {
    deps: Deps,
    config: PlannerConfig,
    /// The most tasks the server takes in one atomic batch, as far as this planner knows.
    batch_limit: AtomicUsize,
    /// The live workers, for the size of windows.
    workers: FarmSlots,
}

/// How long the planner's list of live workers is used before it is read again.
const WORKERS_FRESH: Duration = Duration::from_secs(5);

/// The live workers as last read (at most every [`WORKERS_FRESH`]).
#[derive(Default)]
struct FarmSlots(tokio::sync::Mutex<Option<(tokio::time::Instant, Vec<WorkerInfo>)>>);

impl FarmSlots {
    /// The slots of the live workers that run `job`'s class and renderer.
    async fn serving(&self, deps: &Deps, job: &Job) -> anyhow::Result<u32> {
        let mut read = self.0.lock().await;
        if read
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() > WORKERS_FRESH)
        {
            let workers = registry::live_workers(&deps.js).await?;
            *read = Some((tokio::time::Instant::now(), workers));
        }
        let workers = read.as_ref().map_or(&[][..], |(_, w)| w.as_slice());
        Ok(workers
            .iter()
            .filter(|w| w.classes.contains(&job.class) && w.renderers.contains(&job.renderer))
            .map(|w| w.slots)
            .sum())
    }
}

impl Handler for Planner {
    async fn handle(&mut self, msg: &jetstream::Message) -> anyhow::Result<()> {
        handle(self, msg).await
    }

    /// A submission that cannot be planned for an hour ends: its job fails (if it was
    /// recorded) or is rejected, with the last error as the reason.
    async fn give_up(
        &mut self,
        msg: &jetstream::Message,
        error: &anyhow::Error,
    ) -> anyhow::Result<()> {
        let deps = &self.deps;
        let id = id_of_rejected(&msg.payload, is_json(msg));
        let reason = format!(
            "the submission could not be planned ({} tries over about an hour): {error:#}",
            consume::GIVE_UP_AFTER
        );
        tracing::error!(job = id, %reason, "giving up on a submission");
        if let Ok(job_id) = JobId::parse(&id)
            && let Some((record, _)) = deps.ledger.job(&job_id).await?
        {
            if !record.state.is_terminal() {
                let job = record
                    .job()
                    .map_err(|e| anyhow::anyhow!("stored job {id}: {e}"))?;
                crate::lifecycle::end_job(deps, &job, JobState::Failed, Some(reason), None).await?;
            }
            return Ok(());
        }
        reject(deps, &id, Invalid::one("id", reason)).await
    }
}

/// Whether a submission is JSON (by its `Content-Type`, or a body that starts with `{`).
fn is_json(msg: &jetstream::Message) -> bool {
    let content_type = msg
        .headers
        .as_ref()
        .and_then(|h| h.get("Content-Type"))
        .map(|v| v.as_str());
    job::is_json(content_type, &msg.payload)
}

/// The id to report a rejection under: the submission's own id if it is readable and valid.
fn id_of_rejected(payload: &[u8], json: bool) -> String {
    let value: Option<serde_json::Value> = if json {
        serde_json::from_slice(payload).ok()
    } else {
        rmp_serde::from_slice(payload).ok()
    };
    value
        .as_ref()
        .and_then(|v| v.get("id"))
        .and_then(|v| v.as_str())
        .and_then(|id| JobId::parse(id).ok())
        .map_or_else(
            || protocol::INVALID_JOB_TOKEN.to_string(),
            |id| id.to_string(),
        )
}

async fn handle(planner: &Planner, msg: &jetstream::Message) -> anyhow::Result<()> {
    let (deps, config) = (&planner.deps, &planner.config);
    let json = is_json(msg);
    let mut spec = match job::from_wire(&msg.payload, json) {
        Ok(spec) => spec,
        Err(invalid) => {
            return reject(deps, &id_of_rejected(&msg.payload, json), invalid).await;
        }
    };
    if spec.id.is_none() {
        // Derived from the message, so a redelivery plans the same job.
        let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        let digest = crate::store::package::sha256_hex(&msg.payload);
        spec.id = Some(format!("job-{sequence}-{}", &digest[..8]));
    }
    let id_text = spec.id.clone().unwrap_or_default();
    let job = match crate::render::validate(spec) {
        Ok(job) => job,
        Err(invalid) => {
            let token = JobId::parse(&id_text).map_or_else(
                |_| protocol::INVALID_JOB_TOKEN.to_string(),
                |id| id.to_string(),
            );
            return reject(deps, &token, invalid).await;
        }
    };
    if let Err(invalid) = fits_the_server(deps, &job).and(fits_the_canvas(&job, config.canvas)) {
        return reject(deps, job.id.as_str(), invalid).await;
    }
    if let Err(invalid) = crate::render::validate::stored_scene(&deps.store, &job).await? {
        return reject(deps, job.id.as_str(), invalid).await;
    }
    if let Err(invalid) = limits_are_set(deps, &job).await? {
        return reject(deps, job.id.as_str(), invalid).await;
    }
    plan_job(planner, msg, job).await
}

/// Room left in a message for its headers (message id, batch headers).
const HEADER_ROOM: usize = 4096;

/// Checks that the job's largest task message fits the server's `max_payload`: one that
/// does not could never be queued. The first task holds the most frames (chunks are
/// cut from the start), and every task carries the same settings.
fn fits_the_server(deps: &Deps, job: &Job) -> Result<(), Invalid> {
    let limit = deps.client.server_info().max_payload;
    let first = plan::task(job, 0);
    let size = protocol::encode(&TaskMessage::new(job, &first)).len();
    if size + HEADER_ROOM <= limit {
        return Ok(());
    }
    let settings = serde_json::to_vec(&job.settings).map_or(0, |b| b.len());
    let (field, fix) = if settings * 2 > size {
        ("settings", "make the settings smaller")
    } else {
        ("frames.chunk", "use a smaller chunk")
    };
    Err(Invalid::one(
        field,
        format!(
            "a task would be a {size}-byte message, more than the NATS server's max_payload of {limit} bytes (less {HEADER_ROOM} for headers): {fix}"
        ),
    ))
}

/// Checks that every limit the job names was set (`tessera limit set`).
async fn limits_are_set(deps: &Deps, job: &Job) -> anyhow::Result<Result<(), Invalid>> {
    let mut problems = crate::core::problem::Problems::default();
    for (i, name) in job.limits.iter().enumerate() {
        if deps.limits.get(name).await?.is_none() {
            problems.add(
                format!("limits[{i}]"),
                format!("no limit {name:?} is set on this farm: `tessera limit set {name} N` makes one of N tokens"),
            );
        }
    }
    Ok(problems.into_result(()))
}

/// Checks that a tiled frame of the job can be stitched within the farm's canvas budget.
fn fits_the_canvas(job: &Job, budget: CanvasBudget) -> Result<(), Invalid> {
    let Some(tiles) = job.tiles else {
        return Ok(());
    };
    let kind = PixelKind::of_format(job.image.format, job.image.depth);
    let needed = canvas_bytes(job.image.width, job.image.height, kind, tiles.blend);
    if needed <= budget.bytes {
        return Ok(());
    }
    Err(Invalid::one(
        "image",
        format!(
            "a tiled {}x{} frame needs {} to stitch, more than this farm's canvas budget of {} (TESSERA_CANVAS_BUDGET or --canvas-budget on planners and collectors): render it smaller, untiled, or raise the budget",
            job.image.width,
            job.image.height,
            gib(needed),
            gib(budget.bytes)
        ),
    ))
}

/// `bytes` in GiB (or MiB below one GiB), for messages.
fn gib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}

async fn reject(deps: &Deps, job: &str, invalid: Invalid) -> anyhow::Result<()> {
    tracing::warn!(job, reasons = %invalid, "job rejected");
    let mut event = Event::new(EventKind::JobRejected, job);
    event.message = Some(invalid.to_string());
    event.reasons = invalid.0;
    publish::event(&deps.js, &event).await
}

async fn plan_job(planner: &Planner, msg: &jetstream::Message, mut job: Job) -> anyhow::Result<()> {
    let deps = &planner.deps;
    let tasks = plan::task_count(&job);
    // In the job's queue order: key frames first, when it asks.
    let ready: Vec<plan::TaskPlan> = match crate::core::order::queue_order(&job) {
        Some(order) => order.into_iter().map(|i| plan::task(&job, i)).collect(),
        None => plan::tasks(&job).collect(),
    };
    // A job that runs after another frame by frame has its tasks released by the collector
    // as that job's frames are done.
    let ready: Vec<plan::TaskPlan> = ready
        .into_iter()
        .filter(|t| t.waits_for.is_empty() && job.after_frames.is_none())
        .collect();
    // The smallest window is the job's weight: a job with no more ready tasks needs none.
    // A job with limits always has one: its tasks are queued as they get tokens.
    // So does a `chunk = "auto"` job: its held tasks are queued in bundles.
    let limited = !job.limits.is_empty();
    let forced = limited || job.auto_chunk.is_some();
    let mut window = 0;
    let mut planned_alone = false;
    let windowed =
        ready.len() as u64 > u64::from(job.weight) || job.max_workers.is_some() || forced;
    if windowed {
        let slots = planner.workers.serving(deps, &job).await?;
        let ready = ready.len() as u32;
        // A job planned into a queue that holds a job planned alone cuts that one first,
        // so that it waits behind no more than its fair window.
        let others = alone::others_in_queue(deps, &job).await?;
        cut_the_alone(planner, &others).await?;
        let fair = Window::of(&job, slots, ready);
        // A job that waits for others is queued later, perhaps beside others: fair.
        // So is one that runs after another frame by frame, and one that others run after
        // (frame by frame, they share its queue as its frames are done).
        let waits = !job.after.is_empty() || job.after_frames.is_some();
        let awaited = !deps.ledger.waiters(&job.id).await?.is_empty();
        let wide = fair
            .filter(|_| others.is_empty() && !forced && !waits && !awaited)
            .and_then(Window::alone);
        planned_alone = wide.is_some();
        window = match wide.or(fair) {
            Some(window) => window.size,
            None if forced => ready.max(1),
            None => 0,
        };
    }
    job.incarnation = nuid::next().to_string();
    let record = JobRecord {
        schema: protocol::SCHEMA,
        spec: job.spec.clone(),
        state: JobState::Queued,
        tasks,
        published: false,
        created_ms: protocol::now_ms(),
        started_ms: None,
        finished_ms: None,
        message: None,
        generation: 0,
        incarnation: job.incarnation.clone(),
        requeue_pending: false,
        window,
        suspended: false,
        withdrawals: 0,
        priority: None,
        alone: planned_alone,
        waiting_for: job.after.clone(),
        frame_waiters: Vec::new(),
        version: None,
    };
    match deps.ledger.create_job(&record).await? {
        Created::New => {}
        Created::Exists(existing) if existing.spec != job.spec => {
            let invalid = Invalid::one(
                "id",
                format!(
                    "job {} already exists with a different spec; choose another id",
                    job.id
                ),
            );
            return reject(deps, job.id.as_str(), invalid).await;
        }
        Created::Exists(existing) if existing.published => {
            tracing::info!(job = %job.id, "job submitted again; already planned");
            return Ok(());
        }
        Created::Exists(existing) => {
            tracing::info!(job = %job.id, "resuming an interrupted planning");
            job.incarnation = existing.incarnation;
            job.version = existing.version;
            window = existing.window;
            planned_alone = existing.alone;
        }
    }
    // A job that names its output is published as its next version before any of its
    // tasks is queued: its outputs go straight into the version's folder.
    if let Some(name) = job.output.clone() {
        let number = match job.version {
            Some(number) => number,
            None => {
                let number = versions::allocate(deps, &name, &job).await?;
                deps.ledger
                    .update_job(&job.id, |r| r.version.replace(number) != Some(number))
                    .await?;
                number
            }
        };
        job.version = Some(number);
        versions::publish(deps, &job, number).await?;
    }
    // The window's first tasks are queued, the other ready ones held; a job with limits
    // queues its first ones once they have tokens, after it is announced.
    let waiting = !job.after.is_empty();
    let queued = match window {
        _ if limited || waiting => 0,
        0 => ready.len(),
        size => ready.len().min(size as usize),
    };
    let held = ready.len() - queued;
    let mut state = vec![TaskState::Waiting; tasks as usize];
    for (place, task) in ready.iter().enumerate() {
        state[task.index as usize] = match place < queued {
            true => TaskState::Queued,
            false => TaskState::Held,
        };
    }
    // The pages are written while the tasks are queued.
    let pages = deps
        .ledger
        .create_pages(&job.id, tasks, |i| state[i as usize]);
    let queue = async {
        let ready = &ready[..queued];
        queue_atomically(deps, msg, &job, ready, &planner.batch_limit).await?;
        // Announced once its tasks are queued, and before the doorbell wakes a worker, so
        // `job.accepted` precedes every task event. Its Nats-Msg-Id keeps a resumed planning
        // from announcing twice.
        let mut event = Event::new(EventKind::JobAccepted, job.id.as_str());
        event.message = Some(match held {
            _ if waiting => {
                let names: Vec<&str> = job.after.iter().map(JobId::as_str).collect();
                format!("{tasks} tasks, held until job {} is done", names.join(", "))
            }
            _ if job.after_frames.is_some() => {
                let upstream = job.after_frames.as_ref().map_or("", JobId::as_str);
                format!("{tasks} tasks, each queued once job {upstream} has its frames done")
            }
            0 => format!("{tasks} tasks, {queued} queued"),
            held => format!(
                "{tasks} tasks, {queued} queued, {held} held back by the job's window of {window}"
            ),
        });
        event.incarnation = Some(job.incarnation.clone());
        let msg_id = protocol::accepted_msg_id(&job.id, &job.incarnation);
        let accepted = publish::event_pending(&deps.js, &event, Some(&msg_id)).await?;
        let key = ready
            .iter()
            .any(|task| crate::core::order::is_key(&job, task));
        publish::doorbell(&deps.client, &job.class, job.priority, job.renderer, key).await;
        accepted.confirmed().await?;
        anyhow::Ok(())
    };
    let (pages, queue) = tokio::join!(pages, queue);
    pages?;
    queue?;
    // A job planned alone ahead of it, by another planner meanwhile or (a job queued
    // whole) at any time, is cut now; so is this one if it was planned alone and has
    // company after all.
    let mut others = alone::others_in_queue(deps, &job).await?;
    if !others.is_empty() {
        if planned_alone {
            others.push(job.id.clone());
        }
        cut_the_alone(planner, &others).await?;
    }
    // The jobs filed as running after it frame by frame, and the one it runs after so,
    // which is cut to its fair window if it was planned alone: they share a queue now.
    let waiters = deps.ledger.waiters(&job.id).await?;
    let company = frames::find_waiters(deps, &job, &waiters).await?;
    if company && planned_alone {
        cut_the_alone(planner, std::slice::from_ref(&job.id)).await?;
    }
    if let Some(upstream) = &job.after_frames {
        frames::wait_for(deps, &job).await?;
        cut_the_alone(planner, std::slice::from_ref(upstream)).await?;
    }
    if waiting {
        // Queued once the jobs it runs after are done (now, if they are already).
        after::wait_for(deps, &job).await?;
    } else if limited {
        let order = crate::core::order::queue_order(&job);
        let (first, _) = held::find(deps, &job, order.as_deref(), 0, window).await?;
        held::release(deps, &job, Round::default(), &first).await?;
    }
    deps.ledger
        .update_job(&job.id, |r| !std::mem::replace(&mut r.published, true))
        .await?;
    tracing::info!(job = %job.id, tasks, queued, held, "job accepted");
    Ok(())
}

/// Cuts each of `others` that was planned alone in its queue to its fair window.
async fn cut_the_alone(planner: &Planner, others: &[JobId]) -> anyhow::Result<()> {
    let deps = &planner.deps;
    for other in others {
        let Some((record, _)) = deps.ledger.job(other).await? else {
            continue;
        };
        if !record.alone || record.state.is_terminal() {
            continue;
        }
        let Ok(job) = record.job() else { continue };
        let slots = planner.workers.serving(deps, &job).await?;
        let fair = Window::of(&job, slots, u32::MAX).map_or(1, |w| w.size);
        alone::cut(deps, other, fair).await?;
    }
    Ok(())
}

/// Queues the ready tasks of `job` in one atomic batch, so that a planner killed at any
/// instant leaves the whole job queued or none of it, and its redelivered submission queues
/// it once (a batch whose tasks were stored before is refused whole, and taken as queued).
/// A server that takes smaller batches (its `jetstream.limits.batch.max_msgs`) gets the job
/// in atomic parts of that size, with a warning: a planner killed between two parts leaves
/// the first ones queued until the submission comes back and queues the rest.
async fn queue_atomically(
    deps: &Deps,
    msg: &jetstream::Message,
    job: &Job,
    ready: &[plan::TaskPlan],
    batch_limit: &AtomicUsize,
) -> anyhow::Result<()> {
    let mut start = 0;
    let mut last_progress = tokio::time::Instant::now();
    while start < ready.len() {
        let limit = batch_limit.load(Ordering::Relaxed).max(1);
        let end = (start + limit).min(ready.len());
        match publish::task_batch(
            &deps.client,
            &deps.js,
            job,
            &ready[start..end],
            Round::default(),
        )
        .await
        {
            Ok(()) | Err(BatchError::AlreadyQueued) => start = end,
            Err(BatchError::TooLarge(max)) => {
                tracing::warn!(
                    job = %job.id,
                    max,
                    "the server takes atomic batches of at most {max} tasks: larger jobs are queued in parts, and a planner killed between two parts leaves part of a job queued until it is resumed; raise jetstream.limits.batch.max_msgs (tessera up and deploy/nats.conf set 1000000)"
                );
                batch_limit.store(max.max(1), Ordering::Relaxed);
            }
            Err(BatchError::Other(e)) => return Err(e),
        }
        if last_progress.elapsed() > Duration::from_secs(2) {
            let _ = msg.ack_with(AckKind::Progress).await;
            last_progress = tokio::time::Instant::now();
        }
    }
    Ok(())
}
