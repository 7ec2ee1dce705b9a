//! `sluice regtest up | down | mine | status`: a world of real processes on regtest (btcd and
//! lnd nodes "sluice", "server", "peer1", "peer2", funded, with announced channels, and the
//! reference Loop server on "server"), started in the background, with a `sluice.yaml` that
//! points `sluiced --config` at its "sluice" lnd and at that server.
//! The programs are the pinned ones `tools/realnode/build` makes (`--bin-dir` or
//! `SLUICE_REALNODE_BIN`; without either, the build script of the source tree this `sluice`
//! was built from is run).

use std::path::{Path, PathBuf};

use clap::{Args as ClapArgs, Subcommand};

use super::CliError;
use super::output::Format;
use crate::regtest::world::{self, CONFIG_FILE, WorldState};
use crate::regtest::{Lifetime, Programs, World, WorldConfig};

/// The world's directory under the home directory.
pub const DEFAULT_DIR: &str = ".sluice-regtest";

/// `sluice regtest`: its directory and what to do.
#[derive(ClapArgs, Debug, Clone)]
pub struct RegtestArgs {
    /// The world's directory: every program's data and log, regtest.json, sluice.yaml
    /// [default: ~/.sluice-regtest].
    #[arg(long, global = true, env = "SLUICE_REGTEST_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: RegtestCommand,
}

/// The regtest commands.
#[derive(Subcommand, Debug, Clone)]
pub enum RegtestCommand {
    /// Start btcd, four lnd nodes and the reference Loop server (on the "server" lnd) in the
    /// background, fund the nodes, open and announce the channels, and write DIR/sluice.yaml
    /// (takes under a minute).
    Up {
        /// The directory holding btcd, btcctl, lnd, lncli, loopd and loop.
        #[arg(long, env = "SLUICE_REALNODE_BIN", value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Stop every process of the world (its files stay).
    Down,
    /// Mine blocks.
    Mine {
        /// How many.
        #[arg(default_value_t = 1)]
        blocks: u32,
    },
    /// The world's processes and addresses.
    Status,
}

fn resolve_dir(dir: Option<&Path>) -> Result<PathBuf, CliError> {
    match dir {
        Some(d) => Ok(d.to_path_buf()),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(DEFAULT_DIR))
            .ok_or_else(|| {
                CliError::Input(
                    "HOME is not set, so the default ~/.sluice-regtest is unknown; pass --dir"
                        .into(),
                )
            }),
    }
}

fn programs(bin_dir: Option<&Path>) -> Result<Programs, CliError> {
    if let Some(dir) = bin_dir {
        return Ok(Programs::in_dir(dir)?);
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    if source.join("tools/realnode/build").is_file() {
        return Ok(Programs::build(source)?);
    }
    Err(CliError::Input(
        "no real programs: pass --bin-dir DIR (or set SLUICE_REALNODE_BIN) to a directory \
         holding btcd, btcctl, lnd, lncli, loopd and loop, as tools/realnode/build makes"
            .into(),
    ))
}

/// Starts `sluice loopserver` (this very program) in the background on the world's "server"
/// lnd, plaintext on a free loopback port; returns its address and pid once it listens.
fn start_loopserver(world: &World, dir: &Path) -> Result<(String, u32), CliError> {
    let exe = std::env::current_exe().map_err(|e| {
        CliError::Input(format!("cannot find this program to start loopserver: {e}"))
    })?;
    let port = crate::regtest::process::free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let args = world.loopserver_args(&addr, &[]);
    let mut proc = crate::regtest::process::Proc::spawn(
        "sluice loopserver",
        &exe,
        &args,
        &dir.join("loopserver.log"),
        Lifetime::Detached,
    )?;
    crate::regtest::process::wait_for(
        "sluice loopserver to listen",
        std::time::Duration::from_secs(60),
        || {
            proc.check_running()?;
            Ok(std::net::TcpStream::connect(&addr).ok().map(|_| ()))
        },
    )?;
    Ok((addr, proc.release()))
}

/// Runs one `sluice regtest` command.
pub async fn execute(args: &RegtestArgs, format: Format) -> Result<String, CliError> {
    let dir = resolve_dir(args.dir.as_deref())?;
    let command = args.command.clone();
    tokio::task::spawn_blocking(move || run(&command, &dir, format))
        .await
        .map_err(|e| CliError::Input(format!("internal: {e}")))?
}

fn run(command: &RegtestCommand, dir: &Path, format: Format) -> Result<String, CliError> {
    match command {
        RegtestCommand::Up { bin_dir } => {
            if let Ok(state) = WorldState::read(dir)
                && state
                    .pids()
                    .iter()
                    .any(|p| crate::regtest::process::alive(*p))
            {
                return Err(CliError::Input(format!(
                    "a regtest world is already running in {}; stop it with `sluice regtest \
                     --dir {} down` first",
                    dir.display(),
                    dir.display()
                )));
            }
            let programs = programs(bin_dir.as_deref())?;
            let config = WorldConfig {
                lifetime: Lifetime::Detached,
                ..WorldConfig::new(dir)
            };
            let mut world = World::start(&programs, &config)?;
            world.write_state(&[])?;
            let (server, pid) = start_loopserver(&world, dir)?;
            let state = world.write_state(&[("loopserver".to_owned(), pid)])?;
            world.write_sluice_yaml(Some(&server))?;
            world.detach();
            render(&state, dir, format)
        }
        RegtestCommand::Down => {
            let stopped = world::down(dir)?;
            Ok(match format {
                Format::Json => format!("{}\n", serde_json::json!({ "stopped": stopped })),
                Format::Human => format!("stopped {stopped} processes\n"),
            })
        }
        RegtestCommand::Mine { blocks } => {
            let state = WorldState::read(dir)?;
            let btcctl = Programs::in_dir(&state.programs)?.path("btcctl");
            let out = crate::regtest::btcd::ctl(
                &btcctl,
                &state.btcd_rpc,
                &state.btcd_cert,
                &["generate", &blocks.to_string()],
            )?;
            Ok(match format {
                Format::Json => out,
                Format::Human => format!("mined {blocks} blocks\n"),
            })
        }
        RegtestCommand::Status => {
            let state = WorldState::read(dir)?;
            render(&state, dir, format)
        }
    }
}

fn render(state: &WorldState, dir: &Path, format: Format) -> Result<String, CliError> {
    if format == Format::Json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(state)?));
    }
    let mut text = format!(
        "btcd     pid {:<7} rpc {}  {}\n",
        state.btcd_pid,
        state.btcd_rpc,
        up(state.btcd_pid)
    );
    for n in &state.nodes {
        text.push_str(&format!(
            "{:<8} pid {:<7} rpc {}  {}  {}\n",
            n.name,
            n.pid,
            n.rpc,
            up(n.pid),
            n.pubkey
        ));
    }
    for (name, pid) in &state.extra {
        text.push_str(&format!("{name:<8} pid {pid:<7} {}\n", up(*pid)));
    }
    text.push_str(&format!(
        "\nsluiced --config {}\n",
        dir.join(CONFIG_FILE).display()
    ));
    Ok(text)
}

fn up(pid: u32) -> &'static str {
    if crate::regtest::process::alive(pid) {
        "running"
    } else {
        "stopped"
    }
}
