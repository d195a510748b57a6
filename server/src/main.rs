//! `drover-server`: see the library (`lib.rs`) for the layout.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = drover_server::Config::parse();
    let telemetry = match drover_server::telemetry::init_logging(
        &config.log,
        config.log_json,
        config.otlp_endpoint.as_deref(),
        &config.otlp_filter,
    ) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("drover-server: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = drover_server::run(config).await;
    telemetry.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drover-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
