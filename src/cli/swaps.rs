//! Swap commands: `terms`, `quote out <amt>`, `quote in <amt>`, `out --amt ...`,
//! `in --amt ...`, `swaps`, `swap <id>` and `monitor`. Every answer renders as text or, with `--json`, as JSON (`monitor`: one object
//! per line). Rendering is pure so it is tested without a daemon.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args as ClapArgs, Subcommand};
use serde_json::{Value, json};

use super::CliError;
use super::client::Target;
use super::output::{Format, table};
use crate::domain::ChanId;
use crate::proto::sluice as pb;

/// `sluice quote ...`.
#[derive(ClapArgs, Debug, Clone)]
pub struct QuoteCmd {
    /// Which swap to quote.
    #[command(subcommand)]
    pub kind: QuoteKind,
}

/// The swap kinds a quote exists for.
#[derive(Subcommand, Debug, Clone)]
pub enum QuoteKind {
    /// Quote a Loop Out of AMT sat (`250000`, `250k`, `2.5M`).
    Out {
        /// The amount to receive on chain.
        #[arg(value_name = "AMT")]
        amt: String,
        /// The HTLC confirmation target in blocks [default: the daemon's].
        #[arg(long, value_name = "N")]
        conf_target: Option<u32>,
    },
    /// Quote a Loop In of AMT sat: the server's fee and the funding's estimated miner fee.
    In {
        /// The HTLC value the wallet funds.
        #[arg(value_name = "AMT")]
        amt: String,
        /// The peer (66 hex characters) the server should pay through [default: any].
        #[arg(long, value_name = "PUBKEY")]
        last_hop: Option<String>,
        /// The funding's confirmation target in blocks [default: 6].
        #[arg(long, value_name = "N")]
        conf_target: Option<u32>,
        /// Hint the node's private channels (to --last-hop when given), as `loop in --private`.
        #[arg(long)]
        private: bool,
    },
}

/// `sluice in`: create a Loop In.
#[derive(ClapArgs, Debug, Clone)]
pub struct InCmd {
    /// The HTLC value the wallet funds; the node receives it less the server's fee off chain
    /// (`250000`, `250k`, `2.5M`).
    #[arg(long, value_name = "AMT")]
    pub amt: String,
    /// The peer (66 hex characters) the server should pay through, to refill that channel; a
    /// request the server may ignore [default: any].
    #[arg(long, value_name = "PUBKEY")]
    pub last_hop: Option<String>,
    /// The funding's confirmation target in blocks [default: 6].
    #[arg(long, value_name = "N")]
    pub conf_target: Option<u32>,
    /// Hint the node's private channels (to --last-hop when given) to the server and in the
    /// invoices, for a node the server can reach only over them (`loop in --private`).
    #[arg(long)]
    pub private: bool,
    /// A label to find the swap by.
    #[arg(long, value_name = "L", default_value = "")]
    pub label: String,
    /// Do not show the quote and ask; needed when stdin is not a terminal.
    #[arg(long)]
    pub force: bool,
}

/// `sluice out`: create a Loop Out.
#[derive(ClapArgs, Debug, Clone)]
pub struct OutCmd {
    /// The amount to receive on chain (`250000`, `250k`, `2.5M`).
    #[arg(long, value_name = "AMT")]
    pub amt: String,
    /// An external address to sweep to [default: a fresh address of lnd's wallet].
    #[arg(long, value_name = "ADDR")]
    pub dest: Option<String>,
    /// The HTLC confirmation target in blocks [default: the daemon's].
    #[arg(long, value_name = "N")]
    pub conf_target: Option<u32>,
    /// A channel the payment may leave through (short channel id or BLOCKxTXxOUT); repeatable.
    #[arg(long = "channel", value_name = "ID")]
    pub channels: Vec<String>,
    /// A label to find the swap by.
    #[arg(long, value_name = "L", default_value = "")]
    pub label: String,
    /// Do not show the quote and ask; needed when stdin is not a terminal.
    #[arg(long)]
    pub force: bool,
}

/// `--channel` names only channels the node has open: a swap restricted to a channel it
/// does not have can only fail, so it is refused before the swap server is asked.
async fn refuse_unknown_channels(
    client: &mut super::client::Client,
    target: &Target,
    wanted: &[u64],
) -> Result<(), CliError> {
    if wanted.is_empty() {
        return Ok(());
    }
    let open: Vec<ChanId> = client
        .list_channels(pb::ListChannelsRequest {})
        .await
        .map_err(|s| target.call_error(s, "list the node's channels"))?
        .into_inner()
        .channels
        .iter()
        .filter_map(|c| c.chan_id.parse().ok())
        .collect();
    unknown_channel_error(wanted, &open)
}

/// The refusal for the first of `wanted` not among `open`.
fn unknown_channel_error(wanted: &[u64], open: &[ChanId]) -> Result<(), CliError> {
    match wanted.iter().find(|w| !open.iter().any(|o| o.0 == **w)) {
        None => Ok(()),
        Some(&w) => Err(CliError::Input(format!(
            "--channel {}: the node has no open channel with this id; `sluice channels` lists \
             them. No swap was created",
            ChanId(w)
        ))),
    }
}

/// `sluice swaps`.
#[derive(ClapArgs, Debug, Clone)]
pub struct SwapsCmd {
    /// Only swaps that are not finished.
    #[arg(long)]
    pub pending: bool,
}

/// `sluice swap <id>`.
#[derive(ClapArgs, Debug, Clone)]
pub struct SwapCmd {
    /// The swap id (its hash, 64 hex characters).
    #[arg(value_name = "ID")]
    pub id: String,
}

/// Parses an amount in sat: `250000`, `250k`, `2.5M` (k = 10³, M = 10⁶; case-insensitive
/// suffix, `_` separators allowed). `flag` names where it came from in the error.
pub fn parse_amount(s: &str, flag: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::Input(format!(
            "{flag}: {s:?} is not an amount; write sat as 250000, 250k or 2.5M"
        ))
    };
    let t = s.trim().replace('_', "");
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000u64),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000u64),
        _ => (t.as_str(), 1u64),
    };
    if num.is_empty() {
        return Err(bad());
    }
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let int_v: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let mut total = int_v.checked_mul(mult).ok_or_else(bad)?;
    if !frac.is_empty() {
        let scale = 10u64.checked_pow(u32::try_from(frac.len()).map_err(|_| bad())?);
        let scale = scale.ok_or_else(bad)?;
        let frac_v: u64 = frac.parse().map_err(|_| bad())?;
        let scaled = frac_v.checked_mul(mult).ok_or_else(bad)?;
        if scaled % scale != 0 {
            return Err(CliError::Input(format!(
                "{flag}: {s:?} is not a whole number of sat"
            )));
        }
        total = total.checked_add(scaled / scale).ok_or_else(bad)?;
    }
    if total == 0 {
        return Err(CliError::Input(format!(
            "{flag}: the amount must be positive"
        )));
    }
    Ok(total)
}

fn pretty(v: &Value) -> Result<String, CliError> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

fn sat(n: u64) -> String {
    format!("{n} sat")
}

fn costs_json(c: &Option<pb::SwapCosts>) -> Value {
    let c = c.unwrap_or_default();
    json!({"server_sat": c.server_sat, "onchain_sat": c.onchain_sat, "offchain_sat": c.offchain_sat})
}

fn costs_text(c: &Option<pb::SwapCosts>) -> String {
    let c = c.unwrap_or_default();
    format!(
        "server {} sat, on-chain {} sat, off-chain {} sat",
        c.server_sat, c.onchain_sat, c.offchain_sat
    )
}

fn limits_json(l: &Option<pb::FeeLimits>) -> Value {
    let l = l.unwrap_or_default();
    json!({
        "max_swap_fee_sat": l.max_swap_fee_sat,
        "max_prepay_amount_sat": l.max_prepay_amount_sat,
        "max_swap_routing_fee_sat": l.max_swap_routing_fee_sat,
        "max_prepay_routing_fee_sat": l.max_prepay_routing_fee_sat,
        "max_miner_fee_sat": l.max_miner_fee_sat,
    })
}

fn limits_rows(l: &Option<pb::FeeLimits>) -> Vec<(&'static str, String)> {
    let l = l.unwrap_or_default();
    vec![
        ("max swap fee", sat(l.max_swap_fee_sat)),
        ("max prepay", sat(l.max_prepay_amount_sat)),
        ("max swap routing fee", sat(l.max_swap_routing_fee_sat)),
        ("max prepay routing fee", sat(l.max_prepay_routing_fee_sat)),
        ("max miner fee", sat(l.max_miner_fee_sat)),
    ]
}

/// Renders `terms`: Loop Out's, then Loop In's.
pub fn render_terms(t: &pb::TermsResponse, format: Format) -> Result<String, CliError> {
    let loop_in = if t.loop_in_error.is_empty() {
        format!(
            "{} – {} sat",
            t.loop_in_min_amount_sat, t.loop_in_max_amount_sat
        )
    } else {
        format!("unavailable: {}", t.loop_in_error)
    };
    match format {
        Format::Json => pretty(&json!({
            "min_amount_sat": t.min_amount_sat,
            "max_amount_sat": t.max_amount_sat,
            "min_cltv_delta": t.min_cltv_delta,
            "max_cltv_delta": t.max_cltv_delta,
            "loop_in": {
                "min_amount_sat": t.loop_in_min_amount_sat,
                "max_amount_sat": t.loop_in_max_amount_sat,
                "error": t.loop_in_error,
            },
        })),
        Format::Human => Ok(table(&[
            (
                "loop out amount",
                format!("{} – {} sat", t.min_amount_sat, t.max_amount_sat),
            ),
            (
                "loop out cltv delta",
                format!("{} – {} blocks", t.min_cltv_delta, t.max_cltv_delta),
            ),
            ("loop in amount", loop_in),
        ])),
    }
}

/// Renders a Loop In quote.
pub fn render_in_quote(q: &pb::LoopInQuoteResponse, format: Format) -> Result<String, CliError> {
    match format {
        Format::Json => pretty(&json!({
            "amount_sat": q.amount_sat,
            "swap_fee_sat": q.swap_fee_sat,
            "cltv_delta": q.cltv_delta,
            "funding_fee_estimate_sat": q.funding_fee_estimate_sat,
            "htlc_conf_target": q.htlc_conf_target,
            "max_swap_fee_sat": q.max_swap_fee_sat,
            "max_miner_fee_sat": q.max_miner_fee_sat,
            "hinted_chan_ids": q.hinted_chan_ids,
        })),
        Format::Human => {
            let mut rows = vec![
                ("amount (funded on chain)", sat(q.amount_sat)),
                ("swap fee", sat(q.swap_fee_sat)),
                (
                    "received off chain",
                    sat(q.amount_sat.saturating_sub(q.swap_fee_sat)),
                ),
                ("estimated funding fee", sat(q.funding_fee_estimate_sat)),
                ("htlc cltv delta", format!("{} blocks", q.cltv_delta)),
                ("conf target", format!("{} blocks", q.htlc_conf_target)),
                ("max swap fee", sat(q.max_swap_fee_sat)),
                (
                    "max miner fee",
                    format!(
                        "{} (the funding, and separately a timeout sweep)",
                        sat(q.max_miner_fee_sat)
                    ),
                ),
            ];
            if !q.hinted_chan_ids.is_empty() {
                let ids: Vec<String> = q.hinted_chan_ids.iter().map(u64::to_string).collect();
                rows.push(("hinted private channels", ids.join(", ")));
            }
            Ok(table(&rows))
        }
    }
}

/// Renders a created Loop In.
pub fn render_in_created(r: &pb::LoopInResponse, format: Format) -> Result<String, CliError> {
    match format {
        Format::Json => pretty(&json!({
            "id": r.id, "htlc_address": r.htlc_address, "expiry_height": r.expiry_height,
            "server_message": r.server_message,
        })),
        Format::Human => {
            let mut rows = vec![
                ("swap", r.id.clone()),
                ("htlc address", r.htlc_address.clone()),
                ("expiry height", r.expiry_height.to_string()),
            ];
            if !r.server_message.is_empty() {
                rows.push(("server says", r.server_message.clone()));
            }
            Ok(table(&rows))
        }
    }
}

/// Renders a quote.
pub fn render_quote(q: &pb::QuoteResponse, format: Format) -> Result<String, CliError> {
    match format {
        Format::Json => pretty(&json!({
            "amount_sat": q.amount_sat,
            "swap_fee_sat": q.swap_fee_sat,
            "prepay_amount_sat": q.prepay_amount_sat,
            "estimated_sweep_fee_sat": q.estimated_sweep_fee_sat,
            "server_node": q.server_node,
            "expiry_height": q.expiry_height,
            "conf_target": q.conf_target,
            "limits": limits_json(&q.limits),
        })),
        Format::Human => {
            let mut rows = vec![
                ("amount", sat(q.amount_sat)),
                ("swap fee", sat(q.swap_fee_sat)),
                ("prepay", sat(q.prepay_amount_sat)),
                ("estimated sweep fee", sat(q.estimated_sweep_fee_sat)),
                ("server node", q.server_node.clone()),
                ("expiry height", q.expiry_height.to_string()),
                ("conf target", format!("{} blocks", q.conf_target)),
            ];
            rows.extend(limits_rows(&q.limits));
            Ok(table(&rows))
        }
    }
}

/// Renders a created swap.
pub fn render_created(r: &pb::LoopOutResponse, format: Format) -> Result<String, CliError> {
    match format {
        Format::Json => pretty(
            &json!({"id": r.id, "htlc_address": r.htlc_address, "server_message": r.server_message}),
        ),
        Format::Human => {
            let mut rows = vec![
                ("swap", r.id.clone()),
                ("htlc address", r.htlc_address.clone()),
            ];
            if !r.server_message.is_empty() {
                rows.push(("server says", r.server_message.clone()));
            }
            Ok(table(&rows))
        }
    }
}

/// The swap's type; a daemon that predates Loop In sends none, and then it is a Loop Out.
fn swap_type(s: &pb::SwapSummary) -> &str {
    if s.r#type.is_empty() {
        "LOOP_OUT"
    } else {
        &s.r#type
    }
}

fn summary_json(s: &pb::SwapSummary) -> Value {
    let mut v = json!({
        "id": s.id, "state": s.state, "state_code": s.state_code, "amount_sat": s.amount_sat,
        "label": s.label, "initiator": s.initiator, "created_at_unix": s.created_at_unix,
        "updated_at_unix": s.updated_at_unix, "costs": costs_json(&s.costs),
        "htlc_address": s.htlc_address, "type": swap_type(s),
    });
    // Only quarantined swaps carry the key, so the common output stays as it was.
    if !s.quarantined.is_empty()
        && let Some(map) = v.as_object_mut()
    {
        map.insert("quarantined".to_owned(), json!(s.quarantined));
    }
    v
}

/// Renders `swaps`: one line per swap.
pub fn render_swaps(r: &pb::ListSwapsResponse, format: Format) -> Result<String, CliError> {
    match format {
        Format::Json => {
            pretty(&json!({"swaps": r.swaps.iter().map(summary_json).collect::<Vec<_>>()}))
        }
        Format::Human => {
            if r.swaps.is_empty() {
                return Ok("no swaps\n".to_owned());
            }
            let mut out = format!(
                "{:<64}  {:<8}  {:<31}  {:>12}  {}\n",
                "ID", "TYPE", "STATE", "AMOUNT_SAT", "LABEL"
            );
            for s in &r.swaps {
                out.push_str(&format!(
                    "{:<64}  {:<8}  {:<31}  {:>12}  {}\n",
                    s.id,
                    swap_type(s),
                    s.state,
                    s.amount_sat,
                    s.label
                ));
                if !s.quarantined.is_empty() {
                    out.push_str(&format!("  QUARANTINED, not driven: {}\n", s.quarantined));
                }
            }
            Ok(out)
        }
    }
}

/// Renders `swap <id>`.
pub fn render_swap(r: &pb::SwapInfoResponse, format: Format) -> Result<String, CliError> {
    let s = r.swap.clone().unwrap_or_default();
    let history = r
        .history
        .iter()
        .map(|h| json!({"state": h.state, "at_unix": h.at_unix, "costs": costs_json(&h.costs)}));
    match format {
        Format::Json => pretty(&json!({
            "swap": summary_json(&s),
            "state_summary": r.state_summary,
            "expiry_height": r.expiry_height,
            "initiation_height": r.initiation_height,
            "limits": limits_json(&r.limits),
            "destination": r.destination,
            "outgoing_chan_set": r.outgoing_chan_set,
            "swap_invoice": r.swap_invoice,
            "prepay_invoice": r.prepay_invoice,
            "htlc_outpoint": r.htlc_outpoint,
            "htlc_value_sat": r.htlc_value_sat,
            "sweep_txid": r.sweep_txid,
            "history": history.collect::<Vec<_>>(),
        })),
        Format::Human => {
            let or_dash = |v: &str| {
                if v.is_empty() {
                    "-".to_owned()
                } else {
                    v.to_owned()
                }
            };
            let mut rows = vec![
                ("swap", s.id.clone()),
                ("type", swap_type(&s).to_owned()),
                ("state", format!("{} ({})", s.state, s.state_code)),
                ("meaning", r.state_summary.clone()),
                ("amount", sat(s.amount_sat)),
                ("label", or_dash(&s.label)),
                ("initiator", s.initiator.clone()),
                ("htlc address", s.htlc_address.clone()),
                ("htlc outpoint", or_dash(&r.htlc_outpoint)),
                ("sweep txid", or_dash(&r.sweep_txid)),
                ("destination", r.destination.clone()),
                ("initiation height", r.initiation_height.to_string()),
                ("expiry height", r.expiry_height.to_string()),
                ("costs", costs_text(&s.costs)),
            ];
            rows.extend(limits_rows(&r.limits));
            let mut out = table(&rows);
            out.push_str("history:\n");
            for h in &r.history {
                out.push_str(&format!("  {}  {}\n", h.at_unix, h.state));
            }
            Ok(out)
        }
    }
}

/// An update's swap type (a daemon that predates Loop In sends none: a Loop Out).
fn update_type(u: &pb::SwapUpdate) -> &str {
    if u.r#type.is_empty() {
        "LOOP_OUT"
    } else {
        &u.r#type
    }
}

/// Renders one `monitor` update as one line (text or compact JSON).
pub fn render_update(u: &pb::SwapUpdate, format: Format) -> Result<String, CliError> {
    match format {
        Format::Json => Ok(serde_json::to_string(&json!({
            "id": u.id, "state": u.state, "state_code": u.state_code, "amount_sat": u.amount_sat,
            "label": u.label, "at_unix": u.at_unix, "costs": costs_json(&u.costs),
            "type": update_type(u),
        }))? + "\n"),
        Format::Human => Ok(format!(
            "{}  {}  {:<8} {:<31} {} sat  {}\n",
            u.at_unix,
            u.id,
            update_type(u),
            u.state,
            u.amount_sat,
            costs_text(&u.costs)
        )),
    }
}

/// What `out` does before creating the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// `--force`: create it without asking.
    Skip,
    /// Show the quote and ask on the terminal.
    Ask,
}

/// Decides whether `out` may ask: with `--force` it never asks; without a terminal to ask on
/// it refuses rather than create a swap nobody confirmed.
pub fn confirm_mode(force: bool, stdin_is_tty: bool) -> Result<Confirm, CliError> {
    match (force, stdin_is_tty) {
        (true, _) => Ok(Confirm::Skip),
        (false, true) => Ok(Confirm::Ask),
        (false, false) => Err(CliError::Input(
            "out: stdin is not a terminal, so the swap cannot be confirmed; \
             run it in a terminal or pass --force to create it without asking"
                .to_owned(),
        )),
    }
}

/// Whether an answer to `Continue? [y/N]` is yes.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// `sluice terms`.
pub async fn terms(target: &Target, format: Format) -> Result<String, CliError> {
    let mut client = target.connect().await?;
    let r = client
        .terms(pb::TermsRequest {})
        .await
        .map_err(|s| target.call_error(s, "read the swap terms"))?;
    render_terms(r.get_ref(), format)
}

/// `--last-hop`: a node key as 66 hex characters.
pub fn parse_last_hop(s: &str) -> Result<String, CliError> {
    let t = s.trim();
    let ok = t.len() == 66
        && t.chars().all(|c| c.is_ascii_hexdigit())
        && (t.starts_with("02") || t.starts_with("03"));
    if ok {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(CliError::Input(format!(
            "--last-hop: {s:?} is not a node key; write the peer's public key as 66 hex \
             characters (as `sluice channels` prints it)"
        )))
    }
}

/// `sluice quote out <amt>` / `sluice quote in <amt>`.
pub async fn quote(target: &Target, cmd: &QuoteCmd, format: Format) -> Result<String, CliError> {
    let (amt, conf_target) = match &cmd.kind {
        QuoteKind::Out { amt, conf_target } => (amt, conf_target),
        QuoteKind::In {
            amt,
            last_hop,
            conf_target,
            private,
        } => {
            let amount_sat = parse_amount(amt, "AMT")?;
            let last_hop = last_hop.as_deref().map(parse_last_hop).transpose()?;
            let mut client = target.connect().await?;
            let r = client
                .loop_in_quote(pb::LoopInQuoteRequest {
                    amount_sat,
                    last_hop: last_hop.unwrap_or_default(),
                    htlc_conf_target: conf_target.unwrap_or(0),
                    private: *private,
                })
                .await
                .map_err(|s| target.call_error(s, "quote a loop in"))?;
            return render_in_quote(r.get_ref(), format);
        }
    };
    let amount_sat = parse_amount(amt, "AMT")?;
    let mut client = target.connect().await?;
    let r = client
        .quote(pb::QuoteRequest {
            amount_sat,
            conf_target: conf_target.unwrap_or(0),
        })
        .await
        .map_err(|s| target.call_error(s, "quote a swap"))?;
    render_quote(r.get_ref(), format)
}

/// `sluice out`.
pub async fn out(target: &Target, cmd: &OutCmd, format: Format) -> Result<String, CliError> {
    let amount_sat = parse_amount(&cmd.amt, "--amt")?;
    let mut outgoing_chan_set = Vec::with_capacity(cmd.channels.len());
    for c in &cmd.channels {
        let id: ChanId = c.parse().map_err(|_| {
            CliError::Input(format!(
                "--channel: {c:?} is not a channel id; write the short channel id as a number \
                 or BLOCKxTXxOUT"
            ))
        })?;
        outgoing_chan_set.push(id.0);
    }
    let mode = confirm_mode(cmd.force, std::io::stdin().is_terminal())?;
    let mut client = target.connect().await?;
    refuse_unknown_channels(&mut client, target, &outgoing_chan_set).await?;
    // Quote first, with --force too: the limits sent with the swap come from this quote, so
    // the fees shown (or, with --force, the fees of the moment) bind the swap and a server
    // that invoices above them is refused before anything is paid.
    let q = client
        .quote(pb::QuoteRequest {
            amount_sat,
            conf_target: cmd.conf_target.unwrap_or(0),
        })
        .await
        .map_err(|s| target.call_error(s, "quote a swap"))?
        .into_inner();
    let max_fees = q.limits.ok_or_else(|| {
        CliError::Input(
            "out: the daemon's quote carries no fee limits; no swap was created".to_owned(),
        )
    })?;
    if mode == Confirm::Ask {
        let mut stderr = std::io::stderr().lock();
        stderr.write_all(render_quote(&q, Format::Human)?.as_bytes())?;
        stderr.write_all(b"Continue? [y/N] ")?;
        stderr.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !is_yes(&answer) {
            return Err(CliError::Input(
                "out: not confirmed; no swap was created".to_owned(),
            ));
        }
    }
    let r = client
        .loop_out(pb::LoopOutRequest {
            amount_sat,
            dest: cmd.dest.clone().unwrap_or_default(),
            conf_target: cmd.conf_target.unwrap_or(0),
            htlc_confirmations: 0,
            outgoing_chan_set,
            max_fees: Some(max_fees),
            label: cmd.label.clone(),
            initiator: "cli".to_owned(),
            fast: false,
        })
        .await
        .map_err(|s| target.call_error(s, "create a swap"))?;
    render_created(r.get_ref(), format)
}

/// `sluice in`: quotes first (with --force too), so the fees shown bind the swap.
pub async fn loop_in(target: &Target, cmd: &InCmd, format: Format) -> Result<String, CliError> {
    let amount_sat = parse_amount(&cmd.amt, "--amt")?;
    let last_hop = cmd
        .last_hop
        .as_deref()
        .map(parse_last_hop)
        .transpose()?
        .unwrap_or_default();
    let mode = confirm_mode(cmd.force, std::io::stdin().is_terminal()).map_err(|e| match e {
        CliError::Input(m) => CliError::Input(m.replacen("out:", "in:", 1)),
        other => other,
    })?;
    let mut client = target.connect().await?;
    let q = client
        .loop_in_quote(pb::LoopInQuoteRequest {
            amount_sat,
            last_hop: last_hop.clone(),
            htlc_conf_target: cmd.conf_target.unwrap_or(0),
            private: cmd.private,
        })
        .await
        .map_err(|s| target.call_error(s, "quote a loop in"))?
        .into_inner();
    if mode == Confirm::Ask {
        let mut stderr = std::io::stderr().lock();
        stderr.write_all(render_in_quote(&q, Format::Human)?.as_bytes())?;
        stderr.write_all(b"Continue? [y/N] ")?;
        stderr.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !is_yes(&answer) {
            return Err(CliError::Input(
                "in: not confirmed; no swap was created".to_owned(),
            ));
        }
    }
    let r = client
        .loop_in(pb::LoopInRequest {
            amount_sat,
            max_swap_fee_sat: q.max_swap_fee_sat,
            max_miner_fee_sat: q.max_miner_fee_sat,
            last_hop,
            htlc_conf_target: cmd.conf_target.unwrap_or(0),
            label: cmd.label.clone(),
            initiator: "cli".to_owned(),
            private: cmd.private,
        })
        .await
        .map_err(|s| target.call_error(s, "create a loop in"))?;
    render_in_created(r.get_ref(), format)
}

/// `sluice swaps`.
pub async fn swaps(target: &Target, cmd: &SwapsCmd, format: Format) -> Result<String, CliError> {
    let mut client = target.connect().await?;
    let r = client
        .list_swaps(pb::ListSwapsRequest {
            pending_only: cmd.pending,
            ..pb::ListSwapsRequest::default()
        })
        .await
        .map_err(|s| target.call_error(s, "list swaps"))?;
    render_swaps(r.get_ref(), format)
}

/// `sluice swap <id>`.
pub async fn swap(target: &Target, cmd: &SwapCmd, format: Format) -> Result<String, CliError> {
    let mut client = target.connect().await?;
    let r = client
        .swap_info(pb::SwapInfoRequest { id: cmd.id.clone() })
        .await
        .map_err(|s| target.call_error(s, "read a swap"))?;
    render_swap(r.get_ref(), format)
}

/// `sluice monitor`: prints each update as it arrives until Ctrl-C or the daemon ends the
/// stream. Writes directly (the answer has no end to wait for) and returns nothing more.
pub async fn monitor(target: &Target, format: Format) -> Result<String, CliError> {
    let mut client = target.connect().await?;
    let mut stream = client
        .monitor(pb::MonitorRequest {})
        .await
        .map_err(|s| target.call_error(s, "monitor swaps"))?
        .into_inner();
    loop {
        let next = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(String::new()),
            m = stream.message() => m,
        };
        match next.map_err(|s| target.call_error(s, "monitor swaps"))? {
            Some(u) => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(render_update(&u, format)?.as_bytes())?;
                stdout.flush()?;
            }
            None => return Ok(String::new()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Args, Command};

    #[test]
    fn amounts_parse_in_sat_with_suffixes() {
        assert_eq!(parse_amount("250000", "--amt").unwrap(), 250_000);
        assert_eq!(parse_amount("250k", "--amt").unwrap(), 250_000);
        assert_eq!(parse_amount("250K", "--amt").unwrap(), 250_000);
        assert_eq!(parse_amount("2.5M", "--amt").unwrap(), 2_500_000);
        assert_eq!(parse_amount("1_000_000", "--amt").unwrap(), 1_000_000);
        assert_eq!(parse_amount("0.001k", "--amt").unwrap(), 1);
        for bad in [
            "",
            "k",
            "abc",
            "-5",
            "1.5",
            "0",
            "2.5.1M",
            "99999999999999999999",
        ] {
            let err = parse_amount(bad, "--amt").unwrap_err();
            assert!(err.to_string().starts_with("--amt:"), "{bad}: {err}");
            assert_eq!(err.exit_code(), crate::cli::EXIT_USAGE);
        }
    }

    #[test]
    fn out_refuses_without_a_terminal_unless_forced() {
        assert_eq!(confirm_mode(true, false).unwrap(), Confirm::Skip);
        assert_eq!(confirm_mode(true, true).unwrap(), Confirm::Skip);
        assert_eq!(confirm_mode(false, true).unwrap(), Confirm::Ask);
        let err = confirm_mode(false, false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert!(is_yes("y\n") && is_yes(" YES ") && !is_yes("") && !is_yes("n") && !is_yes("yep"));
    }

    #[test]
    fn swap_commands_parse() {
        let a = Args::try_parse_from([
            "sluice",
            "out",
            "--amt",
            "250k",
            "--channel",
            "800000x1x0",
            "--channel",
            "7",
            "--label",
            "rebalance",
            "--force",
            "--json",
        ])
        .unwrap();
        assert!(a.json);
        let Command::Out(cmd) = a.command else {
            panic!("not out")
        };
        assert_eq!(cmd.channels, ["800000x1x0", "7"]);
        assert!(cmd.force);
        assert_eq!(cmd.label, "rebalance");
        let a = Args::try_parse_from(["sluice", "quote", "out", "2.5M"]).unwrap();
        assert!(
            matches!(a.command, Command::Quote(QuoteCmd { kind: QuoteKind::Out { ref amt, .. } }) if amt == "2.5M")
        );
        let a = Args::try_parse_from(["sluice", "swaps", "--pending"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Swaps(SwapsCmd { pending: true })
        ));
        assert!(Args::try_parse_from(["sluice", "swap"]).is_err());
        assert!(matches!(
            Args::try_parse_from(["sluice", "monitor"]).unwrap().command,
            Command::Monitor
        ));
        assert!(Args::try_parse_from(["sluice", "out"]).is_err());
    }

    fn costs() -> Option<pb::SwapCosts> {
        Some(pb::SwapCosts {
            server_sat: 1_250,
            onchain_sat: 311,
            offchain_sat: 42,
        })
    }

    fn limits() -> Option<pb::FeeLimits> {
        Some(pb::FeeLimits {
            max_swap_fee_sat: 1_000,
            max_prepay_amount_sat: 3_000,
            max_swap_routing_fee_sat: 5_010,
            max_prepay_routing_fee_sat: 70,
            max_miner_fee_sat: 77_500,
        })
    }

    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn terms_and_quote_render_both_ways() {
        let t = pb::TermsResponse {
            min_amount_sat: 10_000,
            max_amount_sat: 5_000_000,
            min_cltv_delta: 20,
            max_cltv_delta: 400,
            loop_in_min_amount_sat: 20_000,
            loop_in_max_amount_sat: 3_000_000,
            loop_in_error: String::new(),
        };
        let text = render_terms(&t, Format::Human).unwrap();
        assert!(text.contains("10000 – 5000000 sat"), "{text}");
        assert!(text.contains("20 – 400 blocks"), "{text}");
        assert!(text.contains("loop in amount:"), "{text}");
        assert!(text.contains("20000 – 3000000 sat"), "{text}");
        let v = json(&render_terms(&t, Format::Json).unwrap());
        assert_eq!(v["max_cltv_delta"], 400);
        assert_eq!(v["loop_in"]["max_amount_sat"], 3_000_000);
        let down = pb::TermsResponse {
            loop_in_error: "Unimplemented".into(),
            ..t
        };
        let text = render_terms(&down, Format::Human).unwrap();
        assert!(text.contains("unavailable: Unimplemented"), "{text}");

        let q = pb::LoopInQuoteResponse {
            amount_sat: 200_000,
            swap_fee_sat: 600,
            cltv_delta: 200,
            funding_fee_estimate_sat: 700,
            htlc_conf_target: 6,
            max_swap_fee_sat: 600,
            max_miner_fee_sat: 2_100,
            hinted_chan_ids: Vec::new(),
        };
        let text = render_in_quote(&q, Format::Human).unwrap();
        for want in ["199400 sat", "700 sat", "2100 sat", "200 blocks"] {
            assert!(text.contains(want), "{want} missing in {text}");
        }
        assert!(!text.contains("hinted"), "{text}");
        let hinted = pb::LoopInQuoteResponse {
            hinted_chan_ids: vec![123, 456],
            ..q.clone()
        };
        let text = render_in_quote(&hinted, Format::Human).unwrap();
        assert!(text.contains("hinted private channels"), "{text}");
        assert!(text.contains("123, 456"), "{text}");
        assert_eq!(
            json(&render_in_quote(&q, Format::Json).unwrap())["max_miner_fee_sat"],
            2_100
        );
        assert!(parse_last_hop(&format!("02{}", "ab".repeat(32))).is_ok());
        let err = parse_last_hop("02ab").unwrap_err().to_string();
        assert!(
            err.contains("--last-hop") && err.contains("66 hex"),
            "{err}"
        );

        let q = pb::QuoteResponse {
            amount_sat: 250_000,
            swap_fee_sat: 1_000,
            prepay_amount_sat: 3_000,
            estimated_sweep_fee_sat: 310,
            server_node: "02ab".into(),
            expiry_height: 1_234,
            conf_target: 9,
            limits: limits(),
        };
        let text = render_quote(&q, Format::Human).unwrap();
        for want in [
            "swap fee:",
            "1000 sat",
            "02ab",
            "1234",
            "max miner fee:",
            "77500 sat",
        ] {
            assert!(text.contains(want), "{want} missing in {text}");
        }
        let v = json(&render_quote(&q, Format::Json).unwrap());
        assert_eq!(v["swap_fee_sat"], 1_000);
        assert_eq!(v["limits"]["max_miner_fee_sat"], 77_500);
    }

    fn summary(id: &str, state: &str) -> pb::SwapSummary {
        pb::SwapSummary {
            id: id.into(),
            state: state.into(),
            state_code: 2,
            amount_sat: 250_000,
            label: "lbl".into(),
            initiator: "cli".into(),
            created_at_unix: 100,
            updated_at_unix: 200,
            costs: costs(),
            htlc_address: "bcrt1p...".into(),
            quarantined: String::new(),
            r#type: String::new(),
        }
    }

    #[test]
    fn created_swaps_and_lists_render_both_ways() {
        let c = pb::LoopOutResponse {
            id: "aa".repeat(32),
            htlc_address: "bcrt1pxyz".into(),
            server_message: String::new(),
        };
        let text = render_created(&c, Format::Human).unwrap();
        assert!(text.contains(&"aa".repeat(32)) && text.contains("bcrt1pxyz"));
        assert!(!text.contains("server says"));
        assert_eq!(
            json(&render_created(&c, Format::Json).unwrap())["htlc_address"],
            "bcrt1pxyz"
        );

        let l = pb::ListSwapsResponse {
            swaps: vec![
                summary(&"aa".repeat(32), "SUCCEEDED"),
                summary(&"bb".repeat(32), "INITIATED"),
            ],
        };
        let text = render_swaps(&l, Format::Human).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.lines().nth(1).unwrap().contains("SUCCEEDED"));
        let v = json(&render_swaps(&l, Format::Json).unwrap());
        assert_eq!(v["swaps"][1]["state"], "INITIATED");
        assert_eq!(v["swaps"][0]["costs"]["onchain_sat"], 311);
        let empty = pb::ListSwapsResponse::default();
        assert_eq!(render_swaps(&empty, Format::Human).unwrap(), "no swaps\n");
        assert_eq!(
            json(&render_swaps(&empty, Format::Json).unwrap())["swaps"],
            json("[]")
        );
    }

    #[test]
    fn swap_info_and_updates_render_both_ways() {
        let info = pb::SwapInfoResponse {
            swap: Some(summary(&"cc".repeat(32), "SUCCEEDED")),
            expiry_height: 500,
            initiation_height: 400,
            limits: limits(),
            destination: "bcrt1qdest".into(),
            outgoing_chan_set: vec![7],
            swap_invoice: "lnbcrt1".into(),
            prepay_invoice: "lnbcrt2".into(),
            htlc_outpoint: format!("{}:0", "dd".repeat(32)),
            htlc_value_sat: 250_000,
            sweep_txid: String::new(),
            history: vec![
                pb::HistoryEntry {
                    state: "INITIATED".into(),
                    at_unix: 100,
                    costs: None,
                },
                pb::HistoryEntry {
                    state: "SUCCEEDED".into(),
                    at_unix: 200,
                    costs: costs(),
                },
            ],
            state_summary: "done".into(),
        };
        let text = render_swap(&info, Format::Human).unwrap();
        for want in [
            "SUCCEEDED (2)",
            "server 1250 sat, on-chain 311 sat, off-chain 42 sat",
            "sweep txid:",
            "  100  INITIATED",
            "  200  SUCCEEDED",
        ] {
            assert!(text.contains(want), "{want} missing in {text}");
        }
        let v = json(&render_swap(&info, Format::Json).unwrap());
        assert_eq!(v["history"][1]["costs"]["server_sat"], 1_250);
        assert_eq!(v["outgoing_chan_set"][0], 7);

        let u = pb::SwapUpdate {
            id: "ee".repeat(32),
            state: "PREIMAGE_REVEALED".into(),
            state_code: 1,
            costs: costs(),
            at_unix: 300,
            amount_sat: 250_000,
            label: String::new(),
            r#type: String::new(),
        };
        let line = render_update(&u, Format::Json).unwrap();
        assert_eq!(line.lines().count(), 1);
        assert_eq!(json(&line)["state"], "PREIMAGE_REVEALED");
        assert_eq!(json(&line)["type"], "LOOP_OUT");
        let text = render_update(&u, Format::Human).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("PREIMAGE_REVEALED") && text.contains("250000 sat"));
        let inward = pb::SwapUpdate {
            state: "HTLC_CONFIRMED".into(),
            r#type: "LOOP_IN".into(),
            ..u
        };
        let text = render_update(&inward, Format::Human).unwrap();
        assert!(
            text.contains("LOOP_IN") && text.contains("HTLC_CONFIRMED"),
            "{text}"
        );
    }

    #[test]
    fn a_channel_the_node_does_not_have_is_refused() {
        let open = [ChanId::from_parts(800_000, 1, 0)];
        assert!(unknown_channel_error(&[open[0].0], &open).is_ok());
        let missing = ChanId::from_parts(800_000, 9, 0);
        let e = unknown_channel_error(&[open[0].0, missing.0], &open)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--channel 800000x9x0"), "{e}");
        assert!(e.contains("no open channel"), "{e}");
    }
}
