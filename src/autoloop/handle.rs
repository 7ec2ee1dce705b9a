//! The scheduler task and the handle the daemon, the API and tests use.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::{Mutex, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::history;
use super::inputs::budget_specs;
use super::pass::{self, PassReport, Ports, Purpose};
use super::state::State;
use super::supervise;
use super::{AutoloopConfig, AutoloopError, Mode, Wake};
use crate::ledger::{BudgetStatus, Ledger};
use crate::lnd::LightningNode;
use crate::policy::{self, Policy};
use crate::provider::SwapProvider;
use crate::store::{JournalFilter, JournalRecord, Store};
use crate::swap::SwapEngine;
use crate::swap::engine::Clock;

/// The store key of the persisted mode.
const MODE_KEY: &str = "mode";
/// How long a broken lnd subscription waits before it is opened again.
const RESUBSCRIBE: Duration = Duration::from_secs(5);

/// What autoloop needs to run.
#[derive(Clone)]
pub struct AutoloopDeps {
    /// The Lightning node.
    pub node: Arc<dyn LightningNode>,
    /// The swap server.
    pub provider: Arc<dyn SwapProvider>,
    /// The swap engine that creates and drives swaps.
    pub engine: SwapEngine,
    /// The store.
    pub store: Store,
    /// Tunables, including the policy path.
    pub config: AutoloopConfig,
    /// The wall clock (injectable for tests).
    pub clock: Clock,
}

/// The state of the policy in force, for `sluice policy show` and the API.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyStatus {
    /// The files of the policy in force; empty when none loaded.
    pub files: Vec<PathBuf>,
    /// When the policy in force was loaded.
    pub loaded_at: Option<DateTime<Utc>>,
    /// Rule names of the policy in force.
    pub rules: Vec<String>,
    /// The last load that failed (the policy in force, if any, was kept), with the error.
    pub rejected: Option<String>,
}

struct Inner {
    ports: Ports,
    config: AutoloopConfig,
    clock: Clock,
    state: Mutex<State>,
    mode: watch::Sender<Mode>,
    policy_status: watch::Sender<PolicyStatus>,
    passes: watch::Sender<Option<Arc<PassReport>>>,
    wake: mpsc::UnboundedSender<Wake>,
    cancel: CancellationToken,
}

/// The running scheduler. Cloning shares it.
#[derive(Clone)]
pub struct Autoloop {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Autoloop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Autoloop")
            .field("mode", &*self.inner.mode.borrow())
            .finish_non_exhaustive()
    }
}

fn now_of(clock: &Clock) -> DateTime<Utc> {
    let d = clock();
    DateTime::from_timestamp(
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        d.subsec_nanos(),
    )
    .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Autoloop {
    /// Starts autoloop: restores mode, ledger and journal position from the store, loads the
    /// policy (a policy that fails to load is reported in [`Autoloop::policy_status`] and no
    /// pass decides anything until a good one is loaded), settles autoloop swaps that ended
    /// while the daemon was down, and spawns the scheduler, the supervisor, the wake sources
    /// and the policy watcher. Everything stops when `cancel` fires.
    pub async fn start(
        deps: AutoloopDeps,
        cancel: CancellationToken,
    ) -> Result<Autoloop, AutoloopError> {
        let AutoloopDeps {
            node,
            provider,
            engine,
            store,
            config,
            clock,
        } = deps;
        let now = now_of(&clock);
        let mode = match store.autoloop_setting(MODE_KEY).await? {
            Some(m) => m.parse().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "persisted autoloop mode is unknown; autoloop is off");
                Mode::Off
            }),
            None => Mode::Off,
        };
        let (policy, status) = match policy::load(&config.policy_path) {
            Err(_) if !config.policy_path.exists() => {
                // Not an error: a daemon without policies runs manual swaps only.
                tracing::info!(path = %config.policy_path.display(),
                    "no policy yet; autoloop has nothing to decide until one is added there \
                     (examples in policies/), then `sluice policy reload`");
                (None, PolicyStatus::default())
            }
            Ok(p) => {
                let status = loaded_status(&p, now);
                (Some(Arc::new(p)), status)
            }
            Err(e) => {
                tracing::error!(error = %e, "the autoloop policy does not load; autoloop decides nothing until it is fixed");
                (
                    None,
                    PolicyStatus {
                        rejected: Some(e.to_string()),
                        ..PolicyStatus::default()
                    },
                )
            }
        };
        let (specs, tz) = match &policy {
            Some(p) => (budget_specs(p), p.tz),
            None => (Vec::new(), chrono_tz::UTC),
        };
        let mut ledger = Ledger::new(specs, tz)?;
        ledger.replay(store.ledger_entries().await?)?;
        let mut state = State {
            ledger,
            policy,
            gate_open: match store.autoloop_setting(history::GATE_OPEN_KEY).await? {
                Some(text) => history::decode_gates(&text),
                None => BTreeMap::new(),
            },
            fee_history: match store.autoloop_setting(history::FEE_HISTORY_KEY).await? {
                Some(text) => history::decode_fee_history(&text),
                None => VecDeque::new(),
            },
            pass_id: store.last_pass_id().await?,
            last_journalled: BTreeMap::new(),
            l402_booked: None,
        };
        let settled = supervise::settle_finished(node.as_ref(), &store, &mut state, now).await?;
        if let Some(dir) = &config.l402_dir {
            supervise::book_l402(dir, &store, &mut state, now).await?;
        }
        if settled > 0 {
            tracing::info!(
                settled,
                "autoloop settled swaps that ended while it was down"
            );
        }
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        let updates = engine.subscribe();
        let inner = Arc::new(Inner {
            ports: Ports {
                node,
                provider,
                engine,
                store,
                flow_windows_days: config.flow_windows_days.clone(),
                fee_sample_every: chrono::TimeDelta::from_std(config.fee_sample_every)
                    .unwrap_or(chrono::TimeDelta::minutes(10)),
                journal_retention: chrono::TimeDelta::from_std(config.journal_retention)
                    .unwrap_or(chrono::TimeDelta::days(30)),
                l402_dir: config.l402_dir.clone(),
            },
            config,
            clock,
            state: Mutex::new(state),
            mode: watch::channel(mode).0,
            policy_status: watch::channel(status).0,
            passes: watch::channel(None).0,
            wake: wake_tx,
            cancel,
        });
        let me = Autoloop { inner };
        tokio::spawn(me.clone().scheduler(wake_rx));
        tokio::spawn(me.clone().supervisor(updates));
        tokio::spawn(me.clone().channel_events());
        tokio::spawn(me.clone().blocks());
        tokio::spawn(me.clone().timers());
        tokio::spawn(me.clone().policy_watcher());
        Ok(me)
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.inner.mode.borrow()
    }

    /// Sets and persists the mode, then wakes a pass.
    pub async fn set_mode(&self, mode: Mode) -> Result<(), AutoloopError> {
        self.inner
            .ports
            .store
            .set_autoloop_setting(MODE_KEY, mode.as_str())
            .await?;
        self.inner.mode.send_replace(mode);
        tracing::info!(mode = %mode, "autoloop mode set");
        self.wake(Wake::Forced);
        Ok(())
    }

    /// Asks for a pass.
    pub fn wake(&self, why: Wake) {
        let _ = self.inner.wake.send(why);
    }

    /// Runs a pass now in the current mode (nothing when `off`) and returns what it decided.
    pub async fn run_pass(&self, why: Wake) -> Result<Option<Arc<PassReport>>, AutoloopError> {
        let mode = self.mode();
        if mode == Mode::Off {
            return Ok(None);
        }
        let now = now_of(&self.inner.clock);
        let mut state = self.inner.state.lock().await;
        let report =
            Arc::new(pass::run(&self.inner.ports, &mut state, now, Purpose::Run(mode)).await?);
        drop(state);
        tracing::debug!(
            wake = why.as_str(),
            pass = report.pass_id,
            "autoloop pass done"
        );
        self.inner.passes.send_replace(Some(Arc::clone(&report)));
        Ok(Some(report))
    }

    /// What a pass would decide now, with reasons: the full pipeline including server
    /// quotes, nothing dispatched or journalled.
    pub async fn suggest(&self) -> Result<PassReport, AutoloopError> {
        let now = now_of(&self.inner.clock);
        let mut state = self.inner.state.lock().await;
        Ok(pass::run(&self.inner.ports, &mut state, now, Purpose::Suggest).await?)
    }

    /// The latest pass's report, updated after every pass.
    pub fn passes(&self) -> watch::Receiver<Option<Arc<PassReport>>> {
        self.inner.passes.subscribe()
    }

    /// Where every budget stands now.
    pub async fn budget(&self) -> Vec<BudgetStatus> {
        let now = now_of(&self.inner.clock);
        self.inner.state.lock().await.ledger.status(now)
    }

    /// Journalled decisions, newest first.
    pub async fn journal(
        &self,
        filter: &JournalFilter,
    ) -> Result<Vec<JournalRecord>, AutoloopError> {
        Ok(self.inner.ports.store.journal(filter).await?)
    }

    /// The newest pass summaries, newest first.
    pub async fn pass_summaries(
        &self,
        limit: u32,
    ) -> Result<Vec<crate::store::PassSummary>, AutoloopError> {
        Ok(self.inner.ports.store.pass_summaries(limit).await?)
    }

    /// The policy in force.
    pub async fn policy(&self) -> Option<Arc<Policy>> {
        self.inner.state.lock().await.policy.clone()
    }

    /// The policy's status; changes on every reload attempt.
    pub fn policy_status(&self) -> watch::Receiver<PolicyStatus> {
        self.inner.policy_status.subscribe()
    }

    /// Loads the policy again. On success it takes effect and a pass is woken; on failure
    /// the policy in force is kept and the error is reported in the status and returned.
    pub async fn reload_policy(&self) -> Result<PolicyStatus, AutoloopError> {
        let now = now_of(&self.inner.clock);
        let loaded = policy::load(&self.inner.config.policy_path);
        let mut state = self.inner.state.lock().await;
        let result = match loaded {
            Ok(p) => match state.ledger.reconfigure(budget_specs(&p), p.tz) {
                Ok(()) => {
                    let status = loaded_status(&p, now);
                    state.policy = Some(Arc::new(p));
                    Ok(status)
                }
                Err(e) => Err(AutoloopError::Budget(e)),
            },
            Err(e) => Err(AutoloopError::Policy(e)),
        };
        drop(state);
        match result {
            Ok(status) => {
                self.inner.policy_status.send_replace(status.clone());
                tracing::info!(files = status.files.len(), "autoloop policy reloaded");
                self.wake(Wake::PolicyReloaded);
                Ok(status)
            }
            Err(e) => {
                tracing::error!(error = %e, "the changed policy was rejected; the last good policy stays in force");
                self.inner
                    .policy_status
                    .send_modify(|s| s.rejected = Some(e.to_string()));
                Err(e)
            }
        }
    }

    async fn scheduler(self, mut rx: mpsc::UnboundedReceiver<Wake>) {
        let debounce = self.inner.config.debounce;
        loop {
            let why = tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                w = rx.recv() => match w { Some(w) => w, None => return },
            };
            if why == Wake::ChannelEvent {
                tokio::select! {
                    _ = self.inner.cancel.cancelled() => return,
                    _ = tokio::time::sleep(debounce) => {}
                }
            }
            // Wakes that queued meanwhile are served by this pass.
            while rx.try_recv().is_ok() {}
            if let Err(e) = self.run_pass(why).await {
                tracing::warn!(wake = why.as_str(), error = %e, "autoloop pass failed; the next wake retries");
            }
        }
    }

    async fn supervisor(
        self,
        mut updates: tokio::sync::broadcast::Receiver<crate::swap::SwapUpdate>,
    ) {
        loop {
            let update = tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                u = updates.recv() => u,
            };
            match update {
                // Terminal updates, and later ones carrying a late payment result.
                Ok(u) if u.state.is_terminal() => {
                    let now = now_of(&self.inner.clock);
                    let mut state = self.inner.state.lock().await;
                    let settled = supervise::settle(
                        self.inner.ports.node.as_ref(),
                        &self.inner.ports.store,
                        &mut state,
                        u.hash,
                        now,
                    )
                    .await;
                    drop(state);
                    match settled {
                        Ok(true) => self.wake(Wake::SwapFinished(u.hash)),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(swap = %u.hash, error = %e, "settling a finished autoloop swap failed; it is retried at the next start")
                        }
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "autoloop missed swap updates; settling from the store"
                    );
                    let now = now_of(&self.inner.clock);
                    let mut state = self.inner.state.lock().await;
                    if let Err(e) = supervise::settle_finished(
                        self.inner.ports.node.as_ref(),
                        &self.inner.ports.store,
                        &mut state,
                        now,
                    )
                    .await
                    {
                        tracing::error!(error = %e, "settling finished autoloop swaps failed");
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn channel_events(self) {
        loop {
            match self.inner.ports.node.subscribe_channel_events().await {
                Ok(mut stream) => loop {
                    let ev = tokio::select! {
                        _ = self.inner.cancel.cancelled() => return,
                        ev = stream.next() => ev,
                    };
                    match ev {
                        Some(Ok(_)) => self.wake(Wake::ChannelEvent),
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "channel event stream broke");
                            break;
                        }
                        None => break,
                    }
                },
                Err(e) => tracing::debug!(error = %e, "subscribing to channel events failed"),
            }
            tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                _ = tokio::time::sleep(RESUBSCRIBE) => {}
            }
        }
    }

    /// A pass on every new block, as the engine sees it (its one block-epoch stream from
    /// lnd; a second subscription would make lnd send every block twice).
    async fn blocks(self) {
        let mut height = self.inner.ports.engine.follow_height();
        loop {
            tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                changed = height.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            let seen = *height.borrow_and_update();
            if let Some(h) = seen {
                self.wake(Wake::Block(h));
            }
        }
    }

    /// The safety tick and, while a rule has a schedule, a wake at every minute boundary.
    async fn timers(self) {
        let mut tick = tokio::time::interval(self.inner.config.tick);
        tick.tick().await;
        loop {
            let secs_into_minute = (self.inner.clock)().as_secs() % 60;
            let to_boundary = Duration::from_secs(60 - secs_into_minute);
            tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                _ = tick.tick() => self.wake(Wake::Tick),
                _ = tokio::time::sleep(to_boundary) => {
                    let scheduled = self.policy().await.is_some_and(|p| {
                        p.rules.iter().any(|r| r.settings.schedule.when.is_some())
                    });
                    if scheduled {
                        self.wake(Wake::ScheduleBoundary);
                    }
                }
            }
        }
    }

    /// Polls the policy files' modification times and reloads on a change.
    async fn policy_watcher(self) {
        let mut last = fingerprint(&self.inner.config.policy_path);
        loop {
            tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                _ = tokio::time::sleep(self.inner.config.policy_poll) => {}
            }
            let now = fingerprint(&self.inner.config.policy_path);
            if now != last {
                last = now;
                // A rejected policy is reported by reload_policy itself.
                let _ = self.reload_policy().await;
            }
        }
    }
}

/// Every policy file with its modification time and length, to notice edits.
fn fingerprint(path: &std::path::Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let files = policy::policy_files(path).unwrap_or_else(|_| vec![path.to_owned()]);
    files
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f).ok();
            let mtime = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map_or(0, |m| m.len());
            (f, mtime, len)
        })
        .collect()
}

fn loaded_status(p: &Policy, now: DateTime<Utc>) -> PolicyStatus {
    PolicyStatus {
        files: p.files.clone(),
        loaded_at: Some(now),
        rules: p.rules.iter().map(|r| r.name.clone()).collect(),
        rejected: None,
    }
}
