//! `/api/v1/agents`: the registry as operators see it.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_engine::store::{bucket_width, AgentLoadStore, AuditStore, QueueStore};
use drover_engine::time::now_us;
use drover_engine::FieldError;
use drover_protocol::api::{
    AgentList, AgentLoad, DEFAULT_LOAD_WINDOW_S, MAX_LOAD_WINDOW_S, MIN_LOAD_WINDOW_S,
};
use drover_protocol::credentials::AuditList;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{not_found, ApiError};
use crate::http::auth::Caller;
use crate::http::extract::ApiQuery;
use crate::services::effects::Change;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/agents", get(list))
        .route("/agents/{id}/load", get(load))
        .route("/agents/{id}/history", get(history))
        .route("/agents/{id}/drain", post(drain))
        .route("/agents/{id}/enable", post(enable))
}

async fn list(_caller: Caller, State(state): State<AppState>) -> Result<Json<AgentList>, ApiError> {
    Ok(Json(AgentList {
        agents: state.store.list_agents().await?,
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoadQuery {
    /// Seconds of history; text, so that a value that is no number is a
    /// field error like one out of range.
    window_s: Option<String>,
}

/// The window asked for, within its bounds.
fn load_window(asked: Option<&str>) -> Result<i64, FieldError> {
    let Some(text) = asked else {
        return Ok(DEFAULT_LOAD_WINDOW_S);
    };
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|w| (MIN_LOAD_WINDOW_S..=MAX_LOAD_WINDOW_S).contains(w))
        .ok_or_else(|| {
            FieldError::new(
                "window_s",
                format!(
                    "must be a whole number of seconds from {MIN_LOAD_WINDOW_S} to {MAX_LOAD_WINDOW_S}, got {text:?}"
                ),
            )
        })
}

/// An agent's load over the window, from the leader's samples, in at most
/// `LOAD_BUCKETS` buckets, with the agent as it is now.
async fn load(
    _caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<LoadQuery>,
) -> Result<Json<AgentLoad>, ApiError> {
    let window_s = load_window(q.window_s.as_deref())?;
    let agent = state
        .store
        .get_agent(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("agent {id}")))?;
    let at_us = now_us();
    let window_us = window_s * 1_000_000;
    let interval_us = state.config.agent_load_interval.as_micros() as i64;
    let bucket_us = bucket_width(window_us, interval_us);
    let since_us = at_us - window_us;
    let buckets = state
        .store
        .agent_load(id, since_us, at_us, bucket_us)
        .await?;
    Ok(Json(AgentLoad {
        agent,
        window_s,
        since_us,
        at_us,
        bucket_us,
        interval_us,
        retention_us: state.config.agent_load_retention.as_micros() as i64,
        buckets,
    }))
}

/// Entries of an agent's history shown at most.
pub const HISTORY_SHOWN: i64 = 50;

/// What happened to an agent, newest first: registered, resumed, drained,
/// enabled, revoked, with who and when. The audit entries about it, which
/// any signed-in user may read for an agent they can see on `/agents`
/// (the whole audit log stays an admin's).
async fn history(
    _caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<AuditList>, ApiError> {
    state
        .store
        .get_agent(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("agent {id}")))?;
    let entries = state
        .store
        .audit_about(&crate::audit::agent_actor(id), HISTORY_SHOWN)
        .await?;
    Ok(Json(AuditList {
        entries,
        next_before_id: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_bounded_and_named_when_wrong() {
        assert_eq!(load_window(None), Ok(DEFAULT_LOAD_WINDOW_S));
        assert_eq!(load_window(Some("60")), Ok(60));
        assert_eq!(load_window(Some("604800")), Ok(MAX_LOAD_WINDOW_S));
        for bad in ["59", "604801", "-1", "1h", ""] {
            let e = load_window(Some(bad)).expect_err(bad);
            assert_eq!(e.field, "window_s");
        }
    }
}
