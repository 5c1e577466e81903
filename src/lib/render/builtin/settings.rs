//! The builtin renderer's `[settings]`, typed: parsed by the same function when a job is
//! validated (so a bad value is refused at submit) and when a task renders.

use crate::core::problem::{Invalid, Problems};
use crate::render::setting::whole;

/// Samples per pixel when `settings.samples` is absent.
pub const DEFAULT_SAMPLES: u32 = 16;

/// Bounces after the first hit when `settings.bounces` is absent.
pub const DEFAULT_BOUNCES: u32 = 5;

/// Most bounces `settings.bounces` may ask for.
pub const MAX_BOUNCES: u32 = 64;

/// Most samples per pixel `settings.samples` may ask for.
pub const MAX_SAMPLES: u32 = 1 << 16;

/// The builtin renderer's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Samples per pixel (`samples`, 1 to 65,536).
    pub samples: u32,
    /// Bounces after the first hit (`bounces`, 0 to 64).
    pub bounces: u32,
}

impl Settings {
    /// Reads `samples` and `bounces` from a job's settings; other keys are left to others.
    pub fn parse(
        settings: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Settings, Invalid> {
        let mut problems = Problems::default();
        let samples =
            whole(settings, &mut problems, "samples", 1, MAX_SAMPLES).unwrap_or(DEFAULT_SAMPLES);
        let bounces =
            whole(settings, &mut problems, "bounces", 0, MAX_BOUNCES).unwrap_or(DEFAULT_BOUNCES);
        problems.into_result(Settings { samples, bounces })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Settings, Invalid> {
        Settings::parse(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn reads_defaults_and_bounds() {
        assert_eq!(
            parse("{}").unwrap(),
            Settings {
                samples: DEFAULT_SAMPLES,
                bounces: DEFAULT_BOUNCES
            }
        );
        assert_eq!(parse(r#"{"samples": 4, "bounces": 0}"#).unwrap().bounces, 0);
        for (json, field) in [
            (r#"{"samples": 0}"#, "settings.samples"),
            (r#"{"samples": "many"}"#, "settings.samples"),
            (r#"{"bounces": 65}"#, "settings.bounces"),
            (r#"{"bounces": -1}"#, "settings.bounces"),
        ] {
            let err = parse(json).unwrap_err();
            assert_eq!(err.0[0].field, field, "{json}: {err}");
        }
    }
}
