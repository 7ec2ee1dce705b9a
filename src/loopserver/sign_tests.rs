//! Tests of the server's signing against the client's halves in `crate::chain` and Bitcoin
//! Core's script interpreter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bitcoin::secp256k1::PublicKey;

use super::*;
use crate::chain::fees::SweepWitness;
use crate::chain::musig::CoopSession;
use crate::chain::sweep::{SweepRequest, build_sweep, key_spend_witness};
use crate::chain::verify::verify_spend;
use crate::domain::{BlockHeight, Network};

fn secret(n: u8) -> SecretKey {
    let mut b = [0u8; 32];
    b[31] = n;
    SecretKey::from_slice(&b).unwrap()
}

const PREIMAGE: [u8; 32] = [5; 32];

fn htlc() -> HtlcV3 {
    let secp = Secp256k1::new();
    HtlcV3::new(
        PublicKey::from_secret_key(&secp, &secret(2)),
        PublicKey::from_secret_key(&secp, &secret(3)),
        Preimage(PREIMAGE).hash(),
        800,
        Network::Regtest,
    )
    .unwrap()
}

fn outpoint() -> OutPoint {
    OutPoint {
        txid: Txid::from_byte_array([9; 32]),
        vout: 1,
    }
}

fn sweep(h: &HtlcV3) -> crate::chain::sweep::UnsignedSweep {
    build_sweep(&SweepRequest {
        htlc_outpoint: outpoint(),
        htlc_value: Sat(100_000),
        htlc_pk_script: h.pk_script(),
        path: SweepWitness::KeyPath,
        destination: ScriptBuf::new_p2tr_tweaked(h.output_key()),
        fee_rate: SatPerKw(1_000),
        height: BlockHeight(790),
    })
    .unwrap()
}

fn prevouts(s: &crate::chain::sweep::UnsignedSweep) -> Vec<Prevout> {
    s.tx.input
        .iter()
        .zip(&s.prevouts)
        .map(|(i, o)| Prevout {
            outpoint: i.previous_output,
            value: Sat(o.value.to_sat()),
            pk_script: o.script_pubkey.clone(),
        })
        .collect()
}

#[test]
fn recomputed_sighash_matches_the_clients_and_the_cosigned_sweep_validates() {
    let h = htlc();
    let s = sweep(&h);
    let psbt = s.psbt().unwrap().serialize();
    let (index, sighash) =
        sweep_sighash(&psbt, &prevouts(&s), &h, &[outpoint()], h.hash()).unwrap();
    assert_eq!(index, 0);
    assert_eq!(sighash, s.key_spend_sighash().unwrap());

    let client = CoopSession::start(&h, &secret(3), sighash, [1; 32]).unwrap();
    let (nonce, partial) = cosign_answer(
        &h,
        &secret(2),
        sighash,
        &client.public_nonce(),
        [2; 32],
        CoSign::Honest,
    )
    .unwrap();
    let sig = client.finish(&nonce, &partial).unwrap();
    let prev = s.prevouts.clone();
    let tx = s.signed(key_spend_witness(&sig));
    verify_spend(&tx, &prev).unwrap();
}

#[test]
fn sighash_refuses_mismatched_or_foreign_inputs() {
    let h = htlc();
    let s = sweep(&h);
    let psbt = s.psbt().unwrap().serialize();
    let good = prevouts(&s);

    // Not an outpoint this server funded.
    let other = OutPoint {
        vout: 7,
        ..outpoint()
    };
    assert!(matches!(
        sweep_sighash(&psbt, &good, &h, &[other], h.hash()),
        Err(LoopServerError::NoHtlcInput(_))
    ));
    // Prevout list out of step with the inputs.
    let mut moved = good.clone();
    moved[0].outpoint = other;
    assert!(matches!(
        sweep_sighash(&psbt, &moved, &h, &[outpoint()], h.hash()),
        Err(LoopServerError::Psbt(_))
    ));
    // A value that disagrees with the PSBT's witness_utxo.
    let mut wrong_value = good.clone();
    wrong_value[0].value = Sat(1);
    assert!(matches!(
        sweep_sighash(&psbt, &wrong_value, &h, &[outpoint()], h.hash()),
        Err(LoopServerError::Psbt(_))
    ));
    assert!(sweep_sighash(&psbt, &[], &h, &[outpoint()], h.hash()).is_err());
    assert!(sweep_sighash(b"not a psbt", &good, &h, &[outpoint()], h.hash()).is_err());
    assert!(Prevout::from_wire(1, &[], &[0; 31], 0).is_err());
}

#[test]
fn misbehaving_cosign_answers_make_the_client_fall_back() {
    let h = htlc();
    let sighash = sweep(&h).key_spend_sighash().unwrap();
    let start = || CoopSession::start(&h, &secret(3), sighash, [1; 32]).unwrap();
    let answer = |mode| {
        cosign_answer(
            &h,
            &secret(2),
            sighash,
            &start().public_nonce(),
            [2; 32],
            mode,
        )
    };
    assert!(answer(CoSign::Error).is_err());
    for mode in [
        CoSign::ShortNonce,
        CoSign::ShortPartialSig,
        CoSign::InvalidPartialSig,
    ] {
        let (nonce, partial) = answer(mode).unwrap();
        assert!(start().finish(&nonce, &partial).is_err(), "{mode:?}");
    }
    let (nonce, partial) = answer(CoSign::InvalidPartialSig).unwrap();
    assert_eq!(
        (nonce.len(), partial.len()),
        (PUB_NONCE_LEN, PARTIAL_SIG_LEN)
    );
    assert!(
        cosign_answer(&h, &secret(2), sighash, &[2; 65], [2; 32], CoSign::Honest).is_err(),
        "a malformed client nonce is refused"
    );
}

#[test]
fn timeout_claim_validates_at_expiry_only() {
    let h = htlc();
    let dest = ScriptBuf::new_p2tr_tweaked(h.output_key());
    let tx = timeout_claim(
        &h,
        &secret(2),
        outpoint(),
        Sat(100_000),
        &dest,
        SatPerKw(2_000),
    )
    .unwrap();
    let prevout = TxOut {
        value: Amount::from_sat(100_000),
        script_pubkey: h.pk_script(),
    };
    verify_spend(&tx, std::slice::from_ref(&prevout)).unwrap();
    assert_eq!(tx.lock_time, LockTime::from_consensus(800));
    let fee = 100_000 - tx.output[0].value.to_sat();
    assert_eq!(fee, (tx.weight().to_wu() * 2_000).div_ceil(1000));
    assert_eq!(
        tx.input[0].witness.len(),
        3,
        "timeout witnesses have three elements"
    );
    assert_eq!(preimage_from_witness(&tx.input[0].witness, h.hash()), None);

    // A lock time below the expiry fails CHECKLOCKTIMEVERIFY.
    let mut early = tx.clone();
    early.lock_time = LockTime::from_consensus(799);
    assert!(verify_spend(&early, &[prevout]).is_err());

    // The wrong key cannot claim.
    let stolen = timeout_claim(
        &h,
        &secret(3),
        outpoint(),
        Sat(100_000),
        &dest,
        SatPerKw(2_000),
    )
    .unwrap();
    assert!(
        verify_spend(
            &stolen,
            &[TxOut {
                value: Amount::from_sat(100_000),
                script_pubkey: h.pk_script()
            }]
        )
        .is_err()
    );
    assert!(timeout_claim(&h, &secret(2), outpoint(), Sat(300), &dest, SatPerKw(2_000)).is_err());
}

#[test]
fn the_preimage_is_read_from_a_success_witness() {
    let h = htlc();
    let sig = bitcoin::taproot::Signature::from_slice(&[1; 64]).unwrap();
    let w = h.success_witness(&PREIMAGE, &sig);
    assert_eq!(
        preimage_from_witness(&w, h.hash()).map(|p| p.0),
        Some(PREIMAGE)
    );
    assert_eq!(preimage_from_witness(&w, SwapHash([0; 32])), None);
    let mut key_path = Witness::new();
    key_path.push([1u8; 64]);
    assert_eq!(preimage_from_witness(&key_path, h.hash()), None);
}

/// A Loop In HTLC: the client (sender) holds 2 and internal 4, the server (receiver) 3 and
/// internal 5.
fn loop_in_htlc() -> HtlcV3 {
    let secp = Secp256k1::new();
    let pk = |n| PublicKey::from_secret_key(&secp, &secret(n));
    HtlcV3::with_internal_keys(
        crate::chain::htlc::HtlcKeys {
            sender: pk(2),
            receiver: pk(3),
            sender_internal: pk(4),
            receiver_internal: pk(5),
        },
        Preimage(PREIMAGE).hash(),
        800,
        Network::Regtest,
    )
    .unwrap()
}

#[test]
fn loop_in_claims_validate_by_the_key_path_and_the_success_leaf_only_with_the_right_secrets() {
    let h = loop_in_htlc();
    let dest = ScriptBuf::new_p2tr_tweaked(h.output_key());
    let prevout = TxOut {
        value: Amount::from_sat(100_000),
        script_pubkey: h.pk_script(),
    };
    let claim = |how: &InClaim<'_>| {
        loop_in_claim(
            &h,
            outpoint(),
            Sat(100_000),
            &dest,
            SatPerKw(1_000),
            BlockHeight(790),
            how,
        )
    };
    let key = claim(&InClaim::KeyPath {
        ours: &secret(5),
        theirs: &secret(4),
    })
    .unwrap();
    verify_spend(&key, std::slice::from_ref(&prevout)).unwrap();
    assert_eq!(key.input[0].witness.len(), 1);

    let leaf = claim(&InClaim::SuccessLeaf {
        key: &secret(3),
        preimage: Preimage(PREIMAGE),
    })
    .unwrap();
    verify_spend(&leaf, std::slice::from_ref(&prevout)).unwrap();
    assert_eq!(leaf.input[0].witness.len(), 4);
    assert_eq!(
        preimage_from_witness(&leaf.input[0].witness, h.hash()).map(|p| p.0),
        Some(PREIMAGE)
    );

    // Without the client's internal key (its script key instead) there is no key path; a
    // wrong preimage or another key fails the success leaf.
    assert!(
        claim(&InClaim::KeyPath {
            ours: &secret(5),
            theirs: &secret(2),
        })
        .is_err()
    );
    let wrong_preimage = claim(&InClaim::SuccessLeaf {
        key: &secret(3),
        preimage: Preimage([6; 32]),
    })
    .unwrap();
    assert!(verify_spend(&wrong_preimage, std::slice::from_ref(&prevout)).is_err());
    let wrong_key = claim(&InClaim::SuccessLeaf {
        key: &secret(2),
        preimage: Preimage(PREIMAGE),
    })
    .unwrap();
    assert!(verify_spend(&wrong_key, &[prevout]).is_err());
}
