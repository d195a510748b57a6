//! Health, status and metrics.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use drover_engine::store::QueueStore;
use drover_protocol::api::{ServerStatus, Stats};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router(metrics: PrometheusHandle) -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "ok": true })) }),
        )
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
}

pub fn api_router() -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/stats", get(stats))
        .route("/events", get(crate::events::stream))
}

async fn status(_caller: Caller, State(state): State<AppState>) -> Json<ServerStatus> {
    Json(ServerStatus {
        version: env!("CARGO_PKG_VERSION").to_string(),
        instance_id: state.instance_id.clone(),
        database: state.store.backend().to_string(),
        leader: state.is_leader(),
        priority_weights: state.scheduling.weights.as_array(),
    })
}

async fn stats(_caller: Caller, State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    Ok(Json(state.store.stats().await?))
}
