//! Job and task states, and the one transition table for each. Pure: the ledger applies
//! these under compare-and-swap, so several collectors can apply events in any order.
//!
//! Task transitions (`→ _` means unchanged):
//!
//! | change \ from | Waiting, Held | Queued | Running(a) | Done | Failed | Canceled |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | `Release` | Queued | _ | _ | _ | _ | _ |
//! | `Withhold` | Held | Held | _ | _ | _ | _ |
//! | `Started(b)` | Running(b) if Held | Running(b) | Running(b) if b ≥ a | _ | _ | _ |
//! | `Retry(b)` | _ | _ | Queued if b = a | _ | _ | _ |
//! | `Done(b)` | Done(b) | Done(b) | Done(b) | _ | _ | _ |
//! | `Failed(b)` | Failed(b) | Failed(b) | Failed(b) | _ | _ | _ |
//! | `Cancel` | Canceled | Canceled | Canceled | _ | _ | _ |
//! | `Requeue` | _ | _ | _ | _ | Queued | Queued |
//!
//! The first `Done` wins: a late completion of another attempt changes nothing, which is
//! how results stay exactly-once under at-least-once execution.
//!
//! Job transitions: `Queued → Running` when a task starts; `→ Done` when every task is done;
//! `→ Failed` when a task fails for good under policy `fail`, or when every task has ended
//! with some failed under `continue`; `→ Canceled` on cancel. `Done`, `Failed` and `Canceled`
//! end the job; only `tessera retry` takes a failed or canceled job back to `Running`.

use serde::{Deserialize, Serialize};

use crate::core::job::{Job, JobSpec, Priority};

/// Task slots per KV page.
pub const PAGE_SIZE: u32 = 1024;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waits for tasks of another layer.
    Waiting,
    /// Ready, and held back by its job's window (fair share): queued when the job's
    /// queued tasks start (see [`Window`]).
    Held,
    /// In the queue.
    Queued,
    /// A worker is rendering it.
    Running,
    /// Its first valid completion is recorded.
    Done,
    /// Failed for good.
    Failed,
    /// Canceled with its job.
    Canceled,
}

impl TaskState {
    /// Whether the task has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Done | TaskState::Failed | TaskState::Canceled
        )
    }
}

/// One task's state and the attempt it refers to (0 before the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSlot(pub TaskState, pub u32);

impl TaskSlot {
    /// The state.
    pub fn state(self) -> TaskState {
        self.0
    }

    /// The attempt.
    pub fn attempt(self) -> u32 {
        self.1
    }
}

/// A change to one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Its dependencies are done, or its job's window has room for it.
    Release,
    /// Its job was suspended or changed priority: a task waiting for its dependencies, or
    /// one taken back out of the queue, is held until it may be queued (again).
    Withhold,
    /// Attempt `n` started.
    Started(u32),
    /// Attempt `n` failed and will be retried.
    Retry(u32),
    /// Attempt `n` succeeded.
    Done(u32),
    /// Attempt `n` failed for good.
    Failed(u32),
    /// The job was canceled.
    Cancel,
    /// `tessera retry`: run it again with fresh attempts.
    Requeue,
}

/// Applies `change` to `slot`; `None` when it changes nothing.
pub fn apply(slot: TaskSlot, change: Change) -> Option<TaskSlot> {
    use TaskState::*;
    let TaskSlot(state, attempt) = slot;
    let next = match (state, change) {
        (Waiting | Held, Change::Release) => TaskSlot(Queued, attempt),
        (Waiting | Queued, Change::Withhold) => TaskSlot(Held, attempt),
        // A held task that starts was queued by a release whose ledger write is late.
        (Held | Queued, Change::Started(b)) => TaskSlot(Running, b),
        (Running, Change::Started(b)) if b >= attempt => TaskSlot(Running, b),
        (Running, Change::Retry(b)) if b == attempt => TaskSlot(Queued, b),
        (Waiting | Held | Queued | Running, Change::Done(b)) => TaskSlot(Done, b),
        (Waiting | Held | Queued | Running, Change::Failed(b)) => TaskSlot(Failed, b),
        (Waiting | Held | Queued | Running, Change::Cancel) => TaskSlot(Canceled, attempt),
        (Failed | Canceled, Change::Requeue) => TaskSlot(Queued, attempt),
        _ => return None,
    };
    (next != slot).then_some(next)
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted; no task has started.
    Queued,
    /// Some task has started.
    Running,
    /// Every task done and assembled.
    Done,
    /// Ended with failed tasks.
    Failed,
    /// Canceled.
    Canceled,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed | JobState::Canceled)
    }

    /// The name used in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Canceled => "canceled",
        }
    }
}

impl std::str::FromStr for JobState {
    type Err = String;

    /// `queued`, `running`, `done`, `failed` or `canceled` (`active` is not one: it is
    /// queued or running).
    fn from_str(name: &str) -> Result<JobState, String> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Done,
            JobState::Failed,
            JobState::Canceled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or_else(|| {
            format!("{name:?} is not a job state: queued, running, done, failed or canceled")
        })
    }
}

/// The job record in KV (key `<job>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Schema version.
    pub schema: u32,
    /// The validated spec, id filled in.
    pub spec: JobSpec,
    /// Where the job stands.
    pub state: JobState,
    /// How many tasks it has.
    pub tasks: u32,
    /// Whether the planner has published every ready task.
    pub published: bool,
    /// When it was accepted (ms since the epoch).
    pub created_ms: u64,
    /// When its first task started.
    #[serde(default)]
    pub started_ms: Option<u64>,
    /// When it ended.
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// Why it failed or was canceled.
    #[serde(default)]
    pub message: Option<String>,
    /// How often `tessera retry` queued it again.
    #[serde(default)]
    pub generation: u32,
    /// Which submission of this id the job is (see [`Job::incarnation`]).
    #[serde(default)]
    pub incarnation: String,
    /// `tessera retry` has set the job running and not yet queued all its tasks again:
    /// a retry cut short is finished by the next `tessera retry`.
    #[serde(default)]
    pub requeue_pending: bool,
    /// The job's window: how many of its tasks it keeps queued (with `max_workers`,
    /// queued or running), the rest held; 0 when every ready task was queued at once.
    #[serde(default)]
    pub window: u32,
    /// `tessera suspend`: none of its tasks is queued until `tessera resume`.
    #[serde(default)]
    pub suspended: bool,
    /// How often its queued tasks were taken back out of the queue (`tessera suspend`, a
    /// priority change), which keys the message ids of the tasks queued after (see
    /// [`Round`]).
    #[serde(default)]
    pub withdrawals: u32,
    /// The priority `tessera priority` gave it, in place of its spec's.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Planned as the only job in its queue, with the large window of [`Window::alone`]:
    /// the next job planned into the queue cuts it to its fair window.
    #[serde(default)]
    pub alone: bool,
    /// The jobs of its `after` not done yet: none of its tasks is queued until there are
    /// none.
    #[serde(default)]
    pub waiting_for: Vec<crate::core::job::JobId>,
    /// The jobs known to run after it frame by frame (`after_frames`): the collector
    /// releases their tasks as its frames are done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frame_waiters: Vec<crate::core::job::JobId>,
    /// Its version of the output it names (`output`), once the planner has published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

impl JobRecord {
    /// The recorded job, validated again, with its incarnation, window and suspension (or
    /// wait for other jobs).
    pub fn job(&self) -> Result<Job, crate::core::problem::Invalid> {
        let mut job = self.spec.clone().validate()?;
        job.incarnation = self.incarnation.clone();
        job.window = self.window;
        // A job waiting for others holds its tasks as a suspended one does.
        job.suspended = self.suspended || !self.waiting_for.is_empty();
        job.frame_waiters = self.frame_waiters.clone();
        job.version = self.version;
        if let Some(priority) = self.priority {
            job.priority = priority;
        }
        Ok(job)
    }

    /// The round its tasks are queued in now.
    pub fn round(&self) -> Round {
        Round {
            generation: self.generation,
            withdrawals: self.withdrawals,
        }
    }
}

/// Which queuing of a job's tasks a task message belongs to: the job's retry count and how
/// often its queued tasks were withdrawn. It keys the task's `Nats-Msg-Id`, so a task
/// published twice in one round (a step repeated after a crash) is stored once, while a
/// task queued again in a later round (after `tessera retry`, `tessera resume`, a priority
/// change) is not taken for a duplicate of its earlier message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// `tessera retry`s so far.
    pub generation: u32,
    /// Withdrawals so far.
    pub withdrawals: u32,
}

/// One page of task slots (KV key `<job>.p<n>`): tasks `n*PAGE_SIZE ..`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The slots, by task index within the page.
    pub slots: Vec<TaskSlot>,
}

/// Which page holds task `index`, and where in it.
pub fn page_of(index: u32) -> (u32, usize) {
    (index / PAGE_SIZE, (index % PAGE_SIZE) as usize)
}

/// How many pages `tasks` tasks need.
pub fn page_count(tasks: u32) -> u32 {
    tasks.div_ceil(PAGE_SIZE)
}

/// Task counts of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// All tasks.
    pub total: u32,
    /// Queued, held back by the job's window, or waiting for dependencies.
    pub queued: u32,
    /// Rendering.
    pub running: u32,
    /// Done.
    pub done: u32,
    /// Failed for good.
    pub failed: u32,
    /// Canceled.
    pub canceled: u32,
}

impl Counts {
    /// The counts of `slots`.
    pub fn of(slots: &[TaskSlot]) -> Counts {
        let mut counts = Counts::default();
        for &slot in slots {
            counts.add(slot);
        }
        counts
    }

    /// Adds one slot.
    pub fn add(&mut self, slot: TaskSlot) {
        self.total += 1;
        match slot.state() {
            TaskState::Waiting | TaskState::Held | TaskState::Queued => self.queued += 1,
            TaskState::Running => self.running += 1,
            TaskState::Done => self.done += 1,
            TaskState::Failed => self.failed += 1,
            TaskState::Canceled => self.canceled += 1,
        }
    }

    /// Whether every task has ended.
    pub fn all_ended(&self) -> bool {
        self.done + self.failed + self.canceled == self.total
    }
}

/// How long a release of held tasks takes, from the event of a start to the task queued,
/// as the window's lead reckons it.
pub const RELEASE_LEAD: std::time::Duration = std::time::Duration::from_millis(25);

/// The window of a job planned alone in its queue (see [`Window::alone`]).
pub const ALONE_WINDOW: u32 = 256;

/// A job's window on its queue, which is how jobs of one priority share a queue that is
/// first-in, first-out: each keeps only `size` tasks queued and holds the rest back,
/// queuing one as each of its queued tasks leaves the queue. A job submitted behind a
/// large one so waits behind at most `size` of its tasks, and jobs active together get
/// the queue's slots in proportion to their windows. With `max_workers` the window also
/// counts the running tasks: a task is queued only when one ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Tasks kept queued (or queued and running, when `counts_running`).
    pub size: u32,
    /// Whether running tasks count (the job has `max_workers`).
    pub counts_running: bool,
}

impl Window {
    /// The window of `job` on a queue served by `slots` slots (at least one): its weight
    /// times the slots, so that a job behind it starts within about one task's time;
    /// `max_workers` when the job has it. `None`: the job needs none (its ready tasks
    /// fit in the window).
    pub fn of(job: &Job, slots: u32, ready: u32) -> Option<Window> {
        let window = match job.max_workers {
            Some(cap) => Window {
                size: cap,
                counts_running: true,
            },
            None => Window {
                size: slots.max(1).saturating_mul(job.weight),
                counts_running: false,
            },
        };
        (ready > window.size).then_some(window)
    }

    /// This window widened for a job that is the only one in its queue: at least
    /// [`ALONE_WINDOW`], so that its tasks are queued in large batches rather than one per
    /// start (the job it would share with is not there yet: the next one planned into the
    /// queue cuts it back to this one). `None` for a cap (`max_workers`), which stays.
    pub fn alone(self) -> Option<Window> {
        (!self.counts_running).then(|| Window {
            size: self.size.max(ALONE_WINDOW),
            ..self
        })
    }

    /// The fewest tasks a window without a cap queues at once: an eighth of it, so that a
    /// large window is topped up in batches and a small one task by task.
    fn batch(self) -> u32 {
        match self.counts_running {
            true => 1,
            false => (self.size / 8).max(1),
        }
    }

    /// How many held tasks to queue now, with `queued` queued and `running` running, for
    /// a job starting `starts_per_s` tasks a second: a window without a cap also covers
    /// what its slots start while a release is on its way ([`RELEASE_LEAD`]), so that
    /// short tasks do not leave slots waiting for it (a cap is never exceeded).
    pub fn to_release(self, queued: u32, running: u32, starts_per_s: f64) -> u32 {
        let (used, lead) = match self.counts_running {
            true => (queued + running, 0),
            false => (queued, (starts_per_s * RELEASE_LEAD.as_secs_f64()) as u32),
        };
        let room = (self.size + lead).saturating_sub(used);
        match room >= self.batch() {
            true => room,
            false => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

    #[test]
    fn task_transition_table() {
        let cases = [
            (
                TaskSlot(Waiting, 0),
                Change::Release,
                Some(TaskSlot(Queued, 0)),
            ),
            (TaskSlot(Queued, 0), Change::Release, None),
            (
                TaskSlot(Held, 0),
                Change::Release,
                Some(TaskSlot(Queued, 0)),
            ),
            (
                TaskSlot(Held, 0),
                Change::Started(1),
                Some(TaskSlot(Running, 1)),
            ),
            (
                TaskSlot(Held, 0),
                Change::Cancel,
                Some(TaskSlot(Canceled, 0)),
            ),
            (
                TaskSlot(Queued, 0),
                Change::Started(1),
                Some(TaskSlot(Running, 1)),
            ),
            (TaskSlot(Running, 2), Change::Started(1), None),
            (
                TaskSlot(Running, 1),
                Change::Started(2),
                Some(TaskSlot(Running, 2)),
            ),
            (
                TaskSlot(Running, 1),
                Change::Retry(1),
                Some(TaskSlot(Queued, 1)),
            ),
            (TaskSlot(Running, 2), Change::Retry(1), None),
            (
                TaskSlot(Running, 1),
                Change::Done(1),
                Some(TaskSlot(Done, 1)),
            ),
            (
                TaskSlot(Queued, 1),
                Change::Done(2),
                Some(TaskSlot(Done, 2)),
            ),
            (TaskSlot(Done, 1), Change::Done(2), None),
            (TaskSlot(Done, 1), Change::Failed(2), None),
            (TaskSlot(Done, 1), Change::Started(2), None),
            (
                TaskSlot(Running, 3),
                Change::Failed(3),
                Some(TaskSlot(Failed, 3)),
            ),
            (TaskSlot(Failed, 3), Change::Done(3), None),
            (
                TaskSlot(Running, 1),
                Change::Cancel,
                Some(TaskSlot(Canceled, 1)),
            ),
            (TaskSlot(Canceled, 1), Change::Done(1), None),
            (
                TaskSlot(Failed, 3),
                Change::Requeue,
                Some(TaskSlot(Queued, 3)),
            ),
            (TaskSlot(Done, 3), Change::Requeue, None),
            (
                TaskSlot(Queued, 2),
                Change::Withhold,
                Some(TaskSlot(Held, 2)),
            ),
            (
                TaskSlot(Waiting, 0),
                Change::Withhold,
                Some(TaskSlot(Held, 0)),
            ),
            (TaskSlot(Running, 1), Change::Withhold, None),
            (TaskSlot(Held, 0), Change::Withhold, None),
            (TaskSlot(Done, 1), Change::Withhold, None),
        ];
        for (slot, change, expect) in cases {
            assert_eq!(apply(slot, change), expect, "{slot:?} + {change:?}");
        }
    }

    #[test]
    fn windows_keep_their_size_queued() {
        let job = |weight, max_workers| {
            let mut spec = crate::core::job::JobSpec {
                id: Some("w".into()),
                renderer: Some("noop".into()),
                weight: Some(weight),
                max_workers,
                ..Default::default()
            };
            spec.frames = Some(crate::core::job::FramesSpec {
                range: Some("1-100".into()),
                ..Default::default()
            });
            spec.validate().expect("valid")
        };
        let plain = Window::of(&job(1, None), 4, 100).expect("a window");
        assert_eq!(plain.size, 4);
        assert_eq!(Window::of(&job(3, None), 4, 100).map(|w| w.size), Some(12));
        assert_eq!(Window::of(&job(1, None), 0, 100).map(|w| w.size), Some(1));
        assert_eq!(Window::of(&job(1, None), 4, 4), None, "fits: no window");
        let capped = Window::of(&job(1, Some(1)), 4, 100).expect("a window");
        assert_eq!((capped.size, capped.counts_running), (1, true));
        let alone = plain.alone().expect("no cap");
        assert_eq!(alone.size, ALONE_WINDOW);
        assert_eq!(capped.alone(), None, "a cap stays a cap");
        let wide = Window::of(&job(2, None), 16, 100).expect("a window");
        assert_eq!(wide.size, 32);
        // (queued, running, starts a second) -> tasks to release
        let cases = [
            (plain, 4, 9, 0.0, 0),
            (plain, 3, 9, 0.0, 1),
            (plain, 0, 0, 0.0, 4),
            (plain, 6, 0, 0.0, 0),
            (plain, 4, 9, 30.0, 0),
            (plain, 4, 9, 1000.0, 25),
            (capped, 0, 1, 0.0, 0),
            (capped, 1, 0, 0.0, 0),
            (capped, 0, 0, 0.0, 1),
            (capped, 0, 1, 1000.0, 0),
            // A large window waits for an eighth of it to be free.
            (alone, 225, 9, 0.0, 0),
            (alone, 224, 9, 0.0, 32),
            (alone, 0, 0, 0.0, 256),
            (wide, 29, 0, 0.0, 0),
            (wide, 28, 0, 0.0, 4),
        ];
        for (window, queued, running, rate, release) in cases {
            assert_eq!(
                window.to_release(queued, running, rate),
                release,
                "{window:?} with {queued} queued, {running} running, {rate} starts/s"
            );
        }
    }

    #[test]
    fn pages_and_counts() {
        assert_eq!(page_of(0), (0, 0));
        assert_eq!(page_of(1025), (1, 1));
        assert_eq!(page_count(1024), 1);
        assert_eq!(page_count(1025), 2);
        let mut counts = Counts::default();
        for slot in [TaskSlot(Waiting, 0), TaskSlot(Done, 1), TaskSlot(Failed, 3)] {
            counts.add(slot);
        }
        assert_eq!(
            (counts.total, counts.queued, counts.done, counts.failed),
            (3, 1, 1, 1)
        );
        assert!(!counts.all_ended());
    }
}
