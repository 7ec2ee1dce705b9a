//! The regtest world: btcd, lnd nodes "sluice", "server", "peer1" and "peer2", funded from a
//! coinbase the world's own key mined, and joined by announced channels
//! sluice → peer1 → server and sluice → peer2 → server, so that sluice can pay the server
//! along two routes.
//!
//! `regtest.json` in the world's directory lists every process and address (what
//! `sluice regtest down` and the tests read); `sluice.yaml` points `sluiced --config` at the
//! "sluice" lnd.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bitcoin::absolute::LockTime;
use bitcoin::address::NetworkUnchecked;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    Address, Amount, CompressedPublicKey, Network, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxOut, Witness,
};
use serde::{Deserialize, Serialize};

use super::btcd::Btcd;
use super::lnd::Lnd;
use super::process::{self, Lifetime, wait_for};
use super::programs::Programs;
use super::{RegtestError, Result};

/// The state file in the world's directory.
pub const STATE_FILE: &str = "regtest.json";
/// The sluiced configuration file in the world's directory.
pub const CONFIG_FILE: &str = "sluice.yaml";

/// Blocks mined before anything else: btcd's regtest activates segwit and taproot by BIP9
/// votes (144-block windows, active from height 432) and enforces BIP65 (CLTV, which Loop's
/// timeout path uses) from height 1351, as mainnet does today.
pub const WARM_UP_BLOCKS: u32 = 1360;

/// Each node's wallet gets this many coins of [`COIN_SAT`] at the start.
pub const COINS_PER_NODE: usize = 4;
/// See [`COINS_PER_NODE`]: 0.25 BTC.
pub const COIN_SAT: u64 = 25_000_000;

/// How the world is built.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    /// Its directory: every program's data and log, `regtest.json`, `sluice.yaml`.
    pub dir: PathBuf,
    /// Owned (a test's world) or detached (`sluice regtest up`).
    pub lifetime: Lifetime,
    /// Each channel's capacity, sat.
    pub channel_capacity: u64,
}

impl WorldConfig {
    /// A test's world in `dir`: owned, 10M-sat channels.
    pub fn new(dir: impl Into<PathBuf>) -> WorldConfig {
        WorldConfig {
            dir: dir.into(),
            lifetime: Lifetime::Owned,
            channel_capacity: 10_000_000,
        }
    }
}

/// The running world.
#[derive(Debug)]
pub struct World {
    /// The chain.
    pub btcd: Btcd,
    /// sluice's node.
    pub sluice: Lnd,
    /// The swap server's node.
    pub server: Lnd,
    /// A routing peer between sluice and the server.
    pub peer1: Lnd,
    /// Another routing peer between sluice and the server.
    pub peer2: Lnd,
    dir: PathBuf,
    programs: PathBuf,
    /// The height of the next coinbase the world's key has not spent yet.
    next_coinbase: u32,
}

/// What `regtest.json` records of one lnd.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeState {
    /// The node's name.
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// gRPC address.
    pub rpc: String,
    /// Peer-to-peer address.
    pub p2p: String,
    /// Public key, hex.
    pub pubkey: String,
    /// `tls.cert`.
    pub tls_cert: PathBuf,
    /// `admin.macaroon`.
    pub macaroon: PathBuf,
    /// lnd's directory.
    pub dir: PathBuf,
}

/// `regtest.json`: every process and address of a world.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorldState {
    /// btcd's process id.
    pub btcd_pid: u32,
    /// btcd's RPC address.
    pub btcd_rpc: String,
    /// btcd's RPC certificate.
    pub btcd_cert: PathBuf,
    /// The lnd nodes.
    pub nodes: Vec<NodeState>,
    /// Other processes started into the world (e.g. the reference Loop server): name, pid.
    #[serde(default)]
    pub extra: Vec<(String, u32)>,
    /// The directory of the programs the world runs.
    pub programs: PathBuf,
}

impl WorldState {
    /// Reads `DIR/regtest.json`.
    pub fn read(dir: &Path) -> Result<WorldState> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| RegtestError::file(&path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            RegtestError::file(
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            )
        })
    }

    /// One node by name.
    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Every process id, the world's extras first and btcd last (the order to stop them).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.extra.iter().map(|(_, p)| *p).collect();
        pids.extend(self.nodes.iter().map(|n| n.pid));
        pids.push(self.btcd_pid);
        pids
    }
}

/// The key the world mines to: regtest coins only, never anything of value.
fn miner_key() -> Result<SecretKey> {
    SecretKey::from_slice(&[0x5a; 32])
        .map_err(|e| RegtestError::program("miner key", e.to_string()))
}

fn miner_address(
    secp: &Secp256k1<bitcoin::secp256k1::All>,
) -> Result<(Address, CompressedPublicKey)> {
    let pk = CompressedPublicKey(miner_key()?.public_key(secp));
    Ok((Address::p2wpkh(&pk, Network::Regtest), pk))
}

impl World {
    /// Starts and funds the world, opens and announces its channels. Takes a minute or two.
    pub fn start(programs: &Programs, config: &WorldConfig) -> Result<World> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| RegtestError::file(&dir, e))?;
        let secp = Secp256k1::new();
        let (mining_addr, _) = miner_address(&secp)?;
        let btcd = Btcd::start(
            programs,
            &dir.join("btcd"),
            &mining_addr.to_string(),
            config.lifetime,
        )?;
        let mut left = WARM_UP_BLOCKS;
        while left > 0 {
            let n = left.min(200);
            btcd.mine(n)?;
            left -= n;
        }
        let spawn =
            |name: &str| Lnd::spawn(programs, name, &dir.join(name), &btcd, config.lifetime);
        let mut sluice = spawn("sluice")?;
        let mut server = spawn("server")?;
        let mut peer1 = spawn("peer1")?;
        let mut peer2 = spawn("peer2")?;
        let height = btcd.height()?;
        for node in [&mut sluice, &mut server, &mut peer1, &mut peer2] {
            node.ready_or_respawn(programs, &btcd, config.lifetime, height)?;
        }
        let mut world = World {
            btcd,
            sluice,
            server,
            peer1,
            peer2,
            dir,
            programs: programs.dir().to_path_buf(),
            next_coinbase: 1,
        };
        world.write_state(&[])?;
        world.fund()?;
        world.open_channels(config.channel_capacity)?;
        Ok(world)
    }

    /// The world's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every lnd.
    pub fn nodes(&self) -> [&Lnd; 4] {
        [&self.sluice, &self.server, &self.peer1, &self.peer2]
    }

    /// Mines `n` blocks and waits until every lnd has them.
    pub fn mine(&mut self, n: u32) -> Result<()> {
        self.btcd.mine(n)?;
        self.sync()
    }

    /// Waits until every lnd is at btcd's height.
    pub fn sync(&mut self) -> Result<()> {
        let height = self.btcd.height()?;
        for node in [
            &mut self.sluice,
            &mut self.server,
            &mut self.peer1,
            &mut self.peer2,
        ] {
            node.wait_synced(height, Duration::from_secs(60))?;
        }
        Ok(())
    }

    /// Pays [`COINS_PER_NODE`] coins to every node, and confirms them.
    fn fund(&mut self) -> Result<()> {
        let mut output = Vec::new();
        for node in self.nodes() {
            for _ in 0..COINS_PER_NODE {
                let addr = node.new_address("p2wkh")?;
                let addr = Address::<NetworkUnchecked>::from_str(&addr)
                    .map_err(|e| RegtestError::program(&node.name, format!("address {addr}: {e}")))?
                    .assume_checked();
                output.push(TxOut {
                    value: Amount::from_sat(COIN_SAT),
                    script_pubkey: addr.script_pubkey(),
                });
            }
        }
        self.spend_coinbase(output)?;
        self.mine(1)?;
        for node in self.nodes() {
            let want = COIN_SAT * COINS_PER_NODE as u64;
            wait_for(
                &format!("{}'s wallet to see its coins", node.name),
                Duration::from_secs(60),
                || Ok((node.confirmed_balance()? >= want).then_some(())),
            )?;
        }
        Ok(())
    }

    /// Pays `amount` sat to `script` from outside every node's wallet (a coinbase of the
    /// world's own key) and broadcasts it unconfirmed; returns the transaction. The paying
    /// output is output 0.
    pub fn pay_to(&mut self, script: ScriptBuf, amount: u64) -> Result<Transaction> {
        self.spend_coinbase(vec![TxOut {
            value: Amount::from_sat(amount),
            script_pubkey: script,
        }])
    }

    /// Spends the next unspent coinbase of the world's key to `output` (change back to the
    /// key) and broadcasts the transaction.
    fn spend_coinbase(&mut self, mut output: Vec<TxOut>) -> Result<Transaction> {
        let secp = Secp256k1::new();
        let (mining_addr, pk) = miner_address(&secp)?;
        let script = mining_addr.script_pubkey();
        let height = self.next_coinbase;
        let coinbase_txid = *self
            .btcd
            .block_txids(&self.btcd.block_hash(height)?)?
            .first()
            .ok_or_else(|| {
                RegtestError::program("btcd", format!("block {height} has no coinbase"))
            })?;
        let coinbase = self.btcd.raw_transaction(&coinbase_txid)?;
        let (vout, prev) = coinbase
            .output
            .iter()
            .enumerate()
            .find(|(_, o)| o.script_pubkey == script)
            .ok_or_else(|| {
                RegtestError::program("btcd", format!("block {height} does not pay the miner key"))
            })?;
        let paid: u64 = output.iter().map(|o| o.value.to_sat()).sum();
        let fee = 50_000;
        let change = prev
            .value
            .to_sat()
            .checked_sub(paid + fee)
            .ok_or_else(|| RegtestError::program("btcd", "the coinbase is too small"))?;
        output.push(TxOut {
            value: Amount::from_sat(change),
            script_pubkey: script.clone(),
        });
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: coinbase_txid,
                    vout: u32::try_from(vout).unwrap_or(0),
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output,
        };
        let sighash = SighashCache::new(&tx)
            .p2wpkh_signature_hash(0, &script, prev.value, EcdsaSighashType::All)
            .map_err(|e| RegtestError::program("funding", e.to_string()))?;
        let signature = secp.sign_ecdsa(
            &Message::from_digest(sighash.to_byte_array()),
            &miner_key()?,
        );
        tx.input[0].witness = Witness::p2wpkh(
            &bitcoin::ecdsa::Signature {
                signature,
                sighash_type: EcdsaSighashType::All,
            },
            &pk.0,
        );
        self.btcd.send_raw(&tx)?;
        self.next_coinbase += 1;
        Ok(tx)
    }

    /// Opens sluice → peer1, sluice → peer2, peer1 → server, peer2 → server, confirms them
    /// past the announcement depth and waits until sluice's graph has every edge.
    fn open_channels(&mut self, capacity: u64) -> Result<()> {
        self.sluice.open_channel(&self.peer1, capacity, 0)?;
        self.sluice.open_channel(&self.peer2, capacity, 0)?;
        self.peer1.open_channel(&self.server, capacity, 0)?;
        self.peer2.open_channel(&self.server, capacity, 0)?;
        // Wait for the funding transactions to reach btcd's mempool.
        wait_for(
            "the funding transactions in btcd's mempool",
            Duration::from_secs(30),
            || Ok((self.btcd.mempool()?.len() >= 4).then_some(())),
        )?;
        // Six confirmations: lnd announces a channel at that depth.
        self.mine(6)?;
        for node in self.nodes() {
            // Every node has two channels in this topology.
            let want = 2;
            wait_for(
                &format!("{}'s channels to be active", node.name),
                Duration::from_secs(60),
                || {
                    let active = node
                        .channels()?
                        .iter()
                        .filter(|c| c["active"].as_bool() == Some(true))
                        .count();
                    Ok((active >= want).then_some(()))
                },
            )?;
        }
        // Both directions' policies of every channel, on every node: a swap payment pinned to
        // one of sluice's channels needs the policy of the hop after it, which may arrive
        // after a route through the other channel is already found.
        for node in self.nodes() {
            wait_for(
                &format!("{}'s graph to hold the four channels both ways", node.name),
                Duration::from_secs(120),
                || Ok((node.routable_edges()? >= 4).then_some(())),
            )?;
        }
        let server = self.server.pubkey.clone();
        wait_for(
            "a route from sluice to the server",
            Duration::from_secs(120),
            || {
                Ok(self
                    .sluice
                    .cli(&["queryroutes", "--dest", &server, "--amt", "1000000"])
                    .ok()
                    .filter(|v| v["routes"].as_array().is_some_and(|r| !r.is_empty()))
                    .map(|_| ()))
            },
        )?;
        Ok(())
    }

    /// Writes `regtest.json`, with `extra` processes started into the world.
    pub fn write_state(&mut self, extra: &[(String, u32)]) -> Result<WorldState> {
        let btcd_pid = self.btcd.proc().pid();
        let state = WorldState {
            btcd_pid,
            btcd_rpc: self.btcd.rpc.clone(),
            btcd_cert: self.btcd.rpc_cert.clone(),
            nodes: [
                &mut self.sluice,
                &mut self.server,
                &mut self.peer1,
                &mut self.peer2,
            ]
            .into_iter()
            .map(|n| NodeState {
                name: n.name.clone(),
                pid: n.proc().pid(),
                rpc: n.rpc.clone(),
                p2p: n.p2p.clone(),
                pubkey: n.pubkey.clone(),
                tls_cert: n.tls_cert(),
                macaroon: n.admin_macaroon(),
                dir: n.dir().to_path_buf(),
            })
            .collect(),
            extra: extra.to_vec(),
            programs: self.programs.clone(),
        };
        let path = self.dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(&state)
            .map_err(|e| RegtestError::program("regtest.json", e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| RegtestError::file(&path, e))?;
        Ok(state)
    }

    /// Writes `sluice.yaml` for `sluiced --config`: network regtest, the "sluice" lnd, and
    /// the swap server at `server` (plaintext on loopback) when one runs.
    pub fn write_sluice_yaml(&self, server: Option<&str>) -> Result<PathBuf> {
        let path = self.dir.join(CONFIG_FILE);
        std::fs::write(&path, sluice_yaml(&self.sluice, server, &path))
            .map_err(|e| RegtestError::file(&path, e))?;
        Ok(path)
    }

    /// The arguments of `sluice loopserver` on this world's "server" lnd, listening on `listen`
    /// (plaintext unless `extra` says `--tls`).
    pub fn loopserver_args(&self, listen: &str, extra: &[&str]) -> Vec<String> {
        let lnd = self.server.lnd_config();
        let mut args: Vec<String> = vec![
            "loopserver".into(),
            "--network".into(),
            "regtest".into(),
            "--lnd.host".into(),
            lnd.host,
            "--lnd.tls_cert".into(),
            lnd.tls_cert_path.display().to_string(),
            "--lnd.macaroon".into(),
            lnd.macaroon_path.display().to_string(),
            "--listen".into(),
            listen.to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    /// Lets every process run on (a detached world); returns the state to find them.
    pub fn detach(self) -> Vec<u32> {
        let World {
            btcd,
            sluice,
            server,
            peer1,
            peer2,
            ..
        } = self;
        let mut pids = vec![btcd.into_proc().release()];
        for n in [sluice, server, peer1, peer2] {
            pids.push(n.into_proc().release());
        }
        pids
    }
}

/// The text of a `sluice.yaml` for `node`.
pub fn sluice_yaml(node: &Lnd, server: Option<&str>, path: &Path) -> String {
    // JSON strings are YAML double-quoted scalars, so any path is written safely.
    let quote = |p: &Path| serde_json::Value::from(p.display().to_string()).to_string();
    let mut text = format!(
        "# Written by `sluice regtest up`: `sluiced --config {path}` runs against the\n\
         # regtest world's \"sluice\" lnd.\n\
         network: regtest\n\
         lnd:\n  host: {host}\n  tls_cert: {cert}\n  macaroon: {macaroon}\n",
        path = path.display(),
        host = node.rpc,
        cert = quote(&node.tls_cert()),
        macaroon = quote(&node.admin_macaroon()),
    );
    if let Some(server) = server {
        text.push_str(&format!("server:\n  address: {server}\n  tls: insecure\n"));
    }
    text
}

/// Stops every process of the world in `dir` (SIGTERM, then SIGKILL after 10 s); returns how
/// many were still running.
pub fn down(dir: &Path) -> Result<usize> {
    let state = WorldState::read(dir)?;
    let running: Vec<u32> = state
        .pids()
        .into_iter()
        .filter(|p| process::alive(*p))
        .collect();
    for pid in &running {
        process::terminate(*pid);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while running.iter().any(|p| process::alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in running.iter().filter(|p| process::alive(**p)) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    // A killed process is gone only once the kernel has torn it down: wait for that, so
    // `down` returning means nothing of the world runs any more.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while running.iter().any(|p| process::alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<String> = running
        .iter()
        .filter(|p| process::alive(**p))
        .map(u32::to_string)
        .collect();
    if !left.is_empty() {
        return Err(RegtestError::program(
            "down",
            format!(
                "processes {} survived SIGKILL; stop them by hand",
                left.join(", ")
            ),
        ));
    }
    Ok(running.len())
}
