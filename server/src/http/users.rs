//! `/api/v1/users` and `/api/v1/tokens`: users, roles and API tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_engine::store::UserStore;
use drover_protocol::api::{NewUser, UserView, UserWithToken};
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::session::{authenticate, Credentials};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/me", get(me))
        .route("/tokens", post(sign_in))
}

async fn list(caller: Caller, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    Ok(Json(
        serde_json::json!({ "users": state.store.list_users().await? }),
    ))
}

async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserWithToken>), ApiError> {
    caller.require_admin()?;
    let created =
        crate::users::create(&state.store, &new.name, new.role, new.password.as_deref()).await?;
    tracing::info!(user = %created.user.name, role = created.user.role.as_str(), by = %caller.0.name, "user created");
    Ok((StatusCode::CREATED, Json(created)))
}

async fn me(caller: Caller) -> Json<UserView> {
    Json(caller.0)
}

/// Exchanges a name and password for a new API token (for the CLI).
async fn sign_in(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<UserWithToken>), ApiError> {
    let record = authenticate(&state, &req.name, &req.password).await?;
    let token = crate::cli::issue_token(&state.store, record.user.id, "sign-in").await?;
    Ok((
        StatusCode::CREATED,
        Json(UserWithToken {
            user: record.user,
            token,
        }),
    ))
}
