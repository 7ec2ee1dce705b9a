//! Crash safety, reorgs and a fee spike, through the real binaries: a simnet served by
//! `sluice simnet serve` in its own process (blocks only on `sluice simnet mine`, no traffic),
//! and `sluiced --config <its sluice.yaml>` killed with SIGKILL and restarted on the same
//! datadir. Every swap must reach SUCCEEDED, and the "sluice" node's wallet plus channel balance
//! must go down by exactly the costs the swap recorded: nothing is lost across a crash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod crash_harness;

use std::time::Duration;

use common::poll;
use crash_harness::{Funds, LIMIT, Simnet, Sluiced, settled};
use serde_json::Value;

/// The amount of every swap.
const AMOUNT: u64 = 250_000;

/// Swaps may pay miners up to 10 % of the amount (the default ceiling is 2 %), so the fee spike
/// below still fits the swap's max_miner_fee and allows the reveal.
const ENV: &[(&str, &str)] = &[("SLUICE_SWAP_MAX_MINER_FEE_PPM", "100000")];

fn setup() -> (Simnet, tempfile::TempDir, Sluiced) {
    crash_harness::setup(AMOUNT, ENV)
}

/// Waits for the HTLC to be published (the only transaction in the mempool) while the swap
/// is still INITIATED; answers its txid.
fn htlc_published(simnet: &Simnet, daemon: &Sluiced, id: &str) -> String {
    poll("the HTLC in the mempool", LIMIT, || {
        let mempool = simnet.mempool();
        assert_eq!(daemon.state(id), "INITIATED");
        (mempool.len() == 1).then(|| mempool[0].clone())
    })
}

/// Polls until the swap is in `state`.
fn wait_state(daemon: &Sluiced, id: &str, state: &str) -> Value {
    poll(&format!("swap {id} in {state}"), LIMIT, || {
        (daemon.state(id) == state).then(|| daemon.swap(id))
    })
}

/// Drives the swap to SUCCEEDED, mining a block whenever a transaction waits or the spend
/// needs confirmations (never while the swap waits on something off chain).
fn drive_to_success(simnet: &Simnet, daemon: &Sluiced, id: &str) -> Value {
    drive_to(simnet, daemon, id, "SUCCEEDED")
}

/// Like [`drive_to_success`], up to `target`.
fn drive_to(simnet: &Simnet, daemon: &Sluiced, id: &str, target: &str) -> Value {
    poll(&format!("swap {id} to reach {target}"), LIMIT, || {
        let state = daemon.state(id);
        if state == target {
            return Some(daemon.swap(id));
        }
        if state == "SPEND_CONFIRMING" || !simnet.mempool().is_empty() {
            simnet.mine(1);
        }
        std::thread::sleep(Duration::from_millis(200));
        None
    })
}

/// Checks a succeeded swap against the funds before it: the node is down by exactly the
/// recorded costs (server fee, on-chain fee, routing fees), and the sweep paid us.
fn assert_costs_match_funds(simnet: &Simnet, info: &Value, before: Funds, what: &str) -> i64 {
    let after = settled(simnet);
    let costs = &info["swap"]["costs"];
    let server = costs["server_sat"].as_i64().unwrap();
    let onchain = costs["onchain_sat"].as_i64().unwrap();
    let offchain = costs["offchain_sat"].as_i64().unwrap();
    assert!(server > 0, "{what}: {info}");
    assert!(onchain > 0, "{what}: {info}");
    assert!(!info["sweep_txid"].as_str().unwrap().is_empty(), "{info}");
    assert_eq!(info["htlc_value_sat"], AMOUNT, "{info}");
    let lost_msat = i128::from(before.total_msat) - i128::from(after.total_msat);
    let costs_msat = i128::from(server + onchain + offchain) * 1000;
    // Routing fees are paid in msat and recorded in whole sat, rounded up per payment so the
    // record is never below the truth: at most 999 msat over for each of the two payments.
    assert!(
        (0..2000).contains(&(costs_msat - lost_msat)),
        "{what}: the node lost {lost_msat} msat but the swap recorded {costs_msat} msat: {info}"
    );
    onchain
}

/// Asserts the swap passed through the given states in order (its recorded history).
fn assert_history(info: &Value, expected: &[&str]) {
    let seen: Vec<&str> = info["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(dedup, expected, "history {seen:?}");
}

/// Where in a swap's life `sluiced` is killed.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Right after `sluice out` answered: payments being made, nothing on chain.
    PaymentsInFlight,
    /// The HTLC waits in the mempool; it is still there at the restart.
    HtlcPublished,
    /// The HTLC waits in the mempool; it confirms while the daemon is down.
    HtlcConfirmed,
    /// Just after the reveal was stored; a block is mined while the daemon is down.
    PreimageRevealed,
    /// The sweep waits in the mempool; it confirms while the daemon is down.
    SweepPublished,
    /// The sweep has one confirmation; it becomes final while the daemon is down.
    SpendConfirming,
}

#[test]
fn sigkill_at_every_swap_state_loses_nothing() {
    let (simnet, _datadir, mut daemon) = setup();
    for kill_at in [
        KillAt::PaymentsInFlight,
        KillAt::HtlcPublished,
        KillAt::HtlcConfirmed,
        KillAt::PreimageRevealed,
        KillAt::SweepPublished,
        KillAt::SpendConfirming,
    ] {
        let before = settled(&simnet);
        let id = daemon.loop_out(AMOUNT);
        daemon = match kill_at {
            KillAt::PaymentsInFlight => {
                assert_eq!(daemon.state(&id), "INITIATED");
                daemon.crash_and_restart(&simnet, || {})
            }
            KillAt::HtlcPublished => {
                let htlc = htlc_published(&simnet, &daemon, &id);
                let daemon = daemon.crash_and_restart(&simnet, || {});
                assert_eq!(
                    simnet.mempool(),
                    vec![htlc],
                    "the HTLC is still unconfirmed"
                );
                daemon
            }
            KillAt::HtlcConfirmed => {
                htlc_published(&simnet, &daemon, &id);
                daemon.crash_and_restart(&simnet, || {
                    simnet.mine(1);
                })
            }
            KillAt::PreimageRevealed => {
                htlc_published(&simnet, &daemon, &id);
                simnet.mine(1);
                wait_state(&daemon, &id, "PREIMAGE_REVEALED");
                daemon.crash_and_restart(&simnet, || {
                    simnet.mine(1);
                })
            }
            KillAt::SweepPublished => {
                htlc_published(&simnet, &daemon, &id);
                simnet.mine(1);
                wait_state(&daemon, &id, "PREIMAGE_REVEALED");
                poll("the sweep in the mempool", LIMIT, || {
                    (simnet.mempool().len() == 1).then_some(())
                });
                daemon.crash_and_restart(&simnet, || {
                    simnet.mine(1);
                })
            }
            KillAt::SpendConfirming => {
                htlc_published(&simnet, &daemon, &id);
                simnet.mine(1);
                poll("the sweep in the mempool", LIMIT, || {
                    (simnet.mempool().len() == 1).then_some(())
                });
                simnet.mine(1);
                wait_state(&daemon, &id, "SPEND_CONFIRMING");
                daemon.crash_and_restart(&simnet, || {
                    simnet.mine(3);
                })
            }
        };
        let info = drive_to_success(&simnet, &daemon, &id);
        match kill_at {
            // A stored spend is re-checked against the chain at the restart: the swap goes
            // back to sweeping until the spend watch reports the spend, final by then.
            KillAt::SpendConfirming => assert_history(
                &info,
                &[
                    "INITIATED",
                    "PREIMAGE_REVEALED",
                    "SPEND_CONFIRMING",
                    "PREIMAGE_REVEALED",
                    "SUCCEEDED",
                ],
            ),
            KillAt::PaymentsInFlight
            | KillAt::HtlcPublished
            | KillAt::HtlcConfirmed
            | KillAt::PreimageRevealed
            | KillAt::SweepPublished => assert_history(
                &info,
                &[
                    "INITIATED",
                    "PREIMAGE_REVEALED",
                    "SPEND_CONFIRMING",
                    "SUCCEEDED",
                ],
            ),
        }
        assert_costs_match_funds(&simnet, &info, before, &format!("{kill_at:?}"));
    }
}

/// The swap server restarts (down 3 s: calls refused, status streams cut) while a swap waits
/// on each of its steps: the swap still ends SUCCEEDED and loses nothing.
#[test]
fn a_swap_server_restart_at_every_step_loses_nothing() {
    let (simnet, _datadir, daemon) = setup();
    for at in [
        "INITIATED",
        "HTLC_PUBLISHED",
        "PREIMAGE_REVEALED",
        "SWEEP_PUBLISHED",
    ] {
        let before = settled(&simnet);
        let id = daemon.loop_out(AMOUNT);
        match at {
            "INITIATED" => {}
            "HTLC_PUBLISHED" => {
                htlc_published(&simnet, &daemon, &id);
            }
            "PREIMAGE_REVEALED" => {
                htlc_published(&simnet, &daemon, &id);
                simnet.mine(1);
                wait_state(&daemon, &id, "PREIMAGE_REVEALED");
            }
            _ => {
                htlc_published(&simnet, &daemon, &id);
                simnet.mine(1);
                wait_state(&daemon, &id, "PREIMAGE_REVEALED");
                poll("the sweep in the mempool", LIMIT, || {
                    (simnet.mempool().len() == 1).then_some(())
                });
            }
        }
        simnet.restart_server("3s");
        let info = drive_to_success(&simnet, &daemon, &id);
        assert_history(
            &info,
            &[
                "INITIATED",
                "PREIMAGE_REVEALED",
                "SPEND_CONFIRMING",
                "SUCCEEDED",
            ],
        );
        assert_costs_match_funds(&simnet, &info, before, &format!("server restart at {at}"));
    }
}

#[test]
fn reorgs_before_and_after_the_reveal_end_in_success() {
    let (simnet, _datadir, mut daemon) = setup();

    // Before the reveal: the HTLC confirms and is reorged out while the daemon is down. After
    // the restart the client must wait for it to confirm again before revealing.
    let before = settled(&simnet);
    let id = daemon.loop_out(AMOUNT);
    let htlc = htlc_published(&simnet, &daemon, &id);
    daemon = daemon.crash_and_restart(&simnet, || {
        simnet.mine(1);
        assert!(simnet.mempool().is_empty(), "the HTLC confirmed");
        let reorged = simnet.run(&["reorg", "1"]);
        assert_eq!(reorged["returned_to_mempool"], 1, "{reorged}");
    });
    assert_eq!(simnet.mempool(), vec![htlc.clone()]);
    let info = daemon.swap(&id);
    assert_eq!(
        info["swap"]["state"], "INITIATED",
        "revealed on a reorged HTLC: {info}"
    );
    assert_eq!(info["htlc_outpoint"], "", "{info}");
    let reconfirmed_at = simnet.mine(1);
    let revealed = wait_state(&daemon, &id, "PREIMAGE_REVEALED");
    assert_eq!(
        revealed["htlc_outpoint"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some(htlc.as_str()),
        "{revealed}"
    );
    assert!(simnet.height() >= reconfirmed_at);
    let info = drive_to_success(&simnet, &daemon, &id);
    assert_costs_match_funds(&simnet, &info, before, "reorg before the reveal");

    // After the reveal: the block with the HTLC is reorged out while our sweep waits in the
    // mempool; then, once a sweep confirmed, its block is reorged out too (the swap goes back
    // from SPEND_CONFIRMING to PREIMAGE_REVEALED). The client keeps sweeping and succeeds.
    let before = settled(&simnet);
    let id = daemon.loop_out(AMOUNT);
    htlc_published(&simnet, &daemon, &id);
    simnet.mine(1);
    wait_state(&daemon, &id, "PREIMAGE_REVEALED");
    poll("the sweep in the mempool", LIMIT, || {
        (simnet.mempool().len() == 1).then_some(())
    });
    // The HTLC returns to the mempool; the sweep, locked to the old tip's height against fee
    // sniping, is not final on the shorter chain and is dropped, as bitcoind drops it: the
    // client must publish it again.
    let reorged = simnet.run(&["reorg", "1"]);
    assert_eq!(reorged["returned_to_mempool"], 1, "{reorged}");
    assert_eq!(simnet.mempool().len(), 1, "only the HTLC waits");
    assert_eq!(daemon.state(&id), "PREIMAGE_REVEALED");
    drive_to(&simnet, &daemon, &id, "SPEND_CONFIRMING");
    let reorged = simnet.run(&["reorg", "1"]);
    assert!(
        reorged["returned_to_mempool"].as_u64() >= Some(1),
        "{reorged}"
    );
    let info = wait_state(&daemon, &id, "PREIMAGE_REVEALED");
    assert_eq!(info["sweep_txid"], "", "the spend was reorged out: {info}");
    let info = drive_to_success(&simnet, &daemon, &id);
    assert_history(
        &info,
        &[
            "INITIATED",
            "PREIMAGE_REVEALED",
            "SPEND_CONFIRMING",
            "PREIMAGE_REVEALED",
            "SPEND_CONFIRMING",
            "SUCCEEDED",
        ],
    );
    assert_costs_match_funds(&simnet, &info, before, "reorg after the reveal");
}

#[test]
fn a_fee_spike_25_blocks_before_expiry_still_gets_the_sweep_confirmed() {
    let (simnet, _datadir, mut daemon) = setup();

    // A swap at the ordinary fee, for comparison.
    let before = settled(&simnet);
    let id = daemon.loop_out(AMOUNT);
    let info = drive_to_success(&simnet, &daemon, &id);
    let calm_onchain = assert_costs_match_funds(&simnet, &info, before, "calm swap");

    // The daemon is down from the HTLC's publication until 25 blocks before the expiry, so
    // the sweep is still to be made then; the fee rate jumps while it is down.
    let before = settled(&simnet);
    let id = daemon.loop_out(AMOUNT);
    htlc_published(&simnet, &daemon, &id);
    let info = daemon.swap(&id);
    let expiry = info["expiry_height"].as_u64().unwrap();
    let max_miner_fee = info["limits"]["max_miner_fee_sat"].as_i64().unwrap();
    let calm_rate = simnet.status()["fee_sat_per_kw"].as_u64().unwrap();
    daemon = daemon.crash_and_restart(&simnet, || {
        let tip = simnet.height();
        assert!(expiry > tip + 25, "expiry {expiry} too close to tip {tip}");
        simnet.mine(u32::try_from(expiry - 25 - tip).unwrap());
        assert_eq!(simnet.height(), expiry - 25);
        // 100 sat/vB: the heaviest sweep then costs about 16,000 sat, within the swap's
        // max_miner_fee and a fifth of the HTLC, so the preimage may still be revealed.
        simnet.run(&["fee", "100"]);
    });
    let spiked_rate = simnet.status()["fee_sat_per_kw"].as_u64().unwrap();
    assert!(spiked_rate >= 10 * calm_rate, "{calm_rate} → {spiked_rate}");

    wait_state(&daemon, &id, "PREIMAGE_REVEALED");
    poll("the sweep in the mempool", LIMIT, || {
        (simnet.mempool().len() == 1).then_some(())
    });
    let swept_at = simnet.mine(1);
    assert!(swept_at < expiry);
    wait_state(&daemon, &id, "SPEND_CONFIRMING");
    let info = drive_to_success(&simnet, &daemon, &id);
    let spiked_onchain = assert_costs_match_funds(&simnet, &info, before, "fee spike");
    // The rate rose 10-fold; the sweep's fee follows it (the same sweep weight).
    assert!(
        spiked_onchain >= 10 * calm_onchain,
        "the sweep paid {spiked_onchain} sat in the spike, {calm_onchain} sat before: {info}"
    );
    assert!(
        spiked_onchain <= max_miner_fee,
        "25 blocks out the miner-fee cap of {max_miner_fee} sat still holds: {info}"
    );
}
