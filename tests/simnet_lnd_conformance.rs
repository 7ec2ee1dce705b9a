//! The `LightningNode` conformance suite (`tests/lnd_conformance/`) against the simnet's lnd
//! facade, through sluice's own lnd client: the same checks a real lnd passes in
//! `tests/realnode_lnd_conformance.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod lnd_conformance;

use async_trait::async_trait;
use bitcoin::{ScriptBuf, Transaction};
use lnd_conformance::{Backend, Chain};
use sluice::domain::Sat;
use sluice::simnet::runner::{Simnet, SimnetConfig};
use sluice::simnet::world::{SharedWorld, lock};

struct SimChain(SharedWorld);

#[async_trait]
impl Chain for SimChain {
    async fn mine(&self, n: u32) {
        lock(&self.0).mine(n);
    }
    async fn reorg(&self, depth: u32) {
        let mut w = lock(&self.0);
        w.reorg(depth).unwrap();
        w.mine(depth + 1);
    }
    async fn pay_to(&self, script: ScriptBuf, amount: u64) -> Transaction {
        lock(&self.0).pay_to(script, Sat(amount)).unwrap()
    }
    async fn height(&self) -> u32 {
        lock(&self.0).height().0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_conforms_on_the_simnet() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimnetConfig::new(dir.path());
    config.block_interval = None;
    config.traffic = false;
    let sim = Simnet::start(config).await.unwrap();
    let backend = Backend {
        name: "simnet",
        sluice: sim.sluice_lnd().connect().unwrap(),
        other: sim.loop_lnd().connect().unwrap(),
        chain: Box::new(SimChain(sim.world().clone())),
    };
    lnd_conformance::run_all(&backend).await;
    sim.stop().await;
}
