#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::text_check::{Family, parse_exposition};
use super::*;
use crate::domain::Direction;
use crate::swap::loop_in::{LoopInCosts, LoopInState};

fn family<'a>(families: &'a [Family], name: &str) -> &'a Family {
    families
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no family {name} in {families:#?}"))
}

/// Whether a family has no series (an empty family is left out of the exposition).
fn absent(families: &[Family], name: &str) -> bool {
    families
        .iter()
        .find(|f| f.name == name)
        .is_none_or(|f| f.samples.is_empty())
}

#[test]
fn the_checker_rejects_what_prometheus_rejects() {
    let bad = [
        "x 1",                                   // no final newline
        "x{a=\"1\"} 1\nx{a=\"1\"} 2\n",          // duplicate series
        "x 1\ny 1\nx 2\n",                       // family not contiguous
        "# TYPE x gauge\n# TYPE x gauge\nx 1\n", // TYPE twice
        "x 1\n# TYPE x gauge\n",                 // TYPE after samples
        "# TYPE x info\nx 1\n",                  // OpenMetrics-only type
        "# TYPE x counter\nx -1\n",              // negative counter
        "x{a=\"1} 1\n",                          // unterminated label
        "x{a=\"\\t\"} 1\n",                      // invalid escape
        "x{1a=\"1\"} 1\n",                       // bad label name
        "x{a=\"1\",a=\"2\"} 1\n",                // duplicate label
        "1x 1\n",                                // bad metric name
        "x one\n",                               // bad value
        "x 1\n# EOF\n",                          // OpenMetrics terminator
    ];
    for text in bad {
        assert!(parse_exposition(text).is_err(), "accepted {text:?}");
    }
    let good = "# HELP x_total A counter.\n# TYPE x_total counter\nx_total{a=\"q\\\"\\\\\\n\",} 3 17\n\
                # TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n# plain comment\nu NaN\n";
    let fams = parse_exposition(good).unwrap();
    assert_eq!(fams.len(), 3);
    assert_eq!(fams[0].samples[0].labels[0].1, "q\"\\\n");
    assert_eq!(fams[1].samples.len(), 3);
}

#[test]
fn openmetrics_output_is_not_what_we_serve() {
    // The OpenMetrics encoder's output of the same registry fails the 0.0.4 checker, which is
    // why `encode` uses the 0.0.4 encoder (see the module docs).
    let m = Metrics::new("0.1.0");
    let mut openmetrics = String::new();
    prometheus_client::encoding::text::encode(&mut openmetrics, &m.registry).unwrap();
    assert!(parse_exposition(&openmetrics).is_err());
}

#[test]
fn exposition_parses_and_carries_build_info() {
    let m = Metrics::new("1.2.3");
    let text = m.encode().unwrap();
    let families = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let build = family(&families, "sluice_build_info");
    assert_eq!(build.kind, "gauge");
    assert_eq!(build.samples.len(), 1);
    assert_eq!(
        build.samples[0].labels,
        vec![("version".to_owned(), "1.2.3".to_owned())]
    );
    assert_eq!(build.samples[0].value, 1.0);

    if cfg!(target_os = "linux") {
        for (name, kind) in [
            ("process_cpu_seconds_total", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_virtual_memory_bytes", "gauge"),
            ("process_start_time_seconds", "gauge"),
            ("process_open_fds", "gauge"),
        ] {
            let f = family(&families, name);
            assert_eq!(f.kind, kind, "{name}");
            assert_eq!(f.samples.len(), 1, "{name}");
            assert_eq!(f.samples[0].name, name);
            assert!(f.samples[0].value.is_finite() && f.samples[0].value >= 0.0);
        }
        assert!(family(&families, "process_resident_memory_bytes").samples[0].value > 0.0);
    }
}

#[test]
fn an_odd_version_string_is_escaped() {
    let version = "1.0-\"rc\"\\x\nnext";
    let text = Metrics::new(version).encode().unwrap();
    let families = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let build = family(&families, "sluice_build_info");
    assert_eq!(build.samples[0].labels[0].1, version);
}

/// The metrics documented in `docs/metrics.md`: name and type, the first two columns of its
/// metric tables.
fn documented() -> BTreeMap<String, String> {
    include_str!("../../docs/metrics.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter(|l| !l.starts_with('/'))
        .filter_map(|l| {
            let mut cols = l.split('|');
            let name = cols.next()?.trim().trim_end_matches('`');
            let kind = cols.next()?.trim();
            Some((name.to_owned(), kind.to_owned()))
        })
        .collect()
}

#[test]
fn every_registered_metric_is_documented() {
    // Populated, because a family without series is left out of the exposition.
    let text = populated().encode().unwrap();
    let registered: BTreeMap<String, String> = parse_exposition(&text)
        .unwrap()
        .into_iter()
        .map(|f| (f.name, f.kind))
        .collect();
    let documented = documented();
    for (name, kind) in &registered {
        assert_eq!(
            documented.get(name),
            Some(kind),
            "docs/metrics.md must list `{name}` as a {kind}"
        );
    }
    // The other direction: documented names that no longer exist. `process_max_fds` is
    // absent when the limit is unlimited; the other process metrics exist on Linux.
    if cfg!(target_os = "linux") {
        let stale: Vec<_> = documented
            .keys()
            .filter(|n| !registered.contains_key(*n) && n.as_str() != "process_max_fds")
            .collect();
        assert!(stale.is_empty(), "documented but not registered: {stale:?}");
    }
}

#[test]
fn readiness_lists_what_is_not_ready() {
    let r = Readiness::new(&["store", "lnd"]);
    let not_ready = r.check().unwrap_err();
    assert_eq!(
        not_ready.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        ["lnd", "store"]
    );
    let clone = r.clone();
    clone.set("store", Ok(()));
    clone.set("lnd", Err("connection refused".into()));
    assert_eq!(
        r.check().unwrap_err(),
        vec![("lnd", "connection refused".to_owned())]
    );
    r.set("lnd", Ok(()));
    assert_eq!(r.check(), Ok(()));
    r.set("chain", Err("syncing".into()));
    assert_eq!(
        r.check().unwrap_err(),
        vec![("chain", "syncing".to_owned())]
    );
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 GET over a raw socket, so the test depends on no HTTP client.
async fn get(addr: SocketAddr, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

#[tokio::test]
async fn serve_answers_health_readiness_and_metrics_then_stops() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let readiness = Readiness::new(&["store"]);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        Metrics::new("9.9.9"),
        readiness.clone(),
        shutdown.clone(),
    ));

    let health = get(addr, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));

    let before = get(addr, "/readyz").await;
    assert_eq!(before.status, 503);
    assert_eq!(before.body, "not ready\nstore: not checked yet");
    readiness.set("store", Err("database is locked".into()));
    let failing = get(addr, "/readyz").await;
    assert_eq!(failing.status, 503);
    assert!(
        failing.body.contains("store: database is locked"),
        "{}",
        failing.body
    );
    readiness.set("store", Ok(()));
    let after = get(addr, "/readyz").await;
    assert_eq!((after.status, after.body.as_str()), (200, "ready"));

    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert_eq!(metrics.header("content-type"), Some(CONTENT_TYPE));
    let families = parse_exposition(&metrics.body).unwrap();
    assert_eq!(
        family(&families, "sluice_build_info").samples[0].labels[0].1,
        "9.9.9"
    );

    assert_eq!(get(addr, "/nope").await.status, 404);

    shutdown.cancel();
    // A deadline, not a timing assertion: a server that ignores the token hangs the test.
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("serve did not stop after cancellation")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

/// A hook that counts its runs and exports the count as the node's local balance.
fn counting_hook(m: &std::sync::Arc<Metrics>) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (counter, weak) = (std::sync::Arc::clone(&runs), std::sync::Arc::downgrade(m));
    m.on_scrape(std::sync::Arc::new(move || {
        let (counter, weak) = (std::sync::Arc::clone(&counter), weak.clone());
        Box::pin(async move {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if let Some(m) = weak.upgrade() {
                m.catalog.set_node_totals(
                    crate::domain::Sat(n),
                    crate::domain::Sat(0),
                    crate::domain::Sat(0),
                );
            }
        })
    }));
    runs
}

#[tokio::test]
async fn a_scrape_reads_what_its_hooks_set() {
    let m = Metrics::new("9.9.9");
    let runs = counting_hook(&m);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        std::sync::Arc::clone(&m),
        Readiness::new(&[]),
        shutdown.clone(),
    ));
    assert_eq!(
        runs.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no scrape, no work"
    );
    let body = get(addr, "/metrics").await.body;
    let families = parse_exposition(&body).unwrap();
    assert_eq!(
        sample(&families, "sluice_node_local_balance_sat", &[]),
        Some(1.0),
        "{body}"
    );
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn close_scrapes_share_a_refresh_and_a_stuck_hook_only_delays_one() {
    let m = Metrics::new("9.9.9");
    let runs = counting_hook(&m);
    let count = || runs.load(std::sync::atomic::Ordering::SeqCst);
    m.refresh().await;
    m.refresh().await;
    assert_eq!(count(), 1, "two scrapes within the gap share one refresh");
    tokio::time::advance(SCRAPE_REFRESH_MIN_GAP).await;
    m.refresh().await;
    assert_eq!(count(), 2);

    // A hook that never finishes (lnd not answering): the refresh gives up after its timeout
    // and the other hooks' values are served.
    m.on_scrape(std::sync::Arc::new(|| Box::pin(std::future::pending())));
    tokio::time::advance(SCRAPE_REFRESH_MIN_GAP).await;
    let started = tokio::time::Instant::now();
    m.refresh().await;
    assert_eq!(started.elapsed(), SCRAPE_REFRESH_TIMEOUT);
    assert_eq!(count(), 3);
}

const BEGIN: &str = "<!-- BEGIN GENERATED CATALOG -->\n";
const END: &str = "<!-- END GENERATED CATALOG -->";

#[test]
fn the_catalog_table_is_generated() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc
        .find(BEGIN)
        .expect("docs/metrics.md lacks the BEGIN marker")
        + BEGIN.len();
    let end = doc.find(END).expect("docs/metrics.md lacks the END marker");
    let expected = render_doc();
    if doc[start..end] != expected {
        if std::env::var_os("UPDATE_METRICS_DOC").is_some() {
            let updated = format!("{}{}{}", &doc[..start], expected, &doc[end..]);
            std::fs::write(&path, updated).unwrap();
        } else {
            panic!(
                "docs/metrics.md is out of date with src/metrics/spec.rs; \
                 run `UPDATE_METRICS_DOC=1 cargo test the_catalog_table_is_generated`"
            );
        }
    }
}

/// A registry with every catalog family holding at least one series.
pub(crate) fn populated() -> std::sync::Arc<Metrics> {
    use crate::domain::{BlockHeight, Sat};
    use crate::ledger::{BudgetSpec, Ledger, Period};
    let m = Metrics::new("0.0.0");
    let c = &m.catalog;
    c.set_channel_targets(&[TargetBalance {
        target: "peer-a".into(),
        local: Sat(600_000),
        remote: Sat(400_000),
        band: Some((0.3, 0.6)),
    }]);
    c.set_node_totals(Sat(1_000_000), Sat(2_000_000), Sat(50_000));
    c.record_swap_started(Direction::Out, Initiator::Autoloop);
    c.record_swap_started(Direction::In, Initiator::Manual);
    let costs = CostBreakdown {
        server: Sat(500),
        prepay: Sat(100),
        routing: Sat(20),
        miner: Sat(300),
    };
    c.record_swap_finished(
        SwapStateOf::Out(crate::swap::SwapState::Succeeded),
        Sat(250_000),
        costs,
        Duration::from_secs(1_200),
    );
    c.record_swap_finished(
        SwapStateOf::In(LoopInState::Succeeded),
        Sat(200_000),
        CostBreakdown::from_loop_in_costs(&LoopInCosts {
            server_sat: 600,
            onchain: Sat(700),
        }),
        Duration::from_secs(900),
    );
    c.set_pending_swaps(&[PendingSwap {
        state: SwapStateOf::Out(crate::swap::SwapState::PreimageRevealed),
        in_state_for: Duration::from_secs(90),
        blocks_to_expiry: Some(40),
    }]);
    c.set_quarantined_swaps(&[Direction::In]);
    let spec = BudgetSpec {
        name: "fees".into(),
        period: Period::Day,
        limit: Sat(10_000),
        per_rule: Default::default(),
        hard_cap: None,
    };
    let ledger = Ledger::new(vec![spec], chrono_tz::UTC).unwrap();
    c.set_budgets(&ledger.status(chrono::Utc::now()));
    c.record_policy_decision(true, "below_band");
    c.record_policy_reload(true);
    c.set_fee_gate(true, 6, 4.5);
    c.set_lnd_up(true);
    c.observe_lnd_rpc(
        "ListChannels",
        Duration::from_millis(12),
        Err("unavailable"),
    );
    c.observe_server_rpc("NewLoopOutSwap", Duration::from_millis(80), Err("other"));
    c.record_l402_spent(Sat(1_000));
    c.set_simnet_height(BlockHeight(321));
    m
}

#[test]
fn every_catalog_family_is_specified_and_exported() {
    let text = populated().encode().unwrap();
    let families = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for spec in SPECS {
        assert!(!spec.help.is_empty());
        let f = family(&families, spec.name);
        assert_eq!(f.kind, spec.kind.as_str(), "{}", spec.name);
        assert!(!f.samples.is_empty(), "{} has no series", spec.name);
        for s in &f.samples {
            let names: Vec<&str> = s
                .labels
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| *k != "le")
                .collect();
            assert_eq!(names, spec.labels, "{}", spec.name);
        }
    }
    let sluice: Vec<_> = families
        .iter()
        .filter(|f| f.name.starts_with("sluice_") && f.name != "sluice_build_info")
        .collect();
    assert_eq!(sluice.len(), SPECS.len());
}

#[test]
fn channel_targets_are_replaced_and_can_be_switched_off() {
    use crate::domain::Sat;
    let m = populated();
    let t = |name: &str| TargetBalance {
        target: name.into(),
        local: Sat(1),
        remote: Sat(3),
        band: None,
    };
    m.catalog
        .set_channel_targets(&[t("b"), t(&"ab".repeat(32)), t("x y")]);
    let text = m.encode().unwrap();
    let families = parse_exposition(&text).unwrap();
    let local = family(&families, "sluice_channel_local_balance_sat");
    // peer-a is gone; the secret-shaped and the malformed names are never labels.
    assert_eq!(local.samples.len(), 1);
    assert_eq!(local.samples[0].labels[0].1, "b");
    let share = family(&families, "sluice_channel_inbound_share_ratio");
    assert_eq!(share.samples[0].value, 0.75);
    assert!(!text.contains(&"ab".repeat(32)));

    m.catalog.set_per_channel(false);
    m.catalog.set_channel_targets(&[t("c")]);
    let families = parse_exposition(&m.encode().unwrap()).unwrap();
    assert!(absent(&families, "sluice_channel_local_balance_sat"));
}

#[test]
fn pending_swaps_give_counts_ages_and_the_nearest_expiry() {
    use crate::swap::SwapState;
    let m = populated();
    let p = |state, secs, blocks| PendingSwap {
        state,
        in_state_for: Duration::from_secs(secs),
        blocks_to_expiry: blocks,
    };
    let (out, r#in) = (SwapStateOf::Out, SwapStateOf::In);
    m.catalog.set_pending_swaps(&[
        p(out(SwapState::Initiated), 10, None),
        p(out(SwapState::Initiated), 30, Some(3)),
        p(out(SwapState::SpendConfirming), 5, Some(12)),
        p(r#in(LoopInState::Initiated), 50, None),
        p(r#in(LoopInState::HtlcConfirmed), 70, None),
        p(r#in(LoopInState::HtlcConfirmed), 20, None),
    ]);
    let families = parse_exposition(&m.encode().unwrap()).unwrap();
    let value = |name: &str, direction: &str, state: &str| {
        family(&families, name)
            .samples
            .iter()
            .find(|s| {
                s.labels
                    == [
                        ("direction".to_owned(), direction.to_owned()),
                        ("state".to_owned(), state.to_owned()),
                    ]
            })
            .map(|s| s.value)
    };
    let in_flight = |direction, state| value("sluice_swaps_in_flight", direction, state);
    let oldest = |direction, state| value("sluice_swap_oldest_state_age_seconds", direction, state);
    assert_eq!(in_flight("out", "Initiated"), Some(2.0));
    assert_eq!(in_flight("out", "PreimageRevealed"), Some(0.0));
    assert_eq!(oldest("out", "Initiated"), Some(30.0));
    assert_eq!(in_flight("out", "Succeeded"), None);
    // Each direction counts its own swaps under its own state names.
    assert_eq!(in_flight("in", "Initiated"), Some(1.0));
    assert_eq!(oldest("in", "Initiated"), Some(50.0));
    assert_eq!(in_flight("in", "HtlcConfirmed"), Some(2.0));
    assert_eq!(oldest("in", "HtlcConfirmed"), Some(70.0));
    assert_eq!(in_flight("in", "TimeoutSweeping"), Some(0.0));
    assert_eq!(in_flight("in", "Succeeded"), None);
    assert_eq!(in_flight("out", "HtlcConfirmed"), None);
    // Every non-final state of both directions, and nothing else.
    let open = SwapState::ALL.iter().filter(|s| !s.is_terminal()).count()
        + LoopInState::ALL.iter().filter(|s| !s.is_terminal()).count();
    assert_eq!(
        family(&families, "sluice_swaps_in_flight").samples.len(),
        open
    );
    // The Initiated swap's nearer expiry does not count: it has nothing to sweep.
    let expiry = family(&families, "sluice_swap_blocks_to_expiry");
    assert_eq!(expiry.samples[0].value, 12.0);

    m.catalog.set_pending_swaps(&[]);
    let families = parse_exposition(&m.encode().unwrap()).unwrap();
    assert!(absent(&families, "sluice_swap_blocks_to_expiry"));
}

#[test]
fn swap_costs_split_into_the_cost_categories() {
    use crate::domain::Sat;
    use crate::swap::SwapCosts;
    let success = SwapCosts {
        server_sat: 1_500,
        onchain: Sat(300),
        offchain: Sat(25),
    };
    let split = CostBreakdown::from_swap_costs(&success, Sat(1_000));
    assert_eq!(
        split,
        CostBreakdown {
            server: Sat(500),
            prepay: Sat(1_000),
            routing: Sat(25),
            miner: Sat(300)
        }
    );
    // A failed swap whose prepay was kept; and a (refunded) negative server share.
    let failed = SwapCosts {
        server_sat: 1_000,
        onchain: Sat(0),
        offchain: Sat(3),
    };
    assert_eq!(
        CostBreakdown::from_swap_costs(&failed, Sat(1_000)).server,
        Sat(0)
    );
    let negative = SwapCosts {
        server_sat: -5,
        onchain: Sat(0),
        offchain: Sat(0),
    };
    let split = CostBreakdown::from_swap_costs(&negative, Sat(1_000));
    assert_eq!((split.server, split.prepay), (Sat(0), Sat(0)));
}

/// The value of the sample of `name` whose labels are exactly `labels`.
fn sample(families: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    families
        .iter()
        .flat_map(|f| &f.samples)
        .find(|s| s.name == name && s.labels == labels)
        .map(|s| s.value)
}

#[test]
fn loop_ins_and_loop_outs_count_in_the_same_families_by_direction() {
    use crate::domain::Sat;
    use crate::swap::SwapState;
    let m = Metrics::new("0.0.0");
    let c = &m.catalog;
    c.record_swap_started(Direction::Out, Initiator::Autoloop);
    c.record_swap_started(Direction::In, Initiator::Manual);
    c.record_swap_started(Direction::In, Initiator::Manual);
    c.record_swap_finished(
        SwapStateOf::Out(SwapState::Succeeded),
        Sat(250_000),
        CostBreakdown {
            server: Sat(500),
            prepay: Sat(0),
            routing: Sat(20),
            miner: Sat(300),
        },
        Duration::from_secs(600),
    );
    c.record_swap_finished(
        SwapStateOf::In(LoopInState::Succeeded),
        Sat(200_000),
        CostBreakdown::from_loop_in_costs(&LoopInCosts {
            server_sat: 400,
            onchain: Sat(250),
        }),
        Duration::from_secs(1_200),
    );
    // A failed Loop In: its timeout sweep took the HTLC back; the server earned nothing (a
    // negative share counts as zero), the miners were paid twice.
    c.record_swap_finished(
        SwapStateOf::In(LoopInState::FailedTimeout),
        Sat(150_000),
        CostBreakdown::from_loop_in_costs(&LoopInCosts {
            server_sat: -5,
            onchain: Sat(600),
        }),
        Duration::from_secs(86_400),
    );
    // Not final: ignored.
    c.record_swap_finished(
        SwapStateOf::In(LoopInState::HtlcConfirmed),
        Sat(1),
        CostBreakdown::from_loop_in_costs(&LoopInCosts {
            server_sat: 1,
            onchain: Sat(1),
        }),
        Duration::from_secs(1),
    );
    let families = parse_exposition(&m.encode().unwrap()).unwrap();
    let v = |name: &str, labels: &[(&str, &str)]| sample(&families, name, labels);
    let started = "sluice_swaps_started_total";
    let by = |direction, initiator| [("direction", direction), ("initiator", initiator)];
    assert_eq!(v(started, &by("out", "autoloop")), Some(1.0));
    assert_eq!(v(started, &by("out", "manual")), Some(0.0));
    assert_eq!(v(started, &by("in", "manual")), Some(2.0));
    assert_eq!(v(started, &by("in", "autoloop")), Some(0.0));
    let finished = "sluice_swaps_finished_total";
    let end = |direction, outcome, reason| {
        [
            ("direction", direction),
            ("outcome", outcome),
            ("reason", reason),
        ]
    };
    assert_eq!(v(finished, &end("out", "succeeded", "none")), Some(1.0));
    assert_eq!(v(finished, &end("in", "succeeded", "none")), Some(1.0));
    assert_eq!(v(finished, &end("in", "failed", "timeout")), Some(1.0));
    assert_eq!(v(finished, &end("out", "failed", "timeout")), Some(0.0));
    assert_eq!(v(finished, &end("in", "failed", "funding")), Some(0.0));
    // Loop Out's reasons are not Loop In's.
    assert_eq!(v(finished, &end("in", "failed", "offchain")), None);
    assert_eq!(v(finished, &end("out", "failed", "funding")), None);
    let amount = "sluice_swap_amount_sat_total";
    assert_eq!(v(amount, &[("direction", "out")]), Some(250_000.0));
    assert_eq!(v(amount, &[("direction", "in")]), Some(200_000.0));
    let cost = "sluice_swap_cost_sat_total";
    let cat = |direction, category| [("direction", direction), ("category", category)];
    assert_eq!(v(cost, &cat("out", "server")), Some(500.0));
    assert_eq!(v(cost, &cat("out", "routing")), Some(20.0));
    assert_eq!(v(cost, &cat("out", "miner")), Some(300.0));
    assert_eq!(v(cost, &cat("in", "server")), Some(400.0));
    assert_eq!(v(cost, &cat("in", "miner")), Some(850.0));
    // Loop In has no prepay and pays no routing: no such series.
    assert_eq!(v(cost, &cat("in", "prepay")), None);
    assert_eq!(v(cost, &cat("in", "routing")), None);
    let count = "sluice_swap_duration_seconds_count";
    let took = |direction, outcome| [("direction", direction), ("outcome", outcome)];
    assert_eq!(v(count, &took("out", "succeeded")), Some(1.0));
    assert_eq!(v(count, &took("in", "succeeded")), Some(1.0));
    assert_eq!(v(count, &took("in", "failed")), Some(1.0));
    assert_eq!(v(count, &took("out", "failed")), Some(0.0));
    let sum = "sluice_swap_duration_seconds_sum";
    assert_eq!(v(sum, &took("in", "succeeded")), Some(1_200.0));

    c.set_quarantined_swaps(&[Direction::In, Direction::In]);
    let families = parse_exposition(&m.encode().unwrap()).unwrap();
    let quarantined = |d| sample(&families, "sluice_swaps_quarantined", &[("direction", d)]);
    assert_eq!(quarantined("in"), Some(2.0));
    assert_eq!(quarantined("out"), Some(0.0));
}

#[test]
fn direction_labels_come_from_the_closed_set_and_swap_series_stay_bounded() {
    use crate::domain::Sat;
    // The number of series of every swap family, fixed before any swap.
    let count = |m: &Metrics| -> BTreeMap<String, usize> {
        parse_exposition(&m.encode().unwrap())
            .unwrap()
            .into_iter()
            .filter(|f| f.name.starts_with("sluice_swap"))
            .map(|f| (f.name, f.samples.len()))
            .collect()
    };
    let m = Metrics::new("0.0.0");
    let before = count(&m);
    // Thousands of swaps through every state of both directions.
    for i in 0..4_000u64 {
        for state in SwapStateOf::all() {
            let direction = state.direction();
            let initiator = if i % 2 == 0 {
                Initiator::Autoloop
            } else {
                Initiator::Manual
            };
            m.catalog.record_swap_started(direction, initiator);
            m.catalog.record_swap_finished(
                state,
                Sat(i),
                CostBreakdown {
                    server: Sat(i),
                    prepay: Sat(i),
                    routing: Sat(i),
                    miner: Sat(i),
                },
                Duration::from_secs(i),
            );
        }
    }
    let pending: Vec<PendingSwap> = SwapStateOf::all()
        .map(|state| PendingSwap {
            state,
            in_state_for: Duration::from_secs(1),
            blocks_to_expiry: Some(5),
        })
        .collect();
    m.catalog.set_pending_swaps(&pending);
    m.catalog
        .set_quarantined_swaps(&[Direction::Out, Direction::In]);
    let after = count(&m);
    // Only the expiry gauge appears (it is absent without a revealed Loop Out).
    let mut expected = before.clone();
    expected.insert("sluice_swap_blocks_to_expiry".to_owned(), 1);
    assert_eq!(after, expected);
    // Every swap family but the Loop Out-only expiry labels its series by direction, with the
    // values of the closed set only, and each direction is present.
    let families = parse_exposition(&m.encode().unwrap()).unwrap();
    // The series counts docs/metrics.md gives (a histogram's buckets make one series).
    let series = |name: &str| -> usize {
        let sets: std::collections::BTreeSet<Vec<(String, String)>> = family(&families, name)
            .samples
            .iter()
            .map(|s| {
                s.labels
                    .iter()
                    .filter(|(k, _)| k != "le")
                    .cloned()
                    .collect()
            })
            .collect();
        sets.len()
    };
    for (name, n) in [
        ("sluice_swaps_started_total", 4),
        ("sluice_swaps_finished_total", 10),
        ("sluice_swaps_in_flight", 9),
        ("sluice_swap_oldest_state_age_seconds", 9),
        ("sluice_swaps_quarantined", 2),
        ("sluice_swap_amount_sat_total", 2),
        ("sluice_swap_cost_sat_total", 6),
        ("sluice_swap_duration_seconds", 4),
        ("sluice_swap_blocks_to_expiry", 1),
    ] {
        assert_eq!(series(name), n, "{name}");
    }
    for spec in SPECS.iter().filter(|s| s.name.starts_with("sluice_swap")) {
        let f = family(&families, spec.name);
        if spec.name == "sluice_swap_blocks_to_expiry" {
            assert!(!spec.labels.contains(&"direction"));
            continue;
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &f.samples {
            let direction = s
                .labels
                .iter()
                .find(|(k, _)| k == "direction")
                .map(|(_, v)| v.as_str());
            seen.insert(direction.unwrap_or_else(|| panic!("{} {s:?}", spec.name)));
        }
        assert_eq!(
            seen,
            std::collections::BTreeSet::from(["in", "out"]),
            "{}",
            spec.name
        );
    }
}

#[test]
fn a_swap_family_without_direction_says_it_is_loop_out_only() {
    // The rule of docs/metrics.md: a swap metric whose meaning applies to both directions
    // carries `direction`; one that does not says so in its help text.
    for spec in SPECS.iter().filter(|s| s.name.starts_with("sluice_swap")) {
        let directed = spec.labels.first() == Some(&"direction");
        let out_only = spec.help.starts_with("Loop Out only");
        assert!(
            directed != out_only,
            "{}: either `direction` first or a help text starting with \"Loop Out only\"",
            spec.name
        );
    }
}
