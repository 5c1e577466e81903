//! Key tasks to the fastest idle workers: the frames a job asks for first go through each
//! queue's key consumer, whose priority group is *prioritized* — the server gives a
//! message to the waiting pull of the lowest priority number, and to others only when no
//! such pull waits.
//!
//! A pull only competes while it waits, so a worker whose slots are all idle holds one
//! waiting pull on every key consumer it serves, for as many tasks as it has slots, at the
//! priority its `--speed` gives ([`pull_priority`]). The slots take what comes from a
//! channel. The first key task that comes ends the waits on the other key consumers (so
//! that two queues cannot hand one free slot two tasks), and a task the worker takes any
//! other way ends them all: the worker is no longer all idle, and waits for that again.
//!
//! A busy farm holds no waits: its key tasks are pulled like the others (no-wait, key queue
//! first), by the first slot free. Burst workers never wait for key tasks.
//!
//! Ending a wait drops its subscription; the server then stops choosing it (it checks a
//! waiting pull's interest before delivering). A task the server sent in the moment before
//! comes back after the consumer's ack deadline, as for a worker that died.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::StatusCode;
use async_nats::jetstream::{self, AckKind, consumer::pull::BatchConfig};
use std::collections::HashSet;

use async_nats::jetstream::consumer::PullConsumer;
use futures::{FutureExt as _, StreamExt as _};
use tokio::sync::{Mutex, Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::pick::Queue;
use crate::bus::streams::WORKERS_GROUP;

/// How long one wait lasts before it is made again.
const WAIT_FOR: Duration = Duration::from_secs(30);

/// The prioritized pull priority of a worker of `speed` (relative to the farm's usual
/// machine, 1): one step per doubling, 5 for the usual machine, 0 (first) from 32 times
/// as fast, 9 (last) at a sixteenth or slower.
pub fn pull_priority(speed: f64) -> usize {
    let steps = speed.log2().round();
    (5.0 - steps).clamp(0.0, 9.0) as usize
}

/// What a worker's slots and its key waits share.
pub(super) struct Keys {
    handed: mpsc::Sender<jetstream::Message>,
    waiting: Mutex<mpsc::Receiver<jetstream::Message>>,
    /// Slots idle now.
    idle: AtomicUsize,
    /// Rung when a slot goes idle or takes a task other than a handed one.
    changed: Notify,
    /// Tasks taken other than from the waits since they were made.
    elsewhere: AtomicUsize,
    /// The key queues this worker holds a wait on now.
    waits: std::sync::Mutex<HashSet<Queue>>,
}

impl Keys {
    pub(super) fn new(slots: usize) -> Keys {
        let (handed, waiting) = mpsc::channel(slots.max(1));
        Keys {
            handed,
            waiting: Mutex::new(waiting),
            idle: AtomicUsize::new(0),
            changed: Notify::new(),
            elsewhere: AtomicUsize::new(0),
            waits: Default::default(),
        }
    }

    /// A key task handed to this worker that no slot took yet, if any.
    pub(super) fn try_take(&self) -> Option<jetstream::Message> {
        self.waiting.try_lock().ok()?.try_recv().ok()
    }

    /// The next key task handed to this worker (an idle slot waits for it).
    pub(super) async fn take(&self) -> Option<jetstream::Message> {
        self.waiting.lock().await.recv().await
    }

    /// Whether this worker waits on key queue `queue` now: its slots do not pull it
    /// meanwhile, which would take its key tasks out of order.
    pub(super) fn waits_on(&self, queue: &Queue) -> bool {
        self.lock_waits().contains(queue)
    }

    /// Drops from `order` the key queues this worker waits on now (one lock per pick).
    pub(super) fn pass_over_waited(&self, order: &mut Vec<Queue>) {
        let waits = self.lock_waits();
        if !waits.is_empty() {
            order.retain(|queue| !(queue.key && waits.contains(queue)));
        }
    }

    fn lock_waits(&self) -> std::sync::MutexGuard<'_, HashSet<Queue>> {
        self.waits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether all `slots` of the worker are idle now (a slot that holds an idle guard
    /// counts itself).
    pub(super) fn all_idle(&self, slots: usize) -> bool {
        self.idle.load(Ordering::SeqCst) >= slots
    }

    /// The slot is idle until the guard is dropped.
    pub(super) fn idle(&self) -> IdleGuard<'_> {
        self.idle.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        IdleGuard(self)
    }

    /// A slot took a task other than a handed one: the worker is not all idle.
    pub(super) fn took_elsewhere(&self) {
        self.elsewhere.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// A slot idle (see [`Keys::idle`]).
pub(super) struct IdleGuard<'a>(&'a Keys);

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        self.0.idle.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a wait tells the worker's key waits: a task it handed on, or its end.
enum Arrival {
    Handed(usize),
    Ended(usize),
}

/// Holds the worker's key waits while all its slots are idle, until `stop`.
pub(super) async fn wait(shared: Arc<Shared>, stop: CancellationToken) {
    let keys = &shared.keys;
    let slots = shared.config.slots;
    let priority = pull_priority(shared.config.speed);
    let consumers: Vec<(Queue, PullConsumer)> = shared
        .consumers
        .iter()
        .filter(|(queue, _)| queue.key)
        .map(|(queue, consumer)| (queue.clone(), consumer.clone()))
        .collect();
    if consumers.is_empty() || shared.config.burst.is_some() {
        return;
    }
    while !stop.is_cancelled() {
        // Until every slot is idle.
        loop {
            let changed = keys.changed.notified();
            if keys.idle.load(Ordering::SeqCst) == slots {
                break;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = changed => {}
                // A missed ring costs at most this.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        keys.elsewhere.store(0, Ordering::SeqCst);
        let (told, mut arrivals) = mpsc::unbounded_channel();
        let ends: Vec<CancellationToken> = consumers.iter().map(|_| stop.child_token()).collect();
        for (index, (queue, consumer)) in consumers.iter().enumerate() {
            let config = BatchConfig {
                batch: slots,
                expires: Some(WAIT_FOR),
                group: Some(WORKERS_GROUP.to_string()),
                priority: Some(priority),
                ..Default::default()
            };
            keys.lock_waits().insert(queue.clone());
            let wait = Wait {
                shared: shared.clone(),
                queue: queue.clone(),
                index,
                told: told.clone(),
                end: ends[index].clone(),
            };
            tokio::spawn(wait.run(consumer.clone(), config));
        }
        drop(told);
        let mut first: Option<usize> = None;
        let mut open = consumers.len();
        let mut handed = 0;
        while open > 0 && handed < slots {
            let changed = keys.changed.notified();
            if keys.elsewhere.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = changed => {}
                arrival = arrivals.recv() => match arrival {
                    Some(Arrival::Ended(index)) => {
                        if first.is_none_or(|f| f == index) {
                            open -= 1;
                        }
                    }
                    Some(Arrival::Handed(index)) => {
                        if first.is_none() {
                            // The other queues' waits end: this one has the slots now.
                            first = Some(index);
                            open = 1;
                            for (i, end) in ends.iter().enumerate() {
                                if i != index {
                                    end.cancel();
                                }
                            }
                        }
                        handed += 1;
                    }
                    None => break,
                },
            }
        }
        for end in &ends {
            end.cancel();
        }
        // Until every wait has ended.
        while arrivals.recv().await.is_some() {}
    }
}

/// One waiting pull of a worker on key queue `queue`.
struct Wait {
    shared: Arc<Shared>,
    queue: Queue,
    index: usize,
    told: mpsc::UnboundedSender<Arrival>,
    end: CancellationToken,
}

impl Wait {
    /// Waits on `consumer` as `config` asks, handing each task that comes to the slots,
    /// until it expires, is full, or is ended.
    async fn run(self, consumer: PullConsumer, config: BatchConfig) {
        let deps = &self.shared.deps;
        let inbox = deps.client.new_inbox();
        let mut left = config.batch;
        match deps.client.subscribe(inbox.clone()).await {
            Err(e) => tracing::warn!(error = %e, "waiting for key tasks"),
            Ok(mut subscription) => match consumer.request_batch(config, inbox.into()).await {
                Err(e) => tracing::warn!(error = %e, "waiting for key tasks"),
                Ok(()) => {
                    let over = tokio::time::sleep(WAIT_FOR + Duration::from_secs(5));
                    tokio::pin!(over);
                    while left > 0 {
                        let message = tokio::select! {
                            () = self.end.cancelled() => break,
                            () = &mut over => break,
                            message = subscription.next() => match message {
                                Some(message) => message,
                                None => break,
                            },
                        };
                        match message.status.unwrap_or(StatusCode::OK) {
                            StatusCode::OK => {
                                left -= 1;
                                self.hand(message).await;
                            }
                            StatusCode::IDLE_HEARTBEAT => {}
                            // Expired, or the server ended it.
                            _ => break,
                        }
                    }
                    // Dropping the subscription ends the wait on the server too; what
                    // came before is still this worker's.
                    while let Some(Some(message)) = subscription.next().now_or_never() {
                        if message.status.is_none_or(|s| s == StatusCode::OK) {
                            self.hand(message).await;
                        }
                    }
                }
            },
        }
        self.shared.keys.lock_waits().remove(&self.queue);
        let _ = self.told.send(Arrival::Ended(self.index));
    }

    /// Hands `message` to an idle slot, or back to the queue when no slot is left idle for
    /// it (all took other work meanwhile): the next waiting pull gets it at once.
    async fn hand(&self, message: async_nats::Message) {
        let keys = &self.shared.keys;
        let msg = jetstream::Message {
            message,
            context: self.shared.deps.js.clone(),
        };
        let queued = keys.handed.max_capacity() - keys.handed.capacity();
        let msg = if keys.idle.load(Ordering::SeqCst) <= queued {
            msg
        } else {
            match keys.handed.try_send(msg) {
                Ok(()) => {
                    let _ = self.told.send(Arrival::Handed(self.index));
                    return;
                }
                Err(
                    mpsc::error::TrySendError::Full(msg) | mpsc::error::TrySendError::Closed(msg),
                ) => msg,
            }
        };
        tracing::info!(subject = %msg.subject, "no slot free for a key task any more: handing it back");
        if let Err(e) = msg.ack_with(AckKind::Nak(None)).await {
            tracing::warn!(error = %e, "handing back a key task");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faster_machines_pull_key_tasks_first() {
        // (speed, priority): one step per doubling, clamped to the server's 0-9.
        let cases = [
            (1.0, 5),
            (2.0, 4),
            (1.5, 4),
            (4.0, 3),
            (32.0, 0),
            (1000.0, 0),
            (0.5, 6),
            (1.0 / 16.0, 9),
            (0.001, 9),
        ];
        for (speed, priority) in cases {
            assert_eq!(pull_priority(speed), priority, "speed {speed}");
        }
    }
}
