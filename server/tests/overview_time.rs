//! The overview over a range (`GET /api/v1/overview?range=`), on SQLite
//! and PostgreSQL: a bad range is a 422 naming `range`; each range is 60
//! aligned buckets of its width holding now; a real agent's success and
//! failure land in the current bucket with their waits, the failure is
//! listed, and the leader's depth samples show the queued type. Viewers
//! read it; nobody signed out does.

#[macro_use]
mod support;

use std::time::Duration;

use drover_protocol::api::Overview;
use serde_json::json;
use support::{eventually, fast_timeouts, Backend, Database, RawAgent, Server};

on_both!(
    bad_ranges_are_refused_and_each_range_is_sixty_buckets,
    finishes_waits_failures_and_depth_show_in_the_range,
);

fn env() -> Vec<(&'static str, &'static str)> {
    let mut env = fast_timeouts();
    env.push(("DROVER_QUEUE_DEPTH_INTERVAL", "1s"));
    env
}

async fn overview(server: &Server, range: &str) -> Overview {
    let (status, body) = server.get(&format!("/api/v1/overview?range={range}")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).expect("an overview")
}

async fn bad_ranges_are_refused_and_each_range_is_sixty_buckets(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;

    for bad in ["2h", "", "1H", "abc", "60"] {
        let (status, body) = server.get(&format!("/api/v1/overview?range={bad}")).await;
        assert_eq!(status, 422, "range={bad}: {body}");
        assert_eq!(body["error"]["field"], "range", "{body}");
    }
    let (status, body) = server.get("/api/v1/overview?window=1h").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "window", "{body}");

    // No range is an hour.
    let (status, body) = server.get("/api/v1/overview").await;
    assert_eq!(status, 200, "{body}");
    let o: Overview = serde_json::from_value(body).expect("an overview");
    assert_eq!((o.range.as_str(), o.bucket_us), ("1h", 60_000_000));
    for (range, bucket_s) in [
        ("15m", 15),
        ("1h", 60),
        ("6h", 360),
        ("24h", 1_440),
        ("7d", 10_080),
    ] {
        let o = overview(&server, range).await;
        let width = bucket_s * 1_000_000;
        assert_eq!(
            (o.range.as_str(), o.bucket_us, o.bucket_secs),
            (range, width, bucket_s)
        );
        assert_eq!(o.buckets.len(), 60, "{range}");
        assert_eq!(o.throughput.len(), 60, "{range}");
        assert_eq!(o.since_us % width, 0, "{range}: aligned");
        let last = o.buckets.last().expect("buckets").start_us;
        assert!(
            last <= o.at_us && o.at_us < last + width,
            "{range}: now in the last"
        );
        assert_eq!(o.buckets[0].start_us, o.since_us);
    }

    // Any signed-in role reads it; nobody else.
    let viewer = server.create_user("vera", "viewer").await;
    let (status, body) = server
        .call_as(
            &viewer,
            reqwest::Method::GET,
            "/api/v1/overview?range=7d",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let stranger = server
        .http
        .get(format!("{}/api/v1/overview", server.url))
        .send()
        .await
        .expect("request");
    assert_eq!(stranger.status().as_u16(), 401);
}

async fn finishes_waits_failures_and_depth_show_in_the_range(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let agent = RawAgent::register(&server, "raw", 2, &["echo"]).await;
    for n in 0..2 {
        let (status, body) = server
            .post(
                "/api/v1/tasks",
                &json!({ "task_type": "echo", "payload": { "n": n }, "max_attempts": 1 }),
            )
            .await;
        assert!(status == 200 || status == 201, "{body}");
    }
    let claimed = agent.claim(2, 1_000).await;
    assert_eq!(claimed.len(), 2);
    let (ok, failed) = (claimed[0], claimed[1]);
    let (status, body) = agent.succeed(ok.0, ok.1).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = agent
        .post(
            "results",
            json!({ "results": [{ "task_id": failed.0, "lease_token": failed.1,
                "outcome": { "status": "failed", "error": "it broke on purpose", "retryable": false } }] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Three more stay queued (the agent claims no more): the leader's
    // depth sample, every second, shows them.
    for n in 0..3 {
        server
            .post(
                "/api/v1/tasks",
                &json!({ "task_type": "echo", "payload": { "q": n } }),
            )
            .await;
    }
    let o = eventually(
        Duration::from_secs(15),
        "a depth sample of three echo tasks",
        || async {
            let o = overview(&server, "15m").await;
            let sampled = o.buckets.iter().rev().find_map(|b| b.depth.clone())?;
            (o.depth_types == ["echo"] && sampled == [3]).then_some(o)
        },
    )
    .await;

    let succeeded: i64 = o.buckets.iter().map(|b| b.succeeded).sum();
    let failures: i64 = o.buckets.iter().map(|b| b.failed).sum();
    assert_eq!((succeeded, failures), (1, 1));
    assert_eq!(o.throughput.iter().sum::<i64>(), 2);
    let sampled: i64 = o.buckets.iter().map(|b| b.waits_sampled).sum();
    assert_eq!(sampled, 2, "both first claims");
    assert!(o.buckets.iter().any(|b| b.wait_p99_us.is_some()));
    assert_eq!(o.wait_sample, 100);
    assert_eq!(o.depth_interval_us, 1_000_000);
    assert_eq!(o.recent_failures.len(), 1);
    let f = &o.recent_failures[0];
    assert_eq!((f.id, f.task_type.as_str()), (failed.0, "echo"));
    assert_eq!(f.error.as_deref(), Some("it broke on purpose"));
    assert!(f.finished_at_us.is_some_and(|t| t <= o.at_us));
}
