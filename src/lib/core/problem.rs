//! The one error model for bad input: this field, this line, this problem.
//!
//! A job spec, a scene file and a wire message all report what is wrong with a
//! [`FieldError`] (the dotted path of the field, the line where the file has one, and a
//! lower-case message); a check that finds several collects them in [`Problems`] and
//! returns them as one [`Invalid`]. A parser of one value (a frame range, an id, a path)
//! returns a [`ValueError`], which its caller files under the field it read the value from.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem with a field of some input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Dotted path of the field (`frames.range`, `layers[1].name`, `objects[0].material`).
    pub field: String,
    /// The line of the file it was found on (1-based), where the input is a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// What is wrong, lower case.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`, without a line.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// Every problem found in one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<FieldError>);

impl Invalid {
    /// A single problem.
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid(vec![FieldError::new(field, message)])
    }

    /// Whether a problem with `field` says `needle` (what a caller, or a test, looks for).
    pub fn says(&self, field: &str, needle: &str) -> bool {
        self.0
            .iter()
            .any(|e| e.field == field && e.message.contains(needle))
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

impl From<FieldError> for Invalid {
    fn from(error: FieldError) -> Invalid {
        Invalid(vec![error])
    }
}

/// Problems collected while checking one input.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    /// Files a problem with `field`.
    pub fn add(&mut self, field: impl Into<String>, message: impl fmt::Display) {
        self.0.push(FieldError::new(field, message.to_string()));
    }

    /// Files a problem with `field` found on `line`.
    pub fn add_at(&mut self, field: impl Into<String>, line: u32, message: impl fmt::Display) {
        self.0.push(FieldError {
            field: field.into(),
            line: Some(line),
            message: message.to_string(),
        });
    }

    /// Whether nothing was filed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems were filed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok(value)` when nothing was filed, else every problem.
    pub fn into_result<T>(self, value: T) -> Result<T, Invalid> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(Invalid(self.0))
        }
    }

    /// The problems filed.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

/// What is wrong with one value (a frame range, an id, a path), without its field: the
/// caller knows where the value came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

impl ValueError {
    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl From<String> for ValueError {
    fn from(message: String) -> ValueError {
        ValueError(message)
    }
}

impl From<&str> for ValueError {
    fn from(message: &str) -> ValueError {
        ValueError(message.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_field_the_line_and_the_problem() {
        let mut problems = Problems::default();
        problems.add("frames.range", "is empty");
        problems.add_at("objects[0].material", 6, "no material named \"blue\"");
        let invalid = problems.into_result(()).unwrap_err();
        assert_eq!(
            invalid.to_string(),
            "frames.range: is empty; objects[0].material (line 6): no material named \"blue\""
        );
        assert_eq!(Problems::default().into_result(7), Ok(7));
    }
}
