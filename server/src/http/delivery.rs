//! How the dashboard's bytes travel: compressed when the client accepts it,
//! and cached only as long as they cannot go stale.
//!
//! - Responses are compressed (brotli or gzip, whichever the client
//!   prefers) unless they are small, images, or server-sent events: an
//!   event stream must reach the browser as each event is written, and a
//!   compressor would hold events back until its buffer fills.
//! - Static files are served from the site root with `Last-Modified`, and
//!   answer a conditional request with 304. Their names are not
//!   fingerprinted (see [`cache_control`]), so browsers keep them but ask
//!   again before each use (`no-cache`): an upgraded server is never
//!   paired with an old wasm chunk.
//! - Pages are `no-cache` too: they carry live data and the session's view.

use axum::extract::Request;
use axum::http::header::CACHE_CONTROL;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;

/// Below this a response gains too little from compression to pay for it
/// (it fits in one packet either way).
const MIN_COMPRESSED_BYTES: u16 = 1024;

/// Compresses what is worth it; never the event stream.
pub fn compression() -> CompressionLayer<impl Predicate> {
    let worth_it = SizeAbove::new(MIN_COMPRESSED_BYTES)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE);
    CompressionLayer::new().compress_when(worth_it)
}

/// The site root's files (`/pkg/drover.wasm`, `/favicon.svg`); what is not
/// a file goes to `not_found` (the dashboard's 404 page). Files compressed
/// ahead of time (`.br`, `.gz` beside them) are sent as they are.
pub fn static_files<F>(site_root: &str, not_found: F) -> ServeDir<F> {
    ServeDir::new(site_root)
        .precompressed_br()
        .precompressed_gzip()
        .append_index_html_on_directories(false)
        .call_fallback_on_method_not_allowed(true)
        .fallback(not_found)
}

/// Sets `Cache-Control` on what the dashboard serves (pages, static files,
/// the sign-in redirect) unless the handler chose. No file name carries a
/// content hash — `--split` numbers its chunks (`chunk_17.wasm`) afresh in
/// each build, and cargo-leptos's `hash-files` is off (Leptos would read
/// `hash.txt` from beside the server binary, and panic without it) — so
/// nothing may be reused without revalidation: never `immutable`.
pub async fn cache_control(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    response
        .headers_mut()
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
    response
}
