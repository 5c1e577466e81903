//! What the CLI does: submit a job file (validated locally first, scene packaged into the
//! store), wait for a job, report its status, fetch its outputs, cancel it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde::Serialize;

use crate::bus::protocol::{self, Event, EventKind, WorkerInfo};
use crate::bus::{publish, registry, streams};
use crate::config::Deps;
use crate::core::job::{self, Job, JobId, JobSpec, RendererKind};
use crate::core::problem::Invalid;
use crate::core::state::{Counts, JobState};
use crate::lifecycle;
use crate::store::keys;

/// A job file read and checked, ready to submit.
pub struct Prepared {
    /// The spec as it will be sent (id filled in, scene still a local path).
    pub spec: JobSpec,
    /// The validated job.
    pub job: Job,
    /// The scene file on this machine, if any.
    pub scene: Option<PathBuf>,
}

/// Reads and validates a job file without touching the network: every problem is reported
/// with its field. The scene path is resolved against the job file's folder.
pub fn prepare(job_file: &Path) -> Result<Prepared, Invalid> {
    let one = |field: &str, message: String| Invalid::one(field, message);
    let text = std::fs::read_to_string(job_file)
        .map_err(|e| one("(file)", format!("cannot read {}: {e}", job_file.display())))?;
    let mut spec = job::from_toml(&text)?;
    if spec.id.is_none() {
        spec.id = Some(new_job_id());
    }
    let scene = match spec.scene.take() {
        Some(relative) => {
            let base = job_file.parent().unwrap_or(Path::new("."));
            let path = base.join(&relative);
            if !path.is_file() {
                return Err(one("scene", format!("{} is not a file", path.display())));
            }
            Some(path)
        }
        None => None,
    };
    // Validate as the planner will see it: with a manifest in place of the path.
    let mut probe = spec.clone();
    if scene.is_some() {
        probe.scene_manifest = Some(format!("sha256:{}", "0".repeat(64)));
    }
    let job = crate::render::validate(probe)?;
    if let (Some(path), RendererKind::Builtin) = (&scene, job.renderer) {
        crate::render::builtin::Scene::load(path).map_err(|e| one("scene", e.to_string()))?;
    }
    Ok(Prepared { spec, job, scene })
}

/// A fresh job id, `job-<nuid>` in lower case (base 36: 22 characters from a random
/// prefix and a sequence, so two submissions never share one).
pub fn new_job_id() -> String {
    format!("job-{}", nuid::next().to_string().to_lowercase())
}

/// Packages the scene and publishes the submission; returns the job id.
pub async fn submit(deps: &Deps, prepared: Prepared) -> anyhow::Result<JobId> {
    let mut spec = prepared.spec;
    if let Some(scene) = &prepared.scene {
        let hex = crate::store::package::package(&deps.store, scene)
            .await
            .with_context(|| format!("uploading scene {}", scene.display()))?;
        spec.scene_manifest = Some(format!("sha256:{hex}"));
    }
    let id = prepared.job.id.clone();
    publish::submission(&deps.js, &id, &spec).await?;
    Ok(id)
}

/// Waits for the job's final event (`job.done`, `job.failed`, `job.rejected`,
/// `job.canceled`), calling `on_event` for each event on the way. After `tessera retry`,
/// only a final event following the latest `job.retried` counts.
pub async fn wait(
    deps: &Deps,
    job: &JobId,
    mut on_event: impl FnMut(&Event),
) -> anyhow::Result<Event> {
    let generation = deps.ledger.job(job).await?.map_or(0, |(r, _)| r.generation);
    let mut messages = job_events(&deps.js, job.as_str()).await?.messages().await?;
    let mut retries_seen = 0;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| anyhow::anyhow!("reading events: {e}"))?;
        let Ok(event) = protocol::decode::<Event>(&msg.payload) else {
            continue;
        };
        if event.kind == EventKind::JobRetried {
            retries_seen += 1;
        }
        on_event(&event);
        if event.kind.is_final() && retries_seen >= generation {
            return Ok(event);
        }
    }
    anyhow::bail!("the event stream ended before job {job} did")
}

/// Queues a failed or canceled job's failed and canceled tasks again, with fresh attempts.
/// Returns how many tasks were queued.
pub async fn retry(deps: &Deps, id: &JobId) -> anyhow::Result<usize> {
    let (record, _) = deps
        .ledger
        .job(id)
        .await?
        .with_context(|| format!("no job {id}"))?;
    let job = record
        .spec
        .validate()
        .map_err(|e| anyhow::anyhow!("stored job {id}: {e}"))?;
    let (record, changed) = deps
        .ledger
        .update_job(id, |r| {
            if !matches!(r.state, JobState::Failed | JobState::Canceled) {
                return false;
            }
            r.state = JobState::Running;
            r.message = None;
            r.finished_ms = None;
            r.generation += 1;
            true
        })
        .await?;
    if !changed {
        anyhow::bail!(
            "job {id} is {}: only failed or canceled jobs can be retried",
            record.state.as_str()
        );
    }
    let before = deps
        .ledger
        .slots(id, crate::core::plan::task_count(&job))
        .await?;
    let requeued = deps
        .ledger
        .change_all(
            id,
            crate::core::plan::task_count(&job),
            crate::core::state::Change::Requeue,
        )
        .await?;
    let mut event = Event::new(EventKind::JobRetried, id.as_str());
    event.message = Some(format!("{} tasks queued again", requeued.len()));
    publish::event(&deps.js, &event).await?;
    // A task whose dependencies are not done waits: the collector queues it when they are.
    let slots = deps
        .ledger
        .slots(id, crate::core::plan::task_count(&job))
        .await?;
    for index in &requeued {
        let task = crate::core::plan::task(&job, *index);
        let ready = task
            .waits_for
            .iter()
            .all(|&d| slots[d as usize].state() == crate::core::state::TaskState::Done);
        if ready {
            let attempts_before = before[*index as usize].attempt();
            publish::task(&deps.js, &job, &task, record.generation, attempts_before)
                .await?
                .confirmed()
                .await?;
        }
    }
    publish::doorbell(&deps.client, &job.class, job.priority, job.renderer).await;
    Ok(requeued.len())
}

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
    /// Why it failed, was canceled or rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The live workers of the registry, by id.
pub async fn workers(deps: &Deps) -> anyhow::Result<Vec<WorkerInfo>> {
    registry::live_workers(&deps.js).await
}

/// Why a job's queued tasks are not running, if no live worker can take them.
pub fn why_waiting(job: &Job, workers: &[WorkerInfo]) -> Option<String> {
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

/// The job's status; a rejected job reports its rejection.
pub async fn status(deps: &Deps, job: &JobId) -> anyhow::Result<Status> {
    let Some((record, _)) = deps.ledger.job(job).await? else {
        let stream = deps.js.get_stream(streams::EVENTS_STREAM).await?;
        let subject = protocol::event_subject(job.as_str(), EventKind::JobRejected);
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
            });
        }
        anyhow::bail!("no job {job}");
    };
    let tasks = deps.ledger.counts(job, record.tasks).await?;
    let outputs = deps.store.list(&keys::output_prefix(job)).await?;
    let mut message = record.message.clone();
    if !record.state.is_terminal()
        && tasks.queued > 0
        && let Ok(valid) = record.spec.clone().validate()
    {
        message = why_waiting(&valid, &workers(deps).await?).or(message);
    }
    Ok(Status {
        id: job.to_string(),
        name: record.spec.name.clone().unwrap_or_else(|| job.to_string()),
        state: record.state.as_str().into(),
        tasks,
        outputs,
        message,
    })
}

/// Downloads the job's outputs into `dir`, keeping their relative names; returns the files.
pub async fn fetch(deps: &Deps, job: &JobId, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let prefix = keys::output_prefix(job);
    let mut written = Vec::new();
    for key in deps.store.list(&prefix).await? {
        let relative = key.strip_prefix(&prefix).unwrap_or(&key);
        crate::core::paths::check_relative_path(relative)
            .map_err(|e| anyhow::anyhow!("output {e}"))?;
        let bytes = deps.store.get(&key).await?;
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::write(&path, &bytes)
            .await
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Cancels the job: queued tasks purged, running renders stopped, state `canceled`.
pub async fn cancel(deps: &Deps, job: &JobId) -> anyhow::Result<()> {
    let (record, _) = deps
        .ledger
        .job(job)
        .await?
        .with_context(|| format!("no job {job}"))?;
    if record.state.is_terminal() {
        anyhow::bail!("job {job} has already ended ({})", record.state.as_str());
    }
    let job = record
        .spec
        .validate()
        .map_err(|e| anyhow::anyhow!("stored job {job}: {e}"))?;
    lifecycle::end_job(
        deps,
        &job,
        JobState::Canceled,
        Some("canceled by request".into()),
        None,
    )
    .await
}

/// An ordered consumer of every event of `job` (a subject token), from the first.
async fn job_events(
    js: &jetstream::Context,
    job: &str,
) -> anyhow::Result<consumer::Consumer<consumer::pull::OrderedConfig>> {
    js.get_stream(streams::EVENTS_STREAM)
        .await?
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: protocol::job_events_filter(job),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .with_context(|| format!("watching the events of {job}"))
}

/// The events of a job seen so far, oldest first. `job` is the subject token: a job id,
/// or `_invalid` for rejections of submissions without a usable id.
pub async fn events(js: &jetstream::Context, job: &str) -> anyhow::Result<Vec<Event>> {
    let consumer = job_events(js, job).await?;
    let pending = consumer.cached_info().num_pending;
    let mut out = Vec::new();
    if pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer.messages().await?;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| anyhow::anyhow!("reading events: {e}"))?;
        if let Ok(event) = protocol::decode::<Event>(&msg.payload) {
            out.push(event);
        }
        if msg.info().map(|i| i.pending).unwrap_or(0) == 0 {
            break;
        }
    }
    Ok(out)
}
