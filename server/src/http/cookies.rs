//! The dashboard's session cookies and the checks that go with them:
//! the CSRF value derived from the session, same-origin sign-ins, and the
//! `__Host-` names over HTTPS (see `session.rs` for the flow).

use axum::http::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

use crate::error::ApiError;
use crate::tokens::hash_token;

pub const SESSION_COOKIE: &str = "drover_session";
pub const CSRF_COOKIE: &str = "drover_csrf";
/// The names over HTTPS.
pub const SECURE_SESSION_COOKIE: &str = "__Host-drover_session";
pub const SECURE_CSRF_COOKIE: &str = "__Host-drover_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Largest body a sign-in route reads: a name and a password fit easily,
/// and nothing big is parsed before the caller is known.
pub const AUTH_BODY_LIMIT: usize = 4 * 1024;

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

/// The session token of the request. Over HTTPS only the `__Host-` name
/// counts: a plain-named cookie could have been planted by a sibling
/// subdomain or over plain HTTP (session fixation), which is what the
/// prefix rules out.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    if served_over_https(headers) {
        cookie(headers, SECURE_SESSION_COOKIE)
    } else {
        cookie(headers, SESSION_COOKIE)
    }
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

/// Refuses a sign-in posted by a page of another site (login CSRF: signing
/// the victim in as the attacker). Browsers say where a request comes from
/// in `Sec-Fetch-Site`; older ones only in `Origin`, compared with the host
/// the request was sent to. Requests with neither are not from a browser
/// page (the CLI, curl) and pass.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = || ApiError::Forbidden("sign-in from another site is refused".into());
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.to_str().unwrap_or("") {
            "same-origin" | "none" => Ok(()),
            _ => Err(refuse()),
        };
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, a)| a);
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(HOST))
        .and_then(|h| h.to_str().ok());
    match (authority, host) {
        (Some(a), Some(h)) if a.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(refuse()),
    }
}

/// Over HTTPS the request says so (`x-forwarded-proto`, set by a proxy or
/// the server's own TLS listener); then cookies are `Secure` and `__Host-`.
pub fn served_over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

pub fn session_cookies(
    token: &str,
    max_age_secs: u64,
    secure: bool,
) -> Result<[HeaderValue; 2], ApiError> {
    let (session_name, csrf_name, flag) = if secure {
        (SECURE_SESSION_COOKIE, SECURE_CSRF_COOKIE, "; Secure")
    } else {
        (SESSION_COOKIE, CSRF_COOKIE, "")
    };
    let session = format!(
        "{session_name}={token}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{flag}"
    );
    let csrf = format!(
        "{csrf_name}={}; Path=/; Max-Age={max_age_secs}; SameSite=Strict{flag}",
        csrf_of(token)
    );
    Ok([header_value(&session)?, header_value(&csrf)?])
}

/// Clears the cookies under the names this request used.
pub fn cleared_cookies(headers: &HeaderMap) -> Vec<HeaderValue> {
    let mut out = Vec::new();
    if cookie(headers, SECURE_SESSION_COOKIE).is_some() || served_over_https(headers) {
        out.push(HeaderValue::from_static(
            "__Host-drover_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure",
        ));
        out.push(HeaderValue::from_static(
            "__Host-drover_csrf=; Path=/; Max-Age=0; SameSite=Strict; Secure",
        ));
    }
    if cookie(headers, SESSION_COOKIE).is_some() || out.is_empty() {
        out.push(HeaderValue::from_static(
            "drover_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
        ));
        out.push(HeaderValue::from_static(
            "drover_csrf=; Path=/; Max-Age=0; SameSite=Strict",
        ));
    }
    out
}

pub fn header_value(s: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(s).map_err(|_| ApiError::Forbidden("unusable cookie value".into()))
}

pub fn with_cookies(
    mut response: Response,
    cookies: impl IntoIterator<Item = HeaderValue>,
) -> Response {
    for c in cookies {
        response.headers_mut().append(SET_COOKIE, c);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_sign_ins_are_refused() {
        let mut h = HeaderMap::new();
        assert!(check_same_origin(&h).is_ok(), "no browser headers: CLI");
        h.insert(HOST, HeaderValue::from_static("drover.local:8080"));
        h.insert(ORIGIN, HeaderValue::from_static("http://drover.local:8080"));
        assert!(check_same_origin(&h).is_ok());
        h.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(check_same_origin(&h).is_err());
        h.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(check_same_origin(&h).is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(check_same_origin(&h).is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(check_same_origin(&h).is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(check_same_origin(&h).is_ok());
    }

    #[test]
    fn over_https_only_the_host_prefixed_session_cookie_counts() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("drover_session=planted"));
        assert_eq!(session_token(&headers), Some("planted"), "plain HTTP");
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(session_token(&headers), None, "a planted plain cookie");
        headers.insert(
            COOKIE,
            HeaderValue::from_static("drover_session=planted; __Host-drover_session=real"),
        );
        assert_eq!(session_token(&headers), Some("real"));
    }
}
