//! A node's invoice book, as lnd's invoice registry keeps it: plain invoices that settle on
//! receipt, hold invoices that wait for `settle_invoice`/`cancel_invoice`, the payee's checks
//! on arriving HTLCs (INCORRECT_PAYMENT_DETAILS otherwise), and the cancellation of accepted
//! hold invoices [`HOLD_EXPIRY_DELTA`] blocks before their HTLCs expire.

use std::str::FromStr;
use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use lightning_invoice::{Bolt11Invoice, Currency, InvoiceBuilder, PaymentSecret};
use rand::RngCore;

use super::payments::MPP_TIMEOUT;
use super::{NodeIdx, World, WorldError, WorldEvent};
use crate::domain::{ChanId, HopHint, Msat, NodeId, Preimage, RouteHint, SwapHash};
use crate::lnd::types::{DecodedInvoice, HtlcFailure, InvoiceState, InvoiceUpdate};

/// lnd's `invoices.holdexpirydelta`: accepted hold invoices are canceled this many blocks
/// before their HTLCs expire.
pub const HOLD_EXPIRY_DELTA: u32 = 12;

/// An invoice in a node's invoice book.
#[derive(Debug, Clone)]
pub struct Invoice {
    /// The payment hash.
    pub hash: SwapHash,
    /// The preimage, once known (at creation for plain invoices, at settle for hold ones).
    pub(crate) preimage: Option<Preimage>,
    /// The amount asked, msat (0 accepts any).
    pub amount_msat: u64,
    /// Where it stands.
    pub state: InvoiceState,
    /// What the accepted or settled HTLCs pay, msat.
    pub amount_paid_msat: u64,
    /// Whether settling waits for `settle_invoice`.
    pub hold: bool,
    /// The BOLT 11 string.
    pub payment_request: String,
    /// The add index.
    pub add_index: u64,
    /// The final hop's minimum CLTV delta.
    pub min_final_cltv: u32,
    /// The height the accepted HTLCs expire at.
    pub htlc_expiry: Option<u32>,
    /// The node whose payment is held.
    pub payer: Option<NodeIdx>,
    /// When the invoice stops being payable, Unix seconds.
    pub expires_unix: u64,
    /// Since when (Unix seconds) the payee holds the parts of an incomplete multi-path set.
    pub partial_since: Option<u64>,
}

/// Decodes a BOLT 11 invoice into the port's form.
pub fn decode(invoice: &str) -> Result<(Bolt11Invoice, DecodedInvoice), WorldError> {
    let parsed = Bolt11Invoice::from_str(invoice)
        .map_err(|e| WorldError::InvalidArgument(format!("invalid payment request: {e}")))?;
    let destination = NodeId(parsed.get_payee_pub_key().serialize());
    let description = match parsed.description() {
        lightning_invoice::Bolt11InvoiceDescriptionRef::Direct(d) => d.to_string(),
        lightning_invoice::Bolt11InvoiceDescriptionRef::Hash(_) => String::new(),
    };
    let decoded = DecodedInvoice {
        destination,
        payment_hash: SwapHash(*parsed.payment_hash().as_byte_array()),
        amount: Msat(parsed.amount_milli_satoshis().unwrap_or(0)),
        timestamp_unix: parsed.duration_since_epoch().as_secs(),
        expiry: parsed.expiry_time(),
        min_final_cltv_delta: parsed.min_final_cltv_expiry_delta(),
        description,
        payment_addr: Some(parsed.payment_secret().0),
        route_hints: parsed
            .route_hints()
            .iter()
            .map(|r| RouteHint {
                hops: r
                    .0
                    .iter()
                    .map(|h| HopHint {
                        node: NodeId(h.src_node_id.serialize()),
                        chan_id: ChanId(h.short_channel_id),
                        fee_base_msat: h.fees.base_msat,
                        fee_ppm: h.fees.proportional_millionths,
                        cltv_delta: h.cltv_expiry_delta,
                    })
                    .collect(),
            })
            .collect(),
    };
    Ok((parsed, decoded))
}

/// A route hint in the form the invoice encoder takes.
fn ldk_route_hint(hint: &RouteHint) -> Result<lightning_invoice::RouteHint, WorldError> {
    let hops = hint
        .hops
        .iter()
        .map(|h| {
            Ok(lightning_invoice::RouteHintHop {
                src_node_id: bitcoin::secp256k1::PublicKey::from_slice(&h.node.0).map_err(|e| {
                    WorldError::InvalidArgument(format!("unable to decode node pubkey: {e}"))
                })?,
                short_channel_id: h.chan_id.0,
                fees: lightning_invoice::RoutingFees {
                    base_msat: h.fee_base_msat,
                    proportional_millionths: h.fee_ppm,
                },
                cltv_expiry_delta: h.cltv_delta,
                htlc_minimum_msat: None,
                htlc_maximum_msat: None,
            })
        })
        .collect::<Result<Vec<_>, WorldError>>()?;
    Ok(lightning_invoice::RouteHint(hops))
}

impl World {
    /// Adds an invoice to `node`'s book and encodes it, signed by the node key. A plain
    /// invoice (`preimage` given) settles on receipt; a hold invoice waits for settle/cancel.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_invoice_inner(
        &mut self,
        node: NodeIdx,
        hash: SwapHash,
        preimage: Option<Preimage>,
        amount: Msat,
        memo: &str,
        expiry: Duration,
        min_final_cltv: u64,
        (given_hints, private): (&[RouteHint], bool),
    ) -> Result<Invoice, WorldError> {
        let now = self.now_unix();
        let hints = self.invoice_hints(node, amount, given_hints, private)?;
        let mut secret = [0u8; 32];
        self.rng().fill_bytes(&mut secret);
        let state = self.node(node)?;
        if state.invoices.contains_key(&hash) {
            return Err(WorldError::AlreadyExists(
                "invoice with payment hash already exists".to_owned(),
            ));
        }
        let secp = state.keys.secp();
        let key = state.keys.identity().secret_key();
        let mut builder = InvoiceBuilder::new(Currency::Regtest)
            .description(memo.to_owned())
            .payment_hash(sha256::Hash::from_byte_array(hash.0))
            .payment_secret(PaymentSecret(secret))
            .duration_since_epoch(Duration::from_secs(now))
            .min_final_cltv_expiry_delta(min_final_cltv)
            .expiry_time(expiry)
            .basic_mpp();
        if amount.0 > 0 {
            builder = builder.amount_milli_satoshis(amount.0);
        }
        for hint in &hints {
            builder = builder.private_route(ldk_route_hint(hint)?);
        }
        let encoded = builder
            .build_signed(|msg| secp.sign_ecdsa_recoverable(msg, &key))
            .map_err(|e| WorldError::InvalidArgument(format!("cannot create the invoice: {e}")))?;
        let state = self.node_mut(node)?;
        let add_index = state.next_add_index;
        state.next_add_index += 1;
        let invoice = Invoice {
            hash,
            preimage,
            amount_msat: amount.0,
            state: InvoiceState::Open,
            amount_paid_msat: 0,
            hold: preimage.is_none(),
            payment_request: encoded.to_string(),
            add_index,
            min_final_cltv: u32::try_from(min_final_cltv).unwrap_or(u32::MAX),
            htlc_expiry: None,
            payer: None,
            expires_unix: now.saturating_add(expiry.as_secs()),
            partial_since: None,
        };
        state.invoices.insert(hash, invoice.clone());
        self.emit(WorldEvent::InvoiceUpdated { node, hash });
        Ok(invoice)
    }

    /// Adds a plain invoice that settles when paid, with a fresh preimage. Returns the BOLT 11
    /// string and the payment hash.
    pub fn add_invoice(
        &mut self,
        node: NodeIdx,
        amount: Msat,
        memo: &str,
    ) -> Result<(String, SwapHash), WorldError> {
        let mut preimage = [0u8; 32];
        self.rng().fill_bytes(&mut preimage);
        let preimage = Preimage(preimage);
        let hash = preimage.hash();
        let invoice = self.add_invoice_inner(
            node,
            hash,
            Some(preimage),
            amount,
            memo,
            Duration::from_secs(86_400),
            40,
            (&[], false),
        )?;
        Ok((invoice.payment_request, hash))
    }

    /// Every invoice in `node`'s book (none for an unknown node), in no particular order.
    pub fn invoices(&self, node: NodeIdx) -> impl Iterator<Item = &Invoice> {
        self.nodes
            .get(node)
            .into_iter()
            .flat_map(|n| n.invoices.values())
    }

    /// The current state of an invoice, as `SubscribeSingleInvoice` reports it.
    pub fn invoice_update(&self, node: NodeIdx, hash: SwapHash) -> Option<InvoiceUpdate> {
        let inv = self.nodes.get(node)?.invoices.get(&hash)?;
        Some(InvoiceUpdate {
            hash,
            state: inv.state,
            amount: Msat(inv.amount_msat),
            amount_paid: Msat(inv.amount_paid_msat),
        })
    }

    /// The payee's side: checks the invoice, then settles, holds or fails the payment.
    pub(super) fn deliver(&mut self, payer: NodeIdx, payee: NodeIdx, hash: SwapHash) {
        let height = self.height().0;
        let now = self.now_unix();
        let Some((parts, set_total)) = self
            .nodes
            .get(payer)
            .and_then(|n| n.payments.get(&hash))
            .map(|p| (p.parts.clone(), p.set_total_msat))
        else {
            return;
        };
        let received: u64 = parts.iter().map(|r| r.amount_msat).sum();
        let min_cltv = parts.iter().map(|r| r.cltv).min().unwrap_or(0);
        // lnd's invoice registry: a set whose total is below the invoice's amount, or whose
        // parts exceed their total, fails; an incomplete set is held (the invoice stays open);
        // a complete one settles a plain invoice or is accepted by a hold invoice.
        let verdict = self
            .nodes
            .get_mut(payee)
            .and_then(|n| n.invoices.get_mut(&hash))
            .filter(|inv| inv.state == InvoiceState::Open)
            .filter(|inv| set_total >= inv.amount_msat && received <= set_total)
            .filter(|inv| min_cltv >= inv.min_final_cltv)
            .filter(|inv| now <= inv.expires_unix)
            .map(|inv| {
                inv.payer = Some(payer);
                if received < set_total {
                    inv.partial_since.get_or_insert(now);
                    return Err(());
                }
                inv.partial_since = None;
                inv.amount_paid_msat = received;
                inv.htlc_expiry = Some(height + inv.min_final_cltv);
                if inv.hold {
                    inv.state = InvoiceState::Accepted;
                    Ok(None)
                } else {
                    inv.state = InvoiceState::Settled;
                    Ok(inv.preimage)
                }
            });
        let verdict = match verdict {
            Some(Err(())) => return,
            Some(Ok(v)) => Some(v),
            None => None,
        };
        match verdict {
            None => self.finish_payment(payer, hash, None),
            Some(None) => {
                self.emit(WorldEvent::InvoiceUpdated { node: payee, hash });
            }
            Some(Some(preimage)) => {
                self.emit(WorldEvent::InvoiceUpdated { node: payee, hash });
                self.finish_payment(payer, hash, Some(preimage));
            }
        }
    }

    /// Settles an accepted hold invoice with its preimage. Settling a settled invoice succeeds.
    pub fn settle_invoice(&mut self, node: NodeIdx, preimage: Preimage) -> Result<(), WorldError> {
        let hash = preimage.hash();
        let inv = self
            .node_mut(node)?
            .invoices
            .get_mut(&hash)
            .ok_or_else(|| WorldError::NotFound(format!("invoice {hash} not found")))?;
        match inv.state {
            InvoiceState::Settled => return Ok(()),
            InvoiceState::Open => {
                return Err(WorldError::Failed(
                    "unable to settle invoice: invoice still open".to_owned(),
                ));
            }
            InvoiceState::Canceled => {
                return Err(WorldError::Failed("invoice already canceled".to_owned()));
            }
            InvoiceState::Accepted => {}
        }
        inv.state = InvoiceState::Settled;
        inv.preimage = Some(preimage);
        let payer = inv.payer;
        self.emit(WorldEvent::InvoiceUpdated { node, hash });
        if let Some(payer) = payer {
            self.finish_payment(payer, hash, Some(preimage));
        }
        Ok(())
    }

    /// Cancels an invoice; held HTLCs fail back to the payer. Canceling twice succeeds.
    pub fn cancel_invoice(&mut self, node: NodeIdx, hash: SwapHash) -> Result<(), WorldError> {
        let inv = self
            .node_mut(node)?
            .invoices
            .get_mut(&hash)
            .ok_or_else(|| WorldError::NotFound(format!("invoice {hash} not found")))?;
        match inv.state {
            InvoiceState::Canceled => return Ok(()),
            InvoiceState::Settled => {
                return Err(WorldError::Failed("invoice already settled".to_owned()));
            }
            InvoiceState::Open | InvoiceState::Accepted => {}
        }
        let held = inv.state == InvoiceState::Accepted || inv.partial_since.is_some();
        inv.partial_since = None;
        inv.state = InvoiceState::Canceled;
        let payer = inv.payer;
        self.emit(WorldEvent::InvoiceUpdated { node, hash });
        if let (true, Some(payer)) = (held, payer) {
            self.finish_payment(payer, hash, None);
        }
        Ok(())
    }

    /// Cancels open invoices whose expiry time has passed.
    pub(crate) fn expire_open_invoices(&mut self) {
        let now = self.now_unix();
        let mut expired = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            for inv in n.invoices.values_mut() {
                if inv.state == InvoiceState::Open && now > inv.expires_unix {
                    inv.state = InvoiceState::Canceled;
                    expired.push((i, inv.hash));
                }
            }
        }
        for (node, hash) in expired {
            self.emit(WorldEvent::InvoiceUpdated { node, hash });
        }
    }

    /// Fails the parts of multi-path sets held longer than [`MPP_TIMEOUT`] with MPP_TIMEOUT;
    /// the invoice stays open, as lnd leaves it.
    pub(crate) fn expire_partial_sets(&mut self) {
        let now = self.now_unix();
        let mut due = Vec::new();
        for n in &mut self.nodes {
            for inv in n.invoices.values_mut() {
                let held_since = inv
                    .partial_since
                    .filter(|_| inv.state == InvoiceState::Open);
                if let (Some(since), Some(payer)) = (held_since, inv.payer)
                    && now >= since.saturating_add(MPP_TIMEOUT.as_secs())
                {
                    inv.partial_since = None;
                    inv.payer = None;
                    due.push((payer, inv.hash));
                }
            }
        }
        for (payer, hash) in due {
            if let Some(p) = self
                .nodes
                .get_mut(payer)
                .and_then(|n| n.payments.get_mut(&hash))
            {
                p.htlc_failure = Some(HtlcFailure::MppTimeout);
            }
            self.finish_payment(payer, hash, None);
        }
    }

    /// Cancels accepted hold invoices whose HTLCs expire within [`HOLD_EXPIRY_DELTA`] blocks.
    pub(crate) fn expire_hold_invoices(&mut self) {
        let height = self.height().0;
        let due: Vec<(NodeIdx, SwapHash)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| {
                n.invoices
                    .values()
                    .filter(|inv| inv.state == InvoiceState::Accepted)
                    .filter(|inv| {
                        inv.htlc_expiry
                            .is_some_and(|e| height + HOLD_EXPIRY_DELTA >= e)
                    })
                    .map(move |inv| (i, inv.hash))
            })
            .collect();
        for (node, hash) in due {
            let _ = self.cancel_invoice(node, hash);
        }
    }
}
