//! The collector: consumes events, keeps job state in the ledger, assembles outputs as soon
//! as their parts exist, releases tasks whose dependencies are met, and ends jobs.
//!
//! Each event is applied through the ledger's compare-and-swap transitions, and every step
//! after a transition is idempotent (outputs are written only if absent; end-of-job events
//! carry a `Nats-Msg-Id`), so the event is acked only when all is done and a collector
//! killed at any instant is simply restarted. Several collectors may share the durable
//! consumer: the first valid completion of a task wins, whichever collector sees it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::config::Deps;
use crate::core::frames::frame_file_name;
use crate::core::job::{FailurePolicy, Job, JobId, RendererKind};
use crate::core::plan;
use crate::bus::protocol::{self, Event, EventKind};
use crate::core::raster;
use crate::core::state::{Change, Counts, JobState, TaskSlot, TaskState};
use crate::core::stitch::{Canvas, PixelKind};
use crate::store::keys;
use crate::bus::streams;

/// Jobs whose validated spec is kept in memory.
const JOB_CACHE: usize = 256;

/// Tiled frames stitched in memory at once; past this the least recently touched is
/// dropped, and its tiles are read back from the store when the frame completes.
const MAX_CANVASES: usize = 4;

/// Previews of a frame in progress are refreshed at most this often.
const PREVIEW_EVERY: Duration = Duration::from_secs(1);

/// Longest side of a preview, in pixels.
const PREVIEW_SIDE: u32 = 1024;

/// Tiled frames being stitched, keyed by job, first task of the frame's group, and frame.
#[derive(Default)]
pub struct Stitching {
    canvases: HashMap<(JobId, u32, u32), InProgress>,
}

impl Stitching {
    /// Drops the canvases of `job`.
    fn forget(&mut self, job: &str) {
        self.canvases.retain(|(id, _, _), _| id.as_str() != job);
    }
}

struct InProgress {
    canvas: Canvas,
    touched: Instant,
    previewed: Option<Instant>,
}

/// Runs the collector until `shutdown`; the event in hand is finished first.
pub async fn run(deps: Deps, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (events, advisories) = tokio::join!(
        run_events(deps.clone(), shutdown.clone()),
        run_advisories(deps, shutdown)
    );
    events.and(advisories)
}

/// Fails the tasks JetStream gave up on: a task whose worker died on its last delivery
/// (`max_deliver`) stays in the work-queue stream, undelivered; its MAX_DELIVERIES
/// advisory (kept in `TESSERA_ADVISORIES`) is turned into `task.failed`, and the message
/// is removed.
async fn run_advisories(deps: Deps, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut advisories = streams::Puller::new(streams::advisories_consumer(&deps.js).await?, 16);
    while let Some(msg) = advisories.next(&shutdown).await {
        match handle_advisory(&deps, &msg).await {
            Ok(()) => {
                let _ = msg.double_ack().await;
            }
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "handling an advisory failed; it will be redelivered"
                );
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
    }
    Ok(())
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
    let Ok(raw) = stream.get_raw_message(advisory.stream_seq).await else {
        return Ok(()); // already gone: done, failed or purged meanwhile
    };
    match protocol::decode::<protocol::TaskMessage>(&raw.payload) {
        Ok(task) => {
            let attempt = task.attempts_before + advisory.deliveries as u32;
            let mut event = Event::new(EventKind::TaskFailed, task.job.as_str());
            event.task = Some(task.task.clone());
            event.index = Some(task.index);
            event.attempt = Some(attempt);
            event.message = Some(format!(
                "attempt {attempt} was lost with its worker, and JetStream gives up after {} deliveries",
                advisory.deliveries
            ));
            protocol::publish_event(&deps.js, &event).await?;
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

async fn run_events(deps: Deps, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut events = streams::Puller::new(streams::collector_consumer(&deps.js).await?, 64);
    let mut jobs: HashMap<JobId, Arc<Job>> = HashMap::new();
    let mut stitching = Stitching::default();
    tracing::info!("collector ready");
    while let Some(msg) = events.next(&shutdown).await {
        if jobs.len() > JOB_CACHE {
            jobs.clear();
        }
        match handle(&deps, &mut jobs, &mut stitching, &msg).await {
            Ok(()) => {
                if let Err(e) = msg.double_ack().await {
                    tracing::warn!(error = %e, "acking an event");
                }
            }
            Err(e) => {
                tracing::error!(
                    subject = %msg.subject,
                    error = format!("{e:#}"),
                    "handling an event failed; it will be redelivered"
                );
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
    }
    tracing::info!("collector stopped");
    Ok(())
}

async fn load_job(
    deps: &Deps,
    jobs: &mut HashMap<JobId, Arc<Job>>,
    id: &JobId,
) -> anyhow::Result<Option<Arc<Job>>> {
    if let Some(job) = jobs.get(id) {
        return Ok(Some(job.clone()));
    }
    let Some((record, _)) = deps.ledger.job(id).await? else {
        return Ok(None);
    };
    let job = Arc::new(
        record
            .spec
            .validate()
            .map_err(|e| anyhow::anyhow!("stored spec of job {id} no longer validates: {e}"))?,
    );
    jobs.insert(id.clone(), job.clone());
    Ok(Some(job))
}

async fn handle(
    deps: &Deps,
    jobs: &mut HashMap<JobId, Arc<Job>>,
    stitching: &mut Stitching,
    msg: &jetstream::Message,
) -> anyhow::Result<()> {
    let event: Event = match protocol::decode(&msg.payload) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(subject = %msg.subject, error = %e, "ignoring a malformed event");
            return Ok(());
        }
    };
    let change = match event.kind {
        EventKind::TaskStarted => Change::Started,
        EventKind::TaskRetry => Change::Retry,
        EventKind::TaskDone => Change::Done,
        EventKind::TaskFailed => Change::Failed,
        // Frames of an ended job that are still in memory will not be finished.
        EventKind::JobFailed | EventKind::JobCanceled => {
            stitching.forget(&event.job);
            return Ok(());
        }
        _ => return Ok(()),
    };
    let (Ok(id), Some(index), Some(attempt)) =
        (JobId::parse(&event.job), event.index, event.attempt)
    else {
        tracing::warn!(subject = %msg.subject, "ignoring a task event without job, index or attempt");
        return Ok(());
    };
    let Some(job) = load_job(deps, jobs, &id).await? else {
        tracing::warn!(job = %id, "ignoring an event of an unknown job");
        return Ok(());
    };
    if index >= plan::task_count(&job) {
        tracing::warn!(job = %id, index, "ignoring an event of a task the job does not have");
        return Ok(());
    }
    let (before, after) = deps.ledger.change_task(&id, index, change(attempt)).await?;
    match event.kind {
        EventKind::TaskStarted if before != after => {
            deps.ledger
                .update_job(&id, |r| {
                    if r.state != JobState::Queued {
                        return false;
                    }
                    r.state = JobState::Running;
                    r.started_ms = Some(event.time_ms);
                    true
                })
                .await?;
        }
        // Also when the slot was already ours: a collector that died after the transition
        // finishes the remaining (idempotent) steps.
        EventKind::TaskDone if after == TaskSlot(TaskState::Done, attempt) => {
            stitch_tile(deps, stitching, &job, index, attempt).await?;
            assemble(deps, stitching, &job, index).await?;
            release_dependents(deps, &job, index).await?;
            check_end(deps, &job, index).await?;
        }
        EventKind::TaskFailed if after == TaskSlot(TaskState::Failed, attempt) => {
            tracing::warn!(job = %id, task = %event.task.as_ref().map(|t| t.0.as_str()).unwrap_or("?"), "task failed for good");
            fail_dependents(deps, &job, index).await?;
            let reason = format!(
                "task {} failed after {attempt} attempts: {}",
                plan::task(&job, index).id,
                event.message.as_deref().unwrap_or("no reason given")
            );
            match job.retry.on_failure {
                FailurePolicy::Fail => {
                    end_job(deps, &job, JobState::Failed, Some(reason), None).await?
                }
                FailurePolicy::Continue => check_end(deps, &job, index).await?,
            }
        }
        _ => {}
    }
    Ok(())
}

/// The output file name of `frame` for `job` (`frame_0001.png`, or `<layer>/frame_0001.png`).
pub fn output_name(job: &Job, layer: Option<usize>, frame: u32) -> String {
    let file = frame_file_name(frame, job.image.format.extension());
    match layer {
        Some(l) => format!("{}/{file}", job.layers[l].name),
        None => file,
    }
}

/// Reads and decodes the output of `frame` from task `index`'s attempt `attempt`.
async fn read_tile(
    deps: &Deps,
    job: &Job,
    index: u32,
    attempt: u32,
    frame: u32,
) -> anyhow::Result<image::DynamicImage> {
    let task = plan::task(job, index);
    let file = frame_file_name(frame, job.image.format.extension());
    let source = keys::attempt_output(&job.id, &task.id, attempt, &file);
    let bytes = deps
        .store
        .get(&source)
        .await
        .with_context(|| format!("tile {} of frame {frame}", task.id))?;
    tokio::task::spawn_blocking(move || raster::decode(&bytes))
        .await?
        .map_err(|e| anyhow::anyhow!("tile {} of frame {frame}: {e}", task.id))
}

/// Places the tile just done into its frames' canvases at once, and refreshes their
/// previews.
async fn stitch_tile(
    deps: &Deps,
    stitching: &mut Stitching,
    job: &Job,
    index: u32,
    attempt: u32,
) -> anyhow::Result<()> {
    let Some(grid) = job.tiles else {
        return Ok(());
    };
    let group = plan::frame_group(job, index);
    let task = plan::task(job, index);
    let tile = task.tile.expect("tiled jobs plan tiles");
    let slot = (index - group.start) as usize;
    for &frame in &task.frames {
        let name = output_name(job, task.layer, frame);
        let key = (job.id.clone(), group.start, frame);
        if !stitching.canvases.contains_key(&key)
            && deps.store.exists(&keys::output(&job.id, &name)).await?
        {
            continue; // assembled already (a redelivered event)
        }
        let part = read_tile(deps, job, index, attempt, frame).await?;
        let entry = stitching.canvases.entry(key).or_insert_with(|| InProgress {
            canvas: new_canvas(job, grid, group.len(), &part),
            touched: Instant::now(),
            previewed: None,
        });
        entry
            .canvas
            .place(slot, &tile, &part)
            .map_err(|e| anyhow::anyhow!("tile {} of frame {frame}: {e}", task.id))?;
        entry.touched = Instant::now();
        if !entry.canvas.complete()
            && entry
                .previewed
                .is_none_or(|at| at.elapsed() >= PREVIEW_EVERY)
        {
            entry.previewed = Some(Instant::now());
            write_preview(deps, job, &name, entry.canvas.preview(PREVIEW_SIDE)).await?;
        }
    }
    while stitching.canvases.len() > MAX_CANVASES {
        let oldest = stitching
            .canvases
            .iter()
            .min_by_key(|(_, e)| e.touched)
            .map(|(k, _)| k.clone())
            .expect("not empty");
        stitching.canvases.remove(&oldest);
    }
    Ok(())
}

/// An empty canvas for a frame of `job`, in the pixel type of its first tile, `part`.
fn new_canvas(
    job: &Job,
    grid: crate::core::job::Tiles,
    tiles: usize,
    part: &image::DynamicImage,
) -> Canvas {
    Canvas::new(
        job.image.width,
        job.image.height,
        PixelKind::of(part),
        grid.blend,
        grid.overscan,
        tiles,
    )
}

/// Stores `preview` (from [`Canvas::preview`]) as the preview of output `name`.
async fn write_preview(
    deps: &Deps,
    job: &Job,
    name: &str,
    preview: image::DynamicImage,
) -> anyhow::Result<()> {
    let bytes = tokio::task::spawn_blocking(move || {
        raster::encode_image(&preview, crate::core::job::ImageFormat::Png)
    })
    .await?
    .map_err(anyhow::Error::msg)?;
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    deps.store
        .put(&keys::preview(&job.id, stem), Bytes::from(bytes))
        .await?;
    Ok(())
}

/// Writes the final frames of the group of task `index` if all of its tasks are done.
async fn assemble(
    deps: &Deps,
    stitching: &mut Stitching,
    job: &Job,
    index: u32,
) -> anyhow::Result<()> {
    if job.renderer == RendererKind::Noop {
        return Ok(());
    }
    let group = plan::frame_group(job, index);
    let slots = deps.ledger.slots_of(&job.id, group.clone()).await?;
    if slots.iter().any(|s| s.state() != TaskState::Done) {
        return Ok(());
    }
    let first = plan::task(job, group.start);
    for &frame in &first.frames {
        let name = output_name(job, first.layer, frame);
        let target = keys::output(&job.id, &name);
        let in_memory = stitching
            .canvases
            .remove(&(job.id.clone(), group.start, frame));
        if deps.store.exists(&target).await? {
            continue;
        }
        let Some(grid) = job.tiles else {
            let file = frame_file_name(frame, job.image.format.extension());
            let source = keys::attempt_output(&job.id, &first.id, slots[0].attempt(), &file);
            deps.store
                .copy_if_absent(&source, &target)
                .await
                .with_context(|| format!("frame {frame}"))?;
            continue;
        };
        // Tiles this collector has not placed (it restarted, shares the work with another
        // collector, or dropped the canvas) are read back from the store.
        let mut canvas = in_memory.map(|e| e.canvas);
        for (i, task_index) in group.clone().enumerate() {
            if canvas.as_ref().is_some_and(|c| c.has(i)) {
                continue;
            }
            let part = read_tile(deps, job, task_index, slots[i].attempt(), frame).await?;
            let task = plan::task(job, task_index);
            let canvas = canvas.get_or_insert_with(|| new_canvas(job, grid, group.len(), &part));
            canvas
                .place(i, &task.tile.expect("tiled jobs plan tiles"), &part)
                .map_err(|e| anyhow::anyhow!("tile {} of frame {frame}: {e}", task.id))?;
        }
        let canvas = canvas.expect("a group has at least one tile");
        let format = job.image.format;
        let (bytes, preview) = tokio::task::spawn_blocking(move || {
            let preview = canvas.preview(PREVIEW_SIDE);
            (raster::encode_image(&canvas.finish(), format), preview)
        })
        .await?;
        let bytes = bytes.map_err(anyhow::Error::msg)?;
        // The frame and its last preview are stored side by side.
        tokio::try_join!(
            async {
                deps.store
                    .put_if_absent(&target, Bytes::from(bytes))
                    .await
                    .map_err(anyhow::Error::from)
            },
            write_preview(deps, job, &name, preview),
        )?;
    }
    Ok(())
}

/// Queues the tasks that waited for task `index` once all they wait for is done.
async fn release_dependents(deps: &Deps, job: &Job, index: u32) -> anyhow::Result<()> {
    let dependents = plan::dependents(job, index);
    if dependents.is_empty() {
        return Ok(());
    }
    let generation = deps
        .ledger
        .job(&job.id)
        .await?
        .map_or(0, |(r, _)| r.generation);
    let mut released = false;
    for dependent in dependents {
        let task = plan::task(job, dependent);
        let slots = deps
            .ledger
            .slots_of(&job.id, task.waits_for.iter().copied())
            .await?;
        if slots.iter().all(|s| s.state() == TaskState::Done) {
            let (before, after) = deps
                .ledger
                .change_task(&job.id, dependent, Change::Release)
                .await?;
            if before != after || after.state() == TaskState::Queued {
                // Republishing after a crash is deduplicated by the task's Nats-Msg-Id.
                crate::roles::planner::publish_task(&deps.js, job, &task, generation, 0)
                    .await?
                    .await?;
                released = true;
            }
        }
    }
    if released {
        protocol::ring_doorbell(&deps.client, &job.class, job.priority, job.renderer).await;
    }
    Ok(())
}

/// Fails, transitively, the tasks that wait for failed task `index`.
async fn fail_dependents(deps: &Deps, job: &Job, index: u32) -> anyhow::Result<()> {
    let mut stack = plan::dependents(job, index);
    while let Some(dependent) = stack.pop() {
        let (before, after) = deps
            .ledger
            .change_task(&job.id, dependent, Change::Failed(0))
            .await?;
        if before != after {
            stack.extend(plan::dependents(job, dependent));
        }
    }
    Ok(())
}

/// Ends the job if every task has ended and every finished frame is stored.
///
/// A task's slot turns done before its frames are assembled, so that a collector that dies
/// in between finishes the work when the event comes back. Until then another event's
/// check may find every slot ended: the job waits for the missing frames, and the handler
/// still assembling them ends it.
async fn check_end(deps: &Deps, job: &Job, index: u32) -> anyhow::Result<()> {
    if !deps.ledger.page_ended(&job.id, index).await? {
        return Ok(());
    }
    let slots = deps.ledger.slots(&job.id, plan::task_count(job)).await?;
    let counts = Counts::of(&slots);
    if !counts.all_ended() {
        return Ok(());
    }
    let outputs = deps.store.list(&keys::output_prefix(&job.id)).await?;
    let stored: HashSet<&String> = outputs.iter().collect();
    if let Some(missing) = expected_outputs(job, &slots)
        .into_iter()
        .find(|key| !stored.contains(key))
    {
        tracing::debug!(job = %job.id, missing, "every task ended; waiting for a frame still being assembled");
        return Ok(());
    }
    if counts.failed == 0 && counts.canceled == 0 {
        end_job(deps, job, JobState::Done, None, Some(outputs)).await
    } else {
        let message = format!(
            "{} of {} tasks failed; the other outputs are kept",
            counts.failed, counts.total
        );
        end_job(deps, job, JobState::Failed, Some(message), Some(outputs)).await
    }
}

/// The output keys of every frame group whose tasks are all done, given the job's slots
/// by task index.
pub fn expected_outputs(job: &Job, slots: &[TaskSlot]) -> Vec<String> {
    if job.renderer == RendererKind::Noop {
        return Vec::new();
    }
    let tiles = plan::frame_group(job, 0).len().max(1);
    let mut keys = Vec::new();
    for (group, tasks) in slots.chunks(tiles).enumerate() {
        if tasks.iter().any(|s| s.state() != TaskState::Done) {
            continue;
        }
        let first = plan::task(job, (group * tiles) as u32);
        keys.extend(
            first
                .frames
                .iter()
                .map(|&frame| keys::output(&job.id, &output_name(job, first.layer, frame))),
        );
    }
    keys
}

/// Ends `job` in `state` (done, failed or canceled): records it, removes its queued tasks,
/// stops its running renders and announces it, listing `outputs` (the job's output keys,
/// listed from the store when `None`). Idempotent.
pub async fn end_job(
    deps: &Deps,
    job: &Job,
    state: JobState,
    message: Option<String>,
    outputs: Option<Vec<String>>,
) -> anyhow::Result<()> {
    let (record, changed) = deps
        .ledger
        .update_job(&job.id, |r| {
            if r.state.is_terminal() {
                return false;
            }
            r.state = state;
            r.finished_ms = Some(protocol::now_ms());
            r.message = message.clone();
            true
        })
        .await?;
    if !changed && record.state != state {
        return Ok(()); // it ended otherwise already
    }
    // Whatever is left of the job in the queue goes: queued tasks of a failed or canceled
    // job, late duplicates (a lost ack's redelivery) of a done one.
    let tasks = deps.js.get_stream(streams::TASKS_STREAM).await?;
    tasks
        .purge()
        .filter(protocol::job_tasks_filter(&job.id))
        .await
        .map_err(|e| anyhow::anyhow!("purging the tasks of {}: {e}", job.id))?;
    if state != JobState::Done {
        deps.ledger
            .change_all(&job.id, plan::task_count(job), Change::Cancel)
            .await?;
        deps.client
            .publish(
                protocol::control_subject(&job.id),
                Bytes::from_static(b"cancel"),
            )
            .await?;
    }
    let kind = match state {
        JobState::Done => EventKind::JobDone,
        JobState::Canceled => EventKind::JobCanceled,
        _ => EventKind::JobFailed,
    };
    let mut event = Event::new(kind, job.id.as_str());
    event.message = record.message.clone();
    let outputs = match outputs {
        Some(outputs) => outputs,
        None => deps.store.list(&keys::output_prefix(&job.id)).await?,
    };
    if outputs.len() <= 10_000 {
        event.outputs = outputs;
    }
    let msg_id = format!(
        "{}:{}:{}",
        job.id,
        kind.as_str(),
        record.finished_ms.unwrap_or(0)
    );
    deps.js
        .publish_with_headers(
            event.subject(),
            protocol::headers(Some(&msg_id)),
            protocol::encode(&event).into(),
        )
        .await?
        .await
        .map_err(|e| anyhow::anyhow!("publishing {}: {e}", kind.as_str()))?;
    if changed {
        tracing::info!(job = %job.id, state = state.as_str(), "job ended");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::job::from_toml;

    fn job(text: &str) -> Job {
        from_toml(text).unwrap().validate().unwrap()
    }

    fn done(attempt: u32) -> TaskSlot {
        TaskSlot(TaskState::Done, attempt)
    }

    #[test]
    fn forgetting_a_job_drops_its_canvases_only() {
        let mut stitching = Stitching::default();
        for (job, frame) in [("a", 1), ("a", 2), ("ab", 1)] {
            let canvas = Canvas::new(4, 4, PixelKind::U8, crate::core::job::Blend::Crop, 0, 2);
            stitching.canvases.insert(
                (JobId::parse(job).unwrap(), 0, frame),
                InProgress {
                    canvas,
                    touched: Instant::now(),
                    previewed: None,
                },
            );
        }
        stitching.forget("a");
        let left: Vec<_> = stitching.canvases.keys().map(|k| k.0.to_string()).collect();
        assert_eq!(left, ["ab"]);
    }

    #[test]
    fn expected_outputs_are_the_frames_of_groups_done_whole() {
        let failed = TaskSlot(TaskState::Failed, 3);
        let running = TaskSlot(TaskState::Running, 1);
        let names = |job: &Job, slots: &[TaskSlot]| -> Vec<String> {
            expected_outputs(job, slots)
                .into_iter()
                .map(|k| k.rsplit("/output/").next().unwrap().to_string())
                .collect()
        };
        // Chunks of two frames: each done task stands for both of its frames.
        let chunks = job("id = \"c\"\n[frames]\nrange = \"1-5\"\nchunk = 2");
        assert_eq!(
            names(&chunks, &[done(1), failed, done(2)]),
            ["frame_0001.png", "frame_0002.png", "frame_0005.png"]
        );
        // Tiles: a frame is expected only when all of its tiles are done.
        let tiles = job(
            "id = \"t\"\n[frames]\nrange = \"1-2\"\n[tiles]\ngrid = [2, 1]\n[[layers]]\nname = \"beauty\"\n[[layers]]\nname = \"depth\"\n[image]\nformat = \"exr\"",
        );
        let slots = [
            done(1),
            done(1),
            done(1),
            running,
            done(2),
            done(1),
            failed,
            done(1),
        ];
        assert_eq!(
            names(&tiles, &slots),
            ["beauty/frame_0001.exr", "beauty/frame_0002.exr"]
        );
        // A renderer that writes nothing is expected to store nothing.
        let noop = job("id = \"n\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-2\"");
        assert!(expected_outputs(&noop, &[done(1), done(1)]).is_empty());
    }
}
