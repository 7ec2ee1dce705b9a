//! A child process of the world: owned (stopped when its owner drops it, and killed by the
//! kernel if the owner dies, through `setpriv --pdeathsig`) or detached (its own process group,
//! left running for `sluice regtest down`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::programs::tail;
use super::{RegtestError, Result};

/// How long a process outlives its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Stopped when dropped, and killed if the owning thread dies (a test that panics or is
    /// killed leaves no process behind). Start the world on the thread that owns it: the
    /// kernel signals the child when the thread that spawned it exits.
    Owned,
    /// Left running in its own process group (Ctrl-C in the terminal does not reach it);
    /// stopped by pid.
    Detached,
}

/// A running program with its output in a log file.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
    lifetime: Lifetime,
}

impl Proc {
    /// Starts `program args…` with stdout and stderr appended to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        lifetime: Lifetime,
    ) -> Result<Proc> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| RegtestError::file(log, e))?;
        let err = out.try_clone().map_err(|e| RegtestError::file(log, e))?;
        let mut cmd = match lifetime {
            Lifetime::Owned => {
                let mut c = Command::new("setpriv");
                c.args(["--pdeathsig", "KILL", "--"]).arg(program);
                c
            }
            Lifetime::Detached => {
                use std::os::unix::process::CommandExt;
                let mut c = Command::new(program);
                c.process_group(0);
                c
            }
        };
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| RegtestError::Spawn {
                program: name.to_string(),
                path: program.to_path_buf(),
                source,
            })?;
        Ok(Proc {
            name: name.to_string(),
            pid: child.id(),
            child: Some(child),
            log: log.to_path_buf(),
            lifetime,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        std::fs::read_to_string(&self.log)
            .map(|t| tail(&t, lines))
            .unwrap_or_default()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Ok(None)) => None,
            Some(Err(e)) => Some(e.to_string()),
            None => Some("stopped".into()),
        }
    }

    /// Fails with the log's end if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => Err(RegtestError::Exited {
                program: self.name.clone(),
                status,
                log: self.log_tail(30),
            }),
        }
    }

    /// Asks the process to stop (SIGTERM), then kills it after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        terminate(self.pid);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Lets a detached process run on after this handle is gone.
    pub fn release(mut self) -> u32 {
        if let Some(child) = self.child.take() {
            drop(child);
        }
        self.pid
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.lifetime == Lifetime::Owned {
            self.stop(Duration::from_secs(3));
        }
    }
}

/// Sends SIGTERM to a process by id.
pub fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Whether a process with this id is alive.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

/// A free TCP port on 127.0.0.1 (bound, then released: the caller uses it at once).
/// How many times a program that lost its port to another process is started again.
pub const PORT_RETRIES: u32 = 3;

/// Whether `err` is a program that exited because a port [`free_port`] chose was taken
/// before the program bound it (another test's program, started at the same moment).
pub fn port_taken(err: &RegtestError) -> bool {
    matches!(err, RegtestError::Exited { log, .. } if log.contains("address already in use"))
}

pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| RegtestError::program("loopback", e.to_string()))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| RegtestError::program("loopback", e.to_string()))
}

/// Polls `f` every 100 ms until it returns `Ok(Some)`, for at most `limit`.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e @ RegtestError::Exited { .. }) => return Err(e),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(RegtestError::Timeout {
                what: what.to_string(),
                detail: if last.is_empty() {
                    String::new()
                } else {
                    format!(" (last: {last})")
                },
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
