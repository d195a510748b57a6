//! The faults, injected one after another on a schedule while the workload
//! runs, and what each one measured on the spot. Everything else about a
//! fault (which tasks it hit, how fast they were requeued) is worked out
//! afterwards from the side-effect log and the database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::Rng;

use crate::pg::Pg;
use crate::proxy::Mode;
use crate::workload::Client;
use crate::world::World;
use crate::{now_us, Backend};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `kill -9` of an agent, restarted after a while with its state directory.
    AgentKill,
    /// SIGSTOP of an agent past the heartbeat timeout, then SIGCONT.
    SigStop,
    /// The agent's link dropped for half the heartbeat timeout.
    CutShort,
    /// The agent's link dropped for twice the heartbeat timeout.
    CutLong,
    /// The agent's link slowed down.
    Delay,
    /// `kill -9` of the only server (SQLite), restarted.
    ServerKill,
    /// `kill -9` of the leader while a second server serves (PostgreSQL).
    LeaderKill,
    /// Immediate shutdown and restart of PostgreSQL.
    PgRestart,
    /// The SQLite database's filesystem full, then room again.
    DiskFull,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::AgentKill => "agent kill -9",
            Kind::SigStop => "agent SIGSTOP",
            Kind::CutShort => "cut < timeout",
            Kind::CutLong => "cut > timeout",
            Kind::Delay => "link delay",
            Kind::ServerKill => "server kill -9",
            Kind::LeaderKill => "leader kill -9",
            Kind::PgRestart => "PostgreSQL restart",
            Kind::DiskFull => "disk full",
        }
    }

    /// One cycle of the schedule: every fault once, with agent kills between.
    pub fn cycle(backend: Backend) -> Vec<Kind> {
        let (server, storage) = match backend {
            Backend::Sqlite => (Kind::ServerKill, Kind::DiskFull),
            Backend::Postgres => (Kind::LeaderKill, Kind::PgRestart),
        };
        vec![
            Kind::AgentKill,
            Kind::SigStop,
            Kind::AgentKill,
            Kind::CutShort,
            Kind::AgentKill,
            Kind::CutLong,
            Kind::AgentKill,
            Kind::Delay,
            Kind::AgentKill,
            server,
            Kind::AgentKill,
            storage,
        ]
    }
}

/// One injected fault: what, on which agent incarnation, from when to when.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: Kind,
    pub agent: Option<String>,
    pub agent_pid: Option<u32>,
    pub start_us: i64,
    pub end_us: i64,
    /// Results refused as stale by the servers while it lasted and just after
    /// (SIGSTOP and long cuts: the late results).
    pub refused: Option<f64>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub events: Vec<Event>,
    pub skipped: Vec<(Kind, String)>,
    /// Leader kill → the other instance leading.
    pub failovers_ms: Vec<f64>,
    /// PostgreSQL restarts: down for, servers answering again after.
    pub pg_restarts: Vec<(f64, f64)>,
    /// What the disk fault saw.
    pub disk_notes: Vec<String>,
    /// Disk full: time from room again to the first accepted submit.
    pub disk_recovery_ms: Vec<f64>,
    /// Something that must not happen, seen during a fault.
    pub problems: Vec<String>,
}

pub struct Injector<'a> {
    pub world: &'a mut World,
    pub client: Client,
    pub pause: Duration,
    pub report: Report,
    capacity: usize,
    probes: usize,
    probe_keys: Vec<String>,
    bursts: usize,
}

impl<'a> Injector<'a> {
    pub fn new(world: &'a mut World, client: Client, pause: Duration, capacity: u32) -> Self {
        Self {
            capacity: capacity as usize,
            world,
            client,
            pause,
            report: Report::default(),
            probes: 0,
            probe_keys: Vec::new(),
            bursts: 0,
        }
    }

    /// Injects the cycle's faults in turn until `done` is set and at least
    /// `min_cycles` cycles ran.
    pub async fn run(mut self, done: &AtomicBool, min_cycles: usize) -> Report {
        let cycle = Kind::cycle(self.world.backend);
        let mut i = 0usize;
        tokio::time::sleep(self.pause).await;
        while !(done.load(Ordering::SeqCst) && i >= cycle.len() * min_cycles) {
            let kind = cycle[i % cycle.len()];
            let began = Instant::now();
            if let Err(e) = self.inject(kind).await {
                self.report
                    .problems
                    .push(format!("{}: could not inject: {e:#}", kind.name()));
            }
            println!(
                "  [{:>6.1} s] {} ({:.1} s)",
                crate::elapsed_s(),
                kind.name(),
                began.elapsed().as_secs_f64()
            );
            i += 1;
            tokio::time::sleep(self.pause).await;
        }
        // Probes that may have been committed without an answer: submitting
        // their keys again learns their ids (or makes them, once).
        let keys = std::mem::take(&mut self.probe_keys);
        for chunk in keys.chunks(500) {
            let list: Vec<serde_json::Value> =
                chunk.iter().map(|k| crate::workload::task(k, 0)).collect();
            let body = serde_json::json!({ "tasks": list });
            match self
                .client
                .post("/api/v1/tasks", &body, Duration::from_secs(60))
                .await
            {
                Ok(v) => self.client.record_tasks(&v),
                Err(e) => self.report.problems.push(format!("probe resubmit: {e:#}")),
            }
        }
        self.report
    }

    fn timeout(&self) -> Duration {
        self.world.heartbeat_timeout
    }

    /// The running agent with the most handlers in flight (from the side
    /// log), so the fault hits work; ties broken at random.
    fn pick_agent(&self) -> usize {
        let log = crate::sidelog::SideLog::read(&self.world.side_log).unwrap_or_default();
        let mut rng = rand::rng();
        let mut best = (0usize, 0usize, 0u32);
        for (i, a) in self.world.agents.iter().enumerate() {
            let Some(pid) = a.proc.pid() else { continue };
            let busy = log
                .execs
                .iter()
                .filter(|e| e.agent_pid == pid && e.end_us.is_none())
                .count();
            let tie: u32 = rng.random();
            if (busy, tie) > (best.1, best.2) || best == (0, 0, 0) {
                best = (i, busy, tie);
            }
        }
        best.0
    }

    /// Submits long tasks to fill half the slots, so a fault finds work in
    /// flight however quiet the workload is at that moment.
    async fn burst(&mut self) -> Result<()> {
        self.bursts += 1;
        let slots = self.world.agents.len() * self.capacity / 2;
        let list: Vec<serde_json::Value> = {
            let mut rng = rand::rng();
            (0..slots.max(1))
                .map(|i| {
                    crate::workload::task(
                        &format!("chaos-burst-{}-{i}", self.bursts),
                        rng.random_range(600..1500),
                    )
                })
                .collect()
        };
        let body = self
            .client
            .post(
                "/api/v1/tasks",
                &serde_json::json!({ "tasks": list }),
                Duration::from_secs(60),
            )
            .await?;
        self.client.record_tasks(&body);
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok(())
    }

    async fn inject(&mut self, kind: Kind) -> Result<()> {
        if matches!(kind, Kind::AgentKill | Kind::SigStop | Kind::CutLong) {
            self.burst().await?;
        }
        if matches!(
            kind,
            Kind::ServerKill | Kind::LeaderKill | Kind::PgRestart | Kind::DiskFull
        ) {
            // Let the last silent agent's tasks be requeued first: an outage
            // of the server or database in that window would delay the
            // requeue and spoil its measurement.
            if let Some(last) = self.report.events.last() {
                let quiet_until = last.start_us
                    + (self.timeout() + Duration::from_millis(1500)).as_micros() as i64;
                let wait = quiet_until - now_us();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_micros(wait as u64)).await;
                }
            }
        }
        match kind {
            Kind::AgentKill => self.agent_kill().await,
            Kind::SigStop => self.sigstop().await,
            Kind::CutShort => self.cut(kind, self.timeout() / 2, Mode::Drop).await,
            Kind::CutLong => self.cut(kind, self.timeout() * 2, Mode::Drop).await,
            Kind::Delay => {
                self.cut(
                    kind,
                    Duration::from_secs(3),
                    Mode::Delay(Duration::from_millis(250)),
                )
                .await
            }
            Kind::ServerKill => self.server_kill().await,
            Kind::LeaderKill => self.leader_kill().await,
            Kind::PgRestart => self.pg_restart().await,
            Kind::DiskFull => self.disk_full().await,
        }
    }

    fn event(
        &mut self,
        kind: Kind,
        agent: Option<usize>,
        pid: Option<u32>,
        start_us: i64,
    ) -> &mut Event {
        let name = agent.map(|i| self.world.agents[i].proc.name.clone());
        self.report.events.push(Event {
            kind,
            agent: name,
            agent_pid: pid,
            start_us,
            end_us: now_us(),
            refused: None,
        });
        let last = self.report.events.len() - 1;
        &mut self.report.events[last]
    }

    async fn agent_kill(&mut self) -> Result<()> {
        let i = self.pick_agent();
        let t0 = now_us();
        let pid = self.world.agents[i].proc.kill9();
        // Some come back before the timeout (they resume), some after.
        let ms = rand::rng().random_range(300..(self.timeout().as_millis() as u64 + 1000));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.world.agents[i].proc.start()?;
        self.event(Kind::AgentKill, Some(i), pid, t0);
        Ok(())
    }

    async fn sigstop(&mut self) -> Result<()> {
        let i = self.pick_agent();
        let pid = self.world.agents[i].proc.pid();
        let t0 = now_us();
        self.world.agents[i].proc.sigstop();
        tokio::time::sleep(self.timeout() + Duration::from_millis(1500)).await;
        let before = self.stale_total().await;
        self.world.agents[i].proc.sigcont();
        let t1 = now_us();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = self.stale_total().await;
        let e = self.event(Kind::SigStop, Some(i), pid, t0);
        e.end_us = t1;
        e.refused = Some(after - before);
        Ok(())
    }

    async fn cut(&mut self, kind: Kind, len: Duration, mode: Mode) -> Result<()> {
        let i = self.pick_agent();
        let pid = self.world.agents[i].proc.pid();
        let t0 = now_us();
        self.world.agents[i].proxy.set_mode(mode);
        tokio::time::sleep(len).await;
        let before = self.stale_total().await;
        self.world.agents[i].proxy.set_mode(Mode::Pass);
        let t1 = now_us();
        let refused = if kind == Kind::CutLong {
            Some(self.refusals_after_heal(before).await)
        } else {
            None
        };
        let e = self.event(kind, Some(i), pid, t0);
        e.end_us = t1;
        e.refused = refused;
        Ok(())
    }

    async fn server_kill(&mut self) -> Result<()> {
        let t0 = now_us();
        self.world.servers[0].kill9();
        self.world.refresh_live();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let http = self.world.http.clone();
        self.world.servers[0].start(&http).await?;
        self.world.refresh_live();
        self.event(Kind::ServerKill, None, None, t0);
        Ok(())
    }

    async fn leader_kill(&mut self) -> Result<()> {
        // The leader, as the instances themselves say.
        let deadline = Instant::now() + Duration::from_secs(10);
        let leader = loop {
            let mut found = None;
            for (i, s) in self.world.servers.iter().enumerate() {
                if s.running() && self.is_leader(&s.url()).await {
                    found = Some(i);
                }
            }
            if let Some(i) = found {
                break i;
            }
            if Instant::now() > deadline {
                self.report
                    .problems
                    .push("no instance reported itself leader for 10 s".into());
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let other = 1 - leader;
        let dead = self.world.servers[leader].addr();
        let alive = self.world.servers[other].addr();
        let t0 = now_us();
        let killed_at = Instant::now();
        self.world.servers[leader].kill9();
        // The load balancer notices: every agent goes to the survivor.
        for a in &self.world.agents {
            if a.proxy.upstream() == dead {
                a.proxy.set_upstream(alive);
            }
        }
        self.world.refresh_live();
        let url = self.world.servers[other].url();
        loop {
            if self.is_leader(&url).await {
                self.report
                    .failovers_ms
                    .push(killed_at.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if killed_at.elapsed() > Duration::from_secs(30) {
                self.report
                    .problems
                    .push("no failover within 30 s of the leader's kill -9".into());
                self.report.failovers_ms.push(f64::INFINITY);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let http = self.world.http.clone();
        self.world.servers[leader].start(&http).await?;
        self.world.refresh_live();
        self.event(Kind::LeaderKill, None, None, t0);
        Ok(())
    }

    async fn is_leader(&self, url: &str) -> bool {
        let r = self
            .world
            .http
            .get(format!("{url}/api/v1/status"))
            .bearer_auth(crate::procs::API_TOKEN)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        match r {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["leader"].as_bool())
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    async fn pg_restart(&mut self) -> Result<()> {
        let Some(pg) = self.world.pg.as_mut() else {
            return Ok(());
        };
        if let Pg::Shared { .. } = pg {
            let why = "PostgreSQL is shared (--pg-url): not restarting somebody else's server";
            println!("  SKIP {}: {why}", Kind::PgRestart.name());
            self.report.skipped.push((Kind::PgRestart, why.into()));
            return Ok(());
        }
        let t0 = now_us();
        let down = pg.restart().await?;
        let back = Instant::now();
        // Both instances serve again (their pools reconnect).
        let urls = self.world.live_urls();
        let deadline = Instant::now() + Duration::from_secs(30);
        for url in urls {
            loop {
                let ok = self
                    .world
                    .http
                    .get(format!("{url}/api/v1/stats"))
                    .bearer_auth(crate::procs::API_TOKEN)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    self.report.problems.push(format!(
                        "{url} not answering 30 s after PostgreSQL restarted"
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.report.pg_restarts.push((
            down.as_secs_f64() * 1000.0,
            back.elapsed().as_secs_f64() * 1000.0,
        ));
        self.event(Kind::PgRestart, None, None, t0);
        Ok(())
    }

    async fn disk_full(&mut self) -> Result<()> {
        let Some(fs) = self.world.tmpfs.as_ref() else {
            let why = self
                .world
                .tmpfs_skip
                .clone()
                .unwrap_or_else(|| "no tmpfs".into());
            println!("  SKIP {}: {why}", Kind::DiskFull.name());
            self.report.skipped.push((Kind::DiskFull, why));
            return Ok(());
        };
        // Shrink the filesystem to what is used, then fill the rest.
        let used = fs.used()?;
        fs.resize(&format!("{}", used + 1024 * 1024))?;
        let filler = fs.path.join("filler");
        fill(&filler);
        let t0 = now_us();
        let url = self.world.servers[0].url();
        let mut answers = Vec::new();
        let full_for = Instant::now();
        while full_for.elapsed() < Duration::from_secs(3) {
            // A batch big enough that the WAL must grow (its existing pages
            // are reused, so small writes can still fit).
            self.probes += 1;
            let pad = "x".repeat(4000);
            let list: Vec<serde_json::Value> = (0..400)
                .map(|i| {
                    let key = format!("chaos-probe-{}-{i}", self.probes);
                    self.probe_keys.push(key.clone());
                    serde_json::json!({
                        "task_type": "chaos", "payload": { "ms": 0, "pad": pad },
                        "idempotency_key": key, "max_attempts": 20, "retry_backoff_ms": 0,
                    })
                })
                .collect();
            let body = serde_json::json!({ "tasks": list });
            let answer = match self.client.once(&url, "/api/v1/tasks", &body).await {
                Ok((status, v)) => {
                    let msg = v["error"]["message"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    let msg = if (200..300).contains(&status) {
                        "accepted".to_string()
                    } else {
                        msg.chars().take(160).collect::<String>()
                    };
                    format!("{status} {msg}")
                }
                Err(e) => format!("no answer: {e}"),
            };
            answers.push(answer);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let _ = std::fs::remove_file(&filler);
        fs.resize("1g")?;
        let t1 = now_us();
        let room = Instant::now();
        answers.dedup();
        self.report
            .disk_notes
            .push(format!("submits while full: {}", answers.join(" | ")));
        if let Some(status) = self.world.servers[0].exited() {
            self.report
                .problems
                .push(format!("the server exited on a full disk ({status})"));
            let http = self.world.http.clone();
            self.world.servers[0].start(&http).await?;
            self.world.refresh_live();
        }
        // Recovery: a submit accepted again.
        loop {
            self.probes += 1;
            let key = format!("chaos-probe-{}", self.probes);
            self.probe_keys.push(key.clone());
            if self.client.submit_one(&key, 0).await.is_ok() {
                self.report
                    .disk_recovery_ms
                    .push(room.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if room.elapsed() > Duration::from_secs(30) {
                self.report
                    .problems
                    .push("no submit accepted within 30 s after the disk had room".into());
                break;
            }
        }
        let e = self.event(Kind::DiskFull, None, None, t0);
        e.end_us = t1;
        Ok(())
    }

    /// Stale refusals since `before`, waited for after a long cut heals.
    ///
    /// During the cut every results call fails at once, so the agent's
    /// backoff has grown to its cap (5 s) by the time the link returns: its
    /// next try can come that long after. At least 3 s are waited, as after
    /// a SIGSTOP, and then until a refusal shows or the cap has passed.
    async fn refusals_after_heal(&self, before: f64) -> f64 {
        const AT_LEAST: Duration = Duration::from_secs(3);
        const AGENT_BACKOFF_CAP: Duration = Duration::from_secs(5);
        let start = tokio::time::Instant::now();
        tokio::time::sleep(AT_LEAST).await;
        loop {
            let refused = self.stale_total().await - before;
            if refused >= 1.0 || start.elapsed() >= AGENT_BACKOFF_CAP + Duration::from_secs(2) {
                return refused;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Results refused as stale, summed over the running instances.
    async fn stale_total(&self) -> f64 {
        let mut sum = 0.0;
        for url in self.world.live_urls() {
            if let Ok(r) = self.world.http.get(format!("{url}/metrics")).send().await {
                if let Ok(text) = r.text().await {
                    sum += text
                        .lines()
                        .filter(|l| {
                            l.starts_with("drover_task_results_stale_total ")
                                || l.starts_with("drover_task_results_stale_total{")
                        })
                        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                        .sum::<f64>();
                }
            }
        }
        sum
    }
}

/// Writes zeros to `path` until the filesystem is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::File::create(path) {
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
    }
}
