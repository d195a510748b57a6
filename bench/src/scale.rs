//! The scale mode: the figures of `docs/SCALING.md`.
//!
//! - **fleet**: `--sim-agents` simulated agents speak the agent protocol
//!   over HTTP as `drover-agent` does (register, heartbeat at the interval
//!   the server asks for, long-poll claims, report results) while work
//!   trickles in; the server's CPU and memory and the heartbeats' round
//!   trips are measured. A real agent would cost a process per host; these
//!   cost a task each in this process, so a thousand fit on one machine.
//! - **claims**: one agent claims one task at a time with 1,000 tasks
//!   queued, then with `--claim-backlog` queued: the claim's round trip
//!   must not grow with the queue.
//! - **history**: the database is grown to `--history` finished tasks (each
//!   with its attempt), then the dashboard's pages and the API's list and
//!   count calls are timed.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use drover_protocol::agent::{ClaimResponse, Lease, Outcome, RegisterResponse, TaskResult};
use serde_json::json;
use tokio::task::JoinSet;

/// Which parts of the scale mode run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Fleet,
    Claims,
    History,
}

/// The scale mode's settings (from the command line).
pub struct Settings {
    pub parts: Vec<Part>,
    pub sim_agents: usize,
    pub seconds: u64,
    pub rate: usize,
    pub claim_backlog: usize,
    pub history: u64,
}

/// The server under test.
pub struct Target<'a> {
    pub backend: &'static str,
    pub url: &'a str,
    pub db_url: &'a str,
    pub dir: &'a Path,
    pub server_pid: u32,
    pub api_token: &'a str,
    pub enroll_token: &'a str,
    pub admin_password: &'a str,
}

pub async fn measure(settings: &Settings, target: &Target<'_>) -> Result<()> {
    if settings.parts.contains(&Part::Fleet) {
        fleet(settings, target).await?;
    }
    if settings.parts.contains(&Part::History) {
        history(settings, target).await?;
    }
    if settings.parts.contains(&Part::Claims) {
        claims(settings, target).await?;
    }
    Ok(())
}

/// A process's CPU time so far (user + system), from `/proc`.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("/proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        Ok(fields.get(i).context("/proc stat field")?.parse::<u64>()?)
    };
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 here).
    let total = ticks(11)? + ticks(12)?;
    // Linux reports these in USER_HZ, which is 100 on every architecture Drover runs on.
    Ok(Duration::from_millis(total * 10))
}

/// A process's resident memory now and at its peak, in MiB.
pub fn rss_mib(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .with_context(|| format!("{key} in /proc/{pid}/status"))?;
        let n: f64 = line.split_whitespace().nth(1).context("value")?.parse()?;
        Ok(n / 1024.0)
    };
    Ok((kib("VmRSS:")?, kib("VmHWM:")?))
}

/// The benchmark's percentile of sorted figures, 0 when there are none.
fn pct(sorted: &[f64], p: f64) -> f64 {
    crate::pct(sorted, p).unwrap_or(0.0)
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        pct(&v, 0.5),
        pct(&v, 0.99),
        pct(&v, 1.0),
        v.len()
    )
}

/// One simulated agent's session.
struct Session {
    token: String,
    heartbeat: Duration,
    max_wait_ms: u64,
}

async fn register(
    http: &reqwest::Client,
    url: &str,
    enroll_token: &str,
    name: &str,
    task_type: &str,
    capacity: u32,
) -> Result<Session> {
    let r: RegisterResponse = http
        .post(format!("{url}/api/v1/agent/register"))
        .bearer_auth(enroll_token)
        .json(&json!({
            "name": name, "hostname": "bench-sim", "task_types": [task_type],
            "capacity": capacity, "labels": [], "version": "bench",
            "protocol": drover_protocol::PROTOCOL_VERSION,
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(Session {
        token: r.session_token,
        heartbeat: Duration::from_millis(r.heartbeat_interval_ms),
        max_wait_ms: r.max_claim_wait_ms,
    })
}

async fn claim(
    http: &reqwest::Client,
    url: &str,
    s: &Session,
    max_tasks: u32,
    wait_ms: u64,
) -> Result<ClaimResponse> {
    Ok(http
        .post(format!("{url}/api/v1/agent/claim"))
        .bearer_auth(&s.token)
        .json(&json!({"max_tasks": max_tasks, "wait_ms": wait_ms}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn succeed(http: &reqwest::Client, url: &str, s: &Session, leases: &[Lease]) -> Result<()> {
    let results: Vec<TaskResult> = leases
        .iter()
        .map(|l| TaskResult {
            task_id: l.task_id,
            lease_token: l.lease_token,
            outcome: Outcome::Succeeded { output: json!({}) },
            started_at_us: None,
            finished_at_us: None,
        })
        .collect();
    http.post(format!("{url}/api/v1/agent/results"))
        .bearer_auth(&s.token)
        .json(&json!({ "results": results }))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

async fn submit(
    http: &reqwest::Client,
    url: &str,
    api_token: &str,
    task_type: &str,
    n: usize,
    from: usize,
) -> Result<()> {
    let tasks: Vec<_> = (0..n)
        .map(|i| json!({"task_type": task_type, "urgency": (from + i) % 11, "payload": {"i": from + i}}))
        .collect();
    http.post(format!("{url}/api/v1/tasks"))
        .bearer_auth(api_token)
        .json(&json!({ "tasks": tasks }))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// `--sim-agents` agents heartbeating and long-polling for `--scale-seconds`
/// while `--scale-rate` tasks a second arrive for them.
async fn fleet(settings: &Settings, t: &Target<'_>) -> Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4 * settings.sim_agents)
        .build()?;
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(settings.sim_agents);
    for chunk in (0..settings.sim_agents).collect::<Vec<_>>().chunks(50) {
        let mut set = JoinSet::new();
        for &i in chunk {
            let (http, url, token) = (http.clone(), t.url.to_string(), t.enroll_token.to_string());
            set.spawn(
                async move { register(&http, &url, &token, &format!("sim-{i}"), "sim", 4).await },
            );
        }
        while let Some(s) = set.join_next().await {
            sessions.push(s??);
        }
    }
    println!(
        "{}: {} simulated agents registered in {:.1} s",
        t.backend,
        sessions.len(),
        started.elapsed().as_secs_f64()
    );
    // Let the registrations' own work settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let heartbeats = Arc::new(Mutex::new(Vec::<f64>::new()));
    let claims = Arc::new(Mutex::new((0usize, 0usize)));
    let deadline = Instant::now() + Duration::from_secs(settings.seconds);
    let cpu_before = cpu_time(t.server_pid)?;
    let wall_before = Instant::now();
    let mut agents = JoinSet::new();
    for (i, s) in sessions.into_iter().enumerate() {
        let s = Arc::new(s);
        let held = Arc::new(Mutex::new(Vec::<Lease>::new()));
        // Heartbeats, spread over the first interval as a real fleet's are.
        let (http2, url, s2, held2, beats) = (
            http.clone(),
            t.url.to_string(),
            s.clone(),
            held.clone(),
            heartbeats.clone(),
        );
        let offset = s.heartbeat.mul_f64(i as f64 / settings.sim_agents as f64);
        agents.spawn(async move {
            tokio::time::sleep(offset).await;
            while Instant::now() < deadline {
                let running = held2.lock().map(|h| h.clone()).unwrap_or_default();
                let sent = Instant::now();
                http2
                    .post(format!("{url}/api/v1/agent/heartbeat"))
                    .bearer_auth(&s2.token)
                    .json(&json!({ "running": running }))
                    .send()
                    .await?
                    .error_for_status()?;
                if let Ok(mut b) = beats.lock() {
                    b.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
                tokio::time::sleep(s2.heartbeat).await;
            }
            anyhow::Ok(())
        });
        // Claims: a long-poll, then the results at once.
        let (http2, url, counts) = (http.clone(), t.url.to_string(), claims.clone());
        agents.spawn(async move {
            while Instant::now() < deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                let wait = s.max_wait_ms.min(left.as_millis() as u64);
                let got = claim(&http2, &url, &s, 4, wait).await?;
                if got.tasks.is_empty() {
                    continue;
                }
                let leases: Vec<Lease> = got
                    .tasks
                    .iter()
                    .map(|a| Lease {
                        task_id: a.task_id,
                        lease_token: a.lease_token,
                    })
                    .collect();
                if let Ok(mut h) = held.lock() {
                    h.clone_from(&leases);
                }
                succeed(&http2, &url, &s, &leases).await?;
                if let Ok(mut h) = held.lock() {
                    h.clear();
                }
                if let Ok(mut c) = counts.lock() {
                    c.0 += 1;
                    c.1 += leases.len();
                }
            }
            anyhow::Ok(())
        });
    }
    // Work arrives at `rate` tasks a second, in ten batches a second.
    let per_tick = (settings.rate / 10).max(1);
    let mut submitted = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < deadline {
        tick.tick().await;
        if settings.rate > 0 {
            submit(&http, t.url, t.api_token, "sim", per_tick, submitted).await?;
            submitted += per_tick;
        }
    }
    let wall = wall_before.elapsed();
    let cpu = cpu_time(t.server_pid)? - cpu_before;
    let (rss, peak) = rss_mib(t.server_pid)?;
    while let Some(r) = agents.join_next().await {
        r??;
    }
    let beats = heartbeats.lock().map(|b| b.clone()).unwrap_or_default();
    let (claimed, done) = claims.lock().map(|c| *c).unwrap_or((0, 0));
    println!(
        "{}: fleet of {} simulated agents over {:.0} s: server CPU {:.1} % of one core, RSS {:.1} MiB (peak {:.1} MiB); \
         {} heartbeats: {}; {} tasks submitted, {} done in {} claims",
        t.backend,
        settings.sim_agents,
        wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        rss,
        peak,
        beats.len(),
        summary(beats),
        submitted,
        done,
        claimed
    );
    // What an operator's dashboard pays for a thousand agents.
    let mut lists = Vec::new();
    for _ in 0..20 {
        let sent = Instant::now();
        http.get(format!("{}/api/v1/agents", t.url))
            .bearer_auth(t.api_token)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        lists.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "{}: GET /api/v1/agents with {} agents: {}",
        t.backend,
        settings.sim_agents,
        summary(lists)
    );
    Ok(())
}

/// Times `samples` claims of one task each by an agent of capacity 1,
/// completing each task before the next claim.
async fn time_claims(
    http: &reqwest::Client,
    url: &str,
    s: &Session,
    samples: usize,
) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(samples);
    let mut beat = Instant::now();
    for _ in 0..samples {
        if beat.elapsed() >= s.heartbeat {
            // A silent agent is marked offline and loses its task.
            http.post(format!("{url}/api/v1/agent/heartbeat"))
                .bearer_auth(&s.token)
                .json(&json!({ "running": [] }))
                .send()
                .await?
                .error_for_status()?;
            beat = Instant::now();
        }
        let sent = Instant::now();
        let got = claim(http, url, s, 1, 0).await?;
        times.push(sent.elapsed().as_secs_f64() * 1000.0);
        let Some(a) = got.tasks.first() else {
            bail!("a claim found nothing with tasks queued");
        };
        succeed(
            http,
            url,
            s,
            &[Lease {
                task_id: a.task_id,
                lease_token: a.lease_token,
            }],
        )
        .await?;
    }
    Ok(times)
}

/// Claim latency with 1,000 queued, then with `--claim-backlog` queued.
async fn claims(settings: &Settings, t: &Target<'_>) -> Result<()> {
    const SAMPLES: usize = 1000;
    let http = reqwest::Client::new();
    submit_many(&http, t, 1000 + SAMPLES, 0).await?;
    let s = register(&http, t.url, t.enroll_token, "claims-1k", "backlog", 1).await?;
    let small = time_claims(&http, t.url, &s, SAMPLES).await?;
    let started = Instant::now();
    let more = settings.claim_backlog.saturating_sub(1000) + SAMPLES;
    submit_many(&http, t, more, 1000 + SAMPLES).await?;
    println!(
        "{}: {} more tasks queued in {:.1} s",
        t.backend,
        more,
        started.elapsed().as_secs_f64()
    );
    if t.backend == "postgres" {
        // Autovacuum would analyze a table that grew this much within a
        // minute; do it now rather than wait.
        crate::psql(t.db_url, "VACUUM ANALYZE tasks")?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A new agent: the first, silent (no heartbeats) while the queue
    // filled, has been marked offline.
    let s = register(&http, t.url, t.enroll_token, "claims-1m", "backlog", 1).await?;
    let large = time_claims(&http, t.url, &s, SAMPLES).await?;
    let p = |v: &[f64], q: f64| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        pct(&v, q)
    };
    println!(
        "{}: claim of one task with 1,000 (to 2,000) queued: {}",
        t.backend,
        summary(small.clone())
    );
    println!(
        "{}: claim of one task with {} queued: {}",
        t.backend,
        settings.claim_backlog,
        summary(large.clone())
    );
    println!(
        "{}: ratio {} queued / 1,000 queued: p50 {:.2}, p99 {:.2}",
        t.backend,
        settings.claim_backlog,
        p(&large, 0.5) / p(&small, 0.5),
        p(&large, 0.99) / p(&small, 0.99)
    );
    Ok(())
}

/// Queues `n` backlog tasks from four concurrent submitters in batches of 500.
async fn submit_many(http: &reqwest::Client, t: &Target<'_>, n: usize, from: usize) -> Result<()> {
    const BATCH: usize = 500;
    let mut set = JoinSet::new();
    for w in 0..4 {
        let (http, url, token) = (http.clone(), t.url.to_string(), t.api_token.to_string());
        set.spawn(async move {
            let mut at = w * BATCH;
            while at < n {
                submit(&http, &url, &token, "backlog", BATCH.min(n - at), from + at).await?;
                at += 4 * BATCH;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// Grows the database to `--history` finished tasks, then times the pages
/// and calls an operator uses.
async fn history(settings: &Settings, t: &Target<'_>) -> Result<()> {
    let started = Instant::now();
    add_history(t, settings.history)?;
    println!(
        "{}: {} finished tasks (each with its attempt) added in {:.0} s",
        t.backend,
        settings.history,
        started.elapsed().as_secs_f64()
    );
    let http = reqwest::Client::new();
    // The leader counts the finished tasks into the totals, a million per
    // refresh (every 5 s), as after an upgrade of a database this large;
    // until then counts read the uncounted ones.
    let counted = Instant::now();
    loop {
        let query = "SELECT upto FROM task_totals_mark";
        let upto = if t.backend == "sqlite" {
            crate::sqlite_scalar(t.dir, query)?
        } else {
            crate::psql_scalar(t.db_url, query)?
        };
        if upto > crate::now_us() - 120 * 1_000_000 {
            break;
        }
        if counted.elapsed() > Duration::from_secs(600) {
            bail!("the totals did not count the history in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "{}: the leader had counted them into the totals after {:.0} s",
        t.backend,
        counted.elapsed().as_secs_f64()
    );
    let signed_in = http
        .post(format!("{}/api/v1/session", t.url))
        .json(&json!({"name": "admin", "password": t.admin_password}))
        .send()
        .await?
        .error_for_status()?;
    let cookie = signed_in
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ");
    let some_task = settings.history / 2;
    let api = [
        "/api/v1/stats".to_string(),
        "/api/v1/overview".into(),
        "/api/v1/tasks?limit=50".into(),
        "/api/v1/tasks?status=succeeded&limit=50".into(),
        "/api/v1/tasks?status=failed&limit=50".into(),
        "/api/v1/tasks?status=queued&limit=50".into(),
        "/api/v1/runs?limit=50".into(),
        "/api/v1/queues".into(),
        "/api/v1/agents".into(),
        format!("/api/v1/tasks/{some_task}"),
    ];
    let pages = [
        "/".to_string(),
        "/tasks".into(),
        "/tasks?status=failed".into(),
        "/runs".into(),
        "/queues".into(),
        "/agents".into(),
        format!("/tasks/{some_task}"),
    ];
    println!();
    println!(
        "| {} with {} finished tasks | p50 | p99 | max |",
        t.backend, settings.history
    );
    println!("|---|---|---|---|");
    let mut slowest = 0.0f64;
    for (path, page) in api
        .iter()
        .map(|p| (p, false))
        .chain(pages.iter().map(|p| (p, true)))
    {
        let mut times = Vec::new();
        // One first call warms the caches; the figures are the next 20.
        for i in 0..21 {
            let request = http.get(format!("{}{path}", t.url));
            let request = if page {
                request.header(reqwest::header::COOKIE, &cookie)
            } else {
                request.bearer_auth(t.api_token)
            };
            let sent = Instant::now();
            let r = request.send().await?;
            let status = r.status();
            r.bytes().await?;
            if !status.is_success() {
                bail!("GET {path} answered {status}");
            }
            if i > 0 {
                times.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
        }
        times.sort_by(f64::total_cmp);
        slowest = slowest.max(pct(&times, 0.99));
        println!(
            "| GET {path} | {:.1} ms | {:.1} ms | {:.1} ms |",
            pct(&times, 0.5),
            pct(&times, 0.99),
            pct(&times, 1.0)
        );
    }
    println!();
    println!(
        "{}: slowest p99 of the pages and calls above: {slowest:.1} ms",
        t.backend
    );
    Ok(())
}

/// Inserts `n` finished tasks spread over the last 30 days (90 % succeeded,
/// 8 % failed, 2 % cancelled, over six task types), each with the attempt
/// that finished it, in two statements for both databases.
fn add_history(t: &Target<'_>, n: u64) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as i64;
    let span = 30 * 86_400 * 1_000_000i64;
    let base: i64 = if t.backend == "sqlite" {
        crate::sqlite_scalar(t.dir, "SELECT COALESCE(MAX(id), 0) FROM tasks")?
    } else {
        crate::psql_scalar(t.db_url, "SELECT COALESCE(MAX(id), 0) FROM tasks")?
    };
    let rows = if t.backend == "sqlite" {
        format!("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) SELECT i FROM n")
    } else {
        format!("SELECT i FROM generate_series(1::bigint, {n}) AS i")
    };
    // Oldest first, as they would have been written; the last hour is left
    // to live traffic.
    let step = (span - 3_600_000_000) / n as i64;
    let at = format!("({now} - 3600000000 - {step} * ({n} - i))");
    let tasks = format!(
        "INSERT INTO tasks (task_type, payload, urgency, time_sensitivity, importance, priority, rank, \
           status, attempts, max_attempts, timeout_ms, retry_backoff_ms, run_after, created_at, \
           updated_at, finished_at, agent_id, error) \
         SELECT CASE i % 6 WHEN 0 THEN 'echo' WHEN 1 THEN 'report' WHEN 2 THEN 'email' WHEN 3 THEN 'resize' WHEN 4 THEN 'sync' ELSE 'backup' END, \
           '{{\"customer\":42}}', i % 11, 0, 0, 0, 0, \
           CASE WHEN i % 50 = 7 THEN 'cancelled' WHEN i % 25 IN (3, 11) THEN 'failed' ELSE 'succeeded' END, \
           1, 3, 300000, 1000, {at} - 2000, {at} - 2000, {at}, {at}, 1, \
           CASE WHEN i % 25 IN (3, 11) THEN 'exit status 1' ELSE NULL END \
         FROM ({rows}) AS s"
    );
    let attempts = format!(
        "INSERT INTO task_attempts (task_id, lease_token, attempt, agent_id, agent_load, claimed_at, \
           started_at, finished_at, outcome, error) \
         SELECT id, id, 1, 1, 0.5, created_at + 1000, created_at + 1100, finished_at, \
           status, error \
         FROM tasks WHERE id > {base}"
    );
    // Rows finished in the past are never written after the count mark has
    // passed them, except here: start the count again, as after the
    // upgrade that added it.
    let recount = "UPDATE task_totals SET n = 0; UPDATE task_totals_mark SET upto = 0";
    if t.backend == "sqlite" {
        crate::sqlite_exec(
            t.dir,
            &format!("BEGIN; {tasks}; {attempts}; {recount}; COMMIT;"),
        )
    } else {
        crate::psql(t.db_url, &format!("{tasks}; {attempts}; {recount}"))?;
        crate::psql(t.db_url, "VACUUM ANALYZE tasks")?;
        crate::psql(t.db_url, "VACUUM ANALYZE task_attempts")
    }
}
