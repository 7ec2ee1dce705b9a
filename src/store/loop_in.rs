//! Loop In swaps: the contract (with its preimage and internal key) and the append-only history
//! of the progress the Loop In driver saved before acting. The layout is in
//! `migrations/0006_loop_in.sql`; the JSON of `contract_json` and `progress_json` is defined
//! here (stable: add fields, never rename).

use std::str::FromStr;

use bitcoin::{OutPoint, ScriptBuf, Txid};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError};
use crate::domain::{BlockHeight, Network, Sat, SwapHash};
use crate::swap::loop_in::{
    Funding, InternalKey, InvoiceStatus, LoopInContract, LoopInContractTerms, LoopInCosts,
    LoopInLimits, LoopInProgress, LoopInSpend, LoopInSpendPath, LoopInState,
};
use crate::swap::{HtlcOutput, KeyLocator, Preimage};

/// A Loop In as stored, without its secrets: what listings and the API see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopInRecord {
    /// The validated contract.
    pub contract: LoopInContract,
    /// The chain it runs on.
    pub network: Network,
    /// The newest saved progress.
    pub progress: LoopInProgress,
    /// The costs saved with it.
    pub costs: LoopInCosts,
    /// When the swap was created, Unix seconds.
    pub created_at_unix: i64,
    /// When the newest progress was saved, Unix seconds.
    pub updated_at_unix: i64,
    /// When the swap entered its current state, Unix seconds (see
    /// [`crate::store::SwapRecord::state_since_unix`]).
    pub state_since_unix: i64,
}

/// A Loop In with its secrets, for the driver only.
#[derive(Debug, Clone)]
pub struct StoredLoopIn {
    /// Everything but the secrets.
    pub record: LoopInRecord,
    /// The preimage (lnd holds it too, in the swap invoice).
    pub preimage: Preimage,
    /// The internal key, revealed only once the invoice is settled.
    pub internal_key: InternalKey,
}

fn corrupt(column: &str, why: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("column {column}: {why}").into())
}

const SELECT: &str = "SELECT s.*, u.progress_json, u.server_cost_sat, u.onchain_cost_sat FROM \
     loop_in_swaps s JOIN loop_in_updates u ON u.id = (SELECT MAX(id) FROM loop_in_updates \
     WHERE swap_hash = s.swap_hash)";

impl Store {
    /// Stores a new Loop In — contract, secrets and first progress — in one transaction. Call
    /// it before anything is funded.
    pub async fn create_loop_in(
        &self,
        stored: &StoredLoopIn,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        self.create_loop_in_reserved(stored, None, now_unix).await
    }

    /// Like [`Store::create_loop_in`], with the swap's budget reservation stored in the same
    /// transaction, so the swap never exists without it.
    pub async fn create_loop_in_reserved(
        &self,
        stored: &StoredLoopIn,
        reservation: Option<&crate::ledger::Entry>,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        let op = "storing a new loop in";
        let c = &stored.record.contract;
        let t = c.terms();
        let contract_json = serde_json::to_string(&ContractJson::from(t))
            .map_err(|e| StoreError::query(op)(corrupt("contract_json", e)))?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO loop_in_swaps (swap_hash, preimage, internal_key, network, amount_sat, \
             contract_json, state_code, created_at_unix, updated_at_unix) VALUES \
             (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(t.swap_hash.to_string())
        .bind(stored.preimage.expose_secret().to_vec())
        .bind(stored.internal_key.expose_secret().to_vec())
        .bind(stored.record.network.to_string())
        .bind(i64::try_from(t.amount.0).unwrap_or(i64::MAX))
        .bind(contract_json)
        .bind(i64::from(stored.record.progress.state.code()))
        .bind(now_unix)
        .bind(now_unix)
        .execute(&mut *tx.tx)
        .await
        .map_err(StoreError::query(op))?;
        append(
            &mut tx.tx,
            t.swap_hash,
            &stored.record.progress,
            stored.record.progress.costs(t.amount),
            now_unix,
        )
        .await?;
        if let Some(entry) = reservation {
            tx.insert_ledger_entry(entry).await?;
        }
        tx.commit().await
    }

    /// Appends `progress` to the history of Loop In `hash`. Durable once it returns.
    pub async fn save_loop_in_progress(
        &self,
        hash: SwapHash,
        progress: &LoopInProgress,
        costs: LoopInCosts,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        append(&mut tx.tx, hash, progress, costs, now_unix).await?;
        tx.commit().await
    }

    /// Every Loop In not in a terminal state, with its secrets, oldest first: what the engine
    /// resumes. A row that does not decode is returned apart, as (hash, why).
    pub async fn load_unfinished_loop_ins(
        &self,
    ) -> Result<(Vec<StoredLoopIn>, Vec<(String, String)>), StoreError> {
        let op = "loading unfinished loop ins";
        let open: Vec<i64> = LoopInState::ALL
            .iter()
            .filter(|s| !s.is_terminal())
            .map(|s| i64::from(s.code()))
            .collect();
        let placeholders = vec!["?"; open.len()].join(", ");
        let sql = format!(
            "{SELECT} WHERE s.state_code IN ({placeholders}) ORDER BY s.created_at_unix, \
             s.swap_hash"
        );
        // Built only from constants and `?` placeholders; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for c in open {
            q = q.bind(c);
        }
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?;
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for r in &rows {
            match stored_from_row(r) {
                Ok(s) => good.push(s),
                Err(e) => bad.push((
                    r.try_get::<String, _>("swap_hash").unwrap_or_default(),
                    e.to_string(),
                )),
            }
        }
        Ok((good, bad))
    }

    /// Every Loop In, newest first, without secrets (rows that do not decode are left out
    /// and logged).
    pub async fn list_loop_ins(&self, limit: Option<u32>) -> Result<Vec<LoopInRecord>, StoreError> {
        let op = "listing loop ins";
        let sql = format!("{SELECT} ORDER BY s.created_at_unix DESC, s.swap_hash LIMIT ?");
        // A constant query with one bound value.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(limit.map_or(-1, i64::from))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?;
        Ok(rows
            .iter()
            .filter_map(|r| match record_from_row(r) {
                Ok(rec) => Some(rec),
                Err(e) => {
                    tracing::warn!(error = %e, "a stored loop in does not decode; left out");
                    None
                }
            })
            .collect())
    }

    /// The Loop In with this hash, without secrets.
    pub async fn load_loop_in(&self, hash: SwapHash) -> Result<Option<LoopInRecord>, StoreError> {
        let op = "loading a loop in";
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE s.swap_hash = ?"
        )))
        .bind(hash.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(op))?;
        row.map(|r| record_from_row(&r).map_err(StoreError::query(op)))
            .transpose()
    }
}

/// One saved step of a Loop In.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopInUpdateRecord {
    /// The saved progress.
    pub progress: LoopInProgress,
    /// The costs it implied.
    pub costs: LoopInCosts,
    /// When it was saved, Unix seconds.
    pub updated_at_unix: i64,
}

impl Store {
    /// Every saved progress of Loop In `hash`, oldest first.
    pub async fn loop_in_history(
        &self,
        hash: SwapHash,
    ) -> Result<Vec<LoopInUpdateRecord>, StoreError> {
        let op = "reading a loop in's history";
        let rows = sqlx::query(
            "SELECT progress_json, server_cost_sat, onchain_cost_sat, updated_at_unix FROM \
             loop_in_updates WHERE swap_hash = ? ORDER BY id",
        )
        .bind(hash.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op))?;
        rows.iter()
            .map(|r| -> Result<LoopInUpdateRecord, sqlx::Error> {
                let json: String = r.try_get("progress_json")?;
                let parsed: ProgressJson =
                    serde_json::from_str(&json).map_err(|e| corrupt("progress_json", e))?;
                let onchain: i64 = r.try_get("onchain_cost_sat")?;
                Ok(LoopInUpdateRecord {
                    progress: LoopInProgress::try_from(parsed)
                        .map_err(|e| corrupt("progress_json", e))?,
                    costs: LoopInCosts {
                        server_sat: r.try_get("server_cost_sat")?,
                        onchain: Sat(
                            u64::try_from(onchain).map_err(|e| corrupt("onchain_cost_sat", e))?
                        ),
                    },
                    updated_at_unix: r.try_get("updated_at_unix")?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(StoreError::query(op))
    }
}

async fn append(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    hash: SwapHash,
    progress: &LoopInProgress,
    costs: LoopInCosts,
    now_unix: i64,
) -> Result<(), StoreError> {
    let op = "saving loop in progress";
    let json = serde_json::to_string(&ProgressJson::from(progress))
        .map_err(|e| StoreError::query(op)(corrupt("progress_json", e)))?;
    let code = i64::from(progress.state.code());
    sqlx::query(
        "INSERT INTO loop_in_updates (swap_hash, state_code, progress_json, server_cost_sat, \
         onchain_cost_sat, updated_at_unix) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(hash.to_string())
    .bind(code)
    .bind(json)
    .bind(costs.server_sat)
    .bind(i64::try_from(costs.onchain.0).unwrap_or(i64::MAX))
    .bind(now_unix)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query(op))?;
    let updated = sqlx::query(
        "UPDATE loop_in_swaps SET state_since_unix = CASE WHEN state_code = ?1 AND \
         state_since_unix IS NOT NULL THEN state_since_unix ELSE ?2 END, state_code = ?1, \
         updated_at_unix = ?2 WHERE swap_hash = ?3",
    )
    .bind(code)
    .bind(now_unix)
    .bind(hash.to_string())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query(op))?;
    if updated.rows_affected() != 1 {
        return Err(StoreError::query(op)(sqlx::Error::RowNotFound));
    }
    Ok(())
}

fn record_from_row(r: &SqliteRow) -> Result<LoopInRecord, sqlx::Error> {
    let json: String = r.try_get("contract_json")?;
    let parsed: ContractJson =
        serde_json::from_str(&json).map_err(|e| corrupt("contract_json", e))?;
    let terms = LoopInContractTerms::try_from(parsed).map_err(|e| corrupt("contract_json", e))?;
    let contract = LoopInContract::new(terms).map_err(|e| corrupt("contract_json", e))?;
    let network: String = r.try_get("network")?;
    let network = Network::from_str(&network).map_err(|e| corrupt("network", e))?;
    let json: String = r.try_get("progress_json")?;
    let parsed: ProgressJson =
        serde_json::from_str(&json).map_err(|e| corrupt("progress_json", e))?;
    let progress = LoopInProgress::try_from(parsed).map_err(|e| corrupt("progress_json", e))?;
    let onchain: i64 = r.try_get("onchain_cost_sat")?;
    Ok(LoopInRecord {
        contract,
        network,
        progress,
        costs: LoopInCosts {
            server_sat: r.try_get("server_cost_sat")?,
            onchain: Sat(u64::try_from(onchain).map_err(|e| corrupt("onchain_cost_sat", e))?),
        },
        created_at_unix: r.try_get("created_at_unix")?,
        updated_at_unix: r.try_get("updated_at_unix")?,
        state_since_unix: super::swaps::state_since(r)?,
    })
}

fn stored_from_row(r: &SqliteRow) -> Result<StoredLoopIn, sqlx::Error> {
    let record = record_from_row(r)?;
    let bytes: Vec<u8> = r.try_get("preimage")?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| corrupt("preimage", "expected 32 bytes"))?;
    let preimage = Preimage::from_bytes(bytes);
    if preimage.swap_hash() != record.contract.terms().swap_hash {
        return Err(corrupt("preimage", "does not hash to the swap hash"));
    }
    let bytes: Vec<u8> = r.try_get("internal_key")?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| corrupt("internal_key", "expected 32 bytes"))?;
    let internal_key =
        InternalKey::from_bytes(bytes).ok_or_else(|| corrupt("internal_key", "not a key"))?;
    if internal_key.public_key() != record.contract.terms().sender_internal_key {
        return Err(corrupt(
            "internal_key",
            "does not match the contract's sender internal key",
        ));
    }
    Ok(StoredLoopIn {
        record,
        preimage,
        internal_key,
    })
}

// ----- JSON layouts (stable: add fields, never rename) -----

fn hex33(field: &str, s: &str) -> Result<[u8; 33], String> {
    hex::decode(s)
        .ok()
        .and_then(|b| <[u8; 33]>::try_from(b).ok())
        .ok_or_else(|| format!("{field} is not 33 bytes of hex"))
}

#[derive(Serialize, Deserialize)]
struct ContractJson {
    swap_hash: String,
    amount_sat: u64,
    swap_fee_sat: u64,
    expiry: u32,
    initiation_height: u32,
    htlc_conf_target: u32,
    sweep_finality_confirmations: u32,
    max_swap_fee_sat: u64,
    max_miner_fee_sat: u64,
    swap_invoice: String,
    last_hop: Option<String>,
    label: String,
    initiator: String,
    protocol_version: u32,
    key_family: u32,
    key_index: u32,
    sender_key: String,
    receiver_key: String,
    sender_internal_key: String,
    receiver_internal_key: String,
    htlc_pk_script: String,
}

impl From<&LoopInContractTerms> for ContractJson {
    fn from(t: &LoopInContractTerms) -> ContractJson {
        ContractJson {
            swap_hash: t.swap_hash.to_string(),
            amount_sat: t.amount.0,
            swap_fee_sat: t.swap_fee.0,
            expiry: t.expiry.0,
            initiation_height: t.initiation_height.0,
            htlc_conf_target: t.htlc_conf_target,
            sweep_finality_confirmations: t.sweep_finality_confirmations,
            max_swap_fee_sat: t.limits.max_swap_fee.0,
            max_miner_fee_sat: t.limits.max_miner_fee.0,
            swap_invoice: t.swap_invoice.clone(),
            last_hop: t.last_hop.map(hex::encode),
            label: t.label.clone(),
            initiator: t.initiator.clone(),
            protocol_version: t.protocol_version,
            key_family: t.sender_key_locator.family,
            key_index: t.sender_key_locator.index,
            sender_key: hex::encode(t.sender_key),
            receiver_key: hex::encode(t.receiver_key),
            sender_internal_key: hex::encode(t.sender_internal_key),
            receiver_internal_key: hex::encode(t.receiver_internal_key),
            htlc_pk_script: hex::encode(t.htlc_pk_script.as_bytes()),
        }
    }
}

impl TryFrom<ContractJson> for LoopInContractTerms {
    type Error = String;
    fn try_from(j: ContractJson) -> Result<LoopInContractTerms, String> {
        Ok(LoopInContractTerms {
            swap_hash: SwapHash(
                hex::decode(&j.swap_hash)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or("swap_hash is not 32 bytes of hex")?,
            ),
            amount: Sat(j.amount_sat),
            swap_fee: Sat(j.swap_fee_sat),
            expiry: BlockHeight(j.expiry),
            initiation_height: BlockHeight(j.initiation_height),
            htlc_conf_target: j.htlc_conf_target,
            sweep_finality_confirmations: j.sweep_finality_confirmations,
            limits: LoopInLimits {
                max_swap_fee: Sat(j.max_swap_fee_sat),
                max_miner_fee: Sat(j.max_miner_fee_sat),
            },
            swap_invoice: j.swap_invoice,
            last_hop: j.last_hop.map(|h| hex33("last_hop", &h)).transpose()?,
            label: j.label,
            initiator: j.initiator,
            protocol_version: j.protocol_version,
            sender_key_locator: KeyLocator {
                family: j.key_family,
                index: j.key_index,
            },
            sender_key: hex33("sender_key", &j.sender_key)?,
            receiver_key: hex33("receiver_key", &j.receiver_key)?,
            sender_internal_key: hex33("sender_internal_key", &j.sender_internal_key)?,
            receiver_internal_key: hex33("receiver_internal_key", &j.receiver_internal_key)?,
            htlc_pk_script: ScriptBuf::from_bytes(
                hex::decode(&j.htlc_pk_script).map_err(|e| format!("htlc_pk_script: {e}"))?,
            ),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct HtlcJson {
    outpoint: String,
    value_sat: u64,
    conf_height: Option<u32>,
}

#[derive(Serialize, Deserialize)]
struct SpendJson {
    txid: String,
    height: u32,
    confirmations: u32,
    /// "server_claim" or "timeout".
    path: String,
    swept_value_sat: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct ProgressJson {
    state_code: u16,
    best_height: Option<u32>,
    funding_txid: Option<String>,
    funding_fee_sat: Option<u64>,
    htlc: Option<HtlcJson>,
    /// "open", "settled" or "canceled".
    invoice: String,
    amount_paid_sat: Option<u64>,
    spend: Option<SpendJson>,
    key_push_acked: bool,
    sweeps_requested: u32,
    sweep_failures: u32,
}

impl From<&LoopInProgress> for ProgressJson {
    fn from(p: &LoopInProgress) -> ProgressJson {
        let (invoice, amount_paid_sat) = match p.invoice {
            InvoiceStatus::Open => ("open", None),
            InvoiceStatus::Settled { amount_paid } => ("settled", Some(amount_paid.0)),
            InvoiceStatus::Canceled => ("canceled", None),
        };
        ProgressJson {
            state_code: p.state.code(),
            best_height: p.best_height.map(|h| h.0),
            funding_txid: p.funding.map(|f| f.txid.to_string()),
            funding_fee_sat: p.funding.map(|f| f.fee.0),
            htlc: p.htlc.map(|h| HtlcJson {
                outpoint: h.outpoint.to_string(),
                value_sat: h.value.0,
                conf_height: h.conf_height.map(|c| c.0),
            }),
            invoice: invoice.to_owned(),
            amount_paid_sat,
            spend: p.spend.map(|s| {
                let (path, swept) = match s.path {
                    LoopInSpendPath::ServerClaim => ("server_claim", None),
                    LoopInSpendPath::Timeout { swept_value } => ("timeout", Some(swept_value.0)),
                };
                SpendJson {
                    txid: s.txid.to_string(),
                    height: s.height.0,
                    confirmations: s.confirmations,
                    path: path.to_owned(),
                    swept_value_sat: swept,
                }
            }),
            key_push_acked: p.key_push_acked,
            sweeps_requested: p.sweeps_requested,
            sweep_failures: p.sweep_failures,
        }
    }
}

impl TryFrom<ProgressJson> for LoopInProgress {
    type Error = String;
    fn try_from(j: ProgressJson) -> Result<LoopInProgress, String> {
        let funding = match (j.funding_txid, j.funding_fee_sat) {
            (Some(txid), Some(fee)) => Some(Funding {
                txid: Txid::from_str(&txid).map_err(|e| format!("funding_txid: {e}"))?,
                fee: Sat(fee),
            }),
            (None, None) => None,
            _ => return Err("funding_txid and funding_fee_sat go together".to_owned()),
        };
        let invoice = match (j.invoice.as_str(), j.amount_paid_sat) {
            ("open", _) => InvoiceStatus::Open,
            ("settled", Some(paid)) => InvoiceStatus::Settled {
                amount_paid: Sat(paid),
            },
            ("canceled", _) => InvoiceStatus::Canceled,
            (other, _) => return Err(format!("invoice status {other:?} is not known")),
        };
        Ok(LoopInProgress {
            state: LoopInState::from_code(j.state_code).map_err(|e| e.to_string())?,
            best_height: j.best_height.map(BlockHeight),
            funding,
            htlc: j
                .htlc
                .map(|h| -> Result<HtlcOutput, String> {
                    Ok(HtlcOutput {
                        outpoint: OutPoint::from_str(&h.outpoint)
                            .map_err(|e| format!("htlc outpoint: {e}"))?,
                        value: Sat(h.value_sat),
                        conf_height: h.conf_height.map(BlockHeight),
                    })
                })
                .transpose()?,
            invoice,
            spend: j
                .spend
                .map(|s| -> Result<LoopInSpend, String> {
                    Ok(LoopInSpend {
                        txid: Txid::from_str(&s.txid).map_err(|e| format!("spend txid: {e}"))?,
                        height: BlockHeight(s.height),
                        confirmations: s.confirmations,
                        path: match (s.path.as_str(), s.swept_value_sat) {
                            ("server_claim", _) => LoopInSpendPath::ServerClaim,
                            ("timeout", Some(v)) => LoopInSpendPath::Timeout {
                                swept_value: Sat(v),
                            },
                            (other, _) => return Err(format!("spend path {other:?} is not known")),
                        },
                    })
                })
                .transpose()?,
            key_push_acked: j.key_push_acked,
            sweeps_requested: j.sweeps_requested,
            sweep_failures: j.sweep_failures,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use bitcoin::hashes::Hash as _;

    use super::*;
    use crate::swap::loop_in::diagram::sample_contract;

    #[tokio::test]
    async fn a_loop_in_round_trips_with_its_history_and_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("sluice.db")).await.unwrap();
        let internal_key = InternalKey::from_bytes([7; 32]).unwrap();
        let preimage = Preimage::from_bytes([9; 32]);
        let mut terms = sample_contract().unwrap().terms().clone();
        terms.swap_hash = preimage.swap_hash();
        terms.sender_internal_key = internal_key.public_key();
        terms.last_hop = Some([3; 33]);
        let contract = LoopInContract::new(terms).unwrap();
        let stored = StoredLoopIn {
            record: LoopInRecord {
                contract: contract.clone(),
                network: Network::Regtest,
                progress: LoopInProgress::new(),
                costs: LoopInCosts::default(),
                created_at_unix: 100,
                updated_at_unix: 100,
                state_since_unix: 100,
            },
            preimage,
            internal_key,
        };
        store.create_loop_in(&stored, 100).await.unwrap();
        let mut p = LoopInProgress::new();
        p.state = LoopInState::TimeoutSweeping;
        p.best_height = Some(BlockHeight(1_100));
        p.funding = Some(Funding {
            txid: Txid::from_byte_array([1; 32]),
            fee: Sat(700),
        });
        p.htlc = Some(HtlcOutput {
            outpoint: OutPoint {
                txid: Txid::from_byte_array([1; 32]),
                vout: 1,
            },
            value: Sat(100_000),
            conf_height: Some(BlockHeight(1_001)),
        });
        p.spend = Some(LoopInSpend {
            txid: Txid::from_byte_array([2; 32]),
            height: BlockHeight(1_101),
            confirmations: 1,
            path: LoopInSpendPath::Timeout {
                swept_value: Sat(99_000),
            },
        });
        p.invoice = InvoiceStatus::Canceled;
        p.sweeps_requested = 2;
        store
            .save_loop_in_progress(contract.terms().swap_hash, &p, p.costs(Sat(100_000)), 200)
            .await
            .unwrap();
        let (open, bad) = store.load_unfinished_loop_ins().await.unwrap();
        assert!(bad.is_empty());
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].record.contract, contract);
        assert_eq!(open[0].record.progress, p);
        assert_eq!(open[0].preimage, Preimage::from_bytes([9; 32]));
        assert_eq!(open[0].internal_key.expose_secret(), &[7; 32]);
        assert_eq!(open[0].record.updated_at_unix, 200);
        assert_eq!(open[0].record.state_since_unix, 200);
        // A step in the same state (a block while waiting) moves the update time only.
        p.best_height = Some(BlockHeight(1_101));
        store
            .save_loop_in_progress(contract.terms().swap_hash, &p, p.costs(Sat(100_000)), 250)
            .await
            .unwrap();
        let (open, _) = store.load_unfinished_loop_ins().await.unwrap();
        assert_eq!(open[0].record.updated_at_unix, 250);
        assert_eq!(open[0].record.state_since_unix, 200);
        // Terminal swaps are not resumed, but listed.
        p.state = LoopInState::FailedTimeout;
        store
            .save_loop_in_progress(contract.terms().swap_hash, &p, p.costs(Sat(100_000)), 300)
            .await
            .unwrap();
        assert!(store.load_unfinished_loop_ins().await.unwrap().0.is_empty());
        let history = store
            .loop_in_history(contract.terms().swap_hash)
            .await
            .unwrap();
        assert_eq!(
            history.iter().map(|h| h.progress.state).collect::<Vec<_>>(),
            [
                LoopInState::Initiated,
                LoopInState::TimeoutSweeping,
                LoopInState::TimeoutSweeping,
                LoopInState::FailedTimeout
            ]
        );
        assert_eq!(history[3].costs.onchain, Sat(1_700));
        let listed = store.list_loop_ins(None).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].costs.onchain, Sat(1_700));
        assert_eq!(
            store
                .load_loop_in(contract.terms().swap_hash)
                .await
                .unwrap()
                .map(|r| r.progress.state),
            Some(LoopInState::FailedTimeout)
        );
    }
}
