//! Job and task states, and the one transition table for each. Pure: the ledger applies
//! these under compare-and-swap, so several collectors can apply events in any order.
//!
//! Task transitions (`→ _` means unchanged):
//!
//! | change \ from | Waiting | Queued | Running(a) | Done | Failed | Canceled |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | `Release` | Queued | _ | _ | _ | _ | _ |
//! | `Started(b)` | _ | Running(b) | Running(b) if b ≥ a | _ | _ | _ |
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

use crate::core::job::{Job, JobSpec};

/// Task slots per KV page.
pub const PAGE_SIZE: u32 = 1024;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waits for tasks of another layer.
    Waiting,
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
    /// Its dependencies are done.
    Release,
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
        (Waiting, Change::Release) => TaskSlot(Queued, attempt),
        (Queued, Change::Started(b)) => TaskSlot(Running, b),
        (Running, Change::Started(b)) if b >= attempt => TaskSlot(Running, b),
        (Running, Change::Retry(b)) if b == attempt => TaskSlot(Queued, b),
        (Waiting | Queued | Running, Change::Done(b)) => TaskSlot(Done, b),
        (Waiting | Queued | Running, Change::Failed(b)) => TaskSlot(Failed, b),
        (Waiting | Queued | Running, Change::Cancel) => TaskSlot(Canceled, attempt),
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
}

impl JobRecord {
    /// The recorded job, validated again, with its incarnation.
    pub fn job(&self) -> Result<Job, crate::core::problem::Invalid> {
        let mut job = self.spec.clone().validate()?;
        job.incarnation = self.incarnation.clone();
        Ok(job)
    }
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
    /// Queued or waiting for dependencies.
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
            TaskState::Waiting | TaskState::Queued => self.queued += 1,
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
        ];
        for (slot, change, expect) in cases {
            assert_eq!(apply(slot, change), expect, "{slot:?} + {change:?}");
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
