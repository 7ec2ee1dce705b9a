//! Logging: `tracing` to stderr, human-readable or one JSON object per line, with per-module
//! levels from `log.level` (EnvFilter directives such as `info,sluice::swap=debug`).

/// Output format for log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The level directives did not parse (config validation should have caught this).
    #[error("log level `{directives}` is not valid: {source}")]
    Directives {
        /// What was given.
        directives: String,
        /// The parser's complaint.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was already installed.
    #[error("logging was already initialised")]
    AlreadySet,
}

/// Installs the global subscriber. Call once, after the config is validated.
pub fn init(directives: &str, format: Format) -> Result<(), LoggingError> {
    let filter = tracing_subscriber::EnvFilter::try_new(directives).map_err(|source| {
        LoggingError::Directives {
            directives: directives.to_owned(),
            source,
        }
    })?;
    use std::io::IsTerminal;
    // Colour only for a person at a terminal; files and journald get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        Format::Human => builder.try_init(),
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|_| LoggingError::AlreadySet)
}
