//! The HTTP edge: every route and extractor. One module per resource, each
//! exposing `router()`; this module merges them and adds the shared layers.
//! `auth` and `cookies` authenticate requests, `pages` serves the dashboard,
//! `delivery` compresses responses and sets their cache headers.

mod agent_protocol;
mod agents;
mod approvals;
mod audit;
pub mod auth;
pub mod cookies;
pub mod delivery;
mod enrollment;
mod events;
pub mod extract;
mod lists;
mod notifications;
pub mod openapi;
mod overview;
pub mod pages;
mod queues;
mod rate_limits;
mod runs;
mod schedules;
pub mod session;
mod system;
mod tasks;
mod triggers;
mod users;
pub mod waits;
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
        .merge(overview::router())
        .merge(users::router())
        .merge(workflows::router())
        .merge(runs::router())
        .merge(schedules::router())
        .merge(queues::router())
        .merge(rate_limits::router())
        .merge(triggers::router())
        .merge(notifications::router())
        .merge(approvals::router())
        .merge(crate::http::session::router())
        .fallback(|| async { ApiError::NotFound("API route".into()) });
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::http::session::form_router())
        .merge(openapi::router())
        .merge(system::router(metrics))
        .layer(axum::middleware::from_fn(crate::error::json_refusals))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The dashboard's content policy. Leptos hydrates from an inline module
/// script (and streams resources as inline scripts), so scripts need
/// `'unsafe-inline'` besides `'self'`, and the wasm needs
/// `'wasm-unsafe-eval'`. No other origin may script, frame or be framed by
/// the dashboard; forms post only to the server itself.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
     script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers every response carries: no MIME sniffing, no framing (against
/// clickjacking), the content policy, and no full URLs leaked as referrers.
/// The dashboard's built files (`/pkg/…`: wasm, scripts, styles) are never
/// documents, so they skip the two headers only a document obeys (the
/// content policy and framing): a first visit loads about 150 of them, and
/// those headers were a fifth of its bytes on the wire.
pub async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header::{
        CONTENT_SECURITY_POLICY as CSP, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
    };
    use axum::http::HeaderValue;
    let document = !req.uri().path().starts_with("/pkg/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if document {
        h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        if !h.contains_key(CSP) {
            h.insert(CSP, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        }
    }
    response
}
