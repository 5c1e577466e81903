//! The messages that cross NATS: tasks, events, advisories and worker entries. Each
//! carries a `schema` version; optional fields may be absent on the wire.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::SCHEMA;
use super::subjects::event_subject;
use crate::core::job::{Class, ImageFormat, JobId, RendererKind};
use crate::core::plan::TaskId;
use crate::core::problem::{FieldError, ValueError};
use crate::core::tiles::Rect;

/// A JetStream MAX_DELIVERIES advisory (`io.nats.jetstream.advisory.v1.max_deliver`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaxDeliveries {
    /// The stream.
    pub stream: String,
    /// The consumer that gave up.
    pub consumer: String,
    /// The message's sequence in the stream.
    pub stream_seq: u64,
    /// How often it was delivered.
    pub deliveries: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One task, self-contained: a worker needs nothing else to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    /// Schema version.
    pub schema: u32,
    /// The job.
    pub job: JobId,
    /// The task.
    pub task: TaskId,
    /// Position in the job's task list.
    pub index: u32,
    /// Renderer to run.
    pub renderer: RendererKind,
    /// Scene manifest digest (hex), if any.
    #[serde(default)]
    pub scene_manifest: Option<String>,
    /// Frames, ascending.
    pub frames: Vec<u32>,
    /// The job's first and last frame: an animation's clock spans them (POV-Ray's
    /// `+KFI`/`+KFF`). Absent: this task's own first and last.
    #[serde(default)]
    pub sequence: Option<[u32; 2]>,
    /// Full image width.
    pub width: u32,
    /// Full image height.
    pub height: u32,
    /// File format of the outputs.
    pub format: ImageFormat,
    /// Bits per channel (PNG 8 or 16; EXR 32).
    pub depth: u8,
    /// The rectangle to render (tile plus overscan); the whole image when absent.
    #[serde(default)]
    pub region: Option<Rect>,
    /// Layer (pass) name, if the job is layered.
    #[serde(default)]
    pub layer: Option<String>,
    /// Renderer settings.
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Attempts allowed, counting the first.
    pub max_attempts: u32,
    /// Per-attempt limit in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// A renderer silent this long (ms) is taken for hung.
    #[serde(default)]
    pub stall_ms: Option<u64>,
    /// Attempts made on earlier messages of this task (a task handed back is republished;
    /// its attempt number is `attempts_before` plus the delivery count).
    #[serde(default)]
    pub attempts_before: u32,
    /// How often workers that blocklisted the job handed this task back.
    #[serde(default)]
    pub handbacks: u32,
    /// Which submission of the job this task belongs to (see
    /// [`Job::incarnation`](crate::core::job::Job::incarnation)); its events carry it back.
    #[serde(default)]
    pub incarnation: String,
    /// A bundle (`chunk = "auto"`): the tasks it renders at once, each of its own frames,
    /// events and output keys. Empty: the message is task `index` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundle: Vec<Bundled>,
}

/// One task of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundled {
    /// Its index.
    pub index: u32,
    /// Its id.
    pub task: TaskId,
    /// Its frames.
    pub frames: Vec<u32>,
}

/// What happened; the last subject tokens of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// The planner accepted and queued the job.
    #[serde(rename = "job.accepted")]
    JobAccepted,
    /// The planner rejected the job; `reasons` says why.
    #[serde(rename = "job.rejected")]
    JobRejected,
    /// A worker started an attempt.
    #[serde(rename = "task.started")]
    TaskStarted,
    /// A worker reports progress.
    #[serde(rename = "task.progress")]
    TaskProgress,
    /// An attempt succeeded; `outputs` lists its object keys.
    #[serde(rename = "task.done")]
    TaskDone,
    /// An attempt failed and the task will be tried again.
    #[serde(rename = "task.retry")]
    TaskRetry,
    /// The task failed for good.
    #[serde(rename = "task.failed")]
    TaskFailed,
    /// Every task is done and every output assembled.
    #[serde(rename = "job.done")]
    JobDone,
    /// The job ended with failed tasks.
    #[serde(rename = "job.failed")]
    JobFailed,
    /// The job was canceled.
    #[serde(rename = "job.canceled")]
    JobCanceled,
    /// `tessera retry` queued the job's failed tasks again.
    #[serde(rename = "job.retried")]
    JobRetried,
    /// The job was suspended, resumed or given another priority; `message` says which.
    #[serde(rename = "job.changed")]
    JobChanged,
    /// Every frame is in: a collector writes the job's sequence outputs (movie, animation,
    /// contact sheet), then ends it.
    #[serde(rename = "job.encoding")]
    JobEncoding,
}

impl EventKind {
    /// The subject tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::JobAccepted => "job.accepted",
            EventKind::JobRejected => "job.rejected",
            EventKind::TaskStarted => "task.started",
            EventKind::TaskProgress => "task.progress",
            EventKind::TaskDone => "task.done",
            EventKind::TaskRetry => "task.retry",
            EventKind::TaskFailed => "task.failed",
            EventKind::JobDone => "job.done",
            EventKind::JobFailed => "job.failed",
            EventKind::JobCanceled => "job.canceled",
            EventKind::JobRetried => "job.retried",
            EventKind::JobChanged => "job.changed",
            EventKind::JobEncoding => "job.encoding",
        }
    }

    /// Whether the job ends with this event.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EventKind::JobRejected
                | EventKind::JobDone
                | EventKind::JobFailed
                | EventKind::JobCanceled
        )
    }
}

/// Something that happened to a job or task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version.
    pub schema: u32,
    /// What happened.
    pub kind: EventKind,
    /// The job id (or [`INVALID_JOB_TOKEN`](super::INVALID_JOB_TOKEN) for a submission without a readable id).
    pub job: String,
    /// The task, for task events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// The task's index, for task events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The attempt (1 for the first), for task events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The worker, for task events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Object keys of the outputs (`task.done`: the attempt's files; `job.done`: the job's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Object key of the attempt's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// A human-readable explanation (failures, cancels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why a job was rejected, field by field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<FieldError>,
    /// Fraction done, 0 to 1, for progress events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f32>,
    /// Which submission of the job it is about (task events and job ends): the collector
    /// drops a task event of an incarnation that is not the job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<String>,
    /// The bundle the task was rendered in (`chunk = "auto"`), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<TaskId>,
    /// `task.done`: how long each of its frames took to render, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_ms: Option<u64>,
    /// `task.done`: the renderer and its version on the worker (`povray 3.7.0.10`,
    /// `builtin 0.1.0`), for the trace of a published version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renderer_version: Option<String>,
    /// `task.done` of an attempt that succeeded before its start was reported (no
    /// `task.started` was published for it): when it started, in milliseconds since the
    /// Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
}

impl Event {
    /// A bare event of `kind` for `job`, stamped now.
    pub fn new(kind: EventKind, job: &str) -> Event {
        Event {
            schema: SCHEMA,
            kind,
            job: job.to_string(),
            task: None,
            index: None,
            attempt: None,
            worker: None,
            time_ms: now_ms(),
            outputs: Vec::new(),
            log: None,
            message: None,
            reasons: Vec::new(),
            progress: None,
            incarnation: None,
            bundle: None,
            frame_ms: None,
            renderer_version: None,
            started_ms: None,
        }
    }

    /// An event of `kind` about attempt `attempt` of `task`.
    pub fn task(kind: EventKind, task: &TaskMessage, attempt: u32, worker: &str) -> Event {
        Event {
            task: Some(task.task.clone()),
            index: Some(task.index),
            attempt: Some(attempt),
            worker: Some(worker.to_string()),
            incarnation: Some(task.incarnation.clone()),
            ..Event::new(kind, task.job.as_str())
        }
    }

    /// Events of `kind` about attempt `attempt` of every task of `task` (each task of a
    /// bundle, naming the bundle; else the task alone).
    pub fn tasks(kind: EventKind, task: &TaskMessage, attempt: u32, worker: &str) -> Vec<Event> {
        let one = Event::task(kind, task, attempt, worker);
        if task.bundle.is_empty() {
            return vec![one];
        }
        task.bundle
            .iter()
            .map(|b| Event {
                task: Some(b.task.clone()),
                index: Some(b.index),
                bundle: Some(task.task.clone()),
                ..one.clone()
            })
            .collect()
    }

    /// The subject this event is published on.
    pub fn subject(&self) -> String {
        event_subject(&self.job, self.kind)
    }
}

impl TaskMessage {
    /// The message for planned task `plan` of `job`.
    pub fn new(job: &crate::core::job::Job, plan: &crate::core::plan::TaskPlan) -> TaskMessage {
        TaskMessage {
            schema: SCHEMA,
            job: job.id.clone(),
            task: plan.id.clone(),
            index: plan.index,
            renderer: job.renderer,
            scene_manifest: job.scene_manifest.clone(),
            frames: plan.frames.clone(),
            sequence: match (job.frames.frames().first(), job.frames.frames().last()) {
                (Some(&first), Some(&last)) => Some([first, last]),
                _ => None,
            },
            width: job.image.width,
            height: job.image.height,
            format: job.image.format,
            depth: job.image.depth,
            region: plan.tile.map(|t| t.render),
            layer: plan.layer.map(|l| job.layers[l].name.clone()),
            settings: job.settings.clone(),
            max_attempts: job.retry.max_attempts,
            timeout_ms: job.retry.timeout.map(|d| d.as_millis() as u64),
            stall_ms: job.retry.stall.map(|d| d.as_millis() as u64),
            attempts_before: 0,
            handbacks: 0,
            incarnation: job.incarnation.clone(),
            bundle: Vec::new(),
        }
    }

    /// One message for the planned tasks `plans` of `job` (consecutive single frames of a
    /// `chunk = "auto"` job), rendered at once: task id `f0005-0012`, every frame; a
    /// single task is its own message.
    pub fn bundle(
        job: &crate::core::job::Job,
        plans: &[crate::core::plan::TaskPlan],
    ) -> TaskMessage {
        let mut message = TaskMessage::new(job, &plans[0]);
        if plans.len() == 1 {
            return message;
        }
        message.frames = plans
            .iter()
            .flat_map(|p| p.frames.iter().copied())
            .collect();
        let (first, last) = (message.frames[0], message.frames[message.frames.len() - 1]);
        message.task = TaskId(format!("f{first:04}-{last:04}"));
        message.bundle = plans
            .iter()
            .map(|p| Bundled {
                index: p.index,
                task: p.id.clone(),
                frames: p.frames.clone(),
            })
            .collect();
        message
    }

    /// The task of this message that renders `frame` (one of a bundle's, or this one).
    pub fn task_of(&self, frame: u32) -> &TaskId {
        self.bundle
            .iter()
            .find(|b| b.frames.contains(&frame))
            .map_or(&self.task, |b| &b.task)
    }

    /// Checks what a worker relies on, for a message that came off the wire.
    pub fn check(&self) -> Result<(), ValueError> {
        if self.schema != SCHEMA {
            return Err(ValueError::from(format!(
                "task schema {} is not supported",
                self.schema
            )));
        }
        if self.frames.is_empty() {
            return Err(ValueError::from("task has no frames"));
        }
        if let Some([first, last]) = self.sequence
            && (first > last || self.frames.iter().any(|f| !(first..=last).contains(f)))
        {
            return Err(ValueError::from(format!(
                "task sequence {first}-{last} does not hold its frames"
            )));
        }
        if self.width == 0
            || self.height == 0
            || self.width > crate::core::job::MAX_IMAGE_SIDE
            || self.height > crate::core::job::MAX_IMAGE_SIDE
        {
            return Err(ValueError::from(format!(
                "task image {}x{} is out of range",
                self.width, self.height
            )));
        }
        if let Some(r) = self.region
            && (r.width == 0
                || r.height == 0
                || !crate::core::tiles::Rect::full(self.width, self.height).contains(r))
        {
            return Err(ValueError::from(format!(
                "task region {r:?} is not inside the image"
            )));
        }
        let region = self
            .region
            .unwrap_or(crate::core::tiles::Rect::full(self.width, self.height));
        if region.area() > crate::core::job::MAX_TASK_PIXELS {
            return Err(ValueError::from(format!(
                "task region {}x{} is more than one task may render",
                region.width, region.height
            )));
        }
        if let Some(layer) = &self.layer
            && !crate::core::job::is_token(layer, 32, true)
        {
            return Err(ValueError::from(format!(
                "task layer {layer:?} is not a valid name"
            )));
        }
        if !crate::core::job::is_token(self.task.as_str().replace('.', "-").as_str(), 200, true) {
            return Err(ValueError::from(format!(
                "task id {:?} is not valid",
                self.task
            )));
        }
        if let Some(hex) = &self.scene_manifest {
            crate::core::paths::parse_manifest_ref(&format!("sha256:{hex}"))?;
        }
        Ok(())
    }
}

/// A worker's entry in the `tessera-workers` bucket (key: its id): its lease. The worker
/// renews it every [`LEASE_RENEW`] with a lifetime of [`LEASE_TTL`]; when the worker stops
/// renewing (it died, or was cut off), the entry expires and leaves a marker that the
/// collectors watch for: they hand the deliveries it lists back at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Schema version.
    pub schema: u32,
    /// Worker id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Classes served, in preference order.
    pub classes: Vec<Class>,
    /// Renderers it runs.
    pub renderers: Vec<RendererKind>,
    /// The version of each external renderer's program it runs (`povray` → `3.7.0.10`).
    #[serde(default)]
    pub versions: std::collections::BTreeMap<RendererKind, String>,
    /// Tasks it runs at once.
    pub slots: u32,
    /// Running attempts, as `<job>/<task>`.
    pub running: Vec<String>,
    /// How far each running attempt is, 0 to 1 (`progress[i]` is `running[i]`'s).
    #[serde(default)]
    pub progress: Vec<f32>,
    /// The deliveries it holds, so that they can be handed back when its lease expires.
    #[serde(default)]
    pub deliveries: Vec<Delivery>,
    /// Jobs this worker no longer takes (it failed their tasks too often).
    #[serde(default)]
    pub blocklist: Vec<String>,
    /// A burst worker's threshold: it takes work only while this many tasks wait.
    #[serde(default)]
    pub burst: Option<usize>,
    /// Whether it renders bundles (`chunk = "auto"`): a worker from before them would
    /// report only a bundle's first task, so bundles go to a queue only while every live
    /// worker serving it says so.
    #[serde(default)]
    pub bundles: bool,
    /// How fast it renders relative to the farm's usual machine (`--speed`): key tasks go
    /// to the fastest idle workers.
    #[serde(default = "usual_speed")]
    pub speed: f64,
    /// When it started (ms since the epoch).
    pub started_ms: u64,
    /// When it last refreshed this entry.
    pub heartbeat_ms: u64,
}

fn usual_speed() -> f64 {
    1.0
}

/// A task delivery a worker holds: what a collector needs to hand it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The job.
    pub job: JobId,
    /// The task.
    pub task: TaskId,
    /// Its position in the job's task list.
    pub index: u32,
    /// The attempt being made.
    pub attempt: u32,
    /// The subject the task was delivered on (its class, priority and renderer).
    pub subject: String,
    /// The delivery's acknowledgement subject: a negative acknowledgement sent there
    /// makes JetStream deliver the task again at once.
    pub reply: String,
    /// The job's incarnation (see [`TaskMessage::incarnation`]).
    #[serde(default)]
    pub incarnation: String,
}

/// How often a worker renews its lease.
pub const LEASE_RENEW: std::time::Duration = std::time::Duration::from_millis(250);

/// How long a lease lives unless renewed (whole seconds: the server's resolution).
pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(1);
