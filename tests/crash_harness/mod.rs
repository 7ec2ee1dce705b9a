//! The process-level crash harness shared by `swap_crash`, `loop_in_crash` and `fault_campaign`:
//! a simnet served by `sluice simnet serve` in its own process (blocks only on `sluice simnet
//! mine`, no traffic), and `sluiced --config <its sluice.yaml>` on a datadir that outlives each
//! run, killed with SIGKILL and restarted. Money is counted on the simnet's side: the "sluice"
//! node's wallet plus channel balance. While a daemon is down its store can be read
//! ([`load_loop_in`]): what it had saved when it was killed.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{self, poll};

/// Generous: a debug build on a loaded two-core machine.
pub const LIMIT: Duration = Duration::from_secs(120);

pub fn json(out: &Output) -> Option<Value> {
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// `sluice simnet serve` in a temporary directory, killed on drop.
pub struct Simnet {
    child: Child,
    dir: tempfile::TempDir,
}

impl Simnet {
    pub fn serve() -> Simnet {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("serve.stderr")).unwrap();
        let child = Command::new(common::sluice_bin())
            .args(["--json", "simnet", "--dir"])
            .arg(dir.path())
            .args(["serve", "--block-interval", "0s", "--no-traffic"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut simnet = Simnet { child, dir };
        let config = simnet.config();
        let child = &mut simnet.child;
        poll("the simnet to serve", LIMIT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sluice simnet serve exited with {status}");
            }
            config.exists().then_some(())
        });
        simnet
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("sluice.yaml")
    }

    /// `sluice simnet ARGS --json`.
    pub fn run(&self, args: &[&str]) -> Value {
        let out = Command::new(common::sluice_bin())
            .args(["--json", "simnet", "--dir"])
            .arg(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        json(&out).unwrap_or_else(|| {
            panic!(
                "sluice simnet {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// `sluice simnet ARGS --json`, its answer or its error.
    pub fn try_run(&self, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(common::sluice_bin())
            .args(["--json", "simnet", "--dir"])
            .arg(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        json(&out).ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Gives the "sluice" node outbound liquidity back when its side of its channels is below
    /// `floor_sat`: each peer pays it `chunk_sat` (or less, when that peer has less) over their
    /// channel. Answers what "sluice" received, in msat.
    pub fn refill(&self, floor_sat: u64, chunk_sat: u64) -> u64 {
        let status = self.status();
        let nodes = status["nodes"].as_array().unwrap();
        let local_msat = nodes
            .iter()
            .find(|n| n["name"] == "sluice")
            .map(|n| n["channel_local_msat"].as_u64().unwrap())
            .unwrap();
        if local_msat >= floor_sat * 1000 {
            return 0;
        }
        let mut received = 0;
        for peer in nodes
            .iter()
            .map(|n| n["name"].as_str().unwrap())
            .filter(|n| *n != "sluice" && *n != "loop")
        {
            for amount in [chunk_sat, chunk_sat / 4] {
                let paid =
                    self.try_run(&["pay", "--from", peer, "--to", "sluice", &amount.to_string()]);
                if paid.is_ok() {
                    received += amount * 1000;
                    break;
                }
            }
        }
        received
    }

    pub fn mine(&self, n: u32) -> u64 {
        let mined = self.run(&["mine", &n.to_string()]);
        mined["heights"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_u64()
            .unwrap()
    }

    /// Restarts the reference Loop server: down for `down` (e.g. "3s"), then serving again on
    /// the same address with every swap it knew.
    #[allow(dead_code)]
    pub fn restart_server(&self, down: &str) {
        self.run(&["restart-server", "--down", down]);
    }

    pub fn status(&self) -> Value {
        self.run(&["status"])
    }

    pub fn height(&self) -> u64 {
        self.status()["height"].as_u64().unwrap()
    }

    pub fn mempool(&self) -> Vec<String> {
        self.status()["mempool_txids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    }

    /// The "sluice" node's funds: (wallet confirmed + unconfirmed in msat + channel side in
    /// msat, HTLCs in flight, unconfirmed wallet sat).
    pub fn funds(&self) -> Funds {
        let status = self.status();
        let node = status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "sluice")
            .unwrap()
            .clone();
        let sat = |k: &str| node[k].as_u64().unwrap();
        Funds {
            total_msat: (sat("wallet_confirmed_sat") + sat("wallet_unconfirmed_sat")) * 1000
                + sat("channel_local_msat"),
            pending_htlcs: sat("pending_htlcs"),
            unconfirmed_sat: sat("wallet_unconfirmed_sat"),
            node,
        }
    }
}

impl Drop for Simnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
pub struct Funds {
    /// Wallet (confirmed and unconfirmed) plus channel side, msat.
    pub total_msat: u64,
    /// HTLCs in flight on its channels.
    pub pending_htlcs: u64,
    /// Unconfirmed wallet coins, sat.
    pub unconfirmed_sat: u64,
    /// The node's whole status, for a failure's message.
    pub node: Value,
}

/// `sluiced --config <simnet's sluice.yaml>` on a datadir that outlives each run.
pub struct Sluiced {
    child: Child,
    datadir: PathBuf,
    rpc: String,
    log: PathBuf,
    run: u32,
    env: Vec<(String, String)>,
}

impl Sluiced {
    /// Starts a run on `datadir` with `env` set (e.g. `SLUICE_SWAP_*` settings); a restart
    /// keeps it.
    pub fn start(datadir: &Path, config: &Path, run: u32, env: &[(&str, &str)]) -> Sluiced {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Sluiced::start_env(datadir, config, run, env)
    }

    fn start_env(datadir: &Path, config: &Path, run: u32, env: Vec<(String, String)>) -> Sluiced {
        let log = datadir.join(format!("sluiced.{run}.stderr"));
        let stderr = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(common::sluiced_bin())
            .arg("--config")
            .arg(config)
            .arg("--datadir")
            .arg(datadir)
            .args([
                "--rpc-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .env_remove("SLUICE_CONFIG")
            .env_remove("SLUICE_DATADIR")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let lock = datadir.join("sluiced.lock");
        let pid = u64::from(child.id());
        let rpc = poll("sluiced to listen", LIMIT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "sluiced exited early with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            // A killed run leaves its lock file behind: wait for this run's pid.
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&lock).ok()?).ok()?;
            (v["pid"].as_u64() == Some(pid)).then_some(())?;
            Some(v["rpc_listen"].as_str()?.to_owned())
        });
        let daemon = Sluiced {
            child,
            datadir: datadir.to_owned(),
            rpc,
            log,
            run,
            env,
        };
        poll("sluiced to reach lnd", LIMIT, || {
            let info = json(&daemon.cli(&["--json", "getinfo"]))?;
            info["lnd"]["connected"].as_bool().filter(|c| *c)
        });
        daemon
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(common::sluice_bin())
            .arg("--datadir")
            .arg(&self.datadir)
            .args(["--rpcserver", &self.rpc])
            .args(args)
            .env_remove("SLUICE_RPCSERVER")
            .env_remove("SLUICE_CREDENTIAL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `sluice swap ID --json`.
    pub fn swap(&self, id: &str) -> Value {
        let out = self.cli(&["--json", "swap", id]);
        json(&out).unwrap_or_else(|| {
            panic!(
                "sluice swap failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            )
        })
    }

    /// The swap's state; panics if it failed.
    pub fn state(&self, id: &str) -> String {
        let state = self.state_any(id);
        assert!(
            !state.starts_with("FAILED"),
            "the swap failed: {}\n{}",
            self.swap(id),
            self.log()
        );
        state
    }

    /// The swap's state, whatever it is.
    pub fn state_any(&self, id: &str) -> String {
        self.swap(id)["swap"]["state"].as_str().unwrap().to_owned()
    }

    /// Creates a loop-out of `amount` sat without asking; answers its id, or what the CLI said
    /// when it refused.
    pub fn try_loop_out(&self, amount: u64) -> Result<String, String> {
        let out = self.cli(&["--json", "out", "--amt", &amount.to_string(), "--force"]);
        match json(&out) {
            Some(created) => Ok(created["id"].as_str().unwrap().to_owned()),
            None => Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }

    /// Creates a loop-out of `amount` sat; answers its id.
    pub fn loop_out(&self, amount: u64) -> String {
        self.try_loop_out(amount)
            .unwrap_or_else(|e| panic!("sluice out failed: {e}\n{}", self.log()))
    }

    /// Creates a Loop In of `amount` sat without asking (`sluice in --force`, which binds the
    /// fee limits of the quote it takes); answers its id, or what the CLI said when it refused.
    pub fn try_loop_in(&self, amount: u64) -> Result<String, String> {
        let out = self.cli(&["--json", "in", "--amt", &amount.to_string(), "--force"]);
        match json(&out) {
            Some(created) => Ok(created["id"].as_str().unwrap().to_owned()),
            None => Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }

    /// Creates a Loop In of `amount` sat; answers its id.
    pub fn loop_in(&self, amount: u64) -> String {
        self.try_loop_in(amount)
            .unwrap_or_else(|e| panic!("sluice in failed: {e}\n{}", self.log()))
    }

    /// Creates a Loop In through the API's `LoopIn` with the fee limits given (the CLI always
    /// sends its quote's); answers its id.
    pub fn loop_in_with_limits(
        &self,
        amount: u64,
        max_swap_fee: u64,
        max_miner_fee: u64,
    ) -> String {
        let target = sluice::cli::client::Target {
            addr: self.rpc.clone(),
            tls_cert: self.datadir.join("tls.cert"),
            credential: self.datadir.join("admin.credential"),
        };
        let created = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut client = target.connect().await.map_err(|e| e.to_string())?;
                client
                    .loop_in(sluice::proto::sluice::LoopInRequest {
                        amount_sat: amount,
                        max_swap_fee_sat: max_swap_fee,
                        max_miner_fee_sat: max_miner_fee,
                        label: "crash test".to_owned(),
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| s.to_string())
            })
            .unwrap_or_else(|e| panic!("LoopIn failed: {e}\n{}", self.log()));
        created.into_inner().id
    }

    /// The logs of every run on this datadir so far, oldest first, concatenated.
    pub fn all_logs(&self) -> String {
        (0..=self.run)
            .map(|run| {
                std::fs::read_to_string(self.datadir.join(format!("sluiced.{run}.stderr")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Every swap, as `sluice swaps --json` lists them.
    pub fn swaps(&self) -> Vec<Value> {
        let out = self.cli(&["--json", "swaps"]);
        let listed = json(&out).unwrap_or_else(|| {
            panic!(
                "sluice swaps failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            )
        });
        listed["swaps"].as_array().cloned().unwrap_or_default()
    }

    /// SIGKILL (no shutdown of any kind) and restart on the same datadir. Answers the new run
    /// once its swaps are resumed.
    pub fn crash_and_restart(self, simnet: &Simnet, while_down: impl FnOnce()) -> Sluiced {
        let mut this = self;
        this.child.kill().unwrap();
        this.child.wait().unwrap();
        while_down();
        let env = std::mem::take(&mut this.env);
        let next = Sluiced::start_env(&this.datadir, &simnet.config(), this.run + 1, env);
        poll("sluiced to resume its swaps", LIMIT, || {
            next.log()
                .contains("unfinished swaps resumed")
                .then_some(())
        });
        next
    }
}

impl Drop for Sluiced {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The Loop In `id` and every progress saved for it, read from the store in `datadir`: call it
/// only while no daemon runs there (between a kill and the restart).
pub fn load_loop_in(
    datadir: &Path,
    id: &str,
) -> (
    sluice::store::loop_in::LoopInRecord,
    Vec<sluice::store::loop_in::LoopInUpdateRecord>,
) {
    let hash = sluice::domain::SwapHash(hex::decode(id).unwrap().try_into().unwrap());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = sluice::store::Store::open(&datadir.join(sluice::store::Store::FILE_NAME))
                .await
                .unwrap();
            let record = store.load_loop_in(hash).await.unwrap();
            let history = store.loop_in_history(hash).await.unwrap();
            store.close().await;
            (
                record.unwrap_or_else(|| panic!("no loop in {id} stored")),
                history,
            )
        })
}

/// A simnet and a daemon connected to it with `env`, with the L402 token already bought (a
/// quote for `amount`), so the funds moved afterwards are only the swaps'.
pub fn setup(amount: u64, env: &[(&str, &str)]) -> (Simnet, tempfile::TempDir, Sluiced) {
    setup_with_policy(amount, env, None)
}

/// [`setup`] with `policy` (YAML) in the datadir's policies folder from the first start.
pub fn setup_with_policy(
    amount: u64,
    env: &[(&str, &str)],
    policy: Option<&str>,
) -> (Simnet, tempfile::TempDir, Sluiced) {
    let mut simnet = Simnet::serve();
    let mut datadir = tempfile::tempdir().unwrap();
    if std::env::var_os("SLUICE_KEEP_DIRS").is_some() {
        // For a post-mortem: the simnet's and the daemon's directories (logs, database) stay.
        simnet.dir.disable_cleanup(true);
        datadir.disable_cleanup(true);
        eprintln!(
            "keeping the simnet in {} and the datadir in {}",
            simnet.dir.path().display(),
            datadir.path().display()
        );
    }
    if let Some(policy) = policy {
        let dir = datadir.path().join("policies");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("campaign.yaml"), policy).unwrap();
    }
    let daemon = Sluiced::start(datadir.path(), &simnet.config(), 0, env);
    let out = daemon.cli(&["--json", "quote", "out", &amount.to_string()]);
    assert!(
        out.status.success(),
        "quote failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    settled(&simnet);
    (simnet, datadir, daemon)
}

/// Waits until no HTLC is in flight on the node's channels and nothing waits in the mempool or
/// the wallet, so its balances are final; answers them.
pub fn settled(simnet: &Simnet) -> Funds {
    poll("the node's funds to settle", LIMIT, || {
        let funds = simnet.funds();
        (funds.pending_htlcs == 0 && funds.unconfirmed_sat == 0 && simnet.mempool().is_empty())
            .then_some(funds)
    })
}
