//! Validation of a [`JobSpec`] into a [`Job`] whose every field is known to be usable.
//!
//! Every problem is reported at once, each naming its field (`frames.range`,
//! `image.width`, …), so a user fixes a job file in one round. The renderer's own rules
//! (its settings, its layer names) are checked by the renderer: see `render::validate`.
//! Validation is deterministic: a spec without an id is refused here, and callers that
//! accept one without (the CLI, the planner) fill it in first.

use std::collections::BTreeSet;
use std::time::Duration;

use super::after;
use super::composite::{self, Composite};
use super::outputs::{self, Outputs};
use super::spec::{ChunkSpec, JobSpec, LayerSpec, TilesSpec};
use super::vocab::{
    Blend, Class, FailurePolicy, ImageFormat, JobId, Priority, RendererKind, is_token,
};
use super::{
    JOB_SCHEMA, MAX_ATTEMPTS, MAX_IMAGE_SIDE, MAX_LAYERS, MAX_TASK_PIXELS, MAX_TASKS, MAX_WEIGHT,
};
use crate::core::frames::FrameRange;
use crate::core::order::FrameOrder;
use crate::core::paths::parse_manifest_ref;
use crate::core::problem::{Invalid, Problems};

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

        if let Some(schema) = self.schema
            && schema != JOB_SCHEMA
        {
            errors.add(
                "schema",
                format!("version {schema} is not supported; this build reads {JOB_SCHEMA}"),
            );
        }

        let id = match &self.id {
            Some(text) => JobId::parse(text).map_err(|e| errors.add("id", e)).ok(),
            None => {
                errors.add(
                    "id",
                    "is missing: `tessera submit` and the planner give a job without one an id",
                );
                None
            }
        };
        let id_text = self.id.clone().unwrap_or_default();
        let after = after::validate(&self.after, id.as_ref(), &mut errors);
        let after_frames = after::validate_frames(
            self.after_frames.as_deref(),
            id.as_ref(),
            &after,
            &mut errors,
        );

        let name = self.name.clone().unwrap_or(id_text);
        if name.chars().count() > 256 {
            errors.add("name", "is longer than 256 characters");
        }
        if name.chars().any(char::is_control) {
            errors.add("name", "holds a control character");
        }

        let priority = match self.priority.as_deref() {
            None => Priority::Normal,
            Some(text) => Priority::parse(text).unwrap_or_else(|| {
                errors.add(
                    "priority",
                    format!("{text:?} is not a priority: use high, normal or low"),
                );
                Priority::Normal
            }),
        };

        let class = match self.class.as_deref() {
            None => Class::cpu(),
            Some(text) => Class::parse(text).unwrap_or_else(|e| {
                errors.add("class", e);
                Class::cpu()
            }),
        };

        let renderer = match self.renderer.as_deref() {
            None => RendererKind::Builtin,
            Some(text) => RendererKind::parse(text).unwrap_or_else(|| {
                errors.add(
                    "renderer",
                    format!(
                        "{text:?} is not a renderer: use builtin, povray, blender, command or noop"
                    ),
                );
                RendererKind::Builtin
            }),
        };

        let scene_manifest = match (&self.scene, &self.scene_manifest) {
            (_, Some(reference)) => parse_manifest_ref(reference)
                .map_err(|e| errors.add("scene_manifest", e))
                .ok(),
            (Some(_), None) => {
                errors.add(
                    "scene",
                    "is a path on the submitting machine: submit with `tessera submit` to upload it, or give scene_manifest",
                );
                None
            }
            (None, None) => None,
        };
        if matches!(renderer, RendererKind::Povray | RendererKind::Blender)
            && scene_manifest.is_none()
            && self.scene.is_none()
        {
            errors.add("scene", format!("the {renderer} renderer needs a scene"));
        }

        let image = self.image.clone().unwrap_or_default();
        let width = image.width.unwrap_or(1280);
        let height = image.height.unwrap_or(720);
        for (field, value) in [("image.width", width), ("image.height", height)] {
            if value == 0 || value > MAX_IMAGE_SIDE {
                errors.add(
                    field,
                    format!("{value} is out of range: use 1 to {MAX_IMAGE_SIDE} pixels"),
                );
            }
        }
        let format = match image.format.as_deref() {
            None | Some("png") => ImageFormat::Png,
            Some("exr") => ImageFormat::Exr,
            Some(text) => {
                errors.add(
                    "image.format",
                    format!("{text:?} is not a format: use png or exr"),
                );
                ImageFormat::Png
            }
        };
        let depth = match (format, image.depth) {
            (_, None) | (ImageFormat::Png, Some(8)) => 8,
            (ImageFormat::Png, Some(16)) => 16,
            (ImageFormat::Exr, Some(32)) => 32,
            (ImageFormat::Png, Some(d)) => {
                errors.add(
                    "image.depth",
                    format!("{d} is not a PNG depth: use 8 or 16"),
                );
                8
            }
            (ImageFormat::Exr, Some(d)) => {
                errors.add(
                    "image.depth",
                    format!("{d} is not an EXR depth: EXR is 32-bit float"),
                );
                32
            }
        };
        let image = Image {
            width: width.clamp(1, MAX_IMAGE_SIDE),
            height: height.clamp(1, MAX_IMAGE_SIDE),
            format,
            depth,
        };

        let frames_spec = self.frames.clone().unwrap_or_default();
        let frames = match frames_spec.range.as_deref() {
            None => FrameRange::single(1),
            Some(text) => FrameRange::parse(text).unwrap_or_else(|e| {
                errors.add("frames.range", e);
                FrameRange::single(1)
            }),
        };
        let (chunk, auto) = match &frames_spec.chunk {
            None => (1, false),
            Some(ChunkSpec::Frames(n)) => (*n, false),
            Some(ChunkSpec::Word(word)) if word == "auto" => (1, true),
            Some(ChunkSpec::Word(word)) => {
                errors.add(
                    "frames.chunk",
                    format!("{word:?} is not a chunk: use a number of frames or \"auto\""),
                );
                (1, false)
            }
        };
        if chunk == 0 {
            errors.add("frames.chunk", "must be at least 1");
        }
        let chunk = chunk.max(1);
        let target = duration_field(
            &frames_spec.target_task_time,
            "frames.target_task_time",
            &mut errors,
        );
        if target.is_some() && !auto {
            errors.add(
                "frames.target_task_time",
                "goes with chunk = \"auto\" (a fixed chunk takes what its frames take)",
            );
        }
        let auto_chunk = auto.then(|| target.unwrap_or(DEFAULT_TARGET_TASK_TIME));
        if auto && (self.tiles.is_some() || !self.layers.is_empty() || !self.limits.is_empty()) {
            errors.add(
                "frames.chunk",
                "\"auto\" is for jobs without tiles, layers or limits (give those a fixed chunk)",
            );
        }
        let order = FrameOrder::parse(
            frames_spec.order.as_deref(),
            frames_spec.first.as_deref(),
            &frames,
        )
        .unwrap_or_else(|problems| {
            for (field, message) in problems {
                errors.add(field, message);
            }
            FrameOrder::default()
        });

        let tiles = self
            .tiles
            .as_ref()
            .and_then(|t| validate_tiles(t, image, &mut errors));

        let layers = validate_layers(&self.layers, &mut errors);
        let composite = self.composite.as_ref();
        let composite =
            composite::validate(composite, &layers, renderer, image.format, &mut errors);
        let has_scene = self.scene_manifest.is_some() || self.scene.is_some();
        let outputs = self.outputs.as_ref();
        let unchecked = renderer == RendererKind::Command
            && self.settings.get("check_outputs") == Some(&serde_json::Value::Bool(false));
        let known = (has_scene, unchecked);
        let outputs = outputs::validate(outputs, frames.len(), renderer, known, &mut errors);
        let output = outputs::validate_name(self.output.as_deref(), &mut errors);

        let retry_spec = self.retry.clone().unwrap_or_default();
        let max_attempts = retry_spec.max_attempts.unwrap_or(3);
        if max_attempts == 0 || max_attempts > MAX_ATTEMPTS {
            errors.add(
                "retry.max_attempts",
                format!("{max_attempts} is out of range: use 1 to {MAX_ATTEMPTS}"),
            );
        }
        let timeout = duration_field(&retry_spec.timeout, "retry.timeout", &mut errors);
        let stall = duration_field(&retry_spec.stall, "retry.stall", &mut errors);
        let on_failure = match retry_spec.on_failure.as_deref() {
            None | Some("fail") => FailurePolicy::Fail,
            Some("continue") => FailurePolicy::Continue,
            Some(text) => {
                errors.add(
                    "retry.on_failure",
                    format!("{text:?} is not a policy: use fail or continue"),
                );
                FailurePolicy::Fail
            }
        };

        let largest = match &tiles {
            Some(t) => crate::core::tiles::all(t, image.width, image.height)
                .map(|tile| tile.render.area())
                .max()
                .unwrap_or(0),
            None => u64::from(image.width) * u64::from(image.height),
        };
        if largest > MAX_TASK_PIXELS {
            errors.add(
                "tiles",
                format!(
                    "a task would render {largest} pixels; at most {MAX_TASK_PIXELS} (a 16384x16384 square) per task: cut the frame with [tiles]"
                ),
            );
        }
        let tile_count = tiles.map_or(1, |t| u64::from(t.columns) * u64::from(t.rows));
        let layer_count = layers.len().max(1) as u64;
        let tasks = frames.chunk_count(chunk) as u64 * tile_count * layer_count;
        if tasks > MAX_TASKS {
            errors.add(
                "frames",
                format!(
                    "the job makes {tasks} tasks ({} frame chunks x {tile_count} tiles x {layer_count} layers); at most {MAX_TASKS} are allowed",
                    frames.chunk_count(chunk)
                ),
            );
        }

        let weight = self.weight.unwrap_or(1);
        if !(1..=MAX_WEIGHT).contains(&weight) {
            errors.add(
                "weight",
                format!("{weight} is not a weight: use a whole number from 1 to {MAX_WEIGHT}"),
            );
        }
        for (i, name) in self.limits.iter().enumerate() {
            if let Err(e) = crate::core::limits::check_name(name) {
                errors.add(format!("limits[{i}]"), e);
            } else if self.limits[..i].contains(name) {
                errors.add(format!("limits[{i}]"), format!("{name:?} is named twice"));
            }
        }
        if self.limits.len() > crate::core::limits::MAX_JOB_LIMITS {
            errors.add(
                "limits",
                format!(
                    "names {} limits; at most {}",
                    self.limits.len(),
                    crate::core::limits::MAX_JOB_LIMITS
                ),
            );
        }
        if self.max_workers == Some(0) {
            errors.add(
                "max_workers",
                "is 0, which would never run a task: leave it out for no cap",
            );
        }

        let Some(id) = id else {
            return Err(errors
                .into_result(())
                .expect_err("a missing or bad id is a problem"));
        };
        errors.into_result(())?;
        self.schema = Some(JOB_SCHEMA);
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
            retry: Retry {
                max_attempts,
                timeout,
                on_failure,
                stall,
            },
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

/// `frames.target_task_time` when `chunk = "auto"` names none.
pub const DEFAULT_TARGET_TASK_TIME: Duration = Duration::from_secs(300);

fn duration_field(text: &Option<String>, field: &str, errors: &mut Problems) -> Option<Duration> {
    let text = text.as_deref()?;
    match humantime::parse_duration(text) {
        Ok(d) if d >= Duration::from_secs(1) => Some(d),
        Ok(_) => {
            errors.add(field, format!("{text:?} is under one second"));
            None
        }
        Err(e) => {
            errors.add(
                field,
                format!("{text:?} is not a duration such as \"90s\" or \"10m\": {e}"),
            );
            None
        }
    }
}

fn validate_tiles(spec: &TilesSpec, image: Image, errors: &mut Problems) -> Option<Tiles> {
    let (columns, rows) = match (spec.grid, spec.size) {
        (Some(_), Some(_)) => {
            errors.add("tiles", "give grid or size, not both");
            return None;
        }
        (None, None) => {
            errors.add(
                "tiles",
                "needs grid = [columns, rows] or size = [width, height]",
            );
            return None;
        }
        (Some([c, r]), None) => {
            if c == 0 || r == 0 {
                errors.add("tiles.grid", "columns and rows must be at least 1");
                return None;
            }
            if c > image.width || r > image.height {
                errors.add(
                    "tiles.grid",
                    format!(
                        "{c}x{r} tiles do not fit a {}x{} image: a tile must be at least one pixel",
                        image.width, image.height
                    ),
                );
                return None;
            }
            (c, r)
        }
        (None, Some([w, h])) => {
            if w == 0 || h == 0 {
                errors.add("tiles.size", "width and height must be at least 1");
                return None;
            }
            (image.width.div_ceil(w), image.height.div_ceil(h))
        }
    };
    let overscan = spec.overscan.unwrap_or(0);
    if overscan > 4096 {
        errors.add("tiles.overscan", format!("{overscan} is above 4096 pixels"));
    }
    let blend = match spec.blend.as_deref() {
        None | Some("crop") => Blend::Crop,
        Some("feather") => Blend::Feather,
        Some(text) => {
            errors.add(
                "tiles.blend",
                format!("{text:?} is not a blend: use crop or feather"),
            );
            Blend::Crop
        }
    };
    if blend == Blend::Feather && overscan == 0 {
        errors.add(
            "tiles.blend",
            "feather needs an overscan of at least 1 pixel",
        );
    }
    // Feather ramps span 2 × overscan around each inner edge; they must not meet inside
    // one tile, or the weights of a pixel would not add up to one.
    let smallest = (image.width / columns.max(1)).min(image.height / rows.max(1));
    if blend == Blend::Feather && u64::from(overscan) * 2 > u64::from(smallest) {
        errors.add(
            "tiles.overscan",
            format!(
                "feather blends across 2 x {overscan} pixels, more than the smallest tile ({smallest} pixels): use fewer tiles or less overscan"
            ),
        );
    }
    Some(Tiles {
        columns,
        rows,
        overscan,
        blend,
    })
}

fn validate_layers(specs: &[LayerSpec], errors: &mut Problems) -> Vec<Layer> {
    if specs.len() > MAX_LAYERS {
        errors.add(
            "layers",
            format!("{} layers; at most {MAX_LAYERS}", specs.len()),
        );
        return Vec::new();
    }
    let mut seen = BTreeSet::new();
    let mut layers = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        if !is_token(&spec.name, 32, true) {
            errors.add(
                format!("layers[{i}].name"),
                format!(
                    "{:?} is not a valid name: use 1 to 32 of letters, digits, '_' and '-' (no path separators or '..')",
                    spec.name
                ),
            );
        } else if !seen.insert(spec.name.as_str()) {
            errors.add(
                format!("layers[{i}].name"),
                format!("{:?} appears twice", spec.name),
            );
        }
        let mut after = Vec::new();
        for dep in &spec.after {
            match specs[..i].iter().position(|l| &l.name == dep) {
                Some(j) => after.push(j),
                None => errors.add(
                    format!("layers[{i}].after"),
                    format!("{dep:?} is not a layer listed before {:?}", spec.name),
                ),
            }
        }
        layers.push(Layer {
            name: spec.name.clone(),
            after,
        });
    }
    layers
}
