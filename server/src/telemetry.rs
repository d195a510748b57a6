//! Logging and metrics, set up once at start.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// What was set up, to flush at exit.
#[must_use]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still waiting in the exporter's batch.
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(traces) = self.traces {
            if let Err(e) = traces.shutdown() {
                eprintln!("drover-server: flushing traces: {e}");
            }
        }
    }
}

/// Logs as text for people, or one JSON object per line (`--log-json`) for
/// a log shipper; spans (a request's method and path, a task's id) go with
/// each line either way. With `otlp_endpoint` (and the `otlp` feature) the
/// spans are also exported as traces.
/// Each has its own filter: `filter` (`RUST_LOG`) for the log, and
/// `otlp_filter` for the traces, which want every request's span without
/// logging each request.
pub fn init_logging(
    filter: &str,
    json: bool,
    otlp_endpoint: Option<&str>,
    otlp_filter: &str,
) -> anyhow::Result<Telemetry> {
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_target(false);
    let logs = if json {
        logs.json()
            .with_current_span(true)
            .with_filter(filter)
            .boxed()
    } else {
        logs.with_filter(filter).boxed()
    };
    let registry = tracing_subscriber::registry().with(logs);
    #[cfg(feature = "otlp")]
    {
        let traces = otlp_endpoint.map(otlp::provider).transpose()?;
        let layer = match &traces {
            Some(provider) => {
                use opentelemetry::trace::TracerProvider;
                let only = EnvFilter::try_new(otlp_filter)
                    .map_err(|e| anyhow::anyhow!("DROVER_OTLP_FILTER: {e}"))?;
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(provider.tracer("drover-server"))
                        .with_filter(only),
                )
            }
            None => None,
        };
        let _ = registry.with(layer).try_init();
        Ok(Telemetry { traces })
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = otlp_filter;
        if let Some(endpoint) = otlp_endpoint {
            anyhow::bail!(
                "OTEL_EXPORTER_OTLP_ENDPOINT is {endpoint:?}, but this drover-server was built without OTLP export (cargo feature `otlp`)"
            );
        }
        let _ = registry.try_init();
        Ok(Telemetry {})
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use anyhow::Context;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;

    /// Spans batched on the SDK's own thread and posted as protobuf to
    /// `<endpoint>/v1/traces`.
    pub fn provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .with_timeout(std::time::Duration::from_secs(10))
            .build()
            .context("cannot set up OTLP export")?;
        let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "drover-server".into());
        Ok(SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(service).build())
            .with_batch_exporter(exporter)
            .build())
    }
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
