//! Failures with real processes: killed workers, poison tasks, tasks JetStream gives up
//! on, a restarted server, a killed collector, duplicate completions, cancel.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tessera::bus::protocol::{Event, EventKind};
use tessera::bus::streams::{ADVISORIES_STREAM, TASKS_STREAM};
use tessera::core::job::JobId;
use tessera::store::keys;

use crate::support::{Farm, stream_messages, wait_event, wait_events};

/// The consumer's ack deadline under test (the default of `streams/consumer-tasks.json`).
const ACK_WAIT_MS: u64 = 5_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A command-renderer job: `script` runs under `sh -c` once per frame.
fn command_job(farm: &Farm, id: &str, frames: &str, script: &str, retry: &str) -> String {
    let toml = format!(
        "id = \"{id}\"\nrenderer = \"command\"\n[frames]\nrange = \"{frames}\"\n[retry]\n{retry}\n[settings]\ncommand = [\"sh\", \"-c\", {script:?}]\n"
    );
    farm.submit(id, &toml)
}

fn farm_with_command_workers(workers: usize, extra: &[&str]) -> Farm {
    let mut farm = Farm::with_workers(0);
    for i in 0..workers {
        let mut args = vec!["--allow-command"];
        args.extend(extra);
        farm.start_worker(i, &args);
    }
    farm
}

/// The role index of worker `w<i>` in a farm built by `farm_with_command_workers`.
fn worker_role(worker: &str) -> usize {
    2 + worker.trim_start_matches('w').parse::<usize>().unwrap()
}

async fn events(farm: &Farm, job: &str) -> Vec<Event> {
    tessera::roles::client::events(&farm.deps().await.js, job)
        .await
        .unwrap()
}

async fn output_text(farm: &Farm, job: &str, frame: u32) -> String {
    let key = keys::output(
        &JobId::parse(job).unwrap(),
        &format!("frame_{frame:04}.png"),
    );
    match farm.deps().await.store.get(&key).await {
        Ok(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
        Err(e) => {
            panic!("{key}: {e}\n{}", farm.logs())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_render_loses_nothing_and_its_task_moves_within_the_ack_deadline() {
    let mut farm = farm_with_command_workers(3, &[]);
    let deps = farm.deps().await;
    let job = command_job(
        &farm,
        "killed",
        "1-2",
        "sleep 3; echo {frame} > {output}",
        "",
    );
    let first = wait_event(&farm, &deps.js, &job, EventKind::TaskStarted).await;
    let victim = first.worker.clone().unwrap();
    farm.roles[worker_role(&victim)].kill();
    let killed_at = now_ms();

    wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    let events = events(&farm, &job).await;
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
    let failover = moved.time_ms.saturating_sub(killed_at);
    assert!(
        failover <= ACK_WAIT_MS + 1_000,
        "redelivered {failover} ms after the kill"
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
    let farm = farm_with_command_workers(1, &[]);
    let deps = farm.deps().await;
    let job = command_job(
        &farm,
        "poison",
        "1-4",
        "echo rendering {frame}; test {frame} != 2 && echo {frame} > {output}",
        "max_attempts = 3\non_failure = \"continue\"",
    );
    let failed = wait_event(&farm, &deps.js, &job, EventKind::JobFailed).await;
    assert!(failed.message.unwrap().contains("1 of 4 tasks failed"));

    let events = events(&farm, &job).await;
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

    let id = JobId::parse(&job).unwrap();
    let logs = deps
        .store
        .list(&format!("{}f0002/", keys::logs_prefix(&id)))
        .await
        .unwrap();
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
    let mut farm = farm_with_command_workers(2, &["--max-deliver", "2"]);
    let deps = farm.deps().await;
    // Attempt 1 fails at once; attempt 2 (JetStream's last delivery) hangs and its worker dies.
    let job = command_job(
        &farm,
        "last-delivery",
        "1",
        "if [ {attempt} = 1 ]; then exit 1; fi; sleep 60",
        "max_attempts = 5",
    );
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
    assert_eq!(
        stream_messages(&deps.js, TASKS_STREAM).await,
        0,
        "the message was removed"
    );
    assert_eq!(
        stream_messages(&deps.js, ADVISORIES_STREAM).await,
        0,
        "the advisory was handled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_a_nats_server_restart_mid_job() {
    let mut farm = farm_with_command_workers(2, &[]);
    let job = command_job(
        &farm,
        "restart",
        "1-12",
        "sleep 0.3; echo {frame} > {output}",
        "",
    );
    {
        let deps = farm.deps().await;
        wait_events(&farm, &deps.js, &job, |e| {
            e.iter().filter(|e| e.kind == EventKind::TaskDone).count() >= 3
        })
        .await;
    }
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
    let mut farm = farm_with_command_workers(2, &[]);
    let deps = farm.deps().await;
    let job = command_job(
        &farm,
        "collector",
        "1-12",
        "sleep 0.2; echo {frame} > {output}",
        "",
    );
    wait_events(&farm, &deps.js, &job, |e| {
        e.iter().filter(|e| e.kind == EventKind::TaskDone).count() >= 4
    })
    .await;
    farm.roles[1].kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    farm.start("tessera-collector", &[]);
    wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    let outputs = deps
        .store
        .list(&keys::output_prefix(&JobId::parse(&job).unwrap()))
        .await
        .unwrap();
    assert_eq!(outputs.len(), 12);
    for frame in 1..=12 {
        assert_eq!(output_text(&farm, &job, frame).await, format!("{frame}\n"));
    }
    let events = events(&farm, &job).await;
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
    let mut farm = farm_with_command_workers(1, &[]);
    let deps = farm.deps().await;
    let job = command_job(
        &farm,
        "twice-done",
        "1",
        "sleep 6; echo attempt {attempt} > {output}",
        "",
    );
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

/// `sleep <seconds>.<this test process's pid>`: a command line no other test run shares.
fn unique_sleep(seconds: u32) -> String {
    format!("sleep {seconds}.{:07}", std::process::id())
}

/// Processes whose command line starts with `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.starts_with(needle) {
                found.push(text);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_job_stops_every_render_within_two_seconds_and_empties_the_queue() {
    let farm = farm_with_command_workers(2, &[]);
    let deps = farm.deps().await;
    let sleep = unique_sleep(31);
    let job = command_job(&farm, "cancel-me", "1-8", &sleep, "");
    wait_events(&farm, &deps.js, &job, |e| {
        e.iter()
            .filter(|e| e.kind == EventKind::TaskStarted)
            .count()
            >= 2
    })
    .await;
    // `task.started` goes out just before the renderer is spawned.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while processes_with(&sleep).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the renders never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = farm.cli(&["cancel", &job]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        processes_with(&sleep),
        Vec::<String>::new(),
        "renders still running"
    );
    assert_eq!(stream_messages(&deps.js, TASKS_STREAM).await, 0);
    let status = farm.status(&job);
    assert_eq!(status["state"], "canceled");
    assert_eq!(status["tasks"]["running"], 0);
    wait_event(&farm, &deps.js, &job, EventKind::JobCanceled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_grace_period_run_then_hands_the_task_back_at_once() {
    let mut farm = farm_with_command_workers(1, &["--grace", "1s"]);
    let deps = farm.deps().await;
    let job = command_job(
        &farm,
        "drained",
        "1",
        "if [ {attempt} = 1 ]; then sleep 30; fi; echo {attempt} > {output}",
        "",
    );
    wait_event(&farm, &deps.js, &job, EventKind::TaskStarted).await;
    let w0 = worker_role("w0");
    farm.roles[w0].signal(libc::SIGTERM);
    let handed_back = wait_event(&farm, &deps.js, &job, EventKind::TaskRetry).await;
    assert_eq!(handed_back.worker.as_deref(), Some("w0"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while farm.roles[w0].running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not stop after its grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(farm.roles[w0].child.wait().unwrap().success());

    farm.start_worker(1, &["--allow-command"]);
    wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    let events = events(&farm, &job).await;
    let resumed = events
        .iter()
        .find(|e| e.kind == EventKind::TaskStarted && e.worker.as_deref() == Some("w1"))
        .unwrap();
    assert_eq!(
        resumed.attempt,
        Some(2),
        "the interrupted attempt keeps its own number"
    );
    assert_eq!(output_text(&farm, &job, 1).await, "2\n");
    let id = JobId::parse(&job).unwrap();
    let log1 = keys::attempt_log(&id, &tessera::core::plan::TaskId("f0001".into()), 1);
    let log1 = String::from_utf8(deps.store.get(&log1).await.unwrap().to_vec()).unwrap();
    assert!(log1.contains("shutting down"), "{log1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_keeps_failing_a_job_stops_taking_its_tasks() {
    let farm = farm_with_command_workers(2, &[]);
    let deps = farm.deps().await;
    // Fails on w0 only: its work folders live in its own cache (`cache-0`).
    let job = command_job(
        &farm,
        "picky",
        "1-12",
        "case {outdir} in *cache-0*) exit 1;; esac; sleep 0.2; echo {frame} > {output}",
        "max_attempts = 6",
    );
    wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    let events = events(&farm, &job).await;
    let on_w0 = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskStarted && e.worker.as_deref() == Some("w0"))
        .count();
    assert!(
        on_w0 <= 3,
        "w0 started {on_w0} attempts of a job it failed three times"
    );
    for frame in 1..=12 {
        assert_eq!(output_text(&farm, &job, frame).await, format!("{frame}\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_hangs_kill_the_whole_process_group() {
    let farm = farm_with_command_workers(2, &[]);
    let deps = farm.deps().await;
    let (slow_sleep, hung_sleep) = (unique_sleep(41), unique_sleep(42));
    // The renderer's own child (a background sleep) must die with it.
    let slow = command_job(
        &farm,
        "too-slow",
        "1",
        &format!("{slow_sleep} & echo working; {slow_sleep}"),
        "max_attempts = 1\ntimeout = \"1s\"",
    );
    let hung = command_job(
        &farm,
        "hung",
        "1",
        &format!("echo starting; {hung_sleep}"),
        "max_attempts = 1\nstall = \"1s\"",
    );
    let failed = wait_event(&farm, &deps.js, &slow, EventKind::TaskFailed).await;
    assert!(
        failed.message.as_deref().unwrap().contains("timed out"),
        "{failed:?}"
    );
    let failed = wait_event(&farm, &deps.js, &hung, EventKind::TaskFailed).await;
    assert!(
        failed.message.as_deref().unwrap().contains("hung"),
        "{failed:?}"
    );
    wait_event(&farm, &deps.js, &slow, EventKind::JobFailed).await;
    wait_event(&farm, &deps.js, &hung, EventKind::JobFailed).await;
    assert_eq!(processes_with(&slow_sleep), Vec::<String>::new());
    assert_eq!(processes_with(&hung_sleep), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_queues_the_failed_tasks_again_with_fresh_attempts() {
    let farm = farm_with_command_workers(1, &[]);
    let deps = farm.deps().await;
    // Frame 2 fails its first three attempts, then works.
    let job = command_job(
        &farm,
        "second-chance",
        "1-3",
        "if [ {frame} = 2 ] && [ {attempt} -le 3 ]; then exit 1; fi; echo {frame} > {output}",
        "max_attempts = 3\non_failure = \"continue\"",
    );
    wait_event(&farm, &deps.js, &job, EventKind::JobFailed).await;
    let out = farm.cli(&["retry", &job]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 tasks queued again"));
    farm.wait_done(&job);
    for frame in 1..=3 {
        assert_eq!(output_text(&farm, &job, frame).await, format!("{frame}\n"));
    }
    let id = JobId::parse(&job).unwrap();
    let logs = deps
        .store
        .list(&format!("{}f0002/", keys::logs_prefix(&id)))
        .await
        .unwrap();
    assert_eq!(
        logs.len(),
        4,
        "attempts keep their own logs across the retry: {logs:?}"
    );
    let out = farm.cli(&["retry", &job]);
    assert!(!out.status.success(), "a done job cannot be retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_longer_than_the_ack_deadline_stays_with_its_live_worker() {
    let farm = farm_with_command_workers(2, &[]);
    let deps = farm.deps().await;
    // One task of two 4 s frames against a 5 s deadline, with an idle worker ready to take
    // it if it were released.
    let toml = r#"
        id = "long"
        renderer = "command"
        [frames]
        range = "1-2"
        chunk = 2
        [settings]
        command = ["sh", "-c", "sleep 4; echo {frame} > {output}"]
    "#;
    let job = farm.submit("long", toml);
    wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    let events = events(&farm, &job).await;
    let starts: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskStarted)
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "the task was taken from its worker: {starts:#?}"
    );
    assert_eq!(starts[0].attempt, Some(1));
    let halfway = events
        .iter()
        .any(|e| e.kind == EventKind::TaskProgress && e.progress == Some(0.5));
    assert!(halfway, "no task.progress at one frame of two: {events:#?}");
    for frame in 1..=2 {
        assert_eq!(output_text(&farm, &job, frame).await, format!("{frame}\n"));
    }
}

/// nats-server before 2.10.14 parks a no-wait pull it cannot serve (here: the consumer's
/// ack-pending limit is reached) without an expiry. Left behind without interest, such a
/// request made the server lose the next redelivery and send the message again as a first
/// delivery one ack deadline later (nats-server #5305). `pull_one` sweeps it, so a nak'd
/// task comes back after its delay as the second delivery.
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

    let first = tessera::roles::worker::pull_one(&consumer)
        .await
        .unwrap()
        .message
        .unwrap();
    assert_eq!(first.subject.as_str(), "parked.a");
    // "b" is queued but cannot be delivered while "a" is pending: the server parks this pull.
    let parked = tessera::roles::worker::pull_one(&consumer).await.unwrap();
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
        if let Some(msg) = tessera::roles::worker::pull_one(&consumer)
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
    let second = keys::output(&id, "frame_0002.png");
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    while !deps.store.exists(&second).await.unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "frame 2 was never assembled\n{}",
            farm.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time for a premature end to show; then frame 1's part arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ended: Vec<_> = events(&farm, &job)
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
