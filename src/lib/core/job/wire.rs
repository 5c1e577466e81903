//! Decoding a job spec from a TOML file or wire bytes, naming the field (and, in a file,
//! the line) of a decoding error.

use super::spec::JobSpec;
use crate::core::problem::{FieldError, Invalid};

/// Decodes a job from TOML text (the CLI's job file), naming the field and line of an error.
pub fn from_toml(text: &str) -> Result<JobSpec, Invalid> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| {
        let mut error = FieldError::new("(file)", one_line(&e.to_string()));
        error.line = e.span().map(|span| line_of(text, span.start));
        Invalid::from(error)
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "(file)".into() } else { path };
        Invalid::one(field, one_line(&e.into_inner().to_string()))
    })
}

/// Decodes a job from wire bytes: JSON when `json` is true, msgpack otherwise.
pub fn from_wire(bytes: &[u8], json: bool) -> Result<JobSpec, Invalid> {
    let result = if json {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
    } else {
        let mut de = rmp_serde::Deserializer::new(bytes);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
    };
    result.map_err(|(path, message)| {
        let field = if path == "." {
            "(message)".into()
        } else {
            path
        };
        Invalid::one(field, one_line(&message))
    })
}

/// Whether wire bytes are JSON: by content type if given, else by a leading `{`.
pub fn is_json(content_type: Option<&str>, bytes: &[u8]) -> bool {
    match content_type {
        Some(t) if t.contains("json") => true,
        Some(t) if t.contains("msgpack") => false,
        _ => bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{'),
    }
}

/// `text` with its white space folded, so a message stays on one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The line (1-based) of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> u32 {
    let newlines = text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    u32::try_from(newlines + 1).unwrap_or(u32::MAX)
}
