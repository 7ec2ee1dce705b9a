//! Autoloop on real nodes: sluiced on a real lnd whose channels hold no inbound (every sat is
//! local, as after opening them), a policy whose band wants at least 30 % inbound, the
//! reference Loop server on another real lnd. Turned on, autoloop dispatches a Loop Out for a
//! channel below its band, the swap succeeds on btcd, and the channel has inbound again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod realnode_harness;

use std::time::Duration;

use common::{Daemon, poll};
use realnode_harness::{Miner, loopserver};

/// set-and-forget's band, without its fee gate (lnd on regtest estimates its fallback of
/// 25 sat/vB, above the example's 20 sat/vB ceiling), with fee caps that fit the reference
/// server's default terms at that rate (its first 1M swap expects about 1.4 % in fees) and one
/// swap at a time.
const POLICY: &str = "\
tz: UTC
defaults:
  band: { inbound_min: 30%, inbound_max: 70%, restore_to: 50% }
  swap: { min: 250k, max: 1M, conf_target: 6, htlc_confs: 1 }
  fees:
    max_total: 3%
    max_server: 2%
    max_miner: 15k
    max_prepay: 30k
rules:
  - name: routing
    match: all
budgets:
  - name: monthly
    period: month
    limit: 150k
limits: { in_flight: 1, in_flight_per_target: 1 }
";

#[test]
fn autoloop_swaps_a_channel_below_its_band_back_on_real_nodes() {
    let Some(w) = realnode_harness::world() else {
        return;
    };
    let server = loopserver(&w, &[]);
    let config = w.write_sluice_yaml(Some(&server.addr)).unwrap();
    let datadir = tempfile::tempdir().unwrap();
    let policies = datadir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("realnode.yaml"), POLICY).unwrap();
    let daemon = Daemon::launch(datadir, &["--config", config.to_str().unwrap()], &[]);
    poll("sluiced to reach lnd", Duration::from_secs(60), || {
        let info = daemon.json(&["getinfo"]);
        (info["lnd"]["connected"].as_bool() == Some(true)).then_some(())
    });
    common::when_ready(|| daemon.cli(&["autoloop"]));
    assert_eq!(
        daemon.json(&["autoloop"])["mode"],
        "off",
        "a real node starts off"
    );
    daemon.json(&["autoloop", "on"]);

    let swap = {
        let _miner = Miner::start(&w, Duration::from_millis(1500));
        poll(
            "autoloop's swap to succeed",
            Duration::from_secs(300),
            || {
                let swaps = daemon.json(&["swaps"]);
                let list = swaps["swaps"].as_array().cloned().unwrap_or_default();
                for s in &list {
                    let state = s["state"].as_str().unwrap_or_default();
                    assert!(
                        !state.starts_with("FAILED"),
                        "autoloop's swap failed: {s}\n{}",
                        daemon.stderr()
                    );
                }
                list.into_iter().find(|s| s["state"] == "SUCCEEDED")
            },
        )
    };
    let amount = swap["amount_sat"].as_u64().unwrap();
    assert!((250_000..=1_000_000).contains(&amount), "{swap}");
    let journal = daemon.json(&["journal"]);
    assert!(
        journal["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "swap"),
        "{journal}"
    );
    // The swap moved local balance out: one channel now has inbound.
    let remote: u64 = w
        .sluice
        .channels()
        .unwrap()
        .iter()
        .map(|c| sluice::regtest::lnd::number(&c["remote_balance"]))
        .max()
        .unwrap();
    assert!(remote >= amount, "{remote} < {amount}");
}
