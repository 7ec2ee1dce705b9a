//! One task per Loop In: receive an input, [`step`], save the next progress, only then act
//! (the Loop Out driver's discipline, for the other direction).
//!
//! The funding (`FundHtlc`) is the one action that spends the wallet: it is run once, never
//! retried; a transient error leaves the HTLC watch to find the transaction if lnd published
//! it, and only a definite refusal reports `FundingFailed`. The internal key leaves only
//! through [`LoopInProgress::release_internal_key`] on the progress just saved. The timeout
//! sweep signs the timeout leaf with the script key through lnd's signer, is checked by the
//! consensus interpreter, and pays no more than `max_miner_fee`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, TxOut};
use futures::StreamExt;
use tokio::sync::{Mutex, broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::EngineConfig;
use super::loop_in::FUNDING_WEIGHT_ESTIMATE;
use crate::chain::fees::{SweepWitness, capped_rate, fee_for, sweep_weight};
use crate::chain::htlc::{HtlcVersion, is_success_witness};
use crate::chain::sweep::{SweepRequest, build_sweep};
use crate::chain::{ChainError, HtlcKeys, HtlcV3, SatPerKw, verify};
use crate::domain::{BlockHeight, Sat, SwapHash};
use crate::lnd::LightningNode;
use crate::lnd::types::{
    CoinSelection, ConfRequest, ConfUpdate, InvoiceState, KeyDescriptor, KeyLocator,
    SendOutputsRequest, SignInput, SignMethod, SignRequest, SpendRequest, SpendUpdate, WalletUtxo,
};
use crate::provider::validate::check_funding_tx;
use crate::store::loop_in::StoredLoopIn;
use crate::swap::driver::DriverDeps;
use crate::swap::loop_in::{
    InternalKey, LoopInAction, LoopInContract, LoopInInput, LoopInProgress, LoopInSpendPath,
    TIMEOUT_SWEEP_CONF_TARGET, step,
};

/// Why a stored Loop In cannot be driven.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoopInSetupError {
    /// A stored key is not a curve point.
    #[error("stored {0} is not a valid public key")]
    BadKey(&'static str),
    /// The HTLC could not be rebuilt.
    #[error("rebuilding the HTLC: {0}")]
    Htlc(#[from] ChainError),
    /// The rebuilt HTLC pays another script than the stored one.
    #[error("the HTLC rebuilt from the contract does not pay the stored htlc_pk_script")]
    ScriptMismatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TaskKey {
    Estimate,
    Fund,
    WatchHtlc,
    WatchSpend(OutPoint),
    WatchInvoice,
    Push,
    Sweep,
}

/// One Loop In's driver.
pub(crate) struct LoopInDriver {
    deps: DriverDeps,
    contract: Arc<LoopInContract>,
    internal_key: InternalKey,
    progress: LoopInProgress,
    htlc: Arc<HtlcV3>,
    inputs_tx: mpsc::UnboundedSender<LoopInInput>,
    inputs_rx: mpsc::UnboundedReceiver<LoopInInput>,
    tasks: HashMap<TaskKey, JoinHandle<()>>,
    tasks_cancel: CancellationToken,
    /// The wallet address timeout sweeps pay, taken once per run and reused.
    sweep_destination: Arc<Mutex<Option<ScriptBuf>>>,
}

fn point(field: &'static str, k: &[u8; 33]) -> Result<PublicKey, LoopInSetupError> {
    PublicKey::from_slice(k).map_err(|_| LoopInSetupError::BadKey(field))
}

impl LoopInDriver {
    /// Prepares the driver of a stored Loop In; checks that the HTLC rebuilds to the stored
    /// script.
    pub(crate) fn new(
        deps: DriverDeps,
        swap: StoredLoopIn,
    ) -> Result<LoopInDriver, LoopInSetupError> {
        let t = swap.record.contract.terms();
        let htlc = HtlcV3::with_internal_keys(
            HtlcKeys {
                sender: point("sender_key", &t.sender_key)?,
                receiver: point("receiver_key", &t.receiver_key)?,
                sender_internal: point("sender_internal_key", &t.sender_internal_key)?,
                receiver_internal: point("receiver_internal_key", &t.receiver_internal_key)?,
            },
            t.swap_hash,
            t.expiry.0,
            swap.record.network,
        )?;
        if htlc.pk_script() != t.htlc_pk_script {
            return Err(LoopInSetupError::ScriptMismatch);
        }
        let (inputs_tx, inputs_rx) = mpsc::unbounded_channel();
        let tasks_cancel = deps.cancel.child_token();
        Ok(LoopInDriver {
            deps,
            contract: Arc::new(swap.record.contract),
            internal_key: swap.internal_key,
            progress: swap.record.progress,
            htlc: Arc::new(htlc),
            inputs_tx,
            inputs_rx,
            tasks: HashMap::new(),
            tasks_cancel,
            sweep_destination: Arc::new(Mutex::new(None)),
        })
    }

    fn hash(&self) -> SwapHash {
        self.contract.terms().swap_hash
    }

    /// Drives the swap until it is terminal or the engine shuts down.
    pub(crate) async fn run(mut self) {
        let mut height_rx = self.deps.height.clone();
        let height = tokio::select! {
            _ = self.deps.cancel.cancelled() => return,
            h = height_rx.wait_for(Option::is_some) => match h.ok().and_then(|h| *h) {
                Some(h) => h,
                None => return,
            },
        };
        if self.handle(LoopInInput::Resumed { height }).await {
            while !self.progress.state.is_terminal() {
                let input = tokio::select! {
                    biased;
                    _ = self.deps.cancel.cancelled() => break,
                    Some(input) = self.inputs_rx.recv() => input,
                    block = self.deps.blocks.recv() => match block {
                        Ok(height) => LoopInInput::Block { height },
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            match *self.deps.height.borrow() {
                                Some(height) => LoopInInput::Block { height },
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
        tracing::debug!(swap = %self.hash(), state = self.progress.state.as_str(),
            "loop in driver stopped");
    }

    /// Steps, saves, acts. Returns false if the engine shut down while saving.
    async fn handle(&mut self, input: LoopInInput) -> bool {
        let name = input.name();
        let t = match step(&self.contract, &self.progress, input) {
            Ok(t) => t,
            Err(rejected) => {
                tracing::error!(swap = %self.hash(), input = name, error = %rejected,
                    "input rejected by the loop in state machine; nothing saved, nothing done");
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
            state = t.next.state.as_str(), "loop in step saved");
        self.progress = t.next;
        for action in t.actions {
            self.act(action);
        }
        true
    }

    async fn save(&self, next: &LoopInProgress) -> bool {
        let config = &self.deps.config;
        let mut delay = config.retry_initial;
        loop {
            let costs = next.costs(self.contract.terms().amount);
            match self
                .deps
                .store
                .save_loop_in_progress(self.hash(), next, costs, config.now_unix())
                .await
            {
                Ok(()) => return true,
                Err(e) => tracing::error!(swap = %self.hash(), error = %e,
                    "saving loop in progress failed; not acting until it is saved"),
            }
            tokio::select! {
                _ = self.deps.cancel.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(config.retry_max);
        }
    }

    fn running(&self, key: TaskKey) -> bool {
        self.tasks.get(&key).is_some_and(|h| !h.is_finished())
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

    /// Spawns `task` under `key`, stopping the one running there first (a watch that must
    /// follow a narrower request from now on).
    fn replace_task<F>(&mut self, key: TaskKey, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if let Some(old) = self.tasks.remove(&key) {
            old.abort();
        }
        self.spawn_task(key, task);
    }

    fn act(&mut self, action: LoopInAction) {
        let hash = self.hash();
        let node = Arc::clone(&self.deps.node);
        let tx = self.inputs_tx.clone();
        let config = self.deps.config.clone();
        let contract = Arc::clone(&self.contract);
        match action {
            LoopInAction::EstimateFunding { height } => {
                let target = contract.terms().htlc_conf_target;
                let funding = TxOut {
                    value: Amount::from_sat(contract.terms().amount.0),
                    script_pubkey: contract.terms().htlc_pk_script.clone(),
                };
                self.spawn_task(TaskKey::Estimate, async move {
                    match funding_estimate(&*node, funding, target).await {
                        Ok((rate, fee)) => {
                            let _ = tx.send(LoopInInput::FundingEstimate { height, rate, fee });
                        }
                        Err(e) => tracing::warn!(swap = %hash, error = %e,
                            "funding fee estimate failed; asked again next block"),
                    }
                });
            }
            LoopInAction::FundHtlc { rate } => {
                let script = contract.terms().htlc_pk_script.clone();
                let amount = contract.terms().amount;
                // Never retried and never started twice: the state machine emits it once.
                self.spawn_task(TaskKey::Fund, async move {
                    let request = SendOutputsRequest {
                        outputs: vec![TxOut {
                            value: Amount::from_sat(amount.0),
                            script_pubkey: script.clone(),
                        }],
                        fee_rate: FeeRate::from_sat_per_kwu(rate.0),
                        label: format!("sluice -- LoopIn HTLC(swap={})", short(hash)),
                        min_confs: 1,
                        coin_selection: CoinSelection::NodeDefault,
                    };
                    // The coins before: what the funding spends is read from them, so the fee
                    // recorded is exactly inputs − outputs.
                    let coins = match node.list_unspent(0).await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(swap = %hash, error = %e,
                                "cannot list the wallet's coins; the funding fee will be estimated");
                            Vec::new()
                        }
                    };
                    match node.send_outputs(&request).await {
                        Ok(funding) => {
                            if let Err(e) = check_funding_tx(&funding, &script, amount) {
                                tracing::error!(swap = %hash, error = %e,
                                    "the wallet's funding transaction does not honour the contract");
                            }
                            let fee = funding_fee(&funding, &coins).unwrap_or_else(|| {
                                tracing::warn!(swap = %hash,
                                    "the funding spent coins not listed before; fee estimated");
                                fee_for(funding.weight(), rate)
                            });
                            tracing::info!(swap = %hash, txid = %funding.compute_txid(), %fee,
                                "loop in HTLC funded");
                            let _ = tx.send(LoopInInput::FundingPublished {
                                txid: funding.compute_txid(),
                                fee,
                            });
                        }
                        Err(e) if e.is_transient() => tracing::error!(swap = %hash, error = %e,
                            "the funding call failed without an answer; not repeated: the HTLC \
                             watch finds the transaction if lnd published it"),
                        Err(e) => {
                            tracing::error!(swap = %hash, error = %e,
                                "the wallet refused to fund the HTLC; nothing was spent");
                            let _ = tx.send(LoopInInput::FundingFailed);
                        }
                    }
                });
            }
            LoopInAction::FindFunding => {
                tracing::warn!(swap = %hash,
                    "restarted after saving the funding intent without its transaction: never \
                     funding again; the HTLC watch reports the output if lnd published it");
            }
            LoopInAction::WatchHtlc {
                pk_script,
                height_hint,
                funding_txid,
            } => {
                let request = ConfRequest {
                    txid: funding_txid,
                    script: pk_script,
                    num_confs: 1,
                    height_hint,
                };
                // Once our funding is known the watch follows it alone: replace a watch of
                // the script (which would keep reporting the first output to it).
                self.replace_task(TaskKey::WatchHtlc, watch_htlc(node, config, request, tx));
            }
            LoopInAction::WatchSpend {
                outpoint,
                height_hint,
            } => {
                let request = SpendRequest {
                    outpoint: Some(outpoint),
                    script: contract.terms().htlc_pk_script.clone(),
                    height_hint,
                };
                self.spawn_task(
                    TaskKey::WatchSpend(outpoint),
                    watch_spend(node, config, request, tx),
                );
            }
            LoopInAction::WatchInvoice => {
                self.spawn_task(TaskKey::WatchInvoice, watch_invoice(node, config, hash, tx));
            }
            LoopInAction::PushKey => {
                let secret = match self.progress.release_internal_key(&self.internal_key) {
                    Ok(bytes) => *bytes,
                    Err(e) => {
                        tracing::error!(swap = %hash, error = %e, "key push refused");
                        return;
                    }
                };
                let provider = Arc::clone(&self.deps.provider);
                self.spawn_task(TaskKey::Push, async move {
                    match provider.push_key(hash, &secret).await {
                        Ok(()) => {
                            let _ = tx.send(LoopInInput::KeyPushAcked);
                        }
                        Err(e) => tracing::warn!(swap = %hash, error = %e,
                            "pushing the internal key failed; retried next block"),
                    }
                });
            }
            LoopInAction::PublishTimeoutSweep {
                htlc,
                htlc_value,
                max_fee,
            } => {
                let job = TimeoutSweep {
                    node,
                    contract,
                    htlc: Arc::clone(&self.htlc),
                    outpoint: htlc,
                    value: htlc_value,
                    max_fee,
                    height: self
                        .progress
                        .best_height
                        .unwrap_or(self.contract.terms().expiry),
                    destination: Arc::clone(&self.sweep_destination),
                };
                self.spawn_task(TaskKey::Sweep, async move {
                    if let Err(e) = job.run().await {
                        tracing::warn!(swap = %hash, error = %e,
                            "timeout sweep not published; retried next block");
                        let _ = tx.send(LoopInInput::SweepPublishFailed);
                    }
                });
            }
            LoopInAction::CancelInvoice => {
                tokio::spawn(async move {
                    match node.cancel_invoice(hash).await {
                        Ok(()) => tracing::info!(swap = %hash, "swap invoice cancelled"),
                        Err(e) => tracing::warn!(swap = %hash, error = %e,
                            "cancelling the swap invoice failed (it may be settled already)"),
                    }
                });
            }
            LoopInAction::Notify { state } => {
                let costs = self.progress.costs(self.contract.terms().amount);
                tracing::info!(swap = %hash, state = state.as_str(), server_sat = costs.server_sat,
                    onchain = %costs.onchain, "loop in state changed");
                let _ = self.deps.loop_in_updates.send(super::LoopInUpdate {
                    hash,
                    state,
                    costs,
                    amount: self.contract.terms().amount,
                    label: self.contract.terms().label.clone(),
                });
            }
        }
    }
}

/// What funding `output` costs now: lnd's estimate with its coin selection (`EstimateFee`),
/// or, from a node that cannot make one, the rate for a funding of one input
/// ([`FUNDING_WEIGHT_ESTIMATE`]). Coins need one confirmation, as `SendOutputs` is asked.
pub(super) async fn funding_estimate(
    node: &dyn LightningNode,
    output: TxOut,
    target: u32,
) -> Result<(SatPerKw, Sat), crate::lnd::NodeError> {
    match node.estimate_send_fee(&[output], target, 1).await {
        Ok(e) => Ok((
            SatPerKw(e.rate.to_sat_per_kwu()).max(SatPerKw::FLOOR),
            e.fee,
        )),
        Err(e) if e.is_transient() => Err(e),
        Err(e) => {
            tracing::debug!(error = %e, "no coin-selecting estimate; estimating for one input");
            let rate =
                SatPerKw(node.estimate_fee(target).await?.to_sat_per_kwu()).max(SatPerKw::FLOOR);
            Ok((rate, fee_for(FUNDING_WEIGHT_ESTIMATE, rate)))
        }
    }
}

/// What `funding` paid miners: the listed values of the coins it spends less its outputs;
/// `None` if a spent coin was not listed.
fn funding_fee(funding: &bitcoin::Transaction, coins: &[WalletUtxo]) -> Option<Sat> {
    let mut inputs = 0u64;
    for input in &funding.input {
        let coin = coins.iter().find(|c| c.outpoint == input.previous_output)?;
        inputs = inputs.checked_add(coin.amount.0)?;
    }
    let outputs: u64 = funding.output.iter().map(|o| o.value.to_sat()).sum();
    inputs.checked_sub(outputs).map(Sat)
}

fn short(hash: SwapHash) -> String {
    hash.to_string().chars().take(6).collect()
}

async fn backoff(delay: &mut Duration, config: &EngineConfig) {
    tokio::time::sleep(*delay).await;
    *delay = (*delay * 2).min(config.retry_max);
}

/// Watches for the first confirmed output paying exactly the request's script (one
/// confirmation), in the request's transaction when it names one.
async fn watch_htlc(
    node: Arc<dyn LightningNode>,
    config: EngineConfig,
    request: ConfRequest,
    tx: mpsc::UnboundedSender<LoopInInput>,
) {
    let pk_script = request.script.clone();
    let mut delay = config.retry_initial;
    loop {
        match node.register_confirmations(&request).await {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    let input = match item {
                        Ok(ConfUpdate::Confirmed {
                            tx: funding,
                            block_height,
                            ..
                        }) => {
                            let Some((vout, out)) = funding
                                .output
                                .iter()
                                .enumerate()
                                .find(|(_, o)| o.script_pubkey == pk_script)
                            else {
                                continue;
                            };
                            LoopInInput::HtlcConfirmed {
                                outpoint: OutPoint {
                                    txid: funding.compute_txid(),
                                    vout: u32::try_from(vout).unwrap_or(u32::MAX),
                                },
                                value: Sat(out.value.to_sat()),
                                height: block_height,
                                confirmations: 1,
                            }
                        }
                        Ok(ConfUpdate::Reorg) => LoopInInput::HtlcReorged,
                        Err(e) => {
                            tracing::warn!(error = %e, "loop in HTLC watch broke; re-registering");
                            break;
                        }
                    };
                    if tx.send(input).is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the loop in HTLC; retrying"),
        }
        backoff(&mut delay, &config).await;
    }
}

/// Watches the HTLC outpoint for a confirmed spend: 1 or 4 witness elements are the server's
/// claim, anything else our timeout sweep (Loop's `IsSuccessWitness`).
async fn watch_spend(
    node: Arc<dyn LightningNode>,
    config: EngineConfig,
    request: SpendRequest,
    tx: mpsc::UnboundedSender<LoopInInput>,
) {
    let mut delay = config.retry_initial;
    let mut vouched = false;
    loop {
        if vouched {
            vouched = false;
            if tx.send(LoopInInput::SpendReorged).is_err() {
                return;
            }
        }
        match node.register_spend(&request).await {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    let input = match item {
                        Ok(SpendUpdate::Spent {
                            spending_tx,
                            input_index,
                            height,
                            ..
                        }) => {
                            let empty = bitcoin::Witness::new();
                            let witness = usize::try_from(input_index)
                                .ok()
                                .and_then(|i| spending_tx.input.get(i))
                                .map_or(&empty, |i| &i.witness);
                            let path = if is_success_witness(HtlcVersion::V3, witness) {
                                LoopInSpendPath::ServerClaim
                            } else {
                                LoopInSpendPath::Timeout {
                                    swept_value: Sat(spending_tx
                                        .output
                                        .iter()
                                        .map(|o| o.value.to_sat())
                                        .sum()),
                                }
                            };
                            vouched = true;
                            LoopInInput::HtlcSpent {
                                txid: spending_tx.compute_txid(),
                                height,
                                path,
                            }
                        }
                        Ok(SpendUpdate::Reorg) => {
                            vouched = false;
                            LoopInInput::SpendReorged
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "loop in spend watch broke; re-registering");
                            break;
                        }
                    };
                    if tx.send(input).is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the loop in HTLC spend; retrying"),
        }
        backoff(&mut delay, &config).await;
    }
}

/// Follows the swap invoice: settled (the server paid) or cancelled.
async fn watch_invoice(
    node: Arc<dyn LightningNode>,
    config: EngineConfig,
    hash: SwapHash,
    tx: mpsc::UnboundedSender<LoopInInput>,
) {
    let mut delay = config.retry_initial;
    loop {
        match node.subscribe_single_invoice(hash).await {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    let input = match item {
                        Ok(u) => match u.state {
                            InvoiceState::Settled => LoopInInput::InvoiceSettled {
                                amount_paid: u.amount_paid.to_sat_floor(),
                            },
                            InvoiceState::Canceled => LoopInInput::InvoiceCanceled,
                            InvoiceState::Open | InvoiceState::Accepted => continue,
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, "swap invoice watch broke; re-subscribing");
                            break;
                        }
                    };
                    let last = !matches!(input, LoopInInput::InvoiceCanceled);
                    if tx.send(input).is_err() || last {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the swap invoice; retrying"),
        }
        backoff(&mut delay, &config).await;
    }
}

/// One timeout sweep: back to a wallet address, the timeout leaf signed by lnd, capped fee.
struct TimeoutSweep {
    node: Arc<dyn LightningNode>,
    contract: Arc<LoopInContract>,
    htlc: Arc<HtlcV3>,
    outpoint: OutPoint,
    value: Sat,
    max_fee: Sat,
    height: BlockHeight,
    destination: Arc<Mutex<Option<ScriptBuf>>>,
}

impl TimeoutSweep {
    async fn destination(&self) -> Result<ScriptBuf, String> {
        let mut cached = self.destination.lock().await;
        if let Some(d) = cached.as_ref() {
            return Ok(d.clone());
        }
        let addr = self
            .node
            .next_addr()
            .await
            .map_err(|e| format!("no wallet address: {e}"))?;
        let script = addr.script_pubkey();
        *cached = Some(script.clone());
        Ok(script)
    }

    async fn run(self) -> Result<(), String> {
        let destination = self.destination().await?;
        let needed = self
            .node
            .estimate_fee(TIMEOUT_SWEEP_CONF_TARGET)
            .await
            .map_err(|e| format!("fee estimate: {e}"))?;
        let path = SweepWitness::V3Timeout {
            script_len: self.htlc.timeout_script().len(),
        };
        let weight = sweep_weight(path, &destination);
        let rate = capped_rate(SatPerKw(needed.to_sat_per_kwu()), self.max_fee, weight);
        let unsigned = build_sweep(&SweepRequest {
            htlc_outpoint: self.outpoint,
            htlc_value: self.value,
            htlc_pk_script: self.contract.terms().htlc_pk_script.clone(),
            path,
            destination,
            fee_rate: rate,
            height: self.height,
        })
        .map_err(|e| format!("building: {e}"))?;
        let prevout = unsigned.prevouts.first().cloned().ok_or("no prevout")?;
        let locator = self.contract.terms().sender_key_locator;
        let sigs = self
            .node
            .sign_output_raw(&SignRequest {
                tx: unsigned.tx.clone(),
                inputs: vec![SignInput {
                    input_index: 0,
                    key: KeyDescriptor {
                        pubkey: self.htlc.sender(),
                        locator: KeyLocator {
                            family: i32::try_from(locator.family).unwrap_or(i32::MAX),
                            index: i32::try_from(locator.index).unwrap_or(i32::MAX),
                        },
                    },
                    output: prevout,
                    sighash: 0,
                    method: SignMethod::TaprootScriptSpend {
                        leaf_script: self.htlc.timeout_script().to_owned(),
                    },
                }],
                prev_outputs: unsigned.prevouts.clone(),
            })
            .await
            .map_err(|e| format!("lnd could not sign the timeout leaf: {e}"))?;
        let sig = sigs
            .first()
            .and_then(|s| bitcoin::taproot::Signature::from_slice(s).ok())
            .ok_or("lnd returned no taproot signature")?;
        let fee = unsigned.fee;
        let prevouts = unsigned.prevouts.clone();
        let tx = unsigned.signed(self.htlc.timeout_witness(&sig));
        verify::verify_spend(&tx, &prevouts).map_err(|e| format!("does not verify: {e}"))?;
        if fee > self.max_fee.max(fee_for(weight, SatPerKw::FLOOR)) {
            return Err(format!("fee {fee} above max_miner_fee {}", self.max_fee));
        }
        let label = format!(
            "sluice -- LoopIn TimeoutSweep(swap={})",
            short(self.contract.terms().swap_hash)
        );
        self.node
            .publish_transaction(&tx, &label)
            .await
            .map_err(|e| format!("publishing: {e}"))?;
        tracing::info!(swap = %self.contract.terms().swap_hash, txid = %tx.compute_txid(), %fee,
            "loop in timeout sweep published");
        Ok(())
    }
}
