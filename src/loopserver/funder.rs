//! How the server pays its HTLCs: a small port its wallet implements, and the
//! implementation for the simulated node's wallet.

use async_trait::async_trait;
use bitcoin::{Address, OutPoint};

use super::error::LoopServerError;
use crate::domain::Sat;
use crate::simnet::world::SimNode;

/// The fee target the server's wallet funds HTLCs at, in blocks.
pub const FUNDING_CONF_TARGET: u32 = 6;

/// Pays on-chain outputs from the server's wallet and broadcasts the transaction.
#[async_trait]
pub trait HtlcFunder: Send + Sync {
    /// Pays every `(address, amount)` and returns the outpoints created, in the same order.
    /// Errors are reported as [`LoopServerError::Fund`]; the server retries on the next
    /// block.
    async fn fund(&self, outputs: &[(Address, Sat)]) -> Result<Vec<OutPoint>, LoopServerError>;
}

/// The simulated node's wallet pays each output with its own transaction (its
/// `send_to_address` pays one address), all at the 6-block estimate. With two outputs to the
/// HTLC script, the first transaction is the one a client sees confirm first.
#[async_trait]
impl HtlcFunder for SimNode {
    async fn fund(&self, outputs: &[(Address, Sat)]) -> Result<Vec<OutPoint>, LoopServerError> {
        let fee_rate = self.with(|w, _| w.estimate_fee(FUNDING_CONF_TARGET));
        let mut outpoints = Vec::with_capacity(outputs.len());
        for (address, amount) in outputs {
            let tx = self
                .send_to_address(address, *amount, fee_rate)
                .map_err(|e| LoopServerError::Fund(e.to_string()))?;
            let script = address.script_pubkey();
            let vout = tx
                .output
                .iter()
                .position(|o| o.script_pubkey == script && o.value.to_sat() == amount.0)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| {
                    LoopServerError::Fund("the wallet's transaction does not pay the HTLC".into())
                })?;
            outpoints.push(OutPoint {
                txid: tx.compute_txid(),
                vout,
            });
        }
        Ok(outpoints)
    }
}
