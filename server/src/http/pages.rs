//! Mounts the Leptos dashboard: server-rendered pages, and the built assets
//! (`/pkg/drover.js`, `.wasm`, `.css`) from the site root or from inside the
//! binary, with the cache headers of `http::delivery`.
//!
//! The binary runs with or without cargo-leptos, so the Leptos options are
//! built here from the server's own configuration rather than read from the
//! `LEPTOS_*` variables cargo-leptos would set. Without a built site (for
//! example in the API tests) pages still render; they just do not hydrate.
//!
//! Pages get their data from the REST API, in the browser over HTTP and
//! while rendering on the server by calling the API router in-process with
//! the visitor's cookies: one data path, one set of permission checks.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;
use drover_app::api::InProcessApi;
use drover_app::{shell, App};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower::ServiceExt;

use crate::http::delivery;
use crate::state::AppState;

/// Largest API response a page render reads.
const MAX_RENDER_BODY: usize = 32 * 1024 * 1024;

pub fn leptos_options(site_root: &str, addr: SocketAddr) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("drover")
        .site_root(site_root)
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build()
}

pub fn router(
    site: &delivery::SiteFiles,
    options: LeptosOptions,
    state: AppState,
    api: Router,
) -> Router {
    let routes = generate_route_list(App);
    let in_process = in_process(api);
    // What is neither a page nor a file: the dashboard's 404 page.
    let not_found = leptos_axum::file_and_error_handler(shell).with_state(options.clone());
    let files: Router = site.router(not_found);
    Router::new()
        .leptos_routes_with_context(
            &options,
            routes,
            move || provide_context(in_process.clone()),
            {
                let options = options.clone();
                move || shell(options.clone())
            },
        )
        .fallback_service(files)
        .layer(axum::middleware::from_fn_with_state(state, require_sign_in))
        // Outside the sign-in check: its redirects are not to be kept either.
        .layer(axum::middleware::from_fn(delivery::cache_control))
        .layer(axum::middleware::from_fn(crate::http::security_headers))
        .with_state(options)
}

/// The API router as a function the app calls while rendering.
fn in_process(api: Router) -> InProcessApi {
    InProcessApi(Arc::new(move |req: axum::http::Request<String>| {
        let api = api.clone();
        Box::pin(async move {
            let response = api
                .oneshot(req.map(Body::from))
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), MAX_RENDER_BODY)
                .await
                .map_err(|e| e.to_string())?;
            Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
        })
    }))
}

/// Pages need a signed-in user: others are sent to the sign-in page, which
/// brings them back afterwards. Assets and the sign-in page are open.
async fn require_sign_in(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let open = path == "/signin"
        || path.starts_with("/pkg/")
        || path == "/favicon.svg"
        || path == "/favicon.ico"
        || path.starts_with("/api/")
        || req.method() != axum::http::Method::GET;
    if open
        || crate::http::session::session_user(&state, req.headers())
            .await
            .is_some()
    {
        return next.run(req).await;
    }
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let query = serde_urlencoded::to_string([("next", target)]).unwrap_or_default();
    Redirect::to(&format!("/signin?{query}")).into_response()
}
