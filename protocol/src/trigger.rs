//! Incoming webhooks (`/api/v1/triggers`, `/api/v1/hooks/{name}`): a
//! request carrying a trigger's secret starts its workflow, with inputs
//! picked out of the request body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a delivery proves it knows the secret.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TriggerAuth {
    /// `X-Drover-Timestamp: <unix seconds>` and
    /// `X-Drover-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`;
    /// the timestamp must be within five minutes of the server's clock.
    #[default]
    Hmac,
    /// `Authorization: Bearer <secret>`.
    Bearer,
}

impl TriggerAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hmac => "hmac",
            Self::Bearer => "bearer",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hmac" => Some(Self::Hmac),
            "bearer" => Some(Self::Bearer),
            _ => None,
        }
    }
}

/// `POST /api/v1/triggers` (admin).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTrigger {
    pub name: String,
    /// The workflow a delivery starts (or `event`).
    #[serde(default)]
    pub workflow: String,
    /// Default: the latest version at each delivery.
    #[serde(default)]
    pub version: Option<i64>,
    /// Input name → JSON pointer into the request body (`/customer/id`);
    /// `""` is the whole body.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    #[serde(default)]
    pub auth: TriggerAuth,
    /// Instead of starting a workflow, a delivery is an event: it resumes
    /// the workflow steps waiting on its key, with the body as its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<TriggerEvent>,
}

/// Where an event trigger finds the event's key in a delivery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TriggerEvent {
    /// A JSON pointer into the body (`/order/id`); a string or number.
    pub key: String,
    /// Put before the value (`payment:` makes `payment:42`).
    #[serde(default)]
    pub prefix: String,
}

/// A trigger as listed; the secret is never shown again after creation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct TriggerView {
    pub id: i64,
    pub name: String,
    pub workflow: String,
    pub version: Option<i64>,
    pub inputs: BTreeMap<String, String>,
    pub auth: TriggerAuth,
    /// The secret's first characters.
    pub prefix: String,
    /// Where to send deliveries.
    pub path: String,
    pub created_by: String,
    pub created_at_us: i64,
    pub last_fired_at_us: Option<i64>,
    pub fired_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<TriggerEvent>,
}

/// `POST /api/v1/triggers`' answer: the secret, once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct CreatedTrigger {
    #[serde(flatten)]
    pub trigger: TriggerView,
    pub secret: String,
}

/// `POST /api/v1/hooks/{name}`' answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct HookDelivered {
    pub run_id: i64,
    /// `false` when the delivery's `Idempotency-Key` matched an earlier one.
    pub created: bool,
}
