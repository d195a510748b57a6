//! Rate limits on SQLite and PostgreSQL with a real agent: a limit of 20
//! starts a second holds within 10 % over 10 seconds while other types run
//! freely, a rate-held task says so, a key's limit releases through the
//! key's own admission, and removing a limit releases what it held.

#[macro_use]
mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::{
    agent_config, eventually, fast_timeouts, new_task, AgentProcess, Backend, Database, Server,
};

on_both!(
    twenty_a_second_holds_within_ten_percent_over_ten_seconds,
    a_key_limit_releases_through_the_keys_admission,
);

async fn setup(backend: Backend) -> (Server, AgentProcess, Database, String) {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo,sleep,fail"));
    let server = Server::spawn_app(&db, &env).await;
    let agent = AgentProcess::start(&server, db.dir(), "worker", &agent_config(64, &[]));
    let admin = server.create_user("ada", "admin").await;
    (server, agent, db, admin)
}

async fn put_limit(server: &Server, admin: &str, scope: &str, body: Value) -> (u16, Value) {
    server
        .call_as(
            admin,
            Method::PUT,
            &format!("/api/v1/rate-limits/{scope}"),
            Some(&body),
        )
        .await
}

/// Start times of the succeeded tasks of `task_type`, sorted.
async fn starts(server: &Server, task_type: &str) -> Vec<i64> {
    let (_, list) = server
        .get(&format!(
            "/api/v1/tasks?status=succeeded&task_type={task_type}&limit=1000"
        ))
        .await;
    let mut at: Vec<i64> = list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["started_at_us"].as_i64())
        .collect();
    at.sort_unstable();
    at
}

async fn twenty_a_second_holds_within_ten_percent_over_ten_seconds(backend: Backend) {
    let (server, _agent, _db, admin) = setup(backend).await;
    let (s, body) = put_limit(&server, &admin, "type:echo", json!({ "rate": 20 })).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["per_second"], 20.0);
    let ids = server
        .submit((0..280).map(|i| new_task("echo", json!(i))).collect())
        .await;

    // A held task says what holds it.
    let last = *ids.last().unwrap();
    let (_, task) = server.get(&format!("/api/v1/tasks/{last}")).await;
    assert_eq!(task["rate_limited"], true, "{task}");
    let reason = &task["waiting"]["reasons"][0];
    assert_eq!(reason["kind"], "rate_limited", "{task}");
    assert_eq!(reason["scope"], "type:echo");
    assert!(task["waiting"]["summary"]
        .as_str()
        .unwrap()
        .contains("rate-limited"));

    // Another type is not held behind them.
    let free = server
        .submit(
            (0..40)
                .map(|_| new_task("sleep", json!({ "ms": 1 })))
                .collect(),
        )
        .await;
    eventually(
        Duration::from_secs(5),
        "the unlimited tasks done",
        || async {
            let done = starts(&server, "sleep").await.len();
            (done == free.len()).then_some(())
        },
    )
    .await;

    tokio::time::sleep(Duration::from_secs(12)).await;
    let at = starts(&server, "echo").await;
    let first = at[0];
    let window = at
        .iter()
        .filter(|t| **t >= first + 1_000_000 && **t < first + 11_000_000)
        .count();
    assert!(
        (180..=220).contains(&window),
        "{window} starts in 10 s at 20 a second"
    );

    // Removing the limit releases the rest at once.
    let (s, _) = server
        .call_as(
            &admin,
            Method::DELETE,
            "/api/v1/rate-limits/type:echo",
            None,
        )
        .await;
    assert_eq!(s, 204);
    eventually(Duration::from_secs(10), "every task done", || async {
        (starts(&server, "echo").await.len() == ids.len()).then_some(())
    })
    .await;
}

async fn a_key_limit_releases_through_the_keys_admission(backend: Backend) {
    let (server, _agent, _db, admin) = setup(backend).await;
    let (s, body) = put_limit(
        &server,
        &admin,
        "key:acme",
        json!({ "rate": 600, "per": "minute", "burst": 2 }),
    )
    .await;
    assert_eq!(
        (s, body["per_second"].as_f64()),
        (200, Some(10.0)),
        "{body}"
    );
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            // Short: unlimited, the key alone would run them all in 0.1 s.
            let mut t = new_task("sleep", json!({ "ms": 10 }));
            t.concurrency_key = Some("acme".into());
            t.concurrency_limit = Some(2);
            t
        })
        .collect();
    server.submit(tasks).await;
    eventually(Duration::from_secs(20), "every keyed task done", || async {
        (starts(&server, "sleep").await.len() == 20).then_some(())
    })
    .await;
    let at = starts(&server, "sleep").await;
    // 20 at 10 a second with a burst of 2: the last is released at least
    // 1.7 s after the first; the first may start up to a few hundred ms
    // after its release (a claim round on a busy machine), the last is
    // started at once by a waiting agent.
    assert!(
        at[19] - at[0] >= 1_300_000,
        "released too fast: {} ms",
        (at[19] - at[0]) / 1000
    );
    // The key's count came back to nothing: it admitted each once.
    let (_, queues) = server.get("/api/v1/queues").await;
    let key = queues["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["key"] == "acme"));
    if let Some(key) = key {
        assert_eq!(key["admitted"], 0, "{key}");
    }
    let (_, list) = server.get("/api/v1/rate-limits").await;
    assert_eq!(list["rate_limits"][0]["scope"], "key:acme");
    assert_eq!(list["rate_limits"][0]["held"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_set_limits_and_bad_ones_are_refused() {
    let (server, _agent, _db, admin) = setup(Backend::Sqlite).await;
    let operator = server.create_user("otto", "operator").await;
    let (s, _) = server
        .call_as(
            &operator,
            Method::PUT,
            "/api/v1/rate-limits/type:echo",
            Some(&json!({ "rate": 5 })),
        )
        .await;
    assert_eq!(s, 403, "an operator may not set limits");
    for (scope, body, field) in [
        ("type:echo", json!({ "rate": 0 }), "rate"),
        ("type:echo", json!({ "rate": 1e9 }), "rate"),
        ("type:echo", json!({ "rate": 5, "burst": 0 }), "burst"),
        ("echo", json!({ "rate": 5 }), "scope"),
        ("type:", json!({ "rate": 5 }), "scope"),
    ] {
        let (s, body) = put_limit(&server, &admin, scope, body).await;
        assert_eq!(s, 422, "{scope}: {body}");
        assert_eq!(body["error"]["field"], field, "{scope}: {body}");
    }
    let (s, _) = server
        .call_as(
            &admin,
            Method::DELETE,
            "/api/v1/rate-limits/type:nothing",
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (_, list) = server.get("/api/v1/rate-limits").await;
    assert_eq!(list["rate_limits"], json!([]));
}
