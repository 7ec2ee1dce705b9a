//! Loop In on real nodes, with sluice as the client: sluiced on a real lnd, the reference Loop
//! server (`sluice loopserver`) on another real lnd, btcd regtest between them. `sluice in`
//! funds the HTLC from lnd's wallet, the server pays the node's invoice over real channels and
//! claims the HTLC by the key path with the key sluice pushed once its invoice settled; the
//! recorded costs equal what lncli says the node lost. Against a server that never pays, sluice
//! takes its HTLC back through the timeout leaf at the expiry, and loses exactly the two
//! on-chain fees it recorded. Autoloop: a channel above its band's upper edge gets a Loop In
//! through its peer that brings it back inside. Asked `--private`, the Loop In hints the node's
//! private channel to the server and in its invoice. A server that pays the invoice 1,000 sat
//! over (one HTLC sent by hand) leaves the node that surplus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod realnode_harness;

use std::time::Duration;

use common::{Daemon, poll};
use realnode_harness::{
    Miner, TestWorld, htlc_spend_witness_len, loopserver, move_liquidity_to_the_server_through,
    sluice_total,
};
use serde_json::Value;

const AMOUNT: u64 = 250_000;

/// The world with the server started with `extra` flags, sluiced on its node, and the node
/// given inbound liquidity (the server pays a Loop In over it). Returns the hash of the
/// payment that moved it.
fn start(
    extra_server: &[&str],
) -> Option<(TestWorld, realnode_harness::LoopServerProc, Daemon, String)> {
    start_through(extra_server, |_| None)
}

/// As [`start`], with the liquidity moved through the peer `last_hop` names (a node key), so
/// that the server can pay sluice back through that peer.
fn start_through(
    extra_server: &[&str],
    last_hop: impl Fn(&TestWorld) -> Option<String>,
) -> Option<(TestWorld, realnode_harness::LoopServerProc, Daemon, String)> {
    let w = realnode_harness::world()?;
    let server = loopserver(&w, extra_server);
    let config = w.write_sluice_yaml(Some(&server.addr)).unwrap();
    let daemon = Daemon::start_with_config(&config, &[]);
    poll("sluiced to see lnd", Duration::from_secs(60), || {
        let info = daemon.json(&["getinfo"]);
        (info["lnd"]["connected"].as_bool() == Some(true)).then_some(())
    });
    let moved = move_liquidity_to_the_server_through(&w, last_hop(&w).as_deref());
    Some((w, server, daemon, moved))
}

/// Starts a manual Loop In of [`AMOUNT`] (`sluice in --amt N --force`); returns its id.
fn loop_in(daemon: &Daemon) -> String {
    daemon.json(&["in", "--amt", &AMOUNT.to_string(), "--force"])["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits for the Loop In to reach `state` (panics on another terminal state).
fn wait_state(daemon: &Daemon, id: &str, state: &str, limit: Duration) -> Value {
    poll(&format!("loop in {id} to reach {state}"), limit, || {
        let v = daemon.json(&["swap", id]);
        let now = v["swap"]["state"].as_str().unwrap_or_default().to_owned();
        if now == state {
            return Some(v);
        }
        assert!(
            !matches!(now.as_str(), "SUCCEEDED") && !now.starts_with("FAILED"),
            "loop in {id} ended {now}, not {state}: {v}\n{}",
            daemon.stderr()
        );
        None
    })
}

/// The Loop In's swap invoice as sluice's lnd lists it.
fn swap_invoice(w: &TestWorld, swap: &Value) -> Value {
    let invoices = w.sluice.cli(&["listinvoices"]).unwrap();
    invoices["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["payment_request"] == swap["swap_invoice"])
        .cloned()
        .unwrap_or_else(|| panic!("the swap invoice in lnd: {invoices}"))
}

/// Waits until lncli's figures have settled (nothing unconfirmed in sluice's wallet).
fn settled_total(w: &TestWorld) -> u64 {
    poll("sluice's wallet to settle", Duration::from_secs(60), || {
        let wallet = w.sluice.cli(&["walletbalance"]).unwrap();
        (sluice::regtest::lnd::number(&wallet["unconfirmed_balance"]) == 0).then(|| sluice_total(w))
    })
}

/// What sluice's node paid over Lightning besides the payment that moved the liquidity: the
/// server's L402 token (a Loop In itself pays nothing off-chain), in sat, rounded up.
fn l402_paid(w: &TestWorld, moved: &str) -> i64 {
    let payments = w.sluice.cli(&["listpayments"]).unwrap();
    let n = sluice::regtest::lnd::number;
    let msat: u64 = payments["payments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "SUCCEEDED" && p["payment_hash"] != moved)
        .map(|p| n(&p["value_msat"]) + n(&p["fee_msat"]))
        .sum();
    i64::try_from(msat.div_ceil(1000)).unwrap()
}

/// The node lost exactly the Loop In's recorded costs (and the L402 token). lncli floors
/// channel balances to the sat and the token is rounded up: at most 2 sat apart.
fn assert_costs_match(w: &TestWorld, moved: &str, swap: &Value, before: u64, after: u64) -> i64 {
    let c = &swap["swap"]["costs"];
    let recorded = c["server_sat"].as_i64().unwrap() + c["onchain_sat"].as_i64().unwrap();
    assert_eq!(c["offchain_sat"].as_i64(), Some(0), "{c}");
    assert!(c["onchain_sat"].as_i64().unwrap() > 0, "{c}");
    let l402 = l402_paid(w, moved);
    let lost = i64::try_from(before).unwrap() - i64::try_from(after).unwrap();
    assert!(
        (lost - l402 - recorded).abs() <= 2,
        "the node lost {lost} sat: the Loop In recorded {recorded} ({c}) and the L402 token \
         cost {l402}"
    );
    recorded
}

#[test]
fn a_loop_in_completes_on_real_nodes_with_a_key_path_claim_and_exact_costs() {
    let Some((w, server, daemon, moved)) = start(&[]) else {
        return;
    };
    let before = sluice_total(&w);
    let quote = daemon.json(&["quote", "in", &AMOUNT.to_string()]);
    assert!(quote["swap_fee_sat"].as_u64().unwrap() > 0, "{quote}");
    let id = loop_in(&daemon);
    let done = {
        let _miner = Miner::start(&w, Duration::from_millis(1500));
        wait_state(&daemon, &id, "SUCCEEDED", Duration::from_secs(240))
    };
    assert_eq!(done["swap"]["type"], "LOOP_IN", "{done}");
    // The server claimed with the internal key sluice pushed after its invoice settled: one
    // Schnorr signature, checked by btcd.
    assert_eq!(
        htlc_spend_witness_len(&w, &done),
        1,
        "{done}\nsluiced:\n{}\nserver:\n{}",
        daemon.stderr(),
        server.proc.log_tail(80)
    );
    // lnd settled sluice's own invoice for the amount less the server's fee.
    let fee = done["swap"]["costs"]["server_sat"].as_u64().unwrap();
    let invoice = swap_invoice(&w, &done);
    assert_eq!(invoice["state"], "SETTLED", "{invoice}");
    assert_eq!(
        sluice::regtest::lnd::number(&invoice["amt_paid_sat"]),
        AMOUNT - fee,
        "{invoice}"
    );
    assert_costs_match(&w, &moved, &done, before, settled_total(&w));
}

#[test]
fn a_loop_in_the_server_never_pays_is_swept_back_through_the_timeout_leaf() {
    let Some((w, _server, daemon, moved)) = start(&[
        "--loop-in-cltv-delta",
        "100",
        "--misbehave",
        "loop-in-never-pays",
    ]) else {
        return;
    };
    let before = sluice_total(&w);
    let id = loop_in(&daemon);
    let done = {
        // Nothing races here (the server never pays): a block a second reaches the expiry
        // sooner.
        let _miner = Miner::start(&w, Duration::from_secs(1));
        wait_state(&daemon, &id, "FAILED_TIMEOUT", Duration::from_secs(480))
    };
    // sluice's timeout sweep: signature, leaf script, control block.
    assert_eq!(htlc_spend_witness_len(&w, &done), 3, "{done}");
    assert_eq!(
        done["swap"]["costs"]["server_sat"].as_i64(),
        Some(0),
        "{done}"
    );
    // The HTLC came back: the node lost only the funding and the sweep's fees.
    let recorded = assert_costs_match(&w, &moved, &done, before, settled_total(&w));
    assert!(recorded < 50_000, "{done}");
    // The never-paid invoice is canceled in lnd, so a late payment cannot settle it.
    let invoice = swap_invoice(&w, &done);
    assert_eq!(invoice["state"], "CANCELED", "{invoice}");
}

#[test]
fn a_loop_in_the_server_overpays_succeeds_and_the_node_keeps_the_surplus() {
    let Some((w, server, daemon, moved)) = start(&["--misbehave", "loop-in-pays-more"]) else {
        return;
    };
    let before = sluice_total(&w);
    let quote = daemon.json(&["quote", "in", &AMOUNT.to_string()]);
    let fee = quote["swap_fee_sat"].as_u64().unwrap();
    let id = loop_in(&daemon);
    let done = {
        let _miner = Miner::start(&w, Duration::from_millis(1500));
        wait_state(&daemon, &id, "SUCCEEDED", Duration::from_secs(240))
    };
    // The server sent one HTLC by hand (QueryRoutes, SendToRouteV2) for 1,000 sat more than
    // the invoice asks; lnd settled it for all of it.
    let invoice = swap_invoice(&w, &done);
    assert_eq!(invoice["state"], "SETTLED", "{invoice}");
    let surplus = sluice::loopserver::behaviour_in::OVERPAYMENT.0;
    assert_eq!(
        sluice::regtest::lnd::number(&invoice["amt_paid_sat"]),
        AMOUNT - fee + surplus,
        "{invoice}\nserver:\n{}",
        server.proc.log_tail(40)
    );
    assert_eq!(
        done["swap"]["costs"]["server_sat"].as_i64(),
        Some(i64::try_from(fee).unwrap() - i64::try_from(surplus).unwrap()),
        "{done}"
    );
    assert_costs_match(&w, &moved, &done, before, settled_total(&w));
}

/// A band whose upper edge (5 %) the channel that carried the liquidity payment (10 % inbound)
/// is above, restored to 4 %, with Loop In on (through the channel's peer) and Loop Out never wanted (nothing is
/// below 0 % inbound). lnd on regtest estimates its fallback of 25 sat/vB.
const POLICY: &str = "\
tz: UTC
defaults:
  band: { inbound_min: 0%, inbound_max: 5%, restore_to: 4% }
  loop_in:
    min: 100k
    max: 1M
    htlc_conf_target: 2
    fees: { max_total: 5%, max_miner: 50k }
rules:
  - name: routing
    match: all
budgets:
  - name: monthly
    period: month
    limit: 500k
limits: { in_flight: 1, in_flight_per_target: 1 }
";

#[test]
fn autoloop_loops_in_a_channel_above_its_band_on_real_nodes() {
    let Some((w, _server, daemon, _moved)) = start(&[]) else {
        return;
    };
    // The channel the payment went through: its peer now holds 1M of it.
    let chan = poll(
        "the payment in sluiced's channels",
        Duration::from_secs(60),
        || {
            daemon.json(&["channels"])["channels"]
                .as_array()?
                .iter()
                .find(|c| c["inbound_share_percent"].as_f64().unwrap_or(0.0) > 9.0)
                .cloned()
        },
    );
    let id = chan["chan_id"].as_str().unwrap().to_owned();
    let policies = daemon.dir().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("realnode.yaml"), POLICY).unwrap();
    let reload = common::when_ready(|| daemon.cli(&["policy", "reload"]));
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    common::when_ready(|| daemon.cli(&["autoloop"]));
    daemon.json(&["autoloop", "on"]);

    let done = {
        let _miner = Miner::start(&w, Duration::from_millis(1500));
        let dispatched = poll(
            "a dispatched Loop In in the journal",
            Duration::from_secs(120),
            || {
                daemon.json(&["journal", "--target", &id])["entries"]
                    .as_array()?
                    .iter()
                    .find(|e| e["reason"] == "swap" && e["swap_hash"].is_string())
                    .cloned()
            },
        );
        assert_eq!(dispatched["direction"], "in", "{dispatched}\n{chan}");
        let hash = dispatched["swap_hash"].as_str().unwrap().to_owned();
        wait_state(&daemon, &hash, "SUCCEEDED", Duration::from_secs(300))
    };
    assert_eq!(done["swap"]["type"], "LOOP_IN", "{done}");
    assert_eq!(done["swap"]["initiator"], "autoloop", "{done}");
    // Enough to bring the channel from 10 % inbound to 4 %.
    let amount = done["swap"]["amount_sat"].as_u64().unwrap();
    assert!((550_000..=650_000).contains(&amount), "{done}");
    // The server paid through the channel's peer: the channel is back inside its band.
    let after = poll(
        "the channel back inside its band",
        Duration::from_secs(60),
        || {
            daemon.json(&["channels"])["channels"]
                .as_array()?
                .iter()
                .find(|c| c["chan_id"] == id.as_str())
                .filter(|c| c["inbound_share_percent"].as_f64().unwrap_or(100.0) <= 5.0 + 0.01)
                .cloned()
        },
    );
    assert!(
        after["remote_balance_sat"].as_u64().unwrap()
            < chan["remote_balance_sat"].as_u64().unwrap(),
        "{chan} -> {after}"
    );
}

/// A private channel into the node: `sluice quote in --private --last-hop PEER` hints exactly
/// that channel (real lnd's `GetNodeInfo` and `GetChanInfo` read by sluice), `sluice in
/// --private` puts the hint, with the peer's own policy, in the swap invoice as lnd encodes
/// it, and the swap completes.
#[test]
fn a_loop_in_asked_private_hints_the_private_channel_and_completes() {
    // The server reaches peer2 only over its own channel with peer2, which has outbound for
    // the server only once a payment came in through it.
    let Some((mut w, _server, daemon, _moved)) =
        start_through(&[], |w| Some(w.peer2.pubkey.clone()))
    else {
        return;
    };
    let peer = w.peer2.pubkey.clone();
    w.peer2
        .open_private_channel(&w.sluice, 1_000_000, 0)
        .unwrap();
    w.mine(6).unwrap();
    let chan: u64 = poll(
        "the private channel in sluiced",
        Duration::from_secs(60),
        || {
            daemon.json(&["channels"])["channels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["private"] == true && c["active"] == true)
                .and_then(|c| c["chan_id_numeric"].as_u64())
        },
    );
    // lnd learns the peer's policy for the new channel a moment after it is active; until
    // then the channel cannot be hinted and the quote says so.
    let quote = poll(
        "a quote hinting the private channel",
        Duration::from_secs(60),
        || {
            daemon.try_json(&[
                "quote",
                "in",
                &AMOUNT.to_string(),
                "--private",
                "--last-hop",
                &peer,
            ])
        },
    );
    assert_eq!(
        quote["hinted_chan_ids"],
        serde_json::json!([chan]),
        "{quote}"
    );
    let id = daemon.json(&[
        "in",
        "--amt",
        &AMOUNT.to_string(),
        "--private",
        "--last-hop",
        &peer,
        "--force",
    ])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = {
        let _miner = Miner::start(&w, Duration::from_millis(1500));
        wait_state(&daemon, &id, "SUCCEEDED", Duration::from_secs(240))
    };
    let invoice = done["swap_invoice"].as_str().unwrap();
    let decoded = w.sluice.cli(&["decodepayreq", invoice]).unwrap();
    let hops: Vec<&Value> = decoded["route_hints"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["hop_hints"].as_array().unwrap())
        .collect();
    let ours = hops
        .iter()
        .find(|h| sluice::regtest::lnd::number(&h["chan_id"]) == chan)
        .unwrap_or_else(|| panic!("the private channel hinted: {decoded}"));
    assert_eq!(ours["node_id"], peer.as_str(), "{decoded}");
    let policy = w
        .peer2
        .cli(&["getchaninfo", "--chan_id", &chan.to_string()])
        .unwrap();
    let theirs = if policy["node1_pub"] == peer.as_str() {
        &policy["node1_policy"]
    } else {
        &policy["node2_policy"]
    };
    assert_eq!(
        sluice::regtest::lnd::number(&ours["fee_proportional_millionths"]),
        sluice::regtest::lnd::number(&theirs["fee_rate_milli_msat"]),
        "{decoded} {policy}"
    );
    assert_eq!(
        sluice::regtest::lnd::number(&ours["cltv_expiry_delta"]),
        sluice::regtest::lnd::number(&theirs["time_lock_delta"]),
        "{decoded} {policy}"
    );
}
