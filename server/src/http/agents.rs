//! `/api/v1/agents`: the registry as operators see it.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_engine::store::QueueStore;
use drover_protocol::api::AgentList;
use serde_json::Value;

use crate::error::{not_found, ApiError};
use crate::http::auth::Caller;
use crate::services::effects::Change;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/agents", get(list))
        .route("/agents/{id}/drain", post(drain))
        .route("/agents/{id}/enable", post(enable))
}

async fn list(_caller: Caller, State(state): State<AppState>) -> Result<Json<AgentList>, ApiError> {
    Ok(Json(AgentList {
        agents: state.store.list_agents().await?,
    }))
}

/// Drains or re-enables an agent, for an admin; audited.
async fn set_draining(
    caller: Caller,
    state: &AppState,
    id: i64,
    draining: bool,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    state
        .store
        .set_agent_draining(id, draining)
        .await
        .map_err(not_found(format!("agent {id}")))?;
    let status = if draining { "draining" } else { "online" };
    let change = Change::new().wake().event("agent", Some(id), Some(status));
    state.effects.after(change).await;
    let action = if draining {
        "agent.drained"
    } else {
        "agent.enabled"
    };
    crate::audit::record(
        &state.store,
        &caller.0.name,
        action,
        Some(crate::audit::agent_actor(id)),
        Value::Null,
    )
    .await;
    Ok(Json(serde_json::json!({ "id": id, "status": status })))
}

/// Stops giving the agent work; it finishes what it runs.
async fn drain(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    set_draining(caller, &state, id, true).await
}

async fn enable(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    set_draining(caller, &state, id, false).await
}
