//! The `sluice.v1.Sluice` service: maps daemon state to the wire types and back.
//!
//! Handlers never build a `tonic::Status` themselves; they return [`ApiError`] and the one
//! conversion in `error.rs` chooses the code. Credentials were checked before a call gets here.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::error::ApiError;
use super::state::ApiState;
use crate::domain::{Channel, NodeStatus, PolicyStatus, Ppm};
use crate::proto::sluice as pb;

/// The gRPC service implementation.
#[derive(Debug, Clone)]
pub struct SluiceService {
    state: Arc<ApiState>,
}

impl SluiceService {
    /// A service answering from `state`.
    pub fn new(state: Arc<ApiState>) -> SluiceService {
        SluiceService { state }
    }

    /// The swap backend, or `UNAVAILABLE` when the daemon runs without one.
    fn swaps(&self) -> Result<&super::swaps::SwapBackend, ApiError> {
        self.state.swaps.as_deref().ok_or(ApiError::Unavailable {
            what: "the swap engine",
            reason: "no swap server is configured; set one in the config and restart sluiced"
                .to_owned(),
        })
    }

    /// `GetInfo`'s answer for the current state.
    fn info(&self) -> pb::GetInfoResponse {
        let s = &self.state;
        let node = s.node.borrow().clone();
        let policy = s.policy.borrow().clone();
        pb::GetInfoResponse {
            version: s.version.clone(),
            network: s.network.as_str().to_owned(),
            lnd: Some(lnd_info(node)),
            uptime_seconds: s.started.elapsed().as_secs(),
            data_dir: s.data_dir.display().to_string(),
            policy: Some(policy_status(policy)),
            simnet: s.simnet,
        }
    }
}

/// The wire form of one channel; the inbound share is the remote part of the two balances.
pub fn channel(c: &Channel) -> pb::Channel {
    let total = c.local_balance.0.saturating_add(c.remote_balance.0);
    let share = Ppm::ratio(c.remote_balance.0, total);
    pb::Channel {
        chan_id: c.chan_id.to_string(),
        channel_point: c.channel_point.clone(),
        peer_pubkey: c.peer.to_string(),
        peer_alias: c.peer_alias.clone().unwrap_or_default(),
        capacity_sat: c.capacity.0,
        local_balance_sat: c.local_balance.0,
        remote_balance_sat: c.remote_balance.0,
        inbound_share_ppm: share.0,
        inbound_share_percent: share.0 as f64 / 10_000.0,
        active: c.active,
        pending_htlcs: c.pending_htlc_count,
        pending_htlc_amount_sat: c.pending_htlc_amount.0,
        private: c.private,
        chan_id_numeric: c.chan_id.0,
    }
}

fn lnd_info(node: NodeStatus) -> pb::LndInfo {
    pb::LndInfo {
        connected: node.connected,
        alias: node.alias,
        pubkey: node.pubkey,
        block_height: node.block_height,
        synced_to_chain: node.synced_to_chain,
        version: node.version,
        error: node.error.unwrap_or_default(),
    }
}

fn policy_status(policy: PolicyStatus) -> pb::PolicyStatus {
    pb::PolicyStatus {
        state: policy.state().to_owned(),
        directory: policy.directory,
        files: policy.files,
        last_error: policy.last_error.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl pb::sluice_server::Sluice for SluiceService {
    async fn get_info(
        &self,
        _request: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::GetInfoResponse>, Status> {
        Ok(Response::new(self.info()))
    }

    async fn list_channels(
        &self,
        _request: Request<pb::ListChannelsRequest>,
    ) -> Result<Response<pb::ListChannelsResponse>, Status> {
        let Some(node) = self.state.lnd.get() else {
            let reason = self
                .state
                .node
                .borrow()
                .error
                .clone()
                .unwrap_or_else(|| "not connected yet".to_owned());
            return Err(ApiError::Unavailable {
                what: "lnd",
                reason,
            }
            .into());
        };
        let mut channels = node.list_channels().await.map_err(ApiError::from)?;
        channels.sort_by_key(|c| c.chan_id);
        Ok(Response::new(pb::ListChannelsResponse {
            channels: channels.iter().map(channel).collect(),
        }))
    }

    async fn stop_daemon(
        &self,
        _request: Request<pb::StopDaemonRequest>,
    ) -> Result<Response<pb::StopDaemonResponse>, Status> {
        tracing::info!("shutdown requested through the API");
        self.state.stop.cancel();
        Ok(Response::new(pb::StopDaemonResponse {}))
    }

    async fn terms(
        &self,
        _request: Request<pb::TermsRequest>,
    ) -> Result<Response<pb::TermsResponse>, Status> {
        Ok(Response::new(self.swaps()?.terms().await?))
    }

    async fn quote(
        &self,
        request: Request<pb::QuoteRequest>,
    ) -> Result<Response<pb::QuoteResponse>, Status> {
        Ok(Response::new(
            self.swaps()?.quote(request.into_inner()).await?,
        ))
    }

    async fn loop_out(
        &self,
        request: Request<pb::LoopOutRequest>,
    ) -> Result<Response<pb::LoopOutResponse>, Status> {
        Ok(Response::new(
            self.swaps()?.loop_out(request.into_inner()).await?,
        ))
    }

    async fn loop_in_quote(
        &self,
        request: Request<pb::LoopInQuoteRequest>,
    ) -> Result<Response<pb::LoopInQuoteResponse>, Status> {
        Ok(Response::new(
            self.swaps()?.loop_in_quote(request.into_inner()).await?,
        ))
    }

    async fn loop_in(
        &self,
        request: Request<pb::LoopInRequest>,
    ) -> Result<Response<pb::LoopInResponse>, Status> {
        Ok(Response::new(
            self.swaps()?.loop_in(request.into_inner()).await?,
        ))
    }

    async fn list_swaps(
        &self,
        request: Request<pb::ListSwapsRequest>,
    ) -> Result<Response<pb::ListSwapsResponse>, Status> {
        Ok(Response::new(
            self.swaps()?.list(request.into_inner()).await?,
        ))
    }

    async fn swap_info(
        &self,
        request: Request<pb::SwapInfoRequest>,
    ) -> Result<Response<pb::SwapInfoResponse>, Status> {
        Ok(Response::new(
            self.swaps()?.info(request.into_inner()).await?,
        ))
    }

    type MonitorStream = super::swaps::MonitorStream;

    async fn monitor(
        &self,
        _request: Request<pb::MonitorRequest>,
    ) -> Result<Response<Self::MonitorStream>, Status> {
        Ok(Response::new(self.swaps()?.monitor().await?))
    }

    async fn suggest(
        &self,
        _request: Request<pb::SuggestRequest>,
    ) -> Result<Response<pb::SuggestResponse>, Status> {
        Ok(Response::new(super::autoloop::suggest(&self.state).await?))
    }

    async fn policy_show(
        &self,
        _request: Request<pb::PolicyShowRequest>,
    ) -> Result<Response<pb::PolicyShowResponse>, Status> {
        Ok(Response::new(super::autoloop::policy(&self.state)?))
    }

    async fn policy_reload(
        &self,
        _request: Request<pb::PolicyReloadRequest>,
    ) -> Result<Response<pb::PolicyShowResponse>, Status> {
        Ok(Response::new(super::autoloop::reload(&self.state).await?))
    }

    async fn budget(
        &self,
        _request: Request<pb::BudgetRequest>,
    ) -> Result<Response<pb::BudgetResponse>, Status> {
        Ok(Response::new(super::autoloop::budget(&self.state).await?))
    }

    async fn journal(
        &self,
        request: Request<pb::JournalRequest>,
    ) -> Result<Response<pb::JournalResponse>, Status> {
        Ok(Response::new(
            super::autoloop::journal(&self.state, request.into_inner()).await?,
        ))
    }

    async fn set_autoloop_mode(
        &self,
        request: Request<pb::SetAutoloopModeRequest>,
    ) -> Result<Response<pb::AutoloopModeResponse>, Status> {
        Ok(Response::new(
            super::autoloop::set_mode(&self.state, request.into_inner()).await?,
        ))
    }

    async fn get_autoloop_mode(
        &self,
        _request: Request<pb::GetAutoloopModeRequest>,
    ) -> Result<Response<pb::AutoloopModeResponse>, Status> {
        Ok(Response::new(super::autoloop::mode(&self.state)?))
    }
}
