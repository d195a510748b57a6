//! `/api/v1/runs`: start, watch, cancel runs and retry failed steps.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_engine::store::{RunFilter, RunStore, WaitStore, WorkflowDefStore};
use drover_engine::time::now_us;
use drover_engine::{workflow, FieldError};
use drover_protocol::workflow::{RunDetail, RunList, RunStatus, StartRun, StepWait};
use serde::Deserialize;

use crate::error::{not_found, ApiError};
use crate::http::auth::Caller;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::lists;
use crate::services::effects::Change;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/runs", post(start).get(list))
        .route("/runs/{id}", get(get_run))
        .route("/runs/{id}/cancel", post(cancel))
        .route("/runs/{id}/steps/{step}/retry", post(retry_step))
}

async fn detail(state: &AppState, id: i64) -> Result<RunDetail, ApiError> {
    let mut run = state
        .store
        .get_run(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id}")))?;
    let waits = state.store.waits_of_run(id).await?;
    for step in &mut run.steps {
        step.wait = waits
            .iter()
            .find(|w| w.step_id == step.step_id && w.generation == step.generation)
            .map(|w| StepWait {
                kind: w.kind.clone(),
                status: w.status.clone(),
                wake_at_us: w.wake_at,
                event_key: w.event_key.clone(),
                child_run_id: w.child_run_id,
            });
    }
    Ok(run)
}

async fn start(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<StartRun>,
) -> Result<(StatusCode, Json<RunDetail>), ApiError> {
    caller.require_operator()?;
    if let Some(key) = &req.idempotency_key {
        drover_engine::domain::check_idempotency_key("idempotency_key", key)?;
    }
    let wf = state
        .store
        .workflow(&req.workflow, req.version)
        .await?
        .ok_or_else(|| {
            FieldError::new(
                if req.version.is_some() {
                    "version"
                } else {
                    "workflow"
                },
                format!(
                    "no workflow {:?}{}",
                    req.workflow,
                    req.version
                        .map(|v| format!(" version {v}"))
                        .unwrap_or_default()
                ),
            )
        })?;
    let def: workflow::Definition =
        serde_json::from_value(wf.definition.clone()).map_err(|e| ApiError::Store(e.into()))?;
    let inputs = workflow::validate_inputs(&def, req.inputs).map_err(ApiError::invalid_all)?;
    let (id, created) = state
        .store
        .start_run(
            &wf,
            &inputs,
            &caller.0.name,
            req.idempotency_key.as_deref(),
            now_us(),
        )
        .await?;
    if created {
        tracing::info!(run_id = id, workflow = %wf.name, version = wf.version, by = %caller.0.name, "run started");
        metrics::counter!("drover_runs_started_total").increment(1);
        state.effects.after(Change::new().advance([id])).await;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(detail(&state, id).await?)))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// One status or several, comma-separated (`running,waiting_approval`).
    status: Option<String>,
    /// The workflow's name, exactly.
    workflow: Option<String>,
    /// Who started the run, exactly (`admin`, `schedule:3`).
    started_by: Option<String>,
    /// A run id, or text its workflow, starter or inputs contain (any case).
    q: Option<String>,
    /// RFC 3339: started at or after.
    created_after: Option<String>,
    /// RFC 3339: started before.
    created_before: Option<String>,
    /// `id`, `workflow`, `status` or `started_by`; `-` first for descending.
    /// Default: newest first. Only `id` is served by an index: the others
    /// need at most 10,000 matching runs.
    sort: Option<String>,
    /// The previous page's `next_before_id`.
    before_id: Option<i64>,
    limit: Option<i64>,
}

/// Runs, newest first unless sorted.
async fn list(
    _caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<RunList>, ApiError> {
    let statuses = lists::statuses(q.status.as_deref(), &RunStatus::ALL, RunStatus::as_str)?;
    let limit = lists::limit(q.limit)?;
    let filter = RunFilter {
        statuses,
        workflow: q.workflow,
        started_by: q.started_by,
        text: lists::search(q.q)?,
        created_after_us: lists::time("created_after", q.created_after.as_deref())?,
        created_before_us: lists::time("created_before", q.created_before.as_deref())?,
        sort: lists::sort(q.sort.as_deref())?,
        before_id: q.before_id,
        // One more than asked: a next page is offered only if it has a row.
        limit: limit + 1,
    };
    let (mut runs, count) = if filter.sort.is_some_and(|s| !s.indexed()) {
        let count = state.store.count_runs(&filter).await?;
        lists::sortable(filter.sort, &count, "runs")?;
        (state.store.list_runs(&filter).await?, count)
    } else {
        tokio::try_join!(
            state.store.list_runs(&filter),
            state.store.count_runs(&filter)
        )?
    };
    let next_before_id = lists::next_cursor(&mut runs, limit, |r| r.id);
    Ok(Json(RunList {
        runs,
        next_before_id,
        total: count.total,
        total_more: count.more,
    }))
}

async fn get_run(
    _caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<RunDetail>, ApiError> {
    Ok(Json(detail(&state, id).await?))
}

/// Cancels the run's queued tasks and open approvals, and tells agents to
/// stop its running tasks.
async fn cancel(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<RunDetail>, ApiError> {
    caller.require_operator()?;
    crate::services::cancel::cancel_run(&state.store, &state.effects, id, &caller.0.name)
        .await
        .map_err(not_found(format!("run {id}")))?;
    tracing::info!(run_id = id, by = %caller.0.name, "run cancelled");
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "run.cancelled",
        Some(format!("run:{id}")),
        serde_json::Value::Null,
    )
    .await;
    Ok(Json(detail(&state, id).await?))
}

async fn retry_step(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, step)): Path<(i64, String)>,
) -> Result<Json<RunDetail>, ApiError> {
    caller.require_operator()?;
    state
        .store
        .retry_step(id, &step, &caller.0.name, now_us())
        .await
        .map_err(not_found(format!("step {step:?} of run {id}")))?;
    tracing::info!(run_id = id, step = %step, by = %caller.0.name, "step retried");
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "run.step_retried",
        Some(format!("run:{id}")),
        serde_json::json!({ "step": step }),
    )
    .await;
    state.effects.after(Change::new().advance([id])).await;
    Ok(Json(detail(&state, id).await?))
}
