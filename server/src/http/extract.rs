//! Request extractors that turn bad input into [`ApiError`]s naming the
//! field: the body is read with a size limit and deserialized with
//! `serde_path_to_error`, so `{"tasks":[{}, {"urgency":"x"}]}` is reported as
//! `tasks[1].urgency`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body of type `T`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Reads the body, mapping an over-limit body to 413.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadJson {
                message: rejection.body_text(),
                field: None,
            }
        }
    })
}

/// Deserializes JSON, naming the path of the first bad field. Text with a
/// NUL character (`\u0000`) is refused here, for every request: PostgreSQL
/// can store it neither in text nor in `jsonb`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if has_nul_escape(bytes) {
        let value: serde_json::Value = parse_json_as_is(bytes)?;
        refuse_nul(&value, "")?;
    }
    parse_json_as_is(bytes)
}

fn parse_json_as_is<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| bad_json(e, ""))
}

/// Whether the JSON text escapes a NUL (`\u0000` after an even run of
/// backslashes, so not a literal backslash followed by `u0000`). A raw
/// NUL byte is not valid JSON text, so this is the only way one arrives.
fn has_nul_escape(bytes: &[u8]) -> bool {
    const ESCAPE: &[u8] = b"\\u0000";
    bytes.windows(ESCAPE.len()).enumerate().any(|(at, w)| {
        w == ESCAPE
            && bytes[..at]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count()
                % 2
                == 0
    })
}

/// Refuses a value holding a NUL character in a key or a string, naming
/// where (below `prefix`).
pub fn refuse_nul(value: &serde_json::Value, prefix: &str) -> Result<(), ApiError> {
    match nul_at(value, prefix) {
        None => Ok(()),
        Some(path) => Err(ApiError::Invalid(drover_engine::FieldError::new(
            if path.is_empty() { "." } else { &path },
            "must not contain the NUL character (\\u0000)",
        ))),
    }
}

fn nul_at(value: &serde_json::Value, path: &str) -> Option<String> {
    match value {
        serde_json::Value::String(s) => s.contains('\0').then(|| path.to_string()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_at(v, &format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                Some(here)
            } else {
                nul_at(v, &here)
            }
        }),
        _ => None,
    }
}

/// Query parameters of type `T`. A bad one is answered like a bad JSON
/// field: a JSON body naming it (axum's own `Query` answers plain text).
/// A NUL character is refused for every parameter: PostgreSQL text cannot
/// hold one, and a search would reach the database with it.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or("")).map(ApiQuery)
    }
}

/// Deserializes `a=1&b=x`, naming the parameter that is wrong.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(query.as_bytes());
    if let Some((key, _)) = pairs
        .clone()
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(ApiError::Invalid(drover_engine::FieldError::new(
            key.replace('\0', "\\u0000"),
            "must not contain the NUL character (%00)",
        )));
    }
    let de = serde_urlencoded::Deserializer::new(pairs);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // Only an error about the whole query has no parameter to name.
        let field = if path == "." {
            "query".to_string()
        } else {
            path
        };
        ApiError::Invalid(drover_engine::FieldError::new(field, message))
    })
}

/// Deserializes an already parsed JSON value, naming the bad field's path
/// below `prefix`.
pub fn from_value<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| bad_json(e, prefix))
}

fn bad_json<E: std::fmt::Display>(e: serde_path_to_error::Error<E>, prefix: &str) -> ApiError {
    let path = e.path().to_string();
    let message = e.into_inner().to_string();
    let mut parts: Vec<String> = Vec::new();
    if !prefix.is_empty() {
        parts.push(prefix.to_string());
    }
    if path != "." && !path.is_empty() {
        parts.push(path);
    }
    // serde reports an unknown or missing field at its parent's path, with
    // the name in the message (``unknown field `foo` ``): lift it out.
    if message.starts_with("unknown field") || message.starts_with("missing field") {
        if let Some(name) = backquoted(&message) {
            // Some deserializers already put the key in the path.
            if parts.last().is_none_or(|last| !last.ends_with(name)) {
                parts.push(name.to_string());
            }
        }
    }
    let field = (!parts.is_empty()).then(|| parts.join("."));
    ApiError::BadJson { message, field }
}

fn backquoted(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Page {
        limit: Option<i64>,
        q: Option<String>,
    }

    #[test]
    fn a_bad_query_parameter_is_named() {
        use crate::error::ApiError;
        let field = |q: &str| match super::parse_query::<Page>(q) {
            Err(ApiError::Invalid(e)) => e.field,
            other => panic!("{q}: {other:?}"),
        };
        assert_eq!(field("limit=abc"), "limit");
        assert_eq!(field("q=a%00b"), "q");
        assert_eq!(field("sort=id"), "sort");
        let ok = super::parse_query::<Page>("limit=5&q=caf%C3%A9+au+lait").unwrap();
        assert_eq!((ok.limit, ok.q.as_deref()), (Some(5), Some("café au lait")));
    }

    use super::*;
    use drover_protocol::api::NewTaskBatch;

    fn field_of(json: &str) -> Option<String> {
        match parse_json::<NewTaskBatch>(json.as_bytes()) {
            Err(ApiError::BadJson { field, .. }) => field,
            other => panic!("expected a JSON error, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_nul_anywhere_is_refused_by_where_it_is_and_an_escaped_backslash_is_not_one() {
        let nul_in = |json: &str| match parse_json::<serde_json::Value>(json.as_bytes()) {
            Err(ApiError::Invalid(e)) => {
                assert!(e.message.contains("NUL"), "{}", e.message);
                Some(e.field)
            }
            Ok(_) => None,
            Err(other) => panic!("{other:?}"),
        };
        assert_eq!(
            nul_in(r#"{"tasks":[{"payload":{"a":"x\u0000y"}}]}"#).as_deref(),
            Some("tasks[0].payload.a")
        );
        assert_eq!(nul_in(r#"{"k\u0000":1}"#).as_deref(), Some("k\u{0}"));
        assert_eq!(nul_in(r#""\u0000""#).as_deref(), Some("."));
        // A literal backslash then "u0000", and an escaped one before a NUL.
        assert_eq!(nul_in(r#"{"a":"\\u0000"}"#), None);
        assert_eq!(nul_in(r#"{"a":"\\\u0000"}"#).as_deref(), Some("a"));
    }

    #[test]
    fn wrong_type_names_the_nested_field() {
        assert_eq!(
            field_of(r#"{"tasks":[{"task_type":"a"},{"task_type":"a","urgency":"high"}]}"#)
                .as_deref(),
            Some("tasks[1].urgency")
        );
    }

    #[test]
    fn unknown_field_is_named() {
        assert_eq!(
            field_of(r#"{"tasks":[{"task_type":"a","urgncy":3}]}"#).as_deref(),
            Some("tasks[0].urgncy")
        );
        assert_eq!(
            field_of(r#"{"tasks":[{"payload":1}]}"#).as_deref(),
            Some("tasks[0].task_type")
        );
    }
}
