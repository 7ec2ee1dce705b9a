//! The daemon's configuration file. Whatever it holds, loading answers a configuration or an
//! error naming the key and the fix, never a panic; nothing is bound or created meanwhile.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice::config::{Config, DaemonArgs};

fuzz_target!(|data: &[u8]| {
    static DIR: OnceLock<Option<tempfile::TempDir>> = OnceLock::new();
    let Some(dir) = DIR.get_or_init(|| tempfile::tempdir().ok()).as_ref() else {
        return;
    };
    let file = dir.path().join("sluice.yaml");
    if std::fs::write(&file, data).is_err() {
        return;
    }
    let datadir = dir.path().join("data");
    let Ok(args) = <DaemonArgs as clap::Parser>::try_parse_from([
        "sluiced".as_ref(),
        "--config".as_ref(),
        file.as_os_str(),
        "--datadir".as_ref(),
        datadir.as_os_str(),
    ]) else {
        return;
    };
    match Config::load_with_env(&args, &|_| None) {
        Ok(_) => {}
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    assert!(
        !datadir.exists(),
        "loading the configuration created the datadir"
    );
});
