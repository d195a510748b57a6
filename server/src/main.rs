//! `drover-server`: see the library (`lib.rs`) for the layout.

use drover_server::config::LoadError;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let loaded = match drover_server::Config::load(std::env::args_os()) {
        Ok(loaded) => loaded,
        Err(LoadError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("drover-server: {e}");
            // What clap exits with for a bad flag: the same mistake.
            return std::process::ExitCode::from(2);
        }
    };
    let config = loaded.config;
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
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
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
