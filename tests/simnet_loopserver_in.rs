//! The reference server's Loop In over loopback gRPC in a simulated world, with the client's
//! side played step by step as Loop's client does it (protocol notes, Loop In §1): a hold
//! invoice for the swap hash settled with the preimage as soon as it is paid (a normal
//! invoice, as lnd would settle it), a probe hold invoice cancelled as soon as it is paid, the
//! four-key HTLC funded from the client's wallet, and the internal key pushed once paid.
//! Every transaction is checked by the chain's script interpreter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use futures::StreamExt;
use sluice::chain::htlc::{HtlcKeys, HtlcV3};
use sluice::domain::{BlockHeight, Network, Preimage, Sat, SwapHash};
use sluice::lnd::LightningNode;
use sluice::lnd::types::{HoldInvoiceRequest, InvoiceState};
use sluice::loopserver::{HtlcFunder, LoopServer, LoopServerConfig};
use sluice::provider::wire;
use sluice::provider::wire::ServerSwapState as Wire;
use sluice::provider::wire::swap_server_client::SwapServerClient;
use sluice::simnet::chain::TxStatus;
use sluice::simnet::world::{SharedWorld, SimNode, World, WorldConfig, lock};
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(30);
const AMOUNT: Sat = Sat(300_000);

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

struct Sim {
    world: SharedWorld,
    /// The client's node: the simnet's node in process, or the real `LndClient` to the
    /// simnet's lnd facade.
    sluice: Arc<dyn LightningNode>,
    /// The server, when the test owns it.
    own_server: Option<LoopServer>,
    /// The whole simnet, as `sluice simnet serve` runs it, when the test started one.
    simnet: Option<sluice::simnet::runner::Simnet>,
    /// The simnet's directory, removed with the test.
    _dir: Option<tempfile::TempDir>,
    rpc: SwapServerClient<Channel>,
    /// When set, the client's lnd holds an arriving swap payment: it says so on the first
    /// channel and settles only once the second says `true`.
    held: Option<(
        tokio::sync::watch::Sender<bool>,
        tokio::sync::watch::Receiver<bool>,
    )>,
}

async fn sim(seed: u64) -> Sim {
    sim_observed(seed, None).await
}

/// A simnet whose server node reports every call to `observer`, if given.
async fn sim_observed(seed: u64, observer: Option<sluice::domain::RpcObserver>) -> Sim {
    let world: SharedWorld = Arc::new(Mutex::new(
        World::new(WorldConfig::default_topology(seed, 2)).unwrap(),
    ));
    let loop_node: Arc<dyn LightningNode> = Arc::new(SimNode::new(world.clone(), "loop").unwrap());
    let loop_node = match observer {
        Some(o) => Arc::new(sluice::lnd::MeteredNode::new(loop_node, o)),
        None => loop_node,
    };
    let sluice = SimNode::new(world.clone(), "sluice").unwrap();
    let config = LoopServerConfig {
        seed,
        l402: None,
        clock: sluice::simnet::world::engine_clock(&world),
        ..LoopServerConfig::default()
    };
    let server = LoopServer::new(config, loop_node);
    let addr = server.serve_on_loopback().await.unwrap();
    let rpc = SwapServerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Sim {
        world,
        sluice: Arc::new(sluice),
        own_server: Some(server),
        simnet: None,
        _dir: None,
        rpc,
        held: None,
    }
}

/// The simnet as `sluice simnet serve` runs it (lnd facades, the reference server on an
/// `LndClient` to the "loop" node's facade, no block timer, no traffic); the client side
/// talks to the "sluice" node's facade through the real `LndClient`.
async fn sim_served(seed: u64) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sluice::simnet::runner::SimnetConfig::new(dir.path());
    config.seed = seed;
    config.block_interval = None;
    config.traffic = false;
    config.loop_server.l402 = None;
    let simnet = sluice::simnet::runner::Simnet::start(config).await.unwrap();
    let sluice_node: Arc<dyn LightningNode> = Arc::new(simnet.sluice_lnd().connect().unwrap());
    let rpc = SwapServerClient::connect(format!("http://{}", simnet.swap_server_addr()))
        .await
        .unwrap();
    Sim {
        world: simnet.world().clone(),
        sluice: sluice_node,
        own_server: None,
        simnet: Some(simnet),
        _dir: Some(dir),
        rpc,
        held: None,
    }
}

/// A `NewLoopInSwap` call and what the client saw around it.
struct Registered {
    answer: Result<wire::ServerLoopInResponse, tonic::Status>,
    height: BlockHeight,
    preimage: Preimage,
    sender: SecretKey,
    internal: SecretKey,
    swap_fee: Sat,
    settled: tokio::sync::watch::Receiver<bool>,
    /// Whether the probe had reached the client when the answer arrived.
    probed_before_answer: bool,
    probed: tokio::sync::watch::Receiver<bool>,
}

/// What the client side of one Loop In holds.
struct InSwap {
    preimage: Preimage,
    sender: SecretKey,
    internal: SecretKey,
    htlc: HtlcV3,
    swap_fee: Sat,
    /// Whether the swap invoice settled (the server paid it).
    settled: tokio::sync::watch::Receiver<bool>,
}

fn secret(n: u8) -> SecretKey {
    SecretKey::from_slice(&[n; 32]).unwrap()
}

fn public(s: &SecretKey) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::new(), s)
}

fn probe_hash(hash: SwapHash) -> SwapHash {
    sluice::loopserver::probe_hash(hash)
}

impl Sim {
    fn server(&self) -> &LoopServer {
        match (&self.own_server, &self.simnet) {
            (Some(server), _) => server,
            (None, Some(simnet)) => simnet.swap_server(),
            (None, None) => unreachable!("a Sim has a server"),
        }
    }

    fn height(&self) -> BlockHeight {
        lock(&self.world).height()
    }

    fn mine(&self, n: u32) {
        lock(&self.world).mine(n);
    }

    async fn hold_invoice(&self, hash: SwapHash, amount: Sat, memo: &str) -> String {
        self.sluice
            .add_hold_invoice(&HoldInvoiceRequest {
                hash,
                amount: amount.to_msat(),
                memo: memo.into(),
                expiry: Duration::from_secs(3_600),
                cltv_expiry: 80,
                route_hints: Vec::new(),
                private: true,
            })
            .await
            .unwrap()
            .payment_request
    }

    /// Acts out lnd for the client: the probe invoice is cancelled once accepted (the probe
    /// flag goes up then), the swap invoice settled with the preimage once accepted (a normal
    /// invoice).
    async fn watch_invoices(
        &self,
        preimage: Preimage,
    ) -> (
        tokio::sync::watch::Receiver<bool>,
        tokio::sync::watch::Receiver<bool>,
    ) {
        let node = self.sluice.clone();
        let mut probe = node
            .subscribe_single_invoice(probe_hash(preimage.hash()))
            .await
            .unwrap();
        let mut swap = node
            .subscribe_single_invoice(preimage.hash())
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (probed_tx, probed) = tokio::sync::watch::channel(false);
        let held = self.held.clone();
        let n = node.clone();
        tokio::spawn(async move {
            while let Some(Ok(u)) = probe.next().await {
                if u.state == InvoiceState::Accepted {
                    let _ = probed_tx.send(true);
                    n.cancel_invoice(probe_hash(preimage.hash())).await.unwrap();
                    return;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(Ok(u)) = swap.next().await {
                match u.state {
                    InvoiceState::Accepted => {
                        if let Some((accepted, mut release)) = held.clone() {
                            let _ = accepted.send(true);
                            release.wait_for(|r| *r).await.unwrap();
                        }
                        node.settle_invoice(preimage).await.unwrap();
                    }
                    InvoiceState::Settled => {
                        let _ = tx.send(true);
                        return;
                    }
                    _ => {}
                }
            }
        });
        (rx, probed)
    }

    /// Terms, quote, invoices and `NewLoopInSwap`, as Loop's client sends them; the raw
    /// answer, and when the probe reached the client relative to it.
    async fn request(&mut self, n: u8) -> Registered {
        let terms = self
            .rpc
            .loop_in_terms(wire::ServerLoopInTermsRequest {
                protocol_version: 11,
                user_agent: "test".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(terms.min_swap_amount <= AMOUNT.0 && AMOUNT.0 <= terms.max_swap_amount);
        let swap_fee = self.quote().await;
        let height = self.height();
        let preimage = Preimage([n; 32]);
        let hash = preimage.hash();
        let sender = secret(n.wrapping_add(50));
        let internal = secret(n.wrapping_add(100));
        let invoice_amount = AMOUNT - swap_fee;
        let swap_invoice = self.hold_invoice(hash, invoice_amount, "swap").await;
        let probe_invoice = self
            .hold_invoice(probe_hash(hash), invoice_amount, "loop in probe")
            .await;
        let (settled, mut probed) = self.watch_invoices(preimage).await;
        let answer = self
            .rpc
            .new_loop_in_swap(wire::ServerLoopInRequest {
                sender_key: public(&sender).serialize().to_vec(),
                swap_hash: hash.0.to_vec(),
                amt: AMOUNT.0,
                swap_invoice,
                protocol_version: 11,
                probe_invoice,
                user_agent: "test".into(),
                sender_internal_pubkey: public(&internal).serialize().to_vec(),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner);
        let probed_before_answer = *probed.borrow_and_update();
        Registered {
            answer,
            height,
            preimage,
            sender,
            internal,
            swap_fee,
            settled,
            probed_before_answer,
            probed,
        }
    }

    async fn quote(&mut self) -> Sat {
        let quote = self
            .rpc
            .loop_in_quote(wire::ServerLoopInQuoteRequest {
                amt: AMOUNT.0,
                protocol_version: 11,
                pubkey: public(&secret(1)).serialize().to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        Sat(u64::try_from(quote.swap_fee).unwrap())
    }

    /// [`request`](Self::request) and the checks Loop's client makes on the answer (probe
    /// seen, keys on the curve, expiry 100..=1500 blocks ahead).
    async fn start(&mut self, n: u8) -> InSwap {
        let r = self.request(n).await;
        let resp = r.answer.unwrap();
        assert!(r.probed_before_answer, "the probe reached the client first");
        let expiry = u32::try_from(resp.expiry).unwrap();
        let height = r.height;
        assert!(
            (height.0 + 100..=height.0 + 1500).contains(&expiry),
            "expiry {expiry} at height {height}"
        );
        let keys = HtlcKeys {
            sender: public(&r.sender),
            receiver: PublicKey::from_slice(&resp.receiver_key).unwrap(),
            sender_internal: public(&r.internal),
            receiver_internal: PublicKey::from_slice(&resp.receiver_internal_pubkey).unwrap(),
        };
        assert_ne!(keys.receiver, keys.receiver_internal, "four distinct keys");
        let htlc =
            HtlcV3::with_internal_keys(keys, r.preimage.hash(), expiry, Network::Regtest).unwrap();
        InSwap {
            preimage: r.preimage,
            sender: r.sender,
            internal: r.internal,
            htlc,
            swap_fee: r.swap_fee,
            settled: r.settled,
        }
    }

    /// The client funds the HTLC from its wallet with `values` and mines it.
    async fn fund(&self, swap: &InSwap, values: &[Sat]) -> Vec<bitcoin::OutPoint> {
        let outputs: Vec<_> = values.iter().map(|v| (swap.htlc.address(), *v)).collect();
        let outpoints = self.sluice.fund(&outputs).await.unwrap();
        self.mine(1);
        outpoints
    }

    async fn wait_state(&self, hash: SwapHash, state: Wire) {
        eventually(&format!("{state:?}"), || {
            self.server()
                .loop_in_states(hash)
                .unwrap()
                .contains(&state)
                .then_some(())
        })
        .await;
    }

    /// The witness length of the confirmed spend of `outpoint`, mining until there is one.
    async fn spend_witness_len(&self, outpoint: bitcoin::OutPoint) -> usize {
        let end = tokio::time::Instant::now() + DEADLINE;
        let mut waited = 0u32;
        loop {
            let found = {
                let w = lock(&self.world);
                let chain = w.chain();
                chain.spender(&outpoint).and_then(|s| {
                    s.height?;
                    match chain.tx(&s.txid)? {
                        TxStatus::Confirmed { tx, .. } => {
                            Some(tx.input[s.input_index as usize].witness.len())
                        }
                        TxStatus::Mempool(_) => None,
                    }
                })
            };
            if let Some(len) = found {
                return len;
            }
            assert!(tokio::time::Instant::now() < end, "no spend of {outpoint}");
            // A spend in the mempool is mined at once; otherwise a block every 250 ms lets a
            // claim that waits for the next block come.
            waited += 1;
            if lock(&self.world).chain().spender(&outpoint).is_some() || waited.is_multiple_of(12) {
                self.mine(1);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn push_key(&mut self, swap: &InSwap) -> Result<(), tonic::Status> {
        self.rpc
            .push_key(wire::ServerPushKeyReq {
                protocol_version: 11,
                swap_hash: swap.preimage.hash().0.to_vec(),
                internal_privkey: swap.internal.secret_bytes().to_vec(),
            })
            .await
            .map(|_| ())
    }
}

impl Sim {
    /// Waits until the client's swap invoice settled and the server has recorded its payment
    /// (the preimage), as a client that pushes its key on settlement and retries sees it.
    async fn paid(&self, swap: &mut InSwap) {
        tokio::time::timeout(DEADLINE, swap.settled.wait_for(|s| *s))
            .await
            .expect("the server pays the swap invoice in time")
            .unwrap();
        let hash = swap.preimage.hash();
        eventually("the server's record of its payment", || {
            self.server().loop_in_paid(hash).unwrap().then_some(())
        })
        .await;
    }
}

/// The client's invoice settles the moment the payment arrives, often before the server's lnd
/// reports the payment's success to the server: a key pushed while the server's payment is in
/// flight is taken (a client that pushes once, as loopd may, is not refused), and the server
/// still claims by the key path only once its payment has succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_pushed_while_the_servers_payment_is_in_flight_is_taken() {
    let mut sim = sim(23).await;
    let (accepted_tx, mut accepted) = tokio::sync::watch::channel(false);
    let (release, release_rx) = tokio::sync::watch::channel(false);
    sim.held = Some((accepted_tx, release_rx));
    let mut swap = sim.start(3).await;
    let hash = swap.preimage.hash();
    let outpoints = sim.fund(&swap, &[AMOUNT]).await;
    sim.wait_state(hash, Wire::ServerHtlcConfirmed).await;
    tokio::time::timeout(DEADLINE, accepted.wait_for(|a| *a))
        .await
        .expect("the server pays")
        .unwrap();
    assert!(!sim.server().loop_in_paid(hash).unwrap());
    sim.push_key(&swap).await.unwrap();
    assert!(sim.server().loop_in_key_pushed(hash).unwrap());
    // Unpaid, the server claims nothing, key or not.
    for _ in 0..4 {
        sim.mine(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(lock(&sim.world).chain().spender(&outpoints[0]).is_none());
    release.send(true).unwrap();
    sim.paid(&mut swap).await;
    assert_eq!(
        sim.spend_witness_len(outpoints[0]).await,
        1,
        "a key-path claim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_loop_in_is_paid_and_claimed_by_the_key_path_after_the_key_push() {
    let mut sim = sim(21).await;
    let mut swap = sim.start(1).await;
    let hash = swap.preimage.hash();
    let mut updates = sim
        .rpc
        .subscribe_loop_in_updates(wire::SubscribeUpdatesRequest {
            protocol_version: 11,
            swap_hash: hash.0.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();

    // Too early: nothing paid, no key accepted.
    let early = sim.push_key(&swap).await.unwrap_err();
    assert_eq!(early.code(), tonic::Code::FailedPrecondition, "{early:?}");

    let outpoints = sim.fund(&swap, &[AMOUNT]).await;
    sim.wait_state(hash, Wire::ServerHtlcConfirmed).await;
    sim.paid(&mut swap).await;
    assert!(sim.server().loop_in_paid(hash).unwrap());

    // A key that is not the swap's internal key is refused; the right one is taken.
    let wrong = sim
        .rpc
        .push_key(wire::ServerPushKeyReq {
            protocol_version: 11,
            swap_hash: hash.0.to_vec(),
            internal_privkey: secret(9).secret_bytes().to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::InvalidArgument, "{wrong:?}");
    sim.push_key(&swap).await.unwrap();
    assert!(sim.server().loop_in_key_pushed(hash).unwrap());

    assert_eq!(
        sim.spend_witness_len(outpoints[0]).await,
        1,
        "a key-path claim"
    );
    sim.wait_state(hash, Wire::ServerSuccess).await;
    let mut streamed = Vec::new();
    while let Some(u) = tokio::time::timeout(DEADLINE, updates.next())
        .await
        .unwrap()
    {
        streamed.push(u.unwrap().state);
    }
    assert_eq!(
        streamed,
        [
            Wire::ServerInitiated as i32,
            Wire::ServerHtlcConfirmed as i32,
            Wire::ServerSuccess as i32
        ],
        "the stream replays the log and ends after the final state"
    );
    // The client received amt - fee off chain and the server kept its fee.
    assert!(swap.swap_fee > Sat(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_push_the_server_claims_by_the_success_leaf() {
    let mut sim = sim(22).await;
    let mut swap = sim.start(2).await;
    let hash = swap.preimage.hash();
    let outpoints = sim.fund(&swap, &[AMOUNT]).await;
    sim.paid(&mut swap).await;
    // The server waits one block for the key, then uses the preimage its payment bought.
    sim.mine(1);
    assert_eq!(sim.spend_witness_len(outpoints[0]).await, 4);
    sim.wait_state(hash, Wire::ServerSuccess).await;
    assert!(!sim.server().loop_in_key_pushed(hash).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_htlc_value_is_never_paid() {
    let mut sim = sim(23).await;
    let swap = sim.start(3).await;
    let hash = swap.preimage.hash();
    sim.fund(&swap, &[AMOUNT - Sat(1_000)]).await;
    sim.wait_state(hash, Wire::ServerFailedInvalidHtlcAmount)
        .await;
    sim.mine(3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sim.server().loop_in_paid(hash).unwrap());
    assert!(!*swap.settled.borrow());

    // Two outputs to the script: also never paid.
    let swap = sim.start(4).await;
    let hash = swap.preimage.hash();
    sim.fund(&swap, &[AMOUNT, AMOUNT]).await;
    sim.wait_state(hash, Wire::ServerFailedMultipleSwapScripts)
        .await;
    assert!(!sim.server().loop_in_paid(hash).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_loop_in_requests_are_refused_with_the_field_named() {
    let mut sim = sim(24).await;
    let preimage = Preimage([5; 32]);
    let hash = preimage.hash();
    let fee = {
        let q = sim
            .rpc
            .loop_in_quote(wire::ServerLoopInQuoteRequest {
                amt: AMOUNT.0,
                protocol_version: 11,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        Sat(u64::try_from(q.swap_fee).unwrap())
    };
    let good_invoice = sim.hold_invoice(hash, AMOUNT - fee, "swap").await;
    let probe = sim
        .hold_invoice(probe_hash(hash), AMOUNT - fee, "probe")
        .await;
    let short_invoice = sim
        .hold_invoice(SwapHash([6; 32]), AMOUNT - fee - Sat(1), "swap")
        .await;
    let base = wire::ServerLoopInRequest {
        sender_key: public(&secret(7)).serialize().to_vec(),
        swap_hash: hash.0.to_vec(),
        amt: AMOUNT.0,
        swap_invoice: good_invoice.clone(),
        protocol_version: 11,
        probe_invoice: probe.clone(),
        sender_internal_pubkey: public(&secret(8)).serialize().to_vec(),
        ..Default::default()
    };
    let cases = [
        (
            wire::ServerLoopInRequest {
                protocol_version: 10,
                ..base.clone()
            },
            "protocol_version",
        ),
        (
            wire::ServerLoopInRequest {
                sender_internal_pubkey: Vec::new(),
                ..base.clone()
            },
            "sender_internal_pubkey",
        ),
        (
            wire::ServerLoopInRequest {
                sender_key: vec![2; 32],
                ..base.clone()
            },
            "sender_key",
        ),
        (
            wire::ServerLoopInRequest {
                amt: 1,
                ..base.clone()
            },
            "LoopInTerms",
        ),
        (
            wire::ServerLoopInRequest {
                swap_invoice: short_invoice,
                ..base.clone()
            },
            "swap_invoice",
        ),
        (
            wire::ServerLoopInRequest {
                probe_invoice: good_invoice.clone(),
                ..base.clone()
            },
            "probe_invoice",
        ),
    ];
    for (request, field) in cases {
        let err = sim.rpc.new_loop_in_swap(request).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    assert!(
        sim.server().loop_in_hashes().is_empty(),
        "nothing registered"
    );
    let quote_err = sim
        .rpc
        .loop_in_quote(wire::ServerLoopInQuoteRequest {
            amt: 1,
            protocol_version: 11,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(quote_err.code(), tonic::Code::InvalidArgument);
}

// ----- the Loop In misbehaviours, switched on by name as a person or a client test does -----

fn misbehave(sim: &Sim, name: &str) {
    sim.server()
        .misbehave(Some(sluice::loopserver::misbehave::find(name).unwrap()))
        .unwrap();
}

/// The client's timeout sweep of its HTLC, signed with its script key, once the tip reaches
/// the expiry.
fn client_timeout_sweep(swap: &InSwap, outpoint: bitcoin::OutPoint) -> bitcoin::Transaction {
    sluice::loopserver::sign::timeout_claim(
        &swap.htlc,
        &swap.sender,
        outpoint,
        AMOUNT,
        &bitcoin::ScriptBuf::new_p2tr_tweaked(swap.htlc.output_key()),
        sluice::chain::SatPerKw(2_000),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_switches_change_when_the_probe_reaches_the_client() {
    let mut sim = sim(31).await;
    misbehave(&sim, "loop-in-probe-skipped");
    let r = sim.request(1).await;
    assert!(r.answer.is_ok());
    assert!(!r.probed_before_answer, "answered without a probe");

    misbehave(&sim, "loop-in-probe-after-reply");
    let mut r = sim.request(2).await;
    assert!(r.answer.is_ok());
    assert!(!r.probed_before_answer, "answered before the probe");
    tokio::time::timeout(DEADLINE, r.probed.wait_for(|p| *p))
        .await
        .expect("the late probe arrives")
        .unwrap();

    misbehave(&sim, "loop-in-error-after-probe");
    let r = sim.request(3).await;
    assert!(r.probed_before_answer, "probed");
    assert_eq!(r.answer.unwrap_err().code(), tonic::Code::Unknown);
    assert!(
        sim.server().loop_in_states(r.preimage.hash()).is_err(),
        "not registered"
    );
}

/// Whether an answer at a height has the shape a switch promises.
type Shape = fn(&wire::ServerLoopInResponse, u32) -> bool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_switches_tamper_with_keys_and_expiry() {
    let mut sim = sim(32).await;
    let cases: [(&str, Shape); 6] = [
        ("loop-in-receiver-key-32-bytes", |a, _| {
            a.receiver_key.len() == 32
        }),
        ("loop-in-receiver-key-off-curve", |a, _| {
            a.receiver_key.len() == 33 && PublicKey::from_slice(&a.receiver_key).is_err()
        }),
        ("loop-in-internal-key-missing", |a, _| {
            a.receiver_internal_pubkey.is_empty()
        }),
        ("loop-in-internal-key-off-curve", |a, _| {
            a.receiver_internal_pubkey.len() == 33
                && PublicKey::from_slice(&a.receiver_internal_pubkey).is_err()
        }),
        ("loop-in-expiry-too-soon", |a, h| {
            (a.expiry as u32) < h + 100
        }),
        ("loop-in-expiry-too-far", |a, h| {
            (a.expiry as u32) > h + 1500
        }),
    ];
    for (i, (name, shape)) in cases.into_iter().enumerate() {
        misbehave(&sim, name);
        let r = sim.request(10 + i as u8).await;
        let answer = r.answer.unwrap();
        assert!(shape(&answer, r.height.0), "{name}: {answer:?}");
    }
    // Honest again: the client's checks pass.
    sim.server().misbehave(None).unwrap();
    sim.start(20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_pays_leaves_the_client_its_timeout_path() {
    let mut sim = sim(33).await;
    misbehave(&sim, "loop-in-never-pays");
    let swap = sim.start(1).await;
    let hash = swap.preimage.hash();
    let outpoint = sim.fund(&swap, &[AMOUNT]).await[0];
    sim.wait_state(hash, Wire::ServerHtlcConfirmed).await;
    let expiry = swap.htlc.expiry();
    let now = sim.height().0;
    sim.mine(expiry - now - 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!sim.server().loop_in_paid(hash).unwrap());
    assert!(!*swap.settled.borrow());
    // At the expiry the client sweeps its HTLC back; the server reports the timeout.
    sim.mine(1);
    sim.sluice
        .publish_transaction(&client_timeout_sweep(&swap, outpoint), "timeout")
        .await
        .unwrap();
    assert_eq!(sim.spend_witness_len(outpoint).await, 3);
    sim.wait_state(hash, Wire::ServerFailedTimeout).await;
    assert!(!sim.server().loop_in_paid(hash).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_payer_pays_only_at_the_expiry() {
    let mut sim = sim(34).await;
    misbehave(&sim, "loop-in-pays-late");
    let mut swap = sim.start(1).await;
    let hash = swap.preimage.hash();
    sim.fund(&swap, &[AMOUNT]).await;
    let expiry = swap.htlc.expiry();
    let now = sim.height().0;
    sim.mine(expiry - now - 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !sim.server().loop_in_paid(hash).unwrap(),
        "not before the expiry"
    );
    sim.mine(1);
    sim.paid(&mut swap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_can_be_made_to_pay_for_a_wrong_htlc() {
    let mut sim = sim(35).await;
    misbehave(&sim, "loop-in-pays-despite-wrong-htlc");
    let mut swap = sim.start(1).await;
    sim.fund(&swap, &[AMOUNT - Sat(1_000)]).await;
    sim.paid(&mut swap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_switches_choose_the_path_or_no_claim() {
    let mut sim = sim(36).await;

    // PushKey refused: the success leaf.
    misbehave(&sim, "loop-in-push-key-error");
    let mut swap = sim.start(1).await;
    let outpoint = sim.fund(&swap, &[AMOUNT]).await[0];
    sim.paid(&mut swap).await;
    let err = sim.push_key(&swap).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unknown, "{err:?}");
    sim.mine(1);
    assert_eq!(sim.spend_witness_len(outpoint).await, 4);

    // The key pushed and ignored: the success leaf all the same.
    misbehave(&sim, "loop-in-claim-script-path");
    let mut swap = sim.start(2).await;
    let outpoint = sim.fund(&swap, &[AMOUNT]).await[0];
    sim.paid(&mut swap).await;
    sim.push_key(&swap).await.unwrap();
    sim.mine(1);
    assert_eq!(sim.spend_witness_len(outpoint).await, 4);

    // Paid, never claimed.
    misbehave(&sim, "loop-in-never-claims");
    let mut swap = sim.start(3).await;
    let hash = swap.preimage.hash();
    let outpoint = sim.fund(&swap, &[AMOUNT]).await[0];
    sim.paid(&mut swap).await;
    sim.push_key(&swap).await.unwrap();
    sim.mine(3);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(lock(&sim.world).chain().spender(&outpoint).is_none());
    assert_eq!(
        sim.server().loop_in_states(hash).unwrap().last(),
        Some(&Wire::ServerHtlcConfirmed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quote_bait_and_the_short_stream() {
    let mut sim = sim(37).await;
    misbehave(&sim, "loop-in-quote-above-first");
    let first = sim.quote().await;
    let second = sim.quote().await;
    assert_eq!(second, first + Sat(5_000));

    misbehave(&sim, "loop-in-stream-close-early");
    let swap = sim.start(1).await;
    let mut updates = sim
        .rpc
        .subscribe_loop_in_updates(wire::SubscribeUpdatesRequest {
            protocol_version: 11,
            swap_hash: swap.preimage.hash().0.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(updates.next().await.is_some());
    let end = tokio::time::timeout(DEADLINE, updates.next())
        .await
        .unwrap();
    assert!(end.is_none(), "EOF after the first update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_pushed_before_the_invoice_settled_lets_a_server_claim_without_paying() {
    let mut sim = sim(38).await;
    misbehave(&sim, "loop-in-claim-without-paying");

    // A client that pushes its key early (what a correct client never does) loses its HTLC.
    let swap = sim.start(1).await;
    let outpoint = sim.fund(&swap, &[AMOUNT]).await[0];
    sim.wait_state(swap.preimage.hash(), Wire::ServerHtlcConfirmed)
        .await;
    sim.push_key(&swap).await.unwrap();
    assert_eq!(
        sim.spend_witness_len(outpoint).await,
        1,
        "taken by the key path"
    );
    assert!(!*swap.settled.borrow(), "and never paid");

    // A client that keeps its key keeps its HTLC: nothing spends it, the timeout leaf does.
    let swap = sim.start(2).await;
    let outpoint = sim.fund(&swap, &[AMOUNT]).await[0];
    let now = sim.height().0;
    sim.mine(swap.htlc.expiry() - now);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(lock(&sim.world).chain().spender(&outpoint).is_none());
    sim.sluice
        .publish_transaction(&client_timeout_sweep(&swap, outpoint), "timeout")
        .await
        .unwrap();
    assert_eq!(sim.spend_witness_len(outpoint).await, 3);
    assert!(!*swap.settled.borrow());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_invoice_paid_as_the_probe_pays_the_client_before_any_htlc() {
    let mut sim = sim(39).await;
    misbehave(&sim, "loop-in-swap-invoice-as-probe");
    let r = sim.request(1).await;
    assert!(r.answer.is_ok());
    assert!(!r.probed_before_answer, "no probe reached the client");
    assert!(
        *r.settled.borrow(),
        "the swap invoice was paid: the client holds the money"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_in_carries_on_across_a_server_restart() {
    let mut sim = sim(40).await;
    // A second serving of the same server, which is then stopped: its open streams end, the
    // swap registered through it carries on, and the key is pushed once serving again.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sim.server().serve(listener, async {
        let _ = stopped.await;
    }));
    let first = std::mem::replace(
        &mut sim.rpc,
        SwapServerClient::connect(format!("http://{addr}"))
            .await
            .unwrap(),
    );
    let mut swap = sim.start(1).await;
    let hash = swap.preimage.hash();
    let mut updates = sim
        .rpc
        .subscribe_loop_in_updates(wire::SubscribeUpdatesRequest {
            protocol_version: 11,
            swap_hash: hash.0.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(updates.next().await.is_some());
    stop.send(()).unwrap();
    let end = tokio::time::timeout(DEADLINE, updates.next())
        .await
        .unwrap();
    assert!(
        !matches!(end, Some(Ok(_))),
        "the stream ends with the serving"
    );

    let outpoint = sim.fund(&swap, &[AMOUNT]).await[0];
    sim.paid(&mut swap).await;
    sim.rpc = first;
    sim.push_key(&swap).await.unwrap();
    assert_eq!(sim.spend_witness_len(outpoint).await, 1);
    sim.wait_state(hash, Wire::ServerSuccess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_payment_is_tried_once_a_block() {
    let payments = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = payments.clone();
    let observer: sluice::domain::RpcObserver = Arc::new(move |method, _, _| {
        if method == "SendPaymentV2" {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut sim = sim_observed(41, Some(observer)).await;
    let swap = sim.start(1).await;
    let count = || payments.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(count(), 1, "the probe");
    // The client cancels its swap invoice: every payment fails at once at the destination.
    sim.sluice
        .cancel_invoice(swap.preimage.hash())
        .await
        .unwrap();
    sim.fund(&swap, &[AMOUNT]).await;
    eventually("the first payment attempt", || (count() >= 2).then_some(())).await;
    // The engine may see the confirmation before the block that holds it: then it tries at
    // the old tip and again at the new one. After that, nothing until the next block.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled_count = count();
    assert!(settled_count <= 3, "{settled_count} attempts for one block");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(), settled_count, "no retry within a block");
    sim.mine(1);
    eventually("the attempt of the next block", || {
        (count() > settled_count).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(), settled_count + 1, "one attempt for the new block");
    assert!(!sim.server().loop_in_paid(swap.preimage.hash()).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simnet_as_served_runs_a_loop_in_through_the_lnd_facades() {
    let mut sim = sim_served(42).await;
    let mut swap = sim.start(1).await;
    let hash = swap.preimage.hash();
    let outpoint = sim.fund(&swap, &[AMOUNT]).await[0];
    sim.wait_state(hash, Wire::ServerHtlcConfirmed).await;
    sim.paid(&mut swap).await;
    sim.push_key(&swap).await.unwrap();
    assert_eq!(sim.spend_witness_len(outpoint).await, 1);
    sim.wait_state(hash, Wire::ServerSuccess).await;
    if let Some(simnet) = sim.simnet.take() {
        simnet.stop().await;
    }
}
