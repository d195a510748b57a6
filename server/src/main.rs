//! `drover-server`: see the library (`lib.rs`) for the layout.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = drover_server::Config::parse();
    drover_server::telemetry::init_logging(&config.log, config.log_json);
    match drover_server::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drover-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
