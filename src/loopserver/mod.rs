//! The reference Loop server: the `looprpc.SwapServer` protocol (protocol notes §1 and §11),
//! served over gRPC and backed by any Lightning node through the
//! [`LightningNode`](crate::lnd::LightningNode) port (hold invoices, chain notifications, the
//! MuSig2 signer, HTLC funding through the node's wallet), with switches for every
//! misbehaviour a client must survive. It runs alone against any lnd (`sluice loopserver`) or
//! in front of the simnet's "loop" node.
//!
//! Both directions are served, as siblings: Loop Out (the server funds the HTLC) and Loop In
//! (the client funds a four-key HTLC; the server probes and pays the client's invoice, then
//! claims with the pushed key or the preimage).
//!
//! - [`terms`]: terms, quotes (both directions) and the request checks. Pure.
//! - [`behaviour`]: the per-swap Loop Out misbehaviour switches. Pure.
//! - [`behaviour_in`]: the per-swap Loop In misbehaviour switches. Pure.
//! - [`sign`]: sighash from the client's PSBT, co-sign answers, timeout claims, Loop In claims.
//!   Pure.
//! - [`invoice`]: forged swap invoices for the tampering switches. Pure.
//! - [`l402`]: the L402 front (mint, challenge, verify). Pure.
//! - [`misbehave`]: the named misbehaviours a person or a test switches on. Pure.
//! - [`swap`]: one Loop Out's contract, secrets and state log (the log shared by both).
//! - [`swap_in`]: one Loop In's contract, secrets and progress.
//! - [`funder`]: the [`HtlcFunder`] port, which every node's wallet implements.
//! - `engine`, `engine_in`: one task per swap, driven by the node's notifications.
//! - `service`, `service_in`: the `SwapServer` gRPC methods.
//!
//! The publication deadline of a swap is a hint, as in Loop: the server publishes as soon as
//! both payments are held (unless the publication switch says otherwise), which meets any
//! deadline still ahead; a deadline in the past (or Go's zero time) means "now".
//!
//! Keys, preimages and nonce seeds come from one seeded RNG, so a run is reproducible. State
//! lives in the [`LoopServer`], not in the gRPC server: [`LoopServer::serve`] can stop and
//! start again (a server restart, as the client sees it: open streams end) while the swaps
//! carry on.

pub mod behaviour;
pub mod behaviour_in;
mod engine;
mod engine_in;
pub mod error;
pub mod funder;
pub mod invoice;
pub mod l402;
pub mod misbehave;
mod service;
mod service_in;
pub mod sign;
pub mod swap;
pub mod swap_in;
pub mod terms;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bitcoin::secp256k1::SecretKey;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use behaviour::Behaviour;
pub use behaviour_in::InBehaviour;
pub use error::LoopServerError;
pub use funder::HtlcFunder;
pub use l402::L402Settings;
pub use service_in::probe_hash;
pub use terms::{InQuote, Quote, Terms};

use crate::domain::{Sat, SwapHash};
use crate::lnd::LightningNode;
use crate::provider::wire::ServerSwapState;
use crate::provider::wire::swap_server_server::SwapServerServer;
use swap::SwapEntry;
use swap_in::InSwapEntry;

/// Where the server's wall-clock time comes from: the same clock type the swap engine uses.
pub use crate::swap::engine::{Clock, system_clock};

/// How the server is set up.
#[derive(Clone)]
pub struct LoopServerConfig {
    /// Terms, prices and invoice parameters.
    pub terms: Terms,
    /// Seeds every key, preimage and nonce the server makes.
    pub seed: u64,
    /// The L402 front; `None` serves without tokens.
    pub l402: Option<L402Settings>,
    /// Confirmations before the server reports `SERVER_HTLC_CONFIRMED`.
    pub htlc_confirmations: u32,
    /// The fee target of the timeout claim, in blocks.
    pub timeout_conf_target: u32,
    /// The clock for invoice timestamps and status updates.
    pub clock: Clock,
}

impl std::fmt::Debug for LoopServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopServerConfig")
            .field("terms", &self.terms)
            .field("seed", &self.seed)
            .field("l402", &self.l402.as_ref().map(|l| l.price))
            .field("htlc_confirmations", &self.htlc_confirmations)
            .field("timeout_conf_target", &self.timeout_conf_target)
            .finish_non_exhaustive()
    }
}

impl Default for LoopServerConfig {
    /// Default terms, an L402 front at 1 sat, one confirmation, a 6-block claim target.
    fn default() -> Self {
        LoopServerConfig {
            terms: Terms::default(),
            seed: 0x100b,
            l402: Some(L402Settings::default()),
            htlc_confirmations: 1,
            timeout_conf_target: 6,
            clock: system_clock(),
        }
    }
}

/// Which behaviour the next swaps get: by amount first, then the queue, then the default.
#[derive(Debug, Default)]
struct BehaviourBook {
    by_amount: HashMap<Sat, Behaviour>,
    queue: VecDeque<Behaviour>,
    default: Behaviour,
    /// Quotes answered so far, per amount.
    quotes: HashMap<Sat, u32>,
    /// The Loop In behaviour of every Loop In registered for exactly an amount.
    in_by_amount: HashMap<Sat, InBehaviour>,
    /// The Loop In behaviours of the next Loop Ins, first one first.
    in_queue: VecDeque<InBehaviour>,
    /// The Loop In behaviour no other switch selects.
    in_default: InBehaviour,
    /// Loop In quotes answered so far, per amount.
    in_quotes: HashMap<Sat, u32>,
}

impl BehaviourBook {
    fn take(&mut self, amount: Sat) -> Behaviour {
        if let Some(b) = self.by_amount.get(&amount) {
            return *b;
        }
        self.queue.pop_front().unwrap_or(self.default)
    }

    /// The behaviour the next swap of `amount` would get, without taking it, and how many
    /// quotes for `amount` were answered before this one (counting this one from now on).
    fn quote(&mut self, amount: Sat) -> (Behaviour, u32) {
        let behaviour = match self.by_amount.get(&amount) {
            Some(b) => *b,
            None => self.queue.front().copied().unwrap_or(self.default),
        };
        let served = self.quotes.entry(amount).or_insert(0);
        let earlier = *served;
        *served = served.saturating_add(1);
        (behaviour, earlier)
    }

    fn take_in(&mut self, amount: Sat) -> InBehaviour {
        if let Some(b) = self.in_by_amount.get(&amount) {
            return *b;
        }
        self.in_queue.pop_front().unwrap_or(self.in_default)
    }

    /// As [`quote`](Self::quote), for Loop In.
    fn quote_in(&mut self, amount: Sat) -> (InBehaviour, u32) {
        let behaviour = match self.in_by_amount.get(&amount) {
            Some(b) => *b,
            None => self.in_queue.front().copied().unwrap_or(self.in_default),
        };
        let served = self.in_quotes.entry(amount).or_insert(0);
        let earlier = *served;
        *served = served.saturating_add(1);
        (behaviour, earlier)
    }
}

/// Shared by the gRPC service, the swap engines and the handle.
pub(crate) struct Inner {
    config: LoopServerConfig,
    node: Arc<dyn LightningNode>,
    rng: Mutex<StdRng>,
    swaps: Mutex<HashMap<SwapHash, Arc<SwapEntry>>>,
    in_swaps: Mutex<HashMap<SwapHash, Arc<InSwapEntry>>>,
    book: Mutex<BehaviourBook>,
    l402: Mutex<Option<L402Settings>>,
    /// The named misbehaviour switched on, if any.
    misbehaving: Mutex<Option<&'static str>>,
    /// Signs the forged invoices of the tampering switches.
    forge_key: SecretKey,
    /// Stops every swap engine.
    stop: CancellationToken,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn now(&self) -> Duration {
        (self.config.clock)()
    }

    fn random_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        locked(&self.rng).fill_bytes(&mut b);
        b
    }

    /// A fresh secret key from the seeded RNG.
    fn random_key(&self) -> SecretKey {
        loop {
            if let Ok(k) = SecretKey::from_slice(&self.random_bytes()) {
                return k;
            }
        }
    }

    fn swap(&self, hash: SwapHash) -> Result<Arc<SwapEntry>, LoopServerError> {
        locked(&self.swaps)
            .get(&hash)
            .cloned()
            .ok_or(LoopServerError::UnknownSwap(hash))
    }

    fn in_swap(&self, hash: SwapHash) -> Result<Arc<InSwapEntry>, LoopServerError> {
        locked(&self.in_swaps)
            .get(&hash)
            .cloned()
            .ok_or(LoopServerError::UnknownSwap(hash))
    }

    /// Whether a swap of either direction uses `hash` already.
    fn hash_taken(&self, hash: SwapHash) -> bool {
        locked(&self.swaps).contains_key(&hash) || locked(&self.in_swaps).contains_key(&hash)
    }
}

/// The reference Loop server. Dropping it stops every swap engine.
pub struct LoopServer {
    inner: Arc<Inner>,
    _stop_on_drop: DropGuard,
}

impl std::fmt::Debug for LoopServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopServer")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl LoopServer {
    /// A server whose invoices, chain watches, HTLC funding and timeout claims go through
    /// `node`.
    pub fn new(config: LoopServerConfig, node: Arc<dyn LightningNode>) -> LoopServer {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut forge = [0u8; 32];
        let forge_key = loop {
            rng.fill_bytes(&mut forge);
            if let Ok(k) = SecretKey::from_slice(&forge) {
                break k;
            }
        };
        let stop = CancellationToken::new();
        let inner = Arc::new(Inner {
            l402: Mutex::new(config.l402.clone()),
            misbehaving: Mutex::new(None),
            config,
            node,
            rng: Mutex::new(rng),
            swaps: Mutex::new(HashMap::new()),
            in_swaps: Mutex::new(HashMap::new()),
            book: Mutex::new(BehaviourBook::default()),
            forge_key,
            stop: stop.clone(),
        });
        LoopServer {
            inner,
            _stop_on_drop: stop.drop_guard(),
        }
    }

    /// Serves `looprpc.SwapServer` (plaintext, for loopback) on `listener` until `shutdown`
    /// completes. Open status streams end then, as on a real restart; swaps keep running, and
    /// serving again (on the same or a new port) resumes service. The returned future owns
    /// what it needs, so it can be spawned.
    pub fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
        self.serve_with(listener, None, shutdown)
    }

    /// [`serve`](Self::serve) over TLS with `identity` (a certificate clients pin, as sluiced's
    /// `server.tls: pinned` or loopd's `--server.tlspath` do).
    pub fn serve_tls(
        &self,
        listener: TcpListener,
        identity: &crate::tls::Identity,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&identity.cert_pem, &identity.key_pem),
        );
        self.serve_with(listener, Some(tls), shutdown)
    }

    fn serve_with(
        &self,
        listener: TcpListener,
        tls: Option<tonic::transport::ServerTlsConfig>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
        let streams = CancellationToken::new();
        let svc = service::Service::new(self.inner.clone(), streams.clone());
        async move {
            let ended = streams.clone();
            let mut builder = tonic::transport::Server::builder();
            if let Some(tls) = tls {
                builder = builder.tls_config(tls)?;
            }
            let result = builder
                .add_service(SwapServerServer::new(svc))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async move {
                        shutdown.await;
                        ended.cancel();
                    },
                )
                .await;
            streams.cancel();
            result
        }
    }

    /// Serves on a free loopback port until the runtime ends, for tests and benchmarks; returns
    /// the address.
    pub async fn serve_on_loopback(&self) -> std::io::Result<std::net::SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let serving = self.serve(listener, std::future::pending());
        tokio::spawn(async move {
            if let Err(e) = serving.await {
                tracing::warn!(error = %e, "the reference Loop server stopped serving");
            }
        });
        Ok(addr)
    }

    /// The behaviour of the next swap registered (after any by-amount switch).
    pub fn set_behaviour_for_next_swap(&self, behaviour: Behaviour) {
        locked(&self.inner.book).queue.push_back(behaviour);
    }

    /// The behaviour of every swap registered for exactly `amount`.
    pub fn set_behaviour_for_amount(&self, amount: Sat, behaviour: Behaviour) {
        locked(&self.inner.book).by_amount.insert(amount, behaviour);
    }

    /// The behaviour of the next Loop In registered (after any by-amount switch).
    pub fn set_loop_in_behaviour_for_next_swap(&self, behaviour: InBehaviour) {
        locked(&self.inner.book).in_queue.push_back(behaviour);
    }

    /// The behaviour of every Loop In registered for exactly `amount`.
    pub fn set_loop_in_behaviour_for_amount(&self, amount: Sat, behaviour: InBehaviour) {
        locked(&self.inner.book)
            .in_by_amount
            .insert(amount, behaviour);
    }

    /// The behaviour of Loop Ins no other switch selects.
    pub fn set_loop_in_default_behaviour(&self, behaviour: InBehaviour) {
        locked(&self.inner.book).in_default = behaviour;
    }

    /// A Loop In's server states so far, oldest first.
    pub fn loop_in_states(&self, hash: SwapHash) -> Result<Vec<ServerSwapState>, LoopServerError> {
        Ok(self
            .inner
            .in_swap(hash)?
            .history()
            .iter()
            .map(|u| u.state)
            .collect())
    }

    /// Every Loop In the server registered, in no particular order.
    pub fn loop_in_hashes(&self) -> Vec<SwapHash> {
        locked(&self.inner.in_swaps).keys().copied().collect()
    }

    /// Whether the server paid a Loop In's invoice (it then knows the preimage).
    pub fn loop_in_paid(&self, hash: SwapHash) -> Result<bool, LoopServerError> {
        Ok(self
            .inner
            .in_swap(hash)?
            .with_live(|l| l.preimage.is_some()))
    }

    /// Whether the client pushed its internal key for a Loop In.
    pub fn loop_in_key_pushed(&self, hash: SwapHash) -> Result<bool, LoopServerError> {
        Ok(self
            .inner
            .in_swap(hash)?
            .with_live(|l| l.client_internal.is_some()))
    }

    /// The behaviour of swaps no other switch selects.
    pub fn set_default_behaviour(&self, behaviour: Behaviour) {
        locked(&self.inner.book).default = behaviour;
    }

    /// Switches a registered swap's behaviour from now on (e.g. co-signing after the HTLC
    /// confirmed).
    pub fn set_swap_behaviour(
        &self,
        hash: SwapHash,
        behaviour: Behaviour,
    ) -> Result<(), LoopServerError> {
        let swap = self.inner.swap(hash)?;
        swap.with_live(|l| l.behaviour = behaviour);
        swap.wake.notify_one();
        Ok(())
    }

    /// Switches a named misbehaviour on for the swaps registered from now on (or the L402
    /// front's next challenges), replacing the one on before; `None` makes the server honest
    /// again: the default behaviour and the configured L402 front. Swaps already registered,
    /// and the by-amount and next-swap switches, keep their behaviour.
    pub fn misbehave(
        &self,
        misbehaviour: Option<misbehave::Misbehaviour>,
    ) -> Result<(), misbehave::NoL402Front> {
        let configured = self.inner.config.l402.clone();
        let honest_in = InBehaviour::default();
        let (behaviour, in_behaviour, l402) = match misbehaviour.map(|m| (m.name, m.switch)) {
            None => (Behaviour::default(), honest_in, configured),
            Some((_, misbehave::Switch::Swap(b))) => (b, honest_in, configured),
            Some((_, misbehave::Switch::LoopIn(b))) => (Behaviour::default(), b, configured),
            Some((name, misbehave::Switch::L402(tamper))) => {
                let Some(settings) = configured else {
                    return Err(misbehave::NoL402Front(name));
                };
                (
                    Behaviour::default(),
                    honest_in,
                    Some(tamper.apply(&settings)),
                )
            }
        };
        self.set_default_behaviour(behaviour);
        self.set_loop_in_default_behaviour(in_behaviour);
        self.set_l402(l402);
        *locked(&self.inner.misbehaving) = misbehaviour.map(|m| m.name);
        match misbehaviour {
            Some(m) => tracing::info!(
                misbehaviour = m.name,
                "loop server: misbehaving from now on"
            ),
            None => tracing::info!("loop server: honest from now on"),
        }
        Ok(())
    }

    /// The name of the misbehaviour switched on with [`misbehave`](Self::misbehave), if any.
    pub fn misbehaviour(&self) -> Option<&'static str> {
        *locked(&self.inner.misbehaving)
    }

    /// Replaces the L402 front's settings (`None` turns it off).
    pub fn set_l402(&self, settings: Option<L402Settings>) {
        *locked(&self.inner.l402) = settings;
    }

    /// A swap's server states so far, oldest first.
    pub fn swap_states(&self, hash: SwapHash) -> Result<Vec<ServerSwapState>, LoopServerError> {
        Ok(self
            .inner
            .swap(hash)?
            .history()
            .iter()
            .map(|u| u.state)
            .collect())
    }

    /// Whether the server knows the swap's preimage (pushed or read from the chain).
    pub fn knows_preimage(&self, hash: SwapHash) -> Result<bool, LoopServerError> {
        Ok(self.inner.swap(hash)?.with_live(|l| l.preimage.is_some()))
    }

    /// Every swap the server registered, in no particular order.
    pub fn swap_hashes(&self) -> Vec<SwapHash> {
        locked(&self.inner.swaps).keys().copied().collect()
    }

    /// The HTLC outpoints the server paid that honour the contract: the agreed script (key,
    /// hash and expiry) and at least the swap's amount. Empty before the funding, and when
    /// every output was tampered with.
    pub fn contract_outpoints(
        &self,
        hash: SwapHash,
    ) -> Result<Vec<bitcoin::OutPoint>, LoopServerError> {
        let swap = self.inner.swap(hash)?;
        let script = swap.htlc.pk_script();
        Ok(swap.with_live(|l| {
            l.funded
                .as_ref()
                .filter(|f| f.htlc.pk_script() == script)
                .map(|f| {
                    f.outputs
                        .iter()
                        .filter(|(_, value)| *value >= swap.amount)
                        .map(|(o, _)| *o)
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    /// The HTLC outpoints the server paid for a swap, first one first.
    pub fn htlc_outpoints(
        &self,
        hash: SwapHash,
    ) -> Result<Vec<bitcoin::OutPoint>, LoopServerError> {
        Ok(self.inner.swap(hash)?.with_live(|l| {
            l.funded
                .as_ref()
                .map(|f| f.outputs.iter().map(|(o, _)| *o).collect())
                .unwrap_or_default()
        }))
    }
}
