//! Agent load history (`GET /api/v1/agents/{id}/load`), on SQLite and
//! PostgreSQL: the leader samples a real agent while it runs sleep tasks,
//! so its load is known (2 of 4 slots busy, then none) and the buckets must
//! show exactly that; the history survives a restart and, on PostgreSQL,
//! another instance reads the same one; samples past the retention are
//! deleted, in pages; an unknown agent is 404 and a bad window 422.

#[macro_use]
mod support;

use std::time::Duration;

use drover_engine::store::bucket_width;
use drover_protocol::api::{AgentLoad, LoadBucket, TaskStatus, LOAD_BUCKETS};
use serde_json::json;
use sqlx::Connection;
use support::{
    agent_config, eventually, fast_timeouts, new_task, AgentProcess, Backend, Database, RawAgent,
    Server,
};

on_both!(
    the_history_shows_a_real_agents_load_and_outlives_a_restart,
    unknown_agents_and_bad_windows_are_refused,
    samples_past_the_retention_are_deleted_in_pages,
);

const INTERVAL_US: i64 = 200_000;
const WINDOW_US: i64 = 60_000_000;
/// Room for a sample whose time was taken just before a claim or a
/// result committed (it may still see the old count).
const MARGIN_US: i64 = 300_000;

fn env() -> Vec<(&'static str, &'static str)> {
    let mut env = fast_timeouts();
    env.push(("DROVER_AGENT_LOAD_INTERVAL", "200ms"));
    env
}

fn now_us() -> i64 {
    drover_engine::time::now_us()
}

async fn load(server: &Server, agent_id: i64, window_s: i64) -> AgentLoad {
    let (status, body) = server
        .get(&format!(
            "/api/v1/agents/{agent_id}/load?window_s={window_s}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).expect("an agent's load")
}

/// The buckets lying wholly inside `from ..= to`.
fn within(l: &AgentLoad, from: i64, to: i64) -> Vec<LoadBucket> {
    l.buckets
        .iter()
        .filter(|b| b.start_us >= from && b.start_us + l.bucket_us <= to)
        .cloned()
        .collect()
}

async fn the_history_shows_a_real_agents_load_and_outlives_a_restart(backend: Backend) {
    let db = Database::new(backend).await;
    let mut server = Server::spawn_app(&db, &env()).await;
    let _agent = AgentProcess::start(&server, db.dir(), "loaded", &agent_config(4, &[]));
    let id = eventually(Duration::from_secs(20), "the agent online", || async {
        server
            .agents()
            .await
            .into_iter()
            .find(|a| a.name == "loaded" && a.status.as_str() == "online")
            .map(|a| a.id)
    })
    .await;
    // Idle for a while first, so there is history before the work.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let tasks = server
        .submit(vec![
            new_task("sleep", json!({ "ms": 4_000 })),
            new_task("sleep", json!({ "ms": 4_000 })),
        ])
        .await;
    server.wait_finished(2, Duration::from_secs(30)).await;
    let mut claimed = Vec::new();
    let mut finished = Vec::new();
    for t in &tasks {
        let d = server.task(*t).await;
        assert_eq!(d.task.status, TaskStatus::Succeeded, "{d:?}");
        let a = d.attempt_history.last().expect("an attempt");
        assert_eq!(a.agent_id, id);
        claimed.push(a.claimed_at_us);
        finished.push(a.finished_at_us.expect("finished"));
    }
    let (first_claim, both_running) = (claimed[0].min(claimed[1]), claimed[0].max(claimed[1]));
    let (first_done, all_done) = (finished[0].min(finished[1]), finished[0].max(finished[1]));

    // Wait for the idle samples after the work.
    let l = eventually(
        Duration::from_secs(15),
        "samples after the work",
        || async {
            let l = load(&server, id, 60).await;
            (within(&l, all_done + MARGIN_US, i64::MAX).len() >= 2).then_some(l)
        },
    )
    .await;
    assert_eq!(l.agent.id, id);
    assert_eq!((l.agent.capacity, l.agent.running), (4, 0));
    assert_eq!(l.window_s, 60);
    assert_eq!(l.interval_us, INTERVAL_US);
    assert_eq!(l.bucket_us, bucket_width(WINDOW_US, INTERVAL_US));
    assert!(l.buckets.len() as i64 <= LOAD_BUCKETS, "{l:?}");
    assert!(l.buckets.windows(2).all(|w| w[0].start_us < w[1].start_us));
    assert!(l
        .buckets
        .iter()
        .all(|b| b.start_us + l.bucket_us > l.since_us && b.start_us <= l.at_us));

    // Two of four slots busy while both ran, never more; none before or after.
    let busy = within(&l, both_running + MARGIN_US, first_done - MARGIN_US);
    assert!(!busy.is_empty(), "no bucket while both ran: {l:?}");
    for b in &busy {
        assert_eq!((b.mean_load, b.max_load), (0.5, 0.5), "{b:?}");
        assert_eq!((b.mean_running, b.max_running, b.capacity), (2.0, 2, 4));
    }
    assert!(l.buckets.iter().all(|b| b.max_load <= 0.5), "{l:?}");
    for quiet in [
        within(&l, 0, first_claim - MARGIN_US),
        within(&l, all_done + MARGIN_US, i64::MAX),
    ] {
        assert!(!quiet.is_empty(), "no idle bucket: {l:?}");
        assert!(quiet.iter().all(|b| b.max_load == 0.0 && b.capacity == 4));
    }
    // One sampler: never more samples than intervals (a late tick only
    // delays the next).
    let first = l.buckets.first().map(|b| b.start_us).unwrap_or(0);
    let span = l.at_us - first.max(l.since_us);
    let samples: i64 = l.buckets.iter().map(|b| b.samples).sum();
    assert!(
        samples <= span / (INTERVAL_US - 10_000) + 2,
        "{samples} samples in {span} µs"
    );

    // The history is rows: a restarted server shows the same buckets.
    server.restart().await;
    let after = load(&server, id, 60).await;
    let again = within(&after, both_running + MARGIN_US, first_done - MARGIN_US);
    assert_eq!(again, busy, "the busy buckets after a restart");

    // Another instance on the same database reads the same history.
    if backend == Backend::Postgres {
        let other = Server::spawn_app(&db, &env()).await;
        let seen = load(&other, id, 60).await;
        let theirs = within(&seen, both_running + MARGIN_US, first_done - MARGIN_US);
        assert_eq!(theirs, busy, "the busy buckets seen by another instance");
    }
}

async fn unknown_agents_and_bad_windows_are_refused(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let agent = RawAgent::register(&server, "raw", 2, &["echo"]).await;

    let (status, body) = server.get("/api/v1/agents/999999/load").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("agent 999999")),
        "{body}"
    );

    for bad in ["59", "604801", "-60", "abc", "1h", ""] {
        let (status, body) = server
            .get(&format!("/api/v1/agents/{}/load?window_s={bad}", agent.id))
            .await;
        assert_eq!(status, 422, "window_s={bad}: {body}");
        assert_eq!(body["error"]["field"], "window_s", "{body}");
    }

    // The default window is an hour; the longest still fits the bound.
    let (status, body) = server
        .get(&format!("/api/v1/agents/{}/load", agent.id))
        .await;
    assert_eq!(status, 200, "{body}");
    let l: AgentLoad = serde_json::from_value(body).expect("an agent's load");
    assert_eq!((l.window_s, l.agent.name.as_str()), (3_600, "raw"));
    assert_eq!(l.at_us - l.since_us, 3_600_000_000);
    let week = load(&server, agent.id, 604_800).await;
    assert!(week.bucket_us * (LOAD_BUCKETS - 1) >= 604_800_000_000);

    // Any signed-in role reads it; nobody else.
    let viewer = server.create_user("vera", "viewer").await;
    let path = format!("/api/v1/agents/{}/load?window_s=60", agent.id);
    let (status, body) = server
        .call_as(&viewer, reqwest::Method::GET, &path, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let stranger = server
        .http
        .get(format!("{}{path}", server.url))
        .send()
        .await
        .expect("request");
    assert_eq!(stranger.status().as_u16(), 401);
}

/// Runs `sql` on the test's database; for a query, its one number.
async fn sql(db: &Database, sql: &str, arg: Option<i64>) -> i64 {
    macro_rules! run {
        ($conn:expr) => {{
            let c = &mut $conn;
            match arg {
                Some(a) => sqlx::query_scalar::<_, i64>(sql)
                    .bind(a)
                    .fetch_one(c)
                    .await
                    .expect(sql),
                None => {
                    sqlx::query(sql).execute(c).await.expect(sql);
                    0
                }
            }
        }};
    }
    match db.backend {
        Backend::Sqlite => run!(sqlx::SqliteConnection::connect(&db.url)
            .await
            .expect("open the SQLite file")),
        Backend::Postgres => run!(db.pg().await),
    }
}

async fn samples_past_the_retention_are_deleted_in_pages(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let agent = RawAgent::register(&server, "raw", 2, &["echo"]).await;
    let hour = 3_600_000_000i64;
    let now = now_us();
    // More old samples than one tick deletes (5 pages of 1,000), a day
    // and an hour old; and a few 23 hours old, inside the retention.
    let old: Vec<String> = (0..6_000i64)
        .map(|i| format!("({}, {}, 1, 2)", agent.id, now - 25 * hour - i * 1_000))
        .collect();
    let kept: Vec<String> = (0..10i64)
        .map(|i| format!("({}, {}, 1, 2)", agent.id, now - 23 * hour + i * 1_000_000))
        .collect();
    for rows in [old, kept] {
        let insert = format!(
            "INSERT INTO agent_load (agent_id, at_us, running, capacity) VALUES {}",
            rows.join(", ")
        );
        sql(&db, &insert, None).await;
    }
    let day_ago = now - 24 * hour;
    // (The leader may already be deleting them: a tick takes 5,000, so
    // the 6,000 need two.)
    let older = "SELECT COUNT(*) FROM agent_load WHERE at_us < $1";
    eventually(
        Duration::from_secs(20),
        "the old samples deleted",
        || async { (sql(&db, older, Some(day_ago)).await == 0).then_some(()) },
    )
    .await;
    let kept = "SELECT COUNT(*) FROM agent_load WHERE at_us >= $1 AND at_us < $1 + 3600000000";
    assert_eq!(sql(&db, kept, Some(now - 23 * hour)).await, 10);

    // The day's window reads them, in its coarse buckets.
    let l = load(&server, agent.id, 86_400).await;
    let then: Vec<&LoadBucket> = l
        .buckets
        .iter()
        .filter(|b| b.start_us < now - 22 * hour)
        .collect();
    assert_eq!(then.iter().map(|b| b.samples).sum::<i64>(), 10, "{l:?}");
    assert!(then
        .iter()
        .all(|b| b.max_load == 0.5 && b.max_running == 1 && b.capacity == 2));
}
