#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use super::*;

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("sluice.db")
}

#[test]
fn schema_version_matches_the_last_embedded_migration() {
    let highest = MIGRATOR.iter().map(|m| m.version).max().unwrap();
    assert_eq!(Store::SCHEMA_VERSION, highest, "bump Store::SCHEMA_VERSION");
}

#[tokio::test]
async fn open_creates_a_wal_database_with_durable_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    assert!(path.exists());

    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // 2 = FULL.
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(sync, 2);
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);
    assert_eq!(store.schema_version().await.unwrap(), Store::SCHEMA_VERSION);
    store.ping().await.unwrap();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "database must not be readable by others: {mode:o}"
        );
    }
    store.close().await;
}

#[tokio::test]
async fn reopen_is_idempotent_and_applies_migrations_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    let id = store.record_start("0.1.0", 100).await.unwrap();
    store.close().await;

    let store = Store::open(&path).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(applied, MIGRATOR.iter().count() as i64);
    // Data written before the reopen is still there.
    let run = store.previous_run().await.unwrap().unwrap();
    assert_eq!(run.id, id);
    assert_eq!(run.version, "0.1.0");
    store.close().await;
}

#[tokio::test]
async fn a_database_from_a_newer_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    let newer = Store::SCHEMA_VERSION + 1;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (?, 'from the future', TRUE, X'00', 0)",
    )
    .bind(newer)
    .execute(&store.pool)
    .await
    .unwrap();
    store.close().await;

    let err = Store::open(&path).await.unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { db_version, binary_version, .. }
            if db_version == newer && binary_version == Store::SCHEMA_VERSION),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("schema version {newer}")), "{msg}");
    assert!(msg.contains("upgrade sluiced"), "{msg}");
    assert!(msg.contains("restore a backup"), "{msg}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_modified_migration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = X'DEADBEEF' WHERE version = 1")
        .execute(&store.pool)
        .await
        .unwrap();
    store.close().await;

    let err = Store::open(&path).await.unwrap_err();
    assert!(
        matches!(err, StoreError::ChecksumMismatch { version: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[tokio::test]
async fn a_missing_data_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent").join("sluice.db");
    let err = Store::open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("absent"), "{msg}");
    assert!(msg.contains("data directory exists"), "{msg}");
    assert!(!path.exists());
}

#[tokio::test]
async fn runs_record_crashes_and_clean_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);

    // First start on a fresh database: nothing before it.
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.previous_run_was_clean().await.unwrap(), None);
    let first = store.record_start("0.1.0", 1_000).await.unwrap();
    assert_eq!(store.previous_run_was_clean().await.unwrap(), None);
    // The process dies without record_stop.
    store.close().await;

    // Second start sees the crash, then stops cleanly (twice: idempotent).
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.previous_run_was_clean().await.unwrap(), Some(false));
    let second = store.record_start("0.1.1", 2_000).await.unwrap();
    assert!(second > first);
    let prev = store.previous_run().await.unwrap().unwrap();
    assert_eq!(prev.id, first);
    assert_eq!(prev.started_at_unix, 1_000);
    assert_eq!(prev.stopped_at_unix, None);
    store.record_stop(second, 2_500).await.unwrap();
    store.record_stop(second, 2_600).await.unwrap();
    store.close().await;

    // Third start sees the clean stop with its first time.
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.previous_run_was_clean().await.unwrap(), Some(true));
    let prev = store.previous_run().await.unwrap().unwrap();
    assert_eq!(
        prev,
        DaemonRun {
            id: second,
            version: "0.1.1".to_owned(),
            started_at_unix: 2_000,
            stopped_at_unix: Some(2_500),
        }
    );

    let unknown = RunId(second.0 + 100);
    let err = store.record_stop(unknown, 3_000).await.unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownRun(id) if id == unknown),
        "{err:?}"
    );
    store.close().await;
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::write(&path, vec![0x5a_u8; 8192]).unwrap();
    let err = Store::open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn busy_and_locked_are_transient_other_failures_are_not() {
    use sqlx::{ConnectOptions, Executor};

    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();

    // Another connection holds the write lock; one that will not wait gets SQLITE_BUSY.
    let raw = SqliteConnectOptions::new().filename(&path);
    let mut holder = raw.clone().connect().await.unwrap();
    holder.execute("BEGIN IMMEDIATE").await.unwrap();
    let mut impatient = raw.busy_timeout(Duration::ZERO).connect().await.unwrap();
    let busy = impatient.execute("BEGIN IMMEDIATE").await.unwrap_err();
    let err = StoreError::query("testing")(busy);
    assert!(err.is_transient(), "{err:?}");
    holder.execute("ROLLBACK").await.unwrap();

    assert!(StoreError::query("testing")(sqlx::Error::PoolTimedOut).is_transient());

    // A constraint violation fails again on retry.
    let id = store.record_start("0.1.0", 1).await.unwrap();
    let dup =
        sqlx::query("INSERT INTO daemon_runs (id, version, started_at_unix) VALUES (?, 'x', 1)")
            .bind(id.0)
            .execute(&store.pool)
            .await
            .unwrap_err();
    assert!(!StoreError::query("testing")(dup).is_transient());
    store.close().await;
}
