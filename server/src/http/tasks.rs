//! `/api/v1/tasks`: submit, inspect, list and cancel tasks.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_engine::domain::TaskSpec;
use drover_engine::explain;
use drover_engine::store::{
    LogRange, LogStore, QueueState, QueueStore, RateLimitStore, TaskFilter, TaskRetryStore,
    WaitingStore,
};
use drover_engine::time::now_us;
use drover_engine::FieldError;
use drover_protocol::api::{
    NewTask, NewTaskBatch, Role, SubmitBatchResponse, TaskDetail, TaskList, TaskLogPage,
    TaskStatus, TaskView, Waiting,
};
use drover_protocol::limits::{DEFAULT_LOG_PAGE, MAX_LOG_PAGE};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{not_found, ApiError};
use crate::http::auth::Caller;
use crate::http::extract::{from_value, parse_json, read_body, ApiQuery};
use crate::http::lists;
use crate::services::effects::Change;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tasks", post(submit).get(list))
        .route("/tasks/{id}", get(get_task))
        .route("/tasks/{id}/logs", get(logs))
        .route("/tasks/{id}/cancel", post(cancel))
        .route("/tasks/{id}/retry", post(retry))
}

/// `POST /api/v1/tasks` takes one task, or `{"tasks": [...]}` for a batch.
/// A batch is all-or-nothing: one bad task rejects it, naming `tasks[i].field`.
async fn submit(
    caller: Caller,
    State(state): State<AppState>,
    req: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_operator()?;
    state
        .queue_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body: Value = parse_json(&read_body(req, &state).await?)?;
    let batch = body.as_object().is_some_and(|o| o.contains_key("tasks"));
    let (tasks, prefix): (Vec<NewTask>, &str) = if batch {
        (from_value::<NewTaskBatch>(body, "")?.tasks, "tasks")
    } else {
        (vec![from_value::<NewTask>(body, "")?], "")
    };
    if tasks.is_empty() {
        return Err(FieldError::new("tasks", "must hold at least one task").into());
    }
    if tasks.len() > state.config.max_batch {
        return Err(FieldError::new(
            "tasks",
            format!("at most {} tasks per request", state.config.max_batch),
        )
        .into());
    }
    state
        .ensure_types_known(tasks.iter().map(|t| t.task_type.as_str()))
        .await?;
    if caller.0.role != Role::Admin {
        refuse_gated_types(&state, &tasks).await?;
    }
    let mut specs: Vec<TaskSpec> = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.into_iter().enumerate() {
        let spec = TaskSpec::parse(task, &state.scheduling.weights, |t| state.is_known_type(t))
            .map_err(|e| {
                if batch {
                    e.within(&format!("{prefix}[{i}]"))
                } else {
                    e
                }
            })?;
        specs.push(spec);
    }
    let submitted = state
        .store
        .submit(&specs, &state.scheduling, now_us())
        .await?;
    let created = submitted.iter().filter(|s| s.created).count();
    metrics::counter!("drover_tasks_submitted_total").increment(created as u64);
    if created > 0 {
        let change = Change::new().wake().event("tasks", None, Some("queued"));
        state.effects.after(change).await;
    }
    let status = if created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut body = if batch {
        serde_json::to_value(SubmitBatchResponse { tasks: submitted })
    } else {
        serde_json::to_value(&submitted[0])
    }
    .map_err(|e| ApiError::Store(e.into()))?;
    let warnings = unreachable_warnings(&state, &specs).await?;
    if let (Some(obj), false) = (body.as_object_mut(), warnings.is_empty()) {
        obj.insert("warnings".into(), Value::from(warnings));
    }
    Ok((status, Json(body)))
}

/// A task type that runs after an approval step in the latest version of
/// any workflow is submitted by that workflow's runs (or an admin), not
/// directly: else the approval could be skipped (`workflow::gated_task_types`).
async fn refuse_gated_types(state: &AppState, tasks: &[NewTask]) -> Result<(), ApiError> {
    let gated = state.gated_types().await?;
    match tasks
        .iter()
        .find_map(|t| gated.get(&t.task_type).map(|wf| (&t.task_type, wf)))
    {
        None => Ok(()),
        Some((task_type, wf)) => Err(ApiError::Forbidden(format!(
            "task type {task_type:?} runs after an approval in workflow {wf:?}; only a run of a workflow or an admin may submit it"
        ))),
    }
}

async fn get_task(
    _caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<TaskDetail>, ApiError> {
    let mut detail = state
        .store
        .get_task(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id}")))?;
    if detail.task.status == TaskStatus::Queued {
        detail.waiting = waiting(&state, &detail.task).await?;
    }
    Ok(Json(detail))
}

/// Warnings for submitted tasks no registered agent could ever take (their
/// type, or their labels): accepted, but they would wait in silence.
async fn unreachable_warnings(
    state: &AppState,
    specs: &[TaskSpec],
) -> Result<Vec<String>, ApiError> {
    let agents = state.registered_agents().await?;
    let mut seen = std::collections::HashSet::new();
    let mut warnings = Vec::new();
    for spec in specs {
        if seen.insert((spec.task_type.as_str(), spec.required_labels.as_slice())) {
            if let Some(w) = explain::unreachable(&spec.task_type, &spec.required_labels, &agents) {
                warnings.push(w);
            }
        }
    }
    Ok(warnings)
}

/// Tasks counted ahead of a queued one, at most: past it, "1000+" (each
/// counted task is a row read: 10,000 cost 30 ms on SQLite).
const AHEAD_LIMIT: i64 = 1_000;

/// Why a queued task is not running yet (`drover_engine::explain`).
async fn waiting(state: &AppState, task: &TaskView) -> Result<Option<Waiting>, ApiError> {
    let now = now_us();
    let Some((rank, ahead)) = state
        .store
        .queue_ahead(task.id, &task.task_type, now, AHEAD_LIMIT)
        .await?
    else {
        return Ok(None);
    };
    let agents = state.store.list_agents().await?;
    let key = match (&task.concurrency_key, task.held) {
        (Some(k), true) => state.store.key_state(k).await?,
        _ => None,
    };
    let mut waiting = explain::explain(
        task,
        &agents,
        key,
        ahead,
        state.scheduling.aged(rank, now),
        state.dispatcher.starts.per_second(&task.task_type, now),
        now,
    );
    if task.rate_limited {
        if let Some(limit) = state
            .store
            .rate_limit_for(&task.task_type, task.concurrency_key.as_deref())
            .await?
        {
            let next = limit.next_release_us(now);
            explain::rate_limited(&mut waiting, limit.scope, limit.per_second, next);
        }
    }
    Ok(Some(waiting))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    after: Option<i64>,
    limit: Option<i64>,
    tail: Option<i64>,
}

/// `GET /api/v1/tasks/{id}/logs?after=&limit=` (or `?tail=N`): what the
/// task's handlers printed, for anyone who may read the task. `after`
/// (default -1: from the start, the note of dropped lines included) pages
/// and follows; `tail` gives the last N lines.
async fn logs(
    _caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Json<TaskLogPage>, ApiError> {
    let page = |field: &str, n: i64| {
        if (1..=MAX_LOG_PAGE).contains(&n) {
            Ok(n)
        } else {
            Err(FieldError::new(
                field,
                format!("must be between 1 and {MAX_LOG_PAGE}, got {n}"),
            ))
        }
    };
    let range = match (q.tail, q.after, q.limit) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(FieldError::new("tail", "give tail alone, or after and limit").into())
        }
        (Some(n), None, None) => LogRange::Tail(page("tail", n)?),
        (None, after, limit) => LogRange::After {
            after: after.unwrap_or(-1),
            limit: page("limit", limit.unwrap_or(DEFAULT_LOG_PAGE))?,
        },
    };
    let log = state
        .store
        .task_log(id, range)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id}")))?;
    Ok(Json(log))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// One status or several, comma-separated (`queued,running`). Exactly
    /// `queued` lists in the order the scheduler takes them.
    status: Option<String>,
    task_type: Option<String>,
    agent_id: Option<i64>,
    /// Queued tasks by what can happen now: `ready` (an agent may claim it;
    /// in claim order), `scheduled` (not before its `run_after`) or `held`
    /// (waiting for its concurrency key or a rate limit).
    state: Option<String>,
    /// A task id, or text the type or payload contains (any case).
    q: Option<String>,
    /// RFC 3339 (`2026-12-07T10:00:00Z`): created at or after.
    created_after: Option<String>,
    /// RFC 3339: created before.
    created_before: Option<String>,
    /// RFC 3339: finished at or after (finished tasks only).
    finished_after: Option<String>,
    /// `id`, `type`, `status`, `priority` or `attempts`; `-` first for
    /// descending (`-priority`). Default: newest first, and queued tasks in
    /// claim order. Only `id` is served by an index: the others need at
    /// most 10,000 matching tasks.
    sort: Option<String>,
    /// The previous page's `next_before_id`.
    before_id: Option<i64>,
    limit: Option<i64>,
}

/// Queued tasks are listed in the order the scheduler will take them.
async fn list(
    _caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<TaskList>, ApiError> {
    let statuses = lists::statuses(q.status.as_deref(), &TaskStatus::ALL, TaskStatus::as_str)?;
    let queue_state = match q.state.as_deref() {
        None => None,
        Some(word) => Some(QueueState::parse(word).ok_or_else(|| {
            FieldError::new(
                "state",
                format!("unknown state {word:?}; one of ready, scheduled, held"),
            )
        })?),
    };
    if queue_state.is_some() && !statuses.iter().all(|s| *s == TaskStatus::Queued) {
        return Err(FieldError::new("state", "applies to queued tasks only").into());
    }
    let limit = lists::limit(q.limit)?;
    let text = lists::search(q.q)?;
    let created_after_us = lists::time("created_after", q.created_after.as_deref())?;
    let created_before_us = lists::time("created_before", q.created_before.as_deref())?;
    let filter = TaskFilter {
        statuses,
        task_type: q.task_type,
        agent_id: q.agent_id,
        text,
        created_after_us,
        created_before_us,
        finished_after_us: lists::time("finished_after", q.finished_after.as_deref())?,
        queue_state,
        now_us: now_us(),
        sort: lists::sort(q.sort.as_deref())?,
        before_id: q.before_id,
        // One more than asked: a next page is offered only if it has a row.
        limit: limit + 1,
    };
    let (mut tasks, count) = if filter.sort.is_some_and(|s| !s.indexed()) {
        let count = state.store.count_tasks(&filter).await?;
        lists::sortable(filter.sort, &count, "tasks")?;
        (state.store.list_tasks(&filter).await?, count)
    } else {
        tokio::try_join!(
            state.store.list_tasks(&filter),
            state.store.count_tasks(&filter)
        )?
    };
    let next_before_id = lists::next_cursor(&mut tasks, limit, |t| t.id);
    Ok(Json(TaskList {
        tasks,
        next_before_id,
        total: count.total,
        total_more: count.more,
    }))
}

async fn cancel(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require_operator()?;
    let status = crate::services::cancel::cancel_task(&state.store, &state.effects, id)
        .await
        .map_err(not_found(format!("task {id}")))?;
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "task.cancelled",
        Some(format!("task:{id}")),
        Value::Null,
    )
    .await;
    Ok(Json(serde_json::json!({ "id": id, "status": status })))
}

/// Queues a failed or cancelled task again (tasks of runs: retry the step).
async fn retry(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require_operator()?;
    state
        .store
        .retry_task(id, &state.scheduling, now_us())
        .await
        .map_err(not_found(format!("task {id}")))?;
    tracing::info!(task_id = id, by = %caller.0.name, "task retried");
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "task.retried",
        Some(format!("task:{id}")),
        Value::Null,
    )
    .await;
    let change = Change::new().wake().event("task", Some(id), Some("queued"));
    state.effects.after(change).await;
    Ok(Json(serde_json::json!({ "id": id, "status": "queued" })))
}
