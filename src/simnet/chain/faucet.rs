//! The faucet: the chain's own key, paid by the premined coinbases, that funds any script with
//! a real signed transaction going through [`Chain::accept`] like any other.

use bitcoin::key::Keypair;
use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness, absolute, transaction,
};

use super::sign::{SignError, Signer};
use super::{COINBASE_MATURITY, Chain, RejectReason};
use crate::domain::Sat;

/// The faucet key's seed. Public on purpose: simnet coins are worthless.
const FAUCET_SEED: &[u8] = b"sluice simnet faucet";

/// The confirmation target whose estimate the faucet pays.
const FAUCET_CONF_TARGET: u32 = 6;

/// Why the faucet could not pay.
#[derive(Debug, thiserror::Error)]
pub enum FaucetError {
    /// No single faucet coin is large enough (or none has matured yet).
    #[error(
        "the faucet has no spendable coin of at least {needed}: mine more blocks (coinbase outputs \
         mature after 100) or ask for less"
    )]
    NoCoins {
        /// The amount plus fee asked for.
        needed: Sat,
    },
    /// Signing failed.
    #[error("the faucet could not sign: {0}")]
    Sign(#[from] SignError),
    /// The chain rejected the faucet's transaction (e.g. the amount is dust).
    #[error("the faucet's transaction was rejected: {0}")]
    Rejected(#[from] RejectReason),
}

#[derive(Clone)]
pub(super) struct Faucet {
    signer: Signer,
    keypair: Keypair,
    script: ScriptBuf,
}

impl Faucet {
    pub(super) fn new() -> Result<Faucet, FaucetError> {
        let signer = Signer::new();
        let keypair = signer.keypair_from_seed(FAUCET_SEED)?;
        let script = signer.p2tr_script(&keypair);
        Ok(Faucet {
            signer,
            keypair,
            script,
        })
    }

    pub(super) fn script(&self) -> &ScriptBuf {
        &self.script
    }
}

impl Chain {
    /// The faucet's P2TR script; mine to it to refill the faucet.
    pub fn faucet_script(&self) -> &ScriptBuf {
        self.faucet.script()
    }

    /// Pays `amount` to `script` from the faucet with a signed transaction at the 6-block fee
    /// estimate, accepted into the mempool (mine a block to confirm it). Returns the paying
    /// output. The change returns to the faucet and can be spent again before it confirms.
    pub fn faucet(&mut self, script: ScriptBuf, amount: Sat) -> Result<OutPoint, FaucetError> {
        let rate_sat_kw = self.estimate_fee_sat_kw(FAUCET_CONF_TARGET);
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                // A key-path signature is 64 bytes; size the fee with it in place.
                witness: Witness::from_slice(&[[0u8; 64]]),
            }],
            output: vec![
                TxOut {
                    value: Amount::from_sat(amount.0),
                    script_pubkey: script,
                },
                TxOut {
                    value: Amount::ZERO,
                    script_pubkey: self.faucet.script.clone(),
                },
            ],
        };
        let weight = tx.weight().to_wu();
        let fee =
            Sat(weight.saturating_mul(rate_sat_kw).div_ceil(1000)).max(self.min_relay_fee(weight));
        let needed = amount + fee;
        let (outpoint, prevout) = self
            .faucet_coin(needed)
            .ok_or(FaucetError::NoCoins { needed })?;
        let change = Sat(prevout.value.to_sat()) - needed;
        if change.0 < self.faucet.script.minimal_non_dust().to_sat() {
            tx.output.pop();
        } else if let Some(out) = tx.output.get_mut(1) {
            out.value = Amount::from_sat(change.0);
        }
        if let Some(input) = tx.input.first_mut() {
            input.previous_output = outpoint;
        }
        self.faucet
            .signer
            .sign_p2tr_key(&mut tx, 0, &self.faucet.keypair, &[prevout])?;
        let accepted = self.accept(tx)?;
        Ok(OutPoint {
            txid: accepted.txid,
            vout: 0,
        })
    }

    /// The largest faucet coin worth at least `needed` that is mature and not spent in the
    /// mempool, confirmed or not.
    fn faucet_coin(&self, needed: Sat) -> Option<(OutPoint, TxOut)> {
        let next_height = self.height().0 + 1;
        self.unspent_outputs_to_script(self.faucet.script())
            .into_iter()
            .filter(|o| match o.height {
                Some(h) if o.is_coinbase => next_height - h.0 >= COINBASE_MATURITY,
                _ => true,
            })
            .filter(|o| o.txout.value.to_sat() >= needed.0)
            .max_by_key(|o| o.txout.value)
            .map(|o| (o.outpoint, o.txout))
    }
}
