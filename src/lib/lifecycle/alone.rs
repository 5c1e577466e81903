//! A job alone in its queue, and the cut when another comes.
//!
//! A fair window costs the collector a release for every few starts: it is what lets a
//! job planned behind a large one start at once, but while a job is alone in its queue
//! nobody waits behind it. So the planner gives a job that finds its queue empty a large
//! window ([`Window::alone`](crate::core::state::Window::alone)), which the collector tops up in large batches; the next job
//! planned into the queue first cuts it to its fair window ([`Window::of`](crate::core::state::Window::of)): the tasks
//! queued past that are taken back out and held, and its collector queues them as its
//! tasks start, as for any windowed job.

use anyhow::Context as _;
use futures::TryStreamExt as _;

use crate::bus::protocol::{self, Event, EventKind};
use crate::bus::publish;
use crate::bus::streams::TASKS_STREAM;
use crate::bus::withdraw::{self, JobQueue};
use crate::config::Deps;
use crate::core::job::{Job, JobId};
use crate::core::state::{Change, TaskState};

/// The jobs other than `job` with tasks in `job`'s queue (queued, or held by workers).
pub async fn others_in_queue(deps: &Deps, job: &Job) -> anyhow::Result<Vec<JobId>> {
    let stream = deps.js.get_stream(TASKS_STREAM).await?;
    let filter = protocol::task_filter(&job.class, job.priority, job.renderer);
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(&filter)
        .await
        .with_context(|| format!("reading the jobs in queue {filter}"))?
        .try_collect()
        .await
        .with_context(|| format!("reading the jobs in queue {filter}"))?;
    Ok(subjects
        .into_iter()
        .filter(|&(_, count)| count > 0)
        .filter_map(|(subject, _)| protocol::parse_task_job(&subject))
        .filter(|other| *other != job.id)
        .collect())
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
    let queue = JobQueue {
        job: &job.id,
        class: &job.class,
        priority: job.priority,
        renderer: job.renderer,
    };
    let mut paused = withdraw::pause_and_find(&deps.js, queue).await?;
    // The first `size` in the queue stay; the rest are held, in task order.
    let mut past: Vec<(u64, u32)> = paused.queued.iter().skip(size as usize).copied().collect();
    past.sort_by_key(|&(_, index)| index);
    let indices: Vec<u32> = past.iter().map(|&(_, index)| index).collect();
    let moved = match super::held::change_pages(deps, &job, &indices, Change::Withhold).await {
        Ok(moved) => moved,
        Err(e) => {
            paused.resume().await;
            return Err(e);
        }
    };
    // Only what is now held leaves the queue (a task whose hand-back is on its way stays).
    paused.queued = past
        .iter()
        .zip(&moved)
        .filter(|(_, (_, after))| after.state() == TaskState::Held)
        .map(|(&found, _)| found)
        .collect();
    let withdrawn = paused.queued.len();
    paused.take().await?;
    deps.ledger
        .update_job(id, |r| std::mem::take(&mut r.alone))
        .await?;
    let mut event = Event::new(EventKind::JobChanged, job.id.as_str());
    event.message = Some(format!(
        "another job shares its queue: {withdrawn} queued tasks held back, window of {size}"
    ));
    event.incarnation = Some(job.incarnation.clone());
    let msg_id = protocol::changed_msg_id(&job.id, &job.incarnation, record.withdrawals, "cut");
    publish::event_pending(&deps.js, &event, Some(&msg_id))
        .await?
        .confirmed()
        .await?;
    tracing::info!(job = %job.id, withdrawn, window = size, "job cut to its fair window");
    Ok(withdrawn)
}
