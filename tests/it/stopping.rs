//! Stopping work with real processes: cancel, SIGTERM's grace period, a worker that
//! blocklists a job, timeouts and hangs, `tessera retry`, and a render longer than the ack
//! deadline that must not be stopped.

use std::time::Duration;

use tessera::bus::protocol::EventKind;
use tessera::bus::streams::TASKS_STREAM;
use tessera::core::job::JobId;
use tessera::store::keys;

use crate::support::{
    Farm, PATIENCE, attempt_logs, command_farm, command_job, events_of, eventually, exits_within,
    output_text, stream_messages, wait_event, wait_events, worker_role,
};

/// How long a process may take to start or stop when told to.
const SOON: Duration = Duration::from_secs(10);

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
    let (farm, deps) = command_farm(2, &[]).await;
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
    let started = async || (processes_with(&sleep).len() >= 2).then_some(());
    eventually(
        SOON,
        Duration::from_millis(20),
        || "the renders never started".into(),
        started,
    )
    .await;
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
    let (mut farm, deps) = command_farm(1, &["--grace", "1s"]).await;
    let script = "if [ {attempt} = 1 ]; then sleep 30; fi; echo {attempt} > {output}";
    let job = command_job(&farm, "drained", "1", script, "");
    wait_event(&farm, &deps.js, &job, EventKind::TaskStarted).await;
    let w0 = worker_role("w0");
    farm.roles[w0].signal(libc::SIGTERM);
    let handed_back = wait_event(&farm, &deps.js, &job, EventKind::TaskRetry).await;
    assert_eq!(handed_back.worker.as_deref(), Some("w0"));
    let stopped = exits_within(&mut farm.roles[w0].child, SOON);
    assert!(
        stopped.is_some_and(|s| s.success()),
        "the worker did not stop after its grace period"
    );

    farm.start_worker(1, &["--allow-command"]);
    wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    let events = events_of(&farm, &job).await;
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
    let (farm, deps) = command_farm(2, &[]).await;
    // Both live before the job: a worker hands a task back only while another live worker
    // can take it, and w0, failing at once, would otherwise run through the job alone.
    let never = || "w0 and w1 never both registered".to_string();
    let both = async || {
        let live = tessera::bus::registry::live_workers(&deps.js).await.ok()?;
        (live.len() == 2).then_some(())
    };
    eventually(PATIENCE, Duration::from_millis(50), never, both).await;
    // Fails on w0 only: its work folders live in its own cache (`cache-0`).
    let script = "case {outdir} in *cache-0*) exit 1;; esac; sleep 0.2; echo {frame} > {output}";
    let retry = "max_attempts = 6";
    let job = command_job(&farm, "picky", "1-12", script, retry);
    wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    let events = events_of(&farm, &job).await;
    let on_w0 = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskStarted && e.worker.as_deref() == Some("w0"))
        .count();
    // Three, and by design one or two more if w1's lease was briefly unseen (a loaded
    // machine). Without the blocklist w0, failing at once while w1 renders for 0.2 s,
    // takes most of the job's attempts: well over twelve.
    assert!(
        on_w0 <= 5,
        "w0 started {on_w0} attempts of a job it failed three times"
    );
    for frame in 1..=12 {
        assert_eq!(output_text(&farm, &job, frame).await, format!("{frame}\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_hangs_kill_the_whole_process_group() {
    let (farm, deps) = command_farm(2, &[]).await;
    let (slow_sleep, hung_sleep) = (unique_sleep(41), unique_sleep(42));
    // The renderer's own child (a background sleep) must die with it.
    let script = &format!("{slow_sleep} & echo working; {slow_sleep}");
    let retry = "max_attempts = 1\ntimeout = \"1s\"";
    let slow = command_job(&farm, "too-slow", "1", script, retry);
    let script = &format!("echo starting; {hung_sleep}");
    let retry = "max_attempts = 1\nstall = \"1s\"";
    let hung = command_job(&farm, "hung", "1", script, retry);
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

/// A one-worker command farm and job `id` of frames 1-3 whose frame 2 fails its first
/// `attempts` attempts, all it has: the job has failed (policy continue) when this returns.
async fn frame_two_fails_its_attempts(
    id: &str,
    attempts: u32,
) -> (Farm, tessera::config::Deps, String) {
    let (farm, deps) = command_farm(1, &[]).await;
    let script = format!(
        "if [ {{frame}} = 2 ] && [ {{attempt}} -le {attempts} ]; then exit 1; fi; echo {{frame}} > {{output}}"
    );
    let retry = format!("max_attempts = {attempts}\non_failure = \"continue\"");
    let job = command_job(&farm, id, "1-3", &script, &retry);
    wait_event(&farm, &deps.js, &job, EventKind::JobFailed).await;
    (farm, deps, job)
}

/// `tessera retry` of `job` says it queued its one failed task again; the job ends done.
fn retry_queues_one_and_the_job_ends_done(farm: &Farm, job: &str) {
    let out = farm.cli(&["retry", job]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 tasks queued again"));
    farm.wait_done(job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_queues_the_failed_tasks_again_with_fresh_attempts() {
    // Frame 2 fails its first three attempts, then works.
    let (farm, deps, job) = frame_two_fails_its_attempts("second-chance", 3).await;
    retry_queues_one_and_the_job_ends_done(&farm, &job);
    for frame in 1..=3 {
        assert_eq!(output_text(&farm, &job, frame).await, format!("{frame}\n"));
    }
    let logs = attempt_logs(&deps, &job, "f0002").await;
    assert_eq!(
        logs.len(),
        4,
        "attempts keep their own logs across the retry: {logs:?}"
    );
    let out = farm.cli(&["retry", &job]);
    assert!(!out.status.success(), "a done job cannot be retried");
}

/// `tessera retry` killed right after it set the job running (before it queued anything)
/// leaves a mark on the record; the next `tessera retry` finishes the job's retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_cut_short_is_finished_by_the_next_one() {
    let (farm, deps, job) = frame_two_fails_its_attempts("cut-short", 2).await;
    let id = JobId::parse(&job).unwrap();
    // What the first step of a retry stores, and all it stored before the CLI died.
    deps.ledger
        .update_job(&id, |r| {
            r.state = tessera::core::state::JobState::Running;
            r.finished_ms = None;
            r.generation += 1;
            r.requeue_pending = true;
            true
        })
        .await
        .unwrap();
    assert_eq!(farm.status(&job)["state"], "running");
    retry_queues_one_and_the_job_ends_done(&farm, &job);
    assert_eq!(output_text(&farm, &job, 2).await, "2\n");
    // Attempt 3 followed the first two: numbering goes on across the retry.
    let log = keys::attempt_log(&id, &tessera::core::plan::TaskId("f0002".into()), 3);
    assert!(deps.store.exists(&log).await.unwrap(), "{log}");
    let (record, _) = deps.ledger.job(&id).await.unwrap().unwrap();
    assert!(!record.requeue_pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_longer_than_the_ack_deadline_stays_with_its_live_worker() {
    let (farm, deps) = command_farm(2, &["--ack-wait", "5s"]).await;
    // One task of two 4 s frames against a 5 s deadline, with an idle worker ready to take
    // it if it were released.
    let toml = r#"
        id = "long"
        renderer = "command"
        [frames]
        range = "1-2"
        chunk = 2
        [settings]
        check_outputs = false
        command = ["sh", "-c", "sleep 4; echo {frame} > {output}"]
    "#;
    let job = farm.submit("long", toml);
    wait_event(&farm, &deps.js, &job, EventKind::JobDone).await;
    let events = events_of(&farm, &job).await;
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

/// A job that sets no timeout still ends: the worker's `--max-attempt-time` stops an
/// attempt that runs past it, and caps a job's own longer timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_farms_longest_attempt_time_stops_renders_whose_job_sets_no_timeout() {
    let (farm, deps) = command_farm(1, &["--max-attempt-time", "1s"]).await;
    for (id, retry) in [("no-timeout", ""), ("long-timeout", "timeout = \"1h\"\n")] {
        let toml = format!(
            "id = \"{id}\"\nrenderer = \"noop\"\n[retry]\nmax_attempts = 1\n{retry}[settings]\nsleep_ms = 60000\n"
        );
        let job = farm.submit(id, &toml);
        let failed = wait_event(&farm, &deps.js, &job, EventKind::TaskFailed).await;
        let message = failed.message.unwrap_or_default();
        assert!(message.contains("timed out after 1s"), "{id}: {message}");
    }
}

/// A worker's failure counts (behind its blocklist) are dropped when the job ends, so they
/// never outgrow the jobs that run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_blocklist_forgets_a_job_when_it_ends() {
    let (farm, _deps) = command_farm(1, &["--slots", "2"]).await;
    // Frame 1 fails all three attempts; frame 2 takes 8 s, so the job is still running
    // while the worker blocklists it.
    let script = "if [ {frame} = 1 ]; then exit 1; fi; sleep 8; echo {frame} > {output}";
    let retry = "max_attempts = 3\non_failure = \"continue\"";
    let job = command_job(&farm, "forgotten", "1-2", script, retry);
    let blocklist = async || {
        let out = farm.cli(&["workers", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let entries = list.get(0)?.get("blocklist")?.as_array()?.clone();
        Some(entries)
    };
    let listed = eventually(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || "the worker never blocklisted the job".to_string(),
        async || blocklist().await.filter(|b| !b.is_empty()),
    )
    .await;
    assert_eq!(listed, [serde_json::json!(job)]);
    let out = farm.cli(&["wait", &job]);
    assert!(
        !out.status.success(),
        "the job ends failed (frame 1 never renders)"
    );
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || "the blocklist still lists the ended job".to_string(),
        async || blocklist().await.filter(|b| b.is_empty()),
    )
    .await;
}
