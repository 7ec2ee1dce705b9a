//! Re-checks `proto/lnd/` against an lnd source tree. Not run by default (the machine has
//! no lnd checkout); run it when moving to a new lnd release:
//!
//! ```text
//! SLUICE_LND_LNRPC_DIR=/path/to/lnd/lnrpc cargo test --test lnd_proto_against_lnd -- --ignored
//! ```
//!
//! For each top-level message and enum here, the declarations (type, name, number,
//! options, `reserved`, nested headers) must equal lnd's; each `rpc` line here must appear
//! in lnd's service. Comments and layout are ignored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Our files, by their path relative to lnd's `lnrpc/` directory.
const FILES: &[&str] = &[
    "lightning.proto",
    "routerrpc/router.proto",
    "walletrpc/walletkit.proto",
    "signrpc/signer.proto",
    "chainrpc/chainnotifier.proto",
    "invoicesrpc/invoices.proto",
    "verrpc/verrpc.proto",
];

/// Removes `//` and `/* */` comments, leaving string literals alone.
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c as char);
            if c == b'"' {
                in_str = false;
            }
            i += 1;
        } else if c == b'"' {
            in_str = true;
            out.push('"');
            i += 1;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i + 1 < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

/// Top-level `message`/`enum`/`service` blocks by name: (kind, body).
fn blocks(src: &str) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let b = src.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => {
                for kind in ["message", "enum", "service"] {
                    let at_word = i == 0 || !b[i - 1].is_ascii_alphanumeric();
                    let rest = &src[i..];
                    if at_word
                        && rest.starts_with(kind)
                        && rest[kind.len()..].starts_with(char::is_whitespace)
                    {
                        let open = i + rest.find('{').unwrap();
                        let name = src[i + kind.len()..open].trim().to_owned();
                        let mut d = 0usize;
                        let mut j = open;
                        loop {
                            match b[j] {
                                b'{' => d += 1,
                                b'}' => {
                                    d -= 1;
                                    if d == 0 {
                                        break;
                                    }
                                }
                                _ => {}
                            }
                            j += 1;
                        }
                        out.insert(name, (kind.to_owned(), src[open + 1..j].to_owned()));
                        i = j;
                        break;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The sorted, whitespace-normalised declarations of a block body.
fn statements(body: &str) -> Vec<String> {
    let collapsed = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut tight = String::new();
    for (idx, ch) in collapsed.char_indices() {
        let punct = |c: char| "{};()<>,=[]".contains(c);
        if ch == ' ' {
            let prev = collapsed[..idx].chars().next_back().is_some_and(punct);
            let next = collapsed[idx + 1..].chars().next().is_some_and(punct);
            if prev || next {
                continue;
            }
        }
        tight.push(ch);
    }
    let mut v: Vec<String> = tight
        .split([';', '{', '}'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn ours() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/lnd")
}

#[test]
#[ignore = "needs an lnd checkout: set SLUICE_LND_LNRPC_DIR to its lnrpc/ directory"]
fn every_declaration_matches_lnds_own_files() {
    let lnd = PathBuf::from(std::env::var("SLUICE_LND_LNRPC_DIR").expect(
        "set SLUICE_LND_LNRPC_DIR to the lnrpc/ directory of an lnd checkout at the release to check",
    ));
    let mut problems = Vec::new();
    for file in FILES {
        let mine = blocks(&strip_comments(
            &std::fs::read_to_string(ours().join(file)).unwrap(),
        ));
        let theirs_src = std::fs::read_to_string(lnd.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", lnd.join(file).display()));
        let theirs = blocks(&strip_comments(&theirs_src));
        for (name, (kind, body)) in &mine {
            let Some((_, lnd_body)) = theirs.get(name) else {
                problems.push(format!("{file}: {kind} {name} does not exist in lnd"));
                continue;
            };
            let (a, b) = (statements(body), statements(lnd_body));
            if kind == "service" {
                for rpc in a.iter().filter(|s| !b.contains(s)) {
                    problems.push(format!("{file}: service {name}: `{rpc}` differs from lnd"));
                }
            } else if a != b {
                let only_ours: Vec<_> = a.iter().filter(|s| !b.contains(s)).collect();
                let only_lnd: Vec<_> = b.iter().filter(|s| !a.contains(s)).collect();
                problems.push(format!(
                    "{file}: {kind} {name}: only here {only_ours:?}, only in lnd {only_lnd:?}"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "proto/lnd drifted from lnd:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_normaliser_ignores_layout_but_not_numbers() {
    let a = blocks(&strip_comments(
        "message A { // c\n  uint64 x = 1 [jstype = JS_STRING];\n /* b */ string y = 2; }",
    ));
    let b = blocks("message A {string y=2;uint64 x = 1 [ jstype=JS_STRING ];}");
    let c = blocks("message A {string y=3;uint64 x = 1 [jstype = JS_STRING];}");
    assert_eq!(statements(&a["A"].1), statements(&b["A"].1));
    assert_ne!(statements(&a["A"].1), statements(&c["A"].1));
    let nested = blocks("message P { enum E { X = 0; } E e = 1; } enum Q { Z = 0; }");
    assert_eq!(nested.len(), 2, "nested blocks belong to their parent");
}
