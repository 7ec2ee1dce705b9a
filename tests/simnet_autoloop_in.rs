//! Autoloop in the other direction, with the real binaries: `sluice simnet serve` (blocks only
//! when the test mines), `sluiced --config` on its `sluice.yaml` and a policy whose band has an
//! upper edge and `loop_in`. A payment pushes one channel above its band; in `dry-run` the
//! decision is a Loop In through that channel's peer, journalled with its direction; switched
//! `on`, autoloop dispatches it, the server pays the node's invoice, the channel comes back
//! inside its band and the budget books what the Loop In cost, with nothing left reserved.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Daemon, poll, serve_simnet};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(240);

fn simnet(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(common::sluice_bin())
        .args(["--json", "simnet", "--dir"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sluice simnet {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn channel(daemon: &Daemon, id: &str) -> Option<Value> {
    daemon.try_json(&["channels"])?["channels"]
        .as_array()?
        .iter()
        .find(|c| c["chan_id"] == id)
        .cloned()
}

#[test]
fn autoloop_loops_in_a_channel_above_its_band_back_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let _serve = serve_simnet(dir.path());
    let datadir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.yaml");
    let daemon = Daemon::launch(
        datadir,
        &["--config", config.to_str().unwrap()],
        &["--autoloop-tick", "1s"],
    );
    poll("lnd to connect", LIMIT, || {
        let info = daemon.try_json(&["getinfo"])?;
        info["lnd"]["connected"].as_bool().filter(|c| *c)
    });

    // peer2's channel, pushed to 85 % inbound by a payment of sluice's to peer2.
    let peer2 = simnet(dir.path(), &["status"])["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "peer2")
        .unwrap()["pubkey"]
        .as_str()
        .unwrap()
        .to_owned();
    let chans = daemon.try_json(&["channels"]).unwrap();
    let chan = chans["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["peer_pubkey"] == peer2.as_str())
        .unwrap_or_else(|| panic!("no channel with peer2: {chans}"))
        .clone();
    let id = chan["chan_id"].as_str().unwrap().to_owned();
    let capacity = chan["capacity_sat"].as_u64().unwrap();
    let local = chan["local_balance_sat"].as_u64().unwrap();
    let push = local - capacity * 15 / 100;
    simnet(
        dir.path(),
        &[
            "pay",
            "--from",
            "sluice",
            "--to",
            "peer2",
            &push.to_string(),
        ],
    );
    let before = poll("the channel above its band", LIMIT, || {
        let c = channel(&daemon, &id)?;
        (c["inbound_share_percent"].as_f64()? > 80.0).then_some(c)
    });

    // The policy: only this channel, held in a 30–70 % band from both sides.
    let policies = daemon.dir().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("both.yaml"),
        format!(
            "rules:\n  - name: peer2\n    match: {{ peer: {peer2} }}\n    per: channel\n    \
             band: {{ inbound_min: 30%, inbound_max: 70%, restore_to: 50% }}\n    \
             loop_in: {{ min: 10k, htlc_conf_target: 2, fees: {{ max_total: 5%, max_miner: 50k }} }}\n\
             budgets:\n  - {{ name: monthly, period: month, limit: 500k }}\n"
        ),
    )
    .unwrap();
    let reload = common::when_ready(|| daemon.cli(&["policy", "reload"]));
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );

    // dry-run: a Loop In through peer2, of enough to reach 50 %, journalled as `in`.
    let mode = common::when_ready(|| daemon.cli(&["autoloop", "dry-run"]));
    assert!(
        mode.status.success(),
        "{}",
        String::from_utf8_lossy(&mode.stderr)
    );
    let entry = poll("a dry-run Loop In in the journal", LIMIT, || {
        daemon.try_json(&["journal", "--target", &id])?["entries"]
            .as_array()?
            .iter()
            .find(|e| e["reason"] == "dry_run")
            .cloned()
    });
    assert_eq!(entry["direction"], "in", "{entry}");
    let remote = before["remote_balance_sat"].as_u64().unwrap();
    assert_eq!(
        entry["amount_sat"].as_u64(),
        Some(remote - capacity / 2),
        "{entry}"
    );
    let suggest = daemon.try_json(&["suggest"]).unwrap();
    let decision = suggest["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["target"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(decision["direction"], "in", "{suggest}");

    // on: dispatched, funded, paid by the server; blocks are mined while it runs.
    daemon.try_json(&["autoloop", "on"]).unwrap();
    let dispatched = poll("a dispatched Loop In in the journal", LIMIT, || {
        daemon.try_json(&["journal", "--target", &id])?["entries"]
            .as_array()?
            .iter()
            .find(|e| e["reason"] == "swap" && e["swap_hash"].is_string())
            .cloned()
    });
    assert_eq!(dispatched["direction"], "in", "{dispatched}");
    let hash = dispatched["swap_hash"].as_str().unwrap().to_owned();
    let info = poll("the Loop In to succeed", LIMIT, || {
        simnet(dir.path(), &["mine", "1"]);
        let info = daemon.try_json(&["swap", &hash])?;
        let state = info["swap"]["state"].as_str()?.to_owned();
        assert!(!state.starts_with("FAILED"), "{info}\n{}", daemon.stderr());
        (state == "SUCCEEDED").then_some(info)
    });
    assert_eq!(info["swap"]["type"], "LOOP_IN", "{info}");
    assert_eq!(info["swap"]["initiator"], "autoloop", "{info}");

    // The channel is back inside its band, and the budget booked the Loop In's costs.
    let after = poll("the channel back inside its band", LIMIT, || {
        let c = channel(&daemon, &id)?;
        (c["inbound_share_percent"].as_f64()? <= 70.0).then_some(c)
    });
    assert!(
        after["inbound_share_percent"].as_f64().unwrap() >= 30.0,
        "{after}"
    );
    let line = poll("the Loop In's costs in the budget", LIMIT, || {
        let b = daemon.try_json(&["budget"])?;
        let line = b["lines"]
            .as_array()?
            .iter()
            .find(|l| l["scope"] == "limit")?
            .clone();
        (line["spent_sat"].as_u64()? > 0 && line["reserved_worst_sat"].as_u64()? == 0)
            .then_some(line)
    });
    let costs = &info["swap"]["costs"];
    let recorded = costs["server_sat"].as_i64().unwrap()
        + i64::try_from(costs["onchain_sat"].as_u64().unwrap()).unwrap();
    assert!(recorded > 0, "{info}");
    let l402 = sluice::provider::l402::TokenStore::new(&daemon.dir().join("l402"))
        .load_paid()
        .ok()
        .flatten()
        .map_or(0, |t| (t.amount_paid.0 + t.routing_fee.0).div_ceil(1000));
    assert_eq!(
        i64::try_from(line["spent_sat"].as_u64().unwrap()).unwrap(),
        recorded + i64::try_from(l402).unwrap(),
        "{line}\n{info}"
    );
}
