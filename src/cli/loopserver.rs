//! `sluice loopserver`: the reference Loop server in the foreground, against any lnd.
//!
//! It reaches lnd as sluiced does (`--lnd.host`, `--lnd.tls_cert`, `--lnd.macaroon`, the
//! version, build tags and network checked first) and serves `looprpc.SwapServer` on
//! `--listen`: plaintext by default (sluiced: `server.tls: insecure`, loopback only; loopd:
//! `--server.notls`, but loopd sends no L402 token over plaintext, so only with `--l402 off`),
//! or TLS with a self-signed certificate with `--tls` (sluiced:
//! `server.tls: pinned` and `server.tls_cert`; loopd: `--server.tlspath`). HTLCs are funded from
//! lnd's wallet, invoices are lnd hold invoices. SIGINT or SIGTERM stops it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use clap::{Args as ClapArgs, ValueEnum};

use super::CliError;
use crate::config::LndConfig;
use crate::domain::{Network, Ppm, Sat};
use crate::lnd::{LightningNode, ResilientNode, connect};
use crate::loopserver::{L402Settings, LoopServer, LoopServerConfig, Terms, misbehave};

/// Where the server listens unless `--listen` says otherwise (next to loopd's 11010).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:11009";
/// The directory of the server's TLS certificate and key (relative to `$HOME`).
pub const DEFAULT_TLS_DIR: &str = ".sluice-loopserver";
/// How long to wait between attempts while lnd is unreachable.
const RETRY: Duration = Duration::from_secs(2);

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

/// `sluice loopserver`'s options.
#[derive(ClapArgs, Debug, Clone)]
pub struct LoopServerArgs {
    /// The chain lnd runs on: regtest, signet, testnet or testnet4 (never mainnet: the server
    /// misbehaves on request).
    #[arg(long, default_value = "regtest", value_parser = parse_network)]
    pub network: Network,
    /// lnd's gRPC address.
    #[arg(
        long = "lnd.host",
        default_value = crate::config::DEFAULT_LND_HOST,
        value_name = "HOST:PORT",
        value_parser = crate::config::values::host_port
    )]
    pub lnd_host: String,
    /// lnd's tls.cert, pinned [default: ~/.lnd/tls.cert].
    #[arg(long = "lnd.tls_cert", value_name = "FILE")]
    pub lnd_tls_cert: Option<PathBuf>,
    /// The macaroon presented to lnd [default:
    /// ~/.lnd/data/chain/bitcoin/<network>/admin.macaroon].
    #[arg(long = "lnd.macaroon", value_name = "FILE")]
    pub lnd_macaroon: Option<PathBuf>,
    /// Where to serve the Loop protocol.
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "HOST:PORT")]
    pub listen: SocketAddr,
    /// Serve over TLS with a self-signed certificate (created on first use) instead of
    /// plaintext.
    #[arg(long)]
    pub tls: bool,
    /// The TLS certificate clients pin [default: ~/.sluice-loopserver/tls.cert].
    #[arg(long = "tls.cert", value_name = "FILE", requires = "tls")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS key [default: ~/.sluice-loopserver/tls.key].
    #[arg(long = "tls.key", value_name = "FILE", requires = "tls")]
    pub tls_key: Option<PathBuf>,
    /// Sell L402 tokens in front of the protocol, as aperture does before Loop's server.
    #[arg(long, value_enum, default_value = "on", value_name = "on|off")]
    pub l402: OnOff,
    /// The L402 token's price, in sat.
    #[arg(long = "l402.price", default_value_t = 1, value_name = "SAT")]
    pub l402_price: u64,
    /// Seeds the server's keys, preimages and nonces (and the L402 root key).
    #[arg(long, default_value_t = 0x100b)]
    pub seed: u64,
    /// The smallest swap accepted, in sat.
    #[arg(long = "min-amount", default_value_t = Terms::default().min_swap_amount.0, value_name = "SAT")]
    pub min_amount: u64,
    /// The largest swap accepted, in sat.
    #[arg(long = "max-amount", default_value_t = Terms::default().max_swap_amount.0, value_name = "SAT")]
    pub max_amount: u64,
    /// The fixed part of the swap fee, in sat.
    #[arg(long = "fee-base", default_value_t = Terms::default().fee_base.0, value_name = "SAT")]
    pub fee_base: u64,
    /// The proportional part of the swap fee, in parts per million.
    #[arg(long = "fee-ppm", default_value_t = Terms::default().fee_rate.0, value_name = "PPM")]
    pub fee_ppm: u64,
    /// The prepay (no-show fee) taken up front, in sat; a swap's whole fee caps it.
    #[arg(long, default_value_t = Terms::default().prepay.0, value_name = "SAT")]
    pub prepay: u64,
    /// The smallest accepted `expiry - height`, in blocks.
    #[arg(long = "min-cltv-delta", default_value_t = Terms::default().min_cltv_delta, value_name = "BLOCKS")]
    pub min_cltv_delta: u32,
    /// The largest accepted `expiry - height`, in blocks.
    #[arg(long = "max-cltv-delta", default_value_t = Terms::default().max_cltv_delta, value_name = "BLOCKS")]
    pub max_cltv_delta: u32,
    /// The smallest Loop In accepted, in sat.
    #[arg(long = "loop-in-min-amount", default_value_t = Terms::default().loop_in_min_amount.0, value_name = "SAT")]
    pub loop_in_min_amount: u64,
    /// The largest Loop In accepted, in sat.
    #[arg(long = "loop-in-max-amount", default_value_t = Terms::default().loop_in_max_amount.0, value_name = "SAT")]
    pub loop_in_max_amount: u64,
    /// The `expiry - height` the server picks for a Loop In's HTLC, in blocks (Loop's client
    /// accepts 100 to 1500).
    #[arg(long = "loop-in-cltv-delta", default_value_t = Terms::default().loop_in_cltv_delta, value_name = "BLOCKS")]
    pub loop_in_cltv_delta: u32,
    /// Confirmations before the server reports the HTLC confirmed (Loop Out) or pays the
    /// client's invoice (Loop In).
    #[arg(long = "htlc-confs", default_value_t = 1, value_name = "N")]
    pub htlc_confs: u32,
    /// Misbehave from the first swap on (`sluice simnet misbehave --list` shows the names).
    #[arg(long, value_name = "NAME")]
    pub misbehave: Option<String>,
    /// Log filter, e.g. info or sluice=debug.
    #[arg(long = "log-level", default_value = "info", value_name = "FILTER")]
    pub log_level: String,
}

fn parse_network(text: &str) -> Result<Network, String> {
    let network: Network = text.parse().map_err(|_| {
        format!("`{text}` is not a network; use regtest, signet, testnet or testnet4")
    })?;
    match network {
        Network::Mainnet => Err(
            "the reference Loop server does not run on mainnet (it misbehaves on request); use \
             regtest, signet, testnet or testnet4"
                .to_owned(),
        ),
        Network::Simnet => Err(
            "simnet has its own reference server: run `sluice simnet serve`; here use regtest, \
             signet, testnet or testnet4"
                .to_owned(),
        ),
        n => Ok(n),
    }
}

/// The server's config from the flags, or a message naming the flag at fault.
pub fn server_config(args: &LoopServerArgs) -> Result<LoopServerConfig, CliError> {
    let input = |m: String| CliError::Input(m);
    if args.min_amount == 0 || args.min_amount > args.max_amount {
        return Err(input(format!(
            "--min-amount {} must be at least 1 and at most --max-amount {}",
            args.min_amount, args.max_amount
        )));
    }
    if args.min_cltv_delta == 0 || args.min_cltv_delta > args.max_cltv_delta {
        return Err(input(format!(
            "--min-cltv-delta {} must be at least 1 and at most --max-cltv-delta {}",
            args.min_cltv_delta, args.max_cltv_delta
        )));
    }
    if args.loop_in_min_amount == 0 || args.loop_in_min_amount > args.loop_in_max_amount {
        return Err(input(format!(
            "--loop-in-min-amount {} must be at least 1 and at most --loop-in-max-amount {}",
            args.loop_in_min_amount, args.loop_in_max_amount
        )));
    }
    if !crate::loopserver::terms::LOOP_IN_CLIENT_CLTV_RANGE.contains(&args.loop_in_cltv_delta) {
        return Err(input(format!(
            "--loop-in-cltv-delta {} is outside 100..=1500, the range Loop's client accepts; \
             pick a delta in it (misbehaviours like loop-in-expiry-too-soon tamper with it \
             on purpose)",
            args.loop_in_cltv_delta
        )));
    }
    if args.htlc_confs == 0 {
        return Err(input("--htlc-confs must be at least 1".to_owned()));
    }
    let terms = Terms {
        network: args.network,
        min_swap_amount: Sat(args.min_amount),
        max_swap_amount: Sat(args.max_amount),
        min_cltv_delta: args.min_cltv_delta,
        max_cltv_delta: args.max_cltv_delta,
        fee_base: Sat(args.fee_base),
        fee_rate: Ppm(args.fee_ppm),
        prepay: Sat(args.prepay),
        loop_in_min_amount: Sat(args.loop_in_min_amount),
        loop_in_max_amount: Sat(args.loop_in_max_amount),
        loop_in_cltv_delta: args.loop_in_cltv_delta,
        ..Terms::default()
    };
    let l402 = match args.l402 {
        OnOff::Off => None,
        OnOff::On => {
            if args.l402_price == 0 {
                return Err(input(
                    "--l402.price must be at least 1 sat (or pass --l402 off)".to_owned(),
                ));
            }
            let mut seed = b"sluice loopserver l402 root key".to_vec();
            seed.extend_from_slice(&args.seed.to_be_bytes());
            Some(L402Settings {
                price: Sat(args.l402_price),
                root_key: sha256::Hash::hash(&seed).to_byte_array(),
                ..L402Settings::default()
            })
        }
    };
    Ok(LoopServerConfig {
        terms,
        seed: args.seed,
        l402,
        htlc_confirmations: args.htlc_confs,
        ..LoopServerConfig::default()
    })
}

fn home_path(
    given: Option<&Path>,
    home: Option<&Path>,
    rest: &str,
    flag: &str,
) -> Result<PathBuf, CliError> {
    match given {
        Some(p) => match p.strip_prefix("~") {
            Ok(tail) => home.map(|h| h.join(tail)).ok_or_else(|| {
                CliError::Input(format!(
                    "{flag}: HOME is not set, so `~` is unknown; give a full path"
                ))
            }),
            Err(_) => Ok(p.to_owned()),
        },
        None => home.map(|h| h.join(rest)).ok_or_else(|| {
            CliError::Input(format!(
                "HOME is not set, so the default of {flag} is unknown; pass {flag}"
            ))
        }),
    }
}

/// lnd's settings from the flags, with sluiced's defaults, the files checked readable.
pub fn lnd_config(args: &LoopServerArgs, home: Option<&Path>) -> Result<LndConfig, CliError> {
    let tls_cert = home_path(
        args.lnd_tls_cert.as_deref(),
        home,
        crate::config::DEFAULT_LND_TLS_CERT,
        "--lnd.tls_cert",
    )?;
    let macaroon = home_path(
        args.lnd_macaroon.as_deref(),
        home,
        &format!(
            "{}/{}/admin.macaroon",
            crate::config::DEFAULT_LND_MACAROON_DIR,
            args.network
        ),
        "--lnd.macaroon",
    )?;
    for (flag, path, what) in [
        (
            "--lnd.tls_cert",
            &tls_cert,
            "lnd's tls.cert (usually ~/.lnd/tls.cert)",
        ),
        (
            "--lnd.macaroon",
            &macaroon,
            "an lnd macaroon (usually ~/.lnd/data/chain/bitcoin/<network>/admin.macaroon)",
        ),
    ] {
        if let Err(e) = std::fs::File::open(path) {
            return Err(CliError::Input(format!(
                "{flag} {}: {e}; give the path of {what}",
                path.display()
            )));
        }
    }
    Ok(LndConfig {
        host: args.lnd_host.clone(),
        tls_cert_path: tls_cert,
        macaroon_path: macaroon,
    })
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: &LoopServerArgs, json_logs: bool) -> Result<String, CliError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let config = server_config(args)?;
    let lnd = lnd_config(args, home.as_deref())?;
    let chosen = args
        .misbehave
        .as_deref()
        .map(misbehave::find)
        .transpose()
        .map_err(|e| CliError::Input(format!("--misbehave: {e}")))?;
    if let Some(m) = chosen
        && matches!(m.switch, misbehave::Switch::L402(_))
        && config.l402.is_none()
    {
        return Err(CliError::Input(format!(
            "--misbehave {} tampers with the L402 front; drop --l402 off",
            m.name
        )));
    }
    let identity = if args.tls {
        let cert = home_path(
            args.tls_cert.as_deref(),
            home.as_deref(),
            &format!("{DEFAULT_TLS_DIR}/tls.cert"),
            "--tls.cert",
        )?;
        let key = home_path(
            args.tls_key.as_deref(),
            home.as_deref(),
            &format!("{DEFAULT_TLS_DIR}/tls.key"),
            "--tls.key",
        )?;
        for dir in [cert.parent(), key.parent()].into_iter().flatten() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    CliError::Input(format!(
                        "--tls.cert/--tls.key: cannot create {}: {e}",
                        dir.display()
                    ))
                })?;
            }
        }
        let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        if !args.listen.ip().is_unspecified() {
            hosts.push(args.listen.ip().to_string());
        }
        let identity = crate::tls::load_or_create_identity(&cert, &key, &hosts).map_err(|e| {
            CliError::Input(format!(
                "--tls.cert {} / --tls.key {}: {e}",
                cert.display(),
                key.display()
            ))
        })?;
        Some((identity, cert))
    } else {
        None
    };
    let format = if json_logs {
        crate::daemon::logging::Format::Json
    } else {
        crate::daemon::logging::Format::Human
    };
    crate::daemon::logging::init(&args.log_level, format)
        .map_err(|e| CliError::Input(format!("--log-level: {e}")))?;

    let stop = tokio_util::sync::CancellationToken::new();
    let signals = tokio::spawn(stop_on_signal(stop.clone()));
    let result = serve(args, config, &lnd, chosen, identity, stop.clone()).await;
    signals.abort();
    result.map(|()| String::new())
}

async fn serve(
    args: &LoopServerArgs,
    config: LoopServerConfig,
    lnd: &LndConfig,
    chosen: Option<misbehave::Misbehaviour>,
    identity: Option<(crate::tls::Identity, PathBuf)>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), CliError> {
    let client =
        Arc::new(connect::open(lnd, args.network).map_err(|e| CliError::Input(e.to_string()))?);
    // As sluiced does: wait while lnd is unreachable, stop on a wrong setting.
    let checked = loop {
        let attempt = tokio::select! {
            r = connect::check(client.as_ref(), lnd, args.network) => r,
            () = stop.cancelled() => return Ok(()),
        };
        match attempt {
            Ok(c) => break c,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "waiting for lnd");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    () = stop.cancelled() => return Ok(()),
                }
            }
            Err(e) => return Err(CliError::Input(e.to_string())),
        }
    };
    tracing::info!(
        lnd = %lnd.host,
        version = %checked.version.version,
        node = %checked.info.pubkey,
        height = checked.info.block_height.0,
        "lnd checked"
    );
    // From here on, lost connections are retried and streams re-established.
    let node: Arc<dyn LightningNode> = Arc::new(ResilientNode::new(client));
    let server = LoopServer::new(config, node);
    if let Some(m) = chosen {
        server
            .misbehave(Some(m))
            .map_err(|e| CliError::Input(format!("--misbehave: {e}")))?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CliError::Input(format!("--listen {}: cannot listen: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Input(format!("--listen {}: {e}", args.listen)))?;
    let shutdown = stop.clone().cancelled_owned();
    let serving = match &identity {
        Some((identity, cert)) => {
            tracing::info!(
                %addr,
                tls_cert = %cert.display(),
                "reference Loop server serving over TLS (sluiced: server.tls: pinned, server.tls_cert; loopd: --server.tlspath)"
            );
            futures::future::Either::Left(server.serve_tls(listener, identity, shutdown))
        }
        None => {
            tracing::info!(
                %addr,
                "reference Loop server serving plaintext (sluiced: server.tls: insecure; loopd: --server.notls, which sends no L402 token over plaintext: serve --tls for loopd unless --l402 off)"
            );
            futures::future::Either::Right(server.serve(listener, shutdown))
        }
    };
    let result = serving.await;
    tracing::info!("reference Loop server stopped");
    result.map_err(|e| CliError::Input(format!("serving on {addr} failed: {e}")))
}

/// Cancels `stop` on SIGINT or SIGTERM.
async fn stop_on_signal(stop: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping on signal");
    stop.cancel();
}
