//! POV-Ray's `[settings]`, typed: parsed by the same function when a job is validated and
//! when a task renders.
//!
//! | key | meaning | default |
//! | --- | --- | --- |
//! | `antialias` | adaptive antialiasing threshold (`+A`), 0 < t ≤ 3; absent or `false`: off | off |
//! | `antialias_depth` | supersampling depth (`+R`), 1 to 9 | 3 |
//! | `quality` | render quality (`+Q`), 0 to 11 | 9 |
//! | `clock` | `[start, end]`: the clock at the job's first and last frame (`+KI`, `+KF`); a one-frame job renders at `start` (`+K`) | `[0, 1]` |

use crate::core::problem::{Invalid, Problems};
use crate::render::setting::whole;

/// POV-Ray's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Antialiasing threshold; `None`: off.
    pub antialias: Option<f64>,
    /// Supersampling depth.
    pub antialias_depth: u32,
    /// Render quality.
    pub quality: u32,
    /// Clock at the first and the last frame of the job.
    pub clock: [f64; 2],
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            antialias: None,
            antialias_depth: 3,
            quality: 9,
            clock: [0.0, 1.0],
        }
    }
}

impl Settings {
    /// Reads the settings, the same way at validation and at render.
    pub fn parse(
        settings: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Settings, Invalid> {
        let mut problems = Problems::default();
        let mut parsed = Settings::default();
        match settings.get("antialias") {
            None | Some(serde_json::Value::Bool(false)) => {}
            Some(value) => match value.as_f64() {
                Some(t) if t > 0.0 && t <= 3.0 => parsed.antialias = Some(t),
                _ => problems.add(
                    "settings.antialias",
                    format!("{value} is not a threshold above 0 and up to 3 (e.g. 0.3), or false"),
                ),
            },
        }
        parsed.antialias_depth =
            whole(settings, &mut problems, "antialias_depth", 1, 9).unwrap_or(3);
        parsed.quality = whole(settings, &mut problems, "quality", 0, 11).unwrap_or(9);
        if let Some(value) = settings.get("clock") {
            let pair = value
                .as_array()
                .filter(|a| a.len() == 2)
                .and_then(|a| Some([a[0].as_f64()?, a[1].as_f64()?]))
                .filter(|[a, b]| a.is_finite() && b.is_finite());
            match pair {
                Some(clock) => parsed.clock = clock,
                None => problems.add(
                    "settings.clock",
                    format!("{value} is not [start, end], two numbers such as [0, 1]"),
                ),
            }
        }
        problems.into_result(parsed)
    }

    /// The command-line options these settings give.
    pub fn options(&self) -> Vec<String> {
        let mut options = vec![format!("+Q{}", self.quality)];
        match self.antialias {
            Some(t) => {
                options.push(format!("+A{t}"));
                options.push("+AM1".to_string());
                options.push(format!("+R{}", self.antialias_depth));
                // No jitter: it would make a pixel differ between a tile and the whole.
                options.push("-J".to_string());
            }
            None => options.push("-A".to_string()),
        }
        options
    }

    /// The clock options for a task of the job's frames `first` to `last`: the animation
    /// options with the clock at both ends, or for a one-frame job the clock at its start
    /// (POV-Ray's animation of one frame would divide by zero).
    pub fn clock_options(&self, first: u32, last: u32) -> Vec<String> {
        if first == last {
            vec![format!("+K{}", self.clock[0])]
        } else {
            vec![
                format!("+KFI{first}"),
                format!("+KFF{last}"),
                format!("+KI{}", self.clock[0]),
                format!("+KF{}", self.clock[1]),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Settings, Invalid> {
        Settings::parse(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn reads_values_defaults_and_bounds() {
        assert_eq!(parse("{}").unwrap(), Settings::default());
        let s =
            parse(r#"{"antialias": 0.3, "antialias_depth": 4, "quality": 11, "clock": [0, 2]}"#)
                .unwrap();
        assert_eq!(s.antialias, Some(0.3));
        assert_eq!(s.clock, [0.0, 2.0]);
        assert_eq!(s.options(), ["+Q11", "+A0.3", "+AM1", "+R4", "-J"]);
        assert_eq!(s.clock_options(1, 8), ["+KFI1", "+KFF8", "+KI0", "+KF2"]);
        assert_eq!(s.clock_options(3, 3), ["+K0"]);
        assert_eq!(parse(r#"{"antialias": false}"#).unwrap().antialias, None);
        for (json, field) in [
            (r#"{"antialias": 0}"#, "settings.antialias"),
            (r#"{"antialias": "yes"}"#, "settings.antialias"),
            (r#"{"antialias_depth": 10}"#, "settings.antialias_depth"),
            (r#"{"quality": -1}"#, "settings.quality"),
            (r#"{"clock": [0]}"#, "settings.clock"),
            (r#"{"clock": "0-1"}"#, "settings.clock"),
        ] {
            let err = parse(json).unwrap_err();
            assert_eq!(err.0[0].field, field, "{json}: {err}");
        }
    }
}
