//! Loop In's crash safety through the real binaries, as `swap_crash` checks Loop Out's: a simnet
//! served by `sluice simnet serve` in its own process (blocks only on `sluice simnet mine`, no
//! traffic), and `sluiced --config <its sluice.yaml>` killed with SIGKILL at every Loop In state
//! and restarted on the same datadir. While it is down, its store is read: what it saved must
//! already account for what it did outside (the HTLC funded, with its fee; the timeout sweep
//! published). Every swap must end in the state its server's behaviour calls for, with a
//! history the state machine allows (`docs/loop-in-fsm.md`), its HTLC funded once across every
//! restart, and the "sluice" node's wallet plus channel balance moved by exactly the costs the
//! swap recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod crash_harness;

use std::collections::BTreeSet;
use std::time::Duration;

use common::poll;
use crash_harness::{Funds, LIMIT, Simnet, Sluiced, load_loop_in, settled};
use serde_json::Value;
use sluice::api::swaps::loop_in_state_name;
use sluice::swap::loop_in::{InvoiceStatus, LoopInState, diagram};

/// The amount of every Loop In: the HTLC value the node's wallet funds.
const AMOUNT: u64 = 100_000;

fn setup() -> (Simnet, tempfile::TempDir, Sluiced) {
    crash_harness::setup(AMOUNT, &[])
}

/// Every change of state the Loop In state machine makes, by the names the API shows: the
/// edges of `docs/loop-in-fsm.md`, explored from `step` as that document is drawn.
fn fsm_edges() -> BTreeSet<(&'static str, &'static str)> {
    let contract = diagram::sample_contract().unwrap();
    diagram::explore(&contract, &diagram::alphabet(&contract))
        .edges
        .iter()
        .map(|e| (loop_in_state_name(e.from), loop_in_state_name(e.to)))
        .collect()
}

/// The swap's recorded states, a state saved several times in a row counted once.
fn history(info: &Value) -> Vec<String> {
    let mut seen: Vec<String> = info["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap().to_owned())
        .collect();
    seen.dedup();
    seen
}

/// Asserts every change of state in the swap's history is one the state machine makes, and
/// that the history is one of `expected`.
fn assert_history(info: &Value, edges: &BTreeSet<(&str, &str)>, expected: &[&[&str]]) {
    let seen = history(info);
    for pair in seen.windows(2) {
        assert!(
            edges.contains(&(pair[0].as_str(), pair[1].as_str())),
            "{} → {} is no transition of the Loop In state machine: {seen:?}",
            pair[0],
            pair[1]
        );
    }
    assert!(
        expected.iter().any(|e| seen == *e),
        "history {seen:?}, expected one of {expected:?}"
    );
}

/// A paid swap's histories: `HTLC_CONFIRMED` shows unless the server's payment is reported
/// before the confirmation (both watches run at once).
const PAID: &[&[&str]] = &[
    &[
        "INITIATED",
        "HTLC_PUBLISHED",
        "HTLC_CONFIRMED",
        "INVOICE_SETTLED",
        "SUCCEEDED",
    ],
    &[
        "INITIATED",
        "HTLC_PUBLISHED",
        "INVOICE_SETTLED",
        "SUCCEEDED",
    ],
];

/// Polls until the swap is in `state`.
fn wait_state(daemon: &Sluiced, id: &str, state: &str) -> Value {
    poll(&format!("loop in {id} in {state}"), LIMIT, || {
        (daemon.state_any(id) == state).then(|| daemon.swap(id))
    })
}

/// Waits until the HTLC's funding is recorded (its fee is the swap's on-chain cost) and the
/// HTLC waits in the mempool, alone; answers its txid.
fn htlc_funded(simnet: &Simnet, daemon: &Sluiced, id: &str) -> String {
    poll("the HTLC funded and recorded", LIMIT, || {
        let info = daemon.swap(id);
        let state = info["swap"]["state"].as_str().unwrap().to_owned();
        assert!(
            state == "INITIATED" || state == "HTLC_PUBLISHED",
            "{info}\n{}",
            daemon.log()
        );
        let recorded = info["swap"]["costs"]["onchain_sat"].as_u64().unwrap() > 0;
        let mempool = simnet.mempool();
        (recorded && mempool.len() == 1).then(|| mempool[0].clone())
    })
}

/// Waits until a transaction waits in the mempool, alone (the HTLC's spend); answers its txid.
fn spend_in_mempool(simnet: &Simnet) -> String {
    poll("the HTLC's spend in the mempool", LIMIT, || {
        let mempool = simnet.mempool();
        (mempool.len() == 1).then(|| mempool[0].clone())
    })
}

/// Drives the swap to `target`: mines a block whenever a transaction waits in the mempool or
/// the swap waits for its HTLC's spend to deepen (`INVOICE_SETTLED`, `TIMEOUT_SWEEPING`), never
/// while it waits for the server's payment; fails if it ends anywhere else.
fn drive_to(simnet: &Simnet, daemon: &Sluiced, id: &str, target: &str) -> Value {
    poll(&format!("loop in {id} to reach {target}"), LIMIT, || {
        let info = daemon.swap(id);
        let state = info["swap"]["state"].as_str().unwrap();
        if state == target {
            return Some(info);
        }
        assert!(
            !(state == "SUCCEEDED" || state.starts_with("FAILED")),
            "ended in {state}, not {target}: {info}\n{}",
            daemon.log()
        );
        if state == "INVOICE_SETTLED" || state == "TIMEOUT_SWEEPING" || !simnet.mempool().is_empty()
        {
            simnet.mine(1);
        }
        std::thread::sleep(Duration::from_millis(200));
        None
    })
}

/// The node's funds moved by exactly the costs the swap recorded (a Loop In pays no routing
/// fee: the server pays the invoice); answers (server, on-chain) costs in sat.
fn assert_costs_match_funds(
    simnet: &Simnet,
    info: &Value,
    before: &Funds,
    what: &str,
) -> (i64, u64) {
    let after = settled(simnet);
    let costs = &info["swap"]["costs"];
    let server = costs["server_sat"].as_i64().unwrap();
    let onchain = costs["onchain_sat"].as_u64().unwrap();
    assert_eq!(costs["offchain_sat"], 0, "{what}: {info}");
    assert!(onchain > 0, "{what}: the funding fee is recorded: {info}");
    let lost_msat = i128::from(before.total_msat) - i128::from(after.total_msat);
    let costs_msat = (i128::from(server) + i128::from(onchain)) * 1000;
    assert_eq!(
        lost_msat, costs_msat,
        "{what}: the node lost {lost_msat} msat but the swap recorded {costs_msat} msat: {info}\n\
         before {:?}\nafter {:?}",
        before.node, after.node
    );
    (server, onchain)
}

/// The HTLC was funded once across every run: one funding logged, none refused or lost.
fn assert_funded_once(daemon: &Sluiced, id: &str) {
    let logs = daemon.all_logs();
    let ours = |what: &str| {
        logs.lines()
            .filter(|l| l.contains(id) && l.contains(what))
            .count()
    };
    assert_eq!(ours("loop in HTLC funded"), 1, "{logs}");
    assert_eq!(ours("the funding call failed"), 0, "{logs}");
    assert_eq!(ours("the wallet refused to fund"), 0, "{logs}");
}

/// What every saved progress says about the funding: set once and never changed.
fn assert_one_funding(history: &[sluice::store::loop_in::LoopInUpdateRecord]) {
    let fundings: BTreeSet<_> = history
        .iter()
        .filter_map(|u| u.progress.funding.map(|f| (f.txid, f.fee)))
        .collect();
    assert!(fundings.len() <= 1, "the funding changed: {fundings:?}");
}

/// Where in a paid Loop In's life `sluiced` is killed.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Created and stored, nothing funded: lnd's funding estimate is above the swap's
    /// `max_miner_fee` until the fees fall, which they do while the daemon is down.
    Created,
    /// The HTLC funded and recorded, in the mempool; still there at the restart.
    HtlcInMempool,
    /// The HTLC funded; it confirms and the server pays while the daemon is down, so the key
    /// leaves only after the restart.
    PaidWhileDown,
    /// `HTLC_CONFIRMED`, waiting for the server's payment (its lnd stopped); it pays after the
    /// restart.
    WaitingForPayment,
    /// `INVOICE_SETTLED`, the key refused by the server (`loop-in-push-key-error`): pushed again
    /// after the restart, while the server claims by the success leaf.
    SettledKeyRefused,
    /// `INVOICE_SETTLED`, the key pushed, the server's claim in the mempool (by the key path,
    /// unless the server counted its block of waiting for the key first); it confirms while the
    /// daemon is down.
    KeyPushed,
    /// The server's claim confirmed once (the spend recorded); final while the daemon is down.
    ClaimConfirming,
}

#[test]
fn sigkill_at_every_loop_in_state_ends_succeeded_and_loses_nothing() {
    let (simnet, datadir, mut daemon) = setup();
    let datadir = datadir.path().to_owned();
    let edges = fsm_edges();
    let calm = (simnet.status()["fee_sat_per_kw"].as_u64().unwrap() / 250).max(1);
    for kill_at in [
        KillAt::Created,
        KillAt::HtlcInMempool,
        KillAt::PaidWhileDown,
        KillAt::WaitingForPayment,
        KillAt::SettledKeyRefused,
        KillAt::KeyPushed,
        KillAt::ClaimConfirming,
    ] {
        let what = format!("{kill_at:?}");
        let before = settled(&simnet);
        let id = match kill_at {
            KillAt::Created => {
                // The limits `sluice in` would bind now; then the fees rise tenfold, so the
                // funding no longer fits max_miner_fee and waits.
                let quote = json(&daemon, &["quote", "in", &AMOUNT.to_string()]);
                simnet.run(&["fee", &(calm * 10).to_string()]);
                daemon.loop_in_with_limits(
                    AMOUNT,
                    quote["max_swap_fee_sat"].as_u64().unwrap(),
                    quote["max_miner_fee_sat"].as_u64().unwrap(),
                )
            }
            KillAt::SettledKeyRefused => {
                simnet.run(&["misbehave", "loop-in-push-key-error"]);
                let id = daemon.loop_in(AMOUNT);
                simnet.run(&["misbehave", "--off"]);
                id
            }
            KillAt::HtlcInMempool
            | KillAt::PaidWhileDown
            | KillAt::WaitingForPayment
            | KillAt::KeyPushed
            | KillAt::ClaimConfirming => daemon.loop_in(AMOUNT),
        };
        daemon = match kill_at {
            KillAt::Created => {
                // Long enough for the driver to have asked for the estimate and declined.
                std::thread::sleep(Duration::from_secs(1));
                assert_eq!(daemon.state_any(&id), "INITIATED");
                assert!(
                    simnet.mempool().is_empty(),
                    "funded above its max_miner_fee"
                );
                daemon.crash_and_restart(&simnet, || {
                    let (stored, _) = load_loop_in(&datadir, &id);
                    assert_eq!(stored.progress.state, LoopInState::Initiated);
                    assert_eq!(stored.progress.funding, None);
                    simnet.run(&["fee", &calm.to_string()]);
                })
            }
            KillAt::HtlcInMempool => {
                let htlc = htlc_funded(&simnet, &daemon, &id);
                let daemon = daemon.crash_and_restart(&simnet, || {
                    let (stored, _) = load_loop_in(&datadir, &id);
                    assert_eq!(stored.progress.state, LoopInState::HtlcPublished);
                    let funding = stored.progress.funding.expect("the funding is recorded");
                    assert_eq!(funding.txid.to_string(), htlc);
                });
                // Resumed, it watches the HTLC it funded: nothing else is published.
                std::thread::sleep(Duration::from_secs(1));
                assert_eq!(simnet.mempool(), vec![htlc], "the HTLC alone, unconfirmed");
                daemon
            }
            KillAt::PaidWhileDown => {
                htlc_funded(&simnet, &daemon, &id);
                let local = before.node["channel_local_msat"].as_u64().unwrap();
                daemon.crash_and_restart(&simnet, || {
                    simnet.mine(1);
                    poll("the server to pay while sluiced is down", LIMIT, || {
                        let funds = simnet.funds();
                        (funds.pending_htlcs == 0
                            && funds.node["channel_local_msat"].as_u64().unwrap() > local)
                            .then_some(())
                    });
                    let (stored, _) = load_loop_in(&datadir, &id);
                    assert_eq!(stored.progress.state, LoopInState::HtlcPublished);
                    assert!(!stored.progress.invoice_settled());
                })
            }
            KillAt::WaitingForPayment => {
                htlc_funded(&simnet, &daemon, &id);
                simnet.run(&["stop-node", "loop"]);
                simnet.mine(1);
                wait_state(&daemon, &id, "HTLC_CONFIRMED");
                let daemon = daemon.crash_and_restart(&simnet, || {
                    let (stored, _) = load_loop_in(&datadir, &id);
                    assert_eq!(stored.progress.state, LoopInState::HtlcConfirmed);
                    assert_eq!(stored.progress.invoice, InvoiceStatus::Open);
                });
                assert_eq!(daemon.state_any(&id), "HTLC_CONFIRMED");
                simnet.run(&["start-node", "loop"]);
                daemon
            }
            KillAt::SettledKeyRefused => {
                htlc_funded(&simnet, &daemon, &id);
                simnet.mine(1);
                wait_state(&daemon, &id, "INVOICE_SETTLED");
                daemon.crash_and_restart(&simnet, || {
                    let (stored, _) = load_loop_in(&datadir, &id);
                    assert_eq!(stored.progress.state, LoopInState::InvoiceSettled);
                    assert!(
                        !stored.progress.key_push_acked,
                        "the server refused the key"
                    );
                    // The server waits a block for the key, then claims by the success leaf.
                    simnet.mine(1);
                })
            }
            KillAt::KeyPushed => {
                htlc_funded(&simnet, &daemon, &id);
                simnet.mine(1);
                wait_state(&daemon, &id, "INVOICE_SETTLED");
                spend_in_mempool(&simnet);
                daemon.crash_and_restart(&simnet, || {
                    let (stored, _) = load_loop_in(&datadir, &id);
                    assert_eq!(stored.progress.state, LoopInState::InvoiceSettled);
                    assert!(stored.progress.invoice_settled());
                    simnet.mine(1);
                })
            }
            KillAt::ClaimConfirming => {
                htlc_funded(&simnet, &daemon, &id);
                simnet.mine(1);
                wait_state(&daemon, &id, "INVOICE_SETTLED");
                let claim = spend_in_mempool(&simnet);
                simnet.mine(1);
                poll("the claim recorded", LIMIT, || {
                    (daemon.swap(&id)["sweep_txid"] == claim.as_str()).then_some(())
                });
                daemon.crash_and_restart(&simnet, || {
                    let (stored, _) = load_loop_in(&datadir, &id);
                    assert_eq!(stored.progress.state, LoopInState::InvoiceSettled);
                    assert_eq!(
                        stored.progress.spend.map(|s| s.txid.to_string()),
                        Some(claim.clone())
                    );
                    simnet.mine(3);
                })
            }
        };
        let info = drive_to(&simnet, &daemon, &id, "SUCCEEDED");
        match kill_at {
            // It was killed in HTLC_CONFIRMED.
            KillAt::WaitingForPayment => assert_history(&info, &edges, &[PAID[0]]),
            // After PaidWhileDown too either watch may report first.
            KillAt::Created
            | KillAt::HtlcInMempool
            | KillAt::PaidWhileDown
            | KillAt::SettledKeyRefused
            | KillAt::KeyPushed
            | KillAt::ClaimConfirming => assert_history(&info, &edges, PAID),
        }
        let (server, onchain) = assert_costs_match_funds(&simnet, &info, &before, &what);
        assert!(server > 0, "{what}: the server's fee is recorded: {info}");
        eprintln!(
            "{what}: SUCCEEDED, history {:?}, server {server} sat, on-chain {onchain} sat",
            history(&info)
        );
        assert_funded_once(&daemon, &id);
        let funding = info["htlc_outpoint"].as_str().unwrap().split(':').next();
        daemon = daemon.crash_and_restart(&simnet, || {
            let (stored, history) = load_loop_in(&datadir, &id);
            assert_one_funding(&history);
            assert_eq!(
                stored
                    .progress
                    .funding
                    .map(|f| f.txid.to_string())
                    .as_deref(),
                funding,
                "{what}: the HTLC confirmed is the one funded"
            );
        });
    }
}

/// `sluice --json ARGS` against the daemon, its answer.
fn json(daemon: &Sluiced, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = daemon.cli(&all);
    crash_harness::json(&out).unwrap_or_else(|| {
        panic!(
            "sluice {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            daemon.log()
        )
    })
}

#[test]
fn an_unpaid_loop_in_killed_waiting_for_the_expiry_and_sweeping_is_swept_back() {
    let (simnet, datadir, mut daemon) = setup();
    let datadir = datadir.path().to_owned();
    simnet.run(&["misbehave", "loop-in-never-pays"]);
    let before = settled(&simnet);
    let id = daemon.loop_in(AMOUNT);
    htlc_funded(&simnet, &daemon, &id);
    let funded = daemon.swap(&id);
    let funding_fee = funded["swap"]["costs"]["onchain_sat"].as_u64().unwrap();
    let expiry = funded["expiry_height"].as_u64().unwrap();
    let max_miner_fee = funded["limits"]["max_miner_fee_sat"].as_u64().unwrap();
    simnet.mine(1);
    wait_state(&daemon, &id, "HTLC_CONFIRMED");

    // Killed while it waits for the expiry; the chain reaches the block before it meanwhile.
    daemon = daemon.crash_and_restart(&simnet, || {
        let (stored, _) = load_loop_in(&datadir, &id);
        assert_eq!(stored.progress.state, LoopInState::HtlcConfirmed);
        assert_eq!(stored.progress.sweeps_requested, 0);
        let tip = simnet.height();
        simnet.mine(u32::try_from(expiry - 1 - tip).unwrap());
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(daemon.state_any(&id), "HTLC_CONFIRMED");
    assert!(simnet.mempool().is_empty(), "swept before the expiry");

    // At the expiry the timeout sweep goes out; killed while it waits in the mempool, where it
    // still is at the restart. It went out only after TIMEOUT_SWEEPING was saved.
    simnet.mine(1);
    spend_in_mempool(&simnet);
    daemon = daemon.crash_and_restart(&simnet, || {
        let (stored, _) = load_loop_in(&datadir, &id);
        assert_eq!(stored.progress.state, LoopInState::TimeoutSweeping);
        assert!(stored.progress.sweeps_requested > 0);
    });
    let sweep = spend_in_mempool(&simnet);

    // Killed once the sweep has its first confirmation; it becomes final while the daemon is
    // down.
    simnet.mine(1);
    poll("the timeout sweep recorded", LIMIT, || {
        (daemon.swap(&id)["sweep_txid"] == sweep.as_str()).then_some(())
    });
    daemon = daemon.crash_and_restart(&simnet, || {
        simnet.mine(3);
    });

    let info = drive_to(&simnet, &daemon, &id, "FAILED_TIMEOUT");
    assert_eq!(info["sweep_txid"], sweep.as_str(), "{info}");
    assert_history(
        &info,
        &fsm_edges(),
        &[&[
            "INITIATED",
            "HTLC_PUBLISHED",
            "HTLC_CONFIRMED",
            "TIMEOUT_SWEEPING",
            "FAILED_TIMEOUT",
        ]],
    );
    let (server, onchain) = assert_costs_match_funds(&simnet, &info, &before, "unpaid");
    assert_eq!(
        server, 0,
        "nothing paid, nothing lost to the server: {info}"
    );
    let sweep_fee = onchain - funding_fee;
    assert!(sweep_fee > 0, "{info}");
    assert!(
        sweep_fee <= max_miner_fee,
        "the timeout sweep paid {sweep_fee} sat, above max_miner_fee {max_miner_fee}: {info}"
    );
    eprintln!(
        "unpaid: FAILED_TIMEOUT, history {:?}, funding {funding_fee} sat, timeout sweep \
         {sweep_fee} sat (max_miner_fee {max_miner_fee})",
        history(&info)
    );
    assert_funded_once(&daemon, &id);
    daemon.crash_and_restart(&simnet, || {
        let (stored, history) = load_loop_in(&datadir, &id);
        assert_one_funding(&history);
        assert_eq!(stored.progress.state, LoopInState::FailedTimeout);
    });
}
