//! The test harness: a real `nats-server -js` on a free loopback port in a temp folder, a
//! `file://` store in a temp folder, and Tessera's roles started as their binaries — all
//! stopped by PID when the guards drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tessera::config::Deps;
use tessera::core::job::JobId;
use tessera::store::{Store, keys};

/// Long enough for a debug build on a loaded two-core machine; tests wait on events, never
/// on time.
pub(crate) const PATIENCE: Duration = Duration::from_secs(90);

mod servers;
mod waiting;

pub(crate) use servers::{Nats, Proc, S3, free_port, start_leaf};
pub(crate) use waiting::{
    attempt_logs, events_of, eventually, exits_within, job_events, stream_messages, tasks_done,
    wait_event, wait_events,
};

/// A farm of separate processes on a private server and store.
pub(crate) struct Farm {
    pub(crate) dir: TempDir,
    pub(crate) nats: Nats,
    /// The other servers when the farm runs on a cluster ([`Farm::on_cluster`]).
    pub(crate) peers: Vec<Nats>,
    pub(crate) store_url: String,
    pub(crate) roles: Vec<Proc>,
    /// Extra environment for every role and CLI run (the S3 settings).
    pub(crate) env: Vec<(String, String)>,
    /// The S3 server, when the store is on one.
    pub s3: Option<S3>,
}

/// With `TESSERA_TEST_KEEP=<dir>`, a failing test's farm folder (store, server data, role
/// logs) is copied into `<dir>` for a post-mortem.
impl Drop for Farm {
    fn drop(&mut self) {
        if let (true, Some(keep)) = (
            std::thread::panicking(),
            std::env::var_os("TESSERA_TEST_KEEP"),
        ) {
            let _ = std::fs::create_dir_all(&keep);
            let _ = Command::new("cp")
                .arg("-r")
                .arg(self.dir.path())
                .arg(&keep)
                .status();
        }
    }
}

impl Farm {
    /// A server and a store, no roles yet.
    pub(crate) fn new() -> Farm {
        Farm::with_server(None)
    }

    /// A farm whose server's configuration also holds `conf`; the farm's `env` must then
    /// carry what connecting needs (`NATS_USER`, `NATS_CA`, …).
    pub(crate) fn with_server(conf: Option<&dyn Fn(&Path) -> String>) -> Farm {
        let dir = tempfile::tempdir().unwrap();
        let nats = Nats::start_with(dir.path(), conf.map(|f| f(dir.path())));
        Farm::around(dir, nats)
    }

    /// A farm on nats-server 2.11.11, older than Tessera's minimum; no roles.
    pub(crate) fn on_old_server() -> Farm {
        let dir = tempfile::tempdir().unwrap();
        let nats = Nats::start_old(dir.path());
        Farm::around(dir, nats)
    }

    fn around(dir: TempDir, nats: Nats) -> Farm {
        let store_url = format!("file://{}", dir.path().join("store").display());
        Farm {
            dir,
            nats,
            peers: Vec::new(),
            store_url,
            roles: Vec::new(),
            env: Vec::new(),
            s3: None,
        }
    }

    /// A store and `size` servers joined as one JetStream cluster, no roles yet; the roles
    /// and the CLI connect to every server and keep three replicas of each stream.
    pub(crate) fn on_cluster(size: usize) -> Farm {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Nats::start_cluster(dir.path(), size);
        let nats = nodes.remove(0);
        let mut farm = Farm::around(dir, nats);
        farm.peers = nodes;
        farm.env.push(("TESSERA_REPLICAS".into(), "3".into()));
        farm
    }

    /// A store and the main site's server of [`Nats::start_hub`] (JetStream domain `hub`,
    /// leaf nodes taken on `leaf_port`), no roles yet.
    pub(crate) fn on_hub(leaf_port: u16) -> Farm {
        let dir = tempfile::tempdir().unwrap();
        let nats = Nats::start_hub(dir.path(), leaf_port);
        Farm::around(dir, nats)
    }

    /// Every server of the farm: its one, or each of its cluster's.
    pub(crate) fn servers(&mut self) -> impl Iterator<Item = &mut Nats> {
        std::iter::once(&mut self.nats).chain(self.peers.iter_mut())
    }

    /// The NATS URL that reaches every server of the farm.
    pub(crate) fn nats_url(&self) -> String {
        std::iter::once(&self.nats)
            .chain(&self.peers)
            .map(Nats::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Like [`Farm::with_workers`], with the store on a real S3 server
    /// (`s3://tessera/farm`).
    pub(crate) async fn on_s3(workers: usize) -> Farm {
        let mut farm = Farm::new();
        let s3 = S3::start(farm.dir.path()).await;
        farm.env = s3.aws();
        farm.store_url = "s3://tessera/farm".into();
        farm.s3 = Some(s3);
        farm.start("tessera-planner", &[]);
        farm.start("tessera-collector", &[]);
        for i in 0..workers {
            farm.start_worker(i, &[]);
        }
        farm
    }

    /// A server, a store, a planner (role 0), a collector (role 1) and `workers` workers
    /// (roles 2…).
    pub(crate) fn with_workers(workers: usize) -> Farm {
        let mut farm = Farm::new();
        farm.start("tessera-planner", &[]);
        farm.start("tessera-collector", &[]);
        for i in 0..workers {
            farm.start_worker(i, &[]);
        }
        farm
    }

    /// Starts a worker with id `w<i>` and extra flags.
    pub(crate) fn start_worker(&mut self, i: usize, extra: &[&str]) -> usize {
        let id = format!("w{i}");
        let cache = self.dir.path().join(format!("cache-{i}"));
        let mut args = vec!["--id", &id, "--threads", "1"];
        let cache = cache.display().to_string();
        args.extend(["--cache", &cache]);
        args.extend(extra);
        self.start("tessera-worker", &args)
    }

    /// Starts worker `w<i>` whose wall clock is `offset` off the machine's (libfaketime's
    /// `faketime`, e.g. "-60s"), running `renderers`; its monotonic clock, which timers
    /// use, is left alone. (Blender hangs under libfaketime: leave it out.)
    pub(crate) fn start_skewed_worker(&mut self, i: usize, offset: &str, renderers: &str) -> usize {
        let id = format!("w{i}");
        let cache = self.dir.path().join(format!("cache-{i}"));
        let mut command = self.command("tessera-worker");
        let worker = std::mem::replace(&mut command, Command::new("faketime"));
        command
            .args(["-f", offset])
            .arg(worker.get_program())
            .args([
                "--id",
                &id,
                "--threads",
                "1",
                "--renderers",
                renderers,
                "--cache",
            ])
            .arg(cache)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .envs(worker.get_envs().filter_map(|(k, v)| Some((k, v?))));
        self.spawn_role("tessera-worker", command)
    }

    /// Starts a role binary; returns its position in `roles`.
    pub(crate) fn start(&mut self, binary: &str, args: &[&str]) -> usize {
        let mut command = self.command(binary);
        command.args(args);
        self.spawn_role(binary, command)
    }

    /// Spawns `command` as a role, its log beside the others; returns its position.
    fn spawn_role(&mut self, binary: &str, mut command: Command) -> usize {
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("{binary}-{}.log", self.roles.len())),
        )
        .unwrap();
        // A wrapper (faketime) forks the role: the pair gets a group of its own, killed
        // whole, or the role would outlive the test.
        let group = command.get_program() == "faketime";
        if group {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        let child = command
            .env(
                "RUST_LOG",
                std::env::var("TESSERA_TEST_LOG").unwrap_or("info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        self.roles.push(Proc { child, group });
        self.roles.len() - 1
    }

    /// A command for one of this package's binaries, with the farm's environment: the one
    /// place that says where a role or the CLI finds NATS, the store and the S3 settings.
    pub(crate) fn command(&self, binary: &str) -> Command {
        let mut command = Command::new(bin(binary));
        command
            .env("NATS_URL", self.nats_url())
            .env("TESSERA_STORE", &self.store_url)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn");
        command
    }

    /// Runs the CLI with this farm's environment.
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        self.command("tessera")
            .args(args)
            .output()
            .expect("running tessera")
    }

    /// Writes job file `<name>.toml`, submits it with the CLI and returns the job id.
    pub(crate) fn submit(&self, name: &str, toml: &str) -> String {
        let file = self.job_file(&format!("{name}.toml"), toml);
        let out = self.cli(&["submit", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "submit {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        last_line(&out)
    }

    /// `tessera wait <job>`: fails the test, with the roles' logs, unless the job ends done
    /// within [`PATIENCE`].
    pub(crate) fn wait_done(&self, job: &str) {
        let mut child = self
            .command("tessera")
            .args(["wait", job])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running tessera");
        let status = exits_within(&mut child, PATIENCE);
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        assert!(
            status.is_some_and(|s| s.success()),
            "job {job} did not end done within {PATIENCE:?}: {stderr}\n{}",
            self.logs()
        );
    }

    /// `tessera status <job> --json`, parsed.
    pub(crate) fn status(&self, job: &str) -> serde_json::Value {
        let out = self.cli(&["status", job, "--json"]);
        assert!(
            out.status.success(),
            "status {job}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Connected handles for assertions.
    pub(crate) async fn deps(&self) -> Deps {
        let client = tessera::config::connect(
            &self.nats_url(),
            "tessera-test",
            tessera::config::Patience::Wait,
        )
        .await
        .unwrap();
        Deps::with_client(
            client,
            Store::open_with(&self.store_url, &self.env).unwrap(),
        )
        .await
        .unwrap()
    }

    /// The roles' logs, for failure messages (their level: `TESSERA_TEST_LOG`, default
    /// `info`).
    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        let mut entries: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                out.push_str(&format!("---- {name}\n"));
                for line in tail.into_iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Writes a job file (and the example scene beside it) into the farm's folder.
    pub(crate) fn job_file(&self, name: &str, toml: &str) -> PathBuf {
        let dir = self.dir.path().join("jobs");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, toml).unwrap();
        path
    }
}

/// The farm most failure tests start from: a planner, a collector and `workers` workers
/// `w0`… that run the command renderer (with `extra` flags), and handles on its server
/// and store.
pub(crate) async fn command_farm(workers: usize, extra: &[&str]) -> (Farm, Deps) {
    let mut farm = Farm::with_workers(0);
    for i in 0..workers {
        let mut args = vec!["--allow-command"];
        args.extend(extra);
        farm.start_worker(i, &args);
    }
    let deps = farm.deps().await;
    (farm, deps)
}

/// The role index of worker `w<i>` in a farm built by [`command_farm`].
pub(crate) fn worker_role(worker: &str) -> usize {
    2 + worker.trim_start_matches('w').parse::<usize>().unwrap()
}

/// Submits a command-renderer job: `script` runs under `sh -c` once per frame; `retry`
/// is the body of its `[retry]` table.
pub(crate) fn command_job(
    farm: &Farm,
    id: &str,
    frames: &str,
    script: &str,
    retry: &str,
) -> String {
    let toml = format!(
        "id = \"{id}\"\nrenderer = \"command\"\n[frames]\nrange = \"{frames}\"\n[retry]\n{retry}\n[settings]\ncheck_outputs = false\ncommand = [\"sh\", \"-c\", {script:?}]\n"
    );
    farm.submit(id, &toml)
}

/// The text of assembled frame `frame` of `job` (command jobs write text files).
pub(crate) async fn output_text(farm: &Farm, job: &str, frame: u32) -> String {
    let key = keys::unversioned_output(
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

/// Path of a binary of this package.
pub(crate) fn bin(name: &str) -> PathBuf {
    match name {
        "tessera" => env!("CARGO_BIN_EXE_tessera").into(),
        "tessera-planner" => env!("CARGO_BIN_EXE_tessera-planner").into(),
        "tessera-worker" => env!("CARGO_BIN_EXE_tessera-worker").into(),
        "tessera-collector" => env!("CARGO_BIN_EXE_tessera-collector").into(),
        other => panic!("no binary {other}"),
    }
}

/// The stdout's last line (the job id after `tessera submit`).
pub(crate) fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The repository's example folder.
pub(crate) fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs a program to the end; fails the test with its output unless it succeeds.
pub(crate) fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes the Blender example's scene at `path` with its script (Blender must be installed).
pub(crate) fn make_blender_scene(path: &Path) {
    run(Command::new("blender")
        .args(["-b", "--factory-startup", "--python"])
        .arg(examples().join("blender/make_scene.py"))
        .arg("--")
        .arg(path));
}
