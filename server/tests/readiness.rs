//! `/readyz` on SQLite and PostgreSQL: ready while the database answers
//! with every migration applied and (PostgreSQL) the `LISTEN` connection
//! up; 503 naming the failed check otherwise, and ready again once the
//! database is back. `/healthz` answers throughout.

#[macro_use]
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use support::{eventually, new_task, pg_admin_url, Backend, Database, Server};

on_both!(ready_until_a_migration_goes_missing);

/// `/readyz`'s status and body, asked without credentials (a probe has none).
async fn readyz(server: &Server) -> (u16, Value) {
    let r = reqwest::get(format!("{}/readyz", server.url))
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn healthz(server: &Server) -> u16 {
    reqwest::get(format!("{}/healthz", server.url))
        .await
        .expect("request")
        .status()
        .as_u16()
}

async fn ready(server: &Server) -> Value {
    eventually(Duration::from_secs(10), "the server ready", || async {
        let (status, body) = readyz(server).await;
        (status == 200).then_some(body)
    })
    .await
}

async fn ready_until_a_migration_goes_missing(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &[]).await;
    let body = ready(&server).await;
    let mut expected = json!({"database": "ok", "migrations": "ok"});
    if backend == Backend::Postgres {
        expected["listener"] = json!("ok");
    }
    assert_eq!(body, json!({"ready": true, "checks": expected}));

    // A database restored from an older backup: its newest migration is
    // not recorded. The instance must not take traffic.
    let newest = "SELECT MAX(version) FROM _sqlx_migrations";
    let forget =
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)";
    let newest: i64 = match backend {
        Backend::Postgres => {
            let mut c = db.pg().await;
            let newest = sqlx::query_scalar(newest)
                .fetch_one(&mut c)
                .await
                .expect("newest");
            c.execute(forget).await.expect("forget");
            newest
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url)
                .await
                .expect("connect");
            let newest = sqlx::query_scalar(newest)
                .fetch_one(&mut c)
                .await
                .expect("newest");
            c.execute(forget).await.expect("forget");
            newest
        }
    };
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["database"], "ok");
    let problem = body["checks"]["migrations"].as_str().unwrap_or_default();
    assert!(
        problem.starts_with(&format!("not applied: {newest} (")),
        "{body}"
    );
    assert_eq!(healthz(&server).await, 200, "alive all the same");
}

/// The database refuses connections and drops the ones it had: the
/// database and the listener checks fail, and both come back with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_readiness_follows_the_database_away_and_back() {
    let db = Database::new(Backend::Postgres).await;
    let server = Server::spawn_app(&db, &[("DROVER_TASK_TYPES", "echo")]).await;
    ready(&server).await;
    let name = db
        .url
        .rsplit('/')
        .next()
        .expect("database name")
        .to_string();
    let mut admin = sqlx::PgConnection::connect(&pg_admin_url())
        .await
        .expect("admin connection");
    let set_allowed =
        |allowed: bool| format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {allowed}");
    admin
        .execute(set_allowed(false).as_str())
        .await
        .expect("refuse");
    admin
        .execute(
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            .as_str(),
        )
        .await
        .expect("drop connections");

    let body = eventually(Duration::from_secs(15), "the server unready", || async {
        let (status, body) = readyz(&server).await;
        (status == 503 && body["checks"]["listener"] != "ok").then_some(body)
    })
    .await;
    assert_eq!(body["ready"], false);
    // What failed, not the database's own message (its name, its host):
    // the probe answers anyone.
    let database = body["checks"]["database"].as_str().unwrap_or_default();
    assert!(
        ["unreachable", "no answer within 2 s"].contains(&database),
        "{body}"
    );
    assert_eq!(healthz(&server).await, 200, "alive all the same");

    admin
        .execute(set_allowed(true).as_str())
        .await
        .expect("allow");
    let body = eventually(
        Duration::from_secs(20),
        "the server ready again",
        || async {
            let (status, body) = readyz(&server).await;
            (status == 200).then_some(body)
        },
    )
    .await;
    assert_eq!(body["checks"]["listener"], "ok");
    // And it works again: a submit is taken.
    assert_eq!(
        server.submit(vec![new_task("echo", json!({}))]).await.len(),
        1
    );
}
