//! Runs a simnet standalone: the world, a simulated lnd for "sluice" and one for "loop", the
//! reference Loop server on the "loop" lnd (over gRPC, as on a real lnd), the control service, block mining on an interval
//! and routed traffic, all on loopback; and the
//! files a client needs to use it (`sluice.yaml` for sluiced, `simnet.json` for the CLI).
//!
//! Layout of the directory:
//! - `lnd/sluice/` and `lnd/loop/`: each lnd's `tls.cert`, `tls.key`, `admin.macaroon`;
//! - `control/`: the same for the control service;
//! - `simnet.json`: where everything listens, for `sluice simnet mine|fee|reorg|status`;
//! - `sluice.yaml`: a config that makes `sluiced --config <it>` use the "sluice" lnd.
//!
//! Credentials are reused when the directory already has them, so a restarted simnet keeps
//! working with clients configured for the previous run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, ServerTlsConfig};

use super::control::{Control, ControlService};
use super::lnd::{BlockSource, LndFiles, SimLndError, SimLndServer};
pub use super::state::{STATE_FILE, SimnetError, SimnetState};
use super::world::traffic::{Traffic, TrafficConfig};
use super::world::{SimNode, World, WorldConfig, lock};
use crate::daemon::supervisor::bounded_drain;
use crate::domain::Sat;
use crate::loopserver::{LoopServer, LoopServerConfig};
use crate::proto::simnet::simnet_server::SimnetServer;

/// The node sluiced runs against.
pub const SLUICE_NODE: &str = "sluice";
/// The swap server's node.
pub const LOOP_NODE: &str = "loop";
/// The config file written for sluiced.
pub const CONFIG_FILE: &str = "sluice.yaml";
/// The control service's credential directory.
pub const CONTROL_DIR: &str = "control";

/// How often simulated time moves on and traffic is generated.
const TICK: Duration = Duration::from_secs(1);

/// How a simnet runs. [`SimnetConfig::new`] gives the defaults of `sluice simnet serve`.
#[derive(Debug, Clone)]
pub struct SimnetConfig {
    /// Seeds keys, balances and traffic: the same seed builds the same world.
    pub seed: u64,
    /// How many peers "sluice" has a channel with.
    pub channels: usize,
    /// A block is mined every interval; `None` mines only on request.
    pub block_interval: Option<Duration>,
    /// Whether payments are routed through "sluice" in the background.
    pub traffic: bool,
    /// Mean routed payments per hour when `traffic` is on.
    pub payments_per_hour: f64,
    /// The directory for credentials, `simnet.json` and `sluice.yaml`.
    pub dir: PathBuf,
    /// Where the "sluice" lnd listens (port 0: any free port).
    pub lnd_listen: SocketAddr,
    /// Where the "loop" lnd listens (port 0: any free port).
    pub loop_lnd_listen: SocketAddr,
    /// Where the control service listens (port 0: any free port).
    pub control_listen: SocketAddr,
    /// Where the reference Loop server listens (port 0: any free port); its address is written
    /// as `server.address` into `sluice.yaml`. Plaintext, which sluice accepts on loopback only.
    pub swap_server_listen: SocketAddr,
    /// The Loop server's terms, prices, L402 front and seed.
    pub loop_server: LoopServerConfig,
    /// Start the "sluice" node's first channel with 15 % inbound (below the example policy's
    /// band), so a demo has a loop-out to make at once.
    pub depleted_first_channel: bool,
}

impl SimnetConfig {
    /// Defaults: seed 1, 3 channels, a block a minute, traffic at 60 payments an hour, every
    /// port chosen by the system.
    pub fn new(dir: impl Into<PathBuf>) -> SimnetConfig {
        let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
        SimnetConfig {
            seed: 1,
            channels: 3,
            block_interval: Some(Duration::from_secs(60)),
            traffic: true,
            payments_per_hour: 60.0,
            dir: dir.into(),
            lnd_listen: any,
            loop_lnd_listen: any,
            control_listen: any,
            swap_server_listen: any,
            loop_server: LoopServerConfig::default(),
            depleted_first_channel: false,
        }
    }
}

/// How a client reaches one simulated lnd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LndEndpoint {
    /// host:port.
    pub addr: SocketAddr,
    /// The certificate to pin.
    pub cert_path: PathBuf,
    /// The macaroon to present.
    pub macaroon_path: PathBuf,
}

impl LndEndpoint {
    /// sluice's lnd client for this endpoint, made as sluiced makes it from its config: the
    /// certificate pinned, the macaroon read from its file, the network regtest. Connects on
    /// first use and again after the server restarts.
    pub fn connect(&self) -> Result<crate::lnd::LndClient, SimnetError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| SimnetError::File {
                action: "read",
                path: path.to_owned(),
                source,
            })
        };
        let cert = read(&self.cert_path)?;
        let macaroon = hex::encode(read(&self.macaroon_path)?);
        let channel = crate::tls::pinned_channel_lazy(
            &self.addr.to_string(),
            &cert,
            Duration::from_secs(10),
        )?;
        crate::lnd::LndClient::new(channel, &macaroon, crate::domain::Network::Regtest).map_err(
            |e| SimnetError::State {
                path: self.macaroon_path.clone(),
                reason: e.message,
            },
        )
    }
}

/// A running simnet. [`Simnet::stop`] ends it; dropping it stops its servers too.
pub struct Simnet {
    control: Arc<Control>,
    control_addr: SocketAddr,
    dir: PathBuf,
    sluice: LndEndpoint,
    loop_node: LndEndpoint,
    swap_server: Arc<LoopServer>,
    swap_server_addr: SocketAddr,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Simnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simnet")
            .field("dir", &self.dir)
            .field("control", &self.control_addr)
            .field("sluice", &self.sluice)
            .finish_non_exhaustive()
    }
}

impl Simnet {
    /// Builds the world, serves both lnds and the control service, starts mining and traffic,
    /// and writes `simnet.json` and `sluice.yaml`.
    pub async fn start(config: SimnetConfig) -> Result<Simnet, SimnetError> {
        let mut topology = WorldConfig::default_topology(config.seed, config.channels);
        if config.depleted_first_channel
            && let Some(first) = topology
                .channels
                .iter_mut()
                .find(|c| c.initiator == SLUICE_NODE)
        {
            // The demo's point: one channel starts with 15 % inbound, below the example
            // policy's 30 % band, so autoloop has a loop-out to make from the first pass.
            first.initiator_balance = Sat(first.capacity.0 * 85 / 100);
        }
        // Invoices carry the world's time; start at the wall clock so clients see them fresh.
        topology.start_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(topology.start_unix, |d| d.as_secs());
        let world: Arc<Mutex<World>> = Arc::new(Mutex::new(World::new(topology)?));

        let mut lnds = BTreeMap::new();
        let mut endpoints = BTreeMap::new();
        for (name, listen) in [
            (SLUICE_NODE, config.lnd_listen),
            (LOOP_NODE, config.loop_lnd_listen),
        ] {
            let node = SimNode::new(world.clone(), name)?;
            let dir = config.dir.join("lnd").join(name);
            let chain: Arc<dyn BlockSource> = Arc::new(world.clone());
            let server =
                SimLndServer::start_with_chain(Arc::new(node), Some(chain), &dir, listen).await?;
            endpoints.insert(
                name,
                LndEndpoint {
                    addr: server.addr(),
                    cert_path: server.cert_path().to_owned(),
                    macaroon_path: server.macaroon_path().to_owned(),
                },
            );
            lnds.insert(name.to_owned(), server);
        }
        // The reference Loop server, a program of its own: it reaches the "loop" node through
        // that node's lnd over gRPC, as it reaches a real lnd, and keeps the world's clock.
        let loop_lnd = endpoints
            .get(LOOP_NODE)
            .ok_or_else(|| SimnetError::State {
                path: config.dir.clone(),
                reason: "the loop node's lnd did not start".to_owned(),
            })?
            .connect()?;
        let mut server_config = config.loop_server.clone();
        server_config.clock = super::world::engine_clock(&world);
        let swap_server = Arc::new(LoopServer::new(
            server_config,
            Arc::new(crate::lnd::ResilientNode::new(Arc::new(loop_lnd))),
        ));
        let stop = CancellationToken::new();
        let control = Arc::new(Control {
            world: world.clone(),
            lnds: tokio::sync::Mutex::new(lnds),
            swap_server: swap_server.clone(),
            audit: std::sync::Mutex::default(),
            swap_serving: tokio::sync::Mutex::new(None),
            shutdown: stop.clone(),
        });

        let mut tasks = Vec::new();
        let control_dir = config.dir.join(CONTROL_DIR);
        let control_files = LndFiles::load_or_create(&control_dir)?;
        let (control_addr, task) = serve_control(
            control.clone(),
            &control_files,
            config.control_listen,
            stop.clone(),
        )
        .await?;
        tasks.push(task);
        if let Some(interval) = config.block_interval {
            tasks.push(tokio::spawn(mine_every(
                control.clone(),
                interval,
                stop.clone(),
            )));
        }
        let traffic = config.traffic.then(|| {
            Traffic::new(TrafficConfig::balanced(
                config.seed,
                config.payments_per_hour,
            ))
        });
        let listener = tokio::net::TcpListener::bind(config.swap_server_listen)
            .await
            .map_err(|source| SimnetError::Bind {
                addr: config.swap_server_listen,
                source,
            })?;
        let swap_server_addr = control
            .serve_swap_server(listener)
            .await
            .map_err(|source| SimnetError::Bind {
                addr: config.swap_server_listen,
                source,
            })?;

        tasks.push(tokio::spawn(run_clock(world, traffic, stop.clone())));

        let (Some(sluice), Some(loop_node)) =
            (endpoints.remove(SLUICE_NODE), endpoints.remove(LOOP_NODE))
        else {
            return Err(SimnetError::State {
                path: config.dir.clone(),
                reason: "a node's lnd did not start".to_owned(),
            });
        };
        let simnet = Simnet {
            control,
            control_addr,
            dir: config.dir.clone(),
            sluice,
            loop_node,
            swap_server,
            swap_server_addr,
            stop,
            tasks,
        };
        simnet.write_state(&control_files)?;
        simnet.write_config(&swap_server_addr.to_string())?;
        Ok(simnet)
    }

    /// The world, to drive it directly (tests, the in-process daemon).
    pub fn world(&self) -> &Arc<Mutex<World>> {
        &self.control.world
    }

    /// The "sluice" node's lnd.
    pub fn sluice_lnd(&self) -> &LndEndpoint {
        &self.sluice
    }

    /// The "loop" node's lnd, for the simnet's swap server.
    pub fn loop_lnd(&self) -> &LndEndpoint {
        &self.loop_node
    }

    /// The reference Loop server, to choose misbehaviours in tests.
    pub fn swap_server(&self) -> &LoopServer {
        &self.swap_server
    }

    /// Where the reference Loop server listens (plaintext, loopback).
    pub fn swap_server_addr(&self) -> SocketAddr {
        self.swap_server_addr
    }

    /// The control service's address.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// `<dir>/sluice.yaml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// Stops a node's lnd server (the reconnect test); `false` for a node without one.
    pub async fn stop_node(&self, name: &str) -> bool {
        match self.control.lnds.lock().await.get_mut(name) {
            Some(server) => {
                server.stop().await;
                true
            }
            None => false,
        }
    }

    /// Serves a stopped node's lnd again on its address.
    pub async fn start_node(&self, name: &str) -> Result<bool, SimnetError> {
        match self.control.lnds.lock().await.get_mut(name) {
            Some(server) if !server.is_running() => {
                server.restart().await?;
                Ok(true)
            }
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    /// Stops mining, traffic, the control service and every lnd, and waits for them.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        self.control.swap_server_stopped().await;
        for server in self.control.lnds.lock().await.values_mut() {
            server.stop().await;
        }
    }

    fn write_state(&self, control: &LndFiles) -> Result<(), SimnetError> {
        let state = SimnetState {
            control: self.control_addr.to_string(),
            control_cert: control.cert_path.clone(),
            control_macaroon: control.macaroon_path.clone(),
            lnd: [
                (SLUICE_NODE.to_owned(), self.sluice.addr.to_string()),
                (LOOP_NODE.to_owned(), self.loop_node.addr.to_string()),
            ]
            .into(),
        };
        let text = serde_json::to_string_pretty(&state).map_err(|e| SimnetError::State {
            path: self.dir.join(STATE_FILE),
            reason: e.to_string(),
        })?;
        write(&self.dir.join(STATE_FILE), &text)
    }

    fn write_config(&self, swap_server: &str) -> Result<(), SimnetError> {
        // JSON strings are YAML double-quoted scalars, so any path is written safely.
        let quote = |p: &Path| serde_json::Value::from(p.display().to_string()).to_string();
        let text = format!(
            "# Written by `sluice simnet serve`: `sluiced --config {config}` uses the simulated\n\
             # lnd of this simnet like a real regtest lnd.\n\
             network: regtest\n\
             lnd:\n  host: {host}\n  tls_cert: {cert}\n  macaroon: {macaroon}\n\
             server:\n  address: {swap_server}\n  tls: insecure\n",
            config = self.config_path().display(),
            host = self.sluice.addr,
            cert = quote(&self.sluice.cert_path),
            macaroon = quote(&self.sluice.macaroon_path),
        );
        write(&self.config_path(), &text)
    }
}

impl Drop for Simnet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn write(path: &Path, text: &str) -> Result<(), SimnetError> {
    std::fs::write(path, text).map_err(|source| SimnetError::File {
        action: "write",
        path: path.to_owned(),
        source,
    })
}

/// Serves the control service with `files`' certificate and macaroon until `stop`.
async fn serve_control(
    control: Arc<Control>,
    files: &LndFiles,
    listen: SocketAddr,
    stop: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), SimnetError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| SimLndError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimLndError::Bind {
        addr: listen,
        source,
    })?;
    let tls = ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(
        &files.identity.cert_pem,
        &files.identity.key_pem,
    ));
    let router = Server::builder()
        .tls_config(tls)
        .map_err(SimLndError::from)?
        .add_service(SimnetServer::with_interceptor(
            ControlService::new(control),
            files.checker(),
        ));
    let task = tokio::spawn(async move {
        let server =
            router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled());
        if let Some(Err(e)) = bounded_drain(server, &stop, Duration::from_secs(2)).await {
            tracing::warn!(error = %e, "simnet control service failed");
        }
    });
    tracing::info!(%addr, "simnet control service serving");
    Ok((addr, task))
}

/// Mines one block every `interval` until `stop`, observing what the swap server learned
/// before each (the control service's audit).
async fn mine_every(control: Arc<Control>, interval: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {
                let height = {
                    let mut w = lock(&control.world);
                    control.observe(&w);
                    w.mine(1);
                    w.height()
                };
                tracing::debug!(%height, "simnet mined a block");
            }
        }
    }
}

/// Moves simulated time with the wall clock and routes traffic, once per [`TICK`].
async fn run_clock(
    world: Arc<Mutex<World>>,
    mut traffic: Option<Traffic>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {
                let mut w = lock(&world);
                w.advance_clock(TICK.as_secs_f64());
                if let Some(Err(e)) = traffic.as_mut().map(|t| t.step(&mut w, TICK)) {
                    tracing::warn!(error = %e, "simnet traffic failed; stopping it");
                    traffic = None;
                }
            }
        }
    }
}
