//! The `LightningNode` port and its lnd gRPC adapter.
//!
//! - [`port`]: the [`LightningNode`] trait, in domain types, with its idempotency and
//!   error contracts. The daemon holds an `Arc<dyn LightningNode>`.
//! - [`error`]: [`NodeError`] and the pure [`classify`] of lnd's gRPC errors.
//! - [`types`]: the port's request and answer types beyond `crate::domain`.
//! - [`convert`]: wire <-> domain conversions, checked.
//! - [`client`]: [`LndClient`], the adapter over one shared tonic channel.
//! - [`connect`]: reading lnd's certificate and macaroon, and the version and network checks.
//! - [`resilient`]: [`ResilientNode`], retries and re-established streams over any node.
//! - [`wire`]: the generated lnd types; only this module and `simnet` use them.

pub mod client;
pub mod connect;
pub mod convert;
pub mod error;
pub mod metered;
pub mod port;
pub mod resilient;
pub mod types;
pub mod wire;

#[cfg(test)]
mod convert_tests;

pub use client::LndClient;
pub use error::{NodeError, NodeErrorKind, classify};
pub use metered::MeteredNode;
pub use port::{LightningNode, NodeResult, NodeStream, pay_part};
pub use resilient::ResilientNode;
