//! Configuration shared by every binary: where NATS and the object store are, and the
//! connected handles ([`Deps`]) that services are given.
//!
//! Flags win over environment variables (`NATS_URL`, `TESSERA_STORE`); credentials only ever
//! come from the environment or files and are never logged.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;

use crate::ledger::Ledger;
use crate::storage::Store;
use crate::streams;

/// Flags every binary takes.
#[derive(clap::Args, Clone, Debug)]
pub struct CommonArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub nats: String,
    /// Object store: file:///abs/dir or s3://bucket/prefix (default: ./tessera-data/store).
    #[arg(long, env = "TESSERA_STORE", global = true)]
    pub store: Option<String>,
}

/// The data folder `tessera up` uses by default, and whose store the other commands use
/// when none is given.
pub fn default_data_dir() -> PathBuf {
    std::env::current_dir()
        .unwrap_or_else(|_| PathBuf::from("."))
        .join("tessera-data")
}

/// `file://` URL of a folder.
pub fn file_url(dir: &std::path::Path) -> String {
    let absolute = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(dir)
    };
    format!("file://{}", absolute.display())
}

impl CommonArgs {
    /// The store URL, with the default applied.
    pub fn store_url(&self) -> String {
        self.store
            .clone()
            .unwrap_or_else(|| file_url(&default_data_dir().join("store")))
    }
}

/// Whether a service keeps retrying its first connection (services under compose) or fails
/// at once (CLI commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Fail at once with a clear error.
    FailFast,
    /// Keep trying until the server is there.
    Wait,
}

/// Connects to NATS.
pub async fn connect(
    url: &str,
    name: &str,
    patience: Patience,
) -> anyhow::Result<async_nats::Client> {
    let servers: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(|u| u.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("NATS URL {url:?} is not valid"))?;
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        });
    if patience == Patience::Wait {
        options = options.retry_on_initial_connect();
    }
    options.connect(servers).await.with_context(|| {
        format!(
            "cannot connect to NATS at {url}: is a server running there? `tessera up` starts a local farm"
        )
    })
}

/// Connects to `url`, retrying until it answers or `limit` passes (a server just started).
pub async fn wait_for_nats(url: &str, limit: Duration) -> anyhow::Result<async_nats::Client> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match connect(url, "tessera", Patience::FailFast).await {
            Ok(client) => return Ok(client),
            Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The handles a service runs with.
#[derive(Clone)]
pub struct Deps {
    /// The NATS connection.
    pub client: async_nats::Client,
    /// JetStream on it.
    pub js: jetstream::Context,
    /// The object store.
    pub store: Store,
    /// Job records.
    pub ledger: Ledger,
}

impl Deps {
    /// Connects, applies the JetStream layout and opens the store.
    pub async fn connect(
        common: &CommonArgs,
        name: &str,
        patience: Patience,
    ) -> anyhow::Result<Deps> {
        let store = Store::open(&common.store_url())?;
        let client = connect(&common.nats, name, patience).await?;
        Deps::with_client(client, store).await
    }

    /// Applies the JetStream layout on an existing connection.
    pub async fn with_client(client: async_nats::Client, store: Store) -> anyhow::Result<Deps> {
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .build(client.clone());
        streams::ensure(&js)
            .await
            .context("applying the JetStream layout")?;
        let ledger = Ledger::new(streams::jobs_bucket(&js).await?);
        Ok(Deps {
            client,
            js,
            store,
            ledger,
        })
    }
}

/// A worker's flags (also taken by `tessera up` for its workers).
#[derive(clap::Args, Clone, Debug)]
pub struct WorkerArgs {
    /// Worker id (default: host name plus a random suffix).
    #[arg(long, env = "TESSERA_WORKER_ID")]
    pub id: Option<String>,
    /// Hardware classes served, in preference order, comma-separated.
    #[arg(
        long,
        env = "TESSERA_CLASS",
        default_value = "cpu",
        value_delimiter = ','
    )]
    pub class: Vec<String>,
    /// Tasks run at once.
    #[arg(long, env = "TESSERA_SLOTS", default_value_t = 1)]
    pub slots: usize,
    /// Threads per slot (0: the machine's cores divided among the slots).
    #[arg(long, env = "TESSERA_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Local cache of scene files (default: a folder in the system's temp dir).
    #[arg(long, env = "TESSERA_CACHE")]
    pub cache: Option<PathBuf>,
    /// Renderers to run, comma-separated (default: every one this build has).
    #[arg(long, env = "TESSERA_RENDERERS", value_delimiter = ',')]
    pub renderers: Vec<String>,
    /// Ack deadline of the task consumers, e.g. "5s" (default: streams/consumer-tasks.json).
    #[arg(long, env = "TESSERA_ACK_WAIT")]
    pub ack_wait: Option<String>,
    /// Time renders get to finish after SIGTERM before their tasks are handed back.
    #[arg(long, env = "TESSERA_GRACE", default_value = "30s")]
    pub grace: String,
    /// How often an idle slot polls when no doorbell rings.
    #[arg(long, default_value = "500ms")]
    pub idle_poll: String,
    /// Allow the `command` renderer (runs programs named by jobs: only on trusted farms).
    #[arg(long, env = "TESSERA_ALLOW_COMMAND")]
    pub allow_command: bool,
    /// Deliveries after which JetStream gives up on a task (default: streams/consumer-tasks.json).
    #[arg(long, env = "TESSERA_MAX_DELIVER")]
    pub max_deliver: Option<i64>,
}

fn duration(flag: &str, text: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("--{flag} {text:?} is not a duration such as \"5s\""))
}

impl TryFrom<&WorkerArgs> for crate::worker::WorkerConfig {
    type Error = anyhow::Error;

    fn try_from(args: &WorkerArgs) -> anyhow::Result<Self> {
        use crate::job::{Class, RendererKind};
        let classes = args
            .class
            .iter()
            .map(|c| Class::parse(c.trim()).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("--class")?;
        if classes.is_empty() {
            anyhow::bail!("--class needs at least one class");
        }
        if args.slots == 0 || args.slots > 256 {
            anyhow::bail!("--slots must be from 1 to 256");
        }
        let available = crate::render::available();
        let renderers = if args.renderers.is_empty() {
            available
                .into_iter()
                .filter(|r| *r != RendererKind::Command || args.allow_command)
                .collect()
        } else {
            args.renderers
                .iter()
                .map(|name| {
                    let kind = RendererKind::parse(name.trim())
                        .with_context(|| format!("--renderers: {name:?} is not a renderer"))?;
                    if !available.contains(&kind) {
                        anyhow::bail!("--renderers: {kind} is not available in this build");
                    }
                    if kind == RendererKind::Command && !args.allow_command {
                        anyhow::bail!("--renderers: command runs programs named by jobs; start the worker with --allow-command to allow it");
                    }
                    Ok(kind)
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if args.threads == 0 {
            (cores / args.slots).max(1)
        } else {
            args.threads
        };
        let ack_wait = match &args.ack_wait {
            Some(text) => duration("ack-wait", text)?,
            None => crate::streams::default_task_ack_wait(),
        };
        if ack_wait < Duration::from_secs(1) {
            anyhow::bail!("--ack-wait must be at least 1s");
        }
        let id = args.id.clone().unwrap_or_else(|| {
            format!(
                "{}-{:04x}",
                crate::farm::hostname(),
                std::process::id() & 0xffff
            )
        });
        if !crate::job::is_token(&id, 64, true) {
            anyhow::bail!("--id {id:?}: use 1 to 64 of letters, digits, '_' and '-'");
        }
        Ok(crate::worker::WorkerConfig {
            id,
            classes,
            slots: args.slots,
            threads,
            cache_dir: args
                .cache
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("tessera-cache")),
            renderers,
            ack_wait,
            grace: duration("grace", &args.grace)?,
            idle_poll: duration("idle-poll", &args.idle_poll)?,
            max_deliver: match args.max_deliver {
                Some(n) if n < 2 => anyhow::bail!("--max-deliver must be at least 2"),
                other => other,
            },
        })
    }
}
