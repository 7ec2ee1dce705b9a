//! Shared helpers for the integration tests: run the real binaries, poll with deadlines.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `sluiced` binary built for this test run.
pub fn sluiced_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluiced"))
}

/// The `sluice` binary built for this test run.
pub fn sluice_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

/// Polls `f` until it returns `Some`, or panics with `what` after `limit`.
pub fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a CLI command until the daemon stops answering "cannot do that yet" (a part of it, such
/// as autoloop, still starting), for up to a minute, and returns the first other answer.
#[allow(dead_code)]
pub fn when_ready(mut run: impl FnMut() -> Output) -> Output {
    poll(
        "the daemon to be ready for the command",
        Duration::from_secs(60),
        || {
            let out = run();
            let starting = !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("cannot do that yet");
            (!starting).then_some(out)
        },
    )
}

/// A running `sluiced` in a temporary datadir, killed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub datadir: tempfile::TempDir,
    pub rpc: String,
    pub metrics: String,
    pub stderr_path: PathBuf,
}

impl Daemon {
    /// Starts `sluiced --simnet` on free ports (port 0) with `extra` arguments, and waits until
    /// it records its listen addresses.
    pub fn start(extra: &[&str]) -> Daemon {
        let datadir = tempfile::tempdir().unwrap();
        Self::start_in(datadir, extra)
    }

    /// Like [`Daemon::start`], in a given datadir.
    pub fn start_in(datadir: tempfile::TempDir, extra: &[&str]) -> Daemon {
        Self::launch(datadir, &["--simnet"], extra)
    }

    /// Starts `sluiced --config CONFIG` (e.g. against a real lnd) in a temporary datadir on
    /// free ports, with `extra` arguments.
    pub fn start_with_config(config: &Path, extra: &[&str]) -> Daemon {
        let datadir = tempfile::tempdir().unwrap();
        let config = config.to_str().unwrap();
        Self::launch(datadir, &["--config", config], extra)
    }

    /// Starts `sluiced BASE --datadir DIR --rpc-listen … EXTRA` and waits for its listeners.
    pub fn launch(datadir: tempfile::TempDir, base: &[&str], extra: &[&str]) -> Daemon {
        let stderr_path = datadir.path().join("sluiced.stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = Command::new(sluiced_bin())
            .args(base)
            .arg("--datadir")
            .arg(datadir.path())
            .args([
                "--rpc-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env_remove("SLUICE_CONFIG")
            .env_remove("SLUICE_DATADIR")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut daemon = Daemon {
            child,
            datadir,
            rpc: String::new(),
            metrics: String::new(),
            stderr_path,
        };
        let lock = daemon.datadir.path().join("sluiced.lock");
        let (rpc, metrics) = poll("sluiced to listen", Duration::from_secs(60), || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("sluiced exited early with {status}: {}", daemon.stderr());
            }
            let text = std::fs::read_to_string(&lock).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some((
                v["rpc_listen"].as_str()?.to_owned(),
                v["metrics_listen"].as_str()?.to_owned(),
            ))
        });
        daemon.rpc = rpc;
        daemon.metrics = metrics;
        daemon
    }

    /// The datadir.
    pub fn dir(&self) -> &Path {
        self.datadir.path()
    }

    /// Everything the daemon logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Runs the `sluice` CLI against this daemon with the admin credential.
    /// `sluice --json ARGS`, parsed; panics with the CLI's output when it fails.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.cli(&full);
        assert!(
            out.status.success(),
            "sluice {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `sluice --json ARGS`, parsed; `None` when the CLI fails.
    pub fn try_json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.cli(&full);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(sluice_bin())
            .arg("--datadir")
            .arg(self.dir())
            .args(["--rpcserver", &self.rpc])
            .args(args)
            .env_remove("SLUICE_RPCSERVER")
            .env_remove("SLUICE_CREDENTIAL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Sends SIGTERM and waits up to `limit` for the exit.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success(), "kill failed");
        let child = &mut self.child;
        poll("sluiced to exit after SIGTERM", limit, || {
            child.try_wait().unwrap()
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A plain HTTP/1.0 GET on loopback, returning (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

/// One parsed sample: metric name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Checks that `text` is valid Prometheus/OpenMetrics text exposition and returns the samples
/// as (name, labels, value). Panics with the offending line otherwise.
pub fn parse_prometheus_text(text: &str) -> Vec<Sample> {
    fn is_name(s: &str) -> bool {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap_or("");
            let name = parts.next().unwrap_or("");
            assert!(
                matches!(kind, "HELP" | "TYPE" | "UNIT"),
                "bad comment line: {line}"
            );
            assert!(is_name(name), "bad metric name in: {line}");
            if kind == "TYPE" {
                let t = parts.next().unwrap_or("");
                assert!(
                    matches!(
                        t,
                        "counter"
                            | "gauge"
                            | "histogram"
                            | "summary"
                            | "untyped"
                            | "info"
                            | "stateset"
                            | "unknown"
                            | "gaugehistogram"
                    ),
                    "bad type in: {line}"
                );
            }
            continue;
        }
        let (name_labels, rest) = match line.find('}') {
            Some(i) => (&line[..=i], line[i + 1..].trim_start()),
            None => line
                .split_once(' ')
                .unwrap_or_else(|| panic!("no value in: {line}")),
        };
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, l)) => (
                n,
                l.strip_suffix('}')
                    .unwrap_or_else(|| panic!("bad labels: {line}")),
            ),
            None => (name_labels, ""),
        };
        assert!(is_name(name), "bad metric name in: {line}");
        let mut parsed = Vec::new();
        if !labels.is_empty() {
            for pair in labels.split("\",").map(|p| p.trim_end_matches('"')) {
                let (k, v) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(is_name(k), "bad label name in: {line}");
                parsed.push((k.to_owned(), v.to_owned()));
            }
        }
        let value = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in: {line}")),
        };
        samples.push((name.to_owned(), parsed, value));
    }
    samples
}

/// A child process killed on drop (if still running).
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `sluice simnet serve` in `dir` (no block timer, no traffic) until it has written
/// `dir/sluice.yaml`; killed on drop. Its stderr goes to `dir/serve.stderr`.
pub fn serve_simnet(dir: &Path) -> Killed {
    let log = std::fs::File::create(dir.join("serve.stderr")).unwrap();
    let mut child = Command::new(sluice_bin())
        .args(["--json", "simnet", "--dir"])
        .arg(dir)
        .args(["serve", "--block-interval", "0s", "--no-traffic"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let config = dir.join("sluice.yaml");
    poll("the simnet to serve", Duration::from_secs(120), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sluice simnet serve exited with {status}");
        }
        config.exists().then_some(())
    });
    Killed(child)
}
