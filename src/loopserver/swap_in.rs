//! One Loop In as the server holds it: the contract (the client's invoice and keys, the
//! server's keys, the four-key HTLC), what happened so far, and the state log the status
//! stream replays.

use std::sync::Mutex;
use std::time::Duration;

use bitcoin::OutPoint;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use tokio::sync::{Notify, watch};

use super::behaviour_in::InBehaviour;
use super::swap::{StateLog, StateUpdate};
use crate::chain::htlc::HtlcV3;
use crate::domain::{BlockHeight, NodeId, Preimage, Sat, SwapHash};
use crate::provider::wire::ServerSwapState;

/// What changes during a Loop In's life.
#[derive(Debug, Default)]
pub struct InLive {
    /// The preimage, once the server's payment of the swap invoice succeeded.
    pub preimage: Option<Preimage>,
    /// The client's internal secret key, once pushed (and checked).
    pub client_internal: Option<SecretKey>,
    /// Whether the server has sent its payment of the swap invoice (settled or still in
    /// flight): from then on the client may see its invoice settled before the server learns
    /// the preimage, and push its key.
    pub payment_sent: bool,
    /// The HTLC output, once confirmed with the right script and value.
    pub htlc_output: Option<(OutPoint, Sat)>,
}

/// A registered Loop In.
pub struct InSwapEntry {
    /// The swap hash.
    pub hash: SwapHash,
    /// The HTLC's value (`amt`).
    pub amount: Sat,
    /// The client's swap invoice, which the server pays.
    pub invoice: String,
    /// What the invoice asks: `amt - swap_fee`.
    pub invoice_amount: Sat,
    /// The server's fee for this swap.
    pub swap_fee: Sat,
    /// The HTLC's expiry height.
    pub expiry: u32,
    /// The server's tip when the swap was registered: where the chain watches start.
    pub registered_at: BlockHeight,
    /// The honest four-key HTLC of the contract.
    pub htlc: HtlcV3,
    /// The server's success-leaf key (never logged).
    pub receiver_secret: SecretKey,
    /// The server's internal key (never logged).
    pub receiver_internal_secret: SecretKey,
    /// The client's internal public key, which a pushed secret must match.
    pub sender_internal: PublicKey,
    /// The peer the client asked to be paid through (`last_hop`), honoured when paying.
    pub last_hop: Option<NodeId>,
    /// How the server behaves for this swap.
    pub behaviour: InBehaviour,
    /// The mutable part.
    pub live: Mutex<InLive>,
    /// Wakes the swap's engine after a key push.
    pub wake: Notify,
    states: StateLog,
}

impl std::fmt::Debug for InSwapEntry {
    /// Public facts only: keys and preimages stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InSwapEntry")
            .field("hash", &self.hash)
            .field("amount", &self.amount)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

/// What a new Loop In entry is made of.
pub struct NewInSwap {
    /// The swap hash.
    pub hash: SwapHash,
    /// The HTLC's value.
    pub amount: Sat,
    /// The client's swap invoice.
    pub invoice: String,
    /// What it asks.
    pub invoice_amount: Sat,
    /// The server's fee.
    pub swap_fee: Sat,
    /// The HTLC's expiry height.
    pub expiry: u32,
    /// The server's tip now.
    pub registered_at: BlockHeight,
    /// The honest HTLC.
    pub htlc: HtlcV3,
    /// The server's success-leaf key.
    pub receiver_secret: SecretKey,
    /// The server's internal key.
    pub receiver_internal_secret: SecretKey,
    /// The client's internal public key.
    pub sender_internal: PublicKey,
    /// The client's `last_hop`.
    pub last_hop: Option<NodeId>,
    /// The swap's behaviour.
    pub behaviour: InBehaviour,
    /// When it was registered.
    pub now: Duration,
}

impl InSwapEntry {
    /// A Loop In in `SERVER_INITIATED`.
    pub fn new(n: NewInSwap) -> InSwapEntry {
        InSwapEntry {
            hash: n.hash,
            amount: n.amount,
            invoice: n.invoice,
            invoice_amount: n.invoice_amount,
            swap_fee: n.swap_fee,
            expiry: n.expiry,
            registered_at: n.registered_at,
            htlc: n.htlc,
            receiver_secret: n.receiver_secret,
            receiver_internal_secret: n.receiver_internal_secret,
            sender_internal: n.sender_internal,
            last_hop: n.last_hop,
            behaviour: n.behaviour,
            live: Mutex::new(InLive::default()),
            wake: Notify::new(),
            states: StateLog::new(n.now),
        }
    }

    /// Runs `f` on the mutable part (a poisoned lock still yields the data).
    pub fn with_live<R>(&self, f: impl FnOnce(&mut InLive) -> R) -> R {
        let mut guard = self.live.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Records a new state, unless it is the current one or the swap is already final.
    pub fn enter(&self, state: ServerSwapState, at: Duration) {
        self.states.enter(state, at);
    }

    /// The current state.
    pub fn state(&self) -> ServerSwapState {
        self.states.state()
    }

    /// Every state so far, oldest first.
    pub fn history(&self) -> Vec<StateUpdate> {
        self.states.history()
    }

    /// A receiver of the state log, for the status stream.
    pub fn subscribe(&self) -> watch::Receiver<Vec<StateUpdate>> {
        self.states.subscribe()
    }

    /// Whether `secret` is the client's internal key of this swap.
    pub fn is_client_internal(&self, secret: &SecretKey) -> bool {
        PublicKey::from_secret_key(&Secp256k1::signing_only(), secret) == self.sender_internal
    }
}
