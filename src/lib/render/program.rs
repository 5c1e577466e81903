//! Finding the programs of the external renderers (POV-Ray, Blender) on a worker: a worker
//! offers such a renderer only when its program answers `--version`, and advertises that
//! version in the registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::core::job::RendererKind;

/// A renderer program found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// What to run.
    pub path: PathBuf,
    /// Its version, as it reports it (`3.7.0.10`, `3.4.1`).
    pub version: String,
}

/// The programs found, by renderer.
pub type Programs = BTreeMap<RendererKind, Program>;

/// The program a renderer runs by default, looked up on `PATH`; `None` for the renderers
/// built into Tessera.
pub fn default_name(kind: RendererKind) -> Option<&'static str> {
    match kind {
        RendererKind::Povray => Some("povray"),
        RendererKind::Blender => Some("blender"),
        RendererKind::Builtin | RendererKind::Noop | RendererKind::Command => None,
    }
}

/// How long a program may take to say its version.
const VERSION_TIMEOUT: Duration = Duration::from_secs(20);

/// Finds the program of `kind` (`path`, or its default name on `PATH`) and its version.
pub fn find(kind: RendererKind, path: Option<&Path>) -> Result<Program, String> {
    let Some(name) = default_name(kind) else {
        return Err(format!("{kind} is built into Tessera and runs no program"));
    };
    let path = path.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    let text = version_text(&path).map_err(|e| {
        format!(
            "{kind}: cannot run {}: {e} (install Debian's `{name}` package, or name the program with --{name})",
            path.display()
        )
    })?;
    let version = parse_version(kind, &text).ok_or_else(|| {
        format!(
            "{kind}: {} answered --version without a {kind} version: {:?}",
            path.display(),
            text.lines().next().unwrap_or_default()
        )
    })?;
    Ok(Program { path, version })
}

/// What `path --version` prints (both streams), with a timeout.
fn version_text(path: &Path) -> std::io::Result<String> {
    let mut child = Command::new(path)
        .arg("--version")
        .env("LANG", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let started = std::time::Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if started.elapsed() > VERSION_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other(format!(
                "no answer to --version in {VERSION_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output()?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(text)
}

/// The version in a program's `--version` text: `POV-Ray 3.7.0.10.unofficial` gives
/// `3.7.0.10`, `Blender 3.4.1` gives `3.4.1`.
pub fn parse_version(kind: RendererKind, text: &str) -> Option<String> {
    let marker = match kind {
        RendererKind::Povray => "POV-Ray ",
        RendererKind::Blender => "Blender ",
        _ => return None,
    };
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(marker)?;
        let version: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let version = version.trim_end_matches('.');
        (!version.is_empty() && version.starts_with(|c: char| c.is_ascii_digit()))
            .then(|| version.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_what_the_programs_print() {
        for (kind, text, want) in [
            (
                RendererKind::Povray,
                "povray: cannot open the user configuration file\nPOV-Ray 3.7.0.10.unofficial\n",
                Some("3.7.0.10"),
            ),
            (RendererKind::Povray, "POV-Ray 3.8.0-beta.2", Some("3.8.0")),
            (
                RendererKind::Blender,
                "Blender 3.4.1\n\tbuild date: unknown",
                Some("3.4.1"),
            ),
            (RendererKind::Blender, "Blender 4.2.1 LTS", Some("4.2.1")),
            (RendererKind::Blender, "bash: blender: not found", None),
            (RendererKind::Povray, "POV-Ray unofficial", None),
        ] {
            assert_eq!(
                parse_version(kind, text).as_deref(),
                want,
                "{kind}: {text:?}"
            );
        }
    }

    #[test]
    fn a_missing_program_is_a_clear_error() {
        let err = find(RendererKind::Povray, Some(Path::new("/nonexistent/povray"))).unwrap_err();
        assert!(err.contains("/nonexistent/povray"), "{err}");
        assert!(err.contains("--povray"), "{err}");
    }
}
