//! The JetStream layout, loaded from the JSON files in `streams/` (embedded at build time)
//! and applied idempotently by every role at start and by `tessera init` (streams and
//! buckets by [`layout`](super::layout), consumers here, when each is first needed).
//!
//! Each stream file deserialises into async-nats' `stream::Config`; each consumer file into
//! `consumer::pull::Config` plus a `stream` field. `consumer-tasks.json` is a template whose
//! `{class}`, `{priority}` and `{renderer}` are filled per (class, priority, renderer).
//!
//! Each bucket file (`kv-<bucket>.json`) names a KV bucket and its settings.
//!
//! A task consumer that exists is left as it is when its definition matches, and updated
//! otherwise with its pause kept: roles start often, and a restart must neither undo
//! `tessera pause` nor rewrite consumers for nothing.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, kv, stream};

pub use super::layout::{CLUSTER_REPLICAS, Replicas, ensure, replica_counts};
use super::protocol;
use crate::core::job::{Class, JobId, Priority, RendererKind};

/// Job submissions.
pub const JOBS_STREAM: &str = "TESSERA_JOBS";
/// Tasks, one subject per (class, priority, job).
pub const TASKS_STREAM: &str = "TESSERA_TASKS";
/// Events.
pub const EVENTS_STREAM: &str = "TESSERA_EVENTS";
/// Job records and task states.
pub const JOBS_BUCKET: &str = "tessera-jobs";
/// Worker leases (the registry).
pub const WORKERS_BUCKET: &str = "tessera-workers";
/// Collector leases (who shares the event partitions).
pub const COLLECTORS_BUCKET: &str = "tessera-collectors";
/// Limits and their tokens.
pub const LIMITS_BUCKET: &str = "tessera-limits";
/// The KV bucket numbering published versions (`<output name>/v<NNN>` → job id).
pub const VERSIONS_BUCKET: &str = "tessera-versions";
/// The priority group every task pull names (the task consumers' overflow group).
pub const WORKERS_GROUP: &str = "workers";
/// JetStream's MAX_DELIVERIES advisories about tasks, kept until a collector handles them.
pub const ADVISORIES_STREAM: &str = "TESSERA_ADVISORIES";

/// Renderer output streamed while attempts run (`tessera logs --follow`), kept an hour.
pub const LOGS_STREAM: &str = "TESSERA_LOGS";

const STREAM_FILES: [(&str, &str); 5] = [
    (
        "TESSERA_JOBS.json",
        include_str!("../../../streams/TESSERA_JOBS.json"),
    ),
    (
        "TESSERA_TASKS.json",
        include_str!("../../../streams/TESSERA_TASKS.json"),
    ),
    (
        "TESSERA_EVENTS.json",
        include_str!("../../../streams/TESSERA_EVENTS.json"),
    ),
    (
        "TESSERA_ADVISORIES.json",
        include_str!("../../../streams/TESSERA_ADVISORIES.json"),
    ),
    (
        "TESSERA_LOGS.json",
        include_str!("../../../streams/TESSERA_LOGS.json"),
    ),
];
const BUCKET_FILES: [(&str, &str); 5] = [
    (
        "kv-tessera-jobs.json",
        include_str!("../../../streams/kv-tessera-jobs.json"),
    ),
    (
        "kv-tessera-collectors.json",
        include_str!("../../../streams/kv-tessera-collectors.json"),
    ),
    (
        "kv-tessera-workers.json",
        include_str!("../../../streams/kv-tessera-workers.json"),
    ),
    (
        "kv-tessera-limits.json",
        include_str!("../../../streams/kv-tessera-limits.json"),
    ),
    (
        "kv-tessera-versions.json",
        include_str!("../../../streams/kv-tessera-versions.json"),
    ),
];
const PLANNER_CONSUMER: &str = include_str!("../../../streams/consumer-planner.json");
const COLLECTOR_CONSUMER: &str = include_str!("../../../streams/consumer-collector.json");
const TASKS_CONSUMER: &str = include_str!("../../../streams/consumer-tasks.json");
const KEYS_CONSUMER: &str = include_str!("../../../streams/consumer-keys.json");
const ADVISORIES_CONSUMER: &str = include_str!("../../../streams/consumer-advisories.json");

/// The stream definitions, parsed.
pub fn stream_configs() -> anyhow::Result<Vec<stream::Config>> {
    STREAM_FILES
        .iter()
        .map(|(file, text)| {
            serde_json::from_str(text).with_context(|| format!("streams/{file} is malformed"))
        })
        .collect()
}

/// A bucket file: the settings of one KV bucket (durations in nanoseconds, as in the NATS
/// API).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketFile {
    bucket: String,
    description: String,
    history: i64,
    max_age: u64,
    /// Per-key lifetimes allowed, and how long the marker an expiry leaves stays.
    #[serde(default)]
    limit_markers: Option<u64>,
}

/// The bucket definitions, parsed.
pub fn bucket_configs() -> anyhow::Result<Vec<kv::Config>> {
    BUCKET_FILES
        .iter()
        .map(|(file, text)| {
            let file: BucketFile = serde_json::from_str(text)
                .with_context(|| format!("streams/{file} is malformed"))?;
            Ok(kv::Config {
                bucket: file.bucket,
                description: file.description,
                history: file.history,
                max_age: Duration::from_nanos(file.max_age),
                limit_markers: file.limit_markers.map(Duration::from_nanos),
                ..Default::default()
            })
        })
        .collect()
}

/// A consumer definition: the stream it belongs to and its config.
pub fn consumer_config(
    text: &str,
    fill: &[(&str, &str)],
) -> anyhow::Result<(String, consumer::pull::Config)> {
    let mut text = text.to_string();
    for (name, value) in fill {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    let mut value: serde_json::Value =
        serde_json::from_str(&text).context("consumer definition")?;
    let stream = value
        .as_object_mut()
        .and_then(|o| o.remove("stream"))
        .and_then(|s| s.as_str().map(str::to_string))
        .context("a consumer definition needs a \"stream\"")?;
    Ok((
        stream,
        serde_json::from_value(value).context("consumer definition")?,
    ))
}

/// Runs `step` until it succeeds, for about 20 seconds: roles starting together race to
/// create the same things, and a cluster electing a new leader answers nothing for a few
/// seconds.
pub(super) async fn retried<T, F, Fut>(what: &str, step: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    use backon::Retryable as _;
    step.retry(
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(20))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(14),
    )
    .notify(|e, after| {
        tracing::debug!(what, error = format!("{e:#}"), ?after, "retrying");
    })
    .await
}

async fn ensure_consumer(
    js: &jetstream::Context,
    text: &str,
    fill: &[(&str, &str)],
    overrides: Overrides,
) -> anyhow::Result<consumer::PullConsumer> {
    let (stream_name, mut config) = consumer_config(text, fill)?;
    if let Some(ack_wait) = overrides.ack_wait {
        config.ack_wait = ack_wait;
    }
    if let Some(max_deliver) = overrides.max_deliver {
        config.max_deliver = max_deliver;
    }
    let name = config.durable_name.clone().unwrap_or_default();
    retried(&name, || {
        apply_consumer(js, &stream_name, &name, config.clone())
    })
    .await
}

/// Creates consumer `name` on `stream_name` as `config` says, or updates it when it
/// differs (a paused queue stays paused).
async fn apply_consumer(
    js: &jetstream::Context,
    stream_name: &str,
    name: &str,
    mut config: consumer::pull::Config,
) -> anyhow::Result<consumer::PullConsumer> {
    let stream = js
        .get_stream(stream_name)
        .await
        .with_context(|| format!("stream {stream_name} (run `tessera init`?)"))?;
    if let Ok(existing) = stream.get_consumer::<consumer::pull::Config>(name).await {
        // `get_consumer` read the consumer's info already.
        let current = existing.cached_info().config.clone();
        if same_consumer(&current, &config) {
            return Ok(existing);
        }
        // A paused queue stays paused through the update.
        config.pause_until = current.pause_until;
    }
    match stream.create_consumer(config.clone()).await {
        Ok(consumer) => Ok(consumer),
        Err(e)
            if stream_name == TASKS_STREAM
                && super::legacy::remove_legacy_task_consumers(&stream).await? =>
        {
            tracing::warn!(error = %e, "removed task consumers of an older layout; retrying");
            stream
                .create_consumer(config)
                .await
                .with_context(|| format!("creating consumer {name} on {stream_name}"))
        }
        Err(e) => Err(e).with_context(|| format!("creating consumer {name} on {stream_name}")),
    }
}

/// Whether an existing consumer already has the settings a definition asks for (a
/// consumer's config as the server returns it carries more fields, with defaults filled).
fn same_consumer(current: &consumer::Config, wanted: &consumer::pull::Config) -> bool {
    current.filter_subject == wanted.filter_subject
        && current.filter_subjects == wanted.filter_subjects
        && current.ack_wait == wanted.ack_wait
        && current.max_deliver == wanted.max_deliver
        && current.max_ack_pending == wanted.max_ack_pending
        && current.priority_policy == wanted.priority_policy
        && current.priority_groups == wanted.priority_groups
        && current.description == wanted.description
}

/// The planners' durable consumer.
pub async fn planner_consumer(js: &jetstream::Context) -> anyhow::Result<consumer::PullConsumer> {
    ensure_consumer(js, PLANNER_CONSUMER, &[], Overrides::default()).await
}

/// The durable consumer of the events of partition `partition` (one of [`EVENT_PARTITIONS`]).
///
/// [`EVENT_PARTITIONS`]: protocol::EVENT_PARTITIONS
pub async fn collector_consumer(
    js: &jetstream::Context,
    partition: u32,
) -> anyhow::Result<consumer::PullConsumer> {
    let partition = partition.to_string();
    let fill = [("partition", partition.as_str())];
    ensure_consumer(js, COLLECTOR_CONSUMER, &fill, Overrides::default()).await
}

/// Whether the collectors have handled every event of `job`'s partition up to stream
/// sequence `sequence` (false while no collector ever opened the partition).
pub async fn events_handled(
    js: &jetstream::Context,
    job: &JobId,
    sequence: u64,
) -> anyhow::Result<bool> {
    let name = protocol::collector_consumer(protocol::event_partition(job.as_str()));
    let stream = js.get_stream(EVENTS_STREAM).await?;
    Ok(stream
        .consumer_info(&name)
        .await
        .is_ok_and(|info| info.ack_floor.stream_sequence >= sequence))
}

/// The collectors' durable consumer of MAX_DELIVERIES advisories.
pub async fn advisories_consumer(
    js: &jetstream::Context,
) -> anyhow::Result<consumer::PullConsumer> {
    ensure_consumer(js, ADVISORIES_CONSUMER, &[], Overrides::default()).await
}

/// Settings a deployment may change from the consumer files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// Ack deadline.
    pub ack_wait: Option<Duration>,
    /// Deliveries before JetStream gives up.
    pub max_deliver: Option<i64>,
}

/// The workers' durable consumer for (`class`, `priority`, `renderer`), or with `key` the
/// queue's key consumer (its key tasks, in prioritized pulls).
pub async fn task_consumer(
    js: &jetstream::Context,
    class: &Class,
    priority: Priority,
    renderer: RendererKind,
    key: bool,
    overrides: Overrides,
) -> anyhow::Result<consumer::PullConsumer> {
    ensure_consumer(
        js,
        if key { KEYS_CONSUMER } else { TASKS_CONSUMER },
        &[
            ("class", class.as_str()),
            ("priority", priority.as_str()),
            ("renderer", renderer.as_str()),
        ],
        overrides,
    )
    .await
}

/// The task consumers' default ack deadline, from `streams/consumer-tasks.json`.
pub fn default_task_ack_wait() -> Duration {
    consumer_config(
        TASKS_CONSUMER,
        &[
            ("class", "cpu"),
            ("priority", "normal"),
            ("renderer", "noop"),
        ],
    )
    .map(|(_, c)| c.ack_wait)
    .unwrap_or(Duration::from_secs(5))
}

/// The subjects of `stream` that match `filter`, each with its message count: one request
/// however much else the stream holds.
pub async fn subjects(
    stream: &jetstream::stream::Stream,
    filter: &str,
) -> anyhow::Result<Vec<(String, usize)>> {
    use futures::TryStreamExt as _;
    let what = || format!("reading the subjects {filter}");
    let listed = stream.info_with_subjects(filter).await.with_context(what)?;
    listed.try_collect().await.with_context(what)
}

/// Removes every queued task of `job`, whatever its class, priority and renderer.
///
/// The purge is by the job's subjects, `tessera.tasks.*.*.<job>.*`, never per consumer: the
/// job's tasks may sit in several queues, and other jobs' tasks share each queue.
pub async fn purge_job_tasks(js: &jetstream::Context, job: &JobId) -> anyhow::Result<()> {
    js.get_stream(TASKS_STREAM)
        .await?
        .purge()
        .filter(protocol::job_tasks_filter(job))
        .await
        .map_err(|e| anyhow::anyhow!("purging the tasks of {job}: {e}"))?;
    Ok(())
}

/// Removes every event of `job` from the events stream.
pub async fn purge_job_events(js: &jetstream::Context, job: &JobId) -> anyhow::Result<()> {
    js.get_stream(EVENTS_STREAM)
        .await?
        .purge()
        .filter(protocol::stored_job_events_filter(job.as_str()))
        .await
        .map_err(|e| anyhow::anyhow!("purging the events of {job}: {e}"))?;
    Ok(())
}

/// Removes the record and task pages of `job` from the jobs bucket, history and all: a
/// purge of the bucket's stream by subject leaves no delete marker behind.
pub async fn purge_job_records(js: &jetstream::Context, job: &JobId) -> anyhow::Result<()> {
    let stream = js.get_stream(format!("KV_{JOBS_BUCKET}")).await?;
    for subject in protocol::job_record_subjects(JOBS_BUCKET, job) {
        stream
            .purge()
            .filter(subject)
            .await
            .map_err(|e| anyhow::anyhow!("purging the records of {job}: {e}"))?;
    }
    Ok(())
}

/// A task queue: the consumer serving one (class, priority, renderer).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TaskQueue {
    /// Hardware class.
    pub class: Class,
    /// Priority.
    pub priority: Priority,
    /// Renderer.
    pub renderer: RendererKind,
    /// Whether it is paused (`tessera pause`).
    pub paused: bool,
    /// Tasks waiting in it (when it was read).
    pub pending: u64,
    /// Tasks delivered to a worker and not yet acknowledged.
    pub delivered: u64,
}

/// Every task queue that has a consumer, with whether it is paused.
pub async fn task_queues(js: &jetstream::Context) -> anyhow::Result<Vec<TaskQueue>> {
    use futures::TryStreamExt as _;
    let stream = js.get_stream(TASKS_STREAM).await?;
    let infos: Vec<consumer::Info> = stream
        .consumers()
        .try_collect()
        .await
        .context("listing the task queues")?;
    let mut queues: Vec<TaskQueue> = infos
        .iter()
        .filter_map(|info| {
            let (class, priority, renderer) = protocol::parse_task_consumer(&info.name)?;
            Some(TaskQueue {
                class,
                priority,
                renderer,
                paused: info.paused,
                pending: info.num_pending,
                delivered: info.num_ack_pending as u64,
            })
        })
        .collect();
    queues.sort();
    Ok(queues)
}

/// Pauses (or with `pause` false, resumes) the task queues of `class` and `priority`
/// (every one when `None`): queued tasks stay queued, running ones finish, and no worker
/// takes a task from a paused queue. The pause is kept in the consumer's configuration, so
/// it survives restarts of every role and of the server. A named class gets its queues
/// created first, so a queue no worker has opened yet is paused too. Returns the queues
/// changed.
pub async fn pause_task_queues(
    js: &jetstream::Context,
    class: Option<&Class>,
    priority: Option<Priority>,
    pause: bool,
) -> anyhow::Result<Vec<TaskQueue>> {
    if let Some(class) = class {
        let existing = task_queues(js).await?;
        let priorities = priority.map_or(Priority::ALL.to_vec(), |p| vec![p]);
        for p in priorities {
            for renderer in RendererKind::ALL {
                let known = existing
                    .iter()
                    .any(|q| q.class == *class && q.priority == p && q.renderer == renderer);
                if !known {
                    task_consumer(js, class, p, renderer, false, Overrides::default()).await?;
                }
            }
        }
    }
    let stream = js.get_stream(TASKS_STREAM).await?;
    let until = async_nats::datetime::add_std_duration(
        async_nats::datetime::now(),
        Duration::from_secs(100 * 365 * 24 * 3600),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut changed = Vec::new();
    for mut queue in task_queues(js).await? {
        if class.is_some_and(|c| *c != queue.class) || priority.is_some_and(|p| p != queue.priority)
        {
            continue;
        }
        // The queue's key consumer goes with it (created first, so that a worker opening
        // it later finds it paused too).
        let (c, p, r) = (&queue.class, queue.priority, queue.renderer);
        let keys = protocol::key_consumer(c, p, r);
        if stream.consumer_info(&keys).await.is_err() {
            task_consumer(js, c, p, r, true, Overrides::default()).await?;
        }
        for name in [keys, protocol::task_consumer(c, p, r)] {
            let response = if pause {
                stream.pause_consumer(&name, until).await
            } else {
                stream.resume_consumer(&name).await
            };
            let doing = if pause { "pausing" } else { "resuming" };
            response.with_context(|| format!("{doing} queue {name}"))?;
        }
        queue.paused = pause;
        changed.push(queue);
    }
    Ok(changed)
}

/// The job-records bucket.
pub async fn jobs_bucket(js: &jetstream::Context) -> anyhow::Result<kv::Store> {
    js.get_key_value(JOBS_BUCKET)
        .await
        .with_context(|| format!("KV bucket {JOBS_BUCKET} (run `tessera init`?)"))
}

/// The `tessera-collectors` bucket (collector leases).
pub async fn collectors_bucket(js: &jetstream::Context) -> anyhow::Result<kv::Store> {
    js.get_key_value(COLLECTORS_BUCKET)
        .await
        .with_context(|| format!("KV bucket {COLLECTORS_BUCKET} (run `tessera init`?)"))
}

/// The `tessera-versions` bucket.
pub async fn versions_bucket(js: &jetstream::Context) -> anyhow::Result<kv::Store> {
    js.get_key_value(VERSIONS_BUCKET)
        .await
        .with_context(|| format!("KV bucket {VERSIONS_BUCKET} (run `tessera init`?)"))
}

/// The `tessera-workers` bucket.
pub async fn workers_bucket(js: &jetstream::Context) -> anyhow::Result<kv::Store> {
    js.get_key_value(WORKERS_BUCKET)
        .await
        .with_context(|| format!("KV bucket {WORKERS_BUCKET} (run `tessera init`?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_parse() {
        let streams = stream_configs().unwrap();
        assert_eq!(streams.len(), 5);
        // Streamed logs are kept an hour, within a bound, oldest dropped first.
        let logs = &streams[4];
        assert_eq!(logs.name, LOGS_STREAM);
        assert_eq!(logs.max_age, std::time::Duration::from_secs(3600));
        assert_eq!(logs.max_bytes, 1 << 30);
        let buckets = bucket_configs().unwrap();
        assert_eq!(buckets[0].bucket, JOBS_BUCKET);
        assert_eq!(buckets[1].bucket, COLLECTORS_BUCKET);
        assert_eq!(buckets[2].bucket, WORKERS_BUCKET);
        assert_eq!(buckets[3].bucket, LIMITS_BUCKET);
        assert_eq!(buckets[4].bucket, VERSIONS_BUCKET);
        // Leases expire on their own and leave a marker that watchers see.
        assert!(buckets[1].limit_markers.is_some());
        assert!(buckets[2].limit_markers.is_some());
        // Events are stored by partition of the job id.
        let transform = streams[2].subject_transform.as_ref().unwrap();
        assert_eq!(transform.source, protocol::job_events_filter("*"));
        assert_eq!(streams[1].retention, stream::RetentionPolicy::WorkQueue);
        assert!(
            streams[1].allow_atomic_publish,
            "a job's tasks are queued atomically"
        );
        assert_eq!(streams[2].max_age, Duration::from_secs(7 * 24 * 3600));
        let fill = [
            ("class", "gpu"),
            ("priority", "high"),
            ("renderer", "povray"),
        ];
        let (stream, config) = consumer_config(TASKS_CONSUMER, &fill).unwrap();
        assert_eq!(stream, TASKS_STREAM);
        assert_eq!(
            config.durable_name.as_deref(),
            Some("tasks-gpu-high-povray")
        );
        assert_eq!(
            config.filter_subject,
            protocol::task_filter(
                &Class::parse("gpu").unwrap(),
                Priority::High,
                RendererKind::Povray
            )
        );
        // The backstop when no collector watches the leases: long, so progress acks are few.
        assert_eq!(config.ack_wait, Duration::from_secs(30));
        assert_eq!(config.priority_policy, consumer::PriorityPolicy::Overflow);
        assert_eq!(config.priority_groups, [WORKERS_GROUP]);
        let (stream, keys) = consumer_config(KEYS_CONSUMER, &fill).unwrap();
        assert_eq!(stream, TASKS_STREAM);
        assert_eq!(keys.durable_name.as_deref(), Some("keys-gpu-high-povray"));
        let gpu = Class::parse("gpu").unwrap();
        let key_filter = protocol::key_filter(&gpu, Priority::High, RendererKind::Povray);
        assert_eq!(keys.filter_subject, key_filter);
        assert_eq!(keys.priority_policy, consumer::PriorityPolicy::Prioritized);
        assert_eq!(keys.priority_groups, [WORKERS_GROUP]);
        assert_eq!(
            (keys.ack_wait, keys.max_deliver),
            (config.ack_wait, config.max_deliver)
        );
        for text in [PLANNER_CONSUMER, ADVISORIES_CONSUMER] {
            consumer_config(text, &[]).unwrap();
        }
        let (_, config) = consumer_config(COLLECTOR_CONSUMER, &[("partition", "3")]).unwrap();
        assert_eq!(config.durable_name.as_deref(), Some("collector-3"));
        assert_eq!(protocol::collector_consumer(3), "collector-3");
        assert_eq!(config.filter_subject, protocol::partition_events_filter(3));
    }
}
