//! What an agent's credentials allow: the task types and labels an
//! enrollment token permits, and the agent's own key that lets a restarted
//! agent prove it is the same one.

use drover_engine::domain::AgentSpec;
use drover_engine::FieldError;
use drover_protocol::credentials::EnrollmentTokenView;
use drover_protocol::limits::{MAX_AGENT_KEY_LEN, MIN_AGENT_KEY_LEN};

use crate::error::ApiError;
use crate::tokens::hash_token;

/// Refuses a registration for task types or labels the enrollment token
/// does not allow: a token handed to the image-resizing hosts cannot be
/// used to take deploy jobs.
pub fn check_enrollment_scope(
    enrollment: &EnrollmentTokenView,
    spec: &AgentSpec,
) -> Result<(), ApiError> {
    let outside = |allowed: &Option<Vec<String>>, asked: &[String]| -> Option<String> {
        let allowed = allowed.as_ref()?;
        asked.iter().find(|a| !allowed.contains(a)).cloned()
    };
    if let Some(t) = outside(&enrollment.task_types, &spec.task_types) {
        return Err(ApiError::Forbidden(format!(
            "enrollment token {:?} does not allow task type {t:?}",
            enrollment.name
        )));
    }
    if let Some(l) = outside(&enrollment.labels, &spec.labels) {
        return Err(ApiError::Forbidden(format!(
            "enrollment token {:?} does not allow label {l:?}",
            enrollment.name
        )));
    }
    Ok(())
}

/// Checks the shape of an agent's key and returns what is stored of it.
pub fn agent_key_hash(key: &str) -> Result<String, FieldError> {
    if key.len() < MIN_AGENT_KEY_LEN
        || key.len() > MAX_AGENT_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(FieldError::new(
            "agent_key",
            format!(
                "must be {MIN_AGENT_KEY_LEN} to {MAX_AGENT_KEY_LEN} printable characters without spaces"
            ),
        ));
    }
    Ok(hash_token(key))
}
