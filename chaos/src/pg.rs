//! The PostgreSQL the suite runs on: by default a private cluster it
//! initialises and starts itself on a free port, so that restarting it
//! mid-run (a fault) disturbs nobody else using the machine's PostgreSQL.
//! With `--pg-url` it uses a shared server instead and skips the restart.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sqlx::{Connection, Executor, PgConnection};

use crate::procs::{free_port, signal};

/// Where the run's databases are created.
pub enum Pg {
    /// A cluster this process started; it can be restarted.
    Private(Private),
    /// Somebody else's server, never restarted.
    Shared { admin_url: String },
}

pub struct Private {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    /// `postgres` refuses to run as root: as root the cluster runs as this uid/gid.
    owner: Option<(u32, u32)>,
    child: Option<Child>,
}

impl Pg {
    /// A private cluster under `dir`, from `bin_dir` (or the installed one).
    pub async fn private(dir: &Path, bin_dir: Option<&Path>) -> Result<Self> {
        let bin = match bin_dir {
            Some(d) => d.to_path_buf(),
            None => find_bin_dir().context(
                "no initdb found (set --pg-bin-dir, or --pg-url to use a running server)",
            )?,
        };
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data)?;
        let owner = if is_root() {
            let uid = id("-u")?;
            let gid = id("-g")?;
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(&data)
                .status()?;
            if !status.success() {
                bail!("chown of {} failed", data.display());
            }
            Some((uid, gid))
        } else {
            None
        };
        let log = dir.join("postgres.log");
        let mut init = Command::new(bin.join("initdb"));
        init.arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = owner {
            init.uid(uid).gid(gid);
        }
        let out = init.output().context("run initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut p = Private {
            bin,
            data,
            log,
            port: free_port()?,
            owner,
            child: None,
        };
        p.start().await?;
        Ok(Pg::Private(p))
    }

    pub fn admin_url(&self) -> String {
        match self {
            Pg::Private(p) => format!("postgres://postgres@127.0.0.1:{}/postgres", p.port),
            Pg::Shared { admin_url } => admin_url.clone(),
        }
    }

    /// Creates a fresh database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        let admin = self.admin_url();
        let mut c = PgConnection::connect(&admin)
            .await
            .with_context(|| format!("connect to {admin}"))?;
        c.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
            .await?;
        c.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await?;
        let (base, options) = match admin.split_once('?') {
            Some((url, options)) => (url.to_string(), format!("?{options}")),
            None => (admin.clone(), String::new()),
        };
        let base = base
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(base);
        Ok(format!("{base}/{name}{options}"))
    }

    /// Drops database `name` (best effort; a shared server keeps no litter).
    pub async fn drop_database(&self, name: &str) {
        if let Ok(mut c) = PgConnection::connect(&self.admin_url()).await {
            let _ = c
                .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                .await;
        }
    }

    /// An immediate shutdown (no checkpoint, like a crash: WAL recovery at
    /// start) and a start; returns how long the database was away.
    pub async fn restart(&mut self) -> Result<Duration> {
        match self {
            Pg::Private(p) => {
                let began = Instant::now();
                p.stop("QUIT");
                p.start().await?;
                Ok(began.elapsed())
            }
            Pg::Shared { .. } => bail!("a shared PostgreSQL is never restarted"),
        }
    }
}

impl Private {
    async fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.data)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        self.child = Some(cmd.spawn().context("start postgres")?);
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if PgConnection::connect(&url).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("postgres did not start; see {}", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `sig` to the postmaster and waits for it to exit.
    fn stop(&mut self, sig: &str) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), sig);
            let deadline = Instant::now() + Duration::from_secs(30);
            while !matches!(c.try_wait(), Ok(Some(_))) {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.stop("QUIT");
    }
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `id <flag> postgres`: the account the cluster runs as under root.
fn id(flag: &str) -> Result<u32> {
    let out = Command::new("id").arg(flag).arg("postgres").output()?;
    if !out.status.success() {
        bail!("running as root needs a `postgres` user to run the cluster as");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}
