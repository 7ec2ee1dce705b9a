//! The `LightningNode` conformance suite (`tests/lnd_conformance/`) against a real lnd
//! v0.21.2-beta on regtest, through sluice's own lnd client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod lnd_conformance;
mod realnode_harness;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bitcoin::{ScriptBuf, Transaction};
use lnd_conformance::{Backend, Chain};
use realnode_harness::TestWorld;
use sluice::domain::Network;

struct RealChain(Arc<Mutex<TestWorld>>);

#[async_trait]
impl Chain for RealChain {
    async fn mine(&self, n: u32) {
        self.0.lock().unwrap().mine(n).unwrap();
    }
    async fn reorg(&self, depth: u32) {
        let mut w = self.0.lock().unwrap();
        w.btcd.reorg(depth).unwrap();
        w.sync().unwrap();
    }
    async fn pay_to(&self, script: ScriptBuf, amount: u64) -> Transaction {
        self.0.lock().unwrap().pay_to(script, amount).unwrap()
    }
    async fn height(&self) -> u32 {
        self.0.lock().unwrap().btcd.height().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_conforms_on_a_real_lnd() {
    // The world's processes are tied to this thread: start it here, not in a task.
    let Some(world) = realnode_harness::world() else {
        return;
    };
    let sluice = sluice::lnd::connect::open(&world.sluice.lnd_config(), Network::Regtest).unwrap();
    let other = sluice::lnd::connect::open(&world.server.lnd_config(), Network::Regtest).unwrap();
    let world = Arc::new(Mutex::new(world));
    let backend = Backend {
        name: "lnd",
        sluice,
        other,
        chain: Box::new(RealChain(world.clone())),
    };
    lnd_conformance::run_all(&backend).await;
}
