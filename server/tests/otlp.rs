//! A server built with the `otlp` feature exports its spans as OTLP/HTTP
//! traces to the collector `OTEL_EXPORTER_OTLP_ENDPOINT` names. The
//! collector here is a stand-in (a real OpenTelemetry Collector is not
//! installable on our machines): it records what is posted to
//! `/v1/traces`, and the test reads the protobuf's strings.
#![cfg(feature = "otlp")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use support::{eventually, Backend, Database, Server};

type Posts = Arc<Mutex<Vec<(String, Bytes)>>>;

async fn collector() -> (String, Posts) {
    let posts: Posts = Arc::default();
    let kept = posts.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: Bytes| {
            let kept = kept.clone();
            async move {
                let kind = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                kept.lock().expect("posts").push((kind, body));
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), posts)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn spans_reach_the_collector_as_otlp_traces() {
    let (endpoint, posts) = collector().await;
    let db = Database::new(Backend::Sqlite).await;
    let server = Server::start(
        &db,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "drover-under-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("DROVER_TASK_TYPES", "echo"),
        ],
    )
    .await;
    let (status, _) = server.get("/api/v1/tasks?status=queued").await;
    assert_eq!(status, 200);

    eventually(Duration::from_secs(15), "a trace posted", || {
        let posts = posts.clone();
        async move {
            let posts = posts.lock().expect("posts");
            posts
                .iter()
                .any(|(kind, body)| {
                    kind == "application/x-protobuf"
                        && contains(body, "drover-under-test")
                        && contains(body, "/api/v1/tasks?status=queued")
                })
                .then_some(())
        }
    })
    .await;
}
