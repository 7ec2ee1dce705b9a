//! Checks `proto/lnd/` against lnd's own `lnrpc/` files, `proto/looprpc/` against Loop's
//! own `swapserverrpc/` files, and `proto/loopd/` (Loop's client API, which sluiced serves)
//! against Loop's `looprpc/client.proto` and what it imports, at the versions `tools/realnode/`
//! pins. The Go module cache holds
//! both once `tools/realnode/build` has run (`.ci/run` does); `SLUICE_LND_LNRPC_DIR` and
//! `SLUICE_LOOP_SWAPSERVERRPC_DIR` point elsewhere. Without them the checks are skipped with a
//! line saying so, except under CI (`CI=true`), where that is a failure.
//!
//! For each top-level message and enum here, the declarations (type, name, number,
//! options, `reserved`, nested headers) must equal the upstream ones; each `rpc` line here must
//! appear in the upstream service. Comments and layout are ignored.

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

/// The version `tools/realnode/<module>/go.mod` requires of `path`.
fn pinned(module: &str, path: &str) -> String {
    let go_mod = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools/realnode")
        .join(module)
        .join("go.mod");
    let text = std::fs::read_to_string(&go_mod).unwrap();
    text.lines()
        .map(str::trim)
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(path)).then(|| words.next().map(str::to_owned))?
        })
        .unwrap_or_else(|| panic!("{} does not require {path}", go_mod.display()))
}

/// A directory of upstream files: the environment variable, else the Go module cache.
fn upstream(env: &str, module_path: &str, version: &str, sub: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(env) {
        return Some(PathBuf::from(dir));
    }
    let cache = std::process::Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let dir = cache.map(|c| c.join(format!("{module_path}@{version}")).join(sub));
    match dir {
        Some(d) if d.is_dir() => Some(d),
        _ => {
            let why = format!(
                "skipped: {module_path}@{version} is not in the Go module cache; run \
                 tools/realnode/build (or set {env})"
            );
            assert!(
                std::env::var("CI").map(|v| v != "true").unwrap_or(true),
                "CI=true: {why}"
            );
            eprintln!("{why}");
            None
        }
    }
}

/// Every difference between our blocks and the upstream ones.
fn compare(label: &str, mine_src: &str, theirs_src: &str) -> Vec<String> {
    let mine = blocks(&strip_comments(mine_src));
    let theirs = blocks(&strip_comments(theirs_src));
    let mut problems = Vec::new();
    for (name, (kind, body)) in &mine {
        let Some((_, up_body)) = theirs.get(name) else {
            problems.push(format!("{label}: {kind} {name} does not exist upstream"));
            continue;
        };
        let (a, b) = (statements(body), statements(up_body));
        if kind == "service" {
            for rpc in a.iter().filter(|s| !b.contains(s)) {
                problems.push(format!("{label}: service {name}: `{rpc}` differs upstream"));
            }
        } else if a != b {
            let only_ours: Vec<_> = a.iter().filter(|s| !b.contains(s)).collect();
            let only_up: Vec<_> = b.iter().filter(|s| !a.contains(s)).collect();
            problems.push(format!(
                "{label}: {kind} {name}: only here {only_ours:?}, only upstream {only_up:?}"
            ));
        }
    }
    problems
}

#[test]
fn every_declaration_matches_lnds_own_files() {
    let version = pinned("lnd", "github.com/lightningnetwork/lnd");
    let Some(lnd) = upstream(
        "SLUICE_LND_LNRPC_DIR",
        "github.com/lightningnetwork/lnd",
        &version,
        "lnrpc",
    ) else {
        return;
    };
    let mut problems = Vec::new();
    for file in FILES {
        let mine = std::fs::read_to_string(ours().join(file)).unwrap();
        let theirs = std::fs::read_to_string(lnd.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", lnd.join(file).display()));
        problems.extend(compare(file, &mine, &theirs));
    }
    assert!(
        problems.is_empty(),
        "proto/lnd drifted from lnd {version}:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_looprpc_declaration_matches_loops_own_files() {
    let version = pinned("loop", "github.com/lightninglabs/loop/swapserverrpc");
    let Some(dir) = upstream(
        "SLUICE_LOOP_SWAPSERVERRPC_DIR",
        "github.com/lightninglabs/loop/swapserverrpc",
        &version,
        "",
    ) else {
        return;
    };
    // Loop's server protocol spreads over several files of one package: read them all.
    let mut theirs = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "proto") {
            theirs.push_str(&std::fs::read_to_string(&path).unwrap());
            theirs.push('\n');
        }
    }
    let ours_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/looprpc");
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(&ours_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "proto") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            problems.extend(compare(
                &name,
                &std::fs::read_to_string(&path).unwrap(),
                &theirs,
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "proto/looprpc drifted from swapserverrpc {version}:\n{}",
        problems.join("\n")
    );
}

/// `proto/loopd/`'s copies of Loop's own files: (our path, module, file in the module). They
/// are verbatim copies, so they must be equal byte for byte.
const LOOPD_VERBATIM: &[(&str, &str, &str)] = &[
    (
        "looprpc/client.proto",
        "github.com/lightninglabs/loop/looprpc",
        "client.proto",
    ),
    (
        "swapserverrpc/common.proto",
        "github.com/lightninglabs/loop/swapserverrpc",
        "common.proto",
    ),
];

#[test]
fn loopd_client_api_is_loops_own_file_byte_for_byte() {
    let ours_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/loopd");
    let mut problems = Vec::new();
    for (ours, module, file) in LOOPD_VERBATIM {
        let version = pinned("loop", module);
        let env = "SLUICE_LOOP_MODULE_CACHE";
        let dir = match std::env::var_os(env) {
            Some(cache) => Some(PathBuf::from(cache).join(format!("{module}@{version}"))),
            None => upstream(env, module, &version, ""),
        };
        let Some(dir) = dir else {
            return;
        };
        let theirs = std::fs::read(dir.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()));
        let mine = std::fs::read(ours_dir.join(ours)).unwrap();
        if mine != theirs {
            let line = mine
                .split(|b| *b == b'\n')
                .zip(theirs.split(|b| *b == b'\n'))
                .position(|(a, b)| a != b)
                .map_or_else(|| "the length".to_owned(), |l| format!("line {}", l + 1));
            problems.push(format!(
                "proto/loopd/{ours} differs from {module}@{version}/{file} (first at {line}); \
                 copy the file again"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn loopd_lnrpc_subset_matches_lnds_own_file() {
    let version = pinned("lnd", "github.com/lightningnetwork/lnd");
    let Some(lnd) = upstream(
        "SLUICE_LND_LNRPC_DIR",
        "github.com/lightningnetwork/lnd",
        &version,
        "lnrpc",
    ) else {
        return;
    };
    let mine = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/loopd/lnrpc/lightning.proto"),
    )
    .unwrap();
    let theirs = std::fs::read_to_string(lnd.join("lightning.proto")).unwrap();
    let problems = compare("loopd/lnrpc/lightning.proto", &mine, &theirs);
    assert!(
        problems.is_empty(),
        "proto/loopd/lnrpc drifted from lnd {version}:\n{}",
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
