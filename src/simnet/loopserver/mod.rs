//! The simnet's reference Loop server: the `looprpc.SwapServer` protocol, served over gRPC and
//! backed by its own simulated Lightning node, with switches for every misbehaviour a client
//! must survive.

pub mod behaviour;
pub mod error;
pub mod invoice;
pub mod l402;
pub mod sign;
pub mod swap;
pub mod terms;

pub use behaviour::Behaviour;
pub use error::LoopServerError;
pub use terms::{Quote, Terms};
