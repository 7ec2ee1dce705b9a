//! Macaroons arrive from the swap server inside an L402 challenge. Whatever bytes come in,
//! decoding never panics, and a macaroon that decodes re-encodes to bytes that decode to the
//! same macaroon.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::provider::macaroon::Macaroon;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Macaroon::from_binary(data) else {
        return;
    };
    let bytes = m.to_binary();
    let again = Macaroon::from_binary(&bytes).expect("a re-encoded macaroon decodes");
    assert!(again == m, "re-encoding changed the macaroon");
    assert_eq!(again.to_binary(), bytes);
    // Verifying, under any key, answers; it never panics.
    let _ = m.verify(b"not the root key");
});
