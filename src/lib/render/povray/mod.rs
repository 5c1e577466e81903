//! The `povray` renderer: POV-Ray 3.7 run on the task's scene, once per run of consecutive
//! frames.
//!
//! - **Frames** go through POV-Ray's animation options: `+KFI`/`+KFF` are the job's first
//!   and last frame and `+KI`/`+KF` the clock there (`settings.clock`), so every frame gets
//!   the clock it gets when the whole animation renders in one run; `+SF`/`+EF` pick this
//!   task's frames. A chunk of consecutive frames is one POV-Ray run. A job of one frame
//!   renders a still at the clock's start (`+K`).
//! - **Tiles** go through partial rendering (`+SC`/`+EC`/`+SR`/`+ER`). POV-Ray renders in
//!   blocks of 32×32 pixels counted from the region's corner, and antialiasing looks only
//!   inside a block, so a region starting off the block grid differs at its block edges from
//!   the whole render. The region rendered is therefore grown up and left to the grid, which
//!   makes every pixel equal to the whole render's; POV-Ray writes a whole-size image with
//!   only the region filled, and the task's region is cropped from it.
//! - **Outputs** are PNG, 8 or 16 bits per channel (`+FN8`/`+FN16`), without alpha.
//! - **Progress** comes from POV-Ray's "Rendering frame i of n" and "Rendered a of b
//!   pixels" lines; a parse error (`File 'x.pov' line 3: Parse Error: …`) is the attempt's
//!   failure reason and fails the task at once: the scene is wrong, another attempt would
//!   fail the same way.

pub mod scan;
pub mod settings;

pub use settings::Settings;

use std::path::{Path, PathBuf};

use super::{BoxFuture, Output, RenderError, Renderer, Request, child};
use crate::core::frames::frame_file_name;
use crate::core::job::{ImageFormat, RendererKind};
use crate::core::raster;
use crate::core::tiles::Rect;

/// POV-Ray's render block size (`+BS`, its default), the grid tiles are aligned to.
pub const BLOCK: u32 = 32;

/// The `povray` renderer, running `program`.
pub struct Povray {
    /// The POV-Ray program.
    pub program: PathBuf,
}

/// What one line of POV-Ray's output says about progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// "Rendering frame `i` of `n`" (within this run).
    Frame(u32, u32),
    /// "Rendered `done` of `total` pixels".
    Pixels(u64, u64),
}

/// Reads a progress line.
pub fn parse_progress(line: &str) -> Option<Progress> {
    let numbers = |rest: &str, sep: &str| {
        let (a, rest) = rest.split_once(sep)?;
        let b: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some((a.trim().parse::<u64>().ok()?, b.parse::<u64>().ok()?))
    };
    if let Some(rest) = line.trim().strip_prefix("Rendering frame ") {
        let (i, n) = numbers(rest, " of ")?;
        return Some(Progress::Frame(
            u32::try_from(i).ok()?,
            u32::try_from(n).ok()?,
        ));
    }
    let rest = line.trim().strip_prefix("Rendered ")?;
    let (done, total) = numbers(rest, " of ")?;
    (total > 0).then_some(Progress::Pixels(done.min(total), total))
}

/// Reads a parse error: `File 'scene.pov' line 3: Parse Error: Cannot open include file
/// lights.inc.` gives `scene.pov line 3: Cannot open include file lights.inc.`.
pub fn parse_error(line: &str) -> Option<String> {
    let (place, message) = line.split_once(": Parse Error: ")?;
    let place = place.trim();
    let place = match place.strip_prefix("File '") {
        Some(rest) => {
            let (file, line) = rest.split_once("' line ")?;
            format!("{file} line {line}")
        }
        None => place.to_string(),
    };
    Some(format!("{place}: {}", message.trim()))
}

/// The rectangle POV-Ray renders for `region`: grown up and left to the block grid.
pub fn aligned(region: Rect) -> Rect {
    let x = region.x / BLOCK * BLOCK;
    let y = region.y / BLOCK * BLOCK;
    Rect {
        x,
        y,
        width: region.right() - x,
        height: region.bottom() - y,
    }
}

/// The task's frames split into runs of consecutive frames, each one POV-Ray run.
pub fn runs(frames: &[u32]) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &frame in frames {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == frame => *last = frame,
            _ => runs.push((frame, frame)),
        }
    }
    runs
}

/// The frame a file POV-Ray wrote for output base `f` holds: `f3.png`, `f03.png` → 3.
fn frame_of(file_name: &str) -> Option<u32> {
    file_name
        .strip_prefix('f')?
        .strip_suffix(".png")?
        .parse()
        .ok()
}

impl Renderer for Povray {
    fn kind(&self) -> RendererKind {
        RendererKind::Povray
    }

    fn render(&self, request: Request) -> BoxFuture<'_, Result<Vec<Output>, RenderError>> {
        Box::pin(async move {
            let task = &request.task;
            let settings = Settings::parse(&task.settings)
                .map_err(|e| RenderError::Permanent(e.to_string()))?;
            if task.format != ImageFormat::Png {
                return Err(RenderError::Permanent(
                    "povray writes PNG: set [image] format = \"png\"".into(),
                ));
            }
            let scene = request.scene.clone().ok_or_else(|| {
                RenderError::Permanent("povray needs a scene: set scene = \"….pov\"".into())
            })?;
            let cwd = scene.parent().unwrap_or(Path::new(".")).to_path_buf();
            let entry = scene
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let [first, last] = task.sequence.unwrap_or([
                task.frames[0],
                *task.frames.last().expect("a task has frames"),
            ]);
            let full = Rect::full(task.width, task.height);
            let region = task.region.filter(|r| *r != full);
            let mut outputs = Vec::new();
            let total = task.frames.len() as f64;
            let mut done_before = 0.0;
            for (run_first, run_last) in runs(&task.frames) {
                let dir = request.out_dir.join(format!("povray-{run_first}"));
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| RenderError::Failed(format!("creating {}: {e}", dir.display())))?;
                let mut argv = vec![
                    self.program.display().to_string(),
                    format!("+I{entry}"),
                    format!("+O{}", dir.join("f.png").display()),
                    format!("+W{}", task.width),
                    format!("+H{}", task.height),
                    format!("+FN{}", task.depth),
                    "-D".to_string(),
                    "-P".to_string(),
                    format!("+WT{}", request.threads.max(1)),
                ];
                argv.extend(settings.options());
                argv.extend(settings.clock_options(first, last));
                if first != last {
                    argv.push(format!("+SF{run_first}"));
                    argv.push(format!("+EF{run_last}"));
                }
                if let Some(region) = region {
                    let render = aligned(region);
                    argv.push(format!("+SC{}", render.x + 1));
                    argv.push(format!("+EC{}", render.right()));
                    argv.push(format!("+SR{}", render.y + 1));
                    argv.push(format!("+ER{}", render.bottom()));
                }
                let run_frames = f64::from(run_last - run_first + 1);
                let mut frame_in_run = 0.0;
                let mut diagnosis: Option<String> = None;
                let mut last_error: Option<String> = None;
                let mut on_line = |line: child::Line<'_>| {
                    match parse_progress(line.text) {
                        Some(Progress::Frame(i, _)) => frame_in_run = f64::from(i.max(1) - 1),
                        Some(Progress::Pixels(a, b)) => request.set_progress(
                            (done_before + (frame_in_run + a as f64 / b as f64).min(run_frames))
                                / total,
                        ),
                        None => {}
                    }
                    if diagnosis.is_none() {
                        diagnosis = parse_error(line.text);
                    }
                    if line.text.contains("rror") {
                        last_error = Some(line.text.trim().to_string());
                    }
                };
                let ran = child::run(&request, &argv, &cwd, &mut on_line).await;
                match ran {
                    Ok(()) => {}
                    Err(RenderError::Failed(why)) => {
                        return Err(match diagnosis {
                            Some(parse) => RenderError::Permanent(format!("POV-Ray: {parse}")),
                            None => RenderError::Failed(match last_error {
                                Some(line) => format!("{why}: {line}"),
                                None => why,
                            }),
                        });
                    }
                    Err(other) => return Err(other),
                }
                done_before += run_frames;
                outputs.extend(
                    collect(
                        &dir,
                        &request.out_dir,
                        run_first,
                        run_last,
                        first == last,
                        region,
                        task.depth,
                    )
                    .await?,
                );
            }
            Ok(outputs)
        })
    }
}

/// The frames a run wrote in `dir`, as the task's outputs in `out_dir`: renamed, or for a
/// tile cropped to its region.
async fn collect(
    dir: &Path,
    out_dir: &Path,
    run_first: u32,
    run_last: u32,
    single: bool,
    region: Option<Rect>,
    depth: u8,
) -> Result<Vec<Output>, RenderError> {
    let failed = |e: String| RenderError::Failed(e);
    let mut written = Vec::new();
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(|e| failed(format!("reading {}: {e}", dir.display())))?;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| failed(format!("reading {}: {e}", dir.display())))?
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let frame = if single && name == "f.png" {
            Some(run_first)
        } else {
            frame_of(&name)
        };
        if let Some(frame) = frame.filter(|f| (run_first..=run_last).contains(f)) {
            written.push((frame, entry.path()));
        }
    }
    written.sort();
    let expected = (run_last - run_first + 1) as usize;
    if written.len() != expected {
        return Err(failed(format!(
            "POV-Ray exited 0 but wrote {} of the {expected} frames {run_first}-{run_last}",
            written.len()
        )));
    }
    let mut outputs = Vec::with_capacity(written.len());
    for (frame, path) in written {
        let name = frame_file_name(frame, "png");
        let target = out_dir.join(&name);
        match region {
            None => tokio::fs::rename(&path, &target)
                .await
                .map_err(|e| failed(format!("moving {}: {e}", path.display())))?,
            Some(region) => {
                let (path, target) = (path.clone(), target.clone());
                tokio::task::spawn_blocking(move || crop(&path, region, &target, depth))
                    .await
                    .map_err(|e| failed(format!("cropping a tile: {e}")))??;
            }
        }
        outputs.push(Output { name, path: target });
    }
    Ok(outputs)
}

/// Crops `region` out of the whole-size image POV-Ray wrote at `path`.
fn crop(path: &Path, region: Rect, target: &Path, depth: u8) -> Result<(), RenderError> {
    let failed = |e: String| RenderError::Failed(e);
    let bytes =
        std::fs::read(path).map_err(|e| failed(format!("reading {}: {e}", path.display())))?;
    let image = raster::decode(&bytes).map_err(|e| failed(format!("POV-Ray's output: {e}")))?;
    if !Rect::full(image.width(), image.height()).contains(region) {
        return Err(failed(format!(
            "POV-Ray wrote {}x{}, which does not hold the tile {region:?}",
            image.width(),
            image.height()
        )));
    }
    let tile = image.crop_imm(region.x, region.y, region.width, region.height);
    let tile = if depth == 16 {
        image::DynamicImage::ImageRgb16(tile.to_rgb16())
    } else {
        image::DynamicImage::ImageRgb8(tile.to_rgb8())
    };
    let encoded =
        raster::encode_image(&tile, ImageFormat::Png).map_err(|e| failed(e.to_string()))?;
    std::fs::write(target, encoded)
        .map_err(|e| failed(format!("writing {}: {e}", target.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_progress_and_errors() {
        for (line, want) in [
            ("Rendering frame 2 of 3", Some(Progress::Frame(2, 3))),
            (
                "Rendered 1024 of 19200 pixels (5%)",
                Some(Progress::Pixels(1024, 19200)),
            ),
            ("Rendered 5 of 0 pixels", None),
            ("Render Options", None),
        ] {
            assert_eq!(parse_progress(line), want, "{line}");
        }
        assert_eq!(
            parse_error(
                "File 'scene.pov' line 3: Parse Error: Cannot open include file lights.inc."
            )
            .as_deref(),
            Some("scene.pov line 3: Cannot open include file lights.inc.")
        );
        assert_eq!(
            parse_error("File 'scene.pov' line 3: Possible Parse Error: Cannot find file"),
            None
        );
    }

    #[test]
    fn tiles_grow_to_the_block_grid_and_frames_split_into_runs() {
        let r = Rect {
            x: 40,
            y: 70,
            width: 30,
            height: 10,
        };
        assert_eq!(
            aligned(r),
            Rect {
                x: 32,
                y: 64,
                width: 38,
                height: 16
            }
        );
        let corner = Rect {
            x: 0,
            y: 0,
            width: 10,
            height: 10,
        };
        assert_eq!(aligned(corner), corner);
        assert_eq!(runs(&[1, 2, 3, 5, 7, 8]), [(1, 3), (5, 5), (7, 8)]);
        assert_eq!(frame_of("f03.png"), Some(3));
        assert_eq!(frame_of("f.png"), None);
    }
}
