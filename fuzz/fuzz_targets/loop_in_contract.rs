//! The swap server's answer to `NewLoopInSwap` (its keys and the expiry it picks) decides how
//! long the node's coins are locked and who can spend them. Whatever it sends, validation never
//! panics, and an answer it accepts keeps the node's bounds: both keys are points on the curve,
//! the expiry is 100 to 1 500 blocks away and within the quoted CLTV delta (plus slack), the
//! fee is within the limit and below the amount, and the HTLC pays a P2TR script.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use libfuzzer_sys::fuzz_target;
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use sluice::domain::{BlockHeight, Network, Sat, SwapHash};
use sluice::provider::port::{LoopInQuote, LoopInTerms, NewLoopInResponse};
use sluice::provider::validate::{
    LOOP_IN_EXPIRY_SLACK_BLOCKS, LoopInExpectations, validate_loop_in,
};

const HASH: [u8; 32] = [0xCD; 32];

#[derive(Arbitrary, Debug)]
struct Case {
    amount: u32,
    swap_fee: u32,
    max_swap_fee: u32,
    cltv_delta: i32,
    height: u32,
    expiry: i32,
    receiver_key: Vec<u8>,
    receiver_internal_key: Vec<u8>,
    /// Whether the keys are drawn as valid points from a byte (else taken raw).
    valid_keys: bool,
    key_byte: u8,
    /// Whether our own invoice asks exactly amount − fee (else a drawn amount).
    exact_invoice: bool,
    invoice_msat: u64,
}

fn point(byte: u8) -> [u8; 33] {
    let sk = SecretKey::from_slice(&[byte.max(1); 32])
        .unwrap_or_else(|_| SecretKey::from_slice(&[1; 32]).unwrap());
    PublicKey::from_secret_key(&Secp256k1::new(), &sk).serialize()
}

fn invoice(msat: u64) -> Option<String> {
    let secp = Secp256k1::new();
    let node = SecretKey::from_slice(&[0x21; 32]).ok()?;
    InvoiceBuilder::new(Currency::Regtest)
        .description("swap".into())
        .payment_hash(sha256::Hash::from_byte_array(HASH))
        .payment_secret(PaymentSecret([0x42; 32]))
        .duration_since_epoch(Duration::from_secs(1_800_000_000))
        .min_final_cltv_expiry_delta(80)
        .expiry_time(Duration::from_secs(31_536_000))
        .amount_milli_satoshis(msat)
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &node))
        .ok()
        .map(|i| i.to_string())
}

fuzz_target!(|case: Case| {
    let amount = Sat(case.amount.into());
    let fee = Sat(case.swap_fee.into());
    let msat = if case.exact_invoice {
        amount.0.saturating_sub(fee.0).saturating_mul(1000)
    } else {
        case.invoice_msat
    };
    let Some(swap_invoice) = invoice(msat.max(1)) else {
        return;
    };
    let (receiver_key, receiver_internal_key) = if case.valid_keys {
        (
            point(case.key_byte).to_vec(),
            point(case.key_byte.wrapping_add(1)).to_vec(),
        )
    } else {
        (case.receiver_key.clone(), case.receiver_internal_key.clone())
    };
    let resp = NewLoopInResponse {
        receiver_key,
        receiver_internal_key,
        expiry: case.expiry,
        server_message: String::new(),
    };
    let height = case.height % 10_000_000;
    let exp = LoopInExpectations {
        network: Network::Regtest,
        swap_hash: SwapHash(HASH),
        amount,
        terms: LoopInTerms {
            min_amount: Sat(10_000),
            max_amount: Sat(5_000_000),
        },
        quote: LoopInQuote {
            swap_fee: fee,
            cltv_delta: case.cltv_delta,
        },
        max_swap_fee: Sat(case.max_swap_fee.into()),
        swap_invoice,
        sender_key: point(7),
        sender_internal_key: point(8),
        height: BlockHeight(height),
    };
    let Ok(v) = validate_loop_in(&resp, &exp) else {
        return;
    };
    assert!(PublicKey::from_slice(&v.receiver_key).is_ok());
    assert!(PublicKey::from_slice(&v.receiver_internal_key).is_ok());
    let delta = i64::from(v.expiry.0) - i64::from(height);
    assert!((100..=1_500).contains(&delta), "expiry delta {delta}");
    if case.cltv_delta > 0 {
        assert!(delta <= i64::from(case.cltv_delta) + i64::from(LOOP_IN_EXPIRY_SLACK_BLOCKS));
    }
    assert!(v.swap_fee <= exp.max_swap_fee && v.swap_fee < amount);
    assert!(v.htlc.pk_script().is_p2tr());
    assert_eq!(v.funding_output(amount).value.to_sat(), amount.0);
});
