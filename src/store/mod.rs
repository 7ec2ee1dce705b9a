//! The store: SQLite through sqlx, embedded in the daemon at `<datadir>/sluice.db`.
//!
//! This is the only module that knows row layouts. Callers hand in domain values and get
//! domain values back; SQL, column names and row structs stay here, so the schema can change
//! (new numbered migration) without touching the rest of the daemon.
//!
//! Durability comes first because money is at stake: WAL journal, `synchronous=FULL` (a
//! committed write survives power loss), foreign keys enforced. Migrations live in the
//! top-level `migrations/` directory, are embedded in the binary and applied at open. A
//! database written by a newer sluiced is refused instead of being read with the wrong
//! assumptions.

mod error;
mod journal;
mod ledger;
pub mod loop_in;
mod meta;
mod runs;
pub mod swaps;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::SqliteSynchronous;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

pub use error::StoreError;
pub use journal::{JournalFilter, JournalRecord, PassSummary};
pub use runs::{DaemonRun, RunId};
pub use swaps::{
    Resumable, StoreTx, StoredSwap, SwapExtras, SwapFilter, SwapRecord, SwapUpdateRecord,
    UnreadableSwap,
};

/// The migrations in `migrations/`, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How long a statement waits for another connection's write lock before failing with a
/// transient "busy" error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a caller waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite serialises writers anyway; a few connections let readers run beside one writer.
const MAX_CONNECTIONS: u32 = 4;

/// A handle on the open database. Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
    /// The run recorded by this process (`record_start`), 0 before that. Lets
    /// [`Store::previous_run`] skip the current run.
    current_run: Arc<AtomicI64>,
    /// Write transactions committed through [`Store::begin`] since the store was opened
    /// (every swap, progress, ledger and journal write goes through it).
    committed: Arc<AtomicU64>,
}

impl Store {
    /// The highest migration embedded in this binary. A unit test keeps it equal to the last
    /// file in `migrations/`, so adding a migration without bumping it fails CI.
    pub const SCHEMA_VERSION: i64 = 8;

    /// The database's file name inside the data directory: `<datadir>/sluice.db`.
    pub const FILE_NAME: &'static str = "sluice.db";

    /// Opens the database at `path`, creating the file (mode 0600 on Unix: it will hold swap
    /// secrets) if it is missing, and applies the embedded migrations.
    ///
    /// Refuses a database whose schema is newer than this binary ([`StoreError::TooNew`]) and
    /// one whose recorded migrations differ from the embedded ones
    /// ([`StoreError::ChecksumMismatch`]), before writing anything to it.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        ensure_parent_dir(path).await.map_err(open_err)?;
        create_private_file(path).await.map_err(open_err)?;

        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A file on this machine has no link to test: without this, every statement and
            // transaction would first make a round trip to its connection's thread to ping it.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(open_err)?;

        let store = Store {
            pool,
            path: path.to_owned(),
            current_run: Arc::new(AtomicI64::new(0)),
            committed: Arc::new(AtomicU64::new(0)),
        };
        if let Err(e) = store.migrate().await {
            store.pool.close().await;
            return Err(e);
        }
        Ok(store)
    }

    /// How many write transactions this handle (and its clones) committed through
    /// [`Store::begin`] since [`Store::open`]: the figure behind "SQLite transactions per swap"
    /// in `docs/benchmarks.md`.
    pub fn committed_transactions(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Checks the recorded schema against the binary, then applies missing migrations.
    async fn migrate(&self) -> Result<(), StoreError> {
        if let Some(db_version) = self.recorded_version().await?
            && db_version > Self::SCHEMA_VERSION
        {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                db_version,
                binary_version: Self::SCHEMA_VERSION,
            });
        }
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            MigrateError::VersionMismatch(version) => StoreError::ChecksumMismatch {
                path: self.path.clone(),
                version,
            },
            source => StoreError::Migrate {
                path: self.path.clone(),
                target: Self::SCHEMA_VERSION,
                source,
            },
        })
    }

    /// The highest migration recorded in the database, `None` for a database that has never
    /// been migrated (a new file).
    async fn recorded_version(&self) -> Result<Option<i64>, StoreError> {
        let has_table: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading the schema version"))?;
        if has_table.is_none() {
            return Ok(None);
        }
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query("reading the schema version"))
    }

    /// Runs a trivial query: the store is open and answering. Used by `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("pinging the database"))?;
        Ok(())
    }

    /// The highest migration applied to the database; equals [`Store::SCHEMA_VERSION`] once
    /// [`Store::open`] has returned.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.recorded_version().await?.unwrap_or(0))
    }

    /// The database file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checkpoints the write-ahead log into the main file and closes every connection (of all
    /// clones). After a clean close the database is a single self-contained file, easy to back
    /// up. A failed checkpoint loses nothing (the WAL is replayed at the next open), so it is
    /// logged, not returned.
    pub async fn close(self) {
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(path = %self.path.display(), error = %e,
                "WAL checkpoint at close failed; it will be replayed at the next start");
        }
        self.pool.close().await;
    }
}

/// SQLite's own "unable to open database file" does not say why; a missing data directory is
/// the usual reason, so name it.
async fn ensure_parent_dir(path: &Path) -> Result<(), sqlx::Error> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    match tokio::fs::metadata(parent).await {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is not a directory", parent.display()),
        ))),
        Err(e) => Err(sqlx::Error::Io(std::io::Error::new(
            e.kind(),
            format!("data directory {}: {e}", parent.display()),
        ))),
    }
}

/// Creates an empty database file readable only by its owner, unless it exists. SQLite gives
/// its `-wal` and `-shm` files the same permissions as the main file.
async fn create_private_file(path: &Path) -> Result<(), sqlx::Error> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    match options.open(path).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(sqlx::Error::Io(e)),
    }
}
