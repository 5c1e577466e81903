//! What a worker hears and says besides its tasks: doorbells (tasks were queued: wake an
//! idle slot), cancels (stop a job's renders), and its lease in the registry.

use std::sync::Arc;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::pick::Queue;
use crate::bus::protocol::{self, LEASE_RENEW, WorkerInfo};
use crate::bus::registry;
use crate::core::job::Class;

/// Passes the doorbells of `class` to the slots until `stop`.
pub(super) async fn doorbells(
    shared: Arc<Shared>,
    class: Class,
    mut bell: async_nats::Subscriber,
    stop: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            msg = bell.next() => match msg { Some(msg) => msg, None => break },
        };
        if let Some((priority, renderer, key)) = protocol::parse_doorbell_hint(&msg.payload) {
            let queue = Queue {
                class: class.clone(),
                priority,
                renderer,
                key,
            };
            shared.empty.rung(&queue);
            let _ = shared.doorbell.send(queue);
        }
    }
}

/// Stops the renders of every job canceled, until `stop`.
pub(super) async fn cancels(
    shared: Arc<Shared>,
    mut control: async_nats::Subscriber,
    stop: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            msg = control.next() => match msg { Some(msg) => msg, None => break },
        };
        if let Some(job) = protocol::parse_control_subject(msg.subject.as_str()) {
            shared.attempts.cancel_job(&job);
        }
    }
}

/// Forgets the failure counts of every job that ends (`job.done`, `job.failed`,
/// `job.canceled` events, heard as they are published), until `stop`.
pub(super) async fn job_ends(
    shared: Arc<Shared>,
    mut ends: futures::stream::SelectAll<async_nats::Subscriber>,
    stop: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            msg = ends.next() => match msg { Some(msg) => msg, None => break },
        };
        if let Some(job) = protocol::parse_event_job(msg.subject.as_str()) {
            shared.failures.forget(&job);
        }
    }
}

/// The worker's lease: its registry entry, renewed by [`heartbeat`] and at once whenever
/// a delivery starts (so that a worker killed right after taking a task is handed back),
/// at most once a [`LEASE_GAP`] while its slots keep changing.
pub(super) struct Lease {
    entry: registry::Entry,
    host: String,
    /// Renewals are written one at a time, so an older view never lands after a newer one.
    writing: tokio::sync::Mutex<()>,
}

impl Lease {
    /// The lease of worker `id`.
    pub(super) async fn bind(
        js: &async_nats::jetstream::Context,
        id: &str,
    ) -> anyhow::Result<Lease> {
        Ok(Lease {
            entry: registry::Entry::bind(js, id).await?,
            host: crate::config::hostname(),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// Hands back what a previous run of this worker (the same id) held, if its lease is
    /// still live: that run died a moment ago and its renders will not finish, so they
    /// run again now rather than after the ack deadline. Called before the first renewal.
    pub(super) async fn hand_back_previous(&self, shared: &Shared) {
        let id = &shared.config.id;
        let previous = match self.entry.previous().await {
            Ok(Some(previous)) => previous,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "reading this worker's last lease");
                return;
            }
        };
        if previous.started_ms == shared.started_ms || previous.deliveries.is_empty() {
            return;
        }
        tracing::warn!(
            worker = %id,
            tasks = previous.deliveries.len(),
            "a previous run of this worker left a live lease; handing back what it held (two workers must not share an id)"
        );
        let why = |d: &protocol::Delivery| {
            format!(
                "worker {id} restarted; attempt {} of its previous run handed back",
                d.attempt
            )
        };
        let deps = &shared.deps;
        let handed = registry::hand_back(&deps.client, &deps.js, id, &previous.deliveries, why);
        if let Err(e) = handed.await {
            tracing::warn!(
                error = format!("{e:#}"),
                "handing back a previous run's tasks"
            );
        }
    }

    /// Renews the lease with what the worker holds now.
    pub(super) async fn renew(&self, shared: &Shared) -> anyhow::Result<()> {
        let _one_at_a_time = self.writing.lock().await;
        let (running, progress) = shared.attempts.listing();
        let info = WorkerInfo {
            schema: protocol::SCHEMA,
            id: shared.config.id.clone(),
            host: self.host.clone(),
            classes: shared.config.classes.clone(),
            renderers: shared.config.renderers.clone(),
            versions: shared
                .config
                .programs
                .iter()
                .map(|(kind, program)| (*kind, program.version.clone()))
                .collect(),
            slots: shared.config.slots as u32,
            running,
            progress,
            deliveries: shared.attempts.deliveries(),
            blocklist: shared.failures.blocklist(),
            burst: shared.config.burst,
            bundles: true,
            speed: shared.config.speed,
            started_ms: shared.started_ms,
            heartbeat_ms: protocol::now_ms(),
        };
        self.entry.renew(&info).await
    }
}

/// The least time between two renewals that a change brings on: the starts and ends of a
/// busy worker's slots are folded into one write per gap instead of one write each (at a
/// thousand tasks a second the lease was half of the server's writes per task), while a
/// change on a worker that wrote nothing for a gap is written at once.
const LEASE_GAP: std::time::Duration = std::time::Duration::from_millis(50);

/// Renews this worker's lease every [`LEASE_RENEW`] and whenever an attempt starts or
/// ends (at most once a [`LEASE_GAP`], but at once for a start reported at once: the
/// lease lists a delivery by the time anyone hears it started), until `stop`; then gives
/// it up.
pub(super) async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let wrote = tokio::time::Instant::now();
        if let Err(e) = shared.lease.renew(&shared).await {
            tracing::warn!(error = format!("{e:#}"), "renewing the lease");
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(LEASE_RENEW) => continue,
            () = shared.lease_now.notified() => continue,
            () = shared.lease_changed.notified() => {}
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(wrote + LEASE_GAP) => {}
            () = shared.lease_now.notified() => {}
        }
    }
    shared.lease.entry.remove().await;
}
