//! Concurrency keys (named semaphores), on SQLite and PostgreSQL: a key's
//! limit is never exceeded while three keys flow, the keys finish together,
//! a full key holds up no other task, held tasks can be cancelled and
//! retried without leaking slots, a limit is shared by two workflows, and
//! "why is this waiting" names the full key and who holds it.

#[macro_use]
mod support;

use std::collections::HashMap;

use serde_json::{json, Value};
use support::{Backend, Database, RawAgent, Server, API_TOKEN};

on_both!(
    three_keys_flow_within_their_limit_finish_together_and_block_no_one,
    held_tasks_are_explained_cancelled_and_retried_without_leaking_slots,
    a_limit_shared_by_two_workflows_holds_across_both,
    a_key_needs_a_limit_in_range,
);

/// The hand-driven agents here do not heartbeat: the default heartbeat
/// timeout (20 s) keeps them online for the test.
fn env() -> Vec<(&'static str, &'static str)> {
    vec![("DROVER_TASK_TYPES", "echo")]
}

async fn task(server: &Server, id: i64) -> Value {
    let (status, body) = server.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn submit(server: &Server, tasks: Vec<Value>) -> Vec<i64> {
    let (status, body) = server
        .post("/api/v1/tasks", &json!({ "tasks": tasks }))
        .await;
    assert_eq!(status, 201, "{body}");
    body["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect()
}

async fn three_keys_flow_within_their_limit_finish_together_and_block_no_one(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let agent = RawAgent::register(&server, "wide", 64, &["echo"]).await;
    // Key by key, so a queue without keys would run all of A first.
    let mut key_of = HashMap::new();
    for key in ["a", "b", "c"] {
        let tasks = (0..50)
            .map(|i| {
                json!({"task_type": "echo", "payload": {"i": i},
                            "concurrency_key": format!("customer:{key}"), "concurrency_limit": 2})
            })
            .collect();
        for id in submit(&server, tasks).await {
            key_of.insert(id, key);
        }
    }
    let free: Vec<i64> = submit(
        &server,
        (0..20)
            .map(|i| json!({"task_type": "echo", "payload": {"free": i}}))
            .collect(),
    )
    .await;
    // The first claim takes the 20 free tasks and two of each key: the
    // 144 held tasks above them in the queue block nothing.
    let mut running: Vec<(i64, i64)> = agent.claim(64, 0).await;
    let first: Vec<i64> = running.iter().map(|(id, _)| *id).collect();
    assert!(
        free.iter().all(|id| first.contains(id)),
        "free tasks were held up: {first:?}"
    );
    assert_eq!(first.len(), 26, "{first:?}");
    let mut finished_round: HashMap<&str, usize> = HashMap::new();
    let mut round = 0;
    while !running.is_empty() {
        round += 1;
        let mut per_key: HashMap<&str, usize> = HashMap::new();
        for (id, _) in &running {
            if let Some(k) = key_of.get(id) {
                *per_key.entry(k).or_default() += 1;
            }
        }
        assert!(
            per_key.values().all(|&n| n <= 2),
            "round {round}: {per_key:?}"
        );
        for (id, lease) in running.drain(..) {
            let (status, body) = agent.succeed(id, lease).await;
            assert_eq!(status, 200, "{body}");
            if let Some(k) = key_of.get(&id) {
                finished_round.insert(k, round);
            }
        }
        running = agent.claim(64, 0).await;
        assert!(round < 100, "no progress");
    }
    // Round-robin between keys: each finished in the same round (25).
    let rounds: Vec<usize> = finished_round.values().copied().collect();
    let (lo, hi) = (
        rounds.iter().min().expect("min"),
        rounds.iter().max().expect("max"),
    );
    assert!(
        (hi - lo) * 10 <= *hi,
        "keys finished in rounds {finished_round:?}"
    );
    assert_eq!(server.stats().await.succeeded, 170);
    // Every slot was given back.
    for key in ["a", "b", "c"] {
        let (_, t) = server
            .post("/api/v1/tasks", &json!({"task_type": "echo", "concurrency_key": format!("customer:{key}"), "concurrency_limit": 2}))
            .await;
        assert_eq!(
            task(&server, t["id"].as_i64().expect("id")).await["held"],
            Value::Null,
            "{key}: a free slot"
        );
    }
}

async fn held_tasks_are_explained_cancelled_and_retried_without_leaking_slots(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let agent = RawAgent::register(&server, "a", 8, &["echo"]).await;
    let keyed = |n: i64| json!({"task_type": "echo", "payload": {"n": n}, "concurrency_key": "db:primary", "concurrency_limit": 1});
    let ids = submit(&server, vec![keyed(1), keyed(2), keyed(3)]).await;
    let (t1, t2, t3) = (ids[0], ids[1], ids[2]);
    assert_eq!(task(&server, t1).await.get("held"), None);
    let held = task(&server, t2).await;
    assert_eq!(held["held"], true, "{held}");
    assert_eq!(held["status"], "queued");
    let reason = &held["waiting"]["reasons"][0];
    assert_eq!(
        *reason,
        json!({"kind": "key_full", "key": "db:primary", "limit": 1, "admitted": 1, "held_by": [t1]}),
        "{held}"
    );
    assert!(held["waiting"]["summary"]
        .as_str()
        .is_some_and(|s| s.contains("\"db:primary\" is full (1/1)")));

    // A held task cancelled frees nothing (it held nothing).
    let (status, _) = server
        .post(&format!("/api/v1/tasks/{t2}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let got = agent.claim(8, 0).await;
    assert_eq!(
        got.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![t1],
        "only the admitted one"
    );
    // t1 ends: t3 takes its slot.
    agent.succeed(got[0].0, got[0].1).await;
    assert_eq!(task(&server, t3).await.get("held"), None);
    let got = agent.claim(8, 0).await;
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![t3]);
    // t2 retried while t3 runs: held again, then admitted when t3 ends.
    let (status, body) = server
        .post(&format!("/api/v1/tasks/{t2}/retry"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(task(&server, t2).await["held"], true);
    assert!(agent.claim(8, 0).await.is_empty(), "the key is full");
    agent.succeed(got[0].0, got[0].1).await;
    let got = agent.claim(8, 0).await;
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![t2]);
    // A running keyed task cancelled gives its slot back.
    let t4 = submit(&server, vec![keyed(4)]).await[0];
    assert_eq!(task(&server, t4).await["held"], true);
    let (status, _) = server
        .post(&format!("/api/v1/tasks/{t2}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        task(&server, t4).await.get("held"),
        None,
        "the cancelled task's slot went to t4"
    );
}

const FLOW: &str = r#"
name: NAME
inputs:
  customer: { type: string, required: true }
steps:
  - id: work
    type: task
    task_type: echo
    payload: { customer: "{{ inputs.customer }}" }
    concurrency: { key: "customer:{{ inputs.customer }}", limit: 1 }
"#;

async fn a_limit_shared_by_two_workflows_holds_across_both(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let agent = RawAgent::register(&server, "a", 8, &["echo"]).await;
    for name in ["billing", "shipping"] {
        let (status, body) = server
            .upload_workflow(API_TOKEN, &FLOW.replace("NAME", name))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    for (wf, customer) in [("billing", "42"), ("shipping", "42"), ("shipping", "7")] {
        let (status, body) = server
            .post(
                "/api/v1/runs",
                &json!({"workflow": wf, "inputs": {"customer": customer}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // The runs' first steps are created by the advance: wait for all three.
    let mut got = Vec::new();
    for _ in 0..100 {
        let (_, list) = server.get("/api/v1/tasks?task_type=echo").await;
        if list["tasks"].as_array().map(Vec::len) == Some(3) {
            got = agent.claim(8, 0).await;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Customer 42 runs once across both workflows; customer 7 besides.
    assert_eq!(got.len(), 2, "{got:?}");
    let mut keys = Vec::new();
    for (id, _) in &got {
        keys.push(
            task(&server, *id).await["concurrency_key"]
                .as_str()
                .expect("key")
                .to_string(),
        );
    }
    keys.sort();
    assert_eq!(keys, vec!["customer:42", "customer:7"]);
    for (id, lease) in got {
        agent.succeed(id, lease).await;
    }
    let last = agent.claim(8, 0).await;
    assert_eq!(
        last.len(),
        1,
        "the second customer:42 step, once the first ended"
    );
}

async fn a_key_needs_a_limit_in_range(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    for (body, field) in [
        (
            json!({"task_type": "echo", "concurrency_key": "k"}),
            "concurrency_limit",
        ),
        (
            json!({"task_type": "echo", "concurrency_limit": 2}),
            "concurrency_key",
        ),
        (
            json!({"task_type": "echo", "concurrency_key": "k", "concurrency_limit": 0}),
            "concurrency_limit",
        ),
        (
            json!({"task_type": "echo", "concurrency_key": "", "concurrency_limit": 1}),
            "concurrency_key",
        ),
    ] {
        let (status, err) = server.post("/api/v1/tasks", &body).await;
        assert_eq!(
            (status, err["error"]["field"].as_str()),
            (422, Some(field)),
            "{body}: {err}"
        );
    }
    // A workflow step's limit is checked when the definition is uploaded.
    let bad = FLOW.replace("NAME", "x").replace("limit: 1", "limit: 0");
    let (status, err) = server.upload_workflow(API_TOKEN, &bad).await;
    assert_eq!(status, 422, "{err}");
}
