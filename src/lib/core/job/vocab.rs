//! The job's vocabulary: ids, classes, priorities, renderer kinds, formats and policies,
//! each a closed type with its parser and its subject or file token.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::problem::ValueError;

/// A job id: `[a-z0-9][a-z0-9_-]{0,63}`. Safe in subjects, KV keys and object keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// Checks `text` against the id rule.
    pub fn parse(text: &str) -> Result<JobId, ValueError> {
        if is_token(text, 64, false) {
            Ok(JobId(text.to_string()))
        } else {
            Err(ValueError::from(format!(
                "{text:?} is not a valid id: use 1 to 64 of a-z, 0-9, '_' and '-', starting with a letter or digit"
            )))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
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
    pub fn parse(text: &str) -> Result<Class, ValueError> {
        if is_token(text, 32, false) {
            Ok(Class(text.to_string()))
        } else {
            Err(ValueError::from(format!(
                "{text:?} is not a valid class: use 1 to 32 of a-z, 0-9, '_' and '-'"
            )))
        }
    }

    /// The default class, `cpu`.
    pub fn cpu() -> Class {
        Class("cpu".into())
    }

    /// The GPU class, `gpu`: a worker of it renders on its GPU where the renderer can.
    pub fn gpu() -> Class {
        Class("gpu".into())
    }

    /// The class as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Class {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
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

/// How stitching treats overscan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Blend {
    /// Overscan is cut away; exact for deterministic renderers.
    Crop,
    /// Overscan is blended smoothly with the neighbour's.
    Feather,
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
