//! Typing the settings shared by `defaults` and rules: band, swap, fees and gate, schedule,
//! backoff and script. Each value is checked on its own and against its neighbours (a band's
//! order, swap.min ≤ swap.max, a gate that can close), and reported at its place.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use chrono::TimeDelta;
use chrono_tz::Tz;

use super::error::PolicyError;
use super::fields::{Ctx, Fields, int_in, opt, scalar, to_u32};
use super::keys::Scalar;
use super::model::{
    Backoff, Band, Blackout, Destination, FeeCaps, FeeGate, LastHop, LoopInFeeCaps, LoopInSettings,
    Outgoing, Schedule, Settings, SwapSettings,
};
use super::script::Script;
use super::tree::{Node, Place, Value};
use super::values::{self, Level};
use crate::domain::Ppm;

pub(super) fn build_settings(
    node: &Node,
    path: &str,
    ctx: &mut Ctx<'_>,
    require_band: bool,
) -> Result<(Settings, Option<Arc<Script>>), PolicyError> {
    let mut f = Fields::of(node, path);
    let band_node = f.get("band");
    let band = build_band(band_node, node, path, require_band)?;
    let swap = build_swap(f.get("swap"))?;
    let (fees, gate) = build_fees(f.get("fees"))?;
    let schedule = build_schedule(f.get("schedule"), ctx.tz)?;
    let backoff = build_backoff(f.get("backoff"))?;
    // `defaults` alone may lack a band; each rule's merged settings are checked whole.
    let loop_in = build_loop_in(f.get("loop_in"), require_band.then_some(&band))?;
    let script = match f.get("script") {
        None => None,
        Some((n, p)) => Some(load_script(n, &p, ctx)?),
    };
    f.finish()?;
    Ok((
        Settings {
            band,
            swap,
            fees,
            gate,
            schedule,
            backoff,
            loop_in,
        },
        script,
    ))
}

/// A level as one comparable number (ppm for shares, sats for amounts); only levels of the
/// same kind are compared.
fn level_value(l: Level) -> u64 {
    match l {
        Level::Share(p) => p.0,
        Level::Sats(s) => s.0,
    }
}

fn build_band(
    band: Option<(&Node, String)>,
    parent: &Node,
    path: &str,
    required: bool,
) -> Result<Band, PolicyError> {
    let placeholder = Band {
        inbound_min: Level::Share(Ppm(0)),
        inbound_max: None,
        restore_to: None,
    };
    let Some((node, bpath)) = band else {
        if required {
            return Err(parent.place.error(
                &format!("{path}.band.inbound_min"),
                "no band: neither the rule nor `defaults` sets band.inbound_min",
                "band: { inbound_min: 30% } in the rule or in defaults",
            ));
        }
        return Ok(placeholder);
    };
    let mut f = Fields::of(node, &bpath);
    let mut leaf = |key: &str| -> Result<Option<(Level, Place, String)>, PolicyError> {
        match f.get(key) {
            None => Ok(None),
            Some((n, p)) => {
                let l = scalar(n, &p, Scalar::Level, values::level)?;
                Ok(Some((l, n.place.clone(), p)))
            }
        }
    };
    let min = leaf("inbound_min")?;
    let max = leaf("inbound_max")?;
    let restore = leaf("restore_to")?;
    f.finish()?;
    let Some(min) = min else {
        if required {
            return Err(node.place.error(
                &format!("{bpath}.inbound_min"),
                "the band has no inbound_min",
                Scalar::Level.expected(),
            ));
        }
        return Ok(placeholder);
    };
    let is_share = |l: &Level| matches!(l, Level::Share(_));
    for other in [&max, &restore].into_iter().flatten() {
        if is_share(&other.0) != is_share(&min.0) {
            return Err(other.1.error(
                &other.2,
                "mixes a percentage and an amount in one band",
                if is_share(&min.0) {
                    "a percentage, like inbound_min"
                } else {
                    "an amount, like inbound_min"
                },
            ));
        }
    }
    let v = |l: &Level| level_value(*l);
    let lo = v(&min.0);
    let hi = match (&max, min.0) {
        (Some(m), _) => v(&m.0),
        (None, Level::Share(_)) => 1_000_000,
        (None, Level::Sats(_)) => u64::MAX,
    };
    if let Some(m) = &max
        && lo >= hi
    {
        return Err(m.1.error(
            &m.2,
            format!("inbound_max {} is not above inbound_min {}", m.0, min.0),
            "inbound_min < restore_to < inbound_max",
        ));
    }
    if let Some(r) = &restore {
        let rv = v(&r.0);
        if rv <= lo || rv > hi {
            return Err(r.1.error(
                &r.2,
                format!(
                    "restore_to {} is outside the band ({} to {})",
                    r.0,
                    min.0,
                    max.as_ref()
                        .map_or_else(|| "100%".to_owned(), |m| m.0.to_string())
                ),
                "inbound_min < restore_to ≤ inbound_max",
            ));
        }
    }
    Ok(Band {
        inbound_min: min.0,
        inbound_max: max.map(|m| m.0),
        restore_to: restore.map(|r| r.0),
    })
}

fn build_swap(node: Option<(&Node, String)>) -> Result<SwapSettings, PolicyError> {
    let mut s = SwapSettings {
        min: None,
        max: None,
        conf_target: 100,
        htlc_confs: 1,
        destination: Destination::Wallet,
        outgoing: Outgoing::Target,
    };
    let Some((node, path)) = node else {
        return Ok(s);
    };
    let mut f = Fields::of(node, &path);
    s.min = opt(&mut f, "min", Scalar::Amount, values::amount)?;
    let max_node = f.get("max");
    s.max = match &max_node {
        Some((n, p)) => Some(scalar(n, p, Scalar::Amount, values::amount)?),
        None => None,
    };
    if let Some(c) = opt(&mut f, "conf_target", Scalar::Int(2, 1008), int_in(2, 1008))? {
        s.conf_target = to_u32(c);
    }
    if let Some(c) = opt(&mut f, "htlc_confs", Scalar::Int(1, 6), int_in(1, 6))? {
        s.htlc_confs = to_u32(c);
    }
    if let Some(d) = opt(&mut f, "destination", Scalar::Destination, |t| {
        if t == "wallet" {
            return Ok(Destination::Wallet);
        }
        bitcoin::Address::from_str(t)
            .map(|_| Destination::Address(t.to_owned()))
            .map_err(|e| format!("`{t}` is not a bitcoin address: {e}"))
    })? {
        s.destination = d;
    }
    if let Some(o) = opt(
        &mut f,
        "outgoing",
        Scalar::Enum(&["target", "any"]),
        |t| match t {
            "target" => Ok(Outgoing::Target),
            "any" => Ok(Outgoing::Any),
            other => Err(format!("`{other}` is not a channel choice")),
        },
    )? {
        s.outgoing = o;
    }
    f.finish()?;
    if let (Some(lo), Some(hi), Some((n, p))) = (s.min, s.max, &max_node)
        && lo > hi
    {
        return Err(n.place.error(
            p,
            format!("max {} is below min {}", hi.0, lo.0),
            "swap.min ≤ swap.max",
        ));
    }
    Ok(s)
}

fn build_fees(node: Option<(&Node, String)>) -> Result<(FeeCaps, Option<FeeGate>), PolicyError> {
    let mut caps = FeeCaps {
        max_total: Ppm(20_000),
        max_server: None,
        max_routing: None,
        max_prepay_routing: None,
        max_prepay: None,
        max_miner: None,
    };
    let Some((node, path)) = node else {
        return Ok((caps, None));
    };
    let mut f = Fields::of(node, &path);
    if let Some(p) = opt(&mut f, "max_total", Scalar::Percent, values::percent)? {
        caps.max_total = p;
    }
    caps.max_server = opt(&mut f, "max_server", Scalar::Percent, values::percent)?;
    caps.max_routing = opt(&mut f, "max_routing", Scalar::Percent, values::percent)?;
    caps.max_prepay_routing = opt(
        &mut f,
        "max_prepay_routing",
        Scalar::Percent,
        values::percent,
    )?;
    caps.max_prepay = opt(&mut f, "max_prepay", Scalar::Amount, values::amount)?;
    caps.max_miner = opt(&mut f, "max_miner", Scalar::Amount, values::amount)?;
    let gate = match f.get("sweep_gate") {
        None => None,
        Some((n, p)) => Some(build_gate(n, &p)?),
    };
    f.finish()?;
    Ok((caps, gate))
}

/// The Loop In settings, `None` when absent or `enabled: false`. A Loop In restores from the
/// band's upper edge, so the band must have one.
fn build_loop_in(
    node: Option<(&Node, String)>,
    band: Option<&Band>,
) -> Result<Option<LoopInSettings>, PolicyError> {
    let Some((node, path)) = node else {
        return Ok(None);
    };
    let mut f = Fields::of(node, &path);
    let enabled = opt(&mut f, "enabled", Scalar::Bool, values::boolean)?.unwrap_or(true);
    let min = opt(&mut f, "min", Scalar::Amount, values::amount)?;
    let max_node = f.get("max");
    let max = match &max_node {
        Some((n, p)) => Some(scalar(n, p, Scalar::Amount, values::amount)?),
        None => None,
    };
    let htlc_conf_target = opt(
        &mut f,
        "htlc_conf_target",
        Scalar::Int(2, 1008),
        int_in(2, 1008),
    )?
    .map_or(crate::swap::loop_in::DEFAULT_HTLC_CONF_TARGET, to_u32);
    let last_hop = opt(
        &mut f,
        "last_hop",
        Scalar::Enum(&["peer", "any"]),
        |t| match t {
            "peer" => Ok(LastHop::Peer),
            "any" => Ok(LastHop::Any),
            other => Err(format!("`{other}` is not a last-hop choice")),
        },
    )?
    .unwrap_or(LastHop::Peer);
    let mut fees = LoopInFeeCaps {
        max_total: Ppm(20_000),
        max_server: None,
        max_miner: None,
        max_timeout_risk: None,
    };
    if let Some((fnode, fpath)) = f.get("fees") {
        let mut ff = Fields::of(fnode, &fpath);
        if let Some(p) = opt(&mut ff, "max_total", Scalar::Percent, values::percent)? {
            fees.max_total = p;
        }
        fees.max_server = opt(&mut ff, "max_server", Scalar::Percent, values::percent)?;
        fees.max_miner = opt(&mut ff, "max_miner", Scalar::Amount, values::amount)?;
        fees.max_timeout_risk = opt(&mut ff, "max_timeout_risk", Scalar::Amount, values::amount)?;
        ff.finish()?;
    }
    f.finish()?;
    if let (Some(lo), Some(hi), Some((n, p))) = (min, max, &max_node)
        && lo > hi
    {
        return Err(n.place.error(
            p,
            format!("max {} is below min {}", hi.0, lo.0),
            "loop_in.min ≤ loop_in.max",
        ));
    }
    if !enabled {
        return Ok(None);
    }
    if band.is_some_and(|b| b.inbound_max.is_none()) {
        return Err(node.place.error(
            &path,
            "a Loop In restores inbound from the band's upper edge, but the band has no inbound_max",
            "band: { inbound_min: 30%, inbound_max: 70% } beside loop_in, or loop_in: { enabled: false }",
        ));
    }
    Ok(Some(LoopInSettings {
        min,
        max,
        htlc_conf_target,
        last_hop,
        fees,
    }))
}

fn build_gate(node: &Node, path: &str) -> Result<FeeGate, PolicyError> {
    let mut f = Fields::of(node, path);
    let ceiling = opt(&mut f, "ceiling", Scalar::FeeRate, values::fee_rate)?;
    let percentile = opt(&mut f, "percentile", Scalar::Int(1, 99), int_in(1, 99))?;
    let close_node = f.get("close_percentile");
    let close = match &close_node {
        Some((n, p)) => Some(scalar(n, p, Scalar::Int(1, 100), int_in(1, 100))?),
        None => None,
    };
    let window =
        opt(&mut f, "window", Scalar::Duration, values::duration)?.unwrap_or(TimeDelta::days(14));
    let urgent_below = opt(&mut f, "urgent_below", Scalar::Percent, values::percent)?;
    f.finish()?;
    if ceiling.is_none() && percentile.is_none() {
        return Err(node.place.error(
            path,
            "the gate has neither a ceiling nor a percentile, so it would never close",
            "ceiling: 20 sat/vB and/or percentile: 25",
        ));
    }
    let pct = percentile.map(|p| p as u8);
    let close_pct = close.map_or_else(|| pct.map_or(100, |p| (p + 10).min(100)), |c| c as u8);
    if let (Some(p), Some((n, kp))) = (pct, &close_node)
        && close_pct < p
    {
        return Err(n.place.error(
            kp,
            format!("close_percentile {close_pct} is below percentile {p}"),
            "close_percentile ≥ percentile (the gate closes above where it opens)",
        ));
    }
    Ok(FeeGate {
        ceiling,
        percentile: pct,
        close_percentile: close_pct,
        window,
        urgent_below,
    })
}

fn build_schedule(node: Option<(&Node, String)>, tz: Tz) -> Result<Schedule, PolicyError> {
    let mut s = Schedule {
        when: None,
        tz,
        blackouts: Vec::new(),
    };
    let Some((node, path)) = node else {
        return Ok(s);
    };
    let mut f = Fields::of(node, &path);
    s.when = opt(&mut f, "when", Scalar::Cron, values::cron)?;
    if let Some(z) = opt(&mut f, "tz", Scalar::TimeZone, values::time_zone)? {
        s.tz = z;
    }
    if let Some((n, p)) = f.get("blackout")
        && let Value::Seq(items) = &n.value
    {
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{p}[{i}]");
            let mut bf = Fields::of(item, &ip);
            let from = opt(&mut bf, "from", Scalar::DateTime, values::local_datetime)?;
            let to_node = bf.get("to");
            let to = match &to_node {
                Some((tn, tp)) => Some(scalar(tn, tp, Scalar::DateTime, values::local_datetime)?),
                None => None,
            };
            bf.finish()?;
            let (Some(from), Some(to), Some((tn, tp))) = (from, to, to_node) else {
                return Err(item
                    .place
                    .error(&ip, "a blackout needs from and to", "from: and to:"));
            };
            if to <= from {
                return Err(tn.place.error(
                    &tp,
                    format!("the window ends ({to}) before it starts ({from})"),
                    "to later than from",
                ));
            }
            s.blackouts.push(Blackout { from, to });
        }
    }
    f.finish()?;
    Ok(s)
}

fn build_backoff(node: Option<(&Node, String)>) -> Result<Backoff, PolicyError> {
    let mut b = Backoff {
        after_failure: TimeDelta::hours(24),
        shrink_by: Ppm(250_000),
        max_shrinks: 3,
    };
    let Some((node, path)) = node else {
        return Ok(b);
    };
    let mut f = Fields::of(node, &path);
    if let Some(d) = opt(&mut f, "after_failure", Scalar::Duration, values::duration)? {
        b.after_failure = d;
    }
    let shrink_node = f.get("shrink_amount_by");
    if let Some((n, p)) = &shrink_node {
        b.shrink_by = scalar(n, p, Scalar::Percent, values::percent)?;
        if b.shrink_by.0 >= 1_000_000 {
            return Err(n.place.error(
                p,
                "shrinking by 100% would make every retry zero",
                "a percentage below 100%",
            ));
        }
    }
    if let Some(m) = opt(&mut f, "max_shrinks", Scalar::Int(0, 20), int_in(0, 20))? {
        b.max_shrinks = to_u32(m);
    }
    f.finish()?;
    Ok(b)
}

fn load_script(node: &Node, path: &str, ctx: &mut Ctx<'_>) -> Result<Arc<Script>, PolicyError> {
    let name = scalar(node, path, Scalar::ScriptPath, |t| {
        if t.ends_with(".rhai") {
            Ok(t.to_owned())
        } else {
            Err(format!("`{t}` is not a .rhai file"))
        }
    })?;
    let base = node.place.file.parent().unwrap_or(Path::new(""));
    let file = base.join(&name);
    if let Some(s) = ctx.scripts.get(&file) {
        return Ok(Arc::clone(s));
    }
    let text = std::fs::read_to_string(&file).map_err(|e| {
        node.place.error(
            path,
            format!("cannot read script {}: {e}", file.display()),
            "a .rhai file beside the policy file",
        )
    })?;
    let script = Arc::new(ctx.host.compile(&file, &text)?);
    ctx.scripts.insert(file, Arc::clone(&script));
    Ok(script)
}
