//! The simnet: a faithful simulated world (chain, lnd, Loop server) that tests, backtests and
//! `sluiced --simnet` run against.
//!
//! - [`chain`]: blocks, mempool and UTXO set with real validation;
//! - [`world`]: simulated lnd nodes and channels over that chain;
//! - [`lnd`]: lnd's gRPC services over TLS in front of a world node;
//! - [`loopserver`]: the reference Loop server, with switches for every misbehaviour;
//! - [`control`]: the control service (`proto/simnet.proto`);
//! - [`runner`]: all of it standalone on loopback (`sluice simnet serve`).

pub mod chain;
pub mod control;
pub mod lnd;
pub mod loopserver;
pub mod runner;
pub mod world;
