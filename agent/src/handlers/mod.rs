//! Task handlers: what actually runs a task, one module per kind.
//!
//! A handler turns a task's payload into an [`Outcome`]. It never returns an
//! error to the runtime: every failure (program missing, non-zero exit, HTTP
//! 500, timeout) becomes `Outcome::Failed` with a message for the operator, so
//! one bad task cannot take the agent down. The time limit is applied here,
//! once for all kinds; dropping a handler's future stops it (a command's
//! process group is killed), which is also how cancellation works.

pub mod builtin;
pub mod command;
#[cfg(target_os = "linux")]
pub mod guard;
pub mod http;

use std::time::Duration;

use drover_protocol::agent::Outcome;
use serde_json::Value;

use crate::config::HandlerConfig;
use crate::logs::TaskLogWriter;

/// Largest output a handler may produce (command stdout, HTTP response body).
/// Larger outputs fail the attempt rather than being truncated: a cut-off
/// JSON document would look like a success with a wrong answer.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;
/// How much of stderr / an error body is kept in a failure message.
pub const ERROR_TAIL_BYTES: usize = 2000;

/// What a handler knows about the task it runs.
#[derive(Debug)]
pub struct TaskContext {
    pub task_id: i64,
    pub task_type: String,
    pub attempt: u32,
    pub payload: Value,
    /// The task's own limit (`timeout_ms`); `None` when the server sent 0.
    pub timeout: Option<Duration>,
    /// Where the handler's output lines go, live (command handlers).
    pub log: Option<TaskLogWriter>,
}

/// A configured handler, ready to run tasks.
#[derive(Debug)]
pub enum Handler {
    Builtin(builtin::Builtin),
    Command(command::CommandHandler),
    Http(http::HttpHandler),
}

impl Handler {
    /// Builds the handler for `config`. `http` is shared by all HTTP handlers
    /// so they share a connection pool.
    pub fn from_config(config: &HandlerConfig, http: &reqwest::Client) -> Result<Self, String> {
        Ok(match config {
            HandlerConfig::Builtin { builtin } => Handler::Builtin(builtin::Builtin::new(*builtin)),
            HandlerConfig::Command(c) => Handler::Command(command::CommandHandler::new(c)),
            HandlerConfig::Http(h) => Handler::Http(http::HttpHandler::new(h, http.clone())?),
        })
    }

    /// Whether the handler prints output worth shipping as a live log.
    pub fn has_output(&self) -> bool {
        matches!(self, Handler::Command(_))
    }

    /// The handler's own time limit from the config file.
    fn own_timeout(&self) -> Option<Duration> {
        match self {
            Handler::Builtin(_) => None,
            Handler::Command(c) => c.timeout(),
            Handler::Http(h) => h.timeout(),
        }
    }

    /// Runs one task to its outcome, stopping it at the smaller of the task's
    /// and the handler's time limit.
    pub async fn run(&self, ctx: &TaskContext) -> Outcome {
        let limit = match (ctx.timeout, self.own_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let run = async {
            match self {
                Handler::Builtin(b) => b.run(ctx).await,
                Handler::Command(c) => c.run(ctx).await,
                Handler::Http(h) => h.run(ctx).await,
            }
        };
        match limit {
            None => run.await,
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(outcome) => outcome,
                // Dropping `run` killed whatever it had started.
                Err(_) => failed(format!("timed out after {} ms", limit.as_millis())),
            },
        }
    }
}

/// A retryable failure: the common case, since most failures (a crashed
/// program, a 503, a timeout) may well go away on another attempt.
pub fn failed(error: impl Into<String>) -> Outcome {
    Outcome::Failed {
        error: error.into(),
        retryable: true,
    }
}

/// A failure that another attempt would repeat (a malformed payload, say):
/// the server fails the task at once instead of burning its attempts.
pub fn failed_for_good(error: impl Into<String>) -> Outcome {
    Outcome::Failed {
        error: error.into(),
        retryable: false,
    }
}

/// A handler's raw output as the task's output: JSON if it parses, else the
/// trimmed text as a JSON string; empty output is `null`.
pub fn output_value(bytes: &[u8]) -> Value {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return v;
    }
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        Value::Null
    } else {
        Value::String(text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn output_is_json_or_text() {
        assert_eq!(output_value(b" {\"a\": 1}\n"), json!({"a": 1}));
        assert_eq!(output_value(b"42"), json!(42));
        assert_eq!(output_value(b"  hello world \n"), json!("hello world"));
        assert_eq!(output_value(b"\n"), Value::Null);
    }
}
