//! Applying the JetStream layout of [`streams`](super::streams): every stream and bucket
//! created with the replicas asked for, or compared with what exists and updated only when
//! it differs. A bucket is applied as the stream that keeps it, with direct gets off when
//! it is replicated: every read of a replicated bucket then comes from its stream's leader,
//! never from a replica that lags behind a compare-and-swap just made.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv, stream};

use super::streams::{bucket_configs, retried, stream_configs};

/// How many copies of each stream and bucket JetStream keeps, each on its own server of a
/// cluster (`--replicas`, `TESSERA_REPLICAS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replicas {
    /// Keep what exists; create with [`CLUSTER_REPLICAS`] on a cluster, 1 on a single
    /// server. Every role starts with this unless told otherwise, so that a role started
    /// without the setting never scales a farm's streams down.
    #[default]
    Auto,
    /// Exactly this many (1 to 5), scaling existing streams and buckets to it.
    Exactly(usize),
}

/// The replicas [`Replicas::Auto`] creates on a cluster: a quorum survives one server lost.
pub const CLUSTER_REPLICAS: usize = 3;

impl Replicas {
    /// The count for a stream that has `existing` replicas (`None`: not created yet).
    pub fn count(self, existing: Option<usize>, clustered: bool) -> usize {
        match (self, existing) {
            (Replicas::Exactly(n), _) => n,
            (Replicas::Auto, Some(n)) => n.max(1),
            (Replicas::Auto, None) if clustered => CLUSTER_REPLICAS,
            (Replicas::Auto, None) => 1,
        }
    }
}

impl std::str::FromStr for Replicas {
    type Err = String;

    fn from_str(text: &str) -> Result<Replicas, String> {
        match text.trim() {
            "auto" => Ok(Replicas::Auto),
            n => match n.parse::<usize>() {
                Ok(n @ 1..=5) => Ok(Replicas::Exactly(n)),
                _ => Err(format!(
                    "{text:?} is neither \"auto\" nor a replica count from 1 to 5 (JetStream keeps at most 5)"
                )),
            },
        }
    }
}

impl std::fmt::Display for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replicas::Auto => f.write_str("auto"),
            Replicas::Exactly(n) => write!(f, "{n}"),
        }
    }
}

/// Creates or updates every stream and bucket, each with the replicas `replicas` asks for
/// (`clustered`: whether the server is in a cluster). Safe to run from many processes at
/// once: losing a creation race to another role is not an error.
///
/// A bucket is applied as the stream it is kept in (see `bucket_stream`), so that one
/// path creates, compares and updates both, and an unchanged bucket is not rewritten.
/// Returns what it created or updated, a line each ("created stream X: 3 replicas").
pub async fn ensure(
    js: &jetstream::Context,
    replicas: Replicas,
    clustered: bool,
) -> anyhow::Result<Vec<String>> {
    if let (Replicas::Exactly(n @ 2..), false) = (replicas, clustered) {
        anyhow::bail!(
            "{n} replicas need a NATS cluster of at least {n} servers, and this server runs alone: use --replicas 1 (or auto), or connect to a cluster"
        );
    }
    let mut applied = Vec::new();
    let buckets = bucket_configs()?.into_iter().map(|c| bucket_stream(&c));
    for config in stream_configs()?.into_iter().chain(buckets) {
        let name = config.name.clone();
        let what = match name.strip_prefix("KV_") {
            Some(bucket) => format!("bucket {bucket}"),
            None => format!("stream {name}"),
        };
        let done = retried(&name, || {
            apply_stream(js, &config, &what, replicas, clustered)
        });
        applied.extend(done.await?);
    }
    Ok(applied)
}

/// Creates stream `config` with the replicas `replicas` counts for it, or updates it when
/// what exists differs; says which it did (`None`: it was as it should be).
async fn apply_stream(
    js: &jetstream::Context,
    config: &stream::Config,
    what: &str,
    replicas: Replicas,
    clustered: bool,
) -> anyhow::Result<Option<String>> {
    let with = |n: usize| {
        let mut config = config.clone();
        config.num_replicas = n;
        // Reads of a replicated bucket go to its stream's leader: a direct get may be
        // answered by any replica, and one that lags returns a value already replaced.
        if is_bucket(&config) {
            config.allow_direct = n == 1;
        }
        config
    };
    match js.get_stream(&config.name).await {
        Ok(mut existing) => {
            let current = existing.info().await?.config.clone();
            let wanted = with(replicas.count(Some(current.num_replicas), clustered));
            if same_stream(&current, &wanted) {
                return Ok(None);
            }
            let n = wanted.num_replicas;
            js.update_stream(wanted)
                .await
                .with_context(|| updating(what, n))?;
            Ok(Some(format!("updated {what}: {}", in_replicas(n))))
        }
        Err(_) => {
            let create = |n: usize| {
                let config = with(n);
                async move {
                    js.create_stream(config)
                        .await
                        .map(|_| n)
                        .with_context(|| updating(what, n))
                }
            };
            let wanted = replicas.count(None, clustered);
            let n = with_fewer_if_auto(replicas, wanted, what, create).await?;
            Ok(Some(format!("created {what}: {}", in_replicas(n))))
        }
    }
}

fn in_replicas(n: usize) -> String {
    match n {
        1 => "1 replica".to_string(),
        n => format!("{n} replicas"),
    }
}

/// The server's default duplicate window (shorter when the messages live less long).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Whether `config` is the stream of a KV bucket.
fn is_bucket(config: &stream::Config) -> bool {
    config.name.starts_with("KV_")
}

/// The stream a KV bucket is kept in, as the KV conventions have it (the settings
/// async-nats' `create_key_value` gives it, and that its `kv::Store` relies on): one
/// subject per key, `history` values kept per key, rollups allowed, deletes only through
/// the bucket, writes refused rather than old values dropped when full. Direct gets are
/// allowed here; [`ensure`] turns them off for a replicated bucket.
fn bucket_stream(config: &kv::Config) -> stream::Config {
    stream::Config {
        name: format!("KV_{}", config.bucket),
        description: Some(config.description.clone()),
        subjects: vec![format!("$KV.{}.>", config.bucket)],
        max_messages_per_subject: config.history.max(1),
        max_age: config.max_age,
        // As the server fills them in, so that a bucket as it should be compares equal.
        max_messages: -1,
        max_bytes: -1,
        max_message_size: -1,
        duplicate_window: match config.max_age {
            age if !age.is_zero() && age < DUPLICATE_WINDOW => age,
            _ => DUPLICATE_WINDOW,
        },
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: config.num_replicas.max(1),
        allow_message_ttl: config.limit_markers.is_some(),
        subject_delete_marker_ttl: config.limit_markers,
        ..Default::default()
    }
}

/// Creates with `wanted` replicas; with [`Replicas::Auto`], when the server cannot keep
/// that many (a server that looked clustered and is not, a cluster smaller than
/// [`CLUSTER_REPLICAS`]), with one, saying so. Returns the replicas created.
async fn with_fewer_if_auto<F, Fut>(
    replicas: Replicas,
    wanted: usize,
    name: &str,
    create: F,
) -> anyhow::Result<usize>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    match create(wanted).await {
        Err(e) if replicas == Replicas::Auto && wanted > 1 && too_few_servers(&e) => {
            tracing::warn!(
                name,
                error = format!("{e:#}"),
                "the servers cannot keep {wanted} replicas; creating with 1 (set --replicas)"
            );
            create(1).await
        }
        result => result,
    }
}

/// Whether `e` says the servers are too few for the replicas asked (by its JetStream
/// error code).
fn too_few_servers(e: &anyhow::Error) -> bool {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::CreateStreamErrorKind;
    e.chain()
        .filter_map(|e| e.downcast_ref::<jetstream::context::CreateStreamError>())
        .any(|e| match e.kind() {
            CreateStreamErrorKind::JetStream(e) => matches!(
                e.error_code(),
                ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED | ErrorCode::INSUFFICIENT_RESOURCES
            ),
            _ => false,
        })
}

/// Every stream and bucket of the layout with the replicas it has, in the layout's order.
pub async fn replica_counts(js: &jetstream::Context) -> anyhow::Result<Vec<(String, usize)>> {
    let mut names: Vec<String> = stream_configs()?.into_iter().map(|c| c.name).collect();
    names.extend(
        bucket_configs()?
            .into_iter()
            .map(|c| format!("KV_{}", c.bucket)),
    );
    let mut counts = Vec::new();
    for name in names {
        let mut stream = js
            .get_stream(&name)
            .await
            .with_context(|| format!("reading stream {name}"))?;
        let replicas = stream.info().await?.config.num_replicas.max(1);
        counts.push((name, replicas));
    }
    Ok(counts)
}

fn updating(what: &str, replicas: usize) -> String {
    format!("creating or updating {what} with {replicas} replicas")
}

/// A limit as the server keeps it: 0 (unset) and negative mean no limit.
fn limit(value: i64) -> i64 {
    if value <= 0 { -1 } else { value }
}

/// Whether stream `current`, as the server returns it (defaults filled in), has what
/// `wanted` asks for.
fn same_stream(current: &stream::Config, wanted: &stream::Config) -> bool {
    current.subjects == wanted.subjects
        && current.max_age == wanted.max_age
        && current.duplicate_window == wanted.duplicate_window
        && limit(current.max_messages_per_subject) == limit(wanted.max_messages_per_subject)
        && limit(current.max_message_size.into()) == limit(wanted.max_message_size.into())
        && current.discard == wanted.discard
        && current.allow_atomic_publish == wanted.allow_atomic_publish
        && current.subject_transform == wanted.subject_transform
        && current.num_replicas == wanted.num_replicas
        && current.description == wanted.description
        && current.allow_direct == wanted.allow_direct
        && current.allow_rollup == wanted.allow_rollup
        && current.deny_delete == wanted.deny_delete
        && current.allow_message_ttl == wanted.allow_message_ttl
        && current.subject_delete_marker_ttl == wanted.subject_delete_marker_ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_parsed_and_counted() {
        let parsed: Vec<Result<Replicas, String>> =
            ["auto", "1", " 3 ", "5", "0", "6", "three", ""]
                .iter()
                .map(|t| t.parse())
                .collect();
        assert_eq!(parsed[0], Ok(Replicas::Auto));
        assert_eq!(parsed[1], Ok(Replicas::Exactly(1)));
        assert_eq!(parsed[2], Ok(Replicas::Exactly(3)));
        assert_eq!(parsed[3], Ok(Replicas::Exactly(5)));
        for bad in &parsed[4..] {
            assert!(bad.as_ref().unwrap_err().contains("from 1 to 5"), "{bad:?}");
        }
        // (replicas, existing, clustered) → count
        let table = [
            (Replicas::Auto, None, false, 1),
            (Replicas::Auto, None, true, CLUSTER_REPLICAS),
            (Replicas::Auto, Some(1), true, 1),
            (Replicas::Auto, Some(3), true, 3),
            (Replicas::Auto, Some(0), false, 1),
            (Replicas::Exactly(3), Some(1), true, 3),
            (Replicas::Exactly(1), Some(3), true, 1),
            (Replicas::Exactly(2), None, true, 2),
        ];
        for (replicas, existing, clustered, want) in table {
            assert_eq!(
                replicas.count(existing, clustered),
                want,
                "{replicas} on {existing:?}, clustered {clustered}"
            );
        }
        assert_eq!(Replicas::Exactly(3).to_string(), "3");
    }
}
