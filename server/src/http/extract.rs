//! Request extractors that turn bad input into [`ApiError`]s naming the
//! field: the body is read with a size limit and deserialized with
//! `serde_path_to_error`, so `{"tasks":[{}, {"urgency":"x"}]}` is reported as
//! `tasks[1].urgency`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
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

/// Deserializes JSON, naming the path of the first bad field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| bad_json(e, ""))
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
    use super::*;
    use drover_protocol::api::NewTaskBatch;

    fn field_of(json: &str) -> Option<String> {
        match parse_json::<NewTaskBatch>(json.as_bytes()) {
            Err(ApiError::BadJson { field, .. }) => field,
            other => panic!("expected a JSON error, got {:?}", other.map(|_| ())),
        }
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
