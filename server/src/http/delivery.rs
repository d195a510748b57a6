//! How the dashboard's bytes travel: compressed when the client accepts it,
//! and cached only as long as they cannot go stale.
//!
//! - Responses are compressed (brotli or gzip, whichever the client
//!   prefers) unless they are small, images, or server-sent events: an
//!   event stream must reach the browser as each event is written, and a
//!   compressor would hold events back until its buffer fills.
//! - Static files are served from the site root with `Last-Modified` (or
//!   from inside the binary with an `ETag`), and answer a conditional
//!   request with 304. Their names are not
//!   fingerprinted (see [`cache_control`]), so browsers keep them but ask
//!   again before each use (`no-cache`): an upgraded server is never
//!   paired with an old wasm chunk.
//! - Pages are `no-cache` too: they carry live data and the session's view.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use axum::extract::Request;
use axum::http::header::CACHE_CONTROL;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tower::Service;
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

/// Where the dashboard's built files (`/pkg/drover.wasm`, `/favicon.svg`)
/// come from.
#[derive(Debug, Clone)]
pub enum SiteFiles {
    /// A directory, read on each request (`Last-Modified`, 304s).
    Disk(PathBuf),
    /// Compiled into the binary (feature `embed-site`): brotli and gzip
    /// made at build time, `ETag`s from the contents.
    #[cfg(feature = "embed-site")]
    Embedded,
}

impl SiteFiles {
    /// The configured directory if there is one, else the files inside the
    /// binary if it has them, else `target/site` (a development build).
    pub fn choose(configured: Option<&Path>) -> Self {
        match configured {
            Some(dir) => Self::Disk(dir.to_path_buf()),
            #[cfg(feature = "embed-site")]
            None => Self::Embedded,
            #[cfg(not(feature = "embed-site"))]
            None => Self::Disk(PathBuf::from("target/site")),
        }
    }

    /// The directory Leptos is told about (it names no files itself).
    pub fn root(&self) -> String {
        match self {
            Self::Disk(dir) => dir.display().to_string(),
            #[cfg(feature = "embed-site")]
            Self::Embedded => "(embedded)".to_string(),
        }
    }

    /// Serves the files; what is not a file goes to `not_found` (the
    /// dashboard's 404 page).
    pub fn router<S, F>(&self, not_found: F) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
        F: Service<Request, Response = Response, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        F::Future: Send + 'static,
    {
        match self {
            // Files compressed ahead of time (`.br`, `.gz` beside them) are
            // sent as they are.
            Self::Disk(dir) => Router::new().fallback_service(
                ServeDir::new(dir)
                    .precompressed_br()
                    .precompressed_gzip()
                    .append_index_html_on_directories(false)
                    .call_fallback_on_method_not_allowed(true)
                    .fallback(not_found),
            ),
            #[cfg(feature = "embed-site")]
            Self::Embedded => {
                use memory_serve::CacheControl;
                memory_serve::load!()
                    .index_file(None)
                    .html_cache_control(CacheControl::NoCache)
                    .cache_control(CacheControl::NoCache)
                    .into_router()
                    .fallback_service(not_found)
            }
        }
    }
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
