//! Every example policy in `policies/` loads and passes its own test cases, and the checked-in
//! JSON Schema matches the key table the loader uses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use sluice::policy::{self, keys};

fn examples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_example_passes_its_tests() {
    let dirs = examples();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in [
        "loop-autoloop-equivalent",
        "set-and-forget",
        "night-owl",
        "earnings-aware",
        "per-peer-bands",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "missing example {required}"
        );
    }
    let mut failures = Vec::new();
    for dir in &dirs {
        match policy::run_tests(dir) {
            Err(e) => failures.push(e.to_string()),
            Ok(report) => {
                assert!(
                    !report.cases.is_empty(),
                    "{} has no test cases",
                    dir.display()
                );
                failures.extend(report.failures().map(str::to_owned));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn schema_json_is_in_sync_with_the_key_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/schema.json");
    let generated = keys::json_schema();
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "policies/schema.json is stale; regenerate with SLUICE_BLESS=1 cargo test --test policy_examples"
    );
}

/// `policies/reference.yaml` sets every key of the table at least once and loads; since the
/// loader reports any table key it does not read, this proves loader and table (and so the
/// schema) accept exactly the same keys.
#[test]
fn reference_file_uses_every_key_and_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/reference.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let tree = policy::load::parse_checked(&path, &text).unwrap();
    // Rules share the settings table with `defaults` and `exclude` shares the selector table
    // with `match`, so one use of each shared key covers both places.
    let shared = |k: &String| {
        let k = k.replacen("rules[].exclude", "rules[].match", 1);
        for s in ["band", "swap", "fees", "schedule", "backoff", "script"] {
            if let Some(rest) = k.strip_prefix(&format!("rules[].{s}")) {
                return format!("defaults.{s}{rest}");
            }
        }
        k
    };
    let mut used: Vec<String> = keys::used_paths(&tree).iter().map(shared).collect();
    used.sort();
    used.dedup();
    let mut all: Vec<String> = keys::key_paths().iter().map(shared).collect();
    all.sort();
    all.dedup();
    let missing: Vec<&String> = all.iter().filter(|k| !used.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "reference.yaml does not set: {missing:?}"
    );
    policy::load(&path).unwrap();
}

/// The runner reports a wrong expectation with its file, line, target and both reasons.
#[test]
fn a_wrong_expectation_fails_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/set-and-forget/policy.yaml");
    std::fs::copy(&src, dir.path().join("policy.yaml")).unwrap();
    std::fs::write(
        dir.path().join("wrong.test.yaml"),
        "now: 2026-03-01 02:30\nfees: { estimates: { 100: 8 sat/vB } }\nbudget: { left: 100k }\n\
         channels:\n  - { id: 800001x1x0, capacity: 5M, local: 4.5M }\n\
         expect:\n  - { target: 800001x1x0, reason: ok }\n  - { target: 800001x1x0, reason: swap, amount: 1M }\n",
    )
    .unwrap();
    let report = policy::run_tests(dir.path()).unwrap();
    assert!(!report.passed());
    let failures: Vec<&str> = report.failures().collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures[0].contains("wrong.test.yaml:7: 800001x1x0: expected ok, got swap"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].contains("expected amount 1000000, got 2000000"),
        "{}",
        failures[1]
    );
}

#[test]
fn readme_key_reference_is_in_sync_with_the_key_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- keys:begin -->\n", "<!-- keys:end -->");
    let a = text.find(begin).expect("begin marker") + begin.len();
    let b = text.find(end).expect("end marker");
    let generated = keys::markdown_reference();
    if std::env::var_os("SLUICE_BLESS").is_some() {
        let updated = format!("{}{generated}{}", &text[..a], &text[b..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        text[a..b] == generated,
        "policies/README.md key reference is stale; regenerate with SLUICE_BLESS=1 cargo test --test policy_examples"
    );
}

/// A case without `budget:` starts from the policy's own budgets, and admission checks the
/// swap's worst case (every fee at its limit, the prepay in place of the server fee) as the
/// ledger does live: set-and-forget's calm night with a 20k daily hard cap refuses the 2M
/// swap whose worst case is about 40k, and a case's own `budget:` still overrides.
#[test]
fn a_case_without_a_budget_uses_the_policys_and_admits_on_the_worst_case() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/set-and-forget");
    let policy = std::fs::read_to_string(root.join("policy.yaml")).unwrap();
    assert!(policy.contains("limit: 50k }"));
    std::fs::write(
        dir.path().join("policy.yaml"),
        policy.replace("limit: 50k }", "limit: 20k }"),
    )
    .unwrap();
    let case = "now: 2026-03-01 02:30\nfees: { estimates: { 100: 8 sat/vB } }\n\
         channels:\n  - { id: 800001x1x0, capacity: 5M, local: 4.5M }\n";
    std::fs::write(
        dir.path().join("a.test.yaml"),
        format!(
            "{case}expect:\n  - {{ target: 800001x1x0, reason: budget_insufficient, text_contains: \"worst case\" }}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.test.yaml"),
        format!(
            "{case}budget: {{ left: 100k }}\nexpect:\n  - {{ target: 800001x1x0, reason: swap }}\n"
        ),
    )
    .unwrap();
    let report = policy::run_tests(dir.path()).unwrap();
    let failures: Vec<&str> = report.failures().collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(report.cases.len(), 2);
}
