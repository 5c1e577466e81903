//! Fair share: a job with a window (see [`Window`]) keeps only that many tasks queued, and
//! the collector queues its held tasks, in task order, as its queued ones start (or, under
//! `max_workers`, as its running ones end).
//!
//! The collector keeps each such job's count of queued and running tasks, counted from the
//! task pages when the job is first seen (and again every [`RECOUNT`], or when a
//! `job.changed` event drops them) and moved by the transitions it applies. A suspended
//! job queues nothing. Held tasks are found and queued by [`held`], which `tessera resume`
//! shares.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Deps;
use crate::core::bundle::FrameTime;
use crate::core::job::{Job, JobId};
use crate::core::plan;
use crate::core::state::{Round, TaskSlot, TaskState, Window};
use crate::lifecycle::{held, tokens};

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
    /// Its round when counted (which keys the released tasks' `Nats-Msg-Id`s).
    round: Round,
    /// Whether it was suspended when counted.
    suspended: bool,
    queued: u32,
    running: u32,
    /// The job's queue order (`None`: task order).
    order: Option<Arc<Vec<u32>>>,
    /// The first place in it that may still be held; `None` once none is.
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
        let record = deps.ledger.job(&job.id).await?.map(|(r, _)| r);
        let round = record.as_ref().map(|r| r.round()).unwrap_or_default();
        let suspended = record.is_some_and(|r| r.suspended);
        let count = |state| slots.iter().filter(|s| s.state() == state).count() as u32;
        let order = crate::core::order::queue_order(job).map(Arc::new);
        let held = |&i: &u32| slots[i as usize].state() == TaskState::Held;
        let next_held = match &order {
            Some(order) => order.iter().position(held),
            None => (0..slots.len() as u32).position(|i| held(&i)),
        };
        Ok(Tally {
            incarnation: job.incarnation.clone(),
            round,
            suspended,
            queued: count(TaskState::Queued),
            running: count(TaskState::Running),
            order,
            next_held: next_held.map(|place| place as u32),
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
        // A task that went from queued to done at once started too (its start was
        // reported with its end).
        let ran = matches!(after.state(), TaskState::Running | TaskState::Done);
        if ran && matches!(before.state(), TaskState::Queued | TaskState::Held) {
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

/// The windowed jobs of one collector, and how long the frames of its `chunk = "auto"`
/// jobs took.
#[derive(Default)]
pub(super) struct Windows {
    tallies: HashMap<JobId, Tally>,
    times: HashMap<JobId, FrameTime>,
    bundlers: Bundlers,
}

/// How long the list of live workers is trusted for [`Bundlers`].
const WORKERS_FRESH: Duration = Duration::from_secs(5);

/// The live workers as last read (at most every [`WORKERS_FRESH`]), for whether a queue
/// may get bundles.
#[derive(Default)]
struct Bundlers(Option<(Instant, Vec<crate::bus::protocol::WorkerInfo>)>);

impl Bundlers {
    /// Whether every live worker that serves `job`'s class and renderer renders bundles.
    async fn all_render_bundles(&mut self, deps: &Deps, job: &Job) -> anyhow::Result<bool> {
        if self
            .0
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() > WORKERS_FRESH)
        {
            let workers = crate::bus::registry::live_workers(&deps.js).await?;
            self.0 = Some((Instant::now(), workers));
        }
        let workers = self.0.as_ref().map_or(&[][..], |(_, w)| w.as_slice());
        Ok(workers
            .iter()
            .filter(|w| w.classes.contains(&job.class) && w.renderers.contains(&job.renderer))
            .all(|w| w.bundles))
    }
}

impl Windows {
    /// After `moves` (the transitions just applied to `job`'s tasks: task, before and
    /// after), gives back the tokens of the tasks that ended (a job with limits) and queues
    /// as many of its held tasks as its window has room for.
    pub(super) async fn top_up(
        &mut self,
        deps: &Deps,
        job: &Job,
        moves: &[(u32, TaskSlot, TaskSlot)],
    ) -> anyhow::Result<()> {
        if job.window == 0 {
            return Ok(());
        }
        if !job.limits.is_empty() {
            // Also when the task had ended before: a step cut short gives them back now.
            let ended: Vec<u32> = moves
                .iter()
                .filter(|(_, _, after)| after.state().is_terminal())
                .map(|&(task, _, _)| task)
                .collect();
            if !ended.is_empty() {
                tokens::give_back(deps, job, Some(&ended)).await?;
            }
        }
        let window = Window {
            size: job.window,
            counts_running: job.max_workers.is_some(),
        };
        // A job deleted and submitted again under the same id is counted afresh.
        let known = self
            .tallies
            .get_mut(&job.id)
            .filter(|tally| tally.incarnation == job.incarnation);
        let fresh = match known {
            Some(tally) if tally.next_held.is_none() => return Ok(()),
            Some(tally) if tally.counted.elapsed() < RECOUNT => {
                for &(_, before, after) in moves {
                    tally.apply(before, after);
                }
                None
            }
            _ => Some(Tally::count(deps, job).await?),
        };
        if let Some(tally) = fresh {
            if self.tallies.len() >= KEPT {
                self.tallies.clear();
                self.times.clear();
            }
            self.tallies.insert(job.id.clone(), tally);
        }
        let tally = self.tallies.get_mut(&job.id).expect("just kept");
        if tally.suspended {
            return Ok(());
        }
        let rate = tally.rate();
        // A `chunk = "auto"` job's window holds bundles, each of `bundle` tasks (single
        // frames while a live worker of its queue could not render a bundle).
        let bundle = match job.auto_chunk {
            Some(target) if self.bundlers.all_render_bundles(deps, job).await? => self
                .times
                .get(&job.id)
                .copied()
                .unwrap_or_default()
                .bundle_size(target),
            _ => 1,
        };
        let window = Window {
            size: window.size.saturating_mul(bundle),
            ..window
        };
        // Whole bundles only (the last may be short: fewer are held).
        let wanted = window.to_release(tally.queued, tally.running, rate) / bundle * bundle;
        if wanted == 0 {
            return Ok(());
        }
        let Some(from) = tally.next_held else {
            return Ok(());
        };
        let order = tally.order.as_deref().map(Vec::as_slice);
        let (found, next) = held::find(deps, job, order, from, wanted).await?;
        // The cursor moves on only once the release is stored: a failed one is tried again
        // when its event comes back.
        let released = held::release_in_bundles(deps, job, tally.round, &found, bundle).await?;
        tally.queued += released;
        // Tasks refused a token stay held where they are: the cursor stays for them.
        if (released as usize) == found.len() {
            tally.next_held = next;
        }
        Ok(())
    }

    /// Forgets `job`'s counts (it was suspended, resumed or changed): counted afresh.
    pub(super) fn forget(&mut self, job: &JobId) {
        self.tallies.remove(job);
    }

    /// A frame of `chunk = "auto"` job `job` took `ms` milliseconds to render.
    pub(super) fn timed(&mut self, job: &JobId, ms: u64) {
        self.times.entry(job.clone()).or_default().add(ms as f64);
    }
}
