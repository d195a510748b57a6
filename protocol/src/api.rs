//! The public REST API: `/api/v1/tasks`, `/api/v1/agents`, `/api/v1/stats`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A task to enqueue, as a client sends it. Validated by the server
/// (`drover_engine::domain`) before anything is stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    pub task_type: String,
    #[serde(default)]
    pub payload: Value,
    /// 0–10.
    #[serde(default)]
    pub urgency: Option<i64>,
    /// 0–10.
    #[serde(default)]
    pub time_sensitivity: Option<i64>,
    /// 0–10.
    #[serde(default)]
    pub importance: Option<i64>,
    /// 1–100, default 3.
    #[serde(default)]
    pub max_attempts: Option<i64>,
    /// Run limit per attempt in milliseconds, default 300000.
    #[serde(default)]
    pub timeout_ms: Option<i64>,
    /// Base of the exponential retry backoff in milliseconds, default 1000.
    #[serde(default)]
    pub retry_backoff_ms: Option<i64>,
    /// Only agents carrying every one of these labels may run the task.
    #[serde(default)]
    pub required_labels: Vec<String>,
    /// Submitting the same key again returns the task first created with it.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Do not start before this time (microseconds since the epoch).
    #[serde(default)]
    pub run_after_us: Option<i64>,
    /// A named semaphore (`customer:42`): at most `concurrency_limit`
    /// tasks with this key run at once, fleet-wide, whatever their type or
    /// workflow. The others wait, *held*, without blocking other tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// 1–10000; required with `concurrency_key`. The newest task's limit
    /// is the key's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<i64>,
}

/// `POST /api/v1/tasks` accepts one [`NewTask`] or `{"tasks": [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTaskBatch {
    pub tasks: Vec<NewTask>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct SubmitBatchResponse {
    pub tasks: Vec<SubmittedTask>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct SubmittedTask {
    pub id: i64,
    pub status: TaskStatus,
    pub priority: f64,
    /// `false` when an idempotency key matched an existing task.
    pub created: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Finished for good: no more attempts will be made.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

/// A task as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct TaskView {
    pub id: i64,
    pub task_type: String,
    pub payload: Value,
    pub urgency: i64,
    pub time_sensitivity: i64,
    pub importance: i64,
    /// P = α·urgency + β·time_sensitivity + γ·importance.
    pub priority: f64,
    pub status: TaskStatus,
    pub attempts: i64,
    pub max_attempts: i64,
    pub timeout_ms: i64,
    pub retry_backoff_ms: i64,
    pub required_labels: Vec<String>,
    pub idempotency_key: Option<String>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub agent_id: Option<i64>,
    pub lease_token: Option<i64>,
    pub run_after_us: i64,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub started_at_us: Option<i64>,
    pub finished_at_us: Option<i64>,
    /// L = C/M of the agent when it last claimed the task: why it got it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_load: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<i64>,
    /// Queued, but its concurrency key is full: it is not claimable until
    /// a task of the key ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Queued, but its type's or key's rate limit has not released it yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rate_limited: bool,
    /// The workflow run the task is a step of (absent for a task submitted
    /// on its own), so its page can link the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
    /// The step of that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
}

/// One claim of a task by an agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AttemptView {
    /// The lease token the attempt ran under (the task's claim number).
    pub lease_token: i64,
    pub attempt: i64,
    pub agent_id: i64,
    /// The agent's load index L = C/M when it was given the task.
    pub agent_load: f64,
    pub claimed_at_us: i64,
    pub started_at_us: Option<i64>,
    pub finished_at_us: Option<i64>,
    /// `running`, `succeeded`, `failed`, `released`, `lost` (lease expired or agent offline),
    /// `timed_out` or `cancelled`.
    pub outcome: String,
    pub error: Option<String>,
}

/// A recorded state change of a task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct TaskEventView {
    pub at_us: i64,
    pub kind: String,
    pub status: TaskStatus,
    pub agent_id: Option<i64>,
    pub detail: Option<String>,
}

/// `GET /api/v1/tasks/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: TaskView,
    pub attempt_history: Vec<AttemptView>,
    pub events: Vec<TaskEventView>,
    /// Why a queued task is not running yet (absent for other statuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
}

/// What holds a queued task now, in words (`summary`) and as data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Waiting {
    /// The main reason, one sentence.
    pub summary: String,
    /// Every reason that holds it, the main one first.
    pub reasons: Vec<WaitReason>,
    /// Its priority aged by the time it has waited: what orders the claim.
    pub aged_priority: f64,
    /// Claimable queued tasks (any type) the claim takes before it.
    pub ahead: i64,
    /// Of those, the ones of its own type.
    pub ahead_same_type: i64,
    /// The counts stopped at their limit: there are at least that many.
    pub ahead_capped: bool,
    /// When it should start, from how fast tasks of its type started over
    /// the last minute; absent when nothing says.
    pub estimated_start_us: Option<i64>,
}

/// One thing that holds a queued task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitReason {
    /// Not claimable before `until_us`: its `run_after_us`, or the backoff
    /// before a retry (`cause`: `run_after` or `retry_backoff`).
    NotBefore { until_us: i64, cause: String },
    /// No online agent handles its type with its labels; the agents that
    /// come closest, and what each lacks.
    NoAgent {
        task_type: String,
        required_labels: Vec<String>,
        closest: Vec<AgentGap>,
    },
    /// Every online agent able to take it is full (L = 1).
    AgentsFull {
        agents: i64,
        running: i64,
        capacity: i64,
    },
    /// Its concurrency key is full: `admitted` of `limit` tasks of the key
    /// are queued or running (some of them named in `held_by`).
    KeyFull {
        key: String,
        limit: i64,
        admitted: i64,
        held_by: Vec<i64>,
    },
    /// A rate limit (`scope`: `type:<task type>` or `key:<key>`) releases
    /// `per_second` tasks a second; its next release is at `next_release_us`.
    RateLimited {
        scope: String,
        per_second: f64,
        next_release_us: i64,
    },
    /// Tasks ranked before it are taken first.
    QueuedBehind { ahead: i64, ahead_same_type: i64 },
    /// Nothing holds it: a matching agent has a free slot, and the next
    /// claim takes it.
    Ready { free_slots: i64 },
}

/// An agent that could not take a task, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AgentGap {
    pub agent_id: i64,
    pub name: String,
    pub status: AgentStatus,
    /// e.g. `handles no "resize" tasks`, `lacks label "gpu"`, `is offline`.
    pub missing: Vec<String>,
}

/// The lists count their matches up to this (past it a total reads
/// "10,000+"), and sort by a column no index orders only up to it.
pub const LIST_COUNT_BOUND: i64 = 10_000;

/// `GET /api/v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
    /// Pass as `before_id` to get the next page; absent on the last page.
    pub next_before_id: Option<i64>,
    /// How many tasks the filters match, all pages together.
    #[serde(default)]
    pub total: i64,
    /// More than `total` match: a search is counted up to 10,000.
    #[serde(default)]
    pub total_more: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Online,
    Draining,
    Offline,
    Deregistered,
    /// An admin revoked it: its session is refused and it may rejoin only
    /// by registering again with a valid enrollment token.
    Revoked,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Online => "online",
            AgentStatus::Draining => "draining",
            AgentStatus::Offline => "offline",
            AgentStatus::Deregistered => "deregistered",
            AgentStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            AgentStatus::Online,
            AgentStatus::Draining,
            AgentStatus::Offline,
            AgentStatus::Deregistered,
            AgentStatus::Revoked,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// `GET /api/v1/agents`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AgentView {
    pub id: i64,
    pub name: String,
    pub hostname: String,
    pub version: String,
    pub task_types: Vec<String>,
    pub labels: Vec<String>,
    /// M.
    pub capacity: i64,
    /// C.
    pub running: i64,
    /// L = C / M.
    pub load: f64,
    pub status: AgentStatus,
    /// An admin drained it: it gets no work, even after it reconnects
    /// (`status` says `draining` only while it is connected).
    #[serde(default)]
    pub drained: bool,
    pub registered_at_us: i64,
    pub last_heartbeat_at_us: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AgentList {
    pub agents: Vec<AgentView>,
}

/// Most buckets `GET /api/v1/agents/{id}/load` answers with: enough for a
/// chart's width, few enough that any window costs the same to send.
pub const LOAD_BUCKETS: i64 = 120;
/// The load window's default, and its bounds, in seconds.
pub const DEFAULT_LOAD_WINDOW_S: i64 = 3_600;
pub const MIN_LOAD_WINDOW_S: i64 = 60;
pub const MAX_LOAD_WINDOW_S: i64 = 7 * 86_400;

/// `GET /api/v1/agents/{id}/load?window_s=`: an agent's load over the
/// window, from the samples the leader takes, downsampled into at most
/// [`LOAD_BUCKETS`] buckets of equal width (`bucket_us`), plus the agent
/// as it is now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AgentLoad {
    pub agent: AgentView,
    pub window_s: i64,
    /// The window is `since_us ..= at_us` (now).
    pub since_us: i64,
    pub at_us: i64,
    /// Each bucket covers `start_us .. start_us + bucket_us`; buckets are
    /// aligned to multiples of it, so they stay put as the window slides.
    pub bucket_us: i64,
    /// How often the leader samples, and how long samples are kept.
    pub interval_us: i64,
    pub retention_us: i64,
    /// Oldest first; a bucket without samples (the agent was not
    /// connected, or no server ran) is left out.
    pub buckets: Vec<LoadBucket>,
}

/// The samples of one bucket: L = running / capacity, its mean and peak.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct LoadBucket {
    pub start_us: i64,
    pub samples: i64,
    pub mean_load: f64,
    pub max_load: f64,
    pub mean_running: f64,
    pub max_running: i64,
    /// The agent's capacity M (the largest, should it have changed).
    pub capacity: i64,
}

/// `GET /api/v1/stats`: task counts by status and agents by status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Stats {
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub agents_online: i64,
}

impl Stats {
    /// The number of tasks in `status`.
    pub fn tasks(&self, status: TaskStatus) -> i64 {
        match status {
            TaskStatus::Queued => self.queued,
            TaskStatus::Running => self.running,
            TaskStatus::Succeeded => self.succeeded,
            TaskStatus::Failed => self.failed,
            TaskStatus::Cancelled => self.cancelled,
        }
    }
}

/// `GET /api/v1/status`: who this server instance is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ServerStatus {
    pub version: String,
    pub instance_id: String,
    pub database: String,
    /// Whether this instance currently runs the periodic duties.
    pub leader: bool,
    pub priority_weights: [f64; 3],
}

/// What a user may do. Each role includes `viewer`; `admin` may do everything.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Decides approvals addressed to them (or their role).
    Approver,
    /// Submits and cancels tasks, uploads workflows, starts and cancels runs.
    Operator,
    /// Everything, including users and agents.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Approver, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Approver => "approver",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role may operate (submit, cancel, upload, start runs).
    pub fn can_operate(self) -> bool {
        matches!(self, Role::Operator | Role::Admin)
    }

    /// Whether this role may decide approvals (still subject to each step's approvers).
    pub fn can_approve(self) -> bool {
        matches!(self, Role::Approver | Role::Admin)
    }
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UserView {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at_us: i64,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    /// For signing in to the dashboard; optional for API-only users.
    #[serde(default)]
    pub password: Option<String>,
}

/// A user with a freshly issued API token (shown once).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UserWithToken {
    pub user: UserView,
    pub token: String,
}

/// `GET /api/v1/overview?range=`: what the dashboard's first page shows,
/// with the figures over time for the range asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Overview {
    pub stats: Stats,
    /// Tasks finished (succeeded and failed) in each bucket of the range,
    /// oldest first; the last bucket holds now.
    pub throughput: Vec<i64>,
    /// Width of one bucket, in seconds (`bucket_us` / 1,000,000).
    pub bucket_secs: i64,
    /// Queued tasks by priority band: low, medium, high (thirds of the highest possible P).
    pub queued_by_band: [i64; 3],
    /// Where the bands start: medium from `band_edges[0]`, high from `band_edges[1]`.
    pub band_edges: [f64; 2],
    pub runs_running: i64,
    pub runs_waiting_approval: i64,
    /// α, β, γ.
    pub priority_weights: [f64; 3],
    /// The range shown (one of [`OverviewRange::ALL`]'s names, e.g. `1h`).
    pub range: String,
    /// The buckets cover `since_us .. since_us + buckets × bucket_us`; they
    /// are aligned to multiples of `bucket_us`, so they stay put as time
    /// passes, and the last one holds `at_us` (now).
    pub since_us: i64,
    pub at_us: i64,
    pub bucket_us: i64,
    /// Oldest first, one per bucket.
    pub buckets: Vec<OverviewBucket>,
    /// The task types of each bucket's `depth`, busiest over the range
    /// first; `other` (when present, last) sums the rest.
    pub depth_types: Vec<String>,
    /// How often the leader counts the queue by type.
    pub depth_interval_us: i64,
    /// Queue wait percentiles are computed over at most this many of the
    /// latest first claims of each bucket.
    pub wait_sample: i64,
    /// The latest failed tasks, newest first (at most [`RECENT_FAILURES`]).
    pub recent_failures: Vec<RecentFailure>,
}

/// The ranges the overview offers: each is [`OVERVIEW_BUCKETS`] buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverviewRange {
    M15,
    #[default]
    H1,
    H6,
    H24,
    D7,
}

/// Buckets in every overview range.
pub const OVERVIEW_BUCKETS: i64 = 60;
/// Failed tasks the overview lists.
pub const RECENT_FAILURES: i64 = 10;

impl OverviewRange {
    pub const ALL: [OverviewRange; 5] = [Self::M15, Self::H1, Self::H6, Self::H24, Self::D7];

    /// The name in URLs and in `range=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::M15 => "15m",
            Self::H1 => "1h",
            Self::H6 => "6h",
            Self::H24 => "24h",
            Self::D7 => "7d",
        }
    }

    /// As people read it.
    pub fn label(self) -> &'static str {
        match self {
            Self::M15 => "15 min",
            Self::H1 => "1 h",
            Self::H6 => "6 h",
            Self::H24 => "24 h",
            Self::D7 => "7 d",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The whole range, in seconds.
    pub fn secs(self) -> i64 {
        match self {
            Self::M15 => 900,
            Self::H1 => 3_600,
            Self::H6 => 6 * 3_600,
            Self::H24 => 86_400,
            Self::D7 => 7 * 86_400,
        }
    }

    /// One bucket's width: the range over [`OVERVIEW_BUCKETS`] (15 s to
    /// 168 min, each a multiple of five seconds).
    pub fn bucket_us(self) -> i64 {
        self.secs() * 1_000_000 / OVERVIEW_BUCKETS
    }
}

/// One bucket of the overview's range.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct OverviewBucket {
    pub start_us: i64,
    /// Tasks that finished in the bucket, by outcome.
    pub succeeded: i64,
    pub failed: i64,
    /// First claims in the bucket whose wait was sampled (at most
    /// `wait_sample`), and their median and 99th percentile wait: from the
    /// task's creation (or its `run_after`, when later) to the claim.
    pub waits_sampled: i64,
    pub wait_p50_us: Option<i64>,
    pub wait_p99_us: Option<i64>,
    /// Queued tasks per type (in `depth_types`' order) at the bucket's
    /// last sample; absent when the leader took none in the bucket.
    pub depth: Option<Vec<i64>>,
}

/// A failed task as the overview lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RecentFailure {
    pub id: i64,
    pub task_type: String,
    /// The task's error, cut to 200 characters.
    pub error: Option<String>,
    pub finished_at_us: Option<i64>,
    /// The workflow run it was a step of.
    pub run_id: Option<i64>,
}

/// `PUT /api/v1/rate-limits/{scope}` (admin): at most `rate` starts per
/// `per`, fleet-wide, for the tasks of a type (`type:<task type>`) or of a
/// concurrency key (`key:<key>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PutRateLimit {
    pub rate: f64,
    /// `second` (default) or `minute`.
    #[serde(default)]
    pub per: RatePeriod,
    /// Starts allowed at once after a quiet spell (the bucket's size);
    /// default 1.
    #[serde(default)]
    pub burst: Option<i64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RatePeriod {
    #[default]
    Second,
    Minute,
}

/// A rate limit as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RateLimitView {
    pub scope: String,
    pub per_second: f64,
    pub burst: i64,
    /// Tasks it holds back now.
    pub held: i64,
    pub created_by: String,
    pub created_at_us: i64,
}

/// `GET /api/v1/rate-limits`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RateLimitList {
    pub rate_limits: Vec<RateLimitView>,
}

/// `GET /api/v1/tasks/{id}/logs?after=&limit=` (or `?tail=`): a page of
/// what the task's handlers printed, oldest first. Follow a running task by
/// asking again with `after` = [`last_seq`](Self::last_seq) (on each
/// `task_log` event, or every so often) until it has finished and `more`
/// is false.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct TaskLogPage {
    pub task_id: i64,
    /// The task's status when the page was read. Lines are only added
    /// while it runs, so a finished task's page with `more` false is the
    /// end of its log.
    pub status: TaskStatus,
    pub lines: Vec<TaskLogLine>,
    /// The `after` that continues from this page: the last line's `seq`
    /// (the request's own `after` when the page is empty).
    pub last_seq: i64,
    /// The page is full: more lines follow at once.
    pub more: bool,
    /// Lines the server dropped from the start of the log at its bound
    /// (`DROVER_MAX_LOG_LINES`); the note with `seq` 0 says so.
    pub dropped: i64,
}

/// One line of a task's log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct TaskLogLine {
    /// 1, 2, … per task across its attempts (0: the note of lines dropped
    /// at the bound, rewritten as more go).
    pub seq: i64,
    pub attempt: i64,
    pub stream: LogStream,
    pub line: String,
    /// When the agent read it, by its clock (the server's, for notes).
    pub at_us: i64,
}

/// Where a log line came from: a handler's stdout or stderr, or a note
/// Drover wrote (lines dropped).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    Note,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Note => "note",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [LogStream::Stdout, LogStream::Stderr, LogStream::Note]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}
