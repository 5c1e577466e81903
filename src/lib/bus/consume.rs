//! Reading the planner's and the collector's durable consumers: [`Puller`] takes messages
//! one at a time in bounded pulls that expire, and [`serve`] is the one loop that hands
//! each message to its [`Handler`] and acknowledges it only after the handler has stored
//! every effect — or asks for it again after a delay that doubles up to a minute when the
//! handler failed. A message that fails [`GIVE_UP_AFTER`] times (about an hour) is given
//! up: its handler ends it with a reason ([`Handler::give_up`]: a rejected job, a failed
//! task) and it is acknowledged, so that no message loops forever.
//!
//! That is what makes every role safe to SIGKILL at any instant: a message whose effects
//! are not all stored is redelivered, and every handler is idempotent.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use tokio_util::sync::CancellationToken;

/// A message whose handling failed this many times is given up (with the delays of
/// [`after_failure`], about an hour after its first delivery).
pub const GIVE_UP_AFTER: u64 = 60;

/// What to do with a message whose handling failed on its `delivered`-th delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Deliver it again after this delay (1 s, doubling to at most a minute).
    Retry(Duration),
    /// End it with a reason and acknowledge it.
    GiveUp,
}

/// The policy for a failed message: retried with a growing delay, so that an outage of a
/// few minutes costs a few tries, and given up after [`GIVE_UP_AFTER`] deliveries.
pub fn after_failure(delivered: u64) -> AfterFailure {
    if delivered >= GIVE_UP_AFTER {
        return AfterFailure::GiveUp;
    }
    let exponent = delivered.saturating_sub(1).min(6) as u32;
    AfterFailure::Retry(Duration::from_secs(2u64.pow(exponent).min(60)))
}

/// What a service does with one message of its consumer.
pub trait Handler {
    /// Handles `msg`: `Ok` once every effect is stored (the message is then acknowledged);
    /// `Err` to have it delivered again. A message that can never be handled (malformed)
    /// is logged and answered `Ok`: it must not come back forever.
    fn handle(
        &mut self,
        msg: &jetstream::Message,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Handles several messages, as many as were at hand (at most [`BATCH`]): one result
    /// per message, in order, each meaning what [`handle`](Self::handle)'s does. By
    /// default one after the other; a handler that can share work between messages (one
    /// write for many) does so here.
    fn handle_batch(
        &mut self,
        msgs: &[&jetstream::Message],
    ) -> impl Future<Output = Vec<anyhow::Result<()>>> + Send
    where
        Self: Send,
    {
        async move {
            let mut results = Vec::with_capacity(msgs.len());
            for msg in msgs {
                results.push(self.handle(msg).await);
            }
            results
        }
    }

    /// Ends `msg`, whose handling failed [`GIVE_UP_AFTER`] times with `error` last, with a
    /// reason its users see (`Ok`: it is then acknowledged). By default it is logged.
    fn give_up(
        &mut self,
        msg: &jetstream::Message,
        error: &anyhow::Error,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        tracing::error!(
            subject = %msg.subject,
            error = format!("{error:#}"),
            "giving up on a message after {GIVE_UP_AFTER} failed deliveries"
        );
        async { Ok(()) }
    }
}

/// A handler's answer for a message it took over: it is neither acknowledged nor asked
/// for again here, because a task of the handler's holds it (sending progress while it
/// works) and answers it when done. Should that task's process die, the message comes
/// back after the ack deadline, like any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("taken over by a task of its handler")]
pub struct Deferred;

/// Most messages handed to a handler at once.
pub const BATCH: usize = 64;

/// Hands every message of `puller` to `handler` until `shutdown`, in batches of those at
/// hand; the messages in hand are finished first. `what` names the messages in logs.
pub async fn serve(
    puller: &mut Puller,
    shutdown: &CancellationToken,
    what: &str,
    handler: &mut (impl Handler + Send),
) {
    loop {
        let msgs = puller.next_batch(shutdown, BATCH).await;
        if msgs.is_empty() {
            return;
        }
        // A message delivered this often without an answer took its handler down each
        // time (a crash, an out-of-memory kill): it is given up before it can do so again.
        let delivered =
            |msg: &jetstream::Message| msg.info().map_or(1, |i| i.delivered.max(1) as u64);
        let fresh: Vec<&jetstream::Message> = msgs
            .iter()
            .filter(|m| delivered(m) <= GIVE_UP_AFTER)
            .collect();
        let mut handled = handler.handle_batch(&fresh).await.into_iter();
        let mut acks = Vec::new();
        for msg in &msgs {
            let result = if delivered(msg) > GIVE_UP_AFTER {
                Err(anyhow::anyhow!(
                    "delivered {} times without being handled (did a role crash on it?)",
                    delivered(msg)
                ))
            } else {
                handled
                    .next()
                    .unwrap_or_else(|| Err(anyhow::anyhow!("the handler gave no result")))
            };
            match result {
                Ok(()) => acks.push(msg),
                Err(e) if e.is::<Deferred>() => {}
                Err(e) => failed(msg, e, delivered(msg), what, handler).await,
            }
        }
        // Acknowledged without waiting for the server to confirm: an acknowledgement lost
        // on the way only brings its message back, and every handler is idempotent.
        let sent = acks.iter().map(|msg| msg.ack());
        for result in futures::future::join_all(sent).await {
            if let Err(e) = result {
                tracing::warn!(error = %e, "acknowledging {what}");
            }
        }
    }
}

/// Answers a message whose handling failed: delivered again later, or given up.
async fn failed(
    msg: &jetstream::Message,
    e: anyhow::Error,
    delivered: u64,
    what: &str,
    handler: &mut impl Handler,
) {
    let delay = match after_failure(delivered) {
        AfterFailure::Retry(delay) => delay,
        AfterFailure::GiveUp => match handler.give_up(msg, &e).await {
            Ok(()) => {
                if let Err(e) = msg.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %e, "terminating {what}");
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "giving up on {what}");
                Duration::from_secs(60)
            }
        },
    };
    tracing::error!(
        subject = %msg.subject,
        delivered,
        error = format!("{e:#}"),
        "handling {what} failed; it will be delivered again in {delay:?}"
    );
    if let Err(e) = msg.ack_with(AckKind::Nak(Some(delay))).await {
        tracing::debug!(error = %e, "asking for {what} again");
    }
}

/// Reads a durable pull consumer message by message, in bounded pulls that expire within
/// [`PULL_EXPIRES`], so that a service loop stops within about a second, never waits on a
/// dead pull, and leaves no message to a pull nobody reads.
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

    /// The next message, waiting for it, then those already at hand, up to `max` in all;
    /// empty once `shutdown` is cancelled and the open pull has ended (see [`next`]).
    ///
    /// [`next`]: Puller::next
    pub async fn next_batch(
        &mut self,
        shutdown: &CancellationToken,
        max: usize,
    ) -> Vec<jetstream::Message> {
        use futures::{FutureExt as _, StreamExt as _};
        let Some(first) = self.next(shutdown).await else {
            return Vec::new();
        };
        let mut msgs = vec![first];
        while msgs.len() < max {
            let Some(batch) = &mut self.batch else {
                break;
            };
            match batch.next().now_or_never() {
                Some(Some(Ok(msg))) => msgs.push(msg),
                Some(Some(Err(_)) | None) => {
                    self.batch = None;
                    break;
                }
                None => break,
            }
        }
        msgs
    }

    /// The next message; `None` once `shutdown` is cancelled and the open pull has ended.
    ///
    /// A stopped puller finishes its open pull rather than drop it: the server would go on
    /// handing that pull messages until it expires, and a message handed to a pull nobody
    /// reads waits for the ack deadline before anyone else gets it. So what arrives until
    /// the pull ends (at most [`PULL_EXPIRES`]) is still returned, and handled.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<jetstream::Message> {
        use futures::StreamExt;
        loop {
            if shutdown.is_cancelled() {
                let batch = self.batch.as_mut()?;
                let last = tokio::time::timeout(PULL_EXPIRES * 3, batch.next()).await;
                if let Ok(Some(Ok(msg))) = last {
                    return Some(msg);
                }
                self.batch = None;
                return None;
            }
            let batch = match &mut self.batch {
                Some(batch) => batch,
                None => {
                    let pull = self
                        .consumer
                        .batch()
                        .max_messages(self.batch_size)
                        .expires(PULL_EXPIRES)
                        .messages();
                    let result = tokio::select! {
                        () = shutdown.cancelled() => return None,
                        result = tokio::time::timeout(PULL_EXPIRES * 3, pull) => result,
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
                () = shutdown.cancelled() => continue,
                next = tokio::time::timeout(PULL_EXPIRES * 3, batch.next()) => next,
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

/// How long a pull waits on the server for messages before it ends (and another is made).
pub const PULL_EXPIRES: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_messages_wait_longer_each_time_and_are_given_up_after_an_hour() {
        let secs = |d| match after_failure(d) {
            AfterFailure::Retry(delay) => delay.as_secs(),
            AfterFailure::GiveUp => u64::MAX,
        };
        for (delivered, expected) in [(0, 1), (1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (59, 60)] {
            assert_eq!(secs(delivered), expected, "delivery {delivered}");
        }
        assert_eq!(after_failure(GIVE_UP_AFTER), AfterFailure::GiveUp);
        let waited: u64 = (1..GIVE_UP_AFTER).map(secs).sum();
        assert!(
            (3000..4000).contains(&waited),
            "{waited} s before giving up"
        );
    }
}
