//! The facade refuses what lnd refuses, before the node sees it, with a message naming the
//! field; and fills defaults where lnd does.

use super::*;
use tonic::Code;

fn send(f: impl FnOnce(&mut routerrpc::SendPaymentRequest)) -> R<PaymentRequest> {
    let mut r = routerrpc::SendPaymentRequest {
        payment_request: "lnbcrt1...".into(),
        timeout_seconds: 60,
        ..Default::default()
    };
    f(&mut r);
    payment_request(&r)
}

#[test]
fn payment_requests_follow_lnds_rules_and_defaults() {
    let ok = send(|r| r.fee_limit_sat = 7).unwrap();
    assert_eq!(ok.fee_limit, crate::domain::Msat(7_000));
    assert_eq!(ok.max_parts, DEFAULT_MAX_PARTS);
    assert_eq!(ok.cltv_limit, None);
    assert_eq!(send(|r| r.cltv_limit = 144).unwrap().cltv_limit, Some(144));

    let no_timeout = send(|r| r.timeout_seconds = 0).unwrap_err();
    assert_eq!(no_timeout.code(), Code::InvalidArgument);
    assert!(no_timeout.message().contains("timeout_seconds"));
    let both = send(|r| {
        r.fee_limit_sat = 1;
        r.fee_limit_msat = 1_000;
    })
    .unwrap_err();
    assert!(both.message().contains("mutually exclusive"));
    assert!(send(|r| r.fee_limit_msat = -1).is_err());
    let keysend = send(|r| r.payment_request.clear()).unwrap_err();
    assert_eq!(keysend.code(), Code::Unimplemented);
}

#[test]
fn hold_invoices_take_lnds_defaults_and_one_amount_form() {
    let mut r = invoicesrpc::AddHoldInvoiceRequest {
        hash: vec![1; 32],
        value: 50,
        ..Default::default()
    };
    let hold = hold_invoice_request(&r).unwrap();
    assert_eq!(hold.amount, crate::domain::Msat(50_000));
    assert_eq!(hold.expiry, DEFAULT_INVOICE_EXPIRY);
    assert_eq!(hold.cltv_expiry, DEFAULT_INVOICE_CLTV);

    r.value_msat = 50_000;
    assert!(
        hold_invoice_request(&r)
            .unwrap_err()
            .message()
            .contains("value_msat")
    );
    r.value = 0;
    r.hash = vec![1; 31];
    let short = hold_invoice_request(&r).unwrap_err();
    assert_eq!(short.message(), "hash must be exactly 32 bytes, got 31");
}

#[test]
fn chain_watches_need_a_script_and_read_zero_ids_as_absent() {
    let conf = conf_request(&chainrpc::ConfRequest {
        txid: vec![0; 32],
        script: vec![0x51],
        num_confs: 1,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(conf.txid, None);
    assert!(
        conf_request(&chainrpc::ConfRequest {
            script: vec![0x51],
            ..Default::default()
        })
        .unwrap_err()
        .message()
        .contains("num_confs")
    );
    let spend = spend_request(&chainrpc::SpendRequest {
        outpoint: Some(chainrpc::Outpoint {
            hash: vec![0; 32],
            index: 3,
        }),
        script: vec![0x51],
        height_hint: 9,
    })
    .unwrap();
    assert_eq!(spend.outpoint, None);
    assert!(spend_request(&chainrpc::SpendRequest::default()).is_err());
}

#[test]
fn musig2_sessions_need_a_version_and_66_byte_nonces() {
    let mut r = signrpc::MuSig2SessionRequest {
        key_loc: Some(signrpc::KeyLocator {
            key_family: 42,
            key_index: 1,
        }),
        version: signrpc::MuSig2Version::Musig2VersionV100rc2 as i32,
        other_signer_public_nonces: vec![vec![2; 66]],
        ..Default::default()
    };
    assert_eq!(
        musig2_session_request(&r).unwrap().other_nonces,
        vec![[2; 66]]
    );
    r.other_signer_public_nonces = vec![vec![2; 65]];
    assert!(
        musig2_session_request(&r)
            .unwrap_err()
            .message()
            .contains("66 bytes")
    );
    r.other_signer_public_nonces.clear();
    r.version = 0;
    assert!(
        musig2_session_request(&r)
            .unwrap_err()
            .message()
            .contains("version")
    );
}

#[test]
fn simnet_presents_itself_as_regtest_and_channels_keep_their_pending_sum() {
    assert_eq!(network_name(Network::Simnet), "regtest");
    assert_eq!(network_name(Network::Signet), "signet");
    let c = Channel {
        chan_id: crate::domain::ChanId(5),
        channel_point: "ab:1".into(),
        peer: crate::domain::NodeId([2; 33]),
        peer_alias: None,
        capacity: crate::domain::Sat(100),
        local_balance: crate::domain::Sat(50),
        remote_balance: crate::domain::Sat(40),
        local_reserve: crate::domain::Sat(1),
        remote_reserve: crate::domain::Sat(1),
        commit_fee: crate::domain::Sat(0),
        active: true,
        private: false,
        initiator: false,
        pending_htlc_count: 4,
        pending_htlc_amount: crate::domain::Sat(10),
        total_sent: crate::domain::Sat(0),
        total_received: crate::domain::Sat(0),
    };
    let wire = channel(&c);
    assert_eq!(wire.pending_htlcs.len(), 4);
    assert_eq!(wire.pending_htlcs.iter().map(|h| h.amount).sum::<i64>(), 10);
    assert_eq!(crate::lnd::convert::channel(&wire).unwrap(), c);
}
