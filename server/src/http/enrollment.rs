//! `/api/v1/enrollment-tokens`: the credentials agents register with
//! (admins only), and revoking agents.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use drover_engine::domain::check_name;
use drover_engine::store::{EnrollmentStore, NewEnrollment, QueueStore};
use drover_engine::time::now_us;
use drover_engine::FieldError;
use drover_protocol::credentials::{CreatedEnrollmentToken, NewEnrollmentToken};
use drover_protocol::limits::MAX_ENROLLMENT_SCOPE;
use serde_json::Value;

use crate::error::{not_found, ApiError};
use crate::http::auth::Caller;
use crate::http::extract::ApiJson;
use crate::services::effects::Change;
use crate::state::AppState;
use crate::tokens::{hash_token, new_token, token_prefix};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/enrollment-tokens", get(list).post(create))
        .route("/enrollment-tokens/{id}", delete(revoke))
        .route("/agents/{id}/revoke", post(revoke_agent))
}

async fn list(caller: Caller, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    Ok(Json(
        serde_json::json!({ "tokens": state.store.list_enrollment_tokens().await? }),
    ))
}

fn check_scope(field: &str, list: &Option<Vec<String>>) -> Result<(), FieldError> {
    let Some(list) = list else { return Ok(()) };
    if list.is_empty() || list.len() > MAX_ENROLLMENT_SCOPE {
        return Err(FieldError::new(
            field,
            format!("must name 1 to {MAX_ENROLLMENT_SCOPE} entries (leave it out to allow any)"),
        ));
    }
    for (i, entry) in list.iter().enumerate() {
        check_name(&format!("{field}[{i}]"), entry)?;
    }
    Ok(())
}

async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewEnrollmentToken>,
) -> Result<(StatusCode, Json<CreatedEnrollmentToken>), ApiError> {
    caller.require_admin()?;
    check_name("name", &new.name)?;
    check_scope("task_types", &new.task_types)?;
    check_scope("labels", &new.labels)?;
    let now = now_us();
    // The same lifetimes as API tokens: seconds or `30d`, at most ten years.
    let lifetime = crate::accounts::parse_lifetime(&new.expires_in.clone().into())?;
    let expires_at_us = lifetime.map(|d| now.saturating_add(d.as_micros() as i64));
    let token = new_token();
    let prefix = token_prefix(&token);
    let view = state
        .store
        .create_enrollment_token(
            &NewEnrollment {
                name: &new.name,
                token_hash: &hash_token(&token),
                prefix: &prefix,
                task_types: new.task_types.as_deref(),
                labels: new.labels.as_deref(),
                created_by: &caller.0.name,
                expires_at_us,
            },
            now,
        )
        .await?;
    tracing::info!(token = %view.name, by = %caller.0.name, "enrollment token created");
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "enrollment_token.created",
        Some(format!("enrollment_token:{}", view.id)),
        serde_json::json!({
            "name": view.name, "prefix": view.prefix, "task_types": view.task_types,
            "labels": view.labels, "expires_at_us": view.expires_at_us,
        }),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedEnrollmentToken { token, view }),
    ))
}

/// Revokes the token: no agent can register with it any more, and the
/// agents that registered with it are revoked too (their tasks requeued),
/// since whoever holds a leaked token may be among them. Rotating is:
/// create a new token, restart the agents with it, revoke the old one.
async fn revoke(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let now = now_us();
    let agents = state
        .store
        .revoke_enrollment_token(id, now)
        .await
        .map_err(not_found(format!("enrollment token {id}")))?;
    for &agent in &agents {
        revoke_one(&state, &caller.0.name, agent, now).await?;
    }
    tracing::info!(token = id, agents = ?agents, by = %caller.0.name, "enrollment token revoked");
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "enrollment_token.revoked",
        Some(format!("enrollment_token:{id}")),
        serde_json::json!({ "agents_revoked": agents }),
    )
    .await;
    Ok(Json(
        serde_json::json!({ "id": id, "revoked": true, "agents_revoked": agents }),
    ))
}

/// Revokes one agent: its next call is refused, its tasks run elsewhere.
async fn revoke_agent(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let requeued = revoke_one(&state, &caller.0.name, id, now_us()).await?;
    tracing::info!(agent_id = id, requeued, by = %caller.0.name, "agent revoked");
    Ok(Json(
        serde_json::json!({ "id": id, "status": "revoked", "requeued": requeued }),
    ))
}

async fn revoke_one(state: &AppState, by: &str, agent_id: i64, now: i64) -> Result<u64, ApiError> {
    let sweep = state
        .store
        .revoke_agent(agent_id, now)
        .await
        .map_err(not_found(format!("agent {agent_id}")))?;
    crate::audit::record(
        &state.store,
        by,
        "agent.revoked",
        Some(crate::audit::agent_actor(agent_id)),
        serde_json::json!({ "requeued": sweep.tasks_requeued }),
    )
    .await;
    let mut change = Change::new()
        .wake()
        .event("agent", Some(agent_id), Some("revoked"));
    if !sweep.is_empty() {
        change = change.event("tasks", None, None);
    }
    let requeued = sweep.tasks_requeued;
    state.effects.after(change.advance(sweep.runs)).await;
    Ok(requeued)
}
