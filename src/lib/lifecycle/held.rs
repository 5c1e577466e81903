//! Held tasks (see [`TaskState::Held`]): found in task order and queued — by the
//! collector as a windowed job's queued tasks start, and by `tessera resume` and a
//! priority change, which queue what a suspend or the change held back — and queued
//! tasks taken back out of the queue and held ([`withhold`]: a suspend, a priority
//! change, a job planned alone cut to its fair window).
//!
//! A held task is published before its slot is marked queued: a step killed in between
//! leaves it held, and the step run again publishes it under the same `Nats-Msg-Id`
//! (deduplicated) before marking it.

use crate::bus::publish;
use crate::bus::withdraw::{self, JobQueue};
use crate::config::Deps;
use crate::core::job::{Job, Priority};
use crate::core::plan;
use crate::core::state::{Change, JobRecord, PAGE_SIZE, Round, TaskState, page_count, page_of};

/// A held task: its index and the attempts it had.
pub type HeldTask = (u32, u32);

/// Up to `wanted` held tasks of `job` from place `from` on of its queue order (`order`,
/// from [`queue_order`](crate::core::order::queue_order); task order when `None`, and
/// then a place is a task index), and the first place after them that may still hold a
/// held task (`None`: none after them does).
pub async fn find(
    deps: &Deps,
    job: &Job,
    order: Option<&[u32]>,
    from: u32,
    wanted: u32,
) -> anyhow::Result<(Vec<HeldTask>, Option<u32>)> {
    let tasks = plan::task_count(job);
    if let Some(order) = order {
        let slots = deps.ledger.slots(&job.id, tasks).await?;
        let mut held = Vec::new();
        for (place, &index) in order.iter().enumerate().skip(from as usize) {
            let slot = slots[index as usize];
            if slot.state() != TaskState::Held {
                continue;
            }
            if held.len() as u32 == wanted {
                return Ok((held, Some(place as u32)));
            }
            held.push((index, slot.attempt()));
        }
        return Ok((held, None));
    }
    let mut held = Vec::new();
    let mut page_no = page_of(from).0;
    while page_no < page_count(tasks) {
        let first = (page_no * PAGE_SIZE).max(from);
        let slots = deps
            .ledger
            .slots_of(&job.id, first..((page_no + 1) * PAGE_SIZE).min(tasks))
            .await?;
        for (offset, slot) in slots.into_iter().enumerate() {
            let index = first + offset as u32;
            if slot.state() != TaskState::Held {
                continue;
            }
            if held.len() as u32 == wanted {
                return Ok((held, Some(index)));
            }
            held.push((index, slot.attempt()));
        }
        page_no += 1;
    }
    Ok((held, None))
}

/// Publishes held tasks `held` of `job` in `round` (each deduplicated by its
/// `Nats-Msg-Id`; a task that had attempts goes on with their numbering), then marks them
/// queued and rings the doorbell; returns how many were still held. A job with limits
/// queues only the tasks that get a token of each ([`super::tokens::take`]).
pub async fn release(
    deps: &Deps,
    job: &Job,
    round: Round,
    held: &[HeldTask],
) -> anyhow::Result<u32> {
    release_in_bundles(deps, job, round, held, 1).await
}

/// [`release`], with consecutive tasks queued in bundles of up to `size` (a
/// `chunk = "auto"` job's; see [`crate::core::bundle`]).
pub async fn release_in_bundles(
    deps: &Deps,
    job: &Job,
    round: Round,
    held: &[HeldTask],
    size: u32,
) -> anyhow::Result<u32> {
    let granted;
    let held = match job.limits.is_empty() {
        true => held,
        false => {
            granted = super::tokens::take(deps, job, held).await?;
            &granted[..]
        }
    };
    if held.is_empty() {
        return Ok(0);
    }
    let mut pending = Vec::with_capacity(held.len());
    let mut sorted = held.to_vec();
    sorted.sort_unstable();
    let runs = match size {
        0 | 1 => held.iter().map(|&t| vec![t]).collect(),
        size => crate::core::bundle::runs(&sorted, size),
    };
    let mut key = false;
    for run in runs {
        let tasks: Vec<_> = run
            .iter()
            .map(|&(index, _)| plan::task(job, index))
            .collect();
        key |= tasks
            .iter()
            .any(|task| crate::core::order::is_key(job, task));
        let attempts_before = run.iter().map(|&(_, a)| a).max().unwrap_or(0);
        pending.push(publish::bundle(&deps.js, job, &tasks, round, attempts_before).await?);
    }
    for confirmation in futures::future::join_all(pending.into_iter().map(|p| p.confirmed())).await
    {
        confirmation?;
    }
    let mut indices: Vec<u32> = held.iter().map(|&(index, _)| index).collect();
    indices.sort_unstable();
    let moved = change_pages(deps, job, &indices, Change::Release).await?;
    let released = moved
        .iter()
        .filter(|(before, after)| before.state() == TaskState::Held && after != before)
        .count() as u32;
    publish::doorbell(&deps.client, &job.class, job.priority, job.renderer, key).await;
    Ok(released)
}

/// Applies `change` to tasks `indices` of `job` (in task order), one compare-and-swap per
/// page; returns each task's slot before and after.
pub async fn change_pages(
    deps: &Deps,
    job: &Job,
    indices: &[u32],
    change: Change,
) -> anyhow::Result<Vec<(crate::core::state::TaskSlot, crate::core::state::TaskSlot)>> {
    let mut moved = Vec::with_capacity(indices.len());
    let mut start = 0;
    while start < indices.len() {
        let page_no = page_of(indices[start]).0;
        let end = start
            + indices[start..]
                .iter()
                .take_while(|&&i| page_of(i).0 == page_no)
                .count();
        let changes: Vec<_> = indices[start..end].iter().map(|&i| (i, change)).collect();
        moved.extend(deps.ledger.change_page(&job.id, page_no, &changes).await?);
        start = end;
    }
    Ok(moved)
}

/// Takes `job`'s queued tasks in its queue of `priority` out of the queue and holds them,
/// all but the first `keep` in the queue (its key tasks first); returns how many. A task
/// the ledger does not show queued (a worker's hand-back on its way) is left in the queue.
pub async fn withhold(
    deps: &Deps,
    job: &Job,
    priority: Priority,
    keep: usize,
) -> anyhow::Result<usize> {
    let mut keep = keep;
    let mut withheld = 0;
    for key in [true, false] {
        let queue = JobQueue {
            job: &job.id,
            class: &job.class,
            priority,
            renderer: job.renderer,
            key,
        };
        let (out, kept) = withhold_in(deps, job, queue, keep).await?;
        withheld += out;
        keep -= kept;
    }
    Ok(withheld)
}

/// [`withhold`] in one of the job's queues; returns how many it took out and how many it
/// kept.
async fn withhold_in(
    deps: &Deps,
    job: &Job,
    queue: JobQueue<'_>,
    keep: usize,
) -> anyhow::Result<(usize, usize)> {
    let mut paused = withdraw::pause_and_find(&deps.js, queue).await?;
    let mut past = paused.queued.split_off(keep.min(paused.queued.len()));
    let kept = paused.queued.len();
    past.sort_by_key(|&(_, index)| index);
    let indices: Vec<u32> = past.iter().map(|&(_, index)| index).collect();
    let moved = match change_pages(deps, job, &indices, Change::Withhold).await {
        Ok(moved) => moved,
        Err(e) => {
            paused.resume().await;
            return Err(e);
        }
    };
    // Only what is now held leaves the queue.
    paused.queued = past
        .iter()
        .zip(&moved)
        .filter(|(_, (_, after))| after.state() == TaskState::Held)
        .map(|(&found, _)| found)
        .collect();
    let withheld = paused.queued.len();
    paused.take().await?;
    Ok((withheld, kept))
}

/// Queues `job`'s held tasks (in its queue order): as many as its window has room for,
/// every one when it has none; none while `record` says the job waits for other jobs.
pub async fn queue_held(deps: &Deps, job: &Job, record: &JobRecord) -> anyhow::Result<u32> {
    if !record.waiting_for.is_empty() {
        return Ok(0);
    }
    let wanted = match job.window {
        0 => u32::MAX,
        size => {
            let slots = deps.ledger.slots(&job.id, record.tasks).await?;
            let count = |state| slots.iter().filter(|s| s.state() == state).count() as u32;
            let window = crate::core::state::Window {
                size,
                counts_running: job.max_workers.is_some(),
            };
            window.to_release(count(TaskState::Queued), count(TaskState::Running), 0.0)
        }
    };
    let order = crate::core::order::queue_order(job);
    let (found, _) = find(deps, job, order.as_deref(), 0, wanted).await?;
    let queued = release(deps, job, record.round(), &found).await?;
    publish::flush(&deps.client).await;
    Ok(queued)
}
