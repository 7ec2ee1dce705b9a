//! Crash safety, reorgs and a fee spike, through the real binaries: a simnet served by
//! `sluice simnet serve` in its own process (blocks only on `sluice simnet mine`, no traffic),
//! and `sluiced --config <its sluice.yaml>` killed with SIGKILL and restarted on the same
//! datadir. Every swap must reach SUCCEEDED, and the "sluice" node's wallet plus channel balance
//! must go down by exactly the costs the swap recorded: nothing is lost across a crash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::poll;
use serde_json::Value;

/// Generous: a debug build on a loaded two-core machine.
const LIMIT: Duration = Duration::from_secs(120);

/// The amount of every swap.
const AMOUNT: u64 = 250_000;

fn json(out: &Output) -> Option<Value> {
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// `sluice simnet serve` in a temporary directory, killed on drop.
struct Simnet {
    child: Child,
    dir: tempfile::TempDir,
}

impl Simnet {
    fn serve() -> Simnet {
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

    fn config(&self) -> PathBuf {
        self.dir.path().join("sluice.yaml")
    }

    /// `sluice simnet ARGS --json`.
    fn run(&self, args: &[&str]) -> Value {
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

    fn mine(&self, n: u32) -> u64 {
        let mined = self.run(&["mine", &n.to_string()]);
        mined["heights"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_u64()
            .unwrap()
    }

    fn status(&self) -> Value {
        self.run(&["status"])
    }

    fn height(&self) -> u64 {
        self.status()["height"].as_u64().unwrap()
    }

    fn mempool(&self) -> Vec<String> {
        self.status()["mempool_txids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    }

    /// The "sluice" node's funds: (wallet confirmed + unconfirmed in msat + channel side in
    /// msat, HTLCs in flight, unconfirmed wallet sat).
    fn funds(&self) -> Funds {
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
        }
    }
}

impl Drop for Simnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy)]
struct Funds {
    total_msat: u64,
    pending_htlcs: u64,
    unconfirmed_sat: u64,
}

/// `sluiced --config <simnet's sluice.yaml>` on a datadir that outlives each run.
struct Sluiced {
    child: Child,
    datadir: PathBuf,
    rpc: String,
    log: PathBuf,
    run: u32,
}

impl Sluiced {
    fn start(datadir: &Path, config: &Path, run: u32) -> Sluiced {
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
            // Swaps may pay miners up to 10 % of the amount (the default ceiling is 2 %), so
            // the fee spike below still fits the swap's max_miner_fee and allows the reveal.
            .env("SLUICE_SWAP_MAX_MINER_FEE_PPM", "100000")
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
        };
        poll("sluiced to reach lnd", LIMIT, || {
            let info = json(&daemon.cli(&["--json", "getinfo"]))?;
            info["lnd"]["connected"].as_bool().filter(|c| *c)
        });
        daemon
    }

    fn cli(&self, args: &[&str]) -> Output {
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

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `sluice swap ID --json`.
    fn swap(&self, id: &str) -> Value {
        let out = self.cli(&["--json", "swap", id]);
        json(&out).unwrap_or_else(|| {
            panic!(
                "sluice swap failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            )
        })
    }

    fn state(&self, id: &str) -> String {
        let info = self.swap(id);
        let state = info["swap"]["state"].as_str().unwrap().to_owned();
        assert!(
            !state.starts_with("FAILED"),
            "the swap failed: {info}\n{}",
            self.log()
        );
        state
    }

    /// Creates a loop-out; answers its id.
    fn loop_out(&self) -> String {
        let out = self.cli(&["--json", "out", "--amt", &AMOUNT.to_string(), "--force"]);
        let created = json(&out).unwrap_or_else(|| {
            panic!(
                "sluice out failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            )
        });
        created["id"].as_str().unwrap().to_owned()
    }

    /// SIGKILL (no shutdown of any kind) and restart on the same datadir. Answers the new run
    /// once its swaps are resumed.
    fn crash_and_restart(self, simnet: &Simnet, while_down: impl FnOnce()) -> Sluiced {
        let mut this = self;
        this.child.kill().unwrap();
        this.child.wait().unwrap();
        while_down();
        let next = Sluiced::start(&this.datadir, &simnet.config(), this.run + 1);
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

/// A simnet and a daemon connected to it, with the L402 token already bought (so the funds
/// moved afterwards are only the swaps').
fn setup() -> (Simnet, tempfile::TempDir, Sluiced) {
    let simnet = Simnet::serve();
    let datadir = tempfile::tempdir().unwrap();
    let daemon = Sluiced::start(datadir.path(), &simnet.config(), 0);
    let out = daemon.cli(&["--json", "quote", "out", &AMOUNT.to_string()]);
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
fn settled(simnet: &Simnet) -> Funds {
    poll("the node's funds to settle", LIMIT, || {
        let funds = simnet.funds();
        (funds.pending_htlcs == 0 && funds.unconfirmed_sat == 0 && simnet.mempool().is_empty())
            .then_some(funds)
    })
}

/// Waits for the HTLC to be published (the only transaction in the mempool) while the swap
/// is still INITIATED; answers its txid.
fn htlc_published(simnet: &Simnet, daemon: &Sluiced, id: &str) -> String {
    poll("the HTLC in the mempool", LIMIT, || {
        let mempool = simnet.mempool();
        assert_eq!(daemon.state(id), "INITIATED");
        (mempool.len() == 1).then(|| mempool[0].clone())
    })
}

/// Polls until the swap is in `state`.
fn wait_state(daemon: &Sluiced, id: &str, state: &str) -> Value {
    poll(&format!("swap {id} in {state}"), LIMIT, || {
        (daemon.state(id) == state).then(|| daemon.swap(id))
    })
}

/// Drives the swap to SUCCEEDED, mining a block whenever a transaction waits or the spend
/// needs confirmations (never while the swap waits on something off chain).
fn drive_to_success(simnet: &Simnet, daemon: &Sluiced, id: &str) -> Value {
    drive_to(simnet, daemon, id, "SUCCEEDED")
}

/// Like [`drive_to_success`], up to `target`.
fn drive_to(simnet: &Simnet, daemon: &Sluiced, id: &str, target: &str) -> Value {
    poll(&format!("swap {id} to reach {target}"), LIMIT, || {
        let state = daemon.state(id);
        if state == target {
            return Some(daemon.swap(id));
        }
        if state == "SPEND_CONFIRMING" || !simnet.mempool().is_empty() {
            simnet.mine(1);
        }
        std::thread::sleep(Duration::from_millis(200));
        None
    })
}

/// Checks a succeeded swap against the funds before it: the node is down by exactly the
/// recorded costs (server fee, on-chain fee, routing fees), and the sweep paid us.
fn assert_costs_match_funds(simnet: &Simnet, info: &Value, before: Funds, what: &str) -> i64 {
    let after = settled(simnet);
    let costs = &info["swap"]["costs"];
    let server = costs["server_sat"].as_i64().unwrap();
    let onchain = costs["onchain_sat"].as_i64().unwrap();
    let offchain = costs["offchain_sat"].as_i64().unwrap();
    assert!(server > 0, "{what}: {info}");
    assert!(onchain > 0, "{what}: {info}");
    assert!(!info["sweep_txid"].as_str().unwrap().is_empty(), "{info}");
    assert_eq!(info["htlc_value_sat"], AMOUNT, "{info}");
    let lost_msat = i128::from(before.total_msat) - i128::from(after.total_msat);
    let costs_msat = i128::from(server + onchain + offchain) * 1000;
    // Routing fees are paid in msat and recorded in whole sat, rounded up per payment so the
    // record is never below the truth: at most 999 msat over for each of the two payments.
    assert!(
        (0..2000).contains(&(costs_msat - lost_msat)),
        "{what}: the node lost {lost_msat} msat but the swap recorded {costs_msat} msat: {info}"
    );
    onchain
}

/// Asserts the swap passed through the given states in order (its recorded history).
fn assert_history(info: &Value, expected: &[&str]) {
    let seen: Vec<&str> = info["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(dedup, expected, "history {seen:?}");
}

/// Where in a swap's life `sluiced` is killed.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Right after `sluice out` answered: payments being made, nothing on chain.
    PaymentsInFlight,
    /// The HTLC waits in the mempool; it is still there at the restart.
    HtlcPublished,
    /// The HTLC waits in the mempool; it confirms while the daemon is down.
    HtlcConfirmed,
    /// Just after the reveal was stored; a block is mined while the daemon is down.
    PreimageRevealed,
    /// The sweep waits in the mempool; it confirms while the daemon is down.
    SweepPublished,
    /// The sweep has one confirmation; it becomes final while the daemon is down.
    SpendConfirming,
}

#[test]
fn sigkill_at_every_swap_state_loses_nothing() {
    let (simnet, _datadir, mut daemon) = setup();
    for kill_at in [
        KillAt::PaymentsInFlight,
        KillAt::HtlcPublished,
        KillAt::HtlcConfirmed,
        KillAt::PreimageRevealed,
        KillAt::SweepPublished,
        KillAt::SpendConfirming,
    ] {
        let before = settled(&simnet);
        let id = daemon.loop_out();
        daemon = match kill_at {
            KillAt::PaymentsInFlight => {
                assert_eq!(daemon.state(&id), "INITIATED");
                daemon.crash_and_restart(&simnet, || {})
            }
            KillAt::HtlcPublished => {
                let htlc = htlc_published(&simnet, &daemon, &id);
                let daemon = daemon.crash_and_restart(&simnet, || {});
                assert_eq!(
                    simnet.mempool(),
                    vec![htlc],
                    "the HTLC is still unconfirmed"
                );
                daemon
            }
            KillAt::HtlcConfirmed => {
                htlc_published(&simnet, &daemon, &id);
                daemon.crash_and_restart(&simnet, || {
                    simnet.mine(1);
                })
            }
            KillAt::PreimageRevealed => {
                htlc_published(&simnet, &daemon, &id);
                simnet.mine(1);
                wait_state(&daemon, &id, "PREIMAGE_REVEALED");
                daemon.crash_and_restart(&simnet, || {
                    simnet.mine(1);
                })
            }
            KillAt::SweepPublished => {
                htlc_published(&simnet, &daemon, &id);
                simnet.mine(1);
                wait_state(&daemon, &id, "PREIMAGE_REVEALED");
                poll("the sweep in the mempool", LIMIT, || {
                    (simnet.mempool().len() == 1).then_some(())
                });
                daemon.crash_and_restart(&simnet, || {
                    simnet.mine(1);
                })
            }
            KillAt::SpendConfirming => {
                htlc_published(&simnet, &daemon, &id);
                simnet.mine(1);
                poll("the sweep in the mempool", LIMIT, || {
                    (simnet.mempool().len() == 1).then_some(())
                });
                simnet.mine(1);
                wait_state(&daemon, &id, "SPEND_CONFIRMING");
                daemon.crash_and_restart(&simnet, || {
                    simnet.mine(3);
                })
            }
        };
        let info = drive_to_success(&simnet, &daemon, &id);
        match kill_at {
            // A stored spend is re-checked against the chain at the restart: the swap goes
            // back to sweeping until the spend watch reports the spend, final by then.
            KillAt::SpendConfirming => assert_history(
                &info,
                &[
                    "INITIATED",
                    "PREIMAGE_REVEALED",
                    "SPEND_CONFIRMING",
                    "PREIMAGE_REVEALED",
                    "SUCCEEDED",
                ],
            ),
            KillAt::PaymentsInFlight
            | KillAt::HtlcPublished
            | KillAt::HtlcConfirmed
            | KillAt::PreimageRevealed
            | KillAt::SweepPublished => assert_history(
                &info,
                &[
                    "INITIATED",
                    "PREIMAGE_REVEALED",
                    "SPEND_CONFIRMING",
                    "SUCCEEDED",
                ],
            ),
        }
        assert_costs_match_funds(&simnet, &info, before, &format!("{kill_at:?}"));
    }
}

#[test]
fn reorgs_before_and_after_the_reveal_end_in_success() {
    let (simnet, _datadir, mut daemon) = setup();

    // Before the reveal: the HTLC confirms and is reorged out while the daemon is down. After
    // the restart the client must wait for it to confirm again before revealing.
    let before = settled(&simnet);
    let id = daemon.loop_out();
    let htlc = htlc_published(&simnet, &daemon, &id);
    daemon = daemon.crash_and_restart(&simnet, || {
        simnet.mine(1);
        assert!(simnet.mempool().is_empty(), "the HTLC confirmed");
        let reorged = simnet.run(&["reorg", "1"]);
        assert_eq!(reorged["returned_to_mempool"], 1, "{reorged}");
    });
    assert_eq!(simnet.mempool(), vec![htlc.clone()]);
    let info = daemon.swap(&id);
    assert_eq!(
        info["swap"]["state"], "INITIATED",
        "revealed on a reorged HTLC: {info}"
    );
    assert_eq!(info["htlc_outpoint"], "", "{info}");
    let reconfirmed_at = simnet.mine(1);
    let revealed = wait_state(&daemon, &id, "PREIMAGE_REVEALED");
    assert_eq!(
        revealed["htlc_outpoint"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some(htlc.as_str()),
        "{revealed}"
    );
    assert!(simnet.height() >= reconfirmed_at);
    let info = drive_to_success(&simnet, &daemon, &id);
    assert_costs_match_funds(&simnet, &info, before, "reorg before the reveal");

    // After the reveal: the block with the HTLC is reorged out while our sweep waits in the
    // mempool; then, once a sweep confirmed, its block is reorged out too (the swap goes back
    // from SPEND_CONFIRMING to PREIMAGE_REVEALED). The client keeps sweeping and succeeds.
    let before = settled(&simnet);
    let id = daemon.loop_out();
    htlc_published(&simnet, &daemon, &id);
    simnet.mine(1);
    wait_state(&daemon, &id, "PREIMAGE_REVEALED");
    poll("the sweep in the mempool", LIMIT, || {
        (simnet.mempool().len() == 1).then_some(())
    });
    // The HTLC returns to the mempool; the sweep, locked to the old tip's height against fee
    // sniping, is not final on the shorter chain and is dropped, as bitcoind drops it: the
    // client must publish it again.
    let reorged = simnet.run(&["reorg", "1"]);
    assert_eq!(reorged["returned_to_mempool"], 1, "{reorged}");
    assert_eq!(simnet.mempool().len(), 1, "only the HTLC waits");
    assert_eq!(daemon.state(&id), "PREIMAGE_REVEALED");
    drive_to(&simnet, &daemon, &id, "SPEND_CONFIRMING");
    let reorged = simnet.run(&["reorg", "1"]);
    assert!(
        reorged["returned_to_mempool"].as_u64() >= Some(1),
        "{reorged}"
    );
    let info = wait_state(&daemon, &id, "PREIMAGE_REVEALED");
    assert_eq!(info["sweep_txid"], "", "the spend was reorged out: {info}");
    let info = drive_to_success(&simnet, &daemon, &id);
    assert_history(
        &info,
        &[
            "INITIATED",
            "PREIMAGE_REVEALED",
            "SPEND_CONFIRMING",
            "PREIMAGE_REVEALED",
            "SPEND_CONFIRMING",
            "SUCCEEDED",
        ],
    );
    assert_costs_match_funds(&simnet, &info, before, "reorg after the reveal");
}

#[test]
fn a_fee_spike_25_blocks_before_expiry_still_gets_the_sweep_confirmed() {
    let (simnet, _datadir, mut daemon) = setup();

    // A swap at the ordinary fee, for comparison.
    let before = settled(&simnet);
    let id = daemon.loop_out();
    let info = drive_to_success(&simnet, &daemon, &id);
    let calm_onchain = assert_costs_match_funds(&simnet, &info, before, "calm swap");

    // The daemon is down from the HTLC's publication until 25 blocks before the expiry, so
    // the sweep is still to be made then; the fee rate jumps while it is down.
    let before = settled(&simnet);
    let id = daemon.loop_out();
    htlc_published(&simnet, &daemon, &id);
    let info = daemon.swap(&id);
    let expiry = info["expiry_height"].as_u64().unwrap();
    let max_miner_fee = info["limits"]["max_miner_fee_sat"].as_i64().unwrap();
    let calm_rate = simnet.status()["fee_sat_per_kw"].as_u64().unwrap();
    daemon = daemon.crash_and_restart(&simnet, || {
        let tip = simnet.height();
        assert!(expiry > tip + 25, "expiry {expiry} too close to tip {tip}");
        simnet.mine(u32::try_from(expiry - 25 - tip).unwrap());
        assert_eq!(simnet.height(), expiry - 25);
        // 100 sat/vB: the heaviest sweep then costs about 16,000 sat, within the swap's
        // max_miner_fee and a fifth of the HTLC, so the preimage may still be revealed.
        simnet.run(&["fee", "100"]);
    });
    let spiked_rate = simnet.status()["fee_sat_per_kw"].as_u64().unwrap();
    assert!(spiked_rate >= 10 * calm_rate, "{calm_rate} → {spiked_rate}");

    wait_state(&daemon, &id, "PREIMAGE_REVEALED");
    poll("the sweep in the mempool", LIMIT, || {
        (simnet.mempool().len() == 1).then_some(())
    });
    let swept_at = simnet.mine(1);
    assert!(swept_at < expiry);
    wait_state(&daemon, &id, "SPEND_CONFIRMING");
    let info = drive_to_success(&simnet, &daemon, &id);
    let spiked_onchain = assert_costs_match_funds(&simnet, &info, before, "fee spike");
    // The rate rose 10-fold; the sweep's fee follows it (the same sweep weight).
    assert!(
        spiked_onchain >= 10 * calm_onchain,
        "the sweep paid {spiked_onchain} sat in the spike, {calm_onchain} sat before: {info}"
    );
    assert!(
        spiked_onchain <= max_miner_fee,
        "25 blocks out the miner-fee cap of {max_miner_fee} sat still holds: {info}"
    );
}
