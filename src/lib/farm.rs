//! `tessera up`: a whole local farm in one process tree — a private `nats-server -js` child
//! on loopback with its data in `DATA/nats`, a `file://` store in `DATA/store`, and a
//! planner, a collector and N workers as tasks of this process.
//!
//! The nats-server child is started with a parent-death signal, so it never outlives the
//! farm, even when the farm is killed with SIGKILL.

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
    /// NATS port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Worker settings shared by all workers (id and cache are set per worker).
    pub worker: WorkerConfig,
}

/// Finds `program` on PATH.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Starts `nats-server -js` on 127.0.0.1:`port` with its store in `dir`.
pub fn start_nats(dir: &Path, port: u16) -> anyhow::Result<Child> {
    let binary = find_on_path("nats-server").context(
        "nats-server was not found on PATH: install it (Debian/Ubuntu: `sudo apt-get install -y nats-server`) and try again",
    )?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut command = Command::new(binary);
    command
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    process::die_with_parent(&mut command, libc::SIGTERM);
    command.spawn().context("starting nats-server")
}

/// Runs the farm until `shutdown`; `ready` is called once it is up, with the NATS URL and
/// the store URL.
pub async fn up(
    config: FarmConfig,
    shutdown: CancellationToken,
    ready: impl FnOnce(&str, &str),
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
    let mut nats = start_nats(&data.join("nats"), port)?;
    let url = format!("nats://127.0.0.1:{port}");
    let client = tokio::select! {
        result = crate::config::wait_for_nats(&url, Duration::from_secs(15)) => result?,
        status = nats.wait() => anyhow::bail!("nats-server exited at start ({}); is {} writable?", status?, data.display()),
    };
    let store_url = file_url(&data.join("store"));
    let store = Store::open(&store_url)?;
    let deps = Deps::with_client(client, store).await?;

    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    spawn_role(
        &tracker,
        &stop,
        "planner",
        crate::roles::planner::run(deps.clone(), stop.child_token()),
    );
    spawn_role(
        &tracker,
        &stop,
        "collector",
        crate::roles::collector::run(deps.clone(), stop.child_token()),
    );
    let host = hostname();
    for i in 0..config.workers {
        let worker = WorkerConfig {
            id: format!("{host}-local-{i}"),
            cache_dir: data.join("cache"),
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
    ready(&url, &store_url);

    tokio::select! {
        () = shutdown.cancelled() => {}
        () = stop.cancelled() => {}
        status = nats.wait() => tracing::error!(status = ?status.ok(), "nats-server exited"),
    }
    stop.cancel();
    let grace = config.worker.grace + Duration::from_secs(5);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("roles did not stop in time");
    }
    if let Some(pid) = nats.id() {
        process::signal(pid, libc::SIGTERM);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), nats.wait()).await;
    tracing::info!("farm stopped");
    Ok(())
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
