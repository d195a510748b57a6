//! The `drover-agent` binary: flags, logging, configuration, then the agent.
//!
//! Exit codes: 0 after an orderly shutdown; 2 for a bad command line or
//! configuration; 1 when the agent cannot start (state directory, refused
//! registration, no handler guard).
//!
//! `drover-agent --guard` (first argument, not for people) runs the handler
//! guard instead: see `drover_agent::handlers::guard`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use drover_agent::cli::Cli;
use drover_agent::config::Settings;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(
            drover_agent::handlers::guard::GUARD_FLAG,
        ))
    {
        return drover_agent::handlers::guard::serve();
    }
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
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        logs.json().with_current_span(true).init();
    } else {
        logs.init();
    }

    let settings = match Settings::from_cli(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("drover-agent: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any handler runs: command handlers must die with this agent.
    #[cfg(target_os = "linux")]
    if settings
        .handlers
        .values()
        .any(|h| matches!(h, drover_agent::config::HandlerConfig::Command(_)))
    {
        // /proc/self/exe is this very binary, even if the file was replaced
        // since it started.
        if let Err(e) = drover_agent::handlers::guard::install("/proc/self/exe") {
            eprintln!("drover-agent: cannot start the handler guard: {e}");
            return ExitCode::FAILURE;
        }
    }
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
