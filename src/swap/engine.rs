//! The swap engine: creates Loop Out (and, in `engine/loop_in.rs`, Loop In) swaps and runs one
//! driver task per unfinished swap.
//!
//! Creating a swap follows `loop-protocol.md` §1 A–C: terms → expiry → quote → limits →
//! preimage (OS randomness) and receiver key (lnd, family 99) → `NewLoopOutSwap` → full
//! validation of the answer → the HTLC computed locally → the contract stored, *before* any
//! payment. Only then is a driver (the private `driver` module) spawned, which saves every step before
//! acting. At start, [`SwapEngine::resume_all`] restarts every unfinished swap from the store
//! once a fresh block epoch gave the height.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Address, ScriptBuf};
use futures::StreamExt;
use rand::RngCore;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod loop_in;
mod loop_in_driver;

pub use loop_in::{
    CreatedLoopIn, DEFAULT_MINER_FEE_MULTIPLIER, FUNDING_WEIGHT_ESTIMATE, LoopInQuoteInfo,
    LoopInRequest, RouteHints, probe_hash,
};

use super::driver::{Driver, DriverDeps};
use super::{
    ContractTerms, FeeLimits, InvoiceTerms, KeyLocator, LoopOutContract, Preimage, SWAP_KEY_FAMILY,
    SwapCosts, SwapProgress, SwapState,
};
use crate::chain::fees::{SweepWitness, fee_for, sweep_weight};
use crate::chain::{ChainError, HtlcV3, SatPerKw};
use crate::domain::{BlockHeight, ChanId, Direction, Network, Ppm, Sat, SwapHash};
use crate::lnd::{LightningNode, NodeError};
use crate::provider::port::{LoopOutTerms, NewLoopOutRequest};
use crate::provider::validate::{
    ContractError as ValidationError, ContractExpectations, InvoiceRole, decode_invoice,
    validate_loop_out,
};
use crate::provider::{ProviderError, SwapProvider};
use crate::store::{Store, StoreError, SwapExtras};

/// Where the engine's wall-clock time comes from (since the Unix epoch).
pub type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    })
}

/// How the engine creates and drives swaps. [`EngineConfig::new`] gives Loop's defaults
/// (`loop-protocol.md` §9).
#[derive(Clone)]
pub struct EngineConfig {
    /// The chain sluice runs on.
    pub network: Network,
    /// The requested HTLC confirmation target (the CLTV delta), default 9.
    pub conf_target: u32,
    /// HTLC confirmations before the reveal, default 1.
    pub htlc_confirmations: u32,
    /// Blocks before the expiry under which the preimage is never revealed, default 20.
    pub reveal_margin_blocks: u32,
    /// Confirmations that make a spend final, default 3.
    pub sweep_finality_confirmations: u32,
    /// From this many blocks before the expiry a sweep offers its whole `max_miner_fee` (the
    /// end of the fee schedule after the reveal; the cap itself always holds), default 10.
    pub fee_cap_lifted_within_blocks: u32,
    /// Most HTLC parts a payment may be split into, default 5.
    pub max_parts: u32,
    /// How long lnd keeps trying a payment, default 60 minutes.
    pub payment_timeout: Duration,
    /// CLTV the route may add on top of the swap invoice's final delta, default 1 008 blocks.
    pub route_cltv_allowance: u32,
    /// HTLC publication deadline after creation, default 30 minutes.
    pub publication_delay: Duration,
    /// Routing-fee limit base, default 10 sat.
    pub routing_fee_base: Sat,
    /// Routing-fee limit rate, default 20 000 ppm (2 %).
    pub routing_fee_rate: Ppm,
    /// `max_miner_fee` = this × the estimated sweep fee when the request has no limits,
    /// default 250.
    pub miner_fee_multiplier: u64,
    /// An absolute ceiling on any swap's `max_miner_fee`; `None` for none.
    pub miner_fee_cap: Option<Sat>,
    /// The ceilings, relative to the amount, on the limits of a swap whose request sets none
    /// (config `swap.max_swap_fee_ppm`, `swap.max_routing_fee_ppm`,
    /// `swap.max_miner_fee_ppm`).
    pub ceilings: FeeCeilings,
    /// The largest final CLTV delta a swap invoice may ask for, default 400 blocks.
    pub max_final_cltv_delta: u64,
    /// Both invoices must stay valid at least this long at creation, default 5 minutes.
    pub min_invoice_validity: Duration,
    /// How long a Loop In's `NewLoopInSwap` may take (the server probes the node inside it)
    /// before the swap is given up, nothing stored or funded; default 90 s (Loop: 30 s, plus
    /// 60 s for an L402 payment).
    pub new_loop_in_patience: Duration,
    /// First delay before retrying a failed call or save, doubled up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest delay between retries.
    pub retry_max: Duration,
    /// Wall-clock time.
    pub clock: Clock,
}

impl EngineConfig {
    /// Loop's defaults for `network`.
    pub fn new(network: Network) -> EngineConfig {
        EngineConfig {
            network,
            conf_target: 9,
            htlc_confirmations: 1,
            reveal_margin_blocks: super::DEFAULT_REVEAL_MARGIN_BLOCKS,
            sweep_finality_confirmations: super::DEFAULT_SWEEP_FINALITY_CONFIRMATIONS,
            fee_cap_lifted_within_blocks: super::DEFAULT_FEE_CAP_LIFTED_WITHIN_BLOCKS,
            max_parts: 5,
            payment_timeout: Duration::from_secs(3600),
            route_cltv_allowance: 1_008,
            publication_delay: Duration::from_secs(1800),
            routing_fee_base: Sat(10),
            routing_fee_rate: Ppm(20_000),
            miner_fee_multiplier: 250,
            miner_fee_cap: None,
            ceilings: FeeCeilings::default(),
            max_final_cltv_delta: 400,
            min_invoice_validity: Duration::from_secs(300),
            new_loop_in_patience: Duration::from_secs(90),
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            clock: system_clock(),
        }
    }

    /// The fee limits a swap gets when its request sets none, derived from the server's quote
    /// as Loop's CLI does (`loop-protocol.md` §1 C): the quoted swap fee and prepay as their
    /// maximums, routing fees of base + rate on each payment, and `miner_fee_multiplier` × the
    /// worst-case sweep fee at `sweep_rate` (a script-path success input paying a P2WSH
    /// output), capped by `miner_fee_cap`. Every limit stays under its ceiling relative to
    /// the amount ([`FeeCeilings`]); a quoted swap fee or prepay above its ceiling is refused
    /// rather than lowered, since the server's invoice would then be refused anyway. `Quote`
    /// shows these and `LoopOut` starts from them, so both use this one rule.
    pub fn quote_limits(
        &self,
        amount: Sat,
        swap_fee: Sat,
        prepay_amount: Sat,
        sweep_rate: SatPerKw,
    ) -> Result<QuoteLimits, CeilingError> {
        let c = &self.ceilings;
        let swap_fee_ceiling = amount.mul_ppm(c.swap_fee);
        if swap_fee > swap_fee_ceiling {
            return Err(CeilingError {
                what: "swap fee",
                quoted: swap_fee,
                ceiling: swap_fee_ceiling,
                rate: c.swap_fee,
                key: "swap.max_swap_fee_ppm",
            });
        }
        // The prepay is part of the swap fee: the same ceiling holds it.
        if prepay_amount > swap_fee_ceiling {
            return Err(CeilingError {
                what: "prepay",
                quoted: prepay_amount,
                ceiling: swap_fee_ceiling,
                rate: c.swap_fee,
                key: "swap.max_swap_fee_ppm",
            });
        }
        let p2wsh = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::all_zeros());
        let sweep_fee = fee_for(sweep_weight(SweepWitness::V3Success, &p2wsh), sweep_rate);
        let mut max_miner_fee = Sat(sweep_fee.0.saturating_mul(self.miner_fee_multiplier))
            .min(amount.mul_ppm(c.miner_fee));
        if let Some(cap) = self.miner_fee_cap {
            max_miner_fee = max_miner_fee.min(cap);
        }
        let routing_ceiling = amount.mul_ppm(c.routing_fee);
        Ok(QuoteLimits {
            limits: FeeLimits {
                max_swap_fee: swap_fee,
                max_prepay_amount: prepay_amount,
                max_swap_routing_fee: routing_fee_limit(
                    amount,
                    self.routing_fee_base,
                    self.routing_fee_rate,
                )
                .min(routing_ceiling),
                max_prepay_routing_fee: routing_fee_limit(
                    prepay_amount,
                    self.routing_fee_base,
                    self.routing_fee_rate,
                )
                .min(routing_ceiling),
                max_miner_fee,
            },
            estimated_sweep_fee: sweep_fee,
        })
    }

    pub(crate) fn now_unix(&self) -> i64 {
        i64::try_from((self.clock)().as_secs()).unwrap_or(i64::MAX)
    }
}

/// Ceilings, relative to the swap amount, on the limits the engine derives for a swap whose
/// request sets none (an API `LoopOut` without `max_fees`). Explicit limits are the caller's
/// decision and are used as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeCeilings {
    /// The most the server's fee (prepay included) may be; config `swap.max_swap_fee_ppm`,
    /// default 20 000 ppm (2 %).
    pub swap_fee: Ppm,
    /// The most each routing-fee limit may be; config `swap.max_routing_fee_ppm`, default
    /// 30 000 ppm (3 %, above Loop's 10 sat + 2 % so Loop's rule applies unchanged).
    pub routing_fee: Ppm,
    /// The most `max_miner_fee` may be; config `swap.max_miner_fee_ppm`, default 20 000 ppm
    /// (2 %).
    pub miner_fee: Ppm,
}

/// Default of `swap.max_swap_fee_ppm`.
pub const DEFAULT_MAX_SWAP_FEE_PPM: Ppm = Ppm(20_000);
/// Default of `swap.max_routing_fee_ppm`.
pub const DEFAULT_MAX_ROUTING_FEE_PPM: Ppm = Ppm(30_000);
/// Default of `swap.max_miner_fee_ppm`.
pub const DEFAULT_MAX_MINER_FEE_PPM: Ppm = Ppm(20_000);

impl Default for FeeCeilings {
    fn default() -> FeeCeilings {
        FeeCeilings {
            swap_fee: DEFAULT_MAX_SWAP_FEE_PPM,
            routing_fee: DEFAULT_MAX_ROUTING_FEE_PPM,
            miner_fee: DEFAULT_MAX_MINER_FEE_PPM,
        }
    }
}

/// A quote above a configured ceiling: no limits are derived from it, nothing is created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the server quotes a {what} of {quoted}, above the ceiling of {ceiling} ({rate} of the amount, \
     config {key}); raise {key}, or pass fee limits explicitly if you accept it"
)]
pub struct CeilingError {
    /// Which fee.
    pub what: &'static str,
    /// What the server quoted.
    pub quoted: Sat,
    /// The ceiling for this amount.
    pub ceiling: Sat,
    /// The configured rate.
    pub rate: Ppm,
    /// The configuration key.
    pub key: &'static str,
}

/// What the operator (or a policy) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopOutRequest {
    /// The on-chain amount to receive.
    pub amount: Sat,
    /// An external address to sweep to; `None` sweeps to a fresh address of lnd's wallet.
    pub destination: Option<String>,
    /// Channels the swap payment may leave through; empty for any.
    pub outgoing_chan_set: Vec<ChanId>,
    /// The operator's label.
    pub label: String,
    /// Who asks (a policy name, the CLI).
    pub initiator: String,
    /// The HTLC confirmation target; `None` for the configured default.
    pub conf_target: Option<u32>,
    /// The fee limits; `None` derives them from the quote as Loop's CLI does.
    pub limits: Option<FeeLimits>,
    /// Ask the server to publish the HTLC at once instead of within the publication delay.
    pub fast: bool,
}

/// A swap's state changed: for the API's `Monitor` stream, metrics and the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapUpdate {
    /// The swap.
    pub hash: SwapHash,
    /// Its new state.
    pub state: SwapState,
    /// Its costs so far (final in a terminal state once both payments are final).
    pub costs: SwapCosts,
    /// True only for the update sent when the swap was created and stored.
    pub created: bool,
}

/// A Loop In's state change, as the engine publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopInUpdate {
    /// The swap.
    pub hash: SwapHash,
    /// Its new state.
    pub state: super::loop_in::LoopInState,
    /// Its costs so far.
    pub costs: super::loop_in::LoopInCosts,
    /// The HTLC value.
    pub amount: Sat,
    /// The operator's label.
    pub label: String,
}

/// Why a swap could not be created, or the engine not started.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The Lightning node failed a call.
    #[error("lnd {op} failed: {source}")]
    Node {
        /// What the engine was doing.
        op: &'static str,
        /// The node's error.
        #[source]
        source: NodeError,
    },
    /// The swap server failed a call.
    #[error("swap server {op} failed: {source}")]
    Provider {
        /// What the engine was doing.
        op: &'static str,
        /// The provider's error.
        #[source]
        source: ProviderError,
    },
    /// The server's answer failed validation: nothing was stored or paid.
    #[error("the server's swap was refused, nothing was paid: {0}")]
    Validation(#[from] ValidationError),
    /// The gathered terms do not make a valid contract.
    #[error("the swap contract is invalid: {0}")]
    Contract(#[from] super::ContractError),
    /// Building the HTLC failed.
    #[error("building the HTLC failed: {0}")]
    Chain(#[from] ChainError),
    /// Storing the swap failed: nothing was paid.
    #[error("storing the swap failed, nothing was paid: {0}")]
    Store(#[from] StoreError),
    /// The amount is outside the server's terms.
    #[error(
        "amount {amount} is outside the server's terms [{min}, {max}]; choose an amount within them"
    )]
    AmountOutsideTerms {
        /// Requested.
        amount: Sat,
        /// Terms minimum.
        min: Sat,
        /// Terms maximum.
        max: Sat,
    },
    /// The confirmation target exceeds the server's largest CLTV delta.
    #[error(
        "conf_target {conf_target} exceeds the server's maximum CLTV delta {max}; lower conf_target"
    )]
    ConfTargetTooLarge {
        /// Requested.
        conf_target: u32,
        /// The server's maximum.
        max: u32,
    },
    /// The destination address does not parse or is for another network.
    #[error("destination {address:?} is not a valid {network} address: {reason}")]
    BadDestination {
        /// The address given.
        address: String,
        /// sluice's network.
        network: Network,
        /// Why.
        reason: String,
    },
    /// A Loop In request is malformed: the message names the field and the fix.
    #[error("loop in: {0}")]
    LoopInArgument(String),
    /// A Loop In could not be created (the probe did not arrive, the server was too slow):
    /// nothing was stored or funded.
    #[error("loop in: {0}")]
    LoopIn(String),
    /// The server's Loop In answer (or its quote) was refused: nothing was stored or funded.
    #[error("the server's loop in was refused, nothing was stored or funded: {0}")]
    LoopInRefused(#[from] crate::provider::validate::LoopInValidationError),
    /// The gathered Loop In terms do not make a valid contract.
    #[error("the loop in contract is invalid: {0}")]
    LoopInContract(#[from] super::loop_in::LoopInContractError),
    /// No block epoch arrived yet: the chain height is unknown.
    #[error("no block height known yet from lnd's block epochs; wait for lnd to sync")]
    NoHeight,
    /// The engine was shut down.
    #[error("the swap engine is shut down")]
    ShutDown,
    /// The server's quote exceeds a configured ceiling: nothing was stored or paid.
    #[error("{0}; nothing was stored or paid")]
    QuoteAboveCeiling(#[from] CeilingError),
    /// The caller's admission (the fee ledger) refused the swap: nothing was stored or paid.
    #[error("the fee budget refused the swap, nothing was stored or paid: {0}")]
    NotAdmitted(#[from] crate::ledger::AdmitError),
}

/// Decides, from the final contract, the ledger entry (the budget reservation) that is
/// stored in the same transaction as the swap; an error aborts the swap before anything is
/// stored or paid.
pub type Admission = Box<
    dyn FnOnce(&LoopOutContract) -> Result<crate::ledger::Entry, crate::ledger::AdmitError> + Send,
>;

/// [`Admission`] for a Loop In: the reservation decided from the final contract, stored in the
/// same transaction as the swap, before anything is funded.
pub type LoopInAdmission = Box<
    dyn FnOnce(
            &crate::swap::loop_in::LoopInContract,
        ) -> Result<crate::ledger::Entry, crate::ledger::AdmitError>
        + Send,
>;

impl EngineError {
    fn node(op: &'static str) -> impl FnOnce(NodeError) -> EngineError {
        move |source| EngineError::Node { op, source }
    }
    fn provider(op: &'static str) -> impl FnOnce(ProviderError) -> EngineError {
        move |source| EngineError::Provider { op, source }
    }
}

/// The limits [`EngineConfig::quote_limits`] derives from a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteLimits {
    /// The fee limits a swap created now would get.
    pub limits: FeeLimits,
    /// The worst-case sweep fee at the estimated rate (before the multiplier).
    pub estimated_sweep_fee: Sat,
}

/// A created Loop Out, as [`SwapEngine::create_loop_out`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedLoopOut {
    /// The swap's hash, its id.
    pub hash: SwapHash,
    /// What the server said with its answer to `NewLoopOutSwap` (often empty).
    pub server_message: String,
}

/// The expiry for a swap created at `height` with confirmation target `conf_target`
/// (`loop-protocol.md` Phase A): clamped up to the server's minimum delta, refused above its
/// maximum.
pub fn expiry_for(
    height: BlockHeight,
    conf_target: u32,
    terms: &LoopOutTerms,
) -> Result<BlockHeight, EngineError> {
    if conf_target > terms.max_cltv_delta {
        return Err(EngineError::ConfTargetTooLarge {
            conf_target,
            max: terms.max_cltv_delta,
        });
    }
    let delta = conf_target.max(terms.min_cltv_delta);
    Ok(BlockHeight(height.0.saturating_add(delta)))
}

/// A routing-fee limit: `base + amount × rate` (Loop's CLI: 10 sat + 2 %).
pub fn routing_fee_limit(amount: Sat, base: Sat, rate: Ppm) -> Sat {
    base + amount.mul_ppm(rate)
}

struct Inner {
    node: Arc<dyn LightningNode>,
    provider: Arc<dyn SwapProvider>,
    store: Store,
    config: EngineConfig,
    height: watch::Receiver<Option<BlockHeight>>,
    blocks: broadcast::Sender<BlockHeight>,
    updates: broadcast::Sender<SwapUpdate>,
    loop_in_updates: broadcast::Sender<LoopInUpdate>,
    drivers: Mutex<HashMap<SwapHash, JoinHandle<()>>>,
    /// Stored swaps the engine cannot drive, by id (hex hash as stored), with their direction
    /// and why.
    quarantine: Mutex<std::collections::BTreeMap<String, (Direction, String)>>,
    cancel: CancellationToken,
}

/// A stored swap the engine does not drive: its row does not decode, or its HTLC does not
/// rebuild from its contract. Every other swap is driven; this one waits for an operator (see
/// the README's "Quarantined swaps").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedSwap {
    /// The swap hash, hex, as stored.
    pub id: String,
    /// Loop Out or Loop In (the table its row is in).
    pub direction: Direction,
    /// Why it is not driven.
    pub reason: String,
}

/// Creates Loop Out swaps and drives them to their end. Cloning shares the engine.
#[derive(Clone)]
pub struct SwapEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SwapEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwapEngine")
            .field("network", &self.inner.config.network)
            .finish_non_exhaustive()
    }
}

impl SwapEngine {
    /// Starts the engine: subscribes to block epochs (re-subscribing whenever the stream
    /// breaks). Swaps are not resumed yet: call [`SwapEngine::resume_all`] before accepting
    /// new swaps.
    pub fn start(
        node: Arc<dyn LightningNode>,
        provider: Arc<dyn SwapProvider>,
        store: Store,
        config: EngineConfig,
    ) -> SwapEngine {
        let (height_tx, height) = watch::channel(None);
        let (blocks, _) = broadcast::channel(256);
        let (updates, _) = broadcast::channel(1024);
        let (loop_in_updates, _) = broadcast::channel(1024);
        let cancel = CancellationToken::new();
        tokio::spawn(follow_blocks(
            Arc::clone(&node),
            height_tx,
            blocks.clone(),
            config.clone(),
            cancel.clone(),
        ));
        SwapEngine {
            inner: Arc::new(Inner {
                node,
                provider,
                store,
                config,
                height,
                blocks,
                updates,
                loop_in_updates,
                drivers: Mutex::new(HashMap::new()),
                quarantine: Mutex::new(std::collections::BTreeMap::new()),
                cancel,
            }),
        }
    }

    /// Waits for the first block epoch and returns its height.
    pub async fn wait_for_height(&self) -> Result<BlockHeight, EngineError> {
        let mut rx = self.inner.height.clone();
        tokio::select! {
            _ = self.inner.cancel.cancelled() => Err(EngineError::ShutDown),
            h = rx.wait_for(Option::is_some) => match h {
                Ok(h) => (*h).ok_or(EngineError::NoHeight),
                Err(_) => Err(EngineError::ShutDown),
            },
        }
    }

    /// The height of the last block epoch.
    pub fn height(&self) -> Option<BlockHeight> {
        *self.inner.height.borrow()
    }

    /// The chain's tip as lnd sees it now, for terms that count from it (a Loop Out's expiry,
    /// a Loop In's expiry bounds): the block epoch the engine follows may arrive after lnd and
    /// the server already have the block, and an expiry counted from the block before falls
    /// outside the server's window. lnd's answer or the last epoch, whichever is higher; the
    /// last epoch alone when lnd does not answer.
    pub async fn tip_height(&self) -> Result<BlockHeight, EngineError> {
        let followed = self.height();
        match (self.inner.node.block_height().await, followed) {
            (Ok(h), Some(f)) => Ok(h.max(f)),
            (Ok(h), None) => Ok(h),
            (Err(_), Some(f)) => Ok(f),
            (Err(_), None) => Err(EngineError::NoHeight),
        }
    }

    /// The height of the last block epoch, to wait on: the engine's one block-epoch stream
    /// from lnd, shared with whoever else follows blocks (autoloop).
    pub fn follow_height(&self) -> watch::Receiver<Option<BlockHeight>> {
        self.inner.height.clone()
    }

    /// Updates of every swap's state from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SwapUpdate> {
        self.inner.updates.subscribe()
    }

    /// Updates of every Loop In's state from now on.
    pub fn subscribe_loop_in(&self) -> broadcast::Receiver<LoopInUpdate> {
        self.inner.loop_in_updates.subscribe()
    }

    /// Resumes every unfinished swap in the store (after waiting for a block epoch). Returns
    /// how many were resumed. Swaps already running are left alone.
    ///
    /// One swap that cannot be driven (its row does not decode, its HTLC does not rebuild) is
    /// quarantined ([`SwapEngine::quarantined`]) and logged; it never stops the others.
    pub async fn resume_all(&self) -> Result<usize, EngineError> {
        self.wait_for_height().await?;
        let resumable = self.inner.store.load_resumable().await?;
        for bad in resumable.unreadable {
            tracing::error!(swap = %bad.swap_hash, state_code = bad.state_code, error = %bad.error,
                "a stored swap does not decode and is quarantined: it is not driven until the \
                 row is repaired (or sluice upgraded); every other swap is");
            self.quarantine(
                bad.swap_hash,
                Direction::Out,
                format!("stored row does not decode: {}", bad.error),
            );
        }
        let mut n = 0;
        for swap in resumable.swaps {
            if self.spawn_driver(
                swap.record.contract,
                swap.preimage,
                swap.record.extras,
                swap.record.progress,
            ) {
                n += 1;
            }
        }
        n += self.resume_loop_ins().await?;
        Ok(n)
    }

    /// The stored swaps the engine does not drive, by id.
    pub fn quarantined(&self) -> Vec<QuarantinedSwap> {
        self.inner
            .quarantine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(id, (direction, reason))| QuarantinedSwap {
                id: id.clone(),
                direction: *direction,
                reason: reason.clone(),
            })
            .collect()
    }

    fn quarantine(&self, id: String, direction: Direction, reason: String) {
        self.inner
            .quarantine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, (direction, reason));
    }

    /// Whether the driver of `hash` is still running.
    pub fn is_running(&self, hash: SwapHash) -> bool {
        self.lock_drivers()
            .get(&hash)
            .is_some_and(|h| !h.is_finished())
    }

    /// Stops every driver and the block follower. Stored swaps resume at the next start.
    pub fn shutdown(&self) {
        self.inner.cancel.cancel();
    }

    /// Shuts down and waits until every driver has stopped: when it returns, no driver of this
    /// engine acts or writes to the store any more (a restart on the same store cannot race
    /// with it).
    pub async fn stop(&self) {
        self.shutdown();
        let handles: Vec<JoinHandle<()>> = self.lock_drivers().drain().map(|(_, h)| h).collect();
        for handle in handles {
            if let Err(e) = handle.await {
                tracing::warn!(error = %e, "a swap driver ended abnormally");
            }
        }
    }

    fn lock_drivers(&self) -> std::sync::MutexGuard<'_, HashMap<SwapHash, JoinHandle<()>>> {
        self.inner
            .drivers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What a driver task gets from the engine.
    fn driver_deps(&self) -> DriverDeps {
        DriverDeps {
            node: Arc::clone(&self.inner.node),
            provider: Arc::clone(&self.inner.provider),
            store: self.inner.store.clone(),
            config: self.inner.config.clone(),
            height: self.inner.height.clone(),
            blocks: self.inner.blocks.subscribe(),
            updates: self.inner.updates.clone(),
            loop_in_updates: self.inner.loop_in_updates.clone(),
            cancel: self.inner.cancel.child_token(),
        }
    }

    /// Starts the driver of a swap; returns whether it runs. A swap that cannot be driven is
    /// quarantined.
    fn spawn_driver(
        &self,
        contract: LoopOutContract,
        preimage: Preimage,
        extras: SwapExtras,
        progress: SwapProgress,
    ) -> bool {
        let hash = contract.terms().swap_hash;
        let mut drivers = self.lock_drivers();
        if drivers.get(&hash).is_some_and(|h| !h.is_finished()) {
            return true;
        }
        match Driver::new(self.driver_deps(), contract, preimage, extras, progress) {
            Ok(driver) => {
                drivers.insert(hash, tokio::spawn(driver.run()));
                true
            }
            Err(e) => {
                drop(drivers);
                tracing::error!(swap = %hash, error = %e,
                    "cannot drive the stored swap; quarantined, every other swap is driven");
                self.quarantine(
                    hash.to_string(),
                    Direction::Out,
                    format!("cannot be driven: {e}"),
                );
                false
            }
        }
    }

    /// Creates a Loop Out: see the module documentation for the steps. The contract is stored
    /// before anything is paid; the returned swap is then driven in the background.
    pub async fn loop_out(&self, req: LoopOutRequest) -> Result<SwapHash, EngineError> {
        Ok(self.create(req, None).await?.hash)
    }

    /// Creates a Loop Out like [`SwapEngine::loop_out`] and also returns what the server said
    /// with its answer, for the caller to show.
    pub async fn create_loop_out(
        &self,
        req: LoopOutRequest,
    ) -> Result<CreatedLoopOut, EngineError> {
        self.create(req, None).await
    }

    /// Creates a Loop Out like [`SwapEngine::loop_out`], storing the ledger entry `admit`
    /// returns in the same transaction as the contract, so the swap never exists without its
    /// budget reservation.
    pub async fn loop_out_admitted(
        &self,
        req: LoopOutRequest,
        admit: Admission,
    ) -> Result<SwapHash, EngineError> {
        Ok(self.create(req, Some(admit)).await?.hash)
    }

    async fn create(
        &self,
        req: LoopOutRequest,
        admit: Option<Admission>,
    ) -> Result<CreatedLoopOut, EngineError> {
        let inner = &self.inner;
        let config = &inner.config;
        if inner.cancel.is_cancelled() {
            return Err(EngineError::ShutDown);
        }
        let height = self.tip_height().await?;
        let terms = inner
            .provider
            .loop_out_terms()
            .await
            .map_err(EngineError::provider("LoopOutTerms"))?;
        if req.amount < terms.min_amount || req.amount > terms.max_amount {
            return Err(EngineError::AmountOutsideTerms {
                amount: req.amount,
                min: terms.min_amount,
                max: terms.max_amount,
            });
        }
        let conf_target = req.conf_target.unwrap_or(config.conf_target);
        let expiry = expiry_for(height, conf_target, &terms)?;
        let now = (config.clock)();
        let now_unix = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let deadline = if req.fast {
            now_unix
        } else {
            now_unix.saturating_add(i64::try_from(config.publication_delay.as_secs()).unwrap_or(0))
        };
        let quote = inner
            .provider
            .loop_out_quote(req.amount, expiry, deadline)
            .await
            .map_err(EngineError::provider("LoopOutQuote"))?;
        let mut limits = match req.limits {
            Some(l) => l,
            None => {
                let rate = inner
                    .node
                    .estimate_fee(conf_target.max(crate::chain::fees::MIN_CONF_TARGET))
                    .await
                    .map_err(EngineError::node("EstimateFee"))?;
                config
                    .quote_limits(
                        req.amount,
                        quote.swap_fee,
                        quote.prepay_amount,
                        SatPerKw(rate.to_sat_per_kwu()),
                    )?
                    .limits
            }
        };
        if let Some(cap) = config.miner_fee_cap {
            limits.max_miner_fee = limits.max_miner_fee.min(cap);
        }
        let destination = match &req.destination {
            Some(a) => {
                check_address(a, config.network)?;
                (a.clone(), false)
            }
            None => (String::new(), true),
        };

        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let preimage = Preimage::from_bytes(secret);
        let swap_hash = preimage.swap_hash();
        let key = inner
            .node
            .derive_next_key(SWAP_KEY_FAMILY as i32)
            .await
            .map_err(EngineError::node("DeriveNextKey"))?;
        let receiver_key = key.pubkey.serialize();
        let resp = inner
            .provider
            .new_loop_out(&NewLoopOutRequest {
                receiver_key,
                swap_hash,
                amount: req.amount,
                expiry,
                publication_deadline_unix_s: deadline,
                initiator: req.initiator.clone(),
            })
            .await
            .map_err(EngineError::provider("NewLoopOutSwap"))?;
        let validated = validate_loop_out(
            &resp,
            &ContractExpectations {
                network: config.network,
                swap_hash,
                amount: req.amount,
                terms,
                swap_payment_dest: quote.swap_payment_dest,
                max_swap_fee: limits.max_swap_fee,
                max_prepay: limits.max_prepay_amount,
                max_final_cltv_delta: config.max_final_cltv_delta,
                min_invoice_validity: config.min_invoice_validity,
                now,
            },
        )?;
        let (prepay, _) =
            decode_invoice(&resp.prepay_invoice, config.network, InvoiceRole::Prepay)?;
        let sender = PublicKey::from_slice(&validated.sender_key)
            .map_err(|_| ValidationError::SenderKeyNotOnCurve)?;
        let htlc = HtlcV3::new(sender, key.pubkey, swap_hash, expiry.0, config.network)?;
        if !resp.server_message.is_empty() {
            tracing::info!(swap = %swap_hash, message = %resp.server_message, "swap server says");
        }
        // A wallet destination is taken now and stored with the contract, so every sweep of
        // this swap pays the same address.
        let (destination, destination_is_wallet) = if destination.1 {
            let addr = inner
                .node
                .next_addr()
                .await
                .map_err(EngineError::node("NextAddr"))?;
            (addr.to_string(), true)
        } else {
            destination
        };
        let locator = KeyLocator {
            family: u32::try_from(key.locator.family).unwrap_or(SWAP_KEY_FAMILY),
            index: u32::try_from(key.locator.index).unwrap_or(0),
        };
        let contract = LoopOutContract::new(ContractTerms {
            swap_hash,
            amount: req.amount,
            expiry,
            initiation_height: height,
            htlc_confirmations: config.htlc_confirmations,
            reveal_margin_blocks: config.reveal_margin_blocks,
            sweep_finality_confirmations: config.sweep_finality_confirmations,
            fee_cap_lifted_within_blocks: config.fee_cap_lifted_within_blocks,
            fee_limits: limits,
            swap_invoice: InvoiceTerms {
                bolt11: resp.swap_invoice.clone(),
                payment_hash: swap_hash.0,
                amount: validated.swap_invoice_amount,
            },
            prepay_invoice: InvoiceTerms {
                bolt11: resp.prepay_invoice.clone(),
                payment_hash: prepay.payment_hash().to_byte_array(),
                amount: validated.prepay_amount,
            },
            destination,
            outgoing_chan_set: req.outgoing_chan_set.clone(),
            label: req.label.clone(),
            initiator: req.initiator.clone(),
            protocol_version: 11,
            receiver_key_locator: locator,
            sender_key: validated.sender_key,
            receiver_key,
            htlc_pk_script: htlc.pk_script(),
        })?;
        let extras = SwapExtras {
            network: config.network,
            payment_address: validated.payment_address,
            swap_min_final_cltv_delta: validated.min_final_cltv_delta,
            publication_deadline_unix: deadline,
            destination_is_wallet,
        };
        let progress = SwapProgress::new();
        let reservation = admit.map(|admit| admit(&contract)).transpose()?;
        let mut tx = inner.store.begin().await?;
        tx.insert_swap(&contract, &preimage, &extras, &progress, now_unix)
            .await?;
        if let Some(entry) = &reservation {
            tx.insert_ledger_entry(entry).await?;
        }
        tx.commit().await?;
        tracing::info!(swap = %swap_hash, amount = %req.amount, expiry = %expiry,
            label = %req.label, initiator = %req.initiator, "loop out created");
        let _ = inner.updates.send(SwapUpdate {
            hash: swap_hash,
            state: SwapState::Initiated,
            costs: SwapCosts::default(),
            created: true,
        });
        self.spawn_driver(contract, preimage, extras, progress);
        Ok(CreatedLoopOut {
            hash: swap_hash,
            server_message: resp.server_message,
        })
    }
}

fn check_address(address: &str, network: Network) -> Result<ScriptBuf, EngineError> {
    let bad = |reason: String| EngineError::BadDestination {
        address: address.to_owned(),
        network,
        reason,
    };
    let parsed = Address::from_str(address).map_err(|e| bad(e.to_string()))?;
    let checked = parsed
        .require_network(network.bitcoin())
        .map_err(|e| bad(e.to_string()))?;
    Ok(checked.script_pubkey())
}

/// The sweep destination script of a stored contract.
pub(crate) fn destination_script(address: &str, network: Network) -> Result<ScriptBuf, String> {
    check_address(address, network).map_err(|e| e.to_string())
}

/// Follows lnd's block epochs for the engine, re-subscribing after every break.
async fn follow_blocks(
    node: Arc<dyn LightningNode>,
    height: watch::Sender<Option<BlockHeight>>,
    blocks: broadcast::Sender<BlockHeight>,
    config: EngineConfig,
    cancel: CancellationToken,
) {
    let mut delay = config.retry_initial;
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            s = node.register_block_epochs() => s,
        };
        match stream {
            Ok(mut stream) => loop {
                let item = tokio::select! {
                    _ = cancel.cancelled() => return,
                    item = stream.next() => item,
                };
                match item {
                    Some(Ok(epoch)) => {
                        delay = config.retry_initial;
                        height.send_replace(Some(epoch.height));
                        let _ = blocks.send(epoch.height);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "block epoch stream failed; re-subscribing");
                        break;
                    }
                    None => break,
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot subscribe to block epochs; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(config.retry_max);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn terms(min: u32, max: u32) -> LoopOutTerms {
        LoopOutTerms {
            min_amount: Sat(10_000),
            max_amount: Sat(1_000_000),
            min_cltv_delta: min,
            max_cltv_delta: max,
        }
    }

    #[test]
    fn expiry_follows_loops_phase_a_rule() {
        let h = BlockHeight(1_000);
        // Below the server's minimum: clamped up to it.
        assert_eq!(
            expiry_for(h, 9, &terms(30, 400)).unwrap(),
            BlockHeight(1_030)
        );
        // Within the terms: the target itself.
        assert_eq!(
            expiry_for(h, 100, &terms(30, 400)).unwrap(),
            BlockHeight(1_100)
        );
        assert_eq!(
            expiry_for(h, 400, &terms(30, 400)).unwrap(),
            BlockHeight(1_400)
        );
        // Above the maximum: refused, naming the fix.
        let err = expiry_for(h, 401, &terms(30, 400)).unwrap_err();
        assert!(matches!(
            err,
            EngineError::ConfTargetTooLarge {
                conf_target: 401,
                max: 400
            }
        ));
        assert!(err.to_string().contains("lower conf_target"));
    }

    #[test]
    fn routing_fee_limit_is_base_plus_rate() {
        assert_eq!(
            routing_fee_limit(Sat(1_000_000), Sat(10), Ppm(20_000)),
            Sat(20_010)
        );
        assert_eq!(routing_fee_limit(Sat(0), Sat(10), Ppm(20_000)), Sat(10));
    }

    #[test]
    fn destinations_must_be_for_the_network() {
        let regtest = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
        assert!(check_address(regtest, Network::Regtest).is_ok());
        let err = check_address(regtest, Network::Mainnet).unwrap_err();
        assert!(matches!(err, EngineError::BadDestination { .. }));
        assert!(err.to_string().contains(regtest));
        assert!(check_address("not an address", Network::Regtest).is_err());
    }

    #[test]
    fn derived_limits_stay_under_the_ceilings_and_quotes_above_them_are_refused() {
        let c = EngineConfig::new(Network::Regtest);
        let amount = Sat(250_000);
        // 250 × the sweep fee at 50 sat/vB is far above 2 % of the amount: the ceiling binds.
        let q = c
            .quote_limits(amount, Sat(300), Sat(100), SatPerKw(12_500))
            .unwrap();
        assert_eq!(q.limits.max_miner_fee, Sat(5_000));
        assert_eq!(q.limits.max_swap_fee, Sat(300));
        assert_eq!(q.limits.max_prepay_amount, Sat(100));
        // Loop's 10 sat + 2 % stays below the 3 % routing ceiling.
        assert_eq!(q.limits.max_swap_routing_fee, Sat(5_010));
        // At the floor rate the multiplier rule is below the ceiling.
        let calm = c
            .quote_limits(amount, Sat(300), Sat(100), SatPerKw(253))
            .unwrap();
        assert_eq!(
            calm.limits.max_miner_fee,
            Sat(calm.estimated_sweep_fee.0 * 250).min(Sat(5_000))
        );
        // A swap fee of 20 % of the amount is refused, naming the key.
        let err = c
            .quote_limits(amount, Sat(50_000), Sat(100), SatPerKw(253))
            .unwrap_err();
        assert_eq!(err.key, "swap.max_swap_fee_ppm");
        assert_eq!(err.ceiling, Sat(5_000));
        assert!(err.to_string().contains("swap.max_swap_fee_ppm"), "{err}");
        // Exactly at the ceiling is accepted; a prepay above it is refused.
        assert!(
            c.quote_limits(amount, Sat(5_000), Sat(100), SatPerKw(253))
                .is_ok()
        );
        let mut tight = c.clone();
        tight.ceilings.swap_fee = Ppm(1_000);
        let err = tight
            .quote_limits(amount, Sat(250), Sat(300), SatPerKw(253))
            .unwrap_err();
        assert_eq!(err.what, "prepay");
    }

    #[test]
    fn defaults_are_loops() {
        let c = EngineConfig::new(Network::Mainnet);
        assert_eq!(c.conf_target, 9);
        assert_eq!(c.htlc_confirmations, 1);
        assert_eq!(c.max_parts, 5);
        assert_eq!(c.reveal_margin_blocks, 20);
        assert_eq!(c.payment_timeout, Duration::from_secs(3_600));
        assert_eq!(c.miner_fee_multiplier, 250);
    }
}
