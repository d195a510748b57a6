//! The real `drover-server` and `drover-agent` processes the suite drives,
//! and the signals it sends them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub const API_TOKEN: &str = "chaos-operator-token";
pub const ENROLL_TOKEN: &str = "chaos-enrollment-token";

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `kill -<sig> <pid>`.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// One `drover-server` instance; restarts keep its port and data directory.
pub struct ServerProc {
    pub name: String,
    pub port: u16,
    bin: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl ServerProc {
    pub fn new(
        name: &str,
        bin_dir: &Path,
        dir: &Path,
        db_url: &str,
        settings: &[(&str, String)],
    ) -> Result<Self> {
        let port = free_port()?;
        let data = dir.join(format!("{name}-data"));
        std::fs::create_dir_all(&data)?;
        let mut env: Vec<(String, String)> = vec![
            ("DROVER_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("DROVER_DATABASE_URL".into(), db_url.into()),
            ("DROVER_DATA_DIR".into(), data.display().to_string()),
            ("DROVER_API_TOKEN".into(), API_TOKEN.into()),
            ("DROVER_ENROLLMENT_TOKEN".into(), ENROLL_TOKEN.into()),
            (
                "DROVER_SITE_ROOT".into(),
                data.join("site").display().to_string(),
            ),
            ("DROVER_TASK_TYPES".into(), "chaos".into()),
            ("RUST_LOG".into(), "info,sqlx=warn,tower_http=warn".into()),
        ];
        env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Ok(Self {
            name: name.into(),
            port,
            bin: bin_dir.join("drover-server"),
            env,
            log: dir.join(format!("{name}.log")),
            child: None,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process and waits for `/healthz`.
    pub async fn start(&mut self, http: &reqwest::Client) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", self.url())).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                bail!(
                    "{} exited with {status}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!("{} did not come up; see {}", self.name, self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status if the process ended by itself.
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status.to_string())
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then `kill -9` after `within`.
    pub fn stop(&mut self, within: Duration) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "TERM");
            let deadline = Instant::now() + within;
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

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One `drover-agent`, talking to the servers through its own proxy;
/// restarts keep its state directory (so it resumes with its key).
pub struct AgentProc {
    pub name: String,
    bin: PathBuf,
    config: PathBuf,
    state: PathBuf,
    log: PathBuf,
    server_url: String,
    child: Option<Child>,
}

impl AgentProc {
    /// Writes the agent's config: capacity slots of the `chaos` command handler.
    pub fn new(
        name: &str,
        bin_dir: &Path,
        dir: &Path,
        server_url: &str,
        capacity: u32,
        side_log: &Path,
    ) -> Result<Self> {
        let me = std::env::current_exe().context("path of drover-chaos")?;
        let config = dir.join(format!("{name}.toml"));
        let text = format!(
            "capacity = {capacity}\n\n[handlers.chaos]\nkind = \"command\"\nprogram = {:?}\nargs = [\"handler\", \"--log\", {:?}, \"--agent\", {:?}]\n",
            me.display().to_string(),
            side_log.display().to_string(),
            name
        );
        std::fs::write(&config, text)?;
        Ok(Self {
            name: name.into(),
            bin: bin_dir.join("drover-agent"),
            config,
            state: dir.join(format!("{name}-state")),
            log: dir.join(format!("{name}.log")),
            server_url: server_url.into(),
            child: None,
        })
    }

    pub fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .arg("--server")
            .arg(&self.server_url)
            .arg("--config")
            .arg(&self.config)
            .arg("--name")
            .arg(&self.name)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--shutdown-grace-ms")
            .arg("5000")
            .env("DROVER_TOKEN", ENROLL_TOKEN)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// `kill -9`; returns the pid it had.
    pub fn kill9(&mut self) -> Option<u32> {
        let mut c = self.child.take()?;
        let pid = c.id();
        let _ = c.kill();
        let _ = c.wait();
        Some(pid)
    }

    pub fn sigstop(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "STOP");
        }
    }

    pub fn sigcont(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "CONT");
        }
    }

    /// SIGTERM and wait (the agent hands running tasks back and exits).
    pub fn stop(&mut self, within: Duration) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "CONT");
            signal(c.id(), "TERM");
            let deadline = Instant::now() + within;
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

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
