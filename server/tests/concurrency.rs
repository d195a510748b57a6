//! Concurrency keys (named semaphores), on SQLite and PostgreSQL: a key's
//! limit is never exceeded while three keys flow, the keys finish together,
//! a full key holds up no other task, held tasks can be cancelled and
//! retried without leaking slots, a limit is shared by two workflows, and
//! "why is this waiting" names the full key and who holds it.

#[macro_use]
mod support;

use std::collections::HashMap;

use serde_json::{json, Value};
use support::{agent_config, AgentProcess, Backend, Database, RawAgent, Server, API_TOKEN};

on_both!(
    three_keys_flow_within_their_limit_finish_together_and_block_no_one,
    held_tasks_are_explained_cancelled_and_retried_without_leaking_slots,
    a_limit_shared_by_two_workflows_holds_across_both,
    a_key_needs_a_limit_in_range,
    a_task_types_limit_holds_for_tasks_and_workflow_steps,
    real_agents_reporting_at_once_never_run_more_than_a_keys_limit,
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
    server.keys_settled().await;
    body["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect()
}

/// An agent's result, then the key admission it sets off.
async fn succeed(server: &Server, agent: &RawAgent, id: i64, lease: i64) {
    let (status, body) = agent.succeed(id, lease).await;
    assert_eq!(status, 200, "{body}");
    server.keys_settled().await;
}

/// A task action (cancel, retry), then the key admission it sets off.
async fn act(server: &Server, path: &str) -> (u16, Value) {
    let answer = server.post(path, &json!({})).await;
    server.keys_settled().await;
    answer
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
        server.keys_settled().await;
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
        server.keys_settled().await;
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
    let (status, _) = act(&server, &format!("/api/v1/tasks/{t2}/cancel")).await;
    assert_eq!(status, 200);
    let got = agent.claim(8, 0).await;
    assert_eq!(
        got.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![t1],
        "only the admitted one"
    );
    // t1 ends: t3 takes its slot.
    succeed(&server, &agent, got[0].0, got[0].1).await;
    assert_eq!(task(&server, t3).await.get("held"), None);
    let got = agent.claim(8, 0).await;
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![t3]);
    // t2 retried while t3 runs: held again, then admitted when t3 ends.
    let (status, body) = act(&server, &format!("/api/v1/tasks/{t2}/retry")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(task(&server, t2).await["held"], true);
    assert!(agent.claim(8, 0).await.is_empty(), "the key is full");
    succeed(&server, &agent, got[0].0, got[0].1).await;
    let got = agent.claim(8, 0).await;
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![t2]);
    // A running keyed task cancelled gives its slot back.
    let t4 = submit(&server, vec![keyed(4)]).await[0];
    assert_eq!(task(&server, t4).await["held"], true);
    let (status, _) = act(&server, &format!("/api/v1/tasks/{t2}/cancel")).await;
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
            server.keys_settled().await;
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
        succeed(&server, &agent, id, lease).await;
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

/// `DROVER_TYPE_CONCURRENCY=echo=2`: tasks of the type without a key of
/// their own share the key `type:echo`, whether submitted or made by a
/// workflow step; a task naming its own key is not bound by the type's.
async fn a_task_types_limit_holds_for_tasks_and_workflow_steps(backend: Backend) {
    let db = Database::new(backend).await;
    let mut env = env();
    env.push(("DROVER_TYPE_CONCURRENCY", "echo=2"));
    let server = Server::spawn_app(&db, &env).await;
    let agent = RawAgent::register(&server, "a", 8, &["echo"]).await;
    let plain = |n: i64| json!({"task_type": "echo", "payload": {"n": n}});
    let ids = submit(&server, (0..4).map(plain).collect()).await;
    let (status, wf) = server
        .upload_workflow(
            API_TOKEN,
            "name: step\nsteps:\n  - id: s\n    type: task\n    task_type: echo\n",
        )
        .await;
    assert_eq!(status, 201, "{wf}");
    let (status, run) = server
        .post("/api/v1/runs", &json!({"workflow": "step"}))
        .await;
    assert_eq!(status, 201, "{run}");
    let own = submit(
        &server,
        vec![json!({"task_type": "echo", "concurrency_key": "mine", "concurrency_limit": 5})],
    )
    .await;
    let got: Vec<i64> = agent
        .claim(8, 200)
        .await
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        got.len(),
        3,
        "two of the type's, and the one with its own key: {got:?}"
    );
    assert!(got.contains(&own[0]));
    let held = task(&server, ids[3]).await;
    assert_eq!(held["concurrency_key"], "type:echo", "{held}");
    assert_eq!(held["waiting"]["reasons"][0]["kind"], "key_full", "{held}");
    assert_eq!(held["waiting"]["reasons"][0]["limit"], 2);
    let step_task = {
        let (_, run) = server.get(&format!("/api/v1/runs/{}", run["id"])).await;
        run["steps"][0]["task_ids"][0].as_i64().unwrap()
    };
    assert_eq!(
        task(&server, step_task).await["concurrency_key"],
        "type:echo"
    );
}

/// Two real agents report results at once, so the slots of a key are freed
/// by concurrent results transactions (and refilled by them or by the
/// leader's pass): by the server's own clock, no more tasks of a key ever
/// ran at once than its limit, and every task ran.
async fn real_agents_reporting_at_once_never_run_more_than_a_keys_limit(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &[("DROVER_TASK_TYPES", "sleep")]).await;
    let _agents: Vec<AgentProcess> = (0..2)
        .map(|i| AgentProcess::start(&server, db.dir(), &format!("w{i}"), &agent_config(8, &[])))
        .collect();
    let limits = [("shared", 3, 40), ("other", 2, 20)];
    let mut tasks = Vec::new();
    for (key, limit, n) in limits {
        for i in 0..n {
            tasks.push(json!({"task_type": "sleep", "payload": {"ms": 20, "i": i},
                "concurrency_key": key, "concurrency_limit": limit}));
        }
    }
    let ids = submit(&server, tasks).await;
    let stats = server
        .wait_finished(ids.len() as i64, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(stats.succeeded, ids.len() as i64, "{stats:?}");
    for (key, limit, _) in limits {
        // Each attempt holds its key's slot from its claim to its end.
        let mut edges: Vec<(i64, i64)> = Vec::new();
        for id in &ids {
            let t = server.task(*id).await;
            if t.task.concurrency_key.as_deref() != Some(key) {
                continue;
            }
            for a in &t.attempt_history {
                edges.push((a.claimed_at_us, 1));
                edges.push((a.finished_at_us.expect("finished"), -1));
            }
        }
        // Ends before starts at the same microsecond: a slot freed and
        // taken in one instant is not two at once.
        edges.sort();
        let (mut now, mut most) = (0, 0);
        for (_, d) in edges {
            now += d;
            most = most.max(now);
        }
        assert!(most <= limit, "{key}: {most} ran at once, limit {limit}");
        assert_eq!(
            most, limit,
            "{key}: its limit was reached (16 slots for it)"
        );
    }
}
