//! Garbage on every subject the roles consume (random bytes, truncated and wrongly shaped
//! msgpack, hostile and oversized JSON), each disposed of with the roles still working;
//! and a bounded mutation fuzz of the parsers a job file and a scene go through.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tessera::bus::protocol::EventKind;
use tessera::bus::streams;

use crate::support::{Farm, command_job, output_text, wait_event};

/// A small deterministic generator (xorshift64*), so that a failing case can be replayed
/// from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Hostile pieces: path traversal, shell metacharacters, huge ranges and numbers.
const HOSTILE: [&str; 14] = [
    "../../../../etc/passwd",
    "/etc/shadow",
    "$(touch /tmp/tessera-pwned)",
    "`reboot`; rm -rf / &",
    "1-10000000",
    "1-4294967295",
    "-1",
    "1e309",
    "18446744073709551616",
    "\u{0}\u{1b}[31m",
    "*.>",
    "a.b c\r\nPUB x 1",
    "..",
    "🎬",
];

/// The payloads published on each subject.
fn payloads(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out = vec![
        Vec::new(),
        rng.bytes(64),
        rng.bytes(4096),
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"42".to_vec(),
        // Deeply nested JSON and msgpack (a fixarray of one, 100,000 deep).
        "[".repeat(100_000).into_bytes(),
        vec![0x91; 100_000],
        // Oversized: most of the server's 1 MB payload limit, one JSON string.
        format!("{{\"id\":\"big\",\"name\":\"{}\"}}", "x".repeat(900_000)).into_bytes(),
    ];
    // Well-formed msgpack of the wrong shape, then truncated.
    let shaped = rmp_serde::to_vec_named(&serde_json::json!({
        "job": "garbage", "task": 7, "attempt": 1, "frames": [1, 2, 3],
        "kind": "task.done", "worker": "w0", "outputs": ["frame_0001.png"],
    }))
    .unwrap();
    out.push(shaped[..shaped.len() / 2].to_vec());
    out.push(shaped);
    out.push(rmp_serde::to_vec(&(1u8, "x", [0.5f32; 3])).unwrap());
    // Hostile JSON in the shape of a job.
    for hostile in HOSTILE {
        out.push(
            serde_json::json!({
                "id": hostile, "name": hostile, "renderer": "command", "scene": hostile,
                "frames": {"range": hostile, "chunk": 1},
                "image": {"width": 1_000_000, "height": 1_000_000},
                "settings": {"command": ["sh", "-c", hostile], "output": hostile},
                "outputs": {"name": hostile},
            })
            .to_string()
            .into_bytes(),
        );
    }
    out.push(
        serde_json::json!({"id": "huge-range", "renderer": "noop", "frames": {"range": "1-10000000"}})
            .to_string()
            .into_bytes(),
    );
    out
}

/// Every subject a role consumes, with a job id that does not exist.
fn subjects() -> Vec<String> {
    let job = "garbage-job";
    let mut subjects = vec![
        "tessera.jobs.submit".to_string(),
        format!("tessera.tasks.cpu.normal.{job}.noop"),
        format!("tessera.tasks.cpu.normal.{job}.command"),
        format!("tessera.tasks.cpu.high.{job}.noop.key"),
        format!("tessera.control.{job}"),
        "tessera.doorbell.cpu".to_string(),
        format!("tessera.logs.{job}.0.1"),
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.TESSERA_TASKS.tasks-cpu-normal-noop"
            .to_string(),
    ];
    for kind in [
        EventKind::TaskStarted,
        EventKind::TaskDone,
        EventKind::TaskFailed,
        EventKind::JobDone,
    ] {
        subjects.push(tessera::bus::protocol::event_subject(job, kind));
    }
    for (bucket, key) in [
        (streams::JOBS_BUCKET, job.to_string()),
        (streams::JOBS_BUCKET, format!("{job}.p0")),
        (streams::WORKERS_BUCKET, "w-garbage".to_string()),
        (streams::COLLECTORS_BUCKET, "c-garbage".to_string()),
        (streams::LIMITS_BUCKET, "garbage-licence".to_string()),
    ] {
        subjects.push(format!("$KV.{bucket}.{key}"));
    }
    subjects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_subject_is_disposed_of_and_the_roles_keep_working() {
    let mut farm = Farm::with_workers(0);
    farm.start_worker(0, &["--allow-command"]);
    farm.start_worker(1, &["--allow-command", "--renderers", "noop,command"]);
    let deps = farm.deps().await;
    // A job before, so the roles have opened their consumers.
    let before = command_job(&farm, "before", "1-2", "echo {frame} > {output}", "");
    wait_event(&farm, &deps.js, &before, EventKind::JobDone).await;

    let mut rng = Rng(0x7e55_e7a5_eed5_0001);
    let mut published = 0;
    for subject in subjects() {
        for payload in payloads(&mut rng) {
            // JetStream subjects are acknowledged (a stream may refuse some: a dedup or a
            // size limit); core subjects are fire and forget.
            let payload = Bytes::from(payload);
            if subject.starts_with("tessera.control") || subject.starts_with("tessera.doorbell") {
                deps.client.publish(subject.clone(), payload).await.unwrap();
            } else if let Ok(ack) = deps.js.publish(subject.clone(), payload).await {
                let _ = ack.await;
            }
            published += 1;
        }
    }
    deps.client.flush().await.unwrap();

    // The roles carry on: a job after the garbage renders, on both workers' renderers.
    let after = command_job(&farm, "after", "1-6", "echo {frame} > {output}", "");
    wait_event(&farm, &deps.js, &after, EventKind::JobDone).await;
    for frame in 1..=6 {
        assert_eq!(
            output_text(&farm, &after, frame).await,
            format!("{frame}\n")
        );
    }
    // Wait out the garbage's own deliveries (each disposed of, none redelivered for
    // ever): the task streams end empty of it.
    crate::support::eventually(
        crate::support::PATIENCE,
        Duration::from_millis(250),
        || "garbage tasks are left in TESSERA_TASKS".into(),
        async || {
            let mut stream = deps.js.get_stream(streams::TASKS_STREAM).await.ok()?;
            (stream.info().await.ok()?.state.messages == 0).then_some(())
        },
    )
    .await;
    for (i, role) in farm.roles.iter_mut().enumerate() {
        assert!(role.running(), "role {i} exited\n{}", farm_logs(&farm));
    }
    let logs = farm.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    println!(
        "{published} garbage messages on {} subjects",
        subjects().len()
    );
}

fn farm_logs(farm: &Farm) -> String {
    farm.logs()
}

/// Mutations of `seed`: bytes flipped, inserted, deleted and duplicated, and hostile
/// pieces spliced in.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let n = 1 + rng.below(16);
                let junk = rng.bytes(n);
                data.splice(at..at, junk);
            }
            2 if !data.is_empty() => {
                let end = (at + 1 + rng.below(32)).min(data.len());
                data.drain(at.min(end)..end);
            }
            3 if !data.is_empty() => {
                let from = rng.below(data.len());
                let end = (from + 1 + rng.below(64)).min(data.len());
                let piece = data[from..end].to_vec();
                data.splice(at..at, piece);
            }
            4 => {
                let hostile = HOSTILE[rng.below(HOSTILE.len())].as_bytes().to_vec();
                data.splice(at..at, hostile);
            }
            _ => {
                // A digit run made huge, or a quote dropped in.
                let piece: &[u8] = if rng.below(2) == 0 {
                    b"99999999999999999999"
                } else {
                    b"\""
                };
                data.splice(at..at, piece.iter().copied());
            }
        }
    }
    data
}

/// Runs `parse` on mutations of each seed for `budget`; a panic fails the test, naming
/// the input.
fn fuzz(what: &str, seeds: &[Vec<u8>], budget: Duration, parse: impl Fn(&[u8])) -> usize {
    let mut rng = Rng(0x5eed_0000_0000_0001 ^ what.len() as u64);
    let started = Instant::now();
    let mut cases = 0;
    while started.elapsed() < budget {
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| parse(&input)));
        assert!(
            outcome.is_ok(),
            "{what} panicked on {:?}",
            String::from_utf8_lossy(&input)
        );
        cases += 1;
    }
    cases
}

/// How long each parser is fuzzed: `TESSERA_FUZZ_SECS` (default 3).
fn budget() -> Duration {
    let secs = std::env::var("TESSERA_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

/// The example files whose names end with `suffix`.
fn example_files(suffix: &str) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    let mut dirs = vec![crate::support::examples()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                files.push(std::fs::read(&path).unwrap());
            }
        }
    }
    assert!(!files.is_empty(), "no example *{suffix}");
    files
}

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[test]
fn job_files_and_scenes_fuzzed_for_a_bounded_time_never_panic() {
    use tessera::core::job::{from_toml, from_wire};
    let jobs = example_files("job.toml");
    let job_cases = fuzz("the job-file parser", &jobs, budget(), |bytes| {
        if let Ok(spec) = from_toml(&text(bytes)) {
            let _ = tessera::render::validate(spec);
        }
    });
    let specs: Vec<_> = jobs
        .iter()
        .filter_map(|t| from_toml(&text(t)).ok())
        .collect();
    let json: Vec<Vec<u8>> = specs
        .iter()
        .map(|s| serde_json::to_vec(s).unwrap())
        .collect();
    let msgpack: Vec<Vec<u8>> = specs
        .iter()
        .map(|s| rmp_serde::to_vec_named(s).unwrap())
        .collect();
    let mut wire_cases = 0;
    for (seeds, is_json) in [(&json, true), (&msgpack, false)] {
        wire_cases += fuzz("the submission decoder", seeds, budget() / 2, |bytes| {
            if let Ok(spec) = from_wire(bytes, is_json) {
                let _ = tessera::render::validate(spec);
            }
        });
    }
    let scenes: Vec<Vec<u8>> = example_files(".toml")
        .into_iter()
        .filter(|t| text(t).contains("[camera"))
        .collect();
    let scene_cases = fuzz("the builtin scene parser", &scenes, budget(), |bytes| {
        let _ = tessera::render::builtin::scene::Scene::parse(&text(bytes), None);
    });
    let povs = example_files(".pov");
    let pov_cases = fuzz("the POV-Ray scene checker", &povs, budget(), |bytes| {
        let _ = tessera::render::povray::scan::check("scene.pov", &|name| {
            (name == "scene.pov").then(|| bytes.to_vec())
        });
    });
    println!(
        "fuzzed: {job_cases} job files, {wire_cases} submissions, {scene_cases} builtin scenes, {pov_cases} POV-Ray scenes"
    );
}
