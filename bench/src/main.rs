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
use drover_protocol::api::{AgentList, Stats, SubmitBatchResponse, TaskDetail, TaskList};
use serde_json::json;

mod ceilings;
mod clients;
mod scale;

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum Mode {
    /// No-op task throughput and submit-to-start latency.
    Queue,
    /// Workflow shapes: a 40-step chain, a 1,000-item fan-out, and 1,000
    /// concurrent 10-step runs (of no-op steps, then of 1 s steps).
    Workflows,
    /// Many concurrent clients submitting one task per request (one client
    /// first, for the lone caller's latency), while the agents drain.
    Clients,
    /// "Why is this waiting?" with `--tasks` queued and no agent: the cost
    /// of `GET /api/v1/tasks/{id}` for queued tasks across the queue.
    Explain,
    /// The figures of docs/SCALING.md: a simulated fleet, claims against a
    /// deep queue, and pages over a long history (`--scale-parts`).
    Scale,
    Both,
}

#[derive(Debug, Parser)]
#[command(about = "Measures Drover's end-to-end throughput and latency with real processes")]
struct Args {
    /// What to measure.
    #[arg(long, value_enum, default_value = "both")]
    mode: Mode,
    /// Concurrent 10-step runs in the workflow mode.
    #[arg(long, default_value_t = 1000)]
    linear_runs: usize,
    /// Database(s) to measure.
    #[arg(long, value_enum, default_value = "both")]
    backend: Backend,
    /// Agents to start.
    #[arg(long, default_value_t = 4)]
    agents: u32,
    /// Capacity (M) of each agent. In the workflow mode it is raised, if
    /// needed, so that the agents together can run every concurrent run's
    /// step at once (`--linear-runs` / `--agents`, rounded up).
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
    /// Concurrent single-task clients in the clients mode.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Each throughput task sleeps this long on the agent (the built-in
    /// `sleep` handler) instead of echoing: with it, the queue mode shows
    /// how much of the fleet's time goes between tasks.
    #[arg(long, default_value_t = 0)]
    task_ms: u64,
    /// Concurrency keys in the queue mode: every other task takes one of
    /// this many keys (`bench:<n>`), each limited to `--key-limit` tasks at
    /// once. 0: no keys.
    #[arg(long, default_value_t = 0)]
    keys: usize,
    /// The limit of each key (`--keys`).
    #[arg(long, default_value_t = 8)]
    key_limit: i64,
    /// Finished tasks two days old put in the database before the queue
    /// mode's measurement, for retention (keep-for 1 hour, a pass every
    /// second) to delete while it runs. 0: none, retention idle.
    #[arg(long, default_value_t = 0)]
    retention_backlog: u64,
    /// With `--retention-backlog`: keep everything (retention finds nothing
    /// due), to tell the backlog's own cost from the deletes'.
    #[arg(long)]
    retention_off: bool,
    /// Server instances sharing the database (PostgreSQL only); agents and
    /// submitters are spread over them.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// What the scale mode measures.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "fleet,claims,history"
    )]
    scale_parts: Vec<scale::Part>,
    /// Simulated agents in the scale mode's fleet.
    #[arg(long, default_value_t = 1000)]
    sim_agents: usize,
    /// How long the simulated fleet runs.
    #[arg(long, default_value_t = 60)]
    scale_seconds: u64,
    /// Tasks a second submitted for the simulated fleet.
    #[arg(long, default_value_t = 200)]
    scale_rate: usize,
    /// Tasks queued for the second claim measurement.
    #[arg(long, default_value_t = 1_000_000)]
    claim_backlog: usize,
    /// Finished tasks the database is grown to before timing pages.
    #[arg(long, default_value_t = 10_000_000)]
    history: u64,
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
    /// Keep each run's database (and SQLite file) for inspection instead of
    /// dropping it at the end; the paths are printed.
    #[arg(long)]
    keep: bool,
    /// Directory holding drover-server and drover-agent (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Runs per database. This machine's neighbours move the figures by
    /// milliseconds from minute to minute: with more than one run the
    /// medians are printed after the runs.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Another directory of drover-server and drover-agent to compare
    /// with: its runs alternate with this build's, so both see the same
    /// minutes of the machine (rows marked `[against]`).
    #[arg(long)]
    against: Option<PathBuf>,
    /// Directory of the reference scripts (`sqlite_limit.py`, `pg_limit.sh`,
    /// e.g. `../shared/bench/limit`): the databases' own queue ceilings are
    /// measured after the runs and each queue figure is printed as a
    /// fraction of its database's batch-100 ceiling.
    #[arg(long)]
    ceilings: Option<PathBuf>,
}

const API_TOKEN: &str = "bench-operator";
const ENROLL_TOKEN: &str = "bench-enroll";
const ADMIN_PASSWORD: &str = "bench-admin-password";

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
    let mut args = Args::parse();
    if args.mode == Mode::Explain {
        args.agents = 0;
    }
    if matches!(args.mode, Mode::Workflows | Mode::Both) {
        let needed = (args.linear_runs as u32).div_ceil(args.agents.max(1));
        args.capacity = args.capacity.max(needed);
    }
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .to_path_buf(),
    };
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    if args.instances == 0 {
        bail!("--instances must be at least 1");
    }
    if args.instances > 1 && args.backend != Backend::Postgres {
        bail!("--instances > 1 needs --backend postgres: SQLite is one server's file");
    }
    if args.keep && (args.repeat > 1 || args.against.is_some()) {
        bail!("--keep keeps a single run's database: use it without --repeat and --against");
    }
    let mut builds = vec![("", bin_dir.clone())];
    if let Some(other) = &args.against {
        builds.push((" [against]", other.clone()));
    }
    for (_, dir) in &builds {
        for b in ["drover-server", "drover-agent"] {
            if !dir.join(b).exists() {
                bail!(
                    "{} not found in {}: run `cargo build --release --bins` first",
                    b,
                    dir.display()
                );
            }
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
    if args.keys > 0 {
        println!(
            "drover-bench: every other task takes one of {} concurrency keys, each limited to {}",
            args.keys, args.key_limit
        );
    }
    let mut reports = Vec::new();
    let mut flows: Vec<(String, FlowReport)> = Vec::new();
    let mut client_reports: Vec<(String, clients::Report)> = Vec::new();
    for backend in backends {
        for _ in 0..args.repeat {
            for (tag, dir) in &builds {
                let m = run(&args, dir, backend)
                    .await
                    .with_context(|| format!("{backend} run failed"))?;
                reports.extend(
                    m.queue
                        .into_iter()
                        .map(|r| (format!("{}{tag}", r.backend), r)),
                );
                flows.extend(
                    m.flows
                        .into_iter()
                        .map(|f| (format!("{}{tag}", f.backend), f)),
                );
                client_reports.extend(
                    m.clients
                        .into_iter()
                        .map(|c| (format!("{}{tag}", c.backend), c)),
                );
            }
        }
    }
    if !flows.is_empty() {
        println!();
        println!("| database | shape | total | result→claimed p50 | p99 | handler→handler p50 | p99 | samples |");
        println!("|---|---|---|---|---|---|---|---|");
        for (label, f) in &flows {
            println!(
                "| {} | {} | {:.2} s | {} | {} | {} | {} | {} |",
                label,
                f.shape,
                f.total.as_secs_f64(),
                ms(f.p50_ms),
                ms(f.p99_ms),
                ms(f.handler_p50_ms),
                ms(f.handler_p99_ms),
                f.samples
            );
        }
    }
    if args.repeat > 1 && !flows.is_empty() {
        print_medians(&flows);
    }
    if !client_reports.is_empty() {
        clients::print(&client_reports);
    }
    if reports.is_empty() {
        return Ok(());
    }
    println!();
    println!(
        "| database | tasks | seconds | throughput (tasks/s) | submit→start p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, r) in &reports {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms |",
            label,
            r.tasks,
            r.elapsed.as_secs_f64(),
            r.tasks as f64 / r.elapsed.as_secs_f64(),
            r.p50_ms,
            r.p99_ms,
            r.max_ms
        );
    }
    if args.repeat > 1 {
        print_queue_medians(&reports);
    }
    if let Some(dir) = &args.ceilings {
        let measured: Vec<&'static str> = reports.iter().map(|(_, r)| r.backend).collect();
        let mut backends: Vec<&'static str> = Vec::new();
        for b in measured {
            if !backends.contains(&b) {
                backends.push(b);
            }
        }
        let limits = ceilings::measure(dir, &backends)?;
        print_ratios(&reports, &limits);
    }
    Ok(())
}

/// Each database's median queue throughput as a fraction of its ceiling.
fn print_ratios(reports: &[(String, Report)], limits: &ceilings::Ceilings) {
    println!();
    println!("| database | throughput (tasks/s, median) | ceiling at batch 100 (tasks/s) | fraction of the ceiling |");
    println!("|---|---|---|---|");
    for (label, runs) in by_label(reports) {
        let Some(limit) = runs.first().and_then(|r| limits.get(r.backend)) else {
            continue;
        };
        let rate = median(
            runs.iter()
                .map(|r| r.tasks as f64 / r.elapsed.as_secs_f64())
                .collect(),
        )
        .unwrap_or(0.0);
        println!("| {label} | {rate:.0} | {limit:.0} | {:.3} |", rate / limit);
    }
}

/// The runs of each label (database, and build), labels in the order they
/// first appear.
fn by_label<R>(reports: &[(String, R)]) -> Vec<(&str, Vec<&R>)> {
    let mut groups: Vec<(&str, Vec<&R>)> = Vec::new();
    for (label, report) in reports {
        match groups.iter_mut().find(|(l, _)| *l == label.as_str()) {
            Some((_, runs)) => runs.push(report),
            None => groups.push((label, vec![report])),
        }
    }
    groups
}

/// Whether any task has `status` (one row of the list, read by index).
async fn any_task(http: &reqwest::Client, url: &str, status: &str) -> Result<bool> {
    let list: TaskList = http
        .get(format!("{url}/api/v1/tasks?status={status}&limit=1"))
        .bearer_auth(API_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(!list.tasks.is_empty())
}

/// The median of the queue figures over the runs of each database (and build).
fn print_queue_medians(reports: &[(String, Report)]) {
    println!();
    println!("| database | runs | throughput (tasks/s) | submit→start p50 | p99 |");
    println!("|---|---|---|---|---|");
    for (label, runs) in by_label(reports) {
        let rate = median(
            runs.iter()
                .map(|r| r.tasks as f64 / r.elapsed.as_secs_f64())
                .collect(),
        );
        let p50 = median(runs.iter().map(|r| r.p50_ms).collect());
        let p99 = median(runs.iter().map(|r| r.p99_ms).collect());
        println!(
            "| {label} | {} | {:.0} | {} | {} |",
            runs.len(),
            rate.unwrap_or(0.0),
            ms(p50),
            ms(p99)
        );
    }
}

/// The median of each shape's figures over the runs of each database (and build).
fn print_medians(flows: &[(String, FlowReport)]) {
    let mut groups: Vec<(&str, &str, Vec<&FlowReport>)> = Vec::new();
    for (label, f) in flows {
        match groups
            .iter_mut()
            .find(|(l, s, _)| *l == label.as_str() && *s == f.shape.as_str())
        {
            Some((_, _, runs)) => runs.push(f),
            None => groups.push((label, &f.shape, vec![f])),
        }
    }
    println!();
    println!("| database | shape | runs | total | result→claimed p50 | p99 | handler→handler p50 | p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    for (label, shape, runs) in groups {
        let total = median(runs.iter().map(|f| f.total.as_secs_f64()).collect());
        let p50 = median(runs.iter().filter_map(|f| f.p50_ms).collect());
        let p99 = median(runs.iter().filter_map(|f| f.p99_ms).collect());
        let handler_p50 = median(runs.iter().filter_map(|f| f.handler_p50_ms).collect());
        let handler_p99 = median(runs.iter().filter_map(|f| f.handler_p99_ms).collect());
        println!(
            "| {label} | {shape} | {} | {:.2} s | {} | {} | {} | {} |",
            runs.len(),
            total.unwrap_or(0.0),
            ms(p50),
            ms(p99),
            ms(handler_p50),
            ms(handler_p99)
        );
    }
}

/// A figure in milliseconds for the tables, or a dash when there is none.
fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2} ms"))
        .unwrap_or_else(|| "—".into())
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

struct FlowReport {
    backend: &'static str,
    shape: String,
    total: Duration,
    /// Predecessor's result recorded → task claimed.
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// Predecessor's handler finished → the task's handler started.
    handler_p50_ms: Option<f64>,
    handler_p99_ms: Option<f64>,
    samples: usize,
}

impl FlowReport {
    /// A shape's report from its sorted per-step gaps (result→claimed and
    /// handler→handler; empty for a shape without steps to measure).
    fn new(
        backend: &'static str,
        shape: String,
        total: Duration,
        gaps: &[f64],
        handler: &[f64],
    ) -> Self {
        Self {
            backend,
            shape,
            total,
            p50_ms: pct(gaps, 0.5),
            p99_ms: pct(gaps, 0.99),
            handler_p50_ms: pct(handler, 0.5),
            handler_p99_ms: pct(handler, 0.99),
            samples: gaps.len(),
        }
    }
}

/// What one run on one database measured, by mode.
#[derive(Default)]
struct Measured {
    queue: Option<Report>,
    flows: Vec<FlowReport>,
    clients: Option<clients::Report>,
}

async fn run(args: &Args, bin_dir: &Path, backend: &'static str) -> Result<Measured> {
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
            // The admin URL's options (`?sslmode=disable`) apply to the run's database too.
            let (admin, options) = match args.pg_admin_url.split_once('?') {
                Some((url, options)) => (url, format!("?{options}")),
                None => (args.pg_admin_url.as_str(), String::new()),
            };
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
            format!("{base}/{name}{options}")
        }
    };
    let mut procs = Procs(Vec::new());
    let mut urls = Vec::with_capacity(args.instances);
    let mut server_pids = Vec::with_capacity(args.instances);
    for instance in 0..args.instances {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let data_dir = dir.join(format!("server-{instance}"));
        std::fs::create_dir_all(&data_dir)?;
        let log = std::fs::File::create(dir.join(format!("server-{instance}.log")))?;
        let child = Command::new(bin_dir.join("drover-server"))
            .env("DROVER_LISTEN", format!("127.0.0.1:{port}"))
            .env("DROVER_DATABASE_URL", &db_url)
            .env("DROVER_DATA_DIR", &data_dir)
            .env("DROVER_API_TOKEN", API_TOKEN)
            .env("DROVER_ENROLLMENT_TOKEN", ENROLL_TOKEN)
            .env("DROVER_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("DROVER_TASK_TYPES", "echo,sleep,sim,backlog")
            .env("DROVER_DB_MAX_CONNECTIONS", "16")
            .env(
                "DROVER_RETENTION",
                if args.retention_off || args.mode == Mode::Scale {
                    "0s"
                } else {
                    "1h"
                },
            )
            .env(
                "DROVER_RETENTION_INTERVAL",
                if args.retention_backlog > 0 {
                    "1s"
                } else {
                    "1h"
                },
            )
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start drover-server")?;
        server_pids.push(child.id());
        procs.0.push(child);
        urls.push(format!("http://127.0.0.1:{port}"));
    }
    let url = urls[0].clone();
    let http = reqwest::Client::new();
    for u in &urls {
        wait_for(&http, &format!("{u}/healthz"), Duration::from_secs(30)).await?;
    }
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "capacity = {}\n\n[handlers.echo]\nkind = \"builtin\"\nbuiltin = \"echo\"\n\n[handlers.sleep]\nkind = \"builtin\"\nbuiltin = \"sleep\"\n",
            args.capacity
        ),
    )?;
    let mut agent_pids = Vec::new();
    for i in 0..args.agents {
        let log = std::fs::File::create(dir.join(format!("agent-{i}.log")))?;
        let server = &urls[i as usize % urls.len()];
        let child = Command::new(bin_dir.join("drover-agent"))
            .args(["--server", server, "--token", ENROLL_TOKEN])
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
            .context("start drover-agent")?;
        agent_pids.push(child.id());
        procs.0.push(child);
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

    if args.retention_backlog > 0 {
        let started = Instant::now();
        add_old_finished_tasks(backend, &db_url, &dir, args.retention_backlog)?;
        println!(
            "{backend}: {} finished tasks two days old added in {:.1} s, for retention to delete during the run",
            args.retention_backlog,
            started.elapsed().as_secs_f64()
        );
    }
    let mut measured = Measured::default();
    if args.mode == Mode::Scale {
        if !agent_pids.is_empty() {
            // Registered and polling, with nothing to do.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let mut most = 0.0f64;
            for pid in &agent_pids {
                most = most.max(scale::rss_mib(*pid)?.0);
            }
            println!(
                "{backend}: an idle drover-agent's RSS: {most:.1} MiB (the largest of {})",
                agent_pids.len()
            );
        }
        let settings = scale::Settings {
            parts: args.scale_parts.clone(),
            sim_agents: args.sim_agents,
            seconds: args.scale_seconds,
            rate: args.scale_rate,
            claim_backlog: args.claim_backlog,
            history: args.history,
        };
        let target = scale::Target {
            backend,
            url: &url,
            db_url: &db_url,
            dir: &dir,
            server_pid: server_pids[0],
            api_token: API_TOKEN,
            enroll_token: ENROLL_TOKEN,
            admin_password: ADMIN_PASSWORD,
        };
        scale::measure(&settings, &target).await?;
        drop(procs);
        cleanup(args, backend, &dir);
        return Ok(measured);
    }
    if args.mode == Mode::Explain {
        explain(args, &http, &url, backend).await?;
        drop(procs);
        cleanup(args, backend, &dir);
        return Ok(measured);
    }
    if args.mode == Mode::Clients {
        let before = stats(&http, &url).await?;
        let report = clients::measure(
            backend,
            &url,
            API_TOKEN,
            args.clients,
            args.tasks,
            args.latency_samples,
        )
        .await?;
        let sent = (report.single.requests + report.concurrent.requests) as i64;
        drained(&http, &url, &before, sent).await?;
        measured.clients = Some(report);
        drop(procs);
        cleanup(args, backend, &dir);
        return Ok(measured);
    }
    if matches!(args.mode, Mode::Workflows | Mode::Both) {
        measured.flows = workflows(args, &http, &url, backend).await?;
    }
    if args.mode == Mode::Workflows {
        drop(procs);
        cleanup(args, backend, &dir);
        return Ok(measured);
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
    let before = stats(&http, &url).await?;
    let run_before = handler_time(&http, &url).await?;
    let started = Instant::now();
    let per_submitter = args.tasks / args.submitters;
    let task = if args.task_ms > 0 {
        ("sleep", json!({ "ms": args.task_ms }))
    } else {
        ("echo", json!({}))
    };
    let mut submitters = Vec::new();
    for s in 0..args.submitters {
        let url = urls[s % urls.len()].clone();
        let (http, batch, task) = (http.clone(), args.batch, task.clone());
        let (keys, key_limit) = (args.keys, args.key_limit);
        submitters.push(tokio::spawn(async move {
            let mut sent = 0;
            while sent < per_submitter {
                let n = batch.min(per_submitter - sent);
                let tasks: Vec<_> = (0..n)
                    .map(|i| {
                        let mut payload = task.1.clone();
                        payload["s"] = json!(s);
                        payload["i"] = json!(sent + i);
                        let n = sent + i;
                        if keys > 0 && n % 2 == 0 {
                            json!({"task_type": task.0, "payload": payload,
                                   "concurrency_key": format!("bench:{}", (n / 2 + s) % keys),
                                   "concurrency_limit": key_limit})
                        } else {
                            json!({"task_type": task.0, "payload": payload})
                        }
                    })
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
    let elapsed = drained(&http, &url, &before, total as i64).await? - started;
    println!(
        "{backend}: {total} tasks in {:.2} s = {:.0} tasks/s; latency p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    for (i, pid) in server_pids.iter().enumerate() {
        let (rss, peak) = scale::rss_mib(*pid)?;
        println!("{backend}: server {i} RSS {rss:.1} MiB, peak {peak:.1} MiB");
    }
    if args.task_ms > 0 {
        let slots = f64::from(args.agents * args.capacity);
        let ideal = slots * 1000.0 / args.task_ms as f64;
        let rate = total as f64 / elapsed.as_secs_f64();
        let run_after = handler_time(&http, &url).await?;
        let handler_s = (run_after.0 - run_before.0) / (run_after.1 - run_before.1).max(1.0);
        let slot_s_per_task = slots * elapsed.as_secs_f64() / total as f64;
        if run_after.1 == run_before.1 {
            // A server without `drover_task_run_seconds` (an older build).
            println!(
                "{backend}: {:.1} % of the ideal {ideal:.0} tasks/s of {} ms tasks on {} slots",
                100.0 * rate / ideal,
                args.task_ms,
                slots
            );
        } else {
            println!(
                "{backend}: {:.1} % of the ideal {ideal:.0} tasks/s of {} ms tasks on {} slots; \
             handlers ran {:.2} ms on average, slots spent {:.2} ms per task between tasks \
             (the fleet was busy {:.1} % of the time)",
                100.0 * rate / ideal,
                args.task_ms,
                slots,
                handler_s * 1000.0,
                (slot_s_per_task - handler_s) * 1000.0,
                100.0 * handler_s / slot_s_per_task
            );
        }
        print_server_timings(&http, &url, backend).await?;
    }
    if args.retention_backlog > 0 {
        let text = metrics_text(&http, &url).await?;
        let deleted = series_value(&text, "drover_retention_deleted_total{what=\"tasks\"}");
        println!(
            "{backend}: retention deleted {:.0} of the {} old tasks by the end of the run",
            deleted.unwrap_or(0.0),
            args.retention_backlog
        );
    }
    drop(procs);
    cleanup(args, backend, &dir);
    measured.queue = Some(Report {
        backend,
        tasks: total,
        elapsed,
        p50_ms,
        p99_ms,
        max_ms,
    });
    Ok(measured)
}

/// Queues `--tasks` tasks with no agent to take them (priorities spread, so
/// the claim order is not the id order), then times the explanation of 300
/// of them picked across the queue, one request at a time.
async fn explain(args: &Args, http: &reqwest::Client, url: &str, backend: &str) -> Result<()> {
    let mut ids = Vec::with_capacity(args.tasks);
    let mut sent = 0;
    while sent < args.tasks {
        let n = args.batch.min(args.tasks - sent);
        let tasks: Vec<_> = (0..n)
            .map(|i| json!({"task_type": "echo", "urgency": (sent + i) % 11, "payload": {"i": sent + i}}))
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
        ids.extend(r.tasks.iter().map(|t| t.id));
        sent += n;
    }
    let samples = 300.min(ids.len());
    let mut times = Vec::with_capacity(samples);
    for k in 0..samples {
        let id = ids[k * ids.len() / samples];
        let started = Instant::now();
        let t: serde_json::Value = http
            .get(format!("{url}/api/v1/tasks/{id}"))
            .bearer_auth(API_TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if t["waiting"].is_null() {
            bail!("task {id} came back without its explanation: {t}");
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{backend}: explaining a queued task with {} queued: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({samples} tasks across the queue, one request at a time)",
        ids.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

/// The server's running total of handler time (seconds, by the agents'
/// clocks) and the number of results it sums.
async fn handler_time(http: &reqwest::Client, url: &str) -> Result<(f64, f64)> {
    let text = metrics_text(http, url).await?;
    let value = |series: &str| series_value(&text, series).unwrap_or(0.0);
    Ok((
        value("drover_task_run_seconds_sum"),
        value("drover_task_run_seconds_count"),
    ))
}

async fn stats(http: &reqwest::Client, url: &str) -> Result<Stats> {
    Ok(http
        .get(format!("{url}/api/v1/stats"))
        .bearer_auth(API_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Waits until nothing is queued or running, then checks that the `sent`
/// tasks submitted since `before` all succeeded. Returns when the queue
/// was seen empty.
async fn drained(http: &reqwest::Client, url: &str, before: &Stats, sent: i64) -> Result<Instant> {
    let started = Instant::now();
    // Each check reads one row of an index; counting every status
    // (`/stats`) is a scan of the table, which polled this often would load
    // the database it measures.
    loop {
        if !any_task(http, url, "queued").await? && !any_task(http, url, "running").await? {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the queue did not drain in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let empty = Instant::now();
    let s = stats(http, url).await?;
    if s.failed > before.failed {
        bail!("{} tasks failed", s.failed - before.failed);
    }
    // Old finished tasks deleted by retention meanwhile
    // (`--retention-backlog`) are succeeded tasks no longer counted.
    let deleted = series_value(
        &metrics_text(http, url).await?,
        "drover_retention_deleted_total{what=\"tasks\"}",
    )
    .unwrap_or(0.0) as i64;
    if s.succeeded + deleted < before.succeeded + sent {
        bail!(
            "only {} of {sent} tasks succeeded: {s:?}",
            s.succeeded - before.succeeded
        );
    }
    Ok(empty)
}

/// Inserts `n` tasks that finished two days ago, in one statement written
/// for both databases (PostgreSQL through `psql`, SQLite through the
/// `sqlite3` shell, beside the running server).
fn add_old_finished_tasks(backend: &str, db_url: &str, dir: &Path, n: u64) -> Result<()> {
    let at = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as i64)
        - 2 * 86_400 * 1_000_000;
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
         INSERT INTO tasks (task_type, payload, urgency, time_sensitivity, importance, priority, rank, \
           status, attempts, max_attempts, timeout_ms, retry_backoff_ms, run_after, created_at, \
           updated_at, finished_at) \
         SELECT 'echo', '{{}}', 0, 0, 0, 0, 0, 'succeeded', 1, 3, 300000, 1000, {at}, {at}, {at}, {at} FROM n"
    );
    if backend == "sqlite" {
        sqlite_exec(dir, &format!("{sql};"))?;
    } else {
        psql(db_url, &sql)?;
    }
    // Rows finished in the past are never written after the server's count
    // mark has passed them, except here: count again from the start, as
    // after the upgrade that added the mark (a build before it has none).
    let recount = "UPDATE task_totals SET n = 0; UPDATE task_totals_mark SET upto = 0";
    let _ = if backend == "sqlite" {
        sqlite_exec(dir, &format!("BEGIN; {recount}; COMMIT;"))
    } else {
        psql(db_url, recount)
    };
    Ok(())
}

/// Runs `sql` on the run's SQLite file with the `sqlite3` shell, beside the
/// running server; returns what it printed.
fn sqlite_exec_output(dir: &Path, sql: &str) -> Result<String> {
    let out = Command::new("sqlite3")
        .args(["-cmd", ".timeout 60000"])
        .arg(dir.join("bench.db"))
        .arg(sql)
        .output()
        .context("run sqlite3 (apt install sqlite3)")?;
    if !out.status.success() {
        bail!("sqlite3 failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sqlite_exec(dir: &Path, sql: &str) -> Result<()> {
    sqlite_exec_output(dir, sql).map(|_| ())
}

/// One integer the query selects, on SQLite.
fn sqlite_scalar(dir: &Path, sql: &str) -> Result<i64> {
    let out = sqlite_exec_output(dir, sql)?;
    out.trim()
        .parse()
        .with_context(|| format!("{sql:?} gave {out:?}"))
}

/// One integer the query selects, on PostgreSQL.
fn psql_scalar(url: &str, sql: &str) -> Result<i64> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-t", "-A", "-c", sql])
        .output()
        .context("run psql")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("{sql:?} gave {text:?}"))
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

fn cleanup(args: &Args, backend: &str, dir: &Path) {
    let name = format!("drover_bench_{}", std::process::id());
    if args.keep {
        println!(
            "{backend}: kept {}",
            if backend == "postgres" {
                name
            } else {
                dir.display().to_string()
            }
        );
        return;
    }
    if backend == "postgres" {
        let _ = psql(
            &args.pg_admin_url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn chain(name: &str, steps: usize, task: &str) -> String {
    let mut def = format!("name: {name}\nsteps:\n");
    for i in 0..steps {
        def.push_str(&format!("  - id: s{i}\n    type: task\n{task}"));
        if i > 0 {
            def.push_str(&format!("    depends_on: [s{}]\n", i - 1));
        }
    }
    def
}

async fn upload(http: &reqwest::Client, url: &str, def: String) -> Result<()> {
    http.post(format!("{url}/api/v1/workflows"))
        .bearer_auth(API_TOKEN)
        .body(def)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

async fn start_run(http: &reqwest::Client, url: &str, workflow: &str) -> Result<i64> {
    let r: serde_json::Value = http
        .post(format!("{url}/api/v1/runs"))
        .bearer_auth(API_TOKEN)
        .json(&json!({ "workflow": workflow }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    r["id"].as_i64().context("run id")
}

async fn count_runs(
    http: &reqwest::Client,
    url: &str,
    workflow: &str,
    status: &str,
) -> Result<usize> {
    let r: serde_json::Value = http
        .get(format!(
            "{url}/api/v1/runs?workflow={workflow}&status={status}&limit=1000"
        ))
        .bearer_auth(API_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    Ok(r["runs"].as_array().map(|a| a.len()).unwrap_or(0))
}

async fn wait_runs(http: &reqwest::Client, url: &str, workflow: &str, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        if count_runs(http, url, workflow, "succeeded").await? >= n {
            return Ok(());
        }
        if count_runs(http, url, workflow, "failed").await? > 0 {
            bail!("a {workflow} run failed");
        }
        if Instant::now() > deadline {
            bail!("{workflow} runs did not finish in 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Per-step gaps of chain runs: from a step's predecessor's result being
/// recorded to the step's task being claimed (the engine's scheduling
/// overhead: the results transaction that creates the task, the dispatcher
/// and the claim), and from the predecessor's handler finishing to the
/// step's handler starting, by the agents' clocks (what a user sees: adds
/// the agents' result delivery and the claim's way back to an agent).
async fn step_overheads(
    http: &reqwest::Client,
    url: &str,
    runs: &[i64],
) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut claimed_gaps = Vec::new();
    let mut handler_gaps = Vec::new();
    for id in runs {
        let run: serde_json::Value = http
            .get(format!("{url}/api/v1/runs/{id}"))
            .bearer_auth(API_TOKEN)
            .send()
            .await?
            .json()
            .await?;
        // The predecessor's result recorded, and its handler finished.
        let mut prev: Option<(i64, Option<i64>)> = None;
        for step in run["steps"].as_array().context("steps")? {
            let task = step["task_ids"][0].as_i64().context("task id")?;
            let t: TaskDetail = http
                .get(format!("{url}/api/v1/tasks/{task}"))
                .bearer_auth(API_TOKEN)
                .send()
                .await?
                .json()
                .await?;
            let attempt = t.attempt_history.first().context("attempt")?;
            if let Some((recorded, handler_finished)) = prev {
                claimed_gaps.push((attempt.claimed_at_us - recorded) as f64 / 1000.0);
                if let (Some(finished), Some(started)) = (handler_finished, attempt.started_at_us) {
                    handler_gaps.push((started - finished) as f64 / 1000.0);
                }
            }
            let last = t.attempt_history.last().context("attempt")?;
            prev = t.task.finished_at_us.map(|r| (r, last.finished_at_us));
        }
    }
    claimed_gaps.sort_by(f64::total_cmp);
    handler_gaps.sort_by(f64::total_cmp);
    Ok((claimed_gaps, handler_gaps))
}

fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

async fn workflows(
    args: &Args,
    http: &reqwest::Client,
    url: &str,
    backend: &'static str,
) -> Result<Vec<FlowReport>> {
    let mut out = Vec::new();
    // 40 steps of ~10 ms tasks, one after another (the shape of Windmill's published comparison).
    upload(
        http,
        url,
        chain(
            "chain40",
            40,
            "    task_type: sleep\n    payload: { ms: 10 }\n",
        ),
    )
    .await?;
    let started = Instant::now();
    let id = start_run(http, url, "chain40").await?;
    wait_runs(http, url, "chain40", 1).await?;
    let total = started.elapsed();
    let (gaps, handler) = step_overheads(http, url, &[id]).await?;
    println!("{backend}: 40-step chain in {:.2} s", total.as_secs_f64());
    out.push(FlowReport::new(
        backend,
        "40-step chain of 10 ms tasks".into(),
        total,
        &gaps,
        &handler,
    ));

    // A 1,000-item fan-out and fan-in.
    let items: Vec<usize> = (0..1000).collect();
    let fan = format!(
        "name: fanout\nsteps:\n  - id: list\n    type: task\n    task_type: echo\n    payload: {{ items: {items:?} }}\n  - id: each\n    type: task\n    depends_on: [list]\n    task_type: echo\n    for_each: \"steps.list.output.items\"\n    payload: {{ n: \"{{{{ item }}}}\" }}\n  - id: gather\n    type: task\n    depends_on: [each]\n    task_type: echo\n    payload: {{ count: \"{{{{ steps.each.output | length }}}}\" }}\n"
    );
    upload(http, url, fan).await?;
    let started = Instant::now();
    start_run(http, url, "fanout").await?;
    wait_runs(http, url, "fanout", 1).await?;
    let total = started.elapsed();
    println!(
        "{backend}: 1,000-task fan-out in {:.2} s",
        total.as_secs_f64()
    );
    out.push(FlowReport::new(
        backend,
        "1,000-task fan-out + fan-in".into(),
        total,
        &[],
        &[],
    ));

    // Many concurrent 10-step chains of no-op tasks: a throughput test (with
    // zero-length steps the system is closed-loop, so the per-step overhead
    // is runs in flight / step throughput).
    upload(http, url, chain("chain10", 10, "    task_type: echo\n")).await?;
    out.push(
        linear_chains(
            args,
            http,
            url,
            backend,
            "chain10",
            4,
            format!("{} concurrent 10-step chains", args.linear_runs),
        )
        .await?,
    );

    // The same with steps that take 1 s: the load is runs / 1 s, and the
    // per-step overhead is the engine's scheduling latency under that load.
    upload(
        http,
        url,
        chain(
            "chain10s",
            10,
            "    task_type: sleep\n    payload: { ms: 1000 }\n",
        ),
    )
    .await?;
    out.push(
        linear_chains(
            args,
            http,
            url,
            backend,
            "chain10s",
            32,
            format!(
                "{} concurrent 10-step chains of 1 s steps",
                args.linear_runs
            ),
        )
        .await?,
    );
    print_server_timings(http, url, backend).await?;
    Ok(out)
}

/// The server's own timings of the parts of a step's path (from its
/// `/metrics` summaries, which cover the last minute or so: here mostly the
/// 1 s-step chains): recording a results batch, advancing a batch of runs,
/// and a claim.
async fn print_server_timings(http: &reqwest::Client, url: &str, backend: &str) -> Result<()> {
    let text = metrics_text(http, url).await?;
    for (metric, what) in [
        ("drover_complete_seconds", "record a results batch"),
        ("drover_advance_batch_seconds", "advance a batch of runs"),
        (
            "drover_dispatch_delay_seconds",
            "start a dispatcher round once kicked",
        ),
        ("drover_claim_seconds", "claim for a group of agents"),
    ] {
        println!(
            "{backend}: server time to {what}: p50 {}, p99 {}",
            ms(quantile_ms(&text, &format!("{metric}{{quantile=\"0.5\"}}"))),
            ms(quantile_ms(
                &text,
                &format!("{metric}{{quantile=\"0.99\"}}")
            ))
        );
    }
    // PostgreSQL: the parts of a results transaction, per transaction.
    let phase = |name: &str, q: &str| {
        quantile_ms(
            &text,
            &format!("drover_results_phase_seconds{{phase=\"{name}\",quantile=\"{q}\"}}"),
        )
    };
    if phase("read", "0.5").is_some() {
        let of = |q: &str| {
            ["begin", "read", "plan", "write", "refill", "commit"]
                .iter()
                .map(|p| format!("{p} {}", ms(phase(p, q))))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("{backend}: results transaction, p50: {}", of("0.5"));
        println!("{backend}: results transaction, p99: {}", of("0.99"));
    }
    Ok(())
}

/// The value of the `/metrics` series `series` (a summary quantile, in
/// seconds) in milliseconds.
fn quantile_ms(metrics: &str, series: &str) -> Option<f64> {
    series_value(metrics, series).map(|s| s * 1000.0)
}

/// The value of the first `/metrics` line that starts with `series`.
fn series_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
}

/// The server's `/metrics` text.
async fn metrics_text(http: &reqwest::Client, url: &str) -> Result<String> {
    Ok(http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// Starts `--linear-runs` runs of a 10-step chain from `starters` concurrent
/// clients, waits for all of them, and measures the per-step overheads on
/// 200 of them.
async fn linear_chains(
    args: &Args,
    http: &reqwest::Client,
    url: &str,
    backend: &'static str,
    workflow: &'static str,
    starters: usize,
    shape: String,
) -> Result<FlowReport> {
    let started = Instant::now();
    let mut ids = Vec::with_capacity(args.linear_runs);
    let mut tasks = Vec::new();
    for c in 0..starters {
        let (http, url, n) = (http.clone(), url.to_string(), args.linear_runs);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in (c..n).step_by(starters) {
                ids.push(start_run(&http, &url, workflow).await?);
            }
            anyhow::Ok(ids)
        }));
    }
    for s in tasks {
        ids.extend(s.await??);
    }
    let all_started = started.elapsed();
    wait_runs(http, url, workflow, args.linear_runs).await?;
    let total = started.elapsed();
    ids.sort_unstable();
    let sample: Vec<i64> = ids
        .iter()
        .step_by((ids.len() / 200).max(1))
        .copied()
        .collect();
    let (gaps, handler) = step_overheads(http, url, &sample).await?;
    println!(
        "{backend}: {shape} in {:.2} s (all started after {:.2} s)",
        total.as_secs_f64(),
        all_started.as_secs_f64()
    );
    Ok(FlowReport::new(backend, shape, total, &gaps, &handler))
}
