//! `GET /api/v1/audit`: the audit log, newest first (admins only).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use drover_engine::store::{AuditFilter, AuditStore};
use drover_engine::FieldError;
use drover_protocol::credentials::AuditList;
use serde::Deserialize;

use crate::error::ApiError;
use crate::http::auth::Caller;
use crate::http::extract::ApiQuery;
use crate::state::AppState;

/// The largest page.
const MAX_LIMIT: i64 = 500;

pub fn router() -> Router<AppState> {
    Router::new().route("/audit", get(list))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Actions starting with this (`sign_in`, `agent.revoked`).
    action: Option<String>,
    actor: Option<String>,
    before_id: Option<i64>,
    limit: Option<i64>,
}

async fn list(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    caller.require_admin()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(FieldError::new("limit", format!("must be between 1 and {MAX_LIMIT}")).into());
    }
    for (field, value) in [("action", &q.action), ("actor", &q.actor)] {
        if value.as_ref().is_some_and(|v| v.len() > 200) {
            return Err(FieldError::new(field, "at most 200 characters").into());
        }
    }
    let entries = state
        .store
        .list_audit(&AuditFilter {
            action_prefix: q.action,
            actor: q.actor,
            before_id: q.before_id,
            limit,
        })
        .await?;
    let next_before_id = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditList {
        entries,
        next_before_id,
    }))
}
