//! Configuration: one YAML file, `SLUICE_*` environment variables and flags, validated into a
//! [`Config`] before anything binds.
//!
//! Precedence is defaults < file < environment < flags. The file is
//! `<datadir>/sluice.yaml` unless `--config`/`SLUICE_CONFIG` names another; a missing default
//! file means all defaults, a missing named file is an error. `datadir` is a flag/environment
//! setting only (`--datadir`, `SLUICE_DATADIR`, default `~/.sluice`): the default file lives
//! inside it, so the file cannot move it. Every key is listed once in [`keys::KEYS`], which
//! drives the parser, the env and flag names, `sluiced --help` and the example-file test.
//!
//! Every error names its place: `file:line:column` and the key for the file, the variable for
//! the environment, the flag for flags, and for a default the key to set. The daemon prints it
//! and exits with [`EXIT_CONFIG`].

mod args;
mod error;
pub mod keys;
mod resolve;
pub(crate) mod values;
mod yaml;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::{Network, Sat};

pub use args::DaemonArgs;
pub use error::{ConfigError, Origin};

/// Exit code for a usage/config error (sysexits `EX_USAGE`).
pub const EXIT_CONFIG: i32 = 64;

/// Network when none is set: lnd's own default chain.
pub const DEFAULT_NETWORK: Network = Network::Mainnet;
/// lnd's default gRPC address (`rpclisten` in lnd.conf).
pub const DEFAULT_LND_HOST: &str = "localhost:10009";
/// Where lnd writes its certificate by default (relative to `$HOME`).
pub const DEFAULT_LND_TLS_CERT: &str = ".lnd/tls.cert";
/// lnd's macaroon directory by default (relative to `$HOME`; `<network>/admin.macaroon` follows).
pub const DEFAULT_LND_MACAROON_DIR: &str = ".lnd/data/chain/bitcoin";
/// Lightning Labs' mainnet Loop server, as loopd's default.
pub const DEFAULT_SERVER_MAINNET: &str = "swap.lightning.today:11010";
/// Lightning Labs' testnet Loop server, as loopd's default.
pub const DEFAULT_SERVER_TESTNET: &str = "test.swap.lightning.today:11010";
/// Lightning Labs' signet Loop server, as loopd's default.
pub const DEFAULT_SERVER_SIGNET: &str = "signet.swap.lightning.today:11010";
/// Per-call deadline to the swap server: loopd's `serverRPCTimeout`.
pub const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most paid for an L402 token: loopd's `maxl402cost` default.
pub const DEFAULT_L402_MAX_COST: Sat = Sat(1000);
/// Most routing fee for the L402 invoice: loopd's `maxl402fee` default.
pub const DEFAULT_L402_MAX_ROUTING_FEE: Sat = Sat(10);
/// sluice's API port: next to loopd's 11010, loopback only so nothing is exposed by default.
pub const DEFAULT_RPC_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 11011);
/// loopd's API port: loopd's own default (`localhost:11010`, where Loop's `loop` CLI looks).
pub const DEFAULT_LOOPD_API_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 11010);
/// loopd's API is served unless turned off.
pub const DEFAULT_LOOPD_API_ENABLED: bool = true;
/// Metrics port: outside the ports lnd, loopd and common exporters use; loopback by default.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9311);
/// Per-channel series on: most nodes have few enough channels, and it is what dashboards use.
pub const DEFAULT_METRICS_PER_CHANNEL: bool = true;
/// The data directory, relative to `$HOME`.
pub const DEFAULT_DATADIR: &str = ".sluice";
/// The config file's name inside the data directory.
pub const CONFIG_FILE_NAME: &str = "sluice.yaml";
/// The store's file name inside the data directory.
pub const STORE_FILE_NAME: &str = "sluice.db";
/// The policies directory's name inside the data directory.
pub const POLICIES_DIR_NAME: &str = "policies";
/// Informational logging: decisions and swaps, without per-RPC noise.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Time for tasks to finish on SIGINT/SIGTERM before they are abandoned (they are resumable).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The validated configuration: every value typed, every path expanded, every file checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The config file actually read, if any.
    pub source: Option<PathBuf>,
    /// The network lnd and the swap server are on.
    pub network: Network,
    /// True when running the embedded simulated world (`--simnet` or `network: simnet`);
    /// `lnd` and `server` then hold unchecked values and are not used.
    pub simnet: bool,
    /// The data directory.
    pub data_dir: PathBuf,
    /// How to reach lnd.
    pub lnd: LndConfig,
    /// How to reach the swap server.
    pub server: ServerConfig,
    /// sluice's own gRPC API.
    pub rpc: RpcConfig,
    /// loopd's API (`looprpc.SwapClient`), served for Loop's `loop` CLI.
    pub loopd_api: LoopdApiConfig,
    /// The metrics and health HTTP endpoint.
    pub metrics: MetricsConfig,
    /// The database.
    pub store: StoreConfig,
    /// The policy files.
    pub policies: PoliciesConfig,
    /// When autoloop runs its passes.
    pub autoloop: AutoloopSettings,
    /// Ceilings on the fee limits of swaps created without limits.
    pub swap: crate::swap::FeeCeilings,
    /// How deep a sweep must be before its swap succeeds (`swap.sweep_confirmations`).
    pub sweep_confirmations: u32,
    /// Logging.
    pub log: LogConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
}

/// How to reach lnd. The files exist and are readable when the config is not simnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LndConfig {
    /// `host:port` of lnd's gRPC interface.
    pub host: String,
    /// lnd's `tls.cert`, pinned by the connection.
    pub tls_cert_path: PathBuf,
    /// The macaroon sent with every call (never logged).
    pub macaroon_path: PathBuf,
}

/// How the swap server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTls {
    /// Web PKI roots: the real Loop servers use publicly issued certificates.
    System,
    /// Exactly this certificate (a self-hosted or test server); the file exists.
    Pinned(PathBuf),
    /// No TLS; only allowed for a loopback address.
    Insecure,
}

/// How to reach the swap server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `host:port` of the Loop server. Empty under simnet when not set: the daemon uses the
    /// embedded server's address.
    pub address: String,
    /// Certificate checking.
    pub tls: ServerTls,
    /// Deadline of each server call; never zero.
    pub timeout: Duration,
    /// Most paid for the L402 token.
    pub l402_max_cost: Sat,
    /// Most routing fee paid for the L402 token's invoice.
    pub l402_max_routing_fee: Sat,
}

/// sluice's gRPC API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcConfig {
    /// Listen address; never the same as `metrics.listen`.
    pub listen: SocketAddr,
}

/// loopd's API, served by sluiced (`src/loopd/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopdApiConfig {
    /// Whether it is served.
    pub enabled: bool,
    /// Listen address; never the same as `rpc.listen` or `metrics.listen`.
    pub listen: SocketAddr,
    /// True when `listen` is the default rather than set by the operator: a default address
    /// already taken (a loopd on the same machine) leaves the loopd API off instead of
    /// failing the start.
    pub listen_defaulted: bool,
}

/// The metrics and health endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Listen address of `/metrics`, `/healthz`, `/readyz`.
    pub listen: SocketAddr,
    /// Whether per-channel series are exported.
    pub per_channel: bool,
}

/// The database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The SQLite file (created if missing; not a directory).
    pub path: PathBuf,
}

/// The policy files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoliciesConfig {
    /// The directory of `*.yaml` / `*.rhai` policies (may not exist yet; not a file).
    pub dir: PathBuf,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `tracing_subscriber::EnvFilter` directives, already checked to parse.
    pub level: String,
    /// Line format.
    pub format: LogFormat,
}

/// When autoloop runs its passes (the policy decides what they do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoloopSettings {
    /// How long channel events are gathered before a pass.
    pub debounce: Duration,
    /// A pass at least this often.
    pub tick: Duration,
    /// How long the journal is kept.
    pub journal_retention: Duration,
    /// Spacing of the fee samples behind percentile gates.
    pub fee_sample_every: Duration,
    /// Routing-flow windows, in days, sorted.
    pub flow_windows_days: Vec<u32>,
}

/// Graceful shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// How long shutdown may take; never zero.
    pub timeout: Duration,
}

impl Config {
    /// Loads and validates the configuration from `args`, the process environment and the
    /// config file. Reads files; binds nothing.
    pub fn load(args: &DaemonArgs) -> Result<Config, ConfigError> {
        Config::load_with_env(args, &|name| std::env::var(name).ok())
    }

    /// Same as [`Config::load`], with the environment looked up through `env` (`HOME` and the
    /// `SLUICE_*` variables), so tests never mutate the process environment.
    pub fn load_with_env(
        args: &DaemonArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        resolve::resolve(args, env)
    }
}
