//! Mounts the Leptos dashboard: server-rendered pages, and the built assets
//! (`/pkg/drover.js`, `.wasm`, `.css`) from the site root.
//!
//! The binary runs with or without cargo-leptos, so the Leptos options are
//! built here from the server's own configuration rather than read from the
//! `LEPTOS_*` variables cargo-leptos would set. Without a built site (for
//! example in the API tests) pages still render; they just do not hydrate.

use std::net::SocketAddr;

use axum::Router;
use drover_app::{shell, App};
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};

pub fn leptos_options(site_root: &str, addr: SocketAddr) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("drover")
        .site_root(site_root)
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build()
}

pub fn router(options: LeptosOptions) -> Router {
    let routes = generate_route_list(App);
    Router::new()
        .leptos_routes(&options, routes, {
            let options = options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler(shell))
        .with_state(options)
}
