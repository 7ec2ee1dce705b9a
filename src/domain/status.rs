//! Status snapshots the daemon reports about its collaborators.

/// What sluice knows about its lnd node, as shown by `GetInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// Whether the last call to lnd succeeded.
    pub connected: bool,
    /// lnd's node alias.
    pub alias: String,
    /// lnd's identity pubkey, hex.
    pub pubkey: String,
    /// lnd's best block height.
    pub block_height: u32,
    /// Whether lnd reports being synced to the chain.
    pub synced_to_chain: bool,
    /// lnd's version string.
    pub version: String,
    /// Why lnd is not connected, when it is not.
    pub error: Option<String>,
}

/// The state of the policy in force, as shown by `GetInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyStatus {
    /// Where policies are read from.
    pub directory: String,
    /// Files of the policy in force; empty when none is loaded.
    pub files: Vec<String>,
    /// The last rejected change, with its located error.
    pub last_error: Option<String>,
}

impl PolicyStatus {
    /// "none", "loaded" or "rejected", as the API reports it.
    pub fn state(&self) -> &'static str {
        match (&self.last_error, self.files.is_empty()) {
            (Some(_), _) => "rejected",
            (None, true) => "none",
            (None, false) => "loaded",
        }
    }
}
