//! `sluice`: the command-line client of `sluiced`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = sluice::cli::Args::parse();
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(sluice::cli::run(args)),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
