//! The one error type of the store boundary.
//!
//! Every variant keeps its cause and, where the operator has to act, says what to do. Callers
//! ask [`StoreError::is_transient`] whether retrying the same call later can succeed.

use std::path::PathBuf;

use super::RunId;

/// SQLite's primary result code for "the database file is locked" (another connection writes).
const SQLITE_BUSY: i64 = 5;
/// SQLite's primary result code for "a table in the database is locked".
const SQLITE_LOCKED: i64 = 6;

/// Everything that can go wrong opening or using the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be created or opened, or its pragmas could not be set.
    #[error(
        "cannot open the store at {path}: {source}; check that the data directory exists, is \
         writable by this user, and that the file is a sluice database"
    )]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite or the file system said.
        #[source]
        source: sqlx::Error,
    },

    /// The database was written by a newer sluiced: its schema has migrations this binary does
    /// not know, so reading or writing it could corrupt money-relevant state.
    #[error(
        "the store at {path} has schema version {db_version}, but this sluiced only knows \
         versions up to {binary_version}; upgrade sluiced to the version that wrote it, or \
         restore a backup of the database taken with this version"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The highest migration recorded in the database.
        db_version: i64,
        /// The highest migration embedded in this binary ([`super::Store::SCHEMA_VERSION`]).
        binary_version: i64,
    },

    /// The database belongs to another network than the one configured.
    #[error(
        "the store at {path} belongs to {stored}, but sluiced is configured for {configured}; \
         use a separate --datadir for each network"
    )]
    WrongNetwork {
        /// The database file.
        path: PathBuf,
        /// The network recorded in the database.
        stored: String,
        /// The network this daemon runs on.
        configured: String,
    },

    /// A migration recorded in the database differs from the one with the same number built
    /// into this binary: the database came from a different (probably development) build.
    #[error(
        "migration {version} recorded in the store at {path} differs from the one built into \
         this sluiced (checksum mismatch); run the sluiced build that created the database, or \
         restore a backup"
    )]
    ChecksumMismatch {
        /// The database file.
        path: PathBuf,
        /// The migration whose checksum differs.
        version: i64,
    },

    /// Applying the embedded migrations failed for another reason (a half-applied migration,
    /// a gap in the recorded versions, an SQL error, a lock).
    #[error("cannot migrate the store at {path} to schema version {target}: {source}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The schema version the binary tried to reach.
        target: i64,
        /// What the migrator said.
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// A query failed after the store was open.
    #[error("store query failed while {op}: {source}")]
    Query {
        /// What the store was doing, in words ("recording a daemon start").
        op: &'static str,
        /// What SQLite said.
        #[source]
        source: sqlx::Error,
    },

    /// `record_stop` was given a run id that no `record_start` returned.
    #[error("no daemon run with id {0} is recorded in the store")]
    UnknownRun(RunId),
}

impl StoreError {
    /// Whether the same call can succeed if retried later: the database was busy or locked by
    /// another connection, or the pool had no free connection in time. Everything else (a bad
    /// file, a schema mismatch, a constraint violation) will fail again.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Open { source, .. } | StoreError::Query { source, .. } => {
                sqlx_is_transient(source)
            }
            StoreError::Migrate { source, .. } => match source {
                sqlx::migrate::MigrateError::Execute(e)
                | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => sqlx_is_transient(e),
                _ => false,
            },
            StoreError::TooNew { .. }
            | StoreError::WrongNetwork { .. }
            | StoreError::ChecksumMismatch { .. }
            | StoreError::UnknownRun(_) => false,
        }
    }

    /// Wraps a query error with what the store was doing.
    pub(super) fn query(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query { op, source }
    }
}

/// Busy and locked are the transient SQLite results; the extended code's low byte is the
/// primary code (`SQLITE_BUSY_SNAPSHOT` = 517 is still "busy").
fn sqlx_is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED)),
        _ => false,
    }
}
