//! The regtest world itself: real btcd and lnd processes, funded, with announced channels, and
//! nothing left running once the test ends, even when it panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod realnode_harness;

use sluice::regtest::process::alive;
use sluice::regtest::world::WorldState;

#[test]
fn the_world_starts_funded_and_connected_and_leaves_nothing_behind() {
    let Some(mut w) = realnode_harness::world() else {
        return;
    };
    let state = WorldState::read(w.dir()).unwrap();
    assert_eq!(state.nodes.len(), 4);
    let pids = state.pids();
    assert!(pids.iter().all(|p| alive(*p)), "{state:?}");
    // Two active channels per node; sluice's are all local balance.
    let channels = w.sluice.channels().unwrap();
    assert_eq!(channels.len(), 2);
    for c in &channels {
        assert_eq!(c["active"].as_bool(), Some(true), "{c}");
        assert!(
            sluice::regtest::lnd::number(&c["local_balance"]) > 9_000_000,
            "{c}"
        );
    }
    // Mining reaches every node.
    let before = w.btcd.height().unwrap();
    w.mine(2).unwrap();
    assert_eq!(w.btcd.height().unwrap(), before + 2);
    // A panicking test still tears its world down.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _w = w;
        panic!("a failing test");
    }));
    assert!(outcome.is_err());
    for pid in pids {
        assert!(!alive(pid), "process {pid} outlived its world");
    }
}
