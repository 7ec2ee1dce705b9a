//! Shared by the `realnode_*` test binaries: the pinned real programs and a regtest world of
//! them (btcd, lnd nodes "sluice", "server", "peer1", "peer2"), torn down with the test.
//!
//! Without Go on the machine (and without `SLUICE_REALNODE_BIN`) every real-node test is
//! skipped with one line saying why and how to enable it; under CI (`CI=true`) that is a
//! failure instead.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use sluice::regtest::{Programs, World, WorldConfig};

/// The real programs, or `None` (after one line on stderr) when the test must be skipped.
pub fn programs() -> Option<Programs> {
    if let Some(found) = Programs::from_env() {
        return Some(found.unwrap_or_else(|e| panic!("{e}")));
    }
    let go = Command::new("go").arg("version").output();
    if !matches!(go, Ok(ref o) if o.status.success()) {
        let why = "skipped: the real-node tests need Go 1.25.12+ on PATH to build btcd, lnd and \
                   loop from their pinned modules (tools/realnode/build), or SLUICE_REALNODE_BIN \
                   naming a directory of built programs";
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "CI=true: {why}"
        );
        eprintln!("{why}");
        return None;
    }
    Some(Programs::build(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|e| panic!("{e}")))
}

/// A test's world: the processes stop when it is dropped (or when the test process dies).
pub struct TestWorld {
    pub world: World,
    pub programs: Programs,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for TestWorld {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl std::ops::DerefMut for TestWorld {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

/// Starts a world on this thread (the processes are tied to it), or `None` to skip.
pub fn world() -> Option<TestWorld> {
    let programs = programs()?;
    let dir = tempfile::Builder::new()
        .prefix("sluice-regtest-")
        .tempdir()
        .unwrap();
    let world = match World::start(&programs, &WorldConfig::new(dir.path())) {
        Ok(w) => w,
        Err(e) => {
            // Keep the logs for a failed start.
            let kept = dir.keep();
            panic!("the regtest world did not start ({}): {e}", kept.display());
        }
    };
    Some(TestWorld {
        world,
        programs,
        dir,
    })
}
