//! The swap server's "payment required" answer: `WWW-Authenticate` values carrying a macaroon
//! and an invoice. Any header text parses to a challenge or a clear error, never a panic; a
//! challenge's invoice then goes through the same decoding as a purchase.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::domain::Network;
use sluice::provider::l402::parse_challenge;
use sluice::provider::validate::{InvoiceRole, decode_invoice};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut status = tonic::Status::internal("payment required");
    // One header value per line, as a server may send several.
    for line in text.split('\n') {
        if let Ok(value) = line.parse() {
            status.metadata_mut().append("www-authenticate", value);
        }
    }
    match parse_challenge(&status) {
        Ok(challenge) => {
            assert!(
                !challenge.invoice.is_empty(),
                "a challenge without an invoice"
            );
            if let Ok((invoice, price)) =
                decode_invoice(&challenge.invoice, Network::Regtest, InvoiceRole::L402Token)
            {
                assert!(invoice.check_signature().is_ok());
                assert!(price.0 > 0 || invoice.amount_milli_satoshis() < Some(1000));
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
});
