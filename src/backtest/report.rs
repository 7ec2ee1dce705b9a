//! A run's figures for people: the summary and the side-by-side comparison of two policies.

use std::fmt::Write as _;

use super::replay::Outcome;

/// The summary of one run, `name` being the policy's.
pub fn summary(name: &str, o: &Outcome) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "backtest of {name}: {} .. {}", o.start, o.end);
    if o.interrupted {
        let _ = writeln!(
            s,
            "STOPPED before the end: the figures cover the passes run"
        );
    }
    let _ = writeln!(
        s,
        "  passes {}, swaps {} ({} failed, {} unfinished), volume {} sat",
        o.passes, o.swaps, o.failed_swaps, o.unfinished_swaps, o.volume_sat
    );
    let _ = writeln!(
        s,
        "  server: {} sat + {} ppm, prepay {} sat, swaps of {} to {} sat",
        o.server.fee_base_sat,
        o.server.fee_ppm,
        o.server.prepay_sat,
        o.server.min_swap_sat,
        o.server.max_swap_sat
    );
    let cats: Vec<String> = o
        .fees_by_category
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        s,
        "  fees {} sat ({}), {} ppm of the volume",
        o.fees_total_sat,
        if cats.is_empty() {
            "none".to_owned()
        } else {
            cats.join(", ")
        },
        o.fees_ppm_of_volume
    );
    let _ = writeln!(
        s,
        "  channel-hours below band {:.1}, above band {:.1}, depleted {:.1}, below {}% inbound {:.1}",
        o.below_band_hours,
        o.above_band_hours,
        o.depleted_channel_hours,
        o.reference_inbound_ppm / 10_000,
        o.below_reference_hours
    );
    let _ = writeln!(
        s,
        "  forwards the balances could not carry {}, routing fees earned {} sat",
        o.forwards_failed, o.routing_earned_sat
    );
    if o.payments_failed > 0 {
        let _ = writeln!(
            s,
            "  own payments and receipts the balances could not carry {}",
            o.payments_failed
        );
    }
    let reasons: Vec<String> = o.reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(s, "  decisions by reason: {}", reasons.join(", "));
    let mut worst: Vec<_> = o
        .channels
        .iter()
        .filter(|c| c.below_band_hours > 0.0)
        .collect();
    worst.sort_by(|a, b| b.below_band_hours.total_cmp(&a.below_band_hours));
    if !worst.is_empty() {
        let _ = writeln!(s, "  channels longest below band:");
        for c in worst.iter().take(5) {
            let _ = writeln!(
                s,
                "    {:<16} below {:>7.1} h, above {:>7.1} h, depleted {:>7.1} h",
                c.id, c.below_band_hours, c.above_band_hours, c.depleted_hours
            );
        }
    }
    s
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        if a == 0.0 {
            "=".to_owned()
        } else {
            "∞".to_owned()
        }
    } else {
        format!("{:.2}×", a / b)
    }
}

/// Two runs side by side, with the ratios of costs and of time below band (A ÷ B).
pub fn compare(a_name: &str, a: &Outcome, b_name: &str, b: &Outcome) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "backtest {} .. {}", a.start, a.end);
    let _ = writeln!(s, "{:<28} {:>16} {:>16} {:>8}", "", a_name, b_name, "A/B");
    let reference = format!("below {}% inbound (ch-h)", a.reference_inbound_ppm / 10_000);
    let rows: [(&str, f64, f64); 8] = [
        ("swaps", a.swaps as f64, b.swaps as f64),
        ("volume (sat)", a.volume_sat as f64, b.volume_sat as f64),
        (
            "fees (sat)",
            a.fees_total_sat as f64,
            b.fees_total_sat as f64,
        ),
        (
            "fees per sat moved (ppm)",
            a.fees_ppm_of_volume as f64,
            b.fees_ppm_of_volume as f64,
        ),
        ("below band (ch-h)", a.below_band_hours, b.below_band_hours),
        ("above band (ch-h)", a.above_band_hours, b.above_band_hours),
        (&reference, a.below_reference_hours, b.below_reference_hours),
        (
            "depleted (ch-h)",
            a.depleted_channel_hours,
            b.depleted_channel_hours,
        ),
    ];
    for (label, x, y) in rows {
        let _ = writeln!(s, "{label:<28} {x:>16.1} {y:>16.1} {:>8}", ratio(x, y));
    }
    let _ = writeln!(
        s,
        "cost ratio {}, time-below-band ratio {} (each policy's own band), below {}% inbound ratio {}",
        ratio(a.fees_total_sat as f64, b.fees_total_sat as f64),
        ratio(a.below_band_hours, b.below_band_hours),
        a.reference_inbound_ppm / 10_000,
        ratio(a.below_reference_hours, b.below_reference_hours)
    );
    s
}
