//! The real `sluiced` against an lnd stand-in served over TLS with lnd's CA-marked
//! certificate and a macaroon check: it connects and lists the stand-in's channels, follows a
//! routed payment and a channel event, refuses a wrong macaroon, a wrong certificate and a
//! network mismatch with a clear message (exit 1), and after the stand-in is killed and
//! restarted it reconnects and resumes block notifications without missing a block.
//!
//! The stand-in keeps lnd's observable rules for what sluiced uses at start-up (`GetVersion`,
//! `GetInfo`, `ListChannels`, `SubscribeChannelEvents`, `RegisterBlockEpochNtfn` with a best
//! block hint). It runs in its own runtime so "killing" it closes every connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{http_get, poll, sluice_bin, sluiced_bin};
use futures::StreamExt;
use futures::stream::BoxStream;
use sluice::lnd::wire::chainrpc::{self, chain_notifier_server};
use sluice::lnd::wire::lnrpc::{self, lightning_server};
use sluice::lnd::wire::verrpc::{self, versioner_server};
use sluice::tls::{Identity, generate_self_signed};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status};

const MACAROON: [u8; 12] = [2, 1, 3, 0x6c, 0x6e, 0x64, 2, 0xf8, 1, 3, 0x0a, 0x10];
const NODE_KEY: &str = "0379be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
const PEER_B: &str = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5";
const PEER_C: &str = "02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9";
const LIMIT: Duration = Duration::from_secs(60);

type Sub<T> = mpsc::UnboundedSender<Result<T, Status>>;
type S<T> = BoxStream<'static, Result<T, Status>>;

#[derive(Default)]
struct State {
    network: String,
    tip: u32,
    channels: Vec<lnrpc::Channel>,
    epoch_subs: Vec<Sub<chainrpc::BlockEpoch>>,
    chan_subs: Vec<Sub<lnrpc::ChannelEventUpdate>>,
    /// The best-block hint of every `RegisterBlockEpochNtfn`, `None` without one.
    epoch_hints: Vec<Option<u32>>,
}

fn hash_of(height: u32) -> Vec<u8> {
    let mut h = vec![0u8; 32];
    h[..4].copy_from_slice(&height.to_le_bytes());
    h[31] = 0x5a;
    h
}

fn epoch(height: u32) -> chainrpc::BlockEpoch {
    chainrpc::BlockEpoch {
        hash: hash_of(height),
        height,
    }
}

#[derive(Clone)]
struct Shared(Arc<Mutex<State>>);

fn authorize<T>(req: &Request<T>) -> Result<(), Status> {
    let want = hex::encode(MACAROON);
    match req.metadata().get("macaroon").and_then(|v| v.to_str().ok()) {
        Some(m) if m == want => Ok(()),
        // lnd's words for a macaroon of another node.
        _ => Err(Status::unknown(
            "verification failed: signature mismatch after caveat verification",
        )),
    }
}

fn subscribe<T: Send + 'static>(subs: &mut Vec<Sub<T>>) -> (Sub<T>, S<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    subs.push(tx.clone());
    (tx, UnboundedReceiverStream::new(rx).boxed())
}

#[tonic::async_trait]
impl lightning_server::Lightning for Shared {
    async fn get_info(
        &self,
        req: Request<lnrpc::GetInfoRequest>,
    ) -> Result<Response<lnrpc::GetInfoResponse>, Status> {
        authorize(&req)?;
        let s = self.0.lock().unwrap();
        Ok(Response::new(lnrpc::GetInfoResponse {
            identity_pubkey: NODE_KEY.into(),
            alias: "standin".into(),
            block_height: s.tip,
            synced_to_chain: true,
            version: "0.21.2-beta commit=v0.21.2-beta".into(),
            chains: vec![lnrpc::Chain {
                network: s.network.clone(),
                ..Default::default()
            }],
            ..Default::default()
        }))
    }

    async fn list_channels(
        &self,
        req: Request<lnrpc::ListChannelsRequest>,
    ) -> Result<Response<lnrpc::ListChannelsResponse>, Status> {
        authorize(&req)?;
        Ok(Response::new(lnrpc::ListChannelsResponse {
            channels: self.0.lock().unwrap().channels.clone(),
        }))
    }

    type SubscribeChannelEventsStream = S<lnrpc::ChannelEventUpdate>;

    async fn subscribe_channel_events(
        &self,
        req: Request<lnrpc::ChannelEventSubscription>,
    ) -> Result<Response<Self::SubscribeChannelEventsStream>, Status> {
        authorize(&req)?;
        let (_, s) = subscribe(&mut self.0.lock().unwrap().chan_subs);
        Ok(Response::new(s))
    }

    async fn list_peers(
        &self,
        _: Request<lnrpc::ListPeersRequest>,
    ) -> Result<Response<lnrpc::ListPeersResponse>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn get_node_info(
        &self,
        _: Request<lnrpc::NodeInfoRequest>,
    ) -> Result<Response<lnrpc::NodeInfo>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn decode_pay_req(
        &self,
        _: Request<lnrpc::PayReqString>,
    ) -> Result<Response<lnrpc::PayReq>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn forwarding_history(
        &self,
        _: Request<lnrpc::ForwardingHistoryRequest>,
    ) -> Result<Response<lnrpc::ForwardingHistoryResponse>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }
}

#[tonic::async_trait]
impl versioner_server::Versioner for Shared {
    async fn get_version(
        &self,
        req: Request<verrpc::VersionRequest>,
    ) -> Result<Response<verrpc::Version>, Status> {
        authorize(&req)?;
        Ok(Response::new(verrpc::Version {
            version: "0.21.2-beta".into(),
            app_major: 0,
            app_minor: 21,
            app_patch: 2,
            build_tags: [
                "autopilotrpc",
                "signrpc",
                "walletrpc",
                "chainrpc",
                "invoicesrpc",
            ]
            .map(String::from)
            .to_vec(),
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl chain_notifier_server::ChainNotifier for Shared {
    type RegisterConfirmationsNtfnStream = S<chainrpc::ConfEvent>;

    async fn register_confirmations_ntfn(
        &self,
        _: Request<chainrpc::ConfRequest>,
    ) -> Result<Response<Self::RegisterConfirmationsNtfnStream>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    type RegisterSpendNtfnStream = S<chainrpc::SpendEvent>;

    async fn register_spend_ntfn(
        &self,
        _: Request<chainrpc::SpendRequest>,
    ) -> Result<Response<Self::RegisterSpendNtfnStream>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    type RegisterBlockEpochNtfnStream = S<chainrpc::BlockEpoch>;

    /// As lnd: with a best block, every block after it up to the tip, then new ones;
    /// without, the tip, then new ones.
    async fn register_block_epoch_ntfn(
        &self,
        req: Request<chainrpc::BlockEpoch>,
    ) -> Result<Response<Self::RegisterBlockEpochNtfnStream>, Status> {
        authorize(&req)?;
        let hint = req.get_ref();
        let mut s = self.0.lock().unwrap();
        let from = if hint.hash.is_empty() || hint.height == 0 {
            s.epoch_hints.push(None);
            s.tip
        } else {
            s.epoch_hints.push(Some(hint.height));
            hint.height + 1
        };
        let tip = s.tip;
        let (tx, stream) = subscribe(&mut s.epoch_subs);
        for h in from..=tip {
            let _ = tx.send(Ok(epoch(h)));
        }
        Ok(Response::new(stream))
    }
}

fn channel(id: u64, peer: &str, alias: &str, local: i64, remote: i64) -> lnrpc::Channel {
    let reserve = Some(lnrpc::ChannelConstraints {
        chan_reserve_sat: 10_000,
        ..Default::default()
    });
    lnrpc::Channel {
        active: true,
        remote_pubkey: peer.into(),
        channel_point: format!("{}:{id}", "ab".repeat(32)),
        chan_id: (800_000u64 << 40) | (id << 16),
        capacity: local + remote + 3_000,
        local_balance: local,
        remote_balance: remote,
        commit_fee: 3_000,
        initiator: true,
        peer_alias: alias.into(),
        local_constraints: reserve,
        remote_constraints: reserve,
        ..Default::default()
    }
}

/// The stand-in lnd: its state outlives the runtime serving it, so it can be restarted.
struct StandIn {
    state: Arc<Mutex<State>>,
    identity: Identity,
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl StandIn {
    fn start(network: &str) -> StandIn {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let state = State {
            network: network.into(),
            tip: 100,
            channels: vec![
                channel(1, PEER_B, "bob", 700_000, 297_000),
                channel(2, PEER_C, "", 250_000, 747_000),
            ],
            ..State::default()
        };
        let mut s = StandIn {
            state: Arc::new(Mutex::new(state)),
            // CA-marked, as lnd generates it.
            identity: generate_self_signed(&[], true).unwrap(),
            addr: "127.0.0.1:0".parse().unwrap(),
            runtime: None,
        };
        s.serve();
        s
    }

    fn serve(&mut self) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // On a restart the old socket may take a moment to go, or the port may briefly serve
        // as another connection's source port: retry within the deadline.
        let listener = poll("the stand-in to bind", LIMIT, || {
            rt.block_on(tokio::net::TcpListener::bind(self.addr)).ok()
        });
        self.addr = listener.local_addr().unwrap();
        let shared = Shared(self.state.clone());
        let tls = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&self.identity.cert_pem, &self.identity.key_pem),
        );
        let server = tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(lightning_server::LightningServer::new(shared.clone()))
            .add_service(versioner_server::VersionerServer::new(shared.clone()))
            .add_service(chain_notifier_server::ChainNotifierServer::new(shared))
            .serve_with_incoming(TcpListenerStream::new(listener));
        rt.spawn(server);
        self.runtime = Some(rt);
    }

    /// Kills the server: every connection and stream goes away at once.
    fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Drops every task, and with them the listener and the connections.
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        let mut s = self.state.lock().unwrap();
        s.epoch_subs.clear();
        s.chan_subs.clear();
    }

    /// Serves again on the same address with the same certificate.
    fn restart(&mut self) {
        self.serve();
    }

    fn mine(&self) -> u32 {
        let mut s = self.state.lock().unwrap();
        s.tip += 1;
        let b = epoch(s.tip);
        s.epoch_subs.retain(|tx| tx.send(Ok(b.clone())).is_ok());
        s.tip
    }

    /// A payment routed out through channel `index`: `amount` moves from local to remote,
    /// and subscribers hear about the updated channel.
    fn route_out(&self, index: usize, amount: i64) {
        let mut s = self.state.lock().unwrap();
        let c = &mut s.channels[index];
        c.local_balance -= amount;
        c.remote_balance += amount;
        let update = lnrpc::ChannelEventUpdate {
            channel: Some(lnrpc::channel_event_update::Channel::UpdatedChannel(
                lnrpc::ChannelCommitUpdate {
                    channel: Some(c.clone()),
                },
            )),
            r#type: lnrpc::channel_event_update::UpdateType::ChannelUpdate as i32,
        };
        s.chan_subs.retain(|tx| tx.send(Ok(update.clone())).is_ok());
    }

    fn epoch_hints(&self) -> Vec<Option<u32>> {
        self.state.lock().unwrap().epoch_hints.clone()
    }

    fn subscribers(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.epoch_subs.len(), s.chan_subs.len())
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The files sluiced is pointed at.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(cert_pem: &str, macaroon: &[u8]) -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.cert"), cert_pem).unwrap();
        std::fs::write(dir.path().join("admin.macaroon"), macaroon).unwrap();
        Files { dir }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.cert")
    }

    fn macaroon(&self) -> PathBuf {
        self.dir.path().join("admin.macaroon")
    }

    fn datadir(&self) -> PathBuf {
        self.dir.path().join("sluice")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sluiced.stderr")).unwrap_or_default()
    }
}

/// Starts sluiced (not simnet) against `lnd` with the files, on free ports.
fn sluiced(files: &Files, lnd: SocketAddr, network: &str) -> Child {
    let stderr = std::fs::File::create(files.dir.path().join("sluiced.stderr")).unwrap();
    Command::new(sluiced_bin())
        .arg("--datadir")
        .arg(files.datadir())
        .args(["--network", network])
        .args(["--lnd-host", &lnd.to_string()])
        .arg("--lnd-tls-cert")
        .arg(files.cert())
        .arg("--lnd-macaroon")
        .arg(files.macaroon())
        .args(["--server-address", "127.0.0.1:1"])
        .args([
            "--rpc-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--log-level",
            "info,sluice::daemon=debug",
            "--log-format",
            "json",
        ])
        .env("HOME", files.dir.path())
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_DATADIR")
        .env_remove("SLUICE_NETWORK")
        .env_remove("SLUICE_SIMNET")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Waits for sluiced to exit and returns (code, stderr).
fn exit_of(mut child: Child, files: &Files) -> (Option<i32>, String) {
    let status = poll("sluiced to exit", LIMIT, || child.try_wait().unwrap());
    (status.code(), files.stderr())
}

/// A running sluiced's API and metrics addresses, from its lock file.
fn addresses(child: &mut Child, files: &Files) -> (String, String) {
    let lock = files.datadir().join("sluiced.lock");
    poll("sluiced to listen", LIMIT, || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("sluiced exited with {status}: {}", files.stderr());
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&lock).ok()?).ok()?;
        Some((
            v["rpc_listen"].as_str()?.to_owned(),
            v["metrics_listen"].as_str()?.to_owned(),
        ))
    })
}

fn cli_json(files: &Files, rpc: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(sluice_bin())
        .arg("--datadir")
        .arg(files.datadir())
        .args(["--rpcserver", rpc, "--json"])
        .args(args)
        .env_remove("SLUICE_CREDENTIAL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sluice {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stop(mut child: Child, files: &Files) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = poll("sluiced to stop", LIMIT, || child.try_wait().unwrap());
    assert!(status.success(), "exit {status}: {}", files.stderr());
}

fn lnd_height(files: &Files, rpc: &str) -> u64 {
    cli_json(files, rpc, &["getinfo"])["lnd"]["block_height"]
        .as_u64()
        .unwrap()
}

/// The daemon's JSON log lines with `message`.
fn logged(files: &Files, message: &str) -> Vec<serde_json::Value> {
    files
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == message)
        .collect()
}

/// Whether a channel event with `needle` in its description was logged.
fn channel_event_logged(files: &Files, needle: &str) -> bool {
    logged(files, "channel event")
        .iter()
        .any(|v| v["event"].as_str().is_some_and(|e| e.contains(needle)))
}

#[test]
fn sluiced_lists_channels_follows_changes_and_reconnects_without_missing_a_block() {
    let mut lnd = StandIn::start("regtest");
    let files = Files::new(&lnd.identity.cert_pem, &MACAROON);
    let mut child = sluiced(&files, lnd.addr, "regtest");
    let (rpc, metrics) = addresses(&mut child, &files);

    // Connected and checked: GetInfo shows lnd's identity, readiness includes lnd.
    let info = poll("lnd to be connected", LIMIT, || {
        let v = cli_json(&files, &rpc, &["getinfo"]);
        v["lnd"]["connected"].as_bool().unwrap().then_some(v)
    });
    assert_eq!(info["lnd"]["alias"], "standin");
    assert_eq!(info["lnd"]["pubkey"], NODE_KEY);
    assert_eq!(info["lnd"]["block_height"], 100);
    assert_eq!(info["lnd"]["synced_to_chain"], true);
    assert_eq!(info["network"], "regtest");
    poll("/readyz to be 200", LIMIT, || {
        (http_get(&metrics, "/readyz").0 == 200).then_some(())
    });

    // Channels with lnd's balances.
    let list = cli_json(&files, &rpc, &["channels"]);
    let chans = list["channels"].as_array().unwrap();
    assert_eq!(chans.len(), 2, "{list}");
    assert_eq!(chans[0]["chan_id"], "800000x1x0");
    assert_eq!(chans[0]["peer_alias"], "bob");
    assert_eq!(chans[0]["peer_pubkey"], PEER_B);
    assert_eq!(chans[0]["local_balance_sat"], 700_000);
    assert_eq!(chans[0]["remote_balance_sat"], 297_000);
    assert_eq!(chans[0]["capacity_sat"], 1_000_000);
    assert_eq!(chans[0]["active"], true);
    assert!(chans[1]["peer_alias"].is_null());
    assert_eq!(chans[1]["inbound_share_ppm"], 749_247);

    // A routed payment moves balance; the event reaches the daemon, the list shows it.
    poll("the daemon to follow both streams", LIMIT, || {
        (lnd.subscribers() == (1, 1)).then_some(())
    });
    lnd.route_out(0, 200_000);
    poll("the channel event in the log", LIMIT, || {
        channel_event_logged(&files, "800000x1x0 local_sat=500000 remote_sat=497000").then_some(())
    });
    let list = cli_json(&files, &rpc, &["channels"]);
    assert_eq!(list["channels"][0]["local_balance_sat"], 500_000);
    assert_eq!(list["channels"][0]["remote_balance_sat"], 497_000);

    // Blocks arrive; then lnd dies, blocks are mined meanwhile, and lnd comes back.
    lnd.mine();
    lnd.mine();
    poll("height 102", LIMIT, || {
        (lnd_height(&files, &rpc) == 102).then_some(())
    });
    lnd.kill();
    for _ in 0..3 {
        lnd.mine();
    }
    lnd.restart();
    poll("the daemon to re-subscribe", LIMIT, || {
        (lnd.subscribers().0 == 1).then_some(())
    });
    lnd.mine();
    poll("height 106", LIMIT, || {
        (lnd_height(&files, &rpc) == 106).then_some(())
    });
    // It resumed from the last block it had seen, and saw every block exactly once.
    assert_eq!(lnd.epoch_hints().first(), Some(&None));
    assert_eq!(lnd.epoch_hints().last(), Some(&Some(102)));
    let heights: Vec<u64> = logged(&files, "new block")
        .iter()
        .map(|v| v["height"].as_u64().unwrap())
        .collect();
    assert_eq!(
        heights,
        (100..=106).collect::<Vec<_>>(),
        "{}",
        files.stderr()
    );
    // The channel stream came back too, with the channel list resynced.
    poll("the channel stream to return", LIMIT, || {
        (lnd.subscribers().1 == 1).then_some(())
    });
    lnd.route_out(1, 50_000);
    poll("the second channel event", LIMIT, || {
        channel_event_logged(&files, "local_sat=200000 remote_sat=797000").then_some(())
    });

    stop(child, &files);
}

#[test]
fn a_wrong_macaroon_fails_the_start_naming_the_file() {
    let lnd = StandIn::start("regtest");
    let files = Files::new(&lnd.identity.cert_pem, b"\x02\x01\x03not-this-node");
    let (code, stderr) = exit_of(sluiced(&files, lnd.addr, "regtest"), &files);
    assert_eq!(code, Some(1), "{stderr}");
    let want = format!(
        "lnd at {} rejected the macaroon in lnd.macaroon {}",
        lnd.addr,
        files.macaroon().display()
    );
    assert!(stderr.contains(&want), "{want} not in\n{stderr}");
    assert!(!stderr.contains(&hex::encode(b"not-this-node")), "{stderr}");
}

#[test]
fn a_wrong_certificate_fails_the_start_naming_the_file() {
    let lnd = StandIn::start("regtest");
    let other = generate_self_signed(&[], true).unwrap();
    let files = Files::new(&other.cert_pem, &MACAROON);
    let (code, stderr) = exit_of(sluiced(&files, lnd.addr, "regtest"), &files);
    assert_eq!(code, Some(1), "{stderr}");
    let want = format!(
        "lnd at {} presented a certificate that does not match lnd.tls_cert {}; copy lnd's current tls.cert",
        lnd.addr,
        files.cert().display()
    );
    assert!(stderr.contains(&want), "{want} not in\n{stderr}");
}

#[test]
fn a_network_mismatch_fails_the_start_saying_both_networks() {
    let lnd = StandIn::start("regtest");
    let files = Files::new(&lnd.identity.cert_pem, &MACAROON);
    let (code, stderr) = exit_of(sluiced(&files, lnd.addr, "mainnet"), &files);
    assert_eq!(code, Some(1), "{stderr}");
    let want = format!(
        "lnd at {} runs on regtest but sluiced is configured for mainnet",
        lnd.addr
    );
    assert!(stderr.contains(&want), "{want} not in\n{stderr}");
}

#[test]
fn an_unreachable_lnd_keeps_the_daemon_up_and_not_ready() {
    let mut lnd = StandIn::start("regtest");
    let addr = lnd.addr;
    lnd.kill();
    let files = Files::new(&lnd.identity.cert_pem, &MACAROON);
    let mut child = sluiced(&files, addr, "regtest");
    let (rpc, metrics) = addresses(&mut child, &files);
    let body = poll("/readyz to explain", LIMIT, || {
        let (code, body) = http_get(&metrics, "/readyz");
        (code == 503 && body.contains("lnd: unreachable (")).then_some(body)
    });
    assert!(
        body.contains(&addr.to_string()) || body.contains("connect"),
        "{body}"
    );
    let info = cli_json(&files, &rpc, &["getinfo"]);
    assert_eq!(info["lnd"]["connected"], false);
    // lnd comes up: the daemon connects without a restart.
    lnd.restart();
    poll("lnd to be connected", LIMIT, || {
        cli_json(&files, &rpc, &["getinfo"])["lnd"]["connected"]
            .as_bool()
            .unwrap()
            .then_some(())
    });
    poll("/readyz to be 200", LIMIT, || {
        (http_get(&metrics, "/readyz").0 == 200).then_some(())
    });
    stop(child, &files);
}
