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

/// A shared, append-only attempt log.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<String>>);

impl Log {
    /// Appends a line.
    pub fn line(&self, text: impl AsRef<str>) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        log.push_str(text.as_ref());
        log.push('\n');
    }

    /// The text so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
