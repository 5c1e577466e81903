//! Bundles: the tasks of a `chunk = "auto"` job queued together as one task message. Such
//! a job is planned in single frames; its first tasks go out alone, and once frames have
//! been timed, the held ones go out in runs of consecutive frames sized so that a bundle
//! takes about the job's `target_task_time` (OpenJD's target runtime, measured rather than
//! guessed). Every frame keeps its own task slot, events and output keys, so the ledger,
//! assembly and retries see single frames whatever the bundle. Pure.

use std::time::Duration;

/// The most frames one bundle holds.
pub const MAX_BUNDLE: u32 = 1000;

/// How much each new measurement counts in the running estimate of a frame's time.
const WEIGHT_OF_NEW: f64 = 0.3;

/// A job's frame time as measured so far: a running mean weighted toward recent frames.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FrameTime {
    ms: Option<f64>,
}

impl FrameTime {
    /// Adds the time one frame took.
    pub fn add(&mut self, ms: f64) {
        self.ms = Some(match self.ms {
            None => ms,
            Some(old) => old + WEIGHT_OF_NEW * (ms - old),
        });
    }

    /// The estimate, once a frame was timed.
    pub fn ms(self) -> Option<f64> {
        self.ms
    }

    /// Frames a bundle should hold to take about `target`: 1 until a frame was timed.
    pub fn bundle_size(self, target: Duration) -> u32 {
        let Some(ms) = self.ms else {
            return 1;
        };
        let frames = target.as_secs_f64() * 1000.0 / ms.max(0.001);
        (frames.round() as u32).clamp(1, MAX_BUNDLE)
    }
}

/// Cuts `tasks` (ascending task indices, each with its attempts) into runs of consecutive
/// indices of at most `size` each.
pub fn runs<T: Copy>(tasks: &[(u32, T)], size: u32) -> Vec<Vec<(u32, T)>> {
    let mut runs: Vec<Vec<(u32, T)>> = Vec::new();
    for &task in tasks {
        match runs.last_mut() {
            Some(run)
                if run.len() < size.max(1) as usize
                    && run.last().is_some_and(|last| last.0 + 1 == task.0) =>
            {
                run.push(task)
            }
            _ => runs.push(vec![task]),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_are_sized_toward_the_target_from_measured_frames() {
        let target = Duration::from_secs(60);
        let mut time = FrameTime::default();
        assert_eq!(
            time.bundle_size(target),
            1,
            "single frames until one is timed"
        );
        time.add(6000.0);
        assert_eq!(time.bundle_size(target), 10);
        // Slower frames shrink the bundles, gradually.
        time.add(12_000.0);
        assert_eq!(time.ms(), Some(7800.0));
        assert_eq!(time.bundle_size(target), 8);
        for _ in 0..20 {
            time.add(12_000.0);
        }
        assert_eq!(time.bundle_size(target), 5);
        let mut quick = FrameTime::default();
        quick.add(0.0);
        assert_eq!(quick.bundle_size(target), MAX_BUNDLE);
        let mut slow = FrameTime::default();
        slow.add(3_600_000.0);
        assert_eq!(
            slow.bundle_size(target),
            1,
            "a frame longer than the target alone"
        );
    }

    #[test]
    fn runs_are_consecutive_and_bounded() {
        let tasks: Vec<(u32, ())> = [1, 2, 3, 4, 5, 7, 8, 20].iter().map(|&i| (i, ())).collect();
        let indices = |runs: Vec<Vec<(u32, ())>>| -> Vec<Vec<u32>> {
            runs.into_iter()
                .map(|r| r.into_iter().map(|(i, _)| i).collect())
                .collect()
        };
        assert_eq!(
            indices(runs(&tasks, 3)),
            [vec![1, 2, 3], vec![4, 5], vec![7, 8], vec![20]]
        );
        assert_eq!(indices(runs(&tasks, 1)).len(), 8);
        assert_eq!(indices(runs(&tasks, 0)).len(), 8, "size 0 taken as 1");
        assert!(runs::<()>(&[], 4).is_empty());
    }
}
