//! The swap-provider edge: how sluice talks to a Loop swap server.
//!
//! - [`port`]: the [`SwapProvider`] trait the swap engine calls, in domain types.
//! - [`error`]: [`ProviderError`] and the pure classifier of gRPC statuses.
//! - [`validate`]: pure checks of a `NewLoopOutSwap` answer before anything is paid.
//! - [`macaroon`]: the V2 binary macaroon format and first-party caveats, for L402.
//! - [`l402`]: L402 challenges, the price cap, the token store and the payer port.
//! - [`client`]: [`LoopServerClient`], the gRPC implementation of [`SwapProvider`].
//! - [`wire`]: the `looprpc` types and the `SwapServer` client and server generated from
//!   `proto/looprpc/server.proto`. Only this module, the simnet and the CLI touch them.

pub mod client;
pub mod error;
pub mod l402;
pub mod macaroon;
pub mod node_payer;
pub mod port;
pub mod validate;
pub mod wire;

pub use client::{LoopServerClient, ServerTls};
pub use error::{ErrorKind, ProviderError};
pub use port::SwapProvider;
