//! Changing a job from the CLI: `tessera retry`, `tessera cancel`, `tessera delete`,
//! `tessera suspend`, `tessera resume` and `tessera priority`.

use anyhow::Context as _;

use crate::bus::protocol::{Event, EventKind};
use crate::bus::publish;
use crate::bus::streams::{self, TaskQueue};
use crate::config::Deps;
use crate::core::job::{Class, JobId, Priority};
use crate::core::state::{Change, JobState, TaskState};
use crate::lifecycle::{self, held};

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
            // Retried by hand: it runs whether or not the jobs it waited for are done.
            r.waiting_for.clear();
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
    let ready: Vec<u32> = queued
        .iter()
        .copied()
        .filter(|&i| {
            crate::core::plan::task(&job, i)
                .waits_for
                .iter()
                .all(|&d| slots[d as usize].state() == TaskState::Done)
        })
        .collect();
    if job.limits.is_empty() {
        for &index in &ready {
            let task = crate::core::plan::task(&job, index);
            let attempts_before = slots[index as usize].attempt();
            publish::task(&deps.js, &job, &task, record.round(), attempts_before)
                .await?
                .confirmed()
                .await?;
        }
    } else {
        // Queued as they get tokens, like the job's first tasks.
        held::change_pages(deps, &job, &ready, Change::Withhold).await?;
        held::queue_held(deps, &job, &record).await?;
    }
    deps.ledger
        .update_job(id, |r| std::mem::replace(&mut r.requeue_pending, false))
        .await?;
    let key = !job.order.is_sequence();
    publish::doorbell(&deps.client, &job.class, job.priority, job.renderer, key).await;
    publish::flush(&deps.client).await;
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
            publish::doorbell(
                &deps.client,
                &queue.class,
                queue.priority,
                queue.renderer,
                true,
            )
            .await;
        }
        publish::flush(&deps.client).await;
    }
    Ok(changed)
}

/// How long a change of a job waits for the collectors to have read its announcement
/// before it takes tasks out of the queue (a farm with no collector up goes on without).
const COLLECTORS_READ: std::time::Duration = std::time::Duration::from_secs(10);

/// What suspending a job or changing its priority did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    /// Queued tasks taken out of the queue (and held).
    pub withdrawn: usize,
    /// Held tasks queued (again).
    pub queued: u32,
}

/// Suspends a job: its queued tasks are taken out of the queue and held, running ones
/// finish, and nothing of it is queued until `tessera resume`; the suspension is in the
/// job's record, so it survives restarts. A suspend cut short is finished by running it
/// again.
pub async fn suspend(deps: &Deps, id: &JobId) -> anyhow::Result<Changed> {
    let (record, _) = deps
        .ledger
        .update_job(id, |r| {
            if r.state.is_terminal() || r.suspended {
                return false;
            }
            r.suspended = true;
            r.withdrawals += 1;
            true
        })
        .await?;
    let job = active(id, &record)?;
    announce(deps, &job, &record, "suspended").await?;
    let withdrawn = withdraw(deps, &job, &[job.priority]).await?;
    Ok(Changed {
        withdrawn,
        queued: 0,
    })
}

/// Resumes a suspended job: its held tasks are queued again (as many as its window
/// takes; the collector queues the rest as they start). Run on a job that is not
/// suspended, it queues what a change cut short left held.
pub async fn resume(deps: &Deps, id: &JobId) -> anyhow::Result<Changed> {
    let (record, _) = deps
        .ledger
        .update_job(id, |r| {
            !r.state.is_terminal() && std::mem::take(&mut r.suspended)
        })
        .await?;
    let job = active(id, &record)?;
    announce(deps, &job, &record, "resumed").await?;
    let queued = held::queue_held(deps, &job, &record).await?;
    Ok(Changed {
        withdrawn: 0,
        queued,
    })
}

/// Gives a job another priority: its remaining tasks are queued at `priority` (those
/// queued at another are taken out and queued again, unless the job is suspended);
/// running ones finish where they are. A change cut short is finished by running it
/// again.
pub async fn set_priority(deps: &Deps, id: &JobId, priority: Priority) -> anyhow::Result<Changed> {
    let (record, _) = deps
        .ledger
        .update_job(id, |r| {
            let current = r.priority.or_else(|| {
                r.spec
                    .priority
                    .as_deref()
                    .and_then(Priority::parse)
                    .or(Some(Priority::Normal))
            });
            if r.state.is_terminal() || current == Some(priority) {
                return false;
            }
            r.priority = Some(priority);
            r.withdrawals += 1;
            true
        })
        .await?;
    let job = active(id, &record)?;
    announce(deps, &job, &record, &format!("priority {priority}")).await?;
    let others: Vec<Priority> = Priority::ALL
        .into_iter()
        .filter(|&p| p != priority)
        .collect();
    let withdrawn = withdraw(deps, &job, &others).await?;
    let queued = match record.suspended {
        true => 0,
        false => held::queue_held(deps, &job, &record).await?,
    };
    Ok(Changed { withdrawn, queued })
}

/// The job of `record`, which must not have ended.
fn active(
    id: &JobId,
    record: &crate::core::state::JobRecord,
) -> anyhow::Result<crate::core::job::Job> {
    if record.state.is_terminal() {
        anyhow::bail!("job {id} has already ended ({})", record.state.as_str());
    }
    record
        .job()
        .map_err(|e| anyhow::anyhow!("stored job {id}: {e}"))
}

/// Announces a change of `job` (`job.changed`, saying `what`) and waits until the
/// collectors have read it: from then on, they read the job afresh and queue nothing of
/// it that the change holds back.
async fn announce(
    deps: &Deps,
    job: &crate::core::job::Job,
    record: &crate::core::state::JobRecord,
    what: &str,
) -> anyhow::Result<()> {
    let sequence =
        crate::lifecycle::announce_change(deps, job, record.withdrawals, what, what.to_string())
            .await?;
    let deadline = tokio::time::Instant::now() + COLLECTORS_READ;
    while !streams::events_handled(&deps.js, &job.id, sequence).await? {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(job = %job.id, "no collector has read the change yet; going on");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Takes `job`'s queued tasks out of its queues of `priorities` and holds them; returns
/// how many.
async fn withdraw(
    deps: &Deps,
    job: &crate::core::job::Job,
    priorities: &[Priority],
) -> anyhow::Result<usize> {
    let mut withdrawn = 0;
    for &priority in priorities {
        withdrawn += held::withhold(deps, job, priority, 0).await?;
    }
    Ok(withdrawn)
}
