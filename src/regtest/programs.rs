//! Where the real programs are: `SLUICE_REALNODE_BIN`, or the cache `tools/realnode/build`
//! fills from the Go modules the project pins.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{RegtestError, Result};

/// The environment variable naming a directory that holds the built programs.
pub const BIN_ENV: &str = "SLUICE_REALNODE_BIN";

/// Every program the world uses.
pub const PROGRAMS: [&str; 6] = ["btcd", "btcctl", "lnd", "lncli", "loopd", "loop"];

/// A directory holding btcd, btcctl, lnd, lncli, loopd and loop.
#[derive(Debug, Clone)]
pub struct Programs {
    dir: PathBuf,
}

impl Programs {
    /// The programs in `dir`; every one must be there.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Result<Programs> {
        let dir = dir.into();
        for p in PROGRAMS {
            if !dir.join(p).is_file() {
                return Err(RegtestError::Programs(format!(
                    "{} has no `{p}`: build the real programs with tools/realnode/build and \
                     point {BIN_ENV} at the directory it prints",
                    dir.display()
                )));
            }
        }
        Ok(Programs { dir })
    }

    /// The programs named by `SLUICE_REALNODE_BIN`, if it is set.
    pub fn from_env() -> Option<Result<Programs>> {
        std::env::var_os(BIN_ENV).map(|d| Programs::in_dir(PathBuf::from(d)))
    }

    /// Builds (or finds in the cache) the programs with `tools/realnode/build` of the source
    /// tree at `repo`. The first build takes minutes; later ones return at once.
    pub fn build(repo: &Path) -> Result<Programs> {
        let script = repo.join("tools/realnode/build");
        let out = Command::new(&script)
            .output()
            .map_err(|source| RegtestError::Spawn {
                program: "tools/realnode/build".into(),
                path: script.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(RegtestError::Programs(format!(
                "tools/realnode/build failed ({}): {}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 20)
            )));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let dir = stdout.lines().last().unwrap_or_default().trim();
        Programs::in_dir(dir)
    }

    /// `SLUICE_REALNODE_BIN` if set, else a build from `repo`.
    pub fn locate(repo: &Path) -> Result<Programs> {
        match Programs::from_env() {
            Some(found) => found,
            None => Programs::build(repo),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One program's path.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
