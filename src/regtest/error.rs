//! What can go wrong while starting or driving the regtest world.

use std::path::PathBuf;

/// A failure of the regtest world, naming the program or file involved.
#[derive(Debug, thiserror::Error)]
pub enum RegtestError {
    /// A program could not be started.
    #[error("could not start {program} ({path}): {source}")]
    Spawn {
        /// The program's name.
        program: String,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A program's command failed or answered something unexpected.
    #[error("{program}: {detail}")]
    Program {
        /// The program, e.g. `lncli (sluice)`.
        program: String,
        /// What it said.
        detail: String,
    },
    /// A program exited while the world needed it; the detail has the end of its log.
    #[error("{program} exited ({status}):\n{log}")]
    Exited {
        /// The program.
        program: String,
        /// How it ended.
        status: String,
        /// The end of its log.
        log: String,
    },
    /// A program did not become ready in time; the detail has the end of its log.
    #[error("timed out waiting for {what}{detail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The end of the relevant log, if any.
        detail: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The pinned programs are not available.
    #[error("{0}")]
    Programs(String),
}

impl RegtestError {
    /// A program's failure.
    pub fn program(program: impl Into<String>, detail: impl Into<String>) -> Self {
        RegtestError::Program {
            program: program.into(),
            detail: detail.into(),
        }
    }

    /// A file's failure.
    pub fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RegtestError::File {
            path: path.into(),
            source,
        }
    }
}
