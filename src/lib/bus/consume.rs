//! Reading the planner's and the collector's durable consumers: [`Puller`] takes messages
//! one at a time in bounded pulls that expire, and [`serve`] is the one loop that hands
//! each message to its [`Handler`] and acknowledges it only after the handler has stored
//! every effect — or asks for it again a second later when the handler failed.
//!
//! That is what makes every role safe to SIGKILL at any instant: a message whose effects
//! are not all stored is redelivered, and every handler is idempotent.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use tokio_util::sync::CancellationToken;

/// How long a message whose handling failed waits before it is delivered again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a service does with one message of its consumer.
pub trait Handler {
    /// Handles `msg`: `Ok` once every effect is stored (the message is then acknowledged);
    /// `Err` to have it delivered again. A message that can never be handled (malformed)
    /// is logged and answered `Ok`: it must not come back forever.
    fn handle(
        &mut self,
        msg: &jetstream::Message,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Hands every message of `puller` to `handler` until `shutdown`; the message in hand is
/// finished first. `what` names the messages in logs.
pub async fn serve(
    puller: &mut Puller,
    shutdown: &CancellationToken,
    what: &str,
    handler: &mut impl Handler,
) {
    while let Some(msg) = puller.next(shutdown).await {
        match handler.handle(&msg).await {
            Ok(()) => {
                if let Err(e) = msg.double_ack().await {
                    tracing::warn!(error = %e, "acknowledging {what}");
                }
            }
            Err(e) => {
                tracing::error!(
                    subject = %msg.subject,
                    error = format!("{e:#}"),
                    "handling {what} failed; it will be delivered again"
                );
                if let Err(e) = msg.ack_with(AckKind::Nak(Some(RETRY_AFTER))).await {
                    tracing::debug!(error = %e, "asking for {what} again");
                }
            }
        }
    }
}

/// Reads a durable pull consumer message by message, in bounded pulls that expire, so that
/// a service loop can stop between any two messages and never waits on a dead pull.
pub struct Puller {
    consumer: consumer::PullConsumer,
    batch_size: usize,
    batch: Option<consumer::pull::Batch>,
}

impl Puller {
    /// Pulls up to `batch_size` messages at a time from `consumer`.
    pub fn new(consumer: consumer::PullConsumer, batch_size: usize) -> Puller {
        Puller {
            consumer,
            batch_size,
            batch: None,
        }
    }

    /// The next message; `None` once `shutdown` is cancelled.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<jetstream::Message> {
        use futures::StreamExt;
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            let batch = match &mut self.batch {
                Some(batch) => batch,
                None => {
                    let pull = self
                        .consumer
                        .batch()
                        .max_messages(self.batch_size)
                        .expires(Duration::from_secs(5))
                        .messages();
                    let result = tokio::select! {
                        () = shutdown.cancelled() => return None,
                        result = tokio::time::timeout(Duration::from_secs(7), pull) => result,
                    };
                    match result {
                        Ok(Ok(batch)) => self.batch.insert(batch),
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "pulling messages");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                        Err(_) => continue,
                    }
                }
            };
            let next = tokio::select! {
                () = shutdown.cancelled() => return None,
                next = tokio::time::timeout(Duration::from_secs(12), batch.next()) => next,
            };
            match next {
                Ok(Some(Ok(msg))) => return Some(msg),
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "pull ended");
                    self.batch = None;
                }
                Ok(None) | Err(_) => self.batch = None,
            }
        }
    }
}
