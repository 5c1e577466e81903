//! The job spec as submitted: a TOML file to the CLI, JSON or msgpack on the wire. Field
//! names are the contract (`schema/job.schema.json`); every field is optional here and
//! checked by [`validate`](super::validate).

use serde::{Deserialize, Serialize};

/// A job as submitted. Field names are the wire contract; see `schema/job.schema.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Schema version; absent means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<u32>,
    /// `[a-z0-9][a-z0-9_-]{0,63}`; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Free text shown to people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `high`, `normal` (default) or `low`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Hardware class token; `cpu` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Jobs (by id) that must be done before this one is queued; one that does not exist
    /// yet is waited for, and one that fails or is canceled fails this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// A job (by id) this one runs after frame by frame: frame N waits only for frame N of
    /// that job; one that fails fails only its counterpart here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_frames: Option<String>,
    /// The name its outputs are published under (`shot010/lighting`): each job of that
    /// name is its next version, `versions/<name>/v<NNN>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Which renderer runs the tasks; `builtin` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renderer: Option<String>,
    /// CLI only: the scene file, relative to the job file; its folder is packaged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
    /// Wire: an uploaded scene manifest, `sha256:<64 hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene_manifest: Option<String>,
    /// Output image size and format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// Frame-based segmentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<FramesSpec>,
    /// Tile-based segmentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiles: Option<TilesSpec>,
    /// Layer-based segmentation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerSpec>,
    /// How the layers are composited into one more frame output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composite: Option<super::composite::CompositeSpec>,
    /// The sequence outputs (movie, animation, contact sheet) and their post-processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<super::outputs::OutputsSpec>,
    /// Attempts and timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// Keep each task's raw outputs (tiles, per-attempt frames) after their frame is
    /// assembled; by default they are removed then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_parts: Option<bool>,
    /// The job's share of its queue against other jobs of the same priority: 1 by
    /// default; a job of weight 2 gets about twice the slots of a job of weight 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Most of the job's tasks running at once (none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_workers: Option<u32>,
    /// Limits each task holds a token of while it is queued or running
    /// (`["blender-license"]`; `tessera limit set` says how many tokens each has).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
    /// Renderer-specific settings, passed through.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// `[image]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Pixels; 1280 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Pixels; 720 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// `png` (default) or `exr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Bits per channel for PNG: 8 (default) or 16. EXR is always 32-bit float.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u8>,
}

/// `[frames]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FramesSpec {
    /// `"1-48"`, `"1-48x2"`, `"1,5,10-20"`; frame 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// Frames per task: a number (1 by default), or `"auto"`: single frames first, then
    /// chunks sized from the measured frame times toward `target_task_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ChunkSpec>,
    /// With `chunk = "auto"`: how long a task should take (`"5m"` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_task_time: Option<String>,
    /// `sequence` (default: in frame order) or `preview` (first, last, middle, then
    /// halving the gaps), the order frames are queued in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// Frames queued before all others, in this order: `"1,48,24"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
}

/// `frames.chunk`: a number of frames, or a word (`"auto"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChunkSpec {
    /// Frames per task.
    Frames(u32),
    /// `"auto"`.
    Word(String),
}

/// `[tiles]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TilesSpec {
    /// `[columns, rows]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<[u32; 2]>,
    /// `[width, height]` of a tile, as an alternative to `grid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<[u32; 2]>,
    /// Pixels rendered past each inner tile edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overscan: Option<u32>,
    /// What stitching does with the overscan: `crop` (default) or `feather`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blend: Option<String>,
}

/// One `[[layers]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// Layer (pass) name, a token.
    pub name: String,
    /// Layers of the same frame that must be done first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// `[retry]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts per task, counting the first; 3 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Per attempt, e.g. `"10m"`; no limit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// What a task failed for good does to the job: `fail` (default) or `continue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    /// Hang detection: a renderer that prints nothing this long (e.g. `"5m"`) fails the
    /// attempt. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<String>,
}
