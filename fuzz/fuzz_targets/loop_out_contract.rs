//! The swap server's answer to `NewLoopOutSwap` is the first thing a hostile server controls.
//! Whatever it sends (raw strings, or well-signed invoices with every field drawn at random),
//! validation never panics, and an answer it accepts never lets the server charge more than
//! the user agreed: the swap invoice pays this swap's hash to the quoted node, both invoices
//! stay valid long enough, and what both invoices ask together is at most the amount plus the
//! agreed swap fee, the prepayment at most its own limit.
#![no_main]

use std::str::FromStr;
use std::time::Duration;

use arbitrary::Arbitrary;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use libfuzzer_sys::fuzz_target;
use lightning_invoice::{Bolt11Invoice, Currency, InvoiceBuilder, PaymentSecret};
use sluice::domain::{Network, Sat, SwapHash};
use sluice::provider::port::{LoopOutTerms, NewLoopOutResponse};
use sluice::provider::validate::{ContractExpectations, validate_loop_out};

const NOW: Duration = Duration::from_secs(1_800_000_000);
const HASH: [u8; 32] = [0xAB; 32];

/// One invoice the server might send, built and signed from drawn fields.
#[derive(Arbitrary, Debug)]
struct Inv {
    currency: u8,
    our_hash: bool,
    hash_byte: u8,
    amount_msat: Option<u64>,
    signer: u8,
    expiry_s: u32,
    cltv: u16,
    age_s: u32,
    secret: u8,
}

#[derive(Arbitrary, Debug)]
enum Answer {
    Raw {
        swap: String,
        prepay: String,
        key: Vec<u8>,
    },
    Built {
        swap: Inv,
        prepay: Inv,
        key: Option<[u8; 33]>,
    },
}

#[derive(Arbitrary, Debug)]
struct Case {
    amount: u32,
    max_swap_fee: u32,
    max_prepay: u32,
    answer: Answer,
}

fn key(byte: u8) -> SecretKey {
    SecretKey::from_slice(&[byte.max(1); 32])
        .unwrap_or_else(|_| SecretKey::from_slice(&[1; 32]).unwrap())
}

fn server_node() -> [u8; 33] {
    PublicKey::from_secret_key(&Secp256k1::new(), &key(0x11)).serialize()
}

impl Inv {
    fn build(&self) -> Option<String> {
        let currency = match self.currency % 4 {
            0 | 1 => Currency::Regtest,
            2 => Currency::Bitcoin,
            _ => Currency::BitcoinTestnet,
        };
        let hash = if self.our_hash {
            HASH
        } else {
            [self.hash_byte; 32]
        };
        let b = InvoiceBuilder::new(currency)
            .description("swap".into())
            .payment_hash(sha256::Hash::from_byte_array(hash))
            .payment_secret(PaymentSecret([self.secret; 32]))
            .duration_since_epoch(NOW.saturating_sub(Duration::from_secs(self.age_s.into())))
            .min_final_cltv_expiry_delta(self.cltv.into())
            .expiry_time(Duration::from_secs(self.expiry_s.into()));
        let b = match self.amount_msat {
            Some(a) => b.amount_milli_satoshis(a),
            None => b,
        };
        // Half the time the quoted node signs.
        let signer = if self.signer % 2 == 0 {
            key(0x11)
        } else {
            key(self.signer)
        };
        let secp = Secp256k1::new();
        b.build_signed(|m| secp.sign_ecdsa_recoverable(m, &signer))
            .ok()
            .map(|i| i.to_string())
    }
}

fuzz_target!(|case: Case| {
    let resp = match &case.answer {
        Answer::Raw { swap, prepay, key } => NewLoopOutResponse {
            swap_invoice: swap.clone(),
            prepay_invoice: prepay.clone(),
            sender_key: key.clone(),
            server_message: String::new(),
        },
        Answer::Built { swap, prepay, key } => {
            let (Some(swap), Some(prepay)) = (swap.build(), prepay.build()) else {
                return;
            };
            NewLoopOutResponse {
                swap_invoice: swap,
                prepay_invoice: prepay,
                sender_key: key.map_or_else(|| server_node().to_vec(), |k| k.to_vec()),
                server_message: String::new(),
            }
        }
    };
    let exp = ContractExpectations {
        network: Network::Regtest,
        swap_hash: SwapHash(HASH),
        amount: Sat(case.amount.into()),
        terms: LoopOutTerms {
            min_amount: Sat(10_000),
            max_amount: Sat(10_000_000),
            min_cltv_delta: 30,
            max_cltv_delta: 400,
        },
        swap_payment_dest: server_node(),
        max_swap_fee: Sat(case.max_swap_fee.into()),
        max_prepay: Sat(case.max_prepay.into()),
        max_final_cltv_delta: 144,
        min_invoice_validity: Duration::from_secs(60),
        now: NOW,
    };
    let Ok(v) = validate_loop_out(&resp, &exp) else {
        return;
    };
    // What the server can collect is bounded by what the user agreed.
    assert!(v.swap_fee <= exp.max_swap_fee);
    assert!(v.prepay_amount <= exp.max_prepay);
    assert!(
        u128::from(v.swap_invoice_amount.0) + u128::from(v.prepay_amount.0)
            <= u128::from(exp.amount.0) + u128::from(exp.max_swap_fee.0)
    );
    assert!((10_000..=10_000_000).contains(&exp.amount.0));
    PublicKey::from_slice(&v.sender_key).expect("the sender key is a point");
    // The swap invoice pays our hash to the quoted node, with a final delta we allow.
    let swap = Bolt11Invoice::from_str(resp.swap_invoice.trim()).expect("accepted, so it parses");
    assert_eq!(swap.payment_hash().to_byte_array(), HASH);
    assert_eq!(swap.get_payee_pub_key().serialize(), server_node());
    assert!(swap.min_final_cltv_expiry_delta() <= exp.max_final_cltv_delta);
    assert_ne!(v.payment_address, [0; 32]);
    assert!(v.swap_invoice_expires_at >= NOW + exp.min_invoice_validity);
    // Both invoices are for this chain and stay valid long enough.
    let prepay =
        Bolt11Invoice::from_str(resp.prepay_invoice.trim()).expect("accepted, so it parses");
    for inv in [&swap, &prepay] {
        assert_eq!(inv.currency(), Currency::Regtest);
        assert!(
            inv.duration_since_epoch().saturating_add(inv.expiry_time())
                >= NOW + exp.min_invoice_validity
        );
    }
});
