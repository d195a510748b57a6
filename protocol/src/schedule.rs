//! Schedules: a workflow run or a single task started by a cron expression
//! in a time zone, or once at a given time (`/api/v1/schedules`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::NewTask;

/// What to do with ticks missed while no server ran (older than the
/// server's grace period when a leader sees them).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Start nothing for them; the count is recorded.
    #[default]
    Skip,
    /// Start one run (or task) for the latest of them.
    RunOnce,
}

/// What a tick does while the run (or task) of the previous tick is active.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Start anyway.
    #[default]
    Allow,
    /// Start nothing for this tick.
    Skip,
    /// Cancel the previous one, then start.
    CancelPrevious,
}

impl MissedPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::RunOnce => "run_once",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "skip" => Some(Self::Skip),
            "run_once" => Some(Self::RunOnce),
            _ => None,
        }
    }
}

impl OverlapPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Skip => "skip",
            Self::CancelPrevious => "cancel_previous",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Self::Allow),
            "skip" => Some(Self::Skip),
            "cancel_previous" => Some(Self::CancelPrevious),
            _ => None,
        }
    }
}

/// `POST /api/v1/schedules`. Exactly one of `workflow` and `task`, and
/// exactly one of `cron` and `at`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The workflow to start.
    #[serde(default)]
    pub workflow: Option<String>,
    /// Its version; default: the latest when the tick fires.
    #[serde(default)]
    pub version: Option<i64>,
    #[serde(default)]
    pub inputs: Map<String, Value>,
    /// Or the task to submit (without `idempotency_key` and `run_after_us`:
    /// the schedule sets the key).
    #[serde(default)]
    pub task: Option<NewTask>,
    /// Five fields (minute first) or six (second first), as in Vixie cron,
    /// plus `@daily` and the like.
    #[serde(default)]
    pub cron: Option<String>,
    /// An IANA time zone name, such as `Europe/Berlin`; default `UTC`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Or once, at this RFC 3339 time (`2026-12-24T18:00:00+01:00`).
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub missed: MissedPolicy,
    #[serde(default)]
    pub overlap: OverlapPolicy,
    /// Created paused: it fires once resumed.
    #[serde(default)]
    pub paused: bool,
}

/// `PATCH /api/v1/schedules/{id}`: the fields to change. A target or a
/// timing given replaces the old one whole.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleChange {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default)]
    pub version: Option<i64>,
    #[serde(default)]
    pub inputs: Option<Map<String, Value>>,
    #[serde(default)]
    pub task: Option<NewTask>,
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub missed: Option<MissedPolicy>,
    #[serde(default)]
    pub overlap: Option<OverlapPolicy>,
    /// The revision the change was made against: a schedule changed since
    /// answers 409 instead of losing the other change.
    #[serde(default)]
    pub revision: Option<i64>,
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ScheduleView {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub workflow: Option<String>,
    pub version: Option<i64>,
    pub inputs: Map<String, Value>,
    pub task: Option<NewTask>,
    pub cron: Option<String>,
    pub time_zone: String,
    /// What the cron expression means, in English.
    pub cron_description: Option<String>,
    pub at_us: Option<i64>,
    pub missed: MissedPolicy,
    pub overlap: OverlapPolicy,
    /// `active`, `paused`, or `done` (a one-time schedule that fired).
    pub state: String,
    /// When the next tick fires; null when paused or done.
    pub next_fire_at_us: Option<i64>,
    /// The next few ticks (empty when paused or done).
    pub upcoming_us: Vec<i64>,
    /// The last tick handled, and what it did.
    pub last_tick_us: Option<i64>,
    /// `started`, `skipped` (overlap), `missed` or `failed`.
    pub last_outcome: Option<String>,
    pub last_run_id: Option<i64>,
    pub last_task_id: Option<i64>,
    /// Why the last tick failed or was skipped.
    pub last_detail: Option<String>,
    /// Ticks that started something, and ticks missed while no server ran.
    pub fired_count: i64,
    pub missed_count: i64,
    /// Bumped by every change; send it back with a `PATCH`.
    pub revision: i64,
    pub created_by: String,
    pub updated_by: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

/// `GET /api/v1/schedules`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}
