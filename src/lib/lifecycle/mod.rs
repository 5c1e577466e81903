//! The steps of a job's life that more than one role takes: ending it — by the collector
//! when its last task ends or one fails under policy `fail`, by the client on
//! `tessera cancel` — and deleting it — by the client on `tessera delete`, by the
//! collector's retention — queuing held tasks ([`held`]), by the planner, the collector
//! and `tessera resume`, a job planned alone in its queue cut to its fair window when
//! another comes ([`alone`]), by the planner, the tokens of limits they take and give back
//! ([`tokens`]), jobs that run after others, settled as those end ([`after`]), and jobs
//! that run after another frame by frame, released frame by frame ([`frames`]), and the
//! published versions of jobs that name their output ([`versions`]).
//! They live below the roles so that neither imports the other.

pub mod after;
pub mod alone;
pub mod frames;
pub mod held;
pub mod tokens;
pub mod versions;

use crate::bus::protocol::{self, Event, EventKind};
use crate::bus::{publish, streams};
use crate::config::Deps;
use crate::core::job::{Job, JobId};
use crate::core::plan;
use crate::core::state::{Change, JobState};
use crate::store::keys;

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
    if changed {
        crate::metrics::METRICS
            .jobs_ended
            .get_or_create(&crate::metrics::StateLabel {
                state: state.as_str().into(),
            })
            .inc();
    }
    // Whatever is left of the job in the queue goes: queued tasks of a failed or canceled
    // job, late duplicates (a lost ack's redelivery) of a done one.
    streams::purge_job_tasks(&deps.js, &job.id).await?;
    if state != JobState::Done {
        deps.ledger
            .change_all(&job.id, plan::task_count(job), Change::Cancel)
            .await?;
        publish::stop_renders(&deps.client, &job.id).await?;
    }
    // Its tokens go to the jobs waiting for them.
    tokens::give_back(deps, job, None).await?;
    let kind = match state {
        JobState::Done => EventKind::JobDone,
        JobState::Canceled => EventKind::JobCanceled,
        _ => EventKind::JobFailed,
    };
    let mut event = Event::new(kind, job.id.as_str());
    event.incarnation = Some(job.incarnation.clone());
    event.message = record.message.clone();
    // A published version's trace goes in before the job is announced done.
    if state == JobState::Done {
        versions::write_trace(deps, job).await?;
    }
    let folder = keys::output_prefix(job);
    let mut outputs = match outputs {
        Some(outputs) => outputs,
        None => deps.store.list(&folder).await?,
    };
    outputs.retain(|key| !keys::is_version_record(&folder, key));
    if outputs.len() <= 10_000 {
        event.outputs = outputs;
    }
    let msg_id = protocol::end_msg_id(
        &job.id,
        &job.incarnation,
        kind.as_str(),
        record.finished_ms.unwrap_or(0),
    );
    publish::event_pending(&deps.js, &event, Some(&msg_id))
        .await?
        .confirmed()
        .await?;
    if changed {
        tracing::info!(job = %job.id, state = state.as_str(), "job ended");
    }
    // Raw outputs no frame took are swept once the job is announced: the attempts whose
    // `task.done` was never stored (a worker killed after its upload) left them. A failed
    // or canceled job keeps its parts for `tessera retry`.
    if state == JobState::Done && !job.keep_parts {
        deps.store
            .delete_prefix(&keys::parts_prefix(&job.id))
            .await?;
    }
    // The jobs that run after it go on, or fail.
    after::upstream_ended(deps, &job.id, state).await?;
    Ok(())
}

/// Announces a change of `job` made in its record's round `withdrawals` (`job.changed`,
/// saying `message`; `what` names the change in the event's message id, so that one
/// change is announced once); returns the event's stream sequence. Collectors that read
/// it count the job afresh.
pub async fn announce_change(
    deps: &Deps,
    job: &Job,
    withdrawals: u32,
    what: &str,
    message: String,
) -> anyhow::Result<u64> {
    let mut event = Event::new(EventKind::JobChanged, job.id.as_str());
    event.message = Some(message);
    event.incarnation = Some(job.incarnation.clone());
    let msg_id = protocol::changed_msg_id(&job.id, &job.incarnation, withdrawals, what);
    publish::event_pending(&deps.js, &event, Some(&msg_id))
        .await?
        .stored_at()
        .await
}

/// What deleting a job found and removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// Whether the job had a record.
    pub record: bool,
    /// Objects removed (raw outputs, logs, previews, assembled results).
    pub objects: usize,
}

/// Deletes `job`, which has ended (or has no record left: a delete cut short): its queued
/// tasks, its objects and its events go, then its record and task pages, so that a delete
/// interrupted at any point is finished by running it again. Published versions are not
/// the job's and stay; so do scene blobs, which other jobs may share.
pub async fn delete_job(deps: &Deps, id: &JobId) -> anyhow::Result<Deleted> {
    let record = deps.ledger.job(id).await?;
    if let Some((record, _)) = &record
        && !record.state.is_terminal()
    {
        anyhow::bail!("job {id} is {}: cancel it first", record.state.as_str());
    }
    // Late duplicates of its tasks, and the renders of a job canceled just before.
    streams::purge_job_tasks(&deps.js, id).await?;
    let prefix = keys::job_prefix(id);
    let mut objects = deps.store.delete_prefix(&prefix).await?;
    streams::purge_job_events(&deps.js, id).await?;
    streams::purge_job_records(&deps.js, id).await?;
    // What a collector or worker busy with the job wrote after the first sweep (with the
    // record gone, a collector drops the job's events and writes nothing new for it).
    objects += deps.store.delete_prefix(&prefix).await?;
    if record.is_some() {
        tracing::info!(job = %id, objects, "job deleted");
    }
    Ok(Deleted {
        record: record.is_some(),
        objects,
    })
}
