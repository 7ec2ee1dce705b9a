//! btcd on regtest, driven through `btcctl`: mining (to the address btcd was started with),
//! raw transactions, and reorgs with `invalidateblock`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bitcoin::consensus::encode;
use bitcoin::{BlockHash, Transaction, Txid};
use serde_json::Value;

use super::process::{Lifetime, PORT_RETRIES, Proc, free_port, port_taken, wait_for};
use super::programs::Programs;
use super::{RegtestError, Result};

/// The RPC credentials of the world's btcd (loopback only, regtest only).
pub const RPC_USER: &str = "sluice";
/// See [`RPC_USER`].
pub const RPC_PASS: &str = "regtest";

/// A running btcd.
#[derive(Debug)]
pub struct Btcd {
    proc: Proc,
    btcctl: PathBuf,
    /// The RPC address, `127.0.0.1:port`.
    pub rpc: String,
    /// The peer-to-peer address.
    pub p2p: String,
    /// btcd's RPC certificate (lnd needs it: btcd's RPC is TLS only).
    pub rpc_cert: PathBuf,
    dir: PathBuf,
}

impl Btcd {
    /// Starts btcd in `dir`, mining to `mining_addr`, with the flags lnd's own harness uses,
    /// and waits until its RPC answers.
    /// Started again on fresh ports if one was taken in the meantime.
    pub fn start(
        programs: &Programs,
        dir: &Path,
        mining_addr: &str,
        lifetime: Lifetime,
    ) -> Result<Btcd> {
        let mut attempt = 1;
        loop {
            match Btcd::start_once(programs, dir, mining_addr, lifetime) {
                Err(e) if port_taken(&e) && attempt < PORT_RETRIES => attempt += 1,
                other => return other,
            }
        }
    }

    fn start_once(
        programs: &Programs,
        dir: &Path,
        mining_addr: &str,
        lifetime: Lifetime,
    ) -> Result<Btcd> {
        std::fs::create_dir_all(dir).map_err(|e| RegtestError::file(dir, e))?;
        let rpc = format!("127.0.0.1:{}", free_port()?);
        let p2p = format!("127.0.0.1:{}", free_port()?);
        let rpc_cert = dir.join("rpc.cert");
        let args: Vec<String> = vec![
            "--regtest".into(),
            format!("--datadir={}", dir.join("data").display()),
            format!("--logdir={}", dir.join("logs").display()),
            format!("--rpcuser={RPC_USER}"),
            format!("--rpcpass={RPC_PASS}"),
            format!("--rpclisten={rpc}"),
            format!("--listen={p2p}"),
            format!("--rpccert={}", rpc_cert.display()),
            format!("--rpckey={}", dir.join("rpc.key").display()),
            format!("--miningaddr={mining_addr}"),
            "--txindex".into(),
            "--rejectnonstd".into(),
            "--nobanning".into(),
            "--nostalldetect".into(),
            "--trickleinterval=100ms".into(),
            "--rpcmaxwebsockets=50".into(),
            "--debuglevel=info".into(),
        ];
        let proc = Proc::spawn(
            "btcd",
            &programs.path("btcd"),
            &args,
            &dir.join("btcd.out"),
            lifetime,
        )?;
        let mut btcd = Btcd {
            proc,
            btcctl: programs.path("btcctl"),
            rpc,
            p2p,
            rpc_cert,
            dir: dir.to_path_buf(),
        };
        wait_for("btcd's RPC", Duration::from_secs(60), || {
            btcd.proc.check_running()?;
            Ok(btcd.ctl(&["getblockcount"]).ok())
        })?;
        Ok(btcd)
    }

    /// The process.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Takes the process handle (for a detached world).
    pub fn into_proc(self) -> Proc {
        self.proc
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `btcctl` with the world's connection flags; returns stdout.
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        ctl(&self.btcctl, &self.rpc, &self.rpc_cert, args)
    }

    /// Runs `btcctl` and parses its JSON answer.
    pub fn ctl_json(&self, args: &[&str]) -> Result<Value> {
        let out = self.ctl(args)?;
        serde_json::from_str(&out)
            .map_err(|e| RegtestError::program("btcctl", format!("{args:?}: {e}: {out}")))
    }

    /// Mines `n` blocks to the mining address; returns their hashes.
    pub fn mine(&self, n: u32) -> Result<Vec<BlockHash>> {
        let v = self.ctl_json(&["generate", &n.to_string()])?;
        v.as_array()
            .ok_or_else(|| RegtestError::program("btcctl", format!("generate answered {v}")))?
            .iter()
            .map(|h| {
                h.as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| RegtestError::program("btcctl", format!("bad block hash {h}")))
            })
            .collect()
    }

    /// The height of the best block.
    pub fn height(&self) -> Result<u32> {
        let out = self.ctl(&["getblockcount"])?;
        out.trim()
            .parse()
            .map_err(|_| RegtestError::program("btcctl", format!("getblockcount answered {out}")))
    }

    /// The hash of the main-chain block at `height`.
    pub fn block_hash(&self, height: u32) -> Result<BlockHash> {
        let out = self.ctl(&["getblockhash", &height.to_string()])?;
        out.trim()
            .parse()
            .map_err(|_| RegtestError::program("btcctl", format!("getblockhash answered {out}")))
    }

    /// The txids of a block, coinbase first.
    pub fn block_txids(&self, hash: &BlockHash) -> Result<Vec<Txid>> {
        let v = self.ctl_json(&["getblock", &hash.to_string()])?;
        v["tx"]
            .as_array()
            .ok_or_else(|| RegtestError::program("btcctl", format!("getblock answered {v}")))?
            .iter()
            .map(|t| {
                t.as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| RegtestError::program("btcctl", format!("bad txid {t}")))
            })
            .collect()
    }

    /// A transaction by id (btcd runs with `--txindex`).
    pub fn raw_transaction(&self, txid: &Txid) -> Result<Transaction> {
        let hex = self.ctl(&["getrawtransaction", &txid.to_string()])?;
        let bytes = hex::decode(hex.trim())
            .map_err(|e| RegtestError::program("btcctl", format!("getrawtransaction: {e}")))?;
        encode::deserialize(&bytes)
            .map_err(|e| RegtestError::program("btcctl", format!("getrawtransaction: {e}")))
    }

    /// The txids in btcd's mempool.
    pub fn mempool(&self) -> Result<Vec<Txid>> {
        let v = self.ctl_json(&["getrawmempool"])?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().and_then(|s| s.parse().ok()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Broadcasts a transaction.
    pub fn send_raw(&self, tx: &Transaction) -> Result<Txid> {
        let hex = encode::serialize_hex(tx);
        self.ctl(&["sendrawtransaction", &hex])?;
        Ok(tx.compute_txid())
    }

    /// Marks a block invalid: the chain rewinds to its parent (a reorg once a longer branch
    /// is mined).
    pub fn invalidate(&self, hash: &BlockHash) -> Result<()> {
        self.ctl(&["invalidateblock", &hash.to_string()])
            .map(|_| ())
    }

    /// Reorganises the last `depth` blocks away and mines `depth + 1` new ones; the
    /// transactions of the old branch go back to the mempool where still valid.
    pub fn reorg(&self, depth: u32) -> Result<Vec<BlockHash>> {
        let tip = self.height()?;
        let fork = self.block_hash(tip + 1 - depth)?;
        self.invalidate(&fork)?;
        self.mine(depth + 1)
    }
}

/// Runs btcctl against a btcd at `rpc`.
pub fn ctl(btcctl: &Path, rpc: &str, cert: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(btcctl)
        .arg("--regtest")
        .arg(format!("--rpcuser={RPC_USER}"))
        .arg(format!("--rpcpass={RPC_PASS}"))
        .arg(format!("--rpcserver={rpc}"))
        .arg(format!("--rpccert={}", cert.display()))
        .args(args)
        .output()
        .map_err(|source| RegtestError::Spawn {
            program: "btcctl".into(),
            path: btcctl.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(RegtestError::program(
            "btcctl",
            format!(
                "{} failed: {}{}",
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
