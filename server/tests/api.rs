//! The public API's answers to bad input: the right 4xx, a JSON body naming
//! the field, and nothing stored.

mod support;

use serde_json::json;
use support::{Backend, Database, Server};

async fn server() -> (Server, Database) {
    let db = Database::new(Backend::Sqlite).await;
    let server = Server::spawn_app(
        &db,
        &[
            ("DROVER_TASK_TYPES", "echo"),
            ("DROVER_MAX_BODY_BYTES", "65536"),
        ],
    )
    .await;
    (server, db)
}

async fn expect_error(server: &Server, body: serde_json::Value, status: u16, field: &str) {
    let (got, reply) = server.post("/api/v1/tasks", &body).await;
    assert_eq!(got, status, "{body} -> {reply}");
    assert_eq!(reply["error"]["field"], json!(field), "{body} -> {reply}");
    assert!(reply["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn bad_tasks_are_rejected_with_the_field_named_and_nothing_stored() {
    let (server, _db) = server().await;
    expect_error(
        &server,
        json!({"task_type": "echo", "urgency": 11}),
        422,
        "urgency",
    )
    .await;
    expect_error(
        &server,
        json!({"task_type": "echo", "importance": -1}),
        422,
        "importance",
    )
    .await;
    expect_error(
        &server,
        json!({"task_type": "echo", "time_sensitivity": "high"}),
        400,
        "time_sensitivity",
    )
    .await;
    expect_error(
        &server,
        json!({"task_type": "echo", "priority": 3}),
        400,
        "priority",
    )
    .await;
    expect_error(&server, json!({"task_type": "resize"}), 422, "task_type").await;
    expect_error(&server, json!({"task_type": "bad type!"}), 422, "task_type").await;
    expect_error(&server, json!({"payload": {}}), 400, "task_type").await;
    expect_error(
        &server,
        json!({"task_type": "echo", "max_attempts": 0}),
        422,
        "max_attempts",
    )
    .await;
    expect_error(
        &server,
        json!({"task_type": "echo", "timeout_ms": 0}),
        422,
        "timeout_ms",
    )
    .await;
    expect_error(
        &server,
        json!({"task_type": "echo", "required_labels": ["ok", ""]}),
        422,
        "required_labels[1]",
    )
    .await;
    expect_error(
        &server,
        json!({"tasks": [{"task_type": "echo"}, {"task_type": "echo", "urgency": 99}]}),
        422,
        "tasks[1].urgency",
    )
    .await;
    expect_error(&server, json!({"tasks": []}), 422, "tasks").await;
    // A batch with one bad task stores none of them.
    assert_eq!(server.stats().await.queued, 0);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_400_and_413() {
    let (server, _db) = server().await;
    let r = server
        .http
        .post(format!("{}/api/v1/tasks", server.url))
        .bearer_auth(support::API_TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_json");

    let big = "x".repeat(100_000);
    let (status, body) = server
        .post(
            "/api/v1/tasks",
            &json!({"task_type": "echo", "payload": big}),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large");
    assert_eq!(server.stats().await.queued, 0);
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    let (server, _db) = server().await;
    for (method, path) in [
        ("GET", "/api/v1/tasks"),
        ("POST", "/api/v1/tasks"),
        ("GET", "/api/v1/agents"),
        ("GET", "/api/v1/agents/1/history"),
        ("POST", "/api/v1/agent/claim"),
    ] {
        let r = server
            .http
            .request(method.parse().unwrap(), format!("{}{path}", server.url))
            .bearer_auth("wrong")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{method} {path}");
    }
    // The enrollment token is not an operator token, nor the other way round.
    let r = server
        .http
        .get(format!("{}/api/v1/tasks", server.url))
        .bearer_auth(support::ENROLL_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = server
        .http
        .post(format!("{}/api/v1/agent/register", server.url))
        .bearer_auth(support::API_TOKEN)
        .json(&json!({"name": "a", "hostname": "h", "task_types": ["echo"], "capacity": 1, "version": "1", "protocol": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn bad_registrations_and_lookups_name_the_problem() {
    let (server, _db) = server().await;
    let register = |body: serde_json::Value| {
        let server = &server;
        async move {
            let r = server
                .http
                .post(format!("{}/api/v1/agent/register", server.url))
                .bearer_auth(support::ENROLL_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (s, b) = register(json!({"name": "a", "hostname": "h", "task_types": ["echo"], "capacity": 0, "version": "1", "protocol": 1})).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("capacity")));
    let (s, b) = register(json!({"name": "a", "hostname": "h", "task_types": [], "capacity": 1, "version": "1", "protocol": 1})).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("task_types")));
    let (s, b) = register(json!({"name": "a", "hostname": "h", "task_types": ["echo"], "capacity": 1, "version": "1", "protocol": 99})).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("protocol")));

    let (s, b) = server.get("/api/v1/tasks/424242").await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, b) = server.get("/api/v1/tasks?status=sleeping").await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("status")));
    let (s, b) = server.get("/api/v1/tasks?status=queued,sleeping").await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("status")));
    let (s, b) = server.get("/api/v1/tasks?created_after=yesterday").await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("created_after"))
    );
    let (s, b) = server
        .get("/api/v1/tasks?created_before=2026-12-07%2010:00")
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("created_before"))
    );
    let (s, b) = server.get("/api/v1/runs?status=running,nope").await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("status")));
    let (s, b) = server.get("/api/v1/runs?created_after=soon").await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("created_after"))
    );
    let (s, b) = server.get("/api/v1/runs?limit=many").await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("limit")));
    let (s, b) = server.get("/api/v1/runs?q=a%00").await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("q")));
    let (s, b) = server.get("/api/v1/runs?status=running,failed").await;
    assert_eq!((s, b["total"].as_i64()), (200, Some(0)), "{b}");
    let (s, b) = server.get("/api/v1/tasks?state=sleeping").await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("state")));
    let (s, b) = server.get("/api/v1/tasks?state=ready&status=failed").await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("state")));
    let long = "x".repeat(201);
    let (s, b) = server.get(&format!("/api/v1/tasks?q={long}")).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("q")));
    let (s, _) = server.post("/api/v1/tasks/424242/cancel", &json!({})).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn idempotency_key_returns_the_same_task() {
    let (server, _db) = server().await;
    let body = json!({"task_type": "echo", "idempotency_key": "invoice-7", "payload": {"n": 1}});
    let (s1, first) = server.post("/api/v1/tasks", &body).await;
    let (s2, again) = server.post("/api/v1/tasks", &body).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["created"], json!(false));
    assert_eq!(server.stats().await.queued, 1);
}

#[tokio::test]
async fn roles_decide_what_a_user_may_do() {
    let (server, _db) = server().await;
    let (status, viewer) = server
        .post("/api/v1/users", &json!({"name": "vera", "role": "viewer"}))
        .await;
    assert_eq!(status, 201, "{viewer}");
    let (status, operator) = server
        .post(
            "/api/v1/users",
            &json!({"name": "otto", "role": "operator", "password": "hunter2hunter2"}),
        )
        .await;
    assert_eq!(status, 201, "{operator}");
    let as_user = |token: &str, method: &str, path: &str, body: serde_json::Value| {
        let req = server
            .http
            .request(method.parse().unwrap(), format!("{}{path}", server.url))
            .bearer_auth(token.to_string())
            .json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let vt = viewer["token"].as_str().unwrap();
    let ot = operator["token"].as_str().unwrap();
    assert_eq!(as_user(vt, "GET", "/api/v1/tasks", json!(null)).await, 200);
    assert_eq!(
        as_user(vt, "POST", "/api/v1/tasks", json!({"task_type": "echo"})).await,
        403
    );
    assert_eq!(
        as_user(
            vt,
            "POST",
            "/api/v1/users",
            json!({"name": "x", "role": "admin"})
        )
        .await,
        403
    );
    assert_eq!(
        as_user(ot, "POST", "/api/v1/tasks", json!({"task_type": "echo"})).await,
        201
    );
    assert_eq!(
        as_user(
            ot,
            "POST",
            "/api/v1/users",
            json!({"name": "x", "role": "admin"})
        )
        .await,
        403
    );
    assert_eq!(
        as_user(ot, "POST", "/api/v1/agents/1/drain", json!({})).await,
        403
    );
    assert_eq!(
        server.stats().await.queued,
        1,
        "only the operator's task was stored"
    );

    let (s, _) = server
        .post("/api/v1/users", &json!({"name": "otto", "role": "viewer"}))
        .await;
    assert_eq!(s, 409, "names are unique");
    let (s, b) = server
        .post(
            "/api/v1/users",
            &json!({"name": "short", "role": "viewer", "password": "123"}),
        )
        .await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("password")));
    let (s, b) = server
        .post("/api/v1/users", &json!({"name": "r", "role": "king"}))
        .await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("role")));

    // Signing in with the password issues a working token; a wrong one gets 401.
    let (s, signed) = server
        .post(
            "/api/v1/tokens",
            &json!({"name": "otto", "password": "hunter2hunter2"}),
        )
        .await;
    assert_eq!(s, 201);
    let (_, me) = {
        let r = server
            .http
            .get(format!("{}/api/v1/me", server.url))
            .bearer_auth(signed["token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(me["role"], "operator");
    let (s, _) = server
        .post(
            "/api/v1/tokens",
            &json!({"name": "otto", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn users_can_be_added_from_the_command_line() {
    let db = Database::new(Backend::Sqlite).await;
    let bin = env!("CARGO_BIN_EXE_drover-server");
    let out = std::process::Command::new(bin)
        .args(["user", "add", "carla", "--role", "approver"])
        .env("DROVER_DATABASE_URL", &db.url)
        .env("DROVER_DATA_DIR", db.dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("API token (shown once): "))
        .expect("token printed")
        .to_string();
    let bad = std::process::Command::new(bin)
        .args(["user", "add", "x", "--role", "emperor"])
        .env("DROVER_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role"));

    let server = Server::spawn_app(&db, &[]).await;
    let r = server
        .http
        .get(format!("{}/api/v1/me", server.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("carla"), Some("approver"))
    );
}

#[tokio::test]
async fn repeated_failed_sign_ins_slow_the_address_down() {
    let (server, _db) = server().await;
    let (s, _) = server
        .post(
            "/api/v1/users",
            &json!({"name": "ann", "role": "approver", "password": "correct-horse"}),
        )
        .await;
    assert_eq!(s, 201);
    for _ in 0..5 {
        let (s, _) = server
            .post(
                "/api/v1/tokens",
                &json!({"name": "ann", "password": "guess"}),
            )
            .await;
        assert_eq!(s, 401);
    }
    // Slowed down now, even with the right password, so the refusal confirms nothing.
    let (s, body) = server
        .post(
            "/api/v1/tokens",
            &json!({"name": "ann", "password": "correct-horse"}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (429, Some("too_many_attempts"))
    );
    let (s, _) = server
        .post(
            "/api/v1/tokens",
            &json!({"name": "bob", "password": "whatever1"}),
        )
        .await;
    assert_eq!(
        s, 429,
        "the address is slowed down whatever name it tries (other addresses are not: tests/signin.rs)"
    );
}

/// The list's query parameters as a client sends them: several statuses,
/// a search, a time with an offset, the cursor, and the total beside it.
#[tokio::test]
async fn tasks_are_found_by_search_status_and_time_with_a_total() {
    let (server, _db) = server().await;
    let mut ids = Vec::new();
    for n in 0..7 {
        let (s, b) = server
            .post(
                "/api/v1/tasks",
                &json!({"task_type": "echo", "payload": {"order": format!("ORD-{n}")}}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        ids.push(b["id"].as_i64().unwrap());
    }
    let (s, _) = server
        .post(&format!("/api/v1/tasks/{}/cancel", ids[0]), &json!({}))
        .await;
    assert_eq!(s, 200);

    let (s, b) = server.get("/api/v1/tasks?limit=3").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["total"].as_i64(), b["total_more"].as_bool()),
        (Some(7), Some(false))
    );
    assert_eq!(b["tasks"].as_array().unwrap().len(), 3);
    let next = b["next_before_id"].as_i64().unwrap();
    let (_, b) = server
        .get(&format!("/api/v1/tasks?limit=3&before_id={next}"))
        .await;
    assert_eq!(b["tasks"][0]["id"].as_i64(), Some(next - 1));
    assert_eq!(
        b["total"].as_i64(),
        Some(7),
        "the total is the filter's, not the page's"
    );

    let (_, b) = server.get("/api/v1/tasks?q=ord-3").await;
    assert_eq!(b["total"].as_i64(), Some(1), "{b}");
    assert_eq!(b["tasks"][0]["id"].as_i64(), Some(ids[3]));

    let (_, b) = server.get("/api/v1/tasks?status=cancelled,queued").await;
    assert_eq!(b["total"].as_i64(), Some(7), "{b}");
    let (_, b) = server.get("/api/v1/tasks?status=cancelled").await;
    assert_eq!(b["total"].as_i64(), Some(1), "{b}");

    // A time with an offset is the same instant in UTC.
    let (_, b) = server
        .get("/api/v1/tasks?created_after=2001-01-01T01:00:00%2B01:00&created_before=2001-01-01T00:00:01Z")
        .await;
    assert_eq!(b["total"].as_i64(), Some(0), "{b}");
    let (_, b) = server
        .get("/api/v1/tasks?created_after=2001-01-01T00:00:00Z")
        .await;
    assert_eq!(b["total"].as_i64(), Some(7), "{b}");
}

#[tokio::test]
async fn lists_sort_by_a_column_only_while_few_rows_match() {
    let db = Database::new(Backend::Sqlite).await;
    let server = Server::spawn_app(&db, &[("DROVER_TASK_TYPES", "zeta,alpha,bulk")]).await;
    let tasks = |task_type: &str, n: usize| -> Vec<drover_protocol::api::NewTask> {
        (0..n)
            .map(|_| drover_protocol::api::NewTask {
                task_type: task_type.into(),
                ..Default::default()
            })
            .collect()
    };
    let few = server.submit(tasks("zeta", 3)).await;
    let alpha = server.submit(tasks("alpha", 2)).await;

    let (s, b) = server.get("/api/v1/tasks?sort=type&limit=2").await;
    assert_eq!(s, 200, "{b}");
    let ids: Vec<i64> = b["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, alpha, "alpha first, ties oldest first");
    let (_, b) = server
        .get(&format!(
            "/api/v1/tasks?sort=-type&limit=10&before_id={}",
            few[2]
        ))
        .await;
    assert_eq!(b["tasks"][0]["id"].as_i64(), Some(few[1]), "{b}");

    let (s, b) = server.get("/api/v1/tasks?sort=payload").await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("sort")));
    let (s, b) = server.get("/api/v1/runs?sort=inputs").await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("sort")));
    let (s, b) = server.get("/api/v1/tasks?finished_after=soon").await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("finished_after"))
    );

    // Past the bound, only the id (the index's order) sorts; a filter that
    // narrows the list makes the column sortable again.
    for _ in 0..10 {
        server.submit(tasks("bulk", 1_000)).await;
    }
    let (s, b) = server.get("/api/v1/tasks?sort=type&limit=1").await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("sort")),
        "{b}"
    );
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("narrow the filters"));
    let (s, _) = server.get("/api/v1/tasks?sort=id&limit=1").await;
    assert_eq!(s, 200);
    let (s, b) = server
        .get("/api/v1/tasks?sort=-type&task_type=zeta&limit=1")
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["tasks"][0]["id"].as_i64(), Some(few[2]));
}

#[tokio::test]
async fn an_agent_history_says_who_drained_and_enabled_it() {
    let (server, _db) = server().await;
    let (s, b) = server.get("/api/v1/agents/424242/history").await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, b) = server
        .call_as(
            support::ENROLL_TOKEN,
            reqwest::Method::POST,
            "/api/v1/agent/register",
            Some(&json!({"name": "h1", "hostname": "host-1", "task_types": ["echo"], "capacity": 2, "version": "1", "protocol": 1})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let id = b["agent_id"].as_i64().unwrap();
    for verb in ["drain", "enable"] {
        let (s, b) = server
            .post(&format!("/api/v1/agents/{id}/{verb}"), &json!({}))
            .await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = server.get(&format!("/api/v1/agents/{id}/history")).await;
    assert_eq!(s, 200, "{b}");
    let actions: Vec<(&str, &str)> = b["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("agent.enabled", "admin"),
            ("agent.drained", "admin"),
            ("agent.registered", &*format!("agent:{id}")),
        ]
    );
}
