//! Shared by the `realnode_*` test binaries: the pinned real programs and a regtest world of
//! them (btcd, lnd nodes "sluice", "server", "peer1", "peer2"), torn down with the test.
//!
//! Without Go on the machine (and without `SLUICE_REALNODE_BIN`) every real-node test is
//! skipped with one line saying why and how to enable it; under CI (`CI=true`) that is a
//! failure instead.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use sluice::regtest::{Programs, World, WorldConfig};

/// The real programs, or `None` (after one line on stderr) when the test must be skipped.
pub fn programs() -> Option<Programs> {
    if let Some(found) = Programs::from_env() {
        return Some(found.unwrap_or_else(|e| panic!("{e}")));
    }
    let go = Command::new("go").arg("version").output();
    if !matches!(go, Ok(ref o) if o.status.success()) {
        let why = "skipped: the real-node tests need Go 1.25.12+ on PATH to build btcd, lnd and \
                   loop from their pinned modules (tools/realnode/build), or SLUICE_REALNODE_BIN \
                   naming a directory of built programs";
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "CI=true: {why}"
        );
        eprintln!("{why}");
        return None;
    }
    Some(Programs::build(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|e| panic!("{e}")))
}

/// A test's world: the processes stop when it is dropped (or when the test process dies).
pub struct TestWorld {
    pub world: World,
    pub programs: Programs,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for TestWorld {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl std::ops::DerefMut for TestWorld {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

/// Starts a world on this thread (the processes are tied to it), or `None` to skip.
pub fn world() -> Option<TestWorld> {
    let programs = programs()?;
    let dir = tempfile::Builder::new()
        .prefix("sluice-regtest-")
        .tempdir()
        .unwrap();
    let world = match World::start(&programs, &WorldConfig::new(dir.path())) {
        Ok(w) => w,
        Err(e) => {
            // Keep the logs for a failed start.
            let kept = dir.keep();
            panic!("the regtest world did not start ({}): {e}", kept.display());
        }
    };
    Some(TestWorld {
        world,
        programs,
        dir,
    })
}

/// The reference Loop server (`sluice loopserver`) on the world's "server" lnd, stopped with
/// the test.
pub struct LoopServerProc {
    pub proc: sluice::regtest::process::Proc,
    pub addr: String,
}

/// Starts `sluice loopserver` on the world's "server" lnd with `extra` flags and waits until it
/// listens.
pub fn loopserver(world: &TestWorld, extra: &[&str]) -> LoopServerProc {
    let port = sluice::regtest::process::free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let args = world.loopserver_args(&addr, extra);
    let mut proc = sluice::regtest::process::Proc::spawn(
        "sluice loopserver",
        Path::new(env!("CARGO_BIN_EXE_sluice")),
        &args,
        &world.dir.path().join(format!("loopserver-{port}.log")),
        sluice::regtest::Lifetime::Owned,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(&addr).is_err() {
        if let Err(e) = proc.check_running() {
            panic!("{e}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sluice loopserver did not listen: {}",
            proc.log_tail(20)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    LoopServerProc { proc, addr }
}

/// Mines a block every `every` on the world's btcd from a thread of its own, until dropped.
pub struct Miner {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Miner {
    pub fn start(world: &TestWorld, every: std::time::Duration) -> Miner {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let btcctl = world.programs.path("btcctl");
        let rpc = world.btcd.rpc.clone();
        let cert = world.btcd.rpc_cert.clone();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(every);
                let _ = sluice::regtest::btcd::ctl(&btcctl, &rpc, &cert, &["generate", "1"]);
            }
        });
        Miner {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// sluice's node: wallet balance (confirmed + unconfirmed) plus the local balance of its
/// channels, in sat, as lncli reports them.
pub fn sluice_total(world: &TestWorld) -> u64 {
    let wallet = world.sluice.cli(&["walletbalance"]).unwrap();
    let local: u64 = world
        .sluice
        .channels()
        .unwrap()
        .iter()
        .map(|c| sluice::regtest::lnd::number(&c["local_balance"]))
        .sum();
    sluice::regtest::lnd::number(&wallet["confirmed_balance"])
        + sluice::regtest::lnd::number(&wallet["unconfirmed_balance"])
        + local
}

/// Gives sluice's node inbound liquidity (and the server outbound): sluice pays the server
/// 1,000,000 sat through one of its channels, which moves balance to the far side of that
/// channel and of the server's. Returns the payment's hash.
pub fn move_liquidity_to_the_server(world: &TestWorld) -> String {
    move_liquidity_to_the_server_through(world, None)
}

/// As [`move_liquidity_to_the_server`], with the payment's last hop pinned to `last_hop` (a
/// node key) when given: the server then gains outbound on its channel with that peer, the
/// only way it can later pay sluice through that peer.
pub fn move_liquidity_to_the_server_through(world: &TestWorld, last_hop: Option<&str>) -> String {
    let invoice = world
        .server
        .cli(&["addinvoice", "--amt", "1000000"])
        .unwrap();
    let pay_req = invoice["payment_request"].as_str().unwrap();
    let mut args = vec!["payinvoice", "--force", "--json"];
    if let Some(peer) = last_hop {
        args.extend(["--last_hop", peer]);
    }
    args.push(pay_req);
    let paid = world.sluice.cli(&args).unwrap();
    assert_eq!(paid["status"], "SUCCEEDED", "{paid}");
    invoice["r_hash"].as_str().unwrap().to_owned()
}

/// loopd on the world's "sluice" lnd, pointed at a reference server over TLS, stopped with the
/// test; `loop` runs against it.
pub struct Loopd {
    pub proc: sluice::regtest::process::Proc,
    pub dir: std::path::PathBuf,
    pub rpc: String,
    loop_cli: std::path::PathBuf,
}

impl Loopd {
    /// Starts loopd and waits until `loop terms` answers.
    pub fn start(world: &TestWorld, server_addr: &str, server_cert: &Path) -> Loopd {
        let dir = world.dir.path().join("loopd");
        std::fs::create_dir_all(&dir).unwrap();
        let rpc = format!(
            "127.0.0.1:{}",
            sluice::regtest::process::free_port().unwrap()
        );
        let rest = format!(
            "127.0.0.1:{}",
            sluice::regtest::process::free_port().unwrap()
        );
        let lnd = world.sluice.lnd_config();
        let args: Vec<String> = vec![
            "--network=regtest".into(),
            format!("--loopdir={}", dir.display()),
            format!("--rpclisten={rpc}"),
            format!("--restlisten={rest}"),
            format!("--lnd.host={}", lnd.host),
            format!("--lnd.macaroonpath={}", lnd.macaroon_path.display()),
            format!("--lnd.tlspath={}", lnd.tls_cert_path.display()),
            format!("--server.host={server_addr}"),
            format!("--server.tlspath={}", server_cert.display()),
        ];
        let proc = sluice::regtest::process::Proc::spawn(
            "loopd",
            &world.programs.path("loopd"),
            &args,
            &dir.join("loopd.out"),
            sluice::regtest::Lifetime::Owned,
        )
        .unwrap();
        let mut loopd = Loopd {
            proc,
            dir,
            rpc,
            loop_cli: world.programs.path("loop"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Err(e) = loopd.proc.check_running() {
                panic!("{e}");
            }
            if loopd.cli(&["getinfo"]).status.success() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "loopd did not answer: {}",
                loopd.proc.log_tail(20)
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        loopd
    }

    /// Runs Loop's `loop` CLI against this loopd.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }

    /// Loop's `loop` CLI against this loopd, to run (or spawn: `monitor`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.loop_cli);
        command
            .args(["--network", "regtest", "--rpcserver", &self.rpc])
            .arg("--tlscertpath")
            .arg(self.dir.join("regtest/tls.cert"))
            .arg("--macaroonpath")
            .arg(self.dir.join("regtest/loop.macaroon"))
            .args(args)
            .stdin(std::process::Stdio::null());
        command
    }

    /// `loop ARGS`, which must succeed: its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "loop {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }
}

/// The witness length of the input that spent a swap's HTLC (`sluice --json swap ID`'s
/// `htlc_outpoint`, spent by `sweep_txid`), read from btcd: 1 a key-path spend, 3 a leaf
/// without the preimage, 4 the success leaf.
pub fn htlc_spend_witness_len(world: &TestWorld, swap: &serde_json::Value) -> usize {
    let txid: bitcoin::Txid = swap["sweep_txid"].as_str().unwrap().parse().unwrap();
    let htlc: bitcoin::OutPoint = swap["htlc_outpoint"].as_str().unwrap().parse().unwrap();
    let tx = world.btcd.raw_transaction(&txid).unwrap();
    tx.input
        .iter()
        .find(|i| i.previous_output == htlc)
        .expect("the spend spends the HTLC")
        .witness
        .len()
}
