//! The `noop` renderer: sleeps `settings.sleep_ms` (default 0), plus `settings.frame_ms`
//! for each frame of the task, and writes nothing. For benchmarks and tests;
//! `settings.fail = true` makes every attempt fail, `settings.fail_attempts = N` fails the
//! first N attempts, and `settings.fail_frames = [3, 7]` every attempt of a task that
//! renders one of those frames.

use std::time::Duration;

use super::{BoxFuture, Output, RenderError, Renderer, Request};
use crate::core::job::RendererKind;
use crate::core::problem::{Invalid, Problems};

/// Most `sleep_ms` may ask for: one day.
const MAX_SLEEP_MS: u64 = 86_400_000;

/// The `noop` renderer's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// How long each attempt sleeps (`sleep_ms`, up to a day).
    pub sleep_ms: u64,
    /// How much longer it sleeps for each of its frames (`frame_ms`, up to a day).
    pub frame_ms: u64,
    /// Every attempt fails (`fail`).
    pub fail: bool,
    /// The first this many attempts fail (`fail_attempts`).
    pub fail_attempts: u64,
    /// Every attempt of a task rendering one of these frames fails (`fail_frames`).
    pub fail_frames: Vec<u32>,
}

impl Settings {
    /// Reads the settings, the same way at validation and at render.
    pub fn parse(
        settings: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Settings, Invalid> {
        let mut problems = Problems::default();
        let mut parsed = Settings::default();
        let mut millis = |name: &str, into: &mut u64| {
            if let Some(value) = settings.get(name) {
                match value.as_u64() {
                    Some(ms) if ms <= MAX_SLEEP_MS => *into = ms,
                    _ => problems.add(
                        format!("settings.{name}"),
                        format!("{value} is not a whole number of milliseconds up to one day"),
                    ),
                }
            }
        };
        millis("sleep_ms", &mut parsed.sleep_ms);
        millis("frame_ms", &mut parsed.frame_ms);
        if let Some(value) = settings.get("fail") {
            match value.as_bool() {
                Some(fail) => parsed.fail = fail,
                None => problems.add("settings.fail", format!("{value} is not true or false")),
            }
        }
        if let Some(value) = settings.get("fail_attempts") {
            match value.as_u64() {
                Some(n) => parsed.fail_attempts = n,
                None => problems.add(
                    "settings.fail_attempts",
                    format!("{value} is not a whole number"),
                ),
            }
        }
        if let Some(value) = settings.get("fail_frames") {
            let frames: Option<Vec<u32>> = value.as_array().and_then(|all| {
                all.iter()
                    .map(|f| f.as_u64().and_then(|f| u32::try_from(f).ok()))
                    .collect()
            });
            match frames {
                Some(frames) => parsed.fail_frames = frames,
                None => problems.add(
                    "settings.fail_frames",
                    format!("{value} is not a list of frame numbers"),
                ),
            }
        }
        problems.into_result(parsed)
    }
}

/// The `noop` renderer.
pub struct Noop;

impl Renderer for Noop {
    fn kind(&self) -> RendererKind {
        RendererKind::Noop
    }

    fn writes_files(&self) -> bool {
        false
    }

    fn render(&self, request: Request) -> BoxFuture<'_, Result<Vec<Output>, RenderError>> {
        Box::pin(async move {
            let Settings {
                sleep_ms,
                frame_ms,
                fail: fail_all,
                fail_attempts: fail_first,
                fail_frames,
            } = Settings::parse(&request.task.settings)
                .map_err(|e| RenderError::Permanent(e.to_string()))?;
            let frames = request.task.frames.len() as u64;
            let sleep = sleep_ms + frame_ms.saturating_mul(frames);
            request.log.line(format!("noop: sleeping {sleep} ms"));
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(sleep)) => {}
                () = request.cancel.cancelled() => {
                    return Err(RenderError::Stopped("canceled while sleeping".into()));
                }
            }
            let failing_frame = request.task.frames.iter().any(|f| fail_frames.contains(f));
            if fail_all || failing_frame || u64::from(request.attempt) <= fail_first {
                request.log.line("noop: failing as the settings ask");
                return Err(RenderError::Failed(
                    "noop failed as asked by its settings".into(),
                ));
            }
            request.set_progress(1.0);
            Ok(Vec::new())
        })
    }
}
