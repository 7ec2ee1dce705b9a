//! Autoloop's persisted state: the decision journal (bounded), the mode and per-channel
//! backoff. The journal keeps every target's decision of the newest passes so the operator
//! can ask later why a channel was or was not swapped.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::ledger::parse_hash;
use super::{Store, StoreError};
use crate::domain::{ChanId, Direction, Ppm, Sat, SwapHash};
use crate::policy::BackoffState;

/// One target's decision in one pass, as journalled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// The pass it was made in; passes are numbered upwards.
    pub pass_id: i64,
    /// When the pass ran.
    pub at: DateTime<Utc>,
    /// The target, as `policy::Target` displays it (`800000x1x0`, `peer:02ab..`, `node`).
    pub target: String,
    /// The rule that decided, if any took the target.
    pub rule: Option<String>,
    /// The reason's stable name (`policy::Reason::name`).
    pub reason: String,
    /// The reason in words.
    pub detail: String,
    /// The target's inbound share when decided.
    pub inbound_share: Ppm,
    /// The proposed swap amount, when a swap was proposed.
    pub amount: Option<Sat>,
    /// The proposed swap's direction, when a swap was proposed.
    pub direction: Option<Direction>,
    /// The swap dispatched for it, when one was.
    pub swap: Option<SwapHash>,
}

/// One pass in a line: the journal keeps only decisions that changed or acted, this keeps
/// every pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassSummary {
    /// The pass.
    pub pass_id: i64,
    /// When it ran.
    pub at: DateTime<Utc>,
    /// The autoloop mode it ran in.
    pub mode: String,
    /// How many targets it decided about.
    pub targets: u64,
    /// How many targets got each reason, by reason name.
    pub counts: BTreeMap<String, u64>,
}

/// Which journal rows to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalFilter {
    /// Only this target (exact display form).
    pub target: Option<String>,
    /// Only decisions at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only this reason (its stable name).
    pub reason: Option<String>,
    /// At most this many rows, newest first.
    pub limit: Option<u32>,
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn corrupt(column: &str, why: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("column {column}: {why}").into())
}

fn record_from_row(r: &SqliteRow) -> Result<JournalRecord, sqlx::Error> {
    let at_unix: i64 = r.try_get("at_unix")?;
    let inbound: i64 = r.try_get("inbound_ppm")?;
    let amount: Option<i64> = r.try_get("amount_sat")?;
    let swap: Option<String> = r.try_get("swap_hash")?;
    let direction: Option<String> = r.try_get("direction")?;
    Ok(JournalRecord {
        pass_id: r.try_get("pass_id")?,
        at: DateTime::from_timestamp(at_unix, 0)
            .ok_or_else(|| corrupt("at_unix", "out of range"))?,
        target: r.try_get("target")?,
        rule: r.try_get("rule")?,
        reason: r.try_get("reason")?,
        detail: r.try_get("detail")?,
        inbound_share: Ppm(u64::try_from(inbound).map_err(|e| corrupt("inbound_ppm", e))?),
        amount: amount
            .map(|a| u64::try_from(a).map(Sat))
            .transpose()
            .map_err(|e| corrupt("amount_sat", e))?,
        swap: swap.map(|s| parse_hash("swap_hash", &s)).transpose()?,
        direction: match direction.as_deref() {
            None => None,
            Some("out") => Some(Direction::Out),
            Some("in") => Some(Direction::In),
            Some(other) => {
                return Err(corrupt("direction", format!("unknown direction `{other}`")));
            }
        },
    })
}

impl Store {
    /// Journals one pass: its summary and the decisions worth a line, and prunes what is
    /// older than `keep_since`, in one transaction.
    pub async fn record_pass(
        &self,
        summary: &PassSummary,
        records: &[JournalRecord],
        keep_since: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let op = "journalling a pass";
        let mut tx = self.begin().await?;
        let counts = summary
            .counts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        sqlx::query(
            "INSERT OR REPLACE INTO autoloop_passes (pass_id, at_unix, mode, targets, counts) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(summary.pass_id)
        .bind(summary.at.timestamp())
        .bind(&summary.mode)
        .bind(i64_of(summary.targets))
        .bind(counts)
        .execute(&mut **tx.inner())
        .await
        .map_err(StoreError::query(op))?;
        for rec in records {
            sqlx::query(
                "INSERT INTO decision_journal (pass_id, at_unix, target, rule, reason, detail, \
                 inbound_ppm, amount_sat, swap_hash, direction) VALUES \
                 (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(rec.pass_id)
            .bind(rec.at.timestamp())
            .bind(&rec.target)
            .bind(&rec.rule)
            .bind(&rec.reason)
            .bind(&rec.detail)
            .bind(i64_of(rec.inbound_share.0))
            .bind(rec.amount.map(|a| i64_of(a.0)))
            .bind(rec.swap.map(|h| h.to_string()))
            .bind(rec.direction.map(Direction::as_str))
            .execute(&mut **tx.inner())
            .await
            .map_err(StoreError::query(op))?;
        }
        for q in [
            "DELETE FROM decision_journal WHERE at_unix < ?",
            "DELETE FROM autoloop_passes WHERE at_unix < ?",
        ] {
            sqlx::query(q)
                .bind(keep_since.timestamp())
                .execute(&mut **tx.inner())
                .await
                .map_err(StoreError::query(op))?;
        }
        tx.commit().await
    }

    /// The newest pass summaries, newest first, at most `limit`.
    pub async fn pass_summaries(&self, limit: u32) -> Result<Vec<PassSummary>, StoreError> {
        let rows = sqlx::query("SELECT * FROM autoloop_passes ORDER BY pass_id DESC LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("reading pass summaries"))?;
        rows.iter()
            .map(|r| {
                let at_unix: i64 = r.try_get("at_unix")?;
                let targets: i64 = r.try_get("targets")?;
                let counts: String = r.try_get("counts")?;
                Ok(PassSummary {
                    pass_id: r.try_get("pass_id")?,
                    at: DateTime::from_timestamp(at_unix, 0)
                        .ok_or_else(|| corrupt("at_unix", "out of range"))?,
                    mode: r.try_get("mode")?,
                    targets: u64::try_from(targets).map_err(|e| corrupt("targets", e))?,
                    counts: counts
                        .split(',')
                        .filter_map(|kv| {
                            let (k, v) = kv.split_once('=')?;
                            Some((k.to_owned(), v.parse().ok()?))
                        })
                        .collect(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query("decoding pass summaries"))
    }

    /// The highest pass id journalled, 0 when none.
    pub async fn last_pass_id(&self) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(m) FROM (SELECT MAX(pass_id) AS m FROM decision_journal \
             UNION ALL SELECT MAX(pass_id) FROM autoloop_passes)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query("reading the last pass id"))?;
        Ok(v.unwrap_or(0))
    }

    /// Journal rows matching `filter`, newest first.
    pub async fn journal(&self, filter: &JournalFilter) -> Result<Vec<JournalRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM decision_journal WHERE (?1 IS NULL OR target = ?1) AND \
             (?2 IS NULL OR at_unix >= ?2) AND (?4 IS NULL OR reason = ?4) \
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(&filter.target)
        .bind(filter.since.map(|t| t.timestamp()))
        .bind(filter.limit.map_or(-1, i64::from))
        .bind(&filter.reason)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading the journal"))?;
        rows.iter()
            .map(record_from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::query("decoding the journal"))
    }

    /// A persisted autoloop setting (e.g. `mode`), `None` when never set.
    pub async fn autoloop_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM autoloop_settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("reading an autoloop setting"))
    }

    /// Persists an autoloop setting.
    pub async fn set_autoloop_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO autoloop_settings (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("saving an autoloop setting"))?;
        Ok(())
    }

    /// Records the channels an autoloop swap was made for (its target's channels), for a
    /// swap that may pay through any channel. Recording the same swap again replaces them.
    pub async fn set_swap_channels(
        &self,
        swap: SwapHash,
        channels: &[ChanId],
    ) -> Result<(), StoreError> {
        let text = channels
            .iter()
            .map(|c| c.0.to_string())
            .collect::<Vec<_>>()
            .join(",");
        sqlx::query(
            "INSERT INTO autoloop_swap_channels (swap_hash, channels) VALUES (?, ?) \
             ON CONFLICT (swap_hash) DO UPDATE SET channels = excluded.channels",
        )
        .bind(swap.to_string())
        .bind(text)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("saving an autoloop swap's channels"))?;
        Ok(())
    }

    /// The channels recorded for an autoloop swap ([`Store::set_swap_channels`]); empty when
    /// none were.
    pub async fn swap_channels(&self, swap: SwapHash) -> Result<Vec<ChanId>, StoreError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT channels FROM autoloop_swap_channels WHERE swap_hash = ?")
                .bind(swap.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::query("reading an autoloop swap's channels"))?;
        Ok(text
            .unwrap_or_default()
            .split(',')
            .filter_map(|c| c.parse().ok().map(ChanId))
            .collect())
    }

    /// Every channel's failure history.
    pub async fn backoffs(&self) -> Result<BTreeMap<ChanId, BackoffState>, StoreError> {
        let rows = sqlx::query("SELECT * FROM autoloop_backoff")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("reading backoff state"))?;
        let decode = |r: &SqliteRow| -> Result<(ChanId, BackoffState), sqlx::Error> {
            let chan: String = r.try_get("chan_id")?;
            let at: i64 = r.try_get("last_failure_unix")?;
            let n: i64 = r.try_get("consecutive_failures")?;
            Ok((
                chan.parse().map_err(|e| corrupt("chan_id", e))?,
                BackoffState {
                    last_failure: DateTime::from_timestamp(at, 0)
                        .ok_or_else(|| corrupt("last_failure_unix", "out of range"))?,
                    consecutive_failures: u32::try_from(n)
                        .map_err(|e| corrupt("consecutive_failures", e))?,
                },
            ))
        };
        rows.iter()
            .map(decode)
            .collect::<Result<_, _>>()
            .map_err(StoreError::query("decoding backoff state"))
    }

    /// Records a channel's failure history; `None` clears it (after a success).
    pub async fn set_backoff(
        &self,
        chan: ChanId,
        state: Option<BackoffState>,
    ) -> Result<(), StoreError> {
        let q = match state {
            Some(s) => sqlx::query(
                "INSERT INTO autoloop_backoff (chan_id, last_failure_unix, consecutive_failures) \
                 VALUES (?, ?, ?) ON CONFLICT (chan_id) DO UPDATE SET last_failure_unix = \
                 excluded.last_failure_unix, consecutive_failures = excluded.consecutive_failures",
            )
            .bind(chan.0.to_string())
            .bind(s.last_failure.timestamp())
            .bind(i64::from(s.consecutive_failures)),
            None => sqlx::query("DELETE FROM autoloop_backoff WHERE chan_id = ?")
                .bind(chan.0.to_string()),
        };
        q.execute(&self.pool)
            .await
            .map_err(StoreError::query("saving backoff state"))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ledger::{Entry, EntryId, EntryKind, SpendCategory};

    async fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).await.unwrap();
        (dir, store)
    }

    fn rec(pass_id: i64, target: &str, reason: &str) -> JournalRecord {
        JournalRecord {
            pass_id,
            at: DateTime::from_timestamp(1_700_000_000 + pass_id, 0).unwrap(),
            target: target.into(),
            rule: Some("r".into()),
            reason: reason.into(),
            detail: "why".into(),
            inbound_share: Ppm(120_000),
            amount: Some(Sat(300_000)),
            direction: Some(if pass_id % 2 == 0 {
                Direction::In
            } else {
                Direction::Out
            }),
            swap: Some(SwapHash([7; 32])),
        }
    }

    fn summary(pass_id: i64) -> PassSummary {
        PassSummary {
            pass_id,
            at: DateTime::from_timestamp(1_700_000_000 + pass_id, 0).unwrap(),
            mode: "on".into(),
            targets: 2,
            counts: [("ok".to_owned(), 1), ("swap".to_owned(), 1)].into(),
        }
    }

    #[tokio::test]
    async fn journal_is_bounded_by_time_and_filtered() {
        let (_d, store) = open().await;
        for pass in 1..=5 {
            store
                .record_pass(
                    &summary(pass),
                    &[rec(pass, "1x1x1", "ok"), rec(pass, "2x2x2", "swap")],
                    DateTime::from_timestamp(1_700_000_000 + pass - 2, 0).unwrap(),
                )
                .await
                .unwrap();
        }
        let all = store.journal(&JournalFilter::default()).await.unwrap();
        assert_eq!(all.len(), 6, "three passes of two targets are kept");
        assert_eq!(all[0].pass_id, 5);
        assert_eq!(store.last_pass_id().await.unwrap(), 5);
        let passes = store.pass_summaries(10).await.unwrap();
        assert_eq!(passes.len(), 3);
        assert_eq!(passes[0], summary(5));
        let one = store
            .journal(&JournalFilter {
                target: Some("2x2x2".into()),
                since: Some(DateTime::from_timestamp(1_700_000_004, 0).unwrap()),
                ..JournalFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(one.len(), 2);
        assert_eq!(one[0], rec(5, "2x2x2", "swap"));
        let swaps = store
            .journal(&JournalFilter {
                reason: Some("swap".into()),
                ..JournalFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(swaps.len(), 3);
        assert!(swaps.iter().all(|r| r.reason == "swap"));
    }

    #[tokio::test]
    async fn ledger_entries_round_trip_and_replays_are_ignored() {
        let (_d, store) = open().await;
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let swap = SwapHash([1; 32]);
        let entries = [
            Entry {
                swap,
                id: EntryId::RESERVE,
                at,
                kind: EntryKind::Reserve {
                    rule: "r".into(),
                    expected: Sat(10),
                    worst_case: Sat(20),
                },
            },
            Entry {
                swap,
                id: EntryId(1),
                at,
                kind: EntryKind::Spend {
                    amount: Sat(5),
                    category: SpendCategory::Miner,
                },
            },
            Entry {
                swap,
                id: EntryId::RELEASE,
                at,
                kind: EntryKind::Release,
            },
        ];
        let mut tx = store.begin().await.unwrap();
        assert!(tx.insert_ledger_entry(&entries[0]).await.unwrap());
        tx.commit().await.unwrap();
        assert!(store.append_ledger_entry(&entries[1]).await.unwrap());
        assert!(!store.append_ledger_entry(&entries[1]).await.unwrap());
        assert!(store.append_ledger_entry(&entries[2]).await.unwrap());
        assert_eq!(store.ledger_entries().await.unwrap(), entries.to_vec());
    }

    #[tokio::test]
    async fn mode_and_backoff_persist() {
        let (_d, store) = open().await;
        assert_eq!(store.autoloop_setting("mode").await.unwrap(), None);
        store.set_autoloop_setting("mode", "dry-run").await.unwrap();
        store.set_autoloop_setting("mode", "on").await.unwrap();
        assert_eq!(
            store.autoloop_setting("mode").await.unwrap().as_deref(),
            Some("on")
        );
        let chan = ChanId::from_parts(800_000, 1, 0);
        let state = BackoffState {
            last_failure: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            consecutive_failures: 2,
        };
        store.set_backoff(chan, Some(state)).await.unwrap();
        assert_eq!(store.backoffs().await.unwrap().get(&chan), Some(&state));
        store.set_backoff(chan, None).await.unwrap();
        assert!(store.backoffs().await.unwrap().is_empty());
    }
}
