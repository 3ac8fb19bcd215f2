//! Durations (`90s`, `5m`, `1h30m`, `500ms`) and byte sizes (`4194304`, `"4MiB"`) as written in
//! fusion.toml and on the command line.

use std::time::Duration;

/// Why a duration or size did not parse, with a hint that says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnitError {
    pub reason: String,
    pub hint: String,
}

impl std::fmt::Display for UnitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.reason, self.hint)
    }
}

const DURATION_EXAMPLES: &str = "use a number with a unit, e.g. `500ms`, `90s`, `5m`, `1h30m`";

/// A duration: one or more `<number><unit>` parts, optionally separated by spaces. A bare number
/// is refused: `90` could mean seconds or minutes.
pub(crate) fn duration(text: &str) -> Result<Duration, UnitError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(UnitError {
            reason: "empty duration".to_string(),
            hint: DURATION_EXAMPLES.to_string(),
        });
    }
    if trimmed.parse::<f64>().is_ok() {
        return Err(UnitError {
            reason: "missing unit".to_string(),
            hint: format!("add a unit, e.g. `{trimmed}s`"),
        });
    }
    humantime::parse_duration(trimmed).map_err(|_| UnitError {
        reason: "not a duration".to_string(),
        hint: DURATION_EXAMPLES.to_string(),
    })
}

/// Units accepted in a size string, with their multipliers.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KB", 1000),
    ("MB", 1000 * 1000),
    ("GB", 1000 * 1000 * 1000),
    ("KiB", 1024),
    ("MiB", 1024 * 1024),
    ("GiB", 1024 * 1024 * 1024),
];

const SIZE_EXAMPLES: &str =
    "write bytes as an integer, or a string with a unit (`B`, `KB`, `MB`, `GB`, `KiB`, `MiB`, `GiB`), e.g. `\"4MiB\"`";

/// A size string: an integer followed by an optional unit (`B` when omitted), e.g. `4MiB`,
/// `512 KiB`, `1GB`. Zero is refused.
pub(crate) fn size(text: &str) -> Result<u64, UnitError> {
    let invalid = |reason: &str| UnitError {
        reason: reason.to_string(),
        hint: SIZE_EXAMPLES.to_string(),
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(invalid("not a size"));
    }
    let unit = unit.trim_start();
    let unit = if unit.is_empty() { "B" } else { unit };
    let multiplier = SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, m)| *m)
        .ok_or_else(|| invalid(&format!("unknown unit `{unit}`")))?;
    let bytes = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| invalid("too large"))?;
    if bytes == 0 {
        return Err(invalid("must be greater than zero"));
    }
    Ok(bytes)
}
