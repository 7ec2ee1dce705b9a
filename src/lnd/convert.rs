//! Conversions between lnd's wire types and the port's domain types.
//!
//! Pure functions, one per message: wire answers are checked here (key lengths, hashes,
//! negative amounts, transactions that do not decode), so a malformed answer becomes a
//! `NodeError` of kind `InvalidResponse` naming the method and field, never a panic.

use std::time::Duration;

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{BlockHash, FeeRate, OutPoint, Txid};

use super::error::NodeError;
use super::types::{
    BlockEpoch, ConfRequest, ConfUpdate, DecodedInvoice, HoldInvoiceRequest, InvoiceRequest,
    InvoiceState, InvoiceUpdate, KeyDescriptor, KeyLocator, MuSig2Session, MuSig2SessionRequest,
    MuSig2Version, NodeVersion, PaymentFailure, PaymentRequest, PaymentStatus, PaymentUpdate,
    SendOutputsRequest, SignMethod, SignRequest, SpendRequest, SpendUpdate, WalletUtxo,
};
use super::types::{HtlcFailure, HtlcOutcome, MppRecord, PaymentRoute, RouteHop, RouteRequest};
use super::wire::{chainrpc, invoicesrpc, lnrpc, routerrpc, signrpc, verrpc, walletrpc};
use crate::domain::{
    BlockHeight, ChanId, Channel, ChannelEdge, ChannelEvent, ForwardingEvent, ForwardingPage, Msat,
    Network, NodeId, NodeInfo, Peer, PeerPolicy, Preimage, RouteHint, Sat, SettledHtlc,
    SettlementPage, SwapHash,
};

type R<T> = Result<T, NodeError>;

fn sat(method: &'static str, field: &str, v: i64) -> R<Sat> {
    u64::try_from(v)
        .map(Sat)
        .map_err(|_| NodeError::invalid_response(method, format!("{field} is negative: {v}")))
}

fn msat(method: &'static str, field: &str, v: i64) -> R<Msat> {
    u64::try_from(v)
        .map(Msat)
        .map_err(|_| NodeError::invalid_response(method, format!("{field} is negative: {v}")))
}

fn node_id_hex(method: &'static str, field: &str, s: &str) -> R<NodeId> {
    s.parse().map_err(|_| {
        NodeError::invalid_response(method, format!("{field} is not a node key: {s:?}"))
    })
}

fn hash32(method: &'static str, field: &str, bytes: &[u8]) -> R<[u8; 32]> {
    bytes.try_into().map_err(|_| {
        NodeError::invalid_response(
            method,
            format!("{field} has {} bytes, expected 32", bytes.len()),
        )
    })
}

fn hash32_hex(method: &'static str, field: &str, s: &str) -> R<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| {
        NodeError::invalid_response(method, format!("{field} is not 32 bytes of hex: {s:?}"))
    })?;
    Ok(out)
}

fn pubkey(method: &'static str, field: &str, bytes: &[u8]) -> R<PublicKey> {
    PublicKey::from_slice(bytes).map_err(|e| {
        NodeError::invalid_response(method, format!("{field} is not a public key: {e}"))
    })
}

fn tx(method: &'static str, field: &str, bytes: &[u8]) -> R<bitcoin::Transaction> {
    deserialize(bytes)
        .map_err(|e| NodeError::invalid_response(method, format!("{field} does not decode: {e}")))
}

/// `GetInfo` → [`NodeInfo`]; the network comes from the first chain lnd lists.
pub fn node_info(r: &lnrpc::GetInfoResponse) -> R<NodeInfo> {
    const M: &str = "get_info";
    let network_name = r
        .chains
        .first()
        .map(|c| c.network.as_str())
        .ok_or_else(|| NodeError::invalid_response(M, "no chain listed"))?;
    let network: Network = network_name
        .parse()
        .map_err(|_| NodeError::invalid_response(M, format!("unknown network {network_name:?}")))?;
    Ok(NodeInfo {
        pubkey: node_id_hex(M, "identity_pubkey", &r.identity_pubkey)?,
        alias: r.alias.clone(),
        block_height: BlockHeight(r.block_height),
        synced_to_chain: r.synced_to_chain,
        synced_to_graph: r.synced_to_graph,
        network,
        version: r.version.clone(),
    })
}

/// `verrpc.Version` → [`NodeVersion`].
pub fn node_version(v: &verrpc::Version) -> NodeVersion {
    NodeVersion {
        version: v.version.clone(),
        major: v.app_major,
        minor: v.app_minor,
        patch: v.app_patch,
        commit_hash: v.commit_hash.clone(),
        build_tags: v.build_tags.clone(),
    }
}

/// One `lnrpc.Channel` → [`Channel`]. Reserves come from the constraints, falling back to
/// the deprecated flat fields an older lnd fills.
pub fn channel(c: &lnrpc::Channel) -> R<Channel> {
    const M: &str = "list_channels";
    let local_reserve = match &c.local_constraints {
        Some(k) => Sat(k.chan_reserve_sat),
        #[allow(deprecated)]
        None => sat(M, "local_chan_reserve_sat", c.local_chan_reserve_sat)?,
    };
    let remote_reserve = match &c.remote_constraints {
        Some(k) => Sat(k.chan_reserve_sat),
        #[allow(deprecated)]
        None => sat(M, "remote_chan_reserve_sat", c.remote_chan_reserve_sat)?,
    };
    let mut pending_htlc_amount = Sat(0);
    for h in &c.pending_htlcs {
        pending_htlc_amount += sat(M, "pending_htlcs.amount", h.amount)?;
    }
    Ok(Channel {
        chan_id: ChanId(c.chan_id),
        channel_point: c.channel_point.clone(),
        peer: node_id_hex(M, "remote_pubkey", &c.remote_pubkey)?,
        peer_alias: (!c.peer_alias.is_empty()).then(|| c.peer_alias.clone()),
        capacity: sat(M, "capacity", c.capacity)?,
        local_balance: sat(M, "local_balance", c.local_balance)?,
        remote_balance: sat(M, "remote_balance", c.remote_balance)?,
        local_reserve,
        remote_reserve,
        commit_fee: sat(M, "commit_fee", c.commit_fee)?,
        active: c.active,
        private: c.private,
        initiator: c.initiator,
        pending_htlc_count: u32::try_from(c.pending_htlcs.len()).unwrap_or(u32::MAX),
        pending_htlc_amount,
        total_sent: sat(M, "total_satoshis_sent", c.total_satoshis_sent)?,
        total_received: sat(M, "total_satoshis_received", c.total_satoshis_received)?,
    })
}

/// A `ChannelPoint` as "txid:index"; the bytes form holds the txid in wire byte order.
pub fn channel_point(cp: &lnrpc::ChannelPoint) -> R<String> {
    use lnrpc::channel_point::FundingTxid;
    const M: &str = "subscribe_channel_events";
    let txid = match &cp.funding_txid {
        Some(FundingTxid::FundingTxidBytes(b)) => Txid::from_slice(b)
            .map_err(|_| NodeError::invalid_response(M, "funding_txid_bytes is not 32 bytes"))?
            .to_string(),
        Some(FundingTxid::FundingTxidStr(s)) => s.clone(),
        None => return Err(NodeError::invalid_response(M, "channel point without txid")),
    };
    Ok(format!("{txid}:{}", cp.output_index))
}

/// One channel event; `None` for an event without content (lnd sends none such today).
pub fn channel_event(u: &lnrpc::ChannelEventUpdate) -> R<Option<ChannelEvent>> {
    use lnrpc::channel_event_update::Channel as C;
    const M: &str = "subscribe_channel_events";
    let Some(inner) = &u.channel else {
        return Ok(None);
    };
    Ok(Some(match inner {
        C::OpenChannel(c) => ChannelEvent::Opened(channel(c)?),
        C::UpdatedChannel(upd) => match &upd.channel {
            Some(c) => ChannelEvent::Updated(channel(c)?),
            None => return Err(NodeError::invalid_response(M, "updated_channel is empty")),
        },
        C::ClosedChannel(s) => ChannelEvent::Closed {
            chan_id: ChanId(s.chan_id),
            channel_point: s.channel_point.clone(),
        },
        C::ActiveChannel(cp) => ChannelEvent::Active {
            channel_point: channel_point(cp)?,
        },
        C::InactiveChannel(cp) => ChannelEvent::Inactive {
            channel_point: channel_point(cp)?,
        },
        C::PendingOpenChannel(p) => {
            let txid = Txid::from_slice(&p.txid)
                .map_err(|_| NodeError::invalid_response(M, "pending txid is not 32 bytes"))?;
            ChannelEvent::PendingOpen {
                channel_point: format!("{txid}:{}", p.output_index),
            }
        }
        C::FullyResolvedChannel(cp) => ChannelEvent::FullyResolved {
            channel_point: channel_point(cp)?,
        },
        C::ChannelFundingTimeout(cp) => ChannelEvent::FundingTimeout {
            channel_point: channel_point(cp)?,
        },
    }))
}

/// `lnrpc.Peer` → [`Peer`].
pub fn peer(p: &lnrpc::Peer) -> R<Peer> {
    Ok(Peer {
        pubkey: node_id_hex("list_peers", "pub_key", &p.pub_key)?,
        address: p.address.clone(),
        inbound: p.inbound,
    })
}

/// `ForwardingHistory` → [`ForwardingPage`].
pub fn forwarding_page(r: &lnrpc::ForwardingHistoryResponse) -> ForwardingPage {
    ForwardingPage {
        events: r
            .forwarding_events
            .iter()
            .map(|e| ForwardingEvent {
                timestamp_ns: e.timestamp_ns,
                chan_in: ChanId(e.chan_id_in),
                chan_out: ChanId(e.chan_id_out),
                amount_in: Msat(e.amt_in_msat),
                amount_out: Msat(e.amt_out_msat),
                fee: Msat(e.fee_msat),
            })
            .collect(),
        next_index_offset: r.last_offset_index,
    }
}

/// `ListPaymentsResponse` → the succeeded HTLCs of its succeeded payments. An attempt without a
/// route or a first hop moved nothing through a channel of ours and is left out.
pub fn payment_settlements(r: &lnrpc::ListPaymentsResponse) -> SettlementPage {
    let succeeded = lnrpc::payment::PaymentStatus::Succeeded as i32;
    let htlc_succeeded = lnrpc::htlc_attempt::HtlcStatus::Succeeded as i32;
    let htlcs = r
        .payments
        .iter()
        .filter(|p| p.status == succeeded)
        .flat_map(|p| p.htlcs.iter())
        .filter(|h| h.status == htlc_succeeded)
        .filter_map(|h| {
            let route = h.route.as_ref()?;
            let first = route.hops.first()?;
            Some(SettledHtlc {
                at_unix: u64::try_from(h.resolve_time_ns).unwrap_or(0) / 1_000_000_000,
                chan: ChanId(first.chan_id),
                amount: Msat(u64::try_from(route.total_amt_msat).unwrap_or(0)),
            })
        })
        .collect();
    SettlementPage {
        htlcs,
        items: r.payments.len() as u64,
        next_index_offset: r.last_index_offset,
    }
}

/// `ListInvoiceResponse` → the settled HTLCs of its settled invoices.
pub fn invoice_settlements(r: &lnrpc::ListInvoiceResponse) -> SettlementPage {
    let settled = lnrpc::invoice::InvoiceState::Settled as i32;
    let htlc_settled = lnrpc::InvoiceHtlcState::Settled as i32;
    let htlcs = r
        .invoices
        .iter()
        .filter(|i| i.state == settled)
        .flat_map(|i| i.htlcs.iter())
        .filter(|h| h.state == htlc_settled)
        .map(|h| SettledHtlc {
            at_unix: u64::try_from(h.resolve_time).unwrap_or(0),
            chan: ChanId(h.chan_id),
            amount: Msat(h.amt_msat),
        })
        .collect();
    SettlementPage {
        htlcs,
        items: r.invoices.len() as u64,
        next_index_offset: r.last_index_offset,
    }
}

/// `PayReq` → [`DecodedInvoice`].
pub fn decoded_invoice(p: &lnrpc::PayReq) -> R<DecodedInvoice> {
    const M: &str = "decode_invoice";
    Ok(DecodedInvoice {
        destination: node_id_hex(M, "destination", &p.destination)?,
        payment_hash: SwapHash(hash32_hex(M, "payment_hash", &p.payment_hash)?),
        amount: msat(M, "num_msat", p.num_msat)?,
        timestamp_unix: u64::try_from(p.timestamp).unwrap_or(0),
        expiry: Duration::from_secs(u64::try_from(p.expiry).unwrap_or(0)),
        min_final_cltv_delta: u64::try_from(p.cltv_expiry).unwrap_or(0),
        description: p.description.clone(),
        payment_addr: if p.payment_addr.is_empty() {
            None
        } else {
            Some(hash32(M, "payment_addr", &p.payment_addr)?)
        },
        route_hints: parse_route_hints(&p.route_hints)
            .map_err(|e| NodeError::invalid_response(M, format!("route_hints: {e}")))?,
    })
}

/// [`PaymentRequest`] → `SendPaymentRequest`. Rejects limits the wire cannot carry.
pub fn send_payment_request(r: &PaymentRequest) -> R<routerrpc::SendPaymentRequest> {
    const M: &str = "pay";
    let big = |what: &str| NodeError::invalid_argument(M, format!("{what} is too large"));
    Ok(routerrpc::SendPaymentRequest {
        payment_request: r.invoice.clone(),
        fee_limit_msat: i64::try_from(r.fee_limit.0).map_err(|_| big("fee_limit"))?,
        outgoing_chan_ids: r.outgoing_chan_ids.iter().map(|c| c.0).collect(),
        max_parts: r.max_parts,
        timeout_seconds: i32::try_from(r.timeout.as_secs()).map_err(|_| big("timeout"))?,
        cltv_limit: match r.cltv_limit {
            Some(l) => i32::try_from(l).map_err(|_| big("cltv_limit"))?,
            None => 0,
        },
        last_hop_pubkey: r.last_hop.map(|k| k.0.to_vec()).unwrap_or_default(),
        no_inflight_updates: false,
        ..Default::default()
    })
}

/// `lnrpc.Payment` → [`PaymentUpdate`].
pub fn payment_update(p: &lnrpc::Payment) -> R<PaymentUpdate> {
    use lnrpc::payment::PaymentStatus as W;
    const M: &str = "pay";
    let status = match p.status() {
        W::Initiated => PaymentStatus::Initiated,
        W::InFlight => PaymentStatus::InFlight,
        W::Succeeded => PaymentStatus::Succeeded {
            preimage: Preimage(hash32_hex(M, "payment_preimage", &p.payment_preimage)?),
        },
        W::Failed => PaymentStatus::Failed(payment_failure(p.failure_reason())),
        #[allow(deprecated)]
        W::Unknown => PaymentStatus::InFlight,
    };
    let htlcs_in_flight = p
        .htlcs
        .iter()
        .filter(|h| h.status() == lnrpc::htlc_attempt::HtlcStatus::InFlight)
        .count();
    Ok(PaymentUpdate {
        hash: SwapHash(hash32_hex(M, "payment_hash", &p.payment_hash)?),
        status,
        amount: msat(M, "value_msat", p.value_msat)?,
        fee: msat(M, "fee_msat", p.fee_msat)?,
        htlcs_in_flight: u32::try_from(htlcs_in_flight).unwrap_or(u32::MAX),
    })
}

fn payment_failure(r: lnrpc::PaymentFailureReason) -> PaymentFailure {
    use lnrpc::PaymentFailureReason as W;
    match r {
        W::FailureReasonTimeout => PaymentFailure::Timeout,
        W::FailureReasonNoRoute => PaymentFailure::NoRoute,
        W::FailureReasonError => PaymentFailure::Error,
        W::FailureReasonIncorrectPaymentDetails => PaymentFailure::IncorrectPaymentDetails,
        W::FailureReasonInsufficientBalance => PaymentFailure::InsufficientBalance,
        W::FailureReasonCanceled => PaymentFailure::Canceled,
        W::FailureReasonNone => PaymentFailure::Unknown,
    }
}

/// [`RouteRequest`] → `QueryRoutesRequest`.
pub fn query_routes_request(r: &RouteRequest) -> R<lnrpc::QueryRoutesRequest> {
    const M: &str = "query_route";
    let big = |what: &str| NodeError::invalid_argument(M, format!("{what} is too large"));
    Ok(lnrpc::QueryRoutesRequest {
        pub_key: r.destination.to_string(),
        amt_msat: i64::try_from(r.amount.0).map_err(|_| big("amount"))?,
        final_cltv_delta: i32::try_from(r.final_cltv_delta).map_err(|_| big("final_cltv_delta"))?,
        route_hints: route_hints(&r.route_hints),
        ..Default::default()
    })
}

/// `QueryRoutesRequest` → [`RouteRequest`] (what a server of lnd's API was asked).
pub fn route_request(r: &lnrpc::QueryRoutesRequest) -> Result<RouteRequest, String> {
    let amount = match (r.amt, r.amt_msat) {
        (0, msat) => msat,
        (sat, 0) => sat.saturating_mul(1_000),
        _ => return Err("amt and amt_msat are mutually exclusive".to_owned()),
    };
    Ok(RouteRequest {
        destination: r
            .pub_key
            .parse()
            .map_err(|e| format!("pub_key {:?} is not a node key: {e}", r.pub_key))?,
        amount: Msat(
            u64::try_from(amount).map_err(|_| format!("the amount is negative: {amount}"))?,
        ),
        final_cltv_delta: u32::try_from(r.final_cltv_delta)
            .map_err(|_| format!("final_cltv_delta is negative: {}", r.final_cltv_delta))?,
        route_hints: parse_route_hints(&r.route_hints)?,
    })
}

/// `lnrpc.Route` → [`PaymentRoute`]; `method` names the call it came with.
pub fn payment_route(method: &'static str, r: &lnrpc::Route) -> R<PaymentRoute> {
    let hops = r
        .hops
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let field = |f: &str| format!("hops[{i}].{f}");
            Ok(RouteHop {
                chan_id: ChanId(h.chan_id),
                pubkey: node_id_hex(method, &field("pub_key"), &h.pub_key)?,
                amount_to_forward: msat(
                    method,
                    &field("amt_to_forward_msat"),
                    h.amt_to_forward_msat,
                )?,
                fee: msat(method, &field("fee_msat"), h.fee_msat)?,
                expiry: h.expiry,
                mpp: match &h.mpp_record {
                    None => None,
                    Some(m) => Some(MppRecord {
                        payment_addr: hash32(
                            method,
                            &field("mpp_record.payment_addr"),
                            &m.payment_addr,
                        )?,
                        total: msat(
                            method,
                            &field("mpp_record.total_amt_msat"),
                            m.total_amt_msat,
                        )?,
                    }),
                },
            })
        })
        .collect::<R<Vec<_>>>()?;
    Ok(PaymentRoute {
        total_time_lock: r.total_time_lock,
        total_amount: msat(method, "total_amt_msat", r.total_amt_msat)?,
        total_fees: msat(method, "total_fees_msat", r.total_fees_msat)?,
        hops,
    })
}

/// [`PaymentRoute`] → `lnrpc.Route`. Rejects amounts the wire cannot carry.
pub fn wire_route(method: &'static str, r: &PaymentRoute) -> R<lnrpc::Route> {
    let amount = |what: &str, m: Msat| {
        i64::try_from(m.0)
            .map_err(|_| NodeError::invalid_argument(method, format!("{what} is too large")))
    };
    #[allow(deprecated)]
    let hops = r
        .hops
        .iter()
        .map(|h| {
            Ok(lnrpc::Hop {
                chan_id: h.chan_id.0,
                expiry: h.expiry,
                amt_to_forward_msat: amount("amt_to_forward_msat", h.amount_to_forward)?,
                amt_to_forward: amount("amt_to_forward_msat", h.amount_to_forward)? / 1_000,
                fee_msat: amount("fee_msat", h.fee)?,
                fee: amount("fee_msat", h.fee)? / 1_000,
                pub_key: h.pubkey.to_string(),
                tlv_payload: true,
                mpp_record: match h.mpp {
                    None => None,
                    Some(m) => Some(lnrpc::MppRecord {
                        payment_addr: m.payment_addr.to_vec(),
                        total_amt_msat: amount("mpp_record.total_amt_msat", m.total)?,
                    }),
                },
                ..Default::default()
            })
        })
        .collect::<R<Vec<_>>>()?;
    #[allow(deprecated)]
    Ok(lnrpc::Route {
        total_time_lock: r.total_time_lock,
        total_amt_msat: amount("total_amt_msat", r.total_amount)?,
        total_amt: amount("total_amt_msat", r.total_amount)? / 1_000,
        total_fees_msat: amount("total_fees_msat", r.total_fees)?,
        total_fees: amount("total_fees_msat", r.total_fees)? / 1_000,
        hops,
        ..Default::default()
    })
}

/// `lnrpc.HTLCAttempt` → [`HtlcOutcome`]; an attempt still in flight is an invalid answer
/// from `SendToRouteV2`, which returns only once the HTLC is resolved.
pub fn htlc_outcome(a: &lnrpc::HtlcAttempt) -> R<HtlcOutcome> {
    use lnrpc::failure::FailureCode as C;
    use lnrpc::htlc_attempt::HtlcStatus as W;
    const M: &str = "send_to_route";
    match a.status() {
        W::Succeeded => Ok(HtlcOutcome::Settled {
            preimage: Preimage(hash32(M, "preimage", &a.preimage)?),
        }),
        W::Failed => {
            let code = a.failure.as_ref().map_or(C::UnknownFailure, |f| f.code());
            Ok(HtlcOutcome::Failed(match code {
                C::IncorrectOrUnknownPaymentDetails => {
                    HtlcFailure::IncorrectOrUnknownPaymentDetails
                }
                C::MppTimeout => HtlcFailure::MppTimeout,
                C::TemporaryChannelFailure => HtlcFailure::TemporaryChannelFailure,
                other => HtlcFailure::Other(other.as_str_name().to_owned()),
            }))
        }
        W::InFlight => Err(NodeError::invalid_response(
            M,
            "the HTLC attempt is still in flight",
        )),
    }
}

/// [`HtlcOutcome`] → `lnrpc.HTLCAttempt`, as `SendToRouteV2` answers.
pub fn htlc_attempt(o: &HtlcOutcome, route: lnrpc::Route) -> lnrpc::HtlcAttempt {
    use lnrpc::failure::FailureCode as C;
    use lnrpc::htlc_attempt::HtlcStatus as W;
    let (status, preimage, code) = match o {
        HtlcOutcome::Settled { preimage } => (W::Succeeded, preimage.0.to_vec(), None),
        HtlcOutcome::Failed(f) => {
            let code = match f {
                HtlcFailure::IncorrectOrUnknownPaymentDetails => {
                    C::IncorrectOrUnknownPaymentDetails
                }
                HtlcFailure::MppTimeout => C::MppTimeout,
                HtlcFailure::TemporaryChannelFailure => C::TemporaryChannelFailure,
                HtlcFailure::Other(name) => C::from_str_name(name).unwrap_or(C::UnknownFailure),
            };
            (W::Failed, Vec::new(), Some(code))
        }
    };
    lnrpc::HtlcAttempt {
        status: status.into(),
        route: Some(route),
        preimage,
        failure: code.map(|c| lnrpc::Failure {
            code: c.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `signrpc.KeyDescriptor` → [`KeyDescriptor`].
pub fn key_descriptor(method: &'static str, k: &signrpc::KeyDescriptor) -> R<KeyDescriptor> {
    let loc = k
        .key_loc
        .as_ref()
        .ok_or_else(|| NodeError::invalid_response(method, "key descriptor without locator"))?;
    Ok(KeyDescriptor {
        pubkey: pubkey(method, "raw_key_bytes", &k.raw_key_bytes)?,
        locator: KeyLocator {
            family: loc.key_family,
            index: loc.key_index,
        },
    })
}

/// [`KeyLocator`] → `signrpc.KeyLocator`.
pub fn key_locator(l: KeyLocator) -> signrpc::KeyLocator {
    signrpc::KeyLocator {
        key_family: l.family,
        key_index: l.index,
    }
}

fn tx_out(o: &bitcoin::TxOut) -> R<signrpc::TxOut> {
    Ok(signrpc::TxOut {
        value: i64::try_from(o.value.to_sat()).map_err(|_| {
            NodeError::invalid_argument("sign_output_raw", "output value too large")
        })?,
        pk_script: o.script_pubkey.to_bytes(),
    })
}

/// [`SignRequest`] → `SignReq`.
pub fn sign_request(r: &SignRequest) -> R<signrpc::SignReq> {
    let mut sign_descs = Vec::with_capacity(r.inputs.len());
    for i in &r.inputs {
        let (witness_script, sign_method) = match &i.method {
            SignMethod::WitnessV0 { witness_script } => {
                (witness_script.to_bytes(), signrpc::SignMethod::WitnessV0)
            }
            SignMethod::TaprootScriptSpend { leaf_script } => (
                leaf_script.to_bytes(),
                signrpc::SignMethod::TaprootScriptSpend,
            ),
        };
        sign_descs.push(signrpc::SignDescriptor {
            key_desc: Some(signrpc::KeyDescriptor {
                raw_key_bytes: i.key.pubkey.serialize().to_vec(),
                key_loc: Some(key_locator(i.key.locator)),
            }),
            witness_script,
            output: Some(tx_out(&i.output)?),
            sighash: i.sighash,
            input_index: i32::try_from(i.input_index).map_err(|_| {
                NodeError::invalid_argument("sign_output_raw", "input index too large")
            })?,
            sign_method: sign_method as i32,
            ..Default::default()
        });
    }
    Ok(signrpc::SignReq {
        raw_tx_bytes: serialize(&r.tx),
        sign_descs,
        prev_outputs: r.prev_outputs.iter().map(tx_out).collect::<R<_>>()?,
    })
}

/// [`MuSig2SessionRequest`] → `MuSig2SessionRequest`.
pub fn musig2_session_request(r: &MuSig2SessionRequest) -> signrpc::MuSig2SessionRequest {
    signrpc::MuSig2SessionRequest {
        key_loc: Some(key_locator(r.key)),
        all_signer_pubkeys: r.signer_pubkeys.clone(),
        other_signer_public_nonces: r.other_nonces.iter().map(|n| n.to_vec()).collect(),
        tweaks: Vec::new(),
        taproot_tweak: r.taproot_tweak.as_ref().map(|t| signrpc::TaprootTweakDesc {
            script_root: t.script_root.clone(),
            key_spend_only: t.key_spend_only,
        }),
        version: match r.version {
            MuSig2Version::V040 => signrpc::MuSig2Version::Musig2VersionV040,
            MuSig2Version::V100Rc2 => signrpc::MuSig2Version::Musig2VersionV100rc2,
        } as i32,
        pregenerated_local_nonce: Vec::new(),
    }
}

/// `MuSig2SessionResponse` → [`MuSig2Session`].
pub fn musig2_session(r: &signrpc::MuSig2SessionResponse) -> R<MuSig2Session> {
    const M: &str = "musig2_create_session";
    Ok(MuSig2Session {
        id: hash32(M, "session_id", &r.session_id)?,
        combined_key: r.combined_key.clone(),
        taproot_internal_key: r.taproot_internal_key.clone(),
        local_nonces: r
            .local_public_nonces
            .as_slice()
            .try_into()
            .map_err(|_| NodeError::invalid_response(M, "local_public_nonces is not 66 bytes"))?,
        have_all_nonces: r.have_all_nonces,
    })
}

/// [`ConfRequest`] → `chainrpc.ConfRequest`.
pub fn conf_request(r: &ConfRequest) -> chainrpc::ConfRequest {
    chainrpc::ConfRequest {
        txid: r
            .txid
            .map(|t| t.to_byte_array().to_vec())
            .unwrap_or_default(),
        script: r.script.to_bytes(),
        num_confs: r.num_confs,
        height_hint: r.height_hint.0,
        include_block: false,
    }
}

/// `chainrpc.ConfEvent` → [`ConfUpdate`].
pub fn conf_update(e: &chainrpc::ConfEvent) -> R<ConfUpdate> {
    use chainrpc::conf_event::Event;
    const M: &str = "register_confirmations";
    match &e.event {
        Some(Event::Conf(d)) => Ok(ConfUpdate::Confirmed {
            tx: tx(M, "raw_tx", &d.raw_tx)?,
            block_hash: BlockHash::from_byte_array(hash32(M, "block_hash", &d.block_hash)?),
            block_height: BlockHeight(d.block_height),
            tx_index: d.tx_index,
        }),
        Some(Event::Reorg(_)) => Ok(ConfUpdate::Reorg),
        None => Err(NodeError::invalid_response(M, "empty confirmation event")),
    }
}

/// [`SpendRequest`] → `chainrpc.SpendRequest`.
pub fn spend_request(r: &SpendRequest) -> chainrpc::SpendRequest {
    chainrpc::SpendRequest {
        outpoint: r.outpoint.map(|o| chainrpc::Outpoint {
            hash: o.txid.to_byte_array().to_vec(),
            index: o.vout,
        }),
        script: r.script.to_bytes(),
        height_hint: r.height_hint.0,
    }
}

/// `chainrpc.SpendEvent` → [`SpendUpdate`].
pub fn spend_update(e: &chainrpc::SpendEvent) -> R<SpendUpdate> {
    use chainrpc::spend_event::Event;
    const M: &str = "register_spend";
    match &e.event {
        Some(Event::Spend(d)) => {
            let op = d
                .spending_outpoint
                .as_ref()
                .ok_or_else(|| NodeError::invalid_response(M, "spend without spent outpoint"))?;
            Ok(SpendUpdate::Spent {
                outpoint: OutPoint {
                    txid: Txid::from_byte_array(hash32(M, "spending_outpoint.hash", &op.hash)?),
                    vout: op.index,
                },
                spending_tx: tx(M, "raw_spending_tx", &d.raw_spending_tx)?,
                input_index: d.spending_input_index,
                height: BlockHeight(d.spending_height),
            })
        }
        Some(Event::Reorg(_)) => Ok(SpendUpdate::Reorg),
        None => Err(NodeError::invalid_response(M, "empty spend event")),
    }
}

/// `chainrpc.BlockEpoch` → [`BlockEpoch`].
pub fn block_epoch(b: &chainrpc::BlockEpoch) -> R<BlockEpoch> {
    Ok(BlockEpoch {
        hash: BlockHash::from_byte_array(hash32("register_block_epochs", "hash", &b.hash)?),
        height: BlockHeight(b.height),
    })
}

/// lnd's sat/kw estimate → [`FeeRate`]; non-positive estimates are rejected.
pub fn fee_rate(sat_per_kw: i64) -> R<FeeRate> {
    match u64::try_from(sat_per_kw) {
        Ok(v) if v > 0 => Ok(FeeRate::from_sat_per_kwu(v)),
        _ => Err(NodeError::invalid_response(
            "estimate_fee",
            format!("fee rate {sat_per_kw} sat/kw is not positive"),
        )),
    }
}

/// [`SendOutputsRequest`] → `walletrpc.SendOutputsRequest`. Refuses what lnd would refuse
/// (no outputs, a label over 500 characters) before anything reaches the node; min_confs 0
/// sets `spend_unconfirmed`, as lnd needs both to agree.
pub fn send_outputs_request(r: &SendOutputsRequest) -> R<walletrpc::SendOutputsRequest> {
    const M: &str = "send_outputs";
    if r.outputs.is_empty() {
        return Err(NodeError::invalid_argument(M, "no outputs to pay"));
    }
    if r.label.chars().count() > super::types::MAX_LABEL_CHARS {
        return Err(NodeError::invalid_argument(
            M,
            format!(
                "the label has more than {} characters",
                super::types::MAX_LABEL_CHARS
            ),
        ));
    }
    let outputs = r
        .outputs
        .iter()
        .map(|o| {
            Ok(signrpc::TxOut {
                value: i64::try_from(o.value.to_sat())
                    .map_err(|_| NodeError::invalid_argument(M, "output value too large"))?,
                pk_script: o.script_pubkey.to_bytes(),
            })
        })
        .collect::<R<_>>()?;
    let strategy = match r.coin_selection {
        super::types::CoinSelection::NodeDefault => {
            lnrpc::CoinSelectionStrategy::StrategyUseGlobalConfig
        }
        super::types::CoinSelection::Largest => lnrpc::CoinSelectionStrategy::StrategyLargest,
        super::types::CoinSelection::Random => lnrpc::CoinSelectionStrategy::StrategyRandom,
    };
    Ok(walletrpc::SendOutputsRequest {
        sat_per_kw: i64::try_from(r.fee_rate.to_sat_per_kwu())
            .map_err(|_| NodeError::invalid_argument(M, "fee rate too large"))?,
        outputs,
        label: r.label.clone(),
        min_confs: i32::try_from(r.min_confs)
            .map_err(|_| NodeError::invalid_argument(M, "min_confs too large"))?,
        spend_unconfirmed: r.min_confs == 0,
        coin_selection_strategy: strategy as i32,
    })
}

/// `SendOutputsResponse` → the published transaction, which must pay every requested output.
pub fn sent_outputs(
    request: &SendOutputsRequest,
    r: &walletrpc::SendOutputsResponse,
) -> R<bitcoin::Transaction> {
    let t = tx("send_outputs", "raw_tx", &r.raw_tx)?;
    for o in &request.outputs {
        if !t.output.contains(o) {
            return Err(NodeError::invalid_response(
                "send_outputs",
                format!(
                    "transaction {} does not pay {} sat to {}",
                    t.compute_txid(),
                    o.value.to_sat(),
                    o.script_pubkey
                ),
            ));
        }
    }
    Ok(t)
}

/// `lnrpc.ChannelEdge` → [`ChannelEdge`].
pub fn channel_edge(m: &'static str, e: &lnrpc::ChannelEdge) -> R<ChannelEdge> {
    let node = |field: &str, v: &str| {
        v.parse::<NodeId>()
            .map_err(|err| NodeError::invalid_response(m, format!("{field} {v:?}: {err}")))
    };
    let policy = |p: &Option<lnrpc::RoutingPolicy>| -> R<Option<PeerPolicy>> {
        let Some(p) = p else { return Ok(None) };
        let range = |what: &str| NodeError::invalid_response(m, format!("{what} is out of range"));
        Ok(Some(PeerPolicy {
            fee_base_msat: u32::try_from(p.fee_base_msat).map_err(|_| range("fee_base_msat"))?,
            fee_ppm: u32::try_from(p.fee_rate_milli_msat)
                .map_err(|_| range("fee_rate_milli_msat"))?,
            cltv_delta: u16::try_from(p.time_lock_delta).map_err(|_| range("time_lock_delta"))?,
        }))
    };
    Ok(ChannelEdge {
        chan_id: ChanId(e.channel_id),
        chan_point: e.chan_point.parse().map_err(|err| {
            NodeError::invalid_response(m, format!("chan_point {:?}: {err}", e.chan_point))
        })?,
        node1: node("node1_pub", &e.node1_pub)?,
        node2: node("node2_pub", &e.node2_pub)?,
        capacity: sat(m, "capacity", e.capacity)?,
        policy1: policy(&e.node1_policy)?,
        policy2: policy(&e.node2_policy)?,
    })
}

/// lnd's route hints → domain ones; the error names the hop and what is wrong with it.
pub fn parse_route_hints(hints: &[lnrpc::RouteHint]) -> Result<Vec<RouteHint>, String> {
    hints
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let hops = r
                .hop_hints
                .iter()
                .map(|h| {
                    Ok(crate::domain::HopHint {
                        node: h.node_id.parse().map_err(|e| {
                            format!("hint {i}: node_id {:?} is not a node key: {e}", h.node_id)
                        })?,
                        chan_id: ChanId(h.chan_id),
                        fee_base_msat: h.fee_base_msat,
                        fee_ppm: h.fee_proportional_millionths,
                        cltv_delta: u16::try_from(h.cltv_expiry_delta).map_err(|_| {
                            format!(
                                "hint {i}: cltv_expiry_delta {} is above 65535",
                                h.cltv_expiry_delta
                            )
                        })?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(RouteHint { hops })
        })
        .collect()
}

/// Route hints → lnd's, for an invoice.
pub fn route_hints(hints: &[RouteHint]) -> Vec<lnrpc::RouteHint> {
    hints
        .iter()
        .map(|r| lnrpc::RouteHint {
            hop_hints: r
                .hops
                .iter()
                .map(|h| lnrpc::HopHint {
                    node_id: h.node.to_string(),
                    chan_id: h.chan_id.0,
                    fee_base_msat: h.fee_base_msat,
                    fee_proportional_millionths: h.fee_ppm,
                    cltv_expiry_delta: u32::from(h.cltv_delta),
                })
                .collect(),
        })
        .collect()
}

/// [`HoldInvoiceRequest`] → `AddHoldInvoiceRequest`.
pub fn hold_invoice_request(r: &HoldInvoiceRequest) -> R<invoicesrpc::AddHoldInvoiceRequest> {
    let big = |what: &str| {
        NodeError::invalid_argument("add_hold_invoice", format!("{what} is too large"))
    };
    Ok(invoicesrpc::AddHoldInvoiceRequest {
        memo: r.memo.clone(),
        hash: r.hash.0.to_vec(),
        value_msat: i64::try_from(r.amount.0).map_err(|_| big("amount"))?,
        expiry: i64::try_from(r.expiry.as_secs()).map_err(|_| big("expiry"))?,
        cltv_expiry: r.cltv_expiry,
        route_hints: route_hints(&r.route_hints),
        private: r.private,
        ..Default::default()
    })
}

/// `lnrpc.Utxo` → [`WalletUtxo`].
pub fn utxo(u: &lnrpc::Utxo) -> R<WalletUtxo> {
    const M: &str = "list_unspent";
    let o = u
        .outpoint
        .as_ref()
        .ok_or_else(|| NodeError::invalid_response(M, "a utxo without an outpoint"))?;
    let txid = if o.txid_bytes.len() == 32 {
        bitcoin::Txid::from_slice(&o.txid_bytes)
            .map_err(|e| NodeError::invalid_response(M, format!("txid_bytes: {e}")))?
    } else {
        <bitcoin::Txid as std::str::FromStr>::from_str(&o.txid_str)
            .map_err(|e| NodeError::invalid_response(M, format!("txid_str: {e}")))?
    };
    Ok(WalletUtxo {
        outpoint: bitcoin::OutPoint {
            txid,
            vout: o.output_index,
        },
        amount: crate::domain::Sat(
            u64::try_from(u.amount_sat)
                .map_err(|_| NodeError::invalid_response(M, "negative amount_sat"))?,
        ),
        confirmations: u32::try_from(u.confirmations.max(0)).unwrap_or(u32::MAX),
    })
}

/// [`InvoiceRequest`] → `lnrpc.Invoice` for `AddInvoice`.
pub fn invoice_request(r: &InvoiceRequest) -> R<lnrpc::Invoice> {
    let big =
        |what: &str| NodeError::invalid_argument("add_invoice", format!("{what} is too large"));
    Ok(lnrpc::Invoice {
        memo: r.memo.clone(),
        r_preimage: r.preimage.0.to_vec(),
        value_msat: i64::try_from(r.amount.0).map_err(|_| big("amount"))?,
        expiry: i64::try_from(r.expiry.as_secs()).map_err(|_| big("expiry"))?,
        route_hints: route_hints(&r.route_hints),
        private: r.private,
        ..Default::default()
    })
}

/// `lnrpc.Invoice` → [`InvoiceUpdate`].
pub fn invoice_update(i: &lnrpc::Invoice) -> R<InvoiceUpdate> {
    use lnrpc::invoice::InvoiceState as W;
    const M: &str = "subscribe_single_invoice";
    Ok(InvoiceUpdate {
        hash: SwapHash(hash32(M, "r_hash", &i.r_hash)?),
        state: match i.state() {
            W::Open => InvoiceState::Open,
            W::Accepted => InvoiceState::Accepted,
            W::Settled => InvoiceState::Settled,
            W::Canceled => InvoiceState::Canceled,
        },
        amount: msat(M, "value_msat", i.value_msat)?,
        amount_paid: msat(M, "amt_paid_msat", i.amt_paid_msat)?,
    })
}
