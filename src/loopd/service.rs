//! The `looprpc.SwapClient` handlers: loopd's calls mapped onto sluice's swap engine, store,
//! autoloop and policy. Calls that have no meaning in sluice answer `UNIMPLEMENTED` with what
//! to use instead.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use super::convert;
use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::api::swaps::SwapBackend;
use crate::domain::{ChanId, HopHint, RouteHint, Sat, SwapHash};
use crate::proto::loopd::looprpc as rpc;
use crate::proto::loopd::looprpc::swap_client_server::SwapClient;
use crate::proto::sluice as pb;
use crate::store::swaps::SwapFilter;
use crate::swap::loop_in::DEFAULT_HTLC_CONF_TARGET;
use crate::swap::{FeeLimits, LoopInRequest, LoopOutRequest, RouteHints};

/// What `GetInfo` reports about this server, fixed at start.
#[derive(Debug, Clone)]
pub struct LoopdInfo {
    /// The address the loopd API listens on.
    pub rpc_listen: String,
    /// `loop.macaroon`.
    pub macaroon_path: String,
    /// The loopd API's `tls.cert`.
    pub tls_cert_path: String,
}

/// The `looprpc.SwapClient` service over the daemon's state.
#[derive(Debug, Clone)]
pub struct LoopdService {
    state: Arc<ApiState>,
    info: LoopdInfo,
}

impl LoopdService {
    /// A service reading `state`.
    pub fn new(state: Arc<ApiState>, info: LoopdInfo) -> LoopdService {
        LoopdService { state, info }
    }

    fn backend(&self) -> Result<&SwapBackend, Status> {
        self.state.swaps.as_deref().ok_or_else(|| {
            Status::unavailable(
                "sluiced runs without a swap server (no server.address for this network); \
                 set server.address to use the swap calls",
            )
        })
    }
}

/// `UNIMPLEMENTED` for a loopd call sluice does not serve, saying what to use instead.
fn unimplemented(call: &str, instead: &str) -> Status {
    Status::unimplemented(format!("{call} is not served by sluiced: {instead}"))
}

/// Refuses what loopd's Loop In offers and sluiced does not (an HTLC funded by someone
/// else), and reads the route hints: `private` (sluice picks them, as loopd) or the caller's
/// own, never both.
fn loop_in_hints(
    external_htlc: bool,
    private: bool,
    route_hints: &[rpc::RouteHint],
) -> Result<RouteHints, Status> {
    if external_htlc {
        return Err(ApiError::InvalidArgument {
            field: "external_htlc",
            reason: "sluiced funds a Loop In's HTLC from lnd's wallet itself, within \
                     max_miner_fee; leave external_htlc out"
                .to_owned(),
        }
        .into());
    }
    if private && !route_hints.is_empty() {
        return Err(ApiError::InvalidArgument {
            field: "route_hints",
            reason: "private and route_hints are mutually exclusive (as in loopd); give one"
                .to_owned(),
        }
        .into());
    }
    if private {
        return Ok(RouteHints::Private);
    }
    if route_hints.is_empty() {
        return Ok(RouteHints::None);
    }
    let hint = |i: usize, j: usize, h: &rpc::HopHint| -> Result<HopHint, Status> {
        let bad = |reason: String| {
            Status::from(ApiError::InvalidArgument {
                field: "route_hints",
                reason: format!("route hint {i}, hop {j}: {reason}"),
            })
        };
        Ok(HopHint {
            node: h
                .node_id
                .parse()
                .map_err(|e| bad(format!("node_id {:?} is not a node key: {e}", h.node_id)))?,
            chan_id: ChanId(h.chan_id),
            fee_base_msat: h.fee_base_msat,
            fee_ppm: h.fee_proportional_millionths,
            cltv_delta: u16::try_from(h.cltv_expiry_delta).map_err(|_| {
                bad(format!(
                    "cltv_expiry_delta {} is above 65535",
                    h.cltv_expiry_delta
                ))
            })?,
        })
    };
    route_hints
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let hops = r
                .hop_hints
                .iter()
                .enumerate()
                .map(|(j, h)| hint(i, j, h))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RouteHint { hops })
        })
        .collect::<Result<Vec<_>, Status>>()
        .map(RouteHints::Given)
}

/// loopd's optional `last_hop`: empty, or a 33-byte node key.
fn last_hop(bytes: &[u8]) -> Result<Option<[u8; 33]>, Status> {
    if bytes.is_empty() {
        return Ok(None);
    }
    <[u8; 33]>::try_from(bytes).map(Some).map_err(|_| {
        Status::from(ApiError::InvalidArgument {
            field: "last_hop",
            reason: format!(
                "{} bytes is not a node key; give the peer's 33-byte public key",
                bytes.len()
            ),
        })
    })
}

/// Adds one swap to loopd's per-direction figures.
fn count(stats: &mut rpc::LoopStats, amount: Sat, terminal: bool, succeeded: bool) {
    let amount = signed(amount.0);
    if !terminal {
        stats.pending_count += 1;
        stats.sum_pending_amt += amount;
    } else if succeeded {
        stats.success_count += 1;
        stats.sum_succeeded_amt += amount;
    } else {
        stats.fail_count += 1;
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A loopd amount or limit (signed on the wire) as sats; negative is refused naming the field.
fn sat(field: &'static str, value: i64) -> Result<Sat, Status> {
    u64::try_from(value).map(Sat).map_err(|_| {
        Status::from(ApiError::InvalidArgument {
            field,
            reason: format!("{value} is negative; give a number of satoshis"),
        })
    })
}

fn signed(sat: u64) -> i64 {
    i64::try_from(sat).unwrap_or(i64::MAX)
}

/// A conf target from loopd's signed field; 0 means the daemon's default.
fn conf_target(field: &'static str, value: i32) -> Result<u32, Status> {
    u32::try_from(value).map_err(|_| {
        Status::from(ApiError::InvalidArgument {
            field,
            reason: format!("{value} is negative; give a number of blocks, or 0 for the default"),
        })
    })
}

fn parse_id(bytes: &[u8]) -> Result<SwapHash, Status> {
    <[u8; 32]>::try_from(bytes).map(SwapHash).map_err(|_| {
        Status::from(ApiError::InvalidArgument {
            field: "id",
            reason: format!(
                "{} bytes is not a swap id; expected the 32-byte swap hash",
                bytes.len()
            ),
        })
    })
}

/// A swap publication deadline at or before this many seconds from now asks for a fast swap
/// (Loop's CLI sends "now" for `--fast`, now + 30 minutes otherwise).
const FAST_DEADLINE_SLACK_SECS: i64 = 60;

/// Completed swaps `Monitor` sends before the updates: loopd's `completedSwapsCount`.
const MONITOR_COMPLETED_SWAPS: usize = 5;

/// The stream `Monitor` answers with.
pub type MonitorStream = Pin<Box<dyn Stream<Item = Result<rpc::SwapStatus, Status>> + Send>>;

#[tonic::async_trait]
impl SwapClient for LoopdService {
    async fn loop_out(
        &self,
        request: Request<rpc::LoopOutRequest>,
    ) -> Result<Response<rpc::SwapResponse>, Status> {
        let req = request.into_inner();
        let backend = self.backend()?;
        let amount = sat("amt", req.amt)?;
        if amount.0 == 0 {
            return Err(ApiError::InvalidArgument {
                field: "amt",
                reason: "must be positive".to_owned(),
            }
            .into());
        }
        if !req.account.is_empty() {
            return Err(ApiError::InvalidArgument {
                field: "account",
                reason: "sluiced sweeps to lnd's default wallet or to an address (--addr); \
                         lnd accounts are not supported"
                    .to_owned(),
            }
            .into());
        }
        if !req.reservation_ids.is_empty() {
            return Err(ApiError::InvalidArgument {
                field: "reservation_ids",
                reason: "sluiced has no instant-out reservations; leave them out".to_owned(),
            }
            .into());
        }
        if req.asset_info.is_some() || req.asset_rfq_info.is_some() {
            return Err(ApiError::InvalidArgument {
                field: "asset_info",
                reason: "sluiced swaps bitcoin only; leave asset_id out".to_owned(),
            }
            .into());
        }
        let htlc_confs = u32::try_from(req.htlc_confirmations).unwrap_or(0);
        let ours = backend.config.htlc_confirmations;
        if htlc_confs > ours {
            return Err(ApiError::InvalidArgument {
                field: "htlc_confirmations",
                reason: format!(
                    "sluiced reveals the preimage after {ours} confirmation(s) of the HTLC, \
                     set for every swap; ask for at most {ours}"
                ),
            }
            .into());
        }
        // Loop's limits bind as they are, zero included: loopd does not derive missing ones.
        let limits = FeeLimits {
            max_swap_fee: sat("max_swap_fee", req.max_swap_fee)?,
            max_prepay_amount: sat("max_prepay_amt", req.max_prepay_amt)?,
            max_swap_routing_fee: sat("max_swap_routing_fee", req.max_swap_routing_fee)?,
            max_prepay_routing_fee: sat("max_prepay_routing_fee", req.max_prepay_routing_fee)?,
            max_miner_fee: sat("max_miner_fee", req.max_miner_fee)?,
        };
        let mut channels: Vec<ChanId> = req.outgoing_chan_set.into_iter().map(ChanId).collect();
        #[allow(deprecated)]
        if channels.is_empty() && req.loop_out_channel != 0 {
            channels.push(ChanId(req.loop_out_channel));
        }
        let deadline = i64::try_from(req.swap_publication_deadline).unwrap_or(i64::MAX);
        let fast = req.swap_publication_deadline != 0
            && deadline <= now_unix().saturating_add(FAST_DEADLINE_SLACK_SECS);
        let conf = conf_target("sweep_conf_target", req.sweep_conf_target)?;
        let created = backend
            .engine
            .create_loop_out(LoopOutRequest {
                amount,
                destination: (!req.dest.is_empty()).then_some(req.dest),
                outgoing_chan_set: channels,
                label: req.label,
                initiator: if req.initiator.is_empty() {
                    "loopd-api".to_owned()
                } else {
                    req.initiator
                },
                conf_target: (conf != 0).then_some(conf),
                limits: Some(limits),
                fast,
            })
            .await
            .map_err(ApiError::from)?;
        let record =
            backend
                .store
                .load_swap(created.hash)
                .await
                .map_err(|e| ApiError::Unavailable {
                    what: "the swap store",
                    reason: e.to_string(),
                })?;
        let (p2wsh, p2tr) = record
            .map(|s| {
                convert::htlc_addresses(
                    s.record.contract.terms().htlc_pk_script.as_bytes(),
                    s.record.extras.network,
                )
            })
            .unwrap_or_default();
        #[allow(deprecated)]
        Ok(Response::new(rpc::SwapResponse {
            id: created.hash.to_string(),
            id_bytes: created.hash.0.to_vec(),
            htlc_address: if p2tr.is_empty() {
                p2wsh.clone()
            } else {
                p2tr.clone()
            },
            htlc_address_p2wsh: p2wsh,
            htlc_address_p2tr: p2tr,
            server_message: created.server_message,
        }))
    }

    type MonitorStream = MonitorStream;

    async fn monitor(
        &self,
        _request: Request<rpc::MonitorRequest>,
    ) -> Result<Response<Self::MonitorStream>, Status> {
        let backend = self.backend()?;
        // Subscribe first so nothing falls between the snapshot and the updates.
        let rx = backend.engine.subscribe();
        let rx_in = backend.engine.subscribe_loop_in();
        let store = backend.store.clone();
        let store_err = |e: crate::store::StoreError| ApiError::Unavailable {
            what: "the swap store",
            reason: e.to_string(),
        };
        let outs = store
            .list_swaps(SwapFilter::default())
            .await
            .map_err(store_err)?;
        let ins = store.list_loop_ins(None).await.map_err(store_err)?;
        // As loopd: first every pending swap and the most recently updated completed ones,
        // oldest update first, then each update; Loop Outs and Loop Ins alike.
        let all: Vec<(bool, i64, rpc::SwapStatus)> = outs
            .iter()
            .map(|r| {
                let done = r.progress.state.is_terminal();
                (done, r.updated_at_unix, convert::swap_status(r))
            })
            .chain(ins.iter().map(|r| {
                let done = r.progress.state.is_terminal();
                (done, r.updated_at_unix, convert::loop_in_status(r))
            }))
            .collect();
        let (mut shown, mut completed): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|(done, _, _)| !done);
        completed.sort_by_key(|(_, updated, _)| std::cmp::Reverse(*updated));
        completed.truncate(MONITOR_COMPLETED_SWAPS);
        shown.extend(completed);
        shown.sort_by_key(|(_, updated, _)| *updated);
        let initial: Vec<Result<rpc::SwapStatus, Status>> =
            shown.into_iter().map(|(_, _, s)| Ok(s)).collect();
        let live = futures::stream::unfold((rx, store.clone()), |(mut rx, store)| async move {
            loop {
                match rx.recv().await {
                    Ok(update) => {
                        let status = match store.load_swap(update.hash).await {
                            Ok(Some(s)) => {
                                let mut status = convert::swap_status(&s.record);
                                let (state, failure) =
                                    convert::state(update.state, s.record.progress.htlc.is_some());
                                status.state = state.into();
                                status.failure_reason = failure.into();
                                convert::set_costs(&mut status, update.costs);
                                status
                            }
                            _ => continue,
                        };
                        return Some((Ok(status), (rx, store)));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "a loopd Monitor client fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        let live_in = futures::stream::unfold((rx_in, store), |(mut rx, store)| async move {
            loop {
                match rx.recv().await {
                    Ok(update) => {
                        let status = match store.load_loop_in(update.hash).await {
                            Ok(Some(r)) => {
                                let mut status = convert::loop_in_status(&r);
                                let (state, failure) = convert::loop_in_state(update.state);
                                status.state = state.into();
                                status.failure_reason = failure.into();
                                status.cost_server = update.costs.server_sat;
                                status.cost_onchain =
                                    i64::try_from(update.costs.onchain.0).unwrap_or(i64::MAX);
                                status
                            }
                            _ => continue,
                        };
                        return Some((Ok(status), (rx, store)));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "a loopd Monitor client fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Response::new(Box::pin(
            futures::stream::iter(initial).chain(futures::stream::select(live, live_in)),
        )))
    }

    async fn list_swaps(
        &self,
        request: Request<rpc::ListSwapsRequest>,
    ) -> Result<Response<rpc::ListSwapsResponse>, Status> {
        let req = request.into_inner();
        let backend = self.backend()?;
        let filter = req.list_swap_filter.unwrap_or_default();
        if filter.asset_swap_only {
            return Ok(Response::new(rpc::ListSwapsResponse::default()));
        }
        use rpc::list_swaps_filter::SwapTypeFilter;
        let store_err = |e: crate::store::StoreError| ApiError::Unavailable {
            what: "the swap store",
            reason: e.to_string(),
        };
        // A Loop Out has no last hop; a Loop In no outgoing channels: each filter keeps its kind.
        let outs =
            filter.swap_type != SwapTypeFilter::LoopIn as i32 && filter.loop_in_last_hop.is_empty();
        let ins = filter.swap_type != SwapTypeFilter::LoopOut as i32
            && filter.outgoing_chan_set.is_empty();
        let mut swaps: Vec<rpc::SwapStatus> = Vec::new();
        if outs {
            let records = backend
                .store
                .list_swaps(SwapFilter {
                    unfinished_only: filter.pending_only,
                    ..SwapFilter::default()
                })
                .await
                .map_err(store_err)?;
            swaps.extend(
                records
                    .iter()
                    .filter(|r| filter.label.is_empty() || r.contract.terms().label == filter.label)
                    .filter(|r| {
                        filter.outgoing_chan_set.is_empty()
                            || r.contract
                                .terms()
                                .outgoing_chan_set
                                .iter()
                                .any(|c| filter.outgoing_chan_set.contains(&c.0))
                    })
                    .map(convert::swap_status),
            );
        }
        if ins {
            let records = backend.store.list_loop_ins(None).await.map_err(store_err)?;
            swaps.extend(
                records
                    .iter()
                    .filter(|r| !filter.pending_only || !r.progress.state.is_terminal())
                    .filter(|r| filter.label.is_empty() || r.contract.terms().label == filter.label)
                    .filter(|r| {
                        filter.loop_in_last_hop.is_empty()
                            || r.contract.terms().last_hop.map(|k| k.to_vec())
                                == Some(filter.loop_in_last_hop.clone())
                    })
                    .map(convert::loop_in_status),
            );
        }
        // Oldest first, as loopd lists them, from start_timestamp_ns on.
        swaps.retain(|s| s.initiation_time >= filter.start_timestamp_ns);
        swaps.sort_by_key(|s| s.initiation_time);
        let mut next_start_time = 0;
        let max = usize::try_from(req.max_swaps).unwrap_or(usize::MAX);
        if max > 0 && swaps.len() > max {
            next_start_time = swaps[max].initiation_time;
            swaps.truncate(max);
        }
        Ok(Response::new(rpc::ListSwapsResponse {
            swaps,
            next_start_time,
        }))
    }

    async fn swap_info(
        &self,
        request: Request<rpc::SwapInfoRequest>,
    ) -> Result<Response<rpc::SwapStatus>, Status> {
        let hash = parse_id(&request.into_inner().id)?;
        let backend = self.backend()?;
        let store_err = |e: crate::store::StoreError| ApiError::Unavailable {
            what: "the swap store",
            reason: e.to_string(),
        };
        if let Some(stored) = backend.store.load_swap(hash).await.map_err(store_err)? {
            return Ok(Response::new(convert::swap_status(&stored.record)));
        }
        let loop_in = backend
            .store
            .load_loop_in(hash)
            .await
            .map_err(store_err)?
            .ok_or_else(|| ApiError::NotFound {
                what: format!("swap {hash}"),
            })?;
        Ok(Response::new(convert::loop_in_status(&loop_in)))
    }

    async fn loop_out_terms(
        &self,
        _request: Request<rpc::TermsRequest>,
    ) -> Result<Response<rpc::OutTermsResponse>, Status> {
        let t = self.backend()?.terms().await?;
        Ok(Response::new(rpc::OutTermsResponse {
            min_swap_amount: signed(t.min_amount_sat),
            max_swap_amount: signed(t.max_amount_sat),
            min_cltv_delta: i32::try_from(t.min_cltv_delta).unwrap_or(i32::MAX),
            max_cltv_delta: i32::try_from(t.max_cltv_delta).unwrap_or(i32::MAX),
        }))
    }

    async fn loop_out_quote(
        &self,
        request: Request<rpc::QuoteRequest>,
    ) -> Result<Response<rpc::OutQuoteResponse>, Status> {
        let req = request.into_inner();
        if req.asset_info.is_some() {
            return Err(ApiError::InvalidArgument {
                field: "asset_info",
                reason: "sluiced swaps bitcoin only; leave asset_id out".to_owned(),
            }
            .into());
        }
        let backend = self.backend()?;
        let amount = sat("amt", req.amt)?;
        // Quoted for the deadline the swap will be created with (see `loop_out`).
        let deadline = i64::try_from(req.swap_publication_deadline).unwrap_or(i64::MAX);
        let fast = req.fast
            || (req.swap_publication_deadline != 0
                && deadline <= now_unix().saturating_add(FAST_DEADLINE_SLACK_SECS));
        let q = backend
            .quote_for_own_limits(
                pb::QuoteRequest {
                    amount_sat: amount.0,
                    conf_target: conf_target("conf_target", req.conf_target)?,
                },
                fast,
            )
            .await?;
        let height = backend.engine.height().map_or(0, |h| h.0);
        Ok(Response::new(rpc::OutQuoteResponse {
            swap_fee_sat: signed(q.swap_fee_sat),
            prepay_amt_sat: signed(q.prepay_amount_sat),
            htlc_sweep_fee_sat: signed(q.estimated_sweep_fee_sat),
            swap_payment_dest: hex::decode(&q.server_node).unwrap_or_default(),
            cltv_delta: i32::try_from(q.expiry_height.saturating_sub(height)).unwrap_or(0),
            conf_target: i32::try_from(q.conf_target).unwrap_or(i32::MAX),
            asset_rfq_info: None,
        }))
    }

    async fn get_info(
        &self,
        _request: Request<rpc::GetInfoRequest>,
    ) -> Result<Response<rpc::GetInfoResponse>, Status> {
        let mut out_stats = rpc::LoopStats::default();
        let mut in_stats = rpc::LoopStats::default();
        if let Ok(backend) = self.backend() {
            let ins =
                backend
                    .store
                    .list_loop_ins(None)
                    .await
                    .map_err(|e| ApiError::Unavailable {
                        what: "the swap store",
                        reason: e.to_string(),
                    })?;
            for r in &ins {
                let state = r.progress.state;
                count(
                    &mut in_stats,
                    r.contract.terms().amount,
                    state.is_terminal(),
                    state == crate::swap::loop_in::LoopInState::Succeeded,
                );
            }
            let all = backend
                .store
                .list_swaps(SwapFilter::default())
                .await
                .map_err(|e| ApiError::Unavailable {
                    what: "the swap store",
                    reason: e.to_string(),
                })?;
            for r in &all {
                let state = r.progress.state;
                count(
                    &mut out_stats,
                    r.contract.terms().amount,
                    state.is_terminal(),
                    state == crate::swap::SwapState::Succeeded,
                );
            }
        }
        Ok(Response::new(rpc::GetInfoResponse {
            version: format!("sluiced {}", self.state.version),
            network: convert::loop_network(self.state.network).to_owned(),
            rpc_listen: self.info.rpc_listen.clone(),
            rest_listen: String::new(),
            macaroon_path: self.info.macaroon_path.clone(),
            tls_cert_path: self.info.tls_cert_path.clone(),
            loop_out_stats: Some(out_stats),
            loop_in_stats: Some(in_stats),
            commit_hash: String::new(),
        }))
    }

    async fn get_liquidity_params(
        &self,
        _request: Request<rpc::GetLiquidityParamsRequest>,
    ) -> Result<Response<rpc::LiquidityParameters>, Status> {
        super::liquidity::params(&self.state)
            .await
            .map(Response::new)
    }

    async fn set_liquidity_params(
        &self,
        _request: Request<rpc::SetLiquidityParamsRequest>,
    ) -> Result<Response<rpc::SetLiquidityParamsResponse>, Status> {
        Err(unimplemented(
            "SetLiquidityParams",
            &format!(
                "sluice's policies are files: edit the YAML or rhai files in {} and run \
                 `sluice policy reload`; `sluice policy show` shows what is in force",
                self.state.policy.borrow().directory
            ),
        ))
    }

    async fn suggest_swaps(
        &self,
        _request: Request<rpc::SuggestSwapsRequest>,
    ) -> Result<Response<rpc::SuggestSwapsResponse>, Status> {
        super::liquidity::suggest(&self.state)
            .await
            .map(Response::new)
    }

    async fn loop_in(
        &self,
        request: Request<rpc::LoopInRequest>,
    ) -> Result<Response<rpc::SwapResponse>, Status> {
        let req = request.into_inner();
        let backend = self.backend()?;
        let amount = sat("amt", req.amt)?;
        if amount.0 == 0 {
            return Err(ApiError::InvalidArgument {
                field: "amt",
                reason: "must be positive".to_owned(),
            }
            .into());
        }
        let route_hints = loop_in_hints(req.external_htlc, req.private, &req.route_hints)?;
        let htlc_conf = conf_target("htlc_conf_target", req.htlc_conf_target)?;
        // Loop's limits bind as they are, zero included, as for a Loop Out.
        let created = backend
            .engine
            .loop_in(LoopInRequest {
                amount,
                max_swap_fee: Some(sat("max_swap_fee", req.max_swap_fee)?),
                max_miner_fee: Some(sat("max_miner_fee", req.max_miner_fee)?),
                last_hop: last_hop(&req.last_hop)?,
                route_hints,
                htlc_conf_target: (htlc_conf != 0).then_some(htlc_conf),
                label: req.label,
                initiator: if req.initiator.is_empty() {
                    "loopd-api".to_owned()
                } else {
                    req.initiator
                },
            })
            .await
            .map_err(ApiError::from)?;
        #[allow(deprecated)]
        Ok(Response::new(rpc::SwapResponse {
            id: created.hash.to_string(),
            id_bytes: created.hash.0.to_vec(),
            htlc_address: created.htlc_address.clone(),
            htlc_address_p2wsh: String::new(),
            htlc_address_p2tr: created.htlc_address,
            server_message: created.server_message,
        }))
    }

    async fn sweep_htlc(
        &self,
        _request: Request<rpc::SweepHtlcRequest>,
    ) -> Result<Response<rpc::SweepHtlcResponse>, Status> {
        Err(unimplemented(
            "sweep_htlc",
            "sluiced sweeps every HTLC itself, on its fee schedule; see `sluice swap ID`",
        ))
    }

    async fn abandon_swap(
        &self,
        _request: Request<rpc::AbandonSwapRequest>,
    ) -> Result<Response<rpc::AbandonSwapResponse>, Status> {
        Err(unimplemented(
            "abandon_swap",
            "sluiced does not abandon swaps: it drives each to a terminal state; see `sluice swap ID`",
        ))
    }

    async fn get_loop_in_terms(
        &self,
        _request: Request<rpc::TermsRequest>,
    ) -> Result<Response<rpc::InTermsResponse>, Status> {
        let t = self
            .backend()?
            .engine
            .loop_in_terms()
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(rpc::InTermsResponse {
            min_swap_amount: signed(t.min_amount.0),
            max_swap_amount: signed(t.max_amount.0),
        }))
    }

    async fn get_loop_in_quote(
        &self,
        request: Request<rpc::QuoteRequest>,
    ) -> Result<Response<rpc::InQuoteResponse>, Status> {
        let req = request.into_inner();
        if req.asset_info.is_some() {
            return Err(ApiError::InvalidArgument {
                field: "asset_info",
                reason: "sluiced swaps bitcoin only; leave asset_id out".to_owned(),
            }
            .into());
        }
        if !req.deposit_outpoints.is_empty() {
            return Err(ApiError::InvalidArgument {
                field: "deposit_outpoints",
                reason: "sluiced has no static-address Loop In; quote a wallet-funded one"
                    .to_owned(),
            }
            .into());
        }
        let hints = loop_in_hints(req.external_htlc, req.private, &req.loop_in_route_hints)?;
        let backend = self.backend()?;
        let amount = sat("amt", req.amt)?;
        let conf = conf_target("conf_target", req.conf_target)?;
        let q = backend
            .engine
            .loop_in_quote(
                amount,
                last_hop(&req.loop_in_last_hop)?,
                &hints,
                (conf != 0).then_some(conf),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(rpc::InQuoteResponse {
            swap_fee_sat: signed(q.quote.swap_fee.0),
            htlc_publish_fee_sat: signed(q.funding_fee_estimate.0),
            cltv_delta: q.quote.cltv_delta,
            conf_target: i32::try_from(if conf == 0 {
                DEFAULT_HTLC_CONF_TARGET
            } else {
                conf
            })
            .unwrap_or(i32::MAX),
            quoted_amt: signed(amount.0),
        }))
    }

    async fn probe(
        &self,
        request: Request<rpc::ProbeRequest>,
    ) -> Result<Response<rpc::ProbeResponse>, Status> {
        let req = request.into_inner();
        let amount = sat("amt", req.amt)?;
        if amount.0 == 0 {
            return Err(ApiError::InvalidArgument {
                field: "amt",
                reason: "must be positive".to_owned(),
            }
            .into());
        }
        let hints = loop_in_hints(false, false, &req.route_hints)?;
        self.backend()?
            .engine
            .probe(amount, last_hop(&req.last_hop)?, &hints)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(rpc::ProbeResponse {}))
    }

    async fn get_l402_tokens(
        &self,
        _request: Request<rpc::TokensRequest>,
    ) -> Result<Response<rpc::TokensResponse>, Status> {
        Err(unimplemented(
            "get_l402_tokens",
            "sluiced keeps its L402 token in <datadir>/l402/; `sluice info` shows whether it holds one",
        ))
    }

    async fn get_lsat_tokens(
        &self,
        _request: Request<rpc::TokensRequest>,
    ) -> Result<Response<rpc::TokensResponse>, Status> {
        Err(unimplemented(
            "get_lsat_tokens",
            "sluiced keeps its L402 token in <datadir>/l402/; `sluice info` shows whether it holds one",
        ))
    }

    async fn fetch_l402_token(
        &self,
        _request: Request<rpc::FetchL402TokenRequest>,
    ) -> Result<Response<rpc::FetchL402TokenResponse>, Status> {
        Err(unimplemented(
            "fetch_l402_token",
            "sluiced buys its L402 token itself, within server.l402_max_cost_sat, when the swap server asks for one",
        ))
    }

    async fn stop_daemon(
        &self,
        _request: Request<rpc::StopDaemonRequest>,
    ) -> Result<Response<rpc::StopDaemonResponse>, Status> {
        Err(unimplemented(
            "stop_daemon",
            "stop sluiced with `sluice stop` (sluice's own API) or SIGTERM",
        ))
    }

    async fn list_reservations(
        &self,
        _request: Request<rpc::ListReservationsRequest>,
    ) -> Result<Response<rpc::ListReservationsResponse>, Status> {
        Err(unimplemented(
            "list_reservations",
            "sluiced has no instant-out reservations; use `sluice out`",
        ))
    }

    async fn instant_out(
        &self,
        _request: Request<rpc::InstantOutRequest>,
    ) -> Result<Response<rpc::InstantOutResponse>, Status> {
        Err(unimplemented(
            "instant_out",
            "sluiced has no instant out; use `loop out` (served here) or `sluice out`",
        ))
    }

    async fn instant_out_quote(
        &self,
        _request: Request<rpc::InstantOutQuoteRequest>,
    ) -> Result<Response<rpc::InstantOutQuoteResponse>, Status> {
        Err(unimplemented(
            "instant_out_quote",
            "sluiced has no instant out; use `loop quote out` (served here) or `sluice quote`",
        ))
    }

    async fn list_instant_outs(
        &self,
        _request: Request<rpc::ListInstantOutsRequest>,
    ) -> Result<Response<rpc::ListInstantOutsResponse>, Status> {
        Err(unimplemented(
            "list_instant_outs",
            "sluiced has no instant out; use `loop listswaps` (served here)",
        ))
    }

    async fn new_static_address(
        &self,
        _request: Request<rpc::NewStaticAddressRequest>,
    ) -> Result<Response<rpc::NewStaticAddressResponse>, Status> {
        Err(unimplemented(
            "new_static_address",
            "sluiced has no static addresses; use loopd for static-address Loop In",
        ))
    }

    async fn list_unspent_deposits(
        &self,
        _request: Request<rpc::ListUnspentDepositsRequest>,
    ) -> Result<Response<rpc::ListUnspentDepositsResponse>, Status> {
        Err(unimplemented(
            "list_unspent_deposits",
            "sluiced has no static addresses; use loopd for static-address Loop In",
        ))
    }

    async fn withdraw_deposits(
        &self,
        _request: Request<rpc::WithdrawDepositsRequest>,
    ) -> Result<Response<rpc::WithdrawDepositsResponse>, Status> {
        Err(unimplemented(
            "withdraw_deposits",
            "sluiced has no static addresses; use loopd for static-address Loop In",
        ))
    }

    async fn list_static_address_deposits(
        &self,
        _request: Request<rpc::ListStaticAddressDepositsRequest>,
    ) -> Result<Response<rpc::ListStaticAddressDepositsResponse>, Status> {
        Err(unimplemented(
            "list_static_address_deposits",
            "sluiced has no static addresses; use loopd for static-address Loop In",
        ))
    }

    async fn list_static_address_withdrawals(
        &self,
        _request: Request<rpc::ListStaticAddressWithdrawalRequest>,
    ) -> Result<Response<rpc::ListStaticAddressWithdrawalResponse>, Status> {
        Err(unimplemented(
            "list_static_address_withdrawals",
            "sluiced has no static addresses; use loopd for static-address Loop In",
        ))
    }

    async fn list_static_address_swaps(
        &self,
        _request: Request<rpc::ListStaticAddressSwapsRequest>,
    ) -> Result<Response<rpc::ListStaticAddressSwapsResponse>, Status> {
        Err(unimplemented(
            "list_static_address_swaps",
            "sluiced has no static addresses; use loopd for static-address Loop In",
        ))
    }

    async fn get_static_address_summary(
        &self,
        _request: Request<rpc::StaticAddressSummaryRequest>,
    ) -> Result<Response<rpc::StaticAddressSummaryResponse>, Status> {
        Err(unimplemented(
            "get_static_address_summary",
            "sluiced has no static addresses; use loopd for static-address Loop In",
        ))
    }

    async fn static_address_loop_in(
        &self,
        _request: Request<rpc::StaticAddressLoopInRequest>,
    ) -> Result<Response<rpc::StaticAddressLoopInResponse>, Status> {
        Err(unimplemented(
            "static_address_loop_in",
            "sluiced has no static addresses; use loopd for static-address Loop In",
        ))
    }

    async fn static_open_channel(
        &self,
        _request: Request<rpc::StaticOpenChannelRequest>,
    ) -> Result<Response<rpc::StaticOpenChannelResponse>, Status> {
        Err(unimplemented(
            "static_open_channel",
            "sluiced has no static addresses; use loopd for static-address Loop In",
        ))
    }
}
