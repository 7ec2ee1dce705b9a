//! Creating a Loop In (`loop-in-protocol.md` §1 A–D) and resuming stored ones.
//!
//! terms → probe (best effort) → quote → limits → preimage, script key (lnd, family 99) and
//! per-swap internal key (OS randomness, stored) → swap invoice (lnd `AddInvoice` with our
//! preimage: a normal invoice for `amount − fee`, private, 365 days) → probe invoice (hold,
//! hash = SHA256(H) with byte 0 XOR 1), watched before the server is asked → `NewLoopInSwap`
//! (the server pays the probe before it answers; we cancel it once accepted) → the probe must
//! have arrived → `validate_loop_in` → the contract stored, *before* anything is funded →
//! the driver ([`super::loop_in_driver`]).

use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use futures::StreamExt;
use rand::RngCore;

use super::loop_in_driver::LoopInDriver;
use super::{EngineError, SwapEngine};
use crate::chain::SatPerKw;
use crate::domain::{
    BlockHeight, Direction, HintCandidate, MAX_HOP_HINTS, Msat, RouteHint, Sat, SwapHash,
    select_hop_hints,
};
use crate::lnd::NodeErrorKind;
use crate::lnd::types::{HoldInvoiceRequest, InvoiceRequest, InvoiceState};
use crate::provider::port::{LoopInQuote, LoopInRoute, LoopInTerms, NewLoopInRequest};
use crate::provider::validate::{LoopInExpectations, check_loop_in_quote, validate_loop_in};
use crate::store::loop_in::{LoopInRecord, StoredLoopIn};
use crate::swap::loop_in::{
    DEFAULT_HTLC_CONF_TARGET, InternalKey, LoopInContract, LoopInContractTerms, LoopInCosts,
    LoopInLimits, LoopInProgress, MIN_HTLC_CONF_TARGET, SWAP_INVOICE_EXPIRY_SECS,
};
use crate::swap::{KeyLocator, Preimage, SWAP_KEY_FAMILY};

pub use crate::swap::loop_in::FUNDING_WEIGHT_ESTIMATE;

/// A Loop In's default `max_miner_fee`: this many times the estimated funding fee (Loop's CLI
/// uses 3 × the quoted publication fee).
pub const DEFAULT_MINER_FEE_MULTIPLIER: u64 = 3;

/// What the caller asks for.
#[derive(Debug, Clone, Default)]
pub struct LoopInRequest {
    /// The HTLC value.
    pub amount: Sat,
    /// Most the server may keep; `None` takes the quote's fee.
    pub max_swap_fee: Option<Sat>,
    /// Most the funding (and, separately, a timeout sweep) may pay miners; `None` takes
    /// [`DEFAULT_MINER_FEE_MULTIPLIER`] × the estimated funding fee.
    pub max_miner_fee: Option<Sat>,
    /// The peer the payment should arrive through.
    pub last_hop: Option<[u8; 33]>,
    /// Route hints to the node's private channels for the quote, the probe and both invoices.
    pub route_hints: RouteHints,
    /// Confirmation target of the funding; `None` is 6, at least 2.
    pub htlc_conf_target: Option<u32>,
    /// The operator's label.
    pub label: String,
    /// Who asked.
    pub initiator: String,
}

/// How a Loop In's payment finds the node when it sits behind private channels. The
/// invoices ask lnd for its own hints too (`private`), as Loop's do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RouteHints {
    /// No hints of sluice's choosing.
    #[default]
    None,
    /// Hints to the node's private channels, chosen as Loop's `--private` chooses them
    /// ([`crate::domain::select_hop_hints`]); narrowed to the last hop when one is asked for.
    Private,
    /// The caller's own hints.
    Given(Vec<RouteHint>),
}

/// A Loop In quote as `sluice quote in` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopInQuoteInfo {
    /// The server's terms.
    pub terms: LoopInTerms,
    /// The server's quote.
    pub quote: LoopInQuote,
    /// The estimated fee of the funding transaction at the confirmation target.
    pub funding_fee_estimate: Sat,
    /// The rate it was estimated at.
    pub funding_rate: SatPerKw,
    /// The limits a swap created now would get.
    pub limits: LoopInLimits,
    /// The route hints the quote was asked with (and a swap's invoices carry).
    pub route_hints: Vec<RouteHint>,
}

/// A created Loop In.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedLoopIn {
    /// The swap's hash, its id.
    pub hash: SwapHash,
    /// The HTLC address the wallet will fund.
    pub htlc_address: String,
    /// The HTLC's expiry.
    pub expiry: BlockHeight,
    /// What the server said.
    pub server_message: String,
}

/// The hash of a swap's probe invoice: SHA256 of the swap hash with the lowest bit of its
/// first byte flipped, so nobody knows its preimage (Loop's `loopin.go`).
pub fn probe_hash(hash: SwapHash) -> SwapHash {
    let mut h = sha256::Hash::hash(&hash.0).to_byte_array();
    h[0] ^= 1;
    SwapHash(h)
}

fn conf_target(req: Option<u32>) -> Result<u32, EngineError> {
    match req {
        None | Some(0) => Ok(DEFAULT_HTLC_CONF_TARGET),
        Some(t) if t < MIN_HTLC_CONF_TARGET => Err(EngineError::LoopInArgument(format!(
            "htlc_conf_target {t} is below {MIN_HTLC_CONF_TARGET}; ask for 2 or more (0 for \
             the default 6)"
        ))),
        Some(t) => Ok(t),
    }
}

impl SwapEngine {
    /// The server's Loop In terms.
    pub async fn loop_in_terms(&self) -> Result<LoopInTerms, EngineError> {
        self.inner
            .provider
            .loop_in_terms()
            .await
            .map_err(EngineError::provider("LoopInTerms"))
    }

    /// Asks the server to probe the route to the node for `amount` (loopd's `Probe`): the
    /// server's error when it finds none.
    pub async fn probe(
        &self,
        amount: Sat,
        last_hop: Option<[u8; 33]>,
        hints: &RouteHints,
    ) -> Result<(), EngineError> {
        let route = self.loop_in_route(amount, last_hop, hints).await?;
        self.inner
            .provider
            .probe(&route)
            .await
            .map_err(EngineError::provider("Probe"))
    }

    /// Where the server should pay `amount`: this node, through `last_hop`, with the hints
    /// `hints` asks for.
    async fn loop_in_route(
        &self,
        amount: Sat,
        last_hop: Option<[u8; 33]>,
        hints: &RouteHints,
    ) -> Result<LoopInRoute, EngineError> {
        let info = self
            .inner
            .node
            .get_info()
            .await
            .map_err(EngineError::node("GetInfo"))?;
        Ok(LoopInRoute {
            amount,
            node: info.pubkey.0,
            last_hop,
            route_hints: self.route_hints(amount, last_hop, hints).await?,
        })
    }

    /// Probe + quote + the funding estimate, and the limits a swap would get.
    pub async fn loop_in_quote(
        &self,
        amount: Sat,
        last_hop: Option<[u8; 33]>,
        hints: &RouteHints,
        htlc_conf_target: Option<u32>,
    ) -> Result<LoopInQuoteInfo, EngineError> {
        let inner = &self.inner;
        let target = conf_target(htlc_conf_target)?;
        let terms = self.loop_in_terms().await?;
        if amount < terms.min_amount || amount > terms.max_amount {
            return Err(EngineError::AmountOutsideTerms {
                amount,
                min: terms.min_amount,
                max: terms.max_amount,
            });
        }
        let route = self.loop_in_route(amount, last_hop, hints).await?;
        // Best effort, as Loop: a failed probe never stops the quote.
        if let Err(e) = inner.provider.probe(&route).await {
            tracing::warn!(error = %e, "the server's probe failed; quoting anyway");
        }
        let quote = inner
            .provider
            .loop_in_quote(&route)
            .await
            .map_err(EngineError::provider("LoopInQuote"))?;
        // As Loop: the funding to a dummy P2TR output of the amount.
        let dummy = bitcoin::TxOut {
            value: bitcoin::Amount::from_sat(amount.0),
            script_pubkey: bitcoin::ScriptBuf::from_bytes([vec![0x51, 0x20], vec![0; 32]].concat()),
        };
        let (funding_rate, funding_fee_estimate) =
            super::loop_in_driver::funding_estimate(&*inner.node, dummy, target)
                .await
                .map_err(EngineError::node("EstimateFee"))?;
        Ok(LoopInQuoteInfo {
            terms,
            quote,
            funding_fee_estimate,
            funding_rate,
            limits: LoopInLimits {
                max_swap_fee: quote.swap_fee,
                max_miner_fee: Sat(funding_fee_estimate
                    .0
                    .saturating_mul(DEFAULT_MINER_FEE_MULTIPLIER)),
            },
            route_hints: route.route_hints,
        })
    }

    /// The hints `hints` asks for: the caller's, checked, or the node's private channels
    /// that can take the payment (an error when there is none, since the payment could not
    /// find the node).
    async fn route_hints(
        &self,
        amount: Sat,
        last_hop: Option<[u8; 33]>,
        hints: &RouteHints,
    ) -> Result<Vec<RouteHint>, EngineError> {
        match hints {
            RouteHints::None => Ok(Vec::new()),
            RouteHints::Given(given) => {
                if given.iter().any(|r| r.hops.is_empty()) {
                    return Err(EngineError::LoopInArgument(
                        "route_hints: a route hint without hops; give each at least one hop"
                            .to_owned(),
                    ));
                }
                if given.len() > MAX_HOP_HINTS {
                    return Err(EngineError::LoopInArgument(format!(
                        "route_hints: {} hints, at most {MAX_HOP_HINTS}; drop some",
                        given.len()
                    )));
                }
                Ok(given.clone())
            }
            RouteHints::Private => {
                let chosen = self.private_hints(amount, last_hop).await?;
                if chosen.is_empty() {
                    let through = last_hop
                        .map(|k| format!(" with peer {}", hex::encode(k)))
                        .unwrap_or_default();
                    return Err(EngineError::LoopInArgument(format!(
                        "private: no private, active channel{through} to a public peer can be \
                         hinted (a channel opened moments ago needs its peer's policy first); \
                         leave private out to be paid over public channels"
                    )));
                }
                Ok(chosen)
            }
        }
    }

    /// The node's private, active channels (to `last_hop` when given) as hint candidates,
    /// and the selection among them.
    async fn private_hints(
        &self,
        amount: Sat,
        last_hop: Option<[u8; 33]>,
    ) -> Result<Vec<RouteHint>, EngineError> {
        let node = &self.inner.node;
        let channels = node
            .list_channels()
            .await
            .map_err(EngineError::node("ListChannels"))?;
        let mut candidates = Vec::new();
        for c in channels
            .iter()
            .filter(|c| c.private && c.active && last_hop.is_none_or(|h| c.peer.0 == h))
        {
            let peer_public = !node
                .announced_channels(c.peer)
                .await
                .map_err(EngineError::node("GetNodeInfo"))?
                .is_empty();
            // lnd's graph learns a new private channel's policies a little after the
            // channel is active; until then the channel cannot be hinted (lnd and Loop skip
            // it too).
            let policy = if peer_public {
                match node.channel_edge(c.chan_id).await {
                    Ok(edge) => edge.policy_of(c.peer),
                    Err(e) if e.kind == NodeErrorKind::NotFound => None,
                    Err(e) => return Err(EngineError::node("GetChanInfo")(e)),
                }
            } else {
                None
            };
            candidates.push(HintCandidate {
                chan_id: c.chan_id,
                peer: c.peer,
                remote_balance: c.remote_balance,
                peer_public,
                policy,
            });
        }
        Ok(select_hop_hints(amount, &candidates, MAX_HOP_HINTS))
    }

    /// Creates a Loop In (see the module documentation); the contract is stored before
    /// anything is funded and the swap is then driven in the background.
    pub async fn loop_in(&self, req: LoopInRequest) -> Result<CreatedLoopIn, EngineError> {
        self.create_loop_in(req, None).await
    }

    /// Creates a Loop In like [`SwapEngine::loop_in`], storing the ledger entry `admit`
    /// returns in the same transaction as the contract: the swap never exists, and nothing is
    /// funded, without its budget reservation. A refusal cancels the swap invoice.
    pub async fn loop_in_admitted(
        &self,
        req: LoopInRequest,
        admit: super::LoopInAdmission,
    ) -> Result<CreatedLoopIn, EngineError> {
        self.create_loop_in(req, Some(admit)).await
    }

    async fn create_loop_in(
        &self,
        req: LoopInRequest,
        admit: Option<super::LoopInAdmission>,
    ) -> Result<CreatedLoopIn, EngineError> {
        let inner = &self.inner;
        let config = &inner.config;
        if inner.cancel.is_cancelled() {
            return Err(EngineError::ShutDown);
        }
        if req.amount == Sat::ZERO {
            return Err(EngineError::LoopInArgument(
                "amount is 0 sat; ask for an amount within the server's terms".to_owned(),
            ));
        }
        let target = conf_target(req.htlc_conf_target)?;
        let height = self.tip_height().await?;
        // A fresh quote, as Loop: the one the user saw earlier is not reused.
        let q = self
            .loop_in_quote(req.amount, req.last_hop, &req.route_hints, Some(target))
            .await?;
        let limits = LoopInLimits {
            max_swap_fee: req.max_swap_fee.unwrap_or(q.limits.max_swap_fee),
            max_miner_fee: req.max_miner_fee.unwrap_or(q.limits.max_miner_fee),
        };
        check_loop_in_quote(req.amount, &q.terms, &q.quote, limits.max_swap_fee)?;
        let invoice_amount = req.amount - q.quote.swap_fee;

        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let preimage = Preimage::from_bytes(secret);
        let swap_hash = preimage.swap_hash();
        let internal_key = loop {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            if let Some(k) = InternalKey::from_bytes(bytes) {
                break k;
            }
        };
        let key = inner
            .node
            .derive_next_key(SWAP_KEY_FAMILY as i32)
            .await
            .map_err(EngineError::node("DeriveNextKey"))?;
        let sender_key = key.pubkey.serialize();
        let swap_invoice = inner
            .node
            .add_invoice(&InvoiceRequest {
                preimage: crate::domain::Preimage(*preimage.expose_secret()),
                amount: invoice_amount.to_msat(),
                memo: "swap".to_owned(),
                expiry: Duration::from_secs(SWAP_INVOICE_EXPIRY_SECS),
                route_hints: q.route_hints.clone(),
                private: true,
            })
            .await
            .map_err(EngineError::node("AddInvoice"))?
            .payment_request;
        let probe = probe_hash(swap_hash);
        let probe_invoice = inner
            .node
            .add_hold_invoice(&HoldInvoiceRequest {
                hash: probe,
                amount: Msat(invoice_amount.0.saturating_mul(1000)),
                memo: "loop in probe".to_owned(),
                expiry: Duration::from_secs(3_600),
                cltv_expiry: 80,
                route_hints: q.route_hints.clone(),
                private: true,
            })
            .await
            .map_err(EngineError::node("AddHoldInvoice"))?
            .payment_request;
        // Watch the probe before asking the server: it pays it while handling the request.
        let mut probe_states = inner
            .node
            .subscribe_single_invoice(probe)
            .await
            .map_err(EngineError::node("SubscribeSingleInvoice"))?;
        let (probe_tx, probe_rx) = tokio::sync::watch::channel(None::<InvoiceState>);
        let node = Arc::clone(&inner.node);
        let probe_task = tokio::spawn(async move {
            while let Some(Ok(u)) = probe_states.next().await {
                match u.state {
                    InvoiceState::Open => {}
                    InvoiceState::Accepted => {
                        // Proof enough that the amount reaches us; the server's payment then
                        // fails at the destination.
                        let _ = probe_tx.send(Some(InvoiceState::Accepted));
                        if let Err(e) = node.cancel_invoice(probe).await {
                            tracing::warn!(error = %e, "cancelling the probe invoice failed");
                        }
                        return;
                    }
                    other => {
                        let _ = probe_tx.send(Some(other));
                        return;
                    }
                }
            }
        });
        let asked = tokio::time::timeout(
            config.new_loop_in_patience,
            inner.provider.new_loop_in(&NewLoopInRequest {
                sender_key,
                sender_internal_key: internal_key.public_key(),
                swap_hash,
                amount: req.amount,
                swap_invoice: swap_invoice.clone(),
                probe_invoice,
                last_hop: req.last_hop,
                initiator: req.initiator.clone(),
            }),
        )
        .await;
        probe_task.abort();
        // The probe has done its job (or failed): never leave a payment held on it.
        if let Err(e) = inner.node.cancel_invoice(probe).await {
            tracing::warn!(swap = %swap_hash, error = %e, "cancelling the probe invoice failed");
        }
        let resp = match asked {
            Ok(r) => r.map_err(EngineError::provider("NewLoopInSwap"))?,
            Err(_) => {
                // A late answer could still lead the server to pay: refuse that too.
                let _ = inner.node.cancel_invoice(swap_hash).await;
                return Err(EngineError::LoopIn(format!(
                    "the server did not answer NewLoopInSwap within {} s; nothing was stored \
                     or funded",
                    config.new_loop_in_patience.as_secs()
                )));
            }
        };
        let probed = *probe_rx.borrow();
        if probed != Some(InvoiceState::Accepted) {
            let _ = inner.node.cancel_invoice(swap_hash).await;
            return Err(EngineError::LoopIn(format!(
                "probe error: the server answered before its probe payment reached us (probe \
                 invoice {probed:?}); nothing was stored or funded"
            )));
        }
        let validated = match validate_loop_in(
            &resp,
            &LoopInExpectations {
                network: config.network,
                swap_hash,
                amount: req.amount,
                terms: q.terms,
                quote: q.quote,
                max_swap_fee: limits.max_swap_fee,
                swap_invoice: swap_invoice.clone(),
                sender_key,
                sender_internal_key: internal_key.public_key(),
                height,
            },
        ) {
            Ok(v) => v,
            Err(e) => {
                // The server cannot pay for a swap we refused.
                let _ = inner.node.cancel_invoice(swap_hash).await;
                return Err(e.into());
            }
        };
        if !resp.server_message.is_empty() {
            tracing::info!(swap = %swap_hash, message = %resp.server_message, "swap server says");
        }
        let contract = LoopInContract::new(LoopInContractTerms {
            swap_hash,
            amount: req.amount,
            swap_fee: validated.swap_fee,
            expiry: validated.expiry,
            initiation_height: height,
            htlc_conf_target: target,
            sweep_finality_confirmations: config.sweep_finality_confirmations,
            limits,
            swap_invoice,
            last_hop: req.last_hop,
            label: req.label.clone(),
            initiator: req.initiator.clone(),
            protocol_version: 11,
            sender_key_locator: KeyLocator {
                family: u32::try_from(key.locator.family).unwrap_or(SWAP_KEY_FAMILY),
                index: u32::try_from(key.locator.index).unwrap_or(0),
            },
            sender_key,
            receiver_key: validated.receiver_key,
            sender_internal_key: internal_key.public_key(),
            receiver_internal_key: validated.receiver_internal_key,
            htlc_pk_script: validated.htlc.pk_script(),
        })?;
        let now_unix = config.now_unix();
        let stored = StoredLoopIn {
            record: LoopInRecord {
                contract,
                network: config.network,
                progress: LoopInProgress::new(),
                costs: LoopInCosts::default(),
                created_at_unix: now_unix,
                updated_at_unix: now_unix,
                state_since_unix: now_unix,
            },
            preimage,
            internal_key,
        };
        let reservation = match admit
            .map(|admit| admit(&stored.record.contract))
            .transpose()
        {
            Ok(r) => r,
            Err(e) => {
                // The server cannot pay for a swap we refused.
                let _ = inner.node.cancel_invoice(swap_hash).await;
                return Err(e.into());
            }
        };
        inner
            .store
            .create_loop_in_reserved(&stored, reservation.as_ref(), now_unix)
            .await?;
        tracing::info!(swap = %swap_hash, amount = %req.amount, expiry = %validated.expiry,
            fee = %validated.swap_fee, label = %req.label, "loop in created");
        let _ = inner.loop_in_updates.send(super::LoopInUpdate {
            hash: swap_hash,
            state: crate::swap::loop_in::LoopInState::Initiated,
            costs: LoopInCosts::default(),
            amount: req.amount,
            label: req.label.clone(),
        });
        let created = CreatedLoopIn {
            hash: swap_hash,
            htlc_address: validated.htlc.address().to_string(),
            expiry: validated.expiry,
            server_message: resp.server_message,
        };
        self.spawn_loop_in(stored);
        Ok(created)
    }

    /// Resumes every unfinished Loop In; returns how many run.
    pub(super) async fn resume_loop_ins(&self) -> Result<usize, EngineError> {
        let (swaps, bad) = self.inner.store.load_unfinished_loop_ins().await?;
        for (hash, why) in bad {
            tracing::error!(swap = %hash, error = %why,
                "a stored loop in does not decode and is quarantined");
            self.quarantine(
                hash,
                Direction::In,
                format!("stored loop in does not decode: {why}"),
            );
        }
        let mut n = 0;
        for swap in swaps {
            if self.spawn_loop_in(swap) {
                n += 1;
            }
        }
        Ok(n)
    }

    fn spawn_loop_in(&self, swap: StoredLoopIn) -> bool {
        let hash = swap.record.contract.terms().swap_hash;
        let mut drivers = self.lock_drivers();
        if drivers.get(&hash).is_some_and(|h| !h.is_finished()) {
            return true;
        }
        match LoopInDriver::new(self.driver_deps(), swap) {
            Ok(driver) => {
                drivers.insert(hash, tokio::spawn(driver.run()));
                true
            }
            Err(e) => {
                drop(drivers);
                tracing::error!(swap = %hash, error = %e,
                    "cannot drive the stored loop in; quarantined, every other swap is driven");
                self.quarantine(
                    hash.to_string(),
                    Direction::In,
                    format!("cannot be driven: {e}"),
                );
                false
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_hash_flips_the_lowest_bit_of_sha256_of_the_swap_hash() {
        let h = SwapHash([0; 32]);
        let p = probe_hash(h);
        let plain = sha256::Hash::hash(&[0; 32]).to_byte_array();
        assert_eq!(p.0[0], plain[0] ^ 1);
        assert_eq!(p.0[1..], plain[1..]);
    }

    #[test]
    fn conf_targets_default_to_six_and_refuse_one() {
        assert_eq!(conf_target(None).unwrap(), 6);
        assert_eq!(conf_target(Some(0)).unwrap(), 6);
        assert_eq!(conf_target(Some(2)).unwrap(), 2);
        let err = conf_target(Some(1)).unwrap_err().to_string();
        assert!(err.contains("htlc_conf_target 1"), "{err}");
    }
}
