//! The Loop server client against an in-process `looprpc.SwapServer` over loopback gRPC.
//!
//! The server side is real: an L402 front that mints macaroons with a real HMAC chain and
//! checks the client's `preimage=` caveat against the invoice it issued, real BOLT11
//! invoices, terms and quotes with their own checks. Only lnd is stood in for, by a payer that
//! "pays" an invoice by looking up the preimage the server generated for it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use futures::StreamExt;
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use sluice::domain::{BlockHeight, Msat, Network, Sat, SwapHash};
use sluice::provider::l402::{L402Config, L402Payer, PaidInvoice, PayError, Token, TokenStore};
use sluice::provider::macaroon::Macaroon;
use sluice::provider::port::{
    NewLoopOutRequest, ServerSwapState, SwapProvider, SweepPrevout, SweepSignRequest,
};
use sluice::provider::validate::{ContractExpectations, validate_loop_out};
use sluice::provider::wire;
use sluice::provider::wire::swap_server_server::{SwapServer, SwapServerServer};
use sluice::provider::{ErrorKind, LoopServerClient, ServerTls};
use tonic::{Request, Response, Status};

const ROOT_KEY: &[u8] = b"test server root key";
const HEIGHT: i32 = 1_000;

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn node_key() -> SecretKey {
    SecretKey::from_slice(&[0x33; 32]).unwrap()
}

fn node_pubkey() -> [u8; 33] {
    PublicKey::from_secret_key(&Secp256k1::new(), &node_key()).serialize()
}

/// A regtest invoice from the server's node.
fn invoice(hash: [u8; 32], amount_sat: u64) -> String {
    let secp = Secp256k1::new();
    InvoiceBuilder::new(Currency::Regtest)
        .description("loop".into())
        .payment_hash(sha256::Hash::from_byte_array(hash))
        .payment_secret(PaymentSecret(rand::random()))
        .duration_since_epoch(now())
        .min_final_cltv_expiry_delta(40)
        .amount_milli_satoshis(amount_sat * 1000)
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &node_key()))
        .unwrap()
        .to_string()
}

/// How the L402 front answers an unauthenticated call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ChallengeMode {
    Normal,
    Malformed,
}

/// What the payer's lightning "network" knows: preimages of invoices the server issued.
type Preimages = Arc<Mutex<HashMap<[u8; 32], [u8; 32]>>>;

struct Front {
    price_sat: u64,
    mode: ChallengeMode,
    preimages: Preimages,
    challenges: AtomicUsize,
    authorized: AtomicUsize,
    /// Challenge even calls that carry a valid token (as after a server-side reset).
    revoked: std::sync::atomic::AtomicBool,
    /// (method, protocol_version, user_agent) of every request that passed the front.
    seen: Mutex<Vec<(&'static str, i32, String)>>,
}

impl Front {
    /// Mints a token: identifier `0u16 || hash || token id`, a server caveat, an invoice.
    fn issue(&self) -> (Macaroon, String, [u8; 32]) {
        let preimage: [u8; 32] = rand::random();
        let hash = sha256::Hash::hash(&preimage).to_byte_array();
        self.preimages.lock().unwrap().insert(hash, preimage);
        let mut id = vec![0u8, 0];
        id.extend_from_slice(&hash);
        id.extend_from_slice(&rand::random::<[u8; 32]>());
        let mut mac = Macaroon::new(ROOT_KEY, &id, "loop");
        mac.add_first_party_caveat(b"services=loop:0");
        (mac, invoice(hash, self.price_sat), hash)
    }

    fn challenge(&self) -> Status {
        self.challenges.fetch_add(1, Ordering::SeqCst);
        let mut status = Status::internal("payment required");
        let md = status.metadata_mut();
        match self.mode {
            ChallengeMode::Normal => {
                let (mac, inv, _) = self.issue();
                let b64 = base64::engine::general_purpose::STANDARD.encode(mac.to_binary());
                for scheme in ["LSAT", "L402"] {
                    let v = format!("{scheme} macaroon=\"{b64}\", invoice=\"{inv}\"");
                    md.append("www-authenticate", v.parse().unwrap());
                }
            }
            ChallengeMode::Malformed => {
                md.append(
                    "www-authenticate",
                    "L402 macaroon=, invoice=".parse().unwrap(),
                );
            }
        }
        status
    }

    /// aperture's check: a valid macaroon chain whose `preimage=` caveat hashes to the
    /// payment hash in the identifier.
    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(value) = req.metadata().get("macaroon") else {
            return Err(self.challenge());
        };
        if self.revoked.load(Ordering::SeqCst) {
            return Err(self.challenge());
        }
        let bytes = hex::decode(value.to_str().map_err(|_| bad())?).map_err(|_| bad())?;
        let mac = Macaroon::from_binary(&bytes).map_err(|_| bad())?;
        let caveats = mac.verify(ROOT_KEY).map_err(|_| bad())?;
        let hash: [u8; 32] = mac.id()[2..34].try_into().map_err(|_| bad())?;
        let preimage = caveats
            .iter()
            .find_map(|c| c.strip_prefix(b"preimage="))
            .ok_or_else(bad)?;
        let preimage = hex::decode(preimage).map_err(|_| bad())?;
        if sha256::Hash::hash(&preimage).to_byte_array() != hash {
            return Err(bad());
        }
        self.authorized.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn record(&self, method: &'static str, version: i32, agent: &str) {
        self.seen
            .lock()
            .unwrap()
            .push((method, version, agent.to_owned()));
    }
}

fn bad() -> Status {
    Status::unauthenticated("invalid L402 token")
}

const MIN_AMT: u64 = 10_000;
const MAX_AMT: u64 = 1_000_000;
const MIN_DELTA: i32 = 30;
const MAX_DELTA: i32 = 400;

fn fee_for(amt: u64) -> u64 {
    50 + amt / 1000
}

struct Server {
    front: Arc<Front>,
    htlc_key: [u8; 33],
}

fn check_version(v: i32) -> Result<(), Status> {
    if v == wire::ProtocolVersion::Musig2 as i32 {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "protocol version {v} not supported"
        )))
    }
}

#[tonic::async_trait]
impl SwapServer for Server {
    async fn loop_out_terms(
        &self,
        request: Request<wire::ServerLoopOutTermsRequest>,
    ) -> Result<Response<wire::ServerLoopOutTerms>, Status> {
        self.front.authorize(&request)?;
        let r = request.into_inner();
        self.front
            .record("LoopOutTerms", r.protocol_version, &r.user_agent);
        check_version(r.protocol_version)?;
        Ok(Response::new(wire::ServerLoopOutTerms {
            min_swap_amount: MIN_AMT,
            max_swap_amount: MAX_AMT,
            min_cltv_delta: MIN_DELTA,
            max_cltv_delta: MAX_DELTA,
        }))
    }

    async fn new_loop_out_swap(
        &self,
        request: Request<wire::ServerLoopOutRequest>,
    ) -> Result<Response<wire::ServerLoopOutResponse>, Status> {
        self.front.authorize(&request)?;
        let r = request.into_inner();
        self.front
            .record("NewLoopOutSwap", r.protocol_version, &r.user_agent);
        check_version(r.protocol_version)?;
        if !(MIN_AMT..=MAX_AMT).contains(&r.amt) {
            return Err(Status::unknown("swap amount out of range"));
        }
        if !(HEIGHT + MIN_DELTA..=HEIGHT + MAX_DELTA).contains(&r.expiry) {
            return Err(Status::unknown("expiry out of range"));
        }
        PublicKey::from_slice(&r.receiver_key).map_err(|_| Status::invalid_argument("key"))?;
        let hash: [u8; 32] = r
            .swap_hash
            .try_into()
            .map_err(|_| Status::invalid_argument("swap hash"))?;
        let prepay = 100;
        Ok(Response::new(wire::ServerLoopOutResponse {
            swap_invoice: invoice(hash, r.amt + fee_for(r.amt) - prepay),
            prepay_invoice: invoice(rand::random(), prepay),
            sender_key: self.htlc_key.to_vec(),
            server_message: "welcome".into(),
            ..Default::default()
        }))
    }

    /// Never answers once authorized, to exercise the client's per-call timeout.
    async fn loop_out_push_preimage(
        &self,
        request: Request<wire::ServerLoopOutPushPreimageRequest>,
    ) -> Result<Response<wire::ServerLoopOutPushPreimageResponse>, Status> {
        self.front.authorize(&request)?;
        futures::future::pending().await
    }

    async fn loop_out_quote(
        &self,
        request: Request<wire::ServerLoopOutQuoteRequest>,
    ) -> Result<Response<wire::ServerLoopOutQuote>, Status> {
        self.front.authorize(&request)?;
        let r = request.into_inner();
        self.front
            .record("LoopOutQuote", r.protocol_version, &r.user_agent);
        check_version(r.protocol_version)?;
        if !(MIN_AMT..=MAX_AMT).contains(&r.amt) {
            return Err(Status::unknown("swap amount out of range"));
        }
        Ok(Response::new(wire::ServerLoopOutQuote {
            swap_payment_dest: hex::encode(node_pubkey()),
            swap_fee: i64::try_from(fee_for(r.amt)).unwrap(),
            prepay_amt: 100,
            ..Default::default()
        }))
    }

    type SubscribeLoopOutUpdatesStream =
        futures::stream::BoxStream<'static, Result<wire::SubscribeLoopOutUpdatesResponse, Status>>;

    async fn subscribe_loop_out_updates(
        &self,
        request: Request<wire::SubscribeUpdatesRequest>,
    ) -> Result<Response<Self::SubscribeLoopOutUpdatesStream>, Status> {
        self.front.authorize(&request)?;
        check_version(request.get_ref().protocol_version)?;
        let updates = [
            wire::ServerSwapState::ServerInitiated,
            wire::ServerSwapState::ServerHtlcPublished,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(wire::SubscribeLoopOutUpdatesResponse {
                timestamp_ns: i64::try_from(i).unwrap(),
                state: s as i32,
            })
        });
        Ok(Response::new(futures::stream::iter(updates).boxed()))
    }

    async fn cancel_loop_out_swap(
        &self,
        _request: Request<wire::CancelLoopOutSwapRequest>,
    ) -> Result<Response<wire::CancelLoopOutSwapResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn recommend_routing_plugin(
        &self,
        _request: Request<wire::RecommendRoutingPluginReq>,
    ) -> Result<Response<wire::RecommendRoutingPluginRes>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn report_routing_result(
        &self,
        _request: Request<wire::ReportRoutingResultReq>,
    ) -> Result<Response<wire::ReportRoutingResultRes>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    /// Answers with a 65-byte nonce: the client must refuse it.
    async fn mu_sig2_sign_sweep(
        &self,
        request: Request<wire::MuSig2SignSweepReq>,
    ) -> Result<Response<wire::MuSig2SignSweepRes>, Status> {
        self.front.authorize(&request)?;
        Ok(Response::new(wire::MuSig2SignSweepRes {
            nonce: vec![2; 65],
            partial_signature: vec![1; 32],
        }))
    }

    async fn fetch_l402(
        &self,
        request: Request<wire::FetchL402Request>,
    ) -> Result<Response<wire::FetchL402Response>, Status> {
        self.front.authorize(&request)?;
        Ok(Response::new(wire::FetchL402Response {}))
    }

    // This server exercises the client's L402 handling on Loop Out calls only.

    type SubscribeLoopInUpdatesStream =
        futures::stream::BoxStream<'static, Result<wire::SubscribeLoopInUpdatesResponse, Status>>;

    async fn loop_in_terms(
        &self,
        _request: Request<wire::ServerLoopInTermsRequest>,
    ) -> Result<Response<wire::ServerLoopInTerms>, Status> {
        Err(Status::unimplemented("Loop In"))
    }

    async fn new_loop_in_swap(
        &self,
        _request: Request<wire::ServerLoopInRequest>,
    ) -> Result<Response<wire::ServerLoopInResponse>, Status> {
        Err(Status::unimplemented("Loop In"))
    }

    async fn loop_in_quote(
        &self,
        _request: Request<wire::ServerLoopInQuoteRequest>,
    ) -> Result<Response<wire::ServerLoopInQuoteResponse>, Status> {
        Err(Status::unimplemented("Loop In"))
    }

    async fn subscribe_loop_in_updates(
        &self,
        _request: Request<wire::SubscribeUpdatesRequest>,
    ) -> Result<Response<Self::SubscribeLoopInUpdatesStream>, Status> {
        Err(Status::unimplemented("Loop In"))
    }

    async fn probe(
        &self,
        _request: Request<wire::ServerProbeRequest>,
    ) -> Result<Response<wire::ServerProbeResponse>, Status> {
        Err(Status::unimplemented("Loop In"))
    }

    async fn push_key(
        &self,
        _request: Request<wire::ServerPushKeyReq>,
    ) -> Result<Response<wire::ServerPushKeyRes>, Status> {
        Err(Status::unimplemented("Loop In"))
    }
}

impl Payer {
    fn new(front: &Arc<Front>, fail: bool, dir: &std::path::Path) -> Payer {
        Payer {
            preimages: front.preimages.clone(),
            front: front.clone(),
            hold_until_challenges: 0,
            fail,
            pays: AtomicUsize::new(0),
            pending_seen: Mutex::default(),
            pending_path: dir.join("l402.token.pending"),
            history: Mutex::default(),
        }
    }
}

/// The lnd stand-in: settles an invoice if the server's "network" knows its preimage.
struct Payer {
    preimages: Preimages,
    /// The server, to hold a payment until enough challenges were issued.
    front: Arc<Front>,
    /// Hold each payment until the server has issued this many challenges (0: no hold).
    hold_until_challenges: usize,
    fail: bool,
    pays: AtomicUsize,
    /// Whether `l402.token.pending` existed when each payment started.
    pending_seen: Mutex<Vec<bool>>,
    pending_path: std::path::PathBuf,
    /// Payments made earlier (e.g. before a restart): hash ⇒ settled.
    history: Mutex<HashMap<[u8; 32], bool>>,
}

#[async_trait]
impl L402Payer for Payer {
    async fn pay(
        &self,
        invoice: &str,
        max_fee: Sat,
        _timeout: Duration,
    ) -> Result<PaidInvoice, PayError> {
        assert_eq!(max_fee, Sat(10));
        self.pays.fetch_add(1, Ordering::SeqCst);
        // Let parallel calls reach the server and be challenged while this payment is in
        // flight, as a real payment would take a while.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.front.challenges.load(Ordering::SeqCst) < self.hold_until_challenges {
            assert!(
                tokio::time::Instant::now() < deadline,
                "challenges never arrived"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if self.hold_until_challenges > 0 {
            // The challenged calls now hold their answers; give them a moment to act on them
            // while this payment is still in flight. (Correctness does not depend on it: it
            // only makes a missing purchase lock show up as a second payment.)
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.pending_seen
            .lock()
            .unwrap()
            .push(self.pending_path.exists());
        let inv: lightning_invoice::Bolt11Invoice = invoice.parse().unwrap();
        let hash = inv.payment_hash().to_byte_array();
        if self.fail {
            self.history.lock().unwrap().insert(hash, false);
            return Err(PayError::Failed("no route".into()));
        }
        let preimage = *self.preimages.lock().unwrap().get(&hash).unwrap();
        self.history.lock().unwrap().insert(hash, true);
        Ok(PaidInvoice {
            preimage,
            amount: Msat(inv.amount_milli_satoshis().unwrap()),
            fee: Msat(1000),
        })
    }

    async fn track(&self, payment_hash: [u8; 32]) -> Result<Option<PaidInvoice>, PayError> {
        match self.history.lock().unwrap().get(&payment_hash) {
            Some(true) => Ok(Some(PaidInvoice {
                preimage: self.preimages.lock().unwrap()[&payment_hash],
                amount: Msat(0),
                fee: Msat(0),
            })),
            _ => Ok(None),
        }
    }
}

struct World {
    front: Arc<Front>,
    payer: Arc<Payer>,
    addr: String,
    dir: tempfile::TempDir,
}

impl World {
    async fn start(price_sat: u64, mode: ChallengeMode, fail_payments: bool) -> World {
        let preimages: Preimages = Arc::default();
        let front = Arc::new(Front {
            price_sat,
            mode,
            preimages: preimages.clone(),
            challenges: AtomicUsize::new(0),
            authorized: AtomicUsize::new(0),
            revoked: Default::default(),
            seen: Mutex::default(),
        });
        let server = Server {
            front: front.clone(),
            htlc_key: PublicKey::from_secret_key(
                &Secp256k1::new(),
                &SecretKey::from_slice(&[0x44; 32]).unwrap(),
            )
            .serialize(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(SwapServerServer::new(server))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let dir = tempfile::tempdir().unwrap();
        let payer = Arc::new(Payer::new(&front, fail_payments, dir.path()));
        World {
            front,
            payer,
            addr,
            dir,
        }
    }

    fn client(&self) -> LoopServerClient {
        LoopServerClient::connect(
            &self.addr,
            ServerTls::Insecure,
            Duration::from_secs(20),
            L402Config::new(Network::Regtest, self.dir.path()),
            self.payer.clone(),
        )
        .unwrap()
    }

    fn store(&self) -> TokenStore {
        TokenStore::new(self.dir.path())
    }

    fn pays(&self) -> usize {
        self.payer.pays.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn challenge_is_paid_once_and_the_token_is_kept_and_reused() {
    let w = World::start(900, ChallengeMode::Normal, false).await;
    let client = w.client();
    let terms = client.loop_out_terms().await.unwrap();
    assert_eq!(terms.min_amount, Sat(MIN_AMT));
    assert_eq!(terms.max_cltv_delta, 400);
    assert_eq!(w.pays(), 1);
    assert_eq!(*w.payer.pending_seen.lock().unwrap(), vec![true]);
    assert!(w.store().load_pending().unwrap().is_none());
    let token = w.store().load_paid().unwrap().unwrap();
    assert!(token.preimage.is_some());
    assert_eq!(token.amount_paid, Msat(900_000));

    // Later calls carry the token without paying again, and so does a new client that
    // loads it from the data dir.
    client.loop_out_terms().await.unwrap();
    w.client().loop_out_terms().await.unwrap();
    assert_eq!(w.pays(), 1);
    assert_eq!(w.front.challenges.load(Ordering::SeqCst), 1);
    assert_eq!(w.front.authorized.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_price_above_the_cap_is_refused_without_paying() {
    let w = World::start(1001, ChallengeMode::Normal, false).await;
    let err = w.client().loop_out_terms().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PriceTooHigh);
    let text = err.to_string();
    assert!(text.contains("1001 sat") || text.contains("1001"), "{text}");
    assert_eq!(w.pays(), 0);
    assert!(w.store().load_pending().unwrap().is_none());
    assert!(w.store().load_paid().unwrap().is_none());
}

#[tokio::test]
async fn a_malformed_challenge_is_a_clear_invalid_response() {
    let w = World::start(100, ChallengeMode::Malformed, false).await;
    let err = w.client().loop_out_terms().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidResponse);
    assert_eq!(err.method, "LoopOutTerms");
    let text = err.to_string();
    assert!(text.contains("malformed L402 challenge"), "{text}");
    assert!(text.contains("WWW-Authenticate"), "{text}");
    assert_eq!(w.pays(), 0);
}

#[tokio::test]
async fn a_failed_payment_keeps_the_pending_token_and_the_next_challenge_buys_anew() {
    let w = World::start(100, ChallengeMode::Normal, true).await;
    let err = w.client().loop_out_terms().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PaymentRequired);
    let pending = w.store().load_pending().unwrap().unwrap();
    assert!(pending.preimage.is_none());

    // Same data dir, a node that can pay now: the old payment is tracked (failed), the
    // pending token dropped and a new one bought.
    let payer = Payer::new(&w.front, false, w.dir.path());
    *payer.history.lock().unwrap() = w.payer.history.lock().unwrap().clone();
    let payer = Arc::new(payer);
    let client = LoopServerClient::connect(
        &w.addr,
        ServerTls::Insecure,
        Duration::from_secs(20),
        L402Config::new(Network::Regtest, w.dir.path()),
        payer.clone(),
    )
    .unwrap();
    client.loop_out_terms().await.unwrap();
    assert_eq!(payer.pays.load(Ordering::SeqCst), 1);
    let paid = w.store().load_paid().unwrap().unwrap();
    assert_ne!(paid.payment_hash, pending.payment_hash);
    assert!(w.store().load_pending().unwrap().is_none());
}

#[tokio::test]
async fn a_pending_token_that_was_paid_after_all_is_used_without_paying_again() {
    let w = World::start(100, ChallengeMode::Normal, false).await;
    // A crash after paying but before storing the paid token: the pending file is there and
    // the node knows the payment succeeded.
    let (mac, _invoice, hash) = w.front.issue();
    w.store().save_pending(&Token::pending(mac, hash)).unwrap();
    w.payer.history.lock().unwrap().insert(hash, true);

    w.client().loop_out_terms().await.unwrap();
    assert_eq!(w.pays(), 0);
    assert_eq!(w.store().load_paid().unwrap().unwrap().payment_hash, hash);
    assert!(w.store().load_pending().unwrap().is_none());
}

#[tokio::test]
async fn concurrent_calls_buy_a_single_token() {
    let mut w = World::start(100, ChallengeMode::Normal, false).await;
    let mut payer = Payer::new(&w.front, false, w.dir.path());
    payer.hold_until_challenges = 3;
    w.payer = Arc::new(payer);
    let client = w.client();
    let (a, b, c) = tokio::join!(
        client.loop_out_terms(),
        client.loop_out_quote(Sat(50_000), BlockHeight(1_100), 0),
        client.loop_out_terms(),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    assert_eq!(w.front.challenges.load(Ordering::SeqCst), 3);
    assert_eq!(w.pays(), 1);
}

#[tokio::test]
async fn requests_carry_protocol_11_and_the_user_agent() {
    let w = World::start(100, ChallengeMode::Normal, false).await;
    let client = w.client();
    client.loop_out_terms().await.unwrap();
    client
        .loop_out_quote(Sat(50_000), BlockHeight(1_100), 0)
        .await
        .unwrap();
    let seen = w.front.seen.lock().unwrap().clone();
    let agent = format!("sluice/{}", sluice::VERSION);
    assert_eq!(
        seen,
        vec![
            ("LoopOutTerms", 11, agent.clone()),
            ("LoopOutQuote", 11, agent.clone())
        ]
    );
}

#[tokio::test]
async fn a_swap_created_through_the_client_passes_validation() {
    let w = World::start(100, ChallengeMode::Normal, false).await;
    let client = w.client();
    let terms = client.loop_out_terms().await.unwrap();
    let amount = Sat(250_000);
    let expiry = BlockHeight(u32::try_from(HEIGHT + 100).unwrap());
    let quote = client.loop_out_quote(amount, expiry, 0).await.unwrap();
    assert_eq!(quote.swap_payment_dest, node_pubkey());
    let preimage: [u8; 32] = rand::random();
    let swap_hash = SwapHash(sha256::Hash::hash(&preimage).to_byte_array());
    let receiver_key = PublicKey::from_secret_key(
        &Secp256k1::new(),
        &SecretKey::from_slice(&[0x55; 32]).unwrap(),
    )
    .serialize();
    let resp = client
        .new_loop_out(&NewLoopOutRequest {
            receiver_key,
            swap_hash,
            amount,
            expiry,
            publication_deadline_unix_s: -62_135_596_800,
            initiator: "autoloop: peer/42".into(),
        })
        .await
        .unwrap();
    assert_eq!(resp.server_message, "welcome");
    let contract = validate_loop_out(
        &resp,
        &ContractExpectations {
            network: Network::Regtest,
            swap_hash,
            amount,
            terms,
            swap_payment_dest: quote.swap_payment_dest,
            max_swap_fee: quote.swap_fee,
            max_prepay: quote.prepay_amount,
            max_final_cltv_delta: 144,
            min_invoice_validity: Duration::from_secs(60),
            now: now(),
        },
    )
    .unwrap();
    assert_eq!(contract.swap_fee, quote.swap_fee);
    let seen = w.front.seen.lock().unwrap().clone();
    let last = seen.last().unwrap();
    assert_eq!(last.0, "NewLoopOutSwap");
    assert_eq!(
        last.2,
        format!("sluice/{}/initiator=autoloop peer42", sluice::VERSION)
    );

    // A server refusal on the merits is permanent.
    let err = client.loop_out_quote(Sat(1), expiry, 0).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
}

#[tokio::test]
async fn streams_are_opened_behind_the_l402_front_and_bad_lengths_are_refused() {
    let w = World::start(100, ChallengeMode::Normal, false).await;
    let client = w.client();
    let updates: Vec<_> = client
        .subscribe_loop_out_updates(SwapHash([1; 32]))
        .await
        .unwrap()
        .collect()
        .await;
    let states: Vec<_> = updates.into_iter().map(|u| u.unwrap().state).collect();
    assert_eq!(
        states,
        vec![ServerSwapState::Initiated, ServerSwapState::HtlcPublished]
    );
    assert_eq!(w.pays(), 1);

    let err = client
        .musig2_sign_sweep(&SweepSignRequest {
            swap_hash: SwapHash([1; 32]),
            payment_address: [2; 32],
            nonce: [3; 66],
            sweep_psbt: vec![],
            prevouts: vec![SweepPrevout {
                value: Sat(1),
                pk_script: vec![],
                txid: [0; 32],
                output_index: 0,
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidResponse);
    assert!(err.to_string().contains("nonce is 65 bytes"), "{err}");
}

#[tokio::test]
async fn plaintext_to_a_remote_host_is_refused() {
    let w = World::start(100, ChallengeMode::Normal, false).await;
    let dir = tempfile::tempdir().unwrap();
    let payer = w.payer.clone();
    let err = LoopServerClient::connect(
        "swap.lightning.today:11010",
        ServerTls::Insecure,
        Duration::from_secs(1),
        L402Config::new(Network::Mainnet, dir.path()),
        payer,
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("only allowed to a loopback host"),
        "{err}"
    );
}

#[tokio::test]
async fn a_refused_paid_token_is_reported_and_never_replaced() {
    let w = World::start(100, ChallengeMode::Normal, false).await;
    let client = w.client();
    client.loop_out_terms().await.unwrap();
    let paid = w.store().load_paid().unwrap().unwrap();
    w.front.revoked.store(true, Ordering::SeqCst);
    let err = client.loop_out_terms().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PaymentRequired);
    assert!(err.to_string().contains("move that file away"), "{err}");
    assert_eq!(w.pays(), 1);
    assert_eq!(w.store().load_paid().unwrap().unwrap(), paid);
}

#[tokio::test]
async fn tls_to_a_plaintext_server_fails_as_a_transient_error() {
    let w = World::start(100, ChallengeMode::Normal, false).await;
    let client = LoopServerClient::connect(
        &w.addr,
        ServerTls::System,
        Duration::from_secs(20),
        L402Config::new(Network::Regtest, w.dir.path()),
        w.payer.clone(),
    )
    .unwrap();
    let err = client.loop_out_terms().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert_eq!(w.front.challenges.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_server_that_never_answers_hits_the_call_timeout() {
    let w = World::start(100, ChallengeMode::Normal, false).await;
    let client = LoopServerClient::connect(
        &w.addr,
        ServerTls::Insecure,
        Duration::from_millis(300),
        L402Config::new(Network::Regtest, w.dir.path()),
        w.payer.clone(),
    )
    .unwrap();
    let err = client.push_preimage(&[9; 32]).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert_eq!(err.method, "LoopOutPushPreimage");
    // The token was bought on the way: the call was authorized before it hung.
    assert_eq!(w.pays(), 1);
    assert_eq!(w.front.authorized.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_challenge_invoice_for_another_network_is_not_paid() {
    let w = World::start(100, ChallengeMode::Normal, false).await;
    let client = LoopServerClient::connect(
        &w.addr,
        ServerTls::Insecure,
        Duration::from_secs(20),
        L402Config::new(Network::Mainnet, w.dir.path()),
        w.payer.clone(),
    )
    .unwrap();
    let err = client.loop_out_terms().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidResponse);
    assert!(
        err.to_string()
            .contains("L402 token invoice is for Regtest"),
        "{err}"
    );
    assert_eq!(w.pays(), 0);
}
