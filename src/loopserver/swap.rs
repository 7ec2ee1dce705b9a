//! One swap as the server holds it: the contract, its secrets, what happened so far, and the
//! log of server states the status stream replays.

use std::sync::Mutex;
use std::time::Duration;

use bitcoin::OutPoint;
use bitcoin::secp256k1::{PublicKey, SecretKey};
use tokio::sync::{Notify, watch};

use super::behaviour::Behaviour;
use crate::chain::htlc::HtlcV3;
use crate::domain::{Preimage, Sat, SwapHash};
use crate::provider::wire::ServerSwapState;

/// One entry of the status stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateUpdate {
    /// When the server entered the state, since the Unix epoch.
    pub at: Duration,
    /// The state.
    pub state: ServerSwapState,
}

/// Whether the server has nothing more to say about a swap in this state.
pub fn is_final(state: ServerSwapState) -> bool {
    !matches!(
        state,
        ServerSwapState::ServerInitiated
            | ServerSwapState::ServerHtlcPublished
            | ServerSwapState::ServerHtlcConfirmed
            | ServerSwapState::ServerTimeoutPublished
    )
}

/// The log of a swap's server states, which the status stream replays and follows; shared by
/// Loop Out and Loop In swaps.
pub struct StateLog {
    states: watch::Sender<Vec<StateUpdate>>,
}

impl StateLog {
    /// A log that starts in `SERVER_INITIATED` at `now`.
    pub fn new(now: Duration) -> StateLog {
        let (states, _) = watch::channel(vec![StateUpdate {
            at: now,
            state: ServerSwapState::ServerInitiated,
        }]);
        StateLog { states }
    }

    /// Records a new state, unless it is the current one or the log is already final.
    pub fn enter(&self, state: ServerSwapState, at: Duration) {
        self.states.send_if_modified(|log| match log.last() {
            Some(last) if last.state == state || is_final(last.state) => false,
            _ => {
                log.push(StateUpdate { at, state });
                true
            }
        });
    }

    /// The current state.
    pub fn state(&self) -> ServerSwapState {
        self.states
            .borrow()
            .last()
            .map_or(ServerSwapState::ServerInitiated, |u| u.state)
    }

    /// Every state so far, oldest first.
    pub fn history(&self) -> Vec<StateUpdate> {
        self.states.borrow().clone()
    }

    /// A receiver of the log, for the status stream.
    pub fn subscribe(&self) -> watch::Receiver<Vec<StateUpdate>> {
        self.states.subscribe()
    }
}

/// The HTLC the server paid.
#[derive(Debug, Clone)]
pub struct Funded {
    /// The script actually paid (the honest one unless the wrong-script switch is on).
    pub htlc: HtlcV3,
    /// Its outputs, first one first, with their values.
    pub outputs: Vec<(OutPoint, Sat)>,
}

/// What changes during a swap's life.
#[derive(Debug, Default)]
pub struct Live {
    /// How the server behaves; may be switched mid-swap.
    pub behaviour: Behaviour,
    /// The client's preimage, once pushed or seen on chain.
    pub preimage: Option<Preimage>,
    /// The HTLC, once published.
    pub funded: Option<Funded>,
    /// Which cancel the client asked for, if any.
    pub client_cancel: Option<ServerSwapState>,
}

/// A registered swap.
pub struct SwapEntry {
    /// The swap hash.
    pub hash: SwapHash,
    /// The on-chain amount.
    pub amount: Sat,
    /// The HTLC expiry height.
    pub expiry: u32,
    /// The client's key.
    pub receiver: PublicKey,
    /// The server's key for this swap (never logged).
    pub sender_secret: SecretKey,
    /// The honest HTLC of the contract.
    pub htlc: HtlcV3,
    /// The swap invoice's payment address: the client's proof of ownership.
    pub payment_address: [u8; 32],
    /// The preimage of the prepay hold invoice (the server's own).
    pub prepay_preimage: Preimage,
    /// Whether the swap invoice is a forgery nobody can pay (no engine runs then).
    pub forged: bool,
    /// The mutable part.
    pub live: Mutex<Live>,
    /// Wakes the swap's engine after a push or a cancel.
    pub wake: Notify,
    states: StateLog,
}

impl std::fmt::Debug for SwapEntry {
    /// Public facts only: keys and preimages stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwapEntry")
            .field("hash", &self.hash)
            .field("amount", &self.amount)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

/// What a new entry is made of.
pub struct NewSwap {
    /// The swap hash.
    pub hash: SwapHash,
    /// The on-chain amount.
    pub amount: Sat,
    /// The HTLC expiry height.
    pub expiry: u32,
    /// The client's key.
    pub receiver: PublicKey,
    /// The server's key.
    pub sender_secret: SecretKey,
    /// The honest HTLC.
    pub htlc: HtlcV3,
    /// The swap invoice's payment address.
    pub payment_address: [u8; 32],
    /// The prepay preimage.
    pub prepay_preimage: Preimage,
    /// Whether the swap invoice is forged.
    pub forged: bool,
    /// The swap's behaviour.
    pub behaviour: Behaviour,
    /// When it was registered.
    pub now: Duration,
}

impl SwapEntry {
    /// A swap in `SERVER_INITIATED`.
    pub fn new(n: NewSwap) -> SwapEntry {
        SwapEntry {
            hash: n.hash,
            amount: n.amount,
            expiry: n.expiry,
            receiver: n.receiver,
            sender_secret: n.sender_secret,
            htlc: n.htlc,
            payment_address: n.payment_address,
            prepay_preimage: n.prepay_preimage,
            forged: n.forged,
            live: Mutex::new(Live {
                behaviour: n.behaviour,
                ..Live::default()
            }),
            wake: Notify::new(),
            states: StateLog::new(n.now),
        }
    }

    /// Runs `f` on the mutable part. A poisoned lock (a panic elsewhere) still yields the
    /// data: every field is valid on its own.
    pub fn with_live<R>(&self, f: impl FnOnce(&mut Live) -> R) -> R {
        let mut guard = self.live.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The swap's current behaviour.
    pub fn behaviour(&self) -> Behaviour {
        self.with_live(|l| l.behaviour)
    }

    /// Records a new state, unless it is the current one or the swap is already final.
    pub fn enter(&self, state: ServerSwapState, at: Duration) {
        self.states.enter(state, at);
    }

    /// The funded HTLC, waiting up to `patience` for a publication under way: the wallet's
    /// transaction reaches the chain (and the client) before the wallet call returns, so a
    /// client can ask for a co-signature in between. `None` when nothing is funded by then or
    /// the swap ended unfunded.
    pub async fn funded_within(&self, patience: Duration) -> Option<Funded> {
        let mut states = self.subscribe();
        let wait = async {
            loop {
                if let Some(f) = self.with_live(|l| l.funded.clone()) {
                    return Some(f);
                }
                if is_final(self.state()) || states.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(patience, wait).await.ok().flatten()
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

    /// Whether `address` proves ownership of the swap (compared in constant time).
    pub fn owns(&self, address: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        address.len() == 32 && bool::from(self.payment_address.ct_eq(address))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::Secp256k1;

    fn entry() -> SwapEntry {
        let secp = Secp256k1::new();
        let s = SecretKey::from_slice(&[2; 32]).unwrap();
        let r = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[3; 32]).unwrap());
        let hash = SwapHash([1; 32]);
        SwapEntry::new(NewSwap {
            hash,
            amount: Sat(1),
            expiry: 500,
            receiver: r,
            sender_secret: s,
            htlc: HtlcV3::new(
                PublicKey::from_secret_key(&secp, &s),
                r,
                hash,
                500,
                crate::domain::Network::Regtest,
            )
            .unwrap(),
            payment_address: [9; 32],
            prepay_preimage: Preimage([4; 32]),
            forged: false,
            behaviour: Behaviour::default(),
            now: Duration::ZERO,
        })
    }

    #[test]
    fn the_state_log_skips_repeats_and_freezes_once_final() {
        let e = entry();
        let t = Duration::from_secs(1);
        e.enter(ServerSwapState::ServerHtlcPublished, t);
        e.enter(ServerSwapState::ServerHtlcPublished, t);
        e.enter(ServerSwapState::ServerSuccess, t);
        e.enter(ServerSwapState::ServerFailedTimeout, t);
        let states: Vec<_> = e.history().iter().map(|u| u.state).collect();
        assert_eq!(
            states,
            [
                ServerSwapState::ServerInitiated,
                ServerSwapState::ServerHtlcPublished,
                ServerSwapState::ServerSuccess
            ]
        );
        assert!(is_final(e.state()));
    }

    #[test]
    fn ownership_needs_the_exact_payment_address() {
        let e = entry();
        assert!(e.owns(&[9; 32]));
        assert!(!e.owns(&[8; 32]));
        assert!(!e.owns(&[9; 31]));
        assert!(!format!("{e:?}").contains("SecretKey"));
    }

    /// A co-sign request that arrives while the wallet call funding the HTLC is still under
    /// way gets the HTLC once the call returns, not a refusal (the client would fall back to
    /// the success script path, paying more fees and leaking the preimage on chain).
    #[tokio::test(start_paused = true)]
    async fn a_publication_under_way_is_awaited_and_an_unfunded_end_is_not() {
        let e = std::sync::Arc::new(entry());
        let funder = {
            let e = e.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let htlc = e.htlc.clone();
                e.with_live(|l| {
                    l.funded = Some(Funded {
                        htlc,
                        outputs: vec![(OutPoint::null(), Sat(1))],
                    })
                });
                e.enter(ServerSwapState::ServerHtlcPublished, Duration::from_secs(2));
            })
        };
        let funded = e.funded_within(Duration::from_secs(10)).await;
        assert_eq!(funded.map(|f| f.outputs.len()), Some(1));
        funder.await.unwrap();

        let never = entry();
        assert!(never.funded_within(Duration::from_secs(10)).await.is_none());
        // A swap that ended unfunded answers at once, without waiting out the patience.
        never.enter(ServerSwapState::ServerFailedOffChainTimeout, Duration::ZERO);
        let asked = tokio::time::Instant::now();
        assert!(
            never
                .funded_within(Duration::from_secs(3600))
                .await
                .is_none()
        );
        assert_eq!(asked.elapsed(), Duration::ZERO);
    }
}
