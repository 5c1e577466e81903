//! Farms of an older JetStream layout, brought to today's as roles start: task consumers
//! filtered before the renderer token are removed (their filters overlap today's on the
//! work queue), and the one collector consumer of the events before partitions is
//! narrowed to the old subjects, drained by a collector, then removed.

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};

use super::protocol;
use super::streams::EVENTS_STREAM;

/// Deletes task consumers of the layout before the renderer token (filtered on
/// `tessera.tasks.<class>.<priority>.>`), whose filters overlap today's on the work-queue
/// stream. Queued tasks stay in the stream. Returns whether any was removed.
pub(super) async fn remove_legacy_task_consumers(
    stream: &jetstream::stream::Stream,
) -> anyhow::Result<bool> {
    use futures::TryStreamExt as _;
    let consumers: Vec<consumer::Info> = stream
        .consumers()
        .try_collect()
        .await
        .context("listing task consumers")?;
    let mut removed = false;
    for info in consumers {
        let filter = &info.config.filter_subject;
        if protocol::is_legacy_task_filter(filter) {
            match stream.delete_consumer(&info.name).await {
                Ok(_) => {}
                // Another role removed it meanwhile.
                Err(e)
                    if matches!(e.kind(), jetstream::stream::ConsumerErrorKind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND) => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("removing the old task consumer {}", info.name));
                }
            }
            removed = true;
        }
    }
    Ok(removed)
}

/// The one durable consumer of every event of the layout before partitions (`collector`),
/// if it is still there, narrowed to the events stored under that layout: what it has not
/// delivered yet is handled before it is removed.
pub async fn legacy_collector_consumer(
    js: &jetstream::Context,
) -> anyhow::Result<Option<consumer::PullConsumer>> {
    let stream = js.get_stream(EVENTS_STREAM).await?;
    let Ok(existing) = stream
        .get_consumer::<consumer::pull::Config>(LEGACY_COLLECTOR)
        .await
    else {
        return Ok(None);
    };
    let filter = protocol::UNPARTITIONED_EVENTS.to_string();
    if existing.cached_info().config.filter_subject == filter {
        return Ok(Some(existing));
    }
    use consumer::FromConsumer as _;
    let current = existing.cached_info().config.clone();
    let config = consumer::pull::Config {
        filter_subject: filter,
        ..consumer::pull::Config::try_from_consumer_config(current)
            .map_err(|e| anyhow::anyhow!("the collector consumer's settings: {e}"))?
    };
    let narrowed = stream
        .update_consumer(config)
        .await
        .context("narrowing the collector consumer of the layout before partitions")?;
    Ok(Some(narrowed))
}

/// Removes the consumer of [`legacy_collector_consumer`] once it has delivered everything.
pub async fn remove_legacy_collector_consumer(js: &jetstream::Context) -> anyhow::Result<()> {
    js.get_stream(EVENTS_STREAM)
        .await?
        .delete_consumer(LEGACY_COLLECTOR)
        .await
        .context("removing the collector consumer of the layout before partitions")?;
    Ok(())
}

/// The collector consumer's name before events were partitioned.
const LEGACY_COLLECTOR: &str = "collector";
