//! Architecture invariants checked by scanning the source: the pure modules do no I/O.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

/// Modules that must stay free of async runtimes, RPC and databases (design.md, "Invariants").
const PURE: &[&str] = &[
    "src/domain",
    "src/chain",
    "src/policy",
    "src/ledger",
    "src/swap/state",
    "src/swap/step",
    "src/swap/loop_in",
];

/// Crates a pure module must not name.
const FORBIDDEN: &[&str] = &["tokio", "tonic", "sqlx", "hyper", "axum", "reqwest"];

fn rust_files(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The line without the contents of string literals (a test may name a crate in a string).
fn strip_strings(line: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    for c in line.chars() {
        if c == '"' {
            in_string = !in_string;
        } else if !in_string {
            out.push(c);
        }
    }
    out
}

#[test]
fn pure_modules_do_not_depend_on_tokio_tonic_or_sqlx() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for module in PURE {
        rust_files(&root.join(module), &mut files);
    }
    assert!(
        !files.is_empty(),
        "no pure module found: the scan itself is broken"
    );
    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = strip_strings(line.split("//").next().unwrap_or(""));
            for krate in FORBIDDEN {
                if code.contains(&format!("{krate}::")) || code.contains(&format!("use {krate}")) {
                    violations.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "pure modules must not use I/O crates:\n{}",
        violations.join("\n")
    );
}

/// The reference Loop server runs on any lnd: it reaches its node only through the
/// `LightningNode` port and never names the simnet.
#[test]
fn the_loop_server_does_not_depend_on_the_simnet() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/loopserver"), &mut files);
    assert!(
        !files.is_empty(),
        "src/loopserver not found: the scan is broken"
    );
    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = strip_strings(line.split("//").next().unwrap_or(""));
            if code.contains("simnet::") {
                violations.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "the Loop server must reach its node through the LightningNode port only:\n{}",
        violations.join("\n")
    );
}
