//! The simnet: a faithful simulated world (chain, lnd) that tests, backtests and
//! `sluiced --simnet` run against; its runner starts the reference Loop server
//! ([`crate::loopserver`]) on the "loop" node like any other program.
//!
//! - [`chain`]: blocks, mempool and UTXO set with real validation;
//! - [`world`]: simulated lnd nodes and channels over that chain;
//! - [`lnd`]: lnd's gRPC services over TLS in front of a world node;
//! - [`control`]: the control service (`proto/simnet.proto`);
//! - [`audit`]: what the reference Loop server learned, and when;
//! - [`runner`]: all of it standalone on loopback (`sluice simnet serve`);
//! - [`state`]: `simnet.json` and the errors the runner, control service and CLI share.

pub mod audit;
pub mod chain;
pub mod control;
pub mod lnd;
pub mod runner;
pub mod state;
pub mod world;
