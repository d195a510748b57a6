//! `drover-bench`: starts a real `drover-server` and N real `drover-agent`s
//! with the built-in `echo` handler, on SQLite and/or PostgreSQL, and prints
//! end-to-end throughput (submit → claim → complete over HTTP) and
//! submit-to-start latency on an idle system.
//!
//! Run it from the workspace root after a release build:
//! `cargo build --release --bins && ./target/release/drover-bench`
//! (or `cargo run --release -p drover-bench -- --help`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use drover_protocol::api::{AgentList, Stats, SubmitBatchResponse, TaskDetail};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Parser)]
#[command(about = "Measures Drover's end-to-end throughput and latency with real processes")]
struct Args {
    /// Database(s) to measure.
    #[arg(long, value_enum, default_value = "both")]
    backend: Backend,
    /// Agents to start.
    #[arg(long, default_value_t = 4)]
    agents: u32,
    /// Capacity (M) of each agent.
    #[arg(long, default_value_t = 128)]
    capacity: u32,
    /// No-op tasks for the throughput run.
    #[arg(long, default_value_t = 50_000)]
    tasks: usize,
    /// Tasks per submit request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Concurrent submitters.
    #[arg(long, default_value_t = 2)]
    submitters: usize,
    /// Single tasks submitted one at a time on the idle system for latency.
    #[arg(long, default_value_t = 300)]
    latency_samples: usize,
    /// PostgreSQL server to create the benchmark database on.
    #[arg(
        long,
        env = "DROVER_TEST_PG",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg_admin_url: String,
    /// Directory holding drover-server and drover-agent (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

const API_TOKEN: &str = "bench-operator";
const ENROLL_TOKEN: &str = "bench-enroll";

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Report {
    backend: &'static str,
    tasks: usize,
    elapsed: Duration,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .to_path_buf(),
    };
    for b in ["drover-server", "drover-agent"] {
        if !bin_dir.join(b).exists() {
            bail!(
                "{} not found in {}: run `cargo build --release --bins` first",
                b,
                bin_dir.display()
            );
        }
    }
    let backends: Vec<&'static str> = match args.backend {
        Backend::Sqlite => vec!["sqlite"],
        Backend::Postgres => vec!["postgres"],
        Backend::Both => vec!["sqlite", "postgres"],
    };
    println!(
        "drover-bench: {} agents x capacity {}, {} no-op tasks in batches of {} from {} submitters, {} latency samples",
        args.agents, args.capacity, args.tasks, args.batch, args.submitters, args.latency_samples
    );
    let mut reports = Vec::new();
    for backend in backends {
        reports.push(
            run(&args, &bin_dir, backend)
                .await
                .with_context(|| format!("{backend} run failed"))?,
        );
    }
    println!();
    println!(
        "| database | tasks | seconds | throughput (tasks/s) | submit→start p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &reports {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms |",
            r.backend,
            r.tasks,
            r.elapsed.as_secs_f64(),
            r.tasks as f64 / r.elapsed.as_secs_f64(),
            r.p50_ms,
            r.p99_ms,
            r.max_ms
        );
    }
    Ok(())
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

async fn run(args: &Args, bin_dir: &Path, backend: &'static str) -> Result<Report> {
    let dir = std::env::temp_dir().join(format!("drover-bench-{}-{}", backend, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db_url = match backend {
        "sqlite" => format!("sqlite://{}", dir.join("bench.db").display()),
        _ => {
            let name = format!("drover_bench_{}", std::process::id());
            psql(
                &args.pg_admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )?;
            psql(&args.pg_admin_url, &format!("CREATE DATABASE {name}"))?;
            let base = args
                .pg_admin_url
                .rsplit_once('/')
                .map(|(b, _)| b)
                .unwrap_or(&args.pg_admin_url);
            format!("{base}/{name}")
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut procs = Procs(Vec::new());
    let log = std::fs::File::create(dir.join("server.log"))?;
    procs.0.push(
        Command::new(bin_dir.join("drover-server"))
            .env("DROVER_LISTEN", format!("127.0.0.1:{port}"))
            .env("DROVER_DATABASE_URL", &db_url)
            .env("DROVER_DATA_DIR", &dir)
            .env("DROVER_API_TOKEN", API_TOKEN)
            .env("DROVER_ENROLLMENT_TOKEN", ENROLL_TOKEN)
            .env("DROVER_TASK_TYPES", "echo")
            .env("DROVER_DB_MAX_CONNECTIONS", "16")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start drover-server")?,
    );
    let http = reqwest::Client::new();
    wait_for(&http, &format!("{url}/healthz"), Duration::from_secs(30)).await?;
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "capacity = {}\n\n[handlers.echo]\nkind = \"builtin\"\nbuiltin = \"echo\"\n",
            args.capacity
        ),
    )?;
    for i in 0..args.agents {
        let log = std::fs::File::create(dir.join(format!("agent-{i}.log")))?;
        procs.0.push(
            Command::new(bin_dir.join("drover-agent"))
                .args(["--server", &url, "--token", ENROLL_TOKEN])
                .arg("--config")
                .arg(&config)
                .args(["--name", &format!("bench-{i}")])
                .arg("--state-dir")
                .arg(dir.join(format!("agent-{i}")))
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("start drover-agent")?,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let agents: AgentList = http
            .get(format!("{url}/api/v1/agents"))
            .bearer_auth(API_TOKEN)
            .send()
            .await?
            .json()
            .await?;
        if agents.agents.len() == args.agents as usize {
            break;
        }
        if Instant::now() > deadline {
            bail!("agents did not register; see {}", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Latency first, on the idle system: one task at a time.
    let mut latencies = Vec::with_capacity(args.latency_samples);
    for i in 0..args.latency_samples {
        let sent = now_us();
        let r: serde_json::Value = http
            .post(format!("{url}/api/v1/tasks"))
            .bearer_auth(API_TOKEN)
            .json(&json!({"task_type": "echo", "payload": {"sample": i}}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = r["id"].as_i64().context("task id")?;
        let started = loop {
            let t: TaskDetail = http
                .get(format!("{url}/api/v1/tasks/{id}"))
                .bearer_auth(API_TOKEN)
                .send()
                .await?
                .json()
                .await?;
            if t.task.status.is_terminal() {
                let a = t.attempt_history.first().context("attempt")?;
                break a.started_at_us.unwrap_or(a.claimed_at_us);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        latencies.push((started - sent) as f64 / 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let (p50_ms, p99_ms, max_ms) = (pct(0.50), pct(0.99), pct(1.0));

    // Throughput: many submitters, batches, until everything has succeeded.
    let before: Stats = http
        .get(format!("{url}/api/v1/stats"))
        .bearer_auth(API_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let started = Instant::now();
    let per_submitter = args.tasks / args.submitters;
    let mut submitters = Vec::new();
    for s in 0..args.submitters {
        let (http, url, batch) = (http.clone(), url.clone(), args.batch);
        submitters.push(tokio::spawn(async move {
            let mut sent = 0;
            while sent < per_submitter {
                let n = batch.min(per_submitter - sent);
                let tasks: Vec<_> = (0..n)
                    .map(|i| json!({"task_type": "echo", "payload": {"s": s, "i": sent + i}}))
                    .collect();
                let r: SubmitBatchResponse = http
                    .post(format!("{url}/api/v1/tasks"))
                    .bearer_auth(API_TOKEN)
                    .json(&json!({ "tasks": tasks }))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                sent += r.tasks.len();
            }
            anyhow::Ok(sent)
        }));
    }
    let mut total = 0;
    for s in submitters {
        total += s.await??;
    }
    let target = before.succeeded + total as i64;
    loop {
        let s: Stats = http
            .get(format!("{url}/api/v1/stats"))
            .bearer_auth(API_TOKEN)
            .send()
            .await?
            .json()
            .await?;
        if s.succeeded >= target {
            break;
        }
        if s.failed > before.failed {
            bail!("{} tasks failed", s.failed - before.failed);
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("throughput run did not finish in 10 minutes: {s:?}");
        }
        // Counting is a scan: poll gently so the measurement does not load the server.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "{backend}: {total} tasks in {:.2} s = {:.0} tasks/s; latency p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    drop(procs);
    if backend == "postgres" {
        let name = format!("drover_bench_{}", std::process::id());
        let _ = psql(
            &args.pg_admin_url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Report {
        backend,
        tasks: total,
        elapsed,
        p50_ms,
        p99_ms,
        max_ms,
    })
}

fn psql(admin_url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .arg(admin_url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("run psql")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

async fn wait_for(http: &reqwest::Client, url: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} did not answer within {within:?}")
}
