//! The Loop In methods of `looprpc.SwapServer`: terms, quote, probe, `NewLoopInSwap` (the
//! request checks, the probe of the client's probe invoice, the expiry and the server's two
//! keys), `PushKey`; the hand-off to each swap's engine (`engine_in`).

use std::sync::Arc;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use futures::StreamExt;

use super::behaviour_in::{
    ClaimMode, DECOY_VALUE, PROBE_PART_WAIT, ProbeMode, PushKeyMode, SLOW_ANSWER,
};
use super::engine_in::{PAYMENT_PARTS, PAYMENT_TIMEOUT, routing_fee_limit};
use super::error::LoopServerError;
use super::service::{Service, swap_hash};
use super::swap_in::{InSwapEntry, NewInSwap};
use super::terms::{InQuote, check_protocol};
use super::{engine_in, locked};
use crate::chain::htlc::{HtlcKeys, HtlcV3};
use crate::domain::{NodeId, Sat, SwapHash};
use crate::lnd::types::{PaymentFailure, PaymentRequest, PaymentStatus};
use crate::provider::wire;

/// How long `NewLoopInSwap` waits for the probe's outcome: under Loop's 90 s call limit.
const PROBE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// The hash of a swap's probe invoice: SHA-256 of the swap hash with the lowest bit of its
/// first byte flipped, so nobody knows its preimage (Loop's `loopin.go`).
pub fn probe_hash(hash: SwapHash) -> SwapHash {
    let mut h = sha256::Hash::hash(&hash.0).to_byte_array();
    h[0] ^= 1;
    SwapHash(h)
}

fn key(field: &'static str, bytes: &[u8]) -> Result<PublicKey, LoopServerError> {
    PublicKey::from_slice(bytes).map_err(|_| LoopServerError::InvalidField {
        field,
        problem: format!(
            "{} bytes that are not a compressed secp256k1 key; send 33 bytes",
            bytes.len()
        ),
    })
}

/// Route hints a client sends with a quote or probe: every hop names a node key.
fn route_hints(hints: &[wire::RouteHint]) -> Result<(), LoopServerError> {
    for (i, r) in hints.iter().enumerate() {
        if r.hop_hints.is_empty() {
            return Err(invalid(
                "route_hints",
                format!("hint {i} has no hops; send at least one"),
            ));
        }
        for h in &r.hop_hints {
            let bytes = hex::decode(&h.node_id).unwrap_or_default();
            if PublicKey::from_slice(&bytes).is_err() {
                return Err(invalid(
                    "route_hints",
                    format!(
                        "hint {i}: node_id {:?} is not a hex node key; send 66 hex characters",
                        h.node_id
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn invalid(field: &'static str, problem: String) -> LoopServerError {
    LoopServerError::InvalidField { field, problem }
}

impl Service {
    pub(super) fn loop_in_terms(&self) -> wire::ServerLoopInTerms {
        let t = &self.inner.config.terms;
        wire::ServerLoopInTerms {
            min_swap_amount: t.loop_in_min_amount.0,
            max_swap_amount: t.loop_in_max_amount.0,
        }
    }

    pub(super) fn loop_in_quote(
        &self,
        r: &wire::ServerLoopInQuoteRequest,
    ) -> Result<wire::ServerLoopInQuoteResponse, LoopServerError> {
        check_protocol(r.protocol_version)?;
        if r.num_static_address_deposits != 0 || r.fast {
            return Err(invalid(
                "num_static_address_deposits",
                "static-address Loop In is not offered; quote a wallet-funded Loop In (0 \
                 deposits, fast false)"
                    .into(),
            ));
        }
        if !r.pubkey.is_empty() {
            key("pubkey", &r.pubkey)?;
        }
        route_hints(&r.route_hints)?;
        let quote = self.inner.config.terms.quote_in(Sat(r.amt))?;
        let (behaviour, earlier) = locked(&self.inner.book).quote_in(quote.amount);
        let fee = behaviour.quote.quoted_fee(&quote, earlier);
        Ok(wire::ServerLoopInQuoteResponse {
            swap_fee: i64::try_from(fee.0).unwrap_or(i64::MAX),
            cltv_delta: i32::try_from(quote.cltv_delta).unwrap_or(i32::MAX),
            ..Default::default()
        })
    }

    /// `Probe`: the request is checked; the server sends nothing here. What proves the route
    /// is the payment of the client's probe invoice inside `NewLoopInSwap` (the port pays
    /// invoices, not bare node keys), and the client ignores `Probe`'s outcome anyway.
    pub(super) fn loop_in_probe(
        &self,
        r: &wire::ServerProbeRequest,
    ) -> Result<(), LoopServerError> {
        check_protocol(r.protocol_version)?;
        self.inner.config.terms.check_in_amount(Sat(r.amt))?;
        key("target", &r.target)?;
        if !r.last_hop.is_empty() {
            key("last_hop", &r.last_hop)?;
        }
        route_hints(&r.route_hints)?;
        Ok(())
    }

    pub(super) async fn register_in(
        &self,
        r: wire::ServerLoopInRequest,
    ) -> Result<wire::ServerLoopInResponse, LoopServerError> {
        let inner = &self.inner;
        let terms = &inner.config.terms;
        check_protocol(r.protocol_version)?;
        let quote = terms.quote_in(Sat(r.amt))?;
        let hash = swap_hash(&r.swap_hash)?;
        let sender = key("sender_key", &r.sender_key)?;
        if r.sender_internal_pubkey.is_empty() {
            return Err(invalid(
                "sender_internal_pubkey",
                "missing; protocol 11 needs the client's 33-byte internal key".into(),
            ));
        }
        let sender_internal = key("sender_internal_pubkey", &r.sender_internal_pubkey)?;
        let last_hop = if r.last_hop.is_empty() {
            None
        } else {
            Some(NodeId(key("last_hop", &r.last_hop)?.serialize()))
        };
        if inner.hash_taken(hash) {
            return Err(LoopServerError::SwapExists(hash));
        }
        self.check_invoice("swap_invoice", &r.swap_invoice, hash, &quote)
            .await?;
        self.check_invoice("probe_invoice", &r.probe_invoice, probe_hash(hash), &quote)
            .await?;
        let behaviour = locked(&inner.book).take_in(quote.amount);

        match behaviour.probe {
            ProbeMode::Honest | ProbeMode::ErrorAfterProbe => {
                self.probe_client(&r.probe_invoice, &quote, last_hop)
                    .await?;
            }
            ProbeMode::SlowAnswer => {
                self.probe_client(&r.probe_invoice, &quote, last_hop)
                    .await?;
                tokio::time::sleep(SLOW_ANSWER).await;
            }
            ProbeMode::AfterReply => {
                let service = self.clone();
                let invoice = r.probe_invoice.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    if let Err(e) = service.probe_client(&invoice, &quote, last_hop).await {
                        tracing::info!(error = %e, "loop server: late probe");
                    }
                });
            }
            ProbeMode::SwapInvoiceAsProbe => {
                self.pay_swap_invoice_as_probe(&r.swap_invoice, &quote)
                    .await;
            }
            ProbeMode::TooLittle => {
                let node = Arc::clone(&inner.node);
                let invoice = r.probe_invoice.clone();
                let part = ProbeMode::too_little(quote.invoice_amount());
                let fee_limit = routing_fee_limit(quote.swap_fee);
                tokio::spawn(async move {
                    let outcome =
                        engine_in::send_part(node.as_ref(), &invoice, part, fee_limit).await;
                    tracing::info!(?outcome, "loop server: a part of the probe (switch)");
                });
                tokio::time::sleep(PROBE_PART_WAIT).await;
            }
            ProbeMode::Skip => {}
        }
        if behaviour.probe == ProbeMode::ErrorAfterProbe {
            return Err(LoopServerError::Refused(
                "the server fails the swap after probing (behaviour switch)",
            ));
        }

        let height = inner.node.block_height().await?;
        let expiry = behaviour.expiry.expiry(height.0, quote.cltv_delta);
        let receiver_secret = inner.random_key();
        let receiver_internal_secret = inner.random_key();
        let secp = Secp256k1::signing_only();
        let receiver = PublicKey::from_secret_key(&secp, &receiver_secret);
        let receiver_internal = PublicKey::from_secret_key(&secp, &receiver_internal_secret);
        let htlc = HtlcV3::with_internal_keys(
            HtlcKeys {
                sender,
                receiver,
                sender_internal,
                receiver_internal,
            },
            hash,
            expiry,
            terms.network,
        )?;
        if behaviour.decoy {
            use super::funder::HtlcFunder as _;
            let decoy = inner
                .node
                .as_ref()
                .fund(&[(htlc.address(), DECOY_VALUE)])
                .await?;
            tracing::info!(swap = %hash, ?decoy, "loop server: paid a decoy to the loop in HTLC address (switch)");
        }
        let entry = Arc::new(InSwapEntry::new(NewInSwap {
            hash,
            amount: quote.amount,
            invoice: r.swap_invoice,
            invoice_amount: quote.invoice_amount(),
            swap_fee: quote.swap_fee,
            expiry,
            registered_at: height,
            htlc,
            receiver_secret,
            receiver_internal_secret,
            sender_internal,
            last_hop,
            behaviour,
            now: inner.now(),
        }));
        {
            let mut swaps = locked(&inner.in_swaps);
            if swaps.contains_key(&hash) {
                return Err(LoopServerError::SwapExists(hash));
            }
            swaps.insert(hash, entry.clone());
        }
        tokio::spawn(engine_in::run(inner.clone(), entry, inner.stop.clone()));
        tracing::info!(swap = %hash, amount = %quote.amount, expiry, "loop server: loop in registered");
        Ok(wire::ServerLoopInResponse {
            receiver_key: behaviour.receiver_key.encode(&receiver),
            expiry: i32::try_from(expiry).unwrap_or(i32::MAX),
            server_message: "reference loop server".into(),
            receiver_internal_pubkey: behaviour.receiver_internal_key.encode(&receiver_internal),
        })
    }

    /// The client's invoice must decode on this node, carry `hash`, a payment address, ask
    /// exactly `amt - swap_fee`, and pay another node than this one.
    async fn check_invoice(
        &self,
        field: &'static str,
        invoice: &str,
        hash: SwapHash,
        quote: &InQuote,
    ) -> Result<(), LoopServerError> {
        if invoice.is_empty() {
            return Err(invalid(field, "missing; send the BOLT 11 invoice".into()));
        }
        let decoded = self.inner.node.decode_invoice(invoice).await.map_err(|e| {
            invalid(
                field,
                format!(
                    "does not decode on the server's {} node: {e}",
                    self.inner.config.terms.network
                ),
            )
        })?;
        if decoded.payment_hash != hash {
            return Err(invalid(
                field,
                format!("pays hash {} but must pay {hash}", decoded.payment_hash),
            ));
        }
        let want = quote.invoice_amount();
        if decoded.amount != want.to_msat() {
            return Err(invalid(
                field,
                format!(
                    "asks {} msat but must ask amt - swap_fee = {} - {} = {want}",
                    decoded.amount.0, quote.amount, quote.swap_fee
                ),
            ));
        }
        if decoded.payment_addr.is_none() {
            return Err(invalid(
                field,
                "has no payment address (payment secret)".into(),
            ));
        }
        let ours = self.inner.node.get_info().await?.pubkey;
        if decoded.destination == ours {
            return Err(invalid(
                field,
                "pays the server's own node; it must pay the client's node".into(),
            ));
        }
        Ok(())
    }

    /// Pays the client's probe invoice and waits for the client to cancel it: the payment
    /// failing at the destination with "incorrect payment details" proves the amount reaches
    /// the client. Any other outcome is `Unreachable` (FAILED_PRECONDITION, which Loop's
    /// autoloop reads as "the server cannot reach the client").
    async fn probe_client(
        &self,
        invoice: &str,
        quote: &InQuote,
        last_hop: Option<NodeId>,
    ) -> Result<(), LoopServerError> {
        let node = &self.inner.node;
        let amount = quote.invoice_amount();
        let unreachable = |reason: String| LoopServerError::Unreachable { amount, reason };
        let mut updates = node
            .pay(&PaymentRequest {
                invoice: invoice.to_owned(),
                fee_limit: routing_fee_limit(quote.swap_fee),
                outgoing_chan_ids: Vec::new(),
                max_parts: PAYMENT_PARTS,
                timeout: PAYMENT_TIMEOUT.min(PROBE_PATIENCE),
                cltv_limit: None,
                last_hop,
            })
            .await?;
        let outcome = tokio::time::timeout(PROBE_PATIENCE, async {
            while let Some(u) = updates.next().await {
                match u?.status {
                    PaymentStatus::Failed(PaymentFailure::IncorrectPaymentDetails) => {
                        return Ok(());
                    }
                    PaymentStatus::Failed(reason) => {
                        return Err(unreachable(format!(
                            "the probe payment failed ({reason:?})"
                        )));
                    }
                    PaymentStatus::Succeeded { .. } => {
                        return Err(unreachable(
                            "the probe invoice settled, so it was not the client's hold invoice"
                                .into(),
                        ));
                    }
                    PaymentStatus::Initiated | PaymentStatus::InFlight => {}
                }
            }
            Err(unreachable(
                "the payment stream ended without an outcome".into(),
            ))
        })
        .await;
        match outcome {
            Ok(r) => r,
            Err(_) => Err(unreachable(format!(
                "no outcome within {} s",
                PROBE_PATIENCE.as_secs()
            ))),
        }
    }

    /// The probe switch that pays the swap invoice instead: waits (as for a probe) until the
    /// payment has an outcome; the outcome only goes to the log.
    async fn pay_swap_invoice_as_probe(&self, invoice: &str, quote: &InQuote) {
        let paid = async {
            let mut updates = self
                .inner
                .node
                .pay(&PaymentRequest {
                    invoice: invoice.to_owned(),
                    fee_limit: routing_fee_limit(quote.swap_fee),
                    outgoing_chan_ids: Vec::new(),
                    max_parts: PAYMENT_PARTS,
                    timeout: PAYMENT_TIMEOUT.min(PROBE_PATIENCE),
                    cltv_limit: None,
                    last_hop: None,
                })
                .await?;
            while let Some(u) = updates.next().await {
                let status = u?.status;
                if status.is_final() {
                    return Ok::<_, LoopServerError>(status);
                }
            }
            Ok(PaymentStatus::InFlight)
        };
        match tokio::time::timeout(PROBE_PATIENCE, paid).await {
            Ok(Ok(status)) => {
                tracing::info!(
                    ?status,
                    "loop server: paid the swap invoice as a probe (switch)"
                );
            }
            Ok(Err(e)) => tracing::info!(error = %e, "loop server: swap invoice as a probe"),
            Err(_) => tracing::info!("loop server: swap invoice as a probe: no outcome in time"),
        }
    }

    pub(super) fn push_key(&self, r: &wire::ServerPushKeyReq) -> Result<(), LoopServerError> {
        check_protocol(r.protocol_version)?;
        let swap = self.inner.in_swap(swap_hash(&r.swap_hash)?)?;
        if swap.behaviour.push_key == PushKeyMode::Error {
            return Err(LoopServerError::Refused(
                "the server refuses the internal key (behaviour switch)",
            ));
        }
        // The client sees its invoice settle as soon as the payment arrives, often before
        // the server's lnd reports the payment's success: a key pushed while the payment is
        // in flight is welcome (an honest server claims by the key path only once it has the
        // preimage, that is once it has paid).
        let early_is_welcome = swap.behaviour.claim == ClaimMode::WithoutPaying;
        if swap.with_live(|l| l.preimage.is_none() && !l.payment_sent) && !early_is_welcome {
            return Err(LoopServerError::NotPaidYet(swap.hash));
        }
        let secret = SecretKey::from_slice(&r.internal_privkey)
            .ok()
            .filter(|s| swap.is_client_internal(s))
            .ok_or_else(|| {
                invalid(
                    "internal_privkey",
                    format!(
                        "{} bytes that are not the secret of this swap's sender_internal_pubkey",
                        r.internal_privkey.len()
                    ),
                )
            })?;
        swap.with_live(|l| l.client_internal = Some(secret));
        swap.wake.notify_one();
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_hash_flips_one_bit_of_the_hashed_swap_hash() {
        let h = SwapHash([7; 32]);
        let p = probe_hash(h);
        let plain = sha256::Hash::hash(&h.0).to_byte_array();
        assert_eq!(p.0[0], plain[0] ^ 1);
        assert_eq!(p.0[1..], plain[1..]);
        assert_ne!(p, h);
    }
}
