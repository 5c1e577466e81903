//! Reporting on a job and the farm: `tessera status`, `tessera workers`, `tessera fetch`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use crate::bus::protocol::{self, Event, EventKind, WorkerInfo};
use crate::bus::registry;
use crate::bus::streams::{self, TaskQueue};
use crate::config::Deps;
use crate::core::job::{Job, JobId};
use crate::core::state::Counts;
use crate::core::tally::Tally;
use crate::store::keys;

/// What `tessera status --json` prints.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Status {
    /// Job id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `queued`, `running`, `done`, `failed`, `canceled` (or `rejected`).
    pub state: String,
    /// Task counts.
    pub tasks: Counts,
    /// Object keys of the assembled outputs.
    pub outputs: Vec<String>,
    /// Why it failed, was canceled or rejected, or why its tasks wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Whether it is suspended (`tessera suspend`).
    #[serde(default)]
    pub suspended: bool,
    /// Its window (fair share): how many of its tasks it keeps queued; 0 when every
    /// ready task was queued at once.
    #[serde(default)]
    pub window: u32,
    /// Whether it was planned alone in its queue, with the large window the next job
    /// planned into the queue cuts.
    #[serde(default)]
    pub alone: bool,
    /// The jobs of its `after` not done yet (none of its tasks is queued until then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    /// The job it runs after frame by frame (`after_frames`), and where that one stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_frames: Option<String>,
    /// Its tasks by state (waiting, held and queued apart).
    #[serde(default)]
    pub by_state: Tally,
    /// Its hardware class, priority (as changed by `tessera priority`) and renderer.
    #[serde(default)]
    pub class: String,
    /// See `class`.
    #[serde(default)]
    pub priority: String,
    /// See `class`.
    #[serde(default)]
    pub renderer: String,
    /// When it was accepted, its first task started and it ended (ms since the epoch).
    #[serde(default)]
    pub created_ms: u64,
    /// See `created_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// See `created_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// The folder its outputs are written into (its version's, when it publishes one).
    #[serde(default)]
    pub outputs_folder: String,
    /// Its published version (`shot010/lighting v003`), if it names an output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Attempts that failed, oldest first: retried (`retried: true`) or for good.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
}

/// One failed attempt, from its `task.retry` or `task.failed` event.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Failure {
    /// The task.
    pub task: String,
    /// The attempt that failed.
    pub attempt: u32,
    /// The worker it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Why.
    pub reason: String,
    /// Whether the task was tried again (else it failed for good).
    pub retried: bool,
    /// When (ms since the epoch).
    pub time_ms: u64,
}

impl Failure {
    /// The failure an event reports, if it reports one.
    pub fn of(event: &Event) -> Option<Failure> {
        let retried = match event.kind {
            EventKind::TaskRetry => true,
            EventKind::TaskFailed => false,
            _ => return None,
        };
        Some(Failure {
            task: event.task.as_ref().map_or("?".into(), |t| t.to_string()),
            attempt: event.attempt.unwrap_or(0),
            worker: event.worker.clone(),
            reason: event
                .message
                .clone()
                .unwrap_or_else(|| "no reason given".into()),
            retried,
            time_ms: event.time_ms,
        })
    }
}

/// The failed attempts of `job`, oldest first: its stored `task.retry` and `task.failed`
/// events only, never the rest of its events.
pub async fn failures(deps: &Deps, job: &JobId) -> anyhow::Result<Vec<Failure>> {
    let mut out = Vec::new();
    for kind in [EventKind::TaskRetry, EventKind::TaskFailed] {
        let subject = protocol::stored_event_subject(job.as_str(), kind);
        let events = crate::bus::history::stored(&deps.js, subject).await?;
        out.extend(events.iter().filter_map(Failure::of));
    }
    out.sort_by_key(|f| f.time_ms);
    Ok(out)
}

/// Where job `job` stands, for a job waiting for it.
async fn stands(deps: &Deps, job: &JobId) -> anyhow::Result<String> {
    Ok(match deps.ledger.job(job).await? {
        Some((record, _)) => record.state.as_str().to_string(),
        None => "not submitted yet".into(),
    })
}

/// What a job waiting for `jobs` is waiting for, with where each stands.
async fn waiting_for(deps: &Deps, jobs: &[JobId]) -> anyhow::Result<String> {
    let mut each = Vec::with_capacity(jobs.len());
    for job in jobs {
        each.push(format!("{job} ({})", stands(deps, job).await?));
    }
    Ok(format!(
        "waiting: held until job {} is done",
        each.join(", ")
    ))
}

/// The live workers of the registry, by id.
pub async fn workers(deps: &Deps) -> anyhow::Result<Vec<WorkerInfo>> {
    registry::live_workers(&deps.js).await
}

/// Why a job's queued tasks are not running: its queue is paused, or no live worker can
/// take them.
pub fn why_waiting(job: &Job, workers: &[WorkerInfo], queues: &[TaskQueue]) -> Option<String> {
    let paused = queues.iter().any(|q| {
        q.paused && q.class == job.class && q.priority == job.priority && q.renderer == job.renderer
    });
    if paused {
        return Some(format!(
            "waiting: the {} {} queue is paused; `tessera resume --class {} --priority {}` lets its tasks run",
            job.class, job.priority, job.class, job.priority
        ));
    }
    let able = workers
        .iter()
        .any(|w| w.classes.contains(&job.class) && w.renderers.contains(&job.renderer));
    (!able).then(|| {
        format!(
            "waiting: no live worker of class {} runs the {} renderer; its tasks stay queued until one does",
            job.class, job.renderer
        )
    })
}

/// Why `job`'s queued tasks are not running, if they are not (see [`why_waiting`]); `None`
/// for a job that runs, ended, or is not known yet.
pub async fn why_job_waits(deps: &Deps, job: &JobId) -> anyhow::Result<Option<String>> {
    let Some((record, _)) = deps.ledger.job(job).await? else {
        return Ok(None);
    };
    if record.state.is_terminal() {
        return Ok(None);
    }
    if record.suspended {
        return Ok(Some(format!(
            "waiting: the job is suspended; `tessera resume {job}` queues its tasks again"
        )));
    }
    if !record.waiting_for.is_empty() {
        return Ok(Some(waiting_for(deps, &record.waiting_for).await?));
    }
    let Ok(valid) = record.job() else {
        return Ok(None);
    };
    let tasks = deps.ledger.counts(job, record.tasks).await?;
    if tasks.queued == 0 {
        return Ok(None);
    }
    let queues = streams::task_queues(&deps.js).await?;
    Ok(why_waiting(&valid, &workers(deps).await?, &queues))
}

/// Calls `say` with why `job` waits whenever that changes, checking every [`EXPLAIN_EVERY`]
/// from the start; runs until dropped (beside [`watch`](super::follow::watch)).
pub async fn explain_waits(
    deps: &Deps,
    job: &JobId,
    mut say: impl FnMut(&str),
) -> std::convert::Infallible {
    let mut said: Option<String> = None;
    let mut every = tokio::time::interval(EXPLAIN_EVERY);
    loop {
        every.tick().await;
        match why_job_waits(deps, job).await {
            Ok(reason) if reason != said => {
                if let Some(reason) = &reason {
                    say(reason);
                }
                said = reason;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "checking why the job waits"),
        }
    }
}

/// How often [`explain_waits`] looks.
pub const EXPLAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The job's status; a rejected job reports its rejection.
pub async fn status(deps: &Deps, job: &JobId) -> anyhow::Result<Status> {
    let Some((record, _)) = deps.ledger.job(job).await? else {
        let stream = deps.js.get_stream(streams::EVENTS_STREAM).await?;
        let subject = protocol::stored_event_subject(job.as_str(), EventKind::JobRejected);
        if let Ok(raw) = stream.get_last_raw_message_by_subject(&subject).await
            && let Ok(event) = protocol::decode::<Event>(&raw.payload)
        {
            return Ok(Status {
                id: job.to_string(),
                name: job.to_string(),
                state: "rejected".into(),
                tasks: Counts::default(),
                outputs: Vec::new(),
                message: event.message,
                suspended: false,
                window: 0,
                alone: false,
                waiting_for: Vec::new(),
                after_frames: None,
                by_state: Tally::default(),
                class: String::new(),
                priority: String::new(),
                renderer: String::new(),
                created_ms: event.time_ms,
                started_ms: None,
                finished_ms: Some(event.time_ms),
                outputs_folder: String::new(),
                version: None,
                failures: Vec::new(),
            });
        }
        anyhow::bail!("no job {job}");
    };
    let by_state = deps.ledger.tally(job, record.tasks).await?;
    let tasks = by_state.counts();
    let folder = keys::outputs_folder(job, record.spec.output.as_deref(), record.version);
    let mut outputs = deps.store.list(&folder).await?;
    outputs.retain(|key| !keys::is_version_record(&folder, key));
    let valid = record.job().ok();
    let mut message = record.message.clone();
    let upstream = match record.spec.after_frames.as_deref().map(JobId::parse) {
        Some(Ok(upstream)) => Some(upstream),
        _ => None,
    };
    if record.suspended && !record.state.is_terminal() {
        message = Some(format!(
            "suspended: `tessera resume {job}` queues its {} waiting tasks again",
            tasks.queued
        ));
    } else if !record.state.is_terminal() && !record.waiting_for.is_empty() {
        message = Some(waiting_for(deps, &record.waiting_for).await?);
    } else if let Some(upstream) = upstream.as_ref().filter(|_| !record.state.is_terminal()) {
        message = Some(format!(
            "frame by frame after job {upstream} ({}): each frame is queued once it is done there",
            stands(deps, upstream).await?
        ));
    } else if !record.state.is_terminal()
        && tasks.queued > 0
        && let Some(valid) = &valid
    {
        let queues = streams::task_queues(&deps.js).await?;
        message = why_waiting(valid, &workers(deps).await?, &queues).or(message);
    }
    let [class, priority, renderer] = super::jobs::queue_names(valid.as_ref());
    Ok(Status {
        id: job.to_string(),
        name: record.spec.name.clone().unwrap_or_else(|| job.to_string()),
        state: record.state.as_str().into(),
        tasks,
        outputs,
        message,
        suspended: record.suspended,
        window: record.window,
        alone: record.alone,
        waiting_for: record.waiting_for.iter().map(JobId::to_string).collect(),
        after_frames: upstream.map(|j| j.to_string()),
        by_state,
        class,
        priority,
        renderer,
        created_ms: record.created_ms,
        started_ms: record.started_ms,
        finished_ms: record.finished_ms,
        version: match (&record.spec.output, record.version) {
            (Some(name), Some(number)) => {
                Some(format!("{name} {}", crate::core::version::label(number)))
            }
            _ => None,
        },
        outputs_folder: folder,
        failures: failures(deps, job).await?,
    })
}

/// Downloads the job's outputs into `dir`, keeping their relative names; returns the files.
pub async fn fetch(deps: &Deps, job: &JobId, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let (record, _) = deps
        .ledger
        .job(job)
        .await?
        .with_context(|| format!("no job {job}"))?;
    let prefix = keys::outputs_folder(job, record.spec.output.as_deref(), record.version);
    let mut written = Vec::new();
    for key in deps.store.list(&prefix).await? {
        let relative = key.strip_prefix(&prefix).unwrap_or(&key);
        crate::core::paths::check_relative_path(relative)
            .map_err(|e| anyhow::anyhow!("output {e}"))?;
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        deps.store
            .get_to_file(&key, &path)
            .await
            .with_context(|| format!("downloading {key} to {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
