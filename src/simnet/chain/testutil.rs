//! Helpers that build and sign real transactions against a [`Chain`]: used by the chain's
//! tests, its benchmark, and anything else in the simnet that needs funded keys quickly.

use bitcoin::key::Keypair;
use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness, absolute, transaction,
};

use super::sign::{SignError, Signer, TapLeafSpend, checksig_leaf};
use super::{Chain, FaucetError, RejectReason};
use crate::domain::Sat;

/// Why a helper could not set up its transactions.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The faucet could not pay.
    #[error(transparent)]
    Faucet(#[from] FaucetError),
    /// A signature could not be made.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The chain rejected a setup transaction.
    #[error("a setup transaction was rejected: {0}")]
    Rejected(#[from] RejectReason),
}

/// One deterministic key with the scripts it can spend.
#[derive(Clone)]
pub struct TestKey {
    /// The signer (holds the secp256k1 context).
    pub signer: Signer,
    /// The key pair.
    pub keypair: Keypair,
}

impl TestKey {
    /// The key whose secret is SHA-256 of `seed`.
    pub fn new(seed: &str) -> Result<TestKey, SignError> {
        let signer = Signer::new();
        let keypair = signer.keypair_from_seed(seed.as_bytes())?;
        Ok(TestKey { signer, keypair })
    }

    /// This key's P2WPKH script.
    pub fn p2wpkh(&self) -> ScriptBuf {
        self.signer.p2wpkh_script(&self.keypair)
    }

    /// This key's key-path-only P2TR script.
    pub fn p2tr(&self) -> ScriptBuf {
        self.signer.p2tr_script(&self.keypair)
    }

    /// A P2TR output with this key as internal key and `leaf` as its only leaf.
    pub fn leaf(&self, leaf: ScriptBuf) -> Result<TapLeafSpend, SignError> {
        self.signer
            .single_leaf(self.keypair.x_only_public_key().0, leaf)
    }

    /// A P2TR output spendable by this key's signature through a script path.
    pub fn checksig_leaf(&self) -> Result<TapLeafSpend, SignError> {
        self.leaf(checksig_leaf(self.keypair.x_only_public_key().0))
    }
}

/// An unsigned version-2 transaction spending `prevout` into one output of `value` to `to`,
/// with an RBF-signalling sequence and no lock time.
pub fn spend(prevout: OutPoint, value: Sat, to: ScriptBuf) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: prevout,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(value.0),
            script_pubkey: to,
        }],
    }
}

/// Pays `amount` to `script` from the faucet and mines it; returns the output.
pub fn fund(
    chain: &mut Chain,
    script: &ScriptBuf,
    amount: Sat,
) -> Result<(OutPoint, TxOut), SetupError> {
    let outpoint = chain.faucet(script.clone(), amount)?;
    let miner = chain.faucet_script().clone();
    chain.mine(1, &miner);
    let txout = TxOut {
        value: Amount::from_sat(amount.0),
        script_pubkey: script.clone(),
    };
    Ok((outpoint, txout))
}

/// Creates `n` confirmed outputs paying a `<key> OP_CHECKSIG` taproot leaf and returns `n`
/// signed script-path spends of them, one per output, none yet accepted. The chain is left
/// with the outputs confirmed, so accepting the spends measures validation alone.
pub fn script_path_spends(chain: &mut Chain, n: usize) -> Result<Vec<Transaction>, SetupError> {
    const EACH_SAT: u64 = 20_000;
    const FEE_SAT: u64 = 1_000;
    let key = TestKey::new("script path spends")?;
    let leaf = key.checksig_leaf()?;
    let mut spends = Vec::with_capacity(n);
    // Fan out in batches that stay under the standard weight limit.
    let mut left = n;
    while left > 0 {
        let batch = left.min(2_000);
        left -= batch;
        let total = Sat(EACH_SAT * batch as u64);
        let fee = Sat(100 * batch as u64 + 1_000);
        let (funding, funding_out) = fund(chain, &key.p2tr(), total + fee)?;
        let mut fan = spend(funding, Sat(EACH_SAT), leaf.script_pubkey.clone());
        fan.output = vec![
            TxOut {
                value: Amount::from_sat(EACH_SAT),
                script_pubkey: leaf.script_pubkey.clone()
            };
            batch
        ];
        key.signer
            .sign_p2tr_key(&mut fan, 0, &key.keypair, &[funding_out])?;
        let fan_txid = chain.accept(fan)?.txid;
        let miner = chain.faucet_script().clone();
        chain.mine(1, &miner);
        let prevout = TxOut {
            value: Amount::from_sat(EACH_SAT),
            script_pubkey: leaf.script_pubkey.clone(),
        };
        for vout in 0..batch {
            let outpoint = OutPoint {
                txid: fan_txid,
                vout: vout as u32,
            };
            let mut tx = spend(outpoint, Sat(EACH_SAT - FEE_SAT), key.p2tr());
            key.signer.sign_p2tr_leaf(
                &mut tx,
                0,
                &key.keypair,
                std::slice::from_ref(&prevout),
                &leaf,
            )?;
            spends.push(tx);
        }
    }
    Ok(spends)
}
