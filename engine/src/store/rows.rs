//! Row decoding shared by both backends: `#[derive(sqlx::FromRow)]`
//! structs and their conversions to the protocol's views. Each backend
//! selects the same column names with the same types (JSON and PostgreSQL's
//! `TEXT[]` lists as JSON text, integers as 64-bit), so one struct decodes
//! either kind of row. The few one-line macros keep the queue's call sites
//! short (`task_view!(row)`).

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
    ($row:expr) => {
        crate::store::rows::decode::<crate::store::rows::TaskRow, drover_protocol::api::TaskView>(
            &$row,
        )?
    };
}

/// Decodes an `AgentView` from a row selected with the backend's `AGENT_COLUMNS`.
macro_rules! agent_view {
    ($row:expr) => {
        crate::store::rows::decode::<crate::store::rows::AgentRow, drover_protocol::api::AgentView>(
            &$row,
        )?
    };
}

macro_rules! attempt_view {
    ($row:expr) => {
        crate::store::rows::decode::<
            crate::store::rows::AttemptRow,
            drover_protocol::api::AttemptView,
        >(&$row)?
    };
}

macro_rules! event_view {
    ($row:expr) => {
        crate::store::rows::decode::<
            crate::store::rows::EventRow,
            drover_protocol::api::TaskEventView,
        >(&$row)?
    };
}

/// Decodes an `Assignment` from a claim's `RETURNING` row.
macro_rules! assignment {
    ($row:expr) => {
        crate::store::rows::decode::<
            crate::store::rows::AssignmentRow,
            drover_protocol::agent::Assignment,
        >(&$row)?
    };
}

/// The running tasks behind current leases, from rows of `id, lease_token,
/// attempts, max_attempts, retry_backoff_ms, agent_id, run_id` (both backends).
macro_rules! current_leases {
    ($rows:expr) => {
        crate::store::rows::current_of(
            $rows
                .iter()
                .map(|row| <crate::store::rows::LeaseRow as sqlx::FromRow<'_, _>>::from_row(row)),
        )?
    };
}

/// Decodes a `TaskDetail` from the task's row, its attempt rows and its
/// stored event rows (see [`task_history`]).
macro_rules! task_detail {
    ($row:expr, $attempts:expr, $events:expr) => {{
        let attempt_history: Vec<_> = $attempts
            .iter()
            .map(|r| Ok(crate::store::rows::attempt_view!(r)))
            .collect::<Result<_>>()?;
        let stored = $events
            .iter()
            .map(|r| Ok(crate::store::rows::event_view!(r)))
            .collect::<Result<_>>()?;
        let task = crate::store::rows::task_view!($row);
        drover_protocol::api::TaskDetail {
            events: crate::store::rows::task_history(&task, &attempt_history, stored),
            task,
            attempt_history,
            waiting: None,
        }
    }};
}

/// Decodes a row of either backend into `R` and converts it to the view `V`.
pub(super) fn decode<'r, R, V>(row: &'r impl DecodeRow<'r, R>) -> Result<V, StoreError>
where
    V: TryFrom<R, Error = StoreError>,
{
    row.decode()?.try_into()
}

/// A backend's row that decodes into `R` (what `#[derive(sqlx::FromRow)]` gives).
pub(super) trait DecodeRow<'r, R> {
    fn decode(&'r self) -> Result<R, StoreError>;
}

impl<'r, R: sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>> DecodeRow<'r, R>
    for sqlx::sqlite::SqliteRow
{
    fn decode(&'r self) -> Result<R, StoreError> {
        Ok(R::from_row(self)?)
    }
}

impl<'r, R: sqlx::FromRow<'r, sqlx::postgres::PgRow>> DecodeRow<'r, R> for sqlx::postgres::PgRow {
    fn decode(&'r self) -> Result<R, StoreError> {
        Ok(R::from_row(self)?)
    }
}

/// A row given by reference, as the call sites iterating rows have it.
impl<'r, R, T: DecodeRow<'r, R>> DecodeRow<'r, R> for &'r T {
    fn decode(&'r self) -> Result<R, StoreError> {
        (**self).decode()
    }
}

/// A task as both backends select it (lists as JSON text).
#[derive(sqlx::FromRow)]
pub(super) struct TaskRow {
    id: i64,
    task_type: String,
    payload: String,
    urgency: i64,
    time_sensitivity: i64,
    importance: i64,
    priority: f64,
    status: String,
    attempts: i64,
    max_attempts: i64,
    timeout_ms: i64,
    retry_backoff_ms: i64,
    required_labels: String,
    idempotency_key: Option<String>,
    result: Option<String>,
    error: Option<String>,
    agent_id: Option<i64>,
    lease_token: Option<i64>,
    run_after: i64,
    created_at: i64,
    updated_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    claim_load: Option<f64>,
    concurrency_key: Option<String>,
    concurrency_limit: Option<i64>,
    held: i64,
    run_id: Option<i64>,
    step_id: Option<String>,
}

impl TryFrom<TaskRow> for TaskView {
    type Error = StoreError;
    fn try_from(r: TaskRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            task_type: r.task_type,
            payload: serde_json::from_str(&r.payload)?,
            urgency: r.urgency,
            time_sensitivity: r.time_sensitivity,
            importance: r.importance,
            priority: r.priority,
            status: task_status(&r.status)?,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            timeout_ms: r.timeout_ms,
            retry_backoff_ms: r.retry_backoff_ms,
            required_labels: serde_json::from_str(&r.required_labels)?,
            idempotency_key: r.idempotency_key,
            result: json_or_null(r.result)?,
            error: r.error,
            agent_id: r.agent_id,
            lease_token: r.lease_token,
            run_after_us: r.run_after,
            created_at_us: r.created_at,
            updated_at_us: r.updated_at,
            started_at_us: r.started_at,
            finished_at_us: r.finished_at,
            claim_load: r.claim_load,
            concurrency_key: r.concurrency_key,
            concurrency_limit: r.concurrency_limit,
            held: r.held == 1,
            rate_limited: r.held == 2,
            run_id: r.run_id,
            step_id: r.step_id,
        })
    }
}

/// An agent as both backends select it (lists as JSON text).
#[derive(sqlx::FromRow)]
pub(super) struct AgentRow {
    id: i64,
    name: String,
    hostname: String,
    version: String,
    task_types: String,
    labels: String,
    capacity: i64,
    running: i64,
    status: String,
    drained: bool,
    registered_at: i64,
    last_heartbeat_at: i64,
}

impl TryFrom<AgentRow> for drover_protocol::api::AgentView {
    type Error = StoreError;
    fn try_from(r: AgentRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            name: r.name,
            hostname: r.hostname,
            version: r.version,
            task_types: serde_json::from_str(&r.task_types)?,
            labels: serde_json::from_str(&r.labels)?,
            capacity: r.capacity,
            running: r.running,
            load: load(r.running, r.capacity),
            status: agent_status(&r.status)?,
            drained: r.drained,
            registered_at_us: r.registered_at,
            last_heartbeat_at_us: r.last_heartbeat_at,
        })
    }
}

/// One attempt of a task (`task_attempts`).
#[derive(sqlx::FromRow)]
pub(super) struct AttemptRow {
    lease_token: i64,
    attempt: i64,
    agent_id: i64,
    agent_load: f64,
    claimed_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    outcome: String,
    error: Option<String>,
}

impl TryFrom<AttemptRow> for AttemptView {
    type Error = StoreError;
    fn try_from(r: AttemptRow) -> Result<Self, StoreError> {
        Ok(Self {
            lease_token: r.lease_token,
            attempt: r.attempt,
            agent_id: r.agent_id,
            agent_load: r.agent_load,
            claimed_at_us: r.claimed_at,
            started_at_us: r.started_at,
            finished_at_us: r.finished_at,
            outcome: r.outcome,
            error: r.error,
        })
    }
}

/// One stored event of a task (`task_events`).
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    at: i64,
    kind: String,
    status: String,
    agent_id: Option<i64>,
    detail: Option<String>,
}

impl TryFrom<EventRow> for TaskEventView {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        Ok(Self {
            at_us: r.at,
            kind: r.kind,
            status: task_status(&r.status)?,
            agent_id: r.agent_id,
            detail: r.detail,
        })
    }
}

/// A claimed task as a claim's `RETURNING` gives it.
#[derive(sqlx::FromRow)]
pub(super) struct AssignmentRow {
    id: i64,
    lease_token: i64,
    task_type: String,
    payload: String,
    attempts: i64,
    max_attempts: i64,
    timeout_ms: i64,
    priority: f64,
}

impl TryFrom<AssignmentRow> for drover_protocol::agent::Assignment {
    type Error = StoreError;
    fn try_from(r: AssignmentRow) -> Result<Self, StoreError> {
        Ok(Self {
            task_id: r.id,
            lease_token: r.lease_token,
            task_type: r.task_type,
            payload: serde_json::from_str(&r.payload)?,
            attempt: r.attempts as u32,
            max_attempts: r.max_attempts as u32,
            timeout_ms: r.timeout_ms as u64,
            priority: r.priority,
        })
    }
}

/// A running task behind a current lease.
#[derive(sqlx::FromRow)]
pub(super) struct LeaseRow {
    id: i64,
    lease_token: i64,
    attempts: i64,
    max_attempts: i64,
    retry_backoff_ms: i64,
    agent_id: Option<i64>,
    run_id: Option<i64>,
}

/// The running tasks behind current leases, keyed by (task, lease).
pub(super) fn current_of(
    rows: impl Iterator<Item = Result<LeaseRow, sqlx::Error>>,
) -> Result<super::Current, StoreError> {
    let mut current = super::Current::with_capacity(rows.size_hint().0);
    for row in rows {
        let r = row?;
        let task = crate::lifecycle::RunningTask {
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            retry_backoff_ms: r.retry_backoff_ms,
        };
        current.insert((r.id, r.lease_token), (task, r.agent_id, r.run_id));
    }
    Ok(current)
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

/// A user's columns `id, name, role, created_at`.
#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: i64,
    name: String,
    role: String,
    created_at: i64,
}

impl TryFrom<UserRow> for drover_protocol::api::UserView {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            role: drover_protocol::api::Role::parse(&r.role)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown role {:?}", r.role)))?,
            name: r.name,
            created_at_us: r.created_at,
        })
    }
}

/// A user with its password hash and whether it is disabled.
#[derive(sqlx::FromRow)]
pub(super) struct UserRecordRow {
    #[sqlx(flatten)]
    user: UserRow,
    #[sqlx(default)]
    password_hash: Option<String>,
    disabled_at: Option<i64>,
}

impl TryFrom<UserRecordRow> for super::UserRecord {
    type Error = StoreError;
    fn try_from(r: UserRecordRow) -> Result<Self, StoreError> {
        Ok(Self {
            user: r.user.try_into()?,
            password_hash: r.password_hash,
            disabled: r.disabled_at.is_some(),
        })
    }
}

impl TryFrom<UserRecordRow> for super::UserSummary {
    type Error = StoreError;
    fn try_from(r: UserRecordRow) -> Result<Self, StoreError> {
        Ok(Self {
            user: r.user.try_into()?,
            disabled: r.disabled_at.is_some(),
        })
    }
}

/// The user behind a token, with the token's bookkeeping.
#[derive(sqlx::FromRow)]
pub(super) struct TokenUserRow {
    #[sqlx(flatten)]
    user: UserRow,
    token_id: i64,
    last_used_at: Option<i64>,
    expires_at: Option<i64>,
}

impl TryFrom<TokenUserRow> for super::TokenUser {
    type Error = StoreError;
    fn try_from(r: TokenUserRow) -> Result<Self, StoreError> {
        Ok(Self {
            user: r.user.try_into()?,
            token_id: r.token_id,
            last_used_at_us: r.last_used_at,
            expires_at_us: r.expires_at,
        })
    }
}

/// An API token as `sql::users::API_TOKEN` selects it.
#[derive(sqlx::FromRow)]
pub(super) struct ApiTokenRow {
    id: i64,
    user_id: i64,
    user_name: String,
    label: String,
    prefix: String,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl From<ApiTokenRow> for super::ApiToken {
    fn from(r: ApiTokenRow) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            user_name: r.user_name,
            name: r.label,
            prefix: r.prefix,
            created_at_us: r.created_at,
            expires_at_us: r.expires_at,
            last_used_at_us: r.last_used_at,
            revoked_at_us: r.revoked_at,
        }
    }
}

/// An enrollment token (lists as JSON text).
#[derive(sqlx::FromRow)]
pub(super) struct EnrollmentRow {
    id: i64,
    name: String,
    prefix: String,
    task_types: Option<String>,
    labels: Option<String>,
    created_by: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<EnrollmentRow> for drover_protocol::credentials::EnrollmentTokenView {
    type Error = StoreError;
    fn try_from(r: EnrollmentRow) -> Result<Self, StoreError> {
        let list = |text: Option<String>| -> Result<Option<Vec<String>>, StoreError> {
            Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
        };
        Ok(Self {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            task_types: list(r.task_types)?,
            labels: list(r.labels)?,
            created_by: r.created_by,
            created_at_us: r.created_at,
            expires_at_us: r.expires_at,
            revoked_at_us: r.revoked_at,
        })
    }
}

/// An audit log entry (`detail` as JSON text).
#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    target: Option<String>,
    detail: Option<String>,
}

impl TryFrom<AuditRow> for drover_protocol::credentials::AuditEntry {
    type Error = StoreError;
    fn try_from(r: AuditRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            at_us: r.at,
            actor: r.actor,
            action: r.action,
            target: r.target,
            detail: match r.detail {
                Some(text) => serde_json::from_str(&text)?,
                None => serde_json::Value::Null,
            },
        })
    }
}

/// A workflow version (`definition` as JSON text; `digest` only where selected).
#[derive(sqlx::FromRow)]
pub(super) struct WorkflowRow {
    id: i64,
    name: String,
    pub(super) version: i64,
    definition: String,
    created_by: String,
    created_at: i64,
    #[sqlx(default)]
    pub(super) digest: Option<String>,
    /// The text as uploaded, where a query selects it.
    #[sqlx(default)]
    pub(super) source: Option<String>,
}

impl TryFrom<WorkflowRow> for drover_protocol::workflow::WorkflowVersion {
    type Error = StoreError;
    fn try_from(r: WorkflowRow) -> Result<Self, StoreError> {
        let definition: serde_json::Value = serde_json::from_str(&r.definition)?;
        Ok(Self {
            id: r.id,
            name: r.name,
            version: r.version,
            description: definition
                .get("description")
                .and_then(|d| d.as_str())
                .map(str::to_string),
            definition,
            created_by: r.created_by,
            created_at_us: r.created_at,
        })
    }
}

/// A task as retrying it by hand reads it.
#[derive(sqlx::FromRow)]
pub(super) struct RetryRow {
    pub(super) status: String,
    pub(super) priority: f64,
    pub(super) run_id: Option<i64>,
    pub(super) step_id: Option<String>,
    pub(super) finished_at: Option<i64>,
}

/// A run as `sql::runs::SUMMARY` selects it.
#[derive(sqlx::FromRow)]
pub(super) struct RunRow {
    id: i64,
    workflow_name: String,
    workflow_version: i64,
    inputs: String,
    status: String,
    error: Option<String>,
    started_by: String,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
    #[sqlx(default)]
    parent_run_id: Option<i64>,
    #[sqlx(default)]
    parent_step_id: Option<String>,
}

impl TryFrom<RunRow> for drover_protocol::workflow::RunSummary {
    type Error = StoreError;
    fn try_from(r: RunRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            workflow: r.workflow_name,
            version: r.workflow_version,
            status: run_status(&r.status)?,
            error: r.error,
            started_by: r.started_by,
            inputs: serde_json::from_str(&r.inputs)?,
            created_at_us: r.created_at,
            updated_at_us: r.updated_at,
            finished_at_us: r.finished_at,
            parent_run_id: r.parent_run_id,
            parent_step_id: r.parent_step_id,
        })
    }
}

/// One step of a run as `sql::runs::STEPS_OF` selects it.
#[derive(sqlx::FromRow)]
pub(super) struct RunStepRow {
    pub(super) step_id: String,
    pub(super) status: String,
    pub(super) output: Option<String>,
    pub(super) error: Option<String>,
    pub(super) item_count: Option<i64>,
    pub(super) generation: i64,
    pub(super) started_at: Option<i64>,
    pub(super) finished_at: Option<i64>,
}

/// An approval with its run's name, starter and inputs.
#[derive(sqlx::FromRow)]
pub(super) struct ApprovalRow {
    id: i64,
    run_id: i64,
    step_id: String,
    message: String,
    approvers: String,
    allow_self: bool,
    on_reject: String,
    status: String,
    decided_by: Option<String>,
    comment: Option<String>,
    decided_at: Option<i64>,
    expires_at: Option<i64>,
    created_at: i64,
    workflow_name: String,
    started_by: String,
    inputs: String,
}

impl TryFrom<ApprovalRow> for super::ApprovalRecord {
    type Error = StoreError;
    fn try_from(r: ApprovalRow) -> Result<Self, StoreError> {
        Ok(Self {
            view: drover_protocol::workflow::ApprovalView {
                id: r.id,
                run_id: r.run_id,
                step_id: r.step_id,
                workflow: r.workflow_name,
                message: r.message,
                approvers: serde_json::from_str(&r.approvers)?,
                status: r.status,
                requested_by: r.started_by,
                decided_by: r.decided_by,
                comment: r.comment,
                decided_at_us: r.decided_at,
                expires_at_us: r.expires_at,
                created_at_us: r.created_at,
                inputs: serde_json::from_str(&r.inputs)?,
            },
            allow_self: r.allow_self,
            on_reject_continue: r.on_reject == "continue",
        })
    }
}

/// A run being advanced, with its definition when it still has one.
#[derive(sqlx::FromRow, serde::Deserialize)]
pub(super) struct RunStateRow {
    pub(super) id: i64,
    pub(super) workflow_id: i64,
    pub(super) status: String,
    pub(super) inputs: String,
    pub(super) started_by: String,
    #[sqlx(default)]
    #[serde(default)]
    pub(super) definition: Option<String>,
    /// The run whose workflow step started this one.
    #[sqlx(default)]
    #[serde(default)]
    pub(super) parent_run_id: Option<i64>,
}

/// One row of an advance's load: a step of a run (`kind` 0) or a task of
/// a running step's current generation (`kind` 1).
#[derive(sqlx::FromRow)]
pub(super) struct LoadedRow {
    kind: i64,
    task_id: i64,
    run_id: i64,
    step_id: String,
    status: String,
    output: Option<String>,
    error: Option<String>,
    item_count: Option<i64>,
    generation: Option<i64>,
    item_index: i64,
}

/// Splits an advance's load into step rows and item rows.
pub(super) fn split_loaded(rows: Vec<LoadedRow>) -> (Vec<StepRow>, Vec<ItemRow>) {
    let (mut steps, mut items) = (Vec::new(), Vec::new());
    for r in rows {
        if r.kind == 0 {
            steps.push(StepRow {
                run_id: r.run_id,
                step_id: r.step_id,
                status: r.status,
                output: r.output,
                error: r.error,
                item_count: r.item_count,
                generation: r.generation.unwrap_or(0),
            });
        } else {
            items.push(ItemRow {
                id: r.task_id,
                run_id: r.run_id,
                step_id: r.step_id,
                status: r.status,
                output: r.output,
                error: r.error,
                item_index: r.item_index,
            });
        }
    }
    (steps, items)
}

/// The run's steps in the definition's order, each with the tasks of its
/// current generation, as `GET /runs/{id}` shows them. In a run that `ended`, a step still pending never
/// ran and never will (unless a retry revives the run): it reads as
/// `skipped`, as its history tells.
pub(super) fn step_views(
    tasks: Vec<(i64, String, i64, i64, String)>,
    steps: Vec<RunStepRow>,
    definition: Option<String>,
    ended: bool,
) -> Result<Vec<drover_protocol::workflow::StepView>, StoreError> {
    // (generation, id, queued) of each step's tasks.
    let mut by_step: std::collections::BTreeMap<String, Vec<(i64, i64, bool)>> =
        std::collections::BTreeMap::new();
    for (id, step_id, _item_index, generation, status) in tasks {
        by_step
            .entry(step_id)
            .or_default()
            .push((generation, id, status == "queued"));
    }
    let mut views = Vec::with_capacity(steps.len());
    for s in steps {
        let current: Vec<(i64, i64, bool)> = by_step
            .get(&s.step_id)
            .map(|v| v.iter().filter(|t| t.0 == s.generation).copied().collect())
            .unwrap_or_default();
        views.push(drover_protocol::workflow::StepView {
            task_ids: current.iter().map(|t| t.1).collect(),
            tasks_queued: current.iter().filter(|t| t.2).count() as i64,
            step_id: s.step_id,
            status: if ended && s.status == crate::workflow::StepStatus::Pending.as_str() {
                crate::workflow::StepStatus::Skipped.as_str().to_string()
            } else {
                s.status
            },
            output: json_opt(s.output)?,
            error: s.error,
            item_count: s.item_count,
            generation: s.generation,
            started_at_us: s.started_at,
            finished_at_us: s.finished_at,
            wait: None,
        });
    }
    if let Some(def) = definition {
        let def: crate::workflow::Definition = serde_json::from_str(&def)?;
        let order: Vec<&str> = def.step_ids();
        views.sort_by_key(|s| {
            order
                .iter()
                .position(|o| *o == s.step_id)
                .unwrap_or(usize::MAX)
        });
    }
    Ok(views)
}

pub(super) fn run_status(s: &str) -> Result<drover_protocol::workflow::RunStatus, StoreError> {
    use drover_protocol::workflow::RunStatus;
    RunStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown run status {s:?}")))
}

pub(super) fn step_status(s: &str) -> Result<crate::workflow::StepStatus, StoreError> {
    use crate::workflow::StepStatus;
    StepStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown step status {s:?}")))
}

pub(super) fn json_opt(s: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    Ok(s.map(|s| serde_json::from_str(&s)).transpose()?)
}

/// A step of a run being advanced, as loaded.
pub(super) struct StepRow {
    pub(super) run_id: i64,
    pub(super) step_id: String,
    pub(super) status: String,
    pub(super) output: Option<String>,
    pub(super) error: Option<String>,
    pub(super) item_count: Option<i64>,
    pub(super) generation: i64,
}

/// A task of a running step's current generation, as loaded.
pub(super) struct ItemRow {
    pub(super) id: i64,
    pub(super) run_id: i64,
    pub(super) step_id: String,
    pub(super) status: String,
    pub(super) output: Option<String>,
    pub(super) error: Option<String>,
    pub(super) item_index: i64,
}
