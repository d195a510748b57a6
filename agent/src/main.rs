//! The `drover-agent` binary: flags, logging, configuration, then the agent.
//!
//! Exit codes: 0 after an orderly shutdown; 2 for a bad command line or
//! configuration; 1 when the agent cannot start (state directory, refused
//! registration).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use drover_agent::cli::Cli;
use drover_agent::config::Settings;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match EnvFilter::try_new(&cli.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "drover-agent: invalid log filter {:?} (--log / RUST_LOG): {e}",
                cli.log
            );
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let settings = match Settings::from_cli(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("drover-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drover-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(drover_agent::agent::run(settings));
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drover-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
