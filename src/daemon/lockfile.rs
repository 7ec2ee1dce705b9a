//! The datadir lock: one `sluiced` per data directory.
//!
//! Two daemons on one datadir would both pay and sweep the same swaps. The lock is an OS
//! advisory lock (`flock`) on `<datadir>/sluiced.lock`, so it is released by the kernel when the
//! process dies, even by SIGKILL: a stale file never blocks a restart. The file also records
//! where the running daemon listens, for tools and tests.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The lock file's name inside the datadir.
pub const LOCK_FILE: &str = "sluiced.lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another sluiced is already running on data directory {datadir} (it holds {lock}); \
         stop it first, or give this one its own --datadir"
    )]
    Held {
        /// The contended data directory.
        datadir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The file could not be opened, locked or written.
    #[error("cannot use lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Holds the datadir lock until dropped.
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock on `datadir`, or fails at once if another process holds it.
    pub fn acquire(datadir: &Path) -> Result<DataDirLock, LockError> {
        let path = datadir.join(LOCK_FILE);
        let io = |source, path: &Path| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io(e, &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    datadir: datadir.to_path_buf(),
                    lock: path,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e, &path)),
        }
        let mut lock = DataDirLock { file, path };
        lock.record(None, None, None)
            .map_err(|e| io(e, &lock.path))?;
        Ok(lock)
    }

    /// Records the process id and the bound addresses in the lock file, as one JSON object.
    pub fn record(
        &mut self,
        rpc: Option<SocketAddr>,
        metrics: Option<SocketAddr>,
        loopd: Option<SocketAddr>,
    ) -> std::io::Result<()> {
        let body = serde_json::json!({
            "pid": std::process::id(),
            "rpc_listen": rpc.map(|a| a.to_string()),
            "metrics_listen": metrics.map(|a| a.to_string()),
            "loopd_listen": loopd.map(|a| a.to_string()),
        });
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(format!("{body}\n").as_bytes())?;
        self.file.sync_data()
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // Empty the file so a reader does not mistake a stopped daemon for a running one; the
        // kernel drops the lock with the descriptor.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_a_clear_message_and_lock_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("already running"), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn records_where_the_daemon_listens() {
        let dir = tempfile::tempdir().unwrap();
        let mut lock = DataDirLock::acquire(dir.path()).unwrap();
        lock.record(Some("127.0.0.1:1".parse().unwrap()), None, None)
            .unwrap();
        let text = std::fs::read_to_string(lock.path()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["rpc_listen"], "127.0.0.1:1");
        assert_eq!(v["pid"], std::process::id());
    }
}
