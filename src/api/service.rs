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
}
