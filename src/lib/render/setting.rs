//! Reading one value of a job's `[settings]` for a renderer's typed `Settings`, filing a
//! problem under `settings.<key>` when it is out of its range.

use crate::core::problem::Problems;

/// `settings.<key>` as a whole number from `min` to `max`; `None` when absent, or when out
/// of range (then filed in `problems`).
pub fn whole(
    settings: &serde_json::Map<String, serde_json::Value>,
    problems: &mut Problems,
    key: &str,
    min: u32,
    max: u32,
) -> Option<u32> {
    let value = settings.get(key)?;
    match value.as_u64() {
        Some(n) if n >= u64::from(min) && n <= u64::from(max) => Some(n as u32),
        _ => {
            problems.add(
                format!("settings.{key}"),
                format!("{value} is not a whole number from {min} to {max}"),
            );
            None
        }
    }
}
