//! Queue health (`GET /api/v1/queues`), on SQLite and PostgreSQL: per task
//! type the depth (and how much of it is held by a full concurrency key),
//! the oldest wait, submit→start latencies, lost leases and the online
//! agents able to take it; per key its slots, held tasks and oldest wait.

#[macro_use]
mod support;

use std::time::Duration;

use drover_protocol::health::{KeyHealth, QueueHealth, TypeHealth};
use serde_json::{json, Value};
use support::{eventually, fast_timeouts, Backend, Database, RawAgent, Server};

on_both!(
    queues_show_depth_held_latency_lost_leases_and_able_agents,
    the_window_is_bounded,
);

fn env() -> Vec<(&'static str, &'static str)> {
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo,resize"));
    env
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

async fn health(server: &Server) -> QueueHealth {
    let (status, body) = server.get("/api/v1/queues?window=120").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).expect("queue health")
}

fn of_type<'a>(h: &'a QueueHealth, t: &str) -> &'a TypeHealth {
    h.types
        .iter()
        .find(|x| x.task_type == t)
        .unwrap_or_else(|| panic!("no row for {t}: {h:?}"))
}

fn of_key<'a>(h: &'a QueueHealth, k: &str) -> &'a KeyHealth {
    h.keys
        .iter()
        .find(|x| x.key == k)
        .unwrap_or_else(|| panic!("no row for key {k}: {h:?}"))
}

async fn queues_show_depth_held_latency_lost_leases_and_able_agents(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let empty = health(&server).await;
    assert!(empty.types.is_empty() && empty.keys.is_empty(), "{empty:?}");
    assert_eq!(empty.window_s, 120);

    // A "resize" agent takes one task and falls silent: it goes offline,
    // its lease is lost, the task is queued again, and no agent is left
    // that handles "resize".
    let silent = RawAgent::register(&server, "silent", 1, &["resize"]).await;
    submit(
        &server,
        vec![
            json!({"task_type": "resize"}),
            json!({"task_type": "resize"}),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(silent.claim(1, 0).await.len(), 1);
    // The lease's expiry and the agent's going offline are separate
    // sweeps: wait for both.
    let h = eventually(Duration::from_secs(15), "the lost lease", || async {
        let h = health(&server).await;
        let resize = of_type(&h, "resize");
        (resize.leases_expired == 1 && resize.queued == 2 && resize.agents == 0).then_some(h)
    })
    .await;
    let resize = of_type(&h, "resize");
    assert_eq!((resize.running, resize.held), (0, 0), "{resize:?}");
    assert_eq!((resize.agents, resize.free_slots), (0, 0), "{resize:?}");
    assert!(resize.stranded());
    assert_eq!(resize.starts, 1, "the silent agent's claim: {resize:?}");
    assert!(
        resize.start_p50_us.is_some_and(|p| p >= 20_000),
        "{resize:?}"
    );
    assert!(
        resize.oldest_wait_us.is_some_and(|w| w > 0) && resize.oldest_since_us.is_some(),
        "{resize:?}"
    );

    // "echo": four tasks of a key with limit 1 (one admitted, three held)
    // and two free ones; an agent with four slots takes the three it may.
    let worker = RawAgent::register(&server, "worker", 4, &["echo"]).await;
    let keyed = (0..4)
        .map(|i| json!({"task_type": "echo", "payload": {"i": i}, "concurrency_key": "customer:1", "concurrency_limit": 1}))
        .collect();
    submit(&server, keyed).await;
    submit(
        &server,
        vec![json!({"task_type": "echo"}), json!({"task_type": "echo"})],
    )
    .await;
    server.keys_settled().await;
    let h = health(&server).await;
    let echo = of_type(&h, "echo");
    assert_eq!(
        (echo.queued, echo.held, echo.running),
        (6, 3, 0),
        "{echo:?}"
    );
    assert_eq!((echo.agents, echo.free_slots), (1, 4), "{echo:?}");
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(worker.claim(4, 0).await.len(), 3, "the held tasks stay");

    let h = health(&server).await;
    let echo = of_type(&h, "echo");
    assert_eq!(
        (echo.queued, echo.held, echo.running),
        (3, 3, 3),
        "{echo:?}"
    );
    assert_eq!((echo.agents, echo.free_slots), (1, 1), "{echo:?}");
    assert!(!echo.stranded());
    assert_eq!(echo.starts, 3, "{echo:?}");
    let (p50, p99) = (
        echo.start_p50_us.expect("p50"),
        echo.start_p99_us.expect("p99"),
    );
    assert!(p50 >= 30_000 && p99 >= p50, "{echo:?}");
    assert_eq!(echo.leases_expired, 0);
    assert!(echo.oldest_wait_us.is_some(), "{echo:?}");
    assert_eq!(h.sampled_starts, 4);
    assert!(!h.sample_capped && !h.more_types && !h.more_keys);
    // Deepest first: echo (3 queued) and resize (2).
    let names: Vec<&str> = h.types.iter().map(|t| t.task_type.as_str()).collect();
    assert_eq!(names, ["echo", "resize"], "{h:?}");

    let key = of_key(&h, "customer:1");
    assert_eq!(
        (key.admitted, key.limit, key.queued, key.held, key.running),
        (1, 1, 3, 3, 1),
        "{key:?}"
    );
    assert!(key.oldest_wait_us.is_some(), "{key:?}");
    assert_eq!(h.keys.len(), 1);
}

async fn the_window_is_bounded(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let (status, body) = server.get("/api/v1/queues").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["window_s"], 300);
    for bad in ["5", "86400"] {
        let (status, body) = server.get(&format!("/api/v1/queues?window={bad}")).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["field"], "window", "{body}");
    }
}
