-- One row per daemon start. A row whose stopped_at_unix is still NULL when the next start
-- reads it means that run ended without a clean shutdown (crash, kill -9, power loss).
-- Times are Unix seconds (UTC). Types are kept portable: BIGINT and TEXT mean the same in
-- SQLite and Postgres; only the key declaration is SQLite-specific.
CREATE TABLE daemon_runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    version         TEXT    NOT NULL,
    started_at_unix BIGINT  NOT NULL,
    stopped_at_unix BIGINT
);
