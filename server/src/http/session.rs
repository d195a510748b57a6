//! Dashboard sessions: a sign-in sets an HttpOnly session cookie (an
//! expiring API token of the user) and a readable CSRF cookie derived from
//! it. State-changing requests authenticated by the cookie must echo the
//! CSRF value in `X-CSRF-Token` (or the `csrf` form field), which a page on
//! another site cannot read. Sign-in works as a plain HTML form too, so the
//! page is usable before the wasm loads.
//!
//! Over HTTPS (the request carries `x-forwarded-proto: https`, set by a
//! proxy or by the server's own TLS listener) the cookies are `Secure` and
//! named with the `__Host-` prefix, which a browser only accepts from a
//! secure origin for the whole host: a sibling subdomain or a plain-HTTP
//! man in the middle cannot plant one.
//!
//! Signing in is hardened in [`authenticate`]: names are checked before
//! anything else sees them, attempts are admitted and counted by the
//! limiter before any await, and Argon2 runs off the async workers.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use drover_engine::domain::check_name;
use drover_engine::store::{UserRecord, UserStore};
use drover_engine::time::now_us;
use drover_engine::FieldError;
use drover_protocol::api::UserView;
use serde::{Deserialize, Serialize};
use tower_http::limit::RequestBodyLimitLayer;

use super::auth::Caller;
use super::cookies::{
    check_csrf, check_same_origin, cleared_cookies, csrf_of, served_over_https, session_cookies,
    session_token, with_cookies, AUTH_BODY_LIMIT,
};
use super::extract::ApiJson;
use crate::error::ApiError;
use crate::ratelimit::Admission;
use crate::state::AppState;
use crate::tokens::{hash_token, new_token};

/// The signed-in user of a request carrying a live session cookie.
pub async fn session_user(state: &AppState, headers: &HeaderMap) -> Option<UserView> {
    let session = session_token(headers)?;
    state
        .store
        .user_by_token(&hash_token(session), now_us())
        .await
        .ok()
        .flatten()
        .map(|found| found.user)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/session",
            post(sign_in_json).delete(sign_out_json).get(current),
        )
        .layer(RequestBodyLimitLayer::new(AUTH_BODY_LIMIT))
}

/// Plain-form sign-in and sign-out, outside `/api`.
pub fn form_router() -> Router<AppState> {
    Router::new()
        .route("/signin", post(sign_in_form))
        .route("/signout", post(sign_out_form))
        .layer(RequestBodyLimitLayer::new(AUTH_BODY_LIMIT))
}

/// The client's address, when the server was reached over a socket (not
/// for in-process calls). Behind a proxy listed in `DROVER_TRUSTED_PROXIES`
/// it is taken from `X-Forwarded-For`; behind any other proxy it is the
/// proxy's address.
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<crate::tls::PeerAddr>>()
            .map(|c| c.0 .0.ip());
        Ok(ClientAddr(peer.map(|p| {
            client_behind(p, &parts.headers, &state.config.trusted_proxies)
        })))
    }
}

/// The rightmost `X-Forwarded-For` address that is not a trusted proxy,
/// when the peer is one (addresses further left are the client's word).
fn client_behind(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    hops.into_iter()
        .rev()
        .map_while(|hop| hop.trim().parse::<IpAddr>().ok())
        .find(|hop| !trusted.contains(hop))
        .unwrap_or(peer)
}

/// Checks a name and password. In this order, so that nothing expensive
/// or shared is reached by a request that should not reach it: the name's
/// shape (before the limiter, the database and the log see it), the
/// limiter (which counts the attempt before any await), the lookup, then
/// Argon2 on the blocking pool — against a dummy hash for unknown names,
/// so they take as long as known ones.
pub async fn authenticate(
    state: &AppState,
    addr: Option<IpAddr>,
    name: &str,
    password: &str,
) -> Result<UserRecord, ApiError> {
    check_name("name", name)?;
    if password.len() > crate::passwords::MAX_PASSWORD_LEN {
        return Err(FieldError::new(
            "password",
            format!(
                "must be at most {} bytes",
                crate::passwords::MAX_PASSWORD_LEN
            ),
        )
        .into());
    }
    if let Admission::Wait(wait) = state.sign_in_limiter.admit(addr, name) {
        tracing::warn!(user = %name, ?addr, ?wait, "sign-in refused by the rate limit");
        return Err(ApiError::TooManyAttempts);
    }
    let record = state.store.user_by_name(name).await?;
    let hash = record.as_ref().and_then(|r| r.password_hash.as_deref());
    let ok = crate::passwords::verify_off_thread(password, hash).await;
    match record {
        Some(record) if ok => {
            state.sign_in_limiter.succeeded(addr, name);
            if record.disabled {
                tracing::warn!(user = %name, "sign-in of a disabled user refused");
                audit_sign_in(state, name, "sign_in.refused", addr, "the user is disabled").await;
                return Err(ApiError::Forbidden("this user is disabled".into()));
            }
            audit_sign_in(state, name, "sign_in.succeeded", addr, "").await;
            Ok(record)
        }
        _ => {
            tracing::warn!(user = %name, ?addr, "failed sign-in");
            audit_sign_in(
                state,
                name,
                "sign_in.failed",
                addr,
                "wrong name or password",
            )
            .await;
            Err(ApiError::Unauthorized)
        }
    }
}

/// A checked password, written to the audit log under the name tried
/// (already known to be a well-formed name). Attempts the limiter refused
/// are only counted: a flood must not fill the log.
async fn audit_sign_in(
    state: &AppState,
    name: &str,
    action: &str,
    addr: Option<IpAddr>,
    reason: &str,
) {
    let mut detail = serde_json::json!({ "address": addr.map(|a| a.to_string()) });
    if !reason.is_empty() {
        detail["reason"] = reason.into();
    }
    crate::audit::record(
        &state.store,
        name,
        action,
        Some(format!("user:{name}")),
        detail,
    )
    .await;
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
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

/// `POST /api/v1/session`: sign in, get the cookies and the CSRF value.
async fn sign_in_json(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiJson(req): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    check_same_origin(&headers)?;
    let record = authenticate(&state, addr, &req.name, &req.password).await?;
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
    let csrf = session_token(&headers).map(csrf_of);
    Json(serde_json::json!({ "user": caller.0, "csrf_token": csrf }))
}

/// `DELETE /api/v1/session`: sign out (CSRF-checked by the `Caller` extractor).
async fn sign_out_json(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(session) = session_token(&headers) {
        state.store.end_session(&hash_token(session)).await?;
        state.auth_cache.clear();
    }
    tracing::info!(user = %caller.0.name, "signed out");
    Ok(with_cookies(
        StatusCode::NO_CONTENT.into_response(),
        cleared_cookies(&headers),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct SignInForm {
    name: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct SignInQuery {
    #[serde(default)]
    next: Option<String>,
}

/// Only same-site paths are followed after signing in (no open redirect).
///
/// Browsers drop tabs and newlines from URLs and treat `\` like `/`, so
/// `/\t/evil.example` or `/\evil` would become `//evil…`, another host.
/// A path is followed only if it is one `/` and then something that is not
/// `/` or `\`, has no control characters or backslashes, and stays so once
/// percent-decoded.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if is_local_path(n)
                && is_local_path(&percent_decoded(n))
                && n.parse::<axum::http::uri::PathAndQuery>().is_ok() =>
        {
            n
        }
        _ => "/",
    }
}

fn is_local_path(p: &str) -> bool {
    let bytes = p.as_bytes();
    bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && !p.chars().any(|c| c.is_control() || c == '\\')
}

/// `%XX` sequences decoded (bytes that do not form UTF-8 become U+FFFD).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The codes the sign-in page knows how to explain (`app/src/pages/signin.rs`).
fn error_code(e: &ApiError) -> &'static str {
    match e {
        ApiError::TooManyAttempts => "too_many_attempts",
        ApiError::Unauthorized => "bad_credentials",
        ApiError::Invalid(_) => "bad_credentials",
        ApiError::Forbidden(_) => "refused",
        _ => "unavailable",
    }
}

/// `POST /signin` from the HTML form: on success a redirect to `next` with
/// the cookies, on failure back to the form with an error code.
async fn sign_in_form(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Query(query): Query<SignInQuery>,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = safe_next(form.next.as_deref().or(query.next.as_deref())).to_string();
    // The name goes back to the form, so only the password is typed again;
    // one longer than any user's is not (it would only make the redirect's
    // URL as long as the form body allows).
    let name = Some(form.name.trim())
        .filter(|n| n.len() <= drover_protocol::limits::MAX_NAME_LEN)
        .unwrap_or("");
    let failed = |code: &str| {
        let q =
            serde_urlencoded::to_string([("error", code), ("name", name), ("next", next.as_str())])
                .unwrap_or_default();
        Redirect::to(&format!("/signin?{q}")).into_response()
    };
    if let Err(e) = check_same_origin(&headers) {
        return e.into_response();
    }
    match authenticate(&state, addr, form.name.trim(), &form.password).await {
        Ok(record) => match start(&state, &headers, &record.user).await {
            Ok((_, cookies)) => with_cookies(Redirect::to(&next).into_response(), cookies),
            Err(e) => failed(error_code(&e)),
        },
        Err(e) => failed(error_code(&e)),
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct SignOutForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /signout` from the header's form.
async fn sign_out_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignOutForm>,
) -> Result<Response, ApiError> {
    if let Some(session) = session_token(&headers) {
        check_csrf(&headers, session, form.csrf.as_deref())?;
        state.store.end_session(&hash_token(session)).await?;
        state.auth_cache.clear();
    }
    Ok(with_cookies(
        Redirect::to("/signin").into_response(),
        cleared_cookies(&headers),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        for good in ["/", "/tasks", "/tasks?status=queued", "/runs/7#x", "/a%20b"] {
            assert_eq!(safe_next(Some(good)), good);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/%09/evil.example",
            "/\t/evil.example",
            "/%5Cevil.example",
            "/%2F/evil.example",
            "/ok\nLocation: x",
            "https://evil.example",
            "evil",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 2.2.2.2, 10.0.0.2"),
        );
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(client_behind(ip("10.0.0.1"), &h, &trusted), ip("2.2.2.2"));
        assert_eq!(
            client_behind(ip("9.9.9.9"), &h, &trusted),
            ip("9.9.9.9"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client_behind(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("nonsense, 3.3.3.3"),
        );
        assert_eq!(client_behind(ip("10.0.0.1"), &h, &trusted), ip("3.3.3.3"));
    }
}
