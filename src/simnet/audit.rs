//! What the reference Loop server learned, and when: for every swap, the first time the
//! control service saw that the server knows the swap's preimage, and whether an HTLC that
//! honours the contract was confirmed on the simulated chain then. A client that reveals its
//! preimage before a valid HTLC confirmed shows up as `valid_htlc_confirmed: false`.
//!
//! The control service observes before every change it makes to the chain (mine, reorg) and
//! at `Status` and `Audit`, so no chain change of its own falls between the moment the server
//! learns a preimage and the observation. Blocks the runner mines on its timer are observed
//! the same way. A preimage pushed while a reorg runs is observed after the reorg.

use std::collections::BTreeMap;

use super::chain::TxStatus;
use super::world::World;
use crate::domain::{BlockHeight, SwapHash};
use crate::loopserver::LoopServer;

/// When the server was first seen knowing a preimage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learned {
    /// The tip then.
    pub height: BlockHeight,
    /// Whether an HTLC output honouring the contract was in a block then.
    pub valid_htlc_confirmed: bool,
}

/// The record of every preimage the server learned.
#[derive(Debug, Default)]
pub struct PreimageAudit {
    learned: BTreeMap<SwapHash, Learned>,
}

impl PreimageAudit {
    /// Records the swaps whose preimage the server knows now and did not at the last
    /// observation, with the state of their HTLC on `world`'s chain.
    pub fn observe(&mut self, server: &LoopServer, world: &World) {
        for hash in server.swap_hashes() {
            if self.learned.contains_key(&hash) || !server.knows_preimage(hash).unwrap_or(false) {
                continue;
            }
            let valid_htlc_confirmed = server
                .contract_outpoints(hash)
                .unwrap_or_default()
                .iter()
                .any(|o| matches!(world.chain().tx(&o.txid), Some(TxStatus::Confirmed { .. })));
            self.learned.insert(
                hash,
                Learned {
                    height: world.height(),
                    valid_htlc_confirmed,
                },
            );
        }
    }

    /// Every preimage learned so far, by swap hash.
    pub fn learned(&self) -> &BTreeMap<SwapHash, Learned> {
        &self.learned
    }
}
