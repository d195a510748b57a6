//! `/api/v1/rate-limits`: token buckets per task type (`type:<task type>`)
//! or concurrency key (`key:<key>`), kept in the database. Admins set and
//! remove them; anyone signed in reads them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use drover_engine::store::{RateLimitRow, RateLimitStore};
use drover_engine::time::now_us;
use drover_engine::FieldError;
use drover_protocol::api::{PutRateLimit, RateLimitList, RateLimitView, RatePeriod};
use drover_protocol::limits::{MAX_NAME_LEN, MAX_RATE_PER_SECOND};
use serde_json::json;

use crate::error::{not_found, ApiError};
use crate::http::auth::Caller;
use crate::http::extract::ApiJson;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rate-limits", get(list))
        .route("/rate-limits/{scope}", put(set).delete(remove))
}

fn view(r: RateLimitRow) -> RateLimitView {
    RateLimitView {
        scope: r.scope,
        per_second: r.per_second,
        burst: r.burst,
        held: r.held,
        created_by: r.created_by,
        created_at_us: r.created_at,
    }
}

async fn list(
    _caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<RateLimitList>, ApiError> {
    let rate_limits = state
        .store
        .rate_limits()
        .await?
        .into_iter()
        .map(view)
        .collect();
    Ok(Json(RateLimitList { rate_limits }))
}

/// `type:<task type>` or `key:<concurrency key>`.
fn check_scope(scope: &str) -> Result<(), FieldError> {
    let name = scope
        .strip_prefix("type:")
        .or_else(|| scope.strip_prefix("key:"));
    match name {
        Some(n)
            if !n.is_empty()
                && scope.len() <= 4 + 2 * MAX_NAME_LEN
                && !n.chars().any(char::is_control) =>
        {
            Ok(())
        }
        _ => Err(FieldError::new(
            "scope",
            format!("{scope:?} is not \"type:<task type>\" or \"key:<concurrency key>\""),
        )),
    }
}

async fn set(
    caller: Caller,
    State(state): State<AppState>,
    Path(scope): Path<String>,
    ApiJson(req): ApiJson<PutRateLimit>,
) -> Result<(StatusCode, Json<RateLimitView>), ApiError> {
    caller.require_admin()?;
    check_scope(&scope)?;
    let per_second = match req.per {
        RatePeriod::Second => req.rate,
        RatePeriod::Minute => req.rate / 60.0,
    };
    if !(req.rate.is_finite() && req.rate > 0.0 && per_second <= MAX_RATE_PER_SECOND) {
        return Err(FieldError::new(
            "rate",
            format!("must be above 0 and at most {MAX_RATE_PER_SECOND} a second"),
        )
        .into());
    }
    let burst = req.burst.unwrap_or(1);
    if !(1..=MAX_RATE_PER_SECOND as i64).contains(&burst) {
        return Err(FieldError::new(
            "burst",
            format!("must be between 1 and {}", MAX_RATE_PER_SECOND as i64),
        )
        .into());
    }
    let row = state
        .store
        .put_rate_limit(&scope, per_second, burst, &caller.0.name, now_us())
        .await?;
    tracing::info!(%scope, per_second, burst, by = %caller.0.name, "rate limit set");
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "rate_limit.set",
        Some(format!("rate_limit:{scope}")),
        json!({ "per_second": per_second, "burst": burst }),
    )
    .await;
    Ok((StatusCode::OK, Json(view(row))))
}

/// Removes a limit; the tasks it held are released at once.
async fn remove(
    caller: Caller,
    State(state): State<AppState>,
    Path(scope): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    state
        .store
        .delete_rate_limit(&scope)
        .await
        .map_err(not_found(format!("rate limit {scope:?}")))?;
    state
        .effects
        .after(crate::services::effects::Change::new().wake())
        .await;
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "rate_limit.deleted",
        Some(format!("rate_limit:{scope}")),
        serde_json::Value::Null,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
