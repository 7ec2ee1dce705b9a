//! `sluice backtest`: replays a history (a trace, or a synthetic node) under one policy, or two
//! side by side, with the live policy code on a virtual clock. Runs locally: no daemon.
//! Every input is read and checked before anything is written.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

use super::CliError;
use super::output::Format;
use crate::backtest::{self, FeeSeries, History, Outcome, Settings, input, model, report};
use crate::domain::{Ppm, Sat};
use crate::loopserver::terms::Terms;
use crate::policy::{self, Policy};

/// The end of a synthetic history unless `--end` says otherwise: fixed, so a seed gives the
/// same history on every day it is run.
pub const DEFAULT_SYNTHETIC_END: &str = "2026-03-01T00:00:00Z";

/// `sluice backtest`.
#[derive(clap::Args, Debug, Clone)]
pub struct BacktestArgs {
    /// The policy to replay (a file or a directory, as `sluice policy check` takes).
    #[arg(long, value_name = "PATH")]
    pub policy: PathBuf,
    /// A second policy run on the same inputs, shown side by side with ratios (A ÷ B).
    #[arg(long, value_name = "PATH")]
    pub against: Option<PathBuf>,
    /// A recorded trace (JSON Lines, docs/backtest.md).
    #[arg(long, value_name = "FILE", conflicts_with = "synthetic")]
    pub trace: Option<PathBuf>,
    /// A seeded synthetic routing node instead of a trace.
    #[arg(long)]
    pub synthetic: bool,
    /// The node's own history: lnd's forwards, payments and invoices over the last --days
    /// [default 30], each channel's balance rebuilt backward from today's (lnd reached as
    /// sluiced's configuration says).
    #[arg(long, conflicts_with_all = ["trace", "synthetic"])]
    pub from_node: bool,
    /// sluiced's configuration file, for --from-node [default: <datadir>/sluice.yaml].
    #[arg(long, value_name = "FILE", requires = "from_node")]
    pub config: Option<PathBuf>,
    /// Channels of the synthetic node.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub channels: usize,
    /// Days to replay: the synthetic node's length [default 30], or the last N days of a trace
    /// [default: all of it].
    #[arg(long, value_name = "D")]
    pub days: Option<u32>,
    /// Seeds the synthetic node, the fee model and the failures.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// End of the synthetic history (RFC 3339).
    #[arg(long, default_value = DEFAULT_SYNTHETIC_END, value_name = "TIME")]
    pub end: String,
    /// A fee-rate history (CSV: timestamp,conf_target,sat_per_vbyte) instead of the seeded
    /// fee model.
    #[arg(long, value_name = "FILE")]
    pub fees: Option<PathBuf>,
    /// The fee estimates the node's sluiced recorded (its fee gates' samples, in
    /// <datadir>/sluice.db) instead of the seeded fee model; they cover the largest gate window.
    #[arg(long, conflicts_with = "fees")]
    pub fees_from_node: bool,
    /// Write a self-contained HTML report (index.html) and its SVG plots into this directory.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Write the history replayed as a trace.
    #[arg(long, value_name = "FILE")]
    pub export_trace: Option<PathBuf>,
    /// Minutes between passes (the daemon's autoloop.tick).
    #[arg(long, default_value_t = 10, value_name = "MIN")]
    pub interval: u32,
    /// Minutes from a swap's dispatch to its end.
    #[arg(long, default_value_t = 60, value_name = "MIN")]
    pub swap_delay: u32,
    /// Share of swaps that fail (0..=1), drawn from the seed.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub failure_rate: f64,
    /// Routing fee the swap payments really pay, in ppm of the amount.
    #[arg(long, default_value_t = 500, value_name = "PPM")]
    pub routing_ppm: u64,
    /// The inbound share (percent) below which a channel counts as short of inbound whatever
    /// the policy's band: the common yardstick of a comparison.
    #[arg(long, default_value_t = 20, value_name = "PCT")]
    pub reference_inbound: u64,
    /// The swap server's proportional fee, ppm.
    #[arg(long, default_value_t = 1_000, value_name = "PPM")]
    pub server_fee_ppm: u64,
    /// The swap server's fixed fee, sat.
    #[arg(long, default_value_t = 50, value_name = "SAT")]
    pub server_fee_base: u64,
    /// Price swaps with the live server's current terms instead, read through the running
    /// daemon (`sluice terms` and two quotes): amounts, fixed and proportional fee, prepay.
    #[arg(long, conflicts_with_all = ["server_fee_ppm", "server_fee_base"])]
    pub live_terms: bool,
}

/// The two amounts the live server is quoted at to find its fixed and proportional fee.
const LIVE_QUOTE_AMOUNTS: (u64, u64) = (1_000_000, 4_000_000);

/// The live server's terms, read through the daemon: its amounts, and the fee line through
/// two quotes (fixed part and proportional part), with the larger quote's prepay.
pub async fn live_terms(target: &super::client::Target) -> Result<Terms, CliError> {
    let mut client = target.connect().await?;
    let t = client
        .terms(crate::proto::sluice::TermsRequest {})
        .await
        .map_err(|s| target.call_error(s, "read the swap terms for --live-terms"))?
        .into_inner();
    let clamp = |a: u64| a.clamp(t.min_amount_sat, t.max_amount_sat.max(t.min_amount_sat));
    let (a1, a2) = (clamp(LIVE_QUOTE_AMOUNTS.0), clamp(LIVE_QUOTE_AMOUNTS.1));
    let quote = |amount_sat: u64| {
        let mut client = client.clone();
        async move {
            client
                .quote(crate::proto::sluice::QuoteRequest {
                    amount_sat,
                    conf_target: 0,
                })
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let q1 = quote(a1)
        .await
        .map_err(|s| target.call_error(s, "quote the live server for --live-terms"))?;
    let q2 = quote(a2)
        .await
        .map_err(|s| target.call_error(s, "quote the live server for --live-terms"))?;
    let rate = if a2 > a1 {
        q2.swap_fee_sat.saturating_sub(q1.swap_fee_sat) * 1_000_000 / (a2 - a1)
    } else {
        0
    };
    let base = q1.swap_fee_sat.saturating_sub(a1 * rate / 1_000_000);
    let mut terms = model::default_terms();
    terms.min_swap_amount = Sat(t.min_amount_sat);
    terms.max_swap_amount = Sat(t.max_amount_sat);
    terms.fee_base = Sat(base);
    terms.fee_rate = Ppm(rate);
    terms.prepay = Sat(q2.prepay_amount_sat);
    Ok(terms)
}

/// Runs `sluice backtest`.
pub async fn run(
    args: &BacktestArgs,
    datadir: Option<&Path>,
    live: Option<Terms>,
    format: Format,
) -> Result<String, CliError> {
    let mut settings = settings(args)?;
    if let Some(terms) = live {
        settings.terms = terms;
    }
    let a = load_policy(&args.policy)?;
    let b = match &args.against {
        Some(p) => Some(load_policy(p)?),
        None => None,
    };
    let (history, notes) = if args.from_node {
        from_node(args, datadir).await?
    } else {
        (history(args)?, String::new())
    };
    let fees = if args.fees_from_node {
        recorded_fees(datadir, &history).await?
    } else {
        fees(args, &history, settings.seed)?
    };
    // Everything is read and checked: only now is anything written.
    if let Some(path) = &args.export_trace {
        std::fs::write(path, input::write_trace(&history)).map_err(|e| {
            CliError::Input(format!("cannot write the trace to {}: {e}", path.display()))
        })?;
    }
    let progress = format == Format::Human && std::io::stderr().is_terminal();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let work = tokio::task::spawn_blocking(move || {
        let runs = 1 + usize::from(b.is_some());
        let mut results = Vec::new();
        for (k, (name, p)) in std::iter::once(a).chain(b).enumerate() {
            let mut last = -1i64;
            let mut tick = |share: f64| {
                if progress {
                    let pct = ((k as f64 + share) / runs as f64 * 100.0) as i64;
                    if pct != last {
                        last = pct;
                        let _ = write!(std::io::stderr(), "\rbacktest {pct:>3}%");
                    }
                }
                !flag.load(Ordering::Relaxed)
            };
            let o = backtest::run(&p, &history, &fees, &settings, &mut tick)
                .map_err(|e| CliError::Input(format!("{name}: {e}")))?;
            results.push((name, o));
            if flag.load(Ordering::Relaxed) {
                break;
            }
        }
        if progress {
            let _ = write!(std::io::stderr(), "\r             \r");
        }
        Ok::<_, CliError>(results)
    });
    tokio::pin!(work);
    let results = loop {
        tokio::select! {
            r = &mut work => break r.map_err(|e| CliError::Input(format!("the backtest stopped: {e}")))??,
            _ = tokio::signal::ctrl_c() => stop.store(true, Ordering::Relaxed),
        }
    };
    if stop.load(Ordering::Relaxed) {
        let partial = results
            .iter()
            .map(|(n, o)| report::summary(n, o))
            .collect::<String>();
        return Err(CliError::Rejected(format!(
            "{partial}interrupted: the backtest stopped at Ctrl-C"
        )));
    }
    if let Some(dir) = &args.report {
        write_report(dir, &results)?;
    }
    let out = render(&results, format)?;
    if format == Format::Human && !notes.is_empty() {
        return Ok(format!("{notes}{out}"));
    }
    Ok(out)
}

/// How many payments, invoices or forwards one call to lnd reads.
const NODE_PAGE: u32 = 1_000;

/// The node's history over the last `--days`, rebuilt from lnd's records; and, for a person,
/// what the rebuild could not see. Reads only.
async fn from_node(
    args: &BacktestArgs,
    datadir: Option<&Path>,
) -> Result<(History, String), CliError> {
    use crate::config::{Config, DaemonArgs};
    use crate::lnd::LightningNode;

    let daemon = DaemonArgs {
        config: args.config.clone(),
        datadir: datadir.map(Path::to_path_buf),
        ..DaemonArgs::default()
    };
    let config = Config::load(&daemon).map_err(|e| {
        CliError::Input(format!(
            "--from-node reads sluiced's configuration to reach lnd: {e}"
        ))
    })?;
    if config.simnet {
        return Err(CliError::Input(
            "--from-node: sluiced's configuration runs the embedded simnet, which keeps no history \
             between runs; point --config at a configuration with an lnd section (or run \
             `sluice simnet serve` and use the sluice.yaml it writes)"
                .to_owned(),
        ));
    }
    let node = crate::lnd::connect::open(&config.lnd, config.network)
        .map_err(|e| CliError::Input(format!("--from-node: {e}")))?;
    let lnd = |e: crate::lnd::NodeError| {
        CliError::Input(format!(
            "--from-node: lnd at {} answered: {e}",
            config.lnd.host
        ))
    };
    let now = Utc::now();
    let days = args.days.unwrap_or(30).max(1);
    let start = now - TimeDelta::days(i64::from(days));
    let start_unix = u64::try_from(start.timestamp()).unwrap_or(0);

    let channels = node.list_channels().await.map_err(lnd)?;
    let mut forwards = Vec::new();
    let mut offset = 0;
    loop {
        let page = node
            .forwarding_history(start_unix, 0, offset, NODE_PAGE)
            .await
            .map_err(lnd)?;
        let n = page.events.len();
        forwards.extend(page.events);
        if n < NODE_PAGE as usize || page.next_index_offset == offset {
            break;
        }
        offset = page.next_index_offset;
    }
    let mut payments = Vec::new();
    let mut receipts = Vec::new();
    for (list, invoices) in [(&mut payments, false), (&mut receipts, true)] {
        let mut offset = 0;
        loop {
            let page = if invoices {
                node.invoice_settlements(offset, u64::from(NODE_PAGE)).await
            } else {
                node.payment_settlements(offset, u64::from(NODE_PAGE)).await
            }
            .map_err(lnd)?;
            list.extend(page.htlcs);
            if page.items < u64::from(NODE_PAGE) || page.next_index_offset <= offset {
                break;
            }
            offset = page.next_index_offset;
        }
    }
    let records = backtest::rebuild::NodeRecords {
        now,
        channels,
        forwards,
        payments,
        receipts,
    };
    let rebuilt = backtest::rebuild::rebuild(&records, start);
    let mut notes = format!(
        "rebuilt from lnd at {}: {} channels, {} forwards, {} payment and {} invoice HTLCs\n",
        config.lnd.host,
        rebuilt.history.channels.len(),
        records.forwards.len(),
        records.payments.len(),
        records.receipts.len()
    );
    if rebuilt.on_closed_channels > 0 {
        notes.push_str(&format!(
            "  {} movements were on channels closed since (left out; docs/backtest.md)\n",
            rebuilt.on_closed_channels
        ));
    }
    if !rebuilt.clamped.is_empty() {
        let ids: Vec<String> = rebuilt.clamped.iter().map(ToString::to_string).collect();
        notes.push_str(&format!(
            "  starting balance clamped (opened in the window, or moved by what lnd does not list): {}\n",
            ids.join(", ")
        ));
    }
    Ok((rebuilt.history, notes))
}

fn write_report(dir: &Path, results: &[(String, Outcome)]) -> Result<(), CliError> {
    let fail =
        |e: String| CliError::Input(format!("cannot write the report in {}: {e}", dir.display()));
    let plots = backtest::plot::all(results).map_err(fail)?;
    let summary = render(results, Format::Human)?;
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    for (name, svg) in &plots {
        std::fs::write(dir.join(name), svg).map_err(|e| fail(e.to_string()))?;
    }
    std::fs::write(
        dir.join("index.html"),
        backtest::plot::html(&summary, &plots),
    )
    .map_err(|e| fail(e.to_string()))?;
    Ok(())
}

fn render(results: &[(String, Outcome)], format: Format) -> Result<String, CliError> {
    match (results, format) {
        ([(n, o)], Format::Human) => Ok(report::summary(n, o)),
        ([(n, o)], _) => Ok(format!(
            "{}\n",
            serde_json::to_string(&serde_json::json!({ "policy": n, "outcome": o }))?
        )),
        ([(an, a), (bn, b)], Format::Human) => Ok(format!(
            "{}\n{}\n{}",
            report::compare(an, a, bn, b),
            report::summary(an, a),
            report::summary(bn, b)
        )),
        ([(an, a), (bn, b)], _) => Ok(format!(
            "{}\n",
            serde_json::to_string(&serde_json::json!({
                "a": { "policy": an, "outcome": a },
                "b": { "policy": bn, "outcome": b },
                "cost_ratio": ratio(a.fees_total_sat as f64, b.fees_total_sat as f64),
                "below_band_ratio": ratio(a.below_band_hours, b.below_band_hours),
                "below_reference_ratio": ratio(a.below_reference_hours, b.below_reference_hours),
            }))?
        )),
        _ => Err(CliError::Input("internal: no backtest result".to_owned())),
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| a / b)
}

fn settings(args: &BacktestArgs) -> Result<Settings, CliError> {
    if !(0.0..=1.0).contains(&args.failure_rate) {
        return Err(CliError::Input(format!(
            "--failure-rate {} is not a share: give a number from 0 to 1",
            args.failure_rate
        )));
    }
    if args.interval == 0 {
        return Err(CliError::Input(
            "--interval 0: give the minutes between passes, at least 1".to_owned(),
        ));
    }
    let mut terms = model::default_terms();
    terms.fee_rate = Ppm(args.server_fee_ppm);
    terms.fee_base = Sat(args.server_fee_base);
    Ok(Settings {
        interval: TimeDelta::minutes(i64::from(args.interval)),
        swap_delay: TimeDelta::minutes(i64::from(args.swap_delay)),
        failure_rate: args.failure_rate,
        seed: args.seed,
        terms,
        routing_ppm: Ppm(args.routing_ppm),
        reference_inbound: Ppm(args.reference_inbound.min(100) * 10_000),
        ..Settings::default()
    })
}

fn load_policy(path: &Path) -> Result<(String, Policy), CliError> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let p = policy::load(path).map_err(|e| {
        CliError::Input(format!(
            "{e}\n(the policy {} is checked as `sluice policy check` does)",
            path.display()
        ))
    })?;
    Ok((name, p))
}

fn history(args: &BacktestArgs) -> Result<History, CliError> {
    match (&args.trace, args.synthetic) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::Input(format!("cannot read the trace {}: {e}", path.display()))
            })?;
            let h = input::parse_trace(&path.display().to_string(), &text)
                .map_err(|e| CliError::Input(e.to_string()))?;
            match args.days {
                None => Ok(h),
                Some(d) => {
                    let start = h.end - TimeDelta::days(i64::from(d));
                    input::coverage(
                        &format!("the trace {}", path.display()),
                        (h.start, h.end),
                        (start, h.end),
                    )
                    .map_err(CliError::Input)?;
                    Ok(clip(h, start))
                }
            }
        }
        (None, true) => {
            if args.channels < 2 {
                return Err(CliError::Input(
                    "--channels: a routing node needs at least 2 channels".to_owned(),
                ));
            }
            let end: DateTime<Utc> = DateTime::parse_from_rfc3339(&args.end)
                .map_err(|e| {
                    CliError::Input(format!(
                        "--end {}: {e}; give an RFC 3339 time like 2026-03-01T00:00:00Z",
                        args.end
                    ))
                })?
                .with_timezone(&Utc);
            Ok(model::synthetic(
                args.channels,
                args.days.unwrap_or(30).max(1),
                args.seed,
                end,
            ))
        }
        (None, false) => Err(CliError::Input(
            "give the history: --trace FILE, --synthetic or --from-node".to_owned(),
        )),
    }
}

/// The history from `start`: what happened before it folded into the starting balances.
fn clip(mut h: History, start: DateTime<Utc>) -> History {
    let cut = h.events.partition_point(|e| e.at < start);
    for e in h.events.drain(..cut) {
        let mut set = |id, f: &dyn Fn(Sat, Sat) -> Sat| {
            if let Some(c) = h.channels.iter_mut().find(|c| c.id == id) {
                c.local = f(c.local, c.capacity).min(c.capacity);
            }
        };
        match e.kind {
            backtest::EventKind::Forward {
                chan_in,
                chan_out,
                amount,
                fee,
            } => {
                set(chan_out, &|l, _| l.saturating_sub(amount));
                set(chan_in, &|l, _| l + amount + fee);
            }
            backtest::EventKind::Payment { chan, amount } => {
                set(chan, &|l, _| l.saturating_sub(amount));
            }
            backtest::EventKind::Receipt { chan, amount } => set(chan, &|l, _| l + amount),
            backtest::EventKind::Balance { chan, local } => set(chan, &|_, _| local),
        }
    }
    h.start = start;
    h
}

/// The fee samples sluiced recorded in its store, as a fee series covering the history.
async fn recorded_fees(datadir: Option<&Path>, h: &History) -> Result<FeeSeries, CliError> {
    let dir = match datadir {
        Some(d) => d.to_path_buf(),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".sluice"))
            .ok_or_else(|| {
                CliError::Input("--fees-from-node: no HOME; give --datadir".to_owned())
            })?,
    };
    let db = dir.join("sluice.db");
    if !db.exists() {
        return Err(CliError::Input(format!(
            "--fees-from-node: no sluiced store at {}; give the daemon's --datadir",
            db.display()
        )));
    }
    let store = crate::store::Store::open(&db)
        .await
        .map_err(|e| CliError::Input(format!("--fees-from-node: {e}")))?;
    let samples = crate::autoloop::recorded_fee_samples(&store)
        .await
        .map_err(|e| CliError::Input(format!("--fees-from-node: {e}")))?;
    let mut series = FeeSeries::default();
    for s in &samples {
        series
            .by_target
            .entry(s.conf_target)
            .or_default()
            .push((s.at, s.rate));
    }
    let Some((first, last)) = series.span() else {
        return Err(CliError::Input(format!(
            "--fees-from-node: the daemon at {} recorded no fee samples (it samples only for a \
             policy with a fee gate); give --fees FILE or leave both out for the seeded model",
            dir.display()
        )));
    };
    input::coverage(
        &format!("the fee samples recorded in {}", db.display()),
        (first, last + TimeDelta::days(1)),
        (h.start, h.end),
    )
    .map_err(CliError::Input)?;
    Ok(series)
}

fn fees(args: &BacktestArgs, h: &History, seed: u64) -> Result<FeeSeries, CliError> {
    let Some(path) = &args.fees else {
        return Ok(model::fee_market(h.start, h.end, seed));
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Input(format!("cannot read the fee file {}: {e}", path.display()))
    })?;
    let series = input::parse_fees(&path.display().to_string(), &text)
        .map_err(|e| CliError::Input(e.to_string()))?;
    if let Some((first, last)) = series.span() {
        // A sample holds until the next one; the last one holds for a day.
        input::coverage(
            &format!("the fee file {}", path.display()),
            (first, last + TimeDelta::days(1)),
            (h.start, h.end),
        )
        .map_err(CliError::Input)?;
    }
    Ok(series)
}
