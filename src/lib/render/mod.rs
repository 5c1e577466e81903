//! Renderers: the one small trait a worker runs a task through, and one module per adapter.
//!
//! A renderer gets a [`Request`] (the task, the materialized scene, a folder for outputs,
//! its thread budget, a cancel token and a log) and returns the files it wrote, named
//! `frame_NNNN.<ext>` — the collector derives every output key from those names.

pub mod blender;
pub mod builtin;
pub mod child;
pub mod command;
pub mod noop;
pub mod povray;
pub mod program;
pub mod setting;
pub mod validate;

pub use validate::validate;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::bus::protocol::TaskMessage;
use crate::core::job::{Class, RendererKind};

/// What a renderer needs to run one attempt.
pub struct Request {
    /// The task.
    pub task: TaskMessage,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
    /// The scene's entry file, laid out with its folder, if the job has a scene.
    pub scene: Option<PathBuf>,
    /// Where to write outputs (empty, private to this attempt).
    pub out_dir: PathBuf,
    /// Threads this slot may use.
    pub threads: usize,
    /// The worker's classes (a `gpu` worker renders on its GPU where it can).
    pub classes: Vec<Class>,
    /// Cancelled when the attempt must stop (cancel, timeout, shutdown).
    pub cancel: CancellationToken,
    /// The attempt's log; uploaded whatever happens.
    pub log: Log,
    /// Progress in millionths, for progress events.
    pub progress: Arc<AtomicU32>,
}

impl Request {
    /// Records progress as a fraction from 0 to 1.
    pub fn set_progress(&self, fraction: f64) {
        self.progress
            .store((fraction.clamp(0.0, 1.0) * 1e6) as u32, Ordering::Relaxed);
    }
}

/// A file a renderer wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// File name, `frame_NNNN.<ext>`.
    pub name: String,
    /// Where it is on disk.
    pub path: PathBuf,
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The input cannot render, whatever the attempt (bad scene, bad settings): no retry.
    #[error("{0}")]
    Permanent(String),
    /// This attempt failed; another may succeed.
    #[error("{0}")]
    Failed(String),
    /// The attempt was stopped from outside (cancel, timeout, shutdown).
    #[error("stopped: {0}")]
    Stopped(String),
}

/// A shared, append-only attempt log, bounded: the first and the last [`LOG_KEEP`] bytes
/// are kept, and what fell between is counted.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<LogText>>);

/// Bytes kept at each end of a log.
pub const LOG_KEEP: usize = 1 << 20;

#[derive(Default)]
struct LogText {
    head: String,
    tail: std::collections::VecDeque<String>,
    tail_bytes: usize,
    dropped: u64,
    /// Where each line also goes as it is written (`tessera logs --follow`).
    live: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl Log {
    /// A log whose lines are also sent to `live` as they are written, until
    /// [`Log::end_live`].
    pub fn live(live: tokio::sync::mpsc::UnboundedSender<String>) -> Log {
        let log = Log::default();
        log.0.lock().unwrap_or_else(|e| e.into_inner()).live = Some(live);
        log
    }

    /// Stops sending lines live (the receiver then sees the channel close).
    pub fn end_live(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).live = None;
    }

    /// Appends a line.
    pub fn line(&self, text: impl AsRef<str>) {
        let text = text.as_ref();
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = &log.live {
            let _ = live.send(text.to_string());
        }
        if log.dropped == 0 && log.tail.is_empty() && log.head.len() + text.len() < LOG_KEEP {
            log.head.push_str(text);
            log.head.push('\n');
            return;
        }
        let mut line = text.to_string();
        if line.len() >= LOG_KEEP {
            let mut cut = LOG_KEEP / 2;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            log.dropped += (line.len() - cut) as u64;
            line.truncate(cut);
        }
        line.push('\n');
        log.tail_bytes += line.len();
        log.tail.push_back(line);
        while log.tail_bytes > LOG_KEEP {
            let Some(old) = log.tail.pop_front() else {
                break;
            };
            log.tail_bytes -= old.len();
            log.dropped += old.len() as u64;
        }
    }

    /// The text so far (with a line saying how much was left out, if any).
    pub fn text(&self) -> String {
        let log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = log.head.clone();
        if log.dropped > 0 {
            text.push_str(&format!("[… {} bytes of log left out …]\n", log.dropped));
        }
        for line in &log.tail {
            text.push_str(line);
        }
        text
    }
}

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One renderer adapter.
pub trait Renderer: Send + Sync {
    /// Which kind it is.
    fn kind(&self) -> RendererKind;

    /// Runs one attempt.
    fn render(&self, request: Request) -> BoxFuture<'_, Result<Vec<Output>, RenderError>>;

    /// Whether it writes files: if not (and the job has no scene), an attempt gets no work
    /// folder, which saves a short task the folder's creation and removal.
    fn writes_files(&self) -> bool {
        true
    }
}

/// The renderer of `kind`, if it can run here: the external renderers need their program
/// among `programs` ([`program::find`]).
pub fn adapter(kind: RendererKind, programs: &program::Programs) -> Option<Box<dyn Renderer>> {
    match kind {
        RendererKind::Builtin => Some(Box::new(builtin::Builtin)),
        RendererKind::Noop => Some(Box::new(noop::Noop)),
        RendererKind::Command => Some(Box::new(command::CommandRenderer)),
        RendererKind::Povray => programs.get(&kind).map(|p| {
            Box::new(povray::Povray {
                program: p.path.clone(),
            }) as Box<dyn Renderer>
        }),
        RendererKind::Blender => programs.get(&kind).map(|p| {
            Box::new(blender::Blender {
                program: p.path.clone(),
            }) as Box<dyn Renderer>
        }),
    }
}

/// The renderer kinds built into Tessera, which need no program.
pub fn built_in() -> Vec<RendererKind> {
    RendererKind::ALL
        .into_iter()
        .filter(|k| program::default_name(*k).is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_keeps_its_first_and_last_megabyte() {
        let log = Log::default();
        log.line("first line");
        let chunk = "x".repeat(1000);
        for _ in 0..5_000 {
            log.line(&chunk);
        }
        log.line("last line");
        let text = log.text();
        assert!(text.starts_with("first line\n"));
        assert!(text.ends_with("last line\n"));
        assert!(text.len() <= 2 * LOG_KEEP + 100, "{} bytes", text.len());
        assert!(text.contains("bytes of log left out"));
        let small = Log::default();
        small.line("a");
        small.line("b");
        assert_eq!(small.text(), "a\nb\n");
    }
}
