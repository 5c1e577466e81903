//! `tessera logs`: a job's renderer logs, stored whole in the object store as each attempt
//! ends, and streamed through NATS (`TESSERA_LOGS`) while it runs, which `--follow` reads
//! from the attempt's first line on.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer;
use futures::StreamExt as _;

use crate::bus::protocol;
use crate::bus::streams;
use crate::config::Deps;
use crate::core::job::JobId;
use crate::core::plan;
use crate::store::keys;

/// Lines of one attempt's log, as streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The task.
    pub task: String,
    /// The attempt.
    pub attempt: u32,
    /// Lines, each ended by `\n` (empty in the end mark).
    pub text: String,
    /// The attempt's log ends here.
    pub end: bool,
}

/// The index of task `task` of `job`.
async fn task_index(deps: &Deps, job: &JobId, task: &str) -> anyhow::Result<u32> {
    let (record, _) = deps
        .ledger
        .job(job)
        .await?
        .with_context(|| format!("no job {job}"))?;
    let valid = record
        .job()
        .map_err(|e| anyhow::anyhow!("job {job} cannot be read back: {e}"))?;
    (0..plan::task_count(&valid))
        .find(|&i| plan::task(&valid, i).id.as_str() == task)
        .with_context(|| format!("job {job} has no task {task}"))
}

/// The stored logs of `job` (of one task, of one attempt), as (`<task>/attempt-<n>.log`,
/// text), in key order.
pub async fn stored(
    deps: &Deps,
    job: &JobId,
    task: Option<&str>,
    attempt: Option<u32>,
) -> anyhow::Result<Vec<(String, String)>> {
    let prefix = keys::logs_prefix(job);
    let mut out = Vec::new();
    for key in deps.store.list(&prefix).await? {
        let name = key.strip_prefix(&prefix).unwrap_or(&key).to_string();
        let (of_task, file) = name.rsplit_once('/').unwrap_or(("", &name));
        if task.is_some_and(|t| t != of_task)
            || attempt.is_some_and(|a| file != format!("attempt-{a}.log"))
        {
            continue;
        }
        let text = deps
            .store
            .get(&key)
            .await
            .with_context(|| format!("reading {key}"))?;
        out.push((name, String::from_utf8_lossy(&text).into_owned()));
    }
    Ok(out)
}

/// The attempts of task `task` of `job` whose logs are stored.
pub async fn stored_names(deps: &Deps, job: &JobId, task: &str) -> anyhow::Result<Vec<u32>> {
    let prefix = format!("{}{task}/", keys::logs_prefix(job));
    Ok(deps
        .store
        .list(&prefix)
        .await?
        .iter()
        .filter_map(|key| {
            key.strip_prefix(&prefix)?
                .strip_prefix("attempt-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect())
}

/// How long a follow waits with nothing new before it looks whether what it follows ended.
const QUIET: Duration = Duration::from_millis(500);

/// Follows the logs of `job` (of one task, of one attempt) as they are written, from the
/// first line the stream keeps, calling `on` for each chunk; returns once what it follows
/// has ended: the attempt's end mark, the task or the job ended (and nothing more came).
pub async fn follow(
    deps: &Deps,
    job: &JobId,
    task: Option<&str>,
    attempt: Option<u32>,
    mut on: impl FnMut(&Chunk),
) -> anyhow::Result<()> {
    let index = match task {
        Some(task) => Some(task_index(deps, job, task).await?),
        None => None,
    };
    let consumer = deps
        .js
        .get_stream(streams::LOGS_STREAM)
        .await?
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: protocol::log_filter(job, index, attempt),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .with_context(|| format!("following the logs of {job}"))?;
    let mut messages = consumer.messages().await?;
    loop {
        let msg = match tokio::time::timeout(QUIET, messages.next()).await {
            Ok(Some(msg)) => msg.map_err(|e| anyhow::anyhow!("reading the logs of {job}: {e}"))?,
            Ok(None) => anyhow::bail!("the log stream ended before the logs of {job} did"),
            Err(_) => {
                if followed_ended(deps, job, index, attempt).await? {
                    return Ok(());
                }
                continue;
            }
        };
        let Some((at, n)) = protocol::parse_log_subject(&msg.subject) else {
            continue;
        };
        let header = |name: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        let chunk = Chunk {
            task: header(protocol::LOG_TASK_HEADER).unwrap_or_else(|| at.to_string()),
            attempt: n,
            text: String::from_utf8_lossy(&msg.payload).into_owned(),
            end: header(protocol::LOG_END_HEADER).is_some(),
        };
        on(&chunk);
        if chunk.end && attempt.is_some() {
            return Ok(());
        }
    }
}

/// Whether what a follow follows has ended (and was quiet for [`QUIET`]): the job, the
/// task, or the attempt (its task moved past it).
async fn followed_ended(
    deps: &Deps,
    job: &JobId,
    index: Option<u32>,
    attempt: Option<u32>,
) -> anyhow::Result<bool> {
    let Some((record, _)) = deps.ledger.job(job).await? else {
        anyhow::bail!("job {job} is gone");
    };
    if record.state.is_terminal() {
        return Ok(true);
    }
    let Some(index) = index else {
        return Ok(false);
    };
    let slot = deps
        .ledger
        .slots_of(job, [index])
        .await?
        .first()
        .copied()
        .context("the task's slot")?;
    Ok(match attempt {
        Some(n) => slot.attempt() > n || (slot.attempt() == n && slot.state().is_terminal()),
        None => slot.state().is_terminal(),
    })
}
