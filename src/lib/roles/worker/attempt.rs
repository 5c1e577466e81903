//! One attempt of a task: the scene laid out through the cache, the renderer run while
//! progress acks keep the delivery alive and progress events report how far it is, the
//! per-attempt timeout, and the outputs checked and named under the attempt's own keys
//! (the attempt's report uploads them, while the slot renders its next task).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};

use super::Shared;
use super::outcome::Outcome;
use super::running::Stop;
use crate::bus::protocol::{Event, EventKind, TaskMessage};
use crate::bus::publish;
use crate::core::job::{ImageFormat, RendererKind};
use crate::core::paths::check_relative_path;
use crate::core::raster;
use crate::core::tiles::Rect;
use crate::render::{self, Log, RenderError, Request};
use crate::store::keys;

/// How often a render's progress is reported (when it changed).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Where and how one attempt runs.
pub(super) struct Attempt<'a> {
    /// The delivery, for progress acks.
    pub(super) msg: &'a jetstream::Message,
    /// The task.
    pub(super) task: &'a TaskMessage,
    /// Its number, 1 for the first.
    pub(super) attempt: u32,
    /// A folder private to this attempt.
    pub(super) work: &'a Path,
    /// The attempt's log.
    pub(super) log: &'a Log,
    /// How it is stopped (cancel, timeout, shutdown).
    pub(super) stop: &'a Stop,
    /// How far the renderer is, in millionths (the lease shows it).
    pub(super) progress: &'a Arc<AtomicU32>,
}

/// Checks a renderer's output before it is uploaded: never empty, and an image of the
/// task's format, region size and depth — unless a `command` job says its outputs are not
/// images (`settings.check_outputs = false`).
fn check_output(task: &TaskMessage, name: &str, size: u64, bytes: &[u8]) -> Result<(), String> {
    let multilayer = task.renderer == RendererKind::Blender
        && render::blender::Settings::parse(&task.settings).is_ok_and(|s| s.multilayer);
    let verdict = if size == 0 {
        Err("is empty (0 bytes)".to_string())
    } else if task.renderer == RendererKind::Command
        && render::command::Settings::parse(&task.settings).is_ok_and(|s| !s.check_outputs)
    {
        Ok(())
    } else if multilayer {
        // Layers of passes, which the image decoder does not read: the file type it is.
        match bytes.starts_with(&EXR_MAGIC) {
            true => Ok(()),
            false => Err("is not an OpenEXR file".to_string()),
        }
    } else {
        let size = task.region.unwrap_or(Rect::full(task.width, task.height));
        let depth = match task.format {
            ImageFormat::Exr => 32,
            ImageFormat::Png => task.depth,
        };
        raster::check_header(bytes, task.format, size.width, size.height, depth)
    };
    verdict.map_err(|what| format!("the renderer's output {name} {what}"))
}

/// How much of an output its check reads: enough for any PNG or OpenEXR header.
const HEAD: u64 = 1 << 20;

/// The size of the file at `path` and its first [`HEAD`] bytes: an output is checked by
/// its header, and streamed to the store, never read whole.
async fn read_head(path: &std::path::Path) -> std::io::Result<(u64, Vec<u8>)> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    let mut head = Vec::with_capacity(HEAD.min(size) as usize);
    file.take(HEAD).read_to_end(&mut head).await?;
    Ok((size, head))
}

/// The first bytes of every OpenEXR file.
const EXR_MAGIC: [u8; 4] = [0x76, 0x2f, 0x31, 0x01];

/// An output the renderer wrote and the check passed, to be uploaded to `key`.
#[derive(Debug)]
pub(super) struct Output {
    /// Its key in the store.
    pub(super) key: String,
    /// The file, in the attempt's work folder.
    pub(super) path: std::path::PathBuf,
}

/// Uploads `outputs`; returns their keys, or why one could not be uploaded.
pub(super) async fn upload(shared: &Shared, outputs: Vec<Output>) -> Result<Vec<String>, String> {
    let mut keys = Vec::with_capacity(outputs.len());
    for Output { key, path } in outputs {
        shared
            .deps
            .store
            .put_file(&key, &path)
            .await
            .map_err(|e| format!("uploading {key}: {e}"))?;
        keys.push(key);
    }
    Ok(keys)
}

/// Runs the attempt; returns its checked outputs, or how it ended and why.
pub(super) async fn run(
    shared: &Shared,
    at: Attempt<'_>,
) -> Result<Vec<Output>, (Outcome, String)> {
    let Attempt {
        msg,
        task,
        attempt,
        work,
        log,
        stop,
        progress: attempt_progress,
    } = at;
    let failed = |e: String| (Outcome::Failed, e);
    let renderer = shared.renderers.get(&task.renderer).ok_or_else(|| {
        (
            Outcome::Invalid,
            format!("renderer {} does not run on this worker", task.renderer),
        )
    })?;
    let out_dir = work.join("out");
    if renderer.writes_files() {
        tokio::fs::create_dir_all(&out_dir)
            .await
            .map_err(|e| failed(format!("creating {}: {e}", out_dir.display())))?;
    }
    let scene = match &task.scene_manifest {
        Some(hex) => Some(
            shared
                .cache
                .materialize(&shared.deps.store, hex, &work.join("scene"))
                .await
                .map_err(|e| failed(format!("fetching the scene: {e:#}")))?,
        ),
        None => None,
    };
    let progress = attempt_progress.clone();
    let mut reported = 0;
    let request = Request {
        task: task.clone(),
        attempt,
        scene,
        out_dir,
        threads: shared.config.threads,
        classes: shared.config.classes.clone(),
        cancel: stop.token().clone(),
        log: log.clone(),
        progress: progress.clone(),
    };
    let render = renderer.render(request);
    tokio::pin!(render);
    // First ticks a period from now: an interval's immediate first tick would still wait
    // for the timer's next millisecond, twice per attempt.
    let every =
        |period: Duration| tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut keepalive = every(shared.config.ack_wait / 3);
    let mut report = every(PROGRESS_EVERY);
    // The job's timeout, never past the farm's limit (which also stands in for none).
    let job_limit = task.timeout_ms.map(Duration::from_millis);
    let deadline = match (job_limit, shared.config.max_attempt_time) {
        (Some(job), Some(farm)) => Some(job.min(farm)),
        (job, farm) => job.or(farm),
    };
    let timeout = async {
        match deadline {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);
    let mut timed_out = false;
    let result = loop {
        tokio::select! {
            result = &mut render => break result,
            _ = keepalive.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    tracing::warn!(error = %e, "progress ack");
                }
            }
            _ = report.tick() => {
                let now = progress.load(Ordering::Relaxed);
                if now != reported {
                    reported = now;
                    let mut event = Event::task(EventKind::TaskProgress, task, attempt, &shared.config.id);
                    event.progress = Some(now as f32 / 1e6);
                    if let Err(e) = publish::event(&shared.deps.js, &event).await {
                        tracing::debug!(error = %e, "publishing task.progress");
                    }
                }
            }
            () = &mut timeout, if !timed_out => {
                log.line(format!("timeout: the attempt ran past {:?}", deadline.unwrap_or_default()));
                timed_out = true;
                stop.stop(Outcome::Failed);
            }
        }
    };
    let files = match result {
        Ok(files) => files,
        Err(RenderError::Permanent(e)) => return Err((Outcome::Invalid, e)),
        Err(RenderError::Failed(e)) => return Err(failed(e)),
        Err(RenderError::Stopped(e)) => {
            let outcome = stop.outcome().unwrap_or(Outcome::Failed);
            let why = match outcome {
                Outcome::Failed => format!("timed out after {:?}", deadline.unwrap_or_default()),
                Outcome::ShuttingDown => "the worker is shutting down".to_string(),
                Outcome::Canceled => {
                    log.line("the job was canceled");
                    "the job was canceled".to_string()
                }
                _ => e,
            };
            return Err((outcome, why));
        }
    };
    let mut outputs = Vec::with_capacity(files.len());
    for file in files {
        check_relative_path(&file.name).map_err(|e| failed(format!("output name {e}")))?;
        let (size, head) = read_head(&file.path)
            .await
            .map_err(|e| failed(format!("reading output {}: {e}", file.path.display())))?;
        check_output(task, &file.name, size, &head).map_err(failed)?;
        // A bundle's frames go to their own tasks' folders.
        let owner = crate::core::frames::frame_of_file_name(&file.name)
            .map_or(&task.task, |frame| task.task_of(frame));
        let key = keys::attempt_output(&task.job, owner, attempt, &file.name);
        outputs.push(Output {
            key,
            path: file.path,
        });
    }
    Ok(outputs)
}
