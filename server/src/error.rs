//! The API's error type. Every handler returns `Result<_, ApiError>`, so
//! status codes and the JSON error body are decided here and nowhere else.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use drover_engine::{FieldError, StoreError};
use drover_protocol::{ErrorBody, ErrorDetail, FieldMessage};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// Several fields at fault: the first leads (with the count of the
    /// others in its message, for clients that read only it), and all are
    /// listed in the body's `errors`.
    #[error("{}", .0[0])]
    InvalidMany(Vec<FieldError>),
    #[error("malformed JSON: {message}")]
    BadJson {
        message: String,
        field: Option<String>,
    },
    #[error("request body too large")]
    TooLarge,
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("too many failed attempts; try again in a minute")]
    TooManyAttempts,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("resource".into()),
            StoreError::Conflict(msg) => ApiError::Conflict(msg),
            StoreError::Revoked(msg) => ApiError::Forbidden(msg),
            other => ApiError::Store(other),
        }
    }
}

/// Maps a store's `NotFound` to a 404 that names what was missing
/// (`task 7`); other store errors map as usual.
pub fn not_found(what: String) -> impl FnOnce(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound(what),
        other => other.into(),
    }
}

impl ApiError {
    /// Every field error at once (a definition or a run's inputs can have
    /// many problems): one is an `Invalid`, several an `InvalidMany`.
    pub fn invalid_all(mut errors: Vec<FieldError>) -> Self {
        match errors.len() {
            0 => ApiError::BadJson {
                message: "invalid".into(),
                field: None,
            },
            1 => ApiError::Invalid(errors.remove(0)),
            _ => ApiError::InvalidMany(errors),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, Option<String>) {
        match self {
            ApiError::Invalid(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                Some(e.field.clone()),
            ),
            ApiError::InvalidMany(all) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                Some(all[0].field.clone()),
            ),
            ApiError::BadJson { field, .. } => (StatusCode::BAD_REQUEST, "bad_json", field.clone()),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::TooManyAttempts => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            ApiError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        let message = match &self {
            ApiError::Invalid(e) => e.message.clone(),
            ApiError::InvalidMany(all) => {
                let rest: Vec<String> = all[1..].iter().map(|e| e.to_string()).collect();
                format!(
                    "{} (and {} more: {})",
                    all[0].message,
                    rest.len(),
                    rest.join("; ")
                )
            }
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                "internal error; see the server log".to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                field,
                errors: match self {
                    ApiError::InvalidMany(all) => all
                        .into_iter()
                        .map(|e| FieldMessage {
                            field: e.field,
                            message: e.message,
                        })
                        .collect(),
                    _ => Vec::new(),
                },
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Most bytes of a plain-text refusal kept as the JSON error's message.
const MAX_PLAIN_REFUSAL: usize = 4096;

/// Every refusal of the API is the JSON error body. axum answers what no
/// handler saw in plain text — a path segment that is not a number, a
/// query or form that does not parse, a method a route lacks, a body past
/// the limit — so those are rewritten here, in one place, with the text as
/// the message and their headers (`Allow`, `WWW-Authenticate`) kept.
pub async fn json_refusals(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_REFUSAL)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("refused")
            .to_lowercase()
    } else {
        text
    };
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_field",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message,
            field: None,
            errors: Vec::new(),
        },
    };
    let mut out = (status, Json(body)).into_response();
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
