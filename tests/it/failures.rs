//! Failures with real processes: killed workers, poison tasks, tasks JetStream gives up
//! on, a restarted server, a killed collector, duplicate completions, a parked pull, a
//! frame still being assembled when the last task ends.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tessera::bus::protocol::{Event, EventKind};
use tessera::bus::streams::{ADVISORIES_STREAM, TASKS_STREAM};
use tessera::core::job::JobId;
use tessera::store::keys;

use crate::support::{
    Farm, PATIENCE, attempt_logs, command_farm, command_job, events_of, eventually, output_text,
    stream_messages, tasks_done, wait_event, wait_events, worker_role,
};

/// The task consumers' ack deadline (the default of `streams/consumer-tasks.json`): the
/// backstop when no collector watches the workers' leases.
const ACK_WAIT_MS: u64 = 30_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_render_loses_nothing_and_its_task_moves_within_the_ack_deadline() {
    let (mut farm, deps) = command_farm(3, &[]).await;
    let script = "sleep 3; echo {frame} > {output}";
    let job = command_job(&farm, "killed", "1-2", script, "");
    let first = wait_event(&farm, &deps.js, &job, EventKind::TaskStarted).await;
    let victim = first.worker.clone().unwrap();
    farm.roles[worker_role(&victim)].kill();
    let killed_at = now_ms();

    wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    let events = events_of(&farm, &job).await;
    let moved = events
        .iter()
        .find(|e| {
            e.kind == EventKind::TaskStarted
                && e.index == first.index
                && e.worker.as_deref() != Some(&victim)
        })
        .unwrap_or_else(|| {
            panic!(
                "the task never started elsewhere: {events:#?}\n{}",
                farm.logs()
            )
        });
    // The lease expired and a collector handed the task back, long before the deadline.
    let failover = moved.time_ms.saturating_sub(killed_at);
    assert!(
        failover < ACK_WAIT_MS / 3,
        "redelivered {failover} ms after the kill, with an ack deadline of {ACK_WAIT_MS} ms"
    );
    let handed_back = events.iter().any(|e| {
        e.kind == EventKind::TaskRetry
            && e.worker.as_deref() == Some(&victim)
            && e.message.as_deref().is_some_and(|m| m.contains("lease"))
    });
    assert!(
        handed_back,
        "no task.retry for the expired lease: {events:#?}"
    );
    assert_eq!(moved.attempt, Some(2));
    let mut done: BTreeMap<u32, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == EventKind::TaskDone) {
        *done.entry(e.index.unwrap()).or_default() += 1;
    }
    assert_eq!(
        done,
        BTreeMap::from([(0, 1), (1, 1)]),
        "each task completed exactly once"
    );
    for frame in 1..=2 {
        assert_eq!(output_text(&farm, &job, frame).await, format!("{frame}\n"));
    }
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_task_fails_after_max_attempts_with_a_log_each_and_the_rest_completes() {
    let (farm, deps) = command_farm(1, &[]).await;
    let script = "echo rendering {frame}; test {frame} != 2 && echo {frame} > {output}";
    let retry = "max_attempts = 3\non_failure = \"continue\"";
    let job = command_job(&farm, "poison", "1-4", script, retry);
    let failed = wait_event(&farm, &deps.js, &job, EventKind::JobFailed).await;
    assert!(failed.message.unwrap().contains("1 of 4 tasks failed"));

    let events = events_of(&farm, &job).await;
    let task_failed: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskFailed)
        .collect();
    assert_eq!(task_failed.len(), 1);
    assert_eq!(task_failed[0].index, Some(1));
    assert_eq!(task_failed[0].attempt, Some(3));
    let retries = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskRetry && e.index == Some(1))
        .count();
    assert_eq!(retries, 2);

    let logs = attempt_logs(&deps, &job, "f0002").await;
    assert_eq!(logs.len(), 3, "{logs:?}");
    for (n, key) in logs.iter().enumerate() {
        assert!(key.ends_with(&format!("attempt-{}.log", n + 1)));
        let text = String::from_utf8(deps.store.get(key).await.unwrap().to_vec()).unwrap();
        assert!(
            text.contains("rendering 2") && text.contains("exited with code 1"),
            "{text}"
        );
    }
    assert_eq!(
        stream_messages(&deps.js, TASKS_STREAM).await,
        0,
        "nothing of it is left in the stream"
    );
    for frame in [1, 3, 4] {
        assert_eq!(output_text(&farm, &job, frame).await, format!("{frame}\n"));
    }
    let status = farm.status(&job);
    assert_eq!(
        (
            status["tasks"]["done"].as_u64(),
            status["tasks"]["failed"].as_u64()
        ),
        (Some(3), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_on_the_last_delivery_fails_the_task_through_the_advisory() {
    let (mut farm, deps) = command_farm(2, &["--max-deliver", "2"]).await;
    // Attempt 1 fails at once; attempt 2 (JetStream's last delivery) hangs and its worker dies.
    let script = "if [ {attempt} = 1 ]; then exit 1; fi; sleep 60";
    let retry = "max_attempts = 5";
    let job = command_job(&farm, "last-delivery", "1", script, retry);
    let events = wait_events(&farm, &deps.js, &job, |events| {
        events
            .iter()
            .any(|e| e.kind == EventKind::TaskStarted && e.attempt == Some(2))
    })
    .await;
    let second = events
        .iter()
        .find(|e| e.kind == EventKind::TaskStarted && e.attempt == Some(2))
        .unwrap();
    farm.roles[worker_role(second.worker.as_deref().unwrap())].kill();

    let failed = wait_event(&farm, &deps.js, &job, EventKind::TaskFailed).await;
    assert_eq!(failed.attempt, Some(2));
    assert!(
        failed.message.as_deref().unwrap().contains("gives up"),
        "{failed:?}"
    );
    wait_event(&farm, &deps.js, &job, EventKind::JobFailed).await;
    // The collector publishes the task's failure, then removes the task and acknowledges
    // the advisory: the job's end, which follows from the failure, can come first.
    for (stream, what) in [
        (TASKS_STREAM, "the message was removed"),
        (ADVISORIES_STREAM, "the advisory was handled"),
    ] {
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || format!("{what}: {stream} still holds a message"),
            async || (stream_messages(&deps.js, stream).await == 0).then_some(()),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_a_nats_server_restart_mid_job() {
    let (mut farm, deps) = command_farm(2, &[]).await;
    let script = "sleep 0.3; echo {frame} > {output}";
    let job = command_job(&farm, "restart", "1-12", script, "");
    tasks_done(&farm, &deps.js, &job, 3).await;
    drop(deps);
    farm.nats.restart();
    let deps = farm.deps().await;
    wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    for frame in 1..=12 {
        assert_eq!(output_text(&farm, &job, frame).await, format!("{frame}\n"));
    }
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_killed_mid_job_and_restarted_finishes_it_with_each_output_once() {
    let (mut farm, deps) = command_farm(2, &[]).await;
    let script = "sleep 0.2; echo {frame} > {output}";
    let job = command_job(&farm, "collector", "1-12", script, "");
    tasks_done(&farm, &deps.js, &job, 4).await;
    farm.roles[1].kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    farm.start("tessera-collector", &[]);
    wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    let outputs = deps
        .store
        .list(&keys::unversioned_output_prefix(
            &JobId::parse(&job).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(outputs.len(), 12);
    for frame in 1..=12 {
        assert_eq!(output_text(&farm, &job, frame).await, format!("{frame}\n"));
    }
    let events = events_of(&farm, &job).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == EventKind::JobDone)
            .count(),
        1
    );
    let status = farm.status(&job);
    assert_eq!(status["tasks"]["done"], 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_worker_completing_a_redelivered_task_changes_nothing() {
    let (mut farm, deps) = command_farm(1, &[]).await;
    let script = "sleep 6; echo attempt {attempt} > {output}";
    let job = command_job(&farm, "twice-done", "1", script, "");
    wait_event(&farm, &deps.js, &job, EventKind::TaskStarted).await;
    // Frozen: no progress acks, so JetStream redelivers to the next worker.
    farm.roles[worker_role("w0")].signal(libc::SIGSTOP);
    farm.start_worker(1, &["--allow-command"]);
    wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    assert_eq!(output_text(&farm, &job, 1).await, "attempt 2\n");

    // The slow worker wakes and reports attempt 1 as done too.
    farm.roles[worker_role("w0")].signal(libc::SIGCONT);
    let events = wait_events(&farm, &deps.js, &job, |e| {
        e.iter()
            .any(|e| e.kind == EventKind::TaskDone && e.attempt == Some(1))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await; // let the collector see it
    assert_eq!(
        output_text(&farm, &job, 1).await,
        "attempt 2\n",
        "the first result stands"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == EventKind::JobDone)
            .count(),
        1
    );
    let id = JobId::parse(&job).unwrap();
    let attempt1 = keys::attempt_output(
        &id,
        &tessera::core::plan::TaskId("f0001".into()),
        1,
        "frame_0001.png",
    );
    let late = deps.store.get(&attempt1).await.unwrap();
    assert_eq!(
        &late[..],
        b"attempt 1\n",
        "the late result kept to its own attempt folder"
    );
    let status = farm.status(&job);
    assert_eq!(
        (status["state"].as_str(), status["tasks"]["done"].as_u64()),
        (Some("done"), Some(1))
    );
}

/// A no-wait pull the server cannot serve (here: the consumer's ack-pending limit is
/// reached) is parked without an expiry; `pull_one` gives up on it after its timeout.
/// Left behind, such a request made servers before 2.10.14 lose the next redelivery and
/// send the message again as a first delivery one ack deadline later (nats-server #5305).
/// On the servers Tessera accepts, a nak'd task comes back after its delay as the second
/// delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_pull_does_not_swallow_the_next_redelivery() {
    use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
    let farm = Farm::new();
    let client = async_nats::connect(farm.nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js
        .create_stream(stream::Config {
            name: "PARKED".into(),
            subjects: vec!["parked.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .unwrap();
    let ack_wait = Duration::from_secs(60);
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("parked".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait,
            max_ack_pending: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    for task in ["a", "b"] {
        js.publish(format!("parked.{task}"), task.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let first = tessera::roles::worker::pull_one(&consumer, None)
        .await
        .unwrap()
        .message
        .unwrap();
    assert_eq!(first.subject.as_str(), "parked.a");
    // "b" is queued but cannot be delivered while "a" is pending: the server parks this pull.
    let parked = tessera::roles::worker::pull_one(&consumer, None)
        .await
        .unwrap();
    assert!(parked.message.is_none() && parked.parked, "{parked:?}");
    first
        .ack_with(AckKind::Nak(Some(Duration::from_millis(200))))
        .await
        .unwrap();
    // Nobody pulls while the delay runs out, as when every slot is busy or idle-waiting.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let started = std::time::Instant::now();
    let again = loop {
        assert!(
            started.elapsed() < ack_wait / 4,
            "the nak'd message was not redelivered within {:?} (ack deadline {ack_wait:?})",
            ack_wait / 4
        );
        if let Some(msg) = tessera::roles::worker::pull_one(&consumer, None)
            .await
            .unwrap()
            .message
        {
            break msg;
        }
    };
    assert_eq!(again.subject.as_str(), "parked.a");
    assert_eq!(
        again.info().unwrap().delivered,
        2,
        "counted as the second delivery"
    );
}

/// A task's slot turns done before its frame is assembled. While one frame cannot be
/// assembled yet (here its part is not in the store; in a farm, another collector or a
/// redelivered event is still at it), the last task finishing must not end the job: the
/// job is done only once every frame is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_reported_done_only_once_every_frame_is_stored() {
    use tessera::core::plan::TaskId;
    let farm = Farm::with_workers(0);
    let deps = farm.deps().await;
    // No worker runs it: the test plays the workers' part, publishing their events.
    let job = command_job(&farm, "assembling", "1-2", "true", "");
    wait_event(&farm, &deps.js, &job, EventKind::JobAccepted).await;
    let id = JobId::parse(&job).unwrap();
    let done = |frame: u32| {
        let mut event = Event::new(EventKind::TaskDone, &job);
        event.task = Some(TaskId(format!("f{frame:04}")));
        event.index = Some(frame - 1);
        event.attempt = Some(1);
        event.worker = Some("test".into());
        event
    };
    let part = |frame: u32| {
        let name = format!("frame_{frame:04}.png");
        keys::attempt_output(&id, &TaskId(format!("f{frame:04}")), 1, &name)
    };

    // Frame 1 is reported done before its part can be read.
    tessera::bus::publish::event(&deps.js, &done(1))
        .await
        .unwrap();
    deps.store.put(&part(2), "two\n".into()).await.unwrap();
    tessera::bus::publish::event(&deps.js, &done(2))
        .await
        .unwrap();
    let second = keys::unversioned_output(&id, "frame_0002.png");
    let stored = async || deps.store.exists(&second).await.unwrap().then_some(());
    let never = || format!("frame 2 was never assembled\n{}", farm.logs());
    eventually(PATIENCE, Duration::from_millis(50), never, stored).await;
    // Time for a premature end to show; then frame 1's part arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ended: Vec<_> = events_of(&farm, &job)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::JobDone)
        .collect();
    assert!(
        ended.is_empty(),
        "the job was reported done while frame 1 was missing: {ended:?}"
    );
    deps.store.put(&part(1), "one\n".into()).await.unwrap();
    let done = wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    assert_eq!(output_text(&farm, &job, 1).await, "one\n");
    assert_eq!(output_text(&farm, &job, 2).await, "two\n");
    assert_eq!(done.outputs.len(), 2, "{done:?}");
}

/// A worker frozen (SIGSTOP) past its lease loses its task to another worker at once;
/// resumed and left to finish, it corrupts nothing: the frame is stored once, from the
/// attempt the ledger took (the first `task.done`), and the job ends done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_frozen_past_its_lease_and_resumed_leaves_one_right_output_per_frame() {
    let (farm, deps) = command_farm(2, &[]).await;
    let script = "sleep 3; echo frame {frame} attempt {attempt} > {output}";
    let job = command_job(&farm, "frozen", "1-2", script, "");
    let first = wait_event(&farm, &deps.js, &job, EventKind::TaskStarted).await;
    let victim = first.worker.clone().unwrap();
    let frozen = worker_role(&victim);
    farm.roles[frozen].signal(libc::SIGSTOP);
    // Its lease runs out and its task starts again elsewhere, attempt 2.
    let moved = |e: &Event| {
        e.kind == EventKind::TaskStarted
            && e.index == first.index
            && e.worker.as_deref() != Some(&victim)
    };
    wait_events(&farm, &deps.js, &job, |events| events.iter().any(moved)).await;
    farm.roles[frozen].signal(libc::SIGCONT);
    wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    // Both attempts of the frozen task end with `task.done`; the first one counts.
    let done_twice = |events: &[Event]| {
        events
            .iter()
            .filter(|e| e.kind == EventKind::TaskDone && e.index == first.index)
            .count()
            == 2
    };
    let events = wait_events(&farm, &deps.js, &job, done_twice).await;
    let winner = events
        .iter()
        .find(|e| e.kind == EventKind::TaskDone && e.index == first.index)
        .unwrap();
    let frame = first.index.unwrap() + 1;
    assert_eq!(
        output_text(&farm, &job, frame).await,
        format!("frame {frame} attempt {}\n", winner.attempt.unwrap()),
        "the stored frame is not the one of the attempt the ledger took"
    );
    let id = JobId::parse(&job).unwrap();
    let stored = deps
        .store
        .list(&keys::unversioned_output_prefix(&id))
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "one output per frame: {stored:?}");
    let status = farm.status(&job);
    assert_eq!(status["state"], "done");
    assert_eq!(status["tasks"]["done"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_under_its_id_hands_back_at_once_what_its_last_run_held() {
    let mut farm = crate::sharing::one_worker_of(1).await;
    let deps = farm.deps().await;
    let job = "id = \"restarted\"\nrenderer = \"noop\"\n[frames]\nrange = \"1\"\n[settings]\nsleep_ms = 3000\n";
    farm.submit("restarted", job);
    let first = wait_event(&farm, &deps.js, "restarted", EventKind::TaskStarted).await;
    let victim = first.worker.clone().unwrap();
    let holding = || format!("{victim} never listed its delivery in its lease");
    let last = eventually(PATIENCE, Duration::from_millis(20), holding, async || {
        let live = tessera::bus::registry::live_workers(&deps.js).await.ok()?;
        live.into_iter()
            .find(|w| w.id == victim && !w.deliveries.is_empty())
    })
    .await;
    // Killed and started again under the same id before its lease runs out. A process
    // start can take longer than the lease's second on a loaded machine, so the test
    // keeps the dead run's lease alive until the new run has handed its task back.
    farm.roles[worker_role(&victim)].kill();
    let killed_at = now_ms();
    let lease = tessera::bus::registry::Entry::bind(&deps.js, &victim)
        .await
        .unwrap();
    let renewing = tokio::spawn(async move {
        loop {
            lease.renew(&last).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    farm.start_worker(0, &["--slots", "1"]);
    wait_event(&farm, &deps.js, "restarted", EventKind::TaskRetry).await;
    renewing.abort();

    wait_event(&farm, &deps.js, "restarted", EventKind::JobDone).await;
    let events = events_of(&farm, "restarted").await;
    let retry = events
        .iter()
        .find(|e| e.kind == EventKind::TaskRetry)
        .unwrap_or_else(|| panic!("no task.retry: {events:#?}"));
    let said = retry.message.as_deref().unwrap_or_default();
    assert!(
        said.contains(&format!("worker {victim} restarted")),
        "{retry:?}"
    );
    let again = events
        .iter()
        .find(|e| e.kind == EventKind::TaskStarted && e.attempt == Some(2))
        .unwrap_or_else(|| panic!("the task never started again: {events:#?}"));
    let moved = again.time_ms.saturating_sub(killed_at);
    assert!(
        moved < ACK_WAIT_MS / 3,
        "started again {moved} ms after the kill, with an ack deadline of {ACK_WAIT_MS} ms"
    );
    let done = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskDone)
        .count();
    assert_eq!(done, 1, "{events:#?}");
}
