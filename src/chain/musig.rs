//! Cooperative key-path signing of a v3 HTLC: two-party MuSig2 (BIP-327) over the sorted keys,
//! tweaked by the tap root, as Loop's `MuSig2SignSweep` exchange does it.
//!
//! The client starts a [`CoopSession`], sends its 66-byte public nonce with the sweep, and
//! finishes with the server's nonce and 32-byte partial signature; the result is checked
//! against the output key before it is returned, so a bad server answer can only ever lead to
//! the script-path fallback, never to a broadcast of an invalid transaction. [`cosign`] is the
//! server's half, used by the simnet's swap server.
//!
//! Nonce safety: the caller supplies a fresh random 32-byte `nonce_seed` per session (this
//! module does no I/O). `musig2` also mixes in the secret key, the message and the aggregate
//! key, so a repeated seed with a different sighash still yields a different nonce.

use std::fmt;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey, schnorr};
use musig2::secp::{Point, Scalar};
use musig2::{FirstRound, LiftedSignature, PartialSignature, PubNonce, SecNonceSpices};

use crate::chain::ChainError;
use crate::chain::htlc::HtlcV3;

/// Bytes of a MuSig2 public nonce on the wire.
pub const PUB_NONCE_LEN: usize = 66;

/// Bytes of a MuSig2 partial signature on the wire.
pub const PARTIAL_SIG_LEN: usize = 32;

fn musig_err(stage: &'static str, reason: impl fmt::Display) -> ChainError {
    ChainError::MuSig2 {
        stage,
        reason: reason.to_string(),
    }
}

/// Our signer index and the other party's, from the HTLC's sorted key order.
fn indices(htlc: &HtlcV3, ours: &PublicKey) -> Result<(usize, usize), ChainError> {
    let ctx = htlc.key_agg_context();
    let point = |pk: &PublicKey| Point::from_slice(&pk.serialize());
    let our_point = point(ours).map_err(|e| musig_err("key", e))?;
    let our_index = ctx
        .pubkey_index(our_point)
        .ok_or_else(|| musig_err("key", "our key is not one of the HTLC's two keys"))?;
    // Two signers: the other one holds the other index.
    let their_index = usize::from(our_index == 0);
    Ok((our_index, their_index))
}

fn scalar(secret: &SecretKey) -> Result<Scalar, ChainError> {
    Scalar::from_slice(&secret.secret_bytes()).map_err(|e| musig_err("key", e))
}

fn parse_nonce(bytes: &[u8]) -> Result<PubNonce, ChainError> {
    if bytes.len() != PUB_NONCE_LEN {
        return Err(musig_err(
            "nonce",
            format!("{} bytes, expected {PUB_NONCE_LEN}", bytes.len()),
        ));
    }
    PubNonce::from_bytes(bytes).map_err(|e| musig_err("nonce", e))
}

/// The client's half of a cooperative signing session for one sighash.
pub struct CoopSession {
    round: FirstRound,
    secret: Scalar,
    sighash: [u8; 32],
    their_index: usize,
    htlc: HtlcV3,
}

impl fmt::Debug for CoopSession {
    /// Shows only public facts: the secret key and nonce never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoopSession")
            .field("sighash", &hex::encode(self.sighash))
            .field("their_index", &self.their_index)
            .finish_non_exhaustive()
    }
}

impl CoopSession {
    /// Starts a session for `sighash` (the key-path sighash of the HTLC input) with our secret
    /// key, which must be one of the HTLC's two keys.
    pub fn start(
        htlc: &HtlcV3,
        our_secret: &SecretKey,
        sighash: [u8; 32],
        nonce_seed: [u8; 32],
    ) -> Result<CoopSession, ChainError> {
        let secp = Secp256k1::signing_only();
        let ours = PublicKey::from_secret_key(&secp, our_secret);
        let (our_index, their_index) = indices(htlc, &ours)?;
        let secret = scalar(our_secret)?;
        let round = FirstRound::new(
            htlc.key_agg_context().clone(),
            nonce_seed,
            our_index,
            SecNonceSpices::new()
                .with_seckey(secret)
                .with_message(&sighash),
        )
        .map_err(|e| musig_err("start", e))?;
        Ok(CoopSession {
            round,
            secret,
            sighash,
            their_index,
            htlc: htlc.clone(),
        })
    }

    /// Our 66-byte public nonce, for `MuSig2SignSweepReq.nonce`.
    pub fn public_nonce(&self) -> [u8; PUB_NONCE_LEN] {
        self.round.our_public_nonce().serialize()
    }

    /// Combines the other party's nonce and partial signature with ours into the final
    /// 64-byte signature, and checks it against the HTLC's output key.
    pub fn finish(
        mut self,
        their_nonce: &[u8],
        their_partial_sig: &[u8],
    ) -> Result<schnorr::Signature, ChainError> {
        self.round
            .receive_nonce(self.their_index, parse_nonce(their_nonce)?)
            .map_err(|e| musig_err("nonce", e))?;
        let mut second = self
            .round
            .finalize(self.secret, self.sighash)
            .map_err(|e| musig_err("sign", e))?;
        if their_partial_sig.len() != PARTIAL_SIG_LEN {
            return Err(musig_err(
                "partial signature",
                format!(
                    "{} bytes, expected {PARTIAL_SIG_LEN}",
                    their_partial_sig.len()
                ),
            ));
        }
        let partial = PartialSignature::from_slice(their_partial_sig)
            .map_err(|e| musig_err("partial signature", e))?;
        second
            .receive_signature(self.their_index, partial)
            .map_err(|e| musig_err("partial signature", e))?;
        let lifted: LiftedSignature = second.finalize().map_err(|e| musig_err("combine", e))?;
        let sig = schnorr::Signature::from_slice(&lifted.serialize())
            .map_err(|e| musig_err("combine", e))?;
        if !self.htlc.verify_key_spend(&sig, self.sighash) {
            return Err(musig_err(
                "combine",
                "the combined signature does not verify against the HTLC output key",
            ));
        }
        Ok(sig)
    }
}

/// The other party's half in one step: given the peer's public nonce, returns our public
/// nonce and our partial signature over `sighash`. This is what a swap server answers to
/// `MuSig2SignSweep`.
pub fn cosign(
    htlc: &HtlcV3,
    our_secret: &SecretKey,
    sighash: [u8; 32],
    their_nonce: &[u8],
    nonce_seed: [u8; 32],
) -> Result<([u8; PUB_NONCE_LEN], [u8; PARTIAL_SIG_LEN]), ChainError> {
    let mut session = CoopSession::start(htlc, our_secret, sighash, nonce_seed)?;
    let nonce = session.public_nonce();
    session
        .round
        .receive_nonce(session.their_index, parse_nonce(their_nonce)?)
        .map_err(|e| musig_err("nonce", e))?;
    let second = session
        .round
        .finalize(session.secret, sighash)
        .map_err(|e| musig_err("sign", e))?;
    let partial: PartialSignature = second.our_signature();
    Ok((nonce, partial.serialize()))
}

/// A key-path signature by one party that holds *both* internal secret keys (Loop In: the
/// client reveals its per-swap internal key with `PushKey` once paid). The BIP-327 aggregate
/// secret, tweaked by the tap root, signs alone; the result is checked against the output key.
/// The order of `secrets` does not matter.
pub fn sign_alone(
    htlc: &HtlcV3,
    secrets: [&SecretKey; 2],
    sighash: [u8; 32],
) -> Result<schnorr::Signature, ChainError> {
    let ctx = htlc.key_agg_context();
    let secp = Secp256k1::new();
    let mut ordered: [Option<Scalar>; 2] = [None, None];
    for secret in secrets {
        let public = PublicKey::from_secret_key(&secp, secret);
        let (index, _) = indices(htlc, &public)?;
        if let Some(slot) = ordered.get_mut(index) {
            *slot = Some(scalar(secret)?);
        }
    }
    let [Some(first), Some(second)] = ordered else {
        return Err(musig_err(
            "key",
            "the two secret keys are not the HTLC's two internal keys",
        ));
    };
    let aggregate: Scalar = ctx
        .aggregated_seckey([first, second])
        .map_err(|e| musig_err("key", e))?;
    let secret = SecretKey::from_slice(&aggregate.serialize()).map_err(|e| musig_err("key", e))?;
    let keypair = bitcoin::secp256k1::Keypair::from_secret_key(&secp, &secret);
    let sig =
        secp.sign_schnorr_no_aux_rand(&bitcoin::secp256k1::Message::from_digest(sighash), &keypair);
    if !htlc.verify_key_spend(&sig, sighash) {
        return Err(musig_err(
            "sign",
            "the signature does not verify against the HTLC output key",
        ));
    }
    Ok(sig)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::{Network, SwapHash};

    fn secret(n: u8) -> SecretKey {
        let mut b = [0u8; 32];
        b[31] = n;
        SecretKey::from_slice(&b).unwrap()
    }

    fn htlc() -> HtlcV3 {
        let secp = Secp256k1::new();
        HtlcV3::new(
            PublicKey::from_secret_key(&secp, &secret(2)),
            PublicKey::from_secret_key(&secp, &secret(3)),
            SwapHash([4; 32]),
            700_000,
            Network::Regtest,
        )
        .unwrap()
    }

    #[test]
    fn client_and_server_halves_make_a_valid_signature() {
        let h = htlc();
        let sighash = [0x42; 32];
        let client = CoopSession::start(&h, &secret(3), sighash, [7; 32]).unwrap();
        let (server_nonce, server_partial) =
            cosign(&h, &secret(2), sighash, &client.public_nonce(), [8; 32]).unwrap();
        let sig = client.finish(&server_nonce, &server_partial).unwrap();
        assert!(h.verify_key_spend(&sig, sighash));
    }

    #[test]
    fn bad_server_answers_are_refused() {
        let h = htlc();
        let sighash = [0x42; 32];
        let start = || CoopSession::start(&h, &secret(3), sighash, [7; 32]).unwrap();
        let (nonce, partial) =
            cosign(&h, &secret(2), sighash, &start().public_nonce(), [8; 32]).unwrap();

        assert!(
            start().finish(&nonce[..65], &partial).is_err(),
            "short nonce"
        );
        assert!(
            start().finish(&nonce, &partial[..31]).is_err(),
            "short partial"
        );
        let mut wrong = partial;
        wrong[31] ^= 1;
        assert!(start().finish(&nonce, &wrong).is_err(), "invalid partial");
        // A partial signature over another message is valid-looking but wrong.
        let (n2, p2) =
            cosign(&h, &secret(2), [0x43; 32], &start().public_nonce(), [8; 32]).unwrap();
        assert!(
            start().finish(&n2, &p2).is_err(),
            "partial over another sighash"
        );
        assert!(
            CoopSession::start(&h, &secret(9), sighash, [7; 32]).is_err(),
            "foreign key"
        );
        let dbg = format!("{:?}", start());
        assert!(!dbg.contains(&hex::encode(secret(3).secret_bytes())));
    }

    #[test]
    fn both_internal_secrets_sign_the_key_path_alone() {
        let secp = Secp256k1::new();
        let pk = |n| PublicKey::from_secret_key(&secp, &secret(n));
        let keys = crate::chain::htlc::HtlcKeys {
            sender: pk(2),
            receiver: pk(3),
            sender_internal: pk(4),
            receiver_internal: pk(5),
        };
        let h =
            HtlcV3::with_internal_keys(keys, SwapHash([4; 32]), 700_000, Network::Regtest).unwrap();
        let sighash = [0x24; 32];
        for pair in [[&secret(4), &secret(5)], [&secret(5), &secret(4)]] {
            let sig = sign_alone(&h, pair, sighash).unwrap();
            assert!(h.verify_key_spend(&sig, sighash));
        }
        // The script keys are not the internal keys, and one internal key is not enough.
        assert!(sign_alone(&h, [&secret(2), &secret(3)], sighash).is_err());
        assert!(sign_alone(&h, [&secret(4), &secret(4)], sighash).is_err());
        assert!(sign_alone(&h, [&secret(4), &secret(9)], sighash).is_err());
    }
}
