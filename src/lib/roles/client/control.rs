//! Changing a job from the CLI: `tessera retry`, `tessera cancel` and `tessera delete`.

use anyhow::Context as _;

use crate::bus::protocol::{Event, EventKind};
use crate::bus::publish;
use crate::bus::streams::{self, TaskQueue};
use crate::config::Deps;
use crate::core::job::{Class, JobId, Priority};
use crate::core::state::{JobState, TaskState};
use crate::lifecycle;

/// Queues a failed or canceled job's failed and canceled tasks again, with fresh attempts
/// (their numbering goes on). Returns how many tasks were queued.
///
/// Crash-safe: the record is set running with `requeue_pending` first, the tasks are
/// queued, then the mark is cleared; a retry cut short in between leaves the mark, and the
/// next `tessera retry` of the job finishes it (its task messages keep their ids, so what
/// was already queued within the dedup window is not queued twice).
pub async fn retry(deps: &Deps, id: &JobId) -> anyhow::Result<usize> {
    let (record, changed) = deps
        .ledger
        .update_job(id, |r| {
            if r.requeue_pending {
                return false; // a retry cut short: finish it
            }
            if !matches!(r.state, JobState::Failed | JobState::Canceled) {
                return false;
            }
            r.state = JobState::Running;
            r.message = None;
            r.finished_ms = None;
            r.generation += 1;
            r.requeue_pending = true;
            true
        })
        .await?;
    if !changed && !record.requeue_pending {
        anyhow::bail!(
            "job {id} is {}: only failed or canceled jobs can be retried",
            record.state.as_str()
        );
    }
    let job = record
        .job()
        .map_err(|e| anyhow::anyhow!("stored job {id}: {e}"))?;
    let tasks = crate::core::plan::task_count(&job);
    deps.ledger
        .change_all(id, tasks, crate::core::state::Change::Requeue)
        .await?;
    // Every queued task of the job is one this retry queues: the job had ended, so none
    // was queued before it.
    let slots = deps.ledger.slots(id, tasks).await?;
    let queued: Vec<u32> = (0..tasks)
        .filter(|&i| slots[i as usize].state() == TaskState::Queued)
        .collect();
    // Announced once per generation, whether or not a retry cut short announced it: a
    // `tessera wait` counts the retries it has seen against the record's generation.
    let mut event = Event::new(EventKind::JobRetried, id.as_str());
    event.message = Some(format!("{} tasks queued again", queued.len()));
    event.incarnation = Some(job.incarnation.clone());
    let msg_id = crate::bus::protocol::retried_msg_id(id, &job.incarnation, record.generation);
    publish::event_pending(&deps.js, &event, Some(&msg_id))
        .await?
        .confirmed()
        .await?;
    // A task whose dependencies are not done waits: the collector queues it when they are.
    for &index in &queued {
        let task = crate::core::plan::task(&job, index);
        let ready = task
            .waits_for
            .iter()
            .all(|&d| slots[d as usize].state() == TaskState::Done);
        if ready {
            let attempts_before = slots[index as usize].attempt();
            publish::task(&deps.js, &job, &task, record.generation, attempts_before)
                .await?
                .confirmed()
                .await?;
        }
    }
    deps.ledger
        .update_job(id, |r| std::mem::replace(&mut r.requeue_pending, false))
        .await?;
    publish::doorbell(&deps.client, &job.class, job.priority, job.renderer).await;
    Ok(queued.len())
}

/// Cancels the job: queued tasks purged, running renders stopped, state `canceled`.
pub async fn cancel(deps: &Deps, job: &JobId) -> anyhow::Result<()> {
    let (record, _) = deps
        .ledger
        .job(job)
        .await?
        .with_context(|| format!("no job {job}"))?;
    if record.state.is_terminal() {
        anyhow::bail!("job {job} has already ended ({})", record.state.as_str());
    }
    let job = record
        .job()
        .map_err(|e| anyhow::anyhow!("stored job {job}: {e}"))?;
    lifecycle::end_job(
        deps,
        &job,
        JobState::Canceled,
        Some("canceled by request".into()),
        None,
    )
    .await
}

/// How long `tessera delete --force` waits for the renders of the job it canceled to stop.
const RENDERS_STOP: std::time::Duration = std::time::Duration::from_secs(30);

/// Deletes a job: its objects (raw outputs, logs, previews, results), its events and its
/// records; its published versions stay. A job still active is refused unless `force`,
/// which cancels it first and waits for its renders to stop. A delete cut short is
/// finished by running it again.
pub async fn delete(deps: &Deps, id: &JobId, force: bool) -> anyhow::Result<lifecycle::Deleted> {
    if let Some((record, _)) = deps.ledger.job(id).await?
        && !record.state.is_terminal()
    {
        if !force {
            anyhow::bail!(
                "job {id} is {}: cancel it first, or delete it with --force",
                record.state.as_str()
            );
        }
        match cancel(deps, id).await {
            Ok(()) => {}
            // It ended meanwhile.
            Err(e)
                if deps
                    .ledger
                    .job(id)
                    .await?
                    .is_some_and(|(r, _)| r.state.is_terminal()) =>
            {
                tracing::debug!(error = %e, "the job ended before its cancel");
            }
            Err(e) => return Err(e),
        }
        renders_stopped(deps, id).await?;
    }
    let deleted = lifecycle::delete_job(deps, id).await?;
    if !deleted.record && deleted.objects == 0 {
        anyhow::bail!("no job {id}");
    }
    Ok(deleted)
}

/// Waits until no live worker runs an attempt of `job` (each stops on the cancel), or
/// [`RENDERS_STOP`] passes.
async fn renders_stopped(deps: &Deps, job: &JobId) -> anyhow::Result<()> {
    let prefix = format!("{job}/");
    let deadline = tokio::time::Instant::now() + RENDERS_STOP;
    loop {
        let workers = crate::bus::registry::live_workers(&deps.js).await?;
        let busy = workers
            .iter()
            .any(|w| w.running.iter().any(|r| r.starts_with(&prefix)));
        if !busy {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(job = %job, "renders of the job still run; deleting anyway");
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Pauses (or with `pause` false, resumes) the task queues of `class` and `priority`, every
/// one when `None`: queued tasks stay queued, running ones finish, the pause survives
/// restarts. A resumed queue's workers are woken at once. Returns the queues changed.
pub async fn pause(
    deps: &Deps,
    class: Option<&Class>,
    priority: Option<Priority>,
    pause: bool,
) -> anyhow::Result<Vec<TaskQueue>> {
    let changed = streams::pause_task_queues(&deps.js, class, priority, pause).await?;
    if !pause {
        for queue in &changed {
            publish::doorbell(&deps.client, &queue.class, queue.priority, queue.renderer).await;
        }
    }
    Ok(changed)
}
