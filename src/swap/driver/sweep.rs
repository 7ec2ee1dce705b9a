//! Building, signing and publishing one sweep of the HTLC.
//!
//! The fee rate follows the deadline (`chain::fees::sweep_fee_rate` on lnd's estimate), is
//! raised to the schedule's share of the contract's `max_miner_fee` and never exceeds it
//! (`chain::fees::offered_rate`); it is never below the relay floor, so a sweep always goes out. The cooperative MuSig2
//! key path is tried first, with lnd holding our key (family 99) and the server co-signing;
//! the combined signature is verified against the HTLC's output key before use. If anything in
//! that fails, the success leaf is signed by lnd (`SignOutputRaw`) in the same call. The
//! finished transaction is checked by the script interpreter before it is published. A block
//! that would offer the same rate for the same HTLC publishes the last signed sweep again
//! ([`SignedSweep`]) instead of signing a new one.

use std::sync::{Arc, Mutex, PoisonError};

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::schnorr;
use bitcoin::{OutPoint, Witness};

use super::super::{LoopOutContract, SweepFailure};
use super::SwapChain;
use crate::chain::fees::{SweepWitness, conf_target, offered_rate, sweep_fee_rate, sweep_weight};
use crate::chain::sweep::{SweepRequest, UnsignedSweep, build_sweep, key_spend_witness};
use crate::chain::{SatPerKw, verify};
use crate::domain::{BlockHeight, Ppm, Sat};
use crate::lnd::LightningNode;
use crate::lnd::types::{
    KeyDescriptor, KeyLocator, MuSig2SessionRequest, MuSig2Version, SignInput, SignMethod,
    SignRequest, TaprootTweak,
};
use crate::provider::SwapProvider;
use crate::provider::port::{SweepPrevout, SweepSignRequest};

/// Everything one sweep attempt needs, moved into its task.
pub(super) struct SweepJob {
    pub(super) node: Arc<dyn LightningNode>,
    pub(super) provider: Arc<dyn SwapProvider>,
    pub(super) contract: Arc<LoopOutContract>,
    pub(super) payment_address: [u8; 32],
    pub(super) chain: SwapChain,
    pub(super) outpoint: OutPoint,
    pub(super) value: Sat,
    pub(super) blocks_left: u32,
    pub(super) fee_share: Ppm,
    pub(super) height: BlockHeight,
    /// Released by the driver through `SwapProgress::release_preimage` on the saved state.
    pub(super) preimage: [u8; 32],
    /// Push the preimage before asking for the co-signature: a server co-signs only a swap
    /// whose preimage it knows, and the separate push task may not have reached it yet.
    pub(super) push_first: bool,
    /// The driver's last signed sweep, reused while nothing it was built from has changed.
    pub(super) last: Arc<Mutex<Option<SignedSweep>>>,
}

/// A signed sweep and what it was built from. The driver keeps the last one in memory (a
/// restart signs afresh): while it spends the same HTLC at the rate a new one would be offered
/// at, the next block publishes it again instead of signing a new one (a MuSig2 round with lnd
/// and the server) that would pay the same fee under a new lock time, which the mempool
/// refuses as a replacement anyway. A rate that moves (lnd's estimate, the fee schedule's
/// share, the deadline) signs a new sweep, as before.
#[derive(Clone)]
pub(crate) struct SignedSweep {
    outpoint: OutPoint,
    path: SweepWitness,
    rate: SatPerKw,
    tx: bitcoin::Transaction,
}

impl SweepJob {
    /// Builds, signs and publishes the sweep; the error is what the state machine records.
    pub(super) async fn run(self) -> Result<(), SweepFailure> {
        let hash = self.contract.terms().swap_hash;
        let (target, _) = conf_target(self.blocks_left);
        let estimate = self.node.estimate_fee(target).await.map_err(|e| {
            tracing::warn!(swap = %hash, error = %e, "fee estimate failed; sweep retried next block");
            SweepFailure::BackendUnavailable
        })?;
        let estimate = SatPerKw(estimate.to_sat_per_kwu());
        let rate = sweep_fee_rate(self.blocks_left, |_| estimate);

        let tx = match self.reusable(rate) {
            Some(tx) => tx,
            None => {
                let (tx, path) = self.sign(rate).await?;
                *self.last_sweep() = Some(SignedSweep {
                    outpoint: self.outpoint,
                    path,
                    rate: self.offered(path, rate),
                    tx: tx.clone(),
                });
                tx
            }
        };
        let label = format!("sluice loop out sweep {hash}");
        match self.node.publish_transaction(&tx, &label).await {
            Ok(()) => {
                tracing::info!(swap = %hash, txid = %tx.compute_txid(), "sweep published");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(swap = %hash, error = %e, "publishing the sweep failed; retried next block");
                if e.is_transient() {
                    Err(SweepFailure::BackendUnavailable)
                } else {
                    // Refused as it is: the next block signs a new one.
                    *self.last_sweep() = None;
                    Err(SweepFailure::Rejected)
                }
            }
        }
    }

    fn last_sweep(&self) -> std::sync::MutexGuard<'_, Option<SignedSweep>> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last signed sweep, if it spends this HTLC at the rate its path would be offered
    /// at now (`needed` is this block's rate before the schedule and the cap).
    fn reusable(&self, needed: SatPerKw) -> Option<bitcoin::Transaction> {
        self.last_sweep()
            .as_ref()
            .filter(|s| s.outpoint == self.outpoint && s.rate == self.offered(s.path, needed))
            .map(|s| s.tx.clone())
    }

    /// Signs a new sweep at `rate`: the cooperative key path, else the success script path.
    async fn sign(
        &self,
        rate: SatPerKw,
    ) -> Result<(bitcoin::Transaction, SweepWitness), SweepFailure> {
        let hash = self.contract.terms().swap_hash;
        if self.push_first
            && let Err(e) = self.provider.push_preimage(&self.preimage).await
        {
            tracing::debug!(swap = %hash, error = %e, "preimage push before co-signing failed");
        }
        match self.cooperative(rate).await {
            Ok(tx) => Ok((tx, SweepWitness::KeyPath)),
            Err(reason) => {
                tracing::info!(swap = %hash, reason = %reason.describe(),
                    "cooperative sweep unavailable; signing the success script path");
                Ok((self.script_path(rate).await?, SweepWitness::V3Success))
            }
        }
    }

    /// The rate for a sweep spending through `path`: the needed rate on the fee schedule,
    /// under the miner-fee cap for that path's weight, at least the relay floor.
    fn offered(&self, path: SweepWitness, needed: SatPerKw) -> SatPerKw {
        offered_rate(
            needed,
            self.contract.terms().fee_limits.max_miner_fee,
            sweep_weight(path, &self.chain.destination),
            self.fee_share,
        )
    }

    fn unsigned(&self, path: SweepWitness, rate: SatPerKw) -> Result<UnsignedSweep, String> {
        build_sweep(&SweepRequest {
            htlc_outpoint: self.outpoint,
            htlc_value: self.value,
            htlc_pk_script: self.contract.terms().htlc_pk_script.clone(),
            path,
            destination: self.chain.destination.clone(),
            fee_rate: rate,
            height: self.height,
        })
        .map_err(|e| e.to_string())
    }

    fn locator(&self) -> KeyLocator {
        let l = self.contract.terms().receiver_key_locator;
        KeyLocator {
            family: i32::try_from(l.family).unwrap_or(i32::MAX),
            index: i32::try_from(l.index).unwrap_or(i32::MAX),
        }
    }

    async fn cooperative(&self, rate: SatPerKw) -> Result<bitcoin::Transaction, CoopFailure> {
        let rate = self.offered(SweepWitness::KeyPath, rate);
        let unsigned = self
            .unsigned(SweepWitness::KeyPath, rate)
            .map_err(CoopFailure::Build)?;
        let sighash = unsigned
            .key_spend_sighash()
            .map_err(|e| CoopFailure::Build(e.to_string()))?;
        let htlc = &self.chain.htlc;
        let session = self
            .node
            .musig2_create_session(&MuSig2SessionRequest {
                key: self.locator(),
                signer_pubkeys: vec![
                    htlc.sender().serialize().to_vec(),
                    htlc.receiver().serialize().to_vec(),
                ],
                other_nonces: Vec::new(),
                taproot_tweak: Some(TaprootTweak {
                    script_root: htlc.merkle_root().to_byte_array().to_vec(),
                    key_spend_only: false,
                }),
                version: MuSig2Version::V100Rc2,
            })
            .await
            .map_err(|e| CoopFailure::Step("opening the lnd MuSig2 session", e.to_string()))?;
        let result = self
            .cosign(&unsigned, sighash, session.id, session.local_nonces)
            .await;
        // The session is single-use; lnd may already have removed it.
        let _ = self.node.musig2_cleanup(session.id).await;
        let sig = result?;
        Ok(unsigned.signed(key_spend_witness(&sig)))
    }

    async fn cosign(
        &self,
        unsigned: &UnsignedSweep,
        sighash: [u8; 32],
        session: [u8; 32],
        nonce: [u8; 66],
    ) -> Result<schnorr::Signature, CoopFailure> {
        let psbt = unsigned
            .psbt()
            .map_err(|e| CoopFailure::Build(e.to_string()))?
            .serialize();
        let server = self
            .provider
            .musig2_sign_sweep(&SweepSignRequest {
                swap_hash: self.contract.terms().swap_hash,
                payment_address: self.payment_address,
                nonce,
                sweep_psbt: psbt,
                prevouts: vec![SweepPrevout {
                    value: self.value,
                    pk_script: self.contract.terms().htlc_pk_script.to_bytes(),
                    txid: self.outpoint.txid.to_byte_array(),
                    output_index: self.outpoint.vout,
                }],
            })
            .await
            .map_err(|e| CoopFailure::Step("asking the server to co-sign", e.to_string()))?;
        self.node
            .musig2_register_nonces(session, &[server.nonce])
            .await
            .map_err(|e| CoopFailure::Step("registering the server's nonce", e.to_string()))?;
        self.node
            .musig2_sign(session, sighash, false)
            .await
            .map_err(|e| CoopFailure::Step("signing our half in lnd", e.to_string()))?;
        let combined = self
            .node
            .musig2_combine_sig(session, &[server.partial_sig.to_vec()])
            .await
            .map_err(|e| CoopFailure::Step("combining the signatures", e.to_string()))?
            .ok_or(CoopFailure::Step(
                "combining the signatures",
                "lnd still misses a partial signature".to_owned(),
            ))?;
        let sig = schnorr::Signature::from_slice(&combined)
            .map_err(|e| CoopFailure::Step("reading the combined signature", e.to_string()))?;
        if !self.chain.htlc.verify_key_spend(&sig, sighash) {
            return Err(CoopFailure::Step(
                "verifying the combined signature",
                "it does not verify against the HTLC output key".to_owned(),
            ));
        }
        let tx = unsigned.clone().signed(key_spend_witness(&sig));
        verify::verify_spend(&tx, &unsigned.prevouts)
            .map_err(|e| CoopFailure::Step("checking the signed sweep", e.to_string()))?;
        Ok(sig)
    }

    async fn script_path(&self, rate: SatPerKw) -> Result<bitcoin::Transaction, SweepFailure> {
        let hash = self.contract.terms().swap_hash;
        let rate = self.offered(SweepWitness::V3Success, rate);
        let unsigned = self.unsigned(SweepWitness::V3Success, rate).map_err(|e| {
            tracing::error!(swap = %hash, error = %e, "cannot build the script-path sweep");
            SweepFailure::Rejected
        })?;
        let htlc = &self.chain.htlc;
        let prevout = unsigned
            .prevouts
            .first()
            .cloned()
            .ok_or(SweepFailure::SigningFailed)?;
        let sigs = self
            .node
            .sign_output_raw(&SignRequest {
                tx: unsigned.tx.clone(),
                inputs: vec![SignInput {
                    input_index: 0,
                    key: KeyDescriptor {
                        pubkey: htlc.receiver(),
                        locator: self.locator(),
                    },
                    output: prevout,
                    sighash: 0,
                    method: SignMethod::TaprootScriptSpend {
                        leaf_script: htlc.success_script().to_owned(),
                    },
                }],
                prev_outputs: unsigned.prevouts.clone(),
            })
            .await
            .map_err(|e| {
                tracing::warn!(swap = %hash, error = %e, "lnd could not sign the success leaf");
                if e.is_transient() {
                    SweepFailure::BackendUnavailable
                } else {
                    SweepFailure::SigningFailed
                }
            })?;
        let sig = sigs
            .first()
            .and_then(|s| bitcoin::taproot::Signature::from_slice(s).ok())
            .ok_or(SweepFailure::SigningFailed)?;
        let witness: Witness = htlc.success_witness(&self.preimage, &sig);
        let prevouts = unsigned.prevouts.clone();
        let tx = unsigned.signed(witness);
        verify::verify_spend(&tx, &prevouts).map_err(|e| {
            tracing::error!(swap = %hash, error = %e, "the script-path sweep does not verify");
            SweepFailure::SigningFailed
        })?;
        Ok(tx)
    }
}

/// Why the cooperative path was not used.
enum CoopFailure {
    /// The transaction could not be built.
    Build(String),
    /// A step of the signing failed.
    Step(&'static str, String),
}

impl CoopFailure {
    fn describe(&self) -> String {
        match self {
            CoopFailure::Build(e) => format!("building the sweep: {e}"),
            CoopFailure::Step(step, e) => format!("{step}: {e}"),
        }
    }
}
