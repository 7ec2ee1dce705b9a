//! Payments, as lnd's router makes them (`SendPaymentV2`, `TrackPaymentV2`).
//!
//! Paying: the payer decodes the invoice, checks its own outbound balance on the allowed
//! channels (INSUFFICIENT_BALANCE), then searches routes by fee within the fee and CLTV
//! limits (NO_ROUTE), locks HTLCs on every hop and, when a hop lacks liquidity, remembers it
//! (like lnd's mission control) and tries again. With `max_parts > 1` a shard that finds no
//! route is split in halves. Each attempt costs simulated latency; once the payment's timeout
//! has passed no new attempt starts (TIMEOUT). The payee then checks the invoice
//! (INCORRECT_PAYMENT_DETAILS), settles a plain invoice at once, or holds the HTLCs of a hold
//! invoice — the payment stays IN_FLIGHT — until `settle_invoice` or `cancel_invoice` (see
//! [`invoices`](super::invoices)).
//!
//! By hand (`QueryRoutes`, `SendToRouteV2`): one HTLC along a found route, with a multi-path
//! record naming the total of its set. The payee holds the parts of a set until they add up
//! to the total, fails them with MPP_TIMEOUT after [`MPP_TIMEOUT`] of simulated time, and
//! takes a set whose total is above the invoice's amount (an overpayment).

use std::collections::HashMap;
use std::time::Duration;

use super::channels::{Hop, Route, RouteQuery};
use super::invoices::decode;
use super::{NodeIdx, World, WorldError, WorldEvent};
use crate::domain::{ChanId, ForwardingEvent, Msat, Preimage, SettledHtlc, SwapHash};
use crate::lnd::types::{
    DecodedInvoice, HtlcFailure, PaymentFailure, PaymentRequest, PaymentRoute, PaymentStatus,
    PaymentUpdate, RouteHop, RouteRequest,
};

/// Simulated time one hop adds to an attempt (there and back).
const HOP_ROUND_TRIP: Duration = Duration::from_millis(100);
/// The smallest shard a multi-part payment splits into, msat (lnd's default minimum).
const MIN_SHARD_MSAT: u64 = 10_000_000;
/// lnd's default CLTV limit for a payment route.
const DEFAULT_CLTV_LIMIT: u32 = 2016;
/// Attempts after which a payment stops looking for routes.
const MAX_ATTEMPTS: usize = 200;
/// How long a payee holds the parts of an incomplete multi-path set before failing them
/// (lnd's `DefaultHtlcHoldDuration`).
pub const MPP_TIMEOUT: Duration = Duration::from_secs(120);
/// What lnd says when `QueryRoutes` finds nothing.
const NO_PATH: &str = "unable to find a path to destination";

/// A payment a node made.
#[derive(Debug, Clone)]
pub struct Payment {
    /// The payment hash.
    pub hash: SwapHash,
    /// What the payee receives, msat.
    pub amount_msat: u64,
    /// The routing fees, msat.
    pub fee_msat: u64,
    /// Where it stands.
    pub status: PaymentStatus,
    /// The routes of the HTLCs locked for it.
    pub parts: Vec<Route>,
    /// What the whole set of HTLCs pays, msat: the invoice's amount for `SendPaymentV2`, the
    /// multi-path record's total for HTLCs sent by hand.
    pub set_total_msat: u64,
    /// How the payee failed the HTLCs, once it did.
    pub htlc_failure: Option<HtlcFailure>,
}

impl Payment {
    /// The update lnd's router would stream for this payment now.
    pub fn update(&self) -> PaymentUpdate {
        PaymentUpdate {
            hash: self.hash,
            status: self.status.clone(),
            amount: Msat(self.amount_msat),
            fee: Msat(self.fee_msat),
            htlcs_in_flight: if matches!(self.status, PaymentStatus::InFlight) {
                u32::try_from(self.parts.len()).unwrap_or(u32::MAX)
            } else {
                0
            },
        }
    }
}

impl World {
    /// The current state of a payment `node` made.
    pub fn payment_update(&self, node: NodeIdx, hash: SwapHash) -> Option<PaymentUpdate> {
        Some(self.nodes.get(node)?.payments.get(&hash)?.update())
    }

    /// Starts paying an invoice from `node`, as `SendPaymentV2` does, and returns its hash.
    /// Errors like lnd's: `AlreadyExists` ("payment is in transition", "invoice is already
    /// paid") for a hash paid before, `InvalidArgument` for a bad request. Failures after the
    /// payment started are recorded on the payment, not returned.
    pub fn send_payment(
        &mut self,
        payer: NodeIdx,
        request: &PaymentRequest,
    ) -> Result<SwapHash, WorldError> {
        let (_, decoded) = decode(&request.invoice)?;
        let hash = decoded.payment_hash;
        if let Some(existing) = self.node(payer)?.payments.get(&hash) {
            match existing.status {
                PaymentStatus::Succeeded { .. } => {
                    return Err(WorldError::AlreadyExists(
                        "invoice is already paid".to_owned(),
                    ));
                }
                PaymentStatus::Initiated | PaymentStatus::InFlight => {
                    return Err(WorldError::AlreadyExists(
                        "payment is in transition".to_owned(),
                    ));
                }
                PaymentStatus::Failed(_) => {}
            }
        }
        if request.timeout.is_zero() {
            return Err(WorldError::InvalidArgument(
                "timeout_seconds must be specified".to_owned(),
            ));
        }
        if decoded.amount.0 == 0 {
            return Err(WorldError::InvalidArgument(
                "amount must be specified when paying a zero amount invoice".to_owned(),
            ));
        }
        let expires = decoded
            .timestamp_unix
            .saturating_add(decoded.expiry.as_secs());
        if self.now_unix() > expires {
            return Err(WorldError::InvalidArgument(format!(
                "invoice expired. Valid until {expires} (unix seconds)"
            )));
        }
        if decoded.destination == self.node(payer)?.id {
            return Err(WorldError::InvalidArgument(
                "no self-payments allowed".to_owned(),
            ));
        }
        let mut payment = Payment {
            hash,
            amount_msat: decoded.amount.0,
            fee_msat: 0,
            status: PaymentStatus::InFlight,
            parts: Vec::new(),
            set_total_msat: decoded.amount.0,
            htlc_failure: None,
        };
        let outcome = match self.node_by_id(&decoded.destination) {
            None => Err(PaymentFailure::NoRoute),
            Some(payee) => self
                .route_shards(payer, payee, &decoded, request)
                .map(|parts| (payee, parts)),
        };
        match outcome {
            Err(failure) => payment.status = PaymentStatus::Failed(failure),
            Ok((payee, parts)) => {
                payment.fee_msat = parts.iter().map(|r| r.fee_msat).sum();
                payment.parts = parts;
                self.node_mut(payer)?.payments.insert(hash, payment);
                self.deliver(payer, payee, hash);
                self.emit(WorldEvent::PaymentUpdated { node: payer, hash });
                return Ok(hash);
            }
        }
        self.node_mut(payer)?.payments.insert(hash, payment);
        self.emit(WorldEvent::PaymentUpdated { node: payer, hash });
        Ok(hash)
    }

    /// Finds and locks routes for the whole amount, splitting when allowed. On failure every
    /// HTLC locked so far is released.
    fn route_shards(
        &mut self,
        payer: NodeIdx,
        payee: NodeIdx,
        invoice: &DecodedInvoice,
        request: &PaymentRequest,
    ) -> Result<Vec<Route>, PaymentFailure> {
        let amount = invoice.amount.0;
        let first_hops: Vec<usize> = self
            .channels
            .iter()
            .enumerate()
            .filter(|(_, c)| c.has(payer))
            .filter(|(_, c)| {
                request.outgoing_chan_ids.is_empty()
                    || request.outgoing_chan_ids.contains(&c.chan_id)
            })
            .map(|(i, _)| i)
            .collect();
        let local: u64 = first_hops
            .iter()
            .filter_map(|&i| self.channels.get(i))
            .map(|c| c.sendable_msat(c.a == payer))
            .sum();
        if local < amount {
            return Err(PaymentFailure::InsufficientBalance);
        }
        let max_parts = request.max_parts.max(1) as usize;
        let final_cltv = u32::try_from(invoice.min_final_cltv_delta).unwrap_or(u32::MAX);
        let cltv_limit = request.cltv_limit.unwrap_or(DEFAULT_CLTV_LIMIT);
        let mut failed: HashMap<(usize, bool), u64> = HashMap::new();
        let last_hop = match request.last_hop {
            // lnd refuses a payment whose last hop it does not know.
            Some(key) => Some(self.node_by_id(&key).ok_or(PaymentFailure::NoRoute)?),
            None => None,
        };
        let hinted: Vec<ChanId> = invoice
            .route_hints
            .iter()
            .flat_map(|r| r.hops.iter().map(|h| h.chan_id))
            .collect();
        let mut pending = vec![amount];
        let mut parts: Vec<Route> = Vec::new();
        let mut elapsed = Duration::ZERO;
        let mut attempts = 0usize;
        let outcome = loop {
            let Some(shard) = pending.pop() else {
                break Ok(());
            };
            let fee_used: u64 = parts.iter().map(|r| r.fee_msat).sum();
            let query = RouteQuery {
                payer,
                payee,
                amount_msat: shard,
                fee_budget_msat: request.fee_limit.0.saturating_sub(fee_used),
                final_cltv,
                cltv_limit,
                first_hops: &first_hops,
                failed: &failed,
                hinted: &hinted,
                last_hop,
            };
            match self.find_route(&query) {
                Some(route) => {
                    if attempts > 0 && elapsed > request.timeout {
                        break Err(PaymentFailure::Timeout);
                    }
                    attempts += 1;
                    elapsed += HOP_ROUND_TRIP * route.hops.len() as u32;
                    match self.lock_route(&route, invoice.payment_hash) {
                        Ok(()) => parts.push(route),
                        Err(hop) => {
                            failed.insert((hop.chan, hop.from_a), hop.amount_msat);
                            pending.push(shard);
                        }
                    }
                    if attempts >= MAX_ATTEMPTS {
                        break Err(PaymentFailure::NoRoute);
                    }
                }
                None => {
                    let room = parts.len() + pending.len() + 2 <= max_parts;
                    if room && shard >= 2 * MIN_SHARD_MSAT {
                        pending.push(shard / 2);
                        pending.push(shard - shard / 2);
                    } else {
                        break Err(PaymentFailure::NoRoute);
                    }
                }
            }
        };
        match outcome {
            Ok(()) => Ok(parts),
            Err(failure) => {
                for route in &parts {
                    self.resolve_route(route, invoice.payment_hash, false);
                }
                Err(failure)
            }
        }
    }

    /// Locks an HTLC on every hop of `route`; on the first hop that cannot carry it, undoes
    /// the hops locked so far and returns that hop.
    pub(crate) fn lock_route(&mut self, route: &Route, hash: SwapHash) -> Result<(), Hop> {
        for (i, hop) in route.hops.iter().enumerate() {
            let locked = self
                .channels
                .get_mut(hop.chan)
                .is_some_and(|c| c.lock(hash, hop.amount_msat, hop.from_a));
            if !locked {
                for undo in &route.hops[..i] {
                    if let Some(c) = self.channels.get_mut(undo.chan) {
                        c.resolve(hash, undo.amount_msat, undo.from_a, false);
                    }
                }
                return Err(*hop);
            }
        }
        for hop in &route.hops {
            if let Some(c) = self.channels.get(hop.chan) {
                self.channel_changed(c.a, c.b, c.chan_id);
            }
        }
        Ok(())
    }

    /// Settles (crediting each hop's receiver and recording forwards) or fails (refunding each
    /// hop's sender) the HTLCs of `route`.
    pub(crate) fn resolve_route(&mut self, route: &Route, hash: SwapHash, settle: bool) {
        let now_ns = self.now_ns;
        for hop in &route.hops {
            if let Some(c) = self.channels.get_mut(hop.chan) {
                c.resolve(hash, hop.amount_msat, hop.from_a, settle);
            }
        }
        if settle {
            let at_unix = now_ns / 1_000_000_000;
            let ends = route.hops.first().zip(route.hops.last());
            if let Some((first, last)) = ends {
                let payer = self.channels.get(first.chan).map(|c| {
                    let node = if first.from_a { c.a } else { c.b };
                    (node, c.chan_id)
                });
                let payee = self.channels.get(last.chan).map(|c| {
                    let node = if last.from_a { c.b } else { c.a };
                    (node, c.chan_id)
                });
                if let Some((node, chan)) = payer
                    && let Some(n) = self.nodes.get_mut(node)
                {
                    n.sent.push(SettledHtlc {
                        at_unix,
                        chan,
                        amount: Msat(first.amount_msat),
                    });
                }
                if let Some((node, chan)) = payee
                    && let Some(n) = self.nodes.get_mut(node)
                {
                    n.received.push(SettledHtlc {
                        at_unix,
                        chan,
                        amount: Msat(last.amount_msat),
                    });
                }
            }
            for pair in route.hops.windows(2) {
                let (Some(cin), Some(cout)) = (
                    self.channels.get(pair[0].chan),
                    self.channels.get(pair[1].chan),
                ) else {
                    continue;
                };
                let node = if pair[1].from_a { cout.a } else { cout.b };
                let event = ForwardingEvent {
                    timestamp_ns: now_ns,
                    chan_in: cin.chan_id,
                    chan_out: cout.chan_id,
                    amount_in: Msat(pair[0].amount_msat),
                    amount_out: Msat(pair[1].amount_msat),
                    fee: Msat(pair[0].amount_msat - pair[1].amount_msat),
                };
                if let Some(n) = self.nodes.get_mut(node) {
                    n.forwards.push(event);
                }
            }
        }
        for hop in &route.hops {
            if let Some(c) = self.channels.get(hop.chan) {
                self.channel_changed(c.a, c.b, c.chan_id);
            }
        }
    }

    /// Settles (with the preimage) or fails a payment's HTLCs and records the outcome.
    pub(super) fn finish_payment(
        &mut self,
        payer: NodeIdx,
        hash: SwapHash,
        preimage: Option<Preimage>,
    ) {
        let Some(parts) = self
            .nodes
            .get(payer)
            .and_then(|n| n.payments.get(&hash))
            .map(|p| p.parts.clone())
        else {
            return;
        };
        for route in &parts {
            self.resolve_route(route, hash, preimage.is_some());
        }
        if let Some(payment) = self
            .nodes
            .get_mut(payer)
            .and_then(|n| n.payments.get_mut(&hash))
        {
            payment.status = match preimage {
                Some(preimage) => PaymentStatus::Succeeded { preimage },
                None => {
                    payment.fee_msat = 0;
                    payment
                        .htlc_failure
                        .get_or_insert(HtlcFailure::IncorrectOrUnknownPaymentDetails);
                    PaymentStatus::Failed(PaymentFailure::IncorrectPaymentDetails)
                }
            };
        }
        self.emit(WorldEvent::PaymentUpdated { node: payer, hash });
    }

    /// Finds a route for one HTLC of `request.amount` from `payer`, as `QueryRoutes` does (a
    /// fee limit of 5 %, or 100 % up to 1,000 sat, like lnd's default), without locking it.
    pub fn query_route(
        &self,
        payer: NodeIdx,
        request: &RouteRequest,
    ) -> Result<PaymentRoute, WorldError> {
        let no_path = || WorldError::NotFound(NO_PATH.to_owned());
        let payee = self.node_by_id(&request.destination).ok_or_else(no_path)?;
        if payee == payer {
            return Err(WorldError::InvalidArgument(
                "source and destination are the same node".to_owned(),
            ));
        }
        let amount = request.amount.0;
        if amount == 0 {
            return Err(WorldError::InvalidArgument(
                "amount must be greater than 0".to_owned(),
            ));
        }
        let first_hops: Vec<usize> = self
            .channels
            .iter()
            .enumerate()
            .filter(|(_, c)| c.has(payer))
            .map(|(i, _)| i)
            .collect();
        let hinted: Vec<ChanId> = request
            .route_hints
            .iter()
            .flat_map(|r| r.hops.iter().map(|h| h.chan_id))
            .collect();
        let failed = HashMap::new();
        let query = RouteQuery {
            payer,
            payee,
            amount_msat: amount,
            fee_budget_msat: if amount <= 1_000_000 {
                amount
            } else {
                amount / 20
            },
            final_cltv: request.final_cltv_delta,
            cltv_limit: DEFAULT_CLTV_LIMIT,
            first_hops: &first_hops,
            failed: &failed,
            hinted: &hinted,
            last_hop: None,
        };
        let route = self.find_route(&query).ok_or_else(no_path)?;
        self.wire_route(payer, &route)
    }

    /// A found route in lnd's form: per hop the node it reaches, what that node passes on and
    /// keeps, and the CLTV of what it passes on.
    fn wire_route(&self, payer: NodeIdx, route: &Route) -> Result<PaymentRoute, WorldError> {
        let height = self.height().0;
        let mut hops = Vec::with_capacity(route.hops.len());
        let mut sender = payer;
        for (i, hop) in route.hops.iter().enumerate() {
            let ch = self
                .channels
                .get(hop.chan)
                .ok_or_else(|| WorldError::NotFound(NO_PATH.to_owned()))?;
            let receiver = ch.other(sender);
            let forwarded = route
                .hops
                .get(i + 1)
                .map_or(route.amount_msat, |next| next.amount_msat);
            hops.push(RouteHop {
                chan_id: ch.chan_id,
                pubkey: self.node_id(receiver)?,
                amount_to_forward: Msat(forwarded),
                fee: Msat(hop.amount_msat.saturating_sub(forwarded)),
                expiry: 0,
                mpp: None,
            });
            sender = receiver;
        }
        // The CLTV on each channel, from the payee's back: each forwarding node adds its delta.
        let final_cltv = route.cltv
            - route
                .hops
                .iter()
                .skip(1)
                .filter_map(|h| {
                    self.channels
                        .get(h.chan)
                        .map(|c| c.policy(h.from_a).cltv_delta)
                })
                .sum::<u32>();
        // cltv_at[k]: the CLTV of the HTLC on channel k; a hop's expiry is what its node
        // passes on, i.e. the CLTV on the next channel (the final one at the last hop).
        let n = route.hops.len();
        let mut cltv_at = vec![height + final_cltv; n];
        for k in (0..n.saturating_sub(1)).rev() {
            let delta = route
                .hops
                .get(k + 1)
                .and_then(|h| {
                    self.channels
                        .get(h.chan)
                        .map(|c| c.policy(h.from_a).cltv_delta)
                })
                .unwrap_or(0);
            cltv_at[k] = cltv_at[k + 1] + delta;
        }
        for (i, h) in hops.iter_mut().enumerate() {
            h.expiry = cltv_at[(i + 1).min(n - 1)];
        }
        Ok(PaymentRoute {
            total_time_lock: height + route.cltv,
            total_amount: Msat(route.amount_msat + route.fee_msat),
            total_fees: Msat(route.fee_msat),
            hops,
        })
    }

    /// Sends one HTLC for `hash` along `route` from `payer`, as `SendToRouteV2` does, and
    /// delivers it. Returns the failure when a hop could not carry it; otherwise the outcome
    /// is recorded on the payment (settled, failed, or held as part of an incomplete set).
    pub fn send_to_route(
        &mut self,
        payer: NodeIdx,
        hash: SwapHash,
        wire: &PaymentRoute,
    ) -> Result<Option<HtlcFailure>, WorldError> {
        let height = self.height().0;
        let mut sender = payer;
        let mut hops = Vec::with_capacity(wire.hops.len());
        for (i, hop) in wire.hops.iter().enumerate() {
            let ci = self
                .channels
                .iter()
                .position(|c| c.chan_id == hop.chan_id && c.has(sender))
                .ok_or_else(|| {
                    WorldError::InvalidArgument(format!(
                        "hop {i}: channel {} does not leave the previous node",
                        hop.chan_id.0
                    ))
                })?;
            let ch = self
                .channels
                .get(ci)
                .ok_or_else(|| WorldError::InvalidArgument("unknown channel".to_owned()))?;
            let receiver = ch.other(sender);
            if self.node_id(receiver)? != hop.pubkey {
                return Err(WorldError::InvalidArgument(format!(
                    "hop {i}: channel {} does not reach {}",
                    hop.chan_id.0, hop.pubkey
                )));
            }
            hops.push(Hop {
                chan: ci,
                from_a: ch.a == sender,
                amount_msat: hop.amount_to_forward.0 + hop.fee.0,
            });
            sender = receiver;
        }
        let payee = sender;
        if hops.is_empty() {
            return Err(WorldError::InvalidArgument("route has no hops".to_owned()));
        }
        let amount = wire.delivered().0;
        let set_total = wire
            .hops
            .last()
            .and_then(|h| h.mpp)
            .map_or(amount, |m| m.total.0);
        let route = Route {
            hops,
            amount_msat: amount,
            fee_msat: wire.total_fees.0,
            cltv: wire.total_time_lock.saturating_sub(height),
        };
        let existing = self
            .node(payer)?
            .payments
            .get(&hash)
            .map(|p| p.status.clone());
        if let Some(PaymentStatus::Succeeded { .. }) = existing {
            return Err(WorldError::AlreadyExists(
                "invoice is already paid".to_owned(),
            ));
        }
        if self.lock_route(&route, hash).is_err() {
            return Ok(Some(HtlcFailure::TemporaryChannelFailure));
        }
        let node = self.node_mut(payer)?;
        match node.payments.get_mut(&hash) {
            Some(p) if p.status == PaymentStatus::InFlight => {
                p.amount_msat += route.amount_msat;
                p.fee_msat += route.fee_msat;
                p.parts.push(route);
            }
            _ => {
                node.payments.insert(
                    hash,
                    Payment {
                        hash,
                        amount_msat: route.amount_msat,
                        fee_msat: route.fee_msat,
                        status: PaymentStatus::InFlight,
                        parts: vec![route],
                        set_total_msat: set_total,
                        htlc_failure: None,
                    },
                );
            }
        }
        self.emit(WorldEvent::PaymentUpdated { node: payer, hash });
        self.deliver(payer, payee, hash);
        Ok(None)
    }

    /// How the payee failed a payment's HTLCs, once it did.
    pub fn htlc_failure(&self, payer: NodeIdx, hash: SwapHash) -> Option<HtlcFailure> {
        self.nodes
            .get(payer)?
            .payments
            .get(&hash)?
            .htlc_failure
            .clone()
    }

    /// Pays `amount_msat` from `payer` along the given channels (like `SendToRoute`) to a fresh
    /// plain invoice of the route's last node. Returns whether it succeeded.
    pub(crate) fn pay_along(
        &mut self,
        payer: NodeIdx,
        channels: &[usize],
        amount_msat: u64,
    ) -> Result<bool, WorldError> {
        let mut node = payer;
        let mut directions = Vec::new();
        for &ci in channels {
            let c = self
                .channels
                .get(ci)
                .filter(|c| c.has(node))
                .ok_or_else(|| WorldError::InvalidArgument("the route is not connected".into()))?;
            directions.push(node == c.a);
            node = c.other(node);
        }
        let payee = node;
        let (_, hash) = self.add_invoice(payee, Msat(amount_msat), "traffic")?;
        let mut hops = Vec::with_capacity(channels.len());
        let mut amount = amount_msat;
        let mut cltv = 40;
        for (i, (&ci, &from_a)) in channels.iter().zip(&directions).enumerate().rev() {
            hops.push(Hop {
                chan: ci,
                from_a,
                amount_msat: amount,
            });
            if i > 0 {
                // The node sending on this hop forwards, and charges its policy here.
                if let Some(policy) = self.channels.get(ci).map(|c| c.policy(from_a)) {
                    amount += policy.fee(amount);
                    cltv += policy.cltv_delta;
                }
            }
        }
        hops.reverse();
        let route = Route {
            fee_msat: amount - amount_msat,
            amount_msat,
            hops,
            cltv,
        };
        if self.lock_route(&route, hash).is_err() {
            if let Some(n) = self.nodes.get_mut(payee) {
                n.invoices.remove(&hash);
            }
            return Ok(false);
        }
        let payment = Payment {
            hash,
            amount_msat,
            fee_msat: route.fee_msat,
            status: PaymentStatus::InFlight,
            parts: vec![route],
            set_total_msat: amount_msat,
            htlc_failure: None,
        };
        self.node_mut(payer)?.payments.insert(hash, payment);
        self.deliver(payer, payee, hash);
        let ok = matches!(
            self.payment_update(payer, hash).map(|u| u.status),
            Some(PaymentStatus::Succeeded { .. })
        );
        // Traffic payments are not the payer's business to track; keep the books small.
        if let Some(n) = self.nodes.get_mut(payer) {
            n.payments.remove(&hash);
        }
        if let Some(n) = self.nodes.get_mut(payee) {
            n.invoices.remove(&hash);
        }
        Ok(ok)
    }
}
