//! `/api/v1/schedules`: workflows and tasks started by cron or once at a
//! time. Anyone signed in reads them; operators write them. The leader's
//! loop (`services::schedules`) fires them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_engine::domain::TaskSpec;
use drover_engine::schedule::{rfc3339, ScheduleSpec, Target, When};
use drover_engine::store::{ScheduleDef, ScheduleRow, ScheduleStore, WorkflowDefStore};
use drover_engine::time::now_us;
use drover_engine::{workflow, FieldError};
use drover_protocol::api::NewTask;
use drover_protocol::limits::SCHEDULE_UPCOMING;
use drover_protocol::schedule::{
    MissedPolicy, NewSchedule, OverlapPolicy, ScheduleChange, ScheduleList, ScheduleView,
};
use serde_json::{json, Map, Value};

use crate::error::{not_found, ApiError};
use crate::http::auth::Caller;
use crate::http::extract::ApiJson;
use crate::services::effects::Change;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/schedules", get(list).post(create))
        .route("/schedules/{id}", get(get_one).patch(change).delete(remove))
        .route("/schedules/{id}/pause", post(pause))
        .route("/schedules/{id}/resume", post(resume))
}

async fn list(
    _caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<ScheduleList>, ApiError> {
    let now = now_us();
    let schedules = state.store.schedules().await?;
    Ok(Json(ScheduleList {
        schedules: schedules.into_iter().map(|s| view(s, now)).collect(),
    }))
}

async fn get_one(
    _caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(view(read(&state, id).await?, now_us())))
}

async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewSchedule>,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    caller.require_operator()?;
    let now = now_us();
    let def = checked(&state, new, now, None).await?;
    let row = state
        .store
        .create_schedule(&def, &caller.0.name, now)
        .await?;
    written(&state, &caller, "schedule.created", &row).await;
    Ok((StatusCode::CREATED, Json(view(row, now))))
}

async fn change(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    ApiJson(change): ApiJson<ScheduleChange>,
) -> Result<Json<ScheduleView>, ApiError> {
    caller.require_operator()?;
    let now = now_us();
    let row = read(&state, id).await?;
    let revision = change.revision.unwrap_or(row.revision);
    let new = merged(&row, change);
    let def = checked(&state, new, now, Some(&row)).await?;
    let row = state
        .store
        .update_schedule(id, revision, &def, &caller.0.name, now)
        .await
        .map_err(not_found(format!("schedule {id}")))?;
    written(&state, &caller, "schedule.updated", &row).await;
    Ok(Json(view(row, now)))
}

async fn pause(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<ScheduleView>, ApiError> {
    set_paused(caller, state, id, true).await
}

async fn resume(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<ScheduleView>, ApiError> {
    set_paused(caller, state, id, false).await
}

async fn set_paused(
    caller: Caller,
    state: AppState,
    id: i64,
    paused: bool,
) -> Result<Json<ScheduleView>, ApiError> {
    caller.require_operator()?;
    let now = now_us();
    let row = read(&state, id).await?;
    let mut new = merged(&row, ScheduleChange::default());
    new.paused = paused;
    // Resuming starts from now: the ticks of the pause are neither fired
    // nor counted as missed.
    let def = checked(&state, new, now, None).await?;
    let row = state
        .store
        .update_schedule(id, row.revision, &def, &caller.0.name, now)
        .await
        .map_err(not_found(format!("schedule {id}")))?;
    let action = if paused {
        "schedule.paused"
    } else {
        "schedule.resumed"
    };
    written(&state, &caller, action, &row).await;
    Ok(Json(view(row, now)))
}

async fn remove(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require_operator()?;
    let row = read(&state, id).await?;
    state
        .store
        .delete_schedule(id)
        .await
        .map_err(not_found(format!("schedule {id}")))?;
    written(&state, &caller, "schedule.deleted", &row).await;
    Ok(Json(json!({ "id": id, "deleted": true })))
}

async fn read(state: &AppState, id: i64) -> Result<ScheduleRow, ApiError> {
    state
        .store
        .schedule(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("schedule {id}")))
}

/// Audits a write, tells dashboards and wakes the schedule loop.
async fn written(state: &AppState, caller: &Caller, action: &str, row: &ScheduleRow) {
    crate::audit::record(
        &state.store,
        &caller.0.name,
        action,
        Some(format!("schedule:{}", row.id)),
        json!({ "name": row.name, "revision": row.revision }),
    )
    .await;
    state
        .effects
        .after(Change::new().event("schedule", Some(row.id), None))
        .await;
    state.schedule_wake.notify_one();
}

/// Checks a definition (and, for a change, keeps the next tick of a timing
/// left alone) and returns what to store.
async fn checked(
    state: &AppState,
    new: NewSchedule,
    now: i64,
    before: Option<&ScheduleRow>,
) -> Result<ScheduleDef, ApiError> {
    if let Some(task) = &new.task {
        state.ensure_types_known([task.task_type.as_str()]).await?;
        let gated = state.gated_types().await?;
        if let Some(wf) = gated.get(&task.task_type) {
            return Err(ApiError::Forbidden(format!(
                "task type {:?} runs after an approval in workflow {wf:?}: schedule that workflow instead",
                task.task_type
            )));
        }
    }
    let weights = state.scheduling.weights;
    // A one-time schedule may not be set in the past (a minute's slack for
    // clocks); one whose time is left as it was may be edited after it fired.
    let at_kept = before.is_some_and(|b| b.at.is_some() && new.at == b.at.map(rfc3339));
    let earliest = if at_kept { i64::MIN } else { now - 60_000_000 };
    let (spec, paused) = ScheduleSpec::parse(new, earliest, |task| {
        TaskSpec::parse(task.clone(), &weights, |t| state.is_known_type(t)).map(|_| ())
    })?;
    let (workflow, version, inputs, task) = match &spec.target {
        Target::Workflow {
            name,
            version,
            inputs,
        } => {
            check_workflow(state, name, *version, inputs).await?;
            (Some(name.clone()), *version, inputs.clone(), None)
        }
        Target::Task(task) => (None, None, Map::new(), Some(task_json(task)?)),
    };
    let same_timing = before.is_some_and(|b| {
        b.cron == spec.cron && b.time_zone == spec.time_zone && b.at == spec.at_us
    });
    let (state_name, next_fire_at) = match before {
        _ if paused => ("paused", None),
        Some(b) if same_timing && b.state != "paused" => (
            if b.state == "done" { "done" } else { "active" },
            b.next_fire_at,
        ),
        _ => match &spec.when {
            When::Once(at) => ("active", Some(*at)),
            when => ("active", when.next_after(now)),
        },
    };
    Ok(ScheduleDef {
        name: spec.name,
        description: spec.description,
        workflow,
        workflow_version: version,
        inputs: Value::Object(inputs).to_string(),
        task,
        cron: spec.cron,
        time_zone: spec.time_zone,
        at: spec.at_us,
        missed_policy: spec.missed.as_str(),
        overlap_policy: spec.overlap.as_str(),
        state: state_name,
        next_fire_at,
    })
}

fn task_json(task: &NewTask) -> Result<String, ApiError> {
    serde_json::to_string(task).map_err(|e| ApiError::Store(e.into()))
}

/// The workflow (version) exists and takes these inputs now; a later
/// version checked at each tick may still refuse them.
async fn check_workflow(
    state: &AppState,
    name: &str,
    version: Option<i64>,
    inputs: &Map<String, Value>,
) -> Result<(), ApiError> {
    let wf = state
        .store
        .workflow(name, version)
        .await?
        .ok_or_else(|| match version {
            Some(v) => FieldError::new("version", format!("no workflow {name:?} version {v}")),
            None => FieldError::new("workflow", format!("no workflow {name:?}")),
        })?;
    let def: workflow::Definition =
        serde_json::from_value(wf.definition).map_err(|e| ApiError::Store(e.into()))?;
    workflow::validate_inputs(&def, inputs.clone()).map_err(ApiError::invalid_all)?;
    Ok(())
}

/// The stored definition with `change` laid over it, as a new one.
fn merged(row: &ScheduleRow, change: ScheduleChange) -> NewSchedule {
    let task: Option<NewTask> = row
        .task
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok());
    let inputs: Map<String, Value> = serde_json::from_str(&row.inputs).unwrap_or_default();
    // A new target replaces the old one whole, and so does a new timing.
    let (workflow, version, inputs, task) = match (change.workflow, change.task) {
        (Some(w), None) => (
            Some(w),
            change.version,
            change.inputs.unwrap_or_default(),
            None,
        ),
        (None, Some(t)) => (None, None, Map::new(), Some(t)),
        (Some(w), Some(t)) => (Some(w), change.version, Map::new(), Some(t)),
        (None, None) => (
            row.workflow.clone(),
            change.version.or(row.workflow_version),
            change.inputs.unwrap_or(inputs),
            task,
        ),
    };
    let (cron, at) = match (change.cron, change.at) {
        (None, None) => (row.cron.clone(), row.at.map(rfc3339)),
        given => given,
    };
    NewSchedule {
        name: change.name.unwrap_or_else(|| row.name.clone()),
        description: change.description.or_else(|| row.description.clone()),
        workflow,
        version,
        inputs,
        task,
        cron,
        time_zone: change.time_zone.or_else(|| Some(row.time_zone.clone())),
        at,
        missed: change
            .missed
            .unwrap_or_else(|| MissedPolicy::parse(&row.missed_policy).unwrap_or_default()),
        overlap: change
            .overlap
            .unwrap_or_else(|| OverlapPolicy::parse(&row.overlap_policy).unwrap_or_default()),
        paused: row.state == "paused",
    }
}

fn view(row: ScheduleRow, now: i64) -> ScheduleView {
    let when = When::of(row.cron.as_deref(), &row.time_zone, row.at).ok();
    let upcoming_us = match (row.next_fire_at, &when) {
        (Some(next), Some(when)) => {
            let mut u = vec![next];
            u.extend(when.upcoming(next.max(now), SCHEDULE_UPCOMING - 1));
            u.dedup();
            u
        }
        _ => Vec::new(),
    };
    ScheduleView {
        id: row.id,
        name: row.name,
        description: row.description,
        workflow: row.workflow,
        version: row.workflow_version,
        inputs: serde_json::from_str(&row.inputs).unwrap_or_default(),
        task: row
            .task
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok()),
        cron_description: when.as_ref().and_then(When::describe),
        cron: row.cron,
        time_zone: row.time_zone,
        at_us: row.at,
        missed: MissedPolicy::parse(&row.missed_policy).unwrap_or_default(),
        overlap: OverlapPolicy::parse(&row.overlap_policy).unwrap_or_default(),
        state: row.state,
        next_fire_at_us: row.next_fire_at,
        upcoming_us,
        last_tick_us: row.last_tick_at,
        last_outcome: row.last_outcome,
        last_run_id: row.last_run_id,
        last_task_id: row.last_task_id,
        last_detail: row.last_detail,
        fired_count: row.fired_count,
        missed_count: row.missed_count,
        revision: row.revision,
        created_by: row.created_by,
        updated_by: row.updated_by,
        created_at_us: row.created_at,
        updated_at_us: row.updated_at,
    }
}
