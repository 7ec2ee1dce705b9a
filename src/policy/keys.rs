//! The key table: every key a policy file may contain, its shape and its documentation.
//!
//! One table drives three things, so they cannot drift apart: the shape check of a parsed
//! file (unknown keys with a suggestion, wrong shapes, missing required keys), the JSON
//! Schema in `policies/schema.json` ([`json_schema`]), and the list of keys in the reference
//! test that loads a file setting every key ([`key_paths`]).

use serde_json::{Map as JsonMap, Value as Json, json};

use super::error::{PolicyError, closest};
use super::tree::{Node, Value};

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

    fn schema(self) -> Json {
        let amount = r"^[0-9]+(\.[0-9]+)?\s*[kM]?(\s*sats?)?$";
        let percent = r"^[0-9]+(\.[0-9]+)?\s*%$";
        match self {
            Scalar::Bool => json!({"type": "boolean"}),
            Scalar::Int(lo, hi) => json!({"type": "integer", "minimum": lo, "maximum": hi}),
            Scalar::Amount => json!({"oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": amount}
            ]}),
            Scalar::Percent => json!({"type": "string", "pattern": percent}),
            Scalar::Level => json!({"oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": percent},
                {"type": "string", "pattern": amount}
            ]}),
            Scalar::Duration => {
                json!({"type": "string", "pattern": r"^([0-9]+(s|m|h|d|w))+$"})
            }
            Scalar::FeeRate => json!({"type": "string",
                "pattern": r"^[0-9]+(\.[0-9]+)?\s*sat/(vB|vb|kw)$"}),
            Scalar::Cron => json!({"type": "string", "pattern": r"^\S+(\s+\S+){4}$"}),
            Scalar::TimeZone | Scalar::Regex | Scalar::ScriptPath => json!({"type": "string"}),
            Scalar::DateTime => json!({"type": "string",
                "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}$"}),
            Scalar::Name => json!({"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$"}),
            Scalar::Member => json!({"type": "string",
                "pattern": r"^([0-9]+(x[0-9]+x[0-9]+)?|[0-9a-fA-F]{66})$"}),
            Scalar::ChanId => json!({"oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^[0-9]+(x[0-9]+x[0-9]+)?$"}
            ]}),
            Scalar::Pubkey => json!({"type": "string", "pattern": r"^[0-9a-fA-F]{66}$"}),
            Scalar::Destination => json!({"type": "string"}),
            Scalar::Period => json!({"type": "string",
                "pattern": r"^(day|week|month|rolling\s+([0-9]+(s|m|h|d|w))+)$"}),
            Scalar::Age => json!({"oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^[0-9]+d$"}
            ]}),
            Scalar::Enum(words) => json!({"type": "string", "enum": words}),
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

const SETTINGS: &[Field] = &settings!();

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

const RULE: &[Field] = &{
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

fn names(fields: &[Field]) -> Vec<&'static str> {
    fields.iter().map(|f| f.name).collect()
}

fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Checks `node` against `kind`: unknown keys (with the nearest known key), duplicate keys,
/// missing required keys and wrong shapes, each at its place. Scalars are typed later.
pub fn check(node: &Node, kind: &Kind, path: &str) -> Result<(), PolicyError> {
    match (kind, &node.value) {
        (_, Value::Null) => Ok(()),
        (Kind::Map(fields), Value::Map(entries))
        | (Kind::WordOrMap(_, fields), Value::Map(entries)) => {
            check_map(node, fields, entries, path)
        }
        (Kind::Seq(item), Value::Seq(items)) => {
            for (i, it) in items.iter().enumerate() {
                check(it, item, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Kind::OneOrMany(_), Value::Scalar(_)) | (Kind::Scalar(_), Value::Scalar(_)) => Ok(()),
        (Kind::OneOrMany(s), Value::Seq(items)) => {
            for (i, it) in items.iter().enumerate() {
                check(it, &Kind::Scalar(*s), &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Kind::Dict(item, _), Value::Map(entries)) => {
            let mut seen: Vec<&str> = Vec::new();
            for (k, kp, v) in entries {
                let p = join_path(path, k);
                if seen.contains(&k.as_str()) {
                    return Err(kp.error(&p, "the key is written a second time", "each key once"));
                }
                seen.push(k);
                check(v, item, &p)?;
            }
            Ok(())
        }
        (Kind::WordOrMap(words, _), Value::Scalar(s)) => {
            if words.contains(&s.as_str()) {
                Ok(())
            } else {
                Err(node.place.error(
                    path,
                    format!("`{s}` is not a selector"),
                    format!("one of {} or a mapping of selector keys", words.join(", ")),
                ))
            }
        }
        (kind, other) => Err(node.place.error(
            path,
            format!("wrong type: found {}", other.shape()),
            describe(kind),
        )),
    }
}

fn check_map(
    node: &Node,
    fields: &[Field],
    entries: &[(String, super::tree::Place, Node)],
    path: &str,
) -> Result<(), PolicyError> {
    let mut seen: Vec<&str> = Vec::new();
    for (k, kp, v) in entries {
        let p = join_path(path, k);
        if seen.contains(&k.as_str()) {
            return Err(kp.error(&p, "the key is written a second time", "each key once"));
        }
        seen.push(k);
        let Some(field) = fields.iter().find(|f| f.name == k) else {
            let allowed = names(fields);
            let mut message = "unknown key".to_owned();
            if let Some(s) = closest(k, &allowed) {
                message.push_str(&format!(" (did you mean {s}?)"));
            }
            return Err(kp.error(&p, message, format!("one of: {}", allowed.join(", "))));
        };
        check(v, &field.kind, &p)?;
    }
    for field in fields.iter().filter(|f| f.required) {
        let present = entries
            .iter()
            .any(|(k, _, v)| k == field.name && !matches!(v.value, Value::Null));
        if !present {
            return Err(node.place.error(
                &join_path(path, field.name),
                "missing required key",
                describe(&field.kind),
            ));
        }
    }
    Ok(())
}

/// The expected form of a kind, in words.
pub fn describe(kind: &Kind) -> String {
    match kind {
        Kind::Map(fields) => format!("a mapping with keys: {}", names(fields).join(", ")),
        Kind::Seq(Kind::Map(fields)) => {
            format!("a list of mappings with keys: {}", names(fields).join(", "))
        }
        Kind::Seq(item) => format!("a list of {}", describe(item)),
        Kind::OneOrMany(s) => format!("{} or a list of them", s.expected()),
        Kind::Dict(item, _) => format!("a mapping of names to {}", describe(item)),
        Kind::Scalar(s) => s.expected(),
        Kind::WordOrMap(words, _) => format!("{} or a mapping of selector keys", words.join(", ")),
    }
}

fn kind_schema(kind: &Kind) -> Json {
    match kind {
        Kind::Map(fields) => map_schema(fields),
        Kind::Seq(item) => json!({"type": "array", "items": kind_schema(item)}),
        Kind::OneOrMany(s) => {
            json!({"oneOf": [s.schema(), {"type": "array", "items": s.schema()}]})
        }
        Kind::Dict(item, key) => json!({
            "type": "object",
            "propertyNames": key.schema(),
            "additionalProperties": kind_schema(item)
        }),
        Kind::Scalar(s) => s.schema(),
        Kind::WordOrMap(words, fields) => json!({"oneOf": [
            {"type": "string", "enum": words},
            map_schema(fields)
        ]}),
    }
}

fn map_schema(fields: &[Field]) -> Json {
    let mut props = JsonMap::new();
    for field in fields {
        let mut s = kind_schema(&field.kind);
        if let Json::Object(o) = &mut s {
            o.insert("description".to_owned(), Json::String(field.doc.to_owned()));
        }
        props.insert(field.name.to_owned(), s);
    }
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    let mut out = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": props,
    });
    if !required.is_empty()
        && let Json::Object(o) = &mut out
    {
        o.insert("required".to_owned(), json!(required));
    }
    out
}

/// The JSON Schema (draft 2020-12) of a policy file, as checked in at `policies/schema.json`.
pub fn json_schema() -> String {
    let mut root = map_schema(ROOT);
    if let Json::Object(o) = &mut root {
        o.insert(
            "$schema".to_owned(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        o.insert(
            "$id".to_owned(),
            json!("https://sluice.dev/policy.schema.json"),
        );
        o.insert("title".to_owned(), json!("sluice policy file"));
    }
    let mut text = serde_json::to_string_pretty(&root).unwrap_or_default();
    text.push('\n');
    text
}

/// Every key path the table allows, with `[]` for list items and `*` for user-chosen names:
/// `rules[].band.inbound_min`, `tags.*`.
pub fn key_paths() -> Vec<String> {
    let mut out = Vec::new();
    walk_paths(&Kind::Map(ROOT), "", &mut out);
    out
}

fn walk_paths(kind: &Kind, path: &str, out: &mut Vec<String>) {
    match kind {
        Kind::Map(fields) | Kind::WordOrMap(_, fields) => {
            for field in fields.iter() {
                let p = join_path(path, field.name);
                out.push(p.clone());
                walk_paths(&field.kind, &p, out);
            }
        }
        Kind::Seq(item) => walk_paths(item, &format!("{path}[]"), out),
        Kind::Dict(item, _) => {
            let p = join_path(path, "*");
            out.push(p.clone());
            walk_paths(item, &p, out);
        }
        Kind::Scalar(_) | Kind::OneOrMany(_) => {}
    }
}

/// The key paths a parsed file uses, in the form of [`key_paths`].
pub fn used_paths(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    walk_used(node, &Kind::Map(ROOT), "", &mut out);
    out
}

fn walk_used(node: &Node, kind: &Kind, path: &str, out: &mut Vec<String>) {
    match (kind, &node.value) {
        (Kind::Map(fields) | Kind::WordOrMap(_, fields), Value::Map(entries)) => {
            for (k, _, v) in entries {
                if let Some(field) = fields.iter().find(|f| f.name == k) {
                    let p = join_path(path, k);
                    out.push(p.clone());
                    walk_used(v, &field.kind, &p, out);
                }
            }
        }
        (Kind::Seq(item), Value::Seq(items)) => {
            for it in items {
                walk_used(it, item, &format!("{path}[]"), out);
            }
        }
        (Kind::Dict(item, _), Value::Map(entries)) => {
            for (_, _, v) in entries {
                let p = join_path(path, "*");
                out.push(p.clone());
                walk_used(v, item, &p, out);
            }
        }
        _ => {}
    }
}

/// The fields of the settings shared by `defaults` and rules.
pub fn settings_fields() -> &'static [Field] {
    SETTINGS
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::policy::tree::parse;
    use std::path::Path;

    #[test]
    fn rule_settings_are_the_defaults_settings() {
        for s in SETTINGS {
            assert!(RULE.iter().any(|r| r.name == s.name), "{}", s.name);
        }
    }

    #[test]
    fn unknown_key_suggests_the_nearest() {
        let n = parse(
            Path::new("x.yaml"),
            "defaults:\n  fees:\n    sweep_gate:\n      percentil: 25\n",
        )
        .unwrap();
        let e = check(&n, &Kind::Map(ROOT), "").unwrap_err();
        assert_eq!((e.line, e.column), (4, 7));
        assert_eq!(e.key, "defaults.fees.sweep_gate.percentil");
        assert!(e.to_string().contains("did you mean percentile?"), "{e}");
    }

    #[test]
    fn missing_required_key_is_reported_at_its_mapping() {
        let n = parse(Path::new("x.yaml"), "rules:\n  - match: all\n").unwrap();
        let e = check(&n, &Kind::Map(ROOT), "").unwrap_err();
        assert_eq!(e.key, "rules[0].name");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn schema_lists_every_key_path() {
        let schema: Json = serde_json::from_str(&json_schema()).unwrap();
        let mut from_schema = Vec::new();
        schema_paths(&schema, "", &mut from_schema);
        let mut from_table = key_paths();
        from_schema.sort();
        from_table.sort();
        assert_eq!(from_schema, from_table);
    }

    /// Walks the generated JSON independently of the table.
    fn schema_paths(s: &Json, path: &str, out: &mut Vec<String>) {
        if let Some(props) = s.get("properties").and_then(Json::as_object) {
            for (k, v) in props {
                let p = join_path(path, k);
                out.push(p.clone());
                schema_paths(v, &p, out);
            }
        }
        if let Some(items) = s.get("items")
            && s.get("type") == Some(&json!("array"))
            && path_is_seq_of_maps(items)
        {
            schema_paths(items, &format!("{path}[]"), out);
        }
        if let Some(add) = s.get("additionalProperties").filter(|a| a.is_object()) {
            let p = join_path(path, "*");
            out.push(p.clone());
            schema_paths(add, &p, out);
        }
        if let Some(alts) = s.get("oneOf").and_then(Json::as_array) {
            for a in alts {
                if a.get("properties").is_some() {
                    schema_paths(a, path, out);
                }
            }
        }
    }

    fn path_is_seq_of_maps(items: &Json) -> bool {
        items.get("properties").is_some()
    }
}
