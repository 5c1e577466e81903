//! Which queue a free slot looks at first: classes in the worker's preference order, then
//! priorities with a starvation guard, then renderers, each queue's key tasks before the
//! rest — and a queue whose doorbell just rang ahead of all of them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::core::job::{Class, Priority, RendererKind};

/// A queue a worker pulls from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Queue {
    /// Hardware class.
    pub class: Class,
    /// Priority.
    pub priority: Priority,
    /// Renderer.
    pub renderer: RendererKind,
    /// Its key tasks (the key consumer), or the rest.
    pub key: bool,
}

impl Queue {
    /// The queue's key tasks, or with `key` false the rest.
    pub fn with_key(&self, key: bool) -> Queue {
        Queue {
            key,
            ..self.clone()
        }
    }
}

/// The order in which a slot's `pick`-th pick looks at the priorities — the starvation
/// guard. Of every five picks, picks 0, 1 and 3 look at high first, pick 2 at normal first
/// and pick 4 at low first; a pick whose first choice is empty falls back to the others,
/// most urgent first. Under a constant flow of high-priority work, normal and low work
/// each still get at least one pick in five of every slot.
pub fn priority_order(pick: u64) -> [Priority; 3] {
    use Priority::*;
    match pick % 5 {
        2 => [Normal, High, Low],
        4 => [Low, High, Normal],
        _ => [High, Normal, Low],
    }
}

/// Every queue of the worker in the order a pick looks at them: classes in preference
/// order, then priorities in `order`, then renderers, each queue's key tasks before the
/// rest — with `hint` (a queue whose doorbell just rang while the slot was idle, key tasks
/// and the rest) first.
pub fn pick_order(
    classes: &[Class],
    renderers: &[RendererKind],
    order: [Priority; 3],
    hint: Option<&Queue>,
) -> Vec<Queue> {
    let hint = hint.map(|queue| queue.with_key(false));
    let mut queues: Vec<Queue> = Vec::new();
    let mut add = |queue: Queue| {
        queues.push(queue.with_key(true));
        queues.push(queue);
    };
    if let Some(hint) = &hint {
        add(hint.clone());
    }
    for class in classes {
        for priority in order {
            for &renderer in renderers {
                let queue = Queue {
                    class: class.clone(),
                    priority,
                    renderer,
                    key: false,
                };
                if Some(&queue) != hint.as_ref() {
                    add(queue);
                }
            }
        }
    }
    queues
}

/// How long a queue found empty is passed over, unless a doorbell rings for it. Every
/// queuing of tasks rings one (planning, released dependencies, `tessera retry`, resumed
/// queues, the hand-back of a dead worker's tasks), and a worker that asks for its failed
/// attempt again after a delay looks again itself then; a task that comes back otherwise
/// (another worker's retry) waits at most this much longer. Longer than a one-second task,
/// so that slots finishing together do not all look at every empty queue again.
pub const RECHECK: Duration = Duration::from_secs(2);

/// The queues a worker lately found empty. A slot passes them over for [`RECHECK`], so that
/// taking a task costs one pull, not one per empty queue before it; a doorbell for a queue
/// makes it worth a pull again at once — also one that rang while a pull that found it
/// empty was on its way (the pull may have been answered before the tasks were queued).
#[derive(Debug, Default)]
pub struct Emptiness(Mutex<HashMap<Queue, Looked>>);

/// When a queue was last asked and found empty, and when its doorbell last rang.
#[derive(Debug, Clone, Copy, Default)]
struct Looked {
    empty: Option<Instant>,
    rung: Option<Instant>,
}

impl Emptiness {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Queue, Looked>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `queue` was found empty less than [`RECHECK`] before `now`, and its
    /// doorbell has not rung since it was asked.
    pub fn passed_over(&self, queue: &Queue, now: Instant) -> bool {
        self.lock().get(queue).is_some_and(|looked| {
            looked.empty.is_some_and(|at| {
                now.saturating_duration_since(at) < RECHECK
                    && looked.rung.is_none_or(|rung| rung < at)
            })
        })
    }

    /// `queue` had no task for us when we asked, at `asked`.
    pub fn found_empty(&self, queue: &Queue, asked: Instant) {
        self.lock().entry(queue.clone()).or_default().empty = Some(asked);
    }

    /// Tasks were queued on `queue` (a doorbell): the rest of the queue, and with
    /// `queue.key` its key tasks too (the doorbell said key tasks were among them).
    pub fn rung(&self, queue: &Queue) {
        let now = Some(Instant::now());
        let mut looked = self.lock();
        looked.entry(queue.with_key(false)).or_default().rung = now;
        if queue.key {
            looked.entry(queue.clone()).or_default().rung = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_queue_is_passed_over_until_rechecked_or_rung() {
        let queue = Queue {
            class: Class::cpu(),
            priority: Priority::High,
            renderer: RendererKind::Noop,
            key: false,
        };
        let other = Queue {
            priority: Priority::Low,
            ..queue.clone()
        };
        let empty = Emptiness::default();
        let t0 = Instant::now();
        assert!(!empty.passed_over(&queue, t0));
        empty.found_empty(&queue, t0);
        for (after, passed) in [(0, true), (1999, true), (2000, false), (5000, false)] {
            let now = t0 + Duration::from_millis(after);
            assert_eq!(empty.passed_over(&queue, now), passed, "{after} ms");
        }
        assert!(!empty.passed_over(&other, t0));
        // A doorbell that says key tasks came rings for the queue's key tasks too.
        let keys = queue.with_key(true);
        empty.found_empty(&keys, t0);
        empty.rung(&queue);
        assert!(!empty.passed_over(&queue, t0));
        assert!(
            empty.passed_over(&keys, t0),
            "no key tasks were said to come"
        );
        empty.rung(&keys);
        assert!(!empty.passed_over(&keys, t0));
        // A pull asked before the doorbell rang and answered empty after it: the ring
        // still counts.
        let asked = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        empty.rung(&queue);
        empty.found_empty(&queue, asked);
        assert!(!empty.passed_over(&queue, Instant::now()));
        // Asked after the ring and found empty: passed over.
        empty.found_empty(&queue, Instant::now());
        assert!(empty.passed_over(&queue, Instant::now()));
    }

    #[test]
    fn priority_order_gives_normal_and_low_a_share() {
        let picks: Vec<[Priority; 3]> = (0..10).map(priority_order).collect();
        let first = |p: Priority| picks.iter().filter(|o| o[0] == p).count();
        assert_eq!(
            (
                first(Priority::High),
                first(Priority::Normal),
                first(Priority::Low)
            ),
            (6, 2, 2)
        );
        for order in picks {
            let mut sorted = order;
            sorted.sort();
            assert_eq!(sorted, Priority::ALL, "every priority is looked at");
        }
    }

    #[test]
    fn pick_order_prefers_classes_then_priorities_and_the_hint() {
        let gpu = Class::parse("gpu").unwrap();
        let cpu = Class::cpu();
        let order = pick_order(
            &[gpu.clone(), cpu.clone()],
            &[RendererKind::Noop],
            priority_order(0),
            None,
        );
        let names: Vec<String> = order
            .iter()
            .map(|q| {
                format!(
                    "{}-{}{}",
                    q.class,
                    q.priority,
                    if q.key { "-key" } else { "" }
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "gpu-high-key",
                "gpu-high",
                "gpu-normal-key",
                "gpu-normal",
                "gpu-low-key",
                "gpu-low",
                "cpu-high-key",
                "cpu-high",
                "cpu-normal-key",
                "cpu-normal",
                "cpu-low-key",
                "cpu-low"
            ]
        );
        let hint = Queue {
            class: cpu,
            priority: Priority::Low,
            renderer: RendererKind::Noop,
            key: false,
        };
        let order = pick_order(
            &[gpu],
            &[RendererKind::Noop],
            priority_order(0),
            Some(&hint),
        );
        assert_eq!(order[..2], [hint.with_key(true), hint.clone()]);
        assert_eq!(order.len(), 8);
    }
}
