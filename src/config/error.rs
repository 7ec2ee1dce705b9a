//! The configuration error: every variant says where the bad value came from and what to write.

use std::fmt;
use std::path::{Path, PathBuf};

use super::keys;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A key in the YAML file; line and column (1-based) point at the key or the value.
    File {
        /// The config file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
    },
    /// An environment variable.
    Env {
        /// The variable's name, e.g. `SLUICE_RPC_LISTEN`.
        var: String,
    },
    /// A command-line flag.
    Flag {
        /// The flag, e.g. `--rpc-listen`.
        flag: String,
    },
    /// Nobody set it; the built-in default applied.
    Default,
}

/// Why the configuration was refused. The daemon prints the `Display` form and exits with
/// [`super::EXIT_CONFIG`]; the fields are kept so tests and tools can inspect the place.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value has the wrong type, the wrong form, or is impossible.
    #[error("{}", located(origin, key, problem, expected))]
    Invalid {
        /// Where the value came from.
        origin: Origin,
        /// The dotted key, e.g. `rpc.listen`.
        key: String,
        /// What is wrong, e.g. "`localhost` is not a socket address".
        problem: String,
        /// The accepted form.
        expected: String,
    },
    /// The file has a key sluice does not know.
    #[error("{}", unknown_key(origin, key, suggestion.as_deref(), expected))]
    UnknownKey {
        /// The place of the unknown key (always a file origin).
        origin: Origin,
        /// The dotted key as written, e.g. `rpc.listn`.
        key: String,
        /// The closest known key, when one is near.
        suggestion: Option<String>,
        /// The keys allowed at that place, comma-separated.
        expected: String,
    },
    /// The file is not valid YAML (or not a mapping at the top).
    #[error("{}:{line}:{column}: {message}; expected valid YAML such as deploy/sluice.example.yaml", file.display())]
    Syntax {
        /// The config file.
        file: PathBuf,
        /// 1-based line (0 when the parser gave none).
        line: u64,
        /// 1-based column (0 when the parser gave none).
        column: u64,
        /// The parser's message without its location.
        message: String,
        /// The parser's error.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The config file could not be read.
    #[error("{}: cannot read config file {}: {source}; expected a readable YAML file{}", origin_label(origin, "config"), path.display(), read_hint(origin))]
    ReadFile {
        /// Where the file's path came from (`--config`, `SLUICE_CONFIG`).
        origin: Origin,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A default needs the home directory and `HOME` is not set.
    #[error(
        "{key}: the default uses the home directory but HOME is not set; expected HOME in the environment, or set {key}{}",
        where_to_set(key)
    )]
    NoHome {
        /// The setting whose default needed `$HOME` (`datadir`, `lnd.tls_cert`...).
        key: String,
    },
}

impl ConfigError {
    /// The config file the error points into, if it is located in one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ConfigError::Invalid { origin, .. } | ConfigError::UnknownKey { origin, .. } => {
                match origin {
                    Origin::File { path, .. } => Some(path),
                    _ => None,
                }
            }
            ConfigError::Syntax { file, .. } => Some(file),
            ConfigError::ReadFile { path, .. } => Some(path),
            ConfigError::NoHome { .. } => None,
        }
    }

    /// The 1-based (line, column) in [`Self::file`], if known.
    pub fn line_column(&self) -> Option<(u64, u64)> {
        match self {
            ConfigError::Invalid { origin, .. } | ConfigError::UnknownKey { origin, .. } => {
                match origin {
                    Origin::File { line, column, .. } => Some((*line, *column)),
                    _ => None,
                }
            }
            ConfigError::Syntax { line, column, .. } if *line > 0 => Some((*line, *column)),
            _ => None,
        }
    }

    /// The dotted key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. }
            | ConfigError::UnknownKey { key, .. }
            | ConfigError::NoHome { key } => Some(key),
            ConfigError::Syntax { .. } | ConfigError::ReadFile { .. } => None,
        }
    }

    /// The accepted form, if the error is about one value.
    pub fn expected(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { expected, .. } | ConfigError::UnknownKey { expected, .. } => {
                Some(expected)
            }
            _ => None,
        }
    }
}

/// `file:line:col: key`, `environment VAR`, `flag --x` or `key` for a default.
struct Place<'a>(&'a Origin, &'a str);

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Origin::File { path, line, column } => {
                write!(f, "{}:{line}:{column}: {}", path.display(), self.1)
            }
            Origin::Env { var } => write!(f, "environment {var}"),
            Origin::Flag { flag } => write!(f, "flag {flag}"),
            Origin::Default => write!(f, "{} (default)", self.1),
        }
    }
}

fn located(origin: &Origin, key: &str, problem: &str, expected: &str) -> String {
    let mut out = format!("{}: {problem}; expected {expected}", Place(origin, key));
    if *origin == Origin::Default {
        out.push_str(&format!("; set {key}{}", where_to_set(key)));
    }
    out
}

fn unknown_key(origin: &Origin, key: &str, suggestion: Option<&str>, expected: &str) -> String {
    let mut out = format!("{}: unknown key", Place(origin, key));
    if let Some(s) = suggestion {
        out.push_str(&format!(" (did you mean {s}?)"));
    }
    out.push_str(&format!("; expected one of: {expected}"));
    out
}

/// " in the config file, the environment variable SLUICE_X or the flag --x" for a key of the
/// table, or the flag and variable of the `datadir` pseudo-key.
fn where_to_set(key: &str) -> String {
    match key {
        "datadir" => " with --datadir or SLUICE_DATADIR".to_owned(),
        _ => keys::find(key).map_or_else(String::new, |k| {
            format!(
                " in the config file, the environment variable {} or the flag {}",
                k.env(),
                k.flag()
            )
        }),
    }
}

fn origin_label(origin: &Origin, key: &str) -> String {
    match origin {
        Origin::Default => "default config file".to_owned(),
        other => Place(other, key).to_string(),
    }
}

fn read_hint(origin: &Origin) -> &'static str {
    match origin {
        Origin::Default => "",
        _ => {
            " (without --config and SLUICE_CONFIG, a missing <datadir>/sluice.yaml means all defaults)"
        }
    }
}

/// Where a second setting named in an error came from: "set at /etc/sluice.yaml:9:11",
/// "set by environment SLUICE_RPC_LISTEN", "set by flag --simnet" or "the default".
pub(super) fn describe(origin: &Origin) -> String {
    match origin {
        Origin::File { path, line, column } => {
            format!("set at {}:{line}:{column}", path.display())
        }
        Origin::Env { var } => format!("set by environment {var}"),
        Origin::Flag { flag } => format!("set by flag {flag}"),
        Origin::Default => "the default".to_owned(),
    }
}
