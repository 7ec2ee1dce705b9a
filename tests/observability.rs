//! The observability artefacts checked by the tools that consume them: the alert rules by
//! `promtool check rules` and their unit tests by `promtool test rules`, a scrape of a fully
//! populated catalog by `promtool check metrics`, and the Grafana dashboards by a real
//! Prometheus that scrapes that catalog and must return data for every panel's query.
//!
//! `promtool` and `prometheus` come from the Debian package `prometheus`. A missing tool fails
//! its test when `CI` is set (`.ci/run` installs it) and is skipped with a note otherwise.
//!
//! [`panel_queries_without_data`] is the helper for the end-to-end check: given the address of
//! a Prometheus that scrapes a running `sluiced`, it runs every panel's query through the HTTP
//! API. Set `SLUICE_PROMETHEUS_ADDR=host:port` to run it against such a Prometheus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sluice::domain::{BlockHeight, Sat};
use sluice::ledger::{BudgetSpec, Ledger, Period};
use sluice::metrics::{CostBreakdown, Initiator, Kind, Metrics, PendingSwap, SPECS, TargetBalance};
use sluice::swap::SwapState;

const RULES: &str = "deploy/prometheus/rules/sluice.yml";
const RULE_TESTS: &str = "deploy/prometheus/rules/tests/sluice_test.yml";
const DASHBOARDS: [&str; 3] = [
    "dashboards/liquidity.json",
    "dashboards/swaps.json",
    "dashboards/budget-policy.json",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The path of `name` on `PATH`; when missing, a failure under `CI`, else `None` and a note.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        assert!(
            !ci,
            "`{name}` is not installed; CI must install it (apt-get install prometheus)"
        );
        eprintln!("SKIPPED: `{name}` is not installed (apt-get install prometheus)");
    }
    found
}

/// Fills every catalog family; `tick` varies the values so rates and quantiles have data.
fn populate(m: &Metrics, tick: u64) {
    let c = &m.catalog;
    c.set_channel_targets(&[
        TargetBalance {
            target: "peer-a".into(),
            local: Sat(600_000 + tick),
            remote: Sat(400_000),
            band: Some((0.3, 0.6)),
        },
        TargetBalance {
            target: "812345x1x0".into(),
            local: Sat(100_000),
            remote: Sat(900_000),
            band: None,
        },
    ]);
    c.set_node_totals(Sat(1_000_000), Sat(2_000_000), Sat(50_000 + tick));
    c.record_swap_started(Initiator::Autoloop);
    c.record_swap_started(Initiator::Manual);
    let costs = CostBreakdown {
        server: Sat(500),
        prepay: Sat(100),
        routing: Sat(20 + tick % 7),
        miner: Sat(300),
    };
    let took = Duration::from_secs(600 + 60 * (tick % 50));
    c.record_swap_finished(SwapState::Succeeded, Sat(250_000), costs, took);
    c.record_swap_finished(
        SwapState::FailedOffchain,
        Sat(250_000),
        CostBreakdown::default(),
        took,
    );
    c.set_pending_swaps(&[PendingSwap {
        state: SwapState::PreimageRevealed,
        in_state_for: Duration::from_secs(90 + tick),
        blocks_to_expiry: Some(40),
    }]);
    let spec = BudgetSpec {
        name: "fees".into(),
        period: Period::Day,
        limit: Sat(10_000),
        per_rule: Default::default(),
        hard_cap: Some((Period::Week, Sat(50_000))),
    };
    let ledger = Ledger::new(vec![spec], chrono_tz::UTC).unwrap();
    c.set_budgets(&ledger.status(chrono::Utc::now()));
    c.record_policy_decision(true, "below_band");
    c.record_policy_decision(false, "fee_gate_closed");
    c.record_policy_reload(true);
    c.set_fee_gate(true, 6, 4.5);
    c.set_lnd_up(true);
    let ms = Duration::from_millis(5 + tick % 40);
    c.observe_lnd_rpc("ListChannels", ms, Ok(()));
    c.observe_lnd_rpc("SendPaymentV2", ms, Err("unavailable"));
    c.observe_server_rpc("NewLoopOutSwap", ms, Ok(()));
    c.observe_server_rpc("LoopOutTerms", ms, Err("deadline"));
    c.record_l402_spent(Sat(1_000));
    c.set_simnet_height(BlockHeight(321 + u32::try_from(tick).unwrap()));
}

fn promtool(args: &[&str], stdin: Option<&str>) -> Option<(bool, String)> {
    let bin = tool("promtool")?;
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some((ok, out)) = promtool(&["check", "rules", RULES], None) else {
        return;
    };
    assert!(ok, "promtool check rules {RULES}:\n{out}");
    let Some((ok, out)) = promtool(&["test", "rules", RULE_TESTS], None) else {
        return;
    };
    assert!(ok, "promtool test rules {RULE_TESTS}:\n{out}");
}

#[test]
fn every_alert_rule_has_a_unit_test_and_reads_catalog_metrics() {
    let rules: Value = serde_saphyr::from_str(&read(RULES)).unwrap();
    let tests: Value = serde_saphyr::from_str(&read(RULE_TESTS)).unwrap();
    let tested: BTreeSet<&str> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .map(|a| a["alertname"].as_str().unwrap())
        .collect();
    let mut count = 0;
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let name = rule["alert"].as_str().unwrap();
        count += 1;
        assert!(tested.contains(name), "{name} has no promtool unit test");
        for metric in metric_names(rule["expr"].as_str().unwrap()) {
            assert!(is_catalog_series(&metric), "{name} reads unknown {metric}");
        }
        for key in ["summary", "description"] {
            assert!(rule["annotations"][key].is_string(), "{name} lacks {key}");
        }
    }
    assert_eq!(count, 8);
}

#[test]
fn a_populated_scrape_passes_promtool_check_metrics_and_holds_no_secret() {
    let m = Metrics::new("0.0.0-test");
    populate(&m, 1);
    let text = m.encode().unwrap();
    // Nothing shaped like a preimage, hash or key (64 hex digits) in any line.
    for line in text.lines() {
        let hexrun = line
            .split(|c: char| !c.is_ascii_hexdigit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(hexrun < 64, "secret-shaped value in {line}");
    }
    let Some((ok, out)) = promtool(&["check", "metrics"], Some(&text)) else {
        return;
    };
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics:\n{out}\n{text}"
    );
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Every `sluice_*` identifier in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("sluice_"))
        .map(str::to_owned)
        .collect()
}

/// Whether `series` is a catalog family or a histogram's `_bucket`/`_sum`/`_count`.
fn is_catalog_series(series: &str) -> bool {
    series == "sluice_build_info"
        || SPECS.iter().any(|s| {
            s.name == series
                || (s.kind == Kind::Histogram
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| series.strip_suffix(suffix) == Some(s.name)))
        })
}

/// Every panel query of a dashboard as (panel title, expr).
fn panel_exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap().to_owned();
        for target in panel["targets"].as_array().unwrap() {
            out.push((title.clone(), target["expr"].as_str().unwrap().to_owned()));
        }
    }
    out
}

fn dashboards() -> Vec<(&'static str, Value)> {
    DASHBOARDS
        .iter()
        .map(|p| (*p, serde_json::from_str(&read(p)).unwrap()))
        .collect()
}

#[test]
fn dashboards_have_the_variables_and_read_catalog_metrics_by_name() {
    let mut used = BTreeSet::new();
    let mut uids = BTreeSet::new();
    for (path, d) in dashboards() {
        assert!(uids.insert(d["uid"].as_str().unwrap().to_owned()), "{path}");
        let vars = d["templating"]["list"].as_array().unwrap();
        let var = |name: &str| vars.iter().find(|v| v["name"] == name).unwrap();
        assert_eq!(var("datasource")["type"], "datasource", "{path}");
        assert_eq!(var("datasource")["query"], "prometheus", "{path}");
        assert_eq!(
            var("node")["definition"],
            "label_values(sluice_build_info, instance)",
            "{path}"
        );
        let mut ids = BTreeSet::new();
        for panel in d["panels"].as_array().unwrap() {
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{path}: duplicate id"
            );
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{path}");
        }
        for (title, expr) in panel_exprs(&d) {
            assert!(
                expr.contains("instance=~\"$node\""),
                "{path} {title}: {expr}"
            );
            let names = metric_names(&expr);
            assert!(!names.is_empty(), "{path} {title}: {expr}");
            for name in names {
                assert!(
                    is_catalog_series(&name),
                    "{path} panel {title:?} reads {name}, which the catalog lacks"
                );
                used.insert(name);
            }
        }
    }
    for spec in SPECS {
        let read = used.iter().any(|u| u.starts_with(spec.name));
        assert!(read, "no dashboard panel shows {}", spec.name);
    }
}

/// Runs every dashboard panel's query (with `$node` matching every node) through the HTTP API
/// of the Prometheus at `addr` over the last `window`, as a dashboard's time range does, and
/// returns the queries that failed or returned no series in it.
pub fn panel_queries_without_data(addr: &str, window: Duration) -> Vec<String> {
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = end.saturating_sub(window.as_secs().max(1));
    let mut empty = Vec::new();
    for (path, d) in dashboards() {
        for (title, expr) in panel_exprs(&d) {
            let query = expr.replace("$node", ".+");
            let (code, body) = common::http_get(
                addr,
                &format!(
                    "/api/v1/query_range?query={}&start={start}&end={end}&step=1",
                    percent_encode(&query)
                ),
            );
            let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let has_data = code == 200
                && answer["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty());
            if !has_data {
                empty.push(format!("{path} {title:?}: {expr} -> {code} {body}"));
            }
        }
    }
    empty
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Debian's `prometheus` scraping `target` every second; returns it (killed on drop),
/// its data directory and its web address.
fn start_prometheus(bin: &Path, target: &str) -> (Killed, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sluice\n    \
             static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Killed(child), dir, web)
}

fn json(out: &std::process::Output) -> Option<Value> {
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// The value of the sample `series` (name with its labels, as exposed) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The acceptance test of the dashboards and the catalog together: the real `sluiced --simnet`
/// (traffic and autoloop on) runs a loop-out and a loop-in while Debian's Prometheus scrapes it; then every
/// panel's query must return data, the live scrape must pass `promtool check metrics` and carry
/// the swap's series, and neither the scrape nor the daemon's log may contain a secret.
#[test]
fn a_live_daemon_feeds_every_dashboard_panel_and_leaks_no_secret() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let limit = Duration::from_secs(240);
    let began = std::time::Instant::now();
    let daemon = common::Daemon::start(&[]);
    common::poll("lnd to connect", limit, || {
        let info = json(&daemon.cli(&["--json", "getinfo"]))?;
        info["lnd"]["connected"].as_bool().filter(|c| *c)
    });
    let (_prometheus, _data, web) = start_prometheus(&prometheus, &daemon.metrics);

    let out = daemon.cli(&["--json", "out", "--amt", "250000", "--force"]);
    let created = json(&out)
        .unwrap_or_else(|| panic!("out failed: {}", String::from_utf8_lossy(&out.stderr)));
    let id = created["id"].as_str().unwrap().to_owned();
    common::poll("the swap to succeed", limit, || {
        let info = json(&daemon.cli(&["--json", "swap", &id]))?;
        let state = info["swap"]["state"].as_str()?.to_owned();
        assert!(!state.starts_with("FAILED"), "{info}\n{}", daemon.stderr());
        (state == "SUCCEEDED").then_some(())
    });
    // And a Loop In, for the Loop In panels.
    let out = daemon.cli(&["--json", "in", "--amt", "200000", "--force"]);
    let created =
        json(&out).unwrap_or_else(|| panic!("in failed: {}", String::from_utf8_lossy(&out.stderr)));
    let in_id = created["id"].as_str().unwrap().to_owned();
    common::poll("the loop in to succeed", limit, || {
        let info = json(&daemon.cli(&["--json", "swap", &in_id]))?;
        let state = info["swap"]["state"].as_str()?.to_owned();
        assert!(!state.starts_with("FAILED"), "{info}\n{}", daemon.stderr());
        (state == "SUCCEEDED").then_some(())
    });

    // Every panel has had data during the run (some only while the swap was in flight), as a
    // dashboard over the last minutes shows it.
    let mut last = vec!["Prometheus did not start".to_owned()];
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if port_open(&web) {
            last = panel_queries_without_data(&web, began.elapsed() + Duration::from_secs(60));
            if last.is_empty() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(last.is_empty(), "panels without data: {last:#?}");

    // The live scrape: valid exposition, and the swap's own series.
    let (code, scrape) = common::http_get(&daemon.metrics, "/metrics");
    assert_eq!(code, 200);
    if let Some((ok, out)) = promtool(&["check", "metrics"], Some(&scrape)) {
        assert!(
            ok && out.trim().is_empty(),
            "promtool check metrics on the live scrape:\n{out}"
        );
    }
    for (series, at_least) in [
        ("sluice_swaps_started_total{initiator=\"manual\"}", 1.0),
        (
            "sluice_swaps_finished_total{outcome=\"succeeded\",reason=\"none\"}",
            1.0,
        ),
        ("sluice_swap_amount_sat_total", 250_000.0),
        ("sluice_swap_cost_sat_total{category=\"server\"}", 1.0),
        ("sluice_swap_cost_sat_total{category=\"miner\"}", 1.0),
        (
            "sluice_swap_duration_seconds_count{outcome=\"succeeded\"}",
            1.0,
        ),
        (
            "sluice_lnd_rpc_duration_seconds_count{method=\"SendPaymentV2\"}",
            1.0,
        ),
        (
            "sluice_server_rpc_duration_seconds_count{method=\"NewLoopOutSwap\"}",
            1.0,
        ),
        ("sluice_policy_reloads_total{result=\"ok\"}", 1.0),
        ("sluice_policy_rejected", 0.0),
        ("sluice_lnd_up", 1.0),
        ("sluice_node_onchain_balance_sat", 1.0),
        (
            "sluice_lnd_rpc_duration_seconds_count{method=\"WalletBalance\"}",
            1.0,
        ),
    ] {
        let value = sample(&scrape, series).unwrap_or_else(|| panic!("{series} missing"));
        assert!(
            value >= at_least,
            "{series} = {value}, expected >= {at_least}"
        );
    }
    let decisions: f64 = scrape
        .lines()
        .filter(|l| l.starts_with("sluice_policy_decisions_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(decisions >= 1.0, "autoloop decided nothing:\n{scrape}");
    // The in-flight view is re-read at most once a second after swap updates (the observer
    // coalesces them): give it that long, then nothing finished may still count as in flight.
    let still_in_flight = |scrape: &str| -> Vec<String> {
        scrape
            .lines()
            .filter(|l| l.contains("sluice_swaps_in_flight{") && !l.ends_with(" 0"))
            .map(str::to_owned)
            .collect()
    };
    let mut stale = still_in_flight(&scrape);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !stale.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        stale = still_in_flight(&common::http_get(&daemon.metrics, "/metrics").1);
    }
    assert!(
        stale.is_empty(),
        "a finished swap is still in flight: {stale:?}"
    );

    // No secret in the scrape or the log: the swap's preimage, the macaroons, the API
    // credentials, the TLS private keys.
    let preimage = {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = sluice::store::Store::open(&daemon.dir().join("sluice.db"))
                .await
                .unwrap();
            let hash = sluice::domain::SwapHash(hex::decode(&id).unwrap().try_into().unwrap());
            let stored = store.load_swap(hash).await.unwrap().unwrap();
            hex::encode(stored.preimage.expose_secret())
        })
    };
    let mut secrets = vec![("the swap's preimage".to_owned(), preimage)];
    for entry in walk(daemon.dir()) {
        let name = entry.file_name().unwrap().to_string_lossy().to_string();
        let Ok(bytes) = std::fs::read(&entry) else {
            continue;
        };
        if name.ends_with(".macaroon") {
            secrets.push((entry.display().to_string(), hex::encode(&bytes)));
        } else if name.ends_with(".key") || name.contains("credential") {
            let text = String::from_utf8_lossy(&bytes);
            // The key material itself, not the PEM armour.
            for line in text
                .lines()
                .filter(|l| l.len() >= 32 && !l.starts_with("-----"))
            {
                secrets.push((entry.display().to_string(), line.trim().to_owned()));
            }
        }
    }
    assert!(
        secrets.len() >= 3,
        "expected the preimage, macaroons and keys: {secrets:?}"
    );
    let log = daemon.stderr();
    for (what, secret) in &secrets {
        assert!(!scrape.contains(secret.as_str()), "{what} is in /metrics");
        assert!(
            !log.contains(secret.as_str()),
            "{what} is in the daemon's log"
        );
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn port_open(addr: &str) -> bool {
    std::net::TcpStream::connect(addr).is_ok()
}

#[test]
fn every_dashboard_panel_returns_data_from_the_configured_prometheus() {
    let Ok(addr) = std::env::var("SLUICE_PROMETHEUS_ADDR") else {
        eprintln!("SKIPPED: set SLUICE_PROMETHEUS_ADDR=host:port to query a live Prometheus");
        return;
    };
    let empty = panel_queries_without_data(&addr, Duration::from_secs(3_600));
    assert!(empty.is_empty(), "panels without data: {empty:#?}");
}

#[test]
fn rule_and_dashboard_files_exist_where_the_deployment_expects_them() {
    // prometheus.yml loads rules/*.yml: the unit tests must not be among them.
    assert!(Path::new(&repo().join(RULES)).is_file());
    assert!(
        !repo()
            .join("deploy/prometheus/rules/sluice_test.yml")
            .exists()
    );
    for path in DASHBOARDS {
        assert!(repo().join(path).is_file(), "{path}");
    }
}
