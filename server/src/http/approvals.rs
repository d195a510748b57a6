//! `/api/v1/approvals`: the approvers' inbox and their decisions.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_engine::store::{ApprovalRecord, RunStore, APPROVAL_PAGE};
use drover_engine::time::now_us;
use drover_engine::FieldError;
use drover_protocol::api::{Role, UserView};
use drover_protocol::workflow::{ApprovalList, ApprovalView, DecideApproval, Decision};
use serde::Deserialize;

use crate::error::ApiError;
use crate::http::auth::Caller;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::services::effects::Change;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/approvals", get(list))
        .route("/approvals/{id}", get(get_one))
        .route("/approvals/{id}/decision", post(decide))
}

/// Why `user` may not decide this approval, if they may not.
pub fn refusal(user: &UserView, approval: &ApprovalRecord) -> Option<String> {
    let a = &approval.view;
    if !user.role.can_approve() {
        return Some(format!(
            "{} is a {}; deciding approvals needs approver or admin",
            user.name,
            user.role.as_str()
        ));
    }
    let listed = a.approvers.users.contains(&user.name)
        || a.approvers.roles.iter().any(|r| r == user.role.as_str());
    if !listed && user.role != Role::Admin {
        return Some(format!("{} is not among this step's approvers", user.name));
    }
    if a.requested_by == user.name && !approval.allow_self {
        return Some(format!(
            "{} started this run and may not approve it (separation of duties)",
            user.name
        ));
    }
    None
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// `pending` (default), `approved`, `rejected`, `cancelled` or `all`.
    status: Option<String>,
    /// Only the ones the caller may decide (default for pending ones).
    mine: Option<bool>,
}

async fn list(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ApprovalList>, ApiError> {
    let status = q.status.unwrap_or_else(|| "pending".into());
    if !["pending", "approved", "rejected", "cancelled", "all"].contains(&status.as_str()) {
        return Err(
            FieldError::new("status", format!("unknown approval status {status:?}")).into(),
        );
    }
    let mine = q.mine.unwrap_or(status == "pending");
    let status = (status != "all").then_some(status.as_str());
    // The inbox filters by who may decide, which the query cannot: page
    // back through older approvals until a page is full or none are left,
    // so an approver whose approvals are older than the newest page of
    // others' still sees them.
    let mut approvals: Vec<ApprovalView> = Vec::new();
    let mut before = None;
    loop {
        let page = state.store.list_approvals(status, before).await?;
        let last_page = page.len() < APPROVAL_PAGE;
        before = page.last().map(|a| a.view.id);
        for record in page {
            if !mine || refusal(&caller.0, &record).is_none() {
                approvals.push(record.view);
            }
        }
        if !mine || last_page || approvals.len() >= APPROVAL_PAGE {
            break;
        }
    }
    approvals.truncate(APPROVAL_PAGE);
    Ok(Json(ApprovalList { approvals }))
}

async fn get_one(
    _caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<ApprovalView>, ApiError> {
    state
        .store
        .approval(id)
        .await?
        .map(|r| Json(r.view))
        .ok_or_else(|| ApiError::NotFound(format!("approval {id}")))
}

/// Approve or reject, with a comment. Recorded with who and when.
async fn decide(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    ApiJson(req): ApiJson<DecideApproval>,
) -> Result<Json<ApprovalView>, ApiError> {
    let record = state
        .store
        .approval(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("approval {id}")))?;
    if let Some(why) = refusal(&caller.0, &record) {
        return Err(ApiError::Forbidden(why));
    }
    if let Some(c) = &req.comment {
        if c.len() > 4000 {
            return Err(FieldError::new("comment", "at most 4000 characters").into());
        }
    }
    let approved = req.decision == Decision::Approve;
    let run_id = state
        .store
        .decide_approval(
            id,
            approved,
            &caller.0.name,
            req.comment.as_deref(),
            now_us(),
        )
        .await?;
    tracing::info!(approval = id, run_id, approved, by = %caller.0.name, "approval decided");
    // What exactly was approved: the definition's version and a digest of
    // the inputs the approver was shown.
    let version = state.store.get_run(run_id).await?.map(|r| r.run.version);
    let inputs = serde_json::to_string(&record.view.inputs).unwrap_or_default();
    crate::audit::record(
        &state.store,
        &caller.0.name,
        if approved {
            "approval.approved"
        } else {
            "approval.rejected"
        },
        Some(format!("approval:{id}")),
        serde_json::json!({
            "run_id": run_id, "step": record.view.step_id, "workflow": record.view.workflow,
            "version": version, "inputs_sha256": crate::tokens::hash_token(&inputs),
            "comment": req.comment,
        }),
    )
    .await;
    let status = if approved { "approved" } else { "rejected" };
    state
        .effects
        .after(
            Change::new()
                .event("approval", Some(id), Some(status))
                .advance([run_id]),
        )
        .await;
    state
        .store
        .approval(id)
        .await?
        .map(|r| Json(r.view))
        .ok_or_else(|| ApiError::NotFound(format!("approval {id}")))
}
