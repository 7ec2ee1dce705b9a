//! Draws a swap state machine from its pure `step` function, for Loop Out
//! (`super::diagram`) and Loop In (`super::loop_in::diagram`) alike: a breadth-first
//! exploration over a finite alphabet of inputs records every change of state and the rules
//! that caused it, and [`mermaid`] turns that into a `stateDiagram-v2`. Each direction supplies
//! its contract, alphabet and [`Machine`]. Pure.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt::Write as _;
use std::hash::Hash;

/// Upper bound on explored progress values; the alphabets keep the space far below it.
pub const MAX_EXPLORED: usize = 200_000;

/// A state as a diagram shows it.
pub trait DrawnState: Copy + Ord {
    /// Where every swap starts.
    const INITIAL: Self;
    /// Its stable name.
    fn as_str(self) -> &'static str;
    /// Its stable code.
    fn code(self) -> u16;
    /// Whether a swap ends there.
    fn is_terminal(self) -> bool;
}

/// A rule as a diagram labels an edge with it.
pub trait DrawnRule: Copy + Ord {
    /// Its short label.
    fn label(self) -> &'static str;
}

/// A swap state machine, as far as drawing it goes.
pub trait Machine {
    /// The validated contract `step` runs against.
    type Contract;
    /// Everything a swap has learned.
    type Progress: Clone + Eq + Hash;
    /// What `step` is fed.
    type Input: Clone;
    /// The state inside a progress.
    type State: DrawnState;
    /// What decided a transition.
    type Rule: DrawnRule;

    /// A new swap's progress.
    fn start() -> Self::Progress;
    /// The progress's state.
    fn state(progress: &Self::Progress) -> Self::State;
    /// One step: the next progress, the rule, and whether it acts; `None` when refused.
    fn step(
        contract: &Self::Contract,
        progress: &Self::Progress,
        input: Self::Input,
    ) -> Option<(Self::Progress, Self::Rule, bool)>;
    /// The progress with what the drawing does not depend on cleared, so the exploration
    /// stays finite.
    fn normalized(progress: &Self::Progress) -> Self::Progress;
    /// Whether a self-loop of this rule that acts is drawn.
    fn drawn_as_loop(rule: Self::Rule) -> bool;
}

/// One observed change of state (or a self-loop that acts), with the rules that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge<S, R> {
    /// Where the swap was.
    pub from: S,
    /// Where it went.
    pub to: S,
    /// Every rule observed producing this edge, in declaration order.
    pub rules: BTreeSet<R>,
}

/// What exploring a state machine found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exploration<S, R> {
    /// Every state reached.
    pub reached: BTreeSet<S>,
    /// The edges, ordered by (from, to).
    pub edges: Vec<Edge<S, R>>,
    /// How many distinct progress values were visited.
    pub visited: usize,
}

/// Each observed (from, to) pair and the rules that produced it.
type EdgeRules<S, R> = BTreeMap<(S, S), BTreeSet<R>>;

/// Runs `M::step` breadth-first from a new swap over `inputs` and collects the edges.
pub fn explore<M: Machine>(
    contract: &M::Contract,
    inputs: &[M::Input],
) -> Exploration<M::State, M::Rule> {
    let start = M::start();
    let mut seen: HashSet<M::Progress> = HashSet::from([M::normalized(&start)]);
    let mut queue = VecDeque::from([start]);
    let mut reached = BTreeSet::from([M::State::INITIAL]);
    let mut edges: EdgeRules<M::State, M::Rule> = BTreeMap::new();
    while let Some(progress) = queue.pop_front() {
        for input in inputs {
            let Some((next, rule, acts)) = M::step(contract, &progress, input.clone()) else {
                continue;
            };
            let (from, to) = (M::state(&progress), M::state(&next));
            reached.insert(to);
            if from != to || (acts && M::drawn_as_loop(rule)) {
                edges.entry((from, to)).or_default().insert(rule);
            }
            if seen.len() < MAX_EXPLORED && seen.insert(M::normalized(&next)) {
                queue.push_back(next);
            }
        }
    }
    Exploration {
        reached,
        edges: edges
            .into_iter()
            .map(|((from, to), rules)| Edge { from, to, rules })
            .collect(),
        visited: seen.len(),
    }
}

/// The mermaid `stateDiagram-v2` for an exploration.
pub fn mermaid<S: DrawnState, R: DrawnRule>(exploration: &Exploration<S, R>) -> String {
    let mut out = String::from("stateDiagram-v2\n");
    let _ = writeln!(out, "    [*] --> {}", S::INITIAL.as_str());
    for state in &exploration.reached {
        let _ = writeln!(out, "    {}: code {}", state.as_str(), state.code());
    }
    for edge in &exploration.edges {
        let label: Vec<&str> = edge.rules.iter().map(|r| r.label()).collect();
        let _ = writeln!(
            out,
            "    {} --> {}: {}",
            edge.from.as_str(),
            edge.to.as_str(),
            label.join(" / ")
        );
    }
    for state in exploration.reached.iter().filter(|s| s.is_terminal()) {
        let _ = writeln!(out, "    {} --> [*]", state.as_str());
    }
    out
}
