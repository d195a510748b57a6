//! Starts the server for tests: in this process ([`Server::spawn_app`],
//! the app of `drover_server::Application` on port 0, for API and store
//! stories) or as a real `drover-server` process ([`Server::start`], for
//! kill -9, restarts, TLS and process-wide metrics), and real
//! `drover-agent` processes.
//!
//! Each test gets its own database (a SQLite file in a temporary directory,
//! or a new PostgreSQL database on `DROVER_TEST_PG`) and its own ports.
//! Processes are killed when their handle drops, so a failing test leaves
//! nothing running.

#![allow(dead_code, unused_macros)]

/// Runs each named `async fn name(backend: Backend)` of the test file once
/// on SQLite and once on PostgreSQL (`#[macro_use] mod support;`).
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Postgres).await } )* }
    };
}

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use drover_protocol::api::{
    AgentList, AgentView, NewTask, ServerStatus, Stats, SubmitBatchResponse, TaskDetail,
};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

pub const API_TOKEN: &str = "test-operator-token";
pub const ENROLL_TOKEN: &str = "test-enrollment-token";

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A scratch directory, removed on drop.
pub struct TempDir(pub PathBuf, tempfile::TempDir);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}_"))
            .tempdir()
            .expect("create temp dir");
        Self(dir.path().to_path_buf(), dir)
    }
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The database of one test: its URL and what to clean up.
pub struct Database {
    pub url: String,
    pub backend: Backend,
    dir: TempDir,
    pg_name: Option<String>,
}

impl Database {
    pub async fn new(backend: Backend) -> Self {
        let dir = TempDir::new("drover_it");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.0.join("drover.db").display());
                Self {
                    url,
                    backend,
                    dir,
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let admin = pg_admin_url();
                let name = unique("drover_it");
                let mut c = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL is required: cannot connect to {admin} ({e}); start it or set DROVER_TEST_PG")
                });
                c.execute(format!("CREATE DATABASE \"{name}\"").as_str())
                    .await
                    .expect("create database");
                let base = admin
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_string())
                    .unwrap_or(admin.clone());
                Self {
                    url: format!("{base}/{name}"),
                    backend,
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// A direct connection, for assertions on what was stored.
    pub async fn pg(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to test database")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let admin = pg_admin_url();
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(async {
                        if let Ok(mut c) = PgConnection::connect(&admin).await {
                            let _ = c
                                .execute(
                                    format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
                                        .as_str(),
                                )
                                .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

pub fn pg_admin_url() -> String {
    std::env::var("DROVER_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The app of a [`Server`] started in this process.
struct InProcess {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn bin(name: &str) -> PathBuf {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_drover-server"));
    let path = server.with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A running server: a `drover-server` process, or the app in this process.
pub struct Server {
    pub url: String,
    pub port: u16,
    child: Option<Child>,
    app: Option<InProcess>,
    log: PathBuf,
    args: Vec<(String, String)>,
    db_url: String,
    data_dir: PathBuf,
    /// `--config` of a process started by [`Server::start_with_config`].
    config_file: Option<PathBuf>,
    pub http: reqwest::Client,
}

/// Settings tests commonly shorten.
pub fn fast_timeouts() -> Vec<(&'static str, &'static str)> {
    vec![
        ("DROVER_HEARTBEAT_INTERVAL", "300ms"),
        ("DROVER_HEARTBEAT_TIMEOUT", "2s"),
        ("DROVER_DUTY_INTERVAL", "200ms"),
        ("DROVER_LEADER_TTL", "1500ms"),
    ]
}

impl Server {
    pub async fn start(db: &Database, env: &[(&str, &str)]) -> Self {
        Self::start_on(db, free_port(), env).await
    }

    pub async fn start_on(db: &Database, port: u16, env: &[(&str, &str)]) -> Self {
        let url = format!("http://127.0.0.1:{port}");
        Self::launch(db, port, env, url, reqwest::Client::new()).await
    }

    /// Like [`Server::start`] for a server terminating TLS itself: `env`
    /// names its certificate and key (`DROVER_TLS_CERT`/`DROVER_TLS_KEY`),
    /// `ca_pem` is the CA that signed it, which the test's client trusts.
    /// The URL is `https://localhost:PORT`.
    pub async fn start_https(db: &Database, env: &[(&str, &str)], ca_pem: &str) -> Self {
        let port = free_port();
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA certificate");
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .expect("HTTPS client");
        let url = format!("https://localhost:{port}");
        Self::launch(db, port, env, url, http).await
    }

    async fn launch(
        db: &Database,
        port: u16,
        env: &[(&str, &str)],
        url: String,
        http: reqwest::Client,
    ) -> Self {
        let data_dir = db.dir().join(format!("server-{port}"));
        let mut server = Server {
            url,
            port,
            child: None,
            log: db.dir().join(format!("server-{port}.log")),
            args: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            db_url: db.url.clone(),
            data_dir,
            config_file: None,
            http,
            app: None,
        };
        server.spawn().await;
        server
    }

    /// Starts a `drover-server` process with `--config file`, which must
    /// set the listen address (`127.0.0.1:port`), the database URL and the
    /// data directory: those then come from no variable. The tokens still
    /// do (`API_TOKEN`, `ENROLL_TOKEN`).
    pub async fn start_with_config(db: &Database, port: u16, file: &Path) -> Self {
        let mut server = Server {
            url: format!("http://127.0.0.1:{port}"),
            port,
            child: None,
            log: db.dir().join(format!("server-{port}.log")),
            args: Vec::new(),
            db_url: db.url.clone(),
            data_dir: db.dir().join(format!("server-{port}")),
            config_file: Some(file.to_path_buf()),
            http: reqwest::Client::new(),
            app: None,
        };
        server.spawn().await;
        server
    }

    /// Starts the app in this process on a port of its own (bound, not
    /// guessed), with the same settings [`Server::start`] gives a process.
    pub async fn spawn_app(db: &Database, env: &[(&str, &str)]) -> Self {
        let mut server = Server {
            url: String::new(),
            port: 0,
            child: None,
            log: db.dir().join("in-process.log"),
            args: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            db_url: db.url.clone(),
            data_dir: db.dir().join(unique("server")),
            config_file: None,
            http: reqwest::Client::new(),
            app: None,
        };
        server.spawn_in_process().await;
        server
    }

    async fn spawn_in_process(&mut self) {
        let site = self.data_dir.join("site");
        let mut args: Vec<String> = vec![
            "drover-server".into(),
            format!("--listen=127.0.0.1:{}", self.port),
            format!("--database-url={}", self.db_url),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--api-token={API_TOKEN}"),
            format!("--enrollment-token={ENROLL_TOKEN}"),
            format!("--site-root={}", site.display()),
        ];
        for (k, v) in &self.args {
            let flag = k
                .strip_prefix("DROVER_")
                .unwrap_or_else(|| panic!("{k}: not a server setting"))
                .to_lowercase()
                .replace('_', "-");
            args.push(format!("--{flag}={v}"));
        }
        let config = drover_server::Config::try_parse_from(&args)
            .unwrap_or_else(|e| panic!("server settings {args:?}: {e}"));
        let app = drover_server::Application::build(config)
            .await
            .expect("build the app");
        self.port = app.local_addr().expect("bound address").port();
        self.url = format!("http://127.0.0.1:{}", self.port);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        self.app = Some(InProcess {
            stop: Some(stop),
            task,
        });
    }

    /// Stops an in-process app in order and waits for it to finish.
    pub async fn shutdown(&mut self) {
        let mut app = self.app.take().expect("an in-process app");
        if let Some(stop) = app.stop.take() {
            let _ = stop.send(());
        }
        app.task
            .await
            .expect("the app task")
            .expect("the app stopped cleanly");
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log");
        let mut cmd = Command::new(bin("drover-server"));
        match &self.config_file {
            // The file's settings, which variables would override.
            Some(file) => cmd
                .arg("--config")
                .arg(file)
                .env_remove("DROVER_LISTEN")
                .env_remove("DROVER_DATABASE_URL")
                .env_remove("DROVER_DATA_DIR"),
            None => cmd
                .env_remove("DROVER_CONFIG")
                .env("DROVER_LISTEN", format!("127.0.0.1:{}", self.port))
                .env("DROVER_DATABASE_URL", &self.db_url)
                .env("DROVER_DATA_DIR", &self.data_dir),
        };
        cmd.env("DROVER_API_TOKEN", API_TOKEN)
            .env("DROVER_ENROLLMENT_TOKEN", ENROLL_TOKEN)
            .env("DROVER_SITE_ROOT", self.data_dir.join("site"))
            .env("RUST_LOG", "info,sqlx=warn,tower_http=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in &self.args {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn drover-server"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(format!("{}/healthz", self.url)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("drover-server exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "drover-server did not come up:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        if self.app.is_some() {
            return "(the app runs in this process: no log file)".into();
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no shutdown, no resignation.
    pub fn kill(&mut self) {
        assert!(self.app.is_none(), "kill -9 needs a server process");
        self.kill_process();
    }

    fn kill_process(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to `within` for the exit; a server still
    /// running then is killed and `None` returned.
    pub async fn stop_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take().expect("server running");
        terminate(&c);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("server running");
        terminate(&c);
        c.wait().expect("wait for server")
    }

    /// A process is killed (`kill -9`) and started again; an in-process
    /// app is stopped in order and started again on the same port.
    pub async fn restart(&mut self) {
        if self.app.is_some() {
            self.shutdown().await;
            self.spawn_in_process().await;
            return;
        }
        self.kill();
        self.spawn().await;
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(API_TOKEN)
    }

    /// Where the server looks for the dashboard's built files (`pkg/…`):
    /// empty unless a test puts files there.
    pub fn site_root(&self) -> PathBuf {
        self.data_dir.join("site")
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Waits until the leader's concurrency key admission has caught up
    /// (admission is a pass after the change, not part of it): no key has
    /// both a free slot and a held task, by the queue health API.
    pub async fn keys_settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = self.get("/api/v1/queues").await;
            assert_eq!(status, 200, "{body}");
            let keys = body["keys"].as_array().cloned().unwrap_or_default();
            let settled = keys.iter().all(|k| {
                k["held"].as_i64() == Some(0) || k["admitted"].as_i64() >= k["limit"].as_i64()
            });
            if settled {
                return;
            }
            assert!(Instant::now() < deadline, "keys never settled: {body}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::GET, path)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Agent claims parked on this instance now (the `drover_claim_waiters` gauge).
    pub async fn claim_waiters(&self) -> Option<u64> {
        self.metric("drover_claim_waiters ").await.map(|v| v as u64)
    }

    /// The value of the first `/metrics` line starting with `series`
    /// (name and labels, e.g. `drover_x{reason="y"} `).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        self.metrics_text()
            .await?
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse::<f64>().ok())
    }

    /// The server's whole `/metrics` text.
    pub async fn metrics_text(&self) -> Option<String> {
        self.req(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// Creates a user of `role` and returns their API token.
    pub async fn create_user(&self, name: &str, role: &str) -> String {
        let (status, body) = self
            .post("/api/v1/users", &json!({ "name": name, "role": role }))
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().expect("token").to_string()
    }

    /// Uploads a workflow definition (YAML or JSON text) with `token`.
    pub async fn upload_workflow(&self, token: &str, text: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/api/v1/workflows", self.url))
            .bearer_auth(token)
            .body(text.to_string())
            .send()
            .await
            .expect("upload");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// A request with another bearer token (a user of another role).
    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(body) = body {
            r = r.json(body);
        }
        let r = r.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn submit(&self, tasks: Vec<NewTask>) -> Vec<i64> {
        let (status, body) = self.post("/api/v1/tasks", &json!({ "tasks": tasks })).await;
        assert!(
            status == 201 || status == 200,
            "submit failed: {status} {body}"
        );
        let r: SubmitBatchResponse = serde_json::from_value(body).expect("submit response");
        r.tasks.into_iter().map(|t| t.id).collect()
    }

    pub async fn task(&self, id: i64) -> TaskDetail {
        let (status, body) = self.get(&format!("/api/v1/tasks/{id}")).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).expect("task detail")
    }

    pub async fn agents(&self) -> Vec<AgentView> {
        let (_, body) = self.get("/api/v1/agents").await;
        serde_json::from_value::<AgentList>(body)
            .expect("agent list")
            .agents
    }

    pub async fn stats(&self) -> Stats {
        let (_, body) = self.get("/api/v1/stats").await;
        serde_json::from_value(body).expect("stats")
    }

    pub async fn status(&self) -> Option<ServerStatus> {
        let r = self
            .req(reqwest::Method::GET, "/api/v1/status")
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Waits until `n` tasks have finished (succeeded, failed or cancelled).
    pub async fn wait_finished(&self, n: i64, within: Duration) -> Stats {
        let deadline = Instant::now() + within;
        loop {
            let s = self.stats().await;
            if s.succeeded + s.failed + s.cancelled >= n {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "only {s:?} after {within:?}; server log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_process();
    }
}

fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

/// A running `drover-agent`.
pub struct AgentProcess {
    child: Option<Child>,
    pub name: String,
    pub log: PathBuf,
    pub state_dir: PathBuf,
    config: PathBuf,
    server_url: String,
    extra_args: Vec<String>,
    /// Hand the enrollment token over in `DROVER_TOKEN` instead of `--token`.
    token_in_env: bool,
}

impl AgentProcess {
    /// Starts an agent named `name` with the given TOML config body.
    pub fn start(server: &Server, dir: &Path, name: &str, config_toml: &str) -> Self {
        Self::start_with(server, dir, name, config_toml, &[])
    }

    /// Like [`AgentProcess::start`], with extra command-line arguments.
    pub fn start_with(
        server: &Server,
        dir: &Path,
        name: &str,
        config_toml: &str,
        extra_args: &[&str],
    ) -> Self {
        let mut a = Self::prepare(server, dir, name, config_toml, extra_args);
        a.spawn();
        a
    }

    fn prepare(
        server: &Server,
        dir: &Path,
        name: &str,
        config_toml: &str,
        extra_args: &[&str],
    ) -> Self {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, config_toml).expect("write agent config");
        Self {
            child: None,
            name: name.to_string(),
            log: dir.join(format!("agent-{name}.log")),
            state_dir: dir.join(format!("agent-{name}-state")),
            config,
            server_url: server.url.clone(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            token_in_env: false,
        }
    }

    /// Like [`AgentProcess::start`], with the enrollment token in the
    /// agent's environment (`DROVER_TOKEN`) rather than on its command line.
    pub fn start_with_token_in_env(
        server: &Server,
        dir: &Path,
        name: &str,
        config_toml: &str,
    ) -> Self {
        let mut a = Self::prepare(server, dir, name, config_toml, &[]);
        a.token_in_env = true;
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log");
        let mut command = Command::new(bin("drover-agent"));
        if self.token_in_env {
            command.env("DROVER_TOKEN", ENROLL_TOKEN);
        } else {
            command.arg("--token").arg(ENROLL_TOKEN);
        }
        let child = command
            .arg("--server")
            .arg(&self.server_url)
            .arg("--config")
            .arg(&self.config)
            .arg("--name")
            .arg(&self.name)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn drover-agent");
        self.child = Some(child);
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait up to `within` for the agent to exit.
    pub fn stop(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        terminate(&c);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An agent config with the built-in `echo` and `sleep` handlers and a
/// command handler `flaky` that sleeps on its first attempt only.
pub fn agent_config(capacity: u32, labels: &[&str]) -> String {
    let labels: Vec<String> = labels.iter().map(|l| format!("{l:?}")).collect();
    format!(
        r#"capacity = {capacity}
labels = [{labels}]

[handlers.echo]
kind = "builtin"
builtin = "echo"

[handlers.sleep]
kind = "builtin"
builtin = "sleep"

[handlers.flaky]
kind = "command"
program = "sh"
args = ["-c", "if [ \"$DROVER_ATTEMPT\" = 1 ]; then sleep 60; fi; echo '{{\"attempt\": '$DROVER_ATTEMPT'}}'"]

[handlers.fail]
kind = "command"
program = "sh"
args = ["-c", "echo 'disk on fire' >&2; exit 3"]
"#,
        labels = labels.join(", ")
    )
}

pub fn new_task(task_type: &str, payload: Value) -> NewTask {
    NewTask {
        task_type: task_type.into(),
        payload,
        ..Default::default()
    }
}

/// Polls `check` until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A hand-driven agent speaking the protocol directly, for tests that need
/// exact control over claims and results (stale leases, silence).
pub struct RawAgent {
    pub id: i64,
    pub token: String,
    url: String,
    http: reqwest::Client,
}

impl RawAgent {
    /// The same agent session, talking to another instance.
    pub fn via(&self, server: &Server) -> Self {
        Self {
            id: self.id,
            token: self.token.clone(),
            url: server.url.clone(),
            http: self.http.clone(),
        }
    }

    pub async fn register(server: &Server, name: &str, capacity: u32, types: &[&str]) -> Self {
        let body = json!({
            "name": name, "hostname": "test", "task_types": types, "capacity": capacity,
            "labels": [], "version": "raw", "protocol": 1
        });
        match Self::register_with(server, ENROLL_TOKEN, &body).await {
            Ok(agent) => agent,
            Err((status, body)) => panic!("register: {status} {body}"),
        }
    }

    /// Registers with `enrollment_token` and the given request body; the
    /// status and body of a refusal.
    pub async fn register_with(
        server: &Server,
        enrollment_token: &str,
        request: &Value,
    ) -> Result<Self, (u16, Value)> {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{}/api/v1/agent/register", server.url))
            .bearer_auth(enrollment_token)
            .json(request)
            .send()
            .await
            .expect("register");
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err((status, body));
        }
        Ok(Self {
            id: body["agent_id"].as_i64().expect("agent id"),
            token: body["session_token"].as_str().expect("token").to_string(),
            url: server.url.clone(),
            http,
        })
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/api/v1/agent/{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("agent request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn claim(&self, max: u32, wait_ms: u64) -> Vec<(i64, i64)> {
        let (status, body) = self
            .post("claim", json!({ "max_tasks": max, "wait_ms": wait_ms }))
            .await;
        assert_eq!(status, 200, "{body}");
        body["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| {
                (
                    t["task_id"].as_i64().unwrap_or(0),
                    t["lease_token"].as_i64().unwrap_or(0),
                )
            })
            .collect()
    }

    pub async fn succeed(&self, task_id: i64, lease_token: i64) -> (u16, Value) {
        self.post(
            "results",
            json!({ "results": [{ "task_id": task_id, "lease_token": lease_token, "outcome": { "status": "succeeded", "output": {"by": self.id} } }] }),
        )
        .await
    }
}

/// The step `id` of a run as `GET /api/v1/runs/{id}` returns it.
pub fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .expect("a run's steps")
        .iter()
        .find(|s| s["step_id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {run}"))
}

/// Workflow runs, as the tests drive them over the API.
impl Server {
    /// Uploads a definition that must be accepted as a new version.
    pub async fn upload_ok(&self, text: &str) {
        let (s, body) = self.upload_workflow(API_TOKEN, text).await;
        assert_eq!(s, 201, "{body}");
    }

    /// Starts a run; its id.
    pub async fn start_run(&self, workflow: &str, inputs: Value) -> i64 {
        let (s, run) = self
            .post(
                "/api/v1/runs",
                &json!({ "workflow": workflow, "inputs": inputs }),
            )
            .await;
        assert_eq!(s, 201, "{run}");
        run["id"].as_i64().expect("a run id")
    }

    pub async fn run(&self, id: i64) -> Value {
        self.get(&format!("/api/v1/runs/{id}")).await.1
    }

    /// The run once it has `status` (within 30 s).
    pub async fn wait_run(&self, id: i64, status: &str) -> Value {
        eventually(
            Duration::from_secs(30),
            &format!("run {id} {status}"),
            || async {
                let run = self.run(id).await;
                (run["status"] == status).then_some(run)
            },
        )
        .await
    }

    /// The run once its step `step_id` has `status` (within 30 s).
    pub async fn wait_step(&self, id: i64, step_id: &str, status: &str) -> Value {
        eventually(
            Duration::from_secs(30),
            &format!("step {step_id} of run {id} {status}"),
            || async {
                let run = self.run(id).await;
                (step(&run, step_id)["status"] == status).then_some(run)
            },
        )
        .await
    }
}
