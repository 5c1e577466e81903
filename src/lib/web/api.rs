//! The dashboard's JSON endpoints: the farm, jobs, a job and its tasks, a task's log,
//! and the actions (cancel, retry, suspend, resume, priority). Bad input (a malformed id,
//! an unknown job or task, an action that does not apply) is answered with a 4xx and
//! `{"error": "…"}` that says what is wrong; nothing is changed.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult, Web, Who};
use crate::bus::streams;
use crate::core::job::{Job, JobId, Priority};
use crate::core::plan;
use crate::core::state::{JobRecord, JobState, TaskState};
use crate::roles::client;

/// A job id from a path, or a 400 naming it.
pub(super) fn job_id(text: &str) -> ApiResult<JobId> {
    JobId::parse(text).map_err(|e| ApiError::bad(format!("job id {text:?}: {e}")))
}

/// A job's record and its validated job, or a 404.
pub(super) async fn planned(web: &Web, id: &JobId) -> ApiResult<(JobRecord, Job)> {
    let (record, _) = web
        .deps
        .ledger
        .job(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let job = record
        .job()
        .map_err(|e| ApiError::conflict(format!("job {id} cannot be read back: {e}")))?;
    Ok((record, job))
}

/// A task index of `job` from a path, or a 400 or 404 naming it.
pub(super) fn task_index(job: &Job, text: &str) -> ApiResult<u32> {
    let index: u32 = text
        .parse()
        .map_err(|_| ApiError::bad(format!("task index {text:?} is not a number")))?;
    let tasks = plan::task_count(job);
    if index >= tasks {
        return Err(ApiError::not_found(format!(
            "job {} has no task {index}: it has {tasks} tasks (0 to {})",
            job.id,
            tasks.saturating_sub(1)
        )));
    }
    Ok(index)
}

/// A worker as the farm page shows it.
#[derive(Debug, Serialize)]
pub(super) struct WorkerView {
    id: String,
    host: String,
    classes: Vec<String>,
    renderers: Vec<String>,
    versions: BTreeMap<String, String>,
    slots: u32,
    /// One per running attempt.
    running: Vec<SlotView>,
    speed: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    burst: Option<usize>,
    blocklist: Vec<String>,
    started_ms: u64,
    heartbeat_ms: u64,
}

/// What one slot runs.
#[derive(Debug, Serialize)]
struct SlotView {
    job: String,
    task: String,
    progress: f32,
}

impl WorkerView {
    fn of(w: crate::bus::protocol::WorkerInfo) -> WorkerView {
        let running = w
            .running
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (job, task) = r.split_once('/').unwrap_or((r, ""));
                SlotView {
                    job: job.into(),
                    task: task.into(),
                    progress: w.progress.get(i).copied().unwrap_or(0.0),
                }
            })
            .collect();
        WorkerView {
            classes: w.classes.iter().map(ToString::to_string).collect(),
            renderers: w.renderers.iter().map(|r| r.as_str().into()).collect(),
            versions: w
                .versions
                .iter()
                .map(|(r, v)| (r.as_str().to_string(), v.clone()))
                .collect(),
            id: w.id,
            host: w.host,
            slots: w.slots,
            running,
            speed: w.speed,
            burst: w.burst,
            blocklist: w.blocklist,
            started_ms: w.started_ms,
            heartbeat_ms: w.heartbeat_ms,
        }
    }
}

/// A task queue with its depth.
#[derive(Debug, Serialize)]
struct QueueView {
    class: String,
    priority: String,
    renderer: String,
    paused: bool,
    pending: u64,
    delivered: u64,
}

/// `GET /api/farm`: the live workers and every task queue.
#[derive(Debug, Serialize)]
pub(super) struct Farm {
    workers: Vec<WorkerView>,
    queues: Vec<QueueView>,
    now_ms: u64,
}

pub(super) async fn farm(State(web): State<Web>) -> ApiResult<Json<Farm>> {
    let (workers, queues) = tokio::try_join!(
        client::workers(&web.deps),
        streams::task_queues(&web.deps.js)
    )?;
    Ok(Json(Farm {
        workers: workers.into_iter().map(WorkerView::of).collect(),
        queues: queues
            .into_iter()
            .map(|q| QueueView {
                class: q.class.to_string(),
                priority: q.priority.to_string(),
                renderer: q.renderer.as_str().into(),
                paused: q.paused,
                pending: q.pending,
                delivered: q.delivered,
            })
            .collect(),
        now_ms: crate::bus::protocol::now_ms(),
    }))
}

/// `GET /api/workers/{id}`: one live worker.
pub(super) async fn worker(
    State(web): State<Web>,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkerView>> {
    if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control() || c == '/') {
        return Err(ApiError::bad(format!(
            "worker id {id:?} is not a worker id"
        )));
    }
    client::workers(&web.deps)
        .await?
        .into_iter()
        .find(|w| w.id == id)
        .map(|w| Json(WorkerView::of(w)))
        .ok_or_else(|| ApiError::not_found(format!("no live worker {id}")))
}

/// The filters of `GET /api/jobs`.
#[derive(Debug, Deserialize)]
pub(super) struct JobsQuery {
    /// Comma-separated states.
    state: Option<String>,
    /// `2h`, `30m`: accepted within this long, or active.
    since: Option<String>,
}

/// `GET /api/jobs`: jobs newest first, as `tessera jobs --json`.
pub(super) async fn jobs(
    State(web): State<Web>,
    Query(query): Query<JobsQuery>,
) -> ApiResult<Json<Vec<client::JobLine>>> {
    let mut filter = client::JobFilter::default();
    for name in query.state.iter().flat_map(|s| s.split(',')) {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        filter.states.push(
            name.parse::<JobState>()
                .map_err(|e| ApiError::bad(format!("state: {e}")))?,
        );
    }
    if let Some(since) = query.since.as_deref().filter(|s| !s.is_empty()) {
        let d = humantime::parse_duration(since)
            .map_err(|e| ApiError::bad(format!("since {since:?}: {e} (say 30m, 2h or 7d)")))?;
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        filter.since_ms = Some(crate::bus::protocol::now_ms().saturating_sub(ms));
    }
    Ok(Json(client::jobs(&web.deps, &filter).await?))
}

/// `GET /api/jobs/{id}`: the job's status with its ETA and the shape of its task grid.
#[derive(Debug, Serialize)]
pub(super) struct JobView {
    #[serde(flatten)]
    status: client::Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    eta_s: Option<f64>,
    /// Whether it is a tiled job (the page shows its mosaic).
    tiled: bool,
    /// Frames in its range.
    frames: u32,
}

pub(super) async fn job(
    State(web): State<Web>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let id = job_id(&id)?;
    let record = web.deps.ledger.job(&id).await?;
    let status = match client::status(&web.deps, &id).await {
        Ok(status) => status,
        // A job with no record is known only if it was rejected.
        Err(_) if record.is_none() => return Err(ApiError::not_found(format!("no job {id}"))),
        Err(e) => return Err(e.into()),
    };
    if record.is_none() && status.state != "rejected" {
        return Err(ApiError::not_found(format!("no job {id}")));
    }
    let job = record.as_ref().and_then(|(r, _)| r.job().ok());
    let eta_s = (!matches!(
        status.state.as_str(),
        "done" | "failed" | "canceled" | "rejected"
    ))
    .then(|| {
        client::jobs::eta_s(
            &status.tasks,
            status.started_ms,
            crate::bus::protocol::now_ms(),
        )
    })
    .flatten();
    Ok(Json(JobView {
        eta_s,
        tiled: job.as_ref().is_some_and(|j| j.tiles.is_some()),
        frames: job.as_ref().map_or(0, |j| j.frames.len() as u32),
        status,
    }))
}

/// `GET /api/jobs/{id}/tasks`: every task's state, one letter each in task order
/// (`w`aiting, `h`eld, `q`ueued, `r`unning, `d`one, `f`ailed, `c`anceled), laid out as rows
/// of frame chunks and columns of layers × tiles.
#[derive(Debug, Serialize)]
pub(super) struct Tasks {
    /// Tasks in all.
    total: u32,
    /// One label per row (its frames).
    rows: Vec<String>,
    /// Layer names (one `""` when the job has none).
    layers: Vec<String>,
    /// Tile grid columns and rows (`[1, 1]` untiled).
    tiles: [u32; 2],
    /// One letter per task.
    states: String,
    /// The attempt each task is at.
    attempts: Vec<u32>,
}

pub(super) async fn tasks(
    State(web): State<Web>,
    Path(id): Path<String>,
) -> ApiResult<Json<Tasks>> {
    let id = job_id(&id)?;
    let (record, job) = planned(&web, &id).await?;
    let slots = web.deps.ledger.slots(&id, record.tasks).await?;
    let per_row = plan::tasks_per_chunk(&job).max(1);
    let total = plan::task_count(&job);
    let rows = (0..total.div_ceil(per_row))
        .map(|chunk| frames_label(&plan::task(&job, chunk * per_row).frames))
        .collect();
    let states = slots
        .iter()
        .map(|s| match s.state() {
            TaskState::Waiting => 'w',
            TaskState::Held => 'h',
            TaskState::Queued => 'q',
            TaskState::Running => 'r',
            TaskState::Done => 'd',
            TaskState::Failed => 'f',
            TaskState::Canceled => 'c',
        })
        .collect();
    Ok(Json(Tasks {
        total,
        rows,
        layers: if job.layers.is_empty() {
            vec![String::new()]
        } else {
            job.layers.iter().map(|l| l.name.clone()).collect()
        },
        tiles: job.tiles.map_or([1, 1], |t| [t.columns, t.rows]),
        states,
        attempts: slots.iter().map(|s| s.attempt()).collect(),
    }))
}

fn frames_label(frames: &[u32]) -> String {
    match (frames.first(), frames.last()) {
        (Some(a), Some(b)) if a != b => format!("{a}-{b}"),
        (Some(a), _) => a.to_string(),
        _ => String::new(),
    }
}

/// `GET /api/jobs/{id}/tasks/{index}`: one task: its id, frames, layer and tile, state,
/// attempt and stored logs.
#[derive(Debug, Serialize)]
pub(super) struct TaskView {
    index: u32,
    id: String,
    frames: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    layer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tile: Option<[u32; 2]>,
    state: TaskState,
    attempt: u32,
    /// Attempts whose logs are stored.
    logs: Vec<u32>,
}

pub(super) async fn task(
    State(web): State<Web>,
    Path((id, index)): Path<(String, String)>,
) -> ApiResult<Json<TaskView>> {
    let id = job_id(&id)?;
    let (_, job) = planned(&web, &id).await?;
    let index = task_index(&job, &index)?;
    let plan = plan::task(&job, index);
    let slot = web.deps.ledger.slots_of(&id, [index]).await?;
    let slot = slot
        .first()
        .copied()
        .ok_or_else(|| ApiError::not_found(format!("task {index} of {id} has no slot yet")))?;
    let mut logs: Vec<u32> = client::logs::stored_names(&web.deps, &id, plan.id.as_str())
        .await?
        .into_iter()
        .collect();
    logs.sort_unstable();
    Ok(Json(TaskView {
        index,
        id: plan.id.to_string(),
        frames: plan.frames.clone(),
        layer: plan.layer.map(|l| job.layers[l].name.clone()),
        tile: plan.tile.map(|t| [t.column, t.row]),
        state: slot.state(),
        attempt: slot.attempt(),
        logs,
    }))
}

/// Which attempt's log.
#[derive(Debug, Deserialize)]
pub(super) struct LogQuery {
    attempt: Option<String>,
}

/// `GET /api/jobs/{id}/tasks/{index}/log[?attempt=N]`: an attempt's stored log (the
/// latest stored one by default), as text.
pub(super) async fn log(
    State(web): State<Web>,
    Path((id, index)): Path<(String, String)>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Response> {
    let id = job_id(&id)?;
    let (_, job) = planned(&web, &id).await?;
    let index = task_index(&job, &index)?;
    let task = plan::task(&job, index).id;
    let attempt = match query.attempt.as_deref() {
        Some(text) => Some(
            text.parse::<u32>()
                .map_err(|_| ApiError::bad(format!("attempt {text:?} is not a number")))?,
        ),
        None => None,
    };
    let mut logs = client::logs::stored(&web.deps, &id, Some(task.as_str()), attempt).await?;
    logs.sort_by_key(|(name, _)| attempt_of(name));
    let (_, text) = logs.pop().ok_or_else(|| {
        ApiError::not_found(match attempt {
            Some(a) => format!("task {task} of {id} has no stored log of attempt {a}"),
            None => format!("task {task} of {id} has no stored log yet"),
        })
    })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

fn attempt_of(name: &str) -> u32 {
    name.rsplit_once("attempt-")
        .and_then(|(_, n)| n.strip_suffix(".log"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The body of `POST /api/jobs/{id}/priority`.
#[derive(Debug, Deserialize, Default)]
pub(super) struct ActBody {
    priority: Option<String>,
}

/// What an action did.
#[derive(Debug, Serialize)]
pub(super) struct Acted {
    job: String,
    action: String,
    message: String,
}

/// `POST /api/jobs/{id}/{cancel|retry|suspend|resume|priority}`. A priority comes as
/// `{"priority": "high"}`. Logged with who did it and from where.
pub(super) async fn act(
    State(web): State<Web>,
    Path((id, action)): Path<(String, String)>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    axum::Extension(Who(who)): axum::Extension<Who>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Acted>> {
    let id = job_id(&id)?;
    let body: ActBody = if body.is_empty() {
        ActBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad(format!("the body is not an action's JSON: {e}")))?
    };
    let known = ["cancel", "retry", "suspend", "resume", "priority"];
    if !known.contains(&action.as_str()) {
        return Err(ApiError::not_found(format!(
            "no action {action:?}: cancel, retry, suspend, resume or priority"
        )));
    }
    let (record, _) = planned(&web, &id).await?;
    let ended = record.state.is_terminal();
    let state = record.state.as_str();
    let deps = &web.deps;
    let message = match action.as_str() {
        "retry" => {
            if !matches!(record.state, JobState::Failed | JobState::Canceled) {
                return Err(ApiError::conflict(format!(
                    "job {id} is {state}: only failed or canceled jobs can be retried"
                )));
            }
            let n = client::retry(deps, &id).await?;
            format!("{n} tasks queued again")
        }
        _ if ended => {
            return Err(ApiError::conflict(format!(
                "job {id} has already ended ({state})"
            )));
        }
        "cancel" => {
            client::cancel(deps, &id).await?;
            "canceled".to_string()
        }
        "suspend" => {
            if record.suspended {
                return Err(ApiError::conflict(format!("job {id} is suspended already")));
            }
            let c = client::suspend(deps, &id).await?;
            format!("suspended: {} queued tasks held", c.withdrawn)
        }
        "resume" => {
            if !record.suspended {
                return Err(ApiError::conflict(format!("job {id} is not suspended")));
            }
            let c = client::resume(deps, &id).await?;
            format!("resumed: {} tasks queued", c.queued)
        }
        _ => {
            let text = body.priority.as_deref().ok_or_else(|| {
                ApiError::bad(
                    "priority: the body needs {\"priority\": \"high\" | \"normal\" | \"low\"}",
                )
            })?;
            let priority = Priority::parse(text).ok_or_else(|| {
                ApiError::bad(format!("priority {text:?} is not one: high, normal or low"))
            })?;
            let c = client::set_priority(deps, &id, priority).await?;
            format!("priority {priority}: {} tasks moved", c.withdrawn)
        }
    };
    tracing::info!(%who, %from, job = %id, %action, result = %message, "dashboard action");
    Ok(Json(Acted {
        job: id.to_string(),
        action,
        message,
    }))
}
