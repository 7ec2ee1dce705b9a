//! `sluiced`: the daemon. Parses and validates its configuration before anything binds
//! (exit 64 on a config error), then runs until SIGINT/SIGTERM or `sluice stop`.

use std::process::ExitCode;

use sluice::config::{Config, DaemonArgs, EXIT_CONFIG};

fn main() -> ExitCode {
    let args = DaemonArgs::parse_or_exit();
    let config = match Config::load(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sluiced: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    // One runtime thread: the daemon's work is many small steps waiting on lnd, the swap
    // server and SQLite, and a second thread mostly costs wake-ups between the two (a tenth of
    // the CPU of a Loop Out, `docs/benchmarks.md`). What blocks runs elsewhere: SQLite on its
    // connections' threads, file reads on the blocking pool, the policy beside the runtime
    // (`autoloop::pass`). `TOKIO_WORKER_THREADS` still sets another count.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluiced: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sluice::daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluiced: {e}");
            ExitCode::FAILURE
        }
    }
}
