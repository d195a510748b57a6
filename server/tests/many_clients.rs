//! Many small clients (issue: group commit and eager dispatch), on SQLite
//! and PostgreSQL: concurrent single submits share commits without sharing
//! failures, an idempotency key holds across one shared commit, a server
//! killed while submits wait acknowledged only what it committed, and an
//! agent's results bring it work for the slots they free, never more.

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use support::{
    agent_config, fast_timeouts, new_task, AgentProcess, Backend, Database, RawAgent, Server,
    API_TOKEN,
};

on_both!(
    a_failing_submit_fails_alone_and_its_neighbours_commit,
    one_idempotency_key_in_concurrent_submits_makes_one_task,
    a_killed_server_acknowledged_only_what_it_committed,
    results_bring_work_for_the_freed_slots_and_never_more,
    a_draining_agent_gets_no_work_with_its_results,
    a_real_agent_is_refilled_through_its_results,
    concurrent_results_of_many_agents_share_commits_and_refills,
);

fn env() -> Vec<(&'static str, &'static str)> {
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo,sleep"));
    env
}

/// Makes the database itself refuse to insert a task whose payload holds
/// `poison`: a failure that passes every check before the write, as a
/// full disk or a broken constraint would.
async fn poison_inserts(db: &Database) {
    match db.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url)
                .await
                .expect("open the SQLite file");
            c.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON tasks WHEN NEW.payload LIKE '%poison%' \
                 BEGIN SELECT RAISE(ABORT, 'poisoned payload'); END",
            )
            .await
            .expect("create trigger");
        }
        Backend::Postgres => {
            let mut c = db.pg().await;
            c.execute(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                   IF NEW.payload LIKE '%poison%' THEN RAISE EXCEPTION 'poisoned payload'; END IF; \
                   RETURN NEW; END $$",
            )
            .await
            .expect("create function");
            c.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION poison()",
            )
            .await
            .expect("create trigger");
        }
    }
}

/// `n` single-task submits at once; each answer's status and body, in order.
async fn submit_all(server: &Server, bodies: Vec<Value>) -> Vec<(u16, Value)> {
    let calls: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (http, url) = (server.http.clone(), format!("{}/api/v1/tasks", server.url));
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(API_TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .expect("submit");
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut out = Vec::new();
    for call in calls {
        out.push(call.await.expect("submit task"));
    }
    out
}

async fn a_failing_submit_fails_alone_and_its_neighbours_commit(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    poison_inserts(&db).await;
    // Rounds of 64 submits at once: one refused by its checks, one by the
    // database, the rest fine. Several rounds, so that the poisoned one
    // shares a commit with others at least once.
    for round in 0..5 {
        let mut bodies: Vec<Value> = (0..62)
            .map(|i| json!({"task_type": "echo", "payload": {"round": round, "i": i}}))
            .collect();
        bodies.insert(
            20,
            json!({"task_type": "echo", "payload": {"poison": true}}),
        );
        bodies.insert(40, json!({"task_type": "echo", "urgency": -5}));
        let answers = submit_all(&server, bodies).await;
        for (i, (status, body)) in answers.iter().enumerate() {
            match i {
                20 => assert!(
                    *status >= 500,
                    "the poisoned submit fails on its own: {status} {body}"
                ),
                40 => {
                    assert_eq!(*status, 422, "{body}");
                    assert_eq!(body["error"]["field"], "urgency", "{body}");
                }
                _ => {
                    assert_eq!(*status, 201, "a good submit beside bad ones: {body}");
                    let id = body["id"].as_i64().expect("id");
                    let task = server.task(id).await;
                    assert_eq!(task.task.payload["round"], round);
                }
            }
        }
    }
    assert_eq!(server.stats().await.queued, 5 * 62, "every good task, once");
    let write = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "submits",
    };
    assert!(
        shared_commits(&server, write).await,
        "concurrent submits shared commits"
    );
}

async fn one_idempotency_key_in_concurrent_submits_makes_one_task(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let bodies = (0..100)
        .map(|i| json!({"task_type": "echo", "payload": {"i": i}, "idempotency_key": "once"}))
        .collect();
    let answers = submit_all(&server, bodies).await;
    let created: Vec<&Value> = answers
        .iter()
        .map(|(_, b)| b)
        .filter(|b| b["created"] == true)
        .collect();
    assert_eq!(created.len(), 1, "exactly one submit made the task");
    let id = created[0]["id"].as_i64().expect("id");
    for (status, body) in &answers {
        assert!(*status == 201 || *status == 200, "{status} {body}");
        assert_eq!(
            body["id"].as_i64(),
            Some(id),
            "every submit names the one task"
        );
    }
    assert_eq!(server.stats().await.queued, 1);
}

async fn a_killed_server_acknowledged_only_what_it_committed(backend: Backend) {
    let db = Database::new(backend).await;
    let mut server = Server::start(&db, &env()).await;
    // Clients submit one task per request until the server dies under them.
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..16 {
        let (http, url, acked) = (
            reqwest::Client::new(),
            format!("{}/api/v1/tasks", server.url),
            Arc::clone(&acked),
        );
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("c{c}-{i}");
                let sent = http
                    .post(&url)
                    .bearer_auth(API_TOKEN)
                    .json(&json!({"task_type": "echo", "payload": {"key": key}, "idempotency_key": key}))
                    .send()
                    .await;
                let Ok(r) = sent else { return };
                if r.status().as_u16() != 201 {
                    return;
                }
                let Ok(body) = r.json::<Value>().await else {
                    return;
                };
                let id = body["id"].as_i64().expect("id");
                acked.lock().expect("acked").push((key, id));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.kill();
    for c in clients {
        c.await.expect("client");
    }
    let acked = acked.lock().expect("acked").clone();
    assert!(acked.len() > 50, "the clients got going: {}", acked.len());
    server.restart().await;
    for (key, id) in &acked {
        let task = server.task(*id).await;
        assert_eq!(
            task.task.idempotency_key.as_deref(),
            Some(key.as_str()),
            "acknowledged task {id} survived the kill as itself"
        );
    }
}

async fn results_bring_work_for_the_freed_slots_and_never_more(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let agent = RawAgent::register(&server, "eager", 2, &["echo"]).await;
    server
        .submit(
            (0..5)
                .map(|i| new_task("echo", json!({ "i": i })))
                .collect(),
        )
        .await;
    let held = agent.claim(2, 0).await;
    assert_eq!(held.len(), 2);

    // One result frees one slot: asking for ten brings one task.
    let (status, body) = agent
        .post(
            "results",
            json!({ "results": [succeeded(held[0])], "want": 10 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["status"], "accepted");
    let brought = body["tasks"].as_array().expect("tasks").clone();
    assert_eq!(brought.len(), 1, "capacity 2, one running: {body}");
    let agents = server.agents().await;
    assert_eq!(agents[0].running, 2, "the server counts the task it sent");

    // Without `want`, results bring nothing (and older agents see no field).
    let next = (
        brought[0]["task_id"].as_i64().expect("id"),
        brought[0]["lease_token"].as_i64().expect("lease"),
    );
    let (status, body) = agent
        .post("results", json!({ "results": [succeeded(next)] }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("tasks").is_none(), "{body}");

    // A stale result frees nothing and so brings nothing beyond the free slot.
    let (_, body) = agent
        .post(
            "results",
            json!({ "results": [succeeded(next), succeeded(held[1])], "want": 10 }),
        )
        .await;
    assert_eq!(body["results"][0]["status"], "stale");
    assert_eq!(
        body["tasks"].as_array().map(Vec::len),
        Some(2),
        "two free slots, two tasks left: {body}"
    );
    assert_eq!(server.agents().await[0].running, 2);
    assert_eq!(server.stats().await.queued, 0);
}

async fn a_draining_agent_gets_no_work_with_its_results(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let agent = RawAgent::register(&server, "leaving", 2, &["echo"]).await;
    server
        .submit(
            (0..3)
                .map(|i| new_task("echo", json!({ "i": i })))
                .collect(),
        )
        .await;
    let held = agent.claim(1, 0).await;
    let (status, body) = server
        .post(&format!("/api/v1/agents/{}/drain", agent.id), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = agent
        .post(
            "results",
            json!({ "results": [succeeded(held[0])], "want": 2 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("tasks").is_none(),
        "a draining agent gets no work: {body}"
    );
    assert_eq!(server.stats().await.queued, 2);
}

async fn a_real_agent_is_refilled_through_its_results(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db, &env()).await;
    let _agent = AgentProcess::start(&server, db.dir(), "busy", &agent_config(4, &[]));
    let ids = server
        .submit(
            (0..200)
                .map(|i| new_task("sleep", json!({ "ms": 5, "i": i })))
                .collect(),
        )
        .await;
    let stats = server
        .wait_finished(ids.len() as i64, Duration::from_secs(60))
        .await;
    assert_eq!(stats.succeeded, 200);
    let eager = server
        .metric("drover_tasks_eager_dispatched_total ")
        .await
        .unwrap_or(0.0);
    assert!(
        eager > 0.0,
        "the agent's results brought it work (eager dispatch)"
    );
    let agents = server.agents().await;
    assert_eq!(agents[0].running, 0, "every slot came back");
}

async fn concurrent_results_of_many_agents_share_commits_and_refills(backend: Backend) {
    let db = Database::new(backend).await;
    // The hand-driven agents do not heartbeat: on a busy machine the 24
    // registrations and claims outlasted the 2 s timeout, the first agent
    // was swept offline and its result came back stale.
    let mut env = env();
    env.retain(|(k, _)| *k != "DROVER_HEARTBEAT_TIMEOUT");
    env.push(("DROVER_HEARTBEAT_TIMEOUT", "30s"));
    let server = Server::spawn_app(&db, &env).await;
    let mut agents = Vec::new();
    for i in 0..24 {
        agents.push(RawAgent::register(&server, &format!("a{i}"), 1, &["echo"]).await);
    }
    server
        .submit(
            (0..48)
                .map(|i| new_task("echo", json!({ "i": i })))
                .collect(),
        )
        .await;
    let mut held = Vec::new();
    for a in &agents {
        let got = a.claim(1, 0).await;
        assert_eq!(got.len(), 1);
        held.push(got[0]);
    }
    // Every agent reports at once and asks for its next task.
    let calls: Vec<_> = agents
        .iter()
        .zip(&held)
        .map(|(a, &lease)| {
            let a = a.via(&server);
            tokio::spawn(async move {
                a.post(
                    "results",
                    json!({ "results": [succeeded(lease)], "want": 1 }),
                )
                .await
            })
        })
        .collect();
    let mut brought = std::collections::HashSet::new();
    for call in calls {
        let (status, body) = call.await.expect("results");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["results"][0]["status"], "accepted", "{body}");
        let tasks = body["tasks"].as_array().cloned().unwrap_or_default();
        assert!(tasks.len() <= 1, "capacity 1: {body}");
        for t in tasks {
            assert!(
                brought.insert(t["task_id"].as_i64().expect("id")),
                "a task went to two agents"
            );
        }
    }
    assert_eq!(brought.len(), 24, "each freed slot was refilled");
    let stats = server.stats().await;
    assert_eq!((stats.succeeded, stats.running, stats.queued), (24, 24, 0));
    for a in server.agents().await {
        assert_eq!(a.running, 1, "{} holds exactly its capacity", a.name);
    }
    let write = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "results",
    };
    assert!(
        shared_commits(&server, write).await,
        "concurrent results shared transactions"
    );
}

/// Whether some write of kind `write` held more than one request (this
/// process's metrics: the in-process servers of this file share them).
async fn shared_commits(server: &Server, write: &str) -> bool {
    let series = |part: &str| format!("drover_group_commit_requests_{part}{{write=\"{write}\"}} ");
    let sum = server.metric(&series("sum")).await.unwrap_or(0.0);
    let count = server.metric(&series("count")).await.unwrap_or(0.0);
    count > 0.0 && sum > count
}

fn succeeded((task_id, lease_token): (i64, i64)) -> Value {
    json!({ "task_id": task_id, "lease_token": lease_token, "outcome": { "status": "succeeded", "output": {} } })
}
