//! The collector's handling of one event: the ledger transition it stands for, then the
//! steps that follow a transition — assembly, releasing the tasks that waited for it,
//! failing those that can no longer run, and ending the job. Every step is idempotent, so
//! an event redelivered after a crash finishes what its first delivery began.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_nats::jetstream;

use super::assemble::{self, Stitching};
use crate::bus::consume::Handler;
use crate::bus::protocol::{self, Event, EventKind};
use crate::bus::publish;
use crate::config::Deps;
use crate::core::job::{FailurePolicy, Job, JobId};
use crate::core::plan;
use crate::core::state::{Change, JobState, Round, TaskSlot, TaskState};
use crate::lifecycle;

/// What the partitions a collector serves share.
pub(super) type Shared<T> = Arc<tokio::sync::Mutex<T>>;

/// Jobs whose validated spec is kept in memory.
const JOB_CACHE: usize = 256;

/// The handler of events: what it keeps between events is only ever a speed-up.
pub(super) struct Collector {
    pub(super) deps: Deps,
    /// Validated jobs by id.
    pub(super) jobs: HashMap<JobId, Arc<Job>>,
    /// Tiled frames being stitched, shared by the partitions this collector serves.
    pub(super) stitching: Shared<Stitching>,
    /// The counts of windowed jobs.
    pub(super) windows: super::window::Windows,
    /// Jobs (and incarnations) known to be marked running or past it, whose starts need
    /// no look at their records.
    pub(super) started: HashSet<(JobId, String)>,
}

impl Handler for Collector {
    async fn handle(&mut self, msg: &jetstream::Message) -> anyhow::Result<()> {
        let mut results = super::batch::handle(self, &[msg]).await;
        results.pop().unwrap_or(Ok(()))
    }

    async fn handle_batch(&mut self, msgs: &[&jetstream::Message]) -> Vec<anyhow::Result<()>> {
        super::batch::handle(self, msgs).await
    }

    /// A task event that cannot be applied for an hour fails its task with the reason, so
    /// that its job ends instead of waiting for it forever.
    async fn give_up(
        &mut self,
        msg: &jetstream::Message,
        error: &anyhow::Error,
    ) -> anyhow::Result<()> {
        let reason = format!(
            "the collector could not apply this task's event ({} tries over about an hour): {error:#}",
            crate::bus::consume::GIVE_UP_AFTER
        );
        tracing::error!(subject = %msg.subject, %reason, "giving up on an event");
        let Ok(event) = protocol::decode::<Event>(&msg.payload) else {
            return Ok(());
        };
        if event.kind == EventKind::TaskFailed || event.index.is_none() {
            return Ok(());
        }
        let mut failed = event.clone();
        failed.kind = EventKind::TaskFailed;
        failed.time_ms = protocol::now_ms();
        failed.outputs.clear();
        failed.message = Some(reason);
        publish::event(&self.deps.js, &failed).await
    }
}

/// The job `id`, validated from its record (kept for the next events of the job). A job
/// kept from an earlier incarnation than `incarnation` is read again.
async fn load_job(
    deps: &Deps,
    jobs: &mut HashMap<JobId, Arc<Job>>,
    id: &JobId,
    incarnation: Option<&str>,
) -> anyhow::Result<Option<Arc<Job>>> {
    if jobs.len() > JOB_CACHE {
        jobs.clear();
    }
    if let Some(job) = jobs.get(id)
        && incarnation.is_none_or(|i| i == job.incarnation)
    {
        return Ok(Some(job.clone()));
    }
    let Some((record, _)) = deps.ledger.job(id).await? else {
        jobs.remove(id);
        return Ok(None);
    };
    let job = Arc::new(
        record
            .job()
            .map_err(|e| anyhow::anyhow!("stored spec of job {id} no longer validates: {e}"))?,
    );
    jobs.insert(id.clone(), job.clone());
    Ok(Some(job))
}

/// A task event ready for its ledger transition.
pub(super) struct Transition {
    /// The event.
    pub(super) event: Event,
    /// Its job.
    pub(super) job: Arc<Job>,
    /// The task's index.
    pub(super) index: u32,
    /// The attempt it is about.
    pub(super) attempt: u32,
    /// The change it stands for.
    pub(super) change: Change,
    /// A tiled task's decoded parts (`task.done` only), checked already.
    pub(super) parts: assemble::Parts,
    /// When the server stored the event (a worker's own clock may be off).
    pub(super) stored_at: u64,
}

/// What reading an event found.
pub(super) enum Prepared {
    /// Nothing more to do (a job-level event, an event to drop, a bad part handled).
    Settled,
    /// The job was suspended, resumed or given another priority: what is kept of it is
    /// read again.
    Changed(JobId),
    /// A transition to apply, then its steps.
    Transition(Box<Transition>),
    /// Every frame of the job is in: its sequence outputs are to be written.
    Encoding(Arc<Job>),
}

/// Reads one event up to its ledger transition: decoded and checked, its job loaded, a
/// tiled task's parts read and checked (a bad part is handled here).
pub(super) async fn prepare(
    deps: &Deps,
    jobs: &mut HashMap<JobId, Arc<Job>>,
    stitching: &Shared<Stitching>,
    msg: &jetstream::Message,
) -> anyhow::Result<Prepared> {
    let event: Event = match protocol::decode(&msg.payload) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(subject = %msg.subject, error = %e, "ignoring a malformed event");
            return Ok(Prepared::Settled);
        }
    };
    let change = match event.kind {
        EventKind::TaskStarted => Change::Started,
        EventKind::TaskRetry => Change::Retry,
        EventKind::TaskDone => Change::Done,
        EventKind::TaskFailed => Change::Failed,
        // Frames of an ended job that are still in memory will not be finished, and its
        // spec is not needed any more (a late event reads it again).
        EventKind::JobFailed | EventKind::JobCanceled | EventKind::JobDone => {
            stitching.lock().await.forget(&event.job);
            if let Ok(id) = JobId::parse(&event.job) {
                jobs.remove(&id);
            }
            return Ok(Prepared::Settled);
        }
        EventKind::JobChanged => {
            let Ok(id) = JobId::parse(&event.job) else {
                return Ok(Prepared::Settled);
            };
            jobs.remove(&id);
            return Ok(Prepared::Changed(id));
        }
        EventKind::JobEncoding => {
            let Ok(id) = JobId::parse(&event.job) else {
                return Ok(Prepared::Settled);
            };
            let incarnation = event.incarnation.as_deref();
            return Ok(match load_job(deps, jobs, &id, incarnation).await? {
                Some(job) if incarnation.is_none_or(|i| i == job.incarnation) => {
                    Prepared::Encoding(job)
                }
                _ => Prepared::Settled, // deleted since
            });
        }
        _ => return Ok(Prepared::Settled),
    };
    let (Ok(id), Some(index), Some(attempt)) =
        (JobId::parse(&event.job), event.index, event.attempt)
    else {
        tracing::warn!(subject = %msg.subject, "ignoring a task event without job, index or attempt");
        return Ok(Prepared::Settled);
    };
    let Some(job) = load_job(deps, jobs, &id, event.incarnation.as_deref()).await? else {
        tracing::warn!(job = %id, "ignoring an event of an unknown job");
        return Ok(Prepared::Settled);
    };
    if event
        .incarnation
        .as_deref()
        .is_some_and(|i| i != job.incarnation)
    {
        tracing::warn!(job = %id, "ignoring an event of a deleted job of the same id");
        return Ok(Prepared::Settled);
    }
    if index >= plan::task_count(&job) {
        tracing::warn!(job = %id, index, "ignoring an event of a task the job does not have");
        return Ok(Prepared::Settled);
    }
    // A tile is checked before its task counts as done: a part that cannot be assembled
    // makes the attempt a failed one instead of looping the collector.
    let mut parts = Vec::new();
    if event.kind == EventKind::TaskDone && job.tiles.is_some() {
        match assemble::read_parts(deps, &job, index, attempt).await? {
            Ok(read) => parts = read,
            // This very attempt is done already: the event came back after its frame was
            // stored and its part removed (a step after it failed, the store stopped
            // answering, or the collector died). It goes on without its part, so that the
            // steps after it, and the end check, run again.
            Err(_) if done_by(deps, &job, index, attempt).await? => {}
            Err(reason) => {
                bad_part(deps, &job, index, attempt, &event, reason).await?;
                return Ok(Prepared::Settled);
            }
        }
    }
    let stored_at = msg.info().map_or(event.time_ms, |info| {
        (info.published.unix_timestamp_nanos() / 1_000_000) as u64
    });
    Ok(Prepared::Transition(Box::new(Transition {
        event,
        job,
        index,
        attempt,
        change: change(attempt),
        parts,
        stored_at,
    })))
}

/// Whether the job of a transition may have ended with it: the end check to run (once
/// per job and page of a batch) after every transition's steps.
pub(super) type EndCheck = (Arc<Job>, u32);

/// The steps after `t`'s transition to `after` (its start is recorded by the caller, see
/// [`mark_running`]); an end check it calls for
/// is returned rather than run, so that a batch runs each once. A tiled job's steps are
/// given the frames being stitched; without them (an untiled job) steps of several
/// transitions may run at once.
pub(super) async fn finish(
    deps: &Deps,
    mut stitching: Option<&mut Stitching>,
    t: Transition,
    after: TaskSlot,
) -> anyhow::Result<Option<EndCheck>> {
    let Transition {
        event,
        job,
        index,
        attempt,
        parts,
        ..
    } = t;
    match event.kind {
        // Also when the slot was already ours: a collector that died after the transition
        // finishes the remaining (idempotent) steps.
        EventKind::TaskDone if after == TaskSlot(TaskState::Done, attempt) => {
            if let Some(stitching) = stitching.as_deref_mut() {
                assemble::stitch_tile(deps, stitching, &job, index, parts).await?;
            }
            assemble::assemble(deps, stitching, &job, index, after).await?;
            lifecycle::frames::dependents_of_done(deps, &job, index).await?;
            return Ok(Some((job, index)));
        }
        EventKind::TaskFailed if after == TaskSlot(TaskState::Failed, attempt) => {
            tracing::warn!(job = %job.id, task = %event.task.as_ref().map(|t| t.0.as_str()).unwrap_or("?"), "task failed for good");
            fail_dependents(deps, &job, index).await?;
            lifecycle::frames::upstream_failed(deps, &job, index).await?;
            let id = plan::task(&job, index).id;
            let why = event.message.as_deref().unwrap_or("no reason given");
            let reason = match attempt {
                // Failed before it ran: what it waited for in another job failed.
                0 => format!("task {id} could not run: {why}"),
                _ => format!("task {id} failed after {attempt} attempts: {why}"),
            };
            match job.retry.on_failure {
                FailurePolicy::Fail => {
                    lifecycle::end_job(deps, &job, JobState::Failed, Some(reason), None).await?
                }
                FailurePolicy::Continue => return Ok(Some((job, index))),
            }
        }
        _ => {}
    }
    Ok(None)
}

/// When `t`'s task started, if `t` is its start (a `task.started`, or the `task.done` of a
/// task done before its start was reported) and moved it from waiting to running or done:
/// its job runs from then (see [`mark_running`]).
pub(super) fn started_at(t: &Transition, before: TaskSlot, after: TaskSlot) -> Option<u64> {
    let at = match t.event.kind {
        EventKind::TaskStarted => Some(t.stored_at),
        EventKind::TaskDone => t.event.started_ms,
        _ => None,
    }?;
    (before != after && before.state() != TaskState::Running).then_some(at)
}

/// Marks `job` running since `at` if it is still queued (a job never goes back to
/// queued, so once it is not, this changes nothing again).
pub(super) async fn mark_running(deps: &Deps, job: &JobId, at: u64) -> anyhow::Result<()> {
    deps.ledger
        .update_job(job, |r| {
            if r.state != JobState::Queued {
                return false;
            }
            r.state = JobState::Running;
            r.started_ms = Some(at);
            true
        })
        .await?;
    Ok(())
}

/// Whether the ledger has task `index` done by `attempt`.
async fn done_by(deps: &Deps, job: &Job, index: u32, attempt: u32) -> anyhow::Result<bool> {
    let slot = deps.ledger.slots_of(&job.id, [index]).await?;
    Ok(slot.first() == Some(&TaskSlot(TaskState::Done, attempt)))
}

/// A done attempt whose part cannot be assembled: retried as a failed attempt while the
/// job allows more (the task queued again, the reason in `task.retry`), else failed for
/// good (a `task.failed` event, handled as any other).
async fn bad_part(
    deps: &Deps,
    job: &Job,
    index: u32,
    attempt: u32,
    done: &Event,
    reason: String,
) -> anyhow::Result<()> {
    tracing::warn!(job = %job.id, index, attempt, %reason, "a task's output cannot be assembled");
    let task = plan::task(job, index);
    let report = |kind| {
        let mut event = Event::new(kind, job.id.as_str());
        event.task = Some(task.id.clone());
        event.index = Some(index);
        event.attempt = Some(attempt);
        event.worker = done.worker.clone();
        event.incarnation = Some(job.incarnation.clone());
        event.message = Some(reason.clone());
        event
    };
    // A task that already ended (a redelivered event of an assembled frame, whose parts
    // are removed) is left as it is.
    let slot = deps.ledger.slots_of(&job.id, [index]).await?;
    if slot.first().is_some_and(|s| s.state().is_terminal()) {
        return Ok(());
    }
    if attempt >= job.retry.max_attempts {
        return publish::event(&deps.js, &report(EventKind::TaskFailed)).await;
    }
    let (before, after) = deps
        .ledger
        .change_task(&job.id, index, Change::Retry(attempt))
        .await?;
    if before == after && after.state() != TaskState::Queued {
        return Ok(()); // the task moved on (another attempt is running)
    }
    publish::event(&deps.js, &report(EventKind::TaskRetry)).await?;
    let round = round_of(deps, job).await?;
    // Queued again with this attempt counted; a second try of this step is deduplicated.
    publish::task_again(&deps.js, job, &task, round, attempt)
        .await?
        .confirmed()
        .await?;
    let key = crate::core::order::is_key(job, &task);
    publish::doorbell(&deps.client, &job.class, job.priority, job.renderer, key).await;
    Ok(())
}

/// The round `job`'s tasks are queued in now, from its record.
async fn round_of(deps: &Deps, job: &Job) -> anyhow::Result<Round> {
    Ok(deps
        .ledger
        .job(&job.id)
        .await?
        .map(|(r, _)| r.round())
        .unwrap_or_default())
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
