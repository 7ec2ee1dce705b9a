//! Rows of the fee ledger: the append-only entries `ledger::Ledger` is folded from.
//!
//! A reservation is written in the same transaction as its swap's contract
//! ([`StoreTx::insert_ledger_entry`]), so a swap never exists without its reservation; spends
//! and releases are appended afterwards ([`Store::append_ledger_entry`]). Recording the same
//! `(swap, id)` again is ignored, which makes supervision after a crash idempotent.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::{Store, StoreError, StoreTx};
use crate::domain::{Sat, SwapHash};
use crate::ledger::{Entry, EntryId, EntryKind, SpendCategory};

const INSERT: &str = "INSERT OR IGNORE INTO ledger_entries (swap_hash, entry_id, at_unix, kind, \
     rule, expected_sat, worst_case_sat, amount_sat, category) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

fn sat_i64(s: Sat) -> i64 {
    i64::try_from(s.0).unwrap_or(i64::MAX)
}

async fn insert(tx: &mut Transaction<'static, Sqlite>, entry: &Entry) -> Result<bool, StoreError> {
    let (kind, rule, expected, worst, amount, category) = match &entry.kind {
        EntryKind::Reserve {
            rule,
            expected,
            worst_case,
        } => (
            "reserve",
            Some(rule.clone()),
            Some(sat_i64(*expected)),
            Some(sat_i64(*worst_case)),
            None,
            None,
        ),
        EntryKind::Spend { amount, category } => (
            "spend",
            None,
            None,
            None,
            Some(sat_i64(*amount)),
            Some(category.as_str()),
        ),
        EntryKind::Release => ("release", None, None, None, None, None),
    };
    let done = sqlx::query(INSERT)
        .bind(entry.swap.to_string())
        .bind(i64::from(entry.id.0))
        .bind(entry.at.timestamp())
        .bind(kind)
        .bind(rule)
        .bind(expected)
        .bind(worst)
        .bind(amount)
        .bind(category)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("recording a ledger entry"))?;
    Ok(done.rows_affected() == 1)
}

impl StoreTx {
    /// Writes a ledger entry (typically a swap's reservation) as part of this transaction.
    /// Returns whether it was new; an entry with the same `(swap, id)` is left as it was.
    pub async fn insert_ledger_entry(&mut self, entry: &Entry) -> Result<bool, StoreError> {
        insert(self.inner(), entry).await
    }
}

impl Store {
    /// Appends a ledger entry on its own. Returns whether it was new; recording the same
    /// `(swap, id)` twice is harmless.
    pub async fn append_ledger_entry(&self, entry: &Entry) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let new = insert(tx.inner(), entry).await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Every ledger entry in recorded order, for `Ledger::replay` at start.
    pub async fn ledger_entries(&self) -> Result<Vec<Entry>, StoreError> {
        let rows = sqlx::query("SELECT * FROM ledger_entries ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("reading the ledger"))?;
        rows.iter()
            .map(entry_from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::query("decoding the ledger"))
    }
}

fn corrupt(column: &str, why: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("column {column}: {why}").into())
}

fn get_sat(r: &SqliteRow, column: &str) -> Result<Sat, sqlx::Error> {
    let v: Option<i64> = r.try_get(column)?;
    let v = v.ok_or_else(|| corrupt(column, "missing"))?;
    u64::try_from(v).map(Sat).map_err(|e| corrupt(column, e))
}

pub(super) fn parse_hash(column: &str, s: &str) -> Result<SwapHash, sqlx::Error> {
    let bytes = hex::decode(s).map_err(|e| corrupt(column, e))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| corrupt(column, "expected 32 bytes"))?;
    Ok(SwapHash(bytes))
}

fn entry_from_row(r: &SqliteRow) -> Result<Entry, sqlx::Error> {
    let swap = parse_hash("swap_hash", &r.try_get::<String, _>("swap_hash")?)?;
    let id: i64 = r.try_get("entry_id")?;
    let id = EntryId(u32::try_from(id).map_err(|e| corrupt("entry_id", e))?);
    let at_unix: i64 = r.try_get("at_unix")?;
    let at: DateTime<Utc> =
        DateTime::from_timestamp(at_unix, 0).ok_or_else(|| corrupt("at_unix", "out of range"))?;
    let kind: String = r.try_get("kind")?;
    let kind = match kind.as_str() {
        "reserve" => EntryKind::Reserve {
            rule: r
                .try_get::<Option<String>, _>("rule")?
                .ok_or_else(|| corrupt("rule", "missing"))?,
            expected: get_sat(r, "expected_sat")?,
            worst_case: get_sat(r, "worst_case_sat")?,
        },
        "spend" => {
            let cat: Option<String> = r.try_get("category")?;
            let cat = cat.ok_or_else(|| corrupt("category", "missing"))?;
            let category = SpendCategory::ALL
                .into_iter()
                .find(|c| c.as_str() == cat)
                .ok_or_else(|| corrupt("category", format!("unknown `{cat}`")))?;
            EntryKind::Spend {
                amount: get_sat(r, "amount_sat")?,
                category,
            }
        }
        "release" => EntryKind::Release,
        other => return Err(corrupt("kind", format!("unknown `{other}`"))),
    };
    Ok(Entry { swap, id, at, kind })
}
