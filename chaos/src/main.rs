//! `drover-chaos`: the fault suite. It runs thousands of tasks and hundreds
//! of workflow runs through real `drover-server` and `drover-agent`
//! processes while it kills, stops, cuts off and slows agents, kills the
//! server (the leader, with a second instance serving, on PostgreSQL),
//! restarts PostgreSQL and fills SQLite's disk; then it checks, from the
//! database and from the handlers' own side-effect log, that nothing was
//! lost, nothing unexpected ran, nothing completed twice except where a
//! fault explains it, and that requeues and failover were quick enough.
//! See docs/RELIABILITY.md.

mod check;
mod db;
mod faults;
mod handler;
mod pg;
mod procs;
mod proxy;
mod sidelog;
mod workload;
mod world;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "drover-chaos",
    about = "Fault suite: real servers and agents under kills, stops, cuts, restarts and a full disk"
)]
struct Args {
    /// Database(s) to run on.
    #[arg(long, value_enum, default_value = "both")]
    backend: BackendArg,
    /// The CI form: 1,000 tasks, 20 runs, one cycle of faults.
    #[arg(long)]
    short: bool,
    /// Tasks to submit (default 10,000; 1,000 with --short).
    #[arg(long)]
    tasks: Option<usize>,
    /// Workflow runs to start (default 200; 20 with --short).
    #[arg(long)]
    runs: Option<usize>,
    /// Agents (default 5; 3 with --short).
    #[arg(long)]
    agents: Option<usize>,
    /// Capacity of each agent.
    #[arg(long, default_value_t = 8)]
    capacity: u32,
    /// Seconds over which submissions are spread (default 150; 45 with --short).
    #[arg(long)]
    spread_secs: Option<u64>,
    /// Fault cycles at least (each fault kind once per cycle, agent kills
    /// between); more run while submissions last.
    #[arg(long, default_value_t = 1)]
    min_cycles: usize,
    /// Pause between two faults, in ms.
    #[arg(long, default_value_t = 1500)]
    fault_pause_ms: u64,
    /// The servers' heartbeat timeout, in ms (short so the suite runs fast).
    #[arg(long, default_value_t = 2000)]
    heartbeat_timeout_ms: u64,
    /// Directory holding drover-server and drover-agent (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Use this running PostgreSQL (admin URL) instead of a private cluster;
    /// the PostgreSQL restart is then skipped.
    #[arg(long, env = "DROVER_CHAOS_PG_URL")]
    pg_url: Option<String>,
    /// Where initdb and postgres are, for the private cluster (default: pg_config --bindir).
    #[arg(long)]
    pg_bin_dir: Option<PathBuf>,
    /// Leave out the full-disk fault (it mounts a tmpfs, which needs root).
    #[arg(long)]
    no_disk_fault: bool,
    /// Keep the run directories (logs, side-effect log) even when every check passes.
    #[arg(long)]
    keep: bool,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// The agents' `command` handler (not for direct use).
    Handler {
        #[arg(long)]
        log: PathBuf,
        #[arg(long)]
        agent: String,
    },
}

/// What one backend's run does, resolved from the flags.
pub struct Plan {
    pub tasks: usize,
    pub runs: usize,
    pub agents: usize,
    pub capacity: u32,
    pub spread: Duration,
    pub min_cycles: usize,
    pub fault_pause: Duration,
    pub heartbeat_timeout: Duration,
    pub bin_dir: PathBuf,
    pub disk_fault: bool,
    pub keep: bool,
}

impl Plan {
    /// Short timeouts, so an agent is declared dead in seconds.
    pub fn server_settings(&self) -> Vec<(&'static str, String)> {
        let t = self.heartbeat_timeout.as_millis() as u64;
        vec![
            (
                "DROVER_HEARTBEAT_INTERVAL",
                format!("{}ms", (t / 6).max(100)),
            ),
            ("DROVER_HEARTBEAT_TIMEOUT", format!("{t}ms")),
            ("DROVER_DUTY_INTERVAL", "200ms".into()),
            ("DROVER_LEADER_TTL", "1500ms".into()),
            ("DROVER_MAX_CLAIM_WAIT", "5s".into()),
        ]
    }
}

static START: OnceLock<Instant> = OnceLock::new();

/// Seconds since the suite started, for its progress lines.
pub fn elapsed_s() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Microseconds since the Unix epoch: the clock the servers stamp events with.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(Sub::Handler { log, agent }) = &args.command {
        return match handler::run(log, agent) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(suite(args)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            println!("\nFAILED: see the ✗ rows above");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("drover-chaos: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn suite(args: Args) -> Result<bool> {
    elapsed_s();
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
                "{b} not found in {}: `cargo build -p drover-server -p drover-agent` first, or give --bin-dir",
                bin_dir.display()
            );
        }
    }
    let plan = Plan {
        tasks: args
            .tasks
            .unwrap_or(if args.short { 1_000 } else { 10_000 }),
        runs: args.runs.unwrap_or(if args.short { 20 } else { 200 }),
        agents: args.agents.unwrap_or(if args.short { 3 } else { 5 }).max(1),
        capacity: args.capacity.max(1),
        spread: Duration::from_secs(
            args.spread_secs
                .unwrap_or(if args.short { 45 } else { 150 }),
        ),
        min_cycles: args.min_cycles,
        fault_pause: Duration::from_millis(args.fault_pause_ms),
        heartbeat_timeout: Duration::from_millis(args.heartbeat_timeout_ms.max(500)),
        bin_dir,
        disk_fault: !args.no_disk_fault,
        keep: args.keep,
    };
    let backends = match args.backend {
        BackendArg::Sqlite => vec![Backend::Sqlite],
        BackendArg::Postgres => vec![Backend::Postgres],
        BackendArg::Both => vec![Backend::Sqlite, Backend::Postgres],
    };
    let mut all_ok = true;
    for backend in backends {
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(postgres(&args).await?),
        };
        all_ok &= one_backend(backend, &plan, pg).await?;
    }
    Ok(all_ok)
}

/// The private cluster, or the shared server given with --pg-url.
async fn postgres(args: &Args) -> Result<pg::Pg> {
    if let Some(url) = &args.pg_url {
        return Ok(pg::Pg::Shared {
            admin_url: url.clone(),
        });
    }
    let dir = std::env::temp_dir().join(format!("drover-chaos-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    match pg::Pg::private(&dir, args.pg_bin_dir.as_deref()).await {
        Ok(pg) => Ok(pg),
        // The test suite's server, when there is one: everything but the restart.
        Err(e) => {
            match std::env::var("DROVER_TEST_PG") {
                Ok(admin_url) => {
                    println!("  no private PostgreSQL ({e:#}); using DROVER_TEST_PG, without the restart");
                    Ok(pg::Pg::Shared { admin_url })
                }
                Err(_) => Err(e.context("start a private PostgreSQL (or give --pg-url)")),
            }
        }
    }
}

async fn one_backend(backend: Backend, plan: &Plan, pg: Option<pg::Pg>) -> Result<bool> {
    println!(
        "\n== {}: {} tasks, {} workflow runs, {} agents × capacity {}, heartbeat timeout {} ms",
        backend.name(),
        plan.tasks,
        plan.runs,
        plan.agents,
        plan.capacity,
        plan.heartbeat_timeout.as_millis()
    );
    let private_pg_dir = match &pg {
        Some(pg::Pg::Private(_)) => {
            Some(std::env::temp_dir().join(format!("drover-chaos-pg-{}", std::process::id())))
        }
        _ => None,
    };
    let mut world = world::World::start(backend, plan, pg).await?;
    println!("  run directory: {}", world.dir().display());
    let submitted = Arc::new(Mutex::new(workload::Submitted::default()));
    let client = workload::Client {
        http: world.http.clone(),
        live: world.live.clone(),
        submitted: submitted.clone(),
    };
    let done = AtomicBool::new(false);
    let began = Instant::now();
    let work = async {
        let r = workload::run(&client, plan.tasks, plan.runs, 250, plan.spread).await;
        done.store(true, Ordering::SeqCst);
        r
    };
    let injector =
        faults::Injector::new(&mut world, client.clone(), plan.fault_pause, plan.capacity);
    let (work, report) = tokio::join!(work, injector.run(&done, plan.min_cycles));
    work?;
    println!("  [{:>6.1} s] faults over, healing", elapsed_s());
    world.heal().await?;
    // Everything acknowledged reaches a final state (or the check says not).
    let deadline = Instant::now() + plan.spread + Duration::from_secs(300);
    let mut last_print = Instant::now();
    // (unfinished counts, since when they have not moved)
    let mut progress = ((-1, -1), Instant::now());
    loop {
        match world.db.unfinished().await {
            Ok((0, 0)) => break,
            Ok(counts) => {
                if counts != progress.0 {
                    progress = (counts, Instant::now());
                } else if progress.1.elapsed() > Duration::from_secs(60) {
                    println!("  no progress in the database for 60 s: giving up waiting");
                    break;
                }
                if last_print.elapsed() > Duration::from_secs(10) {
                    println!(
                        "  waiting: {} tasks, {} runs unfinished",
                        counts.0, counts.1
                    );
                    last_print = Instant::now();
                }
            }
            Err(_) => {}
        }
        if Instant::now() > deadline {
            println!("  gave up waiting for the queue to drain");
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let drained = began.elapsed();
    // Orphaned handlers of killed agents may still be writing.
    let settle = Instant::now() + Duration::from_secs(15);
    let log = loop {
        let log = sidelog::SideLog::read(&world.side_log)?;
        let running = log
            .execs
            .iter()
            .filter(|e| e.end_us.is_none())
            .any(|e| std::path::Path::new(&format!("/proc/{}", e.pid)).exists());
        if !running || Instant::now() > settle {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rows = {
        // The workload is over: take what it recorded.
        let sub = std::mem::take(&mut *submitted.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
        check::check(
            &world.db,
            &log,
            &sub,
            &report,
            plan.capacity,
            plan.heartbeat_timeout,
        )
        .await?
    };
    let handlers = log.execs.len();
    println!(
        "\n{}: drained in {:.1} s, {handlers} handler runs logged\n",
        backend.name(),
        drained.as_secs_f64()
    );
    println!("| {} | value | bound | |", backend.name());
    println!("|---|---|---|---|");
    let mut ok = true;
    for r in &rows {
        let mark = match r.ok {
            Some(true) => "✓",
            Some(false) => {
                ok = false;
                "✗"
            }
            None => "",
        };
        println!("| {} | {} | {} | {mark} |", r.name, r.value, r.bound);
    }
    let keep = plan.keep || !ok;
    if keep {
        println!("\n  kept for inspection: {}", world.dir().display());
    }
    world.shutdown(keep).await;
    if let Some(dir) = private_pg_dir {
        if !keep {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    Ok(ok)
}
