//! Users, roles, API tokens and dashboard sessions, on both backends.
//!
//! Tokens are stored as SHA-256 hashes. API tokens are never deleted:
//! revoking one marks it, and the mark stays so the same token cannot be
//! added back (the bootstrap `DROVER_API_TOKEN` is re-offered at every
//! start). Dashboard sessions are rows of the same table (`kind =
//! 'session'`) that expire and are deleted on sign-out.

use drover_protocol::api::{Role, UserView};
use serde::Serialize;

use super::{Result, Store};
use crate::error::StoreError;

/// A user with what signing in needs.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub user: UserView,
    /// argon2 PHC string; `None` for API-only users.
    pub password_hash: Option<String>,
    pub disabled: bool,
}

/// A user as the user list shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserSummary {
    #[serde(flatten)]
    pub user: UserView,
    pub disabled: bool,
}

/// An API token as listed: never the token itself, only its first characters.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub user_name: String,
    pub name: String,
    pub prefix: String,
    pub created_at_us: i64,
    pub expires_at_us: Option<i64>,
    pub last_used_at_us: Option<i64>,
    pub revoked_at_us: Option<i64>,
}

/// A new API token to store.
#[derive(Debug, Clone, Copy)]
pub struct NewToken<'a> {
    pub user_id: i64,
    pub token_hash: &'a str,
    pub name: &'a str,
    pub prefix: &'a str,
    pub expires_at_us: Option<i64>,
    pub now_us: i64,
}

/// The user behind a live token, and the token's bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenUser {
    pub user: UserView,
    pub token_id: i64,
    pub last_used_at_us: Option<i64>,
    /// When the token presented stops working (`None`: never).
    pub expires_at_us: Option<i64>,
}

/// A change to a user that must leave at least one enabled admin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UserChange {
    Role(Role),
    Disabled(bool),
}

impl UserChange {
    /// Whether an enabled admin stays one after this change.
    pub(super) fn keeps_admin(self) -> bool {
        match self {
            UserChange::Role(r) => r == Role::Admin,
            UserChange::Disabled(d) => !d,
        }
    }
}

#[allow(async_fn_in_trait)]
pub trait UserStore {
    /// Creates a user; `Conflict` if the name is taken.
    async fn create_user(
        &self,
        name: &str,
        role: Role,
        password_hash: Option<&str>,
        now_us: i64,
    ) -> Result<UserView>;
    /// Stores an API token; `None` when that hash is already stored (live
    /// or revoked), which is then left as it is.
    async fn add_api_token(&self, token: NewToken<'_>) -> Result<Option<i64>>;
    /// Starts a dashboard session: a token that stops working at `expires_at_us`.
    async fn start_session(
        &self,
        user_id: i64,
        token_hash: &str,
        expires_at_us: i64,
        now_us: i64,
    ) -> Result<()>;
    /// Ends a dashboard session (signing out); an unknown one is a no-op.
    async fn end_session(&self, token_hash: &str) -> Result<()>;
    /// Revokes an API token; false if it does not exist or was revoked before.
    async fn revoke_api_token(&self, id: i64, now_us: i64) -> Result<bool>;
    /// One API token by id.
    async fn api_token(&self, id: i64) -> Result<Option<ApiToken>>;
    /// API tokens (not sessions), of one user or of everyone, newest first.
    async fn list_api_tokens(&self, user_id: Option<i64>) -> Result<Vec<ApiToken>>;
    /// Whether a stored token (by hash) has been revoked.
    async fn token_revoked(&self, token_hash: &str) -> Result<bool>;
    /// The enabled user owning a live (unexpired, unrevoked) token or session.
    async fn user_by_token(&self, token_hash: &str, now_us: i64) -> Result<Option<TokenUser>>;
    /// Records that a token was used.
    async fn touch_token(&self, token_id: i64, now_us: i64) -> Result<()>;
    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>>;
    async fn list_users(&self) -> Result<Vec<UserSummary>>;
    /// Changes a user's role or disables/enables them; `Conflict` if that
    /// would leave no enabled admin. Disabling ends the user's sessions.
    async fn change_user(&self, user_id: i64, change: UserChange, now_us: i64) -> Result<()>;
    /// Sets a new password hash and ends the user's sessions.
    async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<()>;
}

/// A unique violation on the user name is a conflict, not a database error.
pub(super) fn unique_violation(e: sqlx::Error, name: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(format!("user {name:?} already exists"))
        }
        _ => e.into(),
    }
}

delegate_to_backend!(UserStore {
    async fn create_user(&self, name: &str, role: Role, password_hash: Option<&str>, now_us: i64) -> Result<UserView>;
    async fn add_api_token(&self, token: NewToken<'_>) -> Result<Option<i64>>;
    async fn start_session(&self, user_id: i64, token_hash: &str, expires_at_us: i64, now_us: i64) -> Result<()>;
    async fn end_session(&self, token_hash: &str) -> Result<()>;
    async fn revoke_api_token(&self, id: i64, now_us: i64) -> Result<bool>;
    async fn api_token(&self, id: i64) -> Result<Option<ApiToken>>;
    async fn list_api_tokens(&self, user_id: Option<i64>) -> Result<Vec<ApiToken>>;
    async fn token_revoked(&self, token_hash: &str) -> Result<bool>;
    async fn user_by_token(&self, token_hash: &str, now_us: i64) -> Result<Option<TokenUser>>;
    async fn touch_token(&self, token_id: i64, now_us: i64) -> Result<()>;
    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>>;
    async fn list_users(&self) -> Result<Vec<UserSummary>>;
    async fn change_user(&self, user_id: i64, change: UserChange, now_us: i64) -> Result<()>;
    async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<()>;
});
