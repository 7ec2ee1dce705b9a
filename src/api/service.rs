//! The `sluice.v1.Sluice` service: maps daemon state to the wire types and back.
//!
//! Handlers never build a `tonic::Status` themselves; they return [`ApiError`](super::ApiError) and the one
//! conversion in `error.rs` chooses the code. Credentials were checked before a call gets here.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::state::ApiState;
use crate::domain::{NodeStatus, PolicyStatus};
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

    async fn stop_daemon(
        &self,
        _request: Request<pb::StopDaemonRequest>,
    ) -> Result<Response<pb::StopDaemonResponse>, Status> {
        tracing::info!("shutdown requested through the API");
        self.state.stop.cancel();
        Ok(Response::new(pb::StopDaemonResponse {}))
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
