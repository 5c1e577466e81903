//! What happens after an attempt: its outcome decides, in one pure and tested function
//! ([`disposition`]), what JetStream is told; `finish` publishes the attempt's event and
//! then acks, naks, terminates or hands the delivery back.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};

use super::Shared;
use crate::bus::protocol::{self, Event, EventKind, TaskMessage};
use crate::bus::publish;
use crate::core::job::RendererKind;
use crate::store::keys;

/// What the worker tells JetStream about one delivery of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done; never redeliver.
    Ack,
    /// Transient failure; redeliver after `delay` (counts as an attempt).
    Retry {
        /// Wait before the next attempt.
        delay: Duration,
    },
    /// Hand back for immediate redelivery to another worker (shutdown).
    HandBack,
    /// Permanent failure; publish the failure event and stop redelivery.
    Reject,
}

/// How an attempt ended, as far as the disposition cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Outputs uploaded.
    Succeeded,
    /// The attempt failed (renderer error, timeout); another may succeed.
    Failed,
    /// The input can never render.
    Invalid,
    /// The worker is shutting down.
    ShuttingDown,
    /// The job was canceled.
    Canceled,
}

/// The delay before retry `attempt + 1`: 1 s, 2 s, 4 s … capped at 60 s.
pub fn retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// The disposition of attempt `attempt` (1-based) of a task allowed `max_attempts`.
pub fn disposition(outcome: Outcome, attempt: u32, max_attempts: u32) -> Disposition {
    match outcome {
        Outcome::Succeeded | Outcome::Canceled => Disposition::Ack,
        Outcome::Invalid => Disposition::Reject,
        Outcome::ShuttingDown => Disposition::HandBack,
        Outcome::Failed if attempt < max_attempts => Disposition::Retry {
            delay: retry_delay(attempt),
        },
        Outcome::Failed => Disposition::Reject,
    }
}

/// What a worker reports about one delivery, and how it disposes of it.
pub(super) struct Report {
    /// The attempt it is about.
    pub(super) attempt: u32,
    /// What JetStream is told.
    pub(super) disposition: Disposition,
    /// The event published first, if any.
    pub(super) event: Option<EventKind>,
    /// Why it failed, for people.
    pub(super) message: Option<String>,
    /// The key of the attempt's log.
    pub(super) log: Option<String>,
    /// The keys of the attempt's outputs.
    pub(super) outputs: Vec<String>,
    /// How long each frame took to render.
    pub(super) frame_ms: Option<u64>,
    /// When the attempt started, if `task.started` was not published: its `task.done`
    /// says so instead.
    pub(super) started_ms: Option<u64>,
}

impl Report {
    /// A task failed for good without running: `message` says why.
    pub(super) fn failed(attempt: u32, message: String) -> Report {
        Report {
            attempt,
            disposition: Disposition::Reject,
            event: Some(EventKind::TaskFailed),
            message: Some(message),
            log: None,
            outputs: Vec::new(),
            frame_ms: None,
            started_ms: None,
        }
    }
}

/// Publishes the report's event, then disposes of the delivery. Without a stored event the
/// collector could not learn the outcome, so a failed publish leaves the task to be
/// redelivered instead.
/// Makes this worker's slots look at `msg`'s queue again once `delay` is over: the task
/// comes back then, with no doorbell to say so.
fn recheck_after(shared: &Shared, msg: &jetstream::Message, delay: Duration) {
    let Some((class, priority, renderer)) = protocol::parse_task_queue(&msg.subject) else {
        return;
    };
    let queue = super::pick::Queue {
        class,
        priority,
        renderer,
        key: protocol::is_key_task_subject(&msg.subject),
    };
    let empty = shared.empty.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        empty.rung(&queue);
    });
}

/// Publishes `event` until it is stored, for about half a minute: the events stream of a
/// cluster answers nothing while it elects a new leader (a server died), and an attempt's
/// work is not thrown away for that. Each try after the first tells JetStream that the
/// delivery is still in hand, so the ack deadline does not run out meanwhile. Events are
/// idempotent where they land: a second copy of one that was stored after all changes
/// nothing.
async fn publish_until_stored(
    shared: &Shared,
    msg: &jetstream::Message,
    event: &Event,
) -> anyhow::Result<()> {
    use backon::Retryable as _;
    (|| async {
        let _ = msg.ack_with(AckKind::Progress).await;
        publish::event(&shared.deps.js, event).await
    })
    .retry(
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(Duration::from_secs(4))
            .with_max_times(10),
    )
    .notify(|e, after| {
        tracing::warn!(
            error = format!("{e:#}"),
            ?after,
            "publishing {} again",
            event.kind.as_str()
        );
    })
    .await
}

pub(super) async fn finish(
    shared: &Shared,
    msg: &jetstream::Message,
    task: &TaskMessage,
    report: Report,
) {
    if let Some(kind) = report.event {
        // One event per task (each of a bundle's, with its own outputs and log), then the
        // one disposal of the message.
        let mut pending = Vec::new();
        for mut event in Event::tasks(kind, task, report.attempt, &shared.config.id) {
            let id = event.task.clone().unwrap_or_else(|| task.task.clone());
            let folder = keys::attempt_output(&task.job, &id, report.attempt, "");
            event.outputs = match task.bundle.is_empty() {
                true => report.outputs.clone(),
                false => report
                    .outputs
                    .iter()
                    .filter(|k| k.starts_with(&folder))
                    .cloned()
                    .collect(),
            };
            event.log = report
                .log
                .as_ref()
                .map(|_| keys::attempt_log(&task.job, &id, report.attempt));
            event.message = report.message.clone();
            event.frame_ms = report.frame_ms.filter(|_| kind == EventKind::TaskDone);
            event.started_ms = report.started_ms.filter(|_| kind == EventKind::TaskDone);
            if kind == EventKind::TaskDone {
                event.renderer_version = Some(renderer_version(shared, task.renderer));
            }
            pending.push((
                publish::event_pending(&shared.deps.js, &event, None).await,
                event,
            ));
        }
        for (sent, event) in pending {
            let stored = match async { sent?.confirmed().await }.await {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "publishing {}; trying again", kind.as_str());
                    publish_until_stored(shared, msg, &event).await
                }
            };
            if let Err(e) = stored {
                tracing::error!(error = %e, "publishing {}; the task will be redelivered", kind.as_str());
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                return;
            }
        }
    }
    if let Some(kind) = report.event {
        let metrics = &crate::metrics::METRICS;
        let family = match kind {
            EventKind::TaskDone => Some(&metrics.done),
            EventKind::TaskRetry => Some(&metrics.retried),
            EventKind::TaskFailed => Some(&metrics.failed),
            _ => None,
        };
        if let Some(family) = family {
            let tasks = task.bundle.len().max(1);
            family
                .get_or_create(&super::delivery::queue_labels(msg, task))
                .inc_by(tasks as u64);
        }
    }
    let ack = match report.disposition {
        Disposition::Ack => msg.double_ack().await.map_err(|e| e.to_string()),
        Disposition::Retry { delay } => {
            recheck_after(shared, msg, delay);
            msg.ack_with(AckKind::Nak(Some(delay)))
                .await
                .map_err(|e| e.to_string())
        }
        Disposition::HandBack => {
            hand_back(shared, msg, task, report.attempt, report.event.is_none())
                .await
                .map_err(|e| format!("{e:#}"))
        }
        Disposition::Reject => msg.ack_with(AckKind::Term).await.map_err(|e| e.to_string()),
    };
    match (&ack, report.disposition) {
        (Err(e), _) => tracing::warn!(error = %e, "disposing of the task"),
        (Ok(()), Disposition::Ack) => tracing::info!("task done"),
        (Ok(()), other) => tracing::warn!(
            ?other,
            message = report.message.as_deref().unwrap_or(""),
            "task not done"
        ),
    }
}

/// Hands a task back for immediate redelivery without spending its attempt budget: the
/// task is republished, then the delivery is terminated (a nak would count as a delivery,
/// and attempts are counted from deliveries). An attempt interrupted by shutdown keeps its
/// number (its log stays its own) and the budget grows by one; a task a blocklisted worker
/// never started keeps its count and notes the hand-back. Should the worker die in between,
/// the task exists twice, and the first completion wins.
async fn hand_back(
    shared: &Shared,
    msg: &jetstream::Message,
    task: &TaskMessage,
    attempt: u32,
    blocklisted: bool,
) -> anyhow::Result<()> {
    let mut next = task.clone();
    if blocklisted {
        next.attempts_before = attempt - 1;
        next.handbacks += 1;
    } else {
        next.attempts_before = attempt;
        next.max_attempts += 1;
    }
    publish::hand_back(&shared.deps.js, &msg.subject, &next).await?;
    msg.ack_with(AckKind::Term)
        .await
        .map_err(|e| anyhow::anyhow!("terminating the handed-back delivery: {e}"))?;
    if let Some((class, priority)) = protocol::parse_task_subject(&msg.subject) {
        let key = protocol::is_key_task_subject(&msg.subject);
        publish::doorbell(&shared.deps.client, &class, priority, task.renderer, key).await;
    }
    Ok(())
}

/// `renderer` and its version on this worker: an external program's as it reported it,
/// Tessera's own for the renderers built in; a `command` job's program is its own.
fn renderer_version(shared: &Shared, renderer: RendererKind) -> String {
    match (shared.config.programs.get(&renderer), renderer) {
        (Some(program), _) => format!("{} {}", renderer.as_str(), program.version),
        (None, RendererKind::Command) => renderer.as_str().to_string(),
        (None, _) => format!("{} {}", renderer.as_str(), env!("CARGO_PKG_VERSION")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions() {
        let cases = [
            (Outcome::Succeeded, 1, 3, Disposition::Ack),
            (Outcome::Canceled, 1, 3, Disposition::Ack),
            (
                Outcome::Failed,
                1,
                3,
                Disposition::Retry {
                    delay: Duration::from_secs(1),
                },
            ),
            (
                Outcome::Failed,
                2,
                3,
                Disposition::Retry {
                    delay: Duration::from_secs(2),
                },
            ),
            (Outcome::Failed, 3, 3, Disposition::Reject),
            (Outcome::Failed, 1, 1, Disposition::Reject),
            (Outcome::Invalid, 1, 3, Disposition::Reject),
            (Outcome::ShuttingDown, 3, 3, Disposition::HandBack),
        ];
        for (outcome, attempt, max, expect) in cases {
            assert_eq!(
                disposition(outcome, attempt, max),
                expect,
                "{outcome:?} {attempt}/{max}"
            );
        }
    }

    #[test]
    fn retry_delay_grows_and_caps() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(4));
        assert_eq!(retry_delay(10), Duration::from_secs(60));
    }
}
