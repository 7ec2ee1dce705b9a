//! Domain vocabulary: amounts, heights, identifiers and the network, as newtypes.
//!
//! Architecture invariant: this module does no I/O and depends on nothing async (no tokio,
//! tonic or sqlx); a test in `tests/architecture.rs` scans for it. Wire and row types are
//! converted to these at the edges (`lnd/`, `api/`, `store/`).

mod amount;
mod direction;
mod ids;
mod network;
mod node;
mod route_hint;
mod status;

pub use amount::{Msat, Ppm, Sat};
pub use direction::Direction;
pub use ids::{BlockHeight, ChanId, SwapHash};
pub use network::{Network, ParseNetworkError};
pub use node::{
    Channel, ChannelEvent, ForwardingEvent, ForwardingPage, NodeId, NodeInfo, ParseNodeIdError,
    Peer, Preimage, SettledHtlc, SettlementPage,
};
pub use route_hint::{
    ChannelEdge, HintCandidate, HopHint, MAX_HOP_HINTS, PeerPolicy, RouteHint, select_hop_hints,
};
pub use status::{NodeStatus, PolicyStatus};

/// Told about every RPC to lnd or the swap server: the method (the remote's own RPC name),
/// how long it took, and on failure a fixed error-kind word. The daemon points it at the
/// metrics catalog; nothing in the call path depends on it.
pub type RpcObserver = std::sync::Arc<
    dyn Fn(&'static str, std::time::Duration, Result<(), &'static str>) + Send + Sync,
>;
