//! The simnet's control service (`proto/simnet.proto`): mine, set the fee rate, reorg, show
//! the world (tip, mempool, each node's wallet and channel balances), stop or start a node's
//! simulated lnd, and switch the reference Loop server's named misbehaviours, for demos and
//! tests driving a running
//! `sluice simnet serve`. Protected like the simulated lnd: TLS with a CA-marked self-signed
//! certificate and a macaroon in `<dir>/control/`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::audit::PreimageAudit;
use super::chain::FeeTrace;
use super::lnd::SimLndServer;
use super::world::{SharedWorld, World, lock};
use crate::loopserver::LoopServer;
use crate::loopserver::misbehave;
use crate::proto::simnet as wire;
use crate::proto::simnet::simnet_server::Simnet as SimnetService;

/// A client of the control service, presenting the control macaroon on every call.
pub type ControlClient = crate::proto::simnet::simnet_client::SimnetClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        crate::lnd::client::MacaroonInterceptor,
    >,
>;

/// How long connecting to the control service may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects to the control service a `simnet.json` describes, pinning its certificate and
/// presenting its macaroon. Fails here when nothing listens or the certificate differs.
pub async fn connect(
    state: &super::state::SimnetState,
) -> Result<ControlClient, super::state::SimnetError> {
    use super::state::SimnetError;
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| SimnetError::File {
            action: "read",
            path: path.to_owned(),
            source,
        })
    };
    let cert = read(&state.control_cert)?;
    let macaroon = hex::encode(read(&state.control_macaroon)?);
    let channel = crate::tls::pinned_channel(&state.control, &cert, CONNECT_TIMEOUT).await?;
    let auth = crate::lnd::client::MacaroonInterceptor::new(&macaroon).map_err(|e| {
        SimnetError::State {
            path: state.control_macaroon.clone(),
            reason: e.message,
        }
    })?;
    Ok(crate::proto::simnet::simnet_client::SimnetClient::with_interceptor(channel, auth))
}

/// The most blocks one `Mine` call may ask for; more would hold the world for long.
pub const MAX_MINE: u32 = 10_000;

/// What the control service acts on: the world, the simulated lnd servers by node name, and
/// the reference Loop server in front of the "loop" node.
pub struct Control {
    /// The world.
    pub world: SharedWorld,
    /// Each served node's simulated lnd, by alias.
    pub lnds: AsyncMutex<BTreeMap<String, SimLndServer>>,
    /// The reference Loop server, whose misbehaviours the service switches.
    pub swap_server: Arc<LoopServer>,
    /// What that server learned, and when.
    pub audit: std::sync::Mutex<PreimageAudit>,
    /// The reference Loop server's service, while it serves.
    pub swap_serving: AsyncMutex<Option<Serving>>,
    /// Cancelled when the simnet stops; each serving of the swap server ends with it.
    pub shutdown: CancellationToken,
}

/// The reference Loop server serving on an address, until its token is cancelled.
pub struct Serving {
    /// Where it serves.
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The longest a `RestartSwapServer` may keep the server down.
pub const MAX_SWAP_SERVER_DOWN_MS: u32 = 60_000;

impl Control {
    /// Serves the reference Loop server on `listener` (plaintext, loopback) until the simnet
    /// stops or the server is restarted.
    pub async fn serve_swap_server(
        &self,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        let stop = self.shutdown.child_token();
        let serving = self
            .swap_server
            .serve(listener, stop.clone().cancelled_owned());
        let task = tokio::spawn(async move {
            if let Err(e) = serving.await {
                tracing::warn!(error = %e, "the simnet's reference Loop server stopped");
            }
        });
        *self.swap_serving.lock().await = Some(Serving { addr, stop, task });
        Ok(addr)
    }

    /// Stops serving the reference Loop server, waits `down`, and serves it again on the same
    /// address; its swaps keep running meanwhile. Answers the address.
    pub async fn restart_swap_server(
        &self,
        down: std::time::Duration,
    ) -> std::io::Result<SocketAddr> {
        let mut slot = self.swap_serving.lock().await;
        let Some(serving) = slot.take() else {
            return Err(std::io::Error::other(
                "the reference Loop server is not serving",
            ));
        };
        let addr = serving.addr;
        serving.stop.cancel();
        let _ = serving.task.await;
        drop(slot);
        tracing::info!(%addr, down_ms = down.as_millis() as u64, "reference Loop server down (restart)");
        tokio::time::sleep(down).await;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        self.serve_swap_server(listener).await?;
        tracing::info!(%addr, "reference Loop server serving again");
        Ok(addr)
    }

    /// Waits for the swap server's current serving to end (after the simnet stopped).
    pub async fn swap_server_stopped(&self) {
        if let Some(serving) = self.swap_serving.lock().await.take() {
            serving.stop.cancel();
            let _ = serving.task.await;
        }
    }
}

impl Control {
    /// Observes what the server knows against `world` as it is now; called before every change
    /// to the chain.
    pub fn observe(&self, world: &World) {
        self.audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(&self.swap_server, world);
    }
}

/// The `sluice.simnet.v1.Simnet` handlers.
#[derive(Clone)]
pub struct ControlService {
    control: Arc<Control>,
}

impl ControlService {
    /// Handlers over `control`.
    pub fn new(control: Arc<Control>) -> ControlService {
        ControlService { control }
    }

    /// Every node's status; `lnds` gives the served ones' address and state.
    fn node_statuses(&self, lnds: &BTreeMap<String, (SocketAddr, bool)>) -> Vec<wire::NodeStatus> {
        let world = lock(&self.control.world);
        world
            .nodes()
            .map(|(idx, name)| {
                let lnd = lnds.get(name);
                let (confirmed, unconfirmed) = world.wallet_balance(idx).unwrap_or_default();
                let mut local_msat = 0u64;
                let mut pending = 0usize;
                for c in world.channels().iter().filter(|c| c.has(idx)) {
                    local_msat += if c.a == idx {
                        c.balance_a_msat
                    } else {
                        c.balance_b_msat
                    };
                    pending += c.htlcs.len();
                }
                wire::NodeStatus {
                    name: name.to_owned(),
                    pubkey: world
                        .node_id(idx)
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                    lnd_address: lnd.map(|(a, _)| a.to_string()).unwrap_or_default(),
                    lnd_running: lnd.is_some_and(|(_, running)| *running),
                    channels: u32::try_from(world.channels().iter().filter(|c| c.has(idx)).count())
                        .unwrap_or(u32::MAX),
                    wallet_confirmed_sat: confirmed.0,
                    wallet_unconfirmed_sat: unconfirmed.0,
                    channel_local_msat: local_msat,
                    pending_htlcs: u32::try_from(pending).unwrap_or(u32::MAX),
                }
            })
            .collect()
    }

    async fn lnd_states(&self) -> BTreeMap<String, (SocketAddr, bool)> {
        self.control
            .lnds
            .lock()
            .await
            .iter()
            .map(|(name, s)| (name.clone(), (s.addr(), s.is_running())))
            .collect()
    }

    async fn node_response(&self, name: &str) -> Result<Response<wire::NodeResponse>, Status> {
        let states = self.lnd_states().await;
        let node = self
            .node_statuses(&states)
            .into_iter()
            .find(|n| n.name == name);
        Ok(Response::new(wire::NodeResponse { node }))
    }

    fn unknown_node(name: &str, lnds: &BTreeMap<String, SimLndServer>) -> Status {
        let known: Vec<&str> = lnds.keys().map(String::as_str).collect();
        Status::not_found(format!(
            "no simulated lnd is called `{name}`; nodes with one: {}",
            known.join(", ")
        ))
    }
}

#[tonic::async_trait]
impl SimnetService for ControlService {
    async fn mine(
        &self,
        request: Request<wire::MineRequest>,
    ) -> Result<Response<wire::MineResponse>, Status> {
        let n = request.get_ref().blocks;
        if n == 0 || n > MAX_MINE {
            return Err(Status::invalid_argument(format!(
                "blocks must be between 1 and {MAX_MINE}, got {n}"
            )));
        }
        let mut world = lock(&self.control.world);
        self.control.observe(&world);
        let hashes = world.mine(n);
        let tip = world.height().0;
        let first = tip + 1 - u32::try_from(hashes.len()).unwrap_or(0);
        Ok(Response::new(wire::MineResponse {
            heights: (first..=tip).collect(),
            hashes: hashes.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn set_fee(
        &self,
        request: Request<wire::SetFeeRequest>,
    ) -> Result<Response<wire::SetFeeResponse>, Status> {
        let sat_per_vbyte = request.get_ref().sat_per_vbyte;
        if sat_per_vbyte == 0 {
            return Err(Status::invalid_argument(
                "sat_per_vbyte must be at least 1 (the relay floor)",
            ));
        }
        // 1 vbyte is 4 weight units: sat/kw = sat/vB × 1000 / 4.
        let sat_per_kw = sat_per_vbyte.saturating_mul(250);
        lock(&self.control.world).set_fee_trace(FeeTrace::Flat(sat_per_kw));
        Ok(Response::new(wire::SetFeeResponse { sat_per_kw }))
    }

    async fn reorg(
        &self,
        request: Request<wire::ReorgRequest>,
    ) -> Result<Response<wire::ReorgResponse>, Status> {
        let depth = request.get_ref().depth;
        if depth == 0 {
            return Err(Status::invalid_argument("depth must be at least 1"));
        }
        let mut world = lock(&self.control.world);
        self.control.observe(&world);
        let outcome = world
            .reorg(depth)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(wire::ReorgResponse {
            height: world.height().0,
            returned_to_mempool: u32::try_from(outcome.returned.len()).unwrap_or(u32::MAX),
        }))
    }

    async fn status(
        &self,
        _: Request<wire::StatusRequest>,
    ) -> Result<Response<wire::StatusResponse>, Status> {
        let states = self.lnd_states().await;
        let nodes = self.node_statuses(&states);
        let world = lock(&self.control.world);
        self.control.observe(&world);
        Ok(Response::new(wire::StatusResponse {
            height: world.height().0,
            tip_hash: world.chain().tip_hash().to_string(),
            fee_sat_per_kw: world.chain().estimate_fee_sat_kw(1),
            network: super::lnd::convert::network_name(world.network()).to_owned(),
            nodes,
            mempool_txids: world
                .chain()
                .mempool_txids()
                .iter()
                .map(ToString::to_string)
                .collect(),
        }))
    }

    async fn stop_node(
        &self,
        request: Request<wire::NodeRequest>,
    ) -> Result<Response<wire::NodeResponse>, Status> {
        let name = &request.get_ref().name;
        {
            let mut lnds = self.control.lnds.lock().await;
            let Some(server) = lnds.get_mut(name) else {
                return Err(Self::unknown_node(name, &lnds));
            };
            server.stop().await;
        }
        tracing::info!(node = %name, "simulated lnd stopped on request");
        self.node_response(name).await
    }

    async fn list_misbehaviours(
        &self,
        _: Request<wire::ListMisbehavioursRequest>,
    ) -> Result<Response<wire::ListMisbehavioursResponse>, Status> {
        Ok(Response::new(wire::ListMisbehavioursResponse {
            misbehaviours: misbehave::all()
                .into_iter()
                .map(|m| wire::Misbehaviour {
                    name: m.name.to_owned(),
                    description: m.description.to_owned(),
                })
                .collect(),
            active: self
                .control
                .swap_server
                .misbehaviour()
                .unwrap_or_default()
                .to_owned(),
        }))
    }

    async fn set_misbehaviour(
        &self,
        request: Request<wire::SetMisbehaviourRequest>,
    ) -> Result<Response<wire::SetMisbehaviourResponse>, Status> {
        let name = request.get_ref().name.trim();
        let chosen = if name.is_empty() {
            None
        } else {
            Some(misbehave::find(name).map_err(|e| Status::not_found(e.to_string()))?)
        };
        let server = &self.control.swap_server;
        server
            .misbehave(chosen)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(wire::SetMisbehaviourResponse {
            active: server.misbehaviour().unwrap_or_default().to_owned(),
        }))
    }

    async fn start_node(
        &self,
        request: Request<wire::NodeRequest>,
    ) -> Result<Response<wire::NodeResponse>, Status> {
        let name = &request.get_ref().name;
        {
            let mut lnds = self.control.lnds.lock().await;
            let Some(server) = lnds.get_mut(name) else {
                return Err(Self::unknown_node(name, &lnds));
            };
            if !server.is_running() {
                server
                    .restart()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
            }
        }
        tracing::info!(node = %name, "simulated lnd started on request");
        self.node_response(name).await
    }

    async fn pay(
        &self,
        request: Request<wire::PayRequest>,
    ) -> Result<Response<wire::PayResponse>, Status> {
        let r = request.get_ref();
        if r.amount_sat == 0 {
            return Err(Status::invalid_argument("amount_sat must be at least 1"));
        }
        let mut world = lock(&self.control.world);
        let node = |alias: &str| {
            world.node_index(alias).ok_or_else(|| {
                Status::not_found(format!(
                    "no node `{alias}`: `sluice simnet status` lists the nodes"
                ))
            })
        };
        let (from, to) = (node(&r.from)?, node(&r.to)?);
        let Some((index, chan_id)) = world
            .channels()
            .iter()
            .enumerate()
            .find(|(_, c)| c.active && c.has(from) && c.other(from) == to)
            .map(|(i, c)| (i, c.chan_id))
        else {
            return Err(Status::failed_precondition(format!(
                "`{}` and `{}` have no active channel with each other",
                r.from, r.to
            )));
        };
        let paid = world
            .pay_along(from, &[index], r.amount_sat.saturating_mul(1000))
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        if !paid {
            return Err(Status::failed_precondition(format!(
                "`{}` cannot pay {} sat over channel {}: too little on its side",
                r.from, r.amount_sat, chan_id.0
            )));
        }
        Ok(Response::new(wire::PayResponse { chan_id: chan_id.0 }))
    }

    async fn restart_swap_server(
        &self,
        request: Request<wire::RestartSwapServerRequest>,
    ) -> Result<Response<wire::RestartSwapServerResponse>, Status> {
        let down_ms = request.get_ref().down_ms;
        if down_ms > MAX_SWAP_SERVER_DOWN_MS {
            return Err(Status::invalid_argument(format!(
                "down_ms {down_ms} is above {MAX_SWAP_SERVER_DOWN_MS}; ask for at most a minute"
            )));
        }
        let addr = self
            .control
            .restart_swap_server(std::time::Duration::from_millis(u64::from(down_ms)))
            .await
            .map_err(|e| Status::unavailable(format!("restarting the swap server: {e}")))?;
        Ok(Response::new(wire::RestartSwapServerResponse {
            address: addr.to_string(),
        }))
    }

    async fn audit(
        &self,
        _: Request<wire::AuditRequest>,
    ) -> Result<Response<wire::AuditResponse>, Status> {
        self.control.observe(&lock(&self.control.world));
        let audit = self.control.audit.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Response::new(wire::AuditResponse {
            learned: audit
                .learned()
                .iter()
                .map(|(hash, l)| wire::LearnedPreimage {
                    swap_hash: hash.to_string(),
                    height: l.height.0,
                    valid_htlc_confirmed: l.valid_htlc_confirmed,
                })
                .collect(),
        }))
    }
}
