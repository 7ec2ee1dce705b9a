//! Commands about the daemon itself: `getinfo` and `stop`.

use serde::Serialize;

use super::CliError;
use super::client::Target;
use super::output::{self, Format, Render};
use crate::proto::sluice as pb;

/// `getinfo`'s answer, as printed.
#[derive(Debug, Serialize)]
pub struct Info {
    /// The daemon's version.
    pub version: String,
    /// The network it runs on.
    pub network: String,
    /// Whether it runs the embedded simulated world.
    pub simnet: bool,
    /// Seconds since it started.
    pub uptime_seconds: u64,
    /// Its data dir.
    pub data_dir: String,
    /// Its lnd connection.
    pub lnd: Lnd,
    /// Its policy state.
    pub policy: Policy,
}

/// lnd as the daemon sees it.
#[derive(Debug, Serialize)]
pub struct Lnd {
    /// Whether the last call to lnd succeeded.
    pub connected: bool,
    /// lnd's alias.
    pub alias: String,
    /// lnd's identity pubkey.
    pub pubkey: String,
    /// lnd's best block height.
    pub block_height: u32,
    /// Whether lnd is synced to the chain.
    pub synced_to_chain: bool,
    /// lnd's version.
    pub version: String,
    /// Why lnd is not connected, if it is not (null otherwise, so scripts see a stable shape).
    pub error: Option<String>,
}

/// The policy in force.
#[derive(Debug, Serialize)]
pub struct Policy {
    /// "none", "loaded" or "rejected".
    pub state: String,
    /// Where policies are read from.
    pub directory: String,
    /// Files of the policy in force.
    pub files: Vec<String>,
    /// The last rejected change, if any.
    pub last_error: Option<String>,
}

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

impl From<pb::GetInfoResponse> for Info {
    fn from(r: pb::GetInfoResponse) -> Info {
        let lnd = r.lnd.unwrap_or_default();
        let policy = r.policy.unwrap_or_default();
        Info {
            version: r.version,
            network: r.network,
            simnet: r.simnet,
            uptime_seconds: r.uptime_seconds,
            data_dir: r.data_dir,
            lnd: Lnd {
                connected: lnd.connected,
                alias: lnd.alias,
                pubkey: lnd.pubkey,
                block_height: lnd.block_height,
                synced_to_chain: lnd.synced_to_chain,
                version: lnd.version,
                error: non_empty(lnd.error),
            },
            policy: Policy {
                state: policy.state,
                directory: policy.directory,
                files: policy.files,
                last_error: non_empty(policy.last_error),
            },
        }
    }
}

impl Render for Info {
    fn rows(&self) -> Vec<(&'static str, String)> {
        let network = if self.simnet && self.network != "simnet" {
            format!("{} (simnet)", self.network)
        } else {
            self.network.clone()
        };
        let lnd = &self.lnd;
        let lnd_line = match (&lnd.error, lnd.connected) {
            (Some(e), _) => format!("not connected: {e}"),
            (None, false) => "not connected yet".to_owned(),
            (None, true) => format!(
                "{} {} at height {}, {}",
                if lnd.alias.is_empty() {
                    "(no alias)"
                } else {
                    &lnd.alias
                },
                lnd.pubkey,
                lnd.block_height,
                if lnd.synced_to_chain {
                    "synced"
                } else {
                    "not synced to chain"
                },
            ),
        };
        let p = &self.policy;
        let mut policy_line = match p.state.as_str() {
            "loaded" => format!("loaded ({}) from {}", p.files.join(", "), p.directory),
            other => format!("{other} (directory {})", p.directory),
        };
        if let Some(e) = &p.last_error {
            policy_line.push_str(&format!("; last change rejected: {e}"));
        }
        vec![
            ("version", self.version.clone()),
            ("network", network),
            ("uptime", output::duration(self.uptime_seconds)),
            ("data dir", self.data_dir.clone()),
            ("lnd", lnd_line),
            ("policy", policy_line),
        ]
    }
}

/// `getinfo`: the daemon's state.
pub async fn getinfo(target: &Target, format: Format) -> Result<String, CliError> {
    let mut client = target.connect().await?;
    let reply = client
        .get_info(pb::GetInfoRequest {})
        .await
        .map_err(|s| target.call_error(s, "read the daemon's info"))?;
    output::render(&Info::from(reply.into_inner()), format)
}

/// `stop`'s answer.
#[derive(Debug, Serialize)]
pub struct Stopping {
    /// Always true: the daemon accepted the request and is shutting down.
    pub stopping: bool,
}

impl Render for Stopping {
    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![("sluiced", "shutting down".to_owned())]
    }
}

/// `stop`: asks the daemon to shut down gracefully.
pub async fn stop(target: &Target, format: Format) -> Result<String, CliError> {
    let mut client = target.connect().await?;
    client
        .stop_daemon(pb::StopDaemonRequest {})
        .await
        .map_err(|s| target.call_error(s, "stop the daemon"))?;
    output::render(&Stopping { stopping: true }, format)
}
