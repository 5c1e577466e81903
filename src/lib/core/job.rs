//! The job spec: what a user submits (a TOML file to the CLI, JSON or msgpack on the wire),
//! and its validation into a [`Job`] whose every field is known to be usable.
//!
//! Validation collects every problem at once, each naming its field (`frames.range`,
//! `image.width`, …), so a user fixes a job file in one round. Decoding errors name the field
//! too (through `serde_path_to_error`). Nothing here touches the network or a file system.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::frames::FrameRange;

/// The version of the job schema this build writes and reads.
pub const JOB_SCHEMA: u32 = 1;
/// At most this many tasks per job.
pub const MAX_TASKS: u64 = 1_000_000;
/// At most this many pixels per image side.
pub const MAX_IMAGE_SIDE: u32 = 65_536;
/// At most this many attempts per task (the task consumer's `max_deliver` is above it).
pub const MAX_ATTEMPTS: u32 = 10;
/// At most this many pixels rendered by one task (a 16K square): larger frames are tiled.
pub const MAX_TASK_PIXELS: u64 = 16_384 * 16_384;
/// At most this many layers per job.
pub const MAX_LAYERS: usize = 64;

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
    /// Attempts and timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
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
    /// Frames per task; 1 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u32>,
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

/// A job id: `[a-z0-9][a-z0-9_-]{0,63}`. Safe in subjects, KV keys and object keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// Checks `text` against the id rule.
    pub fn parse(text: &str) -> Result<JobId, String> {
        if is_token(text, 64, false) {
            Ok(JobId(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is not a valid id: use 1 to 64 of a-z, 0-9, '_' and '-', starting with a letter or digit"
            ))
        }
    }

    /// A fresh unique id, `job-<nuid>` in lower case.
    pub fn generate() -> JobId {
        JobId(format!("job-{}", nuid_lower()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn nuid_lower() -> String {
    // 12 random base-36 characters from the process-wide NUID generator would need
    // async-nats here; a time-and-counter id keeps this module free of I/O crates.
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = splitmix(nanos ^ (u64::from(std::process::id()) << 32) ^ count);
    format!("{:x}{:04x}", nanos / 1_000_000, mixed & 0xffff)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl TryFrom<String> for JobId {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        JobId::parse(&text)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `text` is 1..=`max` of `[a-z0-9_-]` (upper case too if `upper`), starting with a
/// letter or digit: safe as a subject token, a KV key part and a path segment.
pub fn is_token(text: &str, max: usize, upper: bool) -> bool {
    let ok = |b: u8| {
        b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'_'
            || b == b'-'
            || (upper && b.is_ascii_uppercase())
    };
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|&b| ok(b))
}

/// Queue priority; workers always take the highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Taken first.
    High,
    /// The default.
    Normal,
    /// Taken last (with a starvation guard).
    Low,
}

impl Priority {
    /// All priorities, most urgent first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The subject token.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// Parses a subject token.
    pub fn parse(text: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hardware class token, `[a-z0-9_-]{1,32}` (`cpu`, `gpu`, `highmem`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Class(String);

impl Class {
    /// Checks `text` against the class rule.
    pub fn parse(text: &str) -> Result<Class, String> {
        if is_token(text, 32, false) {
            Ok(Class(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is not a valid class: use 1 to 32 of a-z, 0-9, '_' and '-'"
            ))
        }
    }

    /// The default class, `cpu`.
    pub fn cpu() -> Class {
        Class("cpu".into())
    }

    /// The class as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Class {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Class::parse(&text)
    }
}

impl From<Class> for String {
    fn from(class: Class) -> String {
        class.0
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which renderer runs a job's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RendererKind {
    /// Tessera's own deterministic ray tracer.
    Builtin,
    /// Sleeps `settings.sleep_ms`; for benchmarks and tests.
    Noop,
    /// POV-Ray.
    Povray,
    /// Blender.
    Blender,
    /// An argv template; only on workers started with it allowed.
    Command,
}

impl RendererKind {
    /// Every renderer kind.
    pub const ALL: [RendererKind; 5] = [
        RendererKind::Builtin,
        RendererKind::Noop,
        RendererKind::Povray,
        RendererKind::Blender,
        RendererKind::Command,
    ];

    /// The name used in job files.
    pub fn as_str(self) -> &'static str {
        match self {
            RendererKind::Builtin => "builtin",
            RendererKind::Noop => "noop",
            RendererKind::Povray => "povray",
            RendererKind::Blender => "blender",
            RendererKind::Command => "command",
        }
    }

    /// Parses a job-file name.
    pub fn parse(text: &str) -> Option<RendererKind> {
        RendererKind::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for RendererKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// PNG, 8 or 16 bits per channel.
    Png,
    /// OpenEXR, 32-bit float.
    Exr,
}

impl ImageFormat {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Exr => "exr",
        }
    }
}

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

/// How stitching treats overscan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Blend {
    /// Overscan is cut away; exact for deterministic renderers.
    Crop,
    /// Overscan is blended smoothly with the neighbour's.
    Feather,
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

/// What a task failed for good does to its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// The job fails at once; its queued tasks are removed.
    Fail,
    /// The rest runs; the job ends partially done (`failed`, with the done outputs kept).
    Continue,
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
    /// Frames per task.
    pub chunk: u32,
    /// Tile segmentation.
    pub tiles: Option<Tiles>,
    /// Layer segmentation (empty: one unnamed layer).
    pub layers: Vec<Layer>,
    /// Attempts and timeouts.
    pub retry: Retry,
    /// Renderer settings.
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// The spec this was validated from, with the id filled in (stored in the job record).
    pub spec: JobSpec,
}

/// One problem with a job spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Dotted path of the field (`frames.range`, `layers[1].name`).
    pub field: String,
    /// What is wrong, lower case.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a job spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<FieldError>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Decodes a job from TOML text (the CLI's job file), naming the field and line of an error.
pub fn from_toml(text: &str) -> Result<JobSpec, Invalid> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| {
        Invalid(vec![FieldError {
            field: "(file)".into(),
            message: one_line(&e.to_string()),
        }])
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        Invalid(vec![FieldError {
            field: if path == "." { "(file)".into() } else { path },
            message: one_line(&e.into_inner().to_string()),
        }])
    })
}

/// Decodes a job from wire bytes: JSON when `json` is true, msgpack otherwise.
pub fn from_wire(bytes: &[u8], json: bool) -> Result<JobSpec, Invalid> {
    let result = if json {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            (path, e.into_inner().to_string())
        })
    } else {
        let mut de = rmp_serde::Deserializer::new(bytes);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            (path, e.into_inner().to_string())
        })
    };
    result.map_err(|(path, message)| {
        Invalid(vec![FieldError {
            field: if path == "." {
                "(message)".into()
            } else {
                path
            },
            message: one_line(&message),
        }])
    })
}

/// Whether wire bytes are JSON: by content type if given, else by a leading `{`.
pub fn is_json(content_type: Option<&str>, bytes: &[u8]) -> bool {
    match content_type {
        Some(t) if t.contains("json") => true,
        Some(t) if t.contains("msgpack") => false,
        _ => bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{'),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks that `path` is a relative path inside a folder: no `..`, no absolute path, no
/// empty or `.` segment, no backslash or NUL. Used for scene files and output names.
pub fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("is empty".into());
    }
    if path.len() > 1024 {
        return Err("is longer than 1024 bytes".into());
    }
    if path.starts_with('/') {
        return Err(format!(
            "{path:?} is absolute; give a path relative to the folder"
        ));
    }
    if path.contains('\\') || path.contains('\0') || path.chars().any(char::is_control) {
        return Err(format!("{path:?} holds a backslash or a control character"));
    }
    for segment in path.split('/') {
        match segment {
            "" | "." => return Err(format!("{path:?} has an empty or '.' segment")),
            ".." => return Err(format!("{path:?} leaves its folder with '..'")),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a scene manifest reference `sha256:<64 lower-case hex>` and returns the hex.
pub fn parse_manifest_ref(text: &str) -> Result<String, String> {
    let hex = text
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("{text:?} must start with \"sha256:\""))?;
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex.to_string())
    } else {
        Err(format!(
            "{text:?} must be \"sha256:\" and 64 lower-case hex digits"
        ))
    }
}

impl JobSpec {
    /// Validates the spec. A missing id is generated. Every problem is reported, each
    /// naming its field.
    pub fn validate(mut self) -> Result<Job, Invalid> {
        let mut errors = Errors(Vec::new());

        if let Some(schema) = self.schema
            && schema != JOB_SCHEMA
        {
            errors.add(
                "schema",
                format!("version {schema} is not supported; this build reads {JOB_SCHEMA}"),
            );
        }

        let id = match &self.id {
            Some(text) => JobId::parse(text).unwrap_or_else(|e| {
                errors.add("id", e);
                JobId("invalid".into())
            }),
            None => JobId::generate(),
        };
        self.id = Some(id.to_string());

        let name = self.name.clone().unwrap_or_else(|| id.to_string());
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
        let chunk = frames_spec.chunk.unwrap_or(1);
        if chunk == 0 {
            errors.add("frames.chunk", "must be at least 1");
        }
        let chunk = chunk.max(1);

        let tiles = self
            .tiles
            .as_ref()
            .and_then(|t| validate_tiles(t, image, &mut errors));

        let layers = validate_layers(&self.layers, &mut errors);

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

        validate_settings(renderer, &self.settings, &mut errors);
        if renderer == RendererKind::Builtin {
            for (i, layer) in self.layers.iter().enumerate() {
                if let Err(e) = crate::render::builtin::Pass::from_layer(Some(&layer.name)) {
                    errors.add(format!("layers[{i}].name"), e);
                }
            }
        }

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

        if !errors.0.is_empty() {
            return Err(Invalid(errors.0));
        }
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
            tiles,
            layers,
            retry: Retry {
                max_attempts,
                timeout,
                on_failure,
                stall,
            },
            settings: self.settings.clone(),
            spec: self,
        })
    }
}

fn duration_field(text: &Option<String>, field: &str, errors: &mut Errors) -> Option<Duration> {
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

fn validate_tiles(spec: &TilesSpec, image: Image, errors: &mut Errors) -> Option<Tiles> {
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

fn validate_layers(specs: &[LayerSpec], errors: &mut Errors) -> Vec<Layer> {
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

fn validate_settings(
    renderer: RendererKind,
    settings: &serde_json::Map<String, serde_json::Value>,
    errors: &mut Errors,
) {
    let positive = |key: &str, max: u64, errors: &mut Errors| {
        if let Some(value) = settings.get(key) {
            match value.as_u64() {
                Some(n) if n >= 1 && n <= max => {}
                _ => errors.add(
                    format!("settings.{key}"),
                    format!("{value} is not a whole number from 1 to {max}"),
                ),
            }
        }
    };
    match renderer {
        RendererKind::Builtin => {
            positive("samples", 1 << 16, errors);
            if let Some(value) = settings.get("bounces")
                && value
                    .as_u64()
                    .is_none_or(|n| n > u64::from(crate::render::builtin::MAX_BOUNCES))
            {
                errors.add(
                    "settings.bounces",
                    format!(
                        "{value} is not a whole number from 0 to {}",
                        crate::render::builtin::MAX_BOUNCES
                    ),
                );
            }
        }
        RendererKind::Noop => {
            if let Some(value) = settings.get("sleep_ms")
                && value.as_u64().is_none_or(|n| n > 86_400_000)
            {
                errors.add(
                    "settings.sleep_ms",
                    format!("{value} is not a whole number of milliseconds up to one day"),
                );
            }
            if let Some(value) = settings.get("fail")
                && !value.is_boolean()
            {
                errors.add("settings.fail", format!("{value} is not true or false"));
            }
        }
        RendererKind::Command => match settings.get("command") {
            None => errors.add(
                "settings.command",
                "the command renderer needs an argument list, e.g. [\"my-renderer\", \"--frame\", \"{frame}\", \"-o\", \"{output}\"]",
            ),
            Some(value) => {
                if let Err(e) = crate::render::command::check_template(value) {
                    errors.add("settings.command", e);
                }
            }
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(toml_text: &str) -> Result<Job, Invalid> {
        from_toml(toml_text)?.validate()
    }

    fn check_invalid(toml_text: &str, field: &str, needle: &str) {
        let err = validate(toml_text).expect_err(toml_text);
        assert!(
            err.0
                .iter()
                .any(|e| e.field == field && e.message.contains(needle)),
            "{toml_text}: {err} lacks {field}: …{needle}…"
        );
    }

    #[test]
    fn accepts_the_design_example() {
        let job = validate(
            r#"
            id = "turntable-v3"
            name = "Turntable"
            priority = "high"
            class = "gpu"
            renderer = "builtin"
            scene_manifest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            [image]
            width = 1280
            height = 720
            format = "png"
            [frames]
            range = "1-48"
            chunk = 4
            [tiles]
            grid = [4, 4]
            overscan = 8
            [[layers]]
            name = "beauty"
            [[layers]]
            name = "shadow"
            after = ["beauty"]
            [retry]
            max_attempts = 3
            timeout = "10m"
            [settings]
            samples = 16
        "#,
        )
        .unwrap();
        assert_eq!(job.id.as_str(), "turntable-v3");
        assert_eq!(job.priority, Priority::High);
        assert_eq!(job.class.as_str(), "gpu");
        assert_eq!(job.frames.len(), 48);
        assert_eq!(job.chunk, 4);
        assert_eq!(job.tiles.unwrap().columns, 4);
        assert_eq!(job.layers[1].after, vec![0]);
        assert_eq!(job.retry.timeout, Some(Duration::from_secs(600)));
    }

    #[test]
    fn fills_defaults() {
        let job = validate("").unwrap();
        assert!(job.id.as_str().starts_with("job-"));
        assert_eq!(job.priority, Priority::Normal);
        assert_eq!(job.class.as_str(), "cpu");
        assert_eq!(job.renderer, RendererKind::Builtin);
        assert_eq!(job.frames.frames(), &[1]);
        assert_eq!((job.image.width, job.image.height), (1280, 720));
        assert_eq!(job.retry.max_attempts, 3);
        assert_eq!(job.spec.id.as_deref(), Some(job.id.as_str()));
    }

    #[test]
    fn names_the_field_of_each_problem() {
        check_invalid(r#"id = "../etc""#, "id", "not a valid id");
        check_invalid(r#"id = "Upper""#, "id", "not a valid id");
        check_invalid(r#"priority = "urgent""#, "priority", "high, normal or low");
        check_invalid(r#"class = "g/pu""#, "class", "not a valid class");
        check_invalid(r#"renderer = "maya""#, "renderer", "not a renderer");
        check_invalid("[image]\nwidth = 0", "image.width", "out of range");
        check_invalid("[image]\nheight = 70000", "image.height", "out of range");
        check_invalid(
            "[image]\nwidth = 65536\nheight = 65536",
            "tiles",
            "cut the frame",
        );
        assert!(validate("[image]\nwidth = 65536\nheight = 65536\n[tiles]\ngrid = [8, 8]").is_ok());
        check_invalid("[image]\nformat = \"jpg\"", "image.format", "png or exr");
        check_invalid("[image]\ndepth = 12", "image.depth", "8 or 16");
        check_invalid("[frames]\nrange = \"10-1\"", "frames.range", "backwards");
        check_invalid("[frames]\nchunk = 0", "frames.chunk", "at least 1");
        check_invalid(
            "[frames]\nrange = \"1-999999\"\n[tiles]\ngrid = [2, 2]",
            "frames",
            "at most 1000000",
        );
        check_invalid("[tiles]\ngrid = [0, 2]", "tiles.grid", "at least 1");
        check_invalid(
            "[tiles]\nblend = \"soft\"\ngrid = [2, 2]",
            "tiles.blend",
            "crop or feather",
        );
        check_invalid(
            "[[layers]]\nname = \"a/b\"",
            "layers[0].name",
            "path separators",
        );
        check_invalid(
            "[[layers]]\nname = \"..\"",
            "layers[0].name",
            "not a valid name",
        );
        check_invalid(
            "[[layers]]\nname = \"a\"\nafter = [\"b\"]",
            "layers[0].after",
            "not a layer listed before",
        );
        check_invalid(
            "[retry]\nmax_attempts = 0",
            "retry.max_attempts",
            "out of range",
        );
        check_invalid(
            "[retry]\ntimeout = \"soon\"",
            "retry.timeout",
            "not a duration",
        );
        check_invalid(
            "[[layers]]\nname = \"beauty\"\n[[layers]]\nname = \"cryptomatte\"",
            "layers[1].name",
            "not a pass of the builtin renderer",
        );
        check_invalid(
            "[settings]\nbounces = 65",
            "settings.bounces",
            "from 0 to 64",
        );
        check_invalid(
            "[settings]\nsamples = 0",
            "settings.samples",
            "whole number",
        );
        check_invalid(r#"scene_manifest = "md5:abc""#, "scene_manifest", "sha256:");
        check_invalid(r#"scene = "a.toml""#, "scene", "tessera submit");
        check_invalid("schema = 7", "schema", "not supported");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let err = validate("priority = \"x\"\nclass = \"Y!\"\n[frames]\nchunk = 0").unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn decoding_errors_name_the_field() {
        let err = from_toml("[image]\nwidth = \"wide\"").unwrap_err();
        assert_eq!(err.0[0].field, "image.width", "{err}");
        let err = from_toml("frame = 3").unwrap_err();
        assert!(err.0[0].message.contains("unknown field"), "{err}");
        let err = from_wire(br#"{"image": {"width": -1}}"#, true).unwrap_err();
        assert_eq!(err.0[0].field, "image.width", "{err}");
        let err = from_wire(b"\xc1", false).unwrap_err();
        assert_eq!(err.0[0].field, "(message)", "{err}");
    }

    #[test]
    fn round_trips_msgpack_and_json() {
        let spec =
            from_toml("id = \"a\"\n[frames]\nrange = \"1-3\"\n[settings]\nsamples = 4").unwrap();
        let packed = rmp_serde::to_vec_named(&spec).unwrap();
        assert_eq!(from_wire(&packed, false).unwrap(), spec);
        let json = serde_json::to_vec(&spec).unwrap();
        assert_eq!(from_wire(&json, true).unwrap(), spec);
    }

    /// The shipped JSON Schema names exactly the fields the decoder takes.
    #[test]
    fn json_schema_matches_the_spec_fields() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../schema/job.schema.json")).unwrap();
        let keys = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let props = &schema["properties"];
        let full = JobSpec {
            schema: Some(1),
            id: Some("a".into()),
            name: Some("n".into()),
            priority: Some("high".into()),
            class: Some("cpu".into()),
            renderer: Some("noop".into()),
            scene: Some("s".into()),
            scene_manifest: Some("m".into()),
            image: Some(ImageSpec {
                width: Some(1),
                height: Some(1),
                format: Some("png".into()),
                depth: Some(8),
            }),
            frames: Some(FramesSpec {
                range: Some("1".into()),
                chunk: Some(1),
            }),
            tiles: Some(TilesSpec {
                grid: Some([1, 1]),
                size: Some([1, 1]),
                overscan: Some(0),
                blend: Some("crop".into()),
            }),
            layers: vec![LayerSpec {
                name: "a".into(),
                after: vec!["b".into()],
            }],
            retry: Some(RetrySpec {
                max_attempts: Some(1),
                timeout: Some("1s".into()),
                on_failure: Some("fail".into()),
                stall: Some("1s".into()),
            }),
            settings: [("k".to_string(), serde_json::Value::from(1))]
                .into_iter()
                .collect(),
        };
        let json = serde_json::to_value(&full).unwrap();
        assert_eq!(keys(&json), keys(props));
        for section in ["image", "frames", "tiles", "retry"] {
            assert_eq!(
                keys(&json[section]),
                keys(&props[section]["properties"]),
                "{section}"
            );
        }
        assert_eq!(
            keys(&json["layers"][0]),
            keys(&props["layers"]["items"]["properties"])
        );
    }

    #[test]
    fn tells_json_from_msgpack() {
        assert!(is_json(None, b"  {\"id\":1}"));
        assert!(!is_json(None, &[0x81]));
        assert!(is_json(Some("application/json"), b""));
        assert!(!is_json(Some("application/msgpack"), b"{"));
    }

    #[test]
    fn checks_relative_paths() {
        for ok in ["a.toml", "textures/wood.png", "a..b/c"] {
            assert!(check_relative_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a\\b",
            "a\nb",
        ] {
            assert!(check_relative_path(bad).is_err(), "{bad:?}");
        }
    }
}
