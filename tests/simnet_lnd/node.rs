//! A small `LightningNode` with fixed answers that records the requests it receives, so the
//! tests can check that a request survives client → wire → facade → port unchanged.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::key::{Keypair, Secp256k1};
use bitcoin::secp256k1::{PublicKey, SecretKey};
use bitcoin::{
    Address, Amount, BlockHash, FeeRate, OutPoint, ScriptBuf, Transaction, TxIn, TxOut, Txid,
};
use futures::StreamExt;
use futures::stream;
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use sluice::domain::{
    BlockHeight, ChanId, Channel, ChannelEdge, ChannelEvent, ForwardingEvent, ForwardingPage, Msat,
    Network, NodeId, NodeInfo, Peer, PeerPolicy, Preimage, Sat, SwapHash,
};
use sluice::lnd::types::*;
use sluice::lnd::{LightningNode, NodeError, NodeErrorKind, NodeResult, NodeStream};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

pub const NODE_KEY: &str = "0379be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
pub const PEER_KEY: &str = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5";
pub const PREIMAGE: [u8; 32] = [0x5a; 32];

/// The node's fixed state and what it has been asked.
pub struct TestNode {
    pub info: NodeInfo,
    pub channels: Vec<Channel>,
    pub blocks: broadcast::Sender<BlockEpoch>,
    pub seen_payment: Mutex<Option<PaymentRequest>>,
    pub seen_sign: Mutex<Option<SignRequest>>,
    pub seen_musig: Mutex<Option<MuSig2SessionRequest>>,
    pub seen_conf: Mutex<Option<ConfRequest>>,
    pub seen_spend: Mutex<Option<SpendRequest>>,
    pub seen_hold: Mutex<Option<HoldInvoiceRequest>>,
}

pub fn pubkey(seed: u8) -> PublicKey {
    let secp = Secp256k1::new();
    PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[seed; 32]).unwrap())
}

pub fn channel(id: u64, active: bool, private: bool) -> Channel {
    Channel {
        chan_id: ChanId(id),
        channel_point: format!("{}:1", Txid::from_byte_array([id as u8; 32])),
        peer: PEER_KEY.parse().unwrap(),
        peer_alias: Some("peer".into()),
        capacity: Sat(1_000_000),
        local_balance: Sat(600_000),
        remote_balance: Sat(390_000),
        local_reserve: Sat(10_000),
        remote_reserve: Sat(9_000),
        commit_fee: Sat(2_500),
        active,
        private,
        initiator: true,
        pending_htlc_count: 3,
        pending_htlc_amount: Sat(7_001),
        total_sent: Sat(55),
        total_received: Sat(66),
    }
}

pub fn sample_tx() -> Transaction {
    Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array([3; 32]),
                vout: 1,
            },
            ..Default::default()
        }],
        output: vec![TxOut {
            value: Amount::from_sat(12_345),
            script_pubkey: ScriptBuf::from_bytes(vec![0x51, 0x20, 7, 7]),
        }],
    }
}

pub fn invoice_for(preimage: [u8; 32], amount_msat: u64) -> String {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x11; 32]).unwrap();
    InvoiceBuilder::new(Currency::Regtest)
        .description("swap".into())
        .payment_hash(sha256::Hash::hash(&preimage))
        .payment_secret(PaymentSecret([7; 32]))
        .duration_since_epoch(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap(),
        )
        .min_final_cltv_expiry_delta(80)
        .amount_milli_satoshis(amount_msat)
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key))
        .unwrap()
        .to_string()
}

impl TestNode {
    pub fn new() -> TestNode {
        TestNode {
            info: NodeInfo {
                pubkey: NODE_KEY.parse().unwrap(),
                alias: "simlnd".into(),
                block_height: BlockHeight(321),
                synced_to_chain: true,
                synced_to_graph: false,
                network: Network::Regtest,
                version: "0.21.2-beta commit=v0.21.2-beta".into(),
            },
            channels: vec![channel(1, true, false), channel(2, false, true)],
            blocks: broadcast::channel(16).0,
            seen_payment: Mutex::default(),
            seen_sign: Mutex::default(),
            seen_musig: Mutex::default(),
            seen_conf: Mutex::default(),
            seen_spend: Mutex::default(),
            seen_hold: Mutex::default(),
        }
    }
}

fn err(kind: NodeErrorKind, message: &str) -> NodeError {
    NodeError::new(kind, "test", message)
}

fn ok_stream<T: Send + 'static>(items: Vec<T>) -> NodeStream<T> {
    stream::iter(items.into_iter().map(Ok)).boxed()
}

#[async_trait]
impl LightningNode for TestNode {
    async fn get_info(&self) -> NodeResult<NodeInfo> {
        Ok(self.info.clone())
    }

    async fn get_version(&self) -> NodeResult<NodeVersion> {
        Ok(NodeVersion {
            version: "0.21.2-beta".into(),
            major: 0,
            minor: 21,
            patch: 2,
            commit_hash: "ab".repeat(20),
            build_tags: vec!["signrpc".into(), "walletrpc".into()],
        })
    }

    async fn list_channels(&self) -> NodeResult<Vec<Channel>> {
        Ok(self.channels.clone())
    }

    async fn subscribe_channel_events(&self) -> NodeResult<NodeStream<ChannelEvent>> {
        let point = self.channels[0].channel_point.clone();
        Ok(ok_stream(vec![
            ChannelEvent::Updated(self.channels[0].clone()),
            ChannelEvent::Inactive {
                channel_point: point.clone(),
            },
            ChannelEvent::PendingOpen {
                channel_point: point.clone(),
            },
            ChannelEvent::Closed {
                chan_id: ChanId(1),
                channel_point: point,
            },
        ]))
    }

    async fn list_peers(&self) -> NodeResult<Vec<Peer>> {
        Ok(vec![Peer {
            pubkey: PEER_KEY.parse().unwrap(),
            address: "127.0.0.1:9735".into(),
            inbound: true,
        }])
    }

    async fn node_alias(&self, node: NodeId) -> NodeResult<Option<String>> {
        Ok((node.to_string() == PEER_KEY).then(|| "peer".to_owned()))
    }

    async fn announced_channels(&self, node: NodeId) -> NodeResult<Vec<ChannelEdge>> {
        if node.to_string() != PEER_KEY {
            return Ok(Vec::new());
        }
        Ok(vec![self.channel_edge(ChanId(1)).await?])
    }

    async fn channel_edge(&self, chan: ChanId) -> NodeResult<ChannelEdge> {
        if chan != ChanId(1) {
            return Err(err(NodeErrorKind::NotFound, "edge not found"));
        }
        let (ours, peer) = (self.info.pubkey, PEER_KEY.parse::<NodeId>().unwrap());
        let policy = PeerPolicy {
            fee_base_msat: 1_000,
            fee_ppm: 250,
            cltv_delta: 40,
        };
        let (node1, node2) = if ours.0 < peer.0 {
            (ours, peer)
        } else {
            (peer, ours)
        };
        Ok(ChannelEdge {
            chan_id: chan,
            chan_point: self.channels[0].channel_point.parse().unwrap(),
            node1,
            node2,
            capacity: self.channels[0].capacity,
            policy1: (node1 == peer).then_some(policy),
            policy2: (node2 == peer).then_some(policy),
        })
    }

    async fn forwarding_history(
        &self,
        start_unix: u64,
        _end: u64,
        index_offset: u32,
        max_events: u32,
    ) -> NodeResult<ForwardingPage> {
        let events = (0..max_events.min(2))
            .map(|i| ForwardingEvent {
                timestamp_ns: (start_unix + u64::from(i)) * 1_000_000_000 + 17,
                chan_in: ChanId(1),
                chan_out: ChanId(2),
                amount_in: Msat(100_500),
                amount_out: Msat(100_000),
                fee: Msat(500),
            })
            .collect();
        Ok(ForwardingPage {
            events,
            next_index_offset: index_offset + max_events.min(2),
        })
    }

    async fn decode_invoice(&self, invoice: &str) -> NodeResult<DecodedInvoice> {
        if invoice == "garbage" {
            return Err(err(
                NodeErrorKind::InvalidArgument,
                "invalid payment request",
            ));
        }
        Ok(DecodedInvoice {
            destination: NODE_KEY.parse().unwrap(),
            payment_hash: Preimage(PREIMAGE).hash(),
            amount: Msat(123_456),
            timestamp_unix: 1_700_000_000,
            expiry: Duration::from_secs(3600),
            min_final_cltv_delta: 80,
            description: "swap".into(),
            payment_addr: Some([7; 32]),
            route_hints: Vec::new(),
        })
    }

    async fn pay(&self, request: &PaymentRequest) -> NodeResult<NodeStream<PaymentUpdate>> {
        *self.seen_payment.lock().unwrap() = Some(request.clone());
        let hash = Preimage(PREIMAGE).hash();
        let update = |status, htlcs| PaymentUpdate {
            hash,
            status,
            amount: Msat(123_456),
            fee: Msat(1_001),
            htlcs_in_flight: htlcs,
        };
        Ok(ok_stream(vec![
            update(PaymentStatus::InFlight, 2),
            update(
                PaymentStatus::Succeeded {
                    preimage: Preimage(PREIMAGE),
                },
                0,
            ),
        ]))
    }

    async fn track_payment(&self, _hash: SwapHash) -> NodeResult<NodeStream<PaymentUpdate>> {
        Err(err(NodeErrorKind::NotFound, "payment isn't initiated"))
    }

    async fn derive_next_key(&self, family: i32) -> NodeResult<KeyDescriptor> {
        Ok(KeyDescriptor {
            pubkey: pubkey(9),
            locator: KeyLocator { family, index: 4 },
        })
    }

    async fn derive_key(&self, locator: KeyLocator) -> NodeResult<KeyDescriptor> {
        Ok(KeyDescriptor {
            pubkey: pubkey(u8::try_from(locator.index).unwrap_or(1).max(1)),
            locator,
        })
    }

    async fn next_addr(&self) -> NodeResult<Address> {
        let secp = Secp256k1::new();
        let key = Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[5; 32]).unwrap());
        Ok(Address::p2tr(
            &secp,
            key.x_only_public_key().0,
            None,
            bitcoin::Network::Regtest,
        ))
    }

    async fn estimate_fee(&self, conf_target: u32) -> NodeResult<FeeRate> {
        Ok(FeeRate::from_sat_per_kwu(250 * u64::from(conf_target)))
    }

    async fn publish_transaction(&self, tx: &Transaction, label: &str) -> NodeResult<()> {
        match label {
            "rejected" => Err(err(
                NodeErrorKind::Permanent,
                "mandatory-script-verify-flag-failed (Invalid Schnorr signature)",
            )),
            "busy" => Err(err(NodeErrorKind::Transient, "chain backend is busy")),
            _ if *tx == sample_tx() => Ok(()),
            _ => Err(err(NodeErrorKind::Permanent, "unexpected transaction")),
        }
    }

    async fn sign_output_raw(&self, request: &SignRequest) -> NodeResult<Vec<Vec<u8>>> {
        *self.seen_sign.lock().unwrap() = Some(request.clone());
        Ok(request
            .inputs
            .iter()
            .map(|i| vec![i.input_index as u8; 64])
            .collect())
    }

    async fn musig2_create_session(
        &self,
        request: &MuSig2SessionRequest,
    ) -> NodeResult<MuSig2Session> {
        *self.seen_musig.lock().unwrap() = Some(request.clone());
        Ok(MuSig2Session {
            id: [8; 32],
            combined_key: vec![2; 32],
            taproot_internal_key: vec![3; 32],
            local_nonces: [4; 66],
            have_all_nonces: !request.other_nonces.is_empty(),
        })
    }

    async fn musig2_register_nonces(&self, id: [u8; 32], nonces: &[[u8; 66]]) -> NodeResult<bool> {
        if id != [8; 32] {
            return Err(err(NodeErrorKind::NotFound, "session not found"));
        }
        Ok(!nonces.is_empty())
    }

    async fn musig2_sign(&self, id: [u8; 32], digest: [u8; 32], _c: bool) -> NodeResult<Vec<u8>> {
        Ok([id, digest].concat())
    }

    async fn musig2_combine_sig(
        &self,
        _id: [u8; 32],
        partial_sigs: &[Vec<u8>],
    ) -> NodeResult<Option<Vec<u8>>> {
        Ok((!partial_sigs.is_empty()).then(|| vec![6; 64]))
    }

    async fn musig2_cleanup(&self, _id: [u8; 32]) -> NodeResult<()> {
        Ok(())
    }

    async fn register_confirmations(
        &self,
        request: &ConfRequest,
    ) -> NodeResult<NodeStream<ConfUpdate>> {
        *self.seen_conf.lock().unwrap() = Some(request.clone());
        Ok(ok_stream(vec![
            ConfUpdate::Confirmed {
                tx: sample_tx(),
                block_hash: BlockHash::from_byte_array([9; 32]),
                block_height: BlockHeight(330),
                tx_index: 2,
            },
            ConfUpdate::Reorg,
        ]))
    }

    async fn register_spend(&self, request: &SpendRequest) -> NodeResult<NodeStream<SpendUpdate>> {
        *self.seen_spend.lock().unwrap() = Some(request.clone());
        Ok(ok_stream(vec![SpendUpdate::Spent {
            outpoint: request.outpoint.unwrap_or_default(),
            spending_tx: sample_tx(),
            input_index: 0,
            height: BlockHeight(331),
        }]))
    }

    async fn register_block_epochs(&self) -> NodeResult<NodeStream<BlockEpoch>> {
        let tip = BlockEpoch {
            hash: BlockHash::from_byte_array([1; 32]),
            height: self.info.block_height,
        };
        let later = BroadcastStream::new(self.blocks.subscribe())
            .filter_map(|b| async move { b.ok().map(Ok) });
        Ok(stream::once(async move { Ok(tip) }).chain(later).boxed())
    }

    async fn add_hold_invoice(&self, request: &HoldInvoiceRequest) -> NodeResult<HoldInvoice> {
        if request.memo == "again" {
            return Err(err(
                NodeErrorKind::AlreadyExists,
                "invoice with payment hash already exists",
            ));
        }
        *self.seen_hold.lock().unwrap() = Some(request.clone());
        Ok(HoldInvoice {
            payment_request: invoice_for(PREIMAGE, request.amount.0),
            add_index: 12,
        })
    }

    async fn add_invoice(&self, request: &InvoiceRequest) -> NodeResult<HoldInvoice> {
        Ok(HoldInvoice {
            payment_request: invoice_for(request.preimage.0, request.amount.0),
            add_index: 13,
        })
    }

    async fn settle_invoice(&self, preimage: Preimage) -> NodeResult<()> {
        if preimage.0 == PREIMAGE {
            Ok(())
        } else {
            Err(err(NodeErrorKind::NotFound, "unable to locate invoice"))
        }
    }

    async fn cancel_invoice(&self, _hash: SwapHash) -> NodeResult<()> {
        Ok(())
    }

    async fn subscribe_single_invoice(
        &self,
        hash: SwapHash,
    ) -> NodeResult<NodeStream<InvoiceUpdate>> {
        let update = |state, paid| InvoiceUpdate {
            hash,
            state,
            amount: Msat(50_000_000),
            amount_paid: Msat(paid),
        };
        Ok(ok_stream(vec![
            update(InvoiceState::Open, 0),
            update(InvoiceState::Accepted, 50_000_000),
        ]))
    }
}
