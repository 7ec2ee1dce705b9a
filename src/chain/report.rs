//! `sluice htlc`: validate the operator's inputs and describe the HTLC they define, without a
//! daemon. The CLI parses flags into [`HtlcArgs`], calls [`htlc_report`] and prints the
//! [`HtlcReport`] (its `Display` form, or JSON through serde).

use std::fmt;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use serde::{Deserialize, Serialize};

use crate::chain::ChainError;
use crate::chain::htlc::{HtlcV2, HtlcV3, HtlcVersion};
use crate::domain::{Network, SwapHash};

/// The raw inputs of `sluice htlc`, as typed on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtlcArgs {
    /// `--sender-key`: the server's 33-byte compressed key, hex.
    pub sender_key: String,
    /// `--receiver-key`: sluice's 33-byte compressed key, hex.
    pub receiver_key: String,
    /// `--hash`: the 32-byte swap hash, hex.
    pub hash: String,
    /// `--expiry`: the absolute CLTV height.
    pub expiry: u32,
    /// `--network`: mainnet, testnet, testnet4, signet, regtest or simnet.
    pub network: String,
    /// `--version`: v3 or v2; empty means v3.
    pub version: String,
}

/// Everything `sluice htlc` prints. Hex strings throughout; fields that only exist for one
/// version are `None` for the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtlcReport {
    /// `v3` or `v2`.
    pub version: String,
    /// The network the address is for.
    pub network: String,
    /// The swap hash.
    pub swap_hash: String,
    /// The server's key.
    pub sender_key: String,
    /// sluice's key.
    pub receiver_key: String,
    /// The absolute CLTV height.
    pub expiry: u32,
    /// v3: the success leaf script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_script: Option<String>,
    /// v3: the timeout leaf script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_script: Option<String>,
    /// v3: TapLeaf hash of the success leaf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_leaf_hash: Option<String>,
    /// v3: TapLeaf hash of the timeout leaf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_leaf_hash: Option<String>,
    /// v3: the tap tree root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_root: Option<String>,
    /// v3: the x-only internal key P (MuSig2 aggregate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_key: Option<String>,
    /// v3: the x-only output key Q.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_key: Option<String>,
    /// v3: the control block for the success leaf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_control_block: Option<String>,
    /// v3: the control block for the timeout leaf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_control_block: Option<String>,
    /// v2: the P2WSH witness script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness_script: Option<String>,
    /// The output script to watch.
    pub pk_script: String,
    /// The address.
    pub address: String,
}

fn parse_key(place: &'static str, hex_str: &str) -> Result<PublicKey, ChainError> {
    let bytes = hex::decode(hex_str.trim()).map_err(|e| {
        ChainError::invalid(place, format!("not hex ({e}); expected 66 hex characters"))
    })?;
    if bytes.len() != 33 {
        return Err(ChainError::invalid(
            place,
            format!(
                "{} bytes; expected a 33-byte compressed public key (66 hex characters starting \
                 with 02 or 03)",
                bytes.len()
            ),
        ));
    }
    PublicKey::from_slice(&bytes).map_err(|_| {
        ChainError::invalid(
            place,
            "not a point on secp256k1; check the key was copied whole",
        )
    })
}

fn parse_hash(hex_str: &str) -> Result<SwapHash, ChainError> {
    let bytes = hex::decode(hex_str.trim()).map_err(|e| {
        ChainError::invalid(
            "--hash",
            format!("not hex ({e}); expected 64 hex characters"),
        )
    })?;
    let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        ChainError::invalid(
            "--hash",
            format!(
                "{} bytes; expected the 32-byte swap hash (64 hex characters)",
                bytes.len()
            ),
        )
    })?;
    Ok(SwapHash(arr))
}

/// Validates `args` and describes the HTLC they define.
pub fn htlc_report(args: &HtlcArgs) -> Result<HtlcReport, ChainError> {
    let sender = parse_key("--sender-key", &args.sender_key)?;
    let receiver = parse_key("--receiver-key", &args.receiver_key)?;
    let hash = parse_hash(&args.hash)?;
    let network: Network =
        args.network
            .trim()
            .parse()
            .map_err(|e: crate::domain::ParseNetworkError| {
                ChainError::invalid("--network", e.to_string())
            })?;
    let version: HtlcVersion = match args.version.trim() {
        "" => HtlcVersion::V3,
        v => v.parse()?,
    };
    match version {
        HtlcVersion::V3 => Ok(HtlcReport::from(&HtlcV3::new(
            sender,
            receiver,
            hash,
            args.expiry,
            network,
        )?)),
        HtlcVersion::V2 => Ok(HtlcReport::from(&HtlcV2::new(
            sender,
            receiver,
            hash,
            args.expiry,
            network,
        )?)),
    }
}

impl From<&HtlcV3> for HtlcReport {
    fn from(h: &HtlcV3) -> HtlcReport {
        HtlcReport {
            version: HtlcVersion::V3.to_string(),
            network: h.network().to_string(),
            swap_hash: h.hash().to_string(),
            sender_key: h.sender().to_string(),
            receiver_key: h.receiver().to_string(),
            expiry: h.expiry(),
            success_script: Some(hex::encode(h.success_script().as_bytes())),
            timeout_script: Some(hex::encode(h.timeout_script().as_bytes())),
            success_leaf_hash: Some(hex::encode(h.success_leaf_hash().to_byte_array())),
            timeout_leaf_hash: Some(hex::encode(h.timeout_leaf_hash().to_byte_array())),
            tap_root: Some(hex::encode(h.merkle_root().to_byte_array())),
            internal_key: Some(h.internal_key().to_string()),
            output_key: Some(h.output_key().to_string()),
            success_control_block: Some(hex::encode(h.success_control_block().serialize())),
            timeout_control_block: Some(hex::encode(h.timeout_control_block().serialize())),
            witness_script: None,
            pk_script: hex::encode(h.pk_script().as_bytes()),
            address: h.address().to_string(),
        }
    }
}

impl From<&HtlcV2> for HtlcReport {
    fn from(h: &HtlcV2) -> HtlcReport {
        HtlcReport {
            version: HtlcVersion::V2.to_string(),
            network: h.network().to_string(),
            swap_hash: h.hash().to_string(),
            sender_key: h.sender().to_string(),
            receiver_key: h.receiver().to_string(),
            expiry: h.expiry(),
            success_script: None,
            timeout_script: None,
            success_leaf_hash: None,
            timeout_leaf_hash: None,
            tap_root: None,
            internal_key: None,
            output_key: None,
            success_control_block: None,
            timeout_control_block: None,
            witness_script: Some(hex::encode(h.witness_script().as_bytes())),
            pk_script: hex::encode(h.pk_script().as_bytes()),
            address: h.address().to_string(),
        }
    }
}

impl fmt::Display for HtlcReport {
    /// One `name: value` line per field present, in the order an operator reads them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expiry = self.expiry.to_string();
        let lines: [(&str, Option<&str>); 18] = [
            ("version", Some(&self.version)),
            ("network", Some(&self.network)),
            ("swap hash", Some(&self.swap_hash)),
            ("sender key", Some(&self.sender_key)),
            ("receiver key", Some(&self.receiver_key)),
            ("expiry", Some(&expiry)),
            ("witness script", self.witness_script.as_deref()),
            ("success script", self.success_script.as_deref()),
            ("success leaf hash", self.success_leaf_hash.as_deref()),
            ("timeout script", self.timeout_script.as_deref()),
            ("timeout leaf hash", self.timeout_leaf_hash.as_deref()),
            ("tap root", self.tap_root.as_deref()),
            ("internal key", self.internal_key.as_deref()),
            ("output key", self.output_key.as_deref()),
            (
                "success control block",
                self.success_control_block.as_deref(),
            ),
            (
                "timeout control block",
                self.timeout_control_block.as_deref(),
            ),
            ("pk script", Some(&self.pk_script)),
            ("address", Some(&self.address)),
        ];
        for (name, value) in lines {
            if let Some(v) = value {
                let label = format!("{name}:");
                writeln!(f, "{label:<23}{v}")?;
            }
        }
        Ok(())
    }
}
