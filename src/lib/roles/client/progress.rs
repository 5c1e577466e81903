//! A job's progress as a watcher sees it: the counts of a snapshot moved by each event
//! after it, the progress of each chunk of frames (its tiles and layers) for tiled and
//! layered jobs, the rate of the last minute and an ETA from the task durations seen.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::Serialize;

use crate::bus::protocol::{Event, EventKind};
use crate::core::job::Job;
use crate::core::plan;
use crate::core::state::Counts;

/// The window the rate is measured over.
const RATE_WINDOW_MS: u64 = 60_000;

/// What `tessera watch --json` says of the job after each event.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Snapshot {
    /// Tasks done.
    pub done: u32,
    /// All tasks.
    pub total: u32,
    /// Rendering now.
    pub running: u32,
    /// Failed for good.
    pub failed: u32,
    /// Failed attempts tried again (since the watch began).
    pub retried: u32,
    /// Tasks done a second over the last minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Seconds left at the durations seen, if any task finished while watched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
    /// The chunk of the event's task: `frame 12` (or `frames 1-4`), for jobs whose chunks
    /// have several tasks (tiles, layers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<String>,
    /// Its tasks done, and how many it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_done: Option<[u32; 2]>,
}

/// A watched job's progress.
pub struct Progress {
    job: Option<Job>,
    counts: Counts,
    retried: u32,
    /// Tasks seen done while watched (a done event counts once).
    done_seen: HashSet<u32>,
    /// When each running attempt started, by (task, attempt).
    started: HashMap<(u32, u32), u64>,
    /// Running tasks seen while watched.
    running: HashSet<u32>,
    /// The durations of the attempts seen from start to done: sum and count.
    durations: (u64, u32),
    /// Times of the done events of the last minute, oldest first. Workers publish their
    /// events in their own order, so a done event can arrive stamped before one already seen.
    recent: VecDeque<u64>,
    /// Done tasks per chunk, for chunks seen while watched.
    chunks: BTreeMap<u32, u32>,
}

impl Progress {
    /// Progress from `counts` as they stood when the watch began; `job` (when known) gives
    /// the chunks.
    pub fn new(job: Option<Job>, counts: Counts) -> Progress {
        Progress {
            job,
            counts,
            retried: 0,
            done_seen: HashSet::new(),
            started: HashMap::new(),
            running: HashSet::new(),
            durations: (0, 0),
            recent: VecDeque::new(),
            chunks: BTreeMap::new(),
        }
    }

    /// Whether the job's chunks have several tasks each (tiles or layers).
    pub fn has_chunks(&self) -> bool {
        self.job
            .as_ref()
            .is_some_and(|j| plan::tasks_per_chunk(j) > 1)
    }

    /// Moves the counts by `event`; returns where the job stands after it.
    pub fn apply(&mut self, event: &Event) -> Snapshot {
        let index = event.index;
        let attempt = event.attempt.unwrap_or(0);
        match (event.kind, index) {
            (EventKind::JobAccepted, _) => {
                if self.counts.total == 0
                    && let Some(total) = event
                        .message
                        .as_deref()
                        .and_then(|m| m.split_whitespace().next()?.parse().ok())
                {
                    self.counts.total = total;
                    self.counts.queued = total;
                }
            }
            (EventKind::TaskStarted, Some(i)) => {
                self.started.insert((i, attempt), event.time_ms);
                if self.running.insert(i) {
                    self.counts.running += 1;
                    self.counts.queued = self.counts.queued.saturating_sub(1);
                }
            }
            (EventKind::TaskRetry, Some(i)) => {
                self.retried += 1;
                self.started.remove(&(i, attempt));
                if self.running.remove(&i) {
                    self.counts.running = self.counts.running.saturating_sub(1);
                    self.counts.queued += 1;
                }
            }
            (EventKind::TaskFailed, Some(i)) => {
                self.started.remove(&(i, attempt));
                self.leave_running(i);
                self.counts.failed += 1;
            }
            (EventKind::TaskDone, Some(i)) => {
                // A task done before its start was reported says when it started.
                let began = self.started.remove(&(i, attempt)).or(event.started_ms);
                if let Some(began) = began {
                    self.durations.0 += event.time_ms.saturating_sub(began);
                    self.durations.1 += 1;
                }
                if self.done_seen.insert(i) {
                    match event.started_ms {
                        Some(_) if !self.running.contains(&i) => {
                            self.counts.queued = self.counts.queued.saturating_sub(1)
                        }
                        _ => self.leave_running(i),
                    }
                    self.counts.done = (self.counts.done + 1).min(self.counts.total.max(1));
                    let at = self.recent.partition_point(|&t| t <= event.time_ms);
                    self.recent.insert(at, event.time_ms);
                    if let Some(chunk) = self.chunk_of(i) {
                        *self.chunks.entry(chunk).or_default() += 1;
                    }
                }
            }
            _ => {}
        }
        let newest = self.recent.back().copied().unwrap_or(0).max(event.time_ms);
        while self
            .recent
            .front()
            .is_some_and(|&t| t + RATE_WINDOW_MS < newest)
        {
            self.recent.pop_front();
        }
        self.snapshot(index)
    }

    fn leave_running(&mut self, index: u32) {
        if self.running.remove(&index) {
            self.counts.running = self.counts.running.saturating_sub(1);
        } else {
            // It was running or queued when the watch began.
            if self.counts.running > 0 {
                self.counts.running -= 1;
            } else {
                self.counts.queued = self.counts.queued.saturating_sub(1);
            }
        }
    }

    fn chunk_of(&self, index: u32) -> Option<u32> {
        let job = self.job.as_ref().filter(|j| plan::tasks_per_chunk(j) > 1)?;
        (index < plan::task_count(job)).then(|| plan::coordinates(job, index).chunk)
    }

    /// Where the job stands; `index` names the task whose chunk to report.
    pub fn snapshot(&self, index: Option<u32>) -> Snapshot {
        let c = &self.counts;
        // A rate needs a second of done tasks at least: two a few milliseconds apart say
        // nothing of the pace.
        let rate = match (self.recent.front(), self.recent.back()) {
            (Some(first), Some(last)) if last.saturating_sub(*first) >= 1_000 => {
                Some((self.recent.len() - 1) as f64 * 1000.0 / (last - first) as f64)
            }
            _ => None,
        };
        let left = c.total.saturating_sub(c.done + c.failed + c.canceled);
        let eta_s = (self.durations.1 > 0).then(|| {
            let mean_s = self.durations.0 as f64 / self.durations.1 as f64 / 1000.0;
            let parallel = c.running.max(1) as f64;
            let by_durations = left as f64 * mean_s / parallel;
            // The measured rate, once there is one, folds in what durations miss (dispatch,
            // assembly, more workers than tasks running at the moment).
            rate.map_or(by_durations, |r| left as f64 / r)
        });
        let (chunk, chunk_done) = match index.and_then(|i| Some((i, self.chunk_of(i)?))) {
            Some((i, chunk)) => {
                let job = self.job.as_ref().expect("chunks need the job");
                let frames = plan::task(job, i).frames;
                let label = match (frames.first(), frames.last()) {
                    (Some(a), Some(b)) if a != b => format!("frames {a}-{b}"),
                    (Some(a), _) => format!("frame {a}"),
                    _ => format!("chunk {chunk}"),
                };
                let done = self.chunks.get(&chunk).copied().unwrap_or(0);
                (Some(label), Some([done, plan::tasks_per_chunk(job)]))
            }
            None => (None, None),
        };
        Snapshot {
            done: c.done,
            total: c.total,
            running: c.running,
            failed: c.failed,
            retried: self.retried,
            rate,
            eta_s,
            chunk,
            chunk_done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::job::JobSpec;

    fn event(kind: EventKind, index: u32, attempt: u32, time_ms: u64) -> Event {
        let mut e = Event::new(kind, "j");
        e.index = Some(index);
        e.attempt = Some(attempt);
        e.time_ms = time_ms;
        e
    }

    fn tiled_job() -> Job {
        let spec: JobSpec = toml::from_str(
            "id = \"j\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-2\"\n[tiles]\ngrid = [2, 1]\n",
        )
        .unwrap();
        spec.validate().unwrap()
    }

    #[test]
    fn events_move_the_counts_and_each_task_counts_done_once() {
        let counts = Counts {
            total: 4,
            queued: 4,
            ..Counts::default()
        };
        let mut p = Progress::new(Some(tiled_job()), counts);
        assert!(p.has_chunks());
        p.apply(&event(EventKind::TaskStarted, 0, 1, 1_000));
        let s = p.apply(&event(EventKind::TaskRetry, 0, 1, 1_500));
        assert_eq!((s.running, s.retried), (0, 1));
        p.apply(&event(EventKind::TaskStarted, 0, 2, 2_000));
        let s = p.apply(&event(EventKind::TaskDone, 0, 2, 3_000));
        assert_eq!((s.done, s.running), (1, 0));
        assert_eq!(s.chunk.as_deref(), Some("frame 1"));
        assert_eq!(s.chunk_done, Some([1, 2]));
        // A late duplicate done changes nothing.
        let s = p.apply(&event(EventKind::TaskDone, 0, 1, 3_100));
        assert_eq!(s.done, 1);
        // One duration seen (1 s) and three tasks left, one at a time: 3 s.
        assert_eq!(s.eta_s, Some(3.0));
        p.apply(&event(EventKind::TaskStarted, 1, 1, 3_000));
        let s = p.apply(&event(EventKind::TaskDone, 1, 1, 3_010));
        assert_eq!(s.chunk_done, Some([2, 2]));
        assert_eq!(s.rate, None, "no pace from two ends 10 ms apart");
        let s = p.apply(&event(EventKind::TaskDone, 3, 1, 4_000));
        // Three done within a second: two a second, one left.
        assert_eq!(s.rate, Some(2.0));
        assert_eq!(s.eta_s, Some(0.5));
        assert_eq!(
            (s.chunk.as_deref(), s.chunk_done),
            (Some("frame 2"), Some([1, 2]))
        );
        let s = p.apply(&event(EventKind::TaskFailed, 2, 3, 5_000));
        assert_eq!((s.failed, s.chunk.as_deref()), (1, Some("frame 2")));
    }

    #[test]
    fn a_task_done_before_its_start_was_reported_leaves_the_queued_and_counts_its_time() {
        // Two running when the watch began, two queued; one of those is done at once.
        let counts = Counts {
            total: 4,
            queued: 2,
            running: 2,
            ..Counts::default()
        };
        let mut p = Progress::new(None, counts);
        let mut done = event(EventKind::TaskDone, 3, 1, 2_500);
        done.started_ms = Some(2_000);
        let s = p.apply(&done);
        assert_eq!((s.done, s.running, p.counts.queued), (1, 2, 1));
        // Its half second is the one duration seen: three left, two at a time.
        assert_eq!(s.eta_s, Some(0.75));
    }

    #[test]
    fn a_snapshot_taken_while_tasks_run_is_moved_by_their_ends() {
        let counts = Counts {
            total: 3,
            queued: 1,
            running: 2,
            done: 0,
            ..Counts::default()
        };
        let mut p = Progress::new(None, counts);
        assert!(!p.has_chunks());
        let s = p.apply(&event(EventKind::TaskDone, 1, 1, 10));
        assert_eq!((s.done, s.running, s.chunk), (1, 1, None));
        assert_eq!(s.eta_s, None, "no duration seen yet");
    }

    #[test]
    fn done_events_arriving_out_of_their_time_order_give_a_rate() {
        let counts = Counts {
            total: 6,
            queued: 6,
            ..Counts::default()
        };
        let mut p = Progress::new(None, counts);
        // Two workers: one's later end arrives before the other's earlier one.
        for (i, t) in [(0, 100_000), (1, 102_000), (2, 101_000), (3, 99_000)] {
            p.apply(&event(EventKind::TaskDone, i, 1, t));
        }
        let s = p.snapshot(None);
        assert_eq!(s.done, 4);
        // Four ends from 99 s to 102 s: one a second.
        assert_eq!(s.rate, Some(1.0));
        // An end stamped long before the window is dropped against the newest one.
        let s = p.apply(&event(EventKind::TaskDone, 4, 1, 1_000));
        assert_eq!((s.done, s.rate), (5, Some(1.0)));
    }
}
