//! The `sluice` command: talks to a running `sluiced` over its gRPC API.
//!
//! - this file: the command line ([`Args`]), dispatch, and what each failure prints;
//! - [`client`]: finding the daemon, its certificate and a credential, and calling it;
//! - [`output`]: human text or `--json`, one renderer per answer;
//! - one file per command group ([`daemon`]: `getinfo`, `stop`; [`channels`]: `channels`;
//!   [`htlc`]: `htlc`; [`swaps`]: the swap commands; [`loopserver`]: the reference Loop
//!   server in the foreground).
//!
//! Every failure is one or two plain lines on stderr and exit code 1, never a chain of
//! transport errors.

pub mod autoloop;
pub mod backtest;
pub mod channels;
pub mod client;
pub mod daemon;
pub mod htlc;
pub mod loopserver;
pub mod output;
pub mod policy;
pub mod regtest;
pub mod simnet;
pub mod swaps;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api::ApiError;

/// Exit code for a usage problem clap cannot see (sysexits EX_USAGE), as `sluiced` uses.
pub const EXIT_USAGE: u8 = 64;

/// `sluice`: control and inspect a running sluiced.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "sluice",
    version,
    about = "Control and inspect a running sluiced."
)]
pub struct Args {
    /// The daemon's gRPC address, host:port.
    #[arg(
        long,
        global = true,
        env = "SLUICE_RPCSERVER",
        default_value = crate::api::DEFAULT_LISTEN,
        value_name = "HOST:PORT"
    )]
    pub rpcserver: String,
    /// The daemon's data dir, where tls.cert and the credentials are found [default: ~/.sluice].
    #[arg(long, global = true, env = "SLUICE_DATADIR", value_name = "DIR")]
    pub datadir: Option<PathBuf>,
    /// The daemon's TLS certificate [default: DIR/tls.cert, DIR from --datadir].
    #[arg(long, global = true, env = "SLUICE_TLSCERT", value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// The credential to present [default: DIR/admin.credential, DIR from --datadir].
    #[arg(long, global = true, env = "SLUICE_CREDENTIAL", value_name = "FILE")]
    pub credential: Option<PathBuf>,
    /// Print one JSON object on stdout instead of text; errors stay one plain line on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Show the daemon's version, network, uptime, lnd connection and policy state.
    Getinfo,
    /// Ask the daemon to shut down gracefully (needs the admin credential).
    Stop,
    /// List lnd's open channels: id, peer, capacity, balances, inbound share, HTLCs.
    Channels,
    /// Print a Loop HTLC's scripts, tap leaves, keys and address (offline; no daemon needed).
    Htlc(htlc::HtlcCmd),
    /// Show the swap server's terms, Loop Out and Loop In.
    Terms,
    /// Quote a swap without creating it.
    Quote(swaps::QuoteCmd),
    /// Create a Loop Out (shows the quote and asks unless --force; needs the admin credential).
    Out(swaps::OutCmd),
    /// Create a Loop In: the node's wallet funds an on-chain HTLC, the server pays the node's
    /// invoice (shows the quote and asks unless --force; needs the admin credential).
    In(swaps::InCmd),
    /// List swaps, newest first.
    Swaps(swaps::SwapsCmd),
    /// Show one swap: contract, state, history and costs.
    Swap(swaps::SwapCmd),
    /// Print swap updates as they happen until interrupted (--json: one object per line).
    Monitor,
    /// Run a simulated world on loopback, or drive a running one (mine, fee, reorg, status,
    /// misbehave).
    Simnet(simnet::SimnetArgs),
    /// Start a world of real programs on regtest (btcd, lnd) in the background, or stop it.
    Regtest(regtest::RegtestArgs),
    /// Run the reference Loop server in the foreground against any lnd (regtest, signet,
    /// testnet), until SIGINT or SIGTERM.
    Loopserver(Box<loopserver::LoopServerArgs>),
    /// What autoloop would do now, with a reason for every target (nothing is dispatched).
    Suggest,
    /// The policy: show or reload the daemon's; check or test files offline.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Fee budgets: spent, reserved (expected and worst case) and available.
    Budget,
    /// Journalled autoloop decisions, newest first.
    Journal {
        /// Only this target (a channel id like 800000x1x0, `peer:<pubkey>` or `node`).
        #[arg(long, value_name = "T")]
        target: Option<String>,
        /// Only since this time: RFC 3339, a date, or an age like 6h or 2d.
        #[arg(long, value_name = "D")]
        since: Option<String>,
        /// Only this reason (`swap`, `fee_gate`, `dispatch_failed`, ...).
        #[arg(long, value_name = "R")]
        reason: Option<String>,
        /// Show one line per pass (how many targets got each reason) instead of decisions.
        #[arg(long)]
        passes: bool,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Replay a history (a trace or a synthetic node) under a policy, or two side by side:
    /// swaps, costs, time out of band (offline; no daemon needed).
    Backtest(Box<backtest::BacktestArgs>),
    /// Set the autoloop mode (on, off, dry-run), or show it without an argument.
    Autoloop {
        /// The mode to set.
        #[arg(value_enum)]
        mode: Option<autoloop::ModeArg>,
    },
}

/// Why a command failed. `Display` is exactly what the operator reads.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Nothing answers at the address, or the certificate to reach it is missing.
    #[error("cannot reach sluiced at {addr}: is it running?{}", hint.as_ref().map(|h| format!("\n{h}")).unwrap_or_default())]
    Unreachable {
        /// The address tried.
        addr: String,
        /// A second line saying what else to check, if known.
        hint: Option<String>,
    },
    /// The daemon answered, but a part of it (lnd, autoloop, the swap server) cannot serve the
    /// call yet; its own words say which. Transient: the same command succeeds later.
    #[error("sluiced at {addr} cannot do that yet: {message}; try again in a moment")]
    NotReady {
        /// The address called.
        addr: String,
        /// The daemon's reason.
        message: String,
    },
    /// The daemon's certificate is not the one in the certificate file.
    #[error(
        "sluiced at {addr} presented a TLS certificate that does not match {}; \
         pass --tlscert with the daemon's current tls.cert",
        cert.display()
    )]
    CertMismatch {
        /// The address tried.
        addr: String,
        /// The certificate file used.
        cert: PathBuf,
    },
    /// The certificate file or the address is unusable, or TLS failed otherwise.
    #[error("{0}")]
    Tls(crate::tls::TlsError),
    /// The credential file could not be read.
    #[error("{source}; pass --credential or set SLUICE_CREDENTIAL")]
    Credential {
        /// Why, naming the file.
        source: ApiError,
    },
    /// The daemon did not accept the credential.
    #[error("sluiced at {addr} rejected the credential in {}: {message}", credential.display())]
    Unauthenticated {
        /// The address called.
        addr: String,
        /// The credential file presented.
        credential: PathBuf,
        /// The daemon's reason.
        message: String,
    },
    /// The credential is read-only and the command changes state.
    #[error(
        "the credential in {} is read-only and cannot {action}; use admin.credential",
        credential.display()
    )]
    PermissionDenied {
        /// The credential file presented.
        credential: PathBuf,
        /// What the command tried to do.
        action: &'static str,
    },
    /// Any other answer from the daemon.
    #[error("sluiced at {addr} answered {code:?}: {message}")]
    Rpc {
        /// The address called.
        addr: String,
        /// The gRPC code.
        code: tonic::Code,
        /// The daemon's message.
        message: String,
    },
    /// A default path needs the home directory and none is known.
    #[error(
        "HOME is not set, so the default data dir ~/.sluice is unknown; pass --datadir or set SLUICE_DATADIR"
    )]
    NoHome,
    /// An argument is malformed; the message names the flag and the expected form.
    #[error("{0}")]
    Input(String),
    /// Writing the answer failed (e.g. stdout closed).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// A `sluice simnet` command failed.
    #[error(transparent)]
    Simnet(#[from] simnet::SimnetCliError),
    /// A `sluice regtest` command failed.
    #[error(transparent)]
    Regtest(#[from] crate::regtest::RegtestError),
    /// Serialising the answer failed.
    #[error("cannot encode the output as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A policy was checked, tested or reloaded and found wanting (exit 1, as a linter does).
    #[error("{0}")]
    Rejected(String),
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NoHome
            | CliError::Input(_)
            | CliError::Simnet(simnet::SimnetCliError::NoHome) => EXIT_USAGE,
            _ => 1,
        }
    }
}

/// Runs one command and returns what to print on stdout (text or one JSON object).
pub async fn execute(args: &Args) -> Result<String, CliError> {
    // These commands need no daemon (nor its datadir).
    match &args.command {
        Command::Htlc(cmd) => return htlc::run(cmd, args.json),
        Command::Simnet(sim) => {
            return simnet::execute(sim, output::Format::from_json_flag(args.json)).await;
        }
        Command::Regtest(r) => {
            return regtest::execute(r, output::Format::from_json_flag(args.json)).await;
        }
        Command::Loopserver(server) => return loopserver::run(server, args.json).await,
        Command::Backtest(bt) => {
            let live = if bt.live_terms {
                let target =
                    client::Target::resolve(args, std::env::var_os("HOME").map(PathBuf::from))?;
                Some(backtest::live_terms(&target).await?)
            } else {
                None
            };
            return backtest::run(
                bt,
                args.datadir.as_deref(),
                live,
                output::Format::from_json_flag(args.json),
            )
            .await;
        }
        Command::Getinfo
        | Command::Stop
        | Command::Channels
        | Command::Terms
        | Command::Quote(_)
        | Command::Out(_)
        | Command::In(_)
        | Command::Swaps(_)
        | Command::Swap(_)
        | Command::Monitor
        | Command::Suggest
        | Command::Policy(_)
        | Command::Budget
        | Command::Journal { .. }
        | Command::Autoloop { .. } => {}
    }
    if let Command::Policy(cmd) = &args.command
        && cmd.is_offline()
    {
        return policy::run(cmd, None, output::Format::from_json_flag(args.json)).await;
    }
    let target = client::Target::resolve(args, std::env::var_os("HOME").map(PathBuf::from))?;
    let format = output::Format::from_json_flag(args.json);
    match &args.command {
        Command::Getinfo => daemon::getinfo(&target, format).await,
        Command::Stop => daemon::stop(&target, format).await,
        Command::Terms => swaps::terms(&target, format).await,
        Command::Quote(cmd) => swaps::quote(&target, cmd, format).await,
        Command::Out(cmd) => swaps::out(&target, cmd, format).await,
        Command::In(cmd) => swaps::loop_in(&target, cmd, format).await,
        Command::Swaps(cmd) => swaps::swaps(&target, cmd, format).await,
        Command::Swap(cmd) => swaps::swap(&target, cmd, format).await,
        Command::Monitor => swaps::monitor(&target, format).await,
        Command::Channels => channels::channels(&target, format).await,
        Command::Htlc(_)
        | Command::Simnet(_)
        | Command::Regtest(_)
        | Command::Loopserver(_)
        | Command::Backtest(_) => unreachable_offline(),
        Command::Suggest => autoloop::suggest(&target, format).await,
        Command::Policy(cmd) => policy::run(cmd, Some(&target), format).await,
        Command::Budget => autoloop::budget(&target, format).await,
        Command::Journal {
            target: chan,
            since,
            reason,
            passes,
            limit,
        } => {
            let q = autoloop::JournalQuery {
                target: chan.as_deref(),
                since: since.as_deref(),
                reason: reason.as_deref(),
                passes: *passes,
                limit: *limit,
            };
            autoloop::journal(&target, format, &q).await
        }
        Command::Autoloop { mode } => autoloop::mode(&target, format, *mode).await,
    }
}

/// Offline commands return before a daemon is contacted; reaching here is a dispatch bug,
/// reported as an error rather than a panic.
fn unreachable_offline() -> Result<String, CliError> {
    Err(CliError::Input(
        "internal: offline command dispatched to the daemon".to_owned(),
    ))
}

/// Runs the command line: prints the answer on stdout, or one clear message on stderr, and
/// returns the exit code (0, 1, or 64 for usage problems).
pub async fn run(args: Args) -> ExitCode {
    use std::io::Write;
    let result = match execute(&args).await {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(CliError::from)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
