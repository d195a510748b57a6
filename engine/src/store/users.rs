//! Users, roles, API tokens and dashboard sessions, on both backends.
//!
//! Tokens are stored as SHA-256 hashes. API tokens are never deleted:
//! revoking one marks it, and the mark stays so the same token cannot be
//! added back (the bootstrap `DROVER_API_TOKEN` is re-offered at every
//! start). Dashboard sessions are rows of the same table (`kind =
//! 'session'`) that expire and are deleted on sign-out.

use drover_protocol::api::{Role, UserView};
use serde::Serialize;
use sqlx::Row;

use super::{PgStore, Result, SqliteStore, Store};
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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

fn user_of(row: &impl UserRow) -> Result<UserView> {
    let role: String = row.text("role")?;
    Ok(UserView {
        id: row.int("id")?,
        name: row.text("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?,
        created_at_us: row.int("created_at")?,
    })
}

fn token_of(row: &impl UserRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: row.int("id")?,
        user_id: row.int("user_id")?,
        user_name: row.text("user_name")?,
        name: row.text("label")?,
        prefix: row.text("prefix")?,
        created_at_us: row.int("created_at")?,
        expires_at_us: row.opt_int("expires_at")?,
        last_used_at_us: row.opt_int("last_used_at")?,
        revoked_at_us: row.opt_int("revoked_at")?,
    })
}

/// The accessors the row mappers need, for either backend's rows.
trait UserRow {
    fn text(&self, col: &str) -> Result<String>;
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
}

impl UserRow for sqlx::sqlite::SqliteRow {
    fn text(&self, col: &str) -> Result<String> {
        Ok(self.try_get(col)?)
    }
    fn int(&self, col: &str) -> Result<i64> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.try_get(col)?)
    }
}

impl UserRow for sqlx::postgres::PgRow {
    fn text(&self, col: &str) -> Result<String> {
        Ok(self.try_get(col)?)
    }
    fn int(&self, col: &str) -> Result<i64> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.try_get(col)?)
    }
}

fn unique_violation(e: sqlx::Error, name: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(format!("user {name:?} already exists"))
        }
        _ => e.into(),
    }
}

const TOKEN_COLUMNS: &str =
    "SELECT t.id, t.user_id, u.name AS user_name, t.label, t.prefix, t.created_at, \
     t.expires_at, t.last_used_at, t.revoked_at FROM api_tokens t JOIN users u ON u.id = t.user_id";

/// Both backends' SQL, written once: `$n` placeholders work in SQLite too
/// (numbered in order of first use). `$write` and `$read` name the pools;
/// `$lock_admins` serialises changes that could remove the last admin
/// (SQLite has one writer, so there it is a no-op statement).
macro_rules! impl_users {
    ($store:ty, $write:ident, $read:ident, $lock_admins:expr) => {
        impl UserStore for $store {
            async fn create_user(&self, name: &str, role: Role, password_hash: Option<&str>, now_us: i64) -> Result<UserView> {
                let row = sqlx::query(
                    "INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id, name, role, created_at",
                )
                .bind(name)
                .bind(role.as_str())
                .bind(password_hash)
                .bind(now_us)
                .fetch_one(self.$write())
                .await
                .map_err(|e| unique_violation(e, name))?;
                user_of(&row)
            }

            async fn add_api_token(&self, token: NewToken<'_>) -> Result<Option<i64>> {
                let row = sqlx::query(
                    "INSERT INTO api_tokens (token_hash, user_id, label, kind, prefix, created_at, expires_at) \
                     VALUES ($1, $2, $3, 'api', $4, $5, $6) ON CONFLICT (token_hash) DO NOTHING RETURNING id",
                )
                .bind(token.token_hash)
                .bind(token.user_id)
                .bind(token.name)
                .bind(token.prefix)
                .bind(token.now_us)
                .bind(token.expires_at_us)
                .fetch_optional(self.$write())
                .await?;
                Ok(row.map(|r| r.try_get::<i64, _>("id")).transpose()?)
            }

            async fn start_session(&self, user_id: i64, token_hash: &str, expires_at_us: i64, now_us: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO api_tokens (token_hash, user_id, label, kind, created_at, expires_at) VALUES ($1, $2, 'session', 'session', $3, $4)",
                )
                .bind(token_hash)
                .bind(user_id)
                .bind(now_us)
                .bind(expires_at_us)
                .execute(self.$write())
                .await?;
                // Expired sessions are of no use to anyone: drop them while here.
                sqlx::query("DELETE FROM api_tokens WHERE kind = 'session' AND expires_at < $1")
                    .bind(now_us)
                    .execute(self.$write())
                    .await?;
                Ok(())
            }

            async fn end_session(&self, token_hash: &str) -> Result<()> {
                sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1 AND kind = 'session'")
                    .bind(token_hash)
                    .execute(self.$write())
                    .await?;
                Ok(())
            }

            async fn revoke_api_token(&self, id: i64, now_us: i64) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND kind = 'api' AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(now_us)
                .execute(self.$write())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn api_token(&self, id: i64) -> Result<Option<ApiToken>> {
                let row = sqlx::query(&format!("{TOKEN_COLUMNS} WHERE t.id = $1 AND t.kind = 'api'"))
                    .bind(id)
                    .fetch_optional(self.$read())
                    .await?;
                row.as_ref().map(token_of).transpose()
            }

            async fn list_api_tokens(&self, user_id: Option<i64>) -> Result<Vec<ApiToken>> {
                let rows = sqlx::query(&format!(
                    "{TOKEN_COLUMNS} WHERE t.kind = 'api' AND ($1 IS NULL OR t.user_id = $1) ORDER BY t.id DESC"
                ))
                .bind(user_id)
                .fetch_all(self.$read())
                .await?;
                rows.iter().map(token_of).collect()
            }

            async fn token_revoked(&self, token_hash: &str) -> Result<bool> {
                let row = sqlx::query("SELECT revoked_at FROM api_tokens WHERE token_hash = $1")
                    .bind(token_hash)
                    .fetch_optional(self.$read())
                    .await?;
                Ok(match row {
                    Some(r) => r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
                    None => false,
                })
            }

            async fn user_by_token(&self, token_hash: &str, now_us: i64) -> Result<Option<TokenUser>> {
                let row = sqlx::query(
                    "SELECT u.id, u.name, u.role, u.created_at, t.id AS token_id, t.last_used_at, t.expires_at \
                     FROM api_tokens t JOIN users u ON u.id = t.user_id \
                     WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > $2) \
                     AND t.revoked_at IS NULL AND u.disabled_at IS NULL",
                )
                .bind(token_hash)
                .bind(now_us)
                .fetch_optional(self.$read())
                .await?;
                row.map(|r| {
                    Ok(TokenUser {
                        user: user_of(&r)?,
                        token_id: r.int("token_id")?,
                        last_used_at_us: r.opt_int("last_used_at")?,
                        expires_at_us: r.opt_int("expires_at")?,
                    })
                })
                .transpose()
            }

            async fn touch_token(&self, token_id: i64, now_us: i64) -> Result<()> {
                sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                    .bind(token_id)
                    .bind(now_us)
                    .execute(self.$write())
                    .await?;
                Ok(())
            }

            async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
                let row = sqlx::query("SELECT id, name, role, created_at, password_hash, disabled_at FROM users WHERE name = $1")
                    .bind(name)
                    .fetch_optional(self.$read())
                    .await?;
                row.map(|r| {
                    Ok(UserRecord {
                        user: user_of(&r)?,
                        password_hash: r.try_get("password_hash")?,
                        disabled: r.opt_int("disabled_at")?.is_some(),
                    })
                })
                .transpose()
            }

            async fn list_users(&self) -> Result<Vec<UserSummary>> {
                let rows = sqlx::query("SELECT id, name, role, created_at, disabled_at FROM users ORDER BY name")
                    .fetch_all(self.$read())
                    .await?;
                rows.iter()
                    .map(|r| Ok(UserSummary { user: user_of(r)?, disabled: r.opt_int("disabled_at")?.is_some() }))
                    .collect()
            }

            async fn change_user(&self, user_id: i64, change: UserChange, now_us: i64) -> Result<()> {
                let mut tx = self.$write().begin().await?;
                sqlx::query($lock_admins).execute(&mut *tx).await?;
                let row = sqlx::query("SELECT role, disabled_at FROM users WHERE id = $1")
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                let role: String = row.text("role")?;
                let enabled_admin = role == Role::Admin.as_str() && row.opt_int("disabled_at")?.is_none();
                let stays_admin = match change {
                    UserChange::Role(r) => r == Role::Admin,
                    UserChange::Disabled(d) => !d,
                };
                if enabled_admin && !stays_admin {
                    let others: i64 = sqlx::query(
                        "SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND disabled_at IS NULL AND id <> $1",
                    )
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await?
                    .int("n")?;
                    if others == 0 {
                        return Err(StoreError::Conflict("this is the last enabled admin; make another admin first".into()));
                    }
                }
                match change {
                    UserChange::Role(r) => {
                        sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
                            .bind(user_id)
                            .bind(r.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                    UserChange::Disabled(true) => {
                        sqlx::query("UPDATE users SET disabled_at = COALESCE(disabled_at, $2) WHERE id = $1")
                            .bind(user_id)
                            .bind(now_us)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("DELETE FROM api_tokens WHERE user_id = $1 AND kind = 'session'")
                            .bind(user_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    UserChange::Disabled(false) => {
                        sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1")
                            .bind(user_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<()> {
                let mut tx = self.$write().begin().await?;
                let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(password_hash)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                sqlx::query("DELETE FROM api_tokens WHERE user_id = $1 AND kind = 'session'")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

impl_users!(SqliteStore, writer, reader, "SELECT 1");
impl_users!(PgStore, pool, pool, "SELECT pg_advisory_xact_lock(7007)");

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
