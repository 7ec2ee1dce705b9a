//! Chain tests with real, signed transactions: acceptance rules, lock times, blocks and reorgs.

mod accept;
mod blocks;
mod locks;

use bitcoin::ScriptBuf;

use super::testutil::TestKey;
use super::{Chain, ChainConfig, TxStatus};
use crate::domain::BlockHeight;
use bitcoin::Txid;

fn chain() -> Chain {
    Chain::new(ChainConfig::default()).unwrap()
}

fn key(seed: &str) -> TestKey {
    TestKey::new(seed).unwrap()
}

fn miner() -> ScriptBuf {
    key("miner").p2tr()
}

fn confirmed_at(chain: &Chain, txid: &Txid) -> Option<BlockHeight> {
    match chain.tx(txid)? {
        TxStatus::Confirmed { location, .. } => Some(location.height),
        TxStatus::Mempool(_) => None,
    }
}

#[test]
fn the_chain_can_move_between_threads() {
    fn assert_send<T: Send + Sync>() {}
    assert_send::<Chain>();
}
