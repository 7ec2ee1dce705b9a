//! The key table: every key a policy file may contain, its shape and its documentation.
//!
//! One table drives three things, so they cannot drift apart: the shape check of a parsed
//! file ([`check`]: unknown keys with a suggestion, wrong shapes, missing required keys), the
//! JSON Schema in `policies/schema.json` ([`json_schema`]), and the list of keys in the
//! reference test that loads a file setting every key ([`key_paths`]).

pub use super::check::{check, describe, key_paths, used_paths};
pub use super::schema::{json_schema, markdown_reference};

/// The form a scalar takes; each has one parser in `values`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    /// `true` / `false`.
    Bool,
    /// Whole number within the bounds.
    Int(u64, u64),
    /// Satoshis: `150000`, `250k`, `1.5M`, optional ` sat`.
    Amount,
    /// A percentage: `30%`, `0.6%`.
    Percent,
    /// A percentage of capacity or an amount of satoshis.
    Level,
    /// `30m`, `6h`, `14d`, `1w`, combinable (`1d12h`).
    Duration,
    /// `20 sat/vB` or `5000 sat/kw`.
    FeeRate,
    /// A 5-field cron expression.
    Cron,
    /// An IANA time-zone name.
    TimeZone,
    /// A local date and time, `2026-12-24 18:00`.
    DateTime,
    /// A regular expression.
    Regex,
    /// A name: letters, digits, `-`, `_`, `.`.
    Name,
    /// A channel id (`800000x12x1` or lnd's number) or a node pubkey (66 hex digits).
    Member,
    /// A channel id.
    ChanId,
    /// A node pubkey.
    Pubkey,
    /// `wallet` or a bitcoin address.
    Destination,
    /// `day`, `week`, `month` or `rolling <duration>`.
    Period,
    /// A channel age: blocks (`4320`) or days (`30d`).
    Age,
    /// A path to a rhai script, relative to the policy file.
    ScriptPath,
    /// One of the listed words.
    Enum(&'static [&'static str]),
}

impl Scalar {
    /// The accepted form in words, for error messages.
    pub fn expected(self) -> String {
        match self {
            Scalar::Bool => "true or false".to_owned(),
            Scalar::Int(lo, hi) => format!("a whole number from {lo} to {hi}"),
            Scalar::Amount => "an amount of satoshis such as 150000, 250k, 1.5M".to_owned(),
            Scalar::Percent => "a percentage such as 30% or 0.6%".to_owned(),
            Scalar::Level => "a share of capacity such as 30%, or an amount such as 2M".to_owned(),
            Scalar::Duration => "a duration such as 30m, 6h, 14d or 1w".to_owned(),
            Scalar::FeeRate => "a fee rate such as 20 sat/vB or 5000 sat/kw".to_owned(),
            Scalar::Cron => {
                "a 5-field cron expression (minute hour day-of-month month day-of-week) such as \"0 1-6 * * *\"".to_owned()
            }
            Scalar::TimeZone => "an IANA time zone such as UTC or Europe/Berlin".to_owned(),
            Scalar::DateTime => "a local date and time such as 2026-12-24 18:00".to_owned(),
            Scalar::Regex => "a regular expression such as \"ACINQ|Kraken\"".to_owned(),
            Scalar::Name => "a name of letters, digits, '-', '_' or '.'".to_owned(),
            Scalar::Member => {
                "a channel id such as 800000x12x1 or a node pubkey (66 hex digits)".to_owned()
            }
            Scalar::ChanId => "a channel id such as 800000x12x1".to_owned(),
            Scalar::Pubkey => "a node pubkey (66 hex digits)".to_owned(),
            Scalar::Destination => "wallet, or a bitcoin address".to_owned(),
            Scalar::Period => "day, week, month or rolling <duration> (e.g. rolling 30d)".to_owned(),
            Scalar::Age => "a channel age in blocks (4320) or days (30d)".to_owned(),
            Scalar::ScriptPath => "a rhai file name such as earnings-aware.rhai".to_owned(),
            Scalar::Enum(words) => format!("one of: {}", words.join(", ")),
        }
    }
}

/// The shape of a node.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A mapping with exactly these keys.
    Map(&'static [Field]),
    /// A list of items of one kind.
    Seq(&'static Kind),
    /// A single item or a list of them.
    OneOrMany(Scalar),
    /// A mapping whose keys the user chooses (tag names, rule names).
    Dict(&'static Kind, Scalar),
    /// A scalar.
    Scalar(Scalar),
    /// Either one of the words (`all`) or a mapping.
    WordOrMap(&'static [&'static str], &'static [Field]),
}

/// One key of a mapping.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The key as written.
    pub name: &'static str,
    /// Its shape.
    pub kind: Kind,
    /// Whether the key must be present.
    pub required: bool,
    /// What it means, one sentence; copied into the JSON Schema.
    pub doc: &'static str,
}

pub(crate) const fn f(name: &'static str, kind: Kind, doc: &'static str) -> Field {
    Field {
        name,
        kind,
        required: false,
        doc,
    }
}

pub(crate) const fn req(name: &'static str, kind: Kind, doc: &'static str) -> Field {
    Field {
        name,
        kind,
        required: true,
        doc,
    }
}

const BAND: &[Field] = &[
    f(
        "inbound_min",
        Kind::Scalar(Scalar::Level),
        "Swap when the target's inbound share (or inbound sats) falls below this.",
    ),
    f(
        "inbound_max",
        Kind::Scalar(Scalar::Level),
        "A swap never pushes inbound above this; it is the outbound reserve Loop calls the outgoing threshold.",
    ),
    f(
        "restore_to",
        Kind::Scalar(Scalar::Level),
        "Where a swap brings inbound back to; default the midpoint of the band (Loop's rule).",
    ),
];

const SWAP: &[Field] = &[
    f(
        "min",
        Kind::Scalar(Scalar::Amount),
        "Smallest swap worth making, so the policy does not flap; raised to the server's minimum.",
    ),
    f(
        "max",
        Kind::Scalar(Scalar::Amount),
        "Largest single swap; lowered to the server's maximum.",
    ),
    f(
        "conf_target",
        Kind::Scalar(Scalar::Int(2, 1008)),
        "Blocks within which the sweep should confirm.",
    ),
    f(
        "htlc_confs",
        Kind::Scalar(Scalar::Int(1, 6)),
        "Confirmations of the server's HTLC required before revealing the preimage.",
    ),
    f(
        "destination",
        Kind::Scalar(Scalar::Destination),
        "Where swept funds go: `wallet` (a fresh lnd address) or a fixed address.",
    ),
    f(
        "outgoing",
        Kind::Scalar(Scalar::Enum(&["target", "any"])),
        "Which channels may pay the swap: the target's own (default) or any.",
    ),
];

const GATE: &[Field] = &[
    f(
        "ceiling",
        Kind::Scalar(Scalar::FeeRate),
        "Never dispatch while the sweep fee estimate is above this.",
    ),
    f(
        "percentile",
        Kind::Scalar(Scalar::Int(1, 99)),
        "Open the gate when the estimate is at or below this percentile of the window.",
    ),
    f(
        "close_percentile",
        Kind::Scalar(Scalar::Int(1, 100)),
        "Once open, close only above this percentile (hysteresis); default percentile + 10.",
    ),
    f(
        "window",
        Kind::Scalar(Scalar::Duration),
        "How far back fee samples count for the percentile; default 14d.",
    ),
    f(
        "urgent_below",
        Kind::Scalar(Scalar::Percent),
        "Below this inbound share the gate is ignored (a depleted channel).",
    ),
];

const FEES: &[Field] = &[
    f(
        "max_total",
        Kind::Scalar(Scalar::Percent),
        "All expected fees of one swap together, as a share of the amount; default 2% (Loop's fee portion).",
    ),
    f(
        "max_server",
        Kind::Scalar(Scalar::Percent),
        "Server swap fee cap, as a share of the amount.",
    ),
    f(
        "max_routing",
        Kind::Scalar(Scalar::Percent),
        "Off-chain routing fee cap for the swap invoice, as a share of the amount.",
    ),
    f(
        "max_prepay_routing",
        Kind::Scalar(Scalar::Percent),
        "Routing fee cap for the prepay invoice, as a share of the prepay.",
    ),
    f(
        "max_prepay",
        Kind::Scalar(Scalar::Amount),
        "Cap on the no-show prepay the server may ask for.",
    ),
    f(
        "max_miner",
        Kind::Scalar(Scalar::Amount),
        "Cap on the sweep's miner fee, in satoshis.",
    ),
    f(
        "sweep_gate",
        Kind::Map(GATE),
        "The fee-market gate: an absolute ceiling and a percentile of recent estimates.",
    ),
];

const BLACKOUT: &[Field] = &[
    req(
        "from",
        Kind::Scalar(Scalar::DateTime),
        "Start of the window, local time in the schedule's zone.",
    ),
    req(
        "to",
        Kind::Scalar(Scalar::DateTime),
        "End of the window (exclusive).",
    ),
];

const SCHEDULE: &[Field] = &[
    f(
        "when",
        Kind::Scalar(Scalar::Cron),
        "Minutes in which swaps may be dispatched (5-field cron); default always.",
    ),
    f(
        "tz",
        Kind::Scalar(Scalar::TimeZone),
        "Time zone of `when` and `blackout`; default the top-level `tz`.",
    ),
    f(
        "blackout",
        Kind::Seq(&Kind::Map(BLACKOUT)),
        "Windows in which nothing is dispatched.",
    ),
];

const BACKOFF: &[Field] = &[
    f(
        "after_failure",
        Kind::Scalar(Scalar::Duration),
        "How long a target is skipped after a failed swap; default 24h.",
    ),
    f(
        "shrink_amount_by",
        Kind::Scalar(Scalar::Percent),
        "Each consecutive failure shrinks the next amount by this share; default 25%.",
    ),
    f(
        "max_shrinks",
        Kind::Scalar(Scalar::Int(0, 20)),
        "Shrinking stops after this many failures; default 3.",
    ),
];

const LOOP_IN_FEES: &[Field] = &[
    f(
        "max_total",
        Kind::Scalar(Scalar::Percent),
        "The expected fees of one Loop In together (server fee and HTLC miner fee), as a share of the amount; default 2%.",
    ),
    f(
        "max_server",
        Kind::Scalar(Scalar::Percent),
        "Server swap fee cap, as a share of the amount.",
    ),
    f(
        "max_miner",
        Kind::Scalar(Scalar::Amount),
        "Cap on the HTLC funding transaction's miner fee (and, separately, on a timeout sweep's), in satoshis.",
    ),
    f(
        "max_timeout_risk",
        Kind::Scalar(Scalar::Amount),
        "Cap on what a Loop In the server never pays can lose on chain: the funding and the timeout sweep together, at their caps.",
    ),
];

const LOOP_IN: &[Field] = &[
    f(
        "enabled",
        Kind::Scalar(Scalar::Bool),
        "Whether inbound above the band's inbound_max triggers a Loop In; default true when `loop_in` is written (a rule sets false to opt out of the defaults' Loop In).",
    ),
    f(
        "min",
        Kind::Scalar(Scalar::Amount),
        "Smallest Loop In worth making; raised to the server's minimum.",
    ),
    f(
        "max",
        Kind::Scalar(Scalar::Amount),
        "Largest single Loop In; lowered to the server's maximum.",
    ),
    f(
        "htlc_conf_target",
        Kind::Scalar(Scalar::Int(2, 1008)),
        "Blocks within which the HTLC funding transaction should confirm; default 6.",
    ),
    f(
        "last_hop",
        Kind::Scalar(Scalar::Enum(&["peer", "any"])),
        "Whether the server's payment must arrive through the target's peer (default) or may use any channel; a node target has no peer.",
    ),
    f(
        "fees",
        Kind::Map(LOOP_IN_FEES),
        "Per-Loop In fee caps by category.",
    ),
];

/// Keys shared by `defaults` and each rule.
macro_rules! settings {
    () => {
        [
            f("band", Kind::Map(BAND), "The inbound band to hold."),
            f(
                "swap",
                Kind::Map(SWAP),
                "Swap size bounds and swap parameters.",
            ),
            f(
                "fees",
                Kind::Map(FEES),
                "Per-swap fee caps and the fee-market gate.",
            ),
            f(
                "loop_in",
                Kind::Map(LOOP_IN),
                "Loop In at the band's upper edge: inbound above inbound_max is brought back to restore_to.",
            ),
            f(
                "schedule",
                Kind::Map(SCHEDULE),
                "When swaps may be dispatched.",
            ),
            f(
                "backoff",
                Kind::Map(BACKOFF),
                "What happens after a failed swap.",
            ),
            f(
                "script",
                Kind::Scalar(Scalar::ScriptPath),
                "A rhai script that may veto or resize each proposal.",
            ),
        ]
    };
}

pub(crate) const SETTINGS: &[Field] = &settings!();

const SELECTOR: &[Field] = &[
    f(
        "channel",
        Kind::OneOrMany(Scalar::ChanId),
        "These channels.",
    ),
    f(
        "peer",
        Kind::OneOrMany(Scalar::Pubkey),
        "Channels with these peers; a peer is one target unless `per` says otherwise.",
    ),
    f(
        "alias",
        Kind::Scalar(Scalar::Regex),
        "Channels whose peer alias matches this regular expression.",
    ),
    f(
        "capacity_min",
        Kind::Scalar(Scalar::Amount),
        "Channels of at least this capacity.",
    ),
    f(
        "capacity_max",
        Kind::Scalar(Scalar::Amount),
        "Channels of at most this capacity.",
    ),
    f(
        "age_min",
        Kind::Scalar(Scalar::Age),
        "Channels at least this old.",
    ),
    f(
        "age_max",
        Kind::Scalar(Scalar::Age),
        "Channels at most this old.",
    ),
    f(
        "tag",
        Kind::OneOrMany(Scalar::Name),
        "Channels carrying one of these tags (`tags` section or the snapshot).",
    ),
    f(
        "all",
        Kind::Scalar(Scalar::Bool),
        "Every channel (same as `match: all`).",
    ),
];

pub(crate) const RULE: &[Field] = &{
    let s = settings!();
    [
        req(
            "name",
            Kind::Scalar(Scalar::Name),
            "The rule's name, unique; shown in decisions and budgets.",
        ),
        req(
            "match",
            Kind::WordOrMap(&["all", "node"], SELECTOR),
            "Which channels the rule takes: `all`, `node` (all as one target) or a selector; all conditions must hold.",
        ),
        f(
            "exclude",
            Kind::Map(SELECTOR),
            "Channels the rule takes but leaves alone (decision `excluded`).",
        ),
        f(
            "per",
            Kind::Scalar(Scalar::Enum(&["channel", "peer", "node"])),
            "How matched channels form targets; default `peer` when the selector names peers, else `channel`.",
        ),
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        s[5],
        s[6],
    ]
};

const HARD_CAP: &[Field] = &[
    req(
        "period",
        Kind::Scalar(Scalar::Period),
        "The cap's own period, typically `day`.",
    ),
    req(
        "limit",
        Kind::Scalar(Scalar::Amount),
        "Fees allowed per window of that period.",
    ),
];

const BUDGET: &[Field] = &[
    req(
        "name",
        Kind::Scalar(Scalar::Name),
        "The budget's name, unique; shown in refusals and metrics.",
    ),
    req(
        "period",
        Kind::Scalar(Scalar::Period),
        "Calendar-aligned `day`/`week`/`month` in `tz`, or `rolling <duration>`.",
    ),
    req(
        "limit",
        Kind::Scalar(Scalar::Amount),
        "Fees all swaps together may spend per window.",
    ),
    f(
        "per_rule",
        Kind::Dict(&Kind::Scalar(Scalar::Amount), Scalar::Name),
        "Sub-budgets for swaps of the named rules.",
    ),
    f(
        "hard_cap",
        Kind::Map(HARD_CAP),
        "A ceiling no script can lift.",
    ),
];

const LIMITS: &[Field] = &[
    f(
        "in_flight",
        Kind::Scalar(Scalar::Int(0, 1000)),
        "Most swaps pending at once; default 1 (Loop's default).",
    ),
    f(
        "in_flight_per_target",
        Kind::Scalar(Scalar::Int(0, 1000)),
        "Most swaps pending per target; default 1.",
    ),
];

/// The top level of a policy file.
pub const ROOT: &[Field] = &[
    f(
        "dry_run",
        Kind::Scalar(Scalar::Bool),
        "Decide everything but dispatch nothing (decision `dry_run`).",
    ),
    f(
        "tz",
        Kind::Scalar(Scalar::TimeZone),
        "Time zone of schedules and calendar budgets; default UTC.",
    ),
    f(
        "defaults",
        Kind::Map(SETTINGS),
        "Settings every rule starts from; a rule overrides them key by key.",
    ),
    f(
        "rules",
        Kind::Seq(&Kind::Map(RULE)),
        "Rules in order; each channel is taken by the first rule that matches it.",
    ),
    f(
        "budgets",
        Kind::Seq(&Kind::Map(BUDGET)),
        "Fee budgets; a swap must fit every one.",
    ),
    f("limits", Kind::Map(LIMITS), "Dispatch limits."),
    f(
        "tags",
        Kind::Dict(&Kind::OneOrMany(Scalar::Member), Scalar::Name),
        "Named sets of channel ids and peer pubkeys, for selectors.",
    ),
];

/// The fields of the settings shared by `defaults` and rules.
pub fn settings_fields() -> &'static [Field] {
    SETTINGS
}
