//! What a worker hears and says besides its tasks: doorbells (tasks were queued: wake an
//! idle slot), cancels (stop a job's renders), and its heartbeat into the registry.

use std::sync::Arc;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::pick::Queue;
use crate::bus::protocol::{self, WorkerInfo};
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
        if let Some((priority, renderer)) = protocol::parse_doorbell_hint(&msg.payload) {
            let queue = Queue {
                class: class.clone(),
                priority,
                renderer,
            };
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

/// Keeps this worker's entry in the registry fresh until `stop`, then removes it.
pub(super) async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let entry = match registry::Entry::bind(&shared.deps.js, &shared.config.id).await {
        Ok(entry) => entry,
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "no worker registry; `tessera workers` will not list this worker"
            );
            return;
        }
    };
    let host = crate::config::hostname();
    loop {
        let info = WorkerInfo {
            schema: protocol::SCHEMA,
            id: shared.config.id.clone(),
            host: host.clone(),
            classes: shared.config.classes.clone(),
            renderers: shared.config.renderers.clone(),
            slots: shared.config.slots as u32,
            running: shared.attempts.listing(),
            blocklist: shared.failures.blocklist(),
            started_ms: shared.started_ms,
            heartbeat_ms: protocol::now_ms(),
        };
        if let Err(e) = entry.refresh(&info).await {
            tracing::warn!(error = format!("{e:#}"), "refreshing the registry entry");
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(protocol::HEARTBEAT) => {}
        }
    }
    entry.remove().await;
}
