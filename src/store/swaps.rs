//! Loop Out swaps: the contract (with its preimage) and the append-only history of the
//! progress the swap driver saved before acting.
//!
//! A swap is created in one transaction ([`Store::create_swap`], or [`Store::begin`] +
//! [`StoreTx::insert_swap`] when another write — the ledger's fee reservation — must commit
//! with it), before anything is paid. Every later step appends a row with
//! [`Store::save_progress`]; the newest row is the swap's progress. Only state codes from
//! [`SwapState::code`] are persisted, never positions in an enum.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bitcoin::{OutPoint, ScriptBuf, Txid};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{AssertSqlSafe, Row, Transaction};

use super::{Store, StoreError};
use crate::domain::{BlockHeight, ChanId, Network, Sat, SwapHash};
use crate::swap::{
    ContractTerms, FeeLimits, HtlcOutput, HtlcSpend, InvoiceTerms, KeyLocator, LoopOutContract,
    PaymentFailureReason, PaymentStatus, Preimage, SpendPath, SwapCosts, SwapProgress, SwapState,
    SweepFailure,
};

/// What the engine keeps about a swap beyond the pure contract: facts from the server's
/// validated answer and the creation request that the driver needs after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapExtras {
    /// The chain the swap runs on (addresses and invoices are checked against it).
    pub network: Network,
    /// The swap invoice's payment secret: ownership proof for cancel and MuSig2 calls.
    pub payment_address: [u8; 32],
    /// The swap invoice's final CLTV delta; the payment's CLTV limit must allow it.
    pub swap_min_final_cltv_delta: u64,
    /// The HTLC publication deadline sent to the server, Unix seconds.
    pub publication_deadline_unix: i64,
    /// Whether the destination is an address of lnd's wallet (taken at creation) rather than
    /// an external address the operator gave.
    pub destination_is_wallet: bool,
}

/// A swap as stored, without its preimage: what listings and the API see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapRecord {
    /// The validated contract.
    pub contract: LoopOutContract,
    /// The engine's extra facts.
    pub extras: SwapExtras,
    /// The newest saved progress.
    pub progress: SwapProgress,
    /// The costs saved with the newest progress.
    pub costs: SwapCosts,
    /// When the swap was created, Unix seconds.
    pub created_at_unix: i64,
    /// When the newest progress was saved, Unix seconds.
    pub updated_at_unix: i64,
    /// When the swap entered its current state, Unix seconds (a swap saves a step on every
    /// block while it waits, so `updated_at_unix` cannot say how long it has been stuck).
    pub state_since_unix: i64,
}

/// A swap with its preimage, for the driver only.
#[derive(Debug, Clone)]
pub struct StoredSwap {
    /// Everything but the secret.
    pub record: SwapRecord,
    /// The preimage; its bytes never print.
    pub preimage: Preimage,
}

/// A stored swap whose row cannot be read back (a corrupted or hand-edited row, or one written
/// by a newer sluice). It is reported, never driven; every other swap still is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableSwap {
    /// The row's `swap_hash` column as stored (hex), or a placeholder if even that is unreadable.
    pub swap_hash: String,
    /// The row's `state_code` column as stored (-1 if unreadable).
    pub state_code: i64,
    /// Why it cannot be read: the column and the problem.
    pub error: String,
}

/// The swaps the engine resumes at start, and the ones it cannot read.
#[derive(Debug, Clone, Default)]
pub struct Resumable {
    /// Readable swaps to resume, oldest first (as [`Store::load_unfinished`]).
    pub swaps: Vec<StoredSwap>,
    /// Rows among them that do not decode.
    pub unreadable: Vec<UnreadableSwap>,
}

fn unreadable(r: &SqliteRow, e: &sqlx::Error) -> UnreadableSwap {
    UnreadableSwap {
        swap_hash: r
            .try_get::<String, _>("swap_hash")
            .unwrap_or_else(|_| "<unreadable swap_hash>".to_owned()),
        state_code: r.try_get::<i64, _>("state_code").unwrap_or(-1),
        error: e.to_string(),
    }
}

/// One row of a swap's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapUpdateRecord {
    /// The saved progress.
    pub progress: SwapProgress,
    /// The costs it implied.
    pub costs: SwapCosts,
    /// When it was saved, Unix seconds.
    pub updated_at_unix: i64,
}

/// Which swaps [`Store::list_swaps`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwapFilter {
    /// Only swaps currently in this state.
    pub state: Option<SwapState>,
    /// Only swaps that are not in a terminal state.
    pub unfinished_only: bool,
    /// At most this many, newest first; `None` for all.
    pub limit: Option<u32>,
}

/// The state codes of the non-terminal states, for queries.
fn unfinished_codes() -> Vec<i64> {
    SwapState::ALL
        .iter()
        .filter(|s| !s.is_terminal())
        .map(|s| i64::from(s.code()))
        .collect()
}

/// A write transaction on the store. Dropping it without [`StoreTx::commit`] rolls back every
/// write made through it.
pub struct StoreTx {
    pub(super) tx: Transaction<'static, Sqlite>,
    committed: Arc<AtomicU64>,
}

impl std::fmt::Debug for StoreTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreTx(..)")
    }
}

impl StoreTx {
    /// Inserts a new swap with its contract, preimage and first progress row. Fails (and the
    /// transaction should be dropped) if a swap with this hash exists.
    pub async fn insert_swap(
        &mut self,
        contract: &LoopOutContract,
        preimage: &Preimage,
        extras: &SwapExtras,
        progress: &SwapProgress,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        let t = contract.terms();
        let op = "inserting a new swap";
        let chans = t
            .outgoing_chan_set
            .iter()
            .map(|c| c.0.to_string())
            .collect::<Vec<_>>()
            .join(",");
        sqlx::query(
            "INSERT INTO swaps (swap_hash, preimage, network, amount_sat, expiry_height, \
             initiation_height, htlc_confirmations, reveal_margin_blocks, \
             sweep_finality_confirmations, fee_cap_lifted_within_blocks, max_swap_fee_sat, \
             max_prepay_amount_sat, max_swap_routing_fee_sat, max_prepay_routing_fee_sat, \
             max_miner_fee_sat, swap_invoice, swap_invoice_hash, swap_invoice_amount_sat, \
             prepay_invoice, prepay_invoice_hash, prepay_invoice_amount_sat, payment_address, \
             swap_min_final_cltv_delta, publication_deadline_unix, destination, \
             destination_is_wallet, outgoing_chan_set, label, initiator, protocol_version, \
             key_family, key_index, sender_key, receiver_key, htlc_pk_script, state_code, \
             payments_final, created_at_unix, updated_at_unix) VALUES (?, ?, ?, ?, ?, ?, ?, ?, \
             ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
             ?, ?, ?)",
        )
        .bind(t.swap_hash.to_string())
        .bind(preimage.expose_secret().to_vec())
        .bind(extras.network.as_str())
        .bind(sat_i64(t.amount))
        .bind(i64::from(t.expiry.0))
        .bind(i64::from(t.initiation_height.0))
        .bind(i64::from(t.htlc_confirmations))
        .bind(i64::from(t.reveal_margin_blocks))
        .bind(i64::from(t.sweep_finality_confirmations))
        .bind(i64::from(t.fee_cap_lifted_within_blocks))
        .bind(sat_i64(t.fee_limits.max_swap_fee))
        .bind(sat_i64(t.fee_limits.max_prepay_amount))
        .bind(sat_i64(t.fee_limits.max_swap_routing_fee))
        .bind(sat_i64(t.fee_limits.max_prepay_routing_fee))
        .bind(sat_i64(t.fee_limits.max_miner_fee))
        .bind(&t.swap_invoice.bolt11)
        .bind(hex::encode(t.swap_invoice.payment_hash))
        .bind(sat_i64(t.swap_invoice.amount))
        .bind(&t.prepay_invoice.bolt11)
        .bind(hex::encode(t.prepay_invoice.payment_hash))
        .bind(sat_i64(t.prepay_invoice.amount))
        .bind(hex::encode(extras.payment_address))
        .bind(i64::try_from(extras.swap_min_final_cltv_delta).unwrap_or(i64::MAX))
        .bind(extras.publication_deadline_unix)
        .bind(&t.destination)
        .bind(i64::from(extras.destination_is_wallet))
        .bind(chans)
        .bind(&t.label)
        .bind(&t.initiator)
        .bind(i64::from(t.protocol_version))
        .bind(i64::from(t.receiver_key_locator.family))
        .bind(i64::from(t.receiver_key_locator.index))
        .bind(hex::encode(t.sender_key))
        .bind(hex::encode(t.receiver_key))
        .bind(hex::encode(t.htlc_pk_script.as_bytes()))
        .bind(i64::from(progress.state.code()))
        .bind(i64::from(payments_final(progress)))
        .bind(now_unix)
        .bind(now_unix)
        .execute(&mut *self.tx)
        .await
        .map_err(StoreError::query(op))?;
        append_update(
            &mut self.tx,
            t.swap_hash,
            progress,
            progress.costs(),
            now_unix,
        )
        .await
    }

    /// Commits every write made through this transaction at once.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx
            .commit()
            .await
            .map_err(StoreError::query("committing a transaction"))?;
        self.committed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The underlying SQLite transaction, for other store modules that join it.
    #[allow(dead_code)]
    pub(super) fn inner(&mut self) -> &mut Transaction<'static, Sqlite> {
        &mut self.tx
    }
}

fn payments_final(progress: &SwapProgress) -> bool {
    progress.swap_payment.is_final() && progress.prepay_payment.is_final()
}

/// Appends a progress row and moves the swap's current state code with it.
async fn append_update(
    tx: &mut Transaction<'static, Sqlite>,
    hash: SwapHash,
    progress: &SwapProgress,
    costs: SwapCosts,
    now_unix: i64,
) -> Result<(), StoreError> {
    let op = "saving swap progress";
    let json =
        serde_json::to_string(&ProgressJson::from(progress)).map_err(|e| StoreError::Query {
            op,
            source: sqlx::Error::Encode(Box::new(e)),
        })?;
    let changed = sqlx::query(
        "UPDATE swaps SET state_since_unix = CASE WHEN state_code = ?1 AND state_since_unix \
             IS NOT NULL THEN state_since_unix ELSE ?3 END, state_code = ?1, payments_final = ?2, \
             updated_at_unix = ?3 WHERE swap_hash = ?4",
    )
    .bind(i64::from(progress.state.code()))
    .bind(i64::from(payments_final(progress)))
    .bind(now_unix)
    .bind(hash.to_string())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query(op))?;
    if changed.rows_affected() == 0 {
        return Err(StoreError::Query {
            op,
            source: sqlx::Error::RowNotFound,
        });
    }
    sqlx::query(
        "INSERT INTO swap_updates (swap_hash, state_code, progress_json, server_cost_sat, \
         onchain_cost_sat, offchain_cost_sat, updated_at_unix) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(hash.to_string())
    .bind(i64::from(progress.state.code()))
    .bind(json)
    .bind(costs.server_sat)
    .bind(sat_i64(costs.onchain))
    .bind(sat_i64(costs.offchain))
    .bind(now_unix)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query(op))?;
    Ok(())
}

const SELECT_SWAP: &str = "SELECT s.*, u.progress_json, u.server_cost_sat, u.onchain_cost_sat, \
     u.offchain_cost_sat FROM swaps s JOIN swap_updates u ON u.id = \
     (SELECT MAX(id) FROM swap_updates WHERE swap_hash = s.swap_hash)";

impl Store {
    /// Starts a write transaction, for writes that must commit together with a new swap.
    pub async fn begin(&self) -> Result<StoreTx, StoreError> {
        let tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("starting a transaction"))?;
        Ok(StoreTx {
            tx,
            committed: Arc::clone(&self.committed),
        })
    }

    /// Stores a new swap — contract, preimage, extras and first progress — in one transaction.
    /// Call it before anything is paid.
    pub async fn create_swap(
        &self,
        contract: &LoopOutContract,
        preimage: &Preimage,
        extras: &SwapExtras,
        progress: &SwapProgress,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.insert_swap(contract, preimage, extras, progress, now_unix)
            .await?;
        tx.commit().await
    }

    /// Appends `progress` (and the `costs` it implies) to the history of swap `hash`.
    /// Durable once it returns; on error nothing was written.
    pub async fn save_progress(
        &self,
        hash: SwapHash,
        progress: &SwapProgress,
        costs: SwapCosts,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        append_update(&mut tx.tx, hash, progress, costs, now_unix).await?;
        tx.commit().await
    }

    /// The swap with this hash and its preimage, `None` if there is none.
    pub async fn load_swap(&self, hash: SwapHash) -> Result<Option<StoredSwap>, StoreError> {
        let op = "loading a swap";
        let row = sqlx::query(AssertSqlSafe(format!(
            "{SELECT_SWAP} WHERE s.swap_hash = ?"
        )))
        .bind(hash.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(op))?;
        row.map(|r| stored_from_row(&r).map_err(StoreError::query(op)))
            .transpose()
    }

    /// Every swap not in a terminal state, and every terminal one whose payments are not both
    /// final (their outcome still counts for the costs), with its preimage, oldest first: what
    /// the engine resumes at start.
    pub async fn load_unfinished(&self) -> Result<Vec<StoredSwap>, StoreError> {
        let op = "loading unfinished swaps";
        let rows = self.unfinished_rows(op).await?;
        rows.iter()
            .map(|r| stored_from_row(r).map_err(StoreError::query(op)))
            .collect()
    }

    /// Like [`Store::load_unfinished`], but one row that does not decode does not hide the
    /// others: it is returned apart, so the engine quarantines that swap and drives the rest.
    pub async fn load_resumable(&self) -> Result<Resumable, StoreError> {
        let rows = self.unfinished_rows("loading unfinished swaps").await?;
        let mut out = Resumable::default();
        for r in &rows {
            match stored_from_row(r) {
                Ok(s) => out.swaps.push(s),
                Err(e) => out.unreadable.push(unreadable(r, &e)),
            }
        }
        Ok(out)
    }

    /// The rows of [`Store::load_unfinished`], undecoded, oldest first.
    async fn unfinished_rows(&self, op: &'static str) -> Result<Vec<SqliteRow>, StoreError> {
        let codes = unfinished_codes();
        let placeholders = vec!["?"; codes.len()].join(", ");
        let sql = format!(
            "{SELECT_SWAP} WHERE s.state_code IN ({placeholders}) OR s.payments_final = 0 \
             ORDER BY s.created_at_unix, s.swap_hash"
        );
        // Built only from constants and `?` placeholders; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for c in codes {
            q = q.bind(c);
        }
        q.fetch_all(&self.pool).await.map_err(StoreError::query(op))
    }

    /// Every stored swap whose row does not decode, oldest first; [`Store::list_swaps`] leaves
    /// them out.
    pub async fn list_unreadable(&self) -> Result<Vec<UnreadableSwap>, StoreError> {
        let op = "listing unreadable swaps";
        let sql = format!("{SELECT_SWAP} ORDER BY s.created_at_unix, s.swap_hash");
        // A constant query.
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?;
        Ok(rows
            .iter()
            .filter_map(|r| record_from_row(r).err().map(|e| unreadable(r, &e)))
            .collect())
    }

    /// Swaps matching `filter`, newest first, without their preimages. A row that does not
    /// decode is left out (and logged) rather than failing the listing; see
    /// [`Store::list_unreadable`].
    pub async fn list_swaps(&self, filter: SwapFilter) -> Result<Vec<SwapRecord>, StoreError> {
        let op = "listing swaps";
        let mut codes = match filter.state {
            Some(s) => vec![i64::from(s.code())],
            None => SwapState::ALL.iter().map(|s| i64::from(s.code())).collect(),
        };
        if filter.unfinished_only {
            let open = unfinished_codes();
            codes.retain(|c| open.contains(c));
        }
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = vec!["?"; codes.len()].join(", ");
        let sql = format!(
            "{SELECT_SWAP} WHERE s.state_code IN ({placeholders}) ORDER BY s.created_at_unix \
             DESC, s.swap_hash LIMIT ?"
        );
        // Built only from constants and `?` placeholders; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for c in codes {
            q = q.bind(c);
        }
        let limit = filter.limit.map_or(-1, i64::from);
        let rows = q
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?;
        Ok(rows
            .iter()
            .filter_map(|r| match record_from_row(r) {
                Ok(record) => Some(record),
                Err(e) => {
                    let bad = unreadable(r, &e);
                    tracing::warn!(swap = %bad.swap_hash, error = %bad.error,
                        "a stored swap does not decode; left out of the listing");
                    None
                }
            })
            .collect())
    }

    /// Every saved progress of swap `hash`, oldest first.
    pub async fn swap_history(&self, hash: SwapHash) -> Result<Vec<SwapUpdateRecord>, StoreError> {
        let op = "reading a swap's history";
        let rows = sqlx::query(
            "SELECT progress_json, server_cost_sat, onchain_cost_sat, offchain_cost_sat, \
             updated_at_unix FROM swap_updates WHERE swap_hash = ? ORDER BY id",
        )
        .bind(hash.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op))?;
        rows.iter()
            .map(|r| {
                Ok(SwapUpdateRecord {
                    progress: progress_from_row(r)?,
                    costs: costs_from_row(r)?,
                    updated_at_unix: r.try_get("updated_at_unix")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query(op))
    }
}

fn sat_i64(s: Sat) -> i64 {
    i64::try_from(s.0).unwrap_or(i64::MAX)
}

fn corrupt(column: &str, why: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("column {column}: {why}").into())
}

fn get_u32(r: &SqliteRow, column: &str) -> Result<u32, sqlx::Error> {
    let v: i64 = r.try_get(column)?;
    u32::try_from(v).map_err(|e| corrupt(column, e))
}

fn get_sat(r: &SqliteRow, column: &str) -> Result<Sat, sqlx::Error> {
    let v: i64 = r.try_get(column)?;
    u64::try_from(v).map(Sat).map_err(|e| corrupt(column, e))
}

fn get_hex<const N: usize>(r: &SqliteRow, column: &str) -> Result<[u8; N], sqlx::Error> {
    let s: String = r.try_get(column)?;
    let bytes = hex::decode(&s).map_err(|e| corrupt(column, e))?;
    bytes
        .try_into()
        .map_err(|_| corrupt(column, format!("expected {N} bytes")))
}

fn record_from_row(r: &SqliteRow) -> Result<SwapRecord, sqlx::Error> {
    let network: String = r.try_get("network")?;
    let network = Network::from_str(&network).map_err(|e| corrupt("network", e.0))?;
    let chans: String = r.try_get("outgoing_chan_set")?;
    let outgoing_chan_set = chans
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().map(ChanId))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt("outgoing_chan_set", e))?;
    let script: String = r.try_get("htlc_pk_script")?;
    let htlc_pk_script =
        ScriptBuf::from_bytes(hex::decode(script).map_err(|e| corrupt("htlc_pk_script", e))?);
    let terms = ContractTerms {
        swap_hash: SwapHash(get_hex::<32>(r, "swap_hash")?),
        amount: get_sat(r, "amount_sat")?,
        expiry: BlockHeight(get_u32(r, "expiry_height")?),
        initiation_height: BlockHeight(get_u32(r, "initiation_height")?),
        htlc_confirmations: get_u32(r, "htlc_confirmations")?,
        reveal_margin_blocks: get_u32(r, "reveal_margin_blocks")?,
        sweep_finality_confirmations: get_u32(r, "sweep_finality_confirmations")?,
        fee_cap_lifted_within_blocks: get_u32(r, "fee_cap_lifted_within_blocks")?,
        fee_limits: FeeLimits {
            max_swap_fee: get_sat(r, "max_swap_fee_sat")?,
            max_prepay_amount: get_sat(r, "max_prepay_amount_sat")?,
            max_swap_routing_fee: get_sat(r, "max_swap_routing_fee_sat")?,
            max_prepay_routing_fee: get_sat(r, "max_prepay_routing_fee_sat")?,
            max_miner_fee: get_sat(r, "max_miner_fee_sat")?,
        },
        swap_invoice: InvoiceTerms {
            bolt11: r.try_get("swap_invoice")?,
            payment_hash: get_hex::<32>(r, "swap_invoice_hash")?,
            amount: get_sat(r, "swap_invoice_amount_sat")?,
        },
        prepay_invoice: InvoiceTerms {
            bolt11: r.try_get("prepay_invoice")?,
            payment_hash: get_hex::<32>(r, "prepay_invoice_hash")?,
            amount: get_sat(r, "prepay_invoice_amount_sat")?,
        },
        destination: r.try_get("destination")?,
        outgoing_chan_set,
        label: r.try_get("label")?,
        initiator: r.try_get("initiator")?,
        protocol_version: get_u32(r, "protocol_version")?,
        receiver_key_locator: KeyLocator {
            family: get_u32(r, "key_family")?,
            index: get_u32(r, "key_index")?,
        },
        sender_key: get_hex::<33>(r, "sender_key")?,
        receiver_key: get_hex::<33>(r, "receiver_key")?,
        htlc_pk_script,
    };
    let contract = LoopOutContract::new(terms).map_err(|e| corrupt("swaps", e))?;
    let min_final: i64 = r.try_get("swap_min_final_cltv_delta")?;
    let is_wallet: i64 = r.try_get("destination_is_wallet")?;
    let extras = SwapExtras {
        network,
        payment_address: get_hex::<32>(r, "payment_address")?,
        swap_min_final_cltv_delta: u64::try_from(min_final)
            .map_err(|e| corrupt("swap_min_final_cltv_delta", e))?,
        publication_deadline_unix: r.try_get("publication_deadline_unix")?,
        destination_is_wallet: is_wallet != 0,
    };
    let progress = progress_from_row(r)?;
    let code: i64 = r.try_get("state_code")?;
    if i64::from(progress.state.code()) != code {
        return Err(corrupt(
            "state_code",
            format!("{code} differs from the newest progress row's state"),
        ));
    }
    Ok(SwapRecord {
        contract,
        extras,
        progress,
        costs: costs_from_row(r)?,
        created_at_unix: r.try_get("created_at_unix")?,
        updated_at_unix: r.try_get("updated_at_unix")?,
        state_since_unix: state_since(r)?,
    })
}

/// A row's `state_since_unix`, or its `updated_at_unix` if it has none (the store sets it on
/// every save and the migration that added it filled it in, so this is only a safety net).
pub(super) fn state_since(r: &SqliteRow) -> Result<i64, sqlx::Error> {
    match r.try_get::<Option<i64>, _>("state_since_unix")? {
        Some(t) => Ok(t),
        None => r.try_get("updated_at_unix"),
    }
}

fn stored_from_row(r: &SqliteRow) -> Result<StoredSwap, sqlx::Error> {
    let record = record_from_row(r)?;
    let bytes: Vec<u8> = r.try_get("preimage")?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| corrupt("preimage", "expected 32 bytes"))?;
    let preimage = Preimage::from_bytes(bytes);
    if preimage.swap_hash() != record.contract.terms().swap_hash {
        return Err(corrupt("preimage", "does not hash to the swap hash"));
    }
    Ok(StoredSwap { record, preimage })
}

fn progress_from_row(r: &SqliteRow) -> Result<SwapProgress, sqlx::Error> {
    let json: String = r.try_get("progress_json")?;
    let parsed: ProgressJson =
        serde_json::from_str(&json).map_err(|e| corrupt("progress_json", e))?;
    parsed
        .try_into()
        .map_err(|e: String| corrupt("progress_json", e))
}

fn costs_from_row(r: &SqliteRow) -> Result<SwapCosts, sqlx::Error> {
    Ok(SwapCosts {
        server_sat: r.try_get("server_cost_sat")?,
        onchain: get_sat(r, "onchain_cost_sat")?,
        offchain: get_sat(r, "offchain_cost_sat")?,
    })
}

// ----- the JSON layout of `swap_updates.progress_json` (stable: add fields, never rename) -----

#[derive(Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum PaymentJson {
    NotDispatched,
    InFlight,
    Succeeded {
        amount_sat: u64,
        routing_fee_sat: u64,
    },
    Failed {
        reason_code: u8,
    },
}

#[derive(Serialize, Deserialize)]
struct HtlcJson {
    txid: String,
    vout: u32,
    value_sat: u64,
    conf_height: Option<u32>,
}

#[derive(Serialize, Deserialize)]
struct SpendJson {
    txid: String,
    height: u32,
    confirmations: u32,
    /// `None` for the server's timeout path; what our sweep paid us for the success path.
    swept_value_sat: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct ProgressJson {
    state_code: u16,
    best_height: Option<u32>,
    swap_payment: PaymentJson,
    prepay_payment: PaymentJson,
    htlc: Option<HtlcJson>,
    revealed_at: Option<u32>,
    spend: Option<SpendJson>,
    preimage_push_acked: bool,
    sweeps_requested: u32,
    sweep_failures: u32,
    last_sweep_failure: Option<String>,
}

impl From<PaymentStatus> for PaymentJson {
    fn from(p: PaymentStatus) -> PaymentJson {
        match p {
            PaymentStatus::NotDispatched => PaymentJson::NotDispatched,
            PaymentStatus::InFlight => PaymentJson::InFlight,
            PaymentStatus::Succeeded {
                amount,
                routing_fee,
            } => PaymentJson::Succeeded {
                amount_sat: amount.0,
                routing_fee_sat: routing_fee.0,
            },
            PaymentStatus::Failed { reason } => PaymentJson::Failed {
                reason_code: reason.code(),
            },
        }
    }
}

impl TryFrom<PaymentJson> for PaymentStatus {
    type Error = String;
    fn try_from(p: PaymentJson) -> Result<PaymentStatus, String> {
        Ok(match p {
            PaymentJson::NotDispatched => PaymentStatus::NotDispatched,
            PaymentJson::InFlight => PaymentStatus::InFlight,
            PaymentJson::Succeeded {
                amount_sat,
                routing_fee_sat,
            } => PaymentStatus::Succeeded {
                amount: Sat(amount_sat),
                routing_fee: Sat(routing_fee_sat),
            },
            PaymentJson::Failed { reason_code } => PaymentStatus::Failed {
                reason: failure_from_code(reason_code)?,
            },
        })
    }
}

fn failure_from_code(code: u8) -> Result<PaymentFailureReason, String> {
    use PaymentFailureReason::*;
    [
        Timeout,
        NoRoute,
        Error,
        IncorrectPaymentDetails,
        InsufficientBalance,
        Canceled,
    ]
    .into_iter()
    .find(|r| r.code() == code)
    .ok_or_else(|| format!("unknown payment failure code {code}"))
}

fn sweep_failure_name(f: SweepFailure) -> &'static str {
    match f {
        SweepFailure::Rejected => "rejected",
        SweepFailure::FeeCapBelowRelayFee => "fee_cap_below_relay_fee",
        SweepFailure::SigningFailed => "signing_failed",
        SweepFailure::BackendUnavailable => "backend_unavailable",
    }
}

fn sweep_failure_from_name(s: &str) -> Result<SweepFailure, String> {
    [
        SweepFailure::Rejected,
        SweepFailure::FeeCapBelowRelayFee,
        SweepFailure::SigningFailed,
        SweepFailure::BackendUnavailable,
    ]
    .into_iter()
    .find(|f| sweep_failure_name(*f) == s)
    .ok_or_else(|| format!("unknown sweep failure {s:?}"))
}

impl From<&SwapProgress> for ProgressJson {
    fn from(p: &SwapProgress) -> ProgressJson {
        ProgressJson {
            state_code: p.state.code(),
            best_height: p.best_height.map(|h| h.0),
            swap_payment: p.swap_payment.into(),
            prepay_payment: p.prepay_payment.into(),
            htlc: p.htlc.map(|h| HtlcJson {
                txid: h.outpoint.txid.to_string(),
                vout: h.outpoint.vout,
                value_sat: h.value.0,
                conf_height: h.conf_height.map(|c| c.0),
            }),
            revealed_at: p.revealed_at.map(|h| h.0),
            spend: p.spend.map(|s| SpendJson {
                txid: s.txid.to_string(),
                height: s.height.0,
                confirmations: s.confirmations,
                swept_value_sat: match s.path {
                    SpendPath::Success { swept_value } => Some(swept_value.0),
                    SpendPath::Timeout => None,
                },
            }),
            preimage_push_acked: p.preimage_push_acked,
            sweeps_requested: p.sweeps_requested,
            sweep_failures: p.sweep_failures,
            last_sweep_failure: p
                .last_sweep_failure
                .map(|f| sweep_failure_name(f).to_owned()),
        }
    }
}

impl TryFrom<ProgressJson> for SwapProgress {
    type Error = String;
    fn try_from(p: ProgressJson) -> Result<SwapProgress, String> {
        let txid = |s: &str| Txid::from_str(s).map_err(|e| format!("txid {s:?}: {e}"));
        Ok(SwapProgress {
            state: SwapState::from_code(p.state_code).map_err(|e| e.to_string())?,
            best_height: p.best_height.map(BlockHeight),
            swap_payment: p.swap_payment.try_into()?,
            prepay_payment: p.prepay_payment.try_into()?,
            htlc: p
                .htlc
                .map(|h| -> Result<HtlcOutput, String> {
                    Ok(HtlcOutput {
                        outpoint: OutPoint {
                            txid: txid(&h.txid)?,
                            vout: h.vout,
                        },
                        value: Sat(h.value_sat),
                        conf_height: h.conf_height.map(BlockHeight),
                    })
                })
                .transpose()?,
            revealed_at: p.revealed_at.map(BlockHeight),
            spend: p
                .spend
                .map(|s| -> Result<HtlcSpend, String> {
                    Ok(HtlcSpend {
                        txid: txid(&s.txid)?,
                        height: BlockHeight(s.height),
                        confirmations: s.confirmations,
                        path: match s.swept_value_sat {
                            Some(v) => SpendPath::Success {
                                swept_value: Sat(v),
                            },
                            None => SpendPath::Timeout,
                        },
                    })
                })
                .transpose()?,
            preimage_push_acked: p.preimage_push_acked,
            sweeps_requested: p.sweeps_requested,
            sweep_failures: p.sweep_failures,
            last_sweep_failure: p
                .last_sweep_failure
                .as_deref()
                .map(sweep_failure_from_name)
                .transpose()?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "swaps_tests.rs"]
mod tests;
