//! Acceptance: valid spends of each kind, and each rejection reason.

use bitcoin::hashes::Hash;
use bitcoin::{Amount, OutPoint, ScriptBuf};

use super::*;
use crate::simnet::chain::testutil::{fund, spend};
use crate::simnet::chain::*;

#[test]
fn p2wpkh_spend_is_accepted_and_confirms() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, _) = fund(&mut chain, &alice.p2wpkh(), Sat(100_000)).unwrap();
    let mut tx = spend(prev, Sat(99_000), key("bob").p2tr());
    alice
        .signer
        .sign_p2wpkh(&mut tx, 0, &alice.keypair, Amount::from_sat(100_000))
        .unwrap();

    let accepted = chain.accept(tx).unwrap();
    assert_eq!(accepted.fee, Sat(1_000));
    assert_eq!(
        chain.spender(&prev).map(|s| (s.txid, s.height)),
        Some((accepted.txid, None))
    );

    chain.mine(1, &miner());
    assert_eq!(confirmed_at(&chain, &accepted.txid), Some(chain.height()));
    let spend = chain.spender(&prev).unwrap();
    assert_eq!(
        (spend.txid, spend.height),
        (accepted.txid, Some(chain.height()))
    );
    assert!(chain.utxo(&prev).is_none());
    assert!(
        chain
            .utxo(&OutPoint {
                txid: accepted.txid,
                vout: 0
            })
            .is_some()
    );
}

#[test]
fn p2tr_key_path_spend_is_accepted() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_000), alice.p2wpkh());
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, &[prevout])
        .unwrap();
    assert!(chain.accept(tx).is_ok());
}

#[test]
fn p2tr_script_path_spend_is_accepted() {
    let mut chain = chain();
    let alice = key("alice");
    let leaf = alice.checksig_leaf().unwrap();
    let (prev, prevout) = fund(&mut chain, &leaf.script_pubkey, Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_000), alice.p2tr());
    alice
        .signer
        .sign_p2tr_leaf(&mut tx, 0, &alice.keypair, &[prevout], &leaf)
        .unwrap();
    assert!(chain.accept(tx).is_ok());
}

#[test]
fn bad_signatures_fail_script_verification() {
    let mut chain = chain();
    let alice = key("alice");
    let mallory = key("mallory");

    // A valid signature by the wrong key on a script path.
    let leaf = alice.checksig_leaf().unwrap();
    let (prev, prevout) = fund(&mut chain, &leaf.script_pubkey, Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_000), alice.p2tr());
    mallory
        .signer
        .sign_p2tr_leaf(&mut tx, 0, &mallory.keypair, &[prevout], &leaf)
        .unwrap();
    assert!(matches!(
        chain.accept(tx),
        Err(RejectReason::Script { input: 0, outpoint, .. }) if outpoint == prev
    ));

    // A key-path signature with one bit flipped.
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_000), alice.p2wpkh());
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, &[prevout])
        .unwrap();
    let mut sig = tx.input[0].witness.to_vec();
    sig[0][10] ^= 1;
    tx.input[0].witness = bitcoin::Witness::from_slice(&sig);
    let err = chain.accept(tx).unwrap_err();
    assert!(
        matches!(err, RejectReason::Script { input: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("fails script verification"));

    // A P2WPKH signature committing to the wrong amount.
    let (prev, _) = fund(&mut chain, &alice.p2wpkh(), Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_000), alice.p2tr());
    alice
        .signer
        .sign_p2wpkh(&mut tx, 0, &alice.keypair, Amount::from_sat(50_001))
        .unwrap();
    assert!(matches!(chain.accept(tx), Err(RejectReason::Script { .. })));
}

#[test]
fn double_spend_of_a_confirmed_output_is_rejected() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let mut first = spend(prev, Sat(49_000), alice.p2wpkh());
    alice
        .signer
        .sign_p2tr_key(
            &mut first,
            0,
            &alice.keypair,
            std::slice::from_ref(&prevout),
        )
        .unwrap();
    let first_txid = chain.accept(first).unwrap().txid;
    chain.mine(1, &miner());

    let mut second = spend(prev, Sat(40_000), key("bob").p2wpkh());
    alice
        .signer
        .sign_p2tr_key(&mut second, 0, &alice.keypair, &[prevout])
        .unwrap();
    assert_eq!(
        chain.accept(second),
        Err(RejectReason::DoubleSpend {
            outpoint: prev,
            spent_by: first_txid
        })
    );
}

#[test]
fn mempool_double_spend_must_pay_more_to_replace() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let sign = |value: u64, to: ScriptBuf| {
        let mut tx = spend(prev, Sat(value), to);
        alice
            .signer
            .sign_p2tr_key(&mut tx, 0, &alice.keypair, std::slice::from_ref(&prevout))
            .unwrap();
        tx
    };
    let first = chain.accept(sign(49_000, alice.p2wpkh())).unwrap();
    // A child of the first, evicted with it.
    let mut child = spend(
        OutPoint {
            txid: first.txid,
            vout: 0,
        },
        Sat(48_000),
        alice.p2tr(),
    );
    alice
        .signer
        .sign_p2wpkh(&mut child, 0, &alice.keypair, Amount::from_sat(49_000))
        .unwrap();
    let child = chain.accept(child).unwrap();

    // Same fee: not enough.
    let err = chain.accept(sign(49_000, key("bob").p2wpkh())).unwrap_err();
    assert!(
        matches!(err, RejectReason::InsufficientReplacementFee { outpoint, spent_by, .. }
            if outpoint == prev && spent_by == first.txid),
        "{err}"
    );
    // Paying for both evicted transactions plus its own relay: replaces them.
    let seq = chain.next_event_seq();
    let replacement = chain.accept(sign(47_000, key("bob").p2wpkh())).unwrap();
    assert_eq!(replacement.replaced, vec![first.txid, child.txid]);
    assert!(chain.mempool_entry(&first.txid).is_none());
    assert!(chain.mempool_entry(&child.txid).is_none());
    let events: Vec<ChainEvent> = chain.events_since(seq).map(|(_, e)| e.clone()).collect();
    let by = replacement.txid;
    assert_eq!(
        events,
        vec![
            ChainEvent::TxRemoved {
                txid: first.txid,
                reason: RemovalReason::Replaced { by }
            },
            ChainEvent::TxRemoved {
                txid: child.txid,
                reason: RemovalReason::Replaced { by }
            },
            ChainEvent::TxAccepted {
                txid: by,
                replaced: vec![first.txid, child.txid]
            },
        ]
    );
}

#[test]
fn fee_below_min_relay_is_rejected() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_950), alice.p2wpkh());
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, &[prevout])
        .unwrap();
    let vsize = tx.vsize() as u64;
    assert_eq!(
        chain.accept(tx),
        Err(RejectReason::FeeTooLow {
            fee: Sat(50),
            min: Sat(vsize)
        })
    );
}

#[test]
fn missing_inputs_immature_coinbase_and_dust_are_rejected() {
    let mut chain = chain();
    let alice = key("alice");
    let nowhere = OutPoint {
        txid: Txid::from_byte_array([7; 32]),
        vout: 0,
    };
    let mut tx = spend(nowhere, Sat(1_000), alice.p2tr());
    tx.input[0].witness = bitcoin::Witness::from_slice(&[[0u8; 64]]);
    assert_eq!(chain.accept(tx), Err(RejectReason::MissingInput(nowhere)));

    let hashes = chain.mine(1, &alice.p2tr());
    let coinbase = chain.block_by_hash(&hashes[0]).unwrap().1.txdata[0].clone();
    let prev = OutPoint {
        txid: coinbase.compute_txid(),
        vout: 0,
    };
    let mut tx = spend(prev, Sat(1_000_000), alice.p2tr());
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, &coinbase.output[..1])
        .unwrap();
    assert_eq!(
        chain.accept(tx.clone()),
        Err(RejectReason::ImmatureCoinbase {
            outpoint: prev,
            confirmations: 1
        })
    );
    chain.mine(98, &miner());
    assert!(matches!(
        chain.test_accept(&tx),
        Err(RejectReason::ImmatureCoinbase {
            confirmations: 99,
            ..
        })
    ));
    chain.mine(1, &miner());
    assert!(chain.accept(tx).is_ok());

    assert!(matches!(
        chain.faucet(alice.p2tr(), Sat(100)),
        Err(FaucetError::Rejected(RejectReason::Dust {
            vout: 0,
            value: Sat(100),
            min: Sat(330)
        }))
    ));
}
