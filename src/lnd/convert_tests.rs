//! Wire <-> domain conversions: good answers convert field by field, bad answers become
//! `InvalidResponse` errors that name the method and field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, OutPoint, ScriptBuf, Transaction, TxOut, Txid};

use super::convert::*;
use super::error::NodeErrorKind;
use super::types::*;
use super::wire::{chainrpc, lnrpc, signrpc};
use crate::domain::{BlockHeight, ChanId, ChannelEvent, Msat, Network, Preimage, Sat, SwapHash};

const PEER: &str = "02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619";
const OURS: &str = "0379be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

fn wire_channel() -> lnrpc::Channel {
    lnrpc::Channel {
        active: true,
        remote_pubkey: PEER.into(),
        channel_point: "aa:1".into(),
        chan_id: ChanId::from_parts(800_000, 5, 1).0,
        capacity: 1_000_000,
        local_balance: 700_000,
        remote_balance: 290_000,
        commit_fee: 3_000,
        private: true,
        initiator: true,
        peer_alias: "bob".into(),
        pending_htlcs: vec![
            lnrpc::Htlc {
                amount: 1_000,
                ..Default::default()
            },
            lnrpc::Htlc {
                amount: 2_500,
                ..Default::default()
            },
        ],
        local_constraints: Some(lnrpc::ChannelConstraints {
            chan_reserve_sat: 10_000,
            ..Default::default()
        }),
        remote_constraints: Some(lnrpc::ChannelConstraints {
            chan_reserve_sat: 9_000,
            ..Default::default()
        }),
        total_satoshis_sent: 5,
        total_satoshis_received: 6,
        ..Default::default()
    }
}

#[test]
fn a_channel_converts_with_reserves_and_pending_htlcs() {
    let ch = channel(&wire_channel()).unwrap();
    assert_eq!(ch.chan_id, ChanId::from_parts(800_000, 5, 1));
    assert_eq!(ch.peer.to_string(), PEER);
    assert_eq!(ch.peer_alias.as_deref(), Some("bob"));
    assert_eq!(ch.local_balance, Sat(700_000));
    assert_eq!(ch.remote_balance, Sat(290_000));
    assert_eq!(ch.local_reserve, Sat(10_000));
    assert_eq!(ch.remote_reserve, Sat(9_000));
    assert_eq!(ch.pending_htlc_count, 2);
    assert_eq!(ch.pending_htlc_amount, Sat(3_500));
    assert!(ch.private && ch.initiator && ch.active);
    assert_eq!((ch.total_sent, ch.total_received), (Sat(5), Sat(6)));
}

#[test]
#[allow(deprecated)]
fn reserves_fall_back_to_the_flat_fields_and_bad_values_are_rejected() {
    let mut w = wire_channel();
    w.local_constraints = None;
    w.local_chan_reserve_sat = 4_242;
    w.peer_alias = String::new();
    let ch = channel(&w).unwrap();
    assert_eq!(ch.local_reserve, Sat(4_242));
    assert_eq!(ch.peer_alias, None);

    let mut neg = wire_channel();
    neg.local_balance = -1;
    let err = channel(&neg).unwrap_err();
    assert_eq!(err.kind, NodeErrorKind::InvalidResponse);
    assert!(err.to_string().contains("local_balance"), "{err}");

    let mut bad_key = wire_channel();
    bad_key.remote_pubkey = "zz".into();
    assert!(
        channel(&bad_key)
            .unwrap_err()
            .to_string()
            .contains("remote_pubkey")
    );
}

#[test]
fn get_info_needs_a_known_network() {
    let mut r = lnrpc::GetInfoResponse {
        identity_pubkey: OURS.into(),
        alias: "alice".into(),
        block_height: 850_000,
        synced_to_chain: true,
        version: "0.21.2-beta".into(),
        chains: vec![lnrpc::Chain {
            network: "regtest".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let info = node_info(&r).unwrap();
    assert_eq!(info.network, Network::Regtest);
    assert_eq!(info.block_height, BlockHeight(850_000));
    assert_eq!(info.alias, "alice");
    assert!(info.synced_to_chain && !info.synced_to_graph);

    r.chains[0].network = "litecoin".into();
    assert_eq!(
        node_info(&r).unwrap_err().kind,
        NodeErrorKind::InvalidResponse
    );
    r.chains.clear();
    assert_eq!(
        node_info(&r).unwrap_err().kind,
        NodeErrorKind::InvalidResponse
    );
}

#[test]
fn channel_points_in_bytes_form_are_shown_in_display_order() {
    use lnrpc::channel_point::FundingTxid;
    let mut wire_order = [0u8; 32];
    wire_order[0] = 0xab; // the last byte of the displayed txid
    let cp = lnrpc::ChannelPoint {
        funding_txid: Some(FundingTxid::FundingTxidBytes(wire_order.to_vec())),
        output_index: 3,
    };
    let s = channel_point(&cp).unwrap();
    assert!(s.ends_with("ab:3"), "{s}");
    assert_eq!(s.len(), 64 + 2);

    let update = lnrpc::ChannelEventUpdate {
        channel: Some(lnrpc::channel_event_update::Channel::InactiveChannel(cp)),
        r#type: lnrpc::channel_event_update::UpdateType::InactiveChannel as i32,
    };
    assert_eq!(
        channel_event(&update).unwrap(),
        Some(ChannelEvent::Inactive { channel_point: s })
    );
    assert_eq!(
        channel_event(&lnrpc::ChannelEventUpdate::default()).unwrap(),
        None
    );
}

#[test]
fn a_channel_update_event_carries_the_new_balances() {
    let mut w = wire_channel();
    w.local_balance = 1;
    let update = lnrpc::ChannelEventUpdate {
        channel: Some(lnrpc::channel_event_update::Channel::UpdatedChannel(
            lnrpc::ChannelCommitUpdate { channel: Some(w) },
        )),
        r#type: lnrpc::channel_event_update::UpdateType::ChannelUpdate as i32,
    };
    match channel_event(&update).unwrap() {
        Some(ChannelEvent::Updated(c)) => assert_eq!(c.local_balance, Sat(1)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn payments_convert_by_status() {
    let hash = [0x11u8; 32];
    let preimage = [0x22u8; 32];
    let mut p = lnrpc::Payment {
        payment_hash: hex::encode(hash),
        value_msat: 250_000_000,
        fee_msat: 1_234,
        status: lnrpc::payment::PaymentStatus::InFlight as i32,
        htlcs: vec![
            lnrpc::HtlcAttempt {
                status: lnrpc::htlc_attempt::HtlcStatus::InFlight as i32,
                ..Default::default()
            },
            lnrpc::HtlcAttempt {
                status: lnrpc::htlc_attempt::HtlcStatus::Failed as i32,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let u = payment_update(&p).unwrap();
    assert_eq!(u.hash, SwapHash(hash));
    assert_eq!(u.status, PaymentStatus::InFlight);
    assert_eq!(
        (u.amount, u.fee, u.htlcs_in_flight),
        (Msat(250_000_000), Msat(1_234), 1)
    );
    assert!(!u.status.is_final());

    p.status = lnrpc::payment::PaymentStatus::Succeeded as i32;
    p.payment_preimage = hex::encode(preimage);
    let u = payment_update(&p).unwrap();
    assert_eq!(
        u.status,
        PaymentStatus::Succeeded {
            preimage: Preimage(preimage)
        }
    );
    assert!(u.status.is_final());

    p.status = lnrpc::payment::PaymentStatus::Failed as i32;
    p.failure_reason = lnrpc::PaymentFailureReason::FailureReasonNoRoute as i32;
    assert_eq!(
        payment_update(&p).unwrap().status,
        PaymentStatus::Failed(PaymentFailure::NoRoute)
    );

    p.payment_hash = "abcd".into();
    assert_eq!(
        payment_update(&p).unwrap_err().kind,
        NodeErrorKind::InvalidResponse
    );
}

#[test]
fn a_payment_request_carries_its_limits() {
    let r = PaymentRequest {
        invoice: "lnbcrt1...".into(),
        fee_limit: Msat(5_000),
        outgoing_chan_ids: vec![ChanId(7), ChanId(9)],
        max_parts: 4,
        timeout: Duration::from_secs(60),
        cltv_limit: Some(144),
        last_hop: None,
    };
    let w = send_payment_request(&r).unwrap();
    assert_eq!(w.payment_request, "lnbcrt1...");
    assert_eq!(w.fee_limit_msat, 5_000);
    assert_eq!(w.outgoing_chan_ids, vec![7, 9]);
    assert_eq!((w.max_parts, w.timeout_seconds, w.cltv_limit), (4, 60, 144));
    assert!(!w.no_inflight_updates);

    let unbounded = PaymentRequest {
        cltv_limit: None,
        last_hop: None,
        fee_limit: Msat(u64::MAX),
        ..r
    };
    assert_eq!(
        send_payment_request(&unbounded).unwrap_err().kind,
        NodeErrorKind::InvalidArgument
    );
}

#[test]
fn key_descriptors_need_a_valid_key_and_locator() {
    let good = signrpc::KeyDescriptor {
        raw_key_bytes: hex::decode(OURS).unwrap(),
        key_loc: Some(signrpc::KeyLocator {
            key_family: 42,
            key_index: 7,
        }),
    };
    let k = key_descriptor("derive_key", &good).unwrap();
    assert_eq!(
        k.locator,
        KeyLocator {
            family: 42,
            index: 7
        }
    );
    assert_eq!(hex::encode(k.pubkey.serialize()), OURS);
    assert_eq!(key_locator(k.locator), good.key_loc.unwrap());

    let mut short = good.clone();
    short.raw_key_bytes.pop();
    assert_eq!(
        key_descriptor("derive_key", &short).unwrap_err().kind,
        NodeErrorKind::InvalidResponse
    );
    let no_loc = signrpc::KeyDescriptor {
        key_loc: None,
        ..good
    };
    assert!(key_descriptor("derive_key", &no_loc).is_err());
}

#[test]
fn a_taproot_script_spend_sign_request_names_the_leaf_and_all_prevouts() {
    let key = key_descriptor(
        "t",
        &signrpc::KeyDescriptor {
            raw_key_bytes: hex::decode(OURS).unwrap(),
            key_loc: Some(signrpc::KeyLocator {
                key_family: 42,
                key_index: 1,
            }),
        },
    )
    .unwrap();
    let prev = TxOut {
        value: Amount::from_sat(50_000),
        script_pubkey: ScriptBuf::from_bytes(vec![0x51, 0x20, 1, 2]),
    };
    let leaf = ScriptBuf::from_bytes(vec![0xac]);
    let tx = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn::default()],
        output: vec![],
    };
    let req = SignRequest {
        tx: tx.clone(),
        inputs: vec![SignInput {
            input_index: 0,
            key,
            output: prev.clone(),
            sighash: 0,
            method: SignMethod::TaprootScriptSpend {
                leaf_script: leaf.clone(),
            },
        }],
        prev_outputs: vec![prev],
    };
    let w = sign_request(&req).unwrap();
    assert_eq!(w.raw_tx_bytes, bitcoin::consensus::serialize(&tx));
    assert_eq!(w.prev_outputs.len(), 1);
    assert_eq!(w.prev_outputs[0].value, 50_000);
    let d = &w.sign_descs[0];
    assert_eq!(
        d.sign_method,
        signrpc::SignMethod::TaprootScriptSpend as i32
    );
    assert_eq!(d.witness_script, leaf.to_bytes());
    assert_eq!(
        d.key_desc
            .as_ref()
            .unwrap()
            .key_loc
            .as_ref()
            .unwrap()
            .key_family,
        42
    );
}

#[test]
fn musig2_sessions_check_id_and_nonce_sizes() {
    let r = signrpc::MuSig2SessionResponse {
        session_id: vec![1; 32],
        combined_key: vec![2; 32],
        taproot_internal_key: vec![3; 32],
        local_public_nonces: vec![4; 66],
        have_all_nonces: true,
        version: signrpc::MuSig2Version::Musig2VersionV100rc2 as i32,
    };
    let s = musig2_session(&r).unwrap();
    assert_eq!(
        (s.id, s.local_nonces, s.have_all_nonces),
        ([1; 32], [4; 66], true)
    );
    let bad = signrpc::MuSig2SessionResponse {
        local_public_nonces: vec![4; 65],
        ..r
    };
    assert_eq!(
        musig2_session(&bad).unwrap_err().kind,
        NodeErrorKind::InvalidResponse
    );

    let req = MuSig2SessionRequest {
        key: KeyLocator {
            family: 42,
            index: 3,
        },
        signer_pubkeys: vec![vec![9; 32], vec![8; 32]],
        other_nonces: vec![[7; 66]],
        taproot_tweak: Some(TaprootTweak {
            script_root: vec![6; 32],
            key_spend_only: false,
        }),
        version: MuSig2Version::V100Rc2,
    };
    let w = musig2_session_request(&req);
    assert_eq!(
        w.version,
        signrpc::MuSig2Version::Musig2VersionV100rc2 as i32
    );
    assert_eq!(w.other_signer_public_nonces, vec![vec![7; 66]]);
    assert_eq!(w.taproot_tweak.unwrap().script_root, vec![6; 32]);
}

#[test]
fn chain_requests_use_wire_byte_order_and_events_decode() {
    let txid = Txid::from_byte_array([5; 32]);
    let conf = conf_request(&ConfRequest {
        txid: Some(txid),
        script: ScriptBuf::from_bytes(vec![0x00, 0x14]),
        num_confs: 3,
        height_hint: BlockHeight(100),
    });
    assert_eq!(
        (conf.txid, conf.num_confs, conf.height_hint),
        (vec![5; 32], 3, 100)
    );
    assert!(
        conf_request(&ConfRequest {
            txid: None,
            script: ScriptBuf::new(),
            num_confs: 1,
            height_hint: BlockHeight(0),
        })
        .txid
        .is_empty()
    );

    let tx = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![],
        output: vec![TxOut {
            value: Amount::from_sat(1),
            script_pubkey: ScriptBuf::new(),
        }],
    };
    let ev = chainrpc::ConfEvent {
        event: Some(chainrpc::conf_event::Event::Conf(chainrpc::ConfDetails {
            raw_tx: bitcoin::consensus::serialize(&tx),
            block_hash: vec![9; 32],
            block_height: 101,
            tx_index: 2,
            raw_block: vec![],
        })),
    };
    assert_eq!(
        conf_update(&ev).unwrap(),
        ConfUpdate::Confirmed {
            tx: tx.clone(),
            block_hash: BlockHash::from_byte_array([9; 32]),
            block_height: BlockHeight(101),
            tx_index: 2
        }
    );
    let reorg = chainrpc::ConfEvent {
        event: Some(chainrpc::conf_event::Event::Reorg(chainrpc::Reorg {})),
    };
    assert_eq!(conf_update(&reorg).unwrap(), ConfUpdate::Reorg);
    let garbage = chainrpc::ConfEvent {
        event: Some(chainrpc::conf_event::Event::Conf(chainrpc::ConfDetails {
            raw_tx: vec![1, 2, 3],
            block_hash: vec![9; 32],
            ..Default::default()
        })),
    };
    assert_eq!(
        conf_update(&garbage).unwrap_err().kind,
        NodeErrorKind::InvalidResponse
    );

    let sp = spend_request(&SpendRequest {
        outpoint: Some(OutPoint { txid, vout: 1 }),
        script: ScriptBuf::new(),
        height_hint: BlockHeight(7),
    });
    assert_eq!(
        sp.outpoint.unwrap(),
        chainrpc::Outpoint {
            hash: vec![5; 32],
            index: 1
        }
    );
    let spent = chainrpc::SpendEvent {
        event: Some(chainrpc::spend_event::Event::Spend(
            chainrpc::SpendDetails {
                spending_outpoint: Some(chainrpc::Outpoint {
                    hash: vec![5; 32],
                    index: 1,
                }),
                raw_spending_tx: bitcoin::consensus::serialize(&tx),
                spending_tx_hash: tx.compute_txid().to_byte_array().to_vec(),
                spending_input_index: 0,
                spending_height: 120,
            },
        )),
    };
    assert_eq!(
        spend_update(&spent).unwrap(),
        SpendUpdate::Spent {
            outpoint: OutPoint { txid, vout: 1 },
            spending_tx: tx,
            input_index: 0,
            height: BlockHeight(120)
        }
    );
}

#[test]
fn fee_rates_must_be_positive() {
    assert_eq!(fee_rate(253).unwrap().to_sat_per_kwu(), 253);
    assert!(fee_rate(0).is_err());
    assert!(fee_rate(-5).is_err());
}

#[test]
fn hold_invoices_and_invoice_updates_convert() {
    let w = hold_invoice_request(&HoldInvoiceRequest {
        hash: SwapHash([3; 32]),
        amount: Msat(1_000_000),
        memo: "swap".into(),
        expiry: Duration::from_secs(3600),
        cltv_expiry: 80,
        route_hints: Vec::new(),
        private: false,
    })
    .unwrap();
    assert_eq!(
        (w.hash, w.value_msat, w.expiry, w.cltv_expiry),
        (vec![3; 32], 1_000_000, 3600, 80)
    );
    assert_eq!(w.value, 0, "only the msat amount is set");

    let inv = lnrpc::Invoice {
        r_hash: vec![3; 32],
        value_msat: 1_000_000,
        amt_paid_msat: 1_000_000,
        state: lnrpc::invoice::InvoiceState::Accepted as i32,
        ..Default::default()
    };
    let u = invoice_update(&inv).unwrap();
    assert_eq!(u.state, InvoiceState::Accepted);
    assert_eq!(
        (u.hash, u.amount_paid),
        (SwapHash([3; 32]), Msat(1_000_000))
    );
}

#[test]
fn decoded_invoices_check_hash_and_destination() {
    let p = lnrpc::PayReq {
        destination: PEER.into(),
        payment_hash: hex::encode([1u8; 32]),
        num_msat: 5_000,
        timestamp: 1_700_000_000,
        expiry: 3600,
        cltv_expiry: 80,
        description: "d".into(),
        payment_addr: vec![2; 32],
        ..Default::default()
    };
    let d = decoded_invoice(&p).unwrap();
    assert_eq!(d.payment_hash, SwapHash([1; 32]));
    assert_eq!((d.amount, d.min_final_cltv_delta), (Msat(5_000), 80));
    assert_eq!(d.expiry, Duration::from_secs(3600));
    assert_eq!(d.payment_addr, Some([2; 32]));
    let bad = lnrpc::PayReq {
        payment_hash: "00".into(),
        ..p
    };
    assert!(
        decoded_invoice(&bad)
            .unwrap_err()
            .to_string()
            .contains("payment_hash")
    );
}
