//! Daemon runs: one row per start, closed by a clean stop. A run left open means the process
//! ended without shutting down (crash, kill -9, power loss), which the next start reports and
//! which tells the swap engine to expect half-done work.

use std::fmt;
use std::sync::atomic::Ordering;

use super::{Store, StoreError};

/// Identifies one recorded daemon start. Opaque: only the store makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub(super) i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A recorded daemon start and, if it shut down cleanly, its stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonRun {
    /// The run's id.
    pub id: RunId,
    /// The sluiced version that ran.
    pub version: String,
    /// When it started, Unix seconds.
    pub started_at_unix: i64,
    /// When it stopped cleanly, Unix seconds; `None` if it never recorded a stop.
    pub stopped_at_unix: Option<i64>,
}

impl DaemonRun {
    /// Whether the run recorded a clean stop.
    pub fn was_clean(&self) -> bool {
        self.stopped_at_unix.is_some()
    }
}

/// The row layout of `daemon_runs`, kept private to the store.
#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    version: String,
    started_at_unix: i64,
    stopped_at_unix: Option<i64>,
}

impl From<RunRow> for DaemonRun {
    fn from(row: RunRow) -> DaemonRun {
        DaemonRun {
            id: RunId(row.id),
            version: row.version,
            started_at_unix: row.started_at_unix,
            stopped_at_unix: row.stopped_at_unix,
        }
    }
}

impl Store {
    /// Records that the daemon `version` started at `now_unix` and returns the run's id, to be
    /// passed to [`Store::record_stop`] at shutdown. From then on [`Store::previous_run`]
    /// ignores this run.
    pub async fn record_start(&self, version: &str, now_unix: i64) -> Result<RunId, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO daemon_runs (version, started_at_unix) VALUES (?, ?) RETURNING id",
        )
        .bind(version)
        .bind(now_unix)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query("recording a daemon start"))?;
        self.current_run.store(id, Ordering::Release);
        Ok(RunId(id))
    }

    /// Records a clean stop of run `id` at `now_unix`. Idempotent: a second call keeps the
    /// first stop time. An id the store never returned is [`StoreError::UnknownRun`].
    pub async fn record_stop(&self, id: RunId, now_unix: i64) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE daemon_runs SET stopped_at_unix = COALESCE(stopped_at_unix, ?) WHERE id = ?",
        )
        .bind(now_unix)
        .bind(id.0)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("recording a daemon stop"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UnknownRun(id));
        }
        Ok(())
    }

    /// The latest run before the one this process recorded (or the latest run at all, before
    /// [`Store::record_start`] is called); `None` on a fresh database.
    pub async fn previous_run(&self) -> Result<Option<DaemonRun>, StoreError> {
        let current = self.current_run.load(Ordering::Acquire);
        let below = if current > 0 { current } else { i64::MAX };
        let row: Option<RunRow> = sqlx::query_as(
            "SELECT id, version, started_at_unix, stopped_at_unix FROM daemon_runs \
             WHERE id < ? ORDER BY id DESC LIMIT 1",
        )
        .bind(below)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading the previous daemon run"))?;
        Ok(row.map(DaemonRun::from))
    }

    /// Whether the previous run (see [`Store::previous_run`]) stopped cleanly; `None` if there
    /// was none. `Some(false)` means it crashed or was killed.
    pub async fn previous_run_was_clean(&self) -> Result<Option<bool>, StoreError> {
        Ok(self.previous_run().await?.map(|run| run.was_clean()))
    }
}
