//! What the runner, the control service and the CLI share: where a running simnet's services
//! are (`simnet.json`) and why a simnet could not start or be reached. Its own module, so
//! neither `runner` nor `control` imports the other for it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::lnd::SimLndError;
use super::world::WorldError;

/// Where the CLI finds the control service.
pub const STATE_FILE: &str = "simnet.json";

/// Why a simnet could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimnetError {
    /// The world could not be built.
    #[error("cannot build the simulated world: {0}")]
    World(#[from] WorldError),
    /// A simulated lnd or the control service could not start.
    #[error(transparent)]
    Lnd(#[from] SimLndError),
    /// A file of the simnet directory could not be written or read.
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        /// What was being done.
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The control service could not be reached.
    #[error(
        "cannot reach the simnet control service: {0}; is `sluice simnet serve` running with \
         this --dir?"
    )]
    Connect(#[from] crate::tls::TlsError),
    /// `simnet.json` does not describe a simnet.
    #[error(
        "{} is not a simnet state file ({reason}); is `sluice simnet serve --dir {}` running?",
        path.display(), path.parent().unwrap_or(Path::new(".")).display()
    )]
    State {
        /// The file read.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where a running simnet's services are, as written to `simnet.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimnetState {
    /// The control service's address.
    pub control: String,
    /// Its certificate.
    pub control_cert: PathBuf,
    /// Its macaroon.
    pub control_macaroon: PathBuf,
    /// Each simulated lnd's address, by node name.
    pub lnd: BTreeMap<String, String>,
}

impl SimnetState {
    /// Reads `<dir>/simnet.json`.
    pub fn read(dir: &Path) -> Result<SimnetState, SimnetError> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| SimnetError::File {
            action: "read",
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| SimnetError::State {
            path,
            reason: e.to_string(),
        })
    }
}
