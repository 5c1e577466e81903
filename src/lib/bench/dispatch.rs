//! Dispatch latency: from publishing a submission to the worker's `task.started` on an idle
//! farm, next to a raw JetStream publish to a waiting pull in the same run.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use futures::StreamExt as _;

use super::{BenchFarm, Samples, Summary, ms, print_against, raw_consumer, submit_json};
use crate::bus::protocol::{self, EventKind};

/// Submit-to-start latency on an idle farm: from publishing a submission to the worker's
/// `task.started` event, `runs` times, next to a raw JetStream publish-to-pull loop.
pub async fn dispatch(runs: usize) -> anyhow::Result<Summary> {
    let farm = BenchFarm::start(1).await?;
    let (client, deps) = (&farm.client, &farm.deps);

    let raw = raw_publish_to_pull(&deps.js, runs).await?;

    let mut samples = Vec::with_capacity(runs);
    let mut accepted = Vec::with_capacity(runs);
    for i in 0..runs {
        let id = format!("bench-{i}");
        let mut events = client.subscribe(protocol::job_events_filter(&id)).await?;
        let body =
            format!(r#"{{"id": "{id}", "renderer": "noop", "settings": {{"sleep_ms": 0}}}}"#);
        tokio::time::sleep(Duration::from_millis(20)).await; // idle again
        let t0 = Instant::now();
        submit_json(&deps.js, body).await?;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .context("no task.started within 10 s")?
                .context("subscription ended")?;
            match protocol::parse_event_kind(&msg.subject) {
                Some(EventKind::JobAccepted) => accepted.push(t0.elapsed()),
                Some(EventKind::TaskStarted) => {
                    samples.push(t0.elapsed());
                    break;
                }
                _ => {}
            }
        }
    }
    println!("dispatch: submit-to-start on an idle farm (1 worker, noop renderer)");
    let ours = Samples::new(samples);
    // Where the time goes: the planner announces a job once its tasks are queued.
    println!(
        "{}",
        Samples::new(accepted).line("  of which submit -> job.accepted")
    );
    let times = print_against(
        ("raw JetStream publish -> waiting pull", &raw),
        ("tessera submit -> task.started", &ours),
        "tessera / raw",
    );
    farm.stop().await;
    Ok(vec![format!(
        "(2) dispatch, submit -> task.started: median {:.2} ms, p99 {:.2} ms; raw publish -> waiting pull {:.2} ms; {times:.1}x (target <= 2x)",
        ms(ours.percentile(50.0)),
        ms(ours.percentile(99.0)),
        ms(raw.percentile(50.0)),
    )])
}

/// The raw baseline: a work-queue stream, one durable pull consumer with a pull waiting,
/// timed from publish to the message in hand.
async fn raw_publish_to_pull(js: &jetstream::Context, runs: usize) -> anyhow::Result<Samples> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: "BENCH_RAW".into(),
            subjects: vec!["bench.raw".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await?;
    let consumer = raw_consumer(&stream).await?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await?;
        tokio::time::sleep(Duration::from_millis(5)).await; // the pull is waiting
        let t0 = Instant::now();
        js.publish("bench.raw", "x".into()).await?.await?;
        let msg = batch
            .next()
            .await
            .context("no message")?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        samples.push(t0.elapsed());
        msg.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    js.delete_stream("BENCH_RAW").await?;
    Ok(Samples::new(samples))
}
