//! The approvals inbox finds an approver's approvals however many newer
//! ones others have: it pages back past the newest page instead of
//! filtering only that page — on SQLite and PostgreSQL.

#[macro_use]
mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::{eventually, fast_timeouts, Backend, Database, Server, API_TOKEN};

on_both!(an_approver_sees_approvals_older_than_a_page_of_others);

/// A one-step workflow whose approval only `user` may decide.
fn gate(name: &str, user: &str) -> String {
    format!(
        "name: {name}\nsteps:\n  - id: ok\n    type: approval\n    approvers: {{ users: [{user}] }}\n    message: go?\n"
    )
}

async fn inbox(server: &Server, token: &str) -> Vec<Value> {
    let (status, body) = server
        .call_as(token, Method::GET, "/api/v1/approvals", None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["approvals"].as_array().cloned().unwrap_or_default()
}

async fn start(server: &Server, workflow: &str) -> i64 {
    let (status, run) = server
        .post("/api/v1/runs", &json!({ "workflow": workflow }))
        .await;
    assert_eq!(status, 201, "{run}");
    run["id"].as_i64().expect("run id")
}

async fn waiting(server: &Server, run: i64) {
    eventually(
        Duration::from_secs(60),
        &format!("run {run} to wait for its approval"),
        || async {
            let (_, body) = server.get(&format!("/api/v1/runs/{run}")).await;
            (body["status"] == "waiting_approval").then_some(())
        },
    )
    .await;
}

async fn an_approver_sees_approvals_older_than_a_page_of_others(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db, &fast_timeouts()).await;
    for (name, user) in [("alices", "alice"), ("bobs", "bob")] {
        let (status, body) = server.upload_workflow(API_TOKEN, &gate(name, user)).await;
        assert_eq!(status, 201, "{body}");
    }
    let alice = server.create_user("alice", "approver").await;
    let bob = server.create_user("bob", "approver").await;

    // Alice's approval first, then a full page (500) of Bob's after it.
    let first = start(&server, "alices").await;
    waiting(&server, first).await;
    let mut last = first;
    for _ in 0..500 {
        last = start(&server, "bobs").await;
    }
    waiting(&server, last).await;
    let bobs = eventually(Duration::from_secs(60), "Bob's 500 approvals", || async {
        let list = inbox(&server, &bob).await;
        (list.len() == 500).then_some(list)
    })
    .await;
    assert!(bobs.iter().all(|a| a["workflow"] == "bobs"));

    let alices = inbox(&server, &alice).await;
    assert_eq!(alices.len(), 1, "Alice's inbox: {alices:?}");
    assert_eq!(alices[0]["run_id"], first);
}
