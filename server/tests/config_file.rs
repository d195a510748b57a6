//! The config file (`--config`) with the real binary: the server takes its
//! address and database from it, and a bad file stops it before it starts,
//! naming the file and the key.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// A TOML string of `text`, quoted and escaped.
fn quoted(text: &str) -> String {
    toml::Value::from(text).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_listens_and_stores_where_its_config_file_says() {
    let db = Database::new(Backend::Sqlite).await;
    let port = free_port();
    let file = db.dir().join("server.toml");
    std::fs::write(
        &file,
        format!(
            "# what an operator writes\nlisten = {}\ndatabase-url = {}\ndata_dir = {}\n",
            quoted(&format!("127.0.0.1:{port}")),
            quoted(&db.url),
            quoted(&db.dir().join("data").display().to_string()),
        ),
    )
    .expect("write the config file");

    // Comes up on the file's address (it waits for /healthz there).
    let server = Server::start_with_config(&db, port, &file).await;
    let health = server
        .http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(health.status().is_success());

    // The file's database, not the default one in the data directory.
    assert!(db.dir().join("drover.db").exists(), "{}", server.log_text());
    assert!(!db.dir().join("data/drover.db").exists());
    let status = server
        .http
        .get(format!("{}/api/v1/status", server.url))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("status");
    assert!(status.status().is_success(), "{}", server.log_text());
}

/// Runs the server with `--config file`; a server that starts anyway is
/// killed after a while (and the test fails on its exit status).
fn run_with(file: &Path, dir: &Path) -> Output {
    let mut child = Command::new(bin("drover-server"))
        .arg("--config")
        .arg(file)
        .env_remove("DROVER_CONFIG")
        .env_remove("DROVER_LISTEN")
        .env_remove("DROVER_DATABASE_URL")
        .env("DROVER_DATA_DIR", dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn drover-server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().expect("drover-server's output")
}

#[test]
fn a_bad_config_file_stops_the_server_naming_the_key() {
    let dir = TempDir::new("drover_config");
    let port = free_port();
    for (text, says) in [
        (
            format!("listen = \"127.0.0.1:{port}\"\nretention = \"soon\"\n"),
            "`retention`: invalid value 'soon' for '--retention <RETENTION>'",
        ),
        (
            format!("listn = \"127.0.0.1:{port}\"\n"),
            "unknown key `listn`: did you mean `listen`?",
        ),
        (
            format!("listen = \"127.0.0.1:{port}\"\nlog_json = \"sometimes\"\n"),
            "`log_json`: invalid value 'sometimes'",
        ),
    ] {
        let file = dir.0.join("server.toml");
        std::fs::write(&file, &text).expect("write");
        let out = run_with(&file, &dir.0);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(says), "{text}: {stderr}");
        assert!(
            stderr.contains(&file.display().to_string()),
            "the file is not named: {stderr}"
        );
    }

    let missing = dir.0.join("missing.toml");
    let out = run_with(&missing, &dir.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}
