//! Watching the farm: a captured `tessera watch` transcript of a job with a failure and a
//! retry, `status`, `jobs`, and each role's metrics scraped after that known job;
//! `logs --follow` of a render that is still running; `tessera workers`.

use std::io::{Read as _, Write as _};
use std::process::Stdio;
use std::time::Duration;

use crate::support::{Farm, PATIENCE, command_job, eventually, exits_within, free_port};

/// The body of `GET /metrics` on 127.0.0.1:`port`.
pub(crate) fn scrape(port: u16) -> String {
    http_get(port, "/metrics")
}

/// The body of `GET path` on 127.0.0.1:`port`, which must answer 200.
pub(crate) fn http_get(port: u16, path: &str) -> String {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the port answers");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The value of series `series` (name and labels, exactly as exposed) in `text`.
pub(crate) fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_a_retry_reads_the_same_in_watch_status_jobs_and_the_metrics() {
    let mut farm = Farm::new();
    let ports = [free_port(), free_port(), free_port()];
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    farm.start("tessera-planner", &["--metrics-addr", &addr(0)]);
    farm.start("tessera-collector", &["--metrics-addr", &addr(1)]);
    let worker_addr = addr(2);
    farm.start_worker(
        0,
        &[
            "--allow-command",
            "--slots",
            "1",
            "--metrics-addr",
            &worker_addr,
        ],
    );

    // Frame 2 fails its first attempt, saying why on stderr; every other attempt works.
    let marker = farm.dir.path().join("failed-once");
    let script = format!(
        "if [ {{frame}} = 2 ] && [ ! -e {m} ]; then touch {m}; echo 'the light rig is missing' >&2; exit 3; fi; echo {{frame}} > {{output}}",
        m = marker.display()
    );
    // The watch starts before the job exists: it says so, then follows it.
    let mut watch = farm
        .command("tessera")
        .args(["watch", "watched"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let job = command_job(&farm, "watched", "1-4", &script, "max_attempts = 3");
    let ended = exits_within(&mut watch, PATIENCE);
    let mut transcript = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut transcript)
        .unwrap();
    assert!(
        ended.is_some_and(|s| s.success()),
        "{transcript}\n{}",
        farm.logs()
    );
    let lines: Vec<&str> = transcript.lines().collect();
    assert_eq!(
        lines[0], "watched: submitted, not planned yet",
        "{transcript}"
    );
    let retry = lines
        .iter()
        .find(|l| l.contains("task.retry"))
        .unwrap_or_else(|| panic!("no retry line: {transcript}"));
    assert!(
        retry.contains("f0002 attempt 1 on w0")
            && retry.contains("exited with code 3 (its last line: the light rig is missing)"),
        "{retry}"
    );
    assert!(retry.contains("1 retried"), "{retry}");
    let accepted = lines
        .iter()
        .position(|l| l.contains("job.accepted"))
        .unwrap();
    let last_done = lines.iter().rposition(|l| l.contains("task.done")).unwrap();
    assert!(accepted < last_done, "{transcript}");
    assert!(lines[last_done].contains("| 4/4 done"), "{transcript}");
    assert!(
        lines.iter().any(|l| l.contains("ETA")),
        "an ETA once a task finished: {transcript}"
    );
    let end = lines
        .iter()
        .position(|l| l.starts_with("watched: done, 4 outputs in jobs/watched/output/"))
        .unwrap_or_else(|| panic!("no end line: {transcript}"));
    assert_eq!(
        lines.len(),
        end + 5,
        "the four outputs follow: {transcript}"
    );
    assert!(lines[end + 1].trim().starts_with("jobs/watched/output/"));

    // A late watcher of the ended job: its state at once, in JSON.
    let late = farm.cli(&["watch", &job, "--json"]);
    assert!(late.status.success());
    let objects: Vec<serde_json::Value> = String::from_utf8_lossy(&late.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert_eq!(objects[0]["type"], "status");
    assert_eq!(objects[0]["status"]["state"], "done");
    assert_eq!(objects[1]["type"], "end");
    assert_eq!(objects[1]["outputs"].as_array().unwrap().len(), 4);

    // Status, for a person and for a script.
    let status = farm.cli(&["status", &job]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.starts_with("watched (watched): done\n"), "{text}");
    assert!(text.contains("progress: 4/4 (100%) tasks done"), "{text}");
    assert!(
        text.contains("failures: 1 attempts (1 retried, 0 for good)"),
        "{text}"
    );
    assert!(
        text.contains("f0002 attempt 1 on w0 (retried): \"sh\" exited with code 3"),
        "{text}"
    );
    assert!(text.contains("4 outputs in jobs/watched/output/"), "{text}");
    let json = farm.status(&job);
    assert_eq!(json["by_state"]["done"], 4);
    assert_eq!(json["failures"][0]["retried"], true);
    assert_eq!(json["renderer"], "command");

    // The list of jobs, filtered.
    let other = command_job(
        &farm,
        "later",
        "1",
        "echo {frame} > {output}",
        "max_attempts = 1",
    );
    farm.wait_done(&other);
    let jobs = farm.cli(&["jobs"]);
    let text = String::from_utf8_lossy(&jobs.stdout);
    let rows: Vec<&str> = text.lines().collect();
    assert!(rows[0].starts_with("ID "), "{text}");
    assert!(
        rows[1].starts_with("later ") && rows[2].starts_with("watched "),
        "newest first: {text}"
    );
    assert!(
        rows[2].contains("done") && rows[2].contains("4/4 (100%)") && rows[2].contains("normal"),
        "{text}"
    );
    let running = farm.cli(&["jobs", "--state", "running,queued"]);
    assert_eq!(String::from_utf8_lossy(&running.stdout), "no jobs\n");
    let bad = farm.cli(&["jobs", "--state", "finished"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--state: \"finished\" is not a job state")
    );
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&farm.cli(&["jobs", "--json", "--since", "1h"]).stdout).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["id"], "watched");
    assert_eq!(listed[1]["tasks"]["done"], 4);

    // The metrics of each role, after these two jobs: five attempts of five tasks.
    let worker = scrape(ports[2]);
    let queue = "{class=\"cpu\",priority=\"normal\",renderer=\"command\"}";
    for (series, expected) in [
        ("tessera_tasks_started_total", 6.0),
        ("tessera_tasks_done_total", 5.0),
        ("tessera_tasks_retried_total", 1.0),
    ] {
        assert_eq!(
            value(&worker, &format!("{series}{queue}")),
            Some(expected),
            "{series}\n{worker}"
        );
    }
    assert_eq!(
        value(&worker, &format!("tessera_tasks_failed_total{queue}")),
        None,
        "{worker}"
    );
    let render = "tessera_render_seconds_count{class=\"cpu\",renderer=\"command\"}";
    assert_eq!(value(&worker, render), Some(6.0), "{worker}");
    let dispatch = "tessera_dispatch_latency_seconds_count{class=\"cpu\",priority=\"normal\"}";
    assert_eq!(
        value(&worker, dispatch),
        Some(5.0),
        "first attempts only: {worker}"
    );
    assert_eq!(
        value(&worker, "tessera_worker_slots{state=\"busy\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(&worker, "tessera_worker_slots{state=\"free\"}"),
        Some(1.0)
    );
    assert!(
        worker.contains("# TYPE tessera_render_seconds histogram"),
        "{worker}"
    );

    let collector = scrape(ports[1]);
    assert_eq!(
        value(&collector, "tessera_jobs_ended_total{state=\"done\"}"),
        Some(2.0),
        "{collector}"
    );
    assert_eq!(
        value(&collector, "tessera_assembly_seconds_count{kind=\"frame\"}"),
        Some(5.0),
        "{collector}"
    );
    let depth = format!("tessera_queue_depth{queue}");
    let planner = eventually(
        PATIENCE,
        Duration::from_millis(500),
        || "no queue depth".into(),
        async || {
            let text = scrape(ports[0]);
            value(&text, &depth).map(|_| text)
        },
    )
    .await;
    assert_eq!(value(&planner, &depth), Some(0.0), "{planner}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_shows_the_lines_of_a_render_still_running_and_workers_show_its_slot() {
    let (farm, deps) = crate::support::command_farm(1, &["--slots", "1"]).await;
    // The render prints a line, then waits for the test to let it finish.
    let release = farm.dir.path().join("release");
    let script = format!(
        "echo 'first line of {{frame}}'; while [ ! -e {r} ]; do sleep 0.1; done; echo 'last line'; echo {{frame}} > {{output}}",
        r = release.display()
    );
    let job = command_job(&farm, "followed", "1", &script, "max_attempts = 1");
    crate::support::wait_event(
        &farm,
        &deps.js,
        &job,
        tessera::bus::protocol::EventKind::TaskStarted,
    )
    .await;

    // The worker's slot shows the task.
    let workers = eventually(
        PATIENCE,
        Duration::from_millis(100),
        || "no busy slot".into(),
        async || {
            let out = farm.cli(&["workers"]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.contains("slot 1: followed/f0001").then_some(text)
        },
    )
    .await;
    let row = workers.lines().find(|l| l.starts_with("w0 ")).unwrap();
    assert!(
        row.contains("command") && row.contains("1/1") && row.contains("farm"),
        "{workers}"
    );

    let mut follow = farm
        .command("tessera")
        .args(["logs", &job, "f0001", "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // The worker logs the command line first, then the render's own lines.
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == "first line of 1") {
        let line = rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no first line while the render runs: {seen:?}"));
        seen.push(line);
    }
    assert!(!release.exists(), "the render is still running");
    assert_eq!(farm.status(&job)["state"], "running");

    std::fs::write(&release, "").unwrap();
    let rest: Vec<String> = rx.iter().collect();
    assert!(rest.iter().any(|l| l == "last line"), "{rest:?}");
    let ended = exits_within(&mut follow, PATIENCE);
    assert!(
        ended.is_some_and(|s| s.success()),
        "the follow ends with the attempt"
    );
    farm.wait_done(&job);

    // The stored log, whole, by attempt.
    let stored = farm.cli(&["logs", &job, "--attempt", "1"]);
    let text = String::from_utf8_lossy(&stored.stdout);
    assert!(text.starts_with("== f0001/attempt-1.log\n"), "{text}");
    assert!(
        text.contains("first line of 1\n") && text.contains("last line\n"),
        "{text}"
    );
    let none = farm.cli(&["logs", &job, "--attempt", "2"]);
    assert!(none.status.success() && none.stdout.is_empty());
    let unknown = farm.cli(&["logs", &job, "f0009", "--follow"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("job followed has no task f0009"));
}
