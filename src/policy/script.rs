//! The rhai sandbox: one engine with hard limits, scripts compiled once, `decide` called per
//! target with read-only views.
//!
//! A script defines `fn decide(target, proposal, ctx)` and returns the proposal (its
//! `amount_sat` may be changed) or `veto("reason")`. It may also define
//! `fn propose(target, ctx)`, called for targets inside their band, returning `()` or an
//! amount to swap. Limits (dependencies.md §3): operations, call depth, expression depth,
//! string, array and map sizes, no modules, no `eval`, no `print`/`debug` output, and a
//! wall-clock cut-off read from an injectable [`Clock`]. Any error or limit hit becomes that
//! target's `script_error` decision; it never reaches the daemon.

use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{AST, CallFnOptions, Dynamic, Engine, EvalAltResult, Position, Scope};

use super::error::PolicyError;

/// A monotonic clock, injectable so tests can run the wall-clock cut-off without waiting.
pub trait Clock: Send + Sync {
    /// Time elapsed since an arbitrary fixed origin.
    fn elapsed(&self) -> Duration;
}

/// The process's monotonic clock.
#[derive(Debug)]
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> MonotonicClock {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The sandbox limits of every script call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptLimits {
    /// Operations per call (a `loop {}` hits this).
    pub max_operations: u64,
    /// Function call depth (runaway recursion hits this).
    pub max_call_levels: usize,
    /// Longest string, in bytes.
    pub max_string_size: usize,
    /// Largest array.
    pub max_array_size: usize,
    /// Largest object map.
    pub max_map_size: usize,
    /// Wall-clock time per call.
    pub wall_clock: Duration,
}

impl Default for ScriptLimits {
    fn default() -> ScriptLimits {
        ScriptLimits {
            max_operations: 200_000,
            max_call_levels: 32,
            max_string_size: 4_096,
            max_array_size: 1_024,
            max_map_size: 256,
            wall_clock: Duration::from_millis(50),
        }
    }
}

/// The engine every script of a policy runs on, with its limits and clock.
pub struct ScriptHost {
    engine: Engine,
    clock: Arc<dyn Clock>,
    limits: ScriptLimits,
}

impl fmt::Debug for ScriptHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptHost")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// The wall-clock deadline of the script call running on this thread, in nanoseconds of
    /// the host's clock. Calls do not nest and run on the caller's thread, so a per-thread
    /// deadline lets several threads evaluate the same policy without sharing a cut-off.
    static DEADLINE_NS: Cell<u64> = const { Cell::new(u64::MAX) };
}

/// How often (in operations) the wall clock is read.
const CLOCK_EVERY_OPS: u64 = 256;

impl ScriptHost {
    /// A host with the default limits and the process clock.
    pub fn new() -> Arc<ScriptHost> {
        ScriptHost::with(ScriptLimits::default(), Arc::new(MonotonicClock::default()))
    }

    /// A host with these limits and this clock.
    pub fn with(limits: ScriptLimits, clock: Arc<dyn Clock>) -> Arc<ScriptHost> {
        let mut engine = Engine::new();
        engine.set_max_operations(limits.max_operations);
        engine.set_max_call_levels(limits.max_call_levels);
        engine.set_max_expr_depths(64, 32);
        engine.set_max_string_size(limits.max_string_size);
        engine.set_max_array_size(limits.max_array_size);
        engine.set_max_map_size(limits.max_map_size);
        engine.set_max_modules(0);
        for symbol in ["eval", "import", "export", "print", "debug"] {
            engine.disable_symbol(symbol);
        }
        engine.on_print(|_| {});
        engine.on_debug(|_, _, _| {});
        let c = Arc::clone(&clock);
        engine.on_progress(move |ops| {
            if ops % CLOCK_EVERY_OPS != 0 {
                return None;
            }
            let now = u64::try_from(c.elapsed().as_nanos()).unwrap_or(u64::MAX);
            (now > DEADLINE_NS.get()).then(|| Dynamic::from("wall-clock limit"))
        });
        register_api(&mut engine);
        Arc::new(ScriptHost {
            engine,
            clock,
            limits,
        })
    }

    fn arm(&self) {
        let deadline = self.clock.elapsed().saturating_add(self.limits.wall_clock);
        let ns = u64::try_from(deadline.as_nanos()).unwrap_or(u64::MAX);
        DEADLINE_NS.set(ns);
    }

    /// Compiles `text` (the contents of `path`) and runs its top level once under the
    /// sandbox, so syntax errors, forbidden features and runaway top-level code are reported
    /// at load with the script's line and column.
    pub fn compile(self: &Arc<Self>, path: &Path, text: &str) -> Result<Script, PolicyError> {
        let ast = self.engine.compile(text).map_err(|e| {
            let (line, column) = line_col(e.position());
            PolicyError::at(
                path,
                line,
                column,
                "",
                format!("script does not compile: {}", e.err_type()),
                "valid rhai (see policies/README.md)",
            )
        })?;
        let decide = ast.iter_functions().find(|f| f.name == "decide");
        match decide {
            Some(f) if f.params.len() == 3 => {}
            Some(f) => {
                return Err(PolicyError::at(
                    path,
                    1,
                    1,
                    "decide",
                    format!("`decide` takes {} parameters", f.params.len()),
                    "fn decide(target, proposal, ctx)",
                ));
            }
            None => {
                return Err(PolicyError::at(
                    path,
                    1,
                    1,
                    "decide",
                    "the script defines no `decide` function",
                    "fn decide(target, proposal, ctx) returning the proposal or veto(\"reason\")",
                ));
            }
        }
        let has_propose = ast
            .iter_functions()
            .any(|f| f.name == "propose" && f.params.len() == 2);
        self.arm();
        let mut scope = Scope::new();
        self.engine
            .run_ast_with_scope(&mut scope, &ast)
            .map_err(|e| {
                let (line, column) = line_col(e.position());
                PolicyError::at(
                    path,
                    line,
                    column,
                    "",
                    format!("script's top level fails: {}", strip_position(&e)),
                    "top-level code that finishes within the sandbox limits",
                )
            })?;
        Ok(Script {
            path: path.to_path_buf(),
            ast,
            host: Arc::clone(self),
            has_propose,
        })
    }
}

/// A compiled script, shared by every rule that names it.
pub struct Script {
    /// The script's file.
    pub path: PathBuf,
    ast: AST,
    host: Arc<ScriptHost>,
    has_propose: bool,
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("path", &self.path)
            .field("has_propose", &self.has_propose)
            .finish_non_exhaustive()
    }
}

/// What a script said about one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead with this amount (possibly changed by the script).
    Swap(u64),
    /// Do not swap, for this reason.
    Veto(String),
    /// Nothing to propose (`propose` returned `()`).
    Nothing,
    /// The script failed or hit a limit; the text says where and why.
    Error(String),
}

impl Script {
    /// Whether the script defines `propose(target, ctx)`.
    pub fn has_propose(&self) -> bool {
        self.has_propose
    }

    fn call(&self, name: &str, args: Vec<Dynamic>) -> Result<Dynamic, String> {
        self.host.arm();
        let mut scope = Scope::new();
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        self.host
            .engine
            .call_fn_with_options::<Dynamic>(options, &mut scope, &self.ast, name, args)
            .map_err(|e| {
                let (line, column) = line_col(e.position());
                format!(
                    "{}:{line}:{column}: {}",
                    self.path.display(),
                    strip_position(&e)
                )
            })
    }

    /// Calls `decide(target, proposal, ctx)`.
    pub fn decide(&self, target: &TargetView, proposal: &ProposalView, ctx: &CtxView) -> Verdict {
        let args = vec![
            Dynamic::from(target.clone()),
            Dynamic::from(proposal.clone()),
            Dynamic::from(ctx.clone()),
        ];
        match self.call("decide", args) {
            Err(e) => Verdict::Error(e),
            Ok(out) => {
                if let Some(p) = out.clone().try_cast::<ProposalView>() {
                    Verdict::Swap(p.amount_sat)
                } else if let Some(v) = out.clone().try_cast::<Veto>() {
                    Verdict::Veto(v.0)
                } else {
                    Verdict::Error(format!(
                        "{}: decide returned {}; expected the proposal or veto(\"reason\")",
                        self.path.display(),
                        out.type_name()
                    ))
                }
            }
        }
    }

    /// Calls `propose(target, ctx)` if the script defines it.
    pub fn propose(&self, target: &TargetView, ctx: &CtxView) -> Verdict {
        if !self.has_propose {
            return Verdict::Nothing;
        }
        let args = vec![Dynamic::from(target.clone()), Dynamic::from(ctx.clone())];
        match self.call("propose", args) {
            Err(e) => Verdict::Error(e),
            Ok(out) if out.is_unit() => Verdict::Nothing,
            Ok(out) => match out.as_int() {
                Ok(n) if n > 0 => Verdict::Swap(n.unsigned_abs()),
                Ok(_) => Verdict::Nothing,
                Err(t) => Verdict::Error(format!(
                    "{}: propose returned {t}; expected () or an amount in satoshis",
                    self.path.display()
                )),
            },
        }
    }
}

fn line_col(p: Position) -> (u64, u64) {
    (
        p.line().map_or(0, |l| l as u64),
        p.position().map_or(0, |c| c as u64),
    )
}

fn strip_position(e: &EvalAltResult) -> String {
    let mut text = e.to_string();
    if let Some(i) = text.rfind(" (line ") {
        text.truncate(i);
    }
    text
}

/// Routing activity over the last `days` days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowWindow {
    /// Length of the window in days.
    pub days: u32,
    /// Routing fees earned.
    pub fees_earned_sat: u64,
    /// Satoshis forwarded out through the target.
    pub out_sat: u64,
    /// Satoshis forwarded in through the target.
    pub in_sat: u64,
}

/// The figure of the flow window of exactly `days` days, or an error naming the windows
/// there are (the daemon's `autoloop.flow_windows`, a test case's `flows`): never another
/// window's number.
pub fn flow_over(
    flows: &[FlowWindow],
    days: u32,
    pick: impl Fn(&FlowWindow) -> u64,
) -> Result<u64, String> {
    if let Some(w) = flows.iter().find(|w| w.days == days) {
        return Ok(pick(w));
    }
    let mut have: Vec<u32> = flows.iter().map(|w| w.days).collect();
    have.sort_unstable();
    have.dedup();
    let list = have
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Err(if have.is_empty() {
        format!(
            "no {days}-day flow window: there are no flow windows (daemon: autoloop.flow_windows; test case: a channel's flows)"
        )
    } else {
        format!(
            "no {days}-day flow window; the windows are {list} days (daemon: autoloop.flow_windows; test case: a channel's flows)"
        )
    })
}

/// What a script sees of a target. Read-only.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetView {
    /// `800000x12x1`, `peer:<pubkey>` or `node`.
    pub id: String,
    /// `channel`, `peer` or `node`.
    pub kind: &'static str,
    /// The rule that took it.
    pub rule: String,
    /// Peer alias (empty for the node target).
    pub alias: String,
    /// Peer pubkey (empty for the node target).
    pub peer: String,
    /// Channels in the target.
    pub channels: i64,
    /// Total capacity.
    pub capacity_sat: i64,
    /// Local balance.
    pub local_sat: i64,
    /// Remote balance (inbound).
    pub remote_sat: i64,
    /// Inbound share in percent.
    pub inbound_pct: f64,
    /// Whether any channel is active.
    pub active: bool,
    /// Pending HTLCs over its channels.
    pub pending_htlcs: i64,
    /// Age of the youngest channel, in blocks.
    pub age_blocks: i64,
    /// Routing activity windows.
    pub flows: Vec<FlowWindow>,
}

/// What a script sees of the YAML's proposal; only `amount_sat` can be changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalView {
    /// `out` (Loop Out, below the band) or `in` (Loop In, above it).
    pub direction: &'static str,
    /// The amount to swap; the script may lower or raise it (the YAML bounds still apply).
    pub amount_sat: u64,
    /// Expected fees of the swap at this amount.
    pub expected_cost_sat: u64,
    /// Worst-case fees (the caps).
    pub max_cost_sat: u64,
    /// Sweep confirmation target.
    pub conf_target: i64,
}

/// What a script sees of the pass.
#[derive(Debug, Clone, PartialEq)]
pub struct CtxView {
    /// Unix time, seconds.
    pub now: i64,
    /// Hour of day in the schedule's zone.
    pub hour: i64,
    /// Day of week in the schedule's zone, 1 = Monday … 7 = Sunday.
    pub weekday: i64,
    /// Sweep fee estimate for the rule's confirmation target, sat/vB.
    pub fee_rate_sat_vb: f64,
    /// Budget left (the tightest applicable), or -1 when no budget is configured.
    pub budget_left_sat: i64,
    /// Swaps in flight, node-wide.
    pub in_flight: i64,
    /// Node-wide inbound share in percent.
    pub node_inbound_pct: f64,
}

/// A script's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veto(pub String);

fn sat_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn register_api(engine: &mut Engine) {
    engine.register_fn("veto", |reason: &str| Veto(reason.to_owned()));
    engine
        .register_type_with_name::<Veto>("Veto")
        .register_get("reason", |v: &mut Veto| v.0.clone());

    engine
        .register_type_with_name::<TargetView>("Target")
        .register_get("id", |t: &mut TargetView| t.id.clone())
        .register_get("kind", |t: &mut TargetView| t.kind.to_owned())
        .register_get("rule", |t: &mut TargetView| t.rule.clone())
        .register_get("alias", |t: &mut TargetView| t.alias.clone())
        .register_get("peer", |t: &mut TargetView| t.peer.clone())
        .register_get("channels", |t: &mut TargetView| t.channels)
        .register_get("capacity_sat", |t: &mut TargetView| t.capacity_sat)
        .register_get("local_sat", |t: &mut TargetView| t.local_sat)
        .register_get("remote_sat", |t: &mut TargetView| t.remote_sat)
        .register_get("inbound_pct", |t: &mut TargetView| t.inbound_pct)
        .register_get("active", |t: &mut TargetView| t.active)
        .register_get("pending_htlcs", |t: &mut TargetView| t.pending_htlcs)
        .register_get("age_blocks", |t: &mut TargetView| t.age_blocks)
        .register_fn(
            "fees_earned_sat",
            |t: &mut TargetView, days: i64| -> Result<i64, Box<rhai::EvalAltResult>> {
                let d = u32::try_from(days.max(0)).unwrap_or(u32::MAX);
                flow_over(&t.flows, d, |w| w.fees_earned_sat)
                    .map(sat_i64)
                    .map_err(|e| e.into())
            },
        )
        .register_fn(
            "forwarded_out_sat",
            |t: &mut TargetView, days: i64| -> Result<i64, Box<rhai::EvalAltResult>> {
                let d = u32::try_from(days.max(0)).unwrap_or(u32::MAX);
                flow_over(&t.flows, d, |w| w.out_sat)
                    .map(sat_i64)
                    .map_err(|e| e.into())
            },
        )
        .register_fn(
            "forwarded_in_sat",
            |t: &mut TargetView, days: i64| -> Result<i64, Box<rhai::EvalAltResult>> {
                let d = u32::try_from(days.max(0)).unwrap_or(u32::MAX);
                flow_over(&t.flows, d, |w| w.in_sat)
                    .map(sat_i64)
                    .map_err(|e| e.into())
            },
        );

    engine
        .register_type_with_name::<ProposalView>("Proposal")
        .register_get_set(
            "amount_sat",
            |p: &mut ProposalView| sat_i64(p.amount_sat),
            |p: &mut ProposalView, v: i64| p.amount_sat = u64::try_from(v).unwrap_or(0),
        )
        .register_get("expected_cost_sat", |p: &mut ProposalView| {
            sat_i64(p.expected_cost_sat)
        })
        .register_get("max_cost_sat", |p: &mut ProposalView| {
            sat_i64(p.max_cost_sat)
        })
        .register_get("conf_target", |p: &mut ProposalView| p.conf_target)
        .register_get("direction", |p: &mut ProposalView| p.direction.to_owned());

    engine
        .register_type_with_name::<CtxView>("Ctx")
        .register_get("now", |c: &mut CtxView| c.now)
        .register_get("hour", |c: &mut CtxView| c.hour)
        .register_get("weekday", |c: &mut CtxView| c.weekday)
        .register_get("fee_rate_sat_vb", |c: &mut CtxView| c.fee_rate_sat_vb)
        .register_get("budget_left_sat", |c: &mut CtxView| c.budget_left_sat)
        .register_get("in_flight", |c: &mut CtxView| c.in_flight)
        .register_get("node_inbound_pct", |c: &mut CtxView| c.node_inbound_pct);
}
