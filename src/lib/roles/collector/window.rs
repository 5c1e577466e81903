//! Fair share: a job with a window (see [`Window`]) keeps only that many tasks queued, and
//! the collector queues its held tasks, in task order, as its queued ones start (or, under
//! `max_workers`, as its running ones end).
//!
//! The collector keeps each such job's count of queued and running tasks, counted from the
//! task pages when the job is first seen (and again every [`RECOUNT`]) and moved by the
//! transitions it applies. A held task is published before its slot is marked queued: a
//! collector killed in between leaves it held, and the event that comes back publishes it
//! again under the same `Nats-Msg-Id` (deduplicated) before marking it.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::bus::publish;
use crate::config::Deps;
use crate::core::job::{Job, JobId};
use crate::core::plan;
use crate::core::state::{Change, PAGE_SIZE, TaskSlot, TaskState, Window, page_count, page_of};

/// How long a job's counts are trusted before they are read from its pages again (another
/// collector may have moved its tasks meanwhile).
const RECOUNT: Duration = Duration::from_secs(10);

/// The period over which a job's rate of starts is measured.
const RATE_OVER: Duration = Duration::from_secs(1);

/// Jobs whose counts a collector keeps.
const KEPT: usize = 256;

/// A windowed job's tasks as this collector counts them.
#[derive(Debug)]
pub(super) struct Tally {
    /// The job's incarnation, which its counts are of.
    incarnation: String,
    /// Its retry count when counted (which keys the released tasks' `Nats-Msg-Id`s).
    generation: u32,
    queued: u32,
    running: u32,
    /// The first task that may still be held; `None` once none is.
    next_held: Option<u32>,
    counted: Instant,
    /// Tasks started since `since`, and the rate of starts measured before it.
    started: u32,
    since: Instant,
    starts_per_s: f64,
}

impl Tally {
    /// Counts `job`'s tasks from its pages.
    async fn count(deps: &Deps, job: &Job) -> anyhow::Result<Tally> {
        let slots = deps.ledger.slots(&job.id, plan::task_count(job)).await?;
        let generation = deps
            .ledger
            .job(&job.id)
            .await?
            .map_or(0, |(r, _)| r.generation);
        let count = |state| slots.iter().filter(|s| s.state() == state).count() as u32;
        Ok(Tally {
            incarnation: job.incarnation.clone(),
            generation,
            queued: count(TaskState::Queued),
            running: count(TaskState::Running),
            next_held: slots
                .iter()
                .position(|s| s.state() == TaskState::Held)
                .map(|i| i as u32),
            counted: Instant::now(),
            started: 0,
            since: Instant::now(),
            starts_per_s: 0.0,
        })
    }

    /// The rate of starts, measured over about a second.
    fn rate(&mut self) -> f64 {
        let elapsed = self.since.elapsed();
        if elapsed >= RATE_OVER {
            self.starts_per_s = f64::from(self.started) / elapsed.as_secs_f64();
            self.started = 0;
            self.since = Instant::now();
        }
        self.starts_per_s
    }

    /// Moves the counts by one applied transition.
    fn apply(&mut self, before: TaskSlot, after: TaskSlot) {
        if before == after {
            return;
        }
        if after.state() == TaskState::Running && before.state() != TaskState::Running {
            self.started += 1;
        }
        for (slot, sign) in [(before, -1i64), (after, 1)] {
            let count = match slot.state() {
                TaskState::Queued => &mut self.queued,
                TaskState::Running => &mut self.running,
                _ => continue,
            };
            *count = (i64::from(*count) + sign).max(0) as u32;
        }
    }
}

/// The windowed jobs of one collector.
#[derive(Default)]
pub(super) struct Windows(HashMap<JobId, Tally>);

impl Windows {
    /// After `moves` (the transitions just applied to `job`'s tasks, before and after),
    /// queues as many of its held tasks as its window has room for.
    pub(super) async fn top_up(
        &mut self,
        deps: &Deps,
        job: &Job,
        moves: &[(TaskSlot, TaskSlot)],
    ) -> anyhow::Result<()> {
        if job.window == 0 {
            return Ok(());
        }
        let window = Window {
            size: job.window,
            counts_running: job.max_workers.is_some(),
        };
        // A job deleted and submitted again under the same id is counted afresh.
        let known = self
            .0
            .get_mut(&job.id)
            .filter(|tally| tally.incarnation == job.incarnation);
        let fresh = match known {
            Some(tally) if tally.next_held.is_none() => return Ok(()),
            Some(tally) if tally.counted.elapsed() < RECOUNT => {
                for &(before, after) in moves {
                    tally.apply(before, after);
                }
                None
            }
            _ => Some(Tally::count(deps, job).await?),
        };
        if let Some(tally) = fresh {
            if self.0.len() >= KEPT {
                self.0.clear();
            }
            self.0.insert(job.id.clone(), tally);
        }
        let tally = self.0.get_mut(&job.id).expect("just kept");
        let rate = tally.rate();
        let wanted = window.to_release(tally.queued, tally.running, rate);
        if wanted == 0 {
            return Ok(());
        }
        let Some(from) = tally.next_held else {
            return Ok(());
        };
        let (held, next) = find_held(deps, job, from, wanted).await?;
        // The cursor moves on only once the release is stored: a failed one is tried again
        // when its event comes back.
        if !held.is_empty() {
            tally.queued += release(deps, job, tally.generation, &held).await?;
        }
        tally.next_held = next;
        Ok(())
    }
}

/// Up to `wanted` held tasks of `job` from task `from` on, in task order, and the first
/// task after them that may still be held (`None`: no task after them is).
async fn find_held(
    deps: &Deps,
    job: &Job,
    from: u32,
    wanted: u32,
) -> anyhow::Result<(Vec<u32>, Option<u32>)> {
    let tasks = plan::task_count(job);
    let mut held = Vec::new();
    let mut page_no = page_of(from).0;
    while page_no < page_count(tasks) {
        let first = page_no * PAGE_SIZE;
        let slots = deps
            .ledger
            .slots_of(&job.id, first.max(from)..(first + PAGE_SIZE).min(tasks))
            .await?;
        for (offset, slot) in slots.into_iter().enumerate() {
            let index = first.max(from) + offset as u32;
            if slot.state() != TaskState::Held {
                continue;
            }
            if held.len() as u32 == wanted {
                return Ok((held, Some(index)));
            }
            held.push(index);
        }
        page_no += 1;
    }
    Ok((held, None))
}

/// Publishes held tasks `held` of `job` (each deduplicated by its `Nats-Msg-Id`), then
/// marks them queued and rings the doorbell; returns how many were still held.
async fn release(deps: &Deps, job: &Job, generation: u32, held: &[u32]) -> anyhow::Result<u32> {
    let mut pending = Vec::with_capacity(held.len());
    for &index in held {
        let task = plan::task(job, index);
        pending.push(publish::task(&deps.js, job, &task, generation, 0).await?);
    }
    for confirmation in futures::future::join_all(pending.into_iter().map(|p| p.confirmed())).await
    {
        confirmation?;
    }
    let mut released = 0;
    let mut start = 0;
    while start < held.len() {
        let page_no = page_of(held[start]).0;
        let end = start
            + held[start..]
                .iter()
                .take_while(|&&i| page_of(i).0 == page_no)
                .count();
        let changes: Vec<_> = held[start..end]
            .iter()
            .map(|&i| (i, Change::Release))
            .collect();
        let moved = deps.ledger.change_page(&job.id, page_no, &changes).await?;
        released += moved
            .iter()
            .filter(|(before, after)| before.state() == TaskState::Held && after != before)
            .count() as u32;
        start = end;
    }
    publish::doorbell(&deps.client, &job.class, job.priority, job.renderer).await;
    Ok(released)
}
