//! Logging and metrics, set up once at start.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Text for people, or one JSON object per line (`--log-json`) for a log
/// shipper; spans (a request's method and path, a task's id) go with each
/// line either way.
pub fn init_logging(filter: &str, json: bool) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        logs.json().with_current_span(true).try_init()
    } else {
        logs.try_init()
    };
}

/// Installs the Prometheus recorder; `/metrics` renders the handle. The
/// recorder is process-wide: apps started in one process (the in-process
/// tests) share it.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Result<PrometheusHandle, String>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(anyhow::Error::msg)
        .inspect(|_| export_counters_at_zero())
}

/// Counters that alert rules take rates and increases of, exported at 0
/// from the start: a series that appears only at its first event makes
/// `increase()` miss that event and `absent()` rules fire on a healthy
/// server.
fn export_counters_at_zero() {
    metrics::counter!("drover_agents_lost_total").increment(0);
    metrics::counter!("drover_tasks_requeued_total").increment(0);
    for status in ["succeeded", "failed", "cancelled"] {
        metrics::counter!("drover_task_results_total", "status" => status).increment(0);
    }
}
