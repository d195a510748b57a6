//! The agent's configuration file (`agent.toml`) and the settings the agent
//! runs with once command-line flags have been applied on top of it.
//!
//! Everything that can be checked before talking to the server is checked
//! here, with the same rules the server applies at registration, so a typo
//! is reported at start-up with the file's path instead of as an HTTP 422
//! (or, worse, a handler that fails on its first task).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::Cli;
use crate::logs::Redactor;

/// The largest capacity and the most labels the server accepts.
pub use drover_protocol::limits::{MAX_AGENT_CAPACITY as MAX_CAPACITY, MAX_LABELS};
/// Where results and other state live when neither the flag nor the file says.
pub const DEFAULT_STATE_DIR: &str = "./drover-agent-state";
/// How long shutdown keeps trying to deliver results before leaving them in
/// the outbox for the next start.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// `agent.toml`, as written by the operator.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Shown to operators; defaults to the hostname.
    #[serde(default)]
    pub name: Option<String>,
    /// M: the most tasks run at once.
    pub capacity: u32,
    /// Tasks can require labels; only agents carrying all of them get the task.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Where the result outbox is kept.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Task type → how to run it. The keys are the task types advertised.
    pub handlers: BTreeMap<String, HandlerConfig>,
}

/// How one task type is run.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum HandlerConfig {
    /// Built into the agent; needs no external program.
    Builtin {
        /// Which built-in handler.
        builtin: BuiltinKind,
    },
    /// Runs a program per task.
    Command(CommandConfig),
    /// Calls an HTTP endpoint per task.
    Http(HttpConfig),
}

/// Built-in handlers, useful for trying out a deployment and for tests.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinKind {
    /// Returns the payload as the output.
    Echo,
    /// Payload `{"ms": N}`: sleeps N ms, returns `{"slept_ms": N}`.
    Sleep,
    /// Payload `{"error": "...", "retryable": bool}` (both optional): fails.
    Fail,
}

/// A program run once per task. See `handlers::command` for the contract.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// Path or name (looked up in `PATH`) of the program.
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Set for the program, on top of the few variables every program gets
    /// (`handlers::command::INHERITED_ENV`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of further variables to pass on from the agent's own
    /// environment. Nothing else of it reaches the program: not the
    /// enrollment token, not the agent's other settings.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// Working directory; the agent's own when unset.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Upper bound per run; the task's own `timeout_ms` applies too (the smaller wins).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// An HTTP endpoint called once per task. See `handlers::http` for the contract.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Upper bound per call; the task's own `timeout_ms` applies too (the smaller wins).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn default_method() -> String {
    "POST".to_string()
}

/// Why the configuration cannot be used. Every variant names the file (or
/// flag) at fault, since the message is all the operator sees.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}:\n{source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid config file {path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("invalid --server (DROVER_SERVER): {message}")]
    Server { url: String, message: String },
    #[error("invalid --ca-file (DROVER_CA_FILE) {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("invalid --name {name:?}: {message}")]
    Name { name: String, message: String },
    #[error("invalid --redact-env (DROVER_REDACT_ENV): {0}")]
    Redact(String),
    #[error("the enrollment token is empty (--token-file / DROVER_TOKEN_FILE, or --token / DROVER_TOKEN)")]
    EmptyToken,
    #[error(
        "no enrollment token: give --token-file (DROVER_TOKEN_FILE), or --token (DROVER_TOKEN)"
    )]
    NoToken,
    #[error("cannot read the enrollment token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The enrollment token from `--token-file` or `--token`, trimmed.
fn enrollment_token(cli: &Cli) -> Result<String, ConfigError> {
    let token = match (&cli.token_file, &cli.token) {
        (Some(path), _) => {
            std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile {
                path: path.clone(),
                source,
            })?
        }
        (None, Some(token)) => token.clone(),
        (None, None) => return Err(ConfigError::NoToken),
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(ConfigError::EmptyToken);
    }
    Ok(token.to_string())
}

/// A check that failed, before the file's path is attached.
struct Invalid {
    field: String,
    message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl AgentConfig {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: AgentConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        config.validate().map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: e.field,
            message: e.message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Invalid> {
        if let Some(name) = &self.name {
            check_display_name(name).map_err(|m| invalid("name", m))?;
        }
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return Err(invalid(
                "capacity",
                format!(
                    "must be between 1 and {MAX_CAPACITY}, got {}",
                    self.capacity
                ),
            ));
        }
        if self.labels.len() > MAX_LABELS {
            return Err(invalid("labels", format!("at most {MAX_LABELS} labels")));
        }
        for (i, label) in self.labels.iter().enumerate() {
            check_name(label).map_err(|m| invalid(format!("labels[{i}]"), m))?;
        }
        if self.handlers.is_empty() {
            return Err(invalid(
                "handlers",
                "at least one [handlers.<task_type>] table is required",
            ));
        }
        for (task_type, handler) in &self.handlers {
            let field = format!("handlers.{task_type}");
            check_name(task_type).map_err(|m| invalid(&field, format!("task type {m}")))?;
            handler.validate(&field)?;
        }
        Ok(())
    }

    /// The task types this agent advertises: the handler keys.
    pub fn task_types(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }
}

impl HandlerConfig {
    fn validate(&self, field: &str) -> Result<(), Invalid> {
        match self {
            HandlerConfig::Builtin { .. } => Ok(()),
            HandlerConfig::Command(c) => {
                if c.program.trim().is_empty() {
                    return Err(invalid(format!("{field}.program"), "must not be empty"));
                }
                for key in c.env.keys() {
                    if key.is_empty() || key.contains('=') || key.contains('\0') {
                        return Err(invalid(
                            format!("{field}.env"),
                            format!("{key:?} is not a valid environment variable name"),
                        ));
                    }
                }
                for key in &c.pass_env {
                    if key.is_empty() || key.contains('=') || key.contains('\0') {
                        return Err(invalid(
                            format!("{field}.pass_env"),
                            format!("{key:?} is not a valid environment variable name"),
                        ));
                    }
                    if key.starts_with("DROVER_TOKEN") {
                        return Err(invalid(
                            format!("{field}.pass_env"),
                            format!("{key} holds the agent's enrollment token and is never passed to handlers"),
                        ));
                    }
                }
                check_timeout(field, c.timeout_ms)
            }
            HandlerConfig::Http(h) => {
                reqwest::Method::from_bytes(h.method.as_bytes()).map_err(|_| {
                    invalid(
                        format!("{field}.method"),
                        format!("{:?} is not an HTTP method", h.method),
                    )
                })?;
                check_url(&h.url).map_err(|m| invalid(format!("{field}.url"), m))?;
                for (name, value) in &h.headers {
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        invalid(
                            format!("{field}.headers"),
                            format!("{name:?} is not a valid header name"),
                        )
                    })?;
                    reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                        invalid(
                            format!("{field}.headers.{name}"),
                            "is not a valid header value",
                        )
                    })?;
                }
                check_timeout(field, h.timeout_ms)
            }
        }
    }

    /// The handler's own time limit, if it has one.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            HandlerConfig::Builtin { .. } => None,
            HandlerConfig::Command(c) => c.timeout_ms.map(Duration::from_millis),
            HandlerConfig::Http(h) => h.timeout_ms.map(Duration::from_millis),
        }
    }
}

fn check_timeout(field: &str, timeout_ms: Option<u64>) -> Result<(), Invalid> {
    match timeout_ms {
        Some(0) => Err(invalid(
            format!("{field}.timeout_ms"),
            "must be at least 1 (leave it out for no limit of its own)",
        )),
        _ => Ok(()),
    }
}

/// The server's rule for task types and labels: 1–64 characters of `[A-Za-z0-9_.:-]`.
fn check_name(value: &str) -> Result<(), String> {
    match drover_protocol::limits::name_problem(value) {
        None => Ok(()),
        Some(problem) => Err(format!("{value:?} {problem}")),
    }
}

/// The server's rule for names, hostnames and versions: 1–200 bytes.
fn check_display_name(value: &str) -> Result<(), String> {
    if value.trim().is_empty() || value.len() > 200 {
        return Err("must be 1 to 200 characters long".to_string());
    }
    Ok(())
}

/// Checks that `url` is absolute and `http` or `https`.
fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(format!("{url:?}: unsupported scheme {other:?}")),
    }
}

/// What the agent runs with: the file's settings with flags and environment
/// variables applied on top.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of the server, always ending in `/` so paths can be joined onto it.
    pub server: reqwest::Url,
    /// CA certificates trusted for the server besides the system's roots (`--ca-file`).
    pub extra_roots: Vec<reqwest::Certificate>,
    /// The operator's enrollment token, used only to register.
    pub enrollment_token: String,
    pub name: String,
    pub hostname: String,
    pub capacity: u32,
    pub labels: Vec<String>,
    pub state_dir: PathBuf,
    pub handlers: BTreeMap<String, HandlerConfig>,
    /// How long running tasks may keep running after a shutdown signal.
    pub shutdown_grace: Duration,
    /// How long shutdown tries to deliver results ([`FLUSH_TIMEOUT`]).
    pub flush_timeout: Duration,
    pub config_path: PathBuf,
    /// Secrets replaced in shipped log lines (`--redact-env`, `--redact`).
    pub redactor: Redactor,
}

impl Settings {
    /// Loads the config file named by `cli` and applies the flags.
    pub fn from_cli(cli: &Cli) -> Result<Self, ConfigError> {
        let file = AgentConfig::load(&cli.config)?;
        Self::resolve(cli, file, hostname())
    }

    /// Precedence: flag / environment variable, then the file, then the default.
    pub fn resolve(cli: &Cli, file: AgentConfig, hostname: String) -> Result<Self, ConfigError> {
        let server = parse_server_url(&cli.server)?;
        let extra_roots = match &cli.ca_file {
            Some(path) => {
                crate::client::load_ca_file(path).map_err(|message| ConfigError::CaFile {
                    path: path.clone(),
                    message,
                })?
            }
            None => Vec::new(),
        };
        let enrollment_token = enrollment_token(cli)?;
        let name = cli
            .name
            .clone()
            .or(file.name)
            .unwrap_or_else(|| hostname.clone());
        check_display_name(&name).map_err(|message| ConfigError::Name {
            name: name.clone(),
            message,
        })?;
        let state_dir = cli
            .state_dir
            .clone()
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let redactor = redactor(cli, &file.handlers, &enrollment_token)?;
        Ok(Settings {
            server,
            extra_roots,
            enrollment_token,
            name,
            hostname,
            capacity: file.capacity,
            labels: file.labels,
            state_dir,
            handlers: file.handlers,
            shutdown_grace: Duration::from_millis(cli.shutdown_grace_ms),
            flush_timeout: FLUSH_TIMEOUT,
            config_path: cli.config.clone(),
            redactor,
        })
    }

    /// The task types advertised at registration: the handler keys.
    pub fn task_types(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }
}

/// The secrets to hide in shipped log lines: the literal `--redact` values,
/// the values of the `--redact-env` variables (in the agent's environment
/// and in any command handler's `env`), and the enrollment token.
fn redactor(
    cli: &Cli,
    handlers: &BTreeMap<String, HandlerConfig>,
    enrollment_token: &str,
) -> Result<Redactor, ConfigError> {
    let mut secrets: Vec<String> = cli.redact.clone();
    for name in &cli.redact_env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(ConfigError::Redact(format!(
                "{name:?} is not a valid environment variable name"
            )));
        }
        secrets.extend(std::env::var(name).ok());
        secrets.extend(handlers.values().filter_map(|h| match h {
            HandlerConfig::Command(c) => c.env.get(name).cloned(),
            _ => None,
        }));
    }
    for short in secrets.iter().filter(|s| !s.is_empty() && s.len() < 4) {
        tracing::warn!(
            length = short.len(),
            "a value to redact is shorter than 4 bytes: every occurrence of it in log lines becomes ***"
        );
    }
    secrets.push(enrollment_token.to_string());
    Ok(Redactor::new(secrets))
}

fn parse_server_url(raw: &str) -> Result<reqwest::Url, ConfigError> {
    let err = |message: String| ConfigError::Server {
        url: raw.to_string(),
        message,
    };
    let mut url = check_url(raw.trim()).map_err(err)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err("must not have a query or fragment".to_string()));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// This machine's hostname, without a libc call: the kernel's value, the
/// conventional file, then the shell's variable.
pub fn hostname() -> String {
    let candidates = [
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
        std::fs::read_to_string("/etc/hostname").ok(),
        std::env::var("HOSTNAME").ok(),
        std::env::var("COMPUTERNAME").ok(),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty() && s.len() <= 200)
        .unwrap_or_else(|| "unknown-host".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(text, Path::new("/etc/drover/agent.toml"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    const FULL: &str = r#"
name = "worker-1"
capacity = 4
labels = ["eu", "gpu"]
state_dir = "/var/lib/drover-agent"

[handlers.echo]
kind = "builtin"
builtin = "echo"

[handlers.sleep]
kind = "builtin"
builtin = "sleep"

[handlers.resize]
kind = "command"
program = "/usr/bin/convert"
args = ["-resize", "50%"]
env = { FOO = "bar" }
workdir = "/tmp"
timeout_ms = 60000

[handlers.notify]
kind = "http"
url = "http://127.0.0.1:9000/notify"
headers = { Authorization = "Bearer x" }
timeout_ms = 10000
"#;

    #[test]
    fn parses_every_handler_kind() {
        let c = parse(FULL).expect("valid config");
        assert_eq!(c.name.as_deref(), Some("worker-1"));
        assert_eq!(c.capacity, 4);
        assert_eq!(c.labels, ["eu", "gpu"]);
        assert_eq!(c.state_dir, Some(PathBuf::from("/var/lib/drover-agent")));
        assert_eq!(c.task_types(), ["echo", "notify", "resize", "sleep"]);
        assert_eq!(
            c.handlers["echo"],
            HandlerConfig::Builtin {
                builtin: BuiltinKind::Echo
            }
        );
        let HandlerConfig::Command(cmd) = &c.handlers["resize"] else {
            panic!("resize is a command handler");
        };
        assert_eq!(cmd.program, "/usr/bin/convert");
        assert_eq!(cmd.args, ["-resize", "50%"]);
        assert_eq!(cmd.env["FOO"], "bar");
        assert_eq!(cmd.workdir, Some(PathBuf::from("/tmp")));
        assert_eq!(
            c.handlers["resize"].timeout(),
            Some(Duration::from_millis(60000))
        );
        let HandlerConfig::Http(http) = &c.handlers["notify"] else {
            panic!("notify is an http handler");
        };
        assert_eq!(http.method, "POST", "POST is the default method");
        assert_eq!(http.headers["Authorization"], "Bearer x");
    }

    #[test]
    fn minimal_config() {
        let c = parse("capacity = 1\n[handlers.echo]\nkind = \"builtin\"\nbuiltin = \"echo\"\n")
            .expect("valid config");
        assert_eq!(c.name, None);
        assert!(c.labels.is_empty());
        assert_eq!(c.state_dir, None);
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/agent.toml");
        let c = AgentConfig::load(&path).expect("examples/agent.toml is valid");
        assert!(c.handlers.contains_key("echo"));
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let e = err("capacity = \n");
        assert!(e.contains("/etc/drover/agent.toml"), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn missing_capacity() {
        let e = err("[handlers.echo]\nkind = \"builtin\"\nbuiltin = \"echo\"\n");
        assert!(e.contains("capacity"), "{e}");
    }

    #[test]
    fn zero_capacity() {
        let e = err("capacity = 0\n[handlers.echo]\nkind = \"builtin\"\nbuiltin = \"echo\"\n");
        assert!(
            e.contains("/etc/drover/agent.toml: capacity: must be between 1"),
            "{e}"
        );
    }

    #[test]
    fn negative_capacity() {
        let e = err("capacity = -2\n[handlers.echo]\nkind = \"builtin\"\nbuiltin = \"echo\"\n");
        assert!(e.contains("capacity"), "{e}");
    }

    #[test]
    fn unknown_top_level_field() {
        let e = err(
            "capacity = 1\ncapacty = 2\n[handlers.e]\nkind = \"builtin\"\nbuiltin = \"echo\"\n",
        );
        assert!(e.contains("capacty"), "{e}");
    }

    #[test]
    fn unknown_handler_field() {
        let e = err("capacity = 1\n[handlers.c]\nkind = \"command\"\nprogram = \"x\"\nargz = []\n");
        assert!(e.contains("argz"), "{e}");
        let e = err(
            "capacity = 1\n[handlers.b]\nkind = \"builtin\"\nbuiltin = \"echo\"\nprogram = \"x\"\n",
        );
        assert!(e.contains("program"), "{e}");
    }

    #[test]
    fn unknown_kind_and_builtin() {
        let e = err("capacity = 1\n[handlers.x]\nkind = \"shell\"\n");
        assert!(e.contains("shell"), "{e}");
        let e = err("capacity = 1\n[handlers.x]\nkind = \"builtin\"\nbuiltin = \"nap\"\n");
        assert!(e.contains("nap"), "{e}");
        let e = err("capacity = 1\n[handlers.x]\nbuiltin = \"echo\"\n");
        assert!(e.contains("kind"), "{e}");
    }

    #[test]
    fn no_handlers() {
        let e = err("capacity = 1\n[handlers]\n");
        assert!(e.contains("handlers: at least one"), "{e}");
    }

    #[test]
    fn bad_task_type_and_label() {
        let e =
            err("capacity = 1\n[handlers.\"re size\"]\nkind = \"builtin\"\nbuiltin = \"echo\"\n");
        assert!(e.contains("handlers.re size"), "{e}");
        let e = err("capacity = 1\nlabels = [\"eu/west\"]\n[handlers.e]\nkind = \"builtin\"\nbuiltin = \"echo\"\n");
        assert!(e.contains("labels[0]"), "{e}");
    }

    #[test]
    fn bad_command_and_http_handlers() {
        let e = err("capacity = 1\n[handlers.c]\nkind = \"command\"\nprogram = \"\"\n");
        assert!(e.contains("handlers.c.program"), "{e}");
        let e = err(
            "capacity = 1\n[handlers.c]\nkind = \"command\"\nprogram = \"x\"\ntimeout_ms = 0\n",
        );
        assert!(e.contains("handlers.c.timeout_ms"), "{e}");
        let e = err("capacity = 1\n[handlers.h]\nkind = \"http\"\nurl = \"not a url\"\n");
        assert!(e.contains("handlers.h.url"), "{e}");
        let e = err("capacity = 1\n[handlers.h]\nkind = \"http\"\nurl = \"ftp://example.com/\"\n");
        assert!(e.contains("unsupported scheme"), "{e}");
        let e = err(
            "capacity = 1\n[handlers.h]\nkind = \"http\"\nmethod = \"GE T\"\nurl = \"http://x/\"\n",
        );
        assert!(e.contains("handlers.h.method"), "{e}");
        let e = err("capacity = 1\n[handlers.h]\nkind = \"http\"\nurl = \"http://x/\"\nheaders = { \"a b\" = \"c\" }\n");
        assert!(e.contains("handlers.h.headers"), "{e}");
    }

    #[test]
    fn missing_file() {
        let e = AgentConfig::load(Path::new("/nonexistent/drover/agent.toml"))
            .expect_err("no such file")
            .to_string();
        assert!(
            e.contains("cannot read config file /nonexistent/drover/agent.toml"),
            "{e}"
        );
    }

    fn cli(args: &[&str]) -> Cli {
        use clap::Parser;
        let mut argv = vec!["drover-agent"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("valid arguments")
    }

    #[test]
    fn flags_override_the_file() {
        let file = parse(FULL).expect("valid config");
        let base = [
            "--server",
            "http://h:8080",
            "--token",
            "t",
            "--config",
            "a.toml",
        ];
        let s = Settings::resolve(&cli(&base), file.clone(), "host".into()).expect("valid");
        assert_eq!(s.name, "worker-1");
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/drover-agent"));
        assert_eq!(s.server.as_str(), "http://h:8080/");
        assert_eq!(s.shutdown_grace, Duration::from_secs(30));

        let mut args = base.to_vec();
        args.extend([
            "--name",
            "other",
            "--state-dir",
            "/s",
            "--shutdown-grace-ms",
            "5",
        ]);
        let s = Settings::resolve(&cli(&args), file.clone(), "host".into()).expect("valid");
        assert_eq!(s.name, "other");
        assert_eq!(s.state_dir, PathBuf::from("/s"));
        assert_eq!(s.shutdown_grace, Duration::from_millis(5));

        let dir = crate::test_util::TempDir::create("token-file");
        let token_file = dir.0.join("token");
        std::fs::write(&token_file, "from-file\n").expect("write token");
        let token_file = token_file.to_string_lossy().into_owned();
        let with_file = [
            "--server",
            "http://h",
            "--token-file",
            &token_file,
            "--config",
            "a.toml",
        ];
        let s = Settings::resolve(&cli(&with_file), file.clone(), "host".into()).expect("valid");
        assert_eq!(
            s.enrollment_token, "from-file",
            "read from the file, trimmed"
        );
        let missing = [
            "--server",
            "http://h",
            "--token-file",
            "/nonexistent/t",
            "--config",
            "a.toml",
        ];
        let e = Settings::resolve(&cli(&missing), file.clone(), "host".into())
            .expect_err("no such file")
            .to_string();
        assert!(
            e.contains("cannot read the enrollment token file /nonexistent/t"),
            "{e}"
        );
        let none = ["--server", "http://h", "--config", "a.toml"];
        let e = Settings::resolve(&cli(&none), file.clone(), "host".into())
            .expect_err("no token")
            .to_string();
        assert!(e.contains("no enrollment token"), "{e}");

        let minimal = parse("capacity = 1\n[handlers.e]\nkind = \"builtin\"\nbuiltin = \"echo\"\n")
            .expect("valid");
        let s = Settings::resolve(&cli(&base), minimal, "host".into()).expect("valid");
        assert_eq!(s.name, "host", "the hostname is the default name");
        assert_eq!(s.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    }

    #[test]
    fn server_url_keeps_its_path_prefix() {
        let u = parse_server_url("http://h/drover").expect("valid");
        assert_eq!(
            u.join("api/v1/agent/claim").expect("joins").as_str(),
            "http://h/drover/api/v1/agent/claim"
        );
        assert!(parse_server_url("ftp://h/").is_err());
        let u = parse_server_url("https://drover.internal:8443").expect("https is accepted");
        assert_eq!(u.as_str(), "https://drover.internal:8443/");
        assert!(parse_server_url("h:8080").is_err());
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;
    use clap::Parser;

    fn resolve(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["drover-agent", "--token", "t", "--config", "a.toml"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("valid arguments");
        let file = AgentConfig::parse(
            "capacity = 1\n[handlers.e]\nkind = \"builtin\"\nbuiltin = \"echo\"\n",
            Path::new("a.toml"),
        )
        .expect("valid config");
        Settings::resolve(&cli, file, "host".into())
    }

    fn ca_err(contents: Option<&str>) -> String {
        let dir = std::env::temp_dir().join(format!("drover-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("ca-{}.pem", contents.map_or(0, str::len)));
        if let Some(c) = contents {
            std::fs::write(&path, c).expect("write CA file");
        }
        let path_arg = path.display().to_string();
        let e = match resolve(&["--server", "https://h", "--ca-file", &path_arg]) {
            Ok(_) => panic!("expected the CA file {contents:?} to be refused"),
            Err(e) => e.to_string(),
        };
        let _ = std::fs::remove_file(&path);
        assert!(e.contains("--ca-file (DROVER_CA_FILE)"), "{e}");
        assert!(e.contains(&path_arg), "{e}");
        e
    }

    #[test]
    fn https_server_without_ca_file_uses_system_roots_only() {
        let s = resolve(&["--server", "https://drover.internal:8443"]).expect("valid");
        assert_eq!(s.server.scheme(), "https");
        assert!(s.extra_roots.is_empty());
    }

    #[test]
    fn unusable_ca_files_are_refused_at_start() {
        let e = ca_err(None);
        assert!(e.contains("cannot read"), "{e}");
        let e = ca_err(Some("just some text\n"));
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = ca_err(Some(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ));
        assert!(e.contains("not a usable certificate"), "{e}");
    }
}
