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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
