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
use sluice::domain::{BlockHeight, Direction, Sat};
use sluice::ledger::{BudgetSpec, Ledger, Period};
use sluice::metrics::{
    CostBreakdown, Initiator, Kind, Metrics, PendingSwap, SPECS, SwapStateOf, TargetBalance,
};
use sluice::swap::SwapState;
use sluice::swap::loop_in::{LoopInCosts, LoopInState};

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
    for direction in Direction::ALL {
        c.record_swap_started(direction, Initiator::Autoloop);
        c.record_swap_started(direction, Initiator::Manual);
    }
    let costs = CostBreakdown {
        server: Sat(500),
        prepay: Sat(100),
        routing: Sat(20 + tick % 7),
        miner: Sat(300),
    };
    let took = Duration::from_secs(600 + 60 * (tick % 50));
    let out = SwapStateOf::Out;
    c.record_swap_finished(out(SwapState::Succeeded), Sat(250_000), costs, took);
    c.record_swap_finished(
        out(SwapState::FailedOffchain),
        Sat(250_000),
        CostBreakdown::default(),
        took,
    );
    let loop_in_costs = CostBreakdown::from_loop_in_costs(&LoopInCosts {
        server_sat: 400,
        onchain: Sat(250 + tick % 5),
    });
    let loop_in = SwapStateOf::In;
    c.record_swap_finished(
        loop_in(LoopInState::Succeeded),
        Sat(200_000),
        loop_in_costs,
        took * 2,
    );
    c.record_swap_finished(
        loop_in(LoopInState::FailedTimeout),
        Sat(200_000),
        loop_in_costs,
        took * 3,
    );
    c.set_pending_swaps(&[
        PendingSwap {
            state: out(SwapState::PreimageRevealed),
            in_state_for: Duration::from_secs(90 + tick),
            blocks_to_expiry: Some(40),
        },
        PendingSwap {
            state: loop_in(LoopInState::HtlcConfirmed),
            in_state_for: Duration::from_secs(30 + tick),
            blocks_to_expiry: None,
        },
    ]);
    c.set_quarantined_swaps(&[]);
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
    panel_targets(dashboard)
        .into_iter()
        .map(|(title, expr, _)| (title, expr))
        .collect()
}

/// Every panel query of a dashboard as (panel title, expr, legend format).
fn panel_targets(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap().to_owned();
        for target in panel["targets"].as_array().unwrap() {
            out.push((
                title.clone(),
                target["expr"].as_str().unwrap().to_owned(),
                target["legendFormat"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    out
}

/// Whether a catalog series (a family or a histogram's series) is labelled by direction.
fn is_directed(series: &str) -> bool {
    SPECS.iter().any(|s| {
        s.labels.contains(&"direction")
            && (s.name == series
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| series.strip_suffix(suffix) == Some(s.name)))
    })
}

/// The values of the closed set of directions, as the metrics label them.
fn directions() -> BTreeSet<&'static str> {
    Direction::ALL.iter().map(|d| d.as_str()).collect()
}

/// A panel query as a dashboard showing every node and both directions runs it.
fn with_every_value(expr: &str) -> String {
    expr.replace("$node", ".+").replace("$direction", ".+")
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
        let mut directed_panels = 0;
        for (title, expr, legend) in panel_targets(&d) {
            assert!(
                expr.contains("instance=~\"$node\""),
                "{path} {title}: {expr}"
            );
            let names = metric_names(&expr);
            assert!(!names.is_empty(), "{path} {title}: {expr}");
            // A swap family of both directions is filtered by the Direction variable at every
            // selector and keeps the directions apart in its legend.
            if names.iter().any(|n| is_directed(n)) {
                directed_panels += 1;
                assert_eq!(
                    expr.matches("direction=~\"$direction\"").count(),
                    names.iter().filter(|n| is_directed(n)).count(),
                    "{path} {title}: every direction-labelled selector must take $direction: {expr}"
                );
                assert!(
                    legend.contains("{{direction}}"),
                    "{path} {title}: the legend must show the direction: {legend:?}"
                );
                for by in expr.match_indices(" by (").map(|(i, _)| &expr[i..]) {
                    let group = &by[..by.find(')').unwrap()];
                    assert!(
                        group.contains("direction"),
                        "{path} {title}: an aggregation drops the direction: {expr}"
                    );
                }
            }
            for name in names {
                assert!(
                    is_catalog_series(&name),
                    "{path} panel {title:?} reads {name}, which the catalog lacks"
                );
                used.insert(name);
            }
        }
        // A dashboard with swap panels offers the Direction variable with exactly the closed
        // set of directions.
        if directed_panels > 0 {
            let direction = var("direction");
            assert_eq!(direction["type"], "custom", "{path}");
            assert_eq!(direction["includeAll"], true, "{path}");
            let values: BTreeSet<&str> = direction["options"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["value"].as_str().unwrap())
                .filter(|v| *v != "$__all")
                .collect();
            assert_eq!(values, directions(), "{path}");
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
    let mut empty = Vec::new();
    for (path, d) in dashboards() {
        for (title, expr) in panel_exprs(&d) {
            match query_range(addr, &with_every_value(&expr), window) {
                Ok(series) if !series.is_empty() => {}
                Ok(_) => empty.push(format!("{path} {title:?}: {expr} -> no series")),
                Err(e) => empty.push(format!("{path} {title:?}: {expr} -> {e}")),
            }
        }
    }
    empty
}

/// The series `query` returns from the Prometheus at `addr` over the last `window` at a
/// one-second step, as a dashboard's time range runs it, or the answer that was not one.
fn query_range(addr: &str, query: &str, window: Duration) -> Result<Vec<Value>, String> {
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = end.saturating_sub(window.as_secs().max(1));
    let (code, body) = common::http_get(
        addr,
        &format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step=1",
            percent_encode(query)
        ),
    );
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    match answer["data"]["result"].as_array() {
        Some(series) if code == 200 => Ok(series.clone()),
        _ => Err(format!("{code} {body}")),
    }
}

/// The label `name` of a series of a query answer.
fn label<'a>(series: &'a Value, name: &str) -> Option<&'a str> {
    series["metric"][name].as_str()
}

/// The largest value of a series of a query answer over its range (NaN and infinities, which a
/// ratio over nothing gives, left out).
fn peak(series: &Value) -> f64 {
    series["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v[1].as_str()?.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max)
}

/// What the dashboards failed to show of a run with a Loop Out and a Loop In: every query of
/// a direction-labelled family must return both directions apart, and the panels of starts,
/// outcomes, swaps in flight, amounts and costs must each have shown both directions above
/// zero at some point in the last `window`.
fn directions_not_shown(addr: &str, window: Duration) -> Vec<String> {
    let mut missing = Vec::new();
    // (panel title, the family its query reads, a label the series must have) whose peak
    // must be above zero for each direction.
    let finished = "sluice_swaps_finished_total";
    let started = "sluice_swaps_started_total";
    let must_show = [
        (
            "Outcomes per hour",
            finished,
            Some(("outcome", "succeeded")),
        ),
        ("Started per hour", started, Some(("initiator", "manual"))),
        ("In flight by state", "sluice_swaps_in_flight", None),
        (
            "Amount moved by succeeded swaps (sat per day)",
            "sluice_swap_amount_sat_total",
            None,
        ),
        (
            "Costs by category (sat per day)",
            "sluice_swap_cost_sat_total",
            Some(("category", "miner")),
        ),
        ("Swaps over time", started, Some(("initiator", "manual"))),
        ("Swaps over time", finished, Some(("outcome", "succeeded"))),
    ];
    let mut checked = BTreeSet::new();
    for (path, d) in dashboards() {
        for (title, expr) in panel_exprs(&d) {
            if !metric_names(&expr).iter().any(|n| is_directed(n)) {
                continue;
            }
            let series = match query_range(addr, &with_every_value(&expr), window) {
                Ok(series) => series,
                Err(e) => {
                    missing.push(format!("{path} {title:?}: {expr} -> {e}"));
                    continue;
                }
            };
            let shown: BTreeSet<&str> = series
                .iter()
                .filter_map(|s| label(s, "direction"))
                .collect();
            if shown != directions() {
                missing.push(format!(
                    "{path} {title:?} shows directions {shown:?}: {expr}"
                ));
            }
            let names = metric_names(&expr);
            let Some((_, family, matching)) = must_show
                .iter()
                .find(|(t, family, _)| *t == title && names.contains(*family))
            else {
                continue;
            };
            checked.insert((title.clone(), *family));
            for direction in directions() {
                let above_zero = series.iter().any(|s| {
                    label(s, "direction") == Some(direction)
                        && matching.is_none_or(|(k, v)| label(s, k) == Some(v))
                        && peak(s) > 0.0
                });
                if !above_zero {
                    missing.push(format!(
                        "{path} {title:?} never showed direction {direction} above zero: {expr}"
                    ));
                }
            }
        }
    }
    for (title, family, _) in must_show {
        if !checked.contains(&(title.to_owned(), family)) {
            missing.push(format!("no dashboard panel {title:?} reads {family}"));
        }
    }
    missing
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
    // Prometheus must have scraped sluiced before the first swap starts, or the start counted
    // before its first sample never shows as an increase.
    common::poll("Prometheus to scrape sluiced", limit, || {
        if !port_open(&web) {
            return None;
        }
        let scraped = query_range(&web, "sluice_swaps_started_total", Duration::from_secs(60));
        scraped.ok().filter(|s| !s.is_empty()).map(|_| ())
    });

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
    // dashboard over the last minutes shows it; and the swap panels have shown the Loop Out
    // and the Loop In apart, each under its direction.
    let mut last = vec!["Prometheus did not start".to_owned()];
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if port_open(&web) {
            let window = began.elapsed() + Duration::from_secs(60);
            last = panel_queries_without_data(&web, window);
            last.extend(directions_not_shown(&web, window));
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
        (
            "sluice_swaps_started_total{direction=\"out\",initiator=\"manual\"}",
            1.0,
        ),
        (
            "sluice_swaps_finished_total{direction=\"out\",outcome=\"succeeded\",reason=\"none\"}",
            1.0,
        ),
        ("sluice_swap_amount_sat_total{direction=\"out\"}", 250_000.0),
        (
            "sluice_swap_cost_sat_total{direction=\"out\",category=\"server\"}",
            1.0,
        ),
        (
            "sluice_swap_cost_sat_total{direction=\"out\",category=\"miner\"}",
            1.0,
        ),
        (
            "sluice_swap_duration_seconds_count{direction=\"out\",outcome=\"succeeded\"}",
            1.0,
        ),
        // The Loop In, in the same families under direction="in": its start, its success,
        // the amount it moved, the server's fee and the funding's miner fee.
        (
            "sluice_swaps_started_total{direction=\"in\",initiator=\"manual\"}",
            1.0,
        ),
        (
            "sluice_swaps_finished_total{direction=\"in\",outcome=\"succeeded\",reason=\"none\"}",
            1.0,
        ),
        ("sluice_swap_amount_sat_total{direction=\"in\"}", 200_000.0),
        (
            "sluice_swap_cost_sat_total{direction=\"in\",category=\"server\"}",
            1.0,
        ),
        (
            "sluice_swap_cost_sat_total{direction=\"in\",category=\"miner\"}",
            1.0,
        ),
        (
            "sluice_swap_duration_seconds_count{direction=\"in\",outcome=\"succeeded\"}",
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
    // Nothing else of the swap families is labelled outside the closed set of directions, and
    // the Loop In series of before are gone.
    for line in scrape.lines().filter(|l| l.starts_with("sluice_swap")) {
        if line.starts_with("sluice_swap_blocks_to_expiry") {
            continue;
        }
        let direction = line
            .split("direction=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next());
        assert!(
            direction.is_some_and(|d| directions().contains(d)),
            "a swap series without a known direction: {line}"
        );
    }
    assert!(!scrape.contains("sluice_loop_in"), "{scrape}");
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
