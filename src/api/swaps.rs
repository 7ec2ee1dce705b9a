//! The swap RPCs: `Terms`, `Quote`, `LoopOut`, `LoopInQuote`, `LoopIn`, `ListSwaps`,
//! `SwapInfo` and `Monitor`. Loop Ins are listed, shown and monitored beside Loop Outs (their
//! `type` says which).
//!
//! Handlers read the swap server through the provider port, swaps through the store, and
//! create swaps through the [`SwapEngine`]; the daemon hands all of them over in one
//! [`SwapBackend`]. A daemon without one (no swap server configured) answers these RPCs with
//! `UNAVAILABLE`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::{Address, ScriptBuf};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast;

use super::ApiError;
use crate::chain::SatPerKw;
use crate::chain::fees::MIN_CONF_TARGET;
use crate::domain::{ChanId, Network, Sat, SwapHash};
use crate::lnd::LightningNode;
use crate::proto::sluice as pb;
use crate::provider::SwapProvider;
use crate::store::Store;
use crate::store::loop_in::{LoopInRecord, LoopInUpdateRecord};
use crate::store::swaps::{SwapFilter, SwapRecord};
use crate::swap::engine::expiry_for;
use crate::swap::loop_in::LoopInState;
use crate::swap::{
    EngineConfig, FeeLimits, LoopInRequest, LoopOutRequest, RouteHints, SwapCosts, SwapEngine,
    SwapState,
};

/// Everything the swap RPCs need, built by the daemon next to the engine it runs.
#[derive(Clone)]
pub struct SwapBackend {
    /// The engine that creates and drives swaps.
    pub engine: SwapEngine,
    /// The swap server, for terms and quotes.
    pub provider: Arc<dyn SwapProvider>,
    /// sluice's Lightning node, for fee estimates.
    pub node: Arc<dyn LightningNode>,
    /// Where swaps are stored.
    pub store: Store,
    /// The engine's configuration: defaults and how limits are derived.
    pub config: EngineConfig,
}

impl std::fmt::Debug for SwapBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwapBackend")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// The stream `Monitor` answers with.
pub type MonitorStream =
    Pin<Box<dyn Stream<Item = Result<pb::SwapUpdate, tonic::Status>> + Send + 'static>>;

/// The wire name of a state: upper snake case, as Loop prints states.
pub fn state_name(state: SwapState) -> &'static str {
    match state {
        SwapState::Initiated => "INITIATED",
        SwapState::PreimageRevealed => "PREIMAGE_REVEALED",
        SwapState::Succeeded => "SUCCEEDED",
        SwapState::FailedOffchain => "FAILED_OFFCHAIN",
        SwapState::FailedTimeout => "FAILED_TIMEOUT",
        SwapState::FailedSweepTimeout => "FAILED_SWEEP_TIMEOUT",
        SwapState::FailedInsufficientValue => "FAILED_INSUFFICIENT_VALUE",
        SwapState::SpendConfirming => "SPEND_CONFIRMING",
    }
}

/// Parses a state name in either spelling (`SUCCEEDED`, `Succeeded`, `preimage_revealed`).
pub fn parse_state(name: &str) -> Option<SwapState> {
    let squash = |s: &str| s.replace('_', "").to_ascii_lowercase();
    let wanted = squash(name);
    SwapState::ALL
        .into_iter()
        .find(|s| squash(s.as_str()) == wanted)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn costs(c: SwapCosts) -> pb::SwapCosts {
    pb::SwapCosts {
        server_sat: c.server_sat,
        onchain_sat: c.onchain.0,
        offchain_sat: c.offchain.0,
    }
}

fn limits(l: &FeeLimits) -> pb::FeeLimits {
    pb::FeeLimits {
        max_swap_fee_sat: l.max_swap_fee.0,
        max_prepay_amount_sat: l.max_prepay_amount.0,
        max_swap_routing_fee_sat: l.max_swap_routing_fee.0,
        max_prepay_routing_fee_sat: l.max_prepay_routing_fee.0,
        max_miner_fee_sat: l.max_miner_fee.0,
    }
}

/// The address of an HTLC script on `network`, empty if the script has no address form.
fn address_of(script: &[u8], network: Network) -> String {
    Address::from_script(&ScriptBuf::from_bytes(script.to_vec()), network.bitcoin())
        .map(|a| a.to_string())
        .unwrap_or_default()
}

fn summary(r: &SwapRecord) -> pb::SwapSummary {
    let t = r.contract.terms();
    pb::SwapSummary {
        id: t.swap_hash.to_string(),
        state: state_name(r.progress.state).to_owned(),
        state_code: u32::from(r.progress.state.code()),
        amount_sat: t.amount.0,
        label: t.label.clone(),
        initiator: t.initiator.clone(),
        created_at_unix: r.created_at_unix,
        updated_at_unix: r.updated_at_unix,
        costs: Some(costs(r.costs)),
        htlc_address: address_of(t.htlc_pk_script.as_bytes(), r.extras.network),
        quarantined: String::new(),
        r#type: "LOOP_OUT".to_owned(),
    }
}

/// The wire name of a Loop In state: upper snake case.
pub fn loop_in_state_name(state: LoopInState) -> &'static str {
    match state {
        LoopInState::Initiated => "INITIATED",
        LoopInState::Succeeded => "SUCCEEDED",
        LoopInState::FailedTimeout => "FAILED_TIMEOUT",
        LoopInState::HtlcPublished => "HTLC_PUBLISHED",
        LoopInState::InvoiceSettled => "INVOICE_SETTLED",
        LoopInState::IncorrectHtlcAmount => "INCORRECT_HTLC_AMOUNT",
        LoopInState::FailedFunding => "FAILED_FUNDING",
        LoopInState::FailedIncorrectHtlcAmtSwept => "FAILED_INCORRECT_HTLC_AMT_SWEPT",
        LoopInState::HtlcConfirmed => "HTLC_CONFIRMED",
        LoopInState::FailedNotPublished => "FAILED_NOT_PUBLISHED",
        LoopInState::TimeoutSweeping => "TIMEOUT_SWEEPING",
    }
}

fn loop_in_summary(r: &LoopInRecord) -> pb::SwapSummary {
    let t = r.contract.terms();
    pb::SwapSummary {
        id: t.swap_hash.to_string(),
        state: loop_in_state_name(r.progress.state).to_owned(),
        state_code: u32::from(r.progress.state.code()),
        amount_sat: t.amount.0,
        label: t.label.clone(),
        initiator: t.initiator.clone(),
        created_at_unix: r.created_at_unix,
        updated_at_unix: r.updated_at_unix,
        costs: Some(pb::SwapCosts {
            server_sat: r.costs.server_sat,
            onchain_sat: r.costs.onchain.0,
            offchain_sat: 0,
        }),
        htlc_address: address_of(t.htlc_pk_script.as_bytes(), r.network),
        quarantined: String::new(),
        r#type: "LOOP_IN".to_owned(),
    }
}

/// The API's `private` flag as the engine's hint choice.
fn hints(private: bool) -> RouteHints {
    if private {
        RouteHints::Private
    } else {
        RouteHints::None
    }
}

fn parse_last_hop(hex_key: &str) -> Result<Option<[u8; 33]>, ApiError> {
    if hex_key.trim().is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::InvalidArgument {
        field: "last_hop",
        reason: format!(
            "{hex_key:?} is not a node key; expected the peer's 33-byte public key as 66 hex              characters"
        ),
    };
    let bytes: [u8; 33] = hex::decode(hex_key.trim())
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())?;
    bitcoin::secp256k1::PublicKey::from_slice(&bytes).map_err(|_| bad())?;
    Ok(Some(bytes))
}

fn parse_id(id: &str) -> Result<SwapHash, ApiError> {
    let bad = || ApiError::InvalidArgument {
        field: "id",
        reason: format!("{id:?} is not a swap id; expected the swap hash as 64 hex characters"),
    };
    let bytes: [u8; 32] = hex::decode(id.trim())
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())?;
    Ok(SwapHash(bytes))
}

impl SwapBackend {
    /// `Terms`.
    pub async fn terms(&self) -> Result<pb::TermsResponse, ApiError> {
        let t = self
            .provider
            .loop_out_terms()
            .await
            .map_err(|e| unavailable("the swap server", e))?;
        let (loop_in_min_amount_sat, loop_in_max_amount_sat, loop_in_error) =
            match self.provider.loop_in_terms().await {
                Ok(t) => (t.min_amount.0, t.max_amount.0, String::new()),
                Err(e) => (0, 0, e.to_string()),
            };
        Ok(pb::TermsResponse {
            min_amount_sat: t.min_amount.0,
            max_amount_sat: t.max_amount.0,
            min_cltv_delta: t.min_cltv_delta,
            max_cltv_delta: t.max_cltv_delta,
            loop_in_min_amount_sat,
            loop_in_max_amount_sat,
            loop_in_error,
        })
    }

    /// `LoopInQuote`: probe, quote and the funding estimate, with the limits a swap gets.
    pub async fn loop_in_quote(
        &self,
        req: pb::LoopInQuoteRequest,
    ) -> Result<pb::LoopInQuoteResponse, ApiError> {
        if req.amount_sat == 0 {
            return Err(ApiError::InvalidArgument {
                field: "amount_sat",
                reason: "0; ask for an amount within the server's Loop In terms".to_owned(),
            });
        }
        let last_hop = parse_last_hop(&req.last_hop)?;
        let target = (req.htlc_conf_target != 0).then_some(req.htlc_conf_target);
        let q = self
            .engine
            .loop_in_quote(Sat(req.amount_sat), last_hop, &hints(req.private), target)
            .await?;
        Ok(pb::LoopInQuoteResponse {
            amount_sat: req.amount_sat,
            swap_fee_sat: q.quote.swap_fee.0,
            cltv_delta: q.quote.cltv_delta,
            funding_fee_estimate_sat: q.funding_fee_estimate.0,
            htlc_conf_target: target.unwrap_or(crate::swap::loop_in::DEFAULT_HTLC_CONF_TARGET),
            max_swap_fee_sat: q.limits.max_swap_fee.0,
            max_miner_fee_sat: q.limits.max_miner_fee.0,
            hinted_chan_ids: q
                .route_hints
                .iter()
                .flat_map(|r| r.hops.iter().map(|h| h.chan_id.0))
                .collect(),
        })
    }

    /// `LoopIn`: creates the swap through the engine (stored before anything is funded).
    pub async fn loop_in(&self, req: pb::LoopInRequest) -> Result<pb::LoopInResponse, ApiError> {
        if req.amount_sat == 0 {
            return Err(ApiError::InvalidArgument {
                field: "amount_sat",
                reason: "0; ask for an amount within the server's Loop In terms".to_owned(),
            });
        }
        let created = self
            .engine
            .loop_in(LoopInRequest {
                amount: Sat(req.amount_sat),
                max_swap_fee: (req.max_swap_fee_sat != 0).then_some(Sat(req.max_swap_fee_sat)),
                max_miner_fee: (req.max_miner_fee_sat != 0).then_some(Sat(req.max_miner_fee_sat)),
                last_hop: parse_last_hop(&req.last_hop)?,
                route_hints: hints(req.private),
                htlc_conf_target: (req.htlc_conf_target != 0).then_some(req.htlc_conf_target),
                label: req.label,
                initiator: if req.initiator.is_empty() {
                    "api".to_owned()
                } else {
                    req.initiator
                },
            })
            .await?;
        Ok(pb::LoopInResponse {
            id: created.hash.to_string(),
            htlc_address: created.htlc_address,
            expiry_height: created.expiry.0,
            server_message: created.server_message,
        })
    }

    /// `Quote`: the server's quote for a swap created now, and the limits the engine would
    /// derive from it (the same rule as [`SwapEngine::loop_out`] without overrides).
    pub async fn quote(&self, req: pb::QuoteRequest) -> Result<pb::QuoteResponse, ApiError> {
        self.quote_with(req, &self.config, false).await
    }

    /// The server's quote for a swap its caller will create with limits of its own (loopd's
    /// API: Loop's CLI derives them from this quote): sluice's ceilings, which only bound the
    /// limits sluice derives itself, do not refuse it. `fast` quotes the swap published at once,
    /// as [`LoopOutRequest::fast`] creates it.
    pub async fn quote_for_own_limits(
        &self,
        req: pb::QuoteRequest,
        fast: bool,
    ) -> Result<pb::QuoteResponse, ApiError> {
        let mut config = self.config.clone();
        config.ceilings.swap_fee = crate::domain::Ppm(1_000_000);
        self.quote_with(req, &config, fast).await
    }

    /// [`SwapBackend::quote`] with the limits derived under `config`, for a swap published at
    /// once (`fast`) or within the publication delay.
    async fn quote_with(
        &self,
        req: pb::QuoteRequest,
        config: &EngineConfig,
        fast: bool,
    ) -> Result<pb::QuoteResponse, ApiError> {
        if req.amount_sat == 0 {
            return Err(ApiError::InvalidArgument {
                field: "amount_sat",
                reason: "must be positive".to_owned(),
            });
        }
        let amount = Sat(req.amount_sat);
        let conf_target = if req.conf_target == 0 {
            self.config.conf_target
        } else {
            req.conf_target
        };
        let terms = self
            .provider
            .loop_out_terms()
            .await
            .map_err(|e| unavailable("the swap server", e))?;
        if amount < terms.min_amount || amount > terms.max_amount {
            return Err(ApiError::InvalidArgument {
                field: "amount_sat",
                reason: format!(
                    "{amount} is outside the server's terms [{}, {}]; choose an amount within them",
                    terms.min_amount, terms.max_amount
                ),
            });
        }
        let height = self
            .engine
            .tip_height()
            .await
            .map_err(|_| ApiError::Unavailable {
                what: "lnd",
                reason: "no block height known yet; wait for lnd to sync".to_owned(),
            })?;
        let expiry = expiry_for(height, conf_target, &terms).map_err(ApiError::from)?;
        let deadline = if fast {
            now_unix()
        } else {
            now_unix()
                .saturating_add(i64::try_from(self.config.publication_delay.as_secs()).unwrap_or(0))
        };
        let quote = self
            .provider
            .loop_out_quote(amount, expiry, deadline)
            .await
            .map_err(|e| unavailable("the swap server", e))?;
        let rate = self
            .node
            .estimate_fee(conf_target.max(MIN_CONF_TARGET))
            .await
            .map_err(|e| unavailable("lnd", e))?;
        let derived = config
            .quote_limits(
                amount,
                quote.swap_fee,
                quote.prepay_amount,
                SatPerKw(rate.to_sat_per_kwu()),
            )
            .map_err(|e| ApiError::from(crate::swap::EngineError::from(e)))?;
        Ok(pb::QuoteResponse {
            amount_sat: amount.0,
            swap_fee_sat: quote.swap_fee.0,
            prepay_amount_sat: quote.prepay_amount.0,
            estimated_sweep_fee_sat: derived.estimated_sweep_fee.0,
            server_node: hex::encode(quote.swap_payment_dest),
            expiry_height: expiry.0,
            conf_target,
            limits: Some(limits(&derived.limits)),
        })
    }

    /// `LoopOut`: validates the request, then creates the swap through the engine.
    pub async fn loop_out(&self, req: pb::LoopOutRequest) -> Result<pb::LoopOutResponse, ApiError> {
        if req.amount_sat == 0 {
            return Err(ApiError::InvalidArgument {
                field: "amount_sat",
                reason: "must be positive".to_owned(),
            });
        }
        if req.htlc_confirmations != 0 && req.htlc_confirmations != self.config.htlc_confirmations {
            return Err(ApiError::InvalidArgument {
                field: "htlc_confirmations",
                reason: format!(
                    "per-swap confirmations are not supported; leave it 0 for the daemon's {}",
                    self.config.htlc_confirmations
                ),
            });
        }
        let overrides = req.max_fees.unwrap_or_default();
        let has_overrides = overrides != pb::FeeLimits::default();
        let amount = Sat(req.amount_sat);
        let conf_target = (req.conf_target != 0).then_some(req.conf_target);
        let complete = [
            overrides.max_swap_fee_sat,
            overrides.max_prepay_amount_sat,
            overrides.max_swap_routing_fee_sat,
            overrides.max_prepay_routing_fee_sat,
            overrides.max_miner_fee_sat,
        ]
        .iter()
        .all(|v| *v != 0);
        let fee_limits = if complete {
            // Every limit given (as `sluice out` sends the ones of the quote it showed): they
            // bind the swap as they are.
            Some(FeeLimits {
                max_swap_fee: Sat(overrides.max_swap_fee_sat),
                max_prepay_amount: Sat(overrides.max_prepay_amount_sat),
                max_swap_routing_fee: Sat(overrides.max_swap_routing_fee_sat),
                max_prepay_routing_fee: Sat(overrides.max_prepay_routing_fee_sat),
                max_miner_fee: Sat(overrides.max_miner_fee_sat),
            })
        } else if has_overrides {
            // Start from what a quote derives, and replace what the caller set. A caller who
            // sets the swap fee or prepay limit accepts that fee: its ceiling does not apply.
            let mut config = self.config.clone();
            if overrides.max_swap_fee_sat != 0 || overrides.max_prepay_amount_sat != 0 {
                config.ceilings.swap_fee = crate::domain::Ppm(1_000_000);
            }
            let q = self
                .quote_with(
                    pb::QuoteRequest {
                        amount_sat: req.amount_sat,
                        conf_target: req.conf_target,
                    },
                    &config,
                    req.fast,
                )
                .await?;
            let d = q.limits.unwrap_or_default();
            let pick = |o: u64, d: u64| Sat(if o == 0 { d } else { o });
            Some(FeeLimits {
                max_swap_fee: pick(overrides.max_swap_fee_sat, d.max_swap_fee_sat),
                max_prepay_amount: pick(overrides.max_prepay_amount_sat, d.max_prepay_amount_sat),
                max_swap_routing_fee: pick(
                    overrides.max_swap_routing_fee_sat,
                    d.max_swap_routing_fee_sat,
                ),
                max_prepay_routing_fee: pick(
                    overrides.max_prepay_routing_fee_sat,
                    d.max_prepay_routing_fee_sat,
                ),
                max_miner_fee: pick(overrides.max_miner_fee_sat, d.max_miner_fee_sat),
            })
        } else {
            None
        };
        let initiator = if req.initiator.is_empty() {
            "api".to_owned()
        } else {
            req.initiator
        };
        let created = self
            .engine
            .create_loop_out(LoopOutRequest {
                amount,
                destination: (!req.dest.is_empty()).then_some(req.dest),
                outgoing_chan_set: req.outgoing_chan_set.into_iter().map(ChanId).collect(),
                label: req.label,
                initiator,
                conf_target,
                limits: fee_limits,
                fast: req.fast,
            })
            .await?;
        let hash = created.hash;
        let record = self
            .store
            .load_swap(hash)
            .await
            .map_err(|e| unavailable("the swap store", e))?;
        let htlc_address = record
            .map(|s| {
                address_of(
                    s.record.contract.terms().htlc_pk_script.as_bytes(),
                    s.record.extras.network,
                )
            })
            .unwrap_or_default();
        Ok(pb::LoopOutResponse {
            id: hash.to_string(),
            htlc_address,
            server_message: created.server_message,
        })
    }

    /// `ListSwaps`.
    pub async fn list(&self, req: pb::ListSwapsRequest) -> Result<pb::ListSwapsResponse, ApiError> {
        let loop_in_state = LoopInState::ALL.into_iter().find(|s| {
            loop_in_state_name(*s)
                .replace('_', "")
                .eq_ignore_ascii_case(&req.state.replace('_', ""))
        });
        let state = if req.state.is_empty() {
            None
        } else {
            match parse_state(&req.state) {
                Some(s) => Some(s),
                // A Loop In state only: no Loop Out matches it.
                None if loop_in_state.is_some() => None,
                None => {
                    return Err(ApiError::InvalidArgument {
                        field: "state",
                        reason: format!(
                            "unknown state {:?}; expected one of {} (Loop Out) or {} (Loop In)",
                            req.state,
                            SwapState::ALL.map(state_name).join(", "),
                            LoopInState::ALL.map(loop_in_state_name).join(", ")
                        ),
                    });
                }
            }
        };
        let loop_in_only = state.is_none() && loop_in_state.is_some();
        // The label filter runs here, so the limit applies after it.
        let store_limit = req.label.is_empty().then_some(req.limit).filter(|l| *l > 0);
        let records = if loop_in_only {
            Vec::new()
        } else {
            self.store
                .list_swaps(SwapFilter {
                    state,
                    unfinished_only: req.pending_only,
                    limit: store_limit,
                })
                .await
                .map_err(|e| unavailable("the swap store", e))?
        };
        let mut swaps: Vec<pb::SwapSummary> = records
            .iter()
            .filter(|r| req.label.is_empty() || r.contract.terms().label == req.label)
            .map(summary)
            .collect();
        // Loop Ins, by their own state names (a Loop Out state name that is also a Loop In
        // one, e.g. SUCCEEDED, matches both).
        let loop_ins = self
            .store
            .list_loop_ins(None)
            .await
            .map_err(|e| unavailable("the swap store", e))?;
        swaps.extend(
            loop_ins
                .iter()
                .filter(|r| req.label.is_empty() || r.contract.terms().label == req.label)
                .filter(|r| !req.pending_only || !r.progress.state.is_terminal())
                .filter(|r| {
                    req.state.is_empty()
                        || loop_in_state_name(r.progress.state)
                            .replace('_', "")
                            .eq_ignore_ascii_case(&req.state.replace('_', ""))
                })
                .map(loop_in_summary),
        );
        swaps.sort_by(|a, b| {
            b.created_at_unix
                .cmp(&a.created_at_unix)
                .then_with(|| a.id.cmp(&b.id))
        });
        // Quarantined swaps are always shown (unless a state or label is asked for, which an
        // unreadable row cannot be matched against): they need an operator.
        for q in self.engine.quarantined() {
            if let Some(s) = swaps.iter_mut().find(|s| s.id == q.id) {
                s.quarantined = q.reason;
            } else if state.is_none() && req.label.is_empty() {
                let state_code = self
                    .store
                    .list_unreadable()
                    .await
                    .map_err(|e| unavailable("the swap store", e))?
                    .into_iter()
                    .find(|u| u.swap_hash == q.id)
                    .and_then(|u| u32::try_from(u.state_code).ok())
                    .unwrap_or(0);
                swaps.insert(
                    0,
                    pb::SwapSummary {
                        id: q.id,
                        state: "QUARANTINED".to_owned(),
                        state_code,
                        quarantined: q.reason,
                        ..pb::SwapSummary::default()
                    },
                );
            }
        }
        if req.limit > 0 {
            swaps.truncate(usize::try_from(req.limit).unwrap_or(usize::MAX));
        }
        Ok(pb::ListSwapsResponse { swaps })
    }

    /// `SwapInfo`.
    pub async fn info(&self, req: pb::SwapInfoRequest) -> Result<pb::SwapInfoResponse, ApiError> {
        let hash = parse_id(&req.id)?;
        let found = self
            .store
            .load_swap(hash)
            .await
            .map_err(|e| unavailable("the swap store", e))?;
        let Some(stored) = found else {
            let r = self
                .store
                .load_loop_in(hash)
                .await
                .map_err(|e| unavailable("the swap store", e))?
                .ok_or_else(|| ApiError::NotFound {
                    what: format!("swap {hash}"),
                })?;
            let history = self
                .store
                .loop_in_history(hash)
                .await
                .map_err(|e| unavailable("the swap store", e))?;
            return Ok(loop_in_info(&r, &history));
        };
        let history = self
            .store
            .swap_history(hash)
            .await
            .map_err(|e| unavailable("the swap store", e))?;
        let r = &stored.record;
        let t = r.contract.terms();
        let p = &r.progress;
        Ok(pb::SwapInfoResponse {
            swap: Some(summary(r)),
            expiry_height: t.expiry.0,
            initiation_height: t.initiation_height.0,
            limits: Some(limits(&t.fee_limits)),
            destination: t.destination.clone(),
            outgoing_chan_set: t.outgoing_chan_set.iter().map(|c| c.0).collect(),
            swap_invoice: t.swap_invoice.bolt11.clone(),
            prepay_invoice: t.prepay_invoice.bolt11.clone(),
            htlc_outpoint: p.htlc.map(|h| h.outpoint.to_string()).unwrap_or_default(),
            htlc_value_sat: p.htlc.map_or(0, |h| h.value.0),
            sweep_txid: p.spend.map(|s| s.txid.to_string()).unwrap_or_default(),
            history: history
                .iter()
                .map(|h| pb::HistoryEntry {
                    state: state_name(h.progress.state).to_owned(),
                    at_unix: h.updated_at_unix,
                    costs: Some(costs(h.costs)),
                })
                .collect(),
            state_summary: p.state.summary().to_owned(),
        })
    }

    /// `Monitor`: subscribes first (so nothing falls between), then sends every pending swap,
    /// then each update as the engine publishes it. A client too slow to keep up skips the
    /// updates it missed and is told so in the log; the stream ends when the engine stops.
    pub async fn monitor(&self) -> Result<MonitorStream, ApiError> {
        let rx = self.engine.subscribe();
        let rx_in = self.engine.subscribe_loop_in();
        let pending_in: Vec<pb::SwapUpdate> = self
            .store
            .list_loop_ins(None)
            .await
            .map_err(|e| unavailable("the swap store", e))?
            .iter()
            .filter(|r| !r.progress.state.is_terminal())
            .map(|r| {
                let t = r.contract.terms();
                pb::SwapUpdate {
                    id: t.swap_hash.to_string(),
                    state: loop_in_state_name(r.progress.state).to_owned(),
                    state_code: u32::from(r.progress.state.code()),
                    costs: Some(loop_in_costs(r.costs)),
                    at_unix: r.updated_at_unix,
                    amount_sat: t.amount.0,
                    label: t.label.clone(),
                    r#type: "LOOP_IN".to_owned(),
                }
            })
            .collect();
        let live_in = futures::stream::unfold(rx_in, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(u) => {
                        let msg = pb::SwapUpdate {
                            id: u.hash.to_string(),
                            state: loop_in_state_name(u.state).to_owned(),
                            state_code: u32::from(u.state.code()),
                            costs: Some(loop_in_costs(u.costs)),
                            at_unix: now_unix(),
                            amount_sat: u.amount.0,
                            label: u.label,
                            r#type: "LOOP_IN".to_owned(),
                        };
                        return Some((Ok(msg), rx));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            skipped = n,
                            "a Monitor client fell behind; updates skipped"
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        let pending = self
            .store
            .list_swaps(SwapFilter {
                unfinished_only: true,
                ..SwapFilter::default()
            })
            .await
            .map_err(|e| unavailable("the swap store", e))?;
        let initial = futures::stream::iter(pending_updates(&pending).into_iter().map(Ok));
        let live =
            futures::stream::unfold((rx, self.store.clone()), |(mut rx, store)| async move {
                loop {
                    match rx.recv().await {
                        Ok(u) => {
                            let (amount, label) = match store.load_swap(u.hash).await {
                                Ok(Some(s)) => (
                                    s.record.contract.terms().amount.0,
                                    s.record.contract.terms().label.clone(),
                                ),
                                _ => (0, String::new()),
                            };
                            let msg = pb::SwapUpdate {
                                id: u.hash.to_string(),
                                state: state_name(u.state).to_owned(),
                                state_code: u32::from(u.state.code()),
                                costs: Some(costs(u.costs)),
                                at_unix: now_unix(),
                                amount_sat: amount,
                                label,
                                r#type: "LOOP_OUT".to_owned(),
                            };
                            return Some((Ok(msg), (rx, store)));
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(
                                skipped = n,
                                "a Monitor client fell behind; updates skipped"
                            );
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            });
        let initial = initial.chain(futures::stream::iter(pending_in.into_iter().map(Ok)));
        Ok(Box::pin(
            initial.chain(futures::stream::select(live, live_in)),
        ))
    }
}

/// `SwapInfo` of a Loop In: the limits carry `max_swap_fee` and `max_miner_fee` only, the
/// destination is the node's wallet, the sweep is the spend of the HTLC (the server's claim or
/// our timeout sweep).
fn loop_in_info(r: &LoopInRecord, history: &[LoopInUpdateRecord]) -> pb::SwapInfoResponse {
    let t = r.contract.terms();
    let p = &r.progress;
    pb::SwapInfoResponse {
        swap: Some(loop_in_summary(r)),
        expiry_height: t.expiry.0,
        initiation_height: t.initiation_height.0,
        limits: Some(pb::FeeLimits {
            max_swap_fee_sat: t.limits.max_swap_fee.0,
            max_miner_fee_sat: t.limits.max_miner_fee.0,
            ..pb::FeeLimits::default()
        }),
        destination: "lnd wallet".to_owned(),
        outgoing_chan_set: Vec::new(),
        swap_invoice: t.swap_invoice.clone(),
        prepay_invoice: String::new(),
        htlc_outpoint: p.htlc.map(|h| h.outpoint.to_string()).unwrap_or_default(),
        htlc_value_sat: p.htlc.map_or(0, |h| h.value.0),
        sweep_txid: p.spend.map(|s| s.txid.to_string()).unwrap_or_default(),
        history: history
            .iter()
            .map(|h| pb::HistoryEntry {
                state: loop_in_state_name(h.progress.state).to_owned(),
                at_unix: h.updated_at_unix,
                costs: Some(pb::SwapCosts {
                    server_sat: h.costs.server_sat,
                    onchain_sat: h.costs.onchain.0,
                    offchain_sat: 0,
                }),
            })
            .collect(),
        state_summary: p.state.summary().to_owned(),
    }
}

fn pending_updates(pending: &[SwapRecord]) -> Vec<pb::SwapUpdate> {
    pending
        .iter()
        .map(|r| {
            let t = r.contract.terms();
            pb::SwapUpdate {
                id: t.swap_hash.to_string(),
                state: state_name(r.progress.state).to_owned(),
                state_code: u32::from(r.progress.state.code()),
                costs: Some(costs(r.costs)),
                at_unix: r.updated_at_unix,
                amount_sat: t.amount.0,
                label: t.label.clone(),
                r#type: "LOOP_OUT".to_owned(),
            }
        })
        .collect()
}

fn loop_in_costs(c: crate::swap::loop_in::LoopInCosts) -> pb::SwapCosts {
    pb::SwapCosts {
        server_sat: c.server_sat,
        onchain_sat: c.onchain.0,
        offchain_sat: 0,
    }
}

fn unavailable(what: &'static str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable {
        what,
        reason: e.to_string(),
    }
}
