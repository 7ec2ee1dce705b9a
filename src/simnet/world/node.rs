//! [`SimNode`]: one simulated lnd node, implementing the `LightningNode` port over the shared
//! world. Each method locks the world, does its work synchronously and unlocks; streams are
//! [`notify`](super::notify) watchers.

use async_trait::async_trait;
use bitcoin::{Address, FeeRate, Transaction};
use futures::StreamExt;
use rand::RngCore;

use super::invoices::decode;
use super::keys::AddressKind;
use super::notify::{
    ChannelWatcher, ConfWatcher, EpochWatcher, InvoiceWatcher, PaymentWatcher, SpendWatcher, stream,
};
use super::{NodeIdx, SharedWorld, World, WorldError, lock};
use crate::domain::{
    BlockHeight, ChanId, Channel, ChannelEdge, ChannelEvent, ForwardingPage, Msat, Network, NodeId,
    NodeInfo, Peer, Preimage, Sat, SettledHtlc, SettlementPage, SwapHash,
};
use crate::lnd::types::{
    BlockEpoch, ConfRequest, ConfUpdate, DecodedInvoice, HoldInvoice, HoldInvoiceRequest,
    InvoiceRequest, InvoiceUpdate, KeyDescriptor, KeyLocator, MuSig2Session, MuSig2SessionRequest,
    NodeVersion, PaymentRequest, PaymentUpdate, SendFeeEstimate, SendOutputsRequest, SignRequest,
    SpendRequest, SpendUpdate, WalletUtxo,
};
use crate::lnd::types::{HtlcFailure, HtlcOutcome, PaymentRoute, PaymentStatus, RouteRequest};
use crate::lnd::{LightningNode, NodeError, NodeErrorKind, NodeResult, NodeStream};

/// The lnd version the simulated node reports.
pub const SIM_LND_VERSION: &str = "0.21.2-beta";

/// A handle on one simulated node; cheap to clone.
#[derive(Clone)]
pub struct SimNode {
    world: SharedWorld,
    idx: NodeIdx,
}

impl std::fmt::Debug for SimNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode").field("idx", &self.idx).finish()
    }
}

impl SimNode {
    /// The node called `alias` in `world`.
    pub fn new(world: SharedWorld, alias: &str) -> Result<SimNode, WorldError> {
        let idx = lock(&world).node_index(alias).ok_or_else(|| {
            WorldError::NotFound(format!("no node called `{alias}` in the world"))
        })?;
        Ok(SimNode { world, idx })
    }

    /// The node's index in its world.
    pub fn index(&self) -> NodeIdx {
        self.idx
    }

    /// The shared world.
    pub fn world(&self) -> &SharedWorld {
        &self.world
    }

    /// Runs `f` on the locked world with this node's index.
    pub fn with<T>(&self, f: impl FnOnce(&mut World, NodeIdx) -> T) -> T {
        f(&mut lock(&self.world), self.idx)
    }

    fn call<T>(
        &self,
        method: &'static str,
        f: impl FnOnce(&mut World, NodeIdx) -> Result<T, WorldError>,
    ) -> NodeResult<T> {
        self.with(f).map_err(|e| e.into_node(method))
    }

    /// The node's identity key.
    pub fn node_id(&self) -> NodeResult<NodeId> {
        self.call("node_id", |w, i| w.node_id(i))
    }

    /// Pays `amount` to `address` from the wallet at `fee_rate` and publishes the
    /// transaction (what the simnet Loop server funds HTLCs with).
    pub fn send_to_address(
        &self,
        address: &Address,
        amount: Sat,
        fee_rate: FeeRate,
    ) -> NodeResult<Transaction> {
        self.call("send_to_address", |w, i| {
            w.send_to_address(i, address, amount, fee_rate)
        })
    }

    /// Adds a plain invoice that settles when paid; returns the BOLT 11 string and hash.
    pub fn add_invoice(&self, amount: Msat, memo: &str) -> NodeResult<(String, SwapHash)> {
        self.call("add_invoice", |w, i| w.add_invoice(i, amount, memo))
    }

    /// Starts a payment with lnd's `SendPaymentV2` answers: `AlreadyExists` for a hash in
    /// flight or paid. The port's [`LightningNode::pay`] attaches to it instead.
    pub fn send_payment(&self, request: &PaymentRequest) -> NodeResult<NodeStream<PaymentUpdate>> {
        let hash = self.call("pay", |w, i| w.send_payment(i, request))?;
        Ok(self.track(hash))
    }

    /// The wallet's (confirmed, unconfirmed) balance.
    pub fn wallet_balance(&self) -> NodeResult<(Sat, Sat)> {
        self.call("wallet_balance", |w, i| w.wallet_balance(i))
    }

    fn track(&self, hash: SwapHash) -> NodeStream<PaymentUpdate> {
        stream(
            self.world.clone(),
            PaymentWatcher {
                node: self.idx,
                hash,
                last: None,
            },
        )
    }
}

#[async_trait]
impl LightningNode for SimNode {
    async fn get_info(&self) -> NodeResult<NodeInfo> {
        self.call("get_info", |w, i| {
            let node = w.node(i)?;
            Ok(NodeInfo {
                pubkey: node.id,
                alias: node.alias.clone(),
                block_height: w.height(),
                synced_to_chain: true,
                synced_to_graph: true,
                network: match w.network() {
                    Network::Simnet => Network::Regtest,
                    n => n,
                },
                version: format!("{SIM_LND_VERSION} commit=v{SIM_LND_VERSION}"),
            })
        })
    }

    async fn get_version(&self) -> NodeResult<NodeVersion> {
        Ok(NodeVersion {
            version: SIM_LND_VERSION.to_owned(),
            major: 0,
            minor: 21,
            patch: 2,
            commit_hash: format!("v{SIM_LND_VERSION}"),
            build_tags: [
                "signrpc",
                "walletrpc",
                "chainrpc",
                "invoicesrpc",
                "routerrpc",
            ]
            .map(str::to_owned)
            .to_vec(),
        })
    }

    async fn list_channels(&self) -> NodeResult<Vec<Channel>> {
        Ok(self.with(|w, i| w.list_channels(i)))
    }

    async fn subscribe_channel_events(&self) -> NodeResult<NodeStream<ChannelEvent>> {
        Ok(stream(
            self.world.clone(),
            ChannelWatcher { node: self.idx },
        ))
    }

    async fn onchain_balance(&self) -> NodeResult<(Sat, Sat)> {
        SimNode::wallet_balance(self)
    }

    async fn estimate_send_fee(
        &self,
        outputs: &[bitcoin::TxOut],
        conf_target: u32,
        min_confs: u32,
    ) -> NodeResult<SendFeeEstimate> {
        self.call("estimate_send_fee", |w, i| {
            let rate = w.estimate_fee(conf_target);
            let fee = w.estimate_send_outputs(
                i,
                outputs,
                rate,
                min_confs,
                crate::lnd::types::CoinSelection::NodeDefault,
            )?;
            Ok(SendFeeEstimate { fee, rate })
        })
    }

    async fn list_unspent(&self, min_confs: u32) -> NodeResult<Vec<WalletUtxo>> {
        self.call("list_unspent", |w, i| {
            let tip = w.height().0;
            Ok(w.wallet_coins(i)?
                .into_iter()
                .map(|c| WalletUtxo {
                    outpoint: c.outpoint,
                    amount: Sat(c.txout.value.to_sat()),
                    confirmations: c.confirmations(tip),
                })
                .filter(|u| u.confirmations >= min_confs)
                .collect())
        })
    }

    async fn list_peers(&self) -> NodeResult<Vec<Peer>> {
        self.call("list_peers", |w, me| {
            let mut peers: Vec<Peer> = Vec::new();
            for c in w.channels().iter().filter(|c| c.has(me) && c.active) {
                let other = c.other(me);
                let id = w.node_id(other)?;
                if peers.iter().all(|p| p.pubkey != id) {
                    peers.push(Peer {
                        pubkey: id,
                        address: format!("127.0.0.1:{}", 9735 + other),
                        inbound: c.a == other,
                    });
                }
            }
            Ok(peers)
        })
    }

    async fn node_alias(&self, node: NodeId) -> NodeResult<Option<String>> {
        Ok(self.with(|w, _| {
            w.node_by_id(&node)
                .and_then(|i| w.alias(i).ok().map(str::to_owned))
        }))
    }

    async fn announced_channels(&self, node: NodeId) -> NodeResult<Vec<ChannelEdge>> {
        self.call("announced_channels", |w, _| w.announced_edges(&node))
    }

    async fn channel_edge(&self, chan: ChanId) -> NodeResult<ChannelEdge> {
        self.call("channel_edge", |w, i| w.channel_edge(i, chan))
    }

    async fn forwarding_history(
        &self,
        start_unix: u64,
        end_unix: u64,
        index_offset: u32,
        max_events: u32,
    ) -> NodeResult<ForwardingPage> {
        self.call("forwarding_history", |w, i| {
            let end = if end_unix == 0 { u64::MAX } else { end_unix };
            let in_window: Vec<_> = w
                .node(i)?
                .forwards
                .iter()
                .filter(|f| {
                    let secs = f.timestamp_ns / 1_000_000_000;
                    secs >= start_unix && secs < end
                })
                .copied()
                .collect();
            let events: Vec<_> = in_window
                .into_iter()
                .skip(index_offset as usize)
                .take(max_events as usize)
                .collect();
            let next = index_offset + u32::try_from(events.len()).unwrap_or(u32::MAX);
            Ok(ForwardingPage {
                events,
                next_index_offset: next,
            })
        })
    }

    async fn payment_settlements(&self, index_offset: u64, max: u64) -> NodeResult<SettlementPage> {
        self.call("list_payments", |w, i| {
            Ok(settlement_page(&w.node(i)?.sent, index_offset, max))
        })
    }

    async fn invoice_settlements(&self, index_offset: u64, max: u64) -> NodeResult<SettlementPage> {
        self.call("list_invoices", |w, i| {
            Ok(settlement_page(&w.node(i)?.received, index_offset, max))
        })
    }

    async fn decode_invoice(&self, invoice: &str) -> NodeResult<DecodedInvoice> {
        decode(invoice)
            .map(|(_, d)| d)
            .map_err(|e| e.into_node("decode_invoice"))
    }

    async fn pay(&self, request: &PaymentRequest) -> NodeResult<NodeStream<PaymentUpdate>> {
        match self.send_payment(request) {
            Err(e) if e.kind == NodeErrorKind::AlreadyExists => {
                let hash = decode(&request.invoice)
                    .map_err(|e| e.into_node("pay"))?
                    .1
                    .payment_hash;
                self.track_payment(hash).await
            }
            other => other,
        }
    }

    async fn track_payment(&self, hash: SwapHash) -> NodeResult<NodeStream<PaymentUpdate>> {
        self.call("track_payment", |w, i| {
            w.payment_update(i, hash)
                .map(|_| ())
                .ok_or_else(|| WorldError::NotFound("payment isn't initiated".to_owned()))
        })?;
        Ok(self.track(hash))
    }

    async fn query_route(&self, request: &RouteRequest) -> NodeResult<PaymentRoute> {
        self.call("query_route", |w, i| w.query_route(i, request))
    }

    async fn send_to_route(&self, hash: SwapHash, route: &PaymentRoute) -> NodeResult<HtlcOutcome> {
        if let Some(failure) = self.call("send_to_route", |w, i| w.send_to_route(i, hash, route))? {
            return Ok(HtlcOutcome::Failed(failure));
        }
        // The watcher starts from the payment's current state, so nothing settled is missed.
        let mut updates = self.track(hash);
        while let Some(update) = updates.next().await {
            match update?.status {
                PaymentStatus::Succeeded { preimage } => {
                    return Ok(HtlcOutcome::Settled { preimage });
                }
                PaymentStatus::Failed(_) => {
                    let failure = self.with(|w, i| w.htlc_failure(i, hash));
                    return Ok(HtlcOutcome::Failed(
                        failure.unwrap_or(HtlcFailure::IncorrectOrUnknownPaymentDetails),
                    ));
                }
                PaymentStatus::Initiated | PaymentStatus::InFlight => {}
            }
        }
        Err(NodeError::new(
            NodeErrorKind::Transient,
            "send_to_route",
            "the simulated node stopped before the HTLC was resolved",
        ))
    }

    async fn derive_next_key(&self, family: i32) -> NodeResult<KeyDescriptor> {
        self.call("derive_next_key", |w, i| {
            w.node_mut(i)?.keys.next_key(family)
        })
    }

    async fn derive_key(&self, locator: KeyLocator) -> NodeResult<KeyDescriptor> {
        self.call("derive_key", |w, i| w.node(i)?.keys.descriptor(locator))
    }

    async fn next_addr(&self) -> NodeResult<Address> {
        self.call("next_addr", |w, i| w.new_address(i, AddressKind::P2tr))
    }

    async fn estimate_fee(&self, conf_target: u32) -> NodeResult<FeeRate> {
        Ok(self.with(|w, _| w.estimate_fee(conf_target)))
    }

    async fn send_outputs(&self, request: &SendOutputsRequest) -> NodeResult<Transaction> {
        if request.label.chars().count() > crate::lnd::types::MAX_LABEL_CHARS {
            return Err(NodeError::invalid_argument(
                "send_outputs",
                "label too long: at most 500 characters",
            ));
        }
        self.call("send_outputs", |w, i| {
            w.send_outputs(
                i,
                &request.outputs,
                request.fee_rate,
                request.min_confs,
                request.coin_selection,
            )
        })
    }

    async fn publish_transaction(&self, tx: &Transaction, _label: &str) -> NodeResult<()> {
        self.call("publish_transaction", |w, _| w.publish(tx).map(|_| ()))
    }

    async fn sign_output_raw(&self, request: &SignRequest) -> NodeResult<Vec<Vec<u8>>> {
        self.call("sign_output_raw", |w, i| w.sign_output_raw(i, request))
    }

    async fn musig2_create_session(
        &self,
        request: &MuSig2SessionRequest,
    ) -> NodeResult<MuSig2Session> {
        self.call("musig2_create_session", |w, i| {
            let desc = w.node(i)?.keys.descriptor(request.key)?;
            let secret = w.secret_for(i, &desc)?;
            let mut id = [0u8; 32];
            let mut seed = [0u8; 32];
            w.rng().fill_bytes(&mut id);
            w.rng().fill_bytes(&mut seed);
            w.node_mut(i)?.sessions.create(id, request, &secret, seed)
        })
    }

    async fn musig2_register_nonces(
        &self,
        session_id: [u8; 32],
        nonces: &[[u8; 66]],
    ) -> NodeResult<bool> {
        self.call("musig2_register_nonces", |w, i| {
            w.node_mut(i)?.sessions.register_nonces(&session_id, nonces)
        })
    }

    async fn musig2_sign(
        &self,
        session_id: [u8; 32],
        digest: [u8; 32],
        cleanup: bool,
    ) -> NodeResult<Vec<u8>> {
        self.call("musig2_sign", |w, i| {
            w.node_mut(i)?.sessions.sign(&session_id, digest, cleanup)
        })
    }

    async fn musig2_combine_sig(
        &self,
        session_id: [u8; 32],
        partial_sigs: &[Vec<u8>],
    ) -> NodeResult<Option<Vec<u8>>> {
        self.call("musig2_combine_sig", |w, i| {
            w.node_mut(i)?.sessions.combine(&session_id, partial_sigs)
        })
    }

    async fn musig2_cleanup(&self, session_id: [u8; 32]) -> NodeResult<()> {
        self.call("musig2_cleanup", |w, i| {
            w.node_mut(i)?.sessions.cleanup(&session_id)
        })
    }

    async fn register_confirmations(
        &self,
        request: &ConfRequest,
    ) -> NodeResult<NodeStream<ConfUpdate>> {
        if request.num_confs == 0 {
            return Err(
                WorldError::InvalidArgument("num_confs must be at least 1".to_owned())
                    .into_node("register_confirmations"),
            );
        }
        Ok(stream(
            self.world.clone(),
            ConfWatcher {
                request: request.clone(),
                reported: None,
            },
        ))
    }

    async fn register_spend(&self, request: &SpendRequest) -> NodeResult<NodeStream<SpendUpdate>> {
        Ok(stream(
            self.world.clone(),
            SpendWatcher {
                request: request.clone(),
                reported: None,
            },
        ))
    }

    async fn register_block_epochs(&self) -> NodeResult<NodeStream<BlockEpoch>> {
        Ok(stream(self.world.clone(), EpochWatcher { last: None }))
    }

    async fn add_hold_invoice(&self, request: &HoldInvoiceRequest) -> NodeResult<HoldInvoice> {
        self.call("add_hold_invoice", |w, i| {
            let inv = w.add_invoice_inner(
                i,
                request.hash,
                None,
                request.amount,
                &request.memo,
                request.expiry,
                request.cltv_expiry,
                (&request.route_hints, request.private),
            )?;
            Ok(HoldInvoice {
                payment_request: inv.payment_request,
                add_index: inv.add_index,
            })
        })
    }

    async fn add_invoice(&self, request: &InvoiceRequest) -> NodeResult<HoldInvoice> {
        self.call("add_invoice", |w, i| {
            let inv = w.add_invoice_inner(
                i,
                request.preimage.hash(),
                Some(request.preimage),
                request.amount,
                &request.memo,
                request.expiry,
                crate::simnet::lnd::convert::DEFAULT_INVOICE_CLTV,
                (&request.route_hints, request.private),
            )?;
            Ok(HoldInvoice {
                payment_request: inv.payment_request,
                add_index: inv.add_index,
            })
        })
    }

    async fn settle_invoice(&self, preimage: Preimage) -> NodeResult<()> {
        self.call("settle_invoice", |w, i| w.settle_invoice(i, preimage))
    }

    async fn cancel_invoice(&self, hash: SwapHash) -> NodeResult<()> {
        self.call("cancel_invoice", |w, i| w.cancel_invoice(i, hash))
    }

    async fn subscribe_single_invoice(
        &self,
        hash: SwapHash,
    ) -> NodeResult<NodeStream<InvoiceUpdate>> {
        self.call("subscribe_single_invoice", |w, i| {
            w.invoice_update(i, hash)
                .map(|_| ())
                .ok_or_else(|| WorldError::NotFound("there are no existing invoices".to_owned()))
        })?;
        Ok(stream(
            self.world.clone(),
            InvoiceWatcher {
                node: self.idx,
                hash,
                last: None,
            },
        ))
    }

    async fn block_height(&self) -> NodeResult<BlockHeight> {
        Ok(self.with(|w, _| w.height()))
    }
}

/// A page of a node's settled HTLCs: the simnet lists one payment (or invoice) per HTLC, its
/// index the HTLC's position, so `index_offset` counts HTLCs.
fn settlement_page(all: &[SettledHtlc], index_offset: u64, max: u64) -> SettlementPage {
    let start = usize::try_from(index_offset).unwrap_or(usize::MAX);
    let take = usize::try_from(max).unwrap_or(usize::MAX);
    let htlcs: Vec<SettledHtlc> = all.iter().skip(start).take(take).copied().collect();
    let items = htlcs.len() as u64;
    SettlementPage {
        htlcs,
        items,
        next_index_offset: index_offset + items,
    }
}
