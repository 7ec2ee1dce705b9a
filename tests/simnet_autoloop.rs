//! Autoloop end to end with the real binaries: `sluiced --simnet` (whose demo world starts one
//! channel below the set-and-forget band), the `sluice` CLI, and the shipped example policy.
//! In `dry-run` the below-band channel is journalled and nothing is dispatched; switched `on`,
//! the same decision dispatches a loop-out that completes, the channel returns inside its
//! band, and the budget and journal show it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Daemon, poll};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(240);

/// The set-and-forget band, in percent of capacity.
const BAND: (f64, f64) = (30.0, 70.0);

/// Journal entries (newest first, as the CLI lists them) about `target`; each carries its
/// decision's fields (`reason`, `amount_sat`, `swap_hash`...).
fn journal(daemon: &Daemon, target: &str) -> Vec<Value> {
    daemon
        .try_json(&["journal", "--target", target])
        .map(|j| j["entries"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default()
}

#[test]
fn dry_run_journals_the_decision_and_on_swaps_the_channel_back_into_its_band() {
    // The example policy is in place, but this is not a first run: autoloop starts `off`.
    let datadir = tempfile::tempdir().unwrap();
    let policies = datadir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/policies/set-and-forget/policy.yaml"
        ),
        policies.join("set-and-forget.yaml"),
    )
    .unwrap();
    let daemon = Daemon::start_in(datadir, &[]);
    poll("lnd to connect", LIMIT, || {
        let info = daemon.try_json(&["getinfo"])?;
        info["lnd"]["connected"].as_bool().filter(|c| *c)
    });
    let mode = common::when_ready(|| daemon.cli(&["--json", "autoloop"]));
    let mode: Value = serde_json::from_slice(&mode.stdout).unwrap();
    assert_eq!(mode["mode"], "off");

    // The channel below the band.
    let channels = daemon.try_json(&["channels"]).unwrap();
    let low = channels["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["inbound_share_percent"].as_f64().unwrap() < BAND.0)
        .unwrap_or_else(|| panic!("the demo world has no channel below the band: {channels}"))
        .clone();
    let target = low["chan_id"].as_str().unwrap().to_owned();

    // dry-run: the full pipeline runs and is journalled, nothing is dispatched.
    let mode = daemon.try_json(&["autoloop", "dry-run"]).unwrap();
    assert_eq!(mode["mode"], "dry-run", "{mode}");
    let entry = poll("a dry-run decision in the journal", LIMIT, || {
        journal(&daemon, &target)
            .into_iter()
            .find(|e| e["reason"] == "dry_run")
    });
    let proposed = entry["amount_sat"].as_u64().unwrap();
    assert!(proposed >= 250_000, "{entry}");
    let swaps = daemon.try_json(&["swaps"]).unwrap();
    assert_eq!(
        swaps["swaps"].as_array().map(Vec::len),
        Some(0),
        "dry-run dispatched: {swaps}"
    );

    // on: the same decision now dispatches, and the swap completes.
    daemon.try_json(&["autoloop", "on"]).unwrap();
    let dispatched = poll("a dispatched swap in the journal", LIMIT, || {
        journal(&daemon, &target)
            .into_iter()
            .find(|e| e["reason"] == "swap" && e["swap_hash"].is_string())
    });
    let hash = dispatched["swap_hash"].as_str().unwrap().to_owned();
    let info = poll("the autoloop swap to succeed", LIMIT, || {
        let info = daemon.try_json(&["swap", &hash])?;
        let state = info["swap"]["state"].as_str()?.to_owned();
        assert!(!state.starts_with("FAILED"), "{info}\n{}", daemon.stderr());
        (state == "SUCCEEDED").then_some(info)
    });
    // Traffic moves the balance between passes, so the amount is the dispatching pass's own.
    assert_eq!(
        info["swap"]["amount_sat"], dispatched["amount_sat"],
        "{info}"
    );
    assert_eq!(info["swap"]["initiator"], "autoloop");

    // The channel is back inside its band.
    let share = poll("the channel back inside its band", LIMIT, || {
        let channels = daemon.try_json(&["channels"])?;
        let share = channels["channels"]
            .as_array()?
            .iter()
            .find(|c| c["chan_id"] == target.as_str())?["inbound_share_percent"]
            .as_f64()?;
        (share >= BAND.0).then_some(share)
    });
    assert!(share <= BAND.1, "restored past the band: {share}%");

    // The budget shows what the swap spent, with nothing left reserved for it.
    let budget = poll("the swap's costs in the budget", LIMIT, || {
        let b = daemon.try_json(&["budget"])?;
        let total = b["lines"]
            .as_array()?
            .iter()
            .find(|l| l["scope"] == "limit")?
            .clone();
        (total["spent_sat"].as_u64()? > 0 && total["reserved_worst_sat"].as_u64()? == 0)
            .then_some(total)
    });
    let costs = &info["swap"]["costs"];
    let recorded = costs["server_sat"].as_i64().unwrap()
        + i64::try_from(costs["onchain_sat"].as_u64().unwrap()).unwrap()
        + i64::try_from(costs["offchain_sat"].as_u64().unwrap()).unwrap();
    // The swap server's L402 token is booked too, once, under its own category.
    let token = sluice::provider::l402::TokenStore::new(&daemon.dir().join("l402"))
        .load_paid()
        .unwrap()
        .map_or(0, |t| (t.amount_paid.0 + t.routing_fee.0).div_ceil(1000));
    assert_eq!(
        budget["spent_sat"].as_i64(),
        Some(recorded + i64::try_from(token).unwrap()),
        "the budget spent what the swap and the L402 token cost: {budget} vs {costs}, token \
         {token} sat"
    );
}
