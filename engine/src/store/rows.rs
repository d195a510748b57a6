//! Row decoding shared by both backends. Each backend selects the same
//! column names with the same types (JSON as TEXT, integers as 64-bit), so
//! one macro per view decodes either kind of row.

use drover_protocol::api::{AgentStatus, AttemptView, TaskEventView, TaskStatus, TaskView};

use crate::error::StoreError;

pub(super) fn task_status(s: &str) -> Result<TaskStatus, StoreError> {
    TaskStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown task status {s:?}")))
}

pub(super) fn agent_status(s: &str) -> Result<AgentStatus, StoreError> {
    AgentStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown agent status {s:?}")))
}

pub(super) fn json_or_null(s: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    Ok(s.map(|s| serde_json::from_str(&s)).transpose()?)
}

/// Load index L = C / M.
pub(super) fn load(running: i64, capacity: i64) -> f64 {
    if capacity <= 0 {
        1.0
    } else {
        running as f64 / capacity as f64
    }
}

/// Decodes a `TaskView` from a row selected with the backend's `TASK_COLUMNS`.
macro_rules! task_view {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        drover_protocol::api::TaskView {
            id: row.try_get("id")?,
            task_type: row.try_get("task_type")?,
            payload: serde_json::from_str(&row.try_get::<String, _>("payload")?)?,
            urgency: row.try_get("urgency")?,
            time_sensitivity: row.try_get("time_sensitivity")?,
            importance: row.try_get("importance")?,
            priority: row.try_get("priority")?,
            status: super::rows::task_status(&row.try_get::<String, _>("status")?)?,
            attempts: row.try_get("attempts")?,
            max_attempts: row.try_get("max_attempts")?,
            timeout_ms: row.try_get("timeout_ms")?,
            retry_backoff_ms: row.try_get("retry_backoff_ms")?,
            required_labels: serde_json::from_str(&row.try_get::<String, _>("required_labels")?)?,
            idempotency_key: row.try_get("idempotency_key")?,
            result: super::rows::json_or_null(row.try_get("result")?)?,
            error: row.try_get("error")?,
            agent_id: row.try_get("agent_id")?,
            lease_token: row.try_get("lease_token")?,
            run_after_us: row.try_get("run_after")?,
            created_at_us: row.try_get("created_at")?,
            updated_at_us: row.try_get("updated_at")?,
            started_at_us: row.try_get("started_at")?,
            finished_at_us: row.try_get("finished_at")?,
            claim_load: row.try_get("claim_load")?,
        }
    }};
}

/// Decodes an `AgentView` from a row selected with the backend's `AGENT_COLUMNS`.
macro_rules! agent_view {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        let running: i64 = row.try_get("running")?;
        let capacity: i64 = row.try_get("capacity")?;
        drover_protocol::api::AgentView {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            hostname: row.try_get("hostname")?,
            version: row.try_get("version")?,
            task_types: serde_json::from_str(&row.try_get::<String, _>("task_types")?)?,
            labels: serde_json::from_str(&row.try_get::<String, _>("labels")?)?,
            capacity,
            running,
            load: super::rows::load(running, capacity),
            status: super::rows::agent_status(&row.try_get::<String, _>("status")?)?,
            registered_at_us: row.try_get("registered_at")?,
            last_heartbeat_at_us: row.try_get("last_heartbeat_at")?,
        }
    }};
}

macro_rules! attempt_view {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        drover_protocol::api::AttemptView {
            lease_token: row.try_get("lease_token")?,
            attempt: row.try_get("attempt")?,
            agent_id: row.try_get("agent_id")?,
            agent_load: row.try_get("agent_load")?,
            claimed_at_us: row.try_get("claimed_at")?,
            started_at_us: row.try_get("started_at")?,
            finished_at_us: row.try_get("finished_at")?,
            outcome: row.try_get("outcome")?,
            error: row.try_get("error")?,
        }
    }};
}

macro_rules! event_view {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        drover_protocol::api::TaskEventView {
            at_us: row.try_get("at")?,
            kind: row.try_get("kind")?,
            status: super::rows::task_status(&row.try_get::<String, _>("status")?)?,
            agent_id: row.try_get("agent_id")?,
            detail: row.try_get("detail")?,
        }
    }};
}

/// Decodes an `Assignment` from a claim's `RETURNING` row.
macro_rules! assignment {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        drover_protocol::agent::Assignment {
            task_id: row.try_get("id")?,
            lease_token: row.try_get("lease_token")?,
            task_type: row.try_get("task_type")?,
            payload: serde_json::from_str(&row.try_get::<String, _>("payload")?)?,
            attempt: row.try_get::<i64, _>("attempts")? as u32,
            max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
            timeout_ms: row.try_get::<i64, _>("timeout_ms")? as u64,
            priority: row.try_get("priority")?,
        }
    }};
}

/// The running tasks behind current leases, from rows of `id, lease_token,
/// attempts, max_attempts, retry_backoff_ms, agent_id, run_id` (both backends).
macro_rules! current_leases {
    ($rows:expr) => {{
        use sqlx::Row as _;
        let rows = $rows;
        let mut current = super::Current::with_capacity(rows.len());
        for row in rows {
            current.insert(
                (row.try_get("id")?, row.try_get("lease_token")?),
                (
                    crate::lifecycle::RunningTask {
                        attempts: row.try_get("attempts")?,
                        max_attempts: row.try_get("max_attempts")?,
                        retry_backoff_ms: row.try_get("retry_backoff_ms")?,
                    },
                    row.try_get("agent_id")?,
                    row.try_get("run_id")?,
                ),
            );
        }
        current
    }};
}

/// Decodes a `TaskDetail` from the task's row, its attempt rows and its
/// stored event rows (see [`task_history`]).
macro_rules! task_detail {
    ($row:expr, $attempts:expr, $events:expr) => {{
        let attempt_history: Vec<_> = $attempts
            .iter()
            .map(|r| Ok(super::rows::attempt_view!(r)))
            .collect::<Result<_>>()?;
        let stored = $events
            .iter()
            .map(|r| Ok(super::rows::event_view!(r)))
            .collect::<Result<_>>()?;
        let task = super::rows::task_view!($row);
        drover_protocol::api::TaskDetail {
            events: super::rows::task_history(&task, &attempt_history, stored),
            task,
            attempt_history,
        }
    }};
}

pub(super) use {
    agent_view, assignment, attempt_view, current_leases, event_view, task_detail, task_view,
};

/// A task's history: its `submitted` and `claimed` events come from the
/// task row and its attempts (which hold the same facts), the rest from
/// `task_events`. Those two are not stored as events: they were two of the
/// three rows every task added to the log, on the hot path, saying what the
/// task and attempt rows already say. The claims (in attempt order) are
/// merged by time into the stored events (in the order they were written,
/// which stays causal even if two server instances' clocks disagree); at
/// the same microsecond a claim comes first, since an attempt ends after it
/// starts.
pub(super) fn task_history(
    task: &TaskView,
    attempts: &[AttemptView],
    stored: Vec<TaskEventView>,
) -> Vec<TaskEventView> {
    let mut claims = attempts
        .iter()
        .map(|a| TaskEventView {
            at_us: a.claimed_at_us,
            kind: "claimed".into(),
            status: TaskStatus::Running,
            agent_id: Some(a.agent_id),
            detail: None,
        })
        .peekable();
    let mut events = Vec::with_capacity(1 + attempts.len() + stored.len());
    events.push(TaskEventView {
        at_us: task.created_at_us,
        kind: "submitted".into(),
        status: TaskStatus::Queued,
        agent_id: None,
        detail: None,
    });
    for event in stored {
        while let Some(claim) = claims.next_if(|c| c.at_us <= event.at_us) {
            events.push(claim);
        }
        events.push(event);
    }
    events.extend(claims);
    events
}
