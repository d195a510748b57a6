//! The live event stream: a change is announced, also to clients of
//! another instance on PostgreSQL.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{new_task, Backend, Database, RawAgent, Server};

/// Reads the SSE stream until an event of `kind` arrives. `within` only
/// bounds a test that would otherwise hang: events are pushed at once, and
/// the stream is read until one comes, so a loaded machine cannot fail it.
async fn wait_for_event(response: &mut reqwest::Response, kind: &str, within: Duration) {
    let started = Instant::now();
    let mut buffer = String::new();
    loop {
        let left = within
            .checked_sub(started.elapsed())
            .unwrap_or_else(|| panic!("no {kind} event within {within:?}; got {buffer:?}"));
        let chunk = tokio::time::timeout(left, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event within {within:?}; got {buffer:?}"))
            .expect("stream")
            .expect("stream ended");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        if buffer.contains(&format!("event: {kind}\n")) {
            return;
        }
    }
}

async fn subscribe(server: &Server) -> reqwest::Response {
    let r = server
        .http
        .get(format!("{}/api/v1/events", server.url))
        .bearer_auth(support::API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_announced() {
    let db = Database::new(Backend::Sqlite).await;
    let server = Server::spawn_app(&db, &[("DROVER_TASK_TYPES", "echo")]).await;
    let unauthorized = server
        .http
        .get(format!("{}/api/v1/events", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    // The response's headers came after the subscription: nothing is missed.
    let mut stream = subscribe(&server).await;
    server.submit(vec![new_task("echo", json!({}))]).await;
    wait_for_event(&mut stream, "tasks", Duration::from_secs(30)).await;
    RawAgent::register(&server, "a", 1, &["echo"]).await;
    wait_for_event(&mut stream, "agent", Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_raised_on_one_instance_reaches_clients_of_another() {
    let db = Database::new(Backend::Postgres).await;
    let one = Server::start(&db, &[("DROVER_TASK_TYPES", "echo")]).await;
    let two = Server::start(&db, &[("DROVER_TASK_TYPES", "echo")]).await;
    // Two processes: instances in one process would share the work
    // channel's per-process tag.
    let mut stream = subscribe(&two).await;
    // Time for `two`'s relay to start listening, as in the original.
    tokio::time::sleep(Duration::from_millis(300)).await;
    RawAgent::register(&one, "elsewhere", 1, &["echo"]).await;
    wait_for_event(&mut stream, "agent", Duration::from_secs(30)).await;
}
