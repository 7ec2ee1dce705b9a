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
    sluice: SimNode,
    server: LoopServer,
    rpc: SwapServerClient<Channel>,
}

async fn sim(seed: u64) -> Sim {
    let world: SharedWorld = Arc::new(Mutex::new(
        World::new(WorldConfig::default_topology(seed, 2)).unwrap(),
    ));
    let loop_node = SimNode::new(world.clone(), "loop").unwrap();
    let sluice = SimNode::new(world.clone(), "sluice").unwrap();
    let config = LoopServerConfig {
        seed,
        l402: None,
        clock: sluice::simnet::world::engine_clock(&world),
        ..LoopServerConfig::default()
    };
    let server = LoopServer::new(config, Arc::new(loop_node));
    let addr = server.serve_on_loopback().await.unwrap();
    let rpc = SwapServerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Sim {
        world,
        sluice,
        server,
        rpc,
    }
}

/// What the client side of one Loop In holds.
struct InSwap {
    preimage: Preimage,
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
                private: true,
            })
            .await
            .unwrap()
            .payment_request
    }

    /// Acts out lnd for the client: the probe invoice is cancelled once accepted, the swap
    /// invoice settled with the preimage once accepted (a normal invoice).
    async fn watch_invoices(&self, preimage: Preimage) -> tokio::sync::watch::Receiver<bool> {
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
        let n = node.clone();
        tokio::spawn(async move {
            while let Some(Ok(u)) = probe.next().await {
                if u.state == InvoiceState::Accepted {
                    n.cancel_invoice(probe_hash(preimage.hash())).await.unwrap();
                    return;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(Ok(u)) = swap.next().await {
                match u.state {
                    InvoiceState::Accepted => node.settle_invoice(preimage).await.unwrap(),
                    InvoiceState::Settled => {
                        let _ = tx.send(true);
                        return;
                    }
                    _ => {}
                }
            }
        });
        rx
    }

    /// Terms, quote, invoices, `NewLoopInSwap`, and the checks Loop's client makes on the
    /// answer (keys on the curve, expiry 100..=1500 blocks ahead).
    async fn start(&mut self, n: u8) -> InSwap {
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
        let swap_fee = Sat(u64::try_from(quote.swap_fee).unwrap());
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
        let settled = self.watch_invoices(preimage).await;
        let resp = self
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
            .unwrap()
            .into_inner();
        let expiry = u32::try_from(resp.expiry).unwrap();
        assert!(
            (height.0 + 100..=height.0 + 1500).contains(&expiry),
            "expiry {expiry} at height {height}"
        );
        let keys = HtlcKeys {
            sender: public(&sender),
            receiver: PublicKey::from_slice(&resp.receiver_key).unwrap(),
            sender_internal: public(&internal),
            receiver_internal: PublicKey::from_slice(&resp.receiver_internal_pubkey).unwrap(),
        };
        assert_ne!(keys.receiver, keys.receiver_internal, "four distinct keys");
        let htlc = HtlcV3::with_internal_keys(keys, hash, expiry, Network::Regtest).unwrap();
        InSwap {
            preimage,
            internal,
            htlc,
            swap_fee,
            settled,
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
            self.server
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
            if lock(&self.world).chain().spender(&outpoint).is_some() {
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

async fn settled(swap: &mut InSwap) {
    tokio::time::timeout(DEADLINE, swap.settled.wait_for(|s| *s))
        .await
        .expect("the server pays the swap invoice in time")
        .unwrap();
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
    settled(&mut swap).await;
    assert!(sim.server.loop_in_paid(hash).unwrap());

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
    assert!(sim.server.loop_in_key_pushed(hash).unwrap());

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
    settled(&mut swap).await;
    // The server waits one block for the key, then uses the preimage its payment bought.
    sim.mine(1);
    assert_eq!(sim.spend_witness_len(outpoints[0]).await, 4);
    sim.wait_state(hash, Wire::ServerSuccess).await;
    assert!(!sim.server.loop_in_key_pushed(hash).unwrap());
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
    assert!(!sim.server.loop_in_paid(hash).unwrap());
    assert!(!*swap.settled.borrow());

    // Two outputs to the script: also never paid.
    let swap = sim.start(4).await;
    let hash = swap.preimage.hash();
    sim.fund(&swap, &[AMOUNT, AMOUNT]).await;
    sim.wait_state(hash, Wire::ServerFailedMultipleSwapScripts)
        .await;
    assert!(!sim.server.loop_in_paid(hash).unwrap());
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
    assert!(sim.server.loop_in_hashes().is_empty(), "nothing registered");
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
