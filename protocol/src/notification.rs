//! Outgoing notifications (`/api/v1/notifications`): a rule posts a JSON
//! webhook (Slack-compatible: it has a `text` field) when a run fails, a
//! run waits for an approval, a task fails for good or an agent goes
//! offline. Each delivery is stored, retried with backoff until it gets a
//! 2xx answer or runs out of attempts, and listed with its status.

use serde::{Deserialize, Serialize};

/// What a rule can be told about.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum NotificationEvent {
    /// A workflow run ended `failed`.
    RunFailed,
    /// A run reached an approval step: someone has to decide.
    ApprovalWaiting,
    /// A task ended `failed` with no attempt left (not one that will be
    /// retried).
    TaskFailed,
    /// An agent fell silent past the heartbeat timeout and was marked
    /// offline (not one that shut down cleanly).
    AgentOffline,
}

impl NotificationEvent {
    pub const ALL: [NotificationEvent; 4] = [
        NotificationEvent::RunFailed,
        NotificationEvent::ApprovalWaiting,
        NotificationEvent::TaskFailed,
        NotificationEvent::AgentOffline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunFailed => "run_failed",
            Self::ApprovalWaiting => "approval_waiting",
            Self::TaskFailed => "task_failed",
            Self::AgentOffline => "agent_offline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// `POST /api/v1/notifications/rules` (admin).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewNotificationRule {
    pub name: String,
    /// At least one.
    pub events: Vec<NotificationEvent>,
    /// Only events of runs of this workflow (`run_failed`,
    /// `approval_waiting`, and `task_failed` of the run's tasks).
    #[serde(default)]
    pub workflow: Option<String>,
    /// Only tasks of this type (`task_failed`) and agents that handle it
    /// (`agent_offline`).
    #[serde(default)]
    pub task_type: Option<String>,
    /// Where to POST: `http://` or `https://`. Redirects are not followed.
    pub url: String,
    /// Sign each delivery with a secret made for the rule (shown once):
    /// `X-Drover-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
    #[serde(default = "yes")]
    pub sign: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// `PATCH /api/v1/notifications/rules/{id}` (admin): the fields to change.
/// An empty `workflow` or `task_type` removes that filter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NotificationRuleChange {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub events: Option<Vec<NotificationEvent>>,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default)]
    pub task_type: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A rule as listed. The URL is shown as its origin only (`https://hooks.slack.com/…`):
/// a webhook URL is often itself the credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct NotificationRuleView {
    pub id: i64,
    pub name: String,
    pub events: Vec<NotificationEvent>,
    pub workflow: Option<String>,
    pub task_type: Option<String>,
    pub url: String,
    /// Deliveries carry `X-Drover-Signature`.
    pub signed: bool,
    /// The secret's first characters, to tell secrets apart.
    pub secret_prefix: Option<String>,
    pub enabled: bool,
    pub created_by: String,
    pub updated_by: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

/// `POST /api/v1/notifications/rules`' answer: the secret, once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct CreatedNotificationRule {
    #[serde(flatten)]
    pub rule: NotificationRuleView,
    pub secret: Option<String>,
}

/// `GET /api/v1/notifications/rules`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct NotificationRuleList {
    pub rules: Vec<NotificationRuleView>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet answered with a 2xx; retried at `next_attempt_at_us`.
    Pending,
    /// A 2xx answer came back.
    Delivered,
    /// Out of attempts (or its rule was deleted): not sent again.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One delivery: a rule's message about one event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DeliveryView {
    pub id: i64,
    pub rule_id: i64,
    pub rule: String,
    /// An event kind (`task_failed` …) or `test`.
    pub event: String,
    pub event_at_us: i64,
    /// The one-line text sent (the payload's `text`).
    pub summary: String,
    pub status: DeliveryStatus,
    /// Attempts started so far.
    pub attempts: i64,
    pub max_attempts: i64,
    /// When the next attempt is due (pending only).
    pub next_attempt_at_us: Option<i64>,
    pub last_attempt_at_us: Option<i64>,
    /// The receiver's last HTTP status, if it answered.
    pub last_status_code: Option<i64>,
    /// Why the last attempt failed (`HTTP 500`, `timed out`, …).
    pub last_error: Option<String>,
    pub delivered_at_us: Option<i64>,
    pub created_at_us: i64,
}

/// `GET /api/v1/notifications/deliveries`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

/// The JSON body of a delivery. `text` is one line for people (and is
/// what Slack, Mattermost and similar incoming webhooks show); the rest is
/// for programs. Exactly one of `run`, `task`, `approval`, `agent` is set,
/// by `event` (none for `test`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct NotificationPayload {
    /// An event kind, or `test`.
    pub event: String,
    pub text: String,
    /// The rule that sent it.
    pub rule: String,
    /// Unique per rule and event: the same event sent again (a retry, or a
    /// resend after a crash) has the same key. Also in `Idempotency-Key`.
    pub key: String,
    /// RFC 3339, UTC.
    pub occurred_at: String,
    pub occurred_at_us: i64,
    /// The dashboard's page about it, when the server knows its public URL
    /// (`DROVER_PUBLIC_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<PayloadRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<PayloadTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<PayloadApproval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<PayloadAgent>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PayloadRun {
    pub id: i64,
    pub workflow: String,
    pub version: i64,
    pub started_by: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PayloadTask {
    pub id: i64,
    pub task_type: String,
    pub attempts: i64,
    pub error: Option<String>,
    pub run_id: Option<i64>,
    pub step_id: Option<String>,
    pub workflow: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PayloadApproval {
    pub id: i64,
    pub run_id: i64,
    pub step_id: String,
    pub workflow: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PayloadAgent {
    pub id: i64,
    pub name: String,
    pub hostname: String,
    pub task_types: Vec<String>,
    pub last_heartbeat_at_us: i64,
}
