-- Loop Out swaps: the contract agreed with the server, and an append-only history of the
-- progress the swap driver saved before each of its actions.
--
-- The preimage is stored in clear: without it a swap whose HTLC confirmed while the daemon was
-- down cannot be swept after a restart. The data directory is created 0700 and sluice.db 0600
-- (Store::open), so only the daemon's user can read it; back-ups must be kept as private.
--
-- Hashes, keys and scripts are lower-case hex TEXT; amounts are *_sat BIGINT; heights are
-- BIGINT; times are Unix seconds (UTC).
CREATE TABLE swaps (
    swap_hash                     TEXT    PRIMARY KEY NOT NULL,
    preimage                      BLOB    NOT NULL,
    network                       TEXT    NOT NULL,
    amount_sat                    BIGINT  NOT NULL,
    expiry_height                 BIGINT  NOT NULL,
    initiation_height             BIGINT  NOT NULL,
    htlc_confirmations            BIGINT  NOT NULL,
    reveal_margin_blocks          BIGINT  NOT NULL,
    sweep_finality_confirmations  BIGINT  NOT NULL,
    fee_cap_lifted_within_blocks  BIGINT  NOT NULL,
    max_swap_fee_sat              BIGINT  NOT NULL,
    max_prepay_amount_sat         BIGINT  NOT NULL,
    max_swap_routing_fee_sat      BIGINT  NOT NULL,
    max_prepay_routing_fee_sat    BIGINT  NOT NULL,
    max_miner_fee_sat             BIGINT  NOT NULL,
    swap_invoice                  TEXT    NOT NULL,
    swap_invoice_hash             TEXT    NOT NULL,
    swap_invoice_amount_sat       BIGINT  NOT NULL,
    prepay_invoice                TEXT    NOT NULL,
    prepay_invoice_hash           TEXT    NOT NULL,
    prepay_invoice_amount_sat     BIGINT  NOT NULL,
    -- The swap invoice's payment secret: the ownership proof for cancel and MuSig2 calls.
    payment_address               TEXT    NOT NULL,
    -- The swap invoice's final CLTV delta, bounding the payment's cltv_limit.
    swap_min_final_cltv_delta     BIGINT  NOT NULL,
    publication_deadline_unix     BIGINT  NOT NULL,
    -- The sweep destination address; for wallet swaps the address lnd gave at creation, so
    -- every re-published sweep pays the same address.
    destination                   TEXT    NOT NULL,
    destination_is_wallet         BIGINT  NOT NULL,
    -- Comma-separated short channel ids (u64), empty for any channel.
    outgoing_chan_set             TEXT    NOT NULL,
    label                         TEXT    NOT NULL,
    initiator                     TEXT    NOT NULL,
    protocol_version              BIGINT  NOT NULL,
    key_family                    BIGINT  NOT NULL,
    key_index                     BIGINT  NOT NULL,
    sender_key                    TEXT    NOT NULL,
    receiver_key                  TEXT    NOT NULL,
    htlc_pk_script                TEXT    NOT NULL,
    -- The latest saved state code (SwapState::code) and time, kept equal to the newest
    -- swap_updates row in the same transaction; lets unfinished swaps be found by index.
    state_code                    BIGINT  NOT NULL,
    -- 1 once both payments have a final result. A terminal swap whose payment is still in
    -- flight is resumed too, so the payment's outcome (and the costs) are still recorded.
    payments_final                BIGINT  NOT NULL,
    created_at_unix               BIGINT  NOT NULL,
    updated_at_unix               BIGINT  NOT NULL
);

CREATE INDEX swaps_state_code ON swaps (state_code, payments_final);

-- One row per saved step, never updated or deleted: the swap's history, the newest row is its
-- current progress. progress_json is the full SwapProgress; the costs are what the progress
-- implies at that point (final on the terminal row).
CREATE TABLE swap_updates (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    swap_hash          TEXT    NOT NULL REFERENCES swaps (swap_hash),
    state_code         BIGINT  NOT NULL,
    progress_json      TEXT    NOT NULL,
    server_cost_sat    BIGINT  NOT NULL,
    onchain_cost_sat   BIGINT  NOT NULL,
    offchain_cost_sat  BIGINT  NOT NULL,
    updated_at_unix    BIGINT  NOT NULL
);

CREATE INDEX swap_updates_by_swap ON swap_updates (swap_hash, id);
