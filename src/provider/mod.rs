//! The swap-provider edge: how sluice talks to a Loop swap server.
//!
//! - [`wire`]: the `looprpc` types and the `SwapServer` client and server generated from
//!   `proto/looprpc/server.proto`. Only this module, the simnet and the CLI touch them.

pub mod wire;
