//! `drover-server backup --to FILE`: a consistent copy of the SQLite
//! database taken while a real server process runs and writes; a server
//! started on the copy has exactly what was committed before it. A backup
//! never overwrites a file, and PostgreSQL is pointed to its own tools.

#[macro_use]
mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::json;
use support::{bin, new_task, Backend, Database, Server, TempDir};

fn backup(database_url: &str, to: &Path) -> Output {
    std::process::Command::new(bin("drover-server"))
        .env("DROVER_DATABASE_URL", database_url)
        .arg("backup")
        .arg("--to")
        .arg(to)
        .output()
        .expect("run drover-server backup")
}

fn tasks(n: usize) -> Vec<drover_protocol::api::NewTask> {
    (0..n)
        .map(|i| new_task("echo", json!({ "i": i })))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_server_writes_restores_what_was_committed() {
    let db = Database::new(Backend::Sqlite).await;
    let env = [("DROVER_TASK_TYPES", "echo")];
    let server = Server::start(&db, &env).await;
    let before = server.submit(tasks(300)).await;
    assert_eq!(before.len(), 300);

    // Submits keep arriving while the copy is taken.
    let writer = {
        let server_url = server.url.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for _ in 0..20 {
                let _ = http
                    .post(format!("{server_url}/api/v1/tasks"))
                    .bearer_auth(support::API_TOKEN)
                    .json(&json!({ "tasks": [{"task_type": "echo"}] }))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let scratch = TempDir::new("drover_backup");
    let copy = scratch.0.join("copy.db");
    let out = backup(&db.url, &copy);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("backed up to "));
    writer.await.expect("writer");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).expect("copy").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the copy holds token hashes: private");
    }
    let live = server.stats().await.queued;

    // Restore: a server on the copy (nothing beside it: no -wal to carry).
    let restored_db = Database::new(Backend::Sqlite).await;
    std::fs::copy(&copy, restored_db.dir().join("drover.db")).expect("restore the copy");
    let restored = Server::start(&restored_db, &env).await;
    let queued = restored.stats().await.queued;
    assert!(
        (300..=live).contains(&queued),
        "the copy has every task committed before it and none after the last write: {queued} of {live}"
    );
    for id in [before[0], before[299]] {
        assert_eq!(restored.task(id).await.task.id, id);
    }
    let (status, body) = restored.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_backup_never_overwrites_and_names_pg_dump_for_postgresql() {
    let db = Database::new(Backend::Sqlite).await;
    let server = Server::start(&db, &[]).await;
    let scratch = TempDir::new("drover_backup");
    let taken = scratch.0.join("taken.db");
    std::fs::write(&taken, b"keep me").expect("write");
    let out = backup(&db.url, &taken);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&taken).expect("read"), b"keep me");

    let nowhere = scratch.0.join("missing.db");
    let out = backup(
        &format!("sqlite://{}", nowhere.display()),
        &scratch.0.join("x.db"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database there"));
    assert!(!nowhere.exists(), "a backup creates no database");

    let out = backup(
        "postgres://postgres@127.0.0.1:5432/postgres",
        &scratch.0.join("pg.db"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
    drop(server);
}
