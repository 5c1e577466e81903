//! Asking Blender what a `.blend` scene refers to, at submit time on a machine that has
//! Blender: its view layers and every external file (images, libraries, sounds, movie
//! clips, fonts, volumes, caches). [`check`] then refuses a file that is not in the scene
//! folder, naming the data-block that refers to it, and a job layer the scene lacks.

use std::path::Path;
use std::process::Stdio;

use serde::Deserialize;

use crate::core::paths::check_relative_path;
use crate::core::problem::{Invalid, Problems};

/// The inspection script run inside Blender.
pub const SCRIPT: &str = include_str!("inspect.py");

/// What Blender reports about a scene.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Report {
    /// The scene's view layers.
    pub view_layers: Vec<String>,
    /// The render engine.
    pub engine: String,
    /// The scene's frame range.
    pub frame_start: i64,
    /// The scene's frame range.
    pub frame_end: i64,
    /// External files.
    pub files: Vec<FileRef>,
}

/// An external file a data-block refers to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileRef {
    /// `image`, `library`, …
    pub kind: String,
    /// The data-block's name.
    pub name: String,
    /// Its path as Blender stores it (`//` is the `.blend` file's folder).
    pub path: String,
}

/// Runs `program` on `scene` with the inspection script (for the CLI: it blocks until
/// Blender is done, about a second); `Err` says why it could not.
pub fn inspect(program: &Path, scene: &Path) -> anyhow::Result<Report> {
    let output = std::process::Command::new(program)
        .arg("-b")
        .arg("--factory-startup")
        .arg("--disable-autoexec")
        .arg(scene)
        .arg("--python-exit-code")
        .arg("3")
        .arg("--python-expr")
        .arg(SCRIPT)
        .env_clear()
        .envs(std::env::vars_os().filter(|(k, _)| k == "PATH" || k == "HOME" || k == "LANG"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TESSERA-INSPECT "))
        .ok_or_else(|| {
            let said: Vec<&str> = stdout
                .lines()
                .chain(stderr.lines())
                .filter(|l| l.contains("rror"))
                .take(3)
                .collect();
            anyhow::anyhow!(
                "Blender could not read {} ({}): {}",
                scene.display(),
                output.status,
                said.join("; ")
            )
        })?;
    Ok(serde_json::from_str(line)?)
}

/// Checks a report against the scene folder (`exists` says whether a path relative to it
/// is a file there) and the job's layers.
pub fn check(
    report: &Report,
    layers: &[String],
    exists: &dyn Fn(&str) -> bool,
) -> Result<(), Invalid> {
    let mut problems = Problems::default();
    for file in &report.files {
        let what = format!("{} {:?} refers to {:?}", file.kind, file.name, file.path);
        let Some(relative) = file.path.strip_prefix("//") else {
            problems.add(
                "scene",
                format!("{what}, an absolute path that workers do not have: make it relative (File → External Data → Make Paths Relative) and put the file in the scene folder"),
            );
            continue;
        };
        let relative = relative.replace('\\', "/");
        if check_relative_path(&relative).is_err() {
            problems.add(
                "scene",
                format!("{what}, outside the scene folder: put the file in the folder"),
            );
        } else if !file.path.contains('#') && !exists(&relative) {
            problems.add("scene", format!("{what}: no such file in the scene folder"));
        }
    }
    for (i, layer) in layers.iter().enumerate() {
        if !report.view_layers.contains(layer) {
            problems.add(
                format!("layers[{i}].name"),
                format!(
                    "the scene has no view layer {layer:?} (it has: {})",
                    report.view_layers.join(", ")
                ),
            );
        }
    }
    problems.into_result(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_missing_absolute_and_outside_files_and_unknown_layers() {
        let file = |path: &str| FileRef {
            kind: "image".into(),
            name: "wood".into(),
            path: path.into(),
        };
        let report = Report {
            view_layers: vec!["main".into(), "shadow".into()],
            engine: "CYCLES".into(),
            frame_start: 1,
            frame_end: 24,
            files: vec![
                file("//tex/wood.png"),
                file("//tex/gone.png"),
                file("/home/me/wood.png"),
                file("//../shared/wood.png"),
            ],
        };
        let exists = |p: &str| p == "tex/wood.png";
        let err = check(&report, &["main".into(), "fog".into()], &exists).unwrap_err();
        let messages: Vec<String> = err
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        assert_eq!(messages.len(), 4, "{messages:#?}");
        assert!(
            messages[0].contains("\"//tex/gone.png\": no such file"),
            "{}",
            messages[0]
        );
        assert!(messages[1].contains("absolute path"), "{}", messages[1]);
        assert!(
            messages[2].contains("outside the scene folder"),
            "{}",
            messages[2]
        );
        assert!(
            messages[3].starts_with("layers[1].name: the scene has no view layer \"fog\""),
            "{}",
            messages[3]
        );
        assert!(
            check(&report, &["shadow".into()], &|_| true).is_err(),
            "the absolute path stays refused"
        );
    }
}
