//! How answers are printed: aligned `key: value` text for people, one JSON object for machines.

use serde::Serialize;

use super::CliError;

/// The output format chosen by `--json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Text for people.
    Human,
    /// One JSON object, for scripts.
    Json,
}

impl Format {
    /// The format the `--json` flag asks for.
    pub fn from_json_flag(json: bool) -> Format {
        if json { Format::Json } else { Format::Human }
    }
}

/// An answer that can be shown both ways. The JSON form is the `Serialize` impl, so both
/// forms come from the same value and cannot drift apart.
pub trait Render: Serialize {
    /// The text form: rows of (label, value).
    fn rows(&self) -> Vec<(&'static str, String)>;
}

/// Renders `value` in `format`, newline-terminated.
pub fn render<T: Render>(value: &T, format: Format) -> Result<String, CliError> {
    match format {
        Format::Json => Ok(serde_json::to_string_pretty(value)? + "\n"),
        Format::Human => Ok(table(&value.rows())),
    }
}

/// `label:  value` rows with the values aligned.
pub fn table(rows: &[(&'static str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

/// A duration in seconds as `1d 2h 3m 4s`, leaving out leading zero units.
pub fn duration(seconds: u64) -> String {
    let parts = [
        (seconds / 86_400, "d"),
        (seconds / 3_600 % 24, "h"),
        (seconds / 60 % 60, "m"),
        (seconds % 60, "s"),
    ];
    let first = parts
        .iter()
        .position(|(n, _)| *n > 0)
        .unwrap_or(parts.len() - 1);
    parts[first..]
        .iter()
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}
