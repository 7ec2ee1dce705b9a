//! A regtest world of real processes: btcd, and lnd nodes for sluice, for a swap server and for
//! two routing peers, with funded wallets and announced channels, all on loopback with free
//! ports. The real-node tests (`tests/realnode_*.rs`) run against it, and `sluice regtest up`
//! starts the same world for a person.
//!
//! - [`programs`]: where the pinned binaries are (built by `tools/realnode/build`).
//! - [`process`]: a child process stopped with its owner, or detached for `regtest up`.
//! - [`btcd`]: the chain: mining, raw transactions, reorgs (`invalidateblock`).
//! - [`lnd`]: one lnd and its `lncli`.
//! - [`world`]: the topology, its funding, and the files a client needs (`regtest.json`,
//!   `sluice.yaml`).
//!
//! Everything here is synchronous (child processes and their CLIs): a test starts the world on
//! its own thread and talks to the nodes through sluice's real lnd client.

pub mod btcd;
mod error;
pub mod lnd;
pub mod process;
pub mod programs;
pub mod world;

pub use error::RegtestError;
pub use process::Lifetime;
pub use programs::Programs;
pub use world::{World, WorldConfig, WorldState};

/// The result of a regtest operation.
pub type Result<T> = std::result::Result<T, RegtestError>;
