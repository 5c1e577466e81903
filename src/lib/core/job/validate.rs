//! Validation of a [`JobSpec`] into a [`Job`] whose every field is known to be usable.
//!
//! Every problem is reported at once, each naming its field (`frames.range`,
//! `image.width`, …), so a user fixes a job file in one round. The renderer's own rules
//! (its settings, its layer names) are checked by the renderer: see `render::validate`.
//! Validation is deterministic: a spec without an id is refused here, and callers that
//! accept one without (the CLI, the planner) fill it in first. The checks of each part
//! are in `sections`; this module puts their results together.

use std::time::Duration;

use super::JOB_SCHEMA;
use super::after;
use super::composite::{self, Composite};
use super::outputs::{self, Outputs};
use super::sections;
use super::spec::JobSpec;
use super::vocab::{Blend, Class, FailurePolicy, ImageFormat, JobId, Priority, RendererKind};
use crate::core::frames::FrameRange;
use crate::core::order::FrameOrder;
use crate::core::problem::{Invalid, Problems};

pub use sections::DEFAULT_TARGET_TASK_TIME;

/// The validated `[image]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// File format.
    pub format: ImageFormat,
    /// Bits per channel for PNG (8 or 16).
    pub depth: u8,
}

/// The validated `[tiles]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiles {
    /// Tiles across.
    pub columns: u32,
    /// Tiles down.
    pub rows: u32,
    /// Pixels past each inner edge.
    pub overscan: u32,
    /// What stitching does with overscan.
    pub blend: Blend,
}

/// The validated `[[layers]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Layer name.
    pub name: String,
    /// Indices (into the job's layers) of layers this one waits for.
    pub after: Vec<usize>,
}

/// The validated `[retry]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts per task, counting the first.
    pub max_attempts: u32,
    /// Per-attempt time limit.
    pub timeout: Option<Duration>,
    /// What a task failed for good does to the job.
    pub on_failure: FailurePolicy,
    /// Hang detection: silence longer than this fails the attempt.
    pub stall: Option<Duration>,
}

/// A job whose every field has been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The id.
    pub id: JobId,
    /// Display name.
    pub name: String,
    /// Queue priority.
    pub priority: Priority,
    /// Hardware class.
    pub class: Class,
    /// Renderer.
    pub renderer: RendererKind,
    /// The scene manifest's hex digest, if the job has a scene.
    pub scene_manifest: Option<String>,
    /// Image size and format.
    pub image: Image,
    /// Frames to render.
    pub frames: FrameRange,
    /// Frames per task (1 with `chunk = "auto"`, whose tasks are bundled as they are
    /// queued).
    pub chunk: u32,
    /// `chunk = "auto"`: the time a bundle of its tasks should take.
    pub auto_chunk: Option<Duration>,
    /// The order its frames are queued in.
    pub order: FrameOrder,
    /// Tile segmentation.
    pub tiles: Option<Tiles>,
    /// Layer segmentation (empty: one unnamed layer).
    pub layers: Vec<Layer>,
    /// How the layers are composited into one more frame output, if they are.
    pub composite: Option<Composite>,
    /// The sequence outputs and their post-processing.
    pub outputs: Outputs,
    /// The name its outputs are published under, if it has one.
    pub output: Option<String>,
    /// Its version of that name: set by the planner when it records the job.
    pub version: Option<u32>,
    /// The jobs that must be done before this one is queued.
    pub after: Vec<JobId>,
    /// The job whose frame N each frame N of this one waits for.
    pub after_frames: Option<JobId>,
    /// The jobs that run after this one frame by frame, as far as they are known: set from
    /// its record.
    pub frame_waiters: Vec<JobId>,
    /// Attempts and timeouts.
    pub retry: Retry,
    /// Renderer settings.
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Whether raw task outputs stay after their frame is assembled.
    pub keep_parts: bool,
    /// Its share of the queue against jobs of the same priority (1 by default).
    pub weight: u32,
    /// Most of its tasks running at once.
    pub max_workers: Option<u32>,
    /// The limits each of its tasks holds a token of.
    pub limits: Vec<String>,
    /// The spec this was validated from, with the id filled in (stored in the job record).
    pub spec: JobSpec,
    /// Which submission of this id the job is: set by the planner when it records the job
    /// (empty before). Task messages and their `Nats-Msg-Id`s carry it, so that nothing of
    /// a deleted job — a late event, a deduplicated message id — is taken for a new job
    /// submitted under the same id.
    pub incarnation: String,
    /// The job's window on its queue (see [`Window`](crate::core::state::Window)): set by
    /// the planner when it records the job; 0 when every ready task was queued at once.
    pub window: u32,
    /// Whether the job is suspended (`tessera suspend`): set from its record.
    pub suspended: bool,
}
impl JobSpec {
    /// Validates the spec. Every problem is reported, each naming its field.
    pub fn validate(mut self) -> Result<Job, Invalid> {
        let mut errors = Problems::default();
        sections::schema(self.schema, &mut errors);
        let id = sections::id(self.id.as_deref(), &mut errors);
        let after = after::validate(&self.after, id.as_ref(), &mut errors);
        let after_frames = after::validate_frames(
            self.after_frames.as_deref(),
            id.as_ref(),
            &after,
            &mut errors,
        );
        let name = sections::name(self.name.as_deref(), self.id.as_deref(), &mut errors);
        let (priority, class, renderer) = sections::queue(&self, &mut errors);
        let scene_manifest = sections::scene(&self, renderer, &mut errors);
        let image = sections::image(self.image.as_ref(), &mut errors);
        let framing = sections::frames(&self, &mut errors);
        let tiles = self
            .tiles
            .as_ref()
            .and_then(|t| sections::tiles(t, image, &mut errors));
        let layers = sections::layers(&self.layers, &mut errors);
        let composite = self.composite.as_ref();
        let composite =
            composite::validate(composite, &layers, renderer, image.format, &mut errors);
        let has_scene = self.scene_manifest.is_some() || self.scene.is_some();
        let unchecked = renderer == RendererKind::Command
            && self.settings.get("check_outputs") == Some(&serde_json::Value::Bool(false));
        let known = (has_scene, unchecked);
        let frame_count = framing.frames.len();
        let outputs = outputs::validate(
            self.outputs.as_ref(),
            frame_count,
            renderer,
            known,
            &mut errors,
        );
        let output = outputs::validate_name(self.output.as_deref(), &mut errors);
        let retry = sections::retry(self.retry.as_ref(), &mut errors);
        sections::size(image, tiles, &framing, &layers, &mut errors);
        let weight = sections::sharing(&self, &mut errors);

        let Some(id) = id else {
            return Err(errors
                .into_result(())
                .expect_err("a missing or bad id is a problem"));
        };
        errors.into_result(())?;
        self.schema = Some(JOB_SCHEMA);
        let sections::Framing {
            frames,
            chunk,
            auto_chunk,
            order,
        } = framing;
        Ok(Job {
            id,
            name,
            priority,
            class,
            renderer,
            scene_manifest,
            image,
            frames,
            chunk,
            auto_chunk,
            order,
            tiles,
            layers,
            composite,
            outputs,
            output,
            version: None,
            after,
            after_frames,
            frame_waiters: Vec::new(),
            retry,
            settings: self.settings.clone(),
            keep_parts: self.keep_parts.unwrap_or(false),
            weight,
            max_workers: self.max_workers,
            limits: self.limits.clone(),
            spec: self,
            incarnation: String::new(),
            window: 0,
            suspended: false,
        })
    }
}
