//! Placeholder until the dashboard lands (being written).
use std::net::SocketAddr;

pub struct Options;

pub fn leptos_options(_site_root: &str, _addr: SocketAddr) -> Options {
    Options
}

pub fn router(_options: Options) -> axum::Router {
    axum::Router::new()
}
