use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};

use super::*;

const NOW: Duration = Duration::from_secs(1_800_000_000);

fn server_key() -> SecretKey {
    SecretKey::from_slice(&[0x11; 32]).unwrap()
}

fn server_node() -> [u8; 33] {
    PublicKey::from_secret_key(&Secp256k1::new(), &server_key()).serialize()
}

struct Inv {
    currency: Currency,
    hash: [u8; 32],
    amount_msat: Option<u64>,
    key: SecretKey,
    expiry: Duration,
    cltv: u64,
    timestamp: Duration,
}

impl Inv {
    fn new(hash: [u8; 32], amount_sat: u64) -> Inv {
        Inv {
            currency: Currency::Regtest,
            hash,
            amount_msat: Some(amount_sat * 1000),
            key: server_key(),
            expiry: Duration::from_secs(3600),
            cltv: 40,
            timestamp: NOW,
        }
    }

    fn build(&self) -> String {
        let secp = Secp256k1::new();
        let b = InvoiceBuilder::new(self.currency.clone())
            .description("swap".into())
            .payment_hash(sha256::Hash::from_byte_array(self.hash))
            .payment_secret(PaymentSecret([0x42; 32]))
            .duration_since_epoch(self.timestamp)
            .min_final_cltv_expiry_delta(self.cltv)
            .expiry_time(self.expiry);
        let b = match self.amount_msat {
            Some(a) => b.amount_milli_satoshis(a),
            None => b,
        };
        b.build_signed(|m| secp.sign_ecdsa_recoverable(m, &self.key))
            .unwrap()
            .to_string()
    }
}

const H: [u8; 32] = [0xAB; 32];

fn expectations() -> ContractExpectations {
    ContractExpectations {
        network: Network::Regtest,
        swap_hash: SwapHash(H),
        amount: Sat(100_000),
        terms: LoopOutTerms {
            min_amount: Sat(10_000),
            max_amount: Sat(1_000_000),
            min_cltv_delta: 30,
            max_cltv_delta: 400,
        },
        swap_payment_dest: server_node(),
        max_swap_fee: Sat(500),
        max_prepay: Sat(200),
        max_final_cltv_delta: 144,
        min_invoice_validity: Duration::from_secs(60),
        now: NOW,
    }
}

/// A well-formed answer: swap invoice 100_400 sat, prepay 100 sat ⇒ fee 500.
fn response(swap: &Inv, prepay: &Inv) -> NewLoopOutResponse {
    NewLoopOutResponse {
        swap_invoice: swap.build(),
        prepay_invoice: prepay.build(),
        sender_key: server_node().to_vec(),
        server_message: String::new(),
    }
}

fn good() -> (Inv, Inv) {
    (Inv::new(H, 100_400), Inv::new([0x01; 32], 100))
}

fn check(swap: &Inv, prepay: &Inv) -> Result<ValidatedContract, ContractError> {
    validate_loop_out(&response(swap, prepay), &expectations())
}

#[test]
fn an_honest_answer_passes_and_reports_what_the_engine_keeps() {
    let (s, p) = good();
    let c = check(&s, &p).unwrap();
    assert_eq!(c.sender_key, server_node());
    assert_eq!(c.swap_invoice_amount, Sat(100_400));
    assert_eq!(c.prepay_amount, Sat(100));
    assert_eq!(c.swap_fee, Sat(500));
    assert_eq!(c.payment_address, [0x42; 32]);
    assert_eq!(c.min_final_cltv_delta, 40);
    assert_eq!(c.swap_invoice_expires_at, NOW + Duration::from_secs(3600));
}

#[test]
fn sender_key_must_be_33_bytes_on_the_curve() {
    let (s, p) = good();
    for len in [32, 34] {
        let mut r = response(&s, &p);
        r.sender_key = vec![2; len];
        assert_eq!(
            validate_loop_out(&r, &expectations()),
            Err(ContractError::SenderKeyLength(len))
        );
    }
    let mut r = response(&s, &p);
    r.sender_key = vec![0x05; 33];
    assert_eq!(
        validate_loop_out(&r, &expectations()),
        Err(ContractError::SenderKeyNotOnCurve)
    );
}

#[test]
fn swap_invoice_must_be_keyed_by_the_swap_hash() {
    let (mut s, p) = good();
    s.hash = [0xCD; 32];
    assert!(matches!(
        check(&s, &p),
        Err(ContractError::WrongPaymentHash { .. })
    ));
}

#[test]
fn invoices_for_another_network_are_refused() {
    let (mut s, p) = good();
    s.currency = Currency::Bitcoin;
    assert!(matches!(
        check(&s, &p),
        Err(ContractError::WrongNetwork {
            role: InvoiceRole::Swap,
            found: Currency::Bitcoin,
            ..
        })
    ));
    let (s, mut p) = good();
    p.currency = Currency::Bitcoin;
    assert!(matches!(
        check(&s, &p),
        Err(ContractError::WrongNetwork {
            role: InvoiceRole::Prepay,
            ..
        })
    ));
    // The same mainnet pair passes when sluice runs on mainnet.
    let (mut s, mut p) = good();
    s.currency = Currency::Bitcoin;
    p.currency = Currency::Bitcoin;
    let mut exp = expectations();
    exp.network = Network::Mainnet;
    assert!(validate_loop_out(&response(&s, &p), &exp).is_ok());
}

#[test]
fn zero_amount_invoices_are_refused() {
    let (mut s, p) = good();
    s.amount_msat = None;
    assert_eq!(
        check(&s, &p),
        Err(ContractError::NoAmount {
            role: InvoiceRole::Swap
        })
    );
    let (s, mut p) = good();
    p.amount_msat = None;
    assert_eq!(
        check(&s, &p),
        Err(ContractError::NoAmount {
            role: InvoiceRole::Prepay
        })
    );
}

#[test]
fn swap_invoice_must_pay_the_quoted_node() {
    let (mut s, p) = good();
    s.key = SecretKey::from_slice(&[0x22; 32]).unwrap();
    assert!(matches!(
        check(&s, &p),
        Err(ContractError::WrongDestination { .. })
    ));
}

#[test]
fn tampered_invoices_do_not_decode() {
    let (s, p) = good();
    let mut r = response(&s, &p);
    // Flip one data character in the middle: the signature no longer matches (or the
    // checksum fails first); either way it must not decode.
    let mid = r.swap_invoice.len() / 2;
    let c = if &r.swap_invoice[mid..=mid] == "q" {
        "p"
    } else {
        "q"
    };
    r.swap_invoice.replace_range(mid..=mid, c);
    assert!(matches!(
        validate_loop_out(&r, &expectations()),
        Err(ContractError::InvoiceDecode {
            role: InvoiceRole::Swap,
            ..
        })
    ));
}

#[test]
fn invoices_about_to_expire_are_refused() {
    let (mut s, p) = good();
    s.expiry = Duration::from_secs(30);
    assert_eq!(
        check(&s, &p),
        Err(ContractError::ExpiresTooSoon {
            role: InvoiceRole::Swap,
            remaining_s: 30,
            required_s: 60
        })
    );
    let (s, mut p) = good();
    p.timestamp = NOW - Duration::from_secs(7200);
    assert_eq!(
        check(&s, &p),
        Err(ContractError::ExpiresTooSoon {
            role: InvoiceRole::Prepay,
            remaining_s: 0,
            required_s: 60
        })
    );
}

#[test]
fn final_cltv_delta_is_bounded() {
    let (mut s, p) = good();
    s.cltv = 145;
    assert_eq!(
        check(&s, &p),
        Err(ContractError::FinalCltvTooLarge {
            found: 145,
            max: 144
        })
    );
}

#[test]
fn fee_and_prepay_limits_hold() {
    let (mut s, p) = good();
    s.amount_msat = Some(100_401_000);
    assert_eq!(
        check(&s, &p),
        Err(ContractError::SwapFeeTooHigh {
            actual: Sat(501),
            max: Sat(500)
        })
    );
    // Same total, but more of it up front.
    let (mut s, mut p) = good();
    s.amount_msat = Some(100_200_000);
    p.amount_msat = Some(300_000);
    assert_eq!(
        check(&s, &p),
        Err(ContractError::PrepayTooHigh {
            actual: Sat(300),
            max: Sat(200)
        })
    );
    // Msat are truncated, as Loop does: 100_400.999 sat counts as 100_400.
    let (mut s, p) = good();
    s.amount_msat = Some(100_400_999);
    assert_eq!(check(&s, &p).unwrap().swap_fee, Sat(500));
}

#[test]
fn amount_must_be_within_terms() {
    let (s, p) = good();
    let mut exp = expectations();
    exp.terms.max_amount = Sat(99_999);
    assert!(matches!(
        validate_loop_out(&response(&s, &p), &exp),
        Err(ContractError::AmountOutsideTerms { .. })
    ));
}

#[test]
fn testnet4_uses_the_testnet_prefix() {
    assert_eq!(currency_of(Network::Testnet4), Currency::BitcoinTestnet);
    assert_eq!(currency_of(Network::Simnet), Currency::Regtest);
}
