//! Collectors that scale out: the events stored by partition of the job id, the live
//! collectors dividing the partitions, a SIGKILLed collector's partitions taken over, and
//! a farm of the layout before partitions upgraded without losing an event.

use std::time::Duration;

use tessera::bus::protocol::{self, EventKind};
use tessera::bus::streams::EVENTS_STREAM;
use tessera::core::job::JobId;
use tessera::store::keys;

use crate::support::{
    Farm, PATIENCE, command_farm, command_job, events_of, eventually, output_text, tasks_done,
    wait_event,
};

/// Job ids whose events land in partitions of both parities: with two collectors, each
/// owns the partitions of one parity, so each of them has some of these jobs.
fn jobs_on_both_collectors() -> Vec<String> {
    let jobs: Vec<String> = (0..)
        .map(|i| format!("share-{i}"))
        .scan([0, 0], |seen, job| {
            let parity = protocol::event_partition(&job) as usize % 2;
            seen[parity] += 1;
            Some((seen[parity] <= 2).then_some(job))
        })
        .flatten()
        .take(4)
        .collect();
    let parities: std::collections::BTreeSet<u32> = jobs
        .iter()
        .map(|j| protocol::event_partition(j) % 2)
        .collect();
    assert_eq!(parities.len(), 2, "{jobs:?}");
    jobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_share_the_jobs_and_one_killed_hands_its_partitions_over() {
    let (mut farm, deps) = command_farm(2, &[]).await;
    let second = farm.start("tessera-collector", &[]);
    let script = "sleep 0.3; echo {frame} > {output}";
    let jobs: Vec<String> = jobs_on_both_collectors()
        .iter()
        .map(|id| command_job(&farm, id, "1-6", script, ""))
        .collect();
    for job in &jobs {
        tasks_done(&farm, &deps.js, job, 1).await;
    }
    // Whichever collector owned half of the partitions dies mid-job; the other takes
    // them over and every job ends, each frame stored once.
    farm.roles[second].kill();
    for job in &jobs {
        wait_event(&farm, &deps.js, job, EventKind::JobDone).await;
        let outputs = deps
            .store
            .list(&keys::unversioned_output_prefix(
                &JobId::parse(job).unwrap(),
            ))
            .await
            .unwrap();
        assert_eq!(outputs.len(), 6, "{job}: {outputs:?}");
        for frame in 1..=6 {
            assert_eq!(output_text(&farm, job, frame).await, format!("{frame}\n"));
        }
        let ends = events_of(&farm, job)
            .await
            .iter()
            .filter(|e| e.kind == EventKind::JobDone)
            .count();
        assert_eq!(ends, 1, "{job}");
        // The server stored the job's events in the partition Tessera computes.
        let stream = deps.js.get_stream(EVENTS_STREAM).await.unwrap();
        let stored = stream
            .get_last_raw_message_by_subject(&protocol::stored_event_subject(
                job,
                EventKind::JobDone,
            ))
            .await;
        assert!(stored.is_ok(), "{job}: {stored:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_before_partitions_are_handled_and_their_consumer_removed() {
    use async_nats::jetstream::{self, consumer, stream};
    let mut farm = Farm::new();
    // The layout before partitions: events stored as published, one collector consumer.
    let js = jetstream::new(async_nats::connect(farm.nats.url()).await.unwrap());
    let mut config: stream::Config =
        serde_json::from_str(include_str!("../../streams/TESSERA_EVENTS.json")).unwrap();
    config.subject_transform = None;
    let events = js.create_stream(config).await.unwrap();
    events
        .create_consumer(consumer::pull::Config {
            durable_name: Some("collector".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    for job in ["old-a", "old-b", "old-c"] {
        let event = protocol::Event::new(EventKind::JobAccepted, job);
        js.publish(event.subject(), protocol::encode(&event).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    farm.start("tessera-collector", &[]);
    let never = || "the old collector consumer was never removed".to_string();
    let removed = async || {
        let stream = js.get_stream(EVENTS_STREAM).await.ok()?;
        let gone = stream
            .get_consumer::<consumer::pull::Config>("collector")
            .await
            .is_err();
        gone.then_some(stream)
    };
    let mut stream = eventually(PATIENCE, Duration::from_millis(100), never, removed).await;
    // Nothing was lost on the way: the old events are still stored, and new ones are
    // stored by partition.
    assert_eq!(stream.info().await.unwrap().state.messages, 3);
    assert!(stream.cached_info().config.subject_transform.is_some());
}
