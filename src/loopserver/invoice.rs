//! Forged swap invoices for the invoice-tampering switches that a node would never issue
//! (another network, no amount, no payment secret, another hash).
//!
//! They are real BOLT 11 strings with valid signatures by a key of the server's, so a client
//! has to refuse them for what they say, not because they fail to parse. Nothing can pay them:
//! the server never watches them, and a client that validates correctly never tries.

use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};

use super::behaviour::InvoiceTamper;
use super::error::LoopServerError;
use crate::domain::{Network, Sat, SwapHash};

/// The BOLT 11 currency of a network (testnet4 shares testnet's prefix).
pub fn currency_of(network: Network) -> Currency {
    match network {
        Network::Mainnet => Currency::Bitcoin,
        Network::Testnet | Network::Testnet4 => Currency::BitcoinTestnet,
        Network::Signet => Currency::Signet,
        Network::Regtest | Network::Simnet => Currency::Regtest,
    }
}

/// What a forged invoice is made of.
#[derive(Debug, Clone, Copy)]
pub struct Forgery {
    /// The network the server runs on.
    pub network: Network,
    /// The swap hash the invoice should (honestly) carry.
    pub hash: SwapHash,
    /// Another hash, for `WrongHash`.
    pub other_hash: SwapHash,
    /// The honest amount.
    pub amount: Sat,
    /// The payment secret to include (unless `NoPaymentSecret`).
    pub payment_secret: [u8; 32],
    /// The creation time, since the Unix epoch.
    pub now: Duration,
    /// How long the invoice stays payable.
    pub expiry: Duration,
    /// The final CLTV delta.
    pub cltv_delta: u64,
}

fn build_err(e: impl std::fmt::Display) -> LoopServerError {
    LoopServerError::Invoice(e.to_string())
}

/// The swap invoice a tampering switch asks for, signed by `key`.
pub fn forge(
    f: &Forgery,
    tamper: InvoiceTamper,
    key: &SecretKey,
) -> Result<String, LoopServerError> {
    let currency = match tamper {
        InvoiceTamper::OtherNetwork if currency_of(f.network) == Currency::Bitcoin => {
            Currency::Regtest
        }
        InvoiceTamper::OtherNetwork => Currency::Bitcoin,
        _ => currency_of(f.network),
    };
    let hash = if tamper == InvoiceTamper::WrongHash {
        f.other_hash
    } else {
        f.hash
    };
    let secp = Secp256k1::signing_only();
    let builder = InvoiceBuilder::new(currency)
        .description("loop out (reference server)".to_owned())
        .payment_hash(sha256::Hash::from_byte_array(hash.0))
        .duration_since_epoch(f.now)
        .expiry_time(f.expiry)
        .min_final_cltv_expiry_delta(f.cltv_delta);
    let sign = |m: &bitcoin::secp256k1::Message| Ok::<_, ()>(secp.sign_ecdsa_recoverable(m, key));
    let amount_msat = f.amount.0.saturating_mul(1000);
    let raw = match tamper {
        InvoiceTamper::NoPaymentSecret => builder
            .amount_milli_satoshis(amount_msat)
            .build_raw()
            .map_err(build_err)?,
        InvoiceTamper::ZeroAmount => builder
            .payment_secret(PaymentSecret(f.payment_secret))
            .build_raw()
            .map_err(build_err)?,
        _ => builder
            .payment_secret(PaymentSecret(f.payment_secret))
            .amount_milli_satoshis(amount_msat)
            .build_raw()
            .map_err(build_err)?,
    };
    let signed = raw.sign(sign).map_err(|()| build_err("signing failed"))?;
    Ok(signed.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::provider::port::{LoopOutTerms, NewLoopOutResponse};
    use crate::provider::validate::{ContractError, ContractExpectations, validate_loop_out};
    use bitcoin::secp256k1::PublicKey;

    const NOW: Duration = Duration::from_secs(1_700_000_000);

    fn key() -> SecretKey {
        SecretKey::from_slice(&[0x44; 32]).unwrap()
    }

    fn forgery(amount: Sat, hash: SwapHash) -> Forgery {
        Forgery {
            network: Network::Regtest,
            hash,
            other_hash: SwapHash([0xee; 32]),
            amount,
            payment_secret: [3; 32],
            now: NOW,
            expiry: Duration::from_secs(3_600),
            cltv_delta: 40,
        }
    }

    /// The client's own validator run over a response carrying `swap_invoice`.
    fn client_verdict(swap_invoice: String) -> Result<(), ContractError> {
        let secp = Secp256k1::new();
        let prepay = forge(
            &forgery(Sat(1_000), SwapHash([0x99; 32])),
            InvoiceTamper::Honest,
            &key(),
        )
        .unwrap();
        let resp = NewLoopOutResponse {
            swap_invoice,
            prepay_invoice: prepay,
            sender_key: PublicKey::from_secret_key(
                &secp,
                &SecretKey::from_slice(&[5; 32]).unwrap(),
            )
            .serialize()
            .to_vec(),
            server_message: String::new(),
        };
        let exp = ContractExpectations {
            network: Network::Regtest,
            swap_hash: SwapHash([0x11; 32]),
            amount: Sat(100_000),
            terms: LoopOutTerms {
                min_amount: Sat(10_000),
                max_amount: Sat(1_000_000),
                min_cltv_delta: 30,
                max_cltv_delta: 400,
            },
            swap_payment_dest: PublicKey::from_secret_key(&secp, &key()).serialize(),
            max_swap_fee: Sat(1_500),
            max_prepay: Sat(1_000),
            max_final_cltv_delta: 144,
            min_invoice_validity: Duration::from_secs(60),
            now: NOW,
        };
        validate_loop_out(&resp, &exp).map(|_| ())
    }

    #[test]
    fn forged_invoices_are_refused_by_the_client_for_what_they_say() {
        let f = forgery(Sat(100_500), SwapHash([0x11; 32]));
        let verdict = |t| client_verdict(forge(&f, t, &key()).unwrap());
        assert_eq!(
            verdict(InvoiceTamper::Honest),
            Ok(()),
            "the honest form passes"
        );
        assert!(matches!(
            verdict(InvoiceTamper::WrongHash),
            Err(ContractError::WrongPaymentHash { .. })
        ));
        assert!(matches!(
            verdict(InvoiceTamper::OtherNetwork),
            Err(ContractError::WrongNetwork { .. })
        ));
        assert!(matches!(
            verdict(InvoiceTamper::ZeroAmount),
            Err(ContractError::NoAmount { .. })
        ));
        assert!(matches!(
            verdict(InvoiceTamper::NoPaymentSecret),
            Err(ContractError::InvoiceDecode { .. } | ContractError::NoPaymentSecret)
        ));
    }

    #[test]
    fn a_mainnet_server_forges_regtest_invoices_for_other_network() {
        let f = Forgery {
            network: Network::Mainnet,
            ..forgery(Sat(1), SwapHash([1; 32]))
        };
        let inv = forge(&f, InvoiceTamper::OtherNetwork, &key()).unwrap();
        assert!(inv.starts_with("lnbcrt"), "{inv}");
    }
}
