//! Enrollment tokens: the credentials operators hand to agents so they may
//! register. `/api/v1/enrollment-tokens` (admins only).

use serde::{Deserialize, Serialize};

/// `POST /api/v1/enrollment-tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewEnrollmentToken {
    /// Unique, for operators to recognise it (`gpu-pool`, `ci-runners`).
    pub name: String,
    /// The only task types an agent enrolled with it may register for;
    /// absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_types: Option<Vec<String>>,
    /// The only labels such an agent may claim to have; absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// How long it lets agents register, e.g. `30d`, `12h`; absent = until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// An enrollment token as listed: never the token itself, only its first
/// characters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct EnrollmentTokenView {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub task_types: Option<Vec<String>>,
    pub labels: Option<Vec<String>>,
    pub created_by: String,
    pub created_at_us: i64,
    pub expires_at_us: Option<i64>,
    pub revoked_at_us: Option<i64>,
}

/// The answer to creating one: the only time the token is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct CreatedEnrollmentToken {
    pub token: String,
    #[serde(flatten)]
    pub view: EnrollmentTokenView,
}

/// One entry of the audit log (`GET /api/v1/audit`, admins only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AuditEntry {
    pub id: i64,
    pub at_us: i64,
    /// The user's name, `agent:<id>` for an agent, or `system`.
    pub actor: String,
    /// What was done, dotted: `sign_in.failed`, `agent.revoked`, `approval.decided`.
    pub action: String,
    /// What it was done to: `task:7`, `run:3`, `user:olga`.
    pub target: Option<String>,
    /// The particulars, as a JSON object.
    pub detail: serde_json::Value,
}

/// `GET /api/v1/audit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AuditList {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `before_id` for the next page; absent on the last one.
    pub next_before_id: Option<i64>,
}
