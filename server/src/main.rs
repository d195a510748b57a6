//! `drover-server`: the durable priority queue, agent registry, REST API
//! and dashboard of Drover.

mod advance;
mod audit;
mod auth;
mod cli;
mod config;
mod credentials;
mod dispatcher;
mod duties;
mod error;
mod events;
mod extract;
mod http;
mod passwords;
mod ratelimit;
mod relay;
mod session;
mod startup;
mod state;
mod telemetry;
mod tls;
mod users;
mod web;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = config::Config::parse();
    telemetry::init_logging(&config.log);
    if let Some(command) = config.command.clone() {
        return match startup::run_command(&config, command).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("drover-server: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let app = match startup::Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("drover-server: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match app.run_until(shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drover-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
