//! The server's configuration: one struct, read from flags with environment
//! fallbacks, parsed once in `main`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use drover_engine::domain::{PriorityWeights, Scheduling};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "drover-server",
    version,
    about = "Drover: a durable priority queue and workflow server for a fleet of agents"
)]
pub struct Config {
    /// Address to serve the API, the agent protocol and the dashboard on.
    #[arg(long, env = "DROVER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// PEM certificate chain (server certificate first) to serve HTTPS with;
    /// needs --tls-key. Without both the server speaks plain HTTP, e.g.
    /// behind a TLS-terminating proxy.
    #[arg(long, env = "DROVER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "DROVER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Directory for the embedded database and generated tokens.
    #[arg(long, env = "DROVER_DATA_DIR", default_value = "drover-data")]
    pub data_dir: PathBuf,

    /// `sqlite://PATH` or `postgres://USER@HOST/DB`; default: SQLite in the data directory.
    #[arg(long, env = "DROVER_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Most database connections (PostgreSQL) or readers (SQLite).
    #[arg(long, env = "DROVER_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// How long a verified API token or session is trusted without asking
    /// the database again (0s: ask on every request). Revocations through
    /// this instance apply at once; through another, within this time.
    #[arg(long, env = "DROVER_AUTH_CACHE_TTL", value_parser = humantime::parse_duration, default_value = "1s")]
    pub auth_cache_ttl: Duration,

    /// Group commit: most concurrent write requests (submits, agents'
    /// results, claims) that share one transaction.
    #[arg(long, env = "DROVER_GROUP_COMMIT_MAX", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub group_commit_max: u32,

    /// Group commit: how long a write waits for others to share its commit.
    /// 0s (the default) adds no wait: a write goes at once, and the writes
    /// that arrive while one is in flight share the next commit.
    #[arg(long, env = "DROVER_GROUP_COMMIT_WINDOW", value_parser = humantime::parse_duration, default_value = "0s")]
    pub group_commit_window: Duration,

    /// Weights α,β,γ of P = α·urgency + β·time_sensitivity + γ·importance.
    #[arg(long, env = "DROVER_PRIORITY_WEIGHTS", value_parser = PriorityWeights::parse, default_value = "1,1,1")]
    pub priority_weights: PriorityWeights,

    /// Overrides α (urgency) of the priority weights.
    #[arg(long, env = "DROVER_WEIGHT_URGENCY")]
    pub weight_urgency: Option<f64>,

    /// Overrides β (time sensitivity) of the priority weights.
    #[arg(long, env = "DROVER_WEIGHT_TIME_SENSITIVITY")]
    pub weight_time_sensitivity: Option<f64>,

    /// Overrides γ (importance) of the priority weights.
    #[arg(long, env = "DROVER_WEIGHT_IMPORTANCE")]
    pub weight_importance: Option<f64>,

    /// Priority points a queued task gains per minute of waiting, so low
    /// priority work cannot starve (0 turns aging off).
    #[arg(long, env = "DROVER_AGING_POINTS_PER_MINUTE", default_value_t = 1.0)]
    pub aging_points_per_minute: f64,

    /// How often agents are asked to heartbeat.
    #[arg(long, env = "DROVER_HEARTBEAT_INTERVAL", value_parser = humantime::parse_duration, default_value = "5s")]
    pub heartbeat_interval: Duration,

    /// Silence after which an agent is offline and its tasks are requeued.
    /// A claimed task's lease lasts this plus one interval, and a heartbeat
    /// renews it once less than this is left.
    #[arg(long, env = "DROVER_HEARTBEAT_TIMEOUT", value_parser = humantime::parse_duration, default_value = "20s")]
    pub heartbeat_timeout: Duration,

    /// Longest a claim long-poll is held open.
    #[arg(long, env = "DROVER_MAX_CLAIM_WAIT", value_parser = humantime::parse_duration, default_value = "30s")]
    pub max_claim_wait: Duration,

    /// How often the leader runs its duties (offline agents, expired leases, timeouts).
    #[arg(long, env = "DROVER_DUTY_INTERVAL", value_parser = humantime::parse_duration, default_value = "1s")]
    pub duty_interval: Duration,

    /// How long leadership lasts without renewal; a dead leader is replaced after this.
    #[arg(long, env = "DROVER_LEADER_TTL", value_parser = humantime::parse_duration, default_value = "5s")]
    pub leader_ttl: Duration,

    /// How late a schedule's tick may fire: ticks older than this when a
    /// leader sees them were missed (no server ran) and follow the
    /// schedule's missed-tick policy. At least the leader TTL plus two duty
    /// intervals, so a leader change never counts as an outage.
    #[arg(long, env = "DROVER_SCHEDULE_GRACE", value_parser = humantime::parse_duration, default_value = "30s")]
    pub schedule_grace: Duration,

    /// Bearer token for the operator API; generated into the data directory if unset.
    #[arg(long, env = "DROVER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Password of the `admin` user created on first start; generated and
    /// printed once if unset.
    #[arg(long, env = "DROVER_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// How long a dashboard sign-in lasts.
    #[arg(long, env = "DROVER_SESSION_TTL", value_parser = humantime::parse_duration, default_value = "7days")]
    pub session_ttl: Duration,

    /// Token agents enroll with; generated into the data directory if unset.
    #[arg(long, env = "DROVER_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub enrollment_token: Option<String>,

    /// Addresses of reverse proxies whose `X-Forwarded-For` names the real
    /// client for the sign-in limits (comma-separated IPs); without it every
    /// client behind a proxy counts as the proxy's address.
    #[arg(long, env = "DROVER_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Bearer token `/metrics` requires; unset: `/metrics` is open (bind to
    /// loopback or set this).
    #[arg(long, env = "DROVER_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Task types accepted even before an agent for them has registered (comma-separated).
    #[arg(long, env = "DROVER_TASK_TYPES", value_delimiter = ',')]
    pub task_types: Vec<String>,

    /// Largest request body in bytes; larger ones get 413.
    #[arg(long, env = "DROVER_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most tasks in one submit request.
    #[arg(long, env = "DROVER_MAX_BATCH", default_value_t = drover_protocol::limits::DEFAULT_MAX_BATCH)]
    pub max_batch: usize,

    /// Largest output a task may store, in bytes of JSON: an attempt whose
    /// output is larger fails with a message saying so (retrying would
    /// only make it again).
    #[arg(long, env = "DROVER_MAX_OUTPUT_BYTES", default_value_t = drover_protocol::limits::DEFAULT_MAX_OUTPUT_BYTES)]
    pub max_output_bytes: usize,

    /// Most items one `for_each` step may fan out to; a longer list is
    /// refused at upload when it is literal, else fails its run.
    #[arg(long, env = "DROVER_MAX_FOR_EACH_ITEMS", default_value_t = drover_protocol::limits::DEFAULT_MAX_FOR_EACH_ITEMS)]
    pub max_for_each_items: usize,

    /// Where the built dashboard (wasm, css) is served from.
    #[arg(long, env = "DROVER_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// Log filter (tracing's `EnvFilter` syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info,sqlx=warn")]
    pub log: String,

    /// Without a command the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One-off administration commands that work on the database directly.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user and print a new API token for them.
    Add {
        name: String,
        /// viewer, approver, operator or admin.
        #[arg(long, value_parser = parse_role)]
        role: drover_protocol::api::Role,
        /// For the dashboard; omit for an API-only user.
        #[arg(long, env = "DROVER_NEW_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// List users.
    List,
    /// Change a user's role (never the last enabled admin's).
    Role {
        name: String,
        #[arg(value_parser = parse_role)]
        role: drover_protocol::api::Role,
    },
    /// Disable a user: their sessions and tokens are refused at once.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// Set a user's password (their dashboard sessions end).
    Password {
        name: String,
        #[arg(long, env = "DROVER_NEW_USER_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// List a user's API tokens (all users' without a name).
    Tokens { name: Option<String> },
    /// Issue a new API token for a user and print it once.
    AddToken {
        name: String,
        /// A label for the token.
        #[arg(long, default_value = "cli")]
        label: String,
        /// Lifetime such as 30d or 12h; none: no expiry.
        #[arg(long, value_parser = crate::accounts::parse_duration_text)]
        expires_in: Option<Duration>,
    },
    /// Revoke an API token by id (see `user tokens`).
    RevokeToken { id: i64 },
}

fn parse_role(s: &str) -> Result<drover_protocol::api::Role, String> {
    drover_protocol::api::Role::parse(s)
        .ok_or_else(|| format!("unknown role {s:?}; one of viewer, approver, operator, admin"))
}

impl Config {
    /// The database URL, defaulting to a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("drover.db").display()),
        }
    }

    pub fn scheduling(&self) -> Scheduling {
        let mut weights = self.priority_weights;
        if let Some(w) = self.weight_urgency {
            weights.urgency = w;
        }
        if let Some(w) = self.weight_time_sensitivity {
            weights.time_sensitivity = w;
        }
        if let Some(w) = self.weight_importance {
            weights.importance = w;
        }
        Scheduling {
            weights,
            aging_points_per_minute: self.aging_points_per_minute,
            max_for_each_items: self.max_for_each_items,
        }
    }

    /// Checks what clap cannot: relations between settings.
    pub fn validate(&self) -> Result<(), String> {
        let s = self.scheduling();
        for (name, w) in [
            ("--weight-urgency", s.weights.urgency),
            ("--weight-time-sensitivity", s.weights.time_sensitivity),
            ("--weight-importance", s.weights.importance),
            ("--aging-points-per-minute", s.aging_points_per_minute),
        ] {
            if !w.is_finite() || w < 0.0 {
                return Err(format!("{name} must be a finite number >= 0, got {w}"));
            }
        }
        if self.heartbeat_interval >= self.heartbeat_timeout {
            return Err(format!(
                "--heartbeat-interval ({:?}) must be shorter than --heartbeat-timeout ({:?})",
                self.heartbeat_interval, self.heartbeat_timeout
            ));
        }
        if self.auth_cache_ttl > Duration::from_secs(60) {
            return Err(format!(
                "--auth-cache-ttl ({:?}) must be at most 60s: a revoked token would keep working that long on other instances",
                self.auth_cache_ttl
            ));
        }
        if self.group_commit_window > Duration::from_millis(100) {
            return Err(format!(
                "--group-commit-window ({:?}) must be at most 100ms: every write would wait that long",
                self.group_commit_window
            ));
        }
        if self.max_for_each_items == 0 {
            return Err("--max-for-each-items must be at least 1".into());
        }
        if self.leader_ttl <= self.duty_interval {
            return Err("--leader-ttl must be longer than --duty-interval".into());
        }
        if self.schedule_grace < self.leader_ttl + 2 * self.duty_interval {
            return Err(format!(
                "--schedule-grace ({:?}) must be at least --leader-ttl plus two --duty-interval ({:?}): ticks late by a leader change would count as missed",
                self.schedule_grace,
                self.leader_ttl + 2 * self.duty_interval
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err("--tls-cert (DROVER_TLS_CERT) needs --tls-key (DROVER_TLS_KEY)".into())
            }
            (None, Some(_)) => {
                return Err("--tls-key (DROVER_TLS_KEY) needs --tls-cert (DROVER_TLS_CERT)".into())
            }
            _ => {}
        }
        for t in &self.task_types {
            drover_engine::domain::check_name("DROVER_TASK_TYPES", t).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(extra: &[&str]) -> Result<Config, clap::Error> {
        let mut args = vec!["drover-server"];
        args.extend_from_slice(extra);
        Config::try_parse_from(args)
    }

    #[test]
    fn group_commit_and_token_memory_settings_are_bounded() {
        let defaults = parse(&[]).expect("defaults parse");
        assert!(defaults.validate().is_ok());
        assert_eq!(defaults.group_commit_max, 64);
        assert!(defaults.group_commit_window.is_zero());
        assert_eq!(defaults.auth_cache_ttl, Duration::from_secs(1));

        assert!(parse(&["--group-commit-max=0"]).is_err());
        assert!(parse(&["--group-commit-max=1025"]).is_err());
        let slow = parse(&["--group-commit-window=101ms"]).expect("parses");
        assert!(slow
            .validate()
            .unwrap_err()
            .contains("--group-commit-window"));
        let long = parse(&["--auth-cache-ttl=61s"]).expect("parses");
        assert!(long.validate().unwrap_err().contains("--auth-cache-ttl"));
        let off = parse(&["--auth-cache-ttl=0s", "--group-commit-window=100ms"]).expect("parses");
        assert!(off.validate().is_ok());
    }
}
