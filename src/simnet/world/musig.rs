//! lnd's MuSig2 signing sessions (`signrpc.MuSig2*`), BIP-327 via the `musig2` crate.
//!
//! As lnd does for v1.0.0-rc2, the signer keys are sorted before aggregation, the taproot tweak
//! (BIP-86 for key-spend-only, or the script root) is applied to the aggregate key, and the
//! session's secret nonce is made when the session opens and consumed by the one signature.

use std::collections::HashMap;

use musig2::secp::{Point, Scalar};
use musig2::{AggNonce, KeyAggContext, LiftedSignature, PartialSignature, PubNonce, SecNonce};

use super::WorldError;
use crate::lnd::types::{MuSig2Session, MuSig2SessionRequest};

/// One open session. The secret nonce is dropped once used.
struct Session {
    ctx: KeyAggContext,
    seckey: Scalar,
    secnonce: Option<SecNonce>,
    our_nonce: PubNonce,
    other_nonces: Vec<PubNonce>,
    signers: usize,
    signed: Option<([u8; 32], PartialSignature)>,
}

/// A node's open sessions by id.
#[derive(Default)]
pub(crate) struct Sessions {
    open: HashMap<[u8; 32], Session>,
}

impl std::fmt::Debug for Sessions {
    /// Shows only how many sessions are open: nonces and keys are secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sessions({} open)", self.open.len())
    }
}

fn bad(what: impl std::fmt::Display) -> WorldError {
    WorldError::InvalidArgument(what.to_string())
}

fn parse_key(bytes: &[u8]) -> Result<Point, WorldError> {
    let point = match bytes.len() {
        33 => Point::from_slice(bytes),
        32 => {
            let mut full = [2u8; 33];
            full[1..].copy_from_slice(bytes);
            Point::from_slice(&full)
        }
        n => {
            return Err(bad(format!(
                "signer public key has {n} bytes, expected 32 or 33"
            )));
        }
    };
    point.map_err(|e| bad(format!("signer public key is not a point: {e}")))
}

fn parse_nonce(bytes: &[u8]) -> Result<PubNonce, WorldError> {
    PubNonce::from_bytes(bytes).map_err(|e| bad(format!("invalid public nonce: {e}")))
}

impl Sessions {
    /// Opens a session for `seckey` (which must be one of the signers), with `nonce_seed`
    /// drawn fresh by the caller and `id` unique.
    pub(crate) fn create(
        &mut self,
        id: [u8; 32],
        request: &MuSig2SessionRequest,
        seckey: &bitcoin::secp256k1::SecretKey,
        nonce_seed: [u8; 32],
    ) -> Result<MuSig2Session, WorldError> {
        let mut keys = request
            .signer_pubkeys
            .iter()
            .map(|k| parse_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        keys.sort_by_key(|p| p.serialize());
        let mut seckey = Scalar::from_slice(&seckey.secret_bytes()).map_err(bad)?;
        let signers = keys.len();
        let mut ctx = KeyAggContext::new(keys).map_err(bad)?;
        if ctx.pubkey_index(seckey.base_point_mul()).is_none() {
            // Given in x-only form (even y) while ours has odd y: sign with the negated key.
            seckey = -seckey;
            if ctx.pubkey_index(seckey.base_point_mul()).is_none() {
                return Err(bad("the local key is not one of the signer keys"));
            }
        }
        let internal: Point = ctx.aggregated_pubkey_untweaked();
        let mut internal_key = Vec::new();
        if let Some(tweak) = &request.taproot_tweak {
            ctx = if tweak.key_spend_only {
                ctx.with_unspendable_taproot_tweak().map_err(bad)?
            } else {
                let root: [u8; 32] = tweak.script_root.as_slice().try_into().map_err(|_| {
                    bad(format!(
                        "taproot script root has {} bytes, expected 32",
                        tweak.script_root.len()
                    ))
                })?;
                ctx.with_taproot_tweak(&root).map_err(bad)?
            };
            internal_key = internal.serialize_xonly().to_vec();
        }
        let combined: Point = ctx.aggregated_pubkey();
        let secnonce = SecNonce::build_with_seckey(nonce_seed, seckey)
            .with_aggregated_pubkey(combined)
            .build();
        let our_nonce = secnonce.public_nonce();
        let other_nonces = request
            .other_nonces
            .iter()
            .map(|n| parse_nonce(n))
            .collect::<Result<Vec<_>, _>>()?;
        let session = Session {
            ctx,
            seckey,
            secnonce: Some(secnonce),
            our_nonce: our_nonce.clone(),
            other_nonces,
            signers,
            signed: None,
        };
        let have_all = session.have_all_nonces()?;
        self.open.insert(id, session);
        Ok(MuSig2Session {
            id,
            combined_key: combined.serialize_xonly().to_vec(),
            taproot_internal_key: internal_key,
            local_nonces: our_nonce.serialize(),
            have_all_nonces: have_all,
        })
    }

    fn get(&mut self, id: &[u8; 32]) -> Result<&mut Session, WorldError> {
        self.open
            .get_mut(id)
            .ok_or_else(|| WorldError::NotFound("session not found".to_owned()))
    }

    /// Adds other signers' nonces; returns whether every nonce is now known.
    pub(crate) fn register_nonces(
        &mut self,
        id: &[u8; 32],
        nonces: &[[u8; 66]],
    ) -> Result<bool, WorldError> {
        let session = self.get(id)?;
        let parsed = nonces
            .iter()
            .map(|n| parse_nonce(n))
            .collect::<Result<Vec<_>, _>>()?;
        if session.other_nonces.len() + parsed.len() + 1 > session.signers {
            return Err(bad(format!(
                "{} more nonces for {} signers with {} known: too many nonces",
                parsed.len(),
                session.signers,
                session.other_nonces.len() + 1
            )));
        }
        session.other_nonces.extend(parsed);
        session.have_all_nonces()
    }

    /// Our partial signature over `digest`; the secret nonce is consumed.
    pub(crate) fn sign(
        &mut self,
        id: &[u8; 32],
        digest: [u8; 32],
        cleanup: bool,
    ) -> Result<Vec<u8>, WorldError> {
        let session = self.get(id)?;
        if !session.have_all_nonces()? {
            return Err(bad(
                "not all nonces are known yet: register the other signers' nonces",
            ));
        }
        let secnonce = session
            .secnonce
            .take()
            .ok_or_else(|| bad("the session has already signed: open a new session"))?;
        let agg = session.agg_nonce();
        let partial: PartialSignature =
            musig2::sign_partial(&session.ctx, session.seckey, secnonce, &agg, digest)
                .map_err(bad)?;
        session.signed = Some((digest, partial));
        if cleanup {
            self.open.remove(id);
        }
        Ok(partial.serialize().to_vec())
    }

    /// Combines the others' partial signatures with ours; `None` until all are given.
    pub(crate) fn combine(
        &mut self,
        id: &[u8; 32],
        partials: &[Vec<u8>],
    ) -> Result<Option<Vec<u8>>, WorldError> {
        let session = self.get(id)?;
        let (digest, ours) = session
            .signed
            .ok_or_else(|| bad("the session has not signed yet: call MuSig2Sign first"))?;
        if partials.len() + 1 < session.signers {
            return Ok(None);
        }
        let mut all = vec![ours];
        for p in partials {
            all.push(
                PartialSignature::from_slice(p)
                    .map_err(|e| bad(format!("invalid partial signature: {e}")))?,
            );
        }
        let agg = session.agg_nonce();
        let sig: LiftedSignature =
            musig2::aggregate_partial_signatures(&session.ctx, &agg, all, digest)
                .map_err(|e| bad(format!("cannot combine the partial signatures: {e}")))?;
        let combined: Point = session.ctx.aggregated_pubkey();
        musig2::verify_single(combined, sig, digest).map_err(|_| {
            bad("the combined signature does not verify: a partial signature is wrong")
        })?;
        self.open.remove(id);
        Ok(Some(sig.serialize().to_vec()))
    }

    /// Removes a session.
    pub(crate) fn cleanup(&mut self, id: &[u8; 32]) -> Result<(), WorldError> {
        self.open
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| WorldError::NotFound("session not found".to_owned()))
    }
}

impl Session {
    fn have_all_nonces(&self) -> Result<bool, WorldError> {
        let known = self.other_nonces.len() + 1;
        if known > self.signers {
            return Err(bad(format!(
                "{known} nonces for {} signers: too many nonces registered",
                self.signers
            )));
        }
        Ok(known == self.signers)
    }

    fn agg_nonce(&self) -> AggNonce {
        std::iter::once(&self.our_nonce)
            .chain(self.other_nonces.iter())
            .sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use bitcoin::secp256k1::{Parity, Secp256k1, SecretKey};

    use super::*;
    use crate::lnd::types::{KeyLocator, MuSig2Version, TaprootTweak};

    fn secret_with(parity: Parity) -> SecretKey {
        let secp = Secp256k1::new();
        (1u8..)
            .map(|n| SecretKey::from_slice(&[n; 32]).unwrap())
            .find(|k| k.x_only_public_key(&secp).1 == parity)
            .unwrap()
    }

    fn request(keys: &[SecretKey], x_only: bool) -> MuSig2SessionRequest {
        let secp = Secp256k1::new();
        MuSig2SessionRequest {
            key: KeyLocator {
                family: 0,
                index: 0,
            },
            signer_pubkeys: keys
                .iter()
                .map(|k| {
                    let pk = k.public_key(&secp);
                    if x_only {
                        pk.x_only_public_key().0.serialize().to_vec()
                    } else {
                        pk.serialize().to_vec()
                    }
                })
                .collect(),
            other_nonces: Vec::new(),
            taproot_tweak: Some(TaprootTweak {
                script_root: vec![7; 32],
                key_spend_only: false,
            }),
            version: MuSig2Version::V100Rc2,
        }
    }

    fn two_party(x_only: bool) {
        let keys = [secret_with(Parity::Odd), secret_with(Parity::Even)];
        let req = request(&keys, x_only);
        let (mut a, mut b) = (Sessions::default(), Sessions::default());
        let sa = a.create([1; 32], &req, &keys[0], [11; 32]).unwrap();
        let sb = b.create([2; 32], &req, &keys[1], [12; 32]).unwrap();
        assert_eq!(sa.combined_key, sb.combined_key);
        assert_eq!(sa.taproot_internal_key.len(), 32);
        assert!(!sa.have_all_nonces);
        assert!(a.register_nonces(&[1; 32], &[sb.local_nonces]).unwrap());
        assert!(b.register_nonces(&[2; 32], &[sa.local_nonces]).unwrap());
        assert!(
            a.register_nonces(&[1; 32], &[sb.local_nonces]).is_err(),
            "too many"
        );
        let digest = [42u8; 32];
        let pa = a.sign(&[1; 32], digest, false).unwrap();
        let pb = b.sign(&[2; 32], digest, true).unwrap();
        assert!(
            a.sign(&[1; 32], digest, false).is_err(),
            "a session signs once"
        );
        assert_eq!(a.combine(&[1; 32], &[]).unwrap(), None);
        let sig = a.combine(&[1; 32], &[pb]).unwrap().unwrap();
        let secp = Secp256k1::new();
        let key = bitcoin::secp256k1::XOnlyPublicKey::from_slice(&sa.combined_key).unwrap();
        let sig = bitcoin::secp256k1::schnorr::Signature::from_slice(&sig).unwrap();
        let msg = bitcoin::secp256k1::Message::from_digest(digest);
        assert!(secp.verify_schnorr(&sig, &msg, &key).is_ok());
        assert!(b.cleanup(&[2; 32]).is_err(), "cleaned up after signing");
        assert_eq!(pa.len(), 32);
    }

    #[test]
    fn two_sessions_make_a_valid_tweaked_signature_with_compressed_keys() {
        two_party(false);
    }

    #[test]
    fn x_only_keys_work_even_when_ours_has_odd_y() {
        two_party(true);
    }

    #[test]
    fn a_wrong_partial_signature_is_refused() {
        let keys = [secret_with(Parity::Odd), secret_with(Parity::Even)];
        let req = request(&keys, false);
        let (mut a, mut b) = (Sessions::default(), Sessions::default());
        let sa = a.create([1; 32], &req, &keys[0], [11; 32]).unwrap();
        let sb = b.create([2; 32], &req, &keys[1], [12; 32]).unwrap();
        a.register_nonces(&[1; 32], &[sb.local_nonces]).unwrap();
        b.register_nonces(&[2; 32], &[sa.local_nonces]).unwrap();
        a.sign(&[1; 32], [1; 32], false).unwrap();
        let other_message = b.sign(&[2; 32], [2; 32], false).unwrap();
        assert!(a.combine(&[1; 32], &[other_message]).is_err());
    }
}
