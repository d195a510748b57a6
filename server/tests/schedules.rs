//! Schedules, on SQLite and PostgreSQL, with real server and agent
//! processes: definitions are checked and named by field, a per-second cron
//! fires each tick once and on time, a one-time schedule fires once, pause
//! stops and resume does not catch up, the overlap policies hold, ticks
//! missed while the server was down follow the missed-tick policy, and two
//! instances fire each tick once across a leader's `kill -9`.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Connection;
use support::{
    agent_config, eventually, fast_timeouts, AgentProcess, Backend, Database, Server, API_TOKEN,
};

on_both!(
    definitions_are_checked_and_changes_need_an_operator_and_the_current_revision,
    a_per_second_schedule_fires_each_tick_once_and_on_time,
    a_one_time_schedule_fires_once_and_pause_stops_a_schedule_without_catching_up,
    overlap_skip_waits_for_the_previous_task_and_cancel_previous_cancels_it,
    ticks_missed_while_the_server_was_down_are_skipped_or_run_once,
    concurrent_run_starts_with_one_key_make_one_run,
);

const ECHO_FLOW: &str = r#"
name: hourly
inputs:
  who: { type: string, default: "cron" }
steps:
  - id: say
    type: task
    task_type: echo
    payload: { who: "{{ inputs.who }}" }
"#;

fn env() -> Vec<(&'static str, &'static str)> {
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo,sleep"));
    env
}

async fn create(server: &Server, body: Value) -> Value {
    let (status, view) = server.post("/api/v1/schedules", &body).await;
    assert_eq!(status, 201, "{view}");
    view
}

async fn schedule(server: &Server, id: i64) -> Value {
    let (status, view) = server.get(&format!("/api/v1/schedules/{id}")).await;
    assert_eq!(status, 200, "{view}");
    view
}

/// The tick seconds of what schedule `id` started in `table` (`runs` or
/// `tasks`), read from their idempotency keys, ascending.
async fn ticks(db: &Database, table: &str, id: i64) -> Vec<i64> {
    let sql =
        format!("SELECT idempotency_key FROM {table} WHERE idempotency_key LIKE 'schedule:{id}:%'");
    let keys: Vec<String> = match db.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url)
                .await
                .expect("open the SQLite file");
            sqlx::query_scalar(&sql).fetch_all(&mut c).await
        }
        Backend::Postgres => {
            let mut c = db.pg().await;
            sqlx::query_scalar(&sql).fetch_all(&mut c).await
        }
    }
    .expect("read keys");
    let mut seconds: Vec<i64> = keys
        .iter()
        .map(|k| {
            k.rsplit(':')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("a tick key")
        })
        .collect();
    seconds.sort_unstable();
    seconds
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

async fn definitions_are_checked_and_changes_need_an_operator_and_the_current_revision(
    backend: Backend,
) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    let (status, _) = server.upload_workflow(API_TOKEN, ECHO_FLOW).await;
    assert_eq!(status, 201);

    // Each faulty definition is a 422 naming its field, and stores nothing.
    for (body, field) in [
        (
            json!({"name": "a b", "workflow": "hourly", "cron": "@hourly"}),
            "name",
        ),
        (json!({"name": "x", "cron": "@hourly"}), "workflow"),
        (
            json!({"name": "x", "workflow": "nope", "cron": "@hourly"}),
            "workflow",
        ),
        (
            json!({"name": "x", "workflow": "hourly", "version": 9, "cron": "@hourly"}),
            "version",
        ),
        (
            json!({"name": "x", "workflow": "hourly", "inputs": {"who": 7}, "cron": "@hourly"}),
            "inputs.who",
        ),
        (json!({"name": "x", "workflow": "hourly"}), "cron"),
        (
            json!({"name": "x", "workflow": "hourly", "cron": "61 * * * *"}),
            "cron",
        ),
        (
            json!({"name": "x", "workflow": "hourly", "cron": "0 0 30 2 *"}),
            "cron",
        ),
        (
            json!({"name": "x", "workflow": "hourly", "cron": "@hourly", "time_zone": "Mars/Base"}),
            "time_zone",
        ),
        (
            json!({"name": "x", "workflow": "hourly", "at": "2001-01-01T00:00:00Z"}),
            "at",
        ),
        (
            json!({"name": "x", "workflow": "hourly", "at": "soon"}),
            "at",
        ),
        (
            json!({"name": "x", "task": {"task_type": "nope"}, "cron": "@hourly"}),
            "task.task_type",
        ),
        (
            json!({"name": "x", "task": {"task_type": "echo", "urgency": 99}, "cron": "@hourly"}),
            "task.urgency",
        ),
        (
            json!({"name": "x", "task": {"task_type": "echo", "idempotency_key": "k"}, "cron": "@hourly"}),
            "task.idempotency_key",
        ),
    ] {
        let (status, err) = server.post("/api/v1/schedules", &body).await;
        assert_eq!(status, 422, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
    }
    let (status, _) = server
        .post(
            "/api/v1/schedules",
            &json!({"name": "x", "cron": "@hourly", "workflow": "hourly", "color": 1}),
        )
        .await;
    assert_eq!(status, 400, "an unknown field");
    let (_, list) = server.get("/api/v1/schedules").await;
    assert_eq!(list["schedules"].as_array().map(Vec::len), Some(0));

    // The tick keys are the schedules' own: no client may take them.
    let (status, err) = server
        .post(
            "/api/v1/tasks",
            &json!({"task_type": "echo", "idempotency_key": "schedule:1:2000000000"}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (422, Some("idempotency_key")),
        "{err}"
    );
    let (status, err) = server
        .post(
            "/api/v1/runs",
            &json!({"workflow": "hourly", "idempotency_key": "schedule:1:2000000000"}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (422, Some("idempotency_key")),
        "{err}"
    );

    let view = create(
        &server,
        json!({"name": "nightly", "workflow": "hourly", "cron": "30 2 * * *",
               "time_zone": "Europe/Berlin", "inputs": {"who": "night"}}),
    )
    .await;
    let id = view["id"].as_i64().expect("id");
    assert_eq!(view["state"], "active");
    assert_eq!(view["upcoming_us"].as_array().map(Vec::len), Some(5));
    let next = view["next_fire_at_us"].as_i64().expect("next");
    assert_eq!(view["upcoming_us"][0], next);
    // 02:30 in Berlin is 01:30 UTC in winter.
    assert_eq!((next / 1_000_000) % 86_400, 5_400, "{view}");
    assert!(view["cron_description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
    let (status, _) = server
        .post(
            "/api/v1/schedules",
            &json!({"name": "nightly", "workflow": "hourly", "cron": "@daily"}),
        )
        .await;
    assert_eq!(status, 409, "the name is taken");

    // A viewer reads, and may not write.
    let viewer = server.create_user("vera", "viewer").await;
    let (status, _) = server
        .call_as(
            &viewer,
            Method::GET,
            &format!("/api/v1/schedules/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/schedules".to_string(),
            Some(json!({"name": "v", "workflow": "hourly", "cron": "@daily"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/schedules/{id}"),
            Some(json!({"cron": "@daily"})),
        ),
        (Method::POST, format!("/api/v1/schedules/{id}/pause"), None),
        (Method::DELETE, format!("/api/v1/schedules/{id}"), None),
    ] {
        let (status, body) = server
            .call_as(&viewer, method.clone(), &path, body.as_ref())
            .await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }

    // A change made against an old revision is refused, not lost.
    let revision = view["revision"].as_i64().expect("revision");
    let (status, changed) = server
        .call_as(
            API_TOKEN,
            Method::PATCH,
            &format!("/api/v1/schedules/{id}"),
            Some(&json!({"cron": "0 3 * * *", "revision": revision})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["next_fire_at_us"].as_i64().expect("next") / 1_000_000) % 86_400,
        7_200
    );
    let (status, err) = server
        .call_as(
            API_TOKEN,
            Method::PATCH,
            &format!("/api/v1/schedules/{id}"),
            Some(&json!({"description": "late", "revision": revision})),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    // Other fields keep the timing: the next tick does not move.
    let (status, renamed) = server
        .call_as(
            API_TOKEN,
            Method::PATCH,
            &format!("/api/v1/schedules/{id}"),
            Some(&json!({"description": "the nightly report"})),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["next_fire_at_us"], changed["next_fire_at_us"]);
    assert_eq!(renamed["inputs"]["who"], "night");

    let (status, paused) = server
        .post(&format!("/api/v1/schedules/{id}/pause"), &json!({}))
        .await;
    assert_eq!(
        (status, paused["state"].as_str()),
        (200, Some("paused")),
        "{paused}"
    );
    assert!(paused["next_fire_at_us"].is_null());

    let (status, _) = server
        .call_as(
            API_TOKEN,
            Method::DELETE,
            &format!("/api/v1/schedules/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server.get(&format!("/api/v1/schedules/{id}")).await;
    assert_eq!(status, 404);

    // Every write is in the audit log.
    let (_, audit) = server.get("/api/v1/audit?action=schedule.").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in [
        "schedule.created",
        "schedule.updated",
        "schedule.paused",
        "schedule.deleted",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

async fn a_per_second_schedule_fires_each_tick_once_and_on_time(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db, &env()).await;
    let _agent = AgentProcess::start(&server, db.dir(), "a1", &agent_config(8, &[]));
    server.upload_workflow(API_TOKEN, ECHO_FLOW).await;
    let runs = create(
        &server,
        json!({"name": "every-second", "workflow": "hourly", "cron": "* * * * * *"}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    let tasks = create(
        &server,
        json!({"name": "task-every-second", "task": {"task_type": "echo", "payload": {"n": 1}},
               "cron": "*/1 * * * * *"}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    let first = now_s();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    for (table, id) in [("runs", runs), ("tasks", tasks)] {
        let seconds = ticks(&db, table, id).await;
        assert!(seconds.len() >= 4, "{table}: {seconds:?}");
        // One per second, none skipped, none twice.
        for pair in seconds.windows(2) {
            assert_eq!(pair[1] - pair[0], 1, "{table}: {seconds:?}");
        }
        assert!(seconds[0] <= first + 1, "{table}: {seconds:?} from {first}");
    }
    // On time: each run was created within a second of its tick.
    let (_, list) = server.get("/api/v1/runs?workflow=hourly").await;
    let list = list["runs"].as_array().expect("runs").clone();
    assert!(list.len() >= 4);
    for run in &list {
        assert_eq!(run["started_by"], format!("schedule:{runs}"), "{run}");
    }
    let view = schedule(&server, runs).await;
    assert_eq!(view["last_outcome"], "started", "{view}");
    let lag = view["updated_at_us"].as_i64().expect("updated")
        - view["last_tick_us"].as_i64().expect("tick");
    assert!(lag < 1_000_000, "a tick recorded {lag} µs after its time");
    assert!(view["fired_count"].as_i64().expect("count") >= 4);
    // The runs finish: the agent ran their steps.
    let last = view["last_run_id"].as_i64().expect("run");
    eventually(
        Duration::from_secs(10),
        "the scheduled run to succeed",
        || async {
            let (_, run) = server.get(&format!("/api/v1/runs/{last}")).await;
            (run["run"]["status"] == "succeeded" || run["status"] == "succeeded").then_some(())
        },
    )
    .await;
}

async fn a_one_time_schedule_fires_once_and_pause_stops_a_schedule_without_catching_up(
    backend: Backend,
) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    // Whole seconds, two ahead.
    let at = now_s() + 2;
    // RFC 3339 of `at` in UTC, built by hand: the test has no date library.
    let at_text = {
        let (y, m, d) = civil_from_days(at.div_euclid(86_400));
        let secs = at.rem_euclid(86_400);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    };
    let once = create(
        &server,
        json!({"name": "once", "task": {"task_type": "echo"}, "at": at_text}),
    )
    .await;
    let once_id = once["id"].as_i64().expect("id");
    assert_eq!(once["next_fire_at_us"], at * 1_000_000);
    let every = create(
        &server,
        json!({"name": "every", "task": {"task_type": "echo"}, "cron": "* * * * * *"}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(ticks(&db, "tasks", once_id).await, vec![at]);
    let view = schedule(&server, once_id).await;
    assert_eq!(view["state"], "done", "{view}");
    assert!(view["next_fire_at_us"].is_null());

    let (status, _) = server
        .post(&format!("/api/v1/schedules/{every}/pause"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let before = ticks(&db, "tasks", every).await;
    assert!(before.len() >= 2, "{before:?}");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        ticks(&db, "tasks", every).await,
        before,
        "paused: nothing fires"
    );
    let (status, resumed) = server
        .post(&format!("/api/v1/schedules/{every}/resume"), &json!({}))
        .await;
    assert_eq!(status, 200, "{resumed}");
    let resumed_at = now_s();
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let after = ticks(&db, "tasks", every).await;
    let new: Vec<i64> = after
        .iter()
        .copied()
        .filter(|s| !before.contains(s))
        .collect();
    assert!(!new.is_empty(), "resumed: it fires again");
    assert!(
        new.iter().all(|&s| s >= resumed_at),
        "the ticks of the pause do not fire: {new:?} resumed at {resumed_at}"
    );
    // The one-time schedule stayed done.
    assert_eq!(ticks(&db, "tasks", once_id).await, vec![at]);
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

async fn overlap_skip_waits_for_the_previous_task_and_cancel_previous_cancels_it(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db, &env()).await;
    let _agent = AgentProcess::start(&server, db.dir(), "a1", &agent_config(8, &[]));
    let long = json!({"task_type": "sleep", "payload": {"ms": 60_000}});
    let skip = create(
        &server,
        json!({"name": "skip", "task": long, "cron": "* * * * * *", "overlap": "skip"}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    let cancel = create(
        &server,
        json!({"name": "cancel", "task": long, "cron": "* * * * * *", "overlap": "cancel_previous"}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    server
        .post(&format!("/api/v1/schedules/{skip}/pause"), &json!({}))
        .await;
    server
        .post(&format!("/api/v1/schedules/{cancel}/pause"), &json!({}))
        .await;

    // Skip: one task, still running; the later ticks were skipped.
    assert_eq!(ticks(&db, "tasks", skip).await.len(), 1);
    let view = schedule(&server, skip).await;
    assert_eq!(view["last_outcome"], "skipped", "{view}");
    assert!(
        view["last_detail"]
            .as_str()
            .is_some_and(|d| d.contains("still active")),
        "{view}"
    );
    let first = view["last_task_id"].as_i64().expect("task");
    assert_eq!(server.task(first).await.task.status.as_str(), "running");

    // Cancel previous: a task per tick, each but the last cancelled.
    let started = ticks(&db, "tasks", cancel).await;
    assert!(started.len() >= 3, "{started:?}");
    let (_, list) = server.get("/api/v1/tasks?task_type=sleep&limit=100").await;
    // The newest tick's task, by its key: a tick under way when the pause
    // came starts its task but loses the race to record it as the last.
    let newest = format!("schedule:{cancel}:{}", started[started.len() - 1]);
    let last = list["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["idempotency_key"] == newest.as_str())
        .and_then(|t| t["id"].as_i64())
        .expect("the newest tick's task");
    let mut cancelled = 0;
    let mut active = 0;
    for t in list["tasks"].as_array().expect("tasks") {
        let id = t["id"].as_i64().expect("id");
        if id == first {
            continue;
        }
        match t["status"].as_str() {
            Some("cancelled") => cancelled += 1,
            Some("queued" | "running") => {
                active += 1;
                assert_eq!(id, last, "only the newest runs: {t}");
            }
            other => panic!("task {id} is {other:?}"),
        }
    }
    assert_eq!((cancelled, active), (started.len() - 1, 1));
    // Who cancelled them is on record.
    let (_, audit) = server
        .get(&format!("/api/v1/audit?actor=schedule:{cancel}"))
        .await;
    assert!(
        !audit["entries"].as_array().expect("entries").is_empty(),
        "{audit}"
    );
}

async fn ticks_missed_while_the_server_was_down_are_skipped_or_run_once(backend: Backend) {
    let db = Database::new(backend).await;
    let mut env = env();
    env.push(("DROVER_SCHEDULE_GRACE", "2s"));
    let mut server = Server::start(&db, &env).await;
    let skip = create(
        &server,
        json!({"name": "skip", "task": {"task_type": "echo"}, "cron": "* * * * * *", "missed": "skip"}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    let once = create(
        &server,
        json!({"name": "once", "task": {"task_type": "echo"}, "cron": "* * * * * *", "missed": "run_once"}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.kill();
    let down = now_s();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let up = Instant::now();
    server.restart().await;
    let back = now_s();
    eventually(
        Duration::from_secs(10),
        "the schedules to fire again",
        || async {
            let v = schedule(&server, skip).await;
            (v["last_outcome"] == "started" && v["missed_count"].as_i64() > Some(0)).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_200).saturating_sub(up.elapsed())).await;
    // Skip: nothing for the ticks more than the grace before the restart.
    let skipped: Vec<i64> = ticks(&db, "tasks", skip)
        .await
        .into_iter()
        .filter(|&s| s > down)
        .collect();
    assert!(
        skipped.first().is_some_and(|&s| s >= back - 3),
        "{skipped:?} down {down} back {back}"
    );
    let view = schedule(&server, skip).await;
    assert!(
        view["missed_count"].as_i64().expect("missed") >= 2,
        "{view}"
    );
    // Run once: exactly one of them started, before the ticks on time.
    let caught: Vec<i64> = ticks(&db, "tasks", once)
        .await
        .into_iter()
        .filter(|&s| s > down && s < skipped[0])
        .collect();
    assert_eq!(caught.len(), 1, "{caught:?} down {down} back {back}");
}

async fn concurrent_run_starts_with_one_key_make_one_run(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    server.upload_workflow(API_TOKEN, ECHO_FLOW).await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (http, url) = (server.http.clone(), format!("{}/api/v1/runs", server.url));
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(API_TOKEN)
                    .json(&json!({"workflow": "hourly", "idempotency_key": "once-only"}))
                    .send()
                    .await
                    .expect("request");
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut created = 0;
    for c in calls {
        let (status, body) = c.await.expect("join");
        assert!(status == 200 || status == 201, "{status} {body}");
        created += usize::from(status == 201);
        ids.push(
            body["run"]["id"]
                .as_i64()
                .or(body["id"].as_i64())
                .expect("run id"),
        );
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one run: {ids:?}");
    assert_eq!(created, 1);
}

/// `drover schedule ...` against a server, as the operator.
fn cli(server: &Server, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(support::bin("drover"))
        .arg("--server")
        .arg(&server.url)
        .args(args)
        .env("DROVER_TOKEN", API_TOKEN)
        .output()
        .expect("run drover");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_edits_pauses_and_deletes_a_schedule() {
    let db = Database::new(Backend::Sqlite).await;
    let server = Server::start(&db, &env()).await;
    server.upload_workflow(API_TOKEN, ECHO_FLOW).await;
    let (ok, out) = cli(
        &server,
        &[
            "schedule",
            "create",
            "nightly",
            "--workflow",
            "hourly",
            "-i",
            "who=cli",
            "--cron",
            "30 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--overlap",
            "skip",
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("schedule 1 \"nightly\": active, next tick in"),
        "{out}"
    );
    let (ok, out) = cli(&server, &["schedule", "list"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("nightly\tworkflow hourly\t30 2 * * * (Europe/Berlin)"),
        "{out}"
    );
    let (ok, out) = cli(&server, &["schedule", "edit", "1", "--cron", "0 3 * * *"]);
    assert!(ok, "{out}");
    assert_eq!(schedule(&server, 1).await["cron"], "0 3 * * *");
    assert_eq!(schedule(&server, 1).await["inputs"]["who"], "cli", "kept");
    let (ok, out) = cli(&server, &["schedule", "pause", "1"]);
    assert!(ok && out.contains("paused"), "{out}");
    // Bad input: a message naming the field, and a non-zero exit.
    let (ok, out) = cli(
        &server,
        &[
            "schedule",
            "create",
            "x",
            "--workflow",
            "hourly",
            "--cron",
            "99 * * * *",
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("cron"), "{out}");
    let (ok, out) = cli(&server, &["schedule", "delete", "1"]);
    assert!(ok, "{out}");
    let (ok, _) = cli(&server, &["schedule", "get", "1"]);
    assert!(!ok, "gone");
}
