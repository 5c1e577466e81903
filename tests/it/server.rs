//! The nats-server Tessera runs on: every role, and the CLI, refuses a server older than
//! the minimum with a message that names both versions.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{Farm, exits_within};

#[test]
fn every_role_and_the_cli_refuse_a_server_older_than_the_minimum() {
    let farm = Farm::on_old_server();
    let says_why = |what: &str, stderr: &str| {
        assert!(
            stderr.contains("2.11.11") && stderr.contains("2.12.0 or newer"),
            "{what} did not name both versions: {stderr}"
        );
    };
    for binary in ["tessera-planner", "tessera-collector", "tessera-worker"] {
        let mut child = farm
            .command(binary)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = exits_within(&mut child, Duration::from_secs(30));
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            status.is_some_and(|s| !s.success()),
            "{binary} kept running on an old server: {stderr}"
        );
        says_why(binary, &stderr);
    }
    let out = farm.cli(&["status", "some-job"]);
    assert!(!out.status.success());
    says_why("tessera status", &String::from_utf8_lossy(&out.stderr));
}

/// The layout is applied once: a farm that runs as it should is not rewritten at each
/// role's start, buckets created by an earlier Tessera (through async-nats'
/// `create_key_value`) count as they should be, and a bucket on a single server keeps
/// direct gets (there is no replica to lag).
#[tokio::test]
async fn the_layout_is_applied_once_and_buckets_made_as_async_nats_makes_them_are_kept() {
    use tessera::bus::streams::{self, Replicas};
    let farm = Farm::new();
    let client = async_nats::connect(farm.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    for config in streams::bucket_configs().unwrap() {
        js.create_key_value(config).await.unwrap();
    }
    let applied = streams::ensure(&js, Replicas::Auto, false).await.unwrap();
    assert_eq!(applied.len(), 5, "{applied:?}");
    assert!(
        applied.iter().all(|a| a.starts_with("created stream ")),
        "the buckets were rewritten: {applied:?}"
    );
    let again = streams::ensure(&js, Replicas::Auto, false).await.unwrap();
    assert_eq!(again, Vec::<String>::new());
    for config in streams::bucket_configs().unwrap() {
        let mut stream = js
            .get_stream(format!("KV_{}", config.bucket))
            .await
            .unwrap();
        assert!(stream.info().await.unwrap().config.allow_direct);
    }
    // Asked for one replica, as they are: still nothing to do.
    let once = streams::ensure(&js, Replicas::Exactly(1), false)
        .await
        .unwrap();
    assert_eq!(once, Vec::<String>::new());
}

/// A read of a job's history leaves no consumer behind: nats-server 2.15 allows a stream
/// 1,000 consumers, and one-pass readers left to expire (half a minute each) would reach
/// that under a dashboard, a script polling `tessera status`, or a long chaos run; past
/// it, no role could make one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_history_leaves_no_consumer_behind() {
    use tessera::bus::streams::EVENTS_STREAM;
    let farm = Farm::with_workers(1);
    let deps = farm.deps().await;
    let job = farm.submit("history", "id = \"history\"\nrenderer = \"noop\"\n");
    farm.wait_done(&job);
    let consumers = async || {
        let mut stream = deps.js.get_stream(EVENTS_STREAM).await.unwrap();
        stream.info().await.unwrap().state.consumer_count
    };
    let before = consumers().await;
    for _ in 0..30 {
        let events = tessera::bus::history::stored(
            &deps.js,
            tessera::bus::protocol::stored_job_events_filter(&job),
        )
        .await
        .unwrap();
        assert!(!events.is_empty());
    }
    crate::support::eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || "one-pass consumers of the events are left behind".into(),
        async || (consumers().await <= before).then_some(()),
    )
    .await;
}
