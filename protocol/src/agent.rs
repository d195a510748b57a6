//! The agent protocol: `/api/v1/agent/...`. See `docs/PROTOCOL.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /api/v1/agent/register`, authenticated with the operator's enrollment token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub name: String,
    pub hostname: String,
    /// Task types this agent has handlers for; it is only ever given these.
    pub task_types: Vec<String>,
    /// M: the most tasks this agent runs at once.
    pub capacity: u32,
    #[serde(default)]
    pub labels: Vec<String>,
    /// The agent binary's version, shown to operators.
    pub version: String,
    /// Must equal [`crate::PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The agent's own secret, kept in its state directory: registering
    /// again with it resumes the same agent (same id, the leases it holds),
    /// so a restarted agent can still deliver the results in its outbox.
    /// Another agent cannot present it, so it cannot post those results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_key: Option<String>,
    /// On resuming: the leases whose results the agent still has to
    /// deliver. Every other task the agent held is requeued at once, since
    /// the restarted process no longer runs it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resuming: Vec<Lease>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RegisterResponse {
    pub agent_id: i64,
    /// Bearer token for every later call of this agent session.
    pub session_token: String,
    /// How often the server expects a heartbeat.
    pub heartbeat_interval_ms: u64,
    /// Silence longer than this marks the agent offline and requeues its tasks.
    pub heartbeat_timeout_ms: u64,
    /// The longest a claim long-poll is held open by the server.
    pub max_claim_wait_ms: u64,
    /// The server hands out work in the answer to results when asked
    /// ([`ResultsRequest::want`]). Absent (false) from older servers.
    #[serde(default)]
    pub eager_dispatch: bool,
}

/// A task the agent holds, named by its lease.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Lease {
    pub task_id: i64,
    /// Fencing token: drawn at random for every claim (64 bits), so a
    /// result sent under an older claim is recognised and refused, and no
    /// one can guess the token of a lease they were not given.
    pub lease_token: i64,
}

/// `POST /api/v1/agent/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// Every task the agent is still running; their leases are extended.
    #[serde(default)]
    pub running: Vec<Lease>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct HeartbeatResponse {
    /// Tasks the agent must stop now (cancelled, timed out, or no longer its own).
    #[serde(default)]
    pub cancel: Vec<i64>,
    /// The operator asked this agent to stop taking work.
    #[serde(default)]
    pub drain: bool,
}

/// `POST /api/v1/agent/claim`: a long-poll for up to `max_tasks` tasks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The most tasks to hand over. The agent asks for its whole capacity;
    /// the server never exceeds capacity regardless.
    pub max_tasks: u32,
    /// How long to wait for work before answering with none (capped by the server).
    #[serde(default)]
    pub wait_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ClaimResponse {
    pub tasks: Vec<Assignment>,
    /// Set when the agent should stop claiming (drain requested).
    #[serde(default)]
    pub drain: bool,
}

/// One claimed task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Assignment {
    pub task_id: i64,
    pub lease_token: i64,
    pub task_type: String,
    pub payload: Value,
    /// 1-based attempt number.
    pub attempt: u32,
    pub max_attempts: u32,
    /// The handler must be stopped after this long.
    pub timeout_ms: u64,
    pub priority: f64,
}

/// `POST /api/v1/agent/results`: many results in one round trip.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ResultsRequest {
    pub results: Vec<TaskResult>,
    /// Eager dispatch: also claim up to this many tasks for this agent and
    /// send them in the answer, so that a slot a result frees is filled in
    /// the same round trip. 0 (the default) claims nothing. The server caps
    /// it at the agent's free capacity, and may send fewer, or none (a less
    /// loaded agent of the same kind is waiting for work).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub want: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskResult {
    pub task_id: i64,
    pub lease_token: i64,
    pub outcome: Outcome,
    /// When the handler started, by the agent's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_us: Option<i64>,
    /// When the handler finished, by the agent's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_us: Option<i64>,
}

/// How a task attempt ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    Succeeded {
        #[serde(default)]
        output: Value,
    },
    Failed {
        error: String,
        /// `false` fails the task at once instead of retrying it.
        #[serde(default = "default_true")]
        retryable: bool,
    },
    /// The agent gives the task back unstarted or interrupted (shutdown):
    /// it is requeued without counting the attempt against `max_attempts`.
    Released {
        #[serde(default)]
        reason: String,
    },
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ResultsResponse {
    /// One entry per result, in request order.
    pub results: Vec<ResultAck>,
    /// Work claimed for the agent on its request's `want`: it holds these
    /// leases exactly as if a claim had brought them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<Assignment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ResultAck {
    pub task_id: i64,
    pub status: AckStatus,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Recorded.
    Accepted,
    /// The lease is expired or superseded, or held by another agent: the
    /// result was refused and changed nothing. The agent must drop it (the
    /// task belongs to someone else now).
    Stale,
}

/// `POST /api/v1/agent/logs`: what the handlers of running tasks printed
/// since the last request, a batch per task. Shipping logs never holds a
/// task up: an agent drops lines (and says how many) rather than wait.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LogsRequest {
    pub tasks: Vec<TaskLog>,
}

/// New lines of one task, in the order the handler printed them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskLog {
    pub task_id: i64,
    /// The lease the lines were printed under: only its holder, while it
    /// holds it, may add to the task's log.
    pub lease_token: i64,
    /// Lines the agent dropped just before these (it could not send them
    /// fast enough): the server records a note saying so in their place.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub dropped: u64,
    pub lines: Vec<OutputLine>,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// One line a handler printed, without its line break.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OutputLine {
    pub stream: OutputStream,
    /// At most [`crate::limits::MAX_LOG_LINE_BYTES`] bytes, no NUL.
    pub line: String,
    /// When the agent read it, by the agent's clock.
    pub at_us: i64,
}

/// Where a handler printed a line.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct LogsResponse {
    /// One per task of the request, in request order: `accepted`, or
    /// `stale` when the task is not (or no longer) this agent's under that
    /// lease — finished, requeued, or never given to it. The agent stops
    /// sending that task's lines. The answer is 409 when every task of the
    /// request was refused.
    pub tasks: Vec<LogAck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct LogAck {
    pub task_id: i64,
    pub status: AckStatus,
}
