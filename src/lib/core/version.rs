//! Published versions: a job that names its output (`output = "shot010/lighting"`) is the
//! next version of that name, and its outputs are written straight into the version's
//! folder, `versions/<name>/v<NNN>/`, so that work in progress can be loaded as it lands.
//! Here: the rules for names and version labels, and the records kept beside the files —
//! `version.json` (written when the job is accepted: the spec, the scene manifest, the
//! renderer), `trace.json` (written when it is done: the worker and the renderer's version
//! of every task) and `approval.json` (who approved it, when). Every one of them, like the
//! files, is written once and never replaced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::job::{JobId, JobSpec, RendererKind};
use crate::core::plan::TaskId;

/// The longest output name.
pub const MAX_NAME_LEN: usize = 200;

/// The most segments an output name has (`show/seq/shot/task` is four).
pub const MAX_NAME_SEGMENTS: usize = 8;

/// The highest version number (`v999999`).
pub const MAX_VERSION: u32 = 999_999;

/// Checks an output name: 1 to [`MAX_NAME_SEGMENTS`] segments of letters, digits, `_`,
/// `-` and `.` separated by `/`, no segment starting with `.`, and a last segment that does
/// not read as a version label (`shot010/v002` would be ambiguous).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("is longer than {MAX_NAME_LEN} bytes"));
    }
    let segments: Vec<&str> = name.split('/').collect();
    if segments.len() > MAX_NAME_SEGMENTS {
        return Err(format!(
            "{name:?} has more than {MAX_NAME_SEGMENTS} segments"
        ));
    }
    if name.contains("..") {
        return Err(format!("{name:?} holds '..'"));
    }
    for segment in &segments {
        if segment.is_empty() {
            return Err(format!(
                "{name:?} has an empty segment (a leading, trailing or double '/')"
            ));
        }
        if segment.starts_with('.') {
            return Err(format!("{name:?}: a segment may not start with '.'"));
        }
        if let Some(bad) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(format!(
                "{name:?} holds {bad:?}: use letters, digits, '_', '-', '.' and '/'"
            ));
        }
    }
    if parse_label(segments[segments.len() - 1]).is_ok() {
        return Err(format!(
            "{name:?} ends in a version label; name the output, not a version"
        ));
    }
    Ok(())
}

/// A version's label: `v001`, …, `v999`, `v1000`.
pub fn label(version: u32) -> String {
    format!("v{version:03}")
}

/// Reads a version label: `v3`, `v003` or `V003` (1 to [`MAX_VERSION`]).
pub fn parse_label(text: &str) -> Result<u32, String> {
    let digits = text
        .strip_prefix(['v', 'V'])
        .filter(|d| !d.is_empty() && d.len() <= 6 && d.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("{text:?} is not a version: write it v001"))?;
    match digits.parse::<u32>() {
        Ok(n) if (1..=MAX_VERSION).contains(&n) => Ok(n),
        _ => Err(format!("{text:?} is not a version: they start at v001")),
    }
}

/// `version.json`: what made the version, written when its job is accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Schema version.
    pub schema: u32,
    /// The output name.
    pub name: String,
    /// The version number.
    pub version: u32,
    /// The job that renders it.
    pub job: JobId,
    /// Which submission of that id.
    pub incarnation: String,
    /// When it was published (ms since the epoch).
    pub published_ms: u64,
    /// The renderer.
    pub renderer: RendererKind,
    /// The job spec as accepted, id and scene manifest filled in: resubmitting it renders
    /// the same scene bytes.
    pub spec: JobSpec,
    /// The scene manifest (relative path → content hash) as stored, if the job has a scene.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<serde_json::Value>,
}

/// `trace.json`: who rendered the version, written when its job is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Schema version.
    pub schema: u32,
    /// The job.
    pub job: JobId,
    /// When it was done (ms since the epoch).
    pub finished_ms: u64,
    /// The renderer's versions the tasks ran with, and how many tasks each.
    pub renderer_versions: BTreeMap<String, u32>,
    /// Every task's accepted attempt.
    pub tasks: Vec<TaskTrace>,
    /// The version's files, relative to its folder.
    pub files: Vec<String>,
}

/// One task of a [`Trace`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskTrace {
    /// Its position in the job.
    pub index: u32,
    /// The task.
    pub task: TaskId,
    /// The attempt whose outputs were kept.
    pub attempt: u32,
    /// The worker that ran it.
    pub worker: String,
    /// The renderer's version on that worker, where it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renderer_version: Option<String>,
}

/// `approval.json`: the version is approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// Schema version.
    pub schema: u32,
    /// Who approved it.
    pub by: String,
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// Why, if they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Where a version stands, for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Its job is still rendering (or waiting).
    Rendering,
    /// Its job is done: every file is in.
    Complete,
    /// Its job failed or was canceled: some files may be missing.
    Incomplete,
}

impl Standing {
    /// How listings print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Rendering => "rendering",
            Standing::Complete => "complete",
            Standing::Incomplete => "incomplete",
        }
    }
}

/// One version in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    /// The output name.
    pub name: String,
    /// The version number.
    pub version: u32,
    /// Its label (`v003`).
    pub label: String,
    /// Its job.
    pub job: JobId,
    /// When it was published (ms since the epoch).
    pub published_ms: u64,
    /// Where it stands.
    pub standing: Standing,
    /// Its approval, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Its folder: the store key prefix of its files.
    pub folder: String,
    /// The same as a location a tool can load (a `file://` path or an `s3://` URL).
    pub location: String,
}

/// The latest approved version of a listing sorted by version.
pub fn latest_approved(listed: &[Listed]) -> Option<&Listed> {
    listed.iter().rev().find(|l| l.approval.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_are_checked_with_the_reason() {
        let cases: &[(&str, Option<&str>)] = &[
            ("shot010/lighting", None),
            ("show_a/sq01/sh010/comp-v2.final", None),
            ("beauty", None),
            ("", Some("is empty")),
            ("/shot010", Some("empty segment")),
            ("shot010/", Some("empty segment")),
            ("shot010//lighting", Some("empty segment")),
            ("shot010/../etc", Some("holds '..'")),
            ("shot..010", Some("holds '..'")),
            ("shot010/.hidden", Some("may not start with '.'")),
            ("shot 010", Some("holds ' '")),
            ("shot010\\lighting", Some("holds '\\\\'")),
            ("a/b/c/d/e/f/g/h/i", Some("more than 8 segments")),
            ("shot010/v002", Some("ends in a version label")),
            ("shot010/v2x", None),
        ];
        for (name, expected) in cases {
            let got = check_name(name);
            match expected {
                None => assert_eq!(got, Ok(()), "{name:?}"),
                Some(part) => {
                    let why = got.expect_err(name);
                    assert!(why.contains(part), "{name:?}: {why}");
                }
            }
        }
        assert!(check_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn labels_read_back_and_refuse_what_is_not_one() {
        assert_eq!(label(1), "v001");
        assert_eq!(label(42), "v042");
        assert_eq!(label(1234), "v1234");
        for (text, expected) in [
            ("v001", Some(1)),
            ("v3", Some(3)),
            ("V042", Some(42)),
            ("v999999", Some(999_999)),
            ("v000", None),
            ("v", None),
            ("001", None),
            ("v1x", None),
            ("v1000000", None),
            ("v-1", None),
        ] {
            assert_eq!(parse_label(text).ok(), expected, "{text}");
        }
        for n in [1, 9, 10, 99, 100, 999, 1000, MAX_VERSION] {
            assert_eq!(parse_label(&label(n)), Ok(n));
        }
    }

    #[test]
    fn the_latest_approved_is_the_highest_approved() {
        let listed = |version: u32, approved: bool| Listed {
            name: "shot".into(),
            version,
            label: label(version),
            job: JobId::parse("j").expect("valid"),
            published_ms: 0,
            standing: Standing::Complete,
            approval: approved.then(|| Approval {
                schema: 1,
                by: "ana".into(),
                at_ms: 0,
                note: None,
            }),
            folder: String::new(),
            location: String::new(),
        };
        let list = [listed(1, true), listed(2, true), listed(3, false)];
        assert_eq!(latest_approved(&list).map(|l| l.version), Some(2));
        assert_eq!(latest_approved(&list[2..]), None);
    }
}
