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

-- Facts about the database itself, one row per key. `network` is written by the first start and
-- checked by every later one, so a datadir never mixes mainnet and test coins.
CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
