//! The attempts a worker is running, by job — so that a cancel of the job reaches them and
//! the registry lists them — and the one [`Stop`] each attempt can be stopped through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

use super::outcome::Outcome;
use crate::bus::protocol::Delivery;
use crate::core::job::JobId;

/// How an attempt is stopped, and why. The renderer watches the token; the first reason
/// given wins. A stop without a reason came from the worker's own shutdown (the grace
/// period ran out).
#[derive(Clone)]
pub(super) struct Stop {
    token: CancellationToken,
    reason: Arc<OnceLock<Outcome>>,
}

impl Stop {
    /// A stop that also fires when `parent` is cancelled.
    pub(super) fn under(parent: &CancellationToken) -> Stop {
        Stop {
            token: parent.child_token(),
            reason: Arc::new(OnceLock::new()),
        }
    }

    /// Stops the attempt for `why` (a timeout fails it, a cancel ends it).
    pub(super) fn stop(&self, why: Outcome) {
        let _ = self.reason.set(why);
        self.token.cancel();
    }

    /// The token the renderer watches.
    pub(super) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Why the attempt was stopped, if it was: its reason, or shutting down when the stop
    /// came from the worker's own shutdown.
    pub(super) fn outcome(&self) -> Option<Outcome> {
        match self.reason.get() {
            Some(why) => Some(*why),
            None if self.token.is_cancelled() => Some(Outcome::ShuttingDown),
            None => None,
        }
    }
}

/// One running attempt.
struct Running {
    id: u64,
    delivery: Delivery,
    stop: Stop,
    /// How far its render is, in millionths.
    progress: Arc<AtomicU32>,
}

/// The running attempts, by job.
#[derive(Default)]
pub(super) struct Attempts {
    by_job: Mutex<HashMap<JobId, Vec<Running>>>,
    next_id: AtomicU64,
}

impl Attempts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Vec<Running>>> {
        self.by_job.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `delivery` runs, stoppable through `stop`; returns its number.
    pub(super) fn start(&self, delivery: Delivery, stop: Stop, progress: Arc<AtomicU32>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(delivery.job.clone())
            .or_default()
            .push(Running {
                id,
                delivery,
                stop,
                progress,
            });
        id
    }

    /// Forgets attempt `id` of `job`.
    pub(super) fn end(&self, job: &JobId, id: u64) {
        let mut by_job = self.lock();
        if let Some(attempts) = by_job.get_mut(job) {
            attempts.retain(|a| a.id != id);
            if attempts.is_empty() {
                by_job.remove(job);
            }
        }
    }

    /// Stops every running attempt of `job`: the job was canceled.
    pub(super) fn cancel_job(&self, job: &JobId) {
        for attempt in self.lock().get(job).into_iter().flatten() {
            attempt.stop.stop(Outcome::Canceled);
        }
    }

    /// The running attempts as `<job>/<task>`, each with how far it is (0 to 1).
    pub(super) fn listing(&self) -> (Vec<String>, Vec<f32>) {
        self.lock()
            .values()
            .flatten()
            .map(|a| {
                (
                    format!("{}/{}", a.delivery.job, a.delivery.task),
                    a.progress.load(Ordering::Relaxed) as f32 / 1e6,
                )
            })
            .unzip()
    }

    /// The deliveries being rendered.
    pub(super) fn deliveries(&self) -> Vec<Delivery> {
        self.lock()
            .values()
            .flatten()
            .map(|a| a.delivery.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::TaskId;

    fn delivery(job: &JobId, task: &str) -> Delivery {
        Delivery {
            job: job.clone(),
            task: TaskId(task.into()),
            index: 0,
            attempt: 1,
            subject: format!("tasks.{job}"),
            reply: format!("ack.{job}.{task}"),
            incarnation: String::new(),
        }
    }

    #[test]
    fn a_cancel_reaches_the_attempts_of_its_job_only() {
        let attempts = Attempts::default();
        let root = CancellationToken::new();
        let (a, b) = (JobId::parse("a").unwrap(), JobId::parse("b").unwrap());
        let (stop_a, stop_b) = (Stop::under(&root), Stop::under(&root));
        let half = Arc::new(AtomicU32::new(500_000));
        let id = attempts.start(delivery(&a, "f0001"), stop_a.clone(), Arc::default());
        attempts.start(delivery(&b, "f0002"), stop_b.clone(), half);
        let (running, progress) = attempts.listing();
        let mut listing: Vec<(String, f32)> = running.into_iter().zip(progress).collect();
        listing.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            listing,
            [("a/f0001".to_string(), 0.0), ("b/f0002".to_string(), 0.5)]
        );
        attempts.cancel_job(&a);
        assert_eq!(stop_a.outcome(), Some(Outcome::Canceled));
        assert_eq!(stop_b.outcome(), None);
        attempts.end(&a, id);
        assert_eq!(attempts.listing().0, ["b/f0002"]);
        root.cancel();
        assert_eq!(stop_b.outcome(), Some(Outcome::ShuttingDown));
    }

    #[test]
    fn the_first_reason_wins() {
        let stop = Stop::under(&CancellationToken::new());
        stop.stop(Outcome::Failed);
        stop.stop(Outcome::Canceled);
        assert_eq!(stop.outcome(), Some(Outcome::Failed));
    }
}
