//! API types of workflows, runs and approvals (`/api/v1/workflows`,
//! `/api/v1/runs`, `/api/v1/approvals`). The definition document itself is
//! `drover_engine::workflow::Definition`; here it travels as JSON.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One stored version of a workflow definition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct WorkflowVersion {
    pub id: i64,
    pub name: String,
    pub version: i64,
    pub description: Option<String>,
    pub definition: Value,
    pub created_by: String,
    pub created_at_us: i64,
}

/// `POST /api/v1/workflows` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UploadedWorkflow {
    pub workflow: WorkflowVersion,
    /// `false` when the same definition was already the latest version.
    pub created: bool,
    /// Steps whose tasks no registered agent could take (their type, or
    /// their labels): stored, but a run would wait at them in silence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `GET /api/v1/workflows`: the latest version of each workflow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowVersion>,
}

/// `GET /api/v1/workflows/{name}/versions/{version}/source`: the text a
/// version was uploaded as.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct WorkflowSource {
    pub name: String,
    pub version: i64,
    /// The uploaded text, byte for byte (comments and layout kept); for a
    /// version stored before texts were kept, its definition as YAML.
    pub text: String,
    /// `text` is a rendering of the stored definition, not what was uploaded.
    pub rendered: bool,
}

/// `GET /api/v1/workflows/{name}/diff?from=&to=`: what changed between two
/// versions, line by line, as hunks with three lines of context.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct WorkflowDiff {
    pub name: String,
    pub from: i64,
    pub to: i64,
    /// The texts compared are renderings of the stored definitions, since
    /// one of the versions was stored before texts were kept (comparing a
    /// text with a rendering would show every line changed).
    pub rendered: bool,
    /// Lines only in `to`.
    pub added: i64,
    /// Lines only in `from`.
    pub removed: i64,
    /// Empty when the texts are the same.
    pub hunks: Vec<DiffHunk>,
}

/// A run of changed lines with the unchanged lines around them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DiffHunk {
    /// 1-based first line of the hunk in `from`, and how many of its lines it holds.
    pub from_start: i64,
    pub from_lines: i64,
    /// The same in `to`.
    pub to_start: i64,
    pub to_lines: i64,
    pub lines: Vec<DiffLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DiffLine {
    pub change: LineChange,
    /// 1-based line number in `from` (none for an added line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_line: Option<i64>,
    /// 1-based line number in `to` (none for a removed line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_line: Option<i64>,
    /// The line without its line ending.
    pub text: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LineChange {
    Same,
    Added,
    Removed,
}

/// `GET /api/v1/workflows/{name}/stats?last=N`: how a workflow's runs went,
/// over every version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct WorkflowStats {
    pub name: String,
    /// How many finished runs were asked about (`last`).
    pub last: i64,
    /// Of the newest `last` finished runs, how many ended each way; their
    /// sum is `finished`, which is less than `last` while fewer have finished.
    pub finished: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Runs not finished yet: running or waiting for an approval.
    pub active: i64,
}

impl WorkflowStats {
    /// Succeeded runs per finished run, in whole percent (none before any finished).
    pub fn success_percent(&self) -> Option<i64> {
        (self.finished > 0).then(|| (self.succeeded * 100 + self.finished / 2) / self.finished)
    }
}

/// `POST /api/v1/runs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    pub workflow: String,
    /// Default: the latest version.
    #[serde(default)]
    pub version: Option<i64>,
    #[serde(default)]
    pub inputs: Map<String, Value>,
    /// Starting again with the same key returns the run first started with it.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    WaitingApproval,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Running,
        RunStatus::WaitingApproval,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::WaitingApproval => "waiting_approval",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// A run as lists show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RunSummary {
    pub id: i64,
    pub workflow: String,
    pub version: i64,
    pub status: RunStatus,
    pub error: Option<String>,
    pub started_by: String,
    pub inputs: Value,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub finished_at_us: Option<i64>,
    /// The run whose `workflow` step started this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<i64>,
    /// That step of the parent run (a retried step starts a new child,
    /// so the parent's current step may have moved on to another run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_step_id: Option<String>,
}

/// A step of a run with its tasks and approval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct StepView {
    pub step_id: String,
    /// `pending`, `running`, `waiting_approval`, `waiting` (a `wait` or
    /// `workflow` step, see `wait`), `succeeded`, `failed`, `skipped`, `cancelled`.
    /// A step that never ran in a run that ended is `skipped`.
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    /// For `for_each` steps: how many items.
    pub item_count: Option<i64>,
    /// Retries of this step from the API.
    pub generation: i64,
    /// The step's tasks (one per item), current generation.
    pub task_ids: Vec<i64>,
    /// How many of `task_ids` are still queued: a `running` step whose
    /// tasks are all queued has not started anywhere yet.
    #[serde(default)]
    pub tasks_queued: i64,
    pub started_at_us: Option<i64>,
    pub finished_at_us: Option<i64>,
    /// What a `wait` or `workflow` step waits on (its current generation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<StepWait>,
}

impl StepView {
    /// The status to show: `queued` for a running step none of whose tasks
    /// an agent has taken yet (the step is started, its work is not).
    pub fn shown_status(&self) -> &str {
        let all_queued = self.tasks_queued > 0 && self.tasks_queued == self.task_ids.len() as i64;
        if self.status == "running" && all_queued {
            "queued"
        } else {
            &self.status
        }
    }
}

/// A step's durable wait.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct StepWait {
    /// `sleep`, `event` or `workflow`.
    pub kind: String,
    /// `waiting`, `resumed`, `timed_out`, `failed` or `cancelled`.
    pub status: String,
    /// A sleep's wake-up, or an event wait's deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_key: Option<String>,
    /// The run a `workflow` step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_run_id: Option<i64>,
}

/// `POST /api/v1/events`: an event for the steps waiting on its key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SendEvent {
    /// The correlation key a `wait` step's `event.key` rendered to.
    pub key: String,
    /// Any JSON; the resumed steps' output carries it as `data`.
    #[serde(default)]
    pub data: Value,
}

/// The answer to an event: the steps it resumed (none when nothing waited;
/// events are not kept for waits that open later).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct EventDelivered {
    pub resumed: Vec<ResumedStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ResumedStep {
    pub run_id: i64,
    pub step_id: String,
}

/// What happened to a run (`RunEvent::kind`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunEventKind {
    /// `actor` started it (a child run: `detail` names its parent).
    RunStarted,
    /// It ended by itself: `status` `succeeded` or `failed`, `detail` the error.
    RunFinished,
    /// `actor` cancelled it (none when its parent run ended: `detail` says so).
    RunCancelled,
    /// A step began: `status` `running`, `waiting` or `waiting_approval`.
    StepStarted,
    StepSucceeded,
    /// `detail` is the error.
    StepFailed,
    /// Its condition was false, nothing it compensates failed, or the run
    /// ended before it could run (`detail` says which).
    StepSkipped,
    /// `actor` retried the failed step: `generation` is the new one.
    StepRetried,
    /// A compensation step (`on_failure_of`) began.
    CompensationStarted,
    /// A compensation step ended: `status` `succeeded` or `failed`.
    CompensationFinished,
    /// `actor` decided the step's approval (`timeout` when nobody did in
    /// time): `status` `approved` or `rejected`, `detail` the comment.
    ApprovalDecided,
}

impl RunEventKind {
    pub const ALL: [RunEventKind; 11] = [
        RunEventKind::RunStarted,
        RunEventKind::RunFinished,
        RunEventKind::RunCancelled,
        RunEventKind::StepStarted,
        RunEventKind::StepSucceeded,
        RunEventKind::StepFailed,
        RunEventKind::StepSkipped,
        RunEventKind::StepRetried,
        RunEventKind::CompensationStarted,
        RunEventKind::CompensationFinished,
        RunEventKind::ApprovalDecided,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunEventKind::RunStarted => "run_started",
            RunEventKind::RunFinished => "run_finished",
            RunEventKind::RunCancelled => "run_cancelled",
            RunEventKind::StepStarted => "step_started",
            RunEventKind::StepSucceeded => "step_succeeded",
            RunEventKind::StepFailed => "step_failed",
            RunEventKind::StepSkipped => "step_skipped",
            RunEventKind::StepRetried => "step_retried",
            RunEventKind::CompensationStarted => "compensation_started",
            RunEventKind::CompensationFinished => "compensation_finished",
            RunEventKind::ApprovalDecided => "approval_decided",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the event ends its step's current generation.
    pub fn ends_step(self) -> bool {
        matches!(
            self,
            RunEventKind::StepSucceeded
                | RunEventKind::StepFailed
                | RunEventKind::StepSkipped
                | RunEventKind::CompensationFinished
                | RunEventKind::ApprovalDecided
        )
    }
}

/// One thing that happened to a run, kept as it happened (`run_events`,
/// written in the transaction of the change it records): a retried
/// step's earlier failure stays in the history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RunEvent {
    /// Increases with every event written: orders events of the same time.
    pub seq: i64,
    pub at_us: i64,
    pub kind: RunEventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// The step's generation (0, then one more for each retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Who did it: a user, `schedule:3`, `trigger:7`, `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The status it led to (see the kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// An error, a comment or a reason, cut to 2 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One attempt at one of a run's tasks: when an agent claimed it, started
/// and finished it, and how it ended. Every generation of a step (its
/// retries) is here, not only the current one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RunAttempt {
    pub task_id: i64,
    pub step_id: String,
    pub generation: i64,
    pub item_index: i64,
    /// 1 for the task's first attempt.
    pub attempt: i64,
    pub agent_id: i64,
    pub claimed_at_us: i64,
    pub started_at_us: Option<i64>,
    /// Absent while it runs.
    pub finished_at_us: Option<i64>,
    /// `running`, `succeeded`, `failed`, `timed_out`, `lost`, `released`, `cancelled`.
    pub outcome: String,
}

/// `GET /api/v1/runs/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunSummary,
    pub steps: Vec<StepView>,
    pub approvals: Vec<ApprovalView>,
    /// The run's history, oldest first (by time, then `seq`): at most the
    /// newest 1,000 events.
    #[serde(default)]
    pub events: Vec<RunEvent>,
    /// The run has older events than `events` holds.
    #[serde(default)]
    pub events_truncated: bool,
    /// Its tasks' attempts, in the order they were claimed: at most the
    /// first 1,000.
    #[serde(default)]
    pub attempts: Vec<RunAttempt>,
    /// The run has later attempts than `attempts` holds.
    #[serde(default)]
    pub attempts_truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RunList {
    pub runs: Vec<RunSummary>,
    /// Pass as `before_id` to get the next page; absent on the last page.
    #[serde(default)]
    pub next_before_id: Option<i64>,
    /// How many runs the filters match, all pages together.
    #[serde(default)]
    pub total: i64,
    /// More than `total` match: a search is counted up to 10,000.
    #[serde(default)]
    pub total_more: bool,
}

/// Who may decide an approval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Approvers {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ApprovalView {
    pub id: i64,
    pub run_id: i64,
    pub step_id: String,
    pub workflow: String,
    pub message: String,
    pub approvers: Approvers,
    /// `pending`, `approved`, `rejected`, `cancelled`.
    pub status: String,
    pub requested_by: String,
    pub decided_by: Option<String>,
    pub comment: Option<String>,
    pub decided_at_us: Option<i64>,
    pub expires_at_us: Option<i64>,
    pub created_at_us: i64,
    /// The run's inputs, for the approver's context.
    pub inputs: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ApprovalList {
    pub approvals: Vec<ApprovalView>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

/// `POST /api/v1/approvals/{id}/decision`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DecideApproval {
    pub decision: Decision,
    #[serde(default)]
    pub comment: Option<String>,
}
