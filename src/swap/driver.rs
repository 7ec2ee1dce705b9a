//! One task per swap: receive an input, [`step`], save the next progress, only then act.
//!
//! Inputs come from the engine's block follower (blocks), and from the tasks the actions
//! start: payment streams (`pay` / `track_payment`), the HTLC confirmation watch, the spend
//! watch, preimage pushes and sweeps. Each of those runs as its own child task and reports back
//! through one channel, so the driver itself only ever steps and saves, in order.
//!
//! Safety rules (`super` module docs): a transition is saved before any of its actions runs;
//! a failed save is retried with backoff and nothing acts meanwhile; the preimage is taken only
//! through [`SwapProgress::release_preimage`] on the progress just saved; every action is safe
//! to repeat (watches and payments are keyed, sweeps are rebuilt from the stored HTLC).

mod sweep;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use bitcoin::secp256k1::PublicKey;
use bitcoin::{OutPoint, ScriptBuf};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::engine::{EngineConfig, SwapUpdate, destination_script};
use super::{
    Action, CancelReason, Input, LoopOutContract, PaymentFailureReason, PaymentKind, Preimage,
    SwapProgress, step,
};
use crate::chain::{ChainError, HtlcV3};
use crate::domain::BlockHeight;
use crate::lnd::LightningNode;
use crate::provider::SwapProvider;
use crate::provider::port::{CancelRequest, CancelRoute, PaymentFailure};
use crate::store::{Store, SwapExtras};

/// What a driver needs from the engine.
pub(crate) struct DriverDeps {
    pub(crate) node: Arc<dyn LightningNode>,
    pub(crate) provider: Arc<dyn SwapProvider>,
    pub(crate) store: Store,
    pub(crate) config: EngineConfig,
    pub(crate) height: tokio::sync::watch::Receiver<Option<BlockHeight>>,
    pub(crate) blocks: broadcast::Receiver<BlockHeight>,
    pub(crate) updates: broadcast::Sender<SwapUpdate>,
    pub(crate) loop_in_updates: broadcast::Sender<super::engine::LoopInUpdate>,
    pub(crate) cancel: CancellationToken,
}

/// Why a stored swap cannot be driven.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DriverSetupError {
    /// A stored key is not a curve point.
    #[error("stored {0} is not a valid public key")]
    BadKey(&'static str),
    /// The HTLC could not be rebuilt.
    #[error("rebuilding the HTLC: {0}")]
    Htlc(#[from] ChainError),
    /// The rebuilt HTLC pays another script than the stored one.
    #[error("the HTLC rebuilt from the contract does not pay the stored htlc_pk_script")]
    ScriptMismatch,
    /// The stored destination does not parse.
    #[error("stored destination: {0}")]
    Destination(String),
}

/// Which child task an action started; one of each runs at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TaskKey {
    Payment(PaymentKind),
    WatchHtlc,
    WatchSpend(OutPoint),
    Push,
    Sweep,
    Estimate,
}

/// The HTLC and sweep destination, rebuilt from the stored contract.
#[derive(Clone)]
pub(crate) struct SwapChain {
    pub(crate) htlc: HtlcV3,
    pub(crate) destination: ScriptBuf,
}

/// One swap's driver. Build it with [`Driver::new`], run it with [`Driver::run`].
pub(crate) struct Driver {
    deps: DriverDeps,
    contract: Arc<LoopOutContract>,
    preimage: Preimage,
    extras: SwapExtras,
    progress: SwapProgress,
    chain: SwapChain,
    inputs_tx: mpsc::UnboundedSender<Input>,
    inputs_rx: mpsc::UnboundedReceiver<Input>,
    tasks: HashMap<TaskKey, JoinHandle<()>>,
    tasks_cancel: CancellationToken,
    /// The last signed sweep (`sweep::SignedSweep`), in memory only.
    last_sweep: Arc<std::sync::Mutex<Option<sweep::SignedSweep>>>,
}

impl Driver {
    /// Prepares the driver of a stored swap; checks that the HTLC rebuilds to the stored script.
    pub(crate) fn new(
        deps: DriverDeps,
        contract: LoopOutContract,
        preimage: Preimage,
        extras: SwapExtras,
        progress: SwapProgress,
    ) -> Result<Driver, DriverSetupError> {
        let t = contract.terms();
        let sender = PublicKey::from_slice(&t.sender_key)
            .map_err(|_| DriverSetupError::BadKey("sender_key"))?;
        let receiver = PublicKey::from_slice(&t.receiver_key)
            .map_err(|_| DriverSetupError::BadKey("receiver_key"))?;
        let htlc = HtlcV3::new(sender, receiver, t.swap_hash, t.expiry.0, extras.network)?;
        if htlc.pk_script() != t.htlc_pk_script {
            return Err(DriverSetupError::ScriptMismatch);
        }
        let destination = destination_script(&t.destination, extras.network)
            .map_err(DriverSetupError::Destination)?;
        let (inputs_tx, inputs_rx) = mpsc::unbounded_channel();
        let tasks_cancel = deps.cancel.child_token();
        Ok(Driver {
            deps,
            contract: Arc::new(contract),
            preimage,
            extras,
            progress,
            chain: SwapChain { htlc, destination },
            inputs_tx,
            inputs_rx,
            tasks: HashMap::new(),
            tasks_cancel,
            last_sweep: Arc::default(),
        })
    }

    fn hash(&self) -> crate::domain::SwapHash {
        self.contract.terms().swap_hash
    }

    /// Drives the swap until it is terminal and no payment is still running, or until the
    /// engine shuts down.
    pub(crate) async fn run(mut self) {
        let mut height_rx = self.deps.height.clone();
        let height = tokio::select! {
            _ = self.deps.cancel.cancelled() => return,
            h = height_rx.wait_for(Option::is_some) => match h.ok().and_then(|h| *h) {
                Some(h) => h,
                None => return,
            },
        };
        if self.handle(Input::Resumed { height }).await {
            self.track_late_payments();
            loop {
                if self.progress.state.is_terminal() && !self.payments_running() {
                    // A payment task sends its final update and then ends: once it is seen
                    // as ended, that update is already queued. Take it before stopping, or
                    // the payment's outcome (and the swap's costs) would wait for a restart.
                    match self.inputs_rx.try_recv() {
                        Ok(input) => {
                            if !self.handle(input).await {
                                break;
                            }
                            continue;
                        }
                        Err(_) => break,
                    }
                }
                let input = tokio::select! {
                    biased;
                    _ = self.deps.cancel.cancelled() => break,
                    Some(input) = self.inputs_rx.recv() => input,
                    block = self.deps.blocks.recv() => match block {
                        Ok(height) => Input::Block { height },
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            match *self.deps.height.borrow() {
                                Some(height) => Input::Block { height },
                                None => continue,
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                };
                if !self.handle(input).await {
                    break;
                }
            }
        }
        self.tasks_cancel.cancel();
        tracing::debug!(swap = %self.hash(), state = self.progress.state.as_str(), "driver stopped");
    }

    /// A finished swap emits no actions, but a payment still in flight will end one way or
    /// the other and its outcome belongs in the costs: follow it without ever paying. A
    /// payment the store never saw dispatched is looked up too: it may have left just before
    /// a crash, or its first update may not have been saved.
    fn track_late_payments(&mut self) {
        if !self.progress.state.is_terminal() {
            return;
        }
        for kind in [PaymentKind::Swap, PaymentKind::Prepay] {
            if !self.progress.payment(kind).is_final() {
                let task = watch::payment(
                    Arc::clone(&self.deps.node),
                    Arc::clone(&self.contract),
                    self.extras.clone(),
                    self.deps.config.clone(),
                    kind,
                    true,
                    self.inputs_tx.clone(),
                );
                self.spawn_task(TaskKey::Payment(kind), task);
            }
        }
    }

    fn payments_running(&self) -> bool {
        [PaymentKind::Swap, PaymentKind::Prepay]
            .iter()
            .any(|k| self.running(TaskKey::Payment(*k)))
    }

    fn running(&self, key: TaskKey) -> bool {
        self.tasks.get(&key).is_some_and(|h| !h.is_finished())
    }

    /// Steps, saves, acts. Returns false if the engine shut down while saving.
    async fn handle(&mut self, input: Input) -> bool {
        let name = input.name();
        let t = match step(&self.contract, &self.progress, input) {
            Ok(t) => t,
            Err(rejected) => {
                tracing::error!(swap = %self.hash(), input = name, error = %rejected,
                    "input rejected by the swap state machine; nothing saved, nothing done");
                return true;
            }
        };
        if t.next == self.progress && t.actions.is_empty() {
            return true;
        }
        if !self.save(&t.next).await {
            return false;
        }
        tracing::debug!(swap = %self.hash(), input = name, rule = t.rule.label(),
            state = t.next.state.as_str(), "step saved");
        self.progress = t.next;
        for action in t.actions {
            self.act(action);
        }
        true
    }

    /// Saves `next`, retrying with backoff until it is durable. Returns false on shutdown.
    async fn save(&self, next: &SwapProgress) -> bool {
        let config = &self.deps.config;
        let mut delay = config.retry_initial;
        loop {
            let costs = next.costs();
            match self
                .deps
                .store
                .save_progress(self.hash(), next, costs, config.now_unix())
                .await
            {
                Ok(()) => return true,
                Err(e) => {
                    tracing::error!(swap = %self.hash(), error = %e,
                        "saving swap progress failed; not acting until it is saved");
                }
            }
            tokio::select! {
                _ = self.deps.cancel.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(config.retry_max);
        }
    }

    fn spawn_task<F>(&mut self, key: TaskKey, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if self.running(key) {
            return;
        }
        let cancel = self.tasks_cancel.clone();
        let handle = tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = task => {}
            }
        });
        self.tasks.insert(key, handle);
    }

    fn act(&mut self, action: Action) {
        let hash = self.hash();
        match action {
            Action::DispatchPayment { kind } => {
                let task = watch::payment(
                    Arc::clone(&self.deps.node),
                    Arc::clone(&self.contract),
                    self.extras.clone(),
                    self.deps.config.clone(),
                    kind,
                    false,
                    self.inputs_tx.clone(),
                );
                self.spawn_task(TaskKey::Payment(kind), task);
            }
            Action::WatchHtlc {
                pk_script,
                height_hint,
                confirmations,
            } => {
                let task = watch::htlc(
                    Arc::clone(&self.deps.node),
                    self.deps.config.clone(),
                    pk_script,
                    height_hint,
                    confirmations,
                    self.inputs_tx.clone(),
                );
                self.spawn_task(TaskKey::WatchHtlc, task);
            }
            Action::WatchSpend {
                outpoint,
                height_hint,
            } => {
                let task = watch::spend(
                    Arc::clone(&self.deps.node),
                    self.deps.config.clone(),
                    crate::lnd::types::SpendRequest {
                        outpoint: Some(outpoint),
                        script: self.contract.terms().htlc_pk_script.clone(),
                        height_hint,
                    },
                    self.chain.destination.clone(),
                    hash,
                    self.inputs_tx.clone(),
                );
                self.spawn_task(TaskKey::WatchSpend(outpoint), task);
            }
            Action::CancelWithServer { reason } => {
                let (route, failure) = cancel_route(reason);
                let req = CancelRequest {
                    swap_hash: hash,
                    payment_address: self.extras.payment_address,
                    route,
                    remaining_hops: Vec::new(),
                    failure,
                };
                let provider = Arc::clone(&self.deps.provider);
                tokio::spawn(async move {
                    match provider.cancel_loop_out(&req).await {
                        Ok(()) => {
                            tracing::info!(swap = %hash, ?reason, "swap cancelled with the server")
                        }
                        Err(e) => tracing::warn!(swap = %hash, ?reason, error = %e,
                            "cancelling with the server failed (best effort, not retried)"),
                    }
                });
            }
            Action::PushPreimage => {
                let secret = match self.progress.release_preimage(&self.preimage) {
                    Ok(bytes) => *bytes,
                    Err(e) => {
                        tracing::error!(swap = %hash, error = %e, "preimage push refused");
                        return;
                    }
                };
                let provider = Arc::clone(&self.deps.provider);
                let tx = self.inputs_tx.clone();
                self.spawn_task(TaskKey::Push, async move {
                    match provider.push_preimage(&secret).await {
                        Ok(()) => {
                            let _ = tx.send(Input::ServerPushAcked);
                        }
                        Err(e) => tracing::warn!(swap = %hash, error = %e,
                            "pushing the preimage failed; retried next block"),
                    }
                });
            }
            Action::EstimateSweepFee {
                height,
                blocks_left,
            } => {
                let node = Arc::clone(&self.deps.node);
                let tx = self.inputs_tx.clone();
                self.spawn_task(TaskKey::Estimate, async move {
                    let (target, _) = crate::chain::fees::conf_target(blocks_left);
                    match node.estimate_fee(target).await {
                        Ok(rate) => {
                            let _ = tx.send(Input::SweepFeeEstimate {
                                height,
                                rate: crate::chain::SatPerKw(rate.to_sat_per_kwu()),
                            });
                        }
                        Err(e) => tracing::warn!(swap = %hash, error = %e,
                            "fee estimate for the reveal failed; asked again next block"),
                    }
                });
            }
            Action::PublishSweep {
                htlc,
                htlc_value,
                blocks_left,
                fee_share,
            } => {
                let secret = match self.progress.release_preimage(&self.preimage) {
                    Ok(bytes) => *bytes,
                    Err(e) => {
                        tracing::error!(swap = %hash, error = %e, "sweep refused");
                        return;
                    }
                };
                let job = sweep::SweepJob {
                    node: Arc::clone(&self.deps.node),
                    provider: Arc::clone(&self.deps.provider),
                    contract: Arc::clone(&self.contract),
                    payment_address: self.extras.payment_address,
                    chain: self.chain.clone(),
                    outpoint: htlc,
                    value: htlc_value,
                    blocks_left,
                    fee_share,
                    height: self
                        .progress
                        .best_height
                        .unwrap_or(self.contract.terms().initiation_height),
                    preimage: secret,
                    push_first: !self.progress.preimage_push_acked
                        && !self.progress.swap_payment.is_succeeded(),
                    last: Arc::clone(&self.last_sweep),
                };
                let tx = self.inputs_tx.clone();
                self.spawn_task(TaskKey::Sweep, async move {
                    if let Err(cause) = job.run().await {
                        let _ = tx.send(Input::SweepPublishFailed { cause });
                    }
                });
            }
            Action::Notify { state } => {
                let costs = self.progress.costs();
                tracing::info!(swap = %hash, state = state.as_str(), server_sat = costs.server_sat,
                    onchain = %costs.onchain, offchain = %costs.offchain, "swap state changed");
                let _ = self.deps.updates.send(SwapUpdate {
                    hash,
                    state,
                    costs,
                    created: false,
                });
            }
        }
    }
}

/// Which payment the server is told about, and why, in its terms.
fn cancel_route(reason: CancelReason) -> (CancelRoute, PaymentFailure) {
    match reason {
        CancelReason::PaymentFailed { kind, reason } => {
            let route = match kind {
                PaymentKind::Swap => CancelRoute::Invoice,
                PaymentKind::Prepay => CancelRoute::Prepay,
            };
            let failure = match reason {
                PaymentFailureReason::Timeout => PaymentFailure::Timeout,
                PaymentFailureReason::NoRoute => PaymentFailure::NoRoute,
                PaymentFailureReason::Error | PaymentFailureReason::Canceled => {
                    PaymentFailure::Error
                }
                PaymentFailureReason::IncorrectPaymentDetails => {
                    PaymentFailure::IncorrectPaymentDetails
                }
                PaymentFailureReason::InsufficientBalance => PaymentFailure::InsufficientBalance,
            };
            (route, failure)
        }
        CancelReason::RevealDeadlineReached | CancelReason::InsufficientHtlcValue { .. } => {
            (CancelRoute::Invoice, PaymentFailure::None)
        }
    }
}
