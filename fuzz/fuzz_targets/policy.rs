//! Policy files are written by hand, and a policy directory may come from anywhere. Whatever
//! the YAML and the rhai script beside it say, loading answers a policy or a located error,
//! never a panic or a hang (the script sandbox bounds compilation too).
//!
//! The input is the policy's YAML, optionally followed by a line `#--rhai--` and the text of
//! `script.rhai`, the file a rule's `script: script.rhai` names.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice::policy::load::load_str;
use sluice::policy::script::ScriptHost;

const SPLIT: &str = "\n#--rhai--\n";

fuzz_target!(|data: &[u8]| {
    static DIR: OnceLock<Option<tempfile::TempDir>> = OnceLock::new();
    let Some(dir) = DIR.get_or_init(|| tempfile::tempdir().ok()).as_ref() else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    let (yaml, script) = text.split_once(SPLIT).unwrap_or((&text, ""));
    if std::fs::write(dir.path().join("script.rhai"), script).is_err() {
        return;
    }
    let host = ScriptHost::new();
    match load_str(&dir.path().join("policy.yaml"), yaml, &host) {
        Ok(_) => {}
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
