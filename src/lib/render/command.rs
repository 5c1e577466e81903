//! The `command` renderer: runs `settings.command`, an argument vector with placeholders,
//! once per frame — never through a shell — and only on workers started with
//! `--allow-command`.
//!
//! Placeholders (each replaced inside any argument): `{frame}`, `{frame4}` (zero-padded),
//! `{output}` (the file the command must write), `{outdir}`, `{scene}` (the scene's entry
//! file), `{scene_dir}`, `{width}`, `{height}`, `{x}`, `{y}`, `{w}`, `{h}` (the region to
//! render), `{layer}`, `{attempt}`.
//!
//! The child runs in its own process group, with a clean environment (`PATH`, `HOME`,
//! `LANG`, `TMPDIR` only: the worker's credentials never reach it); a cancel, a timeout or a
//! stall (no output for `stall_ms`) kills the whole group, and the child gets SIGKILL if its
//! worker dies. Its output goes to the log.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command as Process;

use super::{BoxFuture, Output, RenderError, Renderer, Request};
use crate::core::frames::frame_file_name;
use crate::core::job::RendererKind;
use crate::core::problem::Invalid;
use crate::core::tiles::Rect;
use crate::process;

/// The placeholders a command may use.
pub const PLACEHOLDERS: [&str; 15] = [
    "frame",
    "frame4",
    "output",
    "outdir",
    "scene",
    "scene_dir",
    "width",
    "height",
    "x",
    "y",
    "w",
    "h",
    "layer",
    "attempt",
    "samples",
];

/// The `command` renderer.
pub struct CommandRenderer;

/// The `command` renderer's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The argument vector, placeholders not yet filled (`command`).
    pub argv: Vec<String>,
}

impl Settings {
    /// Reads `settings.command`, the same way at validation and at render.
    pub fn parse(
        settings: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Settings, Invalid> {
        let value = settings.get("command").ok_or_else(|| {
            Invalid::one(
                "settings.command",
                "the command renderer needs an argument list, e.g. [\"my-renderer\", \"--frame\", \"{frame}\", \"-o\", \"{output}\"]",
            )
        })?;
        let argv = check_template(value).map_err(|e| Invalid::one("settings.command", e))?;
        Ok(Settings { argv })
    }
}

/// Checks `settings.command`: a non-empty list of strings using only known placeholders.
fn check_template(value: &serde_json::Value) -> Result<Vec<String>, String> {
    let items = value.as_array().filter(|a| !a.is_empty()).ok_or(
        "must be a non-empty list of strings, e.g. [\"my-renderer\", \"--frame\", \"{frame}\"]",
    )?;
    let mut argv = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let text = item.as_str().ok_or(format!("item {i} is not a string"))?;
        if text.len() > 4096 || text.contains('\0') {
            return Err(format!("item {i} is longer than 4096 bytes or holds a NUL"));
        }
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or(format!("item {i} has an unclosed '{{'"))?;
            let name = &after[..close];
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "item {i} uses {{{name}}}, which is not a placeholder (known: {})",
                    PLACEHOLDERS.join(", ")
                ));
            }
            rest = &after[close + 1..];
        }
        argv.push(text.to_string());
    }
    Ok(argv)
}

/// Fills the placeholders of one argument.
pub fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

impl Renderer for CommandRenderer {
    fn kind(&self) -> RendererKind {
        RendererKind::Command
    }

    fn render(&self, request: Request) -> BoxFuture<'_, Result<Vec<Output>, RenderError>> {
        Box::pin(async move {
            let task = &request.task;
            let template = Settings::parse(&task.settings)
                .map_err(|e| RenderError::Permanent(e.to_string()))?
                .argv;
            let region = task.region.unwrap_or(Rect::full(task.width, task.height));
            let mut outputs = Vec::new();
            for (i, &frame) in task.frames.iter().enumerate() {
                let name = frame_file_name(frame, task.format.extension());
                let output = request.out_dir.join(&name);
                let scene = request.scene.as_deref();
                let values = [
                    ("frame", frame.to_string()),
                    ("frame4", format!("{frame:04}")),
                    ("output", output.display().to_string()),
                    ("outdir", request.out_dir.display().to_string()),
                    (
                        "scene",
                        scene.map(|p| p.display().to_string()).unwrap_or_default(),
                    ),
                    (
                        "scene_dir",
                        scene
                            .and_then(Path::parent)
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                    ),
                    ("width", task.width.to_string()),
                    ("height", task.height.to_string()),
                    ("x", region.x.to_string()),
                    ("y", region.y.to_string()),
                    ("w", region.width.to_string()),
                    ("h", region.height.to_string()),
                    ("layer", task.layer.clone().unwrap_or_default()),
                    ("attempt", request.attempt.to_string()),
                    (
                        "samples",
                        task.settings
                            .get("samples")
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                    ),
                ];
                let argv: Vec<String> = template.iter().map(|t| fill(t, &values)).collect();
                let cwd = scene.and_then(Path::parent).unwrap_or(&request.out_dir);
                run_one(&request, &argv, cwd).await?;
                if !output.is_file() {
                    return Err(RenderError::Failed(format!(
                        "the command exited 0 but did not write {}",
                        output.display()
                    )));
                }
                outputs.push(Output { name, path: output });
                request.set_progress((i + 1) as f64 / task.frames.len() as f64);
            }
            Ok(outputs)
        })
    }
}

async fn run_one(request: &Request, argv: &[String], cwd: &Path) -> Result<(), RenderError> {
    request.log.line(format!("command: {argv:?}"));
    let mut command = Process::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(cwd)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // The renderer dies with its worker even when the worker is SIGKILLed (the process
    // group is killed on every other path).
    process::die_with_parent(&mut command, libc::SIGKILL);
    for key in ["PATH", "HOME", "LANG", "TMPDIR"] {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| RenderError::Failed(format!("cannot start {:?}: {e}", argv[0])))?;
    let pgid = child.id().map(|id| id as i32);
    let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
    let stall = request.task.stall_ms.map(Duration::from_millis);
    let mut last_output = tokio::time::Instant::now();
    let (mut out_open, mut err_open) = (true, true);
    let kill = |why: &str| {
        request
            .log
            .line(format!("killing the process group: {why}"));
        if let Some(pgid) = pgid {
            process::kill_group(pgid);
        }
    };
    let status = loop {
        let stall_check = async {
            match stall {
                Some(limit) => tokio::time::sleep_until(last_output + limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = stdout.next_line(), if out_open => match line {
                Ok(Some(line)) => { request.log.line(line); last_output = tokio::time::Instant::now(); }
                _ => out_open = false,
            },
            line = stderr.next_line(), if err_open => match line {
                Ok(Some(line)) => { request.log.line(line); last_output = tokio::time::Instant::now(); }
                _ => err_open = false,
            },
            status = child.wait(), if !out_open && !err_open => break status,
            () = request.cancel.cancelled() => {
                kill("the attempt was stopped");
                let _ = child.wait().await;
                return Err(RenderError::Stopped("render stopped".into()));
            }
            () = stall_check => {
                kill("no output for too long");
                let _ = child.wait().await;
                return Err(RenderError::Failed(format!(
                    "the renderer printed nothing for {:?} and was taken for hung",
                    stall.unwrap_or_default()
                )));
            }
        }
    };
    // The command's own children may outlive it; the group goes with it.
    if let Some(pgid) = pgid {
        process::kill_group(pgid);
    }
    let status =
        status.map_err(|e| RenderError::Failed(format!("waiting for the renderer: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(RenderError::Failed(match status.code() {
            Some(code) => format!("{:?} exited with code {code}", argv[0]),
            None => format!("{:?} was killed by a signal", argv[0]),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        let ok = serde_json::json!(["render", "--frame", "{frame}", "-o", "{output}", "{x},{y}"]);
        assert_eq!(check_template(&ok).unwrap().len(), 6);
        for (bad, needle) in [
            (serde_json::json!([]), "non-empty"),
            (serde_json::json!("render {frame}"), "non-empty list"),
            (serde_json::json!(["render", 3]), "item 1 is not a string"),
            (serde_json::json!(["render", "{frames}"]), "{frames}"),
            (serde_json::json!(["render", "{frame"]), "unclosed"),
        ] {
            let err = check_template(&bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn placeholders_are_filled_inside_arguments() {
        let values = [
            ("frame", "7".to_string()),
            ("output", "/o/f.png".to_string()),
        ];
        assert_eq!(fill("--out={output}", &values), "--out=/o/f.png");
        assert_eq!(fill("{frame}{frame}", &values), "77");
        assert_eq!(
            fill("no placeholder; rm -rf /", &values),
            "no placeholder; rm -rf /"
        );
    }
}
