//! Footprint side by side with loopd, in one run on one regtest world: resident memory after
//! start and after a run of blocks, CPU while idle (autoloop on, nothing to do) and CPU per
//! completed Loop Out, for sluiced and for loopd. A measurement, not a test: it is ignored by
//! default and prints a table for `docs/benchmarks.md`.
//!
//! ```text
//! cargo build --release --bins
//! SLUICE_REALNODE_BIN=$(tools/realnode/build | tail -n1) SLUICE_FOOTPRINT_BIN=target/release \
//!   cargo test --test realnode_footprint -- --ignored --nocapture
//! ```
//!
//! `SLUICE_FOOTPRINT_IDLE_SECS` sets the idle window (600 s), `SLUICE_FOOTPRINT_BLOCKS` the run
//! of blocks mined one a second (100), `SLUICE_FOOTPRINT_SWAPS` the Loop Outs per daemon (3).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod realnode_harness;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::poll;
use realnode_harness::{Loopd, Miner, loopserver};

/// Resident memory (kB) and CPU time (user + system, seconds) of a process, from /proc.
fn sample(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat (1-based), 11 and 12 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    (rss, ticks as f64 / 100.0)
}

/// A whole number from the environment, or `default`.
fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A daemon's own monitor stream (`sluice monitor`, `loop monitor`), started before a swap so
/// the bench learns that the swap ended without asking the daemon: status calls would be
/// counted as the swap's CPU, and a faster CLI would ask more often.
struct Monitor {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Monitor {
    fn start(mut command: Command) -> Monitor {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Monitor { child, lines }
    }

    /// Waits (at most four minutes) for a line that `done` accepts.
    fn until(mut self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if done(&line) => break,
                Ok(_) => {}
                Err(e) => panic!("no end of {what} in its monitor stream: {e}"),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory split (kB): anonymous (heap, stacks) and file-backed (the program's own
/// pages), from /proc/PID/smaps_rollup.
fn rss_split(pid: u32) -> (u64, u64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let kb = |key: &str| -> u64 {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        kb("Anonymous:"),
        kb("Rss:").saturating_sub(kb("Anonymous:")),
    )
}

#[test]
#[ignore = "a measurement for docs/benchmarks.md; run it with --ignored --nocapture"]
fn sluiced_and_loopd_side_by_side() {
    let Some(mut w) = realnode_harness::world() else {
        return;
    };
    let bin = std::env::var_os("SLUICE_FOOTPRINT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::sluiced_bin().parent().unwrap().to_path_buf());
    let cert = w.dir.path().join("loopserver.cert");
    let key = w.dir.path().join("loopserver.key");
    let server = loopserver(
        &w,
        &[
            "--min-cltv-delta",
            "80",
            "--tls",
            "--tls.cert",
            cert.to_str().unwrap(),
            "--tls.key",
            key.to_str().unwrap(),
        ],
    );
    // sluiced on the "sluice" lnd, against the same server over pinned TLS.
    let config = w.write_sluice_yaml(None).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "server:\n  address: {}\n  tls: pinned\n  tls_cert: {:?}\n",
        server.addr,
        cert.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    let datadir = tempfile::tempdir().unwrap();
    let mut sluiced = Command::new(bin.join("sluiced"))
        .arg("--config")
        .arg(&config)
        .arg("--datadir")
        .arg(datadir.path())
        .args([
            "--rpc-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cli_command = |args: &[&str]| {
        let lock = std::fs::read_to_string(datadir.path().join("sluiced.lock")).unwrap_or_default();
        let rpc = serde_json::from_str::<serde_json::Value>(&lock)
            .ok()
            .and_then(|v| v["rpc_listen"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut command = Command::new(bin.join("sluice"));
        command
            .arg("--datadir")
            .arg(datadir.path())
            .args(["--rpcserver", &rpc])
            .args(args);
        command
    };
    let cli = |args: &[&str]| cli_command(args).output().unwrap();
    poll("sluiced to reach lnd", Duration::from_secs(60), || {
        let out = cli(&["--json", "getinfo"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["lnd"]["connected"].as_bool() == Some(true)).then_some(())
    });
    let _ = common::when_ready(|| cli(&["autoloop", "on"]));
    let loopd = Loopd::start(&w, &server.addr, &cert);
    let _ = loopd.cli(&["setparams", "--autoloop=true", "--autobudget=100000"]);
    let sluiced_pid = sluiced.id();
    let loopd_pid = loopd.proc.pid();

    std::thread::sleep(Duration::from_secs(10));
    let start = (sample(sluiced_pid), sample(loopd_pid));
    let split = (rss_split(sluiced_pid), rss_split(loopd_pid));

    // Idle: a block every 10 s; CPU scaled to an hour. The window is long because the
    // figures are 100 Hz ticks of a few seconds an hour (`SLUICE_FOOTPRINT_IDLE_SECS`).
    let idle_window = Duration::from_secs(env_u64("SLUICE_FOOTPRINT_IDLE_SECS", 600));
    let idle_start = (sample(sluiced_pid).1, sample(loopd_pid).1);
    {
        let _m = Miner::start(&w, Duration::from_secs(10));
        std::thread::sleep(idle_window);
    }
    let idle_end = (sample(sluiced_pid).1, sample(loopd_pid).1);
    let per_hour = 3600.0 / idle_window.as_secs_f64();

    // A run of blocks: 100 more, one a second (`SLUICE_FOOTPRINT_BLOCKS`).
    let blocks = env_u64("SLUICE_FOOTPRINT_BLOCKS", 100);
    if blocks > 0 {
        let _m = Miner::start(&w, Duration::from_secs(1));
        std::thread::sleep(Duration::from_secs(blocks));
    }
    w.sync().unwrap();
    let after_blocks = (sample(sluiced_pid), sample(loopd_pid));

    // Loop Outs, one after another for each daemon: CPU of its own process from the call to
    // the swap's success, averaged (`SLUICE_FOOTPRINT_SWAPS`, 3 by default). Each daemon's own
    // monitor stream says when its swap ended.
    let swaps = env_u64("SLUICE_FOOTPRINT_SWAPS", 3);
    let mut sluice_swap = (0.0, Duration::ZERO);
    let mut loopd_swap = (0.0, Duration::ZERO);
    for _ in 0..swaps {
        let monitor = Monitor::start(cli_command(&["--json", "monitor"]));
        // The stream is open once the CLI has connected; a moment is plenty.
        std::thread::sleep(Duration::from_secs(1));
        let before = sample(sluiced_pid).1;
        let out = cli(&["--json", "out", "--amt", "250000", "--force"]);
        let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_else(|e| {
            panic!("sluice out: {e}: {}", String::from_utf8_lossy(&out.stderr))
        })["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let t = Instant::now();
        {
            let _m = Miner::start(&w, Duration::from_secs(2));
            monitor.until("sluiced's swap", |line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .is_ok_and(|v| v["id"] == id.as_str() && v["state"] == "SUCCEEDED")
            });
        }
        sluice_swap.0 += sample(sluiced_pid).1 - before;
        sluice_swap.1 += t.elapsed();

        let monitor = Monitor::start(loopd.command(&["monitor"]));
        std::thread::sleep(Duration::from_secs(1));
        let before = sample(loopd_pid).1;
        let out = loopd.ok(&["out", "--amt", "250000", "--force"]);
        assert!(out.contains("Swap initiated"), "{out}");
        // `loop monitor` prints no id for a Loop Out: its update time (RFC 3339, first on the
        // line) tells this swap's success from earlier ones, which ended before the monitor
        // started, more than a second before this swap.
        let started = chrono::Utc::now().timestamp();
        let t = Instant::now();
        {
            let _m = Miner::start(&w, Duration::from_secs(2));
            monitor.until("loopd's swap", |line| {
                let at = line.split_whitespace().next().and_then(|t| {
                    chrono::DateTime::parse_from_rfc3339(t)
                        .ok()
                        .map(|t| t.timestamp())
                });
                line.contains("LOOP_OUT SUCCESS") && at.is_some_and(|at| at >= started)
            });
        }
        loopd_swap.0 += sample(loopd_pid).1 - before;
        loopd_swap.1 += t.elapsed();
    }
    let n = swaps.max(1) as f64;
    let sluice_swap = (sluice_swap.0 / n, sluice_swap.1.div_f64(n));
    let loopd_swap = (loopd_swap.0 / n, loopd_swap.1.div_f64(n));

    println!("| figure | sluiced | loopd | sluiced / loopd |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, a: f64, b: f64, unit: &str| {
        println!("| {name} | {a:.3} {unit} | {b:.3} {unit} | {:.2} |", a / b);
    };
    row(
        "resident memory after start",
        start.0.0 as f64 / 1024.0,
        start.1.0 as f64 / 1024.0,
        "MB",
    );
    row(
        &format!("resident memory after {blocks} more blocks"),
        after_blocks.0.0 as f64 / 1024.0,
        after_blocks.1.0 as f64 / 1024.0,
        "MB",
    );
    row(
        &format!(
            "CPU while idle (a block every 10 s, {} min), per hour",
            idle_window.as_secs() / 60
        ),
        (idle_end.0 - idle_start.0) * per_hour,
        (idle_end.1 - idle_start.1) * per_hour,
        "s",
    );
    row(
        &format!("CPU per completed Loop Out (mean of {swaps})"),
        sluice_swap.0,
        loopd_swap.0,
        "s",
    );
    println!(
        "(mean Loop Out wall time: sluiced {:?}, loopd {:?})",
        sluice_swap.1, loopd_swap.1
    );
    println!(
        "(resident after start, anonymous + file-backed: sluiced {} + {} kB, loopd {} + {} kB)",
        split.0.0, split.0.1, split.1.0, split.1.1
    );
    let _ = sluiced.kill();
    let _ = sluiced.wait();
}
