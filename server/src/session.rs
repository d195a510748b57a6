//! Dashboard sessions: a sign-in sets an HttpOnly session cookie (an
//! expiring API token of the user) and a readable CSRF cookie derived from
//! it. State-changing requests authenticated by the cookie must echo the
//! CSRF value in `X-CSRF-Token` (or the `csrf` form field), which a page on
//! another site cannot read. Sign-in works as a plain HTML form too, so the
//! page is usable before the wasm loads.

use axum::extract::{Query, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use drover_engine::store::{UserRecord, UserStore};
use drover_engine::time::now_us;
use drover_protocol::api::UserView;
use serde::{Deserialize, Serialize};

use crate::auth::{hash_token, new_token, Caller};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "drover_session";
pub const CSRF_COOKIE: &str = "drover_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of one cookie of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The CSRF value belonging to a session: derived, so nothing is stored.
pub fn csrf_of(session: &str) -> String {
    hash_token(&format!("csrf:{session}"))
}

/// Refuses a cookie-authenticated change that does not carry the session's CSRF value.
pub fn check_csrf(
    headers: &HeaderMap,
    session: &str,
    form_value: Option<&str>,
) -> Result<(), ApiError> {
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(form_value);
    match sent {
        Some(v) if v == csrf_of(session) => Ok(()),
        _ => Err(ApiError::Forbidden(
            "missing or wrong CSRF token (send the drover_csrf cookie's value in X-CSRF-Token)"
                .into(),
        )),
    }
}

/// The signed-in user of a request carrying a live session cookie.
pub async fn session_user(state: &AppState, headers: &HeaderMap) -> Option<UserView> {
    let session = cookie(headers, SESSION_COOKIE)?;
    state
        .store
        .user_by_token(&hash_token(session))
        .await
        .ok()
        .flatten()
}

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/session",
        post(sign_in_json).delete(sign_out_json).get(current),
    )
}

/// Plain-form sign-in and sign-out, outside `/api`.
pub fn form_router() -> Router<AppState> {
    Router::new()
        .route("/signin", post(sign_in_form))
        .route("/signout", post(sign_out_form))
}

/// Checks a name and password, with the per-name rate limit.
pub async fn authenticate(
    state: &AppState,
    name: &str,
    password: &str,
) -> Result<UserRecord, ApiError> {
    if !state.sign_in_limiter.allows(name) {
        return Err(ApiError::TooManyAttempts);
    }
    let record = state.store.user_by_name(name).await?;
    let ok = record
        .as_ref()
        .and_then(|r| r.password_hash.as_deref())
        .is_some_and(|h| crate::passwords::verify_password(password, h));
    match (ok, record) {
        (true, Some(record)) => {
            state.sign_in_limiter.succeeded(name);
            Ok(record)
        }
        _ => {
            state.sign_in_limiter.failed(name);
            tracing::warn!(user = %name, "failed sign-in");
            Err(ApiError::Unauthorized)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub name: String,
    pub password: String,
}

/// What the dashboard needs about its session.
#[derive(Serialize)]
struct SessionView {
    user: UserView,
    csrf_token: String,
}

/// Starts a session and returns the two cookies that carry it.
async fn start(
    state: &AppState,
    headers: &HeaderMap,
    user: &UserView,
) -> Result<(String, [HeaderValue; 2]), ApiError> {
    let token = new_token();
    let ttl = state.config.session_ttl;
    let now = now_us();
    state
        .store
        .start_session(
            user.id,
            &hash_token(&token),
            now + ttl.as_micros() as i64,
            now,
        )
        .await?;
    tracing::info!(user = %user.name, "signed in");
    let secure = served_over_https(headers);
    let cookies = session_cookies(&token, ttl.as_secs(), secure)?;
    Ok((token, cookies))
}

/// Behind a TLS-terminating proxy the request says so; then cookies are `Secure`.
fn served_over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn session_cookies(
    token: &str,
    max_age_secs: u64,
    secure: bool,
) -> Result<[HeaderValue; 2], ApiError> {
    let secure = if secure { "; Secure" } else { "" };
    let session = format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}"
    );
    let csrf = format!(
        "{CSRF_COOKIE}={}; Path=/; Max-Age={max_age_secs}; SameSite=Strict{secure}",
        csrf_of(token)
    );
    Ok([header_value(&session)?, header_value(&csrf)?])
}

fn cleared_cookies() -> [HeaderValue; 2] {
    [
        HeaderValue::from_static("drover_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"),
        HeaderValue::from_static("drover_csrf=; Path=/; Max-Age=0; SameSite=Strict"),
    ]
}

fn header_value(s: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(s).map_err(|_| ApiError::Forbidden("unusable cookie value".into()))
}

fn with_cookies(mut response: Response, cookies: [HeaderValue; 2]) -> Response {
    for c in cookies {
        response.headers_mut().append(SET_COOKIE, c);
    }
    response
}

/// `POST /api/v1/session`: sign in, get the cookies and the CSRF value.
async fn sign_in_json(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let record = authenticate(&state, &req.name, &req.password).await?;
    let (token, cookies) = start(&state, &headers, &record.user).await?;
    let body = SessionView {
        user: record.user,
        csrf_token: csrf_of(&token),
    };
    Ok(with_cookies(
        (StatusCode::CREATED, Json(body)).into_response(),
        cookies,
    ))
}

/// `GET /api/v1/session`: who is signed in (cookie or token).
async fn current(caller: Caller, headers: HeaderMap) -> Json<serde_json::Value> {
    let csrf = cookie(&headers, SESSION_COOKIE).map(csrf_of);
    Json(serde_json::json!({ "user": caller.0, "csrf_token": csrf }))
}

/// `DELETE /api/v1/session`: sign out (CSRF-checked by the `Caller` extractor).
async fn sign_out_json(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(session) = cookie(&headers, SESSION_COOKIE) {
        state.store.revoke_token(&hash_token(session)).await?;
    }
    tracing::info!(user = %caller.0.name, "signed out");
    Ok(with_cookies(
        StatusCode::NO_CONTENT.into_response(),
        cleared_cookies(),
    ))
}

#[derive(Deserialize)]
struct SignInForm {
    name: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct SignInQuery {
    #[serde(default)]
    next: Option<String>,
}

/// Only same-site paths are followed after signing in (no open redirect).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

/// `POST /signin` from the HTML form: on success a redirect to `next` with
/// the cookies, on failure back to the form with the reason.
async fn sign_in_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SignInQuery>,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = safe_next(form.next.as_deref().or(query.next.as_deref())).to_string();
    let failed = |reason: &str| {
        let q = serde_urlencoded::to_string([("error", reason), ("next", next.as_str())])
            .unwrap_or_default();
        Redirect::to(&format!("/signin?{q}")).into_response()
    };
    match authenticate(&state, form.name.trim(), &form.password).await {
        Ok(record) => match start(&state, &headers, &record.user).await {
            Ok((_, cookies)) => with_cookies(Redirect::to(&next).into_response(), cookies),
            Err(e) => e.into_response(),
        },
        Err(ApiError::TooManyAttempts) => failed("Too many failed attempts; wait a minute."),
        Err(ApiError::Unauthorized) => failed("Wrong name or password."),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct SignOutForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /signout` from the header's form.
async fn sign_out_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignOutForm>,
) -> Result<Response, ApiError> {
    if let Some(session) = cookie(&headers, SESSION_COOKIE) {
        check_csrf(&headers, session, form.csrf.as_deref())?;
        state.store.revoke_token(&hash_token(session)).await?;
    }
    Ok(with_cookies(
        Redirect::to("/signin").into_response(),
        cleared_cookies(),
    ))
}
