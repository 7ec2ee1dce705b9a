//! How the server pays its HTLCs: through its node's wallet, over the `LightningNode` port
//! (lnd's `WalletKit.SendOutputs`), so the server runs on any lnd.

use async_trait::async_trait;
use bitcoin::{Address, Amount, OutPoint, TxOut};

use super::error::LoopServerError;
use crate::domain::Sat;
use crate::lnd::LightningNode;
use crate::lnd::types::{CoinSelection, SendOutputsRequest};

/// The fee target the server's wallet funds HTLCs at, in blocks.
pub const FUNDING_CONF_TARGET: u32 = 6;

/// The wallet label of an HTLC funding transaction.
pub const FUNDING_LABEL: &str = "loop: htlc";

/// Pays on-chain outputs from the server's wallet and broadcasts the transaction.
#[async_trait]
pub trait HtlcFunder: Send + Sync {
    /// Pays every `(address, amount)` in one transaction and returns the outpoints created,
    /// in the same order. Errors are reported as [`LoopServerError::Fund`]; the server
    /// retries on the next block.
    async fn fund(&self, outputs: &[(Address, Sat)]) -> Result<Vec<OutPoint>, LoopServerError>;
}

/// Any node's wallet funds HTLCs: one `send_outputs` call at the node's 6-block estimate,
/// spending unconfirmed change too (a busy server funds several swaps a block). Two outputs to
/// the same script are two outputs of the one transaction, the first one first.
#[async_trait]
impl<N: LightningNode + ?Sized> HtlcFunder for N {
    async fn fund(&self, outputs: &[(Address, Sat)]) -> Result<Vec<OutPoint>, LoopServerError> {
        let fund = |e: crate::lnd::NodeError| LoopServerError::Fund(e.to_string());
        let fee_rate = self.estimate_fee(FUNDING_CONF_TARGET).await.map_err(fund)?;
        let request = SendOutputsRequest {
            outputs: outputs
                .iter()
                .map(|(address, amount)| TxOut {
                    value: Amount::from_sat(amount.0),
                    script_pubkey: address.script_pubkey(),
                })
                .collect(),
            fee_rate,
            label: FUNDING_LABEL.to_owned(),
            min_confs: 0,
            coin_selection: CoinSelection::NodeDefault,
        };
        let tx = self.send_outputs(&request).await.map_err(fund)?;
        let txid = tx.compute_txid();
        outpoints(&tx, &request.outputs)
            .map(|vouts| {
                vouts
                    .into_iter()
                    .map(|vout| OutPoint { txid, vout })
                    .collect()
            })
            .ok_or_else(|| {
                LoopServerError::Fund(format!(
                    "the wallet's transaction {txid} does not pay every HTLC output"
                ))
            })
    }
}

/// The index of each wanted output in `tx`, in order; equal outputs map to distinct
/// indexes. `None` when one is missing.
fn outpoints(tx: &bitcoin::Transaction, wanted: &[TxOut]) -> Option<Vec<u32>> {
    let mut used = vec![false; tx.output.len()];
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let i = tx
            .output
            .iter()
            .enumerate()
            .position(|(i, o)| !used.get(i).copied().unwrap_or(true) && o == w)?;
        if let Some(u) = used.get_mut(i) {
            *u = true;
        }
        out.push(u32::try_from(i).ok()?);
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bitcoin::{ScriptBuf, Transaction, absolute, transaction};

    fn out(v: u64, s: u8) -> TxOut {
        TxOut {
            value: Amount::from_sat(v),
            script_pubkey: ScriptBuf::from_bytes(vec![0x51, s]),
        }
    }

    #[test]
    fn equal_outputs_map_to_distinct_indexes_and_a_missing_one_fails() {
        let tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![],
            output: vec![out(5, 1), out(7, 2), out(5, 1)],
        };
        assert_eq!(outpoints(&tx, &[out(5, 1), out(5, 1)]), Some(vec![0, 2]));
        assert_eq!(outpoints(&tx, &[out(7, 2)]), Some(vec![1]));
        assert_eq!(outpoints(&tx, &[out(5, 1), out(5, 1), out(5, 1)]), None);
        assert_eq!(outpoints(&tx, &[out(6, 1)]), None);
    }
}
