//! Retention on SQLite and PostgreSQL: the leader deletes finished tasks,
//! finished runs (with their tasks) and audit entries past their keep-for,
//! with everything that hangs off them, and nothing that is unfinished,
//! recent, or of a type kept longer. Age is made by moving the rows' times
//! back in the database, as if they were hours old.

#[macro_use]
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use support::{eventually, new_task, Backend, Database, RawAgent, Server, API_TOKEN};

on_both!(finished_work_past_its_keep_for_goes_with_everything_it_held);

const HOURS_3_US: i64 = 3 * 3600 * 1_000_000;
const DAYS_40_US: i64 = 40 * 86_400 * 1_000_000;

async fn execute(db: &Database, statement: &str) {
    match db.backend {
        Backend::Postgres => {
            db.pg().await.execute(statement).await.expect(statement);
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url)
                .await
                .expect("connect");
            c.execute(statement).await.expect(statement);
        }
    }
}

async fn count(db: &Database, query: &str) -> i64 {
    match db.backend {
        Backend::Postgres => sqlx::query_scalar(query)
            .fetch_one(&mut db.pg().await)
            .await
            .expect(query),
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url)
                .await
                .expect("connect");
            sqlx::query_scalar(query)
                .fetch_one(&mut c)
                .await
                .expect(query)
        }
    }
}

async fn exists(server: &Server, path: &str) -> bool {
    match server.get(path).await.0 {
        200 => true,
        404 => false,
        other => panic!("{path}: {other}"),
    }
}

async fn finished_work_past_its_keep_for_goes_with_everything_it_held(backend: Backend) {
    let db = Database::new(backend).await;
    let env = [
        ("DROVER_TASK_TYPES", "echo,keep"),
        ("DROVER_RETENTION", "1h"),
        ("DROVER_RETENTION_BY_TYPE", "keep=1day"),
        ("DROVER_AUDIT_RETENTION", "30days"),
        ("DROVER_RETENTION_INTERVAL", "200ms"),
        ("DROVER_DUTY_INTERVAL", "200ms"),
    ];
    let server = Server::spawn_app(&db, &env).await;
    let agent = RawAgent::register(&server, "a", 50, &["echo", "keep"]).await;

    let def = "name: short\nsteps:\n  - id: one\n    type: task\n    task_type: echo\n";
    assert_eq!(server.upload_workflow(API_TOKEN, def).await.0, 201);
    let (status, run) = server
        .post("/api/v1/runs", &json!({"workflow": "short"}))
        .await;
    assert_eq!(status, 201, "{run}");
    let run = run["id"].as_i64().expect("run id");
    let echoes = server
        .submit(
            (0..5)
                .map(|i| new_task("echo", json!({ "i": i })))
                .collect(),
        )
        .await;
    let kept = server.submit(vec![new_task("keep", json!({}))]).await;
    // Run's task, 5 echoes, the kept one: all finish.
    let mut finished = 0;
    while finished < 7 {
        for (task, lease) in agent.claim(10, 1_000).await {
            assert_eq!(agent.succeed(task, lease).await.0, 200);
            finished += 1;
        }
    }
    let (running, running_lease) = {
        let ids = server
            .submit(vec![new_task("echo", json!({"runs": true}))])
            .await;
        let claimed = agent.claim(1, 5_000).await;
        assert_eq!(claimed[0].0, ids[0]);
        claimed[0]
    };
    eventually(Duration::from_secs(10), "the run finished", || async {
        let (_, body) = server.get(&format!("/api/v1/runs/{run}")).await;
        (body["status"] == "succeeded").then_some(())
    })
    .await;
    // A queued task that no agent takes (a type nobody handles any more).
    let waiting = server.submit(vec![new_task("keep", json!({"w": 1}))]).await[0];
    assert!(exists(&server, &format!("/api/v1/tasks/{}", echoes[0])).await);

    // Everything is three hours older; one audit entry stays recent.
    let audit_before = count(&db, "SELECT COUNT(*) FROM audit_log").await;
    assert!(audit_before >= 2, "uploads and starts are audited");
    for table in ["tasks", "runs"] {
        execute(
            &db,
            &format!(
                "UPDATE {table} SET created_at = created_at - {HOURS_3_US}, \
                 finished_at = finished_at - {HOURS_3_US}"
            ),
        )
        .await;
    }
    // The audit log refuses updates: its trigger is set aside to age it.
    let age_audit = format!(
        "UPDATE audit_log SET at = at - {DAYS_40_US} WHERE id < (SELECT MAX(id) FROM audit_log)"
    );
    match backend {
        Backend::Postgres => {
            let mut c = db.pg().await;
            c.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
                .await
                .expect("disable");
            c.execute(age_audit.as_str()).await.expect("age");
            c.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change")
                .await
                .expect("enable");
        }
        Backend::Sqlite => {
            execute(&db, "DROP TRIGGER audit_log_no_update").await;
            execute(&db, &age_audit).await;
        }
    }

    eventually(
        Duration::from_secs(20),
        "old finished work deleted",
        || async {
            let gone = !exists(&server, &format!("/api/v1/tasks/{}", echoes[4])).await
                && !exists(&server, &format!("/api/v1/runs/{run}")).await;
            gone.then_some(())
        },
    )
    .await;
    for id in &echoes {
        assert!(
            !exists(&server, &format!("/api/v1/tasks/{id}")).await,
            "task {id}"
        );
    }
    assert!(
        exists(&server, &format!("/api/v1/tasks/{}", kept[0])).await,
        "kept a day"
    );
    assert!(
        exists(&server, &format!("/api/v1/tasks/{waiting}")).await,
        "queued"
    );
    assert!(
        exists(&server, &format!("/api/v1/tasks/{running}")).await,
        "running"
    );
    eventually(
        Duration::from_secs(10),
        "old audit entries deleted",
        || async { (count(&db, "SELECT COUNT(*) FROM audit_log").await == 1).then_some(()) },
    )
    .await;
    // What is younger than 30 days cannot be deleted, whoever asks.
    let refused = match backend {
        Backend::Postgres => db
            .pg()
            .await
            .execute("DELETE FROM audit_log")
            .await
            .is_err(),
        Backend::Sqlite => sqlx::SqliteConnection::connect(&db.url)
            .await
            .expect("connect")
            .execute("DELETE FROM audit_log")
            .await
            .is_err(),
    };
    assert!(refused, "a recent audit entry was deleted");
    // Nothing left hanging off what went.
    for orphans in [
        "SELECT COUNT(*) FROM task_attempts WHERE task_id NOT IN (SELECT id FROM tasks)",
        "SELECT COUNT(*) FROM task_events WHERE task_id NOT IN (SELECT id FROM tasks)",
        "SELECT COUNT(*) FROM run_steps WHERE run_id NOT IN (SELECT id FROM runs)",
        "SELECT COUNT(*) FROM run_events WHERE run_id NOT IN (SELECT id FROM runs)",
        "SELECT COUNT(*) FROM tasks WHERE run_id IS NOT NULL AND run_id NOT IN (SELECT id FROM runs)",
    ] {
        assert_eq!(count(&db, orphans).await, 0, "{orphans}");
    }
    assert!(count(&db, "SELECT COUNT(*) FROM task_attempts").await >= 2);
    // The running task finishes as usual, and is kept (finished just now).
    assert_eq!(agent.succeed(running, running_lease).await.0, 200);
    let (_, body): (u16, Value) = server.get(&format!("/api/v1/tasks/{running}")).await;
    assert_eq!(body["status"], "succeeded", "{body}");
}
