-- Autoloop: the fee ledger's entries, the decision journal, the persisted mode and the
-- per-channel backoff. Times are Unix seconds (UTC), amounts satoshis.

-- Append-only mirror of `ledger::Entry`. `(swap_hash, entry_id)` names one fact, so recording
-- it again after a crash is a no-op. `seq` keeps the recorded order for replay.
CREATE TABLE ledger_entries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    swap_hash       TEXT    NOT NULL,
    entry_id        BIGINT  NOT NULL,
    at_unix         BIGINT  NOT NULL,
    kind            TEXT    NOT NULL, -- reserve | spend | release
    rule            TEXT,             -- reserve
    expected_sat    BIGINT,           -- reserve
    worst_case_sat  BIGINT,           -- reserve
    amount_sat      BIGINT,           -- spend
    category        TEXT,             -- spend
    UNIQUE (swap_hash, entry_id)
);

-- One row per target per autoloop pass. Bounded: pruned on insert to the newest passes.
CREATE TABLE decision_journal (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    pass_id          BIGINT  NOT NULL,
    at_unix          BIGINT  NOT NULL,
    target           TEXT    NOT NULL,
    rule             TEXT,
    reason           TEXT    NOT NULL,
    detail           TEXT    NOT NULL,
    inbound_ppm      BIGINT  NOT NULL,
    amount_sat       BIGINT,
    swap_hash        TEXT
);
CREATE INDEX decision_journal_target ON decision_journal (target, at_unix);
CREATE INDEX decision_journal_pass ON decision_journal (pass_id);

-- Autoloop settings, one row per key (`mode`: off | dry-run | on).
CREATE TABLE autoloop_settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Failure history per channel: the policy's backoff input.
CREATE TABLE autoloop_backoff (
    chan_id              TEXT   PRIMARY KEY NOT NULL,
    last_failure_unix    BIGINT NOT NULL,
    consecutive_failures BIGINT NOT NULL
);
