//! sluice: keeps a Lightning node's liquidity where its operator wants it.
//!
//! Layout (`ARCHITECTURE.md` has the invariants and the lifecycle):
//! - [`domain`]: newtypes for amounts, heights, ids, the network. Pure.
//! - [`ledger`]: the fee budget as a ledger of reservations, spends and releases. Pure.
//! - [`config`]: file + env + flags into a validated [`config::Config`], before anything binds.
//! - [`daemon`]: the supervisor and the start/stop lifecycle of `sluiced`.
//! - [`api`]: the gRPC server for `proto/sluice.proto`, credentials, the one error mapping.
//! - [`metrics`]: every metric in one place; `/metrics`, `/healthz`, `/readyz`.
//! - [`store`]: SQLite with numbered migrations.
//! - [`tls`]: certificate generation and pinned-certificate gRPC channels.
//! - [`lnd`]: the `LightningNode` port and its lnd gRPC adapter.
//! - [`chain`]: HTLC scripts, sweeps, fee maths. Pure.
//! - [`policy`]: YAML rules and rhai scripts; `evaluate(policy, snapshot)` into a plan. Pure.
//! - [`provider`]: the Loop swap-server protocol (`looprpc`) and its client.
//! - [`swap`]: the Loop Out contract, state codes and the pure `step`. Pure.
//! - [`loopserver`]: the reference Loop server, over the [`lnd::LightningNode`] port of any lnd.
//! - [`simnet`]: the simulated chain and lnd, over real gRPC on loopback.
//! - [`regtest`]: a world of real processes (btcd, lnd) on regtest, for tests and `sluice regtest`.
//! - [`cli`]: the `sluice` command.

pub mod api;
pub mod autoloop;
pub mod backtest;
pub mod chain;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod ledger;
pub mod lnd;
pub mod loopd;
pub mod loopserver;
pub mod metrics;
pub mod policy;
pub mod proto;
pub mod provider;
pub mod regtest;
pub mod simnet;
pub mod store;
pub mod swap;
pub mod tls;

/// The crate version, as reported by `GetInfo`, `--version` and `sluice_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
