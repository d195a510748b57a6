//! The HTTP edge: one module per resource, each exposing `router()`; this
//! module merges them and adds the shared layers.

mod agent_protocol;
mod agents;
mod approvals;
mod audit;
mod enrollment;
mod runs;
mod system;
mod tasks;
mod users;
mod workflows;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// The REST API, the agent protocol, health and metrics.
pub fn router(state: AppState, metrics: PrometheusHandle) -> Router {
    let api = Router::new()
        .merge(tasks::router())
        .merge(agents::router())
        .merge(enrollment::router())
        .merge(audit::router())
        .merge(agent_protocol::router())
        .merge(system::api_router())
        .merge(users::router())
        .merge(workflows::router())
        .merge(runs::router())
        .merge(approvals::router())
        .merge(crate::session::router())
        .fallback(|| async { ApiError::NotFound("API route".into()) });
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::session::form_router())
        .merge(system::router(metrics))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
