//! A job alone in its queue, and the cut when another comes.
//!
//! A fair window costs the collector a release for every few starts: it is what lets a
//! job planned behind a large one start at once, but while a job is alone in its queue
//! nobody waits behind it. So the planner gives a job that finds its queue empty a large
//! window ([`Window::alone`]), which the collector tops up in large batches; the next job
//! planned into the queue first cuts it to its fair window ([`Window::of`]): the tasks
//! queued past that are taken back out and held ([`held::withhold`](super::held::withhold)),
//! and its collector queues them as its tasks start, as for any windowed job.
//!
//! [`Window::alone`]: crate::core::state::Window::alone
//! [`Window::of`]: crate::core::state::Window::of

use crate::bus::protocol;
use crate::bus::streams::{self, TASKS_STREAM};
use crate::config::Deps;
use crate::core::job::{Job, JobId};

/// The jobs other than `job` with tasks in `job`'s queue (queued, or held by workers).
pub async fn others_in_queue(deps: &Deps, job: &Job) -> anyhow::Result<Vec<JobId>> {
    let stream = deps.js.get_stream(TASKS_STREAM).await?;
    // Key tasks too: the class and priority's subjects, narrowed to the renderer below.
    let filter = protocol::priority_tasks_filter(&job.class, job.priority);
    let subjects = streams::subjects(&stream, &filter).await?;
    let mut others: Vec<JobId> = Vec::new();
    let found = subjects
        .into_iter()
        .filter(|&(_, count)| count > 0)
        .filter(|(subject, _)| {
            protocol::parse_task_queue(subject).is_some_and(|(_, _, r)| r == job.renderer)
        })
        .filter_map(|(subject, _)| protocol::parse_task_job(&subject))
        .filter(|other| *other != job.id);
    for other in found {
        // A job with key tasks has two subjects in the queue.
        if !others.contains(&other) {
            others.push(other);
        }
    }
    Ok(others)
}

/// Cuts job `id`, if it was planned alone in its queue, to its fair window of `size`
/// (from [`Window::of`](crate::core::state::Window::of)): its queued tasks past the first
/// `size` are taken out of the queue and held, and a `job.changed` event has its
/// collector count it afresh. Returns how many were taken out; 0 for a job that was not
/// alone, or was cut already.
pub async fn cut(deps: &Deps, id: &JobId, size: u32) -> anyhow::Result<usize> {
    let (record, changed) = deps
        .ledger
        .update_job(id, |r| {
            if !r.alone || r.state.is_terminal() {
                return false;
            }
            // The tasks taken out are queued again later under new message ids. The job
            // stays marked alone until they are out, so that a cut cut short (the
            // planner's submission comes back) is made again.
            r.window = size;
            r.withdrawals += 1;
            true
        })
        .await?;
    if !changed {
        return Ok(0);
    }
    let job = record
        .job()
        .map_err(|e| anyhow::anyhow!("stored job {id}: {e}"))?;
    // The first `size` in the queue stay.
    let withdrawn = super::held::withhold(deps, &job, job.priority, size as usize).await?;
    deps.ledger
        .update_job(id, |r| std::mem::take(&mut r.alone))
        .await?;
    let message = format!(
        "another job shares its queue: {withdrawn} queued tasks held back, window of {size}"
    );
    super::announce_change(deps, &job, record.withdrawals, "cut", message).await?;
    tracing::info!(job = %job.id, withdrawn, window = size, "job cut to its fair window");
    Ok(withdrawn)
}
