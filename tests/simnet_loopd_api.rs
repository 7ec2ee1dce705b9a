//! Loop's own `loop` CLI drives `sluiced --simnet` through the loopd API sluiced serves
//! (`looprpc.SwapClient`): `loop terms`, `loop quote out`, `loop out --amt N --force`,
//! `loop listswaps`, `loop swapinfo`, `loop monitor`, `loop suggestswaps` and `loop getparams`,
//! each checked on what the CLI printed; the swap runs to `SUCCESS`. A read-only macaroon and
//! a macaroon of another daemon are refused for `loop out`, as loopd refuses them.
//!
//! The `loop` binary comes from the real-node tooling (`tools/realnode/build`, or
//! `SLUICE_REALNODE_BIN`); without it the test is skipped with a line saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod realnode_harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Daemon, poll};

/// The Loop Out amount: inside the simnet server's terms.
const AMOUNT: &str = "250000";

/// Long enough for a cold debug build's first start on a busy machine.
const LIMIT: Duration = Duration::from_secs(120);

/// Loop's `loop` CLI pointed at a sluiced's loopd API.
struct LoopCli {
    bin: PathBuf,
    rpc: String,
    loopdir: PathBuf,
}

impl LoopCli {
    /// `loop --loopdir <datadir>/loopd --network regtest --rpcserver ADDR ARGS`: the one-line
    /// switch README's "Coming from Loop" gives (the simnet is regtest to Loop).
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--loopdir")
            .arg(&self.loopdir)
            .args(["--network", "regtest", "--rpcserver", &self.rpc])
            .args(args)
            .env("HOME", self.loopdir.parent().unwrap())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Like [`LoopCli::run`] with an explicit macaroon file.
    fn run_with_macaroon(&self, macaroon: &Path, args: &[&str]) -> Output {
        let mut all = vec!["--macaroonpath", macaroon.to_str().unwrap()];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// `loop ARGS`, which must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "loop {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// `loop monitor`, running until killed, and the thread collecting its lines.
    fn monitor(&self) -> (std::process::Child, std::thread::JoinHandle<Vec<String>>) {
        let mut monitor = Command::new(&self.bin)
            .arg("--loopdir")
            .arg(&self.loopdir)
            .args(["--network", "regtest", "--rpcserver", &self.rpc, "monitor"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let out = monitor.stdout.take().unwrap();
        let lines = std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        (monitor, lines)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("loop {args:?}: {e}: {text}"))
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `sluice simnet --dir <datadir>/simnet ARGS` against the daemon's world.
fn simnet(daemon: &Daemon, args: &[&str]) {
    let out = Command::new(common::sluice_bin())
        .arg("simnet")
        .arg("--dir")
        .arg(daemon.dir().join("simnet"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sluice simnet {args:?}: {}",
        stderr(&out)
    );
}

fn loopd_listen(daemon: &Daemon) -> String {
    let text = std::fs::read_to_string(daemon.dir().join("sluiced.lock")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["loopd_listen"]
        .as_str()
        .unwrap_or_else(|| panic!("no loopd_listen in the lock file: {text}"))
        .to_owned()
}

/// A sluiced on the simnet with its loopd API on a free port and the example policy in a
/// policy directory of its own: autoloop stays off (a fresh simnet would turn it on), so only
/// the test makes swaps.
fn sluiced(extra: &[&str]) -> Daemon {
    let datadir = tempfile::tempdir().unwrap();
    let policies = datadir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/set-and-forget/policy.yaml"),
        policies.join("set-and-forget.yaml"),
    )
    .unwrap();
    let mut args = vec!["--loopd-api-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Daemon::start_in(datadir, &args)
}

/// [`sluiced`] and Loop's CLI pointed at it; `None` without the `loop` binary.
fn start() -> Option<(Daemon, LoopCli)> {
    let programs = realnode_harness::programs()?;
    let daemon = sluiced(&[]);
    let cli = LoopCli {
        bin: programs.path("loop"),
        rpc: loopd_listen(&daemon),
        loopdir: daemon.dir().join("loopd"),
    };
    Some((daemon, cli))
}

#[test]
fn loops_cli_runs_a_loop_out_through_sluiced() {
    let Some((daemon, cli)) = start() else {
        return;
    };
    // The swap server and lnd are up once terms answer.
    let terms = poll("loop terms to answer", LIMIT, || {
        let out = cli.run(&["terms"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    let ours: serde_json::Value = {
        let out = daemon.cli(&["--json", "terms"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert!(terms.contains("Loop Out\n--------"), "{terms}");
    let amount_line = format!(
        "Amount: {} - {}",
        ours["min_amount_sat"].as_u64().unwrap(),
        ours["max_amount_sat"].as_u64().unwrap()
    );
    assert!(
        terms.contains(&amount_line),
        "{terms}\nexpected {amount_line}"
    );
    let cltv_line = format!(
        "Cltv delta: {} - {}",
        ours["min_cltv_delta"].as_u64().unwrap(),
        ours["max_cltv_delta"].as_u64().unwrap()
    );
    assert!(terms.contains(&cltv_line), "{terms}\nexpected {cltv_line}");
    // Loop In's amounts are the server's Loop In terms, under "Loop In".
    let (_, loop_in) = terms.split_once("Loop In\n------").expect(&terms);
    let in_line = format!(
        "Amount: {} - {}",
        ours["loop_in"]["min_amount_sat"].as_u64().unwrap(),
        ours["loop_in"]["max_amount_sat"].as_u64().unwrap()
    );
    assert!(loop_in.contains(&in_line), "{terms}\nexpected {in_line}");

    // The CLI's quote is sluice's: the server's fee plus sluice's sweep estimate.
    let printed = cli.ok(&["quote", "out", AMOUNT]);
    let ours_quote: serde_json::Value = {
        let q = daemon.cli(&["--json", "quote", "out", AMOUNT]);
        assert!(q.status.success(), "{}", stderr(&q));
        serde_json::from_slice(&q.stdout).unwrap()
    };
    let sat_after = |label: &str| -> u64 {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .and_then(|rest| rest.trim().strip_suffix(" sat"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} in: {printed}"))
    };
    assert_eq!(sat_after("Send off-chain:"), 250_000, "{printed}");
    let total = sat_after("Estimated total fee:");
    assert_eq!(
        total,
        ours_quote["swap_fee_sat"].as_u64().unwrap()
            + ours_quote["estimated_sweep_fee_sat"].as_u64().unwrap(),
        "{printed}\n{ours_quote}"
    );
    assert_eq!(sat_after("Receive on-chain:"), 250_000 - total, "{printed}");

    // A read-only macaroon, and a macaroon minted by another sluiced, are refused for
    // `loop out`, with loopd's words; nothing is created.
    let readonly = cli.loopdir.join("regtest/readonly.macaroon");
    let refused = cli.run_with_macaroon(&readonly, &["out", "--amt", AMOUNT, "--force"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("permission denied"),
        "{}",
        stderr(&refused)
    );
    let listed = cli.run_with_macaroon(&readonly, &["listswaps"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let other = tempfile::tempdir().unwrap();
    let foreign = sluice::loopd::Macaroons::load_or_create(other.path()).unwrap();
    let refused = cli.run_with_macaroon(foreign.admin_path(), &["out", "--amt", AMOUNT, "--force"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("verification failed"),
        "{}",
        stderr(&refused)
    );
    let none: serde_json::Value = cli.json(&["listswaps"]);
    assert!(
        none["swaps"].as_array().is_none_or(Vec::is_empty),
        "a refused loop out created a swap: {none}"
    );

    let out = cli.ok(&["out", "--amt", AMOUNT, "--force", "--fast"]);
    assert!(out.contains("Swap initiated"), "{out}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("ID:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no swap id in: {out}"));

    // sluice's own API shows the same swap, bound by the limits Loop's CLI computed.
    let info = daemon.cli(&["--json", "swap", &id]);
    assert!(info.status.success(), "{}", stderr(&info));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["swap"]["initiator"], "loop-cli", "{info}");
    let limits = &info["limits"];
    let quote = &ours_quote;
    let amount: u64 = AMOUNT.parse().unwrap();
    // Loop's CLI: routing limit 10 sat + 2 % of the amount; the prepay's likewise; the swap
    // fee and prepay as quoted.
    assert_eq!(
        limits["max_swap_routing_fee_sat"].as_u64(),
        Some(10 + amount * 20_000 / 1_000_000),
        "{info}"
    );
    assert_eq!(
        limits["max_swap_fee_sat"].as_u64(),
        quote["swap_fee_sat"].as_u64(),
        "{info}\n{quote}"
    );

    // `loop monitor` streams the swap as it moves; it runs until killed.
    let (mut monitor, lines) = cli.monitor();

    let swap = poll("the swap to succeed", Duration::from_secs(240), || {
        simnet(&daemon, &["mine", "1"]);
        let info = cli.json(&["swapinfo", &id]);
        let state = info["state"].as_str().unwrap_or_default().to_owned();
        assert_ne!(state, "FAILED", "the swap failed: {info}");
        if state == "SUCCESS" {
            Some(info)
        } else {
            std::thread::sleep(Duration::from_millis(500));
            None
        }
    });
    assert_eq!(swap["type"], "LOOP_OUT", "{swap}");
    assert_eq!(swap["amt"], AMOUNT, "{swap}");
    assert!(
        swap["htlc_address_p2tr"]
            .as_str()
            .is_some_and(|a| a.starts_with("bcrt1p")),
        "{swap}"
    );
    assert!(
        sluice::regtest::lnd::number(&swap["cost_server"]) > 0,
        "{swap}"
    );

    let listed = cli.json(&["listswaps"]);
    assert!(
        listed["swaps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str() && s["state"] == "SUCCESS"),
        "{listed}"
    );

    // Give the stream a moment for the last update, then stop it.
    std::thread::sleep(Duration::from_secs(2));
    let _ = monitor.kill();
    let _ = monitor.wait();
    let lines = lines.join().unwrap();
    let text = lines.join("\n");
    assert!(
        lines.iter().any(|l| l.contains("LOOP_OUT")
            && l.contains("SUCCESS")
            && l.contains("0.00250000 BTC")),
        "loop monitor printed:\n{text}"
    );
    assert!(
        lines.iter().any(|l| l.contains("(cost: server")),
        "loop monitor printed:\n{text}"
    );

    // Autoloop in Loop's terms: the policy's parameters, and a suggestion pass.
    let params = cli.json(&["getparams"]);
    assert_eq!(params["autoloop"], false, "{params}");
    assert!(
        sluice::regtest::lnd::number(&params["autoloop_budget_sat"]) > 0,
        "{params}"
    );
    // Every target of the policy is either a suggested Loop Out or disqualified with a reason.
    let suggested = cli.json(&["suggestswaps"]);
    let info = cli.json(&["getinfo"]);
    let outs = suggested["loop_out"].as_array().map_or(0, Vec::len);
    let disqualified = suggested["disqualified"].as_array().map_or(0, Vec::len);
    assert!(outs + disqualified > 0, "{suggested}");
    for d in suggested["disqualified"].as_array().into_iter().flatten() {
        assert!(
            d["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("AUTO_REASON_")),
            "{d}"
        );
    }
    assert_eq!(info["network"], "regtest", "{info}");
    assert!(
        info["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("sluiced ")),
        "{info}"
    );
    assert_eq!(info["loop_out_stats"]["success_count"], "1", "{info}");
    let set = cli.run(&["setparams", "--maxamt", "100000"]);
    assert!(!set.status.success());
    assert!(
        stderr(&set).contains("policies are files"),
        "{}",
        stderr(&set)
    );
}

/// The same API through a plain gRPC client (no `loop` binary needed): the five limits of a
/// `LoopOut` bind exactly as sent, a quote above them is refused before anything is stored,
/// and calls sluice does not serve say what to use instead.
#[test]
fn loop_out_limits_bind_as_sent_and_unserved_calls_say_what_to_use() {
    use sluice::proto::loopd::looprpc as rpc;
    use sluice::proto::loopd::looprpc::swap_client_client::SwapClientClient;

    // A swap-fee ceiling no quote meets: it bounds the limits sluice derives itself (`sluice
    // quote` is refused) but not a loopd client's quote, which comes with limits of its own.
    let daemon = sluiced(&["--swap-max-swap-fee-ppm", "1"]);
    let addr = loopd_listen(&daemon);
    let dir = daemon.dir().join("loopd/regtest");
    let cert = std::fs::read(dir.join("tls.cert")).unwrap();
    let macaroon: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
        hex::encode(std::fs::read(dir.join("loop.macaroon")).unwrap())
            .parse()
            .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = sluice::tls::pinned_channel(&addr, &cert, Duration::from_secs(10))
            .await
            .unwrap();
        let mut bare = SwapClientClient::new(channel.clone());
        let err = bare
            .list_swaps(rpc::ListSwapsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unknown);
        assert_eq!(err.message(), "expected 1 macaroon, got 0");

        let mut client =
            SwapClientClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                req.metadata_mut().insert("macaroon", macaroon.clone());
                Ok(req)
            });
        let deadline = std::time::Instant::now() + LIMIT;
        loop {
            if client
                .loop_out_terms(rpc::TermsRequest::default())
                .await
                .is_ok()
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "terms never answered");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let amount: i64 = 250_000;
        let quote = client
            .loop_out_quote(rpc::QuoteRequest {
                amt: amount,
                conf_target: 9,
                ..rpc::QuoteRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            quote.swap_fee_sat > 0 && quote.prepay_amt_sat > 0,
            "{quote:?}"
        );
        assert!(quote.cltv_delta > 0, "{quote:?}");
        let ours = daemon.cli(&["quote", "out", "250000"]);
        assert!(!ours.status.success());
        assert!(
            stderr(&ours).contains("swap.max_swap_fee_ppm"),
            "{}",
            stderr(&ours)
        );
        let request = rpc::LoopOutRequest {
            amt: amount,
            max_swap_fee: quote.swap_fee_sat,
            max_prepay_amt: quote.prepay_amt_sat,
            max_swap_routing_fee: 5_010,
            max_prepay_routing_fee: 77,
            max_miner_fee: 12_345,
            sweep_conf_target: 9,
            htlc_confirmations: 1,
            initiator: "grpc-test".to_owned(),
            ..rpc::LoopOutRequest::default()
        };

        // Each limit below the quote is refused, as loopd refuses it; nothing is stored.
        for (what, bad) in [
            (
                "max_swap_fee",
                rpc::LoopOutRequest {
                    max_swap_fee: quote.swap_fee_sat - 1,
                    ..request.clone()
                },
            ),
            (
                "max_prepay",
                rpc::LoopOutRequest {
                    max_prepay_amt: quote.prepay_amt_sat - 1,
                    ..request.clone()
                },
            ),
        ] {
            let err = client.loop_out(bad).await.unwrap_err();
            assert!(err.message().contains(what), "{what}: {err:?}");
        }
        for (field, bad) in [
            (
                "max_miner_fee",
                rpc::LoopOutRequest {
                    max_miner_fee: -1,
                    ..request.clone()
                },
            ),
            (
                "htlc_confirmations",
                rpc::LoopOutRequest {
                    htlc_confirmations: 6,
                    ..request.clone()
                },
            ),
            (
                "account",
                rpc::LoopOutRequest {
                    account: "savings".to_owned(),
                    ..request.clone()
                },
            ),
        ] {
            let err = client.loop_out(bad).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err:?}");
            assert!(err.message().contains(field), "{field}: {err:?}");
        }
        let none = client
            .list_swaps(rpc::ListSwapsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(
            none.swaps.is_empty(),
            "a refused LoopOut stored a swap: {none:?}"
        );

        // The limits as sent are the swap's limits.
        let created = client.loop_out(request).await.unwrap().into_inner();
        let id = hex::encode(&created.id_bytes);
        assert!(
            created.htlc_address_p2tr.starts_with("bcrt1p"),
            "{created:?}"
        );
        let status = client
            .swap_info(rpc::SwapInfoRequest {
                id: created.id_bytes.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.amt, amount);
        assert_eq!(status.r#type(), rpc::SwapType::LoopOut);
        let info = daemon.cli(&["--json", "swap", &id]);
        assert!(info.status.success(), "{}", stderr(&info));
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        let limits = &info["limits"];
        assert_eq!(limits["max_miner_fee_sat"], 12_345, "{info}");
        assert_eq!(limits["max_prepay_routing_fee_sat"], 77, "{info}");
        assert_eq!(limits["max_swap_routing_fee_sat"], 5_010, "{info}");
        assert_eq!(info["swap"]["initiator"], "grpc-test", "{info}");

        let err = client
            .swap_info(rpc::SwapInfoRequest { id: vec![1, 2, 3] })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

        // What a Loop In cannot do in sluice is refused naming the field.
        for (req, field) in [
            (
                rpc::LoopInRequest {
                    amt: 200_000,
                    external_htlc: true,
                    ..Default::default()
                },
                "external_htlc",
            ),
            (
                rpc::LoopInRequest {
                    amt: 200_000,
                    last_hop: vec![2; 5],
                    ..Default::default()
                },
                "last_hop",
            ),
            (
                rpc::LoopInRequest {
                    amt: 200_000,
                    private: true,
                    route_hints: vec![hint(&"02".repeat(33))],
                    ..Default::default()
                },
                "mutually exclusive",
            ),
            (
                rpc::LoopInRequest {
                    amt: 200_000,
                    route_hints: vec![hint("zz")],
                    ..Default::default()
                },
                "route hint 0, hop 0: node_id \"zz\"",
            ),
            // The simnet node has no private channel to hint.
            (
                rpc::LoopInRequest {
                    amt: 200_000,
                    private: true,
                    ..Default::default()
                },
                "private: no private, active channel",
            ),
        ] {
            let err = client.loop_in(req).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
            assert!(err.message().contains(field), "{err:?}");
        }
        // Calls without meaning in sluice say what to use instead.
        let err = client
            .set_liquidity_params(rpc::SetLiquidityParamsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
        assert!(err.message().contains("policies are files"), "{err:?}");
        assert!(
            err.message()
                .contains(&daemon.dir().join("policies").display().to_string()),
            "{err:?}"
        );
        let err = client
            .abandon_swap(rpc::AbandonSwapRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
        assert!(err.message().contains("`sluice swap ID`"), "{err:?}");
    });
}

/// A one-hop route hint from `node_id`.
fn hint(node_id: &str) -> sluice::proto::loopd::looprpc::RouteHint {
    sluice::proto::loopd::looprpc::RouteHint {
        hop_hints: vec![sluice::proto::loopd::looprpc::HopHint {
            node_id: node_id.to_owned(),
            chan_id: 1 << 40,
            fee_base_msat: 1_000,
            fee_proportional_millionths: 1,
            cltv_expiry_delta: 40,
        }],
    }
}

/// Loop's CLI runs a Loop In through sluiced: `loop terms` and `loop quote in` show sluice's
/// Loop In terms and quote, `loop in --force` creates a swap with the CLI's limits that sluice
/// drives to success.
#[test]
fn loops_cli_runs_a_loop_in_through_sluiced() {
    let Some((daemon, cli)) = start() else {
        return;
    };
    poll("loop terms to answer", LIMIT, || {
        cli.run(&["terms"]).status.success().then_some(())
    });
    let printed = cli.ok(&["quote", "in", "200000"]);
    let ours: serde_json::Value = {
        let q = daemon.cli(&["--json", "quote", "in", "200000"]);
        assert!(q.status.success(), "{}", stderr(&q));
        serde_json::from_slice(&q.stdout).unwrap()
    };
    let sat_after = |label: &str| -> u64 {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .and_then(|rest| rest.trim().strip_suffix(" sat"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} in: {printed}"))
    };
    let swap_fee = ours["swap_fee_sat"].as_u64().unwrap();
    let funding = ours["funding_fee_estimate_sat"].as_u64().unwrap();
    assert_eq!(sat_after("Send on-chain:"), 200_000, "{printed}");
    assert_eq!(
        sat_after("Receive off-chain:"),
        200_000 - swap_fee - funding,
        "{printed}\n{ours}"
    );

    // `loop monitor` streams the Loop In as it moves.
    let (mut monitor, lines) = cli.monitor();

    let out = cli.ok(&["in", "--amt", "200000", "--force"]);
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("ID:"))
        .map(|id| id.trim().to_owned())
        .unwrap_or_else(|| panic!("no ID in: {out}"));
    assert!(out.contains("HTLC address (P2TR): bcrt1p"), "{out}");
    let info = poll("the loop in to succeed", LIMIT, || {
        let info = daemon.cli(&["--json", "swap", &id]);
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).ok()?;
        let state = info["swap"]["state"].as_str()?.to_owned();
        assert!(!state.starts_with("FAILED"), "{info}\n{}", daemon.stderr());
        (state == "SUCCEEDED").then_some(info)
    });
    assert_eq!(info["swap"]["type"], "LOOP_IN", "{info}");
    assert_eq!(info["swap"]["initiator"], "loop-cli", "{info}");
    // loopd's own views list it as a Loop In, done.
    let shown = cli.ok(&["swapinfo", &id]);
    assert!(
        shown.contains("\"LOOP_IN\"") && shown.contains("\"SUCCESS\""),
        "{shown}"
    );
    let listed = cli.ok(&["listswaps", "--loop_in_only"]);
    assert!(listed.contains(&id), "{listed}");
    let outs = cli.ok(&["listswaps", "--loop_out_only"]);
    assert!(!outs.contains(&id), "{outs}");
    let getinfo = cli.json(&["getinfo"]);
    assert_eq!(
        sluice::regtest::lnd::number(&getinfo["loop_in_stats"]["success_count"]),
        1,
        "{getinfo}"
    );

    std::thread::sleep(Duration::from_secs(2));
    let _ = monitor.kill();
    let _ = monitor.wait();
    let lines = lines.join().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("LOOP_IN") && l.contains("SUCCESS")),
        "loop monitor printed:\n{}",
        lines.join("\n")
    );
    assert_eq!(
        info["swap"]["costs"]["server_sat"].as_i64().unwrap(),
        i64::try_from(swap_fee).unwrap(),
        "{info}"
    );
}
