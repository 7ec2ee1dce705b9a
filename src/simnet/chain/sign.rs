//! Keys and signatures for spending simnet outputs: P2WPKH (ECDSA, BIP-143), P2TR key path
//! (Schnorr with the tweaked key, BIP-341) and P2TR script path (a leaf plus its control block).
//!
//! The chain's faucet signs with these, the tests build real transactions with them, and the
//! simulated lnd wallet can reuse them. Nothing here touches the chain's state.

use bitcoin::hashes::{Hash, sha256};
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::opcodes::all::{OP_CHECKSIG, OP_CSV, OP_DROP};
use bitcoin::script::Builder;
use bitcoin::secp256k1::{All, Message, Secp256k1, SecretKey, XOnlyPublicKey};
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{ControlBlock, LeafVersion, TapLeafHash, TaprootBuilder};
use bitcoin::{
    Amount, CompressedPublicKey, ScriptBuf, Transaction, TxOut, Witness, ecdsa, taproot,
};

/// Why a spend could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The seed hashed to an invalid secret key (probability ~2^-128).
    #[error("the seed does not give a valid secret key: {0}")]
    Key(#[from] bitcoin::secp256k1::Error),
    /// The sighash could not be computed, e.g. the input index or the prevouts are wrong.
    #[error("cannot compute the sighash for input {input}: {reason}")]
    Sighash {
        /// The input being signed.
        input: usize,
        /// What the sighash code reported.
        reason: String,
    },
    /// The taproot tree could not be built.
    #[error("cannot build the taproot tree: {0}")]
    Tree(String),
}

/// A one-leaf taproot output: what to pay to and what a script-path spend must reveal.
#[derive(Debug, Clone)]
pub struct TapLeafSpend {
    /// The P2TR `scriptPubKey` committing to the internal key and the leaf.
    pub script_pubkey: ScriptBuf,
    /// The leaf script revealed by a script-path spend.
    pub leaf_script: ScriptBuf,
    /// The control block proving the leaf is in the output key.
    pub control_block: ControlBlock,
}

/// Holds a secp256k1 context (costly to create) and signs simnet spends with it.
#[derive(Clone)]
pub struct Signer {
    secp: Secp256k1<All>,
}

impl Default for Signer {
    fn default() -> Self {
        Signer::new()
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer")
    }
}

impl Signer {
    /// A signer with a fresh secp256k1 context.
    pub fn new() -> Signer {
        Signer {
            secp: Secp256k1::new(),
        }
    }

    /// The secp256k1 context, for callers that derive keys themselves.
    pub fn secp(&self) -> &Secp256k1<All> {
        &self.secp
    }

    /// A deterministic key pair: the secret key is SHA-256 of `seed`, so simnet runs repeat.
    pub fn keypair_from_seed(&self, seed: &[u8]) -> Result<Keypair, SignError> {
        let digest = sha256::Hash::hash(seed);
        let secret = SecretKey::from_slice(digest.as_byte_array())?;
        Ok(Keypair::from_secret_key(&self.secp, &secret))
    }

    /// The P2WPKH `scriptPubKey` of `keypair`.
    pub fn p2wpkh_script(&self, keypair: &Keypair) -> ScriptBuf {
        let pk = CompressedPublicKey(keypair.public_key());
        ScriptBuf::new_p2wpkh(&pk.wpubkey_hash())
    }

    /// The key-path-only P2TR `scriptPubKey` of `keypair` (BIP-86 style, no script tree).
    pub fn p2tr_script(&self, keypair: &Keypair) -> ScriptBuf {
        ScriptBuf::new_p2tr(&self.secp, keypair.x_only_public_key().0, None)
    }

    /// A P2TR output with `internal` as internal key and `leaf` as its only script leaf.
    pub fn single_leaf(
        &self,
        internal: XOnlyPublicKey,
        leaf: ScriptBuf,
    ) -> Result<TapLeafSpend, SignError> {
        let info = TaprootBuilder::new()
            .add_leaf(0, leaf.clone())
            .map_err(|e| SignError::Tree(e.to_string()))?
            .finalize(&self.secp, internal)
            .map_err(|_| SignError::Tree("the tree is incomplete".to_owned()))?;
        let control_block = info
            .control_block(&(leaf.clone(), LeafVersion::TapScript))
            .ok_or_else(|| SignError::Tree("the leaf is missing from the tree".to_owned()))?;
        Ok(TapLeafSpend {
            script_pubkey: ScriptBuf::new_p2tr_tweaked(info.output_key()),
            leaf_script: leaf,
            control_block,
        })
    }

    /// Signs input `input` of `tx` as a P2WPKH spend of `value` by `keypair` (SIGHASH_ALL).
    pub fn sign_p2wpkh(
        &self,
        tx: &mut Transaction,
        input: usize,
        keypair: &Keypair,
        value: Amount,
    ) -> Result<(), SignError> {
        let script = self.p2wpkh_script(keypair);
        let sighash = SighashCache::new(&*tx)
            .p2wpkh_signature_hash(input, &script, value, EcdsaSighashType::All)
            .map_err(|e| sighash_error(input, e))?;
        let msg = Message::from_digest(sighash.to_byte_array());
        let sig = ecdsa::Signature::sighash_all(self.secp.sign_ecdsa(&msg, &keypair.secret_key()));
        set_witness(tx, input, Witness::p2wpkh(&sig, &keypair.public_key()))
    }

    /// Signs input `input` of `tx` as a key-path spend of [`Signer::p2tr_script`] of `keypair`.
    /// `prevouts` are the outputs spent by every input, in input order (BIP-341 commits to all).
    pub fn sign_p2tr_key(
        &self,
        tx: &mut Transaction,
        input: usize,
        keypair: &Keypair,
        prevouts: &[TxOut],
    ) -> Result<(), SignError> {
        let sighash = SighashCache::new(&*tx)
            .taproot_key_spend_signature_hash(
                input,
                &Prevouts::All(prevouts),
                TapSighashType::Default,
            )
            .map_err(|e| sighash_error(input, e))?;
        let tweaked = keypair.tap_tweak(&self.secp, None).to_keypair();
        let msg = Message::from_digest(sighash.to_byte_array());
        let signature = self.secp.sign_schnorr_no_aux_rand(&msg, &tweaked);
        let sig = taproot::Signature {
            signature,
            sighash_type: TapSighashType::Default,
        };
        set_witness(tx, input, Witness::p2tr_key_spend(&sig))
    }

    /// Signs input `input` of `tx` as a script-path spend of `spend` whose leaf needs one
    /// Schnorr signature by `keypair` (e.g. [`checksig_leaf`] or [`csv_checksig_leaf`]).
    pub fn sign_p2tr_leaf(
        &self,
        tx: &mut Transaction,
        input: usize,
        keypair: &Keypair,
        prevouts: &[TxOut],
        spend: &TapLeafSpend,
    ) -> Result<(), SignError> {
        let leaf_hash = TapLeafHash::from_script(&spend.leaf_script, LeafVersion::TapScript);
        let sighash = SighashCache::new(&*tx)
            .taproot_script_spend_signature_hash(
                input,
                &Prevouts::All(prevouts),
                leaf_hash,
                TapSighashType::Default,
            )
            .map_err(|e| sighash_error(input, e))?;
        let msg = Message::from_digest(sighash.to_byte_array());
        let signature = self.secp.sign_schnorr_no_aux_rand(&msg, keypair);
        let mut witness = Witness::new();
        witness.push(signature.as_ref());
        witness.push(spend.leaf_script.as_bytes());
        witness.push(spend.control_block.serialize());
        set_witness(tx, input, witness)
    }
}

/// `<key> OP_CHECKSIG`: a leaf spendable by one Schnorr signature.
pub fn checksig_leaf(key: XOnlyPublicKey) -> ScriptBuf {
    Builder::new()
        .push_x_only_key(&key)
        .push_opcode(OP_CHECKSIG)
        .into_script()
}

/// `<blocks> OP_CHECKSEQUENCEVERIFY OP_DROP <key> OP_CHECKSIG`: spendable by one signature once
/// the spent output has `blocks` confirmations (the spending input's sequence must say so).
pub fn csv_checksig_leaf(key: XOnlyPublicKey, blocks: u16) -> ScriptBuf {
    Builder::new()
        .push_int(i64::from(blocks))
        .push_opcode(OP_CSV)
        .push_opcode(OP_DROP)
        .push_x_only_key(&key)
        .push_opcode(OP_CHECKSIG)
        .into_script()
}

fn sighash_error(input: usize, e: impl std::fmt::Display) -> SignError {
    SignError::Sighash {
        input,
        reason: e.to_string(),
    }
}

fn set_witness(tx: &mut Transaction, input: usize, witness: Witness) -> Result<(), SignError> {
    match tx.input.get_mut(input) {
        Some(txin) => {
            txin.witness = witness;
            Ok(())
        }
        None => Err(SignError::Sighash {
            input,
            reason: format!("the transaction has only {} inputs", tx.input.len()),
        }),
    }
}
