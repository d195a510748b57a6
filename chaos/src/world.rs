//! One backend's world: the database, the servers, the agents with their
//! proxies, and the scratch directory, set up and torn down together.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::db::Db;
use crate::pg::Pg;
use crate::procs::{AgentProc, ServerProc};
use crate::proxy::Proxy;
use crate::{Backend, Plan};

/// An agent and the proxy that is its only way to the servers.
pub struct AgentSlot {
    pub proc: AgentProc,
    pub proxy: Arc<Proxy>,
}

/// A small tmpfs the SQLite database lives on, so the suite can fill it.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `path` (root only); the reason when it cannot.
    pub fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("tmpfs")
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount a tmpfs (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Resizes the filesystem (`mount -o remount,size=`).
    pub fn resize(&self, size: &str) -> Result<()> {
        let status = Command::new("mount")
            .args(["-o"])
            .arg(format!("remount,size={size}"))
            .arg(&self.path)
            .status()?;
        if !status.success() {
            bail!("remount of {} to size {size} failed", self.path.display());
        }
        Ok(())
    }

    /// Bytes in use.
    pub fn used(&self) -> Result<u64> {
        let out = Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(&self.path)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .context("parse df output")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

pub struct World {
    pub backend: Backend,
    pub dir: PathBuf,
    pub http: reqwest::Client,
    pub servers: Vec<ServerProc>,
    pub agents: Vec<AgentSlot>,
    pub side_log: PathBuf,
    pub db: Db,
    /// Server URLs the workload may send to (the live ones).
    pub live: Arc<Mutex<Vec<String>>>,
    pub pg: Option<Pg>,
    pg_db: Option<String>,
    pub tmpfs: Option<Tmpfs>,
    /// Why the disk fault cannot run, when it cannot.
    pub tmpfs_skip: Option<String>,
    pub heartbeat_timeout: Duration,
}

impl World {
    pub async fn start(backend: Backend, plan: &Plan, pg: Option<Pg>) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "drover-chaos-{}-{}",
            backend.name(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let mut tmpfs = None;
        let mut tmpfs_skip = None;
        let (db_url, pg_db) = match backend {
            Backend::Sqlite => {
                let mut db_dir = dir.join("db");
                if plan.disk_fault {
                    match Tmpfs::mount(&dir.join("tmpfs"), "1g") {
                        Ok(t) => {
                            db_dir = t.path.clone();
                            tmpfs = Some(t);
                        }
                        Err(why) => tmpfs_skip = Some(why),
                    }
                } else {
                    tmpfs_skip = Some("--no-disk-fault".into());
                }
                std::fs::create_dir_all(&db_dir)?;
                (
                    format!("sqlite://{}", db_dir.join("drover.db").display()),
                    None,
                )
            }
            Backend::Postgres => {
                let pg = pg.as_ref().context("no PostgreSQL")?;
                let name = format!("drover_chaos_{}", std::process::id());
                (pg.create_database(&name).await?, Some(name))
            }
        };
        let settings = plan.server_settings();
        let n_servers = if backend == Backend::Postgres { 2 } else { 1 };
        let mut servers = Vec::new();
        for i in 0..n_servers {
            let mut s = ServerProc::new(
                &format!("server{}", i + 1),
                &plan.bin_dir,
                &dir,
                &db_url,
                &settings,
            )?;
            s.start(&http).await?;
            servers.push(s);
        }
        let side_log = dir.join("side-effects.log");
        let mut agents = Vec::new();
        for i in 0..plan.agents {
            let upstream = servers[i % servers.len()].addr();
            let proxy = Proxy::start(upstream).await?;
            let mut proc = AgentProc::new(
                &format!("agent{}", i + 1),
                &plan.bin_dir,
                &dir,
                &proxy.url(),
                plan.capacity,
                &side_log,
            )?;
            proc.start()?;
            agents.push(AgentSlot { proc, proxy });
        }
        let db = Db::connect(&db_url).await?;
        let live = Arc::new(Mutex::new(servers.iter().map(|s| s.url()).collect()));
        let world = Self {
            backend,
            dir,
            http,
            servers,
            agents,
            side_log,
            db,
            live,
            pg,
            pg_db,
            tmpfs,
            tmpfs_skip,
            heartbeat_timeout: plan.heartbeat_timeout,
        };
        world.wait_agents_online(plan.agents).await?;
        Ok(world)
    }

    /// Waits until `n` agents are online (they registered through their proxies).
    async fn wait_agents_online(&self, n: usize) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let online = self
                .api_get("/api/v1/stats")
                .await
                .ok()
                .and_then(|v| v["agents_online"].as_u64())
                .unwrap_or(0);
            if online as usize >= n {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "only {online} of {n} agents came online; logs in {}",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET on the first live server that answers.
    pub async fn api_get(&self, path: &str) -> Result<serde_json::Value> {
        let urls = self.live_urls();
        let mut last = None;
        for url in urls {
            match self
                .http
                .get(format!("{url}{path}"))
                .bearer_auth(crate::procs::API_TOKEN)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(r.json().await?),
                Ok(r) => last = Some(anyhow::anyhow!("{path}: {}", r.status())),
                Err(e) => last = Some(e.into()),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no live server")))
    }

    pub fn live_urls(&self) -> Vec<String> {
        self.live.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Publishes which servers run now.
    pub fn refresh_live(&self) {
        let urls: Vec<String> = self
            .servers
            .iter()
            .filter(|s| s.running())
            .map(|s| s.url())
            .collect();
        if let Ok(mut l) = self.live.lock() {
            *l = urls;
        }
    }

    /// Every fault undone: proxies pass, agents run (resumed), servers up.
    pub async fn heal(&mut self) -> Result<()> {
        for s in &mut self.servers {
            if !s.running() {
                s.start(&self.http).await?;
            }
        }
        self.refresh_live();
        for a in &mut self.agents {
            a.proxy.set_mode(crate::proxy::Mode::Pass);
            if a.proc.running() {
                a.proc.sigcont();
            } else {
                a.proc.start()?;
            }
        }
        Ok(())
    }

    /// Stops everything and removes the run's database (the directory is
    /// kept when `keep`, for the logs).
    pub async fn shutdown(mut self, keep: bool) {
        for a in &mut self.agents {
            a.proc.stop(Duration::from_secs(10));
        }
        for s in &mut self.servers {
            s.stop(Duration::from_secs(10));
        }
        self.db.close().await;
        if let (Some(pg), Some(name)) = (&self.pg, &self.pg_db) {
            if !keep {
                pg.drop_database(name).await;
            }
        }
        if let (Some(fs), true) = (&self.tmpfs, keep) {
            // The database lives on the tmpfs: copy it out before unmounting.
            let _ = Command::new("cp")
                .arg("-a")
                .arg(&fs.path)
                .arg(self.dir.join("db-copy"))
                .status();
        }
        drop(self.tmpfs.take());
        if !keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
