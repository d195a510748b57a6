//! Health, status and metrics.

use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use drover_engine::store::QueueStore;
use drover_protocol::api::{ServerStatus, Stats};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::error::ApiError;
use crate::http::auth::Caller;
use crate::state::AppState;
use crate::tokens::hash_token;

pub fn router(metrics: PrometheusHandle) -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "ok": true })) }),
        )
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(move |State(state): State<AppState>, headers: HeaderMap| {
                std::future::ready(render_metrics(&state, &headers, &metrics))
            }),
        )
}

/// `/readyz`: 200 when every check passes, else 503; both name each check
/// and what is wrong, so a probe's log says why an instance was taken out.
/// Open like `/healthz`: it says no more than whether the database is up.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let checks = state.store.readiness().await;
    let ready = checks.iter().all(|c| c.problem.is_none());
    let body = serde_json::json!({
        "ready": ready,
        "checks": checks
            .iter()
            .map(|c| (c.name, c.problem.as_deref().unwrap_or("ok")))
            .collect::<std::collections::BTreeMap<_, _>>(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// `/metrics`, behind `DROVER_METRICS_TOKEN` when that is set.
fn render_metrics(
    state: &AppState,
    headers: &HeaderMap,
    metrics: &PrometheusHandle,
) -> Result<String, ApiError> {
    if let Some(expected) = state.config.metrics_token.as_deref() {
        let sent = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        // Compared as hashes, so the time taken says nothing about the token.
        if hash_token(sent) != hash_token(expected) {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(metrics.render())
}

pub fn api_router() -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/stats", get(stats))
        .route(
            "/events",
            get(crate::http::events::stream).post(crate::http::waits::send_event),
        )
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
