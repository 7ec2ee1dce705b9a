//! `sluice htlc`: print a Loop HTLC's scripts, keys and address from its parameters, offline.
//! Operators use it to check what a swap pays to, or to decode an old (v2) swap, without a
//! running daemon.

use clap::Args as ClapArgs;

use super::CliError;
use crate::chain::report::{HtlcArgs, htlc_report};

/// The HTLC's parameters, as Loop's swap records hold them.
#[derive(ClapArgs, Debug, Clone)]
pub struct HtlcCmd {
    /// The swap server's 33-byte compressed public key, hex (the HTLC's sender).
    #[arg(long, value_name = "HEX")]
    pub sender_key: String,
    /// sluice's 33-byte compressed public key, hex (the HTLC's receiver).
    #[arg(long, value_name = "HEX")]
    pub receiver_key: String,
    /// The swap hash (SHA256 of the preimage), 32 bytes hex.
    #[arg(long, value_name = "HEX")]
    pub hash: String,
    /// The absolute block height after which the server can take the HTLC back.
    #[arg(long, value_name = "HEIGHT")]
    pub expiry: u32,
    /// mainnet, testnet, testnet4, signet, regtest or simnet.
    #[arg(long, value_name = "NET", default_value = "mainnet")]
    pub network: String,
    /// HTLC version: v3 (P2TR, current) or v2 (P2WSH, old swaps).
    #[arg(long = "version", value_name = "v3|v2", default_value = "v3")]
    pub htlc_version: String,
}

/// Builds the report and renders it as text or one JSON object.
pub fn run(cmd: &HtlcCmd, json: bool) -> Result<String, CliError> {
    let report = htlc_report(&HtlcArgs {
        sender_key: cmd.sender_key.clone(),
        receiver_key: cmd.receiver_key.clone(),
        hash: cmd.hash.clone(),
        expiry: cmd.expiry,
        network: cmd.network.clone(),
        version: cmd.htlc_version.clone(),
    })
    .map_err(|e| CliError::Input(e.to_string()))?;
    if json {
        Ok(format!("{}\n", serde_json::to_string_pretty(&report)?))
    } else {
        Ok(format!("{report}\n"))
    }
}
