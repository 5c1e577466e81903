//! Path rules for names that come from jobs (scene files, output names) and scene
//! manifest references: checked before they touch a file system or a key.

use crate::core::problem::ValueError;

/// Checks that `path` is a relative path inside a folder: no `..`, no absolute path, no
/// empty or `.` segment, no backslash or NUL. Used for scene files and output names.
pub fn check_relative_path(path: &str) -> Result<(), ValueError> {
    if path.is_empty() {
        return Err(ValueError::from("is empty"));
    }
    if path.len() > 1024 {
        return Err(ValueError::from("is longer than 1024 bytes"));
    }
    if path.starts_with('/') {
        return Err(ValueError::from(format!(
            "{path:?} is absolute; give a path relative to the folder"
        )));
    }
    if path.contains('\\') || path.contains('\0') || path.chars().any(char::is_control) {
        return Err(ValueError::from(format!(
            "{path:?} holds a backslash or a control character"
        )));
    }
    for segment in path.split('/') {
        match segment {
            "" | "." => {
                return Err(ValueError::from(format!(
                    "{path:?} has an empty or '.' segment"
                )));
            }
            ".." => {
                return Err(ValueError::from(format!(
                    "{path:?} leaves its folder with '..'"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a scene manifest reference `sha256:<64 lower-case hex>` and returns the hex.
pub fn parse_manifest_ref(text: &str) -> Result<String, ValueError> {
    let hex = text
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("{text:?} must start with \"sha256:\""))?;
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex.to_string())
    } else {
        Err(ValueError::from(format!(
            "{text:?} must be \"sha256:\" and 64 lower-case hex digits"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_relative_paths() {
        for ok in ["a.toml", "textures/wood.png", "a..b/c"] {
            assert!(check_relative_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a\\b",
            "a\nb",
        ] {
            assert!(check_relative_path(bad).is_err(), "{bad:?}");
        }
    }
}
