//! The supervisor: the one owner of every task the daemon runs.
//!
//! Tasks start only through [`Supervisor::spawn`], each with a name. A task that returns an
//! error stops the whole daemon (a half-running daemon that moves money is worse than a
//! stopped one); the first error is kept for the exit status. Shutdown cancels one token that
//! every task watches, refuses new spawns, and waits a bounded time for the tasks to finish.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a task ended the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// The task's name.
    pub task: &'static str,
    /// The error it returned, rendered with its causes.
    pub error: String,
}

/// How a shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Tasks still running when the deadline passed; empty after a clean stop.
    pub unfinished: Vec<&'static str>,
    /// The first task that failed, if any.
    pub failure: Option<TaskFailure>,
}

impl ShutdownReport {
    /// Whether every task finished in time and none failed.
    pub fn is_clean(&self) -> bool {
        self.unfinished.is_empty() && self.failure.is_none()
    }
}

#[derive(Default)]
struct Shared {
    running: BTreeSet<(&'static str, u64)>,
    next_id: u64,
    failure: Option<TaskFailure>,
}

/// Owns the daemon's tasks and their shutdown.
#[derive(Clone)]
pub struct Supervisor {
    token: CancellationToken,
    tracker: TaskTracker,
    shared: Arc<Mutex<Shared>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

impl Supervisor {
    /// A supervisor with no tasks.
    pub fn new() -> Supervisor {
        Supervisor {
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            shared: Arc::new(Mutex::new(Shared::default())),
        }
    }

    /// The token every task watches; cancelled when shutdown begins.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.token.is_cancelled()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic while holding this lock cannot leave the set inconsistent in a way that
        // matters for shutdown, so a poisoned lock is used as is.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts `fut` as a named task. Returns `false` (and drops `fut`) once shutdown has
    /// begun. An `Err` from the task starts the shutdown of the whole daemon.
    pub fn spawn<F, E>(&self, name: &'static str, fut: F) -> bool
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        if self.tracker.is_closed() || self.token.is_cancelled() {
            tracing::warn!(task = name, "not started: the daemon is shutting down");
            return false;
        }
        let id = {
            let mut shared = self.lock();
            shared.next_id += 1;
            let id = shared.next_id;
            shared.running.insert((name, id));
            id
        };
        let this = self.clone();
        self.tracker.spawn(async move {
            tracing::debug!(task = name, "task started");
            let result = fut.await;
            let mut shared = this.lock();
            shared.running.remove(&(name, id));
            match result {
                Ok(()) => tracing::debug!(task = name, "task finished"),
                Err(e) => {
                    let error = format!("{e:#}");
                    tracing::error!(task = name, %error, "task failed; shutting down");
                    if shared.failure.is_none() {
                        shared.failure = Some(TaskFailure { task: name, error });
                    }
                    drop(shared);
                    this.token.cancel();
                }
            }
        });
        true
    }

    /// Names of the tasks still running, sorted.
    pub fn running(&self) -> Vec<&'static str> {
        self.lock().running.iter().map(|(name, _)| *name).collect()
    }

    /// The first task failure, if any.
    pub fn failure(&self) -> Option<TaskFailure> {
        self.lock().failure.clone()
    }

    /// Resolves when shutdown begins, whoever started it.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// Cancels every task and waits up to `timeout` for them to finish.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        self.token.cancel();
        self.tracker.close();
        let finished = tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok();
        let unfinished = if finished { Vec::new() } else { self.running() };
        ShutdownReport {
            unfinished,
            failure: self.failure(),
        }
    }
}

/// Runs a server future whose graceful shutdown waits for clients to hang up, but drops it
/// (closing the remaining connections) once `drain` has passed after `shutdown` was
/// cancelled, so an idle client connection cannot hold the daemon's stop hostage.
/// Returns the server's result, or `None` when the drain period cut it short.
pub async fn bounded_drain<F, T>(
    server: F,
    shutdown: &CancellationToken,
    drain: Duration,
) -> Option<T>
where
    F: Future<Output = T>,
{
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => Some(result),
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(drain).await;
        } => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_tasks_that_finish_their_work() {
        let sup = Supervisor::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let token = sup.token();
        sup.spawn("writer", async move {
            token.cancelled().await;
            // Work done after cancellation still completes before shutdown returns.
            tokio::task::yield_now().await;
            tx.send("flushed").map_err(|e| e.to_string())
        });
        let report = sup.shutdown(Duration::from_secs(5)).await;
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(rx.recv().await, Some("flushed"));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_is_bounded_and_names_stuck_tasks() {
        let sup = Supervisor::new();
        sup.spawn("stuck", async {
            std::future::pending::<()>().await;
            Ok::<(), String>(())
        });
        let report = sup.shutdown(Duration::from_secs(3)).await;
        assert_eq!(report.unfinished, vec!["stuck"]);
        assert!(!report.is_clean());
    }

    #[tokio::test]
    async fn a_failing_task_stops_everything_and_is_reported() {
        let sup = Supervisor::new();
        let token = sup.token();
        sup.spawn("watcher", async move {
            token.cancelled().await;
            Ok::<(), String>(())
        });
        sup.spawn("broken", async { Err::<(), _>("lnd said no".to_owned()) });
        sup.cancelled().await;
        let report = sup.shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            report.failure,
            Some(TaskFailure {
                task: "broken",
                error: "lnd said no".into()
            })
        );
        assert!(report.unfinished.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_drain_cuts_a_server_that_never_finishes() {
        let token = CancellationToken::new();
        token.cancel();
        let out = bounded_drain(std::future::pending::<u8>(), &token, Duration::from_secs(2)).await;
        assert_eq!(out, None);
        let out = bounded_drain(async { 7u8 }, &token, Duration::from_secs(2)).await;
        assert_eq!(out, Some(7));
    }

    #[tokio::test]
    async fn no_spawns_after_shutdown_began() {
        let sup = Supervisor::new();
        let _ = sup.shutdown(Duration::from_secs(1)).await;
        assert!(!sup.spawn("late", async { Ok::<(), String>(()) }));
        assert!(sup.running().is_empty());
    }
}
