//! A node's on-chain wallet: its coins found on the chain by script, sending with coin
//! selection and real signatures, publishing, fee estimates, and `SignOutputRaw` for the keys
//! the node hands out.

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::Message;
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{LeafVersion, TapLeafHash};
use bitcoin::{
    Address, Amount, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness, absolute, transaction,
};

use super::keys::AddressKind;
use super::{NodeIdx, World, WorldError};
use crate::domain::Sat;
use crate::lnd::types::{CoinSelection, KeyDescriptor, SignMethod, SignRequest};
use crate::simnet::chain::sign::Signer;
use crate::simnet::chain::{COINBASE_MATURITY, RejectReason, TxStatus};

/// A coin of a node's wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletCoin {
    /// Where it is.
    pub outpoint: OutPoint,
    /// The output.
    pub txout: TxOut,
    /// Whether it is confirmed.
    pub confirmed: bool,
    /// The height of the block that confirmed it.
    pub height: Option<crate::domain::BlockHeight>,
}

impl WalletCoin {
    /// Its confirmations with the tip at `tip` (0 while unconfirmed).
    pub fn confirmations(&self, tip: u32) -> u32 {
        self.height
            .map_or(0, |h| tip.saturating_sub(h.0).saturating_add(1))
    }
}

impl World {
    /// The wallet's spendable coins: confirmed ones first (oldest first), then unconfirmed
    /// ones, skipping coins a mempool transaction already spends.
    pub fn wallet_coins(&self, node: NodeIdx) -> Result<Vec<WalletCoin>, WorldError> {
        let next_height = self.height().0 + 1;
        let keys = &self.node(node)?.keys;
        let mut coins: Vec<WalletCoin> = keys
            .wallet_scripts()
            .iter()
            .flat_map(|s| self.chain.unspent_outputs_to_script(s))
            .filter(|o| match o.height {
                Some(h) if o.is_coinbase => next_height - h.0 >= COINBASE_MATURITY,
                _ => true,
            })
            .map(|o| WalletCoin {
                outpoint: o.outpoint,
                txout: o.txout,
                confirmed: o.height.is_some(),
                height: o.height,
            })
            .collect();
        coins.sort_by_key(|c| !c.confirmed);
        Ok(coins)
    }

    /// The wallet's balance: (confirmed, unconfirmed).
    pub fn wallet_balance(&self, node: NodeIdx) -> Result<(Sat, Sat), WorldError> {
        let mut confirmed = Sat::ZERO;
        let mut unconfirmed = Sat::ZERO;
        for c in self.wallet_coins(node)? {
            let value = Sat(c.txout.value.to_sat());
            if c.confirmed {
                confirmed += value;
            } else {
                unconfirmed += value;
            }
        }
        Ok((confirmed, unconfirmed))
    }

    /// A fresh wallet address of `kind`.
    pub fn new_address(&mut self, node: NodeIdx, kind: AddressKind) -> Result<Address, WorldError> {
        let network = self.network.bitcoin();
        let script = self.node_mut(node)?.keys.next_script(kind, false)?;
        Address::from_script(&script, network)
            .map_err(|e| WorldError::Failed(format!("wallet script has no address: {e}")))
    }

    /// Pays `amount` to `address` from `node`'s wallet at `fee_rate`: selects coins (largest
    /// confirmed first), adds P2TR change unless it would be dust, signs every input and
    /// publishes. Returns the transaction, in the mempool.
    pub fn send_to_address(
        &mut self,
        node: NodeIdx,
        address: &Address,
        amount: Sat,
        fee_rate: FeeRate,
    ) -> Result<Transaction, WorldError> {
        if !address
            .as_unchecked()
            .is_valid_for_network(self.network.bitcoin())
        {
            return Err(WorldError::InvalidArgument(format!(
                "address {address} is not for {}",
                self.network
            )));
        }
        let output = TxOut {
            value: Amount::from_sat(amount.0),
            script_pubkey: address.script_pubkey(),
        };
        self.send_outputs(node, &[output], fee_rate, 0, CoinSelection::Largest)
    }

    /// Pays every output from `node`'s wallet in one transaction at `fee_rate`, as lnd's
    /// `SendOutputs` does: spends only coins with at least `min_confs` confirmations (0: also
    /// unconfirmed ones), confirmed coins first, the largest first (or in the world's seeded
    /// random order for [`CoinSelection::Random`]); adds P2TR change after the outputs unless
    /// it would be dust, signs every input and publishes. Returns the transaction, in the
    /// mempool.
    pub fn send_outputs(
        &mut self,
        node: NodeIdx,
        outputs: &[TxOut],
        fee_rate: FeeRate,
        min_confs: u32,
        selection: CoinSelection,
    ) -> Result<Transaction, WorldError> {
        let change_script = self
            .node_mut(node)?
            .keys
            .next_script(AddressKind::P2tr, true)?;
        let (mut tx, prevouts, _) =
            self.fund(node, outputs, fee_rate, min_confs, selection, change_script)?;
        self.sign_wallet_inputs(node, &mut tx, &prevouts)?;
        self.publish(&tx)?;
        Ok(tx)
    }

    /// What [`World::send_outputs`] would pay miners for `outputs` at `fee_rate` with the same
    /// coin selection, without spending anything (lnd's `Lightning.EstimateFee`; the change is
    /// counted as a P2TR output, as the real one would be).
    pub fn estimate_send_outputs(
        &mut self,
        node: NodeIdx,
        outputs: &[TxOut],
        fee_rate: FeeRate,
        min_confs: u32,
        selection: CoinSelection,
    ) -> Result<crate::domain::Sat, WorldError> {
        let change_script = ScriptBuf::from_bytes([vec![0x51, 0x20], vec![0; 32]].concat());
        let (_, _, fee) =
            self.fund(node, outputs, fee_rate, min_confs, selection, change_script)?;
        Ok(crate::domain::Sat(fee))
    }

    /// Selects coins for `outputs` and builds the unsigned transaction (change to
    /// `change_script` unless dust); returns it, the spent outputs and the fee.
    fn fund(
        &mut self,
        node: NodeIdx,
        outputs: &[TxOut],
        fee_rate: FeeRate,
        min_confs: u32,
        selection: CoinSelection,
        change_script: ScriptBuf,
    ) -> Result<(Transaction, Vec<TxOut>, u64), WorldError> {
        if outputs.is_empty() {
            return Err(WorldError::InvalidArgument(
                "must specify at least one output to create".into(),
            ));
        }
        if let Some(dust) = outputs
            .iter()
            .find(|o| o.value < o.script_pubkey.minimal_non_dust())
        {
            return Err(WorldError::InvalidArgument(format!(
                "output of {} sat to {} is dust",
                dust.value.to_sat(),
                dust.script_pubkey
            )));
        }
        let amount: u64 = outputs.iter().map(|o| o.value.to_sat()).sum();
        let tip = self.height().0;
        let mut coins: Vec<WalletCoin> = self
            .wallet_coins(node)?
            .into_iter()
            .filter(|c| min_confs == 0 || c.confirmations(tip) >= min_confs)
            .collect();
        match selection {
            CoinSelection::NodeDefault | CoinSelection::Largest => {
                coins.sort_by_key(|c| (!c.confirmed, std::cmp::Reverse(c.txout.value)));
            }
            CoinSelection::Random => {
                use rand::seq::SliceRandom;
                coins.shuffle(self.rng());
                coins.sort_by_key(|c| !c.confirmed);
            }
        }
        let mut output = outputs.to_vec();
        output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: change_script.clone(),
        });
        let change_index = output.len() - 1;
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: Vec::new(),
            output,
        };
        let mut prevouts = Vec::new();
        let mut total = 0u64;
        let rate = fee_rate
            .to_sat_per_kwu()
            .max(self.chain.min_relay_fee_sat_kw());
        let mut fee = 0;
        for coin in coins {
            let kind = self
                .node(node)?
                .keys
                .wallet_script(&coin.txout.script_pubkey)
                .map(|w| w.kind);
            tx.input.push(TxIn {
                previous_output: coin.outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: dummy_witness(kind),
            });
            total += coin.txout.value.to_sat();
            prevouts.push(coin.txout);
            let weight = tx.weight().to_wu();
            fee = (weight * rate)
                .div_ceil(1000)
                .max(self.chain.min_relay_fee(weight).0);
            if total >= amount + fee {
                break;
            }
        }
        if total < amount + fee {
            return Err(WorldError::InsufficientFunds(format!(
                "the wallet holds {total} sat in coins with at least {min_confs} \
                 confirmations, {} sat are needed",
                amount + fee
            )));
        }
        let change = total - amount - fee;
        if change < change_script.minimal_non_dust().to_sat() {
            tx.output.pop();
            // The dust change goes to the miners.
            fee += change;
        } else if let Some(out) = tx.output.get_mut(change_index) {
            out.value = Amount::from_sat(change);
        }
        Ok((tx, prevouts, fee))
    }

    fn sign_wallet_inputs(
        &self,
        node: NodeIdx,
        tx: &mut Transaction,
        prevouts: &[TxOut],
    ) -> Result<(), WorldError> {
        let keys = &self.node(node)?.keys;
        let signer = Signer::new();
        for (i, prevout) in prevouts.iter().enumerate() {
            let ws = keys.wallet_script(&prevout.script_pubkey).ok_or_else(|| {
                WorldError::Failed(format!("input {i} does not pay a wallet script"))
            })?;
            match ws.kind {
                AddressKind::P2wpkh => signer.sign_p2wpkh(tx, i, &ws.keypair, prevout.value),
                AddressKind::P2tr => signer.sign_p2tr_key(tx, i, &ws.keypair, prevouts),
            }
            .map_err(|e| WorldError::Failed(format!("cannot sign input {i}: {e}")))?;
        }
        Ok(())
    }

    /// Publishes a transaction. A transaction the chain knows already succeeds; a rejection is
    /// `InvalidArgument` with the chain's reason.
    pub fn publish(&mut self, tx: &Transaction) -> Result<Txid, WorldError> {
        // As lnd's wallet does, a transaction already in the chain counts as published: the
        // node's mempool would refuse it as a double spend of itself.
        let txid = tx.compute_txid();
        if matches!(self.chain.tx(&txid), Some(TxStatus::Confirmed { .. })) {
            return Ok(txid);
        }
        match self.chain.accept(tx.clone()) {
            Ok(accepted) => Ok(accepted.txid),
            Err(RejectReason::Duplicate(txid)) => Ok(txid),
            // lnd's own words first (a permanent failure, as lnd's answer reads), then the
            // simnet's detail.
            Err(reason) => match reason.lnd_wording() {
                Some(words) => Err(WorldError::Failed(format!("{words} ({reason})"))),
                None => Err(WorldError::InvalidArgument(reason.to_string())),
            },
        }
    }

    /// The fee rate to confirm within `conf_target` blocks, from the chain's fee trace.
    pub fn estimate_fee(&self, conf_target: u32) -> FeeRate {
        FeeRate::from_sat_per_kwu(self.chain.estimate_fee_sat_kw(conf_target))
    }

    /// `SignOutputRaw`: one raw signature per requested input, made with the node's key at
    /// the input's locator (or, if the locator names another key, the derived key matching
    /// the public key).
    pub fn sign_output_raw(
        &self,
        node: NodeIdx,
        request: &SignRequest,
    ) -> Result<Vec<Vec<u8>>, WorldError> {
        let keys = &self.node(node)?.keys;
        let secp = keys.secp();
        let mut cache = SighashCache::new(&request.tx);
        let mut out = Vec::with_capacity(request.inputs.len());
        for input in &request.inputs {
            let idx = input.input_index as usize;
            let secret = self.secret_for(node, &input.key)?;
            match &input.method {
                SignMethod::WitnessV0 { witness_script } => {
                    let ty = if input.sighash == 0 {
                        EcdsaSighashType::All
                    } else {
                        EcdsaSighashType::from_standard(input.sighash)
                            .map_err(|e| WorldError::InvalidArgument(format!("input {idx}: {e}")))?
                    };
                    let sighash = cache
                        .p2wsh_signature_hash(idx, witness_script, input.output.value, ty)
                        .map_err(|e| WorldError::InvalidArgument(format!("input {idx}: {e}")))?;
                    let msg = Message::from_digest(sighash.to_byte_array());
                    out.push(secp.sign_ecdsa(&msg, &secret).serialize_der().to_vec());
                }
                SignMethod::TaprootScriptSpend { leaf_script } => {
                    let byte = u8::try_from(input.sighash).map_err(|_| {
                        WorldError::InvalidArgument(format!(
                            "input {idx}: sighash {} is not a taproot sighash type",
                            input.sighash
                        ))
                    })?;
                    let ty = TapSighashType::from_consensus_u8(byte)
                        .map_err(|e| WorldError::InvalidArgument(format!("input {idx}: {e}")))?;
                    let leaf = TapLeafHash::from_script(leaf_script, LeafVersion::TapScript);
                    let sighash = cache
                        .taproot_script_spend_signature_hash(
                            idx,
                            &Prevouts::All(&request.prev_outputs),
                            leaf,
                            ty,
                        )
                        .map_err(|e| WorldError::InvalidArgument(format!("input {idx}: {e}")))?;
                    let msg = Message::from_digest(sighash.to_byte_array());
                    let keypair = bitcoin::key::Keypair::from_secret_key(secp, &secret);
                    let sig = secp.sign_schnorr_no_aux_rand(&msg, &keypair);
                    let mut bytes = sig.as_ref().to_vec();
                    if ty != TapSighashType::Default {
                        bytes.push(byte);
                    }
                    out.push(bytes);
                }
            }
        }
        Ok(out)
    }

    /// The secret key of a descriptor: the key at its locator if it matches the public key,
    /// else any key the node derived with that public key.
    pub(crate) fn secret_for(
        &self,
        node: NodeIdx,
        key: &KeyDescriptor,
    ) -> Result<bitcoin::secp256k1::SecretKey, WorldError> {
        let keys = &self.node(node)?.keys;
        if let Ok(kp) = keys.keypair_at(key.locator)
            && kp.public_key() == key.pubkey
        {
            return Ok(kp.secret_key());
        }
        keys.secret_for(&key.pubkey).ok_or_else(|| {
            WorldError::InvalidArgument(format!(
                "key {} (family {}, index {}) is not one of the node's keys",
                key.pubkey, key.locator.family, key.locator.index
            ))
        })
    }
}

/// A witness of the final size for fee estimation.
fn dummy_witness(kind: Option<AddressKind>) -> Witness {
    match kind {
        Some(AddressKind::P2tr) => Witness::from_slice(&[[0u8; 64].as_slice()]),
        _ => Witness::from_slice(&[[0u8; 72].as_slice(), [0u8; 33].as_slice()]),
    }
}
