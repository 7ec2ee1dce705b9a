//! The policy test runner behind `sluice policy test <dir>`: loads the policy, evaluates
//! every `*.test.yaml` case beside it and compares the decisions with the expectations.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::admission::fresh_budget;
use super::error::PolicyError;
use super::eval::evaluate;
use super::load::load_with;
use super::script::ScriptHost;
use super::testcase::parse_test_case;

/// The outcome of one test case file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The test file.
    pub file: PathBuf,
    /// Its description.
    pub description: String,
    /// How many expectations it checked.
    pub checked: usize,
    /// What did not match, one line each (`file:line: target: expected …, got …`).
    pub failures: Vec<String>,
}

/// The outcome of all cases of a policy directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestReport {
    /// One entry per test file, in name order.
    pub cases: Vec<CaseResult>,
}

impl TestReport {
    /// Whether every expectation held (and there was at least one case).
    pub fn passed(&self) -> bool {
        !self.cases.is_empty() && self.cases.iter().all(|c| c.failures.is_empty())
    }

    /// Every failure line.
    pub fn failures(&self) -> impl Iterator<Item = &str> {
        self.cases
            .iter()
            .flat_map(|c| c.failures.iter().map(String::as_str))
    }
}

/// Runs the test cases of the policy directory `dir` with the default sandbox.
pub fn run_tests(dir: &Path) -> Result<TestReport, PolicyError> {
    run_tests_with(dir, &ScriptHost::new())
}

/// Runs the test cases of `dir` with scripts on `host`. A policy that does not load, or a
/// test file that does not parse, is an error; mismatches are in the report.
pub fn run_tests_with(dir: &Path, host: &Arc<ScriptHost>) -> Result<TestReport, PolicyError> {
    let policy = load_with(dir, host)?;
    let entries = std::fs::read_dir(dir).map_err(|e| {
        PolicyError::file(
            dir,
            format!("cannot read directory: {e}"),
            "a policy directory",
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
        })
        .collect();
    files.sort();
    let mut report = TestReport::default();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| {
            PolicyError::file(&file, format!("cannot read: {e}"), "a readable test file")
        })?;
        let mut case = parse_test_case(&file, &text)?;
        if !case.budget_given {
            case.snapshot.budget = fresh_budget(&policy);
        }
        let plan = evaluate(&policy, &case.snapshot);
        let mut failures = Vec::new();
        for e in &case.expect {
            let at = format!("{}:{}: {}", file.display(), e.line, e.target);
            let Some(d) = plan.decision(&e.target) else {
                failures.push(format!("{at}: no decision for this target"));
                continue;
            };
            if d.reason.name() != e.reason {
                failures.push(format!(
                    "{at}: expected {}, got {} ({})",
                    e.reason, d.reason, d.detail
                ));
                continue;
            }
            if let Some(amount) = e.amount {
                let got = d.proposal.as_ref().map(|p| p.amount);
                if got != Some(amount) {
                    failures.push(format!(
                        "{at}: expected amount {}, got {}",
                        amount.0,
                        got.map_or_else(|| "none".to_owned(), |a| a.0.to_string())
                    ));
                }
            }
            if let Some(direction) = e.direction {
                let got = d.proposal.as_ref().map(|p| p.direction);
                if got != Some(direction) {
                    failures.push(format!(
                        "{at}: expected a {}, got {}",
                        direction.swap_name(),
                        got.map_or("no swap", |g| g.swap_name())
                    ));
                }
            }
            if let Some(rule) = &e.rule
                && d.rule.as_ref() != Some(rule)
            {
                failures.push(format!("{at}: expected rule {rule}, got {:?}", d.rule));
            }
            if let Some(t) = &e.text_contains {
                let hay = format!("{} {}", d.reason, d.detail);
                if !hay.contains(t.as_str()) {
                    failures.push(format!("{at}: `{t}` not in `{hay}`"));
                }
            }
        }
        report.cases.push(CaseResult {
            file,
            description: case.description,
            checked: case.expect.len(),
            failures,
        });
    }
    Ok(report)
}

fn is_test_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
}

/// The policy directories at or below `dir` that hold test cases, in name order: `dir` itself
/// when it holds `*.test.yaml` files, else every directory below it that does (so
/// `sluice policy test policies/` runs every example).
pub fn test_dirs(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let read = |d: &Path| {
        std::fs::read_dir(d).map_err(|e| {
            PolicyError::file(
                d,
                format!("cannot read directory: {e}"),
                "a policy directory",
            )
        })
    };
    let mut entries: Vec<PathBuf> = read(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    if entries.iter().any(|p| p.is_file() && is_test_file(p)) {
        return Ok(vec![dir.to_owned()]);
    }
    let mut out = Vec::new();
    for sub in entries.iter().filter(|p| p.is_dir()) {
        out.extend(test_dirs(sub)?);
    }
    Ok(out)
}

/// Runs the test cases of every policy directory at or below `dir` ([`test_dirs`]). No test
/// case anywhere below it is an error saying so.
pub fn run_tests_below(dir: &Path) -> Result<Vec<(PathBuf, TestReport)>, PolicyError> {
    if !dir.is_dir() {
        return Err(PolicyError::file(
            dir,
            "not a directory",
            "a policy directory holding *.test.yaml files beside its policy, or a folder of them",
        ));
    }
    let dirs = test_dirs(dir)?;
    if dirs.is_empty() {
        return Err(PolicyError::file(
            dir,
            "no policy test cases here or below",
            "a policy directory with *.test.yaml files beside its *.yaml (see policies/README.md, Test cases)",
        ));
    }
    let host = ScriptHost::new();
    dirs.into_iter()
        .map(|d| run_tests_with(&d, &host).map(|r| (d, r)))
        .collect()
}
