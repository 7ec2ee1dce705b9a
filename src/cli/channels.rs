//! `sluice channels`: lnd's open channels as the daemon sees them, as a table or `--json`.

use serde::Serialize;

use super::CliError;
use super::client::Target;
use super::output::Format;
use crate::proto::sluice as pb;

/// One channel, as printed. Every key is always present in `--json` (null when absent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelRow {
    /// Short channel id, BLOCKxTXxOUT.
    pub chan_id: String,
    /// lnd's numeric channel id.
    pub chan_id_numeric: u64,
    /// The funding outpoint.
    pub channel_point: String,
    /// The peer's alias, if lnd knows it.
    pub peer_alias: Option<String>,
    /// The peer's identity key, hex.
    pub peer_pubkey: String,
    /// Channel capacity.
    pub capacity_sat: u64,
    /// Our balance.
    pub local_balance_sat: u64,
    /// The peer's balance.
    pub remote_balance_sat: u64,
    /// remote / (local + remote), parts per million.
    pub inbound_share_ppm: u64,
    /// The same share in percent.
    pub inbound_share_percent: f64,
    /// Whether the channel is usable.
    pub active: bool,
    /// Whether the channel is unannounced.
    pub private: bool,
    /// HTLCs in flight.
    pub pending_htlcs: u32,
    /// Their summed amount.
    pub pending_htlc_amount_sat: u64,
}

/// `channels`' answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Channels {
    /// The channels, ordered by channel id.
    pub channels: Vec<ChannelRow>,
}

impl From<pb::Channel> for ChannelRow {
    fn from(c: pb::Channel) -> ChannelRow {
        ChannelRow {
            chan_id: c.chan_id,
            chan_id_numeric: c.chan_id_numeric,
            channel_point: c.channel_point,
            peer_alias: (!c.peer_alias.is_empty()).then_some(c.peer_alias),
            peer_pubkey: c.peer_pubkey,
            capacity_sat: c.capacity_sat,
            local_balance_sat: c.local_balance_sat,
            remote_balance_sat: c.remote_balance_sat,
            inbound_share_ppm: c.inbound_share_ppm,
            inbound_share_percent: c.inbound_share_percent,
            active: c.active,
            private: c.private,
            pending_htlcs: c.pending_htlcs,
            pending_htlc_amount_sat: c.pending_htlc_amount_sat,
        }
    }
}

/// Column headers and whether each is right-aligned (numbers are).
const COLUMNS: [(&str, bool); 9] = [
    ("CHAN ID", false),
    ("ALIAS", false),
    ("PEER", false),
    ("CAPACITY", true),
    ("LOCAL", true),
    ("REMOTE", true),
    ("INBOUND", true),
    ("ACTIVE", false),
    ("HTLCS", true),
];

impl Channels {
    /// The human form: one aligned row per channel under a header, or a sentence when
    /// there are none.
    pub fn table(&self) -> String {
        if self.channels.is_empty() {
            return "no open channels\n".to_owned();
        }
        let rows: Vec<[String; 9]> = self
            .channels
            .iter()
            .map(|c| {
                [
                    c.chan_id.clone(),
                    c.peer_alias.clone().unwrap_or_else(|| "-".to_owned()),
                    c.peer_pubkey.clone(),
                    c.capacity_sat.to_string(),
                    c.local_balance_sat.to_string(),
                    c.remote_balance_sat.to_string(),
                    format!("{:.1}%", c.inbound_share_percent),
                    if c.active { "yes" } else { "no" }.to_owned(),
                    if c.pending_htlcs == 0 {
                        "0".to_owned()
                    } else {
                        format!("{} ({} sat)", c.pending_htlcs, c.pending_htlc_amount_sat)
                    },
                ]
            })
            .collect();
        let mut widths = COLUMNS.map(|(h, _)| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 9]| {
            let parts: Vec<String> = cells
                .iter()
                .zip(COLUMNS)
                .zip(widths)
                .map(|((cell, (_, right)), w)| {
                    if right {
                        format!("{cell:>w$}")
                    } else {
                        format!("{cell:<w$}")
                    }
                })
                .collect();
            format!("{}\n", parts.join("  ").trim_end())
        };
        let mut out = line(COLUMNS.map(|(h, _)| h));
        for row in &rows {
            out.push_str(&line(row.each_ref().map(String::as_str)));
        }
        out
    }
}

/// The daemon answers `UNAVAILABLE` itself when lnd is not connected; that must not read as
/// "cannot reach sluiced", so its own message is shown.
fn lnd_unavailable(target: &Target, status: tonic::Status) -> CliError {
    if status.code() == tonic::Code::Unavailable && status.message().starts_with("lnd ") {
        CliError::Rpc {
            addr: target.addr.clone(),
            code: status.code(),
            message: status.message().to_owned(),
        }
    } else {
        target.call_error(status, "list channels")
    }
}

/// `channels`: lnd's open channels with balances and inbound share.
pub async fn channels(target: &Target, format: Format) -> Result<String, CliError> {
    let mut client = target.connect().await?;
    let reply = client
        .list_channels(pb::ListChannelsRequest {})
        .await
        .map_err(|s| lnd_unavailable(target, s))?;
    let answer = Channels {
        channels: reply
            .into_inner()
            .channels
            .into_iter()
            .map(ChannelRow::from)
            .collect(),
    };
    match format {
        Format::Json => Ok(serde_json::to_string_pretty(&answer)? + "\n"),
        Format::Human => Ok(answer.table()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn row(id: &str, alias: Option<&str>, local: u64, remote: u64, htlcs: u32) -> ChannelRow {
        ChannelRow {
            chan_id: id.into(),
            chan_id_numeric: 1,
            channel_point: "ab:0".into(),
            peer_alias: alias.map(str::to_owned),
            peer_pubkey: "02aa".into(),
            capacity_sat: local + remote,
            local_balance_sat: local,
            remote_balance_sat: remote,
            inbound_share_ppm: remote * 1_000_000 / (local + remote),
            inbound_share_percent: remote as f64 * 100.0 / (local + remote) as f64,
            active: htlcs == 0,
            private: false,
            pending_htlcs: htlcs,
            pending_htlc_amount_sat: 5_000 * u64::from(htlcs),
        }
    }

    #[test]
    fn the_table_aligns_columns_and_shows_every_field() {
        let c = Channels {
            channels: vec![
                row("800000x1x0", Some("bob"), 900_000, 100_000, 0),
                row("812345x1234x1", None, 250_000, 750_000, 2),
            ],
        };
        let text = c.table();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("CHAN ID"), "{text}");
        for needle in [
            "bob",
            "02aa",
            "900000",
            "100000",
            "10.0%",
            "75.0%",
            "yes",
            "no",
            "2 (10000 sat)",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        // Right-aligned numbers end in the same column; left-aligned ids start together.
        let end_of = |line: &str, s: &str| line.find(s).unwrap() + s.len();
        assert_eq!(end_of(lines[1], "900000"), end_of(lines[2], "250000"));
        assert_eq!(end_of(lines[0], "LOCAL"), end_of(lines[1], "900000"));
        assert_eq!(lines[1].find("bob"), lines[2].find('-'));
        assert_eq!(Channels { channels: vec![] }.table(), "no open channels\n");
    }

    #[tokio::test]
    async fn without_lnd_the_daemons_reason_is_shown_not_an_unreachable_daemon() {
        let h = crate::api::testing::start().await;
        h.node.send_modify(|n| {
            n.connected = false;
            n.error = Some("lnd at 127.0.0.1:1 is unreachable: connection refused".into());
        });
        let target = Target {
            addr: h.addr.clone(),
            tls_cert: h.data_dir.path().join("tls.cert"),
            credential: h.data_dir.path().join(crate::api::auth::READONLY_FILE),
        };
        let err = channels(&target, Format::Human).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("lnd is unavailable") && msg.contains("connection refused"),
            "{msg}"
        );
        assert!(!msg.contains("is it running"), "{msg}");
        h.shutdown.cancel();
    }

    #[test]
    fn json_keeps_every_key_with_null_for_a_missing_alias() {
        let c = Channels {
            channels: vec![row("1x1x1", None, 1, 1, 0)],
        };
        let v: serde_json::Value = serde_json::to_value(&c).unwrap();
        let ch = &v["channels"][0];
        assert!(ch["peer_alias"].is_null());
        for key in [
            "chan_id",
            "peer_pubkey",
            "capacity_sat",
            "local_balance_sat",
            "remote_balance_sat",
            "inbound_share_ppm",
            "inbound_share_percent",
            "active",
            "pending_htlcs",
        ] {
            assert!(ch.get(key).is_some(), "{key} missing: {ch}");
        }
    }
}
