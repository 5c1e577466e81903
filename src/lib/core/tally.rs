//! A page's task counts by state. The ledger writes them as a header of each task page's
//! KV message (`Tessera-Tally: waiting=0 held=768 queued=256 …`), in the same write as the
//! slots, so they are always exactly the page's: `tessera status` of a job of a million
//! tasks reads 977 small headers, not a million slots.

use serde::{Deserialize, Serialize};

use crate::core::state::{Counts, TaskSlot, TaskState};

/// The header a task page's tally travels in.
pub const TALLY_HEADER: &str = "Tessera-Tally";

/// Tasks by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Waiting for tasks of another layer or job.
    pub waiting: u32,
    /// Held back by the job's window.
    pub held: u32,
    /// In the queue.
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

const NAMES: [&str; 7] = [
    "waiting", "held", "queued", "running", "done", "failed", "canceled",
];

impl Tally {
    /// The tally of `slots`.
    pub fn of(slots: &[TaskSlot]) -> Tally {
        let mut tally = Tally::default();
        for slot in slots {
            *tally.of_state(slot.state()) += 1;
        }
        tally
    }

    fn of_state(&mut self, state: TaskState) -> &mut u32 {
        match state {
            TaskState::Waiting => &mut self.waiting,
            TaskState::Held => &mut self.held,
            TaskState::Queued => &mut self.queued,
            TaskState::Running => &mut self.running,
            TaskState::Done => &mut self.done,
            TaskState::Failed => &mut self.failed,
            TaskState::Canceled => &mut self.canceled,
        }
    }

    fn fields(&self) -> [u32; 7] {
        [
            self.waiting,
            self.held,
            self.queued,
            self.running,
            self.done,
            self.failed,
            self.canceled,
        ]
    }

    fn fields_mut(&mut self) -> [&mut u32; 7] {
        [
            &mut self.waiting,
            &mut self.held,
            &mut self.queued,
            &mut self.running,
            &mut self.done,
            &mut self.failed,
            &mut self.canceled,
        ]
    }

    /// Adds `other`'s tasks.
    pub fn merge(&mut self, other: &Tally) {
        for (mine, theirs) in self.fields_mut().into_iter().zip(other.fields()) {
            *mine += theirs;
        }
    }

    /// All the tasks it counts.
    pub fn total(&self) -> u32 {
        self.fields().iter().sum()
    }

    /// The coarser [`Counts`] (waiting and held count as queued).
    pub fn counts(&self) -> Counts {
        Counts {
            total: self.total(),
            queued: self.waiting + self.held + self.queued,
            running: self.running,
            done: self.done,
            failed: self.failed,
            canceled: self.canceled,
        }
    }

    /// The header value: `waiting=0 held=768 queued=256 running=0 done=0 failed=0 canceled=0`.
    pub fn header(&self) -> String {
        NAMES
            .iter()
            .zip(self.fields())
            .map(|(name, n)| format!("{name}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Reads a header value written by [`Tally::header`] (states in any order; a state
    /// missing counts none).
    pub fn parse(value: &str) -> Result<Tally, String> {
        let mut tally = Tally::default();
        for pair in value.split_whitespace() {
            let (name, n) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not state=count"))?;
            let at = NAMES
                .iter()
                .position(|known| *known == name)
                .ok_or_else(|| format!("{name:?} is not a task state"))?;
            *tally.fields_mut()[at] = n
                .parse()
                .map_err(|_| format!("{n:?} ({name}) is not a count"))?;
        }
        Ok(tally)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_slots_by_state_and_reads_back_its_header() {
        let slots = [
            TaskSlot(TaskState::Held, 0),
            TaskSlot(TaskState::Held, 0),
            TaskSlot(TaskState::Running, 1),
            TaskSlot(TaskState::Done, 2),
            TaskSlot(TaskState::Failed, 3),
        ];
        let tally = Tally::of(&slots);
        assert_eq!(
            (tally.held, tally.running, tally.done, tally.failed),
            (2, 1, 1, 1)
        );
        assert_eq!(tally.total(), 5);
        assert_eq!(
            tally.header(),
            "waiting=0 held=2 queued=0 running=1 done=1 failed=1 canceled=0"
        );
        assert_eq!(Tally::parse(&tally.header()), Ok(tally));
        assert_eq!(tally.counts(), Counts::of(&slots));
        let mut twice = tally;
        twice.merge(&tally);
        assert_eq!(twice.total(), 10);
    }

    #[test]
    fn a_bad_tally_header_says_what_is_wrong() {
        let cases = [
            ("done", "\"done\" is not state=count"),
            ("resting=1", "\"resting\" is not a task state"),
            ("done=x", "\"x\" (done) is not a count"),
        ];
        for (value, error) in cases {
            assert_eq!(Tally::parse(value), Err(error.to_string()), "{value}");
        }
        assert_eq!(Tally::parse("done=3").map(|t| t.done), Ok(3));
    }
}
