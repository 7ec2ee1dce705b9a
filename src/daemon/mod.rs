//! The `sluiced` process: start-up in a fixed order, one supervisor for every task, and a
//! bounded shutdown. `ARCHITECTURE.md` ("Lifecycle") lists the steps; keep the two in sync.

pub mod lockfile;
pub mod logging;
pub mod node;
mod observe;
mod run;
pub mod supervisor;

pub use run::{RunError, run};
