//! Shared harness of the simnet Loop server tests: a simulated world (sluice's node, the
//! server's node, peers), the server serving over loopback gRPC, the real Loop client with
//! an L402 payer over sluice's node, and the client-side steps of a swap.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub use sluice::provider::wire::ServerSwapState as Wire;

pub use std::sync::{Arc, Mutex};
pub use std::time::Duration;

pub use async_trait::async_trait;
pub use bitcoin::hashes::Hash;
pub use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
pub use bitcoin::{OutPoint, ScriptBuf};
pub use futures::StreamExt;
pub use sluice::chain::fees::{SatPerKw, SweepWitness};
pub use sluice::chain::htlc::HtlcV3;
pub use sluice::chain::musig::CoopSession;
pub use sluice::chain::sweep::{SweepRequest, build_sweep, key_spend_witness};
pub use sluice::domain::{BlockHeight, Msat, Network, Preimage, Sat, SwapHash};
pub use sluice::lnd::LightningNode;
pub use sluice::lnd::NodeStream;
pub use sluice::lnd::types::{PaymentRequest, PaymentStatus, PaymentUpdate};
pub use sluice::loopserver::behaviour::{HtlcTamper, Publication, TimeoutClaim};
pub use sluice::loopserver::{Behaviour, LoopServer, LoopServerConfig};
pub use sluice::provider::l402::{L402Config, L402Payer, PaidInvoice, PayError};
pub use sluice::provider::port::{
    NewLoopOutRequest, ServerSwapState, SwapProvider, SweepPrevout, SweepSignRequest,
};
pub use sluice::provider::validate::{ContractExpectations, ValidatedContract, validate_loop_out};
pub use sluice::provider::{LoopServerClient, ServerTls};
pub use sluice::simnet::world::{SharedWorld, SimNode, World, WorldConfig, lock};

pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `f` until it returns `Some`, failing after the deadline.
pub async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The daemon's own L402 payer: it pays token invoices through the node.
pub use sluice::provider::node_payer::NodePayer;

pub struct Sim {
    pub world: SharedWorld,
    pub sluice: SimNode,
    pub server: LoopServer,
    pub client: LoopServerClient,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub tokens: tempfile::TempDir,
    pub addr: std::net::SocketAddr,
}

pub async fn sim(seed: u64) -> Sim {
    let world: SharedWorld = Arc::new(Mutex::new(
        World::new(WorldConfig::default_topology(seed, 2)).unwrap(),
    ));
    let loop_node = SimNode::new(world.clone(), "loop").unwrap();
    let sluice = SimNode::new(world.clone(), "sluice").unwrap();
    let config = LoopServerConfig {
        seed,
        clock: sluice::simnet::world::engine_clock(&world),
        ..LoopServerConfig::default()
    };
    let server = LoopServer::new(config, Arc::new(loop_node));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let tokens = tempfile::tempdir().unwrap();
    let client = LoopServerClient::connect(
        &addr.to_string(),
        ServerTls::Insecure,
        Duration::from_secs(10),
        L402Config::new(Network::Regtest, tokens.path()),
        Arc::new(NodePayer(Arc::new(sluice.clone()))),
    )
    .unwrap();
    Sim {
        world,
        sluice,
        server,
        client,
        stop,
        tokens,
        addr,
    }
}

/// What the client side of one swap knows.
pub struct ClientSwap {
    pub preimage: Preimage,
    pub receiver: SecretKey,
    pub expiry: u32,
    pub contract: ValidatedContract,
    pub htlc: HtlcV3,
    pub swap_invoice: String,
    pub prepay_invoice: String,
}

impl Sim {
    pub fn height(&self) -> BlockHeight {
        lock(&self.world).height()
    }

    pub fn mine(&self, n: u32) {
        lock(&self.world).mine(n);
    }

    /// Terms, quote, registration and the client's own validation of the answer.
    pub async fn start_swap(&self, amount: Sat, n: u8) -> ClientSwap {
        let terms = self.client.loop_out_terms().await.unwrap();
        let expiry = self.height().0 + terms.min_cltv_delta + 10;
        let quote = self
            .client
            .loop_out_quote(amount, BlockHeight(expiry), 0)
            .await
            .unwrap();
        let preimage = Preimage([n; 32]);
        let receiver = SecretKey::from_slice(&[n.wrapping_add(100); 32]).unwrap();
        let receiver_pub = PublicKey::from_secret_key(&Secp256k1::new(), &receiver);
        let resp = self
            .client
            .new_loop_out(&NewLoopOutRequest {
                receiver_key: receiver_pub.serialize(),
                swap_hash: preimage.hash(),
                amount,
                expiry: BlockHeight(expiry),
                publication_deadline_unix_s: 0,
                initiator: "test".into(),
            })
            .await
            .unwrap();
        let exp = ContractExpectations {
            network: Network::Regtest,
            swap_hash: preimage.hash(),
            amount,
            terms,
            swap_payment_dest: quote.swap_payment_dest,
            max_swap_fee: quote.swap_fee,
            max_prepay: quote.prepay_amount,
            max_final_cltv_delta: 144,
            min_invoice_validity: Duration::from_secs(60),
            now: Duration::from_secs(lock(&self.world).now_unix()),
        };
        let contract = validate_loop_out(&resp, &exp).unwrap();
        let htlc = HtlcV3::new(
            PublicKey::from_slice(&contract.sender_key).unwrap(),
            receiver_pub,
            preimage.hash(),
            expiry,
            Network::Regtest,
        )
        .unwrap();
        ClientSwap {
            preimage,
            receiver,
            expiry,
            contract,
            htlc,
            swap_invoice: resp.swap_invoice,
            prepay_invoice: resp.prepay_invoice,
        }
    }

    pub async fn pay(&self, invoice: &str) -> NodeStream<PaymentUpdate> {
        self.sluice
            .pay(&PaymentRequest {
                invoice: invoice.to_owned(),
                fee_limit: Msat(50_000_000),
                outgoing_chan_ids: Vec::new(),
                max_parts: 5,
                timeout: Duration::from_secs(60),
                cltv_limit: None,
                last_hop: None,
            })
            .await
            .unwrap()
    }

    pub fn states(&self, hash: SwapHash) -> Vec<sluice::provider::wire::ServerSwapState> {
        self.server.swap_states(hash).unwrap()
    }

    pub async fn wait_state(&self, hash: SwapHash, state: sluice::provider::wire::ServerSwapState) {
        eventually(&format!("{state:?}"), || {
            self.states(hash).contains(&state).then_some(())
        })
        .await;
    }

    /// The first confirmed output paying the HTLC script, as the client finds it.
    pub fn htlc_output(&self, htlc: &HtlcV3) -> Option<(OutPoint, Sat)> {
        lock(&self.world)
            .chain()
            .outputs_to_script(&htlc.pk_script())
            .first()
            .map(|o| (o.outpoint, o.value))
    }
}

pub async fn final_status(mut updates: NodeStream<PaymentUpdate>) -> PaymentStatus {
    loop {
        let u = tokio::time::timeout(DEADLINE, updates.next())
            .await
            .expect("payment outcome in time")
            .expect("payment stream ends with an outcome")
            .unwrap();
        if u.status.is_final() {
            return u.status;
        }
    }
}

impl Sim {
    /// Pays both invoices and mines the published HTLC into a block.
    pub async fn fund_swap(
        &self,
        swap: &ClientSwap,
    ) -> (NodeStream<PaymentUpdate>, NodeStream<PaymentUpdate>) {
        let hash = swap.preimage.hash();
        let swap_payment = self.pay(&swap.swap_invoice).await;
        let prepay_payment = self.pay(&swap.prepay_invoice).await;
        self.wait_state(hash, Wire::ServerHtlcPublished).await;
        self.mine(1);
        (swap_payment, prepay_payment)
    }

    pub fn mine_to(&self, height: u32) {
        let now = self.height().0;
        if height > now {
            self.mine(height - now);
        }
    }
}

impl Sim {
    /// Registers a swap and runs the client's validation on the answer.
    pub async fn validate_new_swap(
        &self,
        amount: Sat,
        n: u8,
    ) -> Result<ValidatedContract, sluice::provider::validate::ContractError> {
        let terms = self.client.loop_out_terms().await.unwrap();
        let expiry = self.height().0 + terms.min_cltv_delta + 10;
        let quote = self
            .client
            .loop_out_quote(amount, BlockHeight(expiry), 0)
            .await
            .unwrap();
        let preimage = Preimage([n; 32]);
        let receiver = SecretKey::from_slice(&[n.wrapping_add(100); 32]).unwrap();
        let resp = self
            .client
            .new_loop_out(&NewLoopOutRequest {
                receiver_key: PublicKey::from_secret_key(&Secp256k1::new(), &receiver).serialize(),
                swap_hash: preimage.hash(),
                amount,
                expiry: BlockHeight(expiry),
                publication_deadline_unix_s: -62_135_596_800,
                initiator: "test".into(),
            })
            .await
            .unwrap();
        validate_loop_out(
            &resp,
            &ContractExpectations {
                network: Network::Regtest,
                swap_hash: preimage.hash(),
                amount,
                terms,
                swap_payment_dest: quote.swap_payment_dest,
                max_swap_fee: quote.swap_fee,
                max_prepay: quote.prepay_amount,
                max_final_cltv_delta: 144,
                min_invoice_validity: Duration::from_secs(60),
                now: Duration::from_secs(lock(&self.world).now_unix()),
            },
        )
    }
}

impl Sim {
    /// The client's success-leaf sweep of the HTLC at `fee_rate`, signed with its key.
    pub fn script_path_sweep(
        &self,
        swap: &ClientSwap,
        outpoint: OutPoint,
        value: Sat,
        fee_rate: SatPerKw,
    ) -> bitcoin::Transaction {
        let sweep = build_sweep(&SweepRequest {
            htlc_outpoint: outpoint,
            htlc_value: value,
            htlc_pk_script: swap.htlc.pk_script(),
            path: SweepWitness::V3Success,
            destination: ScriptBuf::new_p2tr_tweaked(swap.htlc.output_key()),
            fee_rate,
            height: self.height(),
        })
        .unwrap();
        let sighash = sweep
            .script_spend_sighash(swap.htlc.success_leaf_hash())
            .unwrap();
        let secp = Secp256k1::new();
        let keypair = bitcoin::secp256k1::Keypair::from_secret_key(&secp, &swap.receiver);
        let signature = secp
            .sign_schnorr_no_aux_rand(&bitcoin::secp256k1::Message::from_digest(sighash), &keypair);
        let sig = bitcoin::taproot::Signature {
            signature,
            sighash_type: bitcoin::TapSighashType::Default,
        };
        sweep.signed(swap.htlc.success_witness(&swap.preimage.0, &sig))
    }
}
