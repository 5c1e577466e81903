//! The web dashboard against a real farm: every endpoint the page uses, with bad input
//! refused clearly; tokens beyond loopback; and the pages in a real headless Chromium: a
//! tiled job appears, its progress reaches 100 % without a reload while its mosaic changes,
//! a running job is canceled from its page, and beyond loopback the page is refused until
//! the browser brings the token.

use std::time::Duration;

use serde_json::Value;
use tessera::bench::browser::{self, Browser};

use crate::support::{Farm, PATIENCE, eventually, free_port};

/// A plain HTTP client of one dashboard.
struct Http {
    base: String,
    client: reqwest::Client,
}

/// What a request got back.
struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error` of a JSON error answer.
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .expect("an error message")
            .to_string()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Http {
    fn new(port: u16) -> Http {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Http {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Got {
        let response = request.send().await.expect("the dashboard answers");
        Got {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap().to_vec(),
        }
    }

    async fn get(&self, path: &str) -> Got {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: &str) -> Got {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }
}

/// Starts `tessera web` on loopback at a free port with `args`; waits until it answers.
async fn start_web(farm: &mut Farm, args: &[&str]) -> (u16, usize) {
    start_web_on(farm, "127.0.0.1", args).await
}

/// Starts `tessera web` on `host` at a free port with `args`, and waits until it answers
/// (anything, a refusal too); returns the port and the role's index.
async fn start_web_on(farm: &mut Farm, host: &str, args: &[&str]) -> (u16, usize) {
    let port = free_port();
    let listen = format!("{host}:{port}");
    let mut all = vec!["web", "--listen", &listen];
    all.extend(args);
    let role = farm.start("tessera", &all);
    let http = Http::new(port);
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || format!("the dashboard did not answer on {listen}: {}", farm.logs()),
        async || {
            let request = http.client.get(format!("{}/app.css", http.base));
            request.send().await.ok().map(|_| ())
        },
    )
    .await;
    (port, role)
}

/// `text` without its terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A tiled builtin still: `grid` tiles of a `width` × `height` frame.
fn tiled_job(id: &str, width: u32, height: u32, grid: [u32; 2], samples: u32) -> String {
    format!(
        "id = \"{id}\"\nrenderer = \"builtin\"\n[image]\nwidth = {width}\nheight = {height}\n[frames]\nrange = \"1\"\n[tiles]\ngrid = [{}, {}]\n[settings]\nsamples = {samples}\nbounces = 2\n",
        grid[0], grid[1]
    )
}

/// A job of `frames` noop frames of `sleep_ms` each.
fn slow_job(id: &str, frames: u32, sleep_ms: u32) -> String {
    format!(
        "id = \"{id}\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-{frames}\"\n[settings]\nsleep_ms = {sleep_ms}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_endpoint_answers_and_bad_input_gets_a_clear_error() {
    let mut farm = Farm::with_workers(1);
    let (port, _) = start_web(&mut farm, &[]).await;
    let http = Http::new(port);
    let still = farm.submit("still", &tiled_job("still", 96, 64, [2, 2], 1));
    farm.wait_done(&still);
    let slow = farm.submit("slow", &slow_job("slow", 40, 400));

    // The page and its two files, from the binary.
    let page = http.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/app.js"), "{}", page.text());
    for (path, kind) in [("/app.js", "javascript"), ("/app.css", "css")] {
        let got = http.get(path).await;
        assert_eq!(got.status, 200, "{path}");
        let content_type = got.headers["content-type"].to_str().unwrap();
        assert!(content_type.contains(kind), "{path}: {content_type}");
    }

    // The farm: the worker and the queues.
    let farm_view = eventually(
        PATIENCE,
        Duration::from_millis(200),
        || "the farm never showed worker w0 running a task of slow".into(),
        async || {
            let v = http.get("/api/farm").await.json();
            let busy = v["workers"]
                .as_array()?
                .iter()
                .any(|w| w["id"] == "w0" && w["running"][0]["job"] == "slow");
            busy.then_some(v)
        },
    )
    .await;
    assert!(
        farm_view["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["class"] == "cpu")
    );
    let worker = http.get("/api/workers/w0").await;
    assert_eq!(worker.status, 200);
    assert_eq!(worker.json()["slots"], 1);

    // Jobs, with filters.
    let jobs = http.get("/api/jobs").await.json();
    let ids: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["slow", "still"], "newest first");
    let done = http.get("/api/jobs?state=done&since=1h").await.json();
    assert_eq!(done.as_array().unwrap().len(), 1);
    assert_eq!(done[0]["id"], "still");

    // A job, its tasks, one task and its log.
    let job = http.get(&format!("/api/jobs/{still}")).await.json();
    assert_eq!(
        (job["state"].as_str(), job["tiled"].as_bool()),
        (Some("done"), Some(true))
    );
    assert_eq!(job["tasks"]["done"], 4);
    let tasks = http.get(&format!("/api/jobs/{still}/tasks")).await.json();
    assert_eq!(tasks["states"], "dddd");
    assert_eq!(tasks["tiles"], serde_json::json!([2, 2]));
    assert_eq!(tasks["rows"], serde_json::json!(["1"]));
    let task = http.get(&format!("/api/jobs/{still}/tasks/3")).await.json();
    assert_eq!(task["id"], "f0001.t01-01");
    assert_eq!(task["tile"], serde_json::json!([1, 1]));
    assert_eq!(task["logs"], serde_json::json!([1]));
    let log = http.get(&format!("/api/jobs/{still}/tasks/3/log")).await;
    assert_eq!(log.status, 200, "{}", log.text());
    // The live log of an ended task: its streamed lines again, then its end, and the
    // stream closes by itself.
    let live = http
        .get(&format!("/api/jobs/{still}/tasks/3/log/live"))
        .await;
    assert_eq!(live.status, 200, "{}", live.text());
    let events = live.text();
    assert!(
        events.contains("event: end\ndata: {}"),
        "the live log ends cleanly: {events}"
    );
    if !log.text().trim().is_empty() {
        assert!(events.contains("event: line"), "{events}");
    }

    // Outputs, a thumbnail, previews.
    let outputs = http.get(&format!("/api/jobs/{still}/outputs")).await.json();
    assert_eq!(outputs[0]["name"], "frame_0001.png");
    let frame = http
        .get(&format!("/api/jobs/{still}/outputs/frame_0001.png"))
        .await;
    assert_eq!(frame.status, 200);
    let image = image::load_from_memory(&frame.body).unwrap();
    assert_eq!((image.width(), image.height()), (96, 64));
    let thumb = http
        .get(&format!("/api/jobs/{still}/outputs/frame_0001.png?w=48"))
        .await;
    let thumb = image::load_from_memory(&thumb.body).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (48, 32));
    let previews = http
        .get(&format!("/api/jobs/{still}/previews"))
        .await
        .json();
    assert_eq!(previews[0]["name"], "frame_0001");
    let preview = http
        .get(&format!("/api/jobs/{still}/previews/frame_0001"))
        .await;
    assert_eq!(preview.status, 200);
    assert!(image::load_from_memory(&preview.body).is_ok());

    // Live events: `ready` first, then the events of the job as they are stored.
    let events = http
        .client
        .get(format!("{}/api/events?job={slow}", http.base))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut events = events;
    let mut seen = String::new();
    tokio::time::timeout(PATIENCE, async {
        while !seen.contains("task.done") {
            let chunk = events
                .chunk()
                .await
                .unwrap()
                .expect("the event stream ends");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no task.done event came: {seen}"));
    assert!(seen.starts_with("event: ready"), "{seen}");

    // Actions on the running job: suspend, resume, priority.
    let suspended = http.post(&format!("/api/jobs/{slow}/suspend"), "").await;
    assert_eq!(suspended.status, 200, "{}", suspended.text());
    assert_eq!(
        http.get(&format!("/api/jobs/{slow}")).await.json()["suspended"],
        true
    );
    let again = http.post(&format!("/api/jobs/{slow}/suspend"), "").await;
    assert_eq!(again.status, 409);
    assert!(
        again.error().contains("suspended already"),
        "{}",
        again.error()
    );
    let resumed = http.post(&format!("/api/jobs/{slow}/resume"), "{}").await;
    assert_eq!(resumed.status, 200, "{}", resumed.text());
    let high = http
        .post(
            &format!("/api/jobs/{slow}/priority"),
            r#"{"priority":"high"}"#,
        )
        .await;
    assert_eq!(high.status, 200, "{}", high.text());
    assert_eq!(
        http.get(&format!("/api/jobs/{slow}")).await.json()["priority"],
        "high"
    );

    // Bad input anywhere: a clear error that names what is wrong, and nothing changed.
    let bad: Vec<(Got, u16, &str)> = vec![
        (
            http.get("/api/jobs/no-such-job").await,
            404,
            "no job no-such-job",
        ),
        (
            http.get("/api/jobs/Bad%20Id").await,
            400,
            "job id \"Bad Id\"",
        ),
        (http.get("/api/jobs/a.b/tasks").await, 400, "job id \"a.b\""),
        (
            http.get(&format!("/api/jobs/{still}/tasks/4")).await,
            404,
            "has 4 tasks",
        ),
        (
            http.get(&format!("/api/jobs/{still}/tasks/4/log/live"))
                .await,
            404,
            "has 4 tasks",
        ),
        (
            http.get(&format!("/api/jobs/{still}/tasks/x")).await,
            400,
            "not a number",
        ),
        (
            http.get(&format!("/api/jobs/{still}/tasks/0/log?attempt=9"))
                .await,
            404,
            "attempt 9",
        ),
        (
            http.get(&format!("/api/jobs/{still}/tasks/-1/log")).await,
            400,
            "not a number",
        ),
        (
            http.get(&format!("/api/jobs/{still}/outputs/..%2F..%2Fsecret"))
                .await,
            400,
            "plain relative path",
        ),
        (
            http.get(&format!("/api/jobs/{still}/outputs/frame_0002.png"))
                .await,
            404,
            "no output frame_0002.png",
        ),
        (
            http.get(&format!("/api/jobs/{still}/outputs/frame_0001.png?w=0"))
                .await,
            400,
            "1 to 1024",
        ),
        (
            http.get(&format!("/api/jobs/{still}/previews/nope")).await,
            404,
            "no preview nope",
        ),
        (
            http.get("/api/jobs?state=sleeping").await,
            400,
            "\"sleeping\" is not a job state",
        ),
        (
            http.get("/api/jobs?since=soon").await,
            400,
            "since \"soon\"",
        ),
        (
            http.get("/api/workers/ghost").await,
            404,
            "no live worker ghost",
        ),
        (http.get("/api/events?job=..").await, 400, "job id \"..\""),
        (http.get("/api/nothing").await, 404, "no such page"),
        (
            http.post(&format!("/api/jobs/{still}/cancel"), "").await,
            409,
            "already ended (done)",
        ),
        (
            http.post(&format!("/api/jobs/{still}/explode"), "").await,
            404,
            "no action \"explode\"",
        ),
        (
            http.post(
                &format!("/api/jobs/{slow}/priority"),
                "{\"priority\":\"urgent\"}",
            )
            .await,
            400,
            "\"urgent\" is not one",
        ),
        (
            http.post(&format!("/api/jobs/{slow}/priority"), "{").await,
            400,
            "not an action's JSON",
        ),
        (
            http.post(&format!("/api/jobs/{slow}/retry"), "").await,
            409,
            "only failed or canceled",
        ),
        (
            http.post("/api/jobs/no-such-job/cancel", "").await,
            404,
            "no job no-such-job",
        ),
    ];
    for (i, (got, status, says)) in bad.iter().enumerate() {
        assert_eq!(got.status, *status, "case {i}: {}", got.text());
        assert!(
            got.error().contains(says),
            "case {i}: {:?} does not say {says:?}",
            got.error()
        );
    }
    assert_eq!(
        http.get(&format!("/api/jobs/{slow}")).await.json()["state"],
        "running"
    );

    // Other sites cannot act through a browser: a foreign origin, a foreign host name.
    let foreign = http
        .send(
            http.client
                .post(format!("{}/api/jobs/{slow}/cancel", http.base))
                .header("origin", "http://evil.example"),
        )
        .await;
    assert_eq!(foreign.status, 403, "{}", foreign.text());
    let rebound = http
        .send(
            http.client
                .get(format!("{}/api/jobs", http.base))
                .header("host", "evil.example"),
        )
        .await;
    assert_eq!(rebound.status, 403, "{}", rebound.text());
    assert_eq!(
        http.get(&format!("/api/jobs/{slow}")).await.json()["state"],
        "running"
    );

    // The last action: cancel, then retry, the canceled job.
    let canceled = http.post(&format!("/api/jobs/{slow}/cancel"), "").await;
    assert_eq!(canceled.status, 200, "{}", canceled.text());
    assert_eq!(
        http.get(&format!("/api/jobs/{slow}")).await.json()["state"],
        "canceled"
    );
    let retried = http.post(&format!("/api/jobs/{slow}/retry"), "").await;
    assert_eq!(retried.status, 200, "{}", retried.text());
    assert_eq!(
        http.get(&format!("/api/jobs/{slow}")).await.json()["state"],
        "running"
    );
    assert!(
        farm.logs().contains("dashboard action"),
        "actions are logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_the_dashboard_needs_a_token_and_logs_who_acted() {
    let mut farm = Farm::with_workers(1);

    // Listening on every address without a token is refused at start, naming the flag.
    let port = free_port();
    let out = farm.cli(&["web", "--listen", &format!("0.0.0.0:{port}")]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--token"), "{said}");

    let secret = "s3cret-s3cret-s3cret";
    farm.env
        .push(("TESSERA_WEB_TOKEN".into(), format!("ana:{secret}")));
    let (port, _) = start_web_on(&mut farm, "0.0.0.0", &[]).await;
    let http = Http::new(port);
    let job = farm.submit("slow", &slow_job("slow", 20, 500));

    // Without the token: refused, page and API alike, and nothing is canceled.
    for got in [
        http.get("/").await,
        http.get("/api/jobs").await,
        http.get("/api/events").await,
        http.get(&format!("/api/jobs/{job}/outputs/x.png")).await,
        http.post(&format!("/api/jobs/{job}/cancel"), "").await,
        http.get(&format!("/api/jobs?token={secret}x")).await,
    ] {
        assert_eq!(got.status, 401, "{}", got.text());
        assert!(got.error().contains("needs a token"), "{}", got.error());
    }
    assert_ne!(farm.status(&job)["state"], "canceled");

    // A browser opens `/?token=…` once: it gets the cookie and is sent on to `/`.
    let opened = http.get(&format!("/?token={secret}")).await;
    assert_eq!(opened.status, 303);
    let cookie = opened.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = http
        .send(
            http.client
                .get(format!("{}/", http.base))
                .header("cookie", &cookie),
        )
        .await;
    assert_eq!(page.status, 200);

    // A client sends it as a bearer token; its action is logged with its name.
    let canceled = http
        .send(
            http.client
                .post(format!("{}/api/jobs/{job}/cancel", http.base))
                .header("authorization", format!("Bearer {secret}")),
        )
        .await;
    assert_eq!(canceled.status, 200, "{}", canceled.text());
    assert_eq!(farm.status(&job)["state"], "canceled");
    let logs = farm.logs();
    let acted = logs
        .lines()
        .find(|l| l.contains("dashboard action"))
        .unwrap_or_else(|| panic!("the cancel is logged: {logs}"));
    let acted = strip_ansi(acted);
    assert!(
        acted.contains("who=ana") && acted.contains("action=cancel"),
        "{acted}"
    );
    assert!(
        !logs.contains(secret),
        "the secret never reaches a log: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_real_browser_a_tiled_job_fills_in_live_a_running_job_is_canceled_and_a_token_is_asked_for()
 {
    assert!(
        browser::available(),
        "chromium and chromedriver are needed: bash scripts/setup.sh --tests"
    );
    let mut farm = Farm::with_workers(1);
    let (port, _) = start_web(&mut farm, &[]).await;
    let base = format!("http://127.0.0.1:{port}");
    let browser = Browser::start(1400, 1000).await.unwrap();

    // The jobs page is open before the job exists: it appears without a reload.
    browser.goto(&format!("{base}/#/")).await.unwrap();
    browser
        .wait_for(
            "return document.querySelector('#jobs tbody') !== null",
            PATIENCE,
        )
        .await
        .unwrap();
    // Long enough (a few seconds) for the collector's preview, refreshed at most once a
    // second while tiles land, to show two partial mosaics before the whole frame.
    let still = farm.submit("still", &tiled_job("still", 480, 320, [4, 4], 64));
    browser
        .wait_for(
            &format!("return document.querySelector('tr[data-job=\"{still}\"]') !== null"),
            PATIENCE,
        )
        .await
        .unwrap();
    browser
        .click(&format!("tr[data-job=\"{still}\"] a"))
        .await
        .unwrap();

    // The job's page: the mosaic's pixels are sampled while tiles land.
    let sample = r#"
        const img = document.getElementById('mosaic');
        if (!img || !img.complete || !img.naturalWidth) return null;
        const c = document.createElement('canvas');
        c.width = 64; c.height = 64;
        const ctx = c.getContext('2d');
        ctx.drawImage(img, 0, 0, 64, 64);
        const d = ctx.getImageData(0, 0, 64, 64).data;
        let sum = 0;
        for (let i = 0; i < d.length; i++) sum = (sum * 31 + d[i]) % 1000000007;
        return [sum, Number(document.getElementById('progress').dataset.percent)];
    "#;
    let mut mosaics = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(seen) = browser.eval(sample).await.unwrap().as_array() {
            let sum = seen[0].as_u64().unwrap();
            let percent = seen[1].as_u64().unwrap();
            if mosaics.last().is_none_or(|&(s, _)| s != sum) {
                mosaics.push((sum, percent));
            }
            if percent == 100 && farm.status(&still)["state"] == "done" {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never reached 100 %: {mosaics:?}\n{}",
            farm.logs()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // Reached without a reload: the page kept its state (a reload would clear this mark).
    // The page reads the job's state again at most every 500 ms, so it may show 100 %
    // of tasks done a moment before it shows the job done: it is waited for.
    let progress = browser
        .wait_for(
            "const state = document.getElementById('state').dataset.state; return document.getElementById('progress').dataset.percent === '100' && state === 'done' && state",
            PATIENCE,
        )
        .await
        .unwrap();
    assert_eq!(progress, "done");
    let partial = mosaics.iter().filter(|&&(_, p)| p < 100).count();
    assert!(
        mosaics.len() >= 3 && partial >= 2,
        "the mosaic should change while tiles land: {mosaics:?}"
    );
    let grid = browser
        .eval("return document.getElementById('grid-note').textContent")
        .await
        .unwrap();
    assert!(grid.as_str().unwrap().contains("16 tasks"), "{grid}");

    // A running job is canceled from its page: the button asks once more, then cancels.
    let slow = farm.submit("slow", &slow_job("slow", 30, 1000));
    browser
        .goto(&format!("{base}/#/jobs/{slow}"))
        .await
        .unwrap();
    browser
        .wait_for(
            "return document.getElementById('state') && document.getElementById('state').dataset.state === 'running'",
            PATIENCE,
        )
        .await
        .unwrap();
    browser.click("#cancel").await.unwrap();
    assert_ne!(
        farm.status(&slow)["state"],
        "canceled",
        "one click only arms it"
    );
    browser.click("#cancel").await.unwrap();
    let shown = browser
        .wait_for(
            "return document.getElementById('state').dataset.state === 'canceled' && 'canceled'",
            PATIENCE,
        )
        .await
        .unwrap();
    assert_eq!(shown, "canceled");
    assert_eq!(farm.status(&slow)["state"], "canceled");

    // A dashboard that listens beyond loopback refuses the browser until it brings the
    // token once; then the page works, with the cookie that visit set.
    let secret = "browser-s3cret-s3cret";
    farm.env
        .push(("TESSERA_WEB_TOKEN".into(), format!("ana:{secret}")));
    let (open, _) = start_web_on(&mut farm, "0.0.0.0", &[]).await;
    let open_base = format!("http://127.0.0.1:{open}");
    browser.goto(&format!("{open_base}/#/")).await.unwrap();
    let refused = browser
        .eval("return document.body.innerText")
        .await
        .unwrap();
    assert!(
        refused.as_str().unwrap().contains("needs a token")
            && browser
                .eval("return document.querySelector('#jobs') === null")
                .await
                .unwrap()
                == true,
        "without the token: {refused}"
    );
    browser
        .goto(&format!("{open_base}/?token={secret}"))
        .await
        .unwrap();
    browser
        .wait_for(
            &format!("return document.querySelector('tr[data-job=\"{still}\"]') !== null"),
            PATIENCE,
        )
        .await
        .unwrap();
    browser.close().await.unwrap();
}
