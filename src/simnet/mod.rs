//! The simnet: a faithful simulated world (chain, lnd, Loop server) that tests, backtests and
//! `sluiced --simnet` run against.

pub mod chain;
pub mod lnd;
pub mod world;
