//! The bridge from the swap engine and autoloop to the metrics catalog and `GetInfo`.
//!
//! The engine and autoloop know nothing of Prometheus: they publish what happens (swap
//! updates on a broadcast channel, pass reports and the policy status on watch channels) and
//! this task turns it into catalog calls. The views that move without events (swaps in flight
//! and their ages, budgets as windows roll, L402 spend) are read when Prometheus scrapes
//! ([`Views`], a scrape hook), not on a timer of the daemon's own.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::autoloop::{AUTOLOOP_INITIATOR, Autoloop, PassReport};
use crate::domain::{Direction, PolicyStatus, Sat, SwapHash};
use crate::metrics::{CostBreakdown, Initiator, Metrics, PendingSwap, SwapStateOf};
use crate::policy::values::Level;
use crate::policy::{Policy, Reason, Target};
use crate::provider::l402::TokenStore;
use crate::store::Store;
use crate::swap::loop_in::LoopInState;
use crate::swap::{LoopInUpdate, PaymentStatus, SwapEngine, SwapState, SwapUpdate};

/// The confirmation target whose estimate the fee-gate panel shows (the usual one).
const GATE_CONF_TARGET: u32 = 6;

/// One thing to report.
enum Event {
    Swap(SwapUpdate),
    LoopIn(LoopInUpdate),
    Pass(Arc<PassReport>),
    Policy(crate::autoloop::PolicyStatus),
    Stopping,
}

/// What the observer reads and where it reports.
pub(crate) struct Observer {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) store: Store,
    pub(crate) engine: SwapEngine,
    pub(crate) autoloop: Autoloop,
    /// `GetInfo`'s view of the policy.
    pub(crate) policy: watch::Sender<PolicyStatus>,
    /// The policy directory, as `GetInfo` shows it.
    pub(crate) policy_dir: PathBuf,
    /// Where the swap server's L402 tokens are kept.
    pub(crate) l402_dir: PathBuf,
}

impl Observer {
    /// Runs until `cancel`.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let mut updates = self.engine.subscribe();
        let mut loop_ins = self.engine.subscribe_loop_in();
        let mut passes = self.autoloop.passes();
        let mut policy = self.autoloop.policy_status();
        let mut finished: HashSet<SwapHash> = HashSet::new();
        let tokens = TokenStore::new(&self.l402_dir);
        let views = Arc::new(Views {
            metrics: Arc::downgrade(&self.metrics),
            store: self.store.clone(),
            engine: self.engine.clone(),
            autoloop: self.autoloop.clone(),
            // A token bought before this run was counted by an earlier process.
            last_token: Mutex::new(paid_token(&tokens)),
            tokens,
        });
        self.metrics.on_scrape(Arc::new(move || {
            let views = Arc::clone(&views);
            Box::pin(async move { views.refresh().await })
        }));
        let initial = policy.borrow_and_update().clone();
        if !initial.files.is_empty() || initial.rejected.is_some() {
            // The load at start counts like a reload.
            self.metrics
                .catalog
                .record_policy_reload(initial.rejected.is_none());
        }
        self.publish_policy(&initial);
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                update = updates.recv() => match update {
                    Ok(u) => Event::Swap(u),
                    // The in-flight view is read at the next scrape anyway.
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "swap metrics lagged behind the engine");
                        continue;
                    }
                    // The engine shut down: the daemon is stopping.
                    Err(broadcast::error::RecvError::Closed) => Event::Stopping,
                },
                update = loop_ins.recv() => match update {
                    Ok(u) => Event::LoopIn(u),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "loop in metrics lagged behind the engine");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => Event::Stopping,
                },
                changed = passes.changed() => match changed {
                    Ok(()) => match passes.borrow_and_update().clone() {
                        Some(report) => Event::Pass(report),
                        None => continue,
                    },
                    Err(_) => Event::Stopping,
                },
                changed = policy.changed() => match changed {
                    Ok(()) => Event::Policy(policy.borrow_and_update().clone()),
                    Err(_) => Event::Stopping,
                },
            };
            // Handling reads the store and autoloop, which may wait on lnd: never let that
            // hold up a shutdown.
            let handled = async {
                match event {
                    Event::Swap(u) => self.on_swap_update(&u, &mut finished).await,
                    Event::LoopIn(u) => self.on_loop_in_update(&u, &mut finished).await,
                    Event::Pass(report) => self.on_pass(&report).await,
                    Event::Policy(status) => {
                        self.metrics
                            .catalog
                            .record_policy_reload(status.rejected.is_none());
                        self.publish_policy(&status);
                    }
                    Event::Stopping => cancel.cancelled().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = handled => {}
            }
        }
    }

    fn publish_policy(&self, status: &crate::autoloop::PolicyStatus) {
        let files = status
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        self.policy.send_replace(PolicyStatus {
            directory: self.policy_dir.display().to_string(),
            files,
            last_error: status.rejected.clone(),
        });
    }

    async fn on_swap_update(&self, update: &SwapUpdate, finished: &mut HashSet<SwapHash>) {
        let catalog = &self.metrics.catalog;
        if !update.created && !update.state.is_terminal() {
            return;
        }
        let record = match self.store.load_swap(update.hash).await {
            Ok(Some(stored)) => stored.record,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(swap = %update.hash, error = %e, "cannot read a swap for its metrics");
                return;
            }
        };
        let terms = record.contract.terms();
        if update.created {
            catalog.record_swap_started(Direction::Out, initiator(&terms.initiator));
        }
        if update.state.is_terminal() && finished.insert(update.hash) {
            // On success the prepay is part of the swapped amount and the server's share is
            // its fee; otherwise what the server kept is the prepay, a cost of its own.
            let prepay_kept = match record.progress.prepay_payment {
                PaymentStatus::Succeeded { amount, .. } if update.state != SwapState::Succeeded => {
                    amount
                }
                _ => Sat::ZERO,
            };
            let took = record
                .updated_at_unix
                .saturating_sub(record.created_at_unix)
                .max(0);
            catalog.record_swap_finished(
                SwapStateOf::Out(update.state),
                terms.amount,
                CostBreakdown::from_swap_costs(&update.costs, prepay_kept),
                Duration::from_secs(u64::try_from(took).unwrap_or(0)),
            );
        }
    }

    /// A Loop In's creation (published once, in `Initiated`) or state change.
    async fn on_loop_in_update(&self, update: &LoopInUpdate, finished: &mut HashSet<SwapHash>) {
        let catalog = &self.metrics.catalog;
        let created = update.state == LoopInState::Initiated;
        if !created && !update.state.is_terminal() {
            return;
        }
        let record = match self.store.load_loop_in(update.hash).await {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(swap = %update.hash, error = %e, "cannot read a loop in for its metrics");
                return;
            }
        };
        let terms = record.contract.terms();
        if created {
            catalog.record_swap_started(Direction::In, initiator(&terms.initiator));
        }
        if update.state.is_terminal() && finished.insert(update.hash) {
            let took = record
                .updated_at_unix
                .saturating_sub(record.created_at_unix)
                .max(0);
            catalog.record_swap_finished(
                SwapStateOf::In(update.state),
                terms.amount,
                CostBreakdown::from_loop_in_costs(&update.costs),
                Duration::from_secs(u64::try_from(took).unwrap_or(0)),
            );
        }
    }

    async fn on_pass(&self, report: &PassReport) {
        let catalog = &self.metrics.catalog;
        for d in &report.decisions {
            let reason = &d.decision.reason;
            catalog.record_policy_decision(matches!(reason, Reason::Swap), reason.name());
        }
        if let Some((target, rate)) = report
            .fee_estimates
            .iter()
            .find(|(t, _)| *t == GATE_CONF_TARGET)
            .or(report.fee_estimates.first())
        {
            #[allow(clippy::cast_precision_loss)]
            let sat_per_vbyte = rate.0 as f64 / 250.0;
            catalog.set_fee_gate(report.fee_gate_open, *target, sat_per_vbyte);
        }
        if let Some(policy) = self.autoloop.policy().await {
            catalog.set_bands(channel_bands(&policy, report));
        }
        catalog.set_budgets(&self.autoloop.budget().await);
    }
}

/// The views read at each scrape: swaps in flight and their ages, budgets, L402 spend.
struct Views {
    metrics: Weak<Metrics>,
    store: Store,
    engine: SwapEngine,
    autoloop: Autoloop,
    tokens: TokenStore,
    /// The paid token the spend counter has counted.
    last_token: Mutex<Option<([u8; 32], Sat)>>,
}

impl Views {
    async fn refresh(&self) {
        let Some(metrics) = self.metrics.upgrade() else {
            return;
        };
        let catalog = &metrics.catalog;
        self.refresh_pending(catalog).await;
        catalog.set_budgets(&self.autoloop.budget().await);
        let token = paid_token(&self.tokens);
        let mut last = self
            .last_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((id, amount)) = &token
            && last.as_ref().map(|(last, _)| last) != Some(id)
        {
            catalog.record_l402_spent(*amount);
        }
        *last = token;
    }

    async fn refresh_pending(&self, catalog: &crate::metrics::Catalog) {
        let quarantined: Vec<Direction> = self
            .engine
            .quarantined()
            .iter()
            .map(|q| q.direction)
            .collect();
        catalog.set_quarantined_swaps(&quarantined);
        // One row that does not decode must not blind the metrics of the others (the store
        // returns such rows apart).
        let (unfinished, loop_ins) = match tokio::try_join!(
            self.store.load_resumable(),
            self.store.load_unfinished_loop_ins()
        ) {
            Ok((out, (loop_ins, _unreadable))) => (out.swaps, loop_ins),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the swaps in flight for their metrics");
                return;
            }
        };
        let now = unix_now();
        // Since the swap entered its state, not since its last saved step: a waiting swap saves
        // a step on every block.
        let age = |since_unix: i64| {
            let secs = now.saturating_sub(since_unix).max(0);
            Duration::from_secs(u64::try_from(secs).unwrap_or(0))
        };
        let height = self.engine.height();
        let outs = unfinished.iter().map(|s| {
            let r = &s.record;
            PendingSwap {
                state: SwapStateOf::Out(r.progress.state),
                in_state_for: age(r.state_since_unix),
                blocks_to_expiry: height.map(|h| r.contract.terms().expiry.0.saturating_sub(h.0)),
            }
        });
        let ins = loop_ins.iter().map(|s| PendingSwap {
            state: SwapStateOf::In(s.record.progress.state),
            in_state_for: age(s.record.state_since_unix),
            blocks_to_expiry: None,
        });
        let pending: Vec<PendingSwap> = outs.chain(ins).collect();
        catalog.set_pending_swaps(&pending);
    }
}

/// How a stored swap's initiator counts in the metrics.
fn initiator(stored: &str) -> Initiator {
    if stored == AUTOLOOP_INITIATOR {
        Initiator::Autoloop
    } else {
        Initiator::Manual
    }
}

/// The band of every channel target the pass decided about, as shares of capacity. A band
/// set in satoshis depends on the capacity and is left out.
fn channel_bands(policy: &Policy, report: &PassReport) -> BTreeMap<String, (f64, f64)> {
    #[allow(clippy::cast_precision_loss)] // ppm are at most 1,000,000
    let share = |level: Level| match level {
        Level::Share(ppm) => Some(ppm.0 as f64 / 1_000_000.0),
        Level::Sats(_) => None,
    };
    let mut out = BTreeMap::new();
    for d in &report.decisions {
        let (Target::Channel(chan), Some(rule)) = (&d.decision.target, &d.decision.rule) else {
            continue;
        };
        let Some(rule) = policy.rules.iter().find(|r| &r.name == rule) else {
            continue;
        };
        let band = &rule.settings.band;
        let low = share(band.inbound_min);
        let high = band.inbound_max.map_or(Some(1.0), share);
        if let (Some(low), Some(high)) = (low, high) {
            out.insert(chan.to_string(), (low, high));
        }
    }
    out
}

/// The paid token's payment hash and what it cost (amount and routing fee), if there is one.
fn paid_token(tokens: &TokenStore) -> Option<([u8; 32], Sat)> {
    match tokens.load_paid() {
        Ok(Some(t)) => Some((
            t.payment_hash,
            Sat((t.amount_paid.0 + t.routing_fee.0).div_ceil(1000)),
        )),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the L402 token for its metric");
            None
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
