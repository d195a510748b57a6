//! The workflow definition document (YAML or JSON). Unknown fields are
//! errors everywhere, so a typo never silently changes a workflow.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// 1–64 characters of letters, digits and `_ - . :`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Task settings every task step starts from.
    #[serde(default)]
    pub defaults: Defaults,
    /// The run's typed inputs, by name.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    /// The inputs' names in the order the definition declares them, which
    /// `inputs` (kept by name, and stored as JSON, whose objects have no
    /// order in PostgreSQL) loses: forms list them so. Set when parsed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(skip)]
    pub input_order: Vec<String>,
    #[schemars(length(min = 1, max = drover_protocol::limits::MAX_STEPS))]
    pub steps: Vec<Step>,
}

impl Definition {
    /// Step ids in definition order.
    pub fn step_ids(&self) -> Vec<&str> {
        self.steps.iter().map(Step::id).collect()
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id() == id)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = drover_protocol::limits::PRIORITY_INPUT_MAX))]
    pub urgency: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = drover_protocol::limits::PRIORITY_INPUT_MAX))]
    pub time_sensitivity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = drover_protocol::limits::PRIORITY_INPUT_MAX))]
    pub importance: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = drover_protocol::limits::MAX_ATTEMPTS_LIMIT))]
    pub max_attempts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = drover_protocol::limits::MAX_TIMEOUT_MS))]
    pub timeout_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = drover_protocol::limits::MAX_RETRY_BACKOFF_MS))]
    pub retry_backoff_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
}

/// A named semaphore a step's tasks take: at most `limit` tasks with the
/// (rendered) `key` run at once, fleet-wide, across workflows and task
/// types (`key: "customer:{{ inputs.customer_id }}"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    pub key: String,
    #[schemars(range(min = 1, max = drover_protocol::limits::MAX_CONCURRENCY_LIMIT))]
    pub limit: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    String,
    Number,
    Boolean,
    Enum,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(rename = "type")]
    pub kind: InputType,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The allowed values of an `enum` input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A step: a task for an agent, a decision for a person, a durable wait
/// (for a time or an event), or another workflow run as one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    Task(TaskStep),
    Approval(ApprovalStep),
    Wait(WaitStep),
    Workflow(WorkflowStep),
}

impl Step {
    pub fn id(&self) -> &str {
        match self {
            Step::Task(t) => &t.id,
            Step::Approval(a) => &a.id,
            Step::Wait(w) => &w.id,
            Step::Workflow(w) => &w.id,
        }
    }

    pub fn depends_on(&self) -> &[String] {
        match self {
            Step::Task(t) => &t.depends_on,
            Step::Approval(a) => &a.depends_on,
            Step::Wait(w) => &w.depends_on,
            Step::Workflow(w) => &w.depends_on,
        }
    }

    /// The steps whose failure this compensation step handles (empty for normal steps).
    pub fn on_failure_of(&self) -> &[String] {
        match self {
            Step::Task(t) => &t.on_failure_of,
            Step::Approval(_) | Step::Wait(_) | Step::Workflow(_) => &[],
        }
    }

    pub fn when(&self) -> Option<&str> {
        match self {
            Step::Task(t) => t.when.as_deref(),
            Step::Approval(a) => a.when.as_deref(),
            Step::Wait(w) => w.when.as_deref(),
            Step::Workflow(w) => w.when.as_deref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskStep {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// An expression; when false the step is skipped (which satisfies its dependents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    pub task_type: String,
    /// Any JSON; every string in it is a template.
    #[serde(default)]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = drover_protocol::limits::PRIORITY_INPUT_MAX))]
    pub urgency: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = drover_protocol::limits::PRIORITY_INPUT_MAX))]
    pub time_sensitivity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = drover_protocol::limits::PRIORITY_INPUT_MAX))]
    pub importance: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = drover_protocol::limits::MAX_ATTEMPTS_LIMIT))]
    pub max_attempts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = drover_protocol::limits::MAX_TIMEOUT_MS))]
    pub timeout_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = drover_protocol::limits::MAX_RETRY_BACKOFF_MS))]
    pub retry_backoff_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_labels: Vec<String>,
    /// An expression giving a list: one task per item (`item`, `index` in templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// At most this many of the step's tasks exist unfinished at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_parallel: Option<usize>,
    /// Its tasks take this named semaphore (else the definition's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// A compensation step: it runs only when one of these steps fails (and
    /// is skipped when none does); the run still ends failed afterwards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure_of: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    #[default]
    Reject,
    Approve,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnReject {
    /// The run fails.
    #[default]
    Fail,
    /// The step succeeds with `approved: false`; later steps branch on it with `when`.
    Continue,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalStep {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Users and roles that may decide.
    pub approvers: ApproverList,
    /// A template shown to the approver.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = drover_protocol::limits::MAX_APPROVAL_TIMEOUT_MS))]
    pub timeout_ms: Option<i64>,
    #[serde(default)]
    pub on_timeout: OnTimeout,
    #[serde(default)]
    pub on_reject: OnReject,
    /// May the person who started the run approve it? (Default: no.)
    #[serde(default)]
    pub allow_self_approval: bool,
}

/// A durable wait: it holds no agent slot and survives restarts (the
/// wake-up is a row in the database). Exactly one of `duration_ms`,
/// `until` and `event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitStep {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Sleep this long once the step is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = drover_protocol::limits::MAX_WAIT_MS))]
    pub duration_ms: Option<i64>,
    /// Sleep until this time (RFC 3339; a template). A time already past
    /// wakes at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Wait for an event sent with this correlation key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventWait>,
}

/// Waiting for an event (`POST /api/v1/events`, or a webhook trigger of
/// kind event) whose key is the rendered `key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventWait {
    /// The correlation key, a template (`payment:{{ inputs.order }}`).
    pub key: String,
    /// Give up after this long (default: wait for ever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = drover_protocol::limits::MAX_WAIT_MS))]
    pub timeout_ms: Option<i64>,
    #[serde(default)]
    pub on_timeout: OnWaitTimeout,
}

/// What a wait for an event that timed out does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnWaitTimeout {
    /// The step fails (compensation steps and retries apply).
    #[default]
    Fail,
    /// The step succeeds with `{"timed_out": true}`; later steps branch on it.
    Continue,
}

/// Another workflow run as one step: started when the step is ready, its
/// outputs the step's output (`{"run_id", "status", "steps": {id: output}}`),
/// its failure the step's failure. Cancelling this run cancels it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowStep {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// The workflow to run.
    pub workflow: String,
    /// Its version. Upload pins the latest when left out, so a new version
    /// of the child never changes a stored parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The child's inputs; every string in them is a template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, Value>,
}

/// Who may decide an approval: named users, or anyone with one of the roles.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproverList {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl From<&ApproverList> for drover_protocol::workflow::Approvers {
    fn from(a: &ApproverList) -> Self {
        Self {
            users: a.users.clone(),
            roles: a.roles.clone(),
        }
    }
}
