//! The server's L402 front, as aperture runs it before a Loop server: a call without a valid
//! token gets `INTERNAL: payment required` with `WWW-Authenticate` challenges (an `LSAT` one
//! and an `L402` one) for an invoice on the server's node; later calls carry the macaroon in
//! the `macaroon` metadata (hex), which must verify against the root key and carry a
//! `preimage=` caveat that hashes to the payment hash in its identifier.

use base64::Engine as _;
use bitcoin::hashes::{Hash, sha256};

use crate::domain::Sat;
use crate::provider::macaroon::Macaroon;

/// How the front behaves. Changing it at run time affects the next challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L402Settings {
    /// The token price.
    pub price: Sat,
    /// The root key macaroons are minted and verified with.
    pub root_key: [u8; 32],
    /// Send a challenge no client can parse (a misbehaviour switch).
    pub malformed_challenge: bool,
    /// Cancel token payments instead of settling them, so they fail (a misbehaviour switch).
    pub fail_payments: bool,
}

impl Default for L402Settings {
    /// 1 sat, well under Loop's default client cap of 1000 sat.
    fn default() -> Self {
        L402Settings {
            price: Sat(1),
            root_key: [0x4c; 32],
            malformed_challenge: false,
            fail_payments: false,
        }
    }
}

/// The macaroon location aperture uses for Loop.
pub const LOCATION: &str = "loop";

/// Mints a token's macaroon: identifier `version 0 (u16 BE) || payment_hash || token_id`,
/// with aperture's service caveat.
pub fn mint(root_key: &[u8; 32], payment_hash: [u8; 32], token_id: [u8; 32]) -> Macaroon {
    let mut id = Vec::with_capacity(66);
    id.extend_from_slice(&0u16.to_be_bytes());
    id.extend_from_slice(&payment_hash);
    id.extend_from_slice(&token_id);
    let mut mac = Macaroon::new(root_key, &id, LOCATION);
    mac.add_first_party_caveat(b"services=loop:0");
    mac
}

/// The `INTERNAL: payment required` status carrying both challenges (LSAT first, as
/// aperture sends them for old clients), or an unparseable one when `malformed`.
pub fn challenge(mac: &Macaroon, invoice: &str, malformed: bool) -> tonic::Status {
    let mut status = tonic::Status::internal("payment required");
    let values: Vec<String> = if malformed {
        vec!["L402 macaroon=, invoice=".to_owned()]
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(mac.to_binary());
        ["LSAT", "L402"]
            .iter()
            .map(|scheme| format!("{scheme} macaroon=\"{b64}\", invoice=\"{invoice}\""))
            .collect()
    };
    for v in values {
        if let Ok(value) = v.parse() {
            status.metadata_mut().append("www-authenticate", value);
        }
    }
    status
}

/// Why a presented token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The metadata value is not hex of a V2 macaroon.
    #[error("the macaroon metadata is not a hex V2 macaroon")]
    Malformed,
    /// The signature chain does not verify against the root key.
    #[error("the macaroon was not minted by this server")]
    BadSignature,
    /// The identifier is not `0u16 || hash || token id`.
    #[error("the macaroon identifier is not an L402 identifier")]
    BadIdentifier,
    /// No `preimage=` caveat, or one that does not hash to the identifier's payment hash.
    #[error("the macaroon carries no preimage of its invoice")]
    NoPreimage,
}

/// Checks a `macaroon` metadata value. Returns the token's payment hash.
pub fn verify(root_key: &[u8; 32], metadata_hex: &str) -> Result<[u8; 32], TokenError> {
    let bytes = hex::decode(metadata_hex.trim()).map_err(|_| TokenError::Malformed)?;
    let mac = Macaroon::from_binary(&bytes).map_err(|_| TokenError::Malformed)?;
    let caveats = mac.verify(root_key).map_err(|_| TokenError::BadSignature)?;
    let id = mac.id();
    if id.len() != 66 || id[..2] != [0, 0] {
        return Err(TokenError::BadIdentifier);
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&id[2..34]);
    let proven = caveats.iter().any(|c| {
        c.strip_prefix(b"preimage=")
            .and_then(|h| hex::decode(h).ok())
            .is_some_and(|p| sha256::Hash::hash(&p).to_byte_array() == hash)
    });
    if proven {
        Ok(hash)
    } else {
        Err(TokenError::NoPreimage)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::provider::l402::parse_challenge;

    const ROOT: [u8; 32] = [7; 32];

    fn token(preimage: [u8; 32]) -> Macaroon {
        mint(
            &ROOT,
            sha256::Hash::hash(&preimage).to_byte_array(),
            [1; 32],
        )
    }

    #[test]
    fn the_clients_parser_reads_the_challenge() {
        let mac = token([5; 32]);
        let status = challenge(&mac, "lnbcrt1invoice", false);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().contains("payment required"));
        assert_eq!(
            status.metadata().get_all("www-authenticate").iter().count(),
            2
        );
        let parsed = parse_challenge(&status).unwrap();
        assert_eq!(parsed.invoice, "lnbcrt1invoice");
        assert_eq!(parsed.macaroon, mac);
        assert!(parse_challenge(&challenge(&mac, "lnbcrt1invoice", true)).is_err());
    }

    #[test]
    fn a_token_needs_our_signature_and_the_invoice_preimage() {
        let preimage = [5; 32];
        let mut mac = token(preimage);
        let before = hex::encode(mac.to_binary());
        assert_eq!(verify(&ROOT, &before), Err(TokenError::NoPreimage));
        let mut wrong = mac.clone();
        wrong.add_first_party_caveat(format!("preimage={}", hex::encode([6u8; 32])).as_bytes());
        assert_eq!(
            verify(&ROOT, &hex::encode(wrong.to_binary())),
            Err(TokenError::NoPreimage)
        );

        mac.add_first_party_caveat(format!("preimage={}", hex::encode(preimage)).as_bytes());
        let good = hex::encode(mac.to_binary());
        assert_eq!(
            verify(&ROOT, &good),
            Ok(sha256::Hash::hash(&preimage).to_byte_array())
        );
        assert_eq!(verify(&[8; 32], &good), Err(TokenError::BadSignature));
        assert_eq!(verify(&ROOT, "zz"), Err(TokenError::Malformed));

        let odd = Macaroon::new(&ROOT, b"short id", LOCATION);
        assert_eq!(
            verify(&ROOT, &hex::encode(odd.to_binary())),
            Err(TokenError::BadIdentifier)
        );
    }
}
