//! The simulated world's chain side through the `LightningNode` port: wallet sends,
//! confirmation, spend and block notifications across a reorg, script-path and MuSig2
//! signing, keys and fees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::key::TweakedPublicKey;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey, XOnlyPublicKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{
    Address, Amount, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
    absolute, transaction,
};
use futures::StreamExt;
use sluice::domain::Sat;
use sluice::lnd::types::{
    ConfRequest, ConfUpdate, MuSig2SessionRequest, MuSig2Version, SignInput, SignMethod,
    SignRequest, SpendRequest, SpendUpdate, TaprootTweak,
};
use sluice::lnd::{LightningNode, NodeStream};
use sluice::simnet::chain::sign::{Signer, checksig_leaf};
use sluice::simnet::world::{SharedWorld, SimNode, World, WorldConfig, lock};

const DEADLINE: Duration = Duration::from_secs(20);

/// The default topology with two peers: sluice holds 20 M + 30 M sat on chain, loop 20 BTC.
fn world() -> SharedWorld {
    Arc::new(Mutex::new(
        World::new(WorldConfig::default_topology(11, 2)).unwrap(),
    ))
}

fn nodes(world: &SharedWorld) -> (SimNode, SimNode) {
    (
        SimNode::new(world.clone(), "sluice").unwrap(),
        SimNode::new(world.clone(), "loop").unwrap(),
    )
}

async fn next<T>(s: &mut NodeStream<T>) -> T {
    tokio::time::timeout(DEADLINE, s.next())
        .await
        .expect("no stream item before the deadline")
        .expect("the stream ended")
        .expect("the stream failed")
}

#[tokio::test]
async fn wallet_send_confirms_spends_and_reorgs_through_the_notifier() {
    let w = world();
    let (sluice, lp) = nodes(&w);
    let addr = sluice.next_addr().await.unwrap();
    let start = sluice.block_height().await.unwrap();
    let mut epochs = sluice.register_block_epochs().await.unwrap();
    assert_eq!(next(&mut epochs).await.height, start);
    let tx = lp
        .send_to_address(&addr, Sat(100_000), FeeRate::from_sat_per_kwu(2_500))
        .unwrap();
    let mut conf = sluice
        .register_confirmations(&ConfRequest {
            txid: None,
            script: addr.script_pubkey(),
            num_confs: 1,
            height_hint: start,
        })
        .await
        .unwrap();
    let spent = tx.input[0].previous_output;
    let mut spend = lp
        .register_spend(&SpendRequest {
            outpoint: Some(spent),
            script: ScriptBuf::new(),
            height_hint: start,
        })
        .await
        .unwrap();
    lock(&w).mine(1);
    let height = sluice::domain::BlockHeight(start.0 + 1);
    match next(&mut conf).await {
        ConfUpdate::Confirmed {
            tx: got,
            block_height,
            ..
        } => assert_eq!((got, block_height), (tx.clone(), height)),
        other => panic!("unexpected {other:?}"),
    }
    match next(&mut spend).await {
        SpendUpdate::Spent {
            outpoint,
            spending_tx,
            input_index,
            height: h,
        } => assert_eq!(
            (outpoint, spending_tx, input_index, h),
            (spent, tx.clone(), 0, height)
        ),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(next(&mut epochs).await.height, height);
    // The wallet sees its new coin.
    assert_eq!(sluice.wallet_balance().unwrap().0, Sat(50_100_000));
    // A registration after the fact, from a hint, still finds it.
    let mut late = sluice
        .register_confirmations(&ConfRequest {
            txid: Some(tx.compute_txid()),
            script: addr.script_pubkey(),
            num_confs: 1,
            height_hint: start,
        })
        .await
        .unwrap();
    assert!(matches!(
        next(&mut late).await,
        ConfUpdate::Confirmed { .. }
    ));
    lock(&w).reorg(1).unwrap();
    assert_eq!(next(&mut conf).await, ConfUpdate::Reorg);
    assert_eq!(next(&mut spend).await, SpendUpdate::Reorg);
    assert_eq!(next(&mut epochs).await.height, start);
    lock(&w).mine(2);
    assert!(
        matches!(next(&mut conf).await, ConfUpdate::Confirmed { block_height, .. } if block_height == height)
    );
    assert_eq!(next(&mut epochs).await.height, height);
    assert_eq!(next(&mut epochs).await.height.0, height.0 + 1);
}

fn spend_to(outpoint: OutPoint, value: Amount, to: ScriptBuf) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: value - Amount::from_sat(1_000),
            script_pubkey: to,
        }],
    }
}

/// Funds `script` with 50,000 sat from loop's wallet, mined; returns the output.
fn fund(w: &SharedWorld, lp: &SimNode, script: &ScriptBuf) -> (OutPoint, TxOut) {
    let addr = Address::from_script(script, bitcoin::Network::Regtest).unwrap();
    let tx = lp
        .send_to_address(&addr, Sat(50_000), FeeRate::from_sat_per_kwu(2_500))
        .unwrap();
    lock(w).mine(1);
    let vout = tx
        .output
        .iter()
        .position(|o| &o.script_pubkey == script)
        .unwrap();
    (
        OutPoint {
            txid: tx.compute_txid(),
            vout: vout as u32,
        },
        tx.output[vout].clone(),
    )
}

#[tokio::test]
async fn a_taproot_script_path_signature_from_sign_output_raw_spends_on_chain() {
    let w = world();
    let (sluice, lp) = nodes(&w);
    let key = sluice.derive_next_key(42).await.unwrap();
    let xonly = XOnlyPublicKey::from(key.pubkey);
    let leaf = Signer::new()
        .single_leaf(xonly, checksig_leaf(xonly))
        .unwrap();
    let (outpoint, prevout) = fund(&w, &lp, &leaf.script_pubkey);
    let dest = lp.next_addr().await.unwrap().script_pubkey();
    let mut tx = spend_to(outpoint, prevout.value, dest);
    let sigs = sluice
        .sign_output_raw(&SignRequest {
            tx: tx.clone(),
            inputs: vec![SignInput {
                input_index: 0,
                key,
                output: prevout.clone(),
                sighash: 0,
                method: SignMethod::TaprootScriptSpend {
                    leaf_script: leaf.leaf_script.clone(),
                },
            }],
            prev_outputs: vec![prevout],
        })
        .await
        .unwrap();
    assert_eq!(sigs[0].len(), 64);
    let mut witness = Witness::new();
    witness.push(&sigs[0]);
    witness.push(leaf.leaf_script.as_bytes());
    witness.push(leaf.control_block.serialize());
    tx.input[0].witness = witness;
    // A transaction the signature does not commit to is refused with the chain's reason.
    let mut bad = tx.clone();
    bad.output[0].value -= Amount::from_sat(1);
    let err = sluice.publish_transaction(&bad, "bad").await.unwrap_err();
    assert_eq!(err.kind, sluice::lnd::NodeErrorKind::InvalidArgument);
    assert!(
        err.message.contains("script verification"),
        "{}",
        err.message
    );
    sluice
        .publish_transaction(&tx, "script path")
        .await
        .unwrap();
    // Publishing again is fine, in the mempool and once confirmed (as with lnd's wallet).
    sluice.publish_transaction(&tx, "again").await.unwrap();
    lock(&w).mine(1);
    sluice.publish_transaction(&tx, "confirmed").await.unwrap();
}

#[tokio::test]
async fn musig2_with_a_local_cosigner_makes_a_key_path_spend_the_chain_accepts() {
    use musig2::secp::Point;
    use musig2::{AggNonce, KeyAggContext, PartialSignature, SecNonce};

    let w = world();
    let (sluice, lp) = nodes(&w);
    let ours = sluice.derive_next_key(42).await.unwrap();
    let secp = Secp256k1::new();
    let cosigner = SecretKey::from_slice(&[9; 32]).unwrap();
    let their_pk = cosigner.public_key(&secp);
    let mut nonce_seed = [3u8; 32];
    nonce_seed[0] = 1;
    let mut keys = [ours.pubkey.serialize(), their_pk.serialize()];
    keys.sort();
    let ctx = KeyAggContext::new(keys.iter().map(|k| Point::from_slice(k).unwrap()))
        .unwrap()
        .with_unspendable_taproot_tweak()
        .unwrap();
    let their_scalar = musig2::secp::Scalar::from_slice(&cosigner.secret_bytes()).unwrap();
    let their_secnonce = SecNonce::build_with_seckey(nonce_seed, their_scalar).build();
    let their_nonce = their_secnonce.public_nonce();

    let session = sluice
        .musig2_create_session(&MuSig2SessionRequest {
            key: ours.locator,
            signer_pubkeys: vec![
                ours.pubkey.serialize().to_vec(),
                their_pk.serialize().to_vec(),
            ],
            other_nonces: Vec::new(),
            taproot_tweak: Some(TaprootTweak {
                script_root: Vec::new(),
                key_spend_only: true,
            }),
            version: MuSig2Version::V100Rc2,
        })
        .await
        .unwrap();
    assert!(!session.have_all_nonces);
    let agg: Point = ctx.aggregated_pubkey();
    assert_eq!(session.combined_key, agg.serialize_xonly().to_vec());
    let output_key = XOnlyPublicKey::from_slice(&session.combined_key).unwrap();
    let script =
        ScriptBuf::new_p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(output_key));
    let (outpoint, prevout) = fund(&w, &lp, &script);
    let dest = lp.next_addr().await.unwrap().script_pubkey();
    let mut tx = spend_to(outpoint, prevout.value, dest);
    let sighash = SighashCache::new(&tx)
        .taproot_key_spend_signature_hash(0, &Prevouts::All(&[prevout]), TapSighashType::Default)
        .unwrap();
    let digest = sighash.to_byte_array();

    assert!(
        sluice
            .musig2_register_nonces(session.id, &[their_nonce.serialize()])
            .await
            .unwrap()
    );
    let our_partial = sluice.musig2_sign(session.id, digest, false).await.unwrap();
    assert_eq!(our_partial.len(), 32);
    let our_nonce = musig2::PubNonce::from_bytes(&session.local_nonces).unwrap();
    let agg_nonce = AggNonce::sum([&our_nonce, &their_nonce]);
    let their_partial: PartialSignature =
        musig2::sign_partial(&ctx, their_scalar, their_secnonce, &agg_nonce, digest).unwrap();
    let sig = sluice
        .musig2_combine_sig(session.id, &[their_partial.serialize().to_vec()])
        .await
        .unwrap()
        .expect("all partial signatures are known");
    let verified = secp.verify_schnorr(
        &bitcoin::secp256k1::schnorr::Signature::from_slice(&sig).unwrap(),
        &Message::from_digest(digest),
        &output_key,
    );
    assert!(verified.is_ok());
    tx.input[0].witness = Witness::from_slice(&[sig]);
    sluice.publish_transaction(&tx, "musig2").await.unwrap();
    // The session is gone after combining.
    assert_eq!(
        sluice.musig2_cleanup(session.id).await.unwrap_err().kind,
        sluice::lnd::NodeErrorKind::NotFound
    );
}

#[tokio::test]
async fn keys_addresses_fees_and_identity_are_served() {
    let w = world();
    let (sluice, lp) = nodes(&w);
    let info = sluice.get_info().await.unwrap();
    assert_eq!(info.alias, "sluice");
    assert_eq!(info.network, sluice::domain::Network::Regtest);
    assert_eq!(info.block_height, lock(&w).height());
    assert_eq!(Some(info.pubkey), sluice.node_id().ok());
    let version = sluice.get_version().await.unwrap();
    assert_eq!(version.version, "0.21.2-beta");
    for tag in ["signrpc", "walletrpc", "chainrpc", "invoicesrpc"] {
        assert!(version.build_tags.iter().any(|t| t == tag));
    }
    assert_eq!(
        sluice
            .node_alias(lp.node_id().unwrap())
            .await
            .unwrap()
            .as_deref(),
        Some("loop")
    );
    assert_eq!(sluice.list_peers().await.unwrap().len(), 2);
    let a = sluice.derive_next_key(99).await.unwrap();
    let b = sluice.derive_next_key(99).await.unwrap();
    assert_eq!((a.locator.index, b.locator.index), (0, 1));
    assert_eq!(sluice.derive_key(b.locator).await.unwrap(), b);
    assert_ne!(lp.derive_key(b.locator).await.unwrap().pubkey, b.pubkey);
    let addr = sluice.next_addr().await.unwrap();
    assert!(addr.script_pubkey().is_p2tr());
    assert_ne!(sluice.next_addr().await.unwrap(), addr);
    lock(&w).set_fee_trace(sluice::simnet::chain::FeeTrace::Flat(5_000));
    assert_eq!(
        sluice.estimate_fee(6).await.unwrap(),
        FeeRate::from_sat_per_kwu(5_000)
    );
}

#[tokio::test]
async fn a_segwit_v0_signature_from_sign_output_raw_spends_a_p2wsh_on_chain() {
    let w = world();
    let (sluice, lp) = nodes(&w);
    let key = sluice.derive_next_key(42).await.unwrap();
    let witness_script = bitcoin::script::Builder::new()
        .push_slice(key.pubkey.serialize())
        .push_opcode(bitcoin::opcodes::all::OP_CHECKSIG)
        .into_script();
    let script = ScriptBuf::new_p2wsh(&witness_script.wscript_hash());
    let (outpoint, prevout) = fund(&w, &lp, &script);
    let dest = lp.next_addr().await.unwrap().script_pubkey();
    let mut tx = spend_to(outpoint, prevout.value, dest);
    let sigs = sluice
        .sign_output_raw(&SignRequest {
            tx: tx.clone(),
            inputs: vec![SignInput {
                input_index: 0,
                key,
                output: prevout.clone(),
                sighash: 1,
                method: SignMethod::WitnessV0 {
                    witness_script: witness_script.clone(),
                },
            }],
            prev_outputs: vec![prevout],
        })
        .await
        .unwrap();
    // DER without the sighash byte, as lnd returns it.
    assert!(bitcoin::secp256k1::ecdsa::Signature::from_der(&sigs[0]).is_ok());
    let mut sig = sigs[0].clone();
    sig.push(1);
    tx.input[0].witness = Witness::from_slice(&[sig, witness_script.to_bytes()]);
    sluice.publish_transaction(&tx, "p2wsh").await.unwrap();
    // A key the node never derived cannot sign.
    let stranger = lp.derive_next_key(42).await.unwrap();
    let mut foreign = SignRequest {
        tx: tx.clone(),
        inputs: Vec::new(),
        prev_outputs: Vec::new(),
    };
    foreign.inputs.push(SignInput {
        input_index: 0,
        key: stranger,
        output: TxOut {
            value: Amount::from_sat(1),
            script_pubkey: ScriptBuf::new(),
        },
        sighash: 1,
        method: SignMethod::WitnessV0 { witness_script },
    });
    let err = sluice.sign_output_raw(&foreign).await.unwrap_err();
    assert_eq!(err.kind, sluice::lnd::NodeErrorKind::InvalidArgument);
}
