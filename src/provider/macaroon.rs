//! The minimal macaroon support L402 needs: the V2 binary format of `gopkg.in/macaroon.v2`
//! and first-party caveats with their chained HMAC-SHA256 signature.
//!
//! The client only ever *adds* a caveat (`preimage=<hex>`), which needs nothing but the
//! current signature (it is part of the serialized macaroon). Minting and verifying with a
//! root key are here too so that the simnet's server side and tests use the same format.
//! Pure: no I/O.

use bitcoin::hashes::{Hash, HashEngine, hmac, sha256};

/// Field types of the V2 binary format.
const FIELD_EOS: u8 = 0;
const FIELD_LOCATION: u8 = 1;
const FIELD_IDENTIFIER: u8 = 2;
const FIELD_VERIFICATION_ID: u8 = 4;
const FIELD_SIGNATURE: u8 = 6;

/// The key that turns a root key into the chain's starting key (libmacaroons' convention).
const KEY_GENERATOR: &[u8] = b"macaroons-key-generator";

/// A caveat: a first-party condition (no verification id) or a third-party one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caveat {
    /// The condition, e.g. `preimage=...` or `services=loop:0`.
    pub id: Vec<u8>,
    /// Third-party verification id; empty for first-party caveats.
    pub verification_id: Vec<u8>,
    /// Third-party location; empty for first-party caveats.
    pub location: String,
}

/// A macaroon as held by a bearer: identifier, caveats and the chained signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Macaroon {
    location: String,
    id: Vec<u8>,
    caveats: Vec<Caveat>,
    sig: [u8; 32],
}

impl std::fmt::Debug for Macaroon {
    // The signature is the bearer secret: keep it out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Macaroon")
            .field("location", &self.location)
            .field("id_len", &self.id.len())
            .field("caveats", &self.caveats.len())
            .finish_non_exhaustive()
    }
}

/// Why bytes are not a V2 binary macaroon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacaroonError {
    /// The first byte is not 2 (V1 and JSON forms are not supported).
    #[error("macaroon: unsupported format version byte {0:#04x}; expected 0x02 (V2 binary)")]
    Version(u8),
    /// The data ends inside a field.
    #[error("macaroon: truncated at byte {0}")]
    Truncated(usize),
    /// A field appears where another was required.
    #[error("macaroon: unexpected field type {found} at byte {at}; expected {expected}")]
    UnexpectedField {
        /// Byte offset of the field.
        at: usize,
        /// Field type found.
        found: u8,
        /// What the format requires there.
        expected: &'static str,
    },
    /// The signature field is not 32 bytes.
    #[error("macaroon: signature is {0} bytes; expected 32")]
    SignatureLength(usize),
    /// Bytes follow the signature.
    #[error("macaroon: {0} trailing bytes after the signature")]
    Trailing(usize),
    /// The signature chain does not match the root key.
    #[error("macaroon: signature does not verify")]
    BadSignature,
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut engine = hmac::HmacEngine::<sha256::Hash>::new(key);
    engine.input(data);
    hmac::Hmac::<sha256::Hash>::from_engine(engine).to_byte_array()
}

/// Constant-time equality for signatures.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Macaroon {
    /// Mints a macaroon (server side): signature = HMAC(HMAC(key-generator, root_key), id).
    pub fn new(root_key: &[u8], id: &[u8], location: &str) -> Macaroon {
        let derived = hmac_sha256(KEY_GENERATOR, root_key);
        Macaroon {
            location: location.to_owned(),
            id: id.to_vec(),
            caveats: Vec::new(),
            sig: hmac_sha256(&derived, id),
        }
    }

    /// The identifier (for L402: version, payment hash, token id).
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// The caveats, in order.
    pub fn caveats(&self) -> &[Caveat] {
        &self.caveats
    }

    /// The current signature: the bearer secret of this macaroon.
    pub fn signature(&self) -> [u8; 32] {
        self.sig
    }

    /// Appends a first-party caveat: sig' = HMAC(sig, caveat).
    pub fn add_first_party_caveat(&mut self, caveat: &[u8]) {
        self.sig = hmac_sha256(&self.sig, caveat);
        self.caveats.push(Caveat {
            id: caveat.to_vec(),
            verification_id: Vec::new(),
            location: String::new(),
        });
    }

    /// Recomputes the signature chain from the root key (server side) and checks it. Only
    /// first-party caveats are supported; a third-party caveat fails verification. Returns
    /// the caveat conditions for the caller to check.
    pub fn verify(&self, root_key: &[u8]) -> Result<Vec<&[u8]>, MacaroonError> {
        let derived = hmac_sha256(KEY_GENERATOR, root_key);
        let mut sig = hmac_sha256(&derived, &self.id);
        let mut conditions = Vec::with_capacity(self.caveats.len());
        for caveat in &self.caveats {
            if !caveat.verification_id.is_empty() {
                return Err(MacaroonError::BadSignature);
            }
            sig = hmac_sha256(&sig, &caveat.id);
            conditions.push(caveat.id.as_slice());
        }
        if ct_eq(&sig, &self.sig) {
            Ok(conditions)
        } else {
            Err(MacaroonError::BadSignature)
        }
    }

    /// Serializes in the V2 binary format (`MarshalBinary` of `gopkg.in/macaroon.v2`).
    pub fn to_binary(&self) -> Vec<u8> {
        let mut out = vec![2u8];
        if !self.location.is_empty() {
            put_field(&mut out, FIELD_LOCATION, self.location.as_bytes());
        }
        put_field(&mut out, FIELD_IDENTIFIER, &self.id);
        out.push(FIELD_EOS);
        for caveat in &self.caveats {
            if !caveat.location.is_empty() {
                put_field(&mut out, FIELD_LOCATION, caveat.location.as_bytes());
            }
            put_field(&mut out, FIELD_IDENTIFIER, &caveat.id);
            if !caveat.verification_id.is_empty() {
                put_field(&mut out, FIELD_VERIFICATION_ID, &caveat.verification_id);
            }
            out.push(FIELD_EOS);
        }
        out.push(FIELD_EOS);
        put_field(&mut out, FIELD_SIGNATURE, &self.sig);
        out
    }

    /// Parses the V2 binary format.
    pub fn from_binary(data: &[u8]) -> Result<Macaroon, MacaroonError> {
        let mut r = Reader { data, pos: 0 };
        let version = r.byte()?;
        if version != 2 {
            return Err(MacaroonError::Version(version));
        }
        let mut location = String::new();
        let mut field = r.field()?;
        if field.0 == FIELD_LOCATION {
            location = String::from_utf8_lossy(field.1).into_owned();
            field = r.field()?;
        }
        if field.0 != FIELD_IDENTIFIER {
            return Err(r.unexpected(field.0, "identifier (2)"));
        }
        let id = field.1.to_vec();
        r.expect_eos()?;
        let mut caveats = Vec::new();
        loop {
            let at = r.pos;
            let ty = r.peek()?;
            if ty == FIELD_EOS {
                r.pos += 1;
                break;
            }
            let mut caveat = Caveat {
                id: Vec::new(),
                verification_id: Vec::new(),
                location: String::new(),
            };
            let mut f = r.field()?;
            if f.0 == FIELD_LOCATION {
                caveat.location = String::from_utf8_lossy(f.1).into_owned();
                f = r.field()?;
            }
            if f.0 != FIELD_IDENTIFIER {
                return Err(MacaroonError::UnexpectedField {
                    at,
                    found: f.0,
                    expected: "caveat identifier (2)",
                });
            }
            caveat.id = f.1.to_vec();
            if r.peek()? == FIELD_VERIFICATION_ID {
                caveat.verification_id = r.field()?.1.to_vec();
            }
            r.expect_eos()?;
            caveats.push(caveat);
        }
        let (ty, sig) = r.field()?;
        if ty != FIELD_SIGNATURE {
            return Err(r.unexpected(ty, "signature (6)"));
        }
        let sig: [u8; 32] = sig
            .try_into()
            .map_err(|_| MacaroonError::SignatureLength(sig.len()))?;
        if r.pos != data.len() {
            return Err(MacaroonError::Trailing(data.len() - r.pos));
        }
        Ok(Macaroon {
            location,
            id,
            caveats,
            sig,
        })
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_field(out: &mut Vec<u8>, ty: u8, data: &[u8]) {
    out.push(ty);
    put_uvarint(out, data.len() as u64);
    out.extend_from_slice(data);
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Result<u8, MacaroonError> {
        self.data
            .get(self.pos)
            .copied()
            .ok_or(MacaroonError::Truncated(self.pos))
    }

    fn byte(&mut self) -> Result<u8, MacaroonError> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn uvarint(&mut self) -> Result<u64, MacaroonError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(MacaroonError::Truncated(self.pos))
    }

    fn field(&mut self) -> Result<(u8, &'a [u8]), MacaroonError> {
        let ty = self.byte()?;
        let len =
            usize::try_from(self.uvarint()?).map_err(|_| MacaroonError::Truncated(self.pos))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.data.len())
            .ok_or(MacaroonError::Truncated(self.data.len()))?;
        let slice = &self.data[self.pos..end];
        self.pos = end;
        Ok((ty, slice))
    }

    fn expect_eos(&mut self) -> Result<(), MacaroonError> {
        let at = self.pos;
        let b = self.byte()?;
        if b == FIELD_EOS {
            Ok(())
        } else {
            Err(MacaroonError::UnexpectedField {
                at,
                found: b,
                expected: "end of section (0)",
            })
        }
    }

    fn unexpected(&self, found: u8, expected: &'static str) -> MacaroonError {
        MacaroonError::UnexpectedField {
            at: self.pos,
            found,
            expected,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"this is our super secret key; only we should know it";

    #[test]
    fn signatures_match_the_published_libmacaroons_vectors() {
        let mut m = Macaroon::new(KEY, b"we used our secret key", "http://mybank/");
        assert_eq!(
            hex::encode(m.signature()),
            "e3d9e02908526c4c0039ae15114115d97fdd68bf2ba379b342aaf0f617d0552f"
        );
        m.add_first_party_caveat(b"account = 3735928559");
        assert_eq!(
            hex::encode(m.signature()),
            "1efe4763f290dbce0c1d08477367e11f4eee456a64933cf662d79772dbb82128"
        );
        m.add_first_party_caveat(b"time < 2020-01-01T00:00");
        m.add_first_party_caveat(b"email = alice@example.org");
        assert_eq!(
            hex::encode(m.signature()),
            "ddf553e46083e55b8d71ab822be3d8fcf21d6bf19c40d617bb9fb438934474b6"
        );
        assert_eq!(m.verify(KEY).unwrap().len(), 3);
        assert_eq!(m.verify(b"another key"), Err(MacaroonError::BadSignature));
    }

    #[test]
    fn v2_binary_layout_is_field_by_field() {
        let mut m = Macaroon::new(KEY, b"id", "loc");
        m.add_first_party_caveat(b"a=b");
        let bin = m.to_binary();
        let mut expected = vec![2, 1, 3, b'l', b'o', b'c', 2, 2, b'i', b'd', 0];
        expected.extend_from_slice(&[2, 3, b'a', b'=', b'b', 0, 0, 6, 32]);
        expected.extend_from_slice(&m.signature());
        assert_eq!(bin, expected);
        assert_eq!(Macaroon::from_binary(&bin).unwrap(), m);
    }

    #[test]
    fn a_caveat_added_after_parsing_still_verifies() {
        let minted = Macaroon::new(KEY, &[7u8; 200], "");
        let mut held = Macaroon::from_binary(&minted.to_binary()).unwrap();
        held.add_first_party_caveat(b"preimage=00");
        let back = Macaroon::from_binary(&held.to_binary()).unwrap();
        assert_eq!(back.verify(KEY).unwrap(), vec![b"preimage=00".as_slice()]);
        // A tampered caveat breaks the chain.
        let mut bin = held.to_binary();
        let pos = bin.windows(2).position(|w| w == b"00").unwrap();
        bin[pos] = b'1';
        let tampered = Macaroon::from_binary(&bin).unwrap();
        assert_eq!(tampered.verify(KEY), Err(MacaroonError::BadSignature));
    }

    #[test]
    fn malformed_bytes_are_refused_with_a_reason() {
        assert_eq!(Macaroon::from_binary(&[]), Err(MacaroonError::Truncated(0)));
        assert_eq!(Macaroon::from_binary(&[1]), Err(MacaroonError::Version(1)));
        let bin = Macaroon::new(KEY, b"id", "").to_binary();
        assert!(matches!(
            Macaroon::from_binary(&bin[..bin.len() - 1]),
            Err(MacaroonError::Truncated(_))
        ));
        let mut long = bin.clone();
        long.push(0);
        assert_eq!(
            Macaroon::from_binary(&long),
            Err(MacaroonError::Trailing(1))
        );
        // Signature field replaced by a verification-id field.
        let mut wrong = bin;
        let sig_at = wrong.len() - 34;
        wrong[sig_at] = FIELD_VERIFICATION_ID;
        assert!(matches!(
            Macaroon::from_binary(&wrong),
            Err(MacaroonError::UnexpectedField { found: 4, .. })
        ));
    }
}
