//! The sequence outputs (`[outputs]`): once every frame of a done job is stored, the end
//! check asks for them with a `job.encoding` event instead of ending the job. The
//! collector that takes that event hands it to a task of its own, so the other events of
//! its partition go on meanwhile: the task keeps the event alive with progress
//! acknowledgements, reads each sequence's frames one at a time, grades them
//! ([`core::post`](crate::core::post)), feeds the movie to `ffmpeg` (where the collector
//! has it) and builds the animated PNG and the contact sheet, stores what is missing (only
//! if absent), runs the end check again — which now ends the job — and acknowledges the
//! event. A collector killed meanwhile leaves the event to come back; whatever it stored
//! stays. A job whose sequence cannot be made (a LUT that does not parse, a frame that
//! does not decode, ffmpeg refusing) fails with the reason; its frames stay.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use image::RgbImage;
use tokio::io::AsyncWriteExt as _;

use crate::bus::protocol::{Event, EventKind};
use crate::bus::publish;
use crate::config::Deps;
use crate::core::composite;
use crate::core::job::{ImageFormat, Job};
use crate::core::outputs::{self, ANIMATION, CONTACT_SHEET, MOVIE, Sequence};
use crate::core::post::{self, Lut3d, Post};
use crate::core::raster;
use crate::core::sequence::{Animation, Sheet, SheetLayout};
use crate::core::state::JobState;
use crate::lifecycle;
use crate::store::keys;
use crate::store::package::Manifest;

/// How often the task holding a `job.encoding` event tells the server it is alive.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// The widest movie written; wider frames are scaled down to it.
const MOVIE_MAX_WIDTH: u32 = 3840;

/// `ffmpeg` on this machine: `TESSERA_FFMPEG`, else the first on `PATH`; looked up once.
pub(super) fn ffmpeg() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("TESSERA_FFMPEG") {
                return Some(PathBuf::from(path)).filter(|p| p.is_file());
            }
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join("ffmpeg"))
                .find(|p| p.is_file())
        })
        .as_deref()
}

/// The sequence outputs `job` asks for that are not among `stored` (its output keys).
pub(super) fn missing(job: &Job, stored: &HashSet<&String>) -> Vec<String> {
    outputs::sequences(job)
        .iter()
        .flat_map(|s| s.outputs(job, ffmpeg().is_some()))
        .map(|name| keys::output(job, &name))
        .filter(|key| !stored.contains(key))
        .collect()
}

/// Asks for `job`'s sequence outputs: a `job.encoding` event, once per job.
pub(super) async fn request(deps: &Deps, job: &Job) -> anyhow::Result<()> {
    let mut event = Event::new(EventKind::JobEncoding, job.id.as_str());
    event.incarnation = Some(job.incarnation.clone());
    event.message = Some("every frame is in; writing the sequence outputs".into());
    let msg_id = format!(
        "{}:{}:{}",
        job.id,
        job.incarnation,
        EventKind::JobEncoding.as_str()
    );
    publish::event_pending(&deps.js, &event, Some(&msg_id))
        .await?
        .confirmed()
        .await
}

/// Takes over `msg`, the `job.encoding` event of `job`: a task writes the sequence
/// outputs, ends the job and answers the event.
pub(super) fn start(deps: Deps, job: Arc<Job>, msg: jetstream::Message) {
    tokio::spawn(async move {
        let work = encode_and_end(&deps, &job);
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                () = tokio::time::sleep(PROGRESS_EVERY) => {
                    if let Err(e) = msg.ack_with(AckKind::Progress).await {
                        tracing::debug!(error = %e, "progress on a job.encoding event");
                    }
                }
            }
        };
        let answer = match result {
            Ok(()) => msg.ack().await,
            Err(e) => {
                tracing::warn!(job = %job.id, error = format!("{e:#}"), "writing the sequence outputs; trying again");
                msg.ack_with(AckKind::Nak(Some(Duration::from_secs(10))))
                    .await
            }
        };
        if let Err(e) = answer {
            tracing::warn!(job = %job.id, error = %e, "answering a job.encoding event");
        }
    });
}

/// Why a sequence could not be made.
enum Failure {
    /// The job's own doing (a bad LUT, a frame that does not decode, ffmpeg refusing): the
    /// job fails with this.
    Job(String),
    /// Anything else (the store unreachable): tried again.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Other(e)
    }
}

async fn encode_and_end(deps: &Deps, job: &Job) -> anyhow::Result<()> {
    let listed = deps.store.list(&keys::output_prefix(job)).await?;
    let stored: HashSet<&String> = listed.iter().collect();
    let mut failure = None;
    for sequence in outputs::sequences(job) {
        let wanted: Vec<String> = sequence
            .outputs(job, ffmpeg().is_some())
            .into_iter()
            .filter(|name| !stored.contains(&keys::output(job, name)))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let began = std::time::Instant::now();
        match write_sequence(deps, job, &sequence, &wanted).await {
            Ok(()) => crate::metrics::METRICS.assembled("sequence", began.elapsed()),
            Err(Failure::Job(why)) => {
                failure = Some(why);
                break;
            }
            Err(Failure::Other(e)) => return Err(e),
        }
    }
    if let Some(why) = failure {
        let message = format!("the frames are stored, but {why}");
        return lifecycle::end_job(deps, job, JobState::Failed, Some(message), None).await;
    }
    tracing::info!(job = %job.id, "sequence outputs written");
    super::ending::check_end(deps, job, 0).await
}

/// The post chain of `job`, its LUTs read from the job's scene.
async fn chain(deps: &Deps, job: &Job) -> Result<Vec<Post>, Failure> {
    let mut manifest = None;
    let mut steps = Vec::with_capacity(job.outputs.post.len());
    for step in &job.outputs.post {
        let lut = match step {
            crate::core::job::PostStep::Lut(path) => {
                if manifest.is_none() {
                    let Some(hex) = &job.scene_manifest else {
                        return Err(Failure::Job(format!("the LUT {path} needs a scene")));
                    };
                    let bytes = deps.store.get(&keys::manifest(hex)).await;
                    let bytes =
                        bytes.with_context(|| format!("reading the scene of {}", job.id))?;
                    let parsed =
                        Manifest::parse(&bytes).map_err(|e| Failure::Job(e.to_string()))?;
                    manifest = Some(parsed);
                }
                let files = &manifest.as_ref().expect("read above").files;
                let Some(hash) = files.get(path) else {
                    return Err(Failure::Job(format!(
                        "the LUT {path} is not in the scene folder"
                    )));
                };
                let bytes = deps.store.get(&keys::blob(hash)).await;
                let bytes = bytes.with_context(|| format!("reading the LUT {path}"))?;
                let text = String::from_utf8_lossy(&bytes);
                Some(
                    Lut3d::parse(&text)
                        .map_err(|e| Failure::Job(format!("the LUT {path}: {e}")))?,
                )
            }
            _ => None,
        };
        steps.push(
            step.resolve(|_| lut.ok_or(()))
                .map_err(|()| Failure::Job("a LUT step without its LUT".into()))?,
        );
    }
    Ok(steps)
}

/// One frame of a sequence, graded: at the movie's size, the animation's and the sheet's.
struct Graded {
    movie: RgbImage,
    animation: RgbImage,
    thumb: RgbImage,
}

/// Writes the outputs named `wanted` of `sequence`.
async fn write_sequence(
    deps: &Deps,
    job: &Job,
    sequence: &Sequence,
    wanted: &[String],
) -> Result<(), Failure> {
    let wants = |name: &str| wanted.iter().any(|w| w.ends_with(name));
    let chain = Arc::new(chain(deps, job).await?);
    let display = job.outputs.display;
    let (width, height) = (job.image.width, job.image.height);
    let count = sequence.frames.len() as u32;
    let movie_size = post::fit_width(width, height, MOVIE_MAX_WIDTH);
    let animation_size = post::fit_width(width, height, job.outputs.preview_width);
    let layout = SheetLayout::new(count, width, height);
    let mut movie = match (wants(MOVIE), ffmpeg()) {
        (true, Some(program)) => Some(Movie::start(program, movie_size, job.outputs.fps)?),
        _ => None,
    };
    let mut animation = match wants(ANIMATION) {
        true => Some(
            Animation::new(count, animation_size.0, animation_size.1, job.outputs.fps)
                .map_err(|e| Failure::Job(format!("the animation cannot be written: {e}")))?,
        ),
        false => None,
    };
    let mut sheet = wants(CONTACT_SHEET).then(|| Sheet::new(layout));
    for (i, (frame, name)) in sequence.frames.iter().enumerate() {
        let key = keys::output(job, name);
        let bytes = deps.store.get(&key).await;
        let bytes = bytes.with_context(|| format!("reading {name}"))?;
        let (chain, format, name_owned) = (chain.clone(), sequence.format, name.clone());
        let graded = tokio::task::spawn_blocking(move || {
            grade(
                &bytes,
                format,
                &chain,
                display,
                movie_size,
                animation_size,
                layout.thumb,
            )
            .map_err(|e| format!("{name_owned} cannot be read: {e}"))
        })
        .await
        .map_err(anyhow::Error::from)?
        .map_err(Failure::Job)?;
        if let Some(movie) = &mut movie {
            movie.push(&graded.movie).await?;
        }
        if let Some(animation) = &mut animation {
            animation
                .push(&graded.animation)
                .map_err(|e| Failure::Job(format!("the animation cannot be written: {e}")))?;
        }
        if let Some(sheet) = &mut sheet {
            sheet.place(i as u32, *frame, &graded.thumb);
        }
    }
    let folder = &sequence.folder;
    let put = async |name: &str, bytes: Vec<u8>| -> Result<(), Failure> {
        let key = keys::output(job, &format!("{folder}{name}"));
        deps.store
            .put_if_absent(&key, Bytes::from(bytes))
            .await
            .with_context(|| format!("storing {folder}{name}"))?;
        Ok(())
    };
    if let Some(animation) = animation {
        let bytes = animation
            .finish()
            .map_err(|e| Failure::Job(format!("the animation cannot be written: {e}")))?;
        put(ANIMATION, bytes).await?;
    }
    if let Some(sheet) = sheet {
        let image = image::DynamicImage::ImageRgb8(sheet.finish());
        let bytes = raster::encode_image(&image, ImageFormat::Png)
            .map_err(|e| Failure::Job(format!("the contact sheet cannot be written: {e}")))?;
        put(CONTACT_SHEET, bytes).await?;
    }
    if let Some(movie) = movie {
        put(MOVIE, movie.finish().await?).await?;
    }
    Ok(())
}

/// Decodes a stored frame and grades it at each size.
fn grade(
    bytes: &[u8],
    format: ImageFormat,
    chain: &[Post],
    display: post::Display,
    movie: (u32, u32),
    animation: (u32, u32),
    thumb: (u32, u32),
) -> Result<Graded, raster::ImageError> {
    let decoded = raster::decode(bytes)?;
    let linear = composite::to_linear(decoded, format);
    let full = post::to_display(&linear, chain, display);
    Ok(Graded {
        movie: post::resize(&full, movie.0, movie.1),
        animation: post::resize(&full, animation.0, animation.1),
        thumb: post::resize(&full, thumb.0, thumb.1),
    })
}

/// An H.264 movie being encoded by ffmpeg from raw RGB frames on its standard input, into
/// a file of its own in the temporary folder.
struct Movie {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    file: Scratch,
}

/// A file of the temporary folder, removed when dropped: however the movie ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Movie {
    fn start(program: &Path, (width, height): (u32, u32), fps: f64) -> Result<Movie, Failure> {
        let file =
            Scratch(std::env::temp_dir().join(format!("tessera-movie-{}.mp4", nuid::next())));
        // Every argument is the collector's own: nothing of the job but numbers.
        let mut child = tokio::process::Command::new(program)
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24"])
            .args([
                "-s",
                &format!("{width}x{height}"),
                "-framerate",
                &fps.to_string(),
            ])
            .args(["-i", "pipe:0"])
            .args(["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"])
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "fast"])
            .args(["-movflags", "+faststart", "-f", "mp4"])
            .arg(&file.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Failure::Job(format!("ffmpeg ({}) cannot start: {e}", program.display()))
            })?;
        let stdin = child.stdin.take().expect("piped above");
        Ok(Movie { child, stdin, file })
    }

    async fn push(&mut self, frame: &RgbImage) -> Result<(), Failure> {
        if self.stdin.write_all(frame.as_raw()).await.is_err() {
            // ffmpeg stopped reading: what it says comes with finish.
            return Err(self.refused().await);
        }
        Ok(())
    }

    async fn refused(&mut self) -> Failure {
        let mut said = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut said).await;
        }
        let _ = self.child.kill().await;
        Failure::Job(format!("ffmpeg refused the movie: {}", said.trim()))
    }

    async fn finish(mut self) -> Result<Vec<u8>, Failure> {
        let _ = self.stdin.shutdown().await;
        drop(self.stdin);
        let output = self.child.wait_with_output().await;
        let output = output.context("waiting for ffmpeg")?;
        if output.status.success() {
            std::fs::read(&self.file.0)
                .map_err(|e| Failure::Other(anyhow::anyhow!("reading the movie ffmpeg wrote: {e}")))
        } else {
            let said = String::from_utf8_lossy(&output.stderr);
            Err(Failure::Job(format!(
                "ffmpeg refused the movie ({}): {}",
                output.status,
                said.trim()
            )))
        }
    }
}
