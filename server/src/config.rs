//! The server's configuration: one struct, read from flags with environment
//! fallbacks and an optional config file (`file`), parsed once in `main`.

mod file;
pub use file::{LoadError, Loaded};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use drover_engine::domain::{PriorityWeights, Scheduling, TypeLimits};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "drover-server",
    version,
    about = "Drover: a durable priority queue and workflow server for a fleet of agents"
)]
pub struct Config {
    /// A TOML file of settings (see `examples/server.toml`): its keys are
    /// the long flags below, as `database_url` or `database-url`, its values
    /// strings, numbers, booleans, or arrays for the settings that take
    /// several. A flag beats its environment variable, which beats the file,
    /// which beats the built-in default.
    #[arg(long, env = "DROVER_CONFIG")]
    pub config: Option<PathBuf>,

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
    /// A file holding the database URL (Docker and Kubernetes secrets are files),
    /// read once at start, trailing newline dropped; instead of --database-url.
    #[arg(
        long,
        env = "DROVER_DATABASE_URL_FILE",
        conflicts_with = "database_url"
    )]
    pub database_url_file: Option<PathBuf>,

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

    /// How often the leader records every connected agent's running count
    /// and capacity, the history of `GET /api/v1/agents/{id}/load`.
    #[arg(long, env = "DROVER_AGENT_LOAD_INTERVAL", value_parser = humantime::parse_duration, default_value = "5s")]
    pub agent_load_interval: Duration,

    /// How often the leader counts the queued tasks by type for the
    /// overview's queue depth chart (samples are kept 7 days); it also
    /// rolls up the tasks finished since its last pass.
    #[arg(long, env = "DROVER_QUEUE_DEPTH_INTERVAL", value_parser = humantime::parse_duration, default_value = "10s")]
    pub queue_depth_interval: Duration,

    /// How long finished tasks (with their attempts, events and logs) and
    /// finished runs (with their steps, approvals and tasks) are kept;
    /// `0s` keeps them for ever. Deleted by the leader in small batches.
    #[arg(long, env = "DROVER_RETENTION", value_parser = humantime::parse_duration, default_value = "30days")]
    pub retention: Duration,

    /// Per task type keep-for of finished tasks outside runs, instead of
    /// --retention: `resize=7days,report=90days`.
    #[arg(long, env = "DROVER_RETENTION_BY_TYPE", value_parser = parse_type_durations, default_value = "")]
    pub retention_by_type: TypeDurations,

    /// How long audit log entries are kept: `0s` (for ever) or at least 30
    /// days (younger entries cannot be deleted at all).
    #[arg(long, env = "DROVER_AUDIT_RETENTION", value_parser = humantime::parse_duration, default_value = "365days")]
    pub audit_retention: Duration,

    /// How often the leader looks for finished work past its retention.
    #[arg(long, env = "DROVER_RETENTION_INTERVAL", value_parser = humantime::parse_duration, default_value = "1min")]
    pub retention_interval: Duration,

    /// How long load samples are kept (at most the longest window shown, 7 days).
    #[arg(long, env = "DROVER_AGENT_LOAD_RETENTION", value_parser = humantime::parse_duration, default_value = "24h")]
    pub agent_load_retention: Duration,

    /// The dashboard's address as people reach it (`https://drover.example.com`):
    /// notifications link to its pages. Unset: they carry no links.
    #[arg(long, env = "DROVER_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Attempts a notification delivery gets before it is marked failed.
    #[arg(long, env = "DROVER_NOTIFY_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub notify_max_attempts: u32,

    /// Wait before a failed delivery's first retry; it doubles with each
    /// further failure (with jitter), up to an hour.
    #[arg(long, env = "DROVER_NOTIFY_RETRY_BACKOFF", value_parser = humantime::parse_duration, default_value = "10s")]
    pub notify_retry_backoff: Duration,

    /// How long one delivery attempt may take (connect, send, answer).
    #[arg(long, env = "DROVER_NOTIFY_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub notify_timeout: Duration,

    /// Let notification URLs reach loopback, private and link-local
    /// addresses (internal chat servers, tests). Off: such URLs are
    /// refused, so an admin's URL cannot probe the server's own network.
    #[arg(long, env = "DROVER_NOTIFY_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub notify_allow_private: bool,

    /// How long delivered and failed deliveries are kept.
    #[arg(long, env = "DROVER_NOTIFY_RETENTION", value_parser = humantime::parse_duration, default_value = "30days")]
    pub notify_retention: Duration,

    /// Bearer token for the operator API; generated into the data directory if unset.
    #[arg(long, env = "DROVER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// A file holding the operator API token (Docker and Kubernetes secrets are files),
    /// read once at start, trailing newline dropped; instead of --api-token.
    #[arg(long, env = "DROVER_API_TOKEN_FILE", conflicts_with = "api_token")]
    pub api_token_file: Option<PathBuf>,

    /// Password of the `admin` user created on first start; generated and
    /// printed once if unset.
    #[arg(long, env = "DROVER_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// A file holding the first admin password (Docker and Kubernetes secrets are files),
    /// read once at start, trailing newline dropped; instead of --admin-password.
    #[arg(
        long,
        env = "DROVER_ADMIN_PASSWORD_FILE",
        conflicts_with = "admin_password"
    )]
    pub admin_password_file: Option<PathBuf>,

    /// How long a dashboard sign-in lasts.
    #[arg(long, env = "DROVER_SESSION_TTL", value_parser = humantime::parse_duration, default_value = "7days")]
    pub session_ttl: Duration,

    /// Token agents enroll with; generated into the data directory if unset.
    #[arg(long, env = "DROVER_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub enrollment_token: Option<String>,
    /// A file holding the enrollment token (Docker and Kubernetes secrets are files),
    /// read once at start, trailing newline dropped; instead of --enrollment-token.
    #[arg(
        long,
        env = "DROVER_ENROLLMENT_TOKEN_FILE",
        conflicts_with = "enrollment_token"
    )]
    pub enrollment_token_file: Option<PathBuf>,

    /// Addresses of reverse proxies whose `X-Forwarded-For` names the real
    /// client for the sign-in limits (comma-separated IPs); without it every
    /// client behind a proxy counts as the proxy's address.
    #[arg(long, env = "DROVER_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Bearer token `/metrics` requires; unset: `/metrics` is open (bind to
    /// loopback or set this).
    #[arg(long, env = "DROVER_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// A file holding the metrics token (Docker and Kubernetes secrets are files),
    /// read once at start, trailing newline dropped; instead of --metrics-token.
    #[arg(
        long,
        env = "DROVER_METRICS_TOKEN_FILE",
        conflicts_with = "metrics_token"
    )]
    pub metrics_token_file: Option<PathBuf>,

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

    /// Concurrency limits per task type, fleet-wide: `resize=4,email=10`.
    /// A task of such a type without a key of its own takes the key
    /// `type:<task type>`.
    #[arg(long, env = "DROVER_TYPE_CONCURRENCY", value_parser = TypeLimits::parse, default_value = "")]
    pub type_concurrency: TypeLimits,
    /// Most log lines kept per task (what its handlers printed, shipped
    /// live by its agent): past it the oldest go, and one note at the
    /// start of the log says how many.
    #[arg(long, env = "DROVER_MAX_LOG_LINES", default_value_t = drover_protocol::limits::DEFAULT_MAX_LOG_LINES)]
    pub max_log_lines: usize,

    /// Where the built dashboard (wasm, css) is served from. A binary
    /// built with the dashboard inside (feature `embed-site`, the release
    /// builds) serves its own unless this is set; others read `target/site`.
    #[arg(long, env = "DROVER_SITE_ROOT")]
    pub site_root: Option<PathBuf>,

    /// Log filter (tracing's `EnvFilter` syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info,sqlx=warn")]
    pub log: String,

    /// Export traces over OTLP/HTTP to this collector (e.g.
    /// `http://localhost:4318`); needs a build with the `otlp` feature.
    /// `OTEL_SERVICE_NAME` names the service (default `drover-server`).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Which spans are exported (`EnvFilter` syntax, apart from `RUST_LOG`):
    /// by default every request's span (tower_http's, at debug) and the
    /// server's own.
    #[arg(
        long,
        env = "DROVER_OTLP_FILTER",
        default_value = "info,tower_http=debug,sqlx=warn"
    )]
    pub otlp_filter: String,

    /// Log one JSON object per line (for a log shipper) instead of text.
    #[arg(long, env = "DROVER_LOG_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    pub log_json: bool,

    /// Without a command the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Keep-fors per task type (`--retention-by-type`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeDurations(pub Vec<(String, Duration)>);

/// Parses `type=duration,type=duration` (empty: none).
fn parse_type_durations(text: &str) -> Result<TypeDurations, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, duration) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected type=duration, e.g. resize=7days"))?;
        let duration =
            humantime::parse_duration(duration.trim()).map_err(|e| format!("{item:?}: {e}"))?;
        out.push((name.trim().to_string(), duration));
    }
    Ok(TypeDurations(out))
}

/// One-off administration commands that work on the database directly.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Copy the embedded SQLite database to a file, consistently, while the
    /// server runs (PostgreSQL: use pg_dump).
    Backup {
        /// The new file (never overwritten).
        #[arg(long)]
        to: PathBuf,
    },
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
    /// Reads the settings from `args` (the program's name first), the
    /// environment and the config file, if one is named. Use this, not
    /// `Config::parse`, which knows nothing of the file.
    pub fn load<I, T>(args: I) -> Result<Loaded, LoadError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString>,
    {
        file::load(args.into_iter().map(Into::into).collect())
    }

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
            // Parsed when the settings were read; kept for the process.
            type_limits: Box::leak(Box::new(self.type_concurrency.clone())),
        }
    }

    /// Reads the secrets given as files (`--api-token-file`, …) into their
    /// settings, once (a second call finds nothing to read). Refuses an
    /// unreadable or empty file, naming it.
    pub fn read_secret_files(&mut self) -> Result<(), String> {
        let pairs: [(&mut Option<PathBuf>, &mut Option<String>, &str); 5] = [
            (
                &mut self.database_url_file,
                &mut self.database_url,
                "--database-url-file",
            ),
            (
                &mut self.api_token_file,
                &mut self.api_token,
                "--api-token-file",
            ),
            (
                &mut self.admin_password_file,
                &mut self.admin_password,
                "--admin-password-file",
            ),
            (
                &mut self.enrollment_token_file,
                &mut self.enrollment_token,
                "--enrollment-token-file",
            ),
            (
                &mut self.metrics_token_file,
                &mut self.metrics_token,
                "--metrics-token-file",
            ),
        ];
        for (file, value, flag) in pairs {
            let Some(path) = file.take() else { continue };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
            let text = text.trim_end_matches(['\n', '\r']);
            if text.is_empty() {
                return Err(format!("{flag} {}: the file is empty", path.display()));
            }
            *value = Some(text.to_string());
        }
        Ok(())
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
        let most = drover_protocol::limits::MAX_LOG_LINES_LIMIT;
        if self.max_log_lines == 0 || self.max_log_lines > most {
            return Err(format!(
                "--max-log-lines must be between 1 and {most}, got {}",
                self.max_log_lines
            ));
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
        if self.notify_timeout.is_zero() || self.notify_timeout > Duration::from_secs(60) {
            return Err(format!(
                "--notify-timeout ({:?}) must be more than 0s and at most 60s",
                self.notify_timeout
            ));
        }
        if self.notify_retry_backoff.is_zero()
            || self.notify_retry_backoff > Duration::from_secs(3600)
        {
            return Err(format!(
                "--notify-retry-backoff ({:?}) must be more than 0s and at most 1h",
                self.notify_retry_backoff
            ));
        }
        if self.agent_load_interval < Duration::from_millis(100)
            || self.agent_load_interval > Duration::from_secs(3600)
        {
            return Err(format!(
                "--agent-load-interval ({:?}) must be between 100ms and 1h",
                self.agent_load_interval
            ));
        }
        if self.queue_depth_interval < Duration::from_secs(1)
            || self.queue_depth_interval > Duration::from_secs(60)
        {
            return Err(format!(
                "--queue-depth-interval ({:?}) must be between 1s and 1min",
                self.queue_depth_interval
            ));
        }
        // The database refuses to delete younger audit entries (migration
        // 0021): a shorter setting would only fail.
        if !self.audit_retention.is_zero()
            && self.audit_retention < Duration::from_secs(30 * 86_400)
        {
            return Err(format!(
                "--audit-retention ({:?}) must be 0s (keep for ever) or at least 30days",
                self.audit_retention
            ));
        }
        let kept = std::iter::once(("--retention", &self.retention)).chain(
            self.retention_by_type
                .0
                .iter()
                .map(|(_, d)| ("--retention-by-type", d)),
        );
        for (flag, keep) in kept {
            if !keep.is_zero() && *keep < Duration::from_secs(60) {
                return Err(format!(
                    "{flag} ({keep:?}) must be 0s (keep for ever) or at least 1min"
                ));
            }
        }
        if self.retention_interval < Duration::from_millis(100) {
            return Err("--retention-interval must be at least 100ms".into());
        }
        let longest = Duration::from_secs(drover_protocol::api::MAX_LOAD_WINDOW_S as u64);
        if self.agent_load_retention < Duration::from_secs(60)
            || self.agent_load_retention > longest
            || self.agent_load_retention < self.agent_load_interval
        {
            return Err(format!(
                "--agent-load-retention ({:?}) must be between 1min and 7days, and at least --agent-load-interval",
                self.agent_load_retention
            ));
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "--public-url ({url:?}) must start with http:// or https://"
                ));
            }
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
    fn secrets_are_read_from_files_once_and_never_from_both() {
        let dir = tempfile::tempdir().expect("dir");
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").expect("write");
        let path = token.to_str().expect("utf-8");
        let mut c = parse(&["--api-token-file", path]).expect("parse");
        c.read_secret_files().expect("read");
        assert_eq!(c.api_token.as_deref(), Some("s3cret"));

        assert!(parse(&["--api-token-file", path, "--api-token", "x"]).is_err());

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let mut c =
            parse(&["--metrics-token-file", empty.to_str().expect("utf-8")]).expect("parse");
        assert!(c
            .read_secret_files()
            .unwrap_err()
            .contains("--metrics-token-file"));
        let mut c = parse(&["--database-url-file", "/nonexistent/url"]).expect("parse");
        assert!(c
            .read_secret_files()
            .unwrap_err()
            .contains("/nonexistent/url"));
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

    #[test]
    fn agent_load_settings_are_bounded() {
        let defaults = parse(&[]).expect("defaults parse");
        assert_eq!(defaults.agent_load_interval, Duration::from_secs(5));
        assert_eq!(defaults.agent_load_retention, Duration::from_secs(86_400));
        for (flag, bad) in [
            ("--agent-load-interval", "50ms"),
            ("--agent-load-interval", "2h"),
            ("--agent-load-retention", "30s"),
            ("--agent-load-retention", "8days"),
        ] {
            let c = parse(&[&format!("{flag}={bad}")]).expect("parses");
            assert!(c.validate().unwrap_err().contains(flag), "{flag}={bad}");
        }
        let c =
            parse(&["--agent-load-interval=200ms", "--agent-load-retention=1min"]).expect("parses");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn the_queue_depth_interval_is_bounded() {
        let defaults = parse(&[]).expect("defaults parse");
        assert_eq!(defaults.queue_depth_interval, Duration::from_secs(10));
        for bad in ["500ms", "2min"] {
            let c = parse(&[&format!("--queue-depth-interval={bad}")]).expect("parses");
            assert!(c.validate().unwrap_err().contains("--queue-depth-interval"));
        }
        let c = parse(&["--queue-depth-interval=1s"]).expect("parses");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn notification_settings_are_bounded() {
        let defaults = parse(&[]).expect("defaults parse");
        assert_eq!(defaults.notify_max_attempts, 8);
        assert_eq!(defaults.notify_timeout, Duration::from_secs(10));
        assert!(!defaults.notify_allow_private);
        assert!(parse(&["--notify-max-attempts=0"]).is_err());
        assert!(parse(&["--notify-max-attempts=101"]).is_err());
        for (flag, bad) in [
            ("--notify-timeout", "0s"),
            ("--notify-timeout", "61s"),
            ("--notify-retry-backoff", "0s"),
            ("--notify-retry-backoff", "2h"),
            ("--public-url", "drover.example.com"),
        ] {
            let c = parse(&[&format!("{flag}={bad}")]).expect("parses");
            assert!(c.validate().unwrap_err().contains(flag), "{flag}={bad}");
        }
        let ok = parse(&[
            "--notify-allow-private=true",
            "--public-url=https://drover.example.com/",
        ])
        .expect("parses");
        assert!(ok.validate().is_ok() && ok.notify_allow_private);
    }
}
