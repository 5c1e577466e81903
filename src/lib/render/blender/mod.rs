//! The `blender` renderer: Blender run headless on the task's `.blend` scene, once per task
//! (a chunk's frames render in one Blender process), through a fixed Python script
//! ([`SCRIPT`]) that gets every job value as a `key=value` argument.
//!
//! - **Size, samples, seed**: the job's image size at 100 %; Cycles samples and seed from
//!   `[settings]` (the scene's own when absent).
//! - **Tiles** go through a border render cropped to the border. Dithering, adaptive
//!   sampling and denoising are turned off on the farm, because each makes a pixel depend
//!   on its neighbours or on the image buffer; with them off and a fixed seed, Cycles renders
//!   every pixel of a tile exactly as in the whole frame.
//! - **Layers**: a job's `[[layers]]` are the scene's view layers, one rendered per task.
//! - **Formats**: PNG of 8 or 16 bits, or 32-bit float OpenEXR, RGB; with
//!   `settings.multilayer = true`, multilayer OpenEXR holding every pass the view layer has
//!   enabled (untiled jobs only: the collector stitches single-layer images).
//! - **Device**: a worker of the `gpu` class renders on the first GPU Blender finds (OptiX,
//!   CUDA, HIP, oneAPI, Metal), and on the CPU when it finds none; others on the CPU.
//! - **Add-ons** the scene needs are named in `settings.addons`; one the worker lacks fails
//!   the task with its name.
//! - **Progress** comes from Blender's `Fra:N … | Sample a/b` lines; a Python error (its
//!   last traceback line) or the script's own error is the failure reason, and fails the
//!   task at once.
//!
//! The scene's own Python (drivers, startup scripts) does not run: Blender starts with
//! factory settings and auto-run disabled.

pub mod inspect;

use std::path::{Path, PathBuf};

use super::{BoxFuture, Output, RenderError, Renderer, Request, child};
use crate::core::frames::frame_file_name;
use crate::core::job::{Class, RendererKind};
use crate::core::problem::{Invalid, Problems};
use crate::core::tiles::Rect;
use crate::render::setting::whole;

/// The task script run inside Blender.
pub const SCRIPT: &str = include_str!("render.py");

/// Blender's exit code when a Python script fails (`--python-exit-code`).
const PYTHON_EXIT: i32 = 3;

/// Most samples `settings.samples` may ask for.
pub const MAX_SAMPLES: u32 = 1 << 16;

/// Blender's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Cycles samples per pixel (`samples`); the scene's own when absent.
    pub samples: Option<u32>,
    /// Cycles seed (`seed`); the scene's own when absent.
    pub seed: Option<u32>,
    /// Add-ons the scene needs (`addons`), enabled before it renders.
    pub addons: Vec<String>,
    /// Write multilayer OpenEXR: every pass of the view layer in one file (`multilayer`;
    /// EXR jobs without tiles only).
    pub multilayer: bool,
}

impl Settings {
    /// Reads the settings, the same way at validation and at render.
    pub fn parse(
        settings: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Settings, Invalid> {
        let mut problems = Problems::default();
        let mut parsed = Settings {
            samples: whole(settings, &mut problems, "samples", 1, MAX_SAMPLES),
            seed: whole(settings, &mut problems, "seed", 0, i32::MAX as u32),
            ..Settings::default()
        };
        if let Some(value) = settings.get("addons") {
            let names = value.as_array().and_then(|items| {
                items
                    .iter()
                    .map(|i| i.as_str().filter(|s| is_module_name(s)).map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            });
            match names {
                Some(names) => parsed.addons = names,
                None => problems.add(
                    "settings.addons",
                    format!(
                        "{value} is not a list of add-on module names such as [\"node_wrangler\"]"
                    ),
                ),
            }
        }
        if let Some(value) = settings.get("multilayer") {
            match value.as_bool() {
                Some(on) => parsed.multilayer = on,
                None => problems.add(
                    "settings.multilayer",
                    format!("{value} is not true or false"),
                ),
            }
        }
        problems.into_result(parsed)
    }
}

/// A Python module name: letters, digits and `_`, not starting with a digit.
fn is_module_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && !text.starts_with(|c: char| c.is_ascii_digit())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What a line of Blender's output says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// `Fra:N … | Sample a/b`.
    Sample {
        /// The frame.
        frame: u32,
        /// Samples done.
        done: u32,
        /// Samples in all.
        total: u32,
    },
    /// The task script refused (`TESSERA-ERROR: …`).
    Refused(String),
    /// The last line of a Python traceback (`NameError: …`).
    PythonError(String),
    /// Blender's own error (`Error: …`).
    Error(String),
}

/// Reads one line of Blender's output.
pub fn parse_line(line: &str) -> Option<Said> {
    let line = line.trim();
    if let Some(message) = line.strip_prefix("TESSERA-ERROR: ") {
        return Some(Said::Refused(message.to_string()));
    }
    if let Some(rest) = line.strip_prefix("Fra:") {
        let frame: u32 = rest.split_whitespace().next()?.parse().ok()?;
        let sample = line
            .rsplit("| Sample ")
            .next()
            .filter(|s| s.len() < line.len())?;
        let (done, total) = sample.split_once('/')?;
        let total: String = total.chars().take_while(char::is_ascii_digit).collect();
        return Some(Said::Sample {
            frame,
            done: done.trim().parse().ok()?,
            total: total.parse().ok().filter(|t| *t > 0)?,
        });
    }
    if let Some(message) = line.strip_prefix("Error: ") {
        return Some(Said::Error(message.to_string()));
    }
    let (name, message) = line.split_once(": ")?;
    (name.ends_with("Error") || name.ends_with("Exception"))
        .then(|| {
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        })
        .filter(|ok| *ok)
        .map(|_| Said::PythonError(format!("{name}: {message}")))
}

/// The `blender` renderer, running `program`.
pub struct Blender {
    /// The Blender program.
    pub program: PathBuf,
}

impl Renderer for Blender {
    fn kind(&self) -> RendererKind {
        RendererKind::Blender
    }

    fn render(&self, request: Request) -> BoxFuture<'_, Result<Vec<Output>, RenderError>> {
        Box::pin(async move {
            let task = &request.task;
            let settings = Settings::parse(&task.settings)
                .map_err(|e| RenderError::Permanent(e.to_string()))?;
            let scene = request.scene.clone().ok_or_else(|| {
                RenderError::Permanent("blender needs a scene: set scene = \"….blend\"".into())
            })?;
            let cwd = scene.parent().unwrap_or(Path::new(".")).to_path_buf();
            let script = request.out_dir.join("tessera-render.py");
            tokio::fs::write(&script, SCRIPT)
                .await
                .map_err(|e| RenderError::Failed(format!("writing {}: {e}", script.display())))?;
            let extension = task.format.extension();
            let frames: Vec<String> = task.frames.iter().map(u32::to_string).collect();
            let mut args = vec![
                format!("out={}", request.out_dir.display()),
                format!("frames={}", frames.join(",")),
                format!("width={}", task.width),
                format!("height={}", task.height),
                format!("format={extension}"),
                format!("depth={}", task.depth),
                format!("threads={}", request.threads.max(1)),
            ];
            let full = Rect::full(task.width, task.height);
            if let Some(r) = task.region.filter(|r| *r != full) {
                args.push(format!("region={},{},{},{}", r.x, r.y, r.width, r.height));
            }
            if let Some(layer) = &task.layer {
                args.push(format!("layer={layer}"));
            }
            if let Some(samples) = settings.samples {
                args.push(format!("samples={samples}"));
            }
            if let Some(seed) = settings.seed {
                args.push(format!("seed={seed}"));
            }
            if settings.multilayer {
                args.push("multilayer=1".to_string());
            }
            if !settings.addons.is_empty() {
                args.push(format!("addons={}", settings.addons.join(",")));
            }
            if request.classes.contains(&Class::gpu()) {
                args.push("device=gpu".to_string());
            }
            let mut argv = vec![
                self.program.display().to_string(),
                "-b".to_string(),
                "--factory-startup".to_string(),
                "--disable-autoexec".to_string(),
                scene.display().to_string(),
                "--python-exit-code".to_string(),
                PYTHON_EXIT.to_string(),
                "--python".to_string(),
                script.display().to_string(),
                "--".to_string(),
            ];
            argv.extend(args);
            let total = task.frames.len() as f64;
            let mut refused: Option<String> = None;
            let mut python: Option<String> = None;
            let mut error: Option<String> = None;
            let mut on_line = |line: child::Line<'_>| match parse_line(line.text) {
                Some(Said::Sample {
                    frame,
                    done,
                    total: samples,
                }) => {
                    let index = task.frames.iter().position(|f| *f == frame).unwrap_or(0);
                    request.set_progress(
                        (index as f64 + f64::from(done.min(samples)) / f64::from(samples)) / total,
                    );
                }
                Some(Said::Refused(why)) => refused = Some(why),
                Some(Said::PythonError(why)) => python = Some(why),
                Some(Said::Error(why)) => {
                    error.get_or_insert(why);
                }
                None => {}
            };
            let ran = child::run(&request, &argv, &cwd, &mut on_line).await;
            match ran {
                Ok(()) => {}
                Err(RenderError::Failed(why)) => {
                    return Err(if let Some(why) = refused {
                        RenderError::Permanent(format!("Blender: {why}"))
                    } else if let Some(why) = python {
                        RenderError::Permanent(format!("Blender: Python error: {why}"))
                    } else if let Some(message) = error {
                        RenderError::Failed(format!("Blender: {message} ({why})"))
                    } else {
                        RenderError::Failed(why)
                    });
                }
                Err(other) => return Err(other),
            }
            let _ = tokio::fs::remove_file(&script).await;
            let mut outputs = Vec::with_capacity(task.frames.len());
            for &frame in &task.frames {
                let name = frame_file_name(frame, extension);
                let path = request.out_dir.join(&name);
                if !path.is_file() {
                    return Err(RenderError::Failed(match error {
                        Some(message) => format!("Blender did not write frame {frame}: {message}"),
                        None => format!("Blender exited 0 but did not write frame {frame}"),
                    }));
                }
                outputs.push(Output { name, path });
            }
            Ok(outputs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_progress_and_errors_from_blenders_output() {
        for (line, want) in [
            (
                "Fra:5 Mem:10.24M (Peak 10.28M) | Time:00:00.05 | Remaining:00:00.02 | Mem:1.12M, Peak:1.12M | Scene, main | Sample 1/8",
                Some(Said::Sample {
                    frame: 5,
                    done: 1,
                    total: 8,
                }),
            ),
            (
                "Fra:5 Mem:9.14M | Scene, main | Synchronizing object | Sphere",
                None,
            ),
            (
                "TESSERA-ERROR: the scene has no view layer 'x' (it has: main)",
                Some(Said::Refused(
                    "the scene has no view layer 'x' (it has: main)".into(),
                )),
            ),
            (
                "NameError: name 'undefined_thing' is not defined",
                Some(Said::PythonError(
                    "NameError: name 'undefined_thing' is not defined".into(),
                )),
            ),
            (
                "Error: Cannot read file \"/x.blend\": No such file or directory",
                Some(Said::Error(
                    "Cannot read file \"/x.blend\": No such file or directory".into(),
                )),
            ),
            ("Saved: '/tmp/frame_0001.png'", None),
            ("Read blend: /tmp/scene.blend", None),
        ] {
            assert_eq!(parse_line(line), want, "{line}");
        }
    }

    #[test]
    fn reads_settings() {
        let parse = |json: &str| Settings::parse(&serde_json::from_str(json).unwrap());
        assert_eq!(parse("{}").unwrap(), Settings::default());
        let s = parse(r#"{"samples": 16, "seed": 7, "addons": ["node_wrangler"]}"#).unwrap();
        assert_eq!((s.samples, s.seed, s.addons.len()), (Some(16), Some(7), 1));
        for (json, field) in [
            (r#"{"samples": 0}"#, "settings.samples"),
            (r#"{"seed": -1}"#, "settings.seed"),
            (r#"{"addons": ["os; import x"]}"#, "settings.addons"),
            (r#"{"addons": "node_wrangler"}"#, "settings.addons"),
        ] {
            let err = parse(json).unwrap_err();
            assert_eq!(err.0[0].field, field, "{json}: {err}");
        }
    }
}
