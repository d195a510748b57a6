//! "Why is this waiting?", on SQLite and PostgreSQL: each reason a queued
//! task can have is produced by a test that makes that situation, and a
//! submit no registered agent could ever take is answered with a warning.

#[macro_use]
mod support;

use serde_json::{json, Value};
use support::{Backend, Database, RawAgent, Server, ENROLL_TOKEN};

on_both!(
    a_task_no_agent_can_take_is_warned_on_submit_and_names_the_closest_agent,
    full_agents_and_the_queue_ahead_hold_a_task_with_an_estimated_start,
    a_task_waits_for_its_run_after_and_for_its_retry_backoff,
    a_task_with_a_free_slot_and_nothing_ahead_is_ready,
);

/// The hand-driven agents here do not heartbeat: the default heartbeat
/// timeout (20 s) keeps them online for the test.
fn env() -> Vec<(&'static str, &'static str)> {
    vec![("DROVER_TASK_TYPES", "echo,resize")]
}

/// Submits one task; the answer's body.
async fn submit(server: &Server, task: Value) -> Value {
    let (status, body) = server.post("/api/v1/tasks", &task).await;
    assert!(status == 201 || status == 200, "{status} {body}");
    body
}

async fn waiting(server: &Server, id: i64) -> Value {
    let (status, body) = server.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["waiting"].clone()
}

async fn a_task_no_agent_can_take_is_warned_on_submit_and_names_the_closest_agent(
    backend: Backend,
) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    // No agent at all: accepted, with a warning, and the task says why.
    let body = submit(&server, json!({"task_type": "resize"})).await;
    let warnings = body["warnings"].as_array().expect("warnings");
    assert!(
        warnings[0]
            .as_str()
            .is_some_and(|w| w.contains("no registered agent handles \"resize\"")),
        "{body}"
    );
    let w = waiting(&server, body["id"].as_i64().expect("id")).await;
    assert_eq!(w["reasons"][0]["kind"], "no_agent", "{w}");
    assert!(w["estimated_start_us"].is_null());

    // An agent handling the type, without the label the task needs.
    let body = json!({"name": "gpu-less", "hostname": "h", "task_types": ["resize"], "capacity": 2,
                      "labels": ["eu"], "version": "raw", "protocol": 1});
    RawAgent::register_with(&server, ENROLL_TOKEN, &body)
        .await
        .expect("register");
    let body = submit(
        &server,
        json!({"task_type": "resize", "required_labels": ["eu", "gpu"]}),
    )
    .await;
    assert!(
        body["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("labels eu, gpu")),
        "{body}"
    );
    let w = waiting(&server, body["id"].as_i64().expect("id")).await;
    let reason = &w["reasons"][0];
    assert_eq!(reason["kind"], "no_agent", "{w}");
    assert_eq!(reason["closest"][0]["name"], "gpu-less");
    assert_eq!(
        reason["closest"][0]["missing"],
        json!(["lacks label \"gpu\""])
    );
    assert!(
        w["summary"]
            .as_str()
            .is_some_and(|s| s.contains("gpu-less")),
        "{w}"
    );
    // A task the agent can take gets no warning.
    let body = submit(
        &server,
        json!({"task_type": "resize", "required_labels": ["eu"]}),
    )
    .await;
    assert!(body.get("warnings").is_none(), "{body}");
}

async fn full_agents_and_the_queue_ahead_hold_a_task_with_an_estimated_start(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let agent = RawAgent::register(&server, "one-slot", 1, &["echo"]).await;
    // Start two tasks one after the other, so the type has a start rate.
    for _ in 0..2 {
        submit(&server, json!({"task_type": "echo"})).await;
        let got = agent.claim(1, 0).await;
        assert_eq!(got.len(), 1);
        agent.succeed(got[0].0, got[0].1).await;
    }
    submit(&server, json!({"task_type": "echo"})).await;
    assert_eq!(agent.claim(1, 0).await.len(), 1, "the agent is full now");
    let high = submit(&server, json!({"task_type": "echo", "urgency": 9})).await;
    let low = submit(&server, json!({"task_type": "echo", "urgency": 1})).await;
    let w = waiting(&server, low["id"].as_i64().expect("id")).await;
    assert_eq!(
        w["reasons"][0],
        json!({"kind": "agents_full", "agents": 1, "running": 1, "capacity": 1}),
        "{w}"
    );
    assert_eq!(
        w["reasons"][1],
        json!({"kind": "queued_behind", "ahead": 1, "ahead_same_type": 1}),
        "{w}"
    );
    assert!(
        w["summary"].as_str().is_some_and(|s| s.contains("L = 1")),
        "{w}"
    );
    assert!(w["aged_priority"].as_f64().is_some_and(|p| p >= 1.0), "{w}");
    let est = w["estimated_start_us"]
        .as_i64()
        .expect("an estimate from the start rate");
    let (_, task) = server.get(&format!("/api/v1/tasks/{}", low["id"])).await;
    assert!(
        est > task["created_at_us"].as_i64().expect("created"),
        "{w}"
    );
    // The first in line has nothing ahead.
    let w = waiting(&server, high["id"].as_i64().expect("id")).await;
    assert_eq!(w["ahead"], 0, "{w}");
    assert_eq!(w["reasons"].as_array().map(Vec::len), Some(1), "{w}");
    // A running task is not waiting.
    let (_, body) = server.get("/api/v1/tasks?status=running").await;
    let running = body["tasks"][0]["id"].as_i64().expect("running");
    assert!(waiting(&server, running).await.is_null());
}

async fn a_task_waits_for_its_run_after_and_for_its_retry_backoff(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let agent = RawAgent::register(&server, "a", 4, &["echo"]).await;
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64
        + 3_600_000_000;
    let body = submit(&server, json!({"task_type": "echo", "run_after_us": later})).await;
    let w = waiting(&server, body["id"].as_i64().expect("id")).await;
    assert_eq!(
        w["reasons"][0],
        json!({"kind": "not_before", "until_us": later, "cause": "run_after"}),
        "{w}"
    );
    assert_eq!(w["estimated_start_us"], later);

    let body = submit(
        &server,
        json!({"task_type": "echo", "retry_backoff_ms": 600_000}),
    )
    .await;
    let id = body["id"].as_i64().expect("id");
    let got = agent.claim(1, 0).await;
    assert_eq!(got[0].0, id);
    let (status, ack) = agent
        .post(
            "results",
            json!({"results": [{"task_id": id, "lease_token": got[0].1,
            "outcome": {"status": "failed", "error": "flaky"}}]}),
        )
        .await;
    assert_eq!(status, 200, "{ack}");
    let w = waiting(&server, id).await;
    assert_eq!(w["reasons"][0]["kind"], "not_before", "{w}");
    assert_eq!(w["reasons"][0]["cause"], "retry_backoff", "{w}");
    assert!(
        w["summary"].as_str().is_some_and(|s| s.contains("backoff")),
        "{w}"
    );
}

async fn a_task_with_a_free_slot_and_nothing_ahead_is_ready(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    // Registered, not claiming: the slot is free but nobody asks yet.
    let _agent = RawAgent::register(&server, "idle", 3, &["echo"]).await;
    let body = submit(&server, json!({"task_type": "echo"})).await;
    let w = waiting(&server, body["id"].as_i64().expect("id")).await;
    assert_eq!(
        w["reasons"],
        json!([{"kind": "ready", "free_slots": 3}]),
        "{w}"
    );
    assert!(
        w["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("ready")),
        "{w}"
    );
}
