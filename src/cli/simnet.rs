//! `sluice simnet …`: run a simulated world on loopback (`serve`) and drive a running one
//! (`mine`, `fee`, `reorg`, `status`, `stop-node`, `start-node`, `misbehave`, `audit`) through its
//! control service,
//! found through `<dir>/simnet.json`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args as ClapArgs, Subcommand};
use serde::Serialize;

use super::output::{self, Format, Render};
use crate::proto::simnet as wire;
use crate::simnet::control;
use crate::simnet::runner::{Simnet, SimnetConfig, SimnetError, SimnetState};

/// The simnet directory's name under the home directory.
pub const DEFAULT_DIR: &str = ".sluice-simnet";

/// `sluice simnet`: its directory and what to do.
#[derive(ClapArgs, Debug, Clone)]
pub struct SimnetArgs {
    /// The simnet's directory: credentials, simnet.json, sluice.yaml [default: ~/.sluice-simnet].
    #[arg(long, global = true, env = "SLUICE_SIMNET_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: SimnetCommand,
}

/// The simnet commands.
#[derive(Subcommand, Debug, Clone)]
pub enum SimnetCommand {
    /// Run a simulated world on loopback until Ctrl-C, and write DIR/sluice.yaml for sluiced.
    Serve(ServeArgs),
    /// The commands that drive a running simnet.
    #[command(flatten)]
    Drive(DriveCommand),
}

/// `sluice simnet serve`'s options.
#[derive(ClapArgs, Debug, Clone)]
pub struct ServeArgs {
    /// Seeds keys, balances and traffic: the same seed builds the same world.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How many peers the "sluice" node has a channel with.
    #[arg(long, default_value_t = 3)]
    pub channels: usize,
    /// Mine a block this often, e.g. 30s or 10m; 0s mines only on `sluice simnet mine`.
    #[arg(long, default_value = "60s", value_parser = parse_interval)]
    pub block_interval: Duration,
    /// Route no payments through "sluice" in the background.
    #[arg(long)]
    pub no_traffic: bool,
    /// Where the "sluice" node's lnd listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub lnd_listen: SocketAddr,
    /// Where the control service listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub control_listen: SocketAddr,
}

/// A whole number with a unit: `500ms`, `30s`, `10m`, `1h`.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 30s, 10m or 1h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(format!(
            "`{text}` needs a unit (ms, s, m, h), such as 30s or 10m"
        )),
    }
}

/// The commands that talk to a running simnet's control service.
#[derive(Subcommand, Debug, Clone)]
pub enum DriveCommand {
    /// Mine N blocks now.
    Mine {
        /// How many blocks.
        #[arg(value_name = "N")]
        blocks: u32,
    },
    /// Make every fee estimate SAT_PER_VB from now on.
    Fee {
        /// The next-block fee rate in sat/vB.
        #[arg(value_name = "SAT_PER_VB")]
        sat_per_vbyte: u64,
    },
    /// Disconnect the top DEPTH blocks; their transactions return to the mempool.
    Reorg {
        /// How many blocks.
        #[arg(value_name = "DEPTH")]
        depth: u32,
    },
    /// Show the tip, the fee rate and every node.
    Status,
    /// Stop a node's simulated lnd (as if lnd was killed); its state is kept.
    StopNode {
        /// The node's name, e.g. sluice.
        name: String,
    },
    /// Serve a stopped node's lnd again, on the same address with the same credentials.
    StartNode {
        /// The node's name, e.g. sluice.
        name: String,
    },
    /// Make the reference Loop server misbehave for the next swaps (NAME), list the names
    /// (--list), or make it honest again (--off).
    Misbehave(MisbehaveArgs),
    /// What the reference Loop server learned, and when: every preimage it knows, and whether
    /// an HTLC honouring the contract was confirmed when it was first seen knowing it.
    Audit,
    /// Pay AMOUNT sat from node FROM to node TO over their direct channel (no routing fee),
    /// e.g. to give "sluice" back the outbound liquidity its swaps spent.
    Pay {
        /// The paying node, e.g. peer1.
        #[arg(long)]
        from: String,
        /// The paid node.
        #[arg(long, default_value = "sluice")]
        to: String,
        /// How much, in sat.
        #[arg(value_name = "AMOUNT")]
        amount_sat: u64,
    },
    /// Restart the reference Loop server as a real one restarts: it stops serving (status
    /// streams end, calls are refused) for --down, then serves again on the same address with
    /// every swap it knew.
    RestartServer {
        /// How long it stays down (at most 60s).
        #[arg(long, default_value = "2s", value_parser = parse_interval)]
        down: Duration,
    },
}

/// `sluice simnet misbehave`: exactly one of NAME, --list, --off.
#[derive(ClapArgs, Debug, Clone)]
#[command(group(
    clap::ArgGroup::new("what")
        .required(true)
        .args(["name", "list", "off"])
))]
pub struct MisbehaveArgs {
    /// The misbehaviour for the swaps registered from now on (see --list).
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// List every misbehaviour with what it does, and the one switched on.
    #[arg(long)]
    pub list: bool,
    /// Make the server honest again.
    #[arg(long)]
    pub off: bool,
}

/// Why a simnet command failed. `Display` is what the operator reads.
#[derive(Debug, thiserror::Error)]
pub enum SimnetCliError {
    /// No directory was given and the home directory is unknown.
    #[error("HOME is not set, so the default ~/.sluice-simnet is unknown; pass --dir")]
    NoHome,
    /// The simnet could not start, or its files could not be read.
    #[error("{0}")]
    Simnet(#[from] SimnetError),
    /// The control service answered with an error.
    #[error("the simnet at {addr} refused: {message}")]
    Rpc {
        /// The control service's address.
        addr: String,
        /// Its message.
        message: String,
    },
    /// Waiting for Ctrl-C failed.
    #[error("cannot wait for Ctrl-C: {0}")]
    Signal(std::io::Error),
}

/// The directory `--dir` names, or `~/.sluice-simnet`.
pub fn resolve_dir(dir: Option<&Path>, home: Option<&Path>) -> Result<PathBuf, SimnetCliError> {
    match dir {
        Some(d) => match d.strip_prefix("~") {
            Ok(rest) => Ok(home.ok_or(SimnetCliError::NoHome)?.join(rest)),
            Err(_) => Ok(d.to_owned()),
        },
        None => Ok(home.ok_or(SimnetCliError::NoHome)?.join(DEFAULT_DIR)),
    }
}

/// Runs a simnet command; `serve` prints its summary at once and returns after Ctrl-C.
pub async fn execute(args: &SimnetArgs, format: Format) -> Result<String, super::CliError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let dir = resolve_dir(args.dir.as_deref(), home.as_deref())?;
    match &args.command {
        SimnetCommand::Serve(serve_args) => serve(serve_args, dir, format).await,
        SimnetCommand::Drive(command) => {
            let answer = drive(command, &dir).await?;
            render(&answer, format)
        }
    }
}

/// Sends one command to the control service `<dir>/simnet.json` names.
async fn drive(command: &DriveCommand, dir: &Path) -> Result<Answer, SimnetCliError> {
    let state = SimnetState::read(dir)?;
    let mut ctl = control::connect(&state).await?;
    let refused = |s: tonic::Status| SimnetCliError::Rpc {
        addr: state.control.clone(),
        message: s.message().to_owned(),
    };
    Ok(match command {
        DriveCommand::Mine { blocks } => {
            let r = ctl
                .mine(wire::MineRequest { blocks: *blocks })
                .await
                .map_err(refused)?
                .into_inner();
            Answer::Mined {
                heights: r.heights,
                hashes: r.hashes,
            }
        }
        DriveCommand::Fee { sat_per_vbyte } => {
            let r = ctl
                .set_fee(wire::SetFeeRequest {
                    sat_per_vbyte: *sat_per_vbyte,
                })
                .await
                .map_err(refused)?
                .into_inner();
            Answer::Fee {
                sat_per_vbyte: *sat_per_vbyte,
                sat_per_kw: r.sat_per_kw,
            }
        }
        DriveCommand::Reorg { depth } => {
            let r = ctl
                .reorg(wire::ReorgRequest { depth: *depth })
                .await
                .map_err(refused)?
                .into_inner();
            Answer::Reorged {
                height: r.height,
                returned_to_mempool: r.returned_to_mempool,
            }
        }
        DriveCommand::Status => {
            let r = ctl
                .status(wire::StatusRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            Answer::Status(r.into())
        }
        DriveCommand::StopNode { name } => {
            let request = wire::NodeRequest { name: name.clone() };
            let r = ctl.stop_node(request).await.map_err(refused)?.into_inner();
            Answer::Node(r.node.unwrap_or_default().into())
        }
        DriveCommand::StartNode { name } => {
            let request = wire::NodeRequest { name: name.clone() };
            let r = ctl.start_node(request).await.map_err(refused)?.into_inner();
            Answer::Node(r.node.unwrap_or_default().into())
        }
        DriveCommand::Misbehave(m) if m.list => {
            let r = ctl
                .list_misbehaviours(wire::ListMisbehavioursRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            Answer::Misbehaviours {
                misbehaviours: r
                    .misbehaviours
                    .into_iter()
                    .map(|m| Misbehaviour {
                        name: m.name,
                        description: m.description,
                    })
                    .collect(),
                active: (!r.active.is_empty()).then_some(r.active),
            }
        }
        DriveCommand::Misbehave(m) => {
            let name = if m.off {
                String::new()
            } else {
                m.name.clone().unwrap_or_default()
            };
            let r = ctl
                .set_misbehaviour(wire::SetMisbehaviourRequest { name })
                .await
                .map_err(refused)?
                .into_inner();
            Answer::Misbehaving {
                active: (!r.active.is_empty()).then_some(r.active),
            }
        }
        DriveCommand::Audit => {
            let r = ctl
                .audit(wire::AuditRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            Answer::Audit {
                learned: r
                    .learned
                    .into_iter()
                    .map(|l| LearnedPreimage {
                        swap_hash: l.swap_hash,
                        height: l.height,
                        valid_htlc_confirmed: l.valid_htlc_confirmed,
                    })
                    .collect(),
            }
        }
        DriveCommand::Pay {
            from,
            to,
            amount_sat,
        } => {
            let r = ctl
                .pay(wire::PayRequest {
                    from: from.clone(),
                    to: to.clone(),
                    amount_sat: *amount_sat,
                })
                .await
                .map_err(refused)?
                .into_inner();
            Answer::Paid {
                from: from.clone(),
                to: to.clone(),
                amount_sat: *amount_sat,
                chan_id: r.chan_id.to_string(),
            }
        }
        DriveCommand::RestartServer { down } => {
            let down_ms = u32::try_from(down.as_millis()).unwrap_or(u32::MAX);
            let r = ctl
                .restart_swap_server(wire::RestartSwapServerRequest { down_ms })
                .await
                .map_err(refused)?
                .into_inner();
            Answer::ServerRestarted {
                address: r.address,
                down_ms,
            }
        }
    })
}

async fn serve(args: &ServeArgs, dir: PathBuf, format: Format) -> Result<String, super::CliError> {
    let mut config = SimnetConfig::new(dir);
    config.seed = args.seed;
    config.channels = args.channels;
    config.block_interval = (!args.block_interval.is_zero()).then_some(args.block_interval);
    config.traffic = !args.no_traffic;
    config.lnd_listen = args.lnd_listen;
    config.control_listen = args.control_listen;
    let simnet = Simnet::start(config).await.map_err(SimnetCliError::from)?;
    let summary = Serving {
        lnd: simnet.sluice_lnd().addr.to_string(),
        tls_cert: simnet.sluice_lnd().cert_path.display().to_string(),
        macaroon: simnet.sluice_lnd().macaroon_path.display().to_string(),
        loop_lnd: simnet.loop_lnd().addr.to_string(),
        control: simnet.control_addr().to_string(),
        config: simnet.config_path().display().to_string(),
        run: format!("sluiced --config {}", simnet.config_path().display()),
    };
    {
        use std::io::Write;
        let text = output::render(&summary, format)?;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
    }
    let waited = tokio::signal::ctrl_c().await;
    simnet.stop().await;
    waited.map_err(SimnetCliError::Signal)?;
    Ok(String::new())
}

/// What `serve` prints once everything listens.
#[derive(Debug, Serialize)]
pub struct Serving {
    /// The "sluice" lnd's address.
    pub lnd: String,
    /// Its certificate.
    pub tls_cert: String,
    /// Its macaroon.
    pub macaroon: String,
    /// The "loop" lnd's address.
    pub loop_lnd: String,
    /// The control service's address.
    pub control: String,
    /// The config file written for sluiced.
    pub config: String,
    /// The command that starts sluiced against it.
    pub run: String,
}

impl Render for Serving {
    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("lnd", self.lnd.clone()),
            ("tls cert", self.tls_cert.clone()),
            ("macaroon", self.macaroon.clone()),
            ("loop lnd", self.loop_lnd.clone()),
            ("control", self.control.clone()),
            ("config", self.config.clone()),
            ("run", self.run.clone()),
        ]
    }
}

/// One node as printed.
#[derive(Debug, Serialize)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Its identity key.
    pub pubkey: String,
    /// Its lnd's address, if it has one.
    pub lnd_address: Option<String>,
    /// Whether that lnd serves.
    pub lnd_running: bool,
    /// How many channels it has.
    pub channels: u32,
    /// Its confirmed on-chain balance, sat.
    pub wallet_confirmed_sat: u64,
    /// Its unconfirmed on-chain balance, sat.
    pub wallet_unconfirmed_sat: u64,
    /// Its side of its channels without in-flight HTLCs, msat.
    pub channel_local_msat: u64,
    /// HTLCs in flight on its channels.
    pub pending_htlcs: u32,
}

impl From<wire::NodeStatus> for Node {
    fn from(n: wire::NodeStatus) -> Node {
        Node {
            name: n.name,
            pubkey: n.pubkey,
            lnd_address: (!n.lnd_address.is_empty()).then_some(n.lnd_address),
            lnd_running: n.lnd_running,
            channels: n.channels,
            wallet_confirmed_sat: n.wallet_confirmed_sat,
            wallet_unconfirmed_sat: n.wallet_unconfirmed_sat,
            channel_local_msat: n.channel_local_msat,
            pending_htlcs: n.pending_htlcs,
        }
    }
}

impl Node {
    fn line(&self) -> String {
        let lnd = match (&self.lnd_address, self.lnd_running) {
            (Some(a), true) => format!("lnd at {a}"),
            (Some(a), false) => format!("lnd at {a} (stopped)"),
            (None, _) => "no lnd".to_owned(),
        };
        format!(
            "{} {} channels, {lnd}; {} sat local ({} HTLCs in flight), wallet {} sat (+{} \
             unconfirmed)",
            self.name,
            self.channels,
            self.channel_local_msat / 1000,
            self.pending_htlcs,
            self.wallet_confirmed_sat,
            self.wallet_unconfirmed_sat,
        )
    }
}

/// `status` as printed.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The tip's height.
    pub height: u32,
    /// The tip's hash.
    pub tip_hash: String,
    /// The next-block fee estimate, sat/kw.
    pub fee_sat_per_kw: u64,
    /// The network the nodes report.
    pub network: String,
    /// Every node.
    pub nodes: Vec<Node>,
    /// The mempool's transactions.
    pub mempool_txids: Vec<String>,
}

impl From<wire::StatusResponse> for Status {
    fn from(r: wire::StatusResponse) -> Status {
        Status {
            height: r.height,
            tip_hash: r.tip_hash,
            fee_sat_per_kw: r.fee_sat_per_kw,
            network: r.network,
            nodes: r.nodes.into_iter().map(Node::from).collect(),
            mempool_txids: r.mempool_txids,
        }
    }
}

/// The answer of a driving command.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// `mine`.
    Mined {
        /// The new blocks' heights.
        heights: Vec<u32>,
        /// Their hashes.
        hashes: Vec<String>,
    },
    /// `fee`.
    Fee {
        /// The rate asked for, sat/vB.
        sat_per_vbyte: u64,
        /// The same in sat/kw, lnd's unit.
        sat_per_kw: u64,
    },
    /// `reorg`.
    Reorged {
        /// The new tip's height.
        height: u32,
        /// Transactions back in the mempool.
        returned_to_mempool: u32,
    },
    /// `status`.
    Status(Status),
    /// `stop-node`, `start-node`.
    Node(Node),
    /// `misbehave --list`.
    Misbehaviours {
        /// Every named misbehaviour.
        misbehaviours: Vec<Misbehaviour>,
        /// The one switched on; `null` when the server is honest.
        active: Option<String>,
    },
    /// `misbehave NAME`, `misbehave --off`.
    Misbehaving {
        /// The one switched on now; `null` when the server is honest.
        active: Option<String>,
    },
    /// `audit`.
    Audit {
        /// Every preimage the server knows.
        learned: Vec<LearnedPreimage>,
    },
    /// `restart-server`.
    ServerRestarted {
        /// Where the server serves again.
        address: String,
        /// How long it was down, in milliseconds.
        down_ms: u32,
    },
    /// `pay`.
    Paid {
        /// The paying node.
        from: String,
        /// The paid node.
        to: String,
        /// How much, in sat.
        amount_sat: u64,
        /// The channel it went over.
        chan_id: String,
    },
}

/// One preimage the reference Loop server knows, as `audit` prints it.
#[derive(Debug, Serialize)]
pub struct LearnedPreimage {
    /// The swap hash, hex.
    pub swap_hash: String,
    /// The tip when the server was first seen knowing the preimage.
    pub height: u32,
    /// Whether an HTLC honouring the contract was confirmed then.
    pub valid_htlc_confirmed: bool,
}

/// One named misbehaviour as printed.
#[derive(Debug, Serialize)]
pub struct Misbehaviour {
    /// Its name.
    pub name: String,
    /// What the server does.
    pub description: String,
}

fn render(answer: &Answer, format: Format) -> Result<String, super::CliError> {
    if format == Format::Json {
        return Ok(serde_json::to_string_pretty(answer)? + "\n");
    }
    Ok(match answer {
        Answer::Mined { heights, .. } => match (heights.first(), heights.last()) {
            (Some(first), Some(last)) if first != last => {
                format!("mined {} blocks: {first}–{last}\n", heights.len())
            }
            (Some(h), _) => format!("mined block {h}\n"),
            _ => "mined nothing\n".to_owned(),
        },
        Answer::Fee {
            sat_per_vbyte,
            sat_per_kw,
        } => format!("fee estimates now {sat_per_vbyte} sat/vB ({sat_per_kw} sat/kw)\n"),
        Answer::Reorged {
            height,
            returned_to_mempool,
        } => {
            format!("tip is now {height}; {returned_to_mempool} transactions back in the mempool\n")
        }
        Answer::Status(s) => {
            let mut text = output::table(&[
                ("height", s.height.to_string()),
                ("tip", s.tip_hash.clone()),
                ("fee", format!("{} sat/kw", s.fee_sat_per_kw)),
                ("network", s.network.clone()),
                ("mempool", format!("{} transactions", s.mempool_txids.len())),
            ]);
            text.push_str("nodes:\n");
            for n in &s.nodes {
                text.push_str(&format!("  {}\n", n.line()));
            }
            text
        }
        Answer::Node(n) => format!("{}\n", n.line()),
        Answer::Misbehaviours {
            misbehaviours,
            active,
        } => {
            let width = misbehaviours
                .iter()
                .map(|m| m.name.len())
                .max()
                .unwrap_or(0);
            let mut text = String::new();
            for m in misbehaviours {
                let mark = if active.as_deref() == Some(m.name.as_str()) {
                    "*"
                } else {
                    " "
                };
                text.push_str(&format!("{mark} {:width$}  {}\n", m.name, m.description));
            }
            text.push_str(&match active {
                Some(a) => format!("switched on: {a} (* above); `--off` makes the server honest\n"),
                None => "the server is honest\n".to_owned(),
            });
            text
        }
        Answer::Misbehaving { active: Some(a) } => {
            format!("the reference Loop server misbehaves from the next swap on: {a}\n")
        }
        Answer::Misbehaving { active: None } => {
            "the reference Loop server is honest from the next swap on\n".to_owned()
        }
        Answer::Paid {
            from,
            to,
            amount_sat,
            chan_id,
        } => format!("{from} paid {to} {amount_sat} sat over channel {chan_id}\n"),
        Answer::ServerRestarted { address, down_ms } => format!(
            "the reference Loop server was down {down_ms} ms and serves again at {address}\n"
        ),
        Answer::Audit { learned } if learned.is_empty() => {
            "the reference Loop server knows no preimage\n".to_owned()
        }
        Answer::Audit { learned } => {
            let mut text = String::new();
            for l in learned {
                let when = if l.valid_htlc_confirmed {
                    "after a valid HTLC confirmed"
                } else {
                    "BEFORE a valid HTLC confirmed"
                };
                text.push_str(&format!(
                    "{}  learned by height {}, {when}\n",
                    l.swap_hash, l.height
                ));
            }
            text
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn intervals_need_a_unit_and_zero_means_on_request() {
        assert_eq!(parse_interval("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_interval("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_interval("0s").unwrap().is_zero());
        assert!(parse_interval("30").unwrap_err().contains("needs a unit"));
        assert!(parse_interval("s").is_err());
    }

    #[test]
    fn the_directory_defaults_under_home_and_expands_tilde() {
        let home = Path::new("/home/op");
        assert_eq!(
            resolve_dir(None, Some(home)).unwrap(),
            home.join(DEFAULT_DIR)
        );
        assert_eq!(
            resolve_dir(Some(Path::new("~/sim")), Some(home)).unwrap(),
            home.join("sim")
        );
        assert_eq!(
            resolve_dir(Some(Path::new("/srv/sim")), None).unwrap(),
            PathBuf::from("/srv/sim")
        );
        assert!(matches!(
            resolve_dir(None, None),
            Err(SimnetCliError::NoHome)
        ));
    }

    #[test]
    fn answers_read_as_sentences_and_json_keeps_every_key() {
        let mined = Answer::Mined {
            heights: vec![5, 6, 7],
            hashes: vec!["a".into(), "b".into(), "c".into()],
        };
        assert_eq!(
            render(&mined, Format::Human).unwrap(),
            "mined 3 blocks: 5–7\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&mined, Format::Json).unwrap()).unwrap();
        assert_eq!(json["heights"], serde_json::json!([5, 6, 7]));
        let stopped = Answer::Node(Node {
            name: "sluice".into(),
            pubkey: "02ab".into(),
            lnd_address: Some("127.0.0.1:1".into()),
            lnd_running: false,
            channels: 3,
            wallet_confirmed_sat: 5_000,
            wallet_unconfirmed_sat: 7,
            channel_local_msat: 2_000_999,
            pending_htlcs: 1,
        });
        assert_eq!(
            render(&stopped, Format::Human).unwrap(),
            "sluice 3 channels, lnd at 127.0.0.1:1 (stopped); 2000 sat local (1 HTLCs in \
             flight), wallet 5000 sat (+7 unconfirmed)\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&stopped, Format::Json).unwrap()).unwrap();
        assert_eq!(json["lnd_running"], false);
        assert_eq!(json["channel_local_msat"], 2_000_999);
    }
}
