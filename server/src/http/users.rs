//! `/api/v1/users` and `/api/v1/tokens`: users, roles, passwords and API tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, put};
use axum::{Json, Router};
use drover_engine::store::{ApiToken, UserChange, UserStore};
use drover_engine::time::now_us;
use drover_protocol::api::{NewUser, Role, UserView, UserWithToken};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower_http::limit::RequestBodyLimitLayer;

use crate::error::ApiError;
use crate::http::auth::Caller;
use crate::http::cookies::{check_same_origin, AUTH_BODY_LIMIT};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::session::{authenticate, ClientAddr};
use crate::state::AppState;

/// Tokens made by exchanging a password (`drover login`) last this long
/// unless the request says otherwise.
const SIGN_IN_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30 * 86400);

pub fn router() -> Router<AppState> {
    let auth = Router::new()
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/users/{name}/password", put(change_password))
        .layer(RequestBodyLimitLayer::new(AUTH_BODY_LIMIT));
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{name}", patch(update))
        .route("/me", get(me))
        .route("/tokens/{id}", delete(revoke_token))
        .merge(auth)
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
        crate::accounts::create(&state.store, &new.name, new.role, new.password.as_deref()).await?;
    tracing::info!(user = %created.user.name, role = created.user.role.as_str(), by = %caller.0.name, "user created");
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "user.created",
        Some(format!("user:{}", created.user.name)),
        serde_json::json!({ "role": created.user.role.as_str() }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn me(caller: Caller) -> Json<UserView> {
    Json(caller.0)
}

/// `PATCH /api/v1/users/{name}`: an admin changes a role or disables/enables.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserUpdate {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    disabled: Option<bool>,
}

async fn update(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UserUpdate>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let mut user = crate::accounts::find(&state.store, &name).await?;
    if let Some(role) = req.role {
        user = crate::accounts::change(&state.store, &name, UserChange::Role(role)).await?;
        state.auth_cache.clear();
        tracing::info!(user = %name, role = role.as_str(), by = %caller.0.name, "role changed");
        crate::audit::record(
            &state.store,
            &caller.0.name,
            "user.role_changed",
            Some(format!("user:{name}")),
            serde_json::json!({ "role": role.as_str() }),
        )
        .await;
    }
    if let Some(disabled) = req.disabled {
        user = crate::accounts::change(&state.store, &name, UserChange::Disabled(disabled)).await?;
        state.auth_cache.clear();
        tracing::info!(user = %name, disabled, by = %caller.0.name, "user enabled/disabled");
        let action = if disabled {
            "user.disabled"
        } else {
            "user.enabled"
        };
        crate::audit::record(
            &state.store,
            &caller.0.name,
            action,
            Some(format!("user:{name}")),
            Value::Null,
        )
        .await;
    }
    let disabled = state
        .store
        .user_by_name(&name)
        .await?
        .is_some_and(|r| r.disabled);
    Ok(Json(
        serde_json::json!({ "user": user, "disabled": disabled }),
    ))
}

/// `PUT /api/v1/users/{name}/password`: yourself with your old password, or
/// an admin for anyone else. The user's sessions end.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    password: String,
    #[serde(default)]
    old_password: Option<String>,
}

async fn change_password(
    caller: Caller,
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let user = if caller.0.name == name {
        let old = req.old_password.as_deref().ok_or_else(|| {
            ApiError::from(drover_engine::FieldError::new(
                "old_password",
                "required to change your own password",
            ))
        })?;
        authenticate(&state, addr, &name, old).await?.user
    } else {
        caller.require_admin()?;
        crate::accounts::find(&state.store, &name).await?
    };
    crate::accounts::set_password(&state.store, user.id, &req.password).await?;
    state.auth_cache.clear();
    tracing::info!(user = %name, by = %caller.0.name, "password changed");
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "user.password_changed",
        Some(format!("user:{name}")),
        Value::Null,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct TokenQuery {
    /// Admins: every user's tokens.
    #[serde(default)]
    all: bool,
}

/// `GET /api/v1/tokens`: your API tokens (prefix only); `?all=true` for an
/// admin lists everyone's.
async fn list_tokens(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<Json<Value>, ApiError> {
    let user = if q.all {
        caller.require_admin()?;
        None
    } else {
        Some(caller.0.id)
    };
    let tokens = state.store.list_api_tokens(user).await?;
    Ok(Json(serde_json::json!({ "tokens": tokens })))
}

/// `POST /api/v1/tokens`: a new named API token. Either signed in (bearer
/// token or session) — the token is yours — or, for `drover login`, with
/// `user` and `password` in the body, which go through the same checks
/// and limits as any sign-in.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTokenRequest {
    #[serde(default)]
    name: Option<String>,
    /// Seconds, or a duration such as `"30d"`; none: no expiry (signed in)
    /// or 30 days (password exchange).
    #[serde(default)]
    expires_in: Value,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct CreatedToken {
    /// The token itself: shown this once.
    token: String,
    user: UserView,
    #[serde(flatten)]
    info: ApiToken,
}

async fn create_token(
    caller: Result<Caller, ApiError>,
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<NewTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let lifetime = crate::accounts::parse_lifetime(&req.expires_in)?;
    // Older CLIs sent `{name: <user>, password}`: with a password and no
    // `user`, `name` is the user's name and the token gets the default name.
    let (user_name, token_name) = match (&req.user, &req.password) {
        (None, Some(_)) => (req.name.as_ref(), None),
        _ => (req.user.as_ref(), req.name.as_deref()),
    };
    let mut cap = None;
    let (user, lifetime, default_name) = match (user_name, &req.password) {
        (Some(name), Some(password)) => {
            check_same_origin(&headers)?;
            let record = authenticate(&state, addr, name, password).await?;
            (
                record.user,
                lifetime.or(Some(SIGN_IN_TOKEN_LIFETIME)),
                "sign-in",
            )
        }
        (None, None) => {
            // A token minted with a token lives no longer than that one:
            // a stolen short-lived session cannot turn into a permanent key.
            let caller = caller?;
            cap = caller.1.expires_at_us;
            (caller.0, lifetime, "api")
        }
        _ => {
            return Err(drover_engine::FieldError::new(
                "password",
                "give user and password, or neither (then sign in first)",
            )
            .into())
        }
    };
    let name = token_name.unwrap_or(default_name);
    let lifetime = crate::accounts::Lifetime {
        length: lifetime,
        not_after_us: cap,
    };
    let (token, id) = crate::accounts::issue_token(&state.store, user.id, name, lifetime).await?;
    let info = state
        .store
        .api_token(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("token {id}")))?;
    tracing::info!(user = %user.name, token = id, "API token created");
    crate::audit::record(&state.store,
        &user.name,
        "api_token.created",
        Some(format!("api_token:{id}")),
        serde_json::json!({ "name": name, "prefix": info.prefix, "expires_at_us": info.expires_at_us }),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken { token, user, info }),
    ))
}

/// `DELETE /api/v1/tokens/{id}`: revokes one of your tokens (an admin: anyone's).
async fn revoke_token(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let token = state
        .store
        .api_token(id)
        .await?
        .filter(|t| t.user_id == caller.0.id || caller.0.role == Role::Admin)
        .ok_or_else(|| ApiError::NotFound(format!("token {id}")))?;
    state.store.revoke_api_token(token.id, now_us()).await?;
    state.auth_cache.clear();
    tracing::info!(token = id, owner = %token.user_name, by = %caller.0.name, "API token revoked");
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "api_token.revoked",
        Some(format!("api_token:{id}")),
        serde_json::json!({ "owner": token.user_name }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
