//! The simnet Loop server against the real client pieces, over loopback gRPC, in a simulated
//! world: sluice's node pays, the server's node holds invoices and funds HTLCs on the simnet
//! chain, and every transaction is checked by the chain's script interpreter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{OutPoint, ScriptBuf};
use futures::StreamExt;
use sluice::chain::fees::{SatPerKw, SweepWitness};
use sluice::chain::htlc::HtlcV3;
use sluice::chain::musig::CoopSession;
use sluice::chain::sweep::{SweepRequest, build_sweep, key_spend_witness};
use sluice::domain::{BlockHeight, Msat, Network, Preimage, Sat, SwapHash};
use sluice::lnd::LightningNode;
use sluice::lnd::NodeStream;
use sluice::lnd::types::{PaymentRequest, PaymentStatus, PaymentUpdate};
use sluice::provider::l402::{L402Config, L402Payer, PaidInvoice, PayError};
use sluice::provider::port::{
    NewLoopOutRequest, ServerSwapState, SwapProvider, SweepPrevout, SweepSignRequest,
};
use sluice::provider::validate::{ContractExpectations, ValidatedContract, validate_loop_out};
use sluice::provider::{LoopServerClient, ServerTls};
use sluice::simnet::loopserver::behaviour::{HtlcTamper, Publication, TimeoutClaim};
use sluice::simnet::loopserver::{Behaviour, LoopServer, LoopServerConfig};
use sluice::simnet::world::{SharedWorld, SimNode, World, WorldConfig, lock};

const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `f` until it returns `Some`, failing after the deadline.
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
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

/// Pays L402 invoices from a Lightning node, as the daemon's payer does with lnd.
struct NodePayer(Arc<dyn LightningNode>);

#[async_trait]
impl L402Payer for NodePayer {
    async fn pay(
        &self,
        invoice: &str,
        max_fee: Sat,
        timeout: Duration,
    ) -> Result<PaidInvoice, PayError> {
        let updates = self
            .0
            .pay(&PaymentRequest {
                invoice: invoice.to_owned(),
                fee_limit: max_fee.to_msat(),
                outgoing_chan_ids: Vec::new(),
                max_parts: 1,
                timeout,
                cltv_limit: None,
            })
            .await
            .map_err(|e| PayError::Unavailable(e.to_string()))?;
        outcome(updates).await
    }

    async fn track(&self, payment_hash: [u8; 32]) -> Result<Option<PaidInvoice>, PayError> {
        match self.0.track_payment(SwapHash(payment_hash)).await {
            Ok(updates) => outcome(updates).await.map(Some),
            Err(_) => Ok(None),
        }
    }
}

async fn outcome(mut updates: NodeStream<PaymentUpdate>) -> Result<PaidInvoice, PayError> {
    while let Some(u) = updates.next().await {
        let u = u.map_err(|e| PayError::Unavailable(e.to_string()))?;
        match u.status {
            PaymentStatus::Succeeded { preimage } => {
                return Ok(PaidInvoice {
                    preimage: preimage.0,
                    amount: u.amount,
                    fee: u.fee,
                });
            }
            PaymentStatus::Failed(f) => return Err(PayError::Failed(format!("{f:?}"))),
            _ => {}
        }
    }
    Err(PayError::InFlight)
}

struct Sim {
    world: SharedWorld,
    sluice: SimNode,
    server: LoopServer,
    client: LoopServerClient,
    _stop: tokio::sync::oneshot::Sender<()>,
    _tokens: tempfile::TempDir,
}

async fn sim(seed: u64) -> Sim {
    let world: SharedWorld = Arc::new(Mutex::new(
        World::new(WorldConfig::default_topology(seed, 2)).unwrap(),
    ));
    let loop_node = SimNode::new(world.clone(), "loop").unwrap();
    let sluice = SimNode::new(world.clone(), "sluice").unwrap();
    let clock_world = world.clone();
    let config = LoopServerConfig {
        seed,
        clock: Arc::new(move || Duration::from_secs(lock(&clock_world).now_unix())),
        ..LoopServerConfig::default()
    };
    let server = LoopServer::new(config, Arc::new(loop_node.clone()), Arc::new(loop_node));
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
        _stop: stop,
        _tokens: tokens,
    }
}

/// What the client side of one swap knows.
struct ClientSwap {
    preimage: Preimage,
    receiver: SecretKey,
    expiry: u32,
    contract: ValidatedContract,
    htlc: HtlcV3,
    swap_invoice: String,
    prepay_invoice: String,
}

impl Sim {
    fn height(&self) -> BlockHeight {
        lock(&self.world).height()
    }

    fn mine(&self, n: u32) {
        lock(&self.world).mine(n);
    }

    /// Terms, quote, registration and the client's own validation of the answer.
    async fn start_swap(&self, amount: Sat, n: u8) -> ClientSwap {
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

    async fn pay(&self, invoice: &str) -> NodeStream<PaymentUpdate> {
        self.sluice
            .pay(&PaymentRequest {
                invoice: invoice.to_owned(),
                fee_limit: Msat(50_000_000),
                outgoing_chan_ids: Vec::new(),
                max_parts: 5,
                timeout: Duration::from_secs(60),
                cltv_limit: None,
            })
            .await
            .unwrap()
    }

    fn states(&self, hash: SwapHash) -> Vec<sluice::provider::wire::ServerSwapState> {
        self.server.swap_states(hash).unwrap()
    }

    async fn wait_state(&self, hash: SwapHash, state: sluice::provider::wire::ServerSwapState) {
        eventually(&format!("{state:?}"), || {
            self.states(hash).contains(&state).then_some(())
        })
        .await;
    }

    /// The first confirmed output paying the HTLC script, as the client finds it.
    fn htlc_output(&self, htlc: &HtlcV3) -> Option<(OutPoint, Sat)> {
        lock(&self.world)
            .chain()
            .outputs_to_script(&htlc.pk_script())
            .first()
            .map(|o| (o.outpoint, o.value))
    }
}

async fn final_status(mut updates: NodeStream<PaymentUpdate>) -> PaymentStatus {
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

use sluice::provider::wire::ServerSwapState as Wire;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_swap_ends_in_a_cosigned_key_path_sweep() {
    let sim = sim(7).await;
    let amount = Sat(250_000);
    let swap = sim.start_swap(amount, 1).await;
    let hash = swap.preimage.hash();
    let mut updates = sim.client.subscribe_loop_out_updates(hash).await.unwrap();

    let swap_payment = sim.pay(&swap.swap_invoice).await;
    let prepay_payment = sim.pay(&swap.prepay_invoice).await;

    // Both held ⇒ the HTLC goes out, paying exactly `amt` to the script the client computed.
    sim.wait_state(hash, Wire::ServerHtlcPublished).await;
    assert!(
        matches!(
            final_status(prepay_payment).await,
            PaymentStatus::Succeeded { .. }
        ),
        "the prepay settles once the HTLC is published"
    );
    sim.mine(1);
    let (outpoint, value) = eventually("HTLC confirmed", || sim.htlc_output(&swap.htlc)).await;
    assert_eq!(value, amount);
    assert_eq!(sim.server.htlc_outpoints(hash).unwrap(), vec![outpoint]);
    sim.wait_state(hash, Wire::ServerHtlcConfirmed).await;

    // The preimage push settles the swap invoice.
    sim.client.push_preimage(&swap.preimage.0).await.unwrap();
    match final_status(swap_payment).await {
        PaymentStatus::Succeeded { preimage } => assert_eq!(preimage, swap.preimage),
        other => panic!("swap payment: {other:?}"),
    }

    // Cooperative sweep: the server's nonce and partial signature complete a key-path spend.
    let dest = ScriptBuf::new_p2tr_tweaked(swap.htlc.output_key());
    let sweep = build_sweep(&SweepRequest {
        htlc_outpoint: outpoint,
        htlc_value: value,
        htlc_pk_script: swap.htlc.pk_script(),
        path: SweepWitness::KeyPath,
        destination: dest,
        fee_rate: SatPerKw(2_000),
        height: sim.height(),
    })
    .unwrap();
    let sighash = sweep.key_spend_sighash().unwrap();
    let session = CoopSession::start(&swap.htlc, &swap.receiver, sighash, [42; 32]).unwrap();
    let answer = sim
        .client
        .musig2_sign_sweep(&SweepSignRequest {
            swap_hash: hash,
            payment_address: swap.contract.payment_address,
            nonce: session.public_nonce(),
            sweep_psbt: sweep.psbt().unwrap().serialize(),
            prevouts: vec![SweepPrevout {
                value,
                pk_script: swap.htlc.pk_script().to_bytes(),
                txid: outpoint.txid.to_byte_array(),
                output_index: outpoint.vout,
            }],
        })
        .await
        .unwrap();
    let sig = session.finish(&answer.nonce, &answer.partial_sig).unwrap();
    let tx = sweep.signed(key_spend_witness(&sig));
    sim.sluice.publish_transaction(&tx, "sweep").await.unwrap();
    sim.mine(1);
    sim.wait_state(hash, Wire::ServerSuccess).await;

    // The status stream replays every state and ends with EOF after the final one.
    let mut seen = Vec::new();
    while let Some(u) = tokio::time::timeout(DEADLINE, updates.next())
        .await
        .unwrap()
    {
        seen.push(u.unwrap().state);
    }
    assert_eq!(seen.first(), Some(&ServerSwapState::Initiated));
    assert_eq!(seen.last(), Some(&ServerSwapState::Success));
    assert!(seen.contains(&ServerSwapState::HtlcPublished));
}

impl Sim {
    /// Pays both invoices and mines the published HTLC into a block.
    async fn fund_swap(
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

    fn mine_to(&self, height: u32) {
        let now = self.height().0;
        if height > now {
            self.mine(height - now);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrevealed_htlc_is_claimed_back_through_the_timeout_leaf_after_expiry() {
    let sim = sim(11).await;
    let swap = sim.start_swap(Sat(100_000), 2).await;
    let hash = swap.preimage.hash();
    let (swap_payment, _prepay) = sim.fund_swap(&swap).await;
    let (outpoint, _) = eventually("HTLC confirmed", || sim.htlc_output(&swap.htlc)).await;

    // One block short of the expiry the claim is not allowed yet.
    sim.mine_to(swap.expiry - 1);
    sim.wait_state(hash, Wire::ServerHtlcConfirmed).await;
    assert!(!sim.states(hash).contains(&Wire::ServerTimeoutPublished));

    sim.mine_to(swap.expiry);
    sim.wait_state(hash, Wire::ServerTimeoutPublished).await;
    sim.mine(1);
    sim.wait_state(hash, Wire::ServerFailedTimeout).await;
    let spender = lock(&sim.world)
        .chain()
        .spender(&outpoint)
        .expect("HTLC spent");
    let tx = lock(&sim.world)
        .chain()
        .tx(&spender.txid)
        .and_then(|s| match s {
            sluice::simnet::chain::TxStatus::Confirmed { tx, .. } => Some(tx.clone()),
            sluice::simnet::chain::TxStatus::Mempool(_) => None,
        })
        .expect("the claim confirmed");
    assert_eq!(tx.input[0].witness.len(), 3, "a timeout-leaf witness");
    assert!(
        matches!(final_status(swap_payment).await, PaymentStatus::Failed(_)),
        "the held swap payment is released"
    );
    assert!(!sim.server.knows_preimage(hash).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preimage_is_learned_from_a_script_path_sweep_when_the_push_fails() {
    let sim = sim(12).await;
    sim.server.set_behaviour_for_next_swap(Behaviour {
        push: sluice::simnet::loopserver::behaviour::Push::Error,
        ..Behaviour::default()
    });
    let swap = sim.start_swap(Sat(120_000), 3).await;
    let hash = swap.preimage.hash();
    let (swap_payment, _prepay) = sim.fund_swap(&swap).await;
    let (outpoint, value) = eventually("HTLC confirmed", || sim.htlc_output(&swap.htlc)).await;

    let err = sim
        .client
        .push_preimage(&swap.preimage.0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refuses"), "{err}");
    assert!(!sim.server.knows_preimage(hash).unwrap());

    // The client sweeps alone through the success leaf; the server reads the preimage there.
    let sweep = build_sweep(&SweepRequest {
        htlc_outpoint: outpoint,
        htlc_value: value,
        htlc_pk_script: swap.htlc.pk_script(),
        path: SweepWitness::V3Success,
        destination: ScriptBuf::new_p2tr_tweaked(swap.htlc.output_key()),
        fee_rate: SatPerKw(2_000),
        height: sim.height(),
    })
    .unwrap();
    let sighash = sweep
        .script_spend_sighash(swap.htlc.success_leaf_hash())
        .unwrap();
    let secp = Secp256k1::new();
    let keypair = bitcoin::secp256k1::Keypair::from_secret_key(&secp, &swap.receiver);
    let signature =
        secp.sign_schnorr_no_aux_rand(&bitcoin::secp256k1::Message::from_digest(sighash), &keypair);
    let sig = bitcoin::taproot::Signature {
        signature,
        sighash_type: bitcoin::TapSighashType::Default,
    };
    let tx = sweep.signed(swap.htlc.success_witness(&swap.preimage.0, &sig));
    sim.sluice.publish_transaction(&tx, "sweep").await.unwrap();
    sim.mine(1);
    sim.wait_state(hash, Wire::ServerSuccess).await;
    assert!(sim.server.knows_preimage(hash).unwrap());
    assert!(matches!(
        final_status(swap_payment).await,
        PaymentStatus::Succeeded { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_chain_tampering_pays_what_the_switch_says() {
    let sim = sim(13).await;
    let amount = Sat(150_000);

    sim.server.set_behaviour_for_next_swap(Behaviour {
        htlc: HtlcTamper::ValueBelow(Sat(1_000)),
        ..Behaviour::default()
    });
    let short = sim.start_swap(amount, 4).await;
    let _payments = sim.fund_swap(&short).await;
    let (_, value) = eventually("short HTLC", || sim.htlc_output(&short.htlc)).await;
    assert_eq!(value, Sat(149_000));

    sim.server.set_behaviour_for_next_swap(Behaviour {
        htlc: HtlcTamper::TwoOutputs,
        ..Behaviour::default()
    });
    let twice = sim.start_swap(amount, 5).await;
    let _payments = sim.fund_swap(&twice).await;
    let outputs = eventually("two HTLC outputs", || {
        let outs = lock(&sim.world)
            .chain()
            .outputs_to_script(&twice.htlc.pk_script());
        (outs.len() == 2).then_some(outs)
    })
    .await;
    assert!(outputs.iter().all(|o| o.value == amount));

    sim.server.set_behaviour_for_next_swap(Behaviour {
        htlc: HtlcTamper::WrongScript,
        ..Behaviour::default()
    });
    let elsewhere = sim.start_swap(amount, 6).await;
    let hash = elsewhere.preimage.hash();
    let _payments = sim.fund_swap(&elsewhere).await;
    sim.wait_state(hash, Wire::ServerHtlcConfirmed).await;
    assert!(
        sim.htlc_output(&elsewhere.htlc).is_none(),
        "the client's script is never paid"
    );
    assert_eq!(sim.server.htlc_outpoints(hash).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_publishes_releases_both_payments_at_expiry() {
    let sim = sim(14).await;
    sim.server.set_behaviour_for_next_swap(Behaviour {
        publication: Publication::Never,
        timeout_claim: TimeoutClaim::Never,
        ..Behaviour::default()
    });
    let swap = sim.start_swap(Sat(100_000), 7).await;
    let hash = swap.preimage.hash();
    let swap_payment = sim.pay(&swap.swap_invoice).await;
    let prepay_payment = sim.pay(&swap.prepay_invoice).await;
    sim.mine(5);
    assert_eq!(sim.states(hash), vec![Wire::ServerInitiated]);
    sim.mine_to(swap.expiry);
    assert!(matches!(
        final_status(swap_payment).await,
        PaymentStatus::Failed(_)
    ));
    assert!(matches!(
        final_status(prepay_payment).await,
        PaymentStatus::Failed(_)
    ));
    assert!(sim.server.htlc_outpoints(hash).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_needs_the_payment_address_and_ends_the_stream() {
    let sim = sim(15).await;
    let swap = sim.start_swap(Sat(100_000), 8).await;
    let hash = swap.preimage.hash();
    let mut updates = sim.client.subscribe_loop_out_updates(hash).await.unwrap();
    let mut req = sluice::provider::port::CancelRequest {
        swap_hash: hash,
        payment_address: [0; 32],
        route: sluice::provider::port::CancelRoute::Invoice,
        remaining_hops: vec![],
        failure: sluice::provider::port::PaymentFailure::NoRoute,
    };
    assert!(sim.client.cancel_loop_out(&req).await.is_err());
    assert_eq!(sim.states(hash), vec![Wire::ServerInitiated]);
    req.payment_address = swap.contract.payment_address;
    sim.client.cancel_loop_out(&req).await.unwrap();
    sim.wait_state(hash, Wire::ServerClientInvoiceCancel).await;
    let mut seen = Vec::new();
    while let Some(u) = tokio::time::timeout(DEADLINE, updates.next())
        .await
        .unwrap()
    {
        seen.push(u.unwrap().state);
    }
    assert_eq!(
        seen,
        vec![
            ServerSwapState::Initiated,
            ServerSwapState::ClientInvoiceCancel
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l402_price_above_the_clients_cap_is_refused() {
    let sim = sim(16).await;
    sim.server
        .set_l402(Some(sluice::simnet::loopserver::L402Settings {
            price: Sat(5_000),
            ..Default::default()
        }));
    let err = sim.client.loop_out_terms().await.unwrap_err();
    assert!(err.to_string().contains("cap"), "{err}");
    sim.server.set_l402(None);
    assert!(
        sim.client.loop_out_terms().await.is_ok(),
        "no front, no token needed"
    );
}

impl Sim {
    /// Registers a swap and runs the client's validation on the answer.
    async fn validate_new_swap(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invoice_and_key_tampering_is_caught_by_the_clients_validation() {
    use sluice::provider::validate::ContractError as E;
    use sluice::simnet::loopserver::behaviour::{InvoiceTamper as I, SenderKeyTamper as K};
    let sim = sim(17).await;
    type Expect = fn(&E) -> bool;
    let cases: Vec<(Behaviour, Expect)> = vec![
        (
            Behaviour {
                invoice: I::SwapFeeAbove(Sat(1)),
                ..Behaviour::default()
            },
            |e| matches!(e, E::SwapFeeTooHigh { .. }),
        ),
        (
            Behaviour {
                invoice: I::PrepayAboveSameTotal(Sat(10)),
                ..Behaviour::default()
            },
            |e| matches!(e, E::PrepayTooHigh { .. }),
        ),
        (
            Behaviour {
                invoice: I::WrongHash,
                ..Behaviour::default()
            },
            |e| matches!(e, E::WrongPaymentHash { .. }),
        ),
        (
            Behaviour {
                invoice: I::ZeroAmount,
                ..Behaviour::default()
            },
            |e| matches!(e, E::NoAmount { .. }),
        ),
        (
            Behaviour {
                invoice: I::OtherNetwork,
                ..Behaviour::default()
            },
            |e| matches!(e, E::WrongNetwork { .. }),
        ),
        (
            Behaviour {
                invoice: I::NoPaymentSecret,
                ..Behaviour::default()
            },
            |e| matches!(e, E::InvoiceDecode { .. } | E::NoPaymentSecret),
        ),
        (
            Behaviour {
                sender_key: K::Short,
                ..Behaviour::default()
            },
            |e| matches!(e, E::SenderKeyLength(32)),
        ),
        (
            Behaviour {
                sender_key: K::Long,
                ..Behaviour::default()
            },
            |e| matches!(e, E::SenderKeyLength(34)),
        ),
        (
            Behaviour {
                sender_key: K::OffCurve,
                ..Behaviour::default()
            },
            |e| matches!(e, E::SenderKeyNotOnCurve),
        ),
    ];
    assert!(
        sim.validate_new_swap(Sat(100_000), 20).await.is_ok(),
        "honest answer passes"
    );
    for (i, (behaviour, expected)) in cases.into_iter().enumerate() {
        sim.server.set_behaviour_for_next_swap(behaviour);
        let err = sim
            .validate_new_swap(Sat(100_000), 21 + i as u8)
            .await
            .expect_err("tampered answer refused");
        assert!(expected(&err), "{behaviour:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_publication_waits_for_the_reveal_limit() {
    let sim = sim(18).await;
    sim.server.set_behaviour_for_next_swap(Behaviour {
        publication: Publication::AfterRevealLimit,
        ..Behaviour::default()
    });
    let swap = sim.start_swap(Sat(100_000), 9).await;
    let hash = swap.preimage.hash();
    let _swap_payment = sim.pay(&swap.swap_invoice).await;
    let _prepay = sim.pay(&swap.prepay_invoice).await;
    sim.mine_to(swap.expiry - 21);
    assert_eq!(sim.states(hash), vec![Wire::ServerInitiated]);
    sim.mine(1);
    sim.wait_state(hash, Wire::ServerHtlcPublished).await;
    sim.mine(1);
    let confirmed_at = eventually("late HTLC", || {
        lock(&sim.world)
            .chain()
            .outputs_to_script(&swap.htlc.pk_script())
            .first()
            .map(|o| o.height)
    })
    .await;
    assert!(
        confirmed_at.0 > swap.expiry - 20,
        "too late for the client to reveal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_the_swap_payment_after_confirmation_and_closing_the_stream_early() {
    use sluice::simnet::loopserver::behaviour::StreamMode;
    let sim = sim(19).await;
    sim.server.set_behaviour_for_next_swap(Behaviour {
        fail_swap_payment_after_confirm: true,
        stream: StreamMode::CloseAfterFirst,
        ..Behaviour::default()
    });
    let swap = sim.start_swap(Sat(100_000), 10).await;
    let hash = swap.preimage.hash();
    let mut updates = sim.client.subscribe_loop_out_updates(hash).await.unwrap();
    let (swap_payment, _prepay) = sim.fund_swap(&swap).await;
    sim.wait_state(hash, Wire::ServerHtlcConfirmed).await;
    assert!(matches!(
        final_status(swap_payment).await,
        PaymentStatus::Failed(_)
    ));
    let first = updates.next().await.unwrap().unwrap();
    assert_eq!(first.state, ServerSwapState::Initiated);
    assert!(
        tokio::time::timeout(DEADLINE, updates.next())
            .await
            .unwrap()
            .is_none(),
        "EOF after the first update"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_ends_open_streams_and_carries_on_with_the_swap() {
    let mut sim = sim(20).await;
    let swap = sim.start_swap(Sat(100_000), 11).await;
    let hash = swap.preimage.hash();
    let mut updates = sim.client.subscribe_loop_out_updates(hash).await.unwrap();
    assert_eq!(
        updates.next().await.unwrap().unwrap().state,
        ServerSwapState::Initiated
    );

    // Stop serving: the open stream ends.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    drop(std::mem::replace(&mut sim._stop, stop));
    let end = tokio::time::timeout(DEADLINE, updates.next())
        .await
        .unwrap();
    assert!(
        !matches!(end, Some(Ok(_))),
        "no more updates after a restart: {end:?}"
    );

    // Serve again on a new port; the swap goes on and a fresh client reuses its token.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(sim.server.serve(listener, async {
        let _ = stopped.await;
    }));
    let client = LoopServerClient::connect(
        &addr.to_string(),
        ServerTls::Insecure,
        Duration::from_secs(10),
        L402Config::new(Network::Regtest, sim._tokens.path()),
        Arc::new(NodePayer(Arc::new(sim.sluice.clone()))),
    )
    .unwrap();
    let _payments = sim.fund_swap(&swap).await;
    client.push_preimage(&swap.preimage.0).await.unwrap();
    eventually("preimage known", || {
        sim.server.knows_preimage(hash).unwrap().then_some(())
    })
    .await;
}
