//! The L402 token files in the network's data dir: `l402.token.pending` (written before
//! paying) and `l402.token` (after the payment succeeded, with the preimage).
//!
//! Both are written atomically (temporary file, fsync, rename, fsync of the directory) with
//! mode 0600, since a paid token is a bearer credential. A paid token is never replaced by a
//! different one. The files are small; the blocking writes are deliberate and rare (once per
//! token purchase).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tonic::metadata::AsciiMetadataValue;

use super::{Credentials, L402Error, token_paths};
use crate::domain::Msat;
use crate::provider::macaroon::Macaroon;

/// One token: the macaroon the server minted, and what completes it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The macaroon as received, without the preimage caveat.
    pub base: Macaroon,
    /// The payment hash of the token invoice; also the token's id in logs.
    pub payment_hash: [u8; 32],
    /// The preimage, once paid.
    pub preimage: Option<[u8; 32]>,
    /// Amount paid for the token.
    pub amount_paid: Msat,
    /// Routing fee paid for the token.
    pub routing_fee: Msat,
    /// When the token was first stored, unix seconds.
    pub created_unix_s: u64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("payment_hash", &hex::encode(self.payment_hash))
            .field("paid", &self.preimage.is_some())
            .field("amount_paid", &self.amount_paid)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// A token about to be paid for.
    pub fn pending(base: Macaroon, payment_hash: [u8; 32]) -> Token {
        let created_unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Token {
            base,
            payment_hash,
            preimage: None,
            amount_paid: Msat(0),
            routing_fee: Msat(0),
            created_unix_s,
        }
    }

    /// The credentials to attach, once paid: hex of the macaroon with `preimage=<hex>` added.
    pub fn credentials(&self) -> Option<Credentials> {
        let preimage = self.preimage?;
        let mut mac = self.base.clone();
        mac.add_first_party_caveat(format!("preimage={}", hex::encode(preimage)).as_bytes());
        let header = AsciiMetadataValue::try_from(hex::encode(mac.to_binary())).ok()?;
        Some(Credentials {
            token_id: self.payment_hash,
            header,
        })
    }
}

/// The on-disk form (JSON). Field names are part of the data dir's format.
#[derive(Serialize, Deserialize)]
struct TokenFile {
    format: u32,
    macaroon_hex: String,
    payment_hash_hex: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    preimage_hex: Option<String>,
    amount_paid_msat: u64,
    routing_fee_msat: u64,
    created_unix_s: u64,
}

const FORMAT: u32 = 1;

/// The two token files of one data dir.
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: PathBuf,
}

impl TokenStore {
    /// The store in `dir` (created on first write).
    pub fn new(dir: &Path) -> TokenStore {
        TokenStore {
            dir: dir.to_path_buf(),
        }
    }

    /// Path of the paid token.
    pub fn paid_path(&self) -> PathBuf {
        token_paths(&self.dir).0
    }

    /// Path of the pending token.
    pub fn pending_path(&self) -> PathBuf {
        token_paths(&self.dir).1
    }

    /// The paid token, if any. A paid file without a preimage is corrupt.
    pub fn load_paid(&self) -> Result<Option<Token>, L402Error> {
        let path = self.paid_path();
        let token = read(&path)?;
        if let Some(t) = &token
            && t.preimage.is_none()
        {
            return Err(L402Error::CorruptTokenFile {
                path,
                reason: "no preimage".to_owned(),
            });
        }
        Ok(token)
    }

    /// The pending token, if any.
    pub fn load_pending(&self) -> Result<Option<Token>, L402Error> {
        read(&self.pending_path())
    }

    /// Writes the pending token; must succeed before the invoice is paid.
    pub fn save_pending(&self, token: &Token) -> Result<(), L402Error> {
        write_atomic(&self.dir, &self.pending_path(), token)
    }

    /// Writes the paid token, refusing to replace a different paid token.
    pub fn save_paid(&self, token: &Token) -> Result<(), L402Error> {
        let path = self.paid_path();
        if let Some(existing) = read(&path)?
            && existing.payment_hash != token.payment_hash
        {
            return Err(L402Error::PaidTokenExists { path });
        }
        write_atomic(&self.dir, &path, token)
    }

    /// Removes the pending token (after it was paid or its payment failed).
    pub fn remove_pending(&self) -> Result<(), L402Error> {
        let path = self.pending_path();
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(L402Error::Io { path, source }),
        }
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> L402Error {
    L402Error::CorruptTokenFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn hex32(path: &Path, field: &str, text: &str) -> Result<[u8; 32], L402Error> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| corrupt(path, format!("{field} is not 32 bytes of hex")))
}

fn read(path: &Path) -> Result<Option<Token>, L402Error> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(L402Error::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let file: TokenFile =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(path, e.to_string()))?;
    if file.format != FORMAT {
        return Err(corrupt(path, format!("unknown format {}", file.format)));
    }
    let mac_bytes =
        hex::decode(&file.macaroon_hex).map_err(|_| corrupt(path, "macaroon_hex is not hex"))?;
    let base = Macaroon::from_binary(&mac_bytes).map_err(|e| corrupt(path, e.to_string()))?;
    let payment_hash = hex32(path, "payment_hash_hex", &file.payment_hash_hex)?;
    let preimage = match &file.preimage_hex {
        Some(p) => Some(hex32(path, "preimage_hex", p)?),
        None => None,
    };
    Ok(Some(Token {
        base,
        payment_hash,
        preimage,
        amount_paid: Msat(file.amount_paid_msat),
        routing_fee: Msat(file.routing_fee_msat),
        created_unix_s: file.created_unix_s,
    }))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> L402Error + '_ {
    move |source| L402Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), L402Error> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn write_atomic(dir: &Path, path: &Path, token: &Token) -> Result<(), L402Error> {
    let file = TokenFile {
        format: FORMAT,
        macaroon_hex: hex::encode(token.base.to_binary()),
        payment_hash_hex: hex::encode(token.payment_hash),
        preimage_hex: token.preimage.map(hex::encode),
        amount_paid_msat: token.amount_paid.0,
        routing_fee_msat: token.routing_fee.0,
        created_unix_s: token.created_unix_s,
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| L402Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&json)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn token(hash: u8, preimage: Option<[u8; 32]>) -> Token {
        let mut t = Token::pending(Macaroon::new(b"root", b"id", ""), [hash; 32]);
        t.preimage = preimage;
        t.amount_paid = Msat(1_000_000);
        t
    }

    #[test]
    fn tokens_round_trip_and_paid_tokens_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(&dir.path().join("regtest"));
        assert!(store.load_paid().unwrap().is_none());
        store.save_pending(&token(1, None)).unwrap();
        assert_eq!(store.load_pending().unwrap(), Some(token(1, None)));
        store.save_paid(&token(1, Some([5; 32]))).unwrap();
        store.remove_pending().unwrap();
        store.remove_pending().unwrap();
        assert!(store.load_pending().unwrap().is_none());
        assert_eq!(store.load_paid().unwrap(), Some(token(1, Some([5; 32]))));
        // Re-saving the same token is fine; a different one is refused.
        store.save_paid(&token(1, Some([5; 32]))).unwrap();
        assert!(matches!(
            store.save_paid(&token(2, Some([6; 32]))),
            Err(L402Error::PaidTokenExists { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(store.paid_path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "token file must not be group/world readable"
            );
        }
    }

    #[test]
    fn corrupt_files_are_reported_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        fs::write(store.paid_path(), b"{not json").unwrap();
        let err = store.load_paid().unwrap_err().to_string();
        assert!(err.contains("l402.token"), "{err}");
        assert!(err.contains("move it away"), "{err}");
        store.save_pending(&token(1, None)).unwrap();
        fs::rename(store.pending_path(), store.paid_path()).unwrap();
        assert!(
            store
                .load_paid()
                .unwrap_err()
                .to_string()
                .contains("no preimage")
        );
    }

    #[test]
    fn credentials_carry_the_preimage_caveat() {
        assert!(token(1, None).credentials().is_none());
        let creds = token(1, Some([0xAA; 32])).credentials().unwrap();
        let bytes = hex::decode(creds.header.to_str().unwrap()).unwrap();
        let mac = Macaroon::from_binary(&bytes).unwrap();
        let caveats = mac.verify(b"root").unwrap();
        assert_eq!(
            caveats,
            vec![format!("preimage={}", "aa".repeat(32)).as_bytes()]
        );
    }
}
