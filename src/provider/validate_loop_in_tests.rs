//! One test per refusal of `validate_loop_in` and of the funding check.

use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{OutPoint, ScriptBuf, TxIn};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};

use super::*;

const H: [u8; 32] = [0xCD; 32];
const HEIGHT: u32 = 1_000;

fn key(n: u8) -> [u8; 33] {
    let sk = SecretKey::from_slice(&[n; 32]).unwrap();
    PublicKey::from_secret_key(&Secp256k1::new(), &sk).serialize()
}

/// sluice's own invoice: `amount_msat` with hash `hash`, signed by the node key.
fn invoice(hash: [u8; 32], amount_msat: u64, currency: Currency) -> String {
    let secp = Secp256k1::new();
    let node = SecretKey::from_slice(&[0x21; 32]).unwrap();
    InvoiceBuilder::new(currency)
        .description("swap".into())
        .payment_hash(sha256::Hash::from_byte_array(hash))
        .payment_secret(PaymentSecret([0x42; 32]))
        .duration_since_epoch(Duration::from_secs(1_800_000_000))
        .min_final_cltv_expiry_delta(80)
        .expiry_time(Duration::from_secs(31_536_000))
        .amount_milli_satoshis(amount_msat)
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &node))
        .unwrap()
        .to_string()
}

fn expectations() -> LoopInExpectations {
    LoopInExpectations {
        network: Network::Regtest,
        swap_hash: SwapHash(H),
        amount: Sat(100_000),
        terms: LoopInTerms {
            min_amount: Sat(10_000),
            max_amount: Sat(1_000_000),
        },
        quote: LoopInQuote {
            swap_fee: Sat(300),
            cltv_delta: 200,
        },
        max_swap_fee: Sat(500),
        swap_invoice: invoice(H, 99_700_000, Currency::Regtest),
        sender_key: key(1),
        sender_internal_key: key(2),
        height: BlockHeight(HEIGHT),
    }
}

fn response() -> NewLoopInResponse {
    NewLoopInResponse {
        receiver_key: key(3).to_vec(),
        receiver_internal_key: key(4).to_vec(),
        expiry: 1_200,
        server_message: String::new(),
    }
}

#[test]
fn a_good_answer_builds_the_htlc_from_all_four_keys() {
    let v = validate_loop_in(&response(), &expectations()).unwrap();
    assert_eq!(v.expiry, BlockHeight(1_200));
    assert_eq!(v.swap_fee, Sat(300));
    let expected = HtlcV3::with_internal_keys(
        HtlcKeys {
            sender: PublicKey::from_slice(&key(1)).unwrap(),
            receiver: PublicKey::from_slice(&key(3)).unwrap(),
            sender_internal: PublicKey::from_slice(&key(2)).unwrap(),
            receiver_internal: PublicKey::from_slice(&key(4)).unwrap(),
        },
        SwapHash(H),
        1_200,
        Network::Regtest,
    )
    .unwrap();
    assert_eq!(v.htlc.pk_script(), expected.pk_script());
    let out = v.funding_output(Sat(100_000));
    assert_eq!(out.value.to_sat(), 100_000);
    assert_eq!(out.script_pubkey, expected.pk_script());
}

#[test]
fn amount_outside_the_terms_is_refused() {
    let mut e = expectations();
    e.amount = Sat(9_999);
    assert!(matches!(
        validate_loop_in(&response(), &e),
        Err(LoopInValidationError::AmountOutsideTerms { .. })
    ));
    let mut e = expectations();
    e.amount = Sat(1_000_001);
    assert!(matches!(
        validate_loop_in(&response(), &e),
        Err(LoopInValidationError::AmountOutsideTerms { .. })
    ));
}

#[test]
fn a_fee_above_the_limit_or_the_amount_is_refused() {
    let mut e = expectations();
    e.quote.swap_fee = Sat(501);
    assert_eq!(
        validate_loop_in(&response(), &e).unwrap_err(),
        LoopInValidationError::SwapFeeTooHigh {
            actual: Sat(501),
            max: Sat(500)
        }
    );
    // At the limit it passes (with a matching invoice).
    let mut e = expectations();
    e.quote.swap_fee = Sat(500);
    e.swap_invoice = invoice(H, 99_500_000, Currency::Regtest);
    assert!(validate_loop_in(&response(), &e).is_ok());
    let mut e = expectations();
    e.amount = Sat(10_000);
    e.quote.swap_fee = Sat(10_000);
    e.max_swap_fee = Sat(20_000);
    assert!(matches!(
        check_loop_in_quote(e.amount, &e.terms, &e.quote, e.max_swap_fee),
        Err(LoopInValidationError::FeeNotBelowAmount { .. })
    ));
}

#[test]
fn the_invoice_must_ask_exactly_amount_minus_fee_with_the_swap_hash() {
    for (hash, msat) in [
        (H, 99_700_001),
        (H, 99_699_000),
        (H, 100_000_000),
        ([0; 32], 99_700_000),
    ] {
        let mut e = expectations();
        e.swap_invoice = invoice(hash, msat, Currency::Regtest);
        assert!(
            matches!(
                validate_loop_in(&response(), &e),
                Err(LoopInValidationError::OwnInvoice(_))
            ),
            "{msat} msat"
        );
    }
    let mut e = expectations();
    e.swap_invoice = invoice(H, 99_700_000, Currency::Bitcoin);
    assert!(matches!(
        validate_loop_in(&response(), &e),
        Err(LoopInValidationError::OwnInvoice(_))
    ));
}

#[test]
fn bad_server_keys_are_refused() {
    for (field, bytes) in [
        ("receiver_key", vec![2u8; 32]),
        ("receiver_internal_pubkey", Vec::new()),
    ] {
        let mut r = response();
        match field {
            "receiver_key" => r.receiver_key = bytes,
            _ => r.receiver_internal_key = bytes,
        }
        assert!(
            matches!(
                validate_loop_in(&r, &expectations()),
                Err(LoopInValidationError::KeyLength { field: f, .. }) if f == field
            ),
            "{field}"
        );
    }
    // 33 bytes with a valid prefix but no point on the curve (x = 5 has no y).
    let mut off_curve = [0u8; 33];
    off_curve[0] = 2;
    off_curve[32] = 5;
    let mut r = response();
    r.receiver_key = off_curve.to_vec();
    assert_eq!(
        validate_loop_in(&r, &expectations()).unwrap_err(),
        LoopInValidationError::KeyNotOnCurve {
            field: "receiver_key"
        }
    );
    let mut r = response();
    r.receiver_internal_key = off_curve.to_vec();
    assert_eq!(
        validate_loop_in(&r, &expectations()).unwrap_err(),
        LoopInValidationError::KeyNotOnCurve {
            field: "receiver_internal_pubkey"
        }
    );
}

#[test]
fn the_expiry_must_be_within_bounds_and_the_quote() {
    let at = |expiry: i32, cltv_delta: i32| {
        let mut r = response();
        r.expiry = expiry;
        let mut e = expectations();
        e.quote.cltv_delta = cltv_delta;
        validate_loop_in(&r, &e)
    };
    assert!(matches!(
        at(1_099, 200),
        Err(LoopInValidationError::ExpiryTooSoon { .. })
    ));
    assert!(at(1_100, 200).is_ok());
    assert!(matches!(
        at(-5, 200),
        Err(LoopInValidationError::ExpiryTooSoon { .. })
    ));
    // The quote's delta plus the slack bounds it.
    assert!(at(1_210, 200).is_ok());
    assert!(matches!(
        at(1_211, 200),
        Err(LoopInValidationError::ExpiryBeyondQuote { .. })
    ));
    // Without a quoted delta, Loop's 1 500 blocks bound it.
    assert!(at(2_500, 0).is_ok());
    assert!(matches!(
        at(2_501, 0),
        Err(LoopInValidationError::ExpiryTooFar { .. })
    ));
    assert!(matches!(
        at(2_501, 5_000),
        Err(LoopInValidationError::ExpiryTooFar { .. })
    ));
}

fn funding(outputs: Vec<TxOut>) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            ..TxIn::default()
        }],
        output: outputs,
    }
}

#[test]
fn the_funding_must_pay_exactly_the_amount_to_the_script_once() {
    let v = validate_loop_in(&response(), &expectations()).unwrap();
    let script = v.htlc.pk_script();
    let change = TxOut {
        value: Amount::from_sat(50_000),
        script_pubkey: ScriptBuf::from_bytes([vec![0x00, 0x14], vec![9; 20]].concat()),
    };
    let good = v.funding_output(Sat(100_000));
    assert_eq!(
        check_funding_tx(
            &funding(vec![change.clone(), good.clone()]),
            &script,
            Sat(100_000)
        ),
        Ok(1)
    );
    assert!(matches!(
        check_funding_tx(&funding(vec![change.clone()]), &script, Sat(100_000)),
        Err(FundingCheckError::NoHtlcOutput { .. })
    ));
    assert!(matches!(
        check_funding_tx(
            &funding(vec![good.clone(), good.clone()]),
            &script,
            Sat(100_000)
        ),
        Err(FundingCheckError::SeveralHtlcOutputs { count: 2, .. })
    ));
    let mut short = good;
    short.value = Amount::from_sat(99_999);
    assert!(matches!(
        check_funding_tx(&funding(vec![short]), &script, Sat(100_000)),
        Err(FundingCheckError::WrongValue { .. })
    ));
}
