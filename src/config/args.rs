//! The daemon's command line.
//!
//! Every config key has a flag (`--` + its path with `-`). Flags are taken as text and typed
//! by the same parsers as the file and the environment, so a bad flag gets the same located
//! message and the same exit code (64) as a bad file. Environment variables are read by
//! `Config::load`, not by clap, so tests can inject them.

use std::path::PathBuf;

use clap::Parser;

use super::keys;

/// `sluiced`: keeps a Lightning node's liquidity where its operator wants it.
#[derive(Parser, Debug, Clone, Default, PartialEq, Eq)]
#[command(
    name = "sluiced",
    version,
    about = "Keeps a Lightning node's liquidity where its operator wants it: policies, Loop Out swaps, metrics.",
    long_about = "Keeps a Lightning node's liquidity where its operator wants it: it watches lnd's \
                  channel balances, evaluates the operator's policies, runs Loop Out swaps and \
                  exports Prometheus metrics.\n\nTry it first with `sluiced --simnet`, which runs \
                  against an embedded simulated chain, lnd and swap server.",
    after_long_help = keys::help_reference()
)]
pub struct DaemonArgs {
    /// The YAML config file.
    #[arg(
        long,
        value_name = "FILE",
        help = "The YAML config file [env: SLUICE_CONFIG] [default: <datadir>/sluice.yaml; a missing default file means all defaults]"
    )]
    pub config: Option<PathBuf>,
    /// The data directory (store, policies, default config file) [env: SLUICE_DATADIR] [default: ~/.sluice].
    #[arg(long, value_name = "DIR")]
    pub datadir: Option<PathBuf>,
    /// Run against the embedded simulated world: sets network to simnet and ignores lnd.* and server.* [env: SLUICE_SIMNET].
    #[arg(long)]
    pub simnet: bool,
    /// Sets `network` [env: SLUICE_NETWORK].
    #[arg(long, value_name = "NET")]
    pub network: Option<String>,
    /// Sets `lnd.host` [env: SLUICE_LND_HOST].
    #[arg(long, value_name = "HOST:PORT")]
    pub lnd_host: Option<String>,
    /// Sets `lnd.tls_cert` [env: SLUICE_LND_TLS_CERT].
    #[arg(long, value_name = "FILE")]
    pub lnd_tls_cert: Option<String>,
    /// Sets `lnd.macaroon` [env: SLUICE_LND_MACAROON].
    #[arg(long, value_name = "FILE")]
    pub lnd_macaroon: Option<String>,
    /// Sets `server.address` [env: SLUICE_SERVER_ADDRESS].
    #[arg(long, value_name = "HOST:PORT")]
    pub server_address: Option<String>,
    /// Sets `server.tls`: system, pinned or insecure [env: SLUICE_SERVER_TLS].
    #[arg(long, value_name = "MODE")]
    pub server_tls: Option<String>,
    /// Sets `server.tls_cert` [env: SLUICE_SERVER_TLS_CERT].
    #[arg(long, value_name = "FILE")]
    pub server_tls_cert: Option<String>,
    /// Sets `server.timeout` [env: SLUICE_SERVER_TIMEOUT].
    #[arg(long, value_name = "DURATION")]
    pub server_timeout: Option<String>,
    /// Sets `server.l402_max_cost_sat` [env: SLUICE_SERVER_L402_MAX_COST_SAT].
    #[arg(long, value_name = "SAT")]
    pub server_l402_max_cost_sat: Option<String>,
    /// Sets `server.l402_max_routing_fee_sat` [env: SLUICE_SERVER_L402_MAX_ROUTING_FEE_SAT].
    #[arg(long, value_name = "SAT")]
    pub server_l402_max_routing_fee_sat: Option<String>,
    /// Sets `rpc.listen` [env: SLUICE_RPC_LISTEN].
    #[arg(long, value_name = "IP:PORT")]
    pub rpc_listen: Option<String>,
    /// Sets `loopd_api.listen` [env: SLUICE_LOOPD_API_LISTEN].
    #[arg(long, value_name = "IP:PORT")]
    pub loopd_api_listen: Option<String>,
    /// Sets `loopd_api.enabled` [env: SLUICE_LOOPD_API_ENABLED].
    #[arg(long, value_name = "BOOL")]
    pub loopd_api_enabled: Option<String>,
    /// Sets `metrics.listen` [env: SLUICE_METRICS_LISTEN].
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_listen: Option<String>,
    /// Sets `metrics.per_channel` [env: SLUICE_METRICS_PER_CHANNEL].
    #[arg(long, value_name = "BOOL")]
    pub metrics_per_channel: Option<String>,
    /// Sets `store.path` [env: SLUICE_STORE_PATH].
    #[arg(long, value_name = "FILE")]
    pub store_path: Option<String>,
    /// Sets `policies.dir` [env: SLUICE_POLICIES_DIR].
    #[arg(long, value_name = "DIR")]
    pub policies_dir: Option<String>,
    /// Sets `autoloop.debounce` [env: SLUICE_AUTOLOOP_DEBOUNCE].
    #[arg(long, value_name = "DURATION")]
    pub autoloop_debounce: Option<String>,
    /// Sets `autoloop.tick` [env: SLUICE_AUTOLOOP_TICK].
    #[arg(long, value_name = "DURATION")]
    pub autoloop_tick: Option<String>,
    /// Sets `swap.max_swap_fee_ppm` [env: SLUICE_SWAP_MAX_SWAP_FEE_PPM].
    #[arg(long, value_name = "PPM")]
    pub swap_max_swap_fee_ppm: Option<String>,
    /// Sets `swap.max_routing_fee_ppm` [env: SLUICE_SWAP_MAX_ROUTING_FEE_PPM].
    #[arg(long, value_name = "PPM")]
    pub swap_max_routing_fee_ppm: Option<String>,
    /// Sets `swap.max_miner_fee_ppm` [env: SLUICE_SWAP_MAX_MINER_FEE_PPM].
    #[arg(long, value_name = "PPM")]
    pub swap_max_miner_fee_ppm: Option<String>,
    /// Sets `swap.sweep_confirmations` [env: SLUICE_SWAP_SWEEP_CONFIRMATIONS].
    #[arg(long, value_name = "BLOCKS")]
    pub swap_sweep_confirmations: Option<String>,
    /// Sets `autoloop.journal_retention` [env: SLUICE_AUTOLOOP_JOURNAL_RETENTION].
    #[arg(long, value_name = "DURATION")]
    pub autoloop_journal_retention: Option<String>,
    /// Sets `autoloop.fee_sample_every` [env: SLUICE_AUTOLOOP_FEE_SAMPLE_EVERY].
    #[arg(long, value_name = "DURATION")]
    pub autoloop_fee_sample_every: Option<String>,
    /// Sets `autoloop.flow_windows`, days such as 1,7,30 [env: SLUICE_AUTOLOOP_FLOW_WINDOWS].
    #[arg(long, value_name = "DAYS")]
    pub autoloop_flow_windows: Option<String>,
    /// Sets `log.level` [env: SLUICE_LOG_LEVEL].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Sets `log.format`: human or json [env: SLUICE_LOG_FORMAT].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Sets `shutdown.timeout` [env: SLUICE_SHUTDOWN_TIMEOUT].
    #[arg(long, value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,
}

impl DaemonArgs {
    /// Parses the process's arguments like `DaemonArgs::parse()`, except that a usage error
    /// exits with [`super::EXIT_CONFIG`] (64, `EX_USAGE`) like every other configuration error,
    /// instead of clap's 2. `--help` and `--version` still print and exit 0.
    pub fn parse_or_exit() -> DaemonArgs {
        match DaemonArgs::try_parse() {
            Ok(args) => args,
            Err(e) if !e.use_stderr() => e.exit(),
            Err(e) => {
                let _ = e.print();
                std::process::exit(super::EXIT_CONFIG)
            }
        }
    }

    /// The flag's value for a config key, by dotted path (`rpc.listen` -> `--rpc-listen`).
    pub fn flag(&self, path: &str) -> Option<&str> {
        let value = match path {
            "network" => &self.network,
            "lnd.host" => &self.lnd_host,
            "lnd.tls_cert" => &self.lnd_tls_cert,
            "lnd.macaroon" => &self.lnd_macaroon,
            "server.address" => &self.server_address,
            "server.tls" => &self.server_tls,
            "server.tls_cert" => &self.server_tls_cert,
            "server.timeout" => &self.server_timeout,
            "server.l402_max_cost_sat" => &self.server_l402_max_cost_sat,
            "server.l402_max_routing_fee_sat" => &self.server_l402_max_routing_fee_sat,
            "rpc.listen" => &self.rpc_listen,
            "loopd_api.listen" => &self.loopd_api_listen,
            "loopd_api.enabled" => &self.loopd_api_enabled,
            "metrics.listen" => &self.metrics_listen,
            "metrics.per_channel" => &self.metrics_per_channel,
            "store.path" => &self.store_path,
            "policies.dir" => &self.policies_dir,
            "autoloop.debounce" => &self.autoloop_debounce,
            "autoloop.tick" => &self.autoloop_tick,
            "swap.max_swap_fee_ppm" => &self.swap_max_swap_fee_ppm,
            "swap.max_routing_fee_ppm" => &self.swap_max_routing_fee_ppm,
            "swap.max_miner_fee_ppm" => &self.swap_max_miner_fee_ppm,
            "swap.sweep_confirmations" => &self.swap_sweep_confirmations,
            "autoloop.journal_retention" => &self.autoloop_journal_retention,
            "autoloop.fee_sample_every" => &self.autoloop_fee_sample_every,
            "autoloop.flow_windows" => &self.autoloop_flow_windows,
            "log.level" => &self.log_level,
            "log.format" => &self.log_format,
            "shutdown.timeout" => &self.shutdown_timeout,
            _ => return None,
        };
        value.as_deref()
    }
}
