//! The simulated lnd's credentials: its CA-marked TLS certificate and its admin macaroon, kept
//! in a directory like lnd's `tls.cert`, `tls.key` and `admin.macaroon`, and the check every
//! call passes.
//!
//! A real macaroon is a signed binary token with caveats; sluice only ever forwards it as hex
//! in the `macaroon` metadata, so random bytes are enough to prove that the client reads the
//! file it is pointed at and that lnd's refusals are understood. The refusals use lnd's exact
//! words.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use super::SimLndError;
use crate::tls::{self, Identity};

/// The certificate's file name, as lnd names it.
pub const CERT_FILE: &str = "tls.cert";
/// The certificate key's file name, as lnd names it.
pub const KEY_FILE: &str = "tls.key";
/// The admin macaroon's file name, as lnd names it.
pub const MACAROON_FILE: &str = "admin.macaroon";

/// lnd's answer to a call without macaroon metadata.
pub const NO_MACAROON: &str = "expected 1 macaroon, got 0";
/// lnd's answer to a macaroon it did not mint.
pub const WRONG_MACAROON: &str =
    "verification failed: signature mismatch after caveat verification";

/// Bytes of a fresh macaroon; real admin macaroons are a little over 100 bytes.
const MACAROON_LEN: usize = 128;

/// The files of one simulated lnd and their contents. `Debug` shows paths only.
#[derive(Clone)]
pub struct LndFiles {
    /// Where `tls.cert` is.
    pub cert_path: PathBuf,
    /// Where `admin.macaroon` is.
    pub macaroon_path: PathBuf,
    /// The certificate and key the server presents.
    pub identity: Identity,
    /// The macaroon's bytes. Secret.
    macaroon: Arc<[u8]>,
}

impl std::fmt::Debug for LndFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LndFiles")
            .field("cert_path", &self.cert_path)
            .field("macaroon_path", &self.macaroon_path)
            .finish_non_exhaustive()
    }
}

impl LndFiles {
    /// Loads the certificate, key and macaroon from `dir`, or creates the missing ones as lnd
    /// does on first start: a P-256 certificate marked as a CA (the shape that makes stock
    /// webpki clients fail, so pinning is really exercised) and a random macaroon, both
    /// secrets with mode 0600. Reusing existing files keeps clients configured for an earlier
    /// run working after a restart.
    pub fn load_or_create(dir: &Path) -> Result<LndFiles, SimLndError> {
        std::fs::create_dir_all(dir).map_err(|source| SimLndError::File {
            action: "create",
            path: dir.to_owned(),
            source,
        })?;
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        let identity = if cert_path.exists() && key_path.exists() {
            Identity {
                cert_pem: read_string(&cert_path)?,
                key_pem: read_string(&key_path)?,
            }
        } else {
            let identity = tls::generate_self_signed(&[], true)?;
            write_file(&key_path, identity.key_pem.as_bytes(), 0o600)?;
            write_file(&cert_path, identity.cert_pem.as_bytes(), 0o644)?;
            identity
        };
        let macaroon_path = dir.join(MACAROON_FILE);
        let macaroon: Arc<[u8]> = if macaroon_path.exists() {
            std::fs::read(&macaroon_path)
                .map_err(|source| SimLndError::File {
                    action: "read",
                    path: macaroon_path.clone(),
                    source,
                })?
                .into()
        } else {
            use rand::RngCore;
            let mut bytes = vec![0u8; MACAROON_LEN];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            write_file(&macaroon_path, &bytes, 0o600)?;
            bytes.into()
        };
        Ok(LndFiles {
            cert_path,
            macaroon_path,
            identity,
            macaroon,
        })
    }

    /// The macaroon as the hex string clients send. Secret: never log it.
    pub fn macaroon_hex(&self) -> String {
        hex::encode(&self.macaroon)
    }

    /// The check every call passes, as a tonic interceptor.
    pub fn checker(&self) -> MacaroonCheck {
        MacaroonCheck {
            expected: self.macaroon.clone(),
        }
    }
}

/// Refuses calls whose `macaroon` metadata is missing, repeated or not this node's macaroon,
/// with lnd's messages and code (`UNKNOWN`).
#[derive(Clone)]
pub struct MacaroonCheck {
    expected: Arc<[u8]>,
}

impl std::fmt::Debug for MacaroonCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacaroonCheck(<redacted>)")
    }
}

impl MacaroonCheck {
    /// Whether `request` carries exactly this node's macaroon.
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let values: Vec<_> = request.metadata().get_all("macaroon").iter().collect();
        let [value] = values.as_slice() else {
            return Err(Status::unknown(format!(
                "expected 1 macaroon, got {}",
                values.len()
            )));
        };
        let given = value
            .to_str()
            .ok()
            .and_then(|s| hex::decode(s).ok())
            .unwrap_or_default();
        if bool::from(given.as_slice().ct_eq(&self.expected)) {
            Ok(())
        } else {
            Err(Status::unknown(WRONG_MACAROON))
        }
    }
}

impl tonic::service::Interceptor for MacaroonCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(&request)?;
        Ok(request)
    }
}

fn read_string(path: &Path) -> Result<String, SimLndError> {
    std::fs::read_to_string(path).map_err(|source| SimLndError::File {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

/// Writes a file readable only as `mode` allows from the moment it exists.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), SimLndError> {
    let err = |source| SimLndError::File {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn with_macaroon(value: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(v) = value {
            r.metadata_mut().insert("macaroon", v.parse().unwrap());
        }
        r
    }

    #[test]
    fn files_are_created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = LndFiles::load_or_create(dir.path()).unwrap();
        let again = LndFiles::load_or_create(dir.path()).unwrap();
        assert_eq!(first.identity.cert_pem, again.identity.cert_pem);
        assert_eq!(first.macaroon_hex(), again.macaroon_hex());
        assert_eq!(first.macaroon_hex().len(), 2 * MACAROON_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&first.macaroon_path), 0o600);
            assert_eq!(mode(&dir.path().join(KEY_FILE)), 0o600);
        }
        assert!(!format!("{first:?}").contains(&first.macaroon_hex()));
    }

    #[test]
    fn check_refuses_missing_wrong_and_repeated_macaroons_with_lnds_words() {
        let dir = tempfile::tempdir().unwrap();
        let files = LndFiles::load_or_create(dir.path()).unwrap();
        let check = files.checker();
        assert!(
            check
                .check(&with_macaroon(Some(&files.macaroon_hex())))
                .is_ok()
        );

        let none = check.check(&with_macaroon(None)).unwrap_err();
        assert_eq!(none.code(), tonic::Code::Unknown);
        assert_eq!(none.message(), NO_MACAROON);

        for wrong in ["00", "not hex", &files.macaroon_hex()[2..]] {
            let err = check.check(&with_macaroon(Some(wrong))).unwrap_err();
            assert_eq!(err.message(), WRONG_MACAROON, "{wrong}");
        }

        let mut twice = with_macaroon(Some(&files.macaroon_hex()));
        twice
            .metadata_mut()
            .append("macaroon", files.macaroon_hex().parse().unwrap());
        assert_eq!(
            check.check(&twice).unwrap_err().message(),
            "expected 1 macaroon, got 2"
        );
    }
}
