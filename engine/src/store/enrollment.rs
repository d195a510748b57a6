//! Enrollment tokens, on both backends: the credentials that let an agent
//! register, each named, optionally limited to task types and labels, with
//! an expiry, and revocable. Only their SHA-256 is stored.

use super::{Result, Store};
use crate::error::StoreError;
use drover_protocol::credentials::EnrollmentTokenView;

/// A token to store: what the admin asked for, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEnrollment<'a> {
    pub name: &'a str,
    pub token_hash: &'a str,
    pub prefix: &'a str,
    pub task_types: Option<&'a [String]>,
    pub labels: Option<&'a [String]>,
    pub created_by: &'a str,
    pub expires_at_us: Option<i64>,
}

#[allow(async_fn_in_trait)]
pub trait EnrollmentStore {
    /// Stores a new token; `Conflict` if the name is taken.
    async fn create_enrollment_token(
        &self,
        new: &NewEnrollment<'_>,
        now_us: i64,
    ) -> Result<EnrollmentTokenView>;
    /// Stores the configured bootstrap token unless a token with its hash
    /// exists already, revoked or not: a revoked bootstrap token stays
    /// revoked across restarts.
    async fn ensure_enrollment_token(&self, new: &NewEnrollment<'_>, now_us: i64) -> Result<()>;
    /// Gives agents registered before enrollment tokens were recorded (none
    /// is named) the token with this hash, so revoking it reaches them too.
    async fn adopt_unenrolled_agents(&self, token_hash: &str) -> Result<u64>;
    /// The token with this hash if it may enroll now (not revoked, not expired).
    async fn usable_enrollment_token(
        &self,
        token_hash: &str,
        now_us: i64,
    ) -> Result<Option<EnrollmentTokenView>>;
    async fn list_enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenView>>;
    /// Revokes a token and returns the agents that last registered with it
    /// and are not revoked yet: the caller revokes them too.
    async fn revoke_enrollment_token(&self, id: i64, now_us: i64) -> Result<Vec<i64>>;
}

/// Token limits are stored as JSON text on both backends.
pub(super) fn json_list(value: Option<&[String]>) -> Result<Option<String>> {
    Ok(value.map(serde_json::to_string).transpose()?)
}

/// A unique violation on the token's name or hash is a conflict.
pub(super) fn name_taken(e: sqlx::Error, name: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(format!("an enrollment token named {name:?} exists already"))
        }
        _ => e.into(),
    }
}

delegate_to_backend!(EnrollmentStore {
    async fn create_enrollment_token(&self, new: &NewEnrollment<'_>, now_us: i64) -> Result<EnrollmentTokenView>;
    async fn ensure_enrollment_token(&self, new: &NewEnrollment<'_>, now_us: i64) -> Result<()>;
    async fn adopt_unenrolled_agents(&self, token_hash: &str) -> Result<u64>;
    async fn usable_enrollment_token(&self, token_hash: &str, now_us: i64) -> Result<Option<EnrollmentTokenView>>;
    async fn list_enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenView>>;
    async fn revoke_enrollment_token(&self, id: i64, now_us: i64) -> Result<Vec<i64>>;
});
