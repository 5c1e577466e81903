//! The worker: stateless; each free slot takes one task (highest priority first, classes
//! in preference order, never pre-fetching), fetches the scene through a local
//! content-addressed cache, runs the renderer, uploads the outputs attempt-scoped and the
//! log, publishes the outcome, and acks. While a render runs it sends progress acks well
//! inside the consumer's ack deadline, so only a dead worker loses its task — and then
//! within seconds. A slot whose renderer has exited takes its next task while the last
//! one's report (log, event, ack) is still being sent: one report in flight per slot. After
//! a long attempt the report waits (briefly) for the next pull to be answered, so that the
//! pulls of slots that end together are not queued behind their reports.
//!
//! - [`config`]: flags and the validated configuration;
//! - [`pick`]: which queue a slot looks at first (pure);
//! - [`pull`]: taking one task, in the task consumers' priority group;
//! - [`keys`]: key tasks to the fastest idle workers (prioritized waiting pulls);
//! - `delivery`: one delivery from message to disposition, and the blocklist;
//! - `attempt`: one attempt: scene, renderer, keep-alive, timeout, upload;
//! - [`outcome`]: what JetStream is told after an attempt (pure [`disposition`]);
//! - `running`: the running attempts, and how each is stopped;
//! - `listen`: doorbells, cancels and the heartbeat.
//!
//! Shutdown drains in two phases: stop pulling, let renders finish within the grace
//! period, then stop them and hand their tasks back for immediate redelivery.

mod attempt;
pub mod config;
mod delivery;
pub mod keys;
mod listen;
pub mod outcome;
pub mod pick;
pub mod pull;
mod running;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use async_nats::jetstream::consumer::PullConsumer;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{WorkerArgs, WorkerConfig};
pub use delivery::{BLOCKLIST_AFTER, MAX_HANDBACKS};
pub use outcome::{Disposition, Outcome, disposition, retry_delay};
pub use pick::{Queue, pick_order, priority_order};
pub use pull::{Group, Pull, pull_one};

use crate::bus::protocol::EventKind;
use crate::bus::{protocol, streams};
use crate::config::Deps;
use crate::core::job::{Class, Priority, RendererKind};
use crate::render::{self, Renderer};
use crate::store::cache::Cache;
use delivery::{Failures, Ran};
use running::Attempts;

/// How long an idle slot that hears key tasks were queued gives them to come through its
/// worker's wait before it pulls the rest (they come within a millisecond or two when the
/// server chose this worker; otherwise they went to a faster one).
const KEY_GRACE: std::time::Duration = std::time::Duration::from_millis(25);

/// How long a slot's last report waits for the slot's next pull to be answered.
const REPORT_HOLD: std::time::Duration = std::time::Duration::from_millis(20);

/// What the slots and listeners of one worker share.
struct Shared {
    deps: Deps,
    config: WorkerConfig,
    cache: Cache,
    /// The renderers it runs.
    renderers: HashMap<RendererKind, Box<dyn Renderer>>,
    /// Two consumers per (class, priority, renderer) served: its key tasks and the rest.
    consumers: HashMap<Queue, PullConsumer>,
    /// The priority group the slots pull in (with the burst threshold, if any).
    group: pull::Group,
    /// The priority group of the key consumers, at this worker's priority.
    key_group: pull::Group,
    /// Key tasks handed to the slots, and the slots idle.
    keys: keys::Keys,
    /// Doorbell hints: a queue that just got tasks.
    doorbell: broadcast::Sender<Queue>,
    /// The queues lately found empty.
    empty: Arc<pick::Emptiness>,
    /// The running attempts.
    attempts: Attempts,
    /// Failed attempts per job, for the blocklist.
    failures: Failures,
    /// When the worker started.
    started_ms: u64,
    /// The worker's lease.
    lease: listen::Lease,
    /// Woken when an attempt starts or ends, so the lease says so (within a gap).
    lease_changed: tokio::sync::Notify,
    /// Woken when an attempt starts whose start is reported at once: the lease says so at
    /// once too.
    lease_now: tokio::sync::Notify,
    /// Cancelled when the grace period after shutdown ends.
    kill: CancellationToken,
}

/// Runs the worker until `shutdown` (then drains).
pub async fn run(
    deps: Deps,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cache = Cache::new(config.cache_dir.clone(), config.cache_size)
        .with_context(|| format!("creating the cache in {}", config.cache_dir.display()))?;
    // Work folders left by an earlier run that died are nobody's: the cache folder is
    // this process's alone (it holds its lock).
    let work = config.cache_dir.join("work");
    if let Err(e) = std::fs::remove_dir_all(&work)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(folder = %work.display(), error = %e, "sweeping old work folders");
    }
    let mut consumers = HashMap::new();
    for class in &config.classes {
        for priority in Priority::ALL {
            for &renderer in &config.renderers {
                let overrides = streams::Overrides {
                    ack_wait: Some(config.ack_wait),
                    max_deliver: config.max_deliver,
                };
                for key in [true, false] {
                    let consumer =
                        streams::task_consumer(&deps.js, class, priority, renderer, key, overrides)
                            .await?;
                    let queue = Queue {
                        class: class.clone(),
                        priority,
                        renderer,
                        key,
                    };
                    consumers.insert(queue, consumer);
                }
            }
        }
    }
    let renderers = config
        .renderers
        .iter()
        .filter_map(|&kind| Some((kind, render::adapter(kind, &config.programs)?)))
        .collect();
    let shared = Arc::new(Shared {
        deps: deps.clone(),
        cache,
        renderers,
        consumers,
        group: pull::Group::workers(config.burst),
        key_group: pull::Group::keys(keys::pull_priority(config.speed)),
        keys: keys::Keys::new(config.slots),
        doorbell: broadcast::channel(64).0,
        empty: Default::default(),
        attempts: Attempts::default(),
        failures: Failures::default(),
        started_ms: protocol::now_ms(),
        lease: listen::Lease::bind(&deps.js, &config.id).await?,
        lease_changed: tokio::sync::Notify::new(),
        lease_now: tokio::sync::Notify::new(),
        kill: CancellationToken::new(),
        config,
    });

    shared.lease.hand_back_previous(&shared).await;
    let listeners = TaskTracker::new();
    let stop_listening = CancellationToken::new();
    for class in shared.config.classes.clone() {
        let bell = deps
            .client
            .subscribe(protocol::doorbell_subject(&class))
            .await?;
        let task = listen::doorbells(shared.clone(), class, bell, stop_listening.clone());
        listeners.spawn(task);
    }
    let mut ends = futures::stream::SelectAll::new();
    for kind in [
        EventKind::JobDone,
        EventKind::JobFailed,
        EventKind::JobCanceled,
    ] {
        let filter = protocol::every_job_events_filter(kind);
        ends.push(deps.client.subscribe(filter).await?);
    }
    listeners.spawn(listen::job_ends(
        shared.clone(),
        ends,
        stop_listening.clone(),
    ));
    let control = deps.client.subscribe(protocol::CONTROL_ALL).await?;
    listeners.spawn(listen::cancels(
        shared.clone(),
        control,
        stop_listening.clone(),
    ));
    listeners.spawn(listen::heartbeat(shared.clone(), stop_listening.clone()));
    listeners.spawn(keys::wait(shared.clone(), shutdown.clone()));

    tracing::info!(
        worker = %shared.config.id,
        classes = ?shared.config.classes.iter().map(Class::as_str).collect::<Vec<_>>(),
        slots = shared.config.slots,
        renderers = ?shared.config.renderers,
        speed = shared.config.speed,
        "worker ready"
    );
    let metrics = &crate::metrics::METRICS;
    metrics.slots("free", shared.config.slots as i64);
    let slots = TaskTracker::new();
    for slot in 0..shared.config.slots {
        slots.spawn(slot_loop(shared.clone(), slot, shutdown.clone()));
    }
    slots.close();

    shutdown.cancelled().await;
    tracing::info!(grace = ?shared.config.grace, "draining: no new tasks; running renders may finish");
    tokio::select! {
        () = slots.wait() => {}
        () = tokio::time::sleep(shared.config.grace) => {
            tracing::warn!("grace period over: stopping renders and handing their tasks back");
            shared.kill.cancel();
            slots.wait().await;
        }
    }
    metrics.slots("free", -(shared.config.slots as i64));
    stop_listening.cancel();
    listeners.close();
    listeners.wait().await;
    tracing::info!("worker stopped");
    Ok(())
}

/// One slot: takes a task, runs it, and again, until `shutdown`; idle, it waits for a
/// doorbell or the idle poll (a burst worker also for a lasting backlog).
async fn slot_loop(shared: Arc<Shared>, slot: usize, shutdown: CancellationToken) {
    let mut bell = shared.doorbell.subscribe();
    let mut picks: u64 = 0;
    let mut hint: Option<Queue> = None;
    // The report of the attempt this slot rendered last, sent while the slot takes and
    // renders the next task — a long attempt's once that pull is answered, or after
    // `REPORT_HOLD` (one at a time: a slot never has two reports in flight).
    let mut reporting = Reporting::default();
    // A key task handed to this slot while it was idle.
    let mut handed: Option<async_nats::jetstream::Message> = None;
    // Held from when the slot finds nothing to do until it takes a task.
    let mut idle = None;
    'slot: while !shutdown.is_cancelled() {
        let mut order = pick_order(
            &shared.config.classes,
            &shared.config.renderers,
            priority_order(picks),
            hint.take().as_ref(),
        );
        // A key queue this worker waits on comes through the wait, in order.
        shared.keys.pass_over_waited(&mut order);
        let msg = match handed.take().or_else(|| shared.keys.try_take()) {
            Some(msg) => Some(msg),
            None => {
                let groups = (&shared.group, &shared.key_group);
                let take = pull::take_task(&shared.consumers, &order, groups, &shared.empty);
                tokio::pin!(take);
                // The last report waits for the pull (so that the pulls of slots freed
                // together reach the server ahead of their reports), but not for long.
                let taken = tokio::select! {
                    biased;
                    taken = &mut take => taken,
                    () = tokio::time::sleep(REPORT_HOLD), if reporting.next.is_some() => {
                        reporting.send();
                        take.await
                    }
                };
                if taken.is_some() {
                    shared.keys.took_elsewhere();
                }
                taken
            }
        };
        reporting.send();
        match msg {
            Some(msg) => {
                // The first task an idle worker takes has its start reported at once.
                let idle_worker = idle.is_some() && shared.keys.all_idle(shared.config.slots);
                idle = None;
                picks += 1;
                match delivery::run(&shared, msg, idle_worker).await {
                    Ran::Handled => {}
                    Ran::Rendered { report, long } => {
                        // Before the slot takes another task (which does not wait).
                        reporting.wait().await;
                        reporting.next = Some(report);
                        // A short attempt's report overlaps the next pull.
                        if !long {
                            reporting.send();
                        }
                    }
                    // Let the others take it before this slot pulls again.
                    Ran::HandedBack => tokio::time::sleep(shared.config.idle_poll).await,
                }
            }
            None => {
                // Idle: wait for a key task, a doorbell or the idle poll, and for a burst
                // worker also for a backlog that lasts.
                if idle.is_none() {
                    idle = Some(shared.keys.idle());
                }
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break 'slot,
                        msg = shared.keys.take() => {
                            handed = msg;
                            break;
                        }
                        rung = bell.recv() => {
                            hint = rung.ok();
                            // Key tasks were queued, and may be on their way to this
                            // worker's wait: they go before the rest.
                            if let Some(queue) = hint.as_ref().filter(|q| q.key)
                                && shared.keys.waits_on(queue)
                            {
                                tokio::select! {
                                    msg = shared.keys.take() => handed = msg,
                                    () = tokio::time::sleep(KEY_GRACE) => {}
                                }
                            }
                        }
                        () = tokio::time::sleep(shared.config.idle_poll) => {}
                    }
                    let Some(threshold) = shared.config.burst else {
                        break;
                    };
                    if pull::backlog(&shared.consumers, threshold).await {
                        // The farm is behind now; pull only if it still is a moment later,
                        // so the farm's own idle workers take new work first.
                        tokio::select! {
                            () = shutdown.cancelled() => break 'slot,
                            () = tokio::time::sleep(shared.config.burst_defer) => break,
                        }
                    }
                }
            }
        }
    }
    reporting.send();
    reporting.wait().await;
    tracing::debug!(slot, "slot stopped");
}

/// A slot's reports: the one waiting to be sent and the one being sent.
#[derive(Default)]
struct Reporting {
    /// Rendered last, not sent yet.
    next: Option<render::BoxFuture<'static, ()>>,
    /// Being sent.
    sending: Option<tokio::task::JoinHandle<()>>,
}

impl Reporting {
    /// Starts sending the waiting report (the one before it was waited for).
    fn send(&mut self) {
        if let Some(report) = self.next.take() {
            debug_assert!(self.sending.is_none(), "two reports of a slot in flight");
            self.sending = Some(tokio::spawn(report));
        }
    }

    /// Waits for the report being sent.
    async fn wait(&mut self) {
        if let Some(sending) = self.sending.take() {
            let _ = sending.await;
        }
    }
}
