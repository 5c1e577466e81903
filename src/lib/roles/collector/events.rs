//! The collector's handling of one event: the ledger transition it stands for, then the
//! steps that follow a transition — assembly, releasing the tasks that waited for it,
//! failing those that can no longer run, and ending the job. Every step is idempotent, so
//! an event redelivered after a crash finishes what its first delivery began.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream;

use super::assemble::{self, Stitching};
use super::ending;
use crate::bus::consume::Handler;
use crate::bus::protocol::{self, Event, EventKind};
use crate::bus::publish;
use crate::config::Deps;
use crate::core::job::{FailurePolicy, Job, JobId};
use crate::core::plan;
use crate::core::state::{Change, JobState, TaskSlot, TaskState};
use crate::lifecycle;

/// Jobs whose validated spec is kept in memory.
const JOB_CACHE: usize = 256;

/// The handler of events: what it keeps between events is only ever a speed-up.
pub(super) struct Collector {
    pub(super) deps: Deps,
    /// Validated jobs by id.
    pub(super) jobs: HashMap<JobId, Arc<Job>>,
    /// Tiled frames being stitched.
    pub(super) stitching: Stitching,
}

impl Handler for Collector {
    async fn handle(&mut self, msg: &jetstream::Message) -> anyhow::Result<()> {
        handle(&self.deps, &mut self.jobs, &mut self.stitching, msg).await
    }
}

/// The job `id`, validated from its record (kept for the next events of the job).
async fn load_job(
    deps: &Deps,
    jobs: &mut HashMap<JobId, Arc<Job>>,
    id: &JobId,
) -> anyhow::Result<Option<Arc<Job>>> {
    if jobs.len() > JOB_CACHE {
        jobs.clear();
    }
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

/// Applies one event: its ledger transition, then the steps that follow it.
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
            assemble::stitch_tile(deps, stitching, &job, index, attempt).await?;
            assemble::assemble(deps, stitching, &job, index).await?;
            release_dependents(deps, &job, index).await?;
            ending::check_end(deps, &job, index).await?;
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
                    lifecycle::end_job(deps, &job, JobState::Failed, Some(reason), None).await?
                }
                FailurePolicy::Continue => ending::check_end(deps, &job, index).await?,
            }
        }
        _ => {}
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
                publish::task(&deps.js, job, &task, generation, 0)
                    .await?
                    .confirmed()
                    .await?;
                released = true;
            }
        }
    }
    if released {
        publish::doorbell(&deps.client, &job.class, job.priority, job.renderer).await;
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
