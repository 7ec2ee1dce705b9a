//! The description of every catalog family ([`SPECS`]): name, type, labels and help. The
//! registry takes its help texts from here and `docs/metrics.md` is generated from it
//! ([`render_doc`]), so a family cannot change without the documentation following.

/// The type of a family as `# TYPE` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A monotonically increasing count; exposed with `_total`.
    Counter,
    /// A bucketed distribution (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    /// The word Prometheus uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// The description of one family: what the exposition calls it and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The exposed name (counters with `_total`).
    pub name: &'static str,
    /// The family type.
    pub kind: Kind,
    /// Label names, in exposition order.
    pub labels: &'static [&'static str],
    /// One or two sentences: the meaning and the unit.
    pub help: &'static str,
}

macro_rules! spec {
    ($name:literal, $kind:ident, [$($l:literal),*], $help:literal) => {
        Spec { name: $name, kind: Kind::$kind, labels: &[$($l),*], help: $help }
    };
}

/// Every family of the catalog (besides `sluice_build_info` and the process metrics).
pub const SPECS: &[Spec] = &[
    spec!(
        "sluice_channel_local_balance_sat",
        Gauge,
        ["target"],
        "Local (outbound) balance of a managed target's channels, in satoshis. Absent when metrics.per_channel is false."
    ),
    spec!(
        "sluice_channel_remote_balance_sat",
        Gauge,
        ["target"],
        "Remote (inbound) balance of a managed target's channels, in satoshis. Absent when metrics.per_channel is false."
    ),
    spec!(
        "sluice_channel_inbound_share_ratio",
        Gauge,
        ["target"],
        "Remote balance divided by capacity of a managed target, between 0 and 1."
    ),
    spec!(
        "sluice_channel_inbound_share_band_low_ratio",
        Gauge,
        ["target"],
        "The lower edge of the inbound-share band the policy keeps the target in, between 0 and 1."
    ),
    spec!(
        "sluice_channel_inbound_share_band_high_ratio",
        Gauge,
        ["target"],
        "The upper edge of the inbound-share band the policy keeps the target in, between 0 and 1."
    ),
    spec!(
        "sluice_node_local_balance_sat",
        Gauge,
        [],
        "Local balance over all of the node's active channels, in satoshis."
    ),
    spec!(
        "sluice_node_remote_balance_sat",
        Gauge,
        [],
        "Remote balance over all of the node's active channels, in satoshis."
    ),
    spec!(
        "sluice_node_onchain_balance_sat",
        Gauge,
        [],
        "Confirmed on-chain wallet balance, in satoshis."
    ),
    spec!(
        "sluice_swaps_started_total",
        Counter,
        ["direction", "initiator"],
        "Swaps started (stored, before anything is paid or funded); direction is out (Loop Out) or in (Loop In), initiator autoloop or manual."
    ),
    spec!(
        "sluice_swaps_finished_total",
        Counter,
        ["direction", "outcome", "reason"],
        "Swaps that reached a final state; outcome is succeeded or failed, reason the failure (none on success). Reasons for out: offchain, timeout, sweep_timeout, insufficient_value; for in: timeout, funding, not_published, incorrect_htlc_amount."
    ),
    spec!(
        "sluice_swaps_in_flight",
        Gauge,
        ["direction", "state"],
        "Swaps not yet final, by direction and state (each direction's own states); every non-final state of both directions is always present."
    ),
    spec!(
        "sluice_swap_oldest_state_age_seconds",
        Gauge,
        ["direction", "state"],
        "How long the oldest swap in a non-final state has been in it, in seconds, by direction and state; 0 when none is."
    ),
    spec!(
        "sluice_swap_blocks_to_expiry",
        Gauge,
        [],
        "Loop Out only: blocks until the nearest HTLC expiry among Loop Outs that revealed the preimage and are not swept yet; absent when there is none."
    ),
    spec!(
        "sluice_swaps_quarantined",
        Gauge,
        ["direction"],
        "Stored swaps the daemon does not drive because their row does not decode or their HTLC does not rebuild, by direction; `sluice swaps` names them and why."
    ),
    spec!(
        "sluice_swap_amount_sat_total",
        Counter,
        ["direction"],
        "Amount moved by succeeded swaps, in satoshis: out is off-chain to on-chain, in is on-chain to off-chain."
    ),
    spec!(
        "sluice_swap_cost_sat_total",
        Counter,
        ["direction", "category"],
        "Fees paid by finished swaps, in satoshis, by direction and category: out pays server, prepay, routing, miner (the sweep); in pays server (what it kept) and miner (the HTLC funding and any timeout sweep)."
    ),
    spec!(
        "sluice_swap_duration_seconds",
        Histogram,
        ["direction", "outcome"],
        "Time from start to final state of finished swaps, in seconds, by direction and outcome."
    ),
    spec!(
        "sluice_budget_limit_sat",
        Gauge,
        ["budget", "scope", "period"],
        "A budget limit for its current window, in satoshis."
    ),
    spec!(
        "sluice_budget_spent_sat",
        Gauge,
        ["budget", "scope", "period"],
        "Fees paid inside the current window of a budget limit, in satoshis."
    ),
    spec!(
        "sluice_budget_reserved_expected_sat",
        Gauge,
        ["budget", "scope", "period"],
        "Fees pending swaps are still expected to spend against a budget limit, in satoshis."
    ),
    spec!(
        "sluice_budget_reserved_worst_sat",
        Gauge,
        ["budget", "scope", "period"],
        "Fees pending swaps may still spend at most against a budget limit, in satoshis."
    ),
    spec!(
        "sluice_budget_available_sat",
        Gauge,
        ["budget", "scope", "period"],
        "The most a new swap may cost under a budget limit (limit - spent - worst reserved), in satoshis."
    ),
    spec!(
        "sluice_policy_decisions_total",
        Counter,
        ["decision", "reason"],
        "Policy evaluations by decision (swap or hold) and reason."
    ),
    spec!(
        "sluice_policy_reloads_total",
        Counter,
        ["result"],
        "Policy reloads; result is ok or rejected."
    ),
    spec!(
        "sluice_policy_rejected",
        Gauge,
        [],
        "1 while the last policy reload was rejected and the previous policy still runs, else 0."
    ),
    spec!(
        "sluice_fee_gate_open",
        Gauge,
        [],
        "1 while the on-chain fee gate lets swaps start, 0 while it holds them."
    ),
    spec!(
        "sluice_fee_estimate_sat_per_vbyte",
        Gauge,
        ["conf_target"],
        "The last fee estimate the fee gate saw, in sat/vbyte, by confirmation target in blocks."
    ),
    spec!(
        "sluice_lnd_up",
        Gauge,
        [],
        "1 while lnd answers, 0 while it is unreachable."
    ),
    spec!(
        "sluice_lnd_rpc_duration_seconds",
        Histogram,
        ["method"],
        "Latency of lnd RPCs, in seconds, by method."
    ),
    spec!(
        "sluice_lnd_rpc_errors_total",
        Counter,
        ["method", "kind"],
        "Failed lnd RPCs by method and error kind."
    ),
    spec!(
        "sluice_server_rpc_duration_seconds",
        Histogram,
        ["method"],
        "Latency of swap-server RPCs, in seconds, by method."
    ),
    spec!(
        "sluice_server_rpc_errors_total",
        Counter,
        ["method", "kind"],
        "Failed swap-server RPCs by method and error kind."
    ),
    spec!(
        "sluice_l402_spent_sat_total",
        Counter,
        [],
        "Satoshis paid for L402 tokens to the swap server."
    ),
    spec!(
        "sluice_simnet_block_height",
        Gauge,
        [],
        "Best block height of the simulated chain; present only under --simnet."
    ),
];

/// The help text of a catalog family (empty if unknown, which a test rules out).
pub(super) fn help(name: &str) -> &'static str {
    SPECS
        .iter()
        .find(|s| s.name == name || s.name.strip_suffix("_total") == Some(name))
        .map_or("", |s| s.help)
}

/// The generated part of `docs/metrics.md`: one table of the catalog.
pub fn render_doc() -> String {
    let mut out = String::from("| name | type | labels | meaning |\n|---|---|---|---|\n");
    for s in SPECS {
        let labels: Vec<String> = s.labels.iter().map(|l| format!("`{l}`")).collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            s.name,
            s.kind.as_str(),
            labels.join(", "),
            s.help
        ));
    }
    out
}
