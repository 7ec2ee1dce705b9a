//! One lnd on regtest, backed by the world's btcd, and its `lncli`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::btcd::{Btcd, RPC_PASS, RPC_USER};
use super::process::{Lifetime, PORT_RETRIES, Proc, free_port, port_taken, wait_for};
use super::programs::Programs;
use super::{RegtestError, Result};
use crate::config::LndConfig;

/// A running lnd.
#[derive(Debug)]
pub struct Lnd {
    proc: Proc,
    lncli: PathBuf,
    /// The node's name in the world (its alias too).
    pub name: String,
    /// The gRPC address, `127.0.0.1:port`.
    pub rpc: String,
    /// The peer-to-peer address, `127.0.0.1:port`.
    pub p2p: String,
    /// The node's public key, hex.
    pub pubkey: String,
    dir: PathBuf,
}

impl Lnd {
    /// Starts lnd in `dir` with the flags of lnd's own harness (no `integration` build tag:
    /// what operators run), and waits until it is synced to btcd's chain.
    pub fn start(
        programs: &Programs,
        name: &str,
        dir: &Path,
        btcd: &Btcd,
        lifetime: Lifetime,
    ) -> Result<Lnd> {
        let mut lnd = Lnd::spawn(programs, name, dir, btcd, lifetime)?;
        lnd.ready_or_respawn(programs, btcd, lifetime, btcd.height()?)?;
        Ok(lnd)
    }

    /// [`ready`](Self::ready), starting lnd again on fresh ports when one it was given was
    /// taken before it bound it.
    pub fn ready_or_respawn(
        &mut self,
        programs: &Programs,
        btcd: &Btcd,
        lifetime: Lifetime,
        height: u32,
    ) -> Result<()> {
        let mut attempt = 1;
        loop {
            match self.ready(height) {
                Err(e) if port_taken(&e) && attempt < PORT_RETRIES => {
                    attempt += 1;
                    let (name, dir) = (self.name.clone(), self.dir.clone());
                    *self = Lnd::spawn(programs, &name, &dir, btcd, lifetime)?;
                }
                other => return other,
            }
        }
    }

    /// Starts lnd without waiting for it; [`ready`](Self::ready) waits.
    pub fn spawn(
        programs: &Programs,
        name: &str,
        dir: &Path,
        btcd: &Btcd,
        lifetime: Lifetime,
    ) -> Result<Lnd> {
        std::fs::create_dir_all(dir).map_err(|e| RegtestError::file(dir, e))?;
        let rpc = format!("127.0.0.1:{}", free_port()?);
        let p2p = format!("127.0.0.1:{}", free_port()?);
        let args: Vec<String> = vec![
            format!("--lnddir={}", dir.display()),
            format!("--alias={name}"),
            "--noseedbackup".into(),
            "--nobootstrap".into(),
            "--norest".into(),
            "--bitcoin.regtest".into(),
            "--bitcoin.node=btcd".into(),
            format!("--btcd.rpchost={}", btcd.rpc),
            format!("--btcd.rpcuser={RPC_USER}"),
            format!("--btcd.rpcpass={RPC_PASS}"),
            format!("--btcd.rpccert={}", btcd.rpc_cert.display()),
            format!("--listen={p2p}"),
            format!("--externalip={p2p}"),
            format!("--rpclisten={rpc}"),
            "--bitcoin.defaultchanconfs=1".into(),
            "--bitcoin.defaultremotedelay=4".into(),
            "--accept-keysend".into(),
            "--trickledelay=50".into(),
            "--gossip.sub-batch-delay=5ms".into(),
            "--maxpendingchannels=10".into(),
            "--debuglevel=info".into(),
        ];
        let proc = Proc::spawn(
            &format!("lnd ({name})"),
            &programs.path("lnd"),
            &args,
            &dir.join("lnd.out"),
            lifetime,
        )?;
        Ok(Lnd {
            proc,
            lncli: programs.path("lncli"),
            name: name.to_string(),
            rpc,
            p2p,
            pubkey: String::new(),
            dir: dir.to_path_buf(),
        })
    }

    /// Waits until the node is synced to `height` and learns its public key.
    pub fn ready(&mut self, height: u32) -> Result<()> {
        let info = self.wait_synced(height, Duration::from_secs(120))?;
        self.pubkey = info["identity_pubkey"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(())
    }

    /// The process.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Takes the process handle (for a detached world).
    pub fn into_proc(self) -> Proc {
        self.proc
    }

    /// The lnd directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// lnd's TLS certificate.
    pub fn tls_cert(&self) -> PathBuf {
        self.dir.join("tls.cert")
    }

    /// The admin macaroon.
    pub fn admin_macaroon(&self) -> PathBuf {
        self.dir.join("data/chain/bitcoin/regtest/admin.macaroon")
    }

    /// The settings sluice's lnd client takes.
    pub fn lnd_config(&self) -> LndConfig {
        LndConfig {
            host: self.rpc.clone(),
            tls_cert_path: self.tls_cert(),
            macaroon_path: self.admin_macaroon(),
        }
    }

    /// `pubkey@host:port`.
    pub fn uri(&self) -> String {
        format!("{}@{}", self.pubkey, self.p2p)
    }

    /// Runs `lncli` against this node; returns its parsed JSON answer (`null` for commands
    /// that print nothing).
    pub fn cli(&self, args: &[&str]) -> Result<Value> {
        let program = format!("lncli ({})", self.name);
        let out = Command::new(&self.lncli)
            .arg("--network=regtest")
            .arg(format!("--rpcserver={}", self.rpc))
            .arg(format!("--tlscertpath={}", self.tls_cert().display()))
            .arg(format!(
                "--macaroonpath={}",
                self.admin_macaroon().display()
            ))
            .args(args)
            .output()
            .map_err(|source| RegtestError::Spawn {
                program: program.clone(),
                path: self.lncli.clone(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(RegtestError::program(
                program,
                format!(
                    "{} failed: {}{}",
                    args.first().unwrap_or(&""),
                    String::from_utf8_lossy(&out.stderr).trim(),
                    stdout.trim()
                ),
            ));
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout)
            .map_err(|e| RegtestError::program(program, format!("{args:?}: {e}: {stdout}")))
    }

    /// Waits until lnd's chain is at `height` and synced; returns `getinfo`'s answer.
    pub fn wait_synced(&mut self, height: u32, limit: Duration) -> Result<Value> {
        let what = format!("lnd ({}) to sync to height {height}", self.name);
        let macaroon = self.admin_macaroon();
        let result = wait_for(&what, limit, || {
            self.proc.check_running()?;
            if !macaroon.exists() {
                return Ok(None);
            }
            let info = match self.cli(&["getinfo"]) {
                Ok(info) => info,
                Err(_) => return Ok(None),
            };
            let synced = info["synced_to_chain"].as_bool() == Some(true)
                && info["block_height"].as_u64() == Some(u64::from(height));
            Ok(synced.then_some(info))
        });
        result.map_err(|e| match e {
            RegtestError::Timeout { what, .. } => RegtestError::Timeout {
                what,
                detail: format!(":\n{}", self.proc.log_tail(20)),
            },
            other => other,
        })
    }

    /// A new wallet address (`p2tr`, `p2wkh`, ...).
    pub fn new_address(&self, kind: &str) -> Result<String> {
        let v = self.cli(&["newaddress", kind])?;
        v["address"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| RegtestError::program(&self.name, format!("newaddress answered {v}")))
    }

    /// The wallet's confirmed balance in sat.
    pub fn confirmed_balance(&self) -> Result<u64> {
        let v = self.cli(&["walletbalance"])?;
        Ok(number(&v["confirmed_balance"]))
    }

    /// Connects to another node (already connected is fine).
    pub fn connect(&self, other: &Lnd) -> Result<()> {
        match self.cli(&["connect", &other.uri()]) {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("already connected") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Opens a channel of `capacity` sat to `other`, pushing `push` sat to it; returns the
    /// funding txid.
    pub fn open_channel(&self, other: &Lnd, capacity: u64, push: u64) -> Result<String> {
        self.open(other, capacity, push, false)
    }

    /// [`open_channel`](Self::open_channel), unannounced (`--private`).
    pub fn open_private_channel(&self, other: &Lnd, capacity: u64, push: u64) -> Result<String> {
        self.open(other, capacity, push, true)
    }

    fn open(&self, other: &Lnd, capacity: u64, push: u64, private: bool) -> Result<String> {
        self.connect(other)?;
        let (capacity, push) = (capacity.to_string(), push.to_string());
        let mut args = vec![
            "openchannel",
            "--node_key",
            &other.pubkey,
            "--local_amt",
            &capacity,
            "--push_amt",
            &push,
        ];
        if private {
            args.push("--private");
        }
        let v = self.cli(&args)?;
        v["funding_txid"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| RegtestError::program(&self.name, format!("openchannel answered {v}")))
    }

    /// The open channels, as `lncli listchannels` prints them.
    pub fn channels(&self) -> Result<Vec<Value>> {
        let v = self.cli(&["listchannels"])?;
        Ok(v["channels"].as_array().cloned().unwrap_or_default())
    }

    /// How many channels this node's graph knows with both directions' policies. A channel's
    /// announcement and each side's update arrive separately; pathfinding uses an edge only
    /// in a direction whose policy it has.
    pub fn routable_edges(&self) -> Result<usize> {
        let v = self.cli(&["describegraph"])?;
        let known = |p: &Value| p.is_object();
        Ok(v["edges"].as_array().map_or(0, |edges| {
            edges
                .iter()
                .filter(|e| known(&e["node1_policy"]) && known(&e["node2_policy"]))
                .count()
        }))
    }
}

/// lncli prints 64-bit numbers as strings; either form reads as a number (0 when absent).
pub fn number(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}
