//! The REST API as the pages call it. In the browser that is HTTP with the
//! session cookie (and the CSRF value on changes); while the server renders
//! a page it is the API router called in-process with the visitor's
//! cookies. Either way the same handlers check the same permissions.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A failed call: the HTTP status and the API's message (and the field it
/// names, for forms; `errors` has every field's, when the server found
/// several at once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiFailure {
    pub status: u16,
    pub message: String,
    pub field: Option<String>,
    /// Each field at fault and what is wrong with it, in the server's order.
    #[serde(default)]
    pub errors: Vec<(String, String)>,
}

impl ApiFailure {
    fn transport(message: impl Into<String>) -> Self {
        Self {
            status: 0,
            message: message.into(),
            field: None,
            errors: Vec::new(),
        }
    }

    /// What is wrong with `field`: its entry among several errors, or the
    /// one error when it names that field.
    pub fn message_for(&self, field: &str) -> Option<String> {
        self.errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.clone())
            .or_else(|| {
                (self.errors.is_empty() && self.field.as_deref() == Some(field))
                    .then(|| self.message.clone())
            })
    }
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type ApiResult<T> = Result<T, ApiFailure>;

/// `GET /api/v1{path}`, as the JSON text. Resources hold this and views
/// [`parse`] it: one resource type for every page keeps the reactive
/// machinery from being compiled once per data type (and the wasm small).
pub async fn fetch(path: &str) -> ApiResult<String> {
    let (status, body) = call("GET", path, None, JSON).await?;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        decode::<()>(status, &body).map(|_| body)
    }
}

/// A fetched JSON text as `T`.
pub fn parse<T: DeserializeOwned>(fetched: ApiResult<String>) -> ApiResult<T> {
    fetched.and_then(|body| decode(200, &body))
}

/// `POST /api/v1{path}` with a JSON body.
pub async fn post<T: DeserializeOwned>(path: &str, body: &Value) -> ApiResult<T> {
    let (status, text) = call("POST", path, Some(body.to_string()), JSON).await?;
    decode(status, &text)
}

/// `PATCH /api/v1{path}` with a JSON body.
pub async fn patch<T: DeserializeOwned>(path: &str, body: &Value) -> ApiResult<T> {
    let (status, text) = call("PATCH", path, Some(body.to_string()), JSON).await?;
    decode(status, &text)
}

/// `DELETE /api/v1{path}`.
pub async fn delete<T: DeserializeOwned>(path: &str) -> ApiResult<T> {
    let (status, text) = call("DELETE", path, None, JSON).await?;
    decode(status, &text)
}

/// `POST /api/v1{path}` with a text body (a YAML or JSON document).
pub async fn post_text<T: DeserializeOwned>(path: &str, body: String) -> ApiResult<T> {
    let (status, text) = call("POST", path, Some(body), "text/plain; charset=utf-8").await?;
    decode(status, &text)
}

const JSON: &str = "application/json";

fn decode<T: DeserializeOwned>(status: u16, body: &str) -> ApiResult<T> {
    if (200..300).contains(&status) {
        let body = if body.is_empty() { "null" } else { body };
        return serde_json::from_str(body)
            .map_err(|e| ApiFailure::transport(format!("unexpected answer from the server: {e}")));
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        error: ErrorDetail,
    }
    #[derive(Deserialize)]
    struct ErrorDetail {
        message: String,
        field: Option<String>,
        #[serde(default)]
        errors: Vec<FieldMessage>,
    }
    #[derive(Deserialize)]
    struct FieldMessage {
        field: String,
        message: String,
    }
    Err(match serde_json::from_str::<ErrorBody>(body) {
        Ok(e) => ApiFailure {
            status,
            message: e.error.message,
            field: e.error.field,
            errors: e
                .error
                .errors
                .into_iter()
                .map(|e| (e.field, e.message))
                .collect(),
        },
        Err(_) => ApiFailure {
            status,
            message: format!("the server answered {status}"),
            field: None,
            errors: Vec::new(),
        },
    })
}

#[cfg(feature = "ssr")]
pub use in_process::InProcessApi;

#[cfg(feature = "ssr")]
mod in_process {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    /// The API router, callable while rendering (provided by the server).
    type Call = dyn Fn(
            http::Request<String>,
        ) -> Pin<Box<dyn Future<Output = Result<(u16, String), String>> + Send>>
        + Send
        + Sync;

    #[derive(Clone)]
    pub struct InProcessApi(pub Arc<Call>);
}

#[cfg(feature = "ssr")]
async fn call(
    method: &str,
    path: &str,
    body: Option<String>,
    content_type: &str,
) -> ApiResult<(u16, String)> {
    use leptos::prelude::use_context;
    let api = use_context::<InProcessApi>()
        .ok_or_else(|| ApiFailure::transport("no API in this render"))?;
    let cookie = use_context::<http::request::Parts>()
        .and_then(|p| p.headers.get(http::header::COOKIE).cloned());
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("/api/v1{path}"))
        .header(http::header::CONTENT_TYPE, content_type);
    if let Some(cookie) = cookie {
        request = request.header(http::header::COOKIE, cookie);
    }
    let request = request
        .body(body.unwrap_or_default())
        .map_err(|e| ApiFailure::transport(e.to_string()))?;
    (api.0)(request).await.map_err(ApiFailure::transport)
}

#[cfg(all(feature = "hydrate", not(feature = "ssr")))]
async fn call(
    method: &str,
    path: &str,
    body: Option<String>,
    content_type: &str,
) -> ApiResult<(u16, String)> {
    let url = format!("/api/v1{path}");
    let method = method.to_string();
    let content_type = content_type.to_string();
    // Browser futures are not `Send`; they only ever run on the page's one thread.
    send_wrapper::SendWrapper::new(async move {
        let builder = match method.as_str() {
            "POST" => gloo_net::http::Request::post(&url),
            "PATCH" => gloo_net::http::Request::patch(&url),
            "DELETE" => gloo_net::http::Request::delete(&url),
            _ => gloo_net::http::Request::get(&url),
        };
        let builder = match crate::browser::csrf_token() {
            Some(token) => builder.header("X-CSRF-Token", &token),
            None => builder,
        };
        let response = match body {
            Some(body) => {
                builder
                    .header("Content-Type", &content_type)
                    .body(body)
                    .map_err(|e| ApiFailure::transport(e.to_string()))?
                    .send()
                    .await
            }
            None => builder.send().await,
        }
        .map_err(|e| {
            crate::browser::server_unreachable();
            ApiFailure::transport(format!("cannot reach the server: {e}"))
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status == 401 {
            crate::browser::go_to_sign_in();
        }
        Ok((status, text))
    })
    .await
}

#[cfg(not(any(feature = "ssr", feature = "hydrate")))]
async fn call(
    _method: &str,
    _path: &str,
    _body: Option<String>,
    _content_type: &str,
) -> ApiResult<(u16, String)> {
    Err(ApiFailure::transport("built without ssr or hydrate"))
}

/// Percent-encodes a query value or path segment.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
