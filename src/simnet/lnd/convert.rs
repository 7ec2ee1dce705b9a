//! The server direction of `crate::lnd::convert`: domain answers become lnd's wire messages,
//! and wire requests become the port's domain requests.
//!
//! Requests are checked here, as lnd checks them: a field of the wrong length or an
//! impossible value is refused with an `InvalidArgument` status naming the field, never a
//! panic. Answers are filled the way lnd fills them (deprecated satoshi fields alongside
//! the millisatoshi ones), so any client reading either form sees consistent values.

use std::time::Duration;

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use tonic::Status;

use super::status::bad_request;
use crate::domain::{
    Channel, ChannelEvent, ForwardingPage, Network, NodeInfo, Peer, SettlementPage, SwapHash,
};
use crate::lnd::types::{
    BlockEpoch, ConfRequest, ConfUpdate, DecodedInvoice, HoldInvoiceRequest, InvoiceRequest,
    InvoiceState, InvoiceUpdate, KeyDescriptor, KeyLocator, MuSig2Session, MuSig2SessionRequest,
    MuSig2Version, NodeVersion, PaymentFailure, PaymentRequest, PaymentStatus, PaymentUpdate,
    SpendRequest, SpendUpdate, TaprootTweak,
};
use crate::lnd::wire::{chainrpc, invoicesrpc, lnrpc, routerrpc, signrpc, verrpc};

type R<T> = Result<T, Status>;

/// lnd's default expiry of an invoice added without one (`DefaultInvoiceExpiry`).
pub const DEFAULT_INVOICE_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);
/// lnd's default final CLTV delta of an invoice added without one (`bitcoin.timelockdelta`).
pub const DEFAULT_INVOICE_CLTV: u64 = 80;
/// How many parts lnd may split a payment into when the request leaves `max_parts` at 0.
pub const DEFAULT_MAX_PARTS: u32 = 16;

/// A signed amount on the wire; amounts beyond `i64::MAX` do not exist on any chain.
fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Exactly 32 bytes, or a refusal naming the field.
pub fn bytes32(field: &str, bytes: &[u8]) -> R<[u8; 32]> {
    bytes.try_into().map_err(|_| {
        bad_request(format!(
            "{field} must be exactly 32 bytes, got {}",
            bytes.len()
        ))
    })
}

/// The name lnd reports for the chain's network. The simnet presents itself as a regtest
/// lnd, since that is the real setup it stands in for and what sluice is configured with.
pub fn network_name(network: Network) -> &'static str {
    match network {
        Network::Simnet => Network::Regtest.as_str(),
        other => other.as_str(),
    }
}

/// [`NodeInfo`] → `GetInfoResponse`; counts come from the caller, which asks the node.
pub fn get_info(
    info: &NodeInfo,
    active_channels: u32,
    inactive_channels: u32,
    peers: u32,
) -> lnrpc::GetInfoResponse {
    let network = network_name(info.network);
    #[allow(deprecated)]
    lnrpc::GetInfoResponse {
        version: info.version.clone(),
        identity_pubkey: info.pubkey.to_string(),
        alias: info.alias.clone(),
        num_active_channels: active_channels,
        num_inactive_channels: inactive_channels,
        num_peers: peers,
        block_height: info.block_height.0,
        synced_to_chain: info.synced_to_chain,
        synced_to_graph: info.synced_to_graph,
        wallet_synced: info.synced_to_chain,
        testnet: matches!(network, "testnet" | "testnet4"),
        chains: vec![lnrpc::Chain {
            chain: "bitcoin".to_owned(),
            network: network.to_owned(),
        }],
        ..Default::default()
    }
}

/// [`NodeVersion`] → `verrpc.Version`.
pub fn version(v: &NodeVersion) -> verrpc::Version {
    verrpc::Version {
        commit: format!("v{}", v.version),
        commit_hash: v.commit_hash.clone(),
        version: v.version.clone(),
        app_major: v.major,
        app_minor: v.minor,
        app_patch: v.patch,
        app_pre_release: v
            .version
            .split_once('-')
            .map(|(_, pre)| pre.to_owned())
            .unwrap_or_default(),
        build_tags: v.build_tags.clone(),
        go_version: String::new(),
    }
}

fn constraints(reserve: crate::domain::Sat) -> lnrpc::ChannelConstraints {
    lnrpc::ChannelConstraints {
        chan_reserve_sat: reserve.0,
        ..Default::default()
    }
}

/// [`Channel`] → `lnrpc.Channel`. The port keeps only the count and sum of pending HTLCs, so
/// that many HTLCs are listed whose amounts add up to the sum.
pub fn channel(c: &Channel) -> lnrpc::Channel {
    let count = u64::from(c.pending_htlc_count);
    let pending_htlcs = (0..count)
        .map(|i| {
            let share = c.pending_htlc_amount.0 / count;
            let rest = if i == 0 {
                c.pending_htlc_amount.0 % count
            } else {
                0
            };
            lnrpc::Htlc {
                amount: signed(share + rest),
                htlc_index: i,
                locked_in: true,
                ..Default::default()
            }
        })
        .collect();
    #[allow(deprecated)]
    lnrpc::Channel {
        active: c.active,
        remote_pubkey: c.peer.to_string(),
        channel_point: c.channel_point.clone(),
        chan_id: c.chan_id.0,
        capacity: signed(c.capacity.0),
        local_balance: signed(c.local_balance.0),
        remote_balance: signed(c.remote_balance.0),
        commit_fee: signed(c.commit_fee.0),
        unsettled_balance: signed(c.pending_htlc_amount.0),
        total_satoshis_sent: signed(c.total_sent.0),
        total_satoshis_received: signed(c.total_received.0),
        pending_htlcs,
        private: c.private,
        initiator: c.initiator,
        local_chan_reserve_sat: signed(c.local_reserve.0),
        remote_chan_reserve_sat: signed(c.remote_reserve.0),
        local_constraints: Some(constraints(c.local_reserve)),
        remote_constraints: Some(constraints(c.remote_reserve)),
        peer_alias: c.peer_alias.clone().unwrap_or_default(),
        commitment_type: lnrpc::CommitmentType::Anchors as i32,
        ..Default::default()
    }
}

/// "txid:index" → `ChannelPoint` in the string form, which lnd accepts and sends alike.
fn channel_point(point: &str) -> lnrpc::ChannelPoint {
    let (txid, index) = point.rsplit_once(':').unwrap_or((point, "0"));
    lnrpc::ChannelPoint {
        funding_txid: Some(lnrpc::channel_point::FundingTxid::FundingTxidStr(
            txid.to_owned(),
        )),
        output_index: index.parse().unwrap_or(0),
    }
}

/// [`ChannelEvent`] → `ChannelEventUpdate`, with lnd's `type` field set to match.
pub fn channel_event(e: &ChannelEvent) -> lnrpc::ChannelEventUpdate {
    use lnrpc::channel_event_update::{Channel as C, UpdateType as T};
    let (kind, inner) = match e {
        ChannelEvent::Opened(c) => (T::OpenChannel, C::OpenChannel(channel(c))),
        ChannelEvent::Updated(c) => (
            T::ChannelUpdate,
            C::UpdatedChannel(lnrpc::ChannelCommitUpdate {
                channel: Some(channel(c)),
            }),
        ),
        ChannelEvent::Closed {
            chan_id,
            channel_point,
        } => (
            T::ClosedChannel,
            C::ClosedChannel(lnrpc::ChannelCloseSummary {
                channel_point: channel_point.clone(),
                chan_id: chan_id.0,
                ..Default::default()
            }),
        ),
        ChannelEvent::Active { channel_point: p } => {
            (T::ActiveChannel, C::ActiveChannel(channel_point(p)))
        }
        ChannelEvent::Inactive { channel_point: p } => {
            (T::InactiveChannel, C::InactiveChannel(channel_point(p)))
        }
        ChannelEvent::PendingOpen { channel_point: p } => {
            let (txid, index) = p.rsplit_once(':').unwrap_or((p.as_str(), "0"));
            let txid = txid
                .parse::<Txid>()
                .map(|t| t.to_byte_array().to_vec())
                .unwrap_or_default();
            (
                T::PendingOpenChannel,
                C::PendingOpenChannel(lnrpc::PendingUpdate {
                    txid,
                    output_index: index.parse().unwrap_or(0),
                    ..Default::default()
                }),
            )
        }
        ChannelEvent::FullyResolved { channel_point: p } => (
            T::FullyResolvedChannel,
            C::FullyResolvedChannel(channel_point(p)),
        ),
        ChannelEvent::FundingTimeout { channel_point: p } => (
            T::ChannelFundingTimeout,
            C::ChannelFundingTimeout(channel_point(p)),
        ),
    };
    lnrpc::ChannelEventUpdate {
        channel: Some(inner),
        r#type: kind as i32,
    }
}

/// [`Peer`] → `lnrpc.Peer`.
pub fn peer(p: &Peer) -> lnrpc::Peer {
    lnrpc::Peer {
        pub_key: p.pubkey.to_string(),
        address: p.address.clone(),
        inbound: p.inbound,
        ..Default::default()
    }
}

/// [`ForwardingPage`] → `ForwardingHistoryResponse`, satoshi fields rounded down as lnd does.
pub fn forwarding_page(page: &ForwardingPage) -> lnrpc::ForwardingHistoryResponse {
    #[allow(deprecated)]
    let forwarding_events = page
        .events
        .iter()
        .map(|e| lnrpc::ForwardingEvent {
            timestamp: e.timestamp_ns / 1_000_000_000,
            timestamp_ns: e.timestamp_ns,
            chan_id_in: e.chan_in.0,
            chan_id_out: e.chan_out.0,
            amt_in: e.amount_in.0 / 1000,
            amt_out: e.amount_out.0 / 1000,
            fee: e.fee.0 / 1000,
            amt_in_msat: e.amount_in.0,
            amt_out_msat: e.amount_out.0,
            fee_msat: e.fee.0,
            ..Default::default()
        })
        .collect();
    lnrpc::ForwardingHistoryResponse {
        forwarding_events,
        last_offset_index: page.next_index_offset,
    }
}

/// A page of settled payment HTLCs → `ListPaymentsResponse`: one succeeded payment per HTLC,
/// its one attempt's route starting on the HTLC's channel.
pub fn payments_page(page: &SettlementPage, first_index: u64) -> lnrpc::ListPaymentsResponse {
    let payments = page
        .htlcs
        .iter()
        .enumerate()
        .map(|(n, h)| {
            let amount = i64::try_from(h.amount.0).unwrap_or(i64::MAX);
            let at_ns = i64::try_from(h.at_unix.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX);
            lnrpc::Payment {
                status: lnrpc::payment::PaymentStatus::Succeeded as i32,
                value_msat: amount,
                value_sat: amount / 1000,
                creation_time_ns: at_ns,
                payment_index: first_index + n as u64 + 1,
                htlcs: vec![lnrpc::HtlcAttempt {
                    status: lnrpc::htlc_attempt::HtlcStatus::Succeeded as i32,
                    attempt_time_ns: at_ns,
                    resolve_time_ns: at_ns,
                    route: Some(lnrpc::Route {
                        hops: vec![lnrpc::Hop {
                            chan_id: h.chan.0,
                            ..Default::default()
                        }],
                        total_amt_msat: amount,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    lnrpc::ListPaymentsResponse {
        payments,
        first_index_offset: first_index + 1,
        last_index_offset: page.next_index_offset,
        total_num_payments: 0,
    }
}

/// A page of settled invoice HTLCs → `ListInvoiceResponse`: one settled invoice per HTLC.
pub fn invoices_page(page: &SettlementPage, first_index: u64) -> lnrpc::ListInvoiceResponse {
    let invoices = page
        .htlcs
        .iter()
        .enumerate()
        .map(|(n, h)| {
            let amount = i64::try_from(h.amount.0).unwrap_or(i64::MAX);
            let at = i64::try_from(h.at_unix).unwrap_or(i64::MAX);
            lnrpc::Invoice {
                state: lnrpc::invoice::InvoiceState::Settled as i32,
                value_msat: amount,
                amt_paid_msat: amount,
                amt_paid_sat: amount / 1000,
                creation_date: at,
                settle_date: at,
                add_index: first_index + n as u64 + 1,
                htlcs: vec![lnrpc::InvoiceHtlc {
                    chan_id: h.chan.0,
                    amt_msat: h.amount.0,
                    accept_time: at,
                    resolve_time: at,
                    state: lnrpc::InvoiceHtlcState::Settled as i32,
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    lnrpc::ListInvoiceResponse {
        invoices,
        last_index_offset: page.next_index_offset,
        first_index_offset: first_index + 1,
    }
}

/// [`DecodedInvoice`] → `PayReq`.
pub fn pay_req(d: &DecodedInvoice) -> lnrpc::PayReq {
    lnrpc::PayReq {
        destination: d.destination.to_string(),
        payment_hash: d.payment_hash.to_string(),
        num_satoshis: signed(d.amount.0 / 1000),
        num_msat: signed(d.amount.0),
        timestamp: signed(d.timestamp_unix),
        expiry: signed(d.expiry.as_secs()),
        description: d.description.clone(),
        cltv_expiry: signed(d.min_final_cltv_delta),
        payment_addr: d.payment_addr.map(|a| a.to_vec()).unwrap_or_default(),
        route_hints: crate::lnd::convert::route_hints(&d.route_hints),
        ..Default::default()
    }
}

/// `SendPaymentRequest` → [`PaymentRequest`]. Only invoice payments exist in the port, so a
/// keysend-style request (no `payment_request`) is refused; lnd's own checks on the timeout
/// and the two fee-limit forms are kept.
pub fn payment_request(r: &routerrpc::SendPaymentRequest) -> R<PaymentRequest> {
    if r.payment_request.is_empty() {
        return Err(super::status::unsupported(
            "payments without payment_request (keysend, dest/amt)",
        ));
    }
    if r.timeout_seconds <= 0 {
        return Err(bad_request("timeout_seconds must be specified"));
    }
    if r.fee_limit_sat != 0 && r.fee_limit_msat != 0 {
        return Err(bad_request(
            "sat and msat arguments are mutually exclusive (fee_limit_sat, fee_limit_msat)",
        ));
    }
    let fee_limit_msat = if r.fee_limit_msat != 0 {
        r.fee_limit_msat
    } else {
        r.fee_limit_sat.saturating_mul(1000)
    };
    let fee_limit = u64::try_from(fee_limit_msat)
        .map_err(|_| bad_request("fee_limit_msat must not be negative"))?;
    Ok(PaymentRequest {
        invoice: r.payment_request.clone(),
        fee_limit: crate::domain::Msat(fee_limit),
        outgoing_chan_ids: r
            .outgoing_chan_ids
            .iter()
            .map(|c| crate::domain::ChanId(*c))
            .collect(),
        max_parts: if r.max_parts == 0 {
            DEFAULT_MAX_PARTS
        } else {
            r.max_parts
        },
        timeout: Duration::from_secs(u64::from(r.timeout_seconds.unsigned_abs())),
        cltv_limit: u32::try_from(r.cltv_limit).ok().filter(|l| *l > 0),
        last_hop: if r.last_hop_pubkey.is_empty() {
            None
        } else {
            Some(crate::domain::NodeId(
                r.last_hop_pubkey
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad_request("last_hop_pubkey must be 33 bytes"))?,
            ))
        },
    })
}

/// [`PaymentUpdate`] → `lnrpc.Payment`. lnd shows an all-zero preimage until the payment
/// succeeds.
pub fn payment(u: &PaymentUpdate) -> lnrpc::Payment {
    use lnrpc::payment::PaymentStatus as W;
    let (status, preimage, failure) = match &u.status {
        PaymentStatus::Initiated => (W::Initiated, [0u8; 32], None),
        PaymentStatus::InFlight => (W::InFlight, [0u8; 32], None),
        PaymentStatus::Succeeded { preimage } => (W::Succeeded, preimage.0, None),
        PaymentStatus::Failed(f) => (W::Failed, [0u8; 32], Some(failure_reason(*f))),
    };
    let htlcs = (0..u.htlcs_in_flight)
        .map(|i| lnrpc::HtlcAttempt {
            attempt_id: u64::from(i),
            status: lnrpc::htlc_attempt::HtlcStatus::InFlight as i32,
            ..Default::default()
        })
        .collect();
    #[allow(deprecated)]
    lnrpc::Payment {
        payment_hash: u.hash.to_string(),
        value: signed(u.amount.0 / 1000),
        value_sat: signed(u.amount.0 / 1000),
        value_msat: signed(u.amount.0),
        fee: signed(u.fee.0 / 1000),
        fee_sat: signed(u.fee.0 / 1000),
        fee_msat: signed(u.fee.0),
        payment_preimage: hex::encode(preimage),
        status: status as i32,
        failure_reason: failure.unwrap_or(lnrpc::PaymentFailureReason::FailureReasonNone) as i32,
        htlcs,
        ..Default::default()
    }
}

fn failure_reason(f: PaymentFailure) -> lnrpc::PaymentFailureReason {
    use lnrpc::PaymentFailureReason as W;
    match f {
        PaymentFailure::Timeout => W::FailureReasonTimeout,
        PaymentFailure::NoRoute => W::FailureReasonNoRoute,
        PaymentFailure::Error => W::FailureReasonError,
        PaymentFailure::IncorrectPaymentDetails => W::FailureReasonIncorrectPaymentDetails,
        PaymentFailure::InsufficientBalance => W::FailureReasonInsufficientBalance,
        PaymentFailure::Canceled => W::FailureReasonCanceled,
        PaymentFailure::Unknown => W::FailureReasonNone,
    }
}

/// A payment hash from its bytes.
pub fn swap_hash(field: &str, bytes: &[u8]) -> R<SwapHash> {
    bytes32(field, bytes).map(SwapHash)
}

/// [`KeyDescriptor`] → `signrpc.KeyDescriptor`.
pub fn key_descriptor(k: &KeyDescriptor) -> signrpc::KeyDescriptor {
    signrpc::KeyDescriptor {
        raw_key_bytes: k.pubkey.serialize().to_vec(),
        key_loc: Some(key_locator_wire(k.locator)),
    }
}

fn key_locator_wire(l: KeyLocator) -> signrpc::KeyLocator {
    signrpc::KeyLocator {
        key_family: l.family,
        key_index: l.index,
    }
}

/// `signrpc.KeyLocator` → [`KeyLocator`].
pub fn key_locator(l: &signrpc::KeyLocator) -> KeyLocator {
    KeyLocator {
        family: l.key_family,
        index: l.key_index,
    }
}

/// A public key from its 33 compressed bytes, or a refusal naming the field.
pub fn public_key(field: &str, bytes: &[u8]) -> R<PublicKey> {
    PublicKey::from_slice(bytes).map_err(|e| bad_request(format!("invalid {field}: {e}")))
}

/// A transaction from its consensus bytes, or a refusal naming the field.
pub fn transaction(field: &str, bytes: &[u8]) -> R<Transaction> {
    deserialize(bytes).map_err(|e| bad_request(format!("unable to decode {field}: {e}")))
}

/// `signrpc.TxOut` → [`TxOut`].
pub fn tx_out(field: &str, o: &signrpc::TxOut) -> R<TxOut> {
    let value = u64::try_from(o.value)
        .map_err(|_| bad_request(format!("{field}.value must not be negative")))?;
    Ok(TxOut {
        value: Amount::from_sat(value),
        script_pubkey: ScriptBuf::from_bytes(o.pk_script.clone()),
    })
}

/// `MuSig2SessionRequest` → [`MuSig2SessionRequest`]. Generic tweaks are not in the port.
pub fn musig2_session_request(r: &signrpc::MuSig2SessionRequest) -> R<MuSig2SessionRequest> {
    let key = r
        .key_loc
        .as_ref()
        .map(key_locator)
        .ok_or_else(|| bad_request("key_loc must be set"))?;
    if !r.tweaks.is_empty() {
        return Err(super::status::unsupported("MuSig2 generic tweaks"));
    }
    if !r.pregenerated_local_nonce.is_empty() {
        return Err(super::status::unsupported("pregenerated_local_nonce"));
    }
    let version = match r.version() {
        signrpc::MuSig2Version::Musig2VersionV040 => MuSig2Version::V040,
        signrpc::MuSig2Version::Musig2VersionV100rc2 => MuSig2Version::V100Rc2,
        signrpc::MuSig2Version::Musig2VersionUndefined => {
            return Err(bad_request("version must be set to a known MuSig2 version"));
        }
    };
    Ok(MuSig2SessionRequest {
        key,
        signer_pubkeys: r.all_signer_pubkeys.clone(),
        other_nonces: nonces(&r.other_signer_public_nonces)?,
        taproot_tweak: r.taproot_tweak.as_ref().map(|t| TaprootTweak {
            script_root: t.script_root.clone(),
            key_spend_only: t.key_spend_only,
        }),
        version,
    })
}

/// Public nonces, each exactly 66 bytes.
pub fn nonces(list: &[Vec<u8>]) -> R<Vec<[u8; 66]>> {
    list.iter()
        .map(|n| {
            n.as_slice().try_into().map_err(|_| {
                bad_request(format!(
                    "other_signer_public_nonces: each nonce must be 66 bytes, got {}",
                    n.len()
                ))
            })
        })
        .collect()
}

/// [`MuSig2Session`] → `MuSig2SessionResponse`, echoing the version asked for.
pub fn musig2_session(s: &MuSig2Session, version: i32) -> signrpc::MuSig2SessionResponse {
    signrpc::MuSig2SessionResponse {
        session_id: s.id.to_vec(),
        combined_key: s.combined_key.clone(),
        taproot_internal_key: s.taproot_internal_key.clone(),
        local_public_nonces: s.local_nonces.to_vec(),
        have_all_nonces: s.have_all_nonces,
        version,
    }
}

/// `chainrpc.ConfRequest` → [`ConfRequest`]; an empty txid watches the script alone.
pub fn conf_request(r: &chainrpc::ConfRequest) -> R<ConfRequest> {
    let txid = if r.txid.is_empty() || r.txid.iter().all(|b| *b == 0) {
        None
    } else {
        Some(Txid::from_byte_array(bytes32("txid", &r.txid)?))
    };
    if r.script.is_empty() {
        return Err(bad_request("script must be set"));
    }
    if r.num_confs == 0 {
        return Err(bad_request("num_confs must be greater than zero"));
    }
    Ok(ConfRequest {
        txid,
        script: ScriptBuf::from_bytes(r.script.clone()),
        num_confs: r.num_confs,
        height_hint: crate::domain::BlockHeight(r.height_hint),
    })
}

/// [`ConfUpdate`] → `ConfEvent`.
pub fn conf_event(u: &ConfUpdate) -> chainrpc::ConfEvent {
    use chainrpc::conf_event::Event;
    let event = match u {
        ConfUpdate::Confirmed {
            tx,
            block_hash,
            block_height,
            tx_index,
        } => Event::Conf(chainrpc::ConfDetails {
            raw_tx: serialize(tx),
            block_hash: block_hash.to_byte_array().to_vec(),
            block_height: block_height.0,
            tx_index: *tx_index,
            raw_block: Vec::new(),
        }),
        ConfUpdate::Reorg => Event::Reorg(chainrpc::Reorg {}),
    };
    chainrpc::ConfEvent { event: Some(event) }
}

/// `chainrpc.SpendRequest` → [`SpendRequest`]; a missing or all-zero outpoint watches the
/// script alone, as lnd reads it.
pub fn spend_request(r: &chainrpc::SpendRequest) -> R<SpendRequest> {
    let outpoint = match &r.outpoint {
        Some(o) if !o.hash.iter().all(|b| *b == 0) => Some(OutPoint {
            txid: Txid::from_byte_array(bytes32("outpoint.hash", &o.hash)?),
            vout: o.index,
        }),
        _ => None,
    };
    if r.script.is_empty() {
        return Err(bad_request("script must be set"));
    }
    Ok(SpendRequest {
        outpoint,
        script: ScriptBuf::from_bytes(r.script.clone()),
        height_hint: crate::domain::BlockHeight(r.height_hint),
    })
}

/// [`SpendUpdate`] → `SpendEvent`.
pub fn spend_event(u: &SpendUpdate) -> chainrpc::SpendEvent {
    use chainrpc::spend_event::Event;
    let event = match u {
        SpendUpdate::Spent {
            outpoint,
            spending_tx,
            input_index,
            height,
        } => Event::Spend(chainrpc::SpendDetails {
            spending_outpoint: Some(chainrpc::Outpoint {
                hash: outpoint.txid.to_byte_array().to_vec(),
                index: outpoint.vout,
            }),
            raw_spending_tx: serialize(spending_tx),
            spending_tx_hash: spending_tx.compute_txid().to_byte_array().to_vec(),
            spending_input_index: *input_index,
            spending_height: height.0,
        }),
        SpendUpdate::Reorg => Event::Reorg(chainrpc::Reorg {}),
    };
    chainrpc::SpendEvent { event: Some(event) }
}

/// [`BlockEpoch`] → `chainrpc.BlockEpoch`.
pub fn block_epoch(b: &BlockEpoch) -> chainrpc::BlockEpoch {
    chainrpc::BlockEpoch {
        hash: b.hash.to_byte_array().to_vec(),
        height: b.height.0,
    }
}

/// `AddHoldInvoiceRequest` → [`HoldInvoiceRequest`], with lnd's defaults for a zero expiry
/// or CLTV delta and its refusal of both amount forms at once.
pub fn hold_invoice_request(r: &invoicesrpc::AddHoldInvoiceRequest) -> R<HoldInvoiceRequest> {
    if r.value != 0 && r.value_msat != 0 {
        return Err(bad_request(
            "value and value_msat are mutually exclusive; set one of them",
        ));
    }
    let msat = if r.value_msat != 0 {
        r.value_msat
    } else {
        r.value.saturating_mul(1000)
    };
    let amount = u64::try_from(msat).map_err(|_| bad_request("value_msat must not be negative"))?;
    let expiry = u64::try_from(r.expiry).map_err(|_| bad_request("expiry must not be negative"))?;
    Ok(HoldInvoiceRequest {
        hash: swap_hash("hash", &r.hash)?,
        amount: crate::domain::Msat(amount),
        memo: r.memo.clone(),
        expiry: if expiry == 0 {
            DEFAULT_INVOICE_EXPIRY
        } else {
            Duration::from_secs(expiry)
        },
        cltv_expiry: if r.cltv_expiry == 0 {
            DEFAULT_INVOICE_CLTV
        } else {
            r.cltv_expiry
        },
        route_hints: route_hints(&r.route_hints)?,
        private: r.private,
    })
}

/// [`ChannelEdge`](crate::domain::ChannelEdge) → `lnrpc.ChannelEdge`.
pub fn channel_edge(e: &crate::domain::ChannelEdge) -> lnrpc::ChannelEdge {
    let policy = |p: &Option<crate::domain::PeerPolicy>| {
        p.map(|p| lnrpc::RoutingPolicy {
            time_lock_delta: u32::from(p.cltv_delta),
            fee_base_msat: i64::from(p.fee_base_msat),
            fee_rate_milli_msat: i64::from(p.fee_ppm),
            ..Default::default()
        })
    };
    lnrpc::ChannelEdge {
        channel_id: e.chan_id.0,
        chan_point: e.chan_point.to_string(),
        node1_pub: e.node1.to_string(),
        node2_pub: e.node2.to_string(),
        capacity: i64::try_from(e.capacity.0).unwrap_or(i64::MAX),
        node1_policy: policy(&e.policy1),
        node2_policy: policy(&e.policy2),
        ..Default::default()
    }
}

/// An invoice's route hints as lnd checks them: each hop's node a valid key, its CLTV delta
/// 16 bits.
pub fn route_hints(hints: &[lnrpc::RouteHint]) -> R<Vec<crate::domain::RouteHint>> {
    crate::lnd::convert::parse_route_hints(hints).map_err(bad_request)
}

/// `lnrpc.Invoice` (an `AddInvoice` request) → [`InvoiceRequest`]. lnd draws a preimage when
/// none is given; the simnet asks for one, since only the Loop In swap invoice uses this.
pub fn invoice_request(r: &lnrpc::Invoice) -> R<InvoiceRequest> {
    if r.value != 0 && r.value_msat != 0 {
        return Err(bad_request(
            "value and value_msat are mutually exclusive; set one of them",
        ));
    }
    let msat = if r.value_msat != 0 {
        r.value_msat
    } else {
        r.value.saturating_mul(1000)
    };
    let amount = u64::try_from(msat).map_err(|_| bad_request("value_msat must not be negative"))?;
    let expiry = u64::try_from(r.expiry).map_err(|_| bad_request("expiry must not be negative"))?;
    let preimage: [u8; 32] = r.r_preimage.as_slice().try_into().map_err(|_| {
        bad_request("r_preimage must be 32 bytes (the simnet does not draw preimages)")
    })?;
    Ok(InvoiceRequest {
        preimage: crate::domain::Preimage(preimage),
        amount: crate::domain::Msat(amount),
        memo: r.memo.clone(),
        expiry: if expiry == 0 {
            DEFAULT_INVOICE_EXPIRY
        } else {
            Duration::from_secs(expiry)
        },
        route_hints: route_hints(&r.route_hints)?,
        private: r.private,
    })
}

/// [`InvoiceUpdate`] → `lnrpc.Invoice`.
pub fn invoice(u: &InvoiceUpdate) -> lnrpc::Invoice {
    use lnrpc::invoice::InvoiceState as W;
    let state = match u.state {
        InvoiceState::Open => W::Open,
        InvoiceState::Accepted => W::Accepted,
        InvoiceState::Settled => W::Settled,
        InvoiceState::Canceled => W::Canceled,
    };
    #[allow(deprecated)]
    lnrpc::Invoice {
        r_hash: u.hash.0.to_vec(),
        value: signed(u.amount.0 / 1000),
        value_msat: signed(u.amount.0),
        settled: u.state == InvoiceState::Settled,
        amt_paid: signed(u.amount_paid.0 / 1000),
        amt_paid_sat: signed(u.amount_paid.0 / 1000),
        amt_paid_msat: signed(u.amount_paid.0),
        state: state as i32,
        ..Default::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "convert_tests.rs"]
mod tests;
