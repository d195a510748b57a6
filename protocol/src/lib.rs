//! Wire types of Drover's HTTP protocols.
//!
//! This crate is the contract between `drover-server`, `drover-agent` and API
//! clients, so it depends on nothing but serde: the agent stays thin and the
//! server cannot drift from what agents send. Requests reject unknown fields,
//! so a typo in a client is an error rather than a silently ignored option.
//! Timestamps are microseconds since the Unix epoch (`*_us`), which keeps
//! latency measurements exact and the types free of a date library.

pub mod agent;
pub mod api;
pub mod credentials;
pub mod health;
pub mod limits;
pub mod notification;
pub mod schedule;
pub mod trigger;
pub mod workflow;

/// Version of the agent protocol; the server refuses agents that speak another.
pub const PROTOCOL_VERSION: u32 = 1;

/// The JSON error body every 4xx/5xx response carries.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable `code`, a human `message`, and
/// the request `field` at fault when there is one (for example `tasks[3].urgency`).
/// When several fields are at fault, `field` and `message` name the first
/// and `errors` lists each of them (a form marks them all at once).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldMessage>,
}

/// One field at fault and what is wrong with it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct FieldMessage {
    pub field: String,
    pub message: String,
}
