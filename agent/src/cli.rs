//! Command-line flags. Every flag has an environment variable so the agent
//! can be configured entirely from a unit file or container spec.

use std::path::PathBuf;

use clap::Parser;

/// Runs tasks from a Drover server through the handlers configured in the
/// agent's TOML file.
#[derive(Debug, Clone, Parser)]
#[command(name = "drover-agent", version, about)]
pub struct Cli {
    /// Base URL of the Drover server, e.g. https://drover.internal:8443.
    #[arg(long, env = "DROVER_SERVER")]
    pub server: String,

    /// PEM file of CA certificates to trust for https, in addition to the
    /// system's roots (for a server whose certificate a private CA signed).
    #[arg(long, env = "DROVER_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// File holding the enrollment token, used to register (the safe way:
    /// keep it readable by the agent's user only). Wins over --token.
    #[arg(long, env = "DROVER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// The enrollment token itself. Prefer --token-file: a value here shows
    /// in the process list and the environment. Handlers never see either.
    #[arg(long, env = "DROVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Path of the agent's TOML configuration file.
    #[arg(long, env = "DROVER_AGENT_CONFIG")]
    pub config: PathBuf,

    /// Name shown to operators; overrides `name` in the file (default: the hostname).
    #[arg(long, env = "DROVER_AGENT_NAME")]
    pub name: Option<String>,

    /// Directory for the result outbox; overrides `state_dir` in the file
    /// (default: ./drover-agent-state).
    #[arg(long, env = "DROVER_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// After SIGTERM / Ctrl-C, how long running tasks may finish before they
    /// are killed and handed back to the server.
    #[arg(long, env = "DROVER_SHUTDOWN_GRACE_MS", default_value_t = 30_000)]
    pub shutdown_grace_ms: u64,

    /// Names of environment variables whose values are replaced by `***`
    /// in the log lines shipped to the server (comma-separated). The values
    /// are taken from the agent's own environment and from the `env` tables
    /// of its command handlers. The enrollment token is always redacted.
    #[arg(long, env = "DROVER_REDACT_ENV", value_delimiter = ',')]
    pub redact_env: Vec<String>,

    /// Literal values replaced by `***` in shipped log lines (comma-separated).
    /// A value here shows in the process list: prefer the environment
    /// variable, or --redact-env.
    #[arg(
        long,
        env = "DROVER_REDACT",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub redact: Vec<String>,

    /// Log filter in `tracing` syntax, e.g. `info` or `drover_agent=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,

    /// Log one JSON object per line (for a log shipper) instead of text.
    #[arg(long, env = "DROVER_LOG_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    pub log_json: bool,
}
