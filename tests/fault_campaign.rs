//! A seeded, repeatable fault campaign through the real binaries: concurrent Loop Outs, manual
//! and autoloop's (on, with a policy it can never satisfy and a day budget), while `sluiced` is
//! killed with SIGKILL at random moments, with reorgs of depth 1 to 6 while it is down and while
//! it runs, fee spikes, the swap server's lnd going away and coming back, the swap server
//! itself restarting (down for up to 1.5 s, its swaps kept), and the reference server's
//! misbehaviours switched on and off, every draw from one seed. Afterwards:
//!
//! - every swap is terminal;
//! - the "sluice" node's wallet plus channel balance moved by exactly the costs its swaps
//!   recorded (routing fees are recorded rounded up to the sat, so at most 1 sat over per
//!   payment);
//! - the server never learned a preimage before an HTLC honouring the contract had confirmed
//!   (`sluice simnet audit`);
//! - no budget spent more than its limit, and nothing is left reserved.
//!
//! The daemon runs with `swap.sweep_confirmations` 7, above the deepest reorg the campaign
//! makes: a sweep reorged out after its swap succeeded is not watched any more, so an operator
//! who expects reorgs of depth d sets the finality above d.
//!
//! `cargo nextest run --test fault_campaign` runs the short campaign CI runs. The full one is
//! `SLUICE_CAMPAIGN_KILLS=200 SLUICE_CAMPAIGN_SEED=<n> cargo nextest run --test fault_campaign
//! --no-capture`; its figures are in `docs/reliability.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod crash_harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crash_harness::settled;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// The smallest swap the campaign asks for; the L402 token is bought with a quote for it.
const MIN_AMOUNT: u64 = 250_000;

/// Sweeps may pay miners up to 10 % of the amount, so a fee spike delays a swap rather than
/// failing it; a swap succeeds 7 blocks after its sweep confirmed (above the deepest reorg).
const ENV: &[(&str, &str)] = &[
    ("SLUICE_SWAP_MAX_MINER_FEE_PPM", "100000"),
    ("SLUICE_SWAP_SWEEP_CONFIRMATIONS", "7"),
    ("SLUICE_AUTOLOOP_TICK", "3s"),
];

/// Manual swaps in flight at once, at most (autoloop adds up to two of its own).
const MAX_IN_FLIGHT: usize = 4;

/// Autoloop's policy: sluice's channels should hold at least 90 % inbound, which the campaign
/// never reaches, so autoloop keeps asking for swaps and its day budget is what stops it.
const POLICY: &str = "\
tz: UTC
defaults:
  band: { inbound_min: 90%, inbound_max: 100%, restore_to: 95% }
  swap: { min: 250k, max: 400k, conf_target: 6, htlc_confs: 1 }
  fees:
    max_total: 10%
    max_miner: 40k
    max_prepay: 30k
  backoff: { after_failure: 1m, shrink_amount_by: 25%, max_shrinks: 3 }
rules:
  - name: drain
    match: all
budgets:
  - name: campaign
    period: day
    limit: 60k
limits: { in_flight: 2, in_flight_per_target: 1 }
";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

fn terminal(state: &str) -> bool {
    state == "SUCCEEDED" || state.starts_with("FAILED")
}

/// What the campaign did, for the summary line and docs/reliability.md.
#[derive(Debug, Default)]
struct Tally {
    kills: u64,
    reorgs: u64,
    deepest_reorg: u64,
    fee_changes: u64,
    server_outages: u64,
    server_restarts: u64,
    /// Reorgs made while the daemon ran (the others while it was down).
    live_reorgs: u64,
    misbehaviours: u64,
    refused: u64,
    blocks: u64,
    /// What the node's peers paid it back, msat.
    refilled_msat: u64,
}

#[test]
fn a_seeded_fault_campaign_loses_nothing_and_reveals_nothing_early() {
    let seed = env_u64("SLUICE_CAMPAIGN_SEED", 1);
    let kills = env_u64("SLUICE_CAMPAIGN_KILLS", 8);
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let (simnet, _datadir, mut daemon) =
        crash_harness::setup_with_policy(MIN_AMOUNT, ENV, Some(POLICY));
    let before = settled(&simnet);
    let on = common::when_ready(|| daemon.cli(&["--json", "autoloop", "on"]));
    assert!(
        on.status.success(),
        "{}",
        String::from_utf8_lossy(&on.stderr)
    );
    // The campaign's swaps are Loop Outs: a Loop In misbehaviour would leave them honest.
    let misbehaviours: Vec<String> = simnet.run(&["misbehave", "--list"])["misbehaviours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .filter(|name| !name.starts_with("loop-in-"))
        .collect();
    assert!(!misbehaviours.is_empty());

    let mut ids: Vec<String> = Vec::new();
    let mut tally = Tally::default();
    while tally.kills < kills {
        match rng.gen_range(0..100) {
            0..=29 => {
                let in_flight = daemon
                    .swaps()
                    .iter()
                    .filter(|s| !terminal(s["state"].as_str().unwrap_or_default()))
                    .count();
                let in_flight = in_flight.saturating_sub(
                    daemon
                        .swaps()
                        .iter()
                        .filter(|s| {
                            s["initiator"] == "autoloop"
                                && !terminal(s["state"].as_str().unwrap_or_default())
                        })
                        .count(),
                );
                // The swaps spend the node's side of its channels; its peers pay some back, as
                // a routing node's traffic would.
                tally.refilled_msat += simnet.refill(2_000_000, 1_000_000);
                if in_flight < MAX_IN_FLIGHT {
                    let amount = MIN_AMOUNT + 50_000 * rng.gen_range(0..6);
                    match daemon.try_loop_out(amount) {
                        Ok(id) => ids.push(id),
                        // A misbehaving server's terms or a drained channel: refused before
                        // anything moved, which the funds check below confirms.
                        Err(_) => tally.refused += 1,
                    }
                }
            }
            30..=46 => {
                let n = rng.gen_range(1..=3);
                simnet.mine(n);
                tally.blocks += u64::from(n);
            }
            47..=54 => {
                // A reorg while the daemon runs: its watches see blocks disconnected and a
                // longer chain arrive, as lnd reports them.
                let depth = rng.gen_range(1..=6u32);
                simnet.run(&["reorg", &depth.to_string()]);
                simnet.mine(depth + 1);
                tally.reorgs += 1;
                tally.live_reorgs += 1;
                tally.deepest_reorg = tally.deepest_reorg.max(u64::from(depth));
                tally.blocks += u64::from(depth + 1);
            }
            55..=74 => {
                let reorg = rng.gen_bool(0.5).then(|| rng.gen_range(1..=6u32));
                let mine = rng.gen_range(0..=2u32);
                daemon = daemon.crash_and_restart(&simnet, || {
                    // The push of a preimage the daemon sent just before dying may still be
                    // on its way to the server: let it land before the chain changes.
                    std::thread::sleep(Duration::from_millis(200));
                    if let Some(depth) = reorg {
                        // A reorg is a longer chain winning: `depth` blocks go, `depth + 1`
                        // come. Reorgs that only took blocks away would add up, one kill after
                        // another, to a reorg deeper than any single draw (and than
                        // `sweep_confirmations`).
                        simnet.run(&["reorg", &depth.to_string()]);
                        simnet.mine(depth + 1);
                    }
                    if mine > 0 {
                        simnet.mine(mine);
                    }
                });
                tally.kills += 1;
                if let Some(depth) = reorg {
                    tally.reorgs += 1;
                    tally.deepest_reorg = tally.deepest_reorg.max(u64::from(depth));
                    tally.blocks += u64::from(depth + 1);
                }
                tally.blocks += u64::from(mine);
            }
            75..=84 => {
                let rate = [1u32, 2, 5, 20, 60][rng.gen_range(0..5)];
                simnet.run(&["fee", &rate.to_string()]);
                tally.fee_changes += 1;
            }
            85..=88 => {
                simnet.run(&["stop-node", "loop"]);
                std::thread::sleep(Duration::from_millis(rng.gen_range(100..800)));
                simnet.run(&["start-node", "loop"]);
                tally.server_outages += 1;
            }
            89..=91 => {
                // The swap server itself restarts: calls refused and status streams cut while
                // it is down; its swaps go on.
                let down = rng.gen_range(100..1_500u32);
                simnet.restart_server(&format!("{down}ms"));
                tally.server_restarts += 1;
            }
            _ => {
                if rng.gen_bool(0.4) {
                    simnet.run(&["misbehave", "--off"]);
                } else {
                    let name = &misbehaviours[rng.gen_range(0..misbehaviours.len())];
                    simnet.run(&["misbehave", name]);
                    tally.misbehaviours += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
    }

    // Wind down: an honest server and calm fees; mine until every swap has ended (expiries
    // included).
    let off = daemon.cli(&["--json", "autoloop", "off"]);
    assert!(
        off.status.success(),
        "{}",
        String::from_utf8_lossy(&off.stderr)
    );
    simnet.run(&["misbehave", "--off"]);
    simnet.run(&["fee", "2"]);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let swaps = daemon.swaps();
        let open: Vec<&Value> = swaps
            .iter()
            .filter(|s| !terminal(s["state"].as_str().unwrap_or_default()))
            .collect();
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "swaps still open after the wind-down: {open:?}\n{}",
            daemon.log()
        );
        simnet.mine(1);
        tally.blocks += 1;
        std::thread::sleep(Duration::from_millis(150));
    }
    // Seven more blocks, so every sweep (and every server claim) is as final as the daemon
    // requires, and the node's funds settle.
    simnet.mine(7);
    // Transactions still on their way (a server's timeout claim published late, a sweep
    // re-published after a live reorg) are mined too.
    let mut extra = 0;
    while !simnet.mempool().is_empty() && extra < 20 {
        std::thread::sleep(Duration::from_millis(300));
        simnet.mine(1);
        extra += 1;
    }
    tally.blocks += 7 + extra;
    let status = simnet.status();
    let after = std::panic::catch_unwind(|| settled(&simnet)).unwrap_or_else(|_| {
        panic!(
            "seed {seed}: the node's funds never settled: {status:#}\n{}",
            daemon.log()
        )
    });

    let swaps = daemon.swaps();
    for id in &ids {
        assert!(
            swaps.iter().any(|s| s["id"] == id.as_str()),
            "swap {id} is not listed: {swaps:?}"
        );
    }
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut costs_msat: i128 = 0;
    for s in &swaps {
        *outcomes
            .entry(s["state"].as_str().unwrap().to_owned())
            .or_default() += 1;
        let c = &s["costs"];
        let sat = c["server_sat"].as_i64().unwrap()
            + c["onchain_sat"].as_i64().unwrap()
            + c["offchain_sat"].as_i64().unwrap();
        costs_msat += i128::from(sat) * 1000;
    }
    let autoloop_swaps = swaps
        .iter()
        .filter(|s| s["initiator"] == "autoloop")
        .count();
    let lost_msat = i128::from(before.total_msat) + i128::from(tally.refilled_msat)
        - i128::from(after.total_msat);
    let payments = 2 * i128::try_from(swaps.len()).unwrap();
    let unrecorded_msat = lost_msat - costs_msat;
    println!(
        "fault campaign: seed {seed}, {} kills, {} reorgs ({} live, deepest {}), {} fee changes, {} \
         server lnd outages, {} server restarts, {} misbehaviours, {} refused, {} blocks, {} swaps ({autoloop_swaps} by \
         autoloop) {outcomes:?}, {} sat paid back by peers, lost {lost_msat} msat against {costs_msat} \
         msat recorded, {:.0} s",
        tally.kills,
        tally.reorgs,
        tally.live_reorgs,
        tally.deepest_reorg,
        tally.fee_changes,
        tally.server_outages,
        tally.server_restarts,
        tally.misbehaviours,
        tally.refused,
        tally.blocks,
        swaps.len(),
        tally.refilled_msat / 1000,
        started.elapsed().as_secs_f64(),
    );
    // Recorded costs are never below the truth, and above it only by the rounding of routing
    // fees (at most 999 msat per payment).
    assert!(
        unrecorded_msat <= 0 && -unrecorded_msat < payments * 1000,
        "seed {seed}: the node lost {lost_msat} msat but its swaps recorded {costs_msat} msat \
         (before: {}, after: {}): {swaps:#?}",
        before.node,
        after.node
    );

    // Autoloop's budget held: nothing spent above a limit, nothing left reserved.
    let budget = crash_harness::json(&daemon.cli(&["--json", "budget"])).unwrap();
    let lines = budget["lines"].as_array().unwrap();
    assert!(!lines.is_empty(), "{budget}");
    for line in lines {
        let spent = line["spent_sat"].as_u64().unwrap();
        assert!(
            spent <= line["limit_sat"].as_u64().unwrap(),
            "seed {seed}: a budget was exceeded: {line}"
        );
        assert_eq!(line["reserved_worst_sat"], 0, "seed {seed}: {line}");
    }

    let audit = simnet.run(&["audit"]);
    for learned in audit["learned"].as_array().unwrap() {
        assert_eq!(
            learned["valid_htlc_confirmed"], true,
            "seed {seed}: the server learned a preimage before a valid HTLC confirmed: \
             {learned}\n{swaps:#?}"
        );
    }
}
