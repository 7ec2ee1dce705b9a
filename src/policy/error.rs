//! The one error a policy load can end in: a located message an operator can act on.

use std::fmt;
use std::path::PathBuf;

/// Why a policy file or directory was rejected as a whole.
///
/// Every error names the file and, when the problem sits at a place in it, the 1-based line
/// and column, the dotted key (`rules[2].band.inbound_min`) or script location, what is wrong
/// and what was expected. `sluice policy check` prints the `Display` form; the daemon keeps
/// its last good policy and reports the same text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The file the problem is in (a YAML file, a rhai script or the directory).
    pub file: PathBuf,
    /// 1-based line, 0 when the problem concerns the file as a whole.
    pub line: u64,
    /// 1-based column, 0 when the problem concerns the file as a whole.
    pub column: u64,
    /// The dotted key (`defaults.fees.sweep_gate.percentile`), a script function
    /// (`decide`), or empty.
    pub key: String,
    /// What is wrong, e.g. "unknown key (did you mean percentile?)".
    pub message: String,
    /// What would have been accepted, e.g. "a percentage such as 30%"; may be empty.
    pub expected: String,
}

impl PolicyError {
    /// An error at a place in a file.
    pub fn at(
        file: impl Into<PathBuf>,
        line: u64,
        column: u64,
        key: impl Into<String>,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) -> PolicyError {
        PolicyError {
            file: file.into(),
            line,
            column,
            key: key.into(),
            message: message.into(),
            expected: expected.into(),
        }
    }

    /// An error about a whole file or directory (unreadable, empty...).
    pub fn file(
        file: impl Into<PathBuf>,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) -> PolicyError {
        PolicyError::at(file, 0, 0, "", message, expected)
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if !self.expected.is_empty() {
            write!(f, "; expected {}", self.expected)?;
        }
        Ok(())
    }
}

/// The closest of `candidates` to `word`, if one is near enough to be a likely typo.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    crate::config::keys::closest(word, candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_place_key_and_expectation() {
        let e = PolicyError::at(
            "policies/x.yaml",
            14,
            7,
            "defaults.fees.sweep_gate.percentil",
            "unknown key (did you mean percentile?)",
            "one of: ceiling, percentile",
        );
        assert_eq!(
            e.to_string(),
            "policies/x.yaml:14:7: defaults.fees.sweep_gate.percentil: unknown key (did you mean \
             percentile?); expected one of: ceiling, percentile"
        );
        let whole = PolicyError::file("p/", "no policy file", "a *.yaml file");
        assert_eq!(
            whole.to_string(),
            "p/: no policy file; expected a *.yaml file"
        );
    }
}
