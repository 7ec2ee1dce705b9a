-- Loop In swaps (the node funds an on-chain HTLC, the server pays the node's invoice), kept
-- apart from the Loop Out `swaps` table because the contract has other fields; the table a row
-- is in is its swap type, and listings say which.
--
-- The preimage (also held by lnd in the swap invoice) and the per-swap internal key (revealed
-- to the server only once it paid) are stored in clear, like the Loop Out preimage: the data
-- directory is 0700 and sluice.db 0600.
--
-- contract_json is the whole validated contract (hex keys and script, amounts in sat); the
-- indexed columns repeat what queries filter and sort on.
CREATE TABLE loop_in_swaps (
    swap_hash        TEXT   PRIMARY KEY NOT NULL,
    preimage         BLOB   NOT NULL,
    internal_key     BLOB   NOT NULL,
    network          TEXT   NOT NULL,
    amount_sat       BIGINT NOT NULL,
    contract_json    TEXT   NOT NULL,
    -- The latest saved state code (LoopInState::code), kept equal to the newest
    -- loop_in_updates row in the same transaction.
    state_code       BIGINT NOT NULL,
    created_at_unix  BIGINT NOT NULL,
    updated_at_unix  BIGINT NOT NULL
);

CREATE INDEX loop_in_swaps_state_code ON loop_in_swaps (state_code);

-- One row per saved step, never updated or deleted; the newest is the swap's progress.
CREATE TABLE loop_in_updates (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    swap_hash         TEXT    NOT NULL REFERENCES loop_in_swaps (swap_hash),
    state_code        BIGINT  NOT NULL,
    progress_json     TEXT    NOT NULL,
    server_cost_sat   BIGINT  NOT NULL,
    onchain_cost_sat  BIGINT  NOT NULL,
    updated_at_unix   BIGINT  NOT NULL
);

CREATE INDEX loop_in_updates_by_swap ON loop_in_updates (swap_hash, id);
