//! The `command` renderer: runs `settings.command`, an argument vector with placeholders,
//! once per frame — never through a shell — and only on workers started with
//! `--allow-command`.
//!
//! Placeholders (each replaced inside any argument): `{frame}`, `{frame4}` (zero-padded),
//! `{output}` (the file the command must write), `{outdir}`, `{scene}` (the scene's entry
//! file), `{scene_dir}`, `{width}`, `{height}`, `{x}`, `{y}`, `{w}`, `{h}` (the region to
//! render), `{layer}`, `{attempt}`.
//!
//! The child runs as every renderer program does ([`super::child`]): its own process
//! group, a clean environment, killed on cancel, timeout or stall. Its output goes to the log.

use std::path::Path;

use super::{BoxFuture, Output, RenderError, Renderer, Request, child};
use crate::core::frames::frame_file_name;
use crate::core::job::RendererKind;
use crate::core::problem::Invalid;
use crate::core::tiles::Rect;

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
    /// Whether each output must be an image of the task's format, region size and depth,
    /// as with every other renderer (`check_outputs`, default true). A command that writes
    /// other files (caches, simulations) sets it false: its outputs are then only checked
    /// not to be empty.
    pub check_outputs: bool,
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
        let check_outputs = match settings.get("check_outputs") {
            None => true,
            Some(serde_json::Value::Bool(check)) => *check,
            Some(other) => {
                return Err(Invalid::one(
                    "settings.check_outputs",
                    format!("must be true or false, not {other}"),
                ));
            }
        };
        Ok(Settings {
            argv,
            check_outputs,
        })
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
                child::run(&request, &argv, cwd, &mut |_| {}).await?;
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
