//! A corpus of malformed policy files, each rejected with a located error.
//!
//! Every file in `tests/policy_corpus/` starts with a comment line
//! `# expect: LINE:COLUMN KEY | TEXT` (`//` for rhai): the error must point into that file
//! at that line and column, name that dotted key (`-` for none) and contain TEXT. YAML files
//! are loaded as policies; a rhai file is referenced from a minimal policy written to a
//! temporary directory, and its error must point into the script.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use sluice::policy::{self, Clock, PolicyError, ScriptHost, ScriptLimits};

/// A clock that never moves: runaway scripts are stopped by the counted limits, so the
/// expected message does not depend on the machine's speed.
struct Frozen;

impl Clock for Frozen {
    fn elapsed(&self) -> Duration {
        Duration::ZERO
    }
}

fn load(path: &Path) -> Result<policy::Policy, PolicyError> {
    policy::load_with(
        path,
        &ScriptHost::with(ScriptLimits::default(), Arc::new(Frozen)),
    )
}

struct Expect {
    line: u64,
    column: u64,
    key: String,
    text: String,
}

fn expectation(path: &Path, source: &str) -> Expect {
    let first = source.lines().next().unwrap_or_default();
    let spec = first
        .trim_start_matches('#')
        .trim_start_matches("//")
        .trim()
        .strip_prefix("expect:")
        .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()))
        .trim();
    let (place_key, text) = spec.split_once('|').unwrap_or((spec, ""));
    let mut parts = place_key.split_whitespace();
    let place = parts.next().unwrap_or_default();
    let key = parts.next().unwrap_or("-");
    let (line, column) = place.split_once(':').unwrap_or(("0", "0"));
    Expect {
        line: line.parse().unwrap(),
        column: column.parse().unwrap(),
        key: if key == "-" {
            String::new()
        } else {
            key.to_owned()
        },
        text: text.trim().to_owned(),
    }
}

fn load_error(path: &Path) -> Result<PolicyError, String> {
    if path.extension().is_some_and(|e| e == "rhai") {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.yaml");
        std::fs::write(
            &file,
            format!(
                "defaults: {{ band: {{ inbound_min: 30% }} }}\nrules:\n  - {{ name: r, match: all, script: \"{}\" }}\n",
                path.display()
            ),
        )
        .unwrap();
        return match load(&file) {
            Ok(_) => Err("the script was accepted".to_owned()),
            Err(e) => Ok(e),
        };
    }
    match load(path) {
        Ok(_) => Err("the file was accepted".to_owned()),
        Err(e) => Ok(e),
    }
}

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policy_corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "rhai"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_malformed_file_gets_a_located_error() {
    let files = corpus();
    assert!(files.len() >= 30, "only {} corpus files", files.len());
    let mut problems = Vec::new();
    for path in &files {
        let source = std::fs::read_to_string(path).unwrap();
        let want = expectation(path, &source);
        let err = match load_error(path) {
            Ok(e) => e,
            Err(why) => {
                problems.push(format!("{}: {why}", path.display()));
                continue;
            }
        };
        let shown = err.to_string();
        let ok = err.file == *path
            && err.line == want.line
            && err.column == want.column
            && err.key == want.key
            && shown.contains(&want.text)
            && !err.expected.is_empty();
        if !ok {
            problems.push(format!(
                "{}\n    want {}:{} {} | {}\n    got  {}:{} {} | {shown}",
                path.display(),
                want.line,
                want.column,
                if want.key.is_empty() { "-" } else { &want.key },
                want.text,
                err.line,
                err.column,
                if err.key.is_empty() { "-" } else { &err.key },
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn errors_read_file_line_column_key() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policy_corpus/unknown-key-typo.yaml");
    let shown = load_error(&path).unwrap().to_string();
    let expected = format!(
        "{}:6:7: defaults.fees.sweep_gate.percentil: unknown key (did you mean percentile?)",
        path.display()
    );
    assert!(shown.starts_with(&expected), "{shown}");
}
