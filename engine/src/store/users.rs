//! Users, roles and API tokens, on both backends.

use drover_protocol::api::{Role, UserView};
use sqlx::Row;

use super::{PgStore, Result, SqliteStore, Store};
use crate::error::StoreError;

/// A user with what signing in needs.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub user: UserView,
    /// argon2 PHC string; `None` for API-only users.
    pub password_hash: Option<String>,
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
    /// Attaches an API token (its hash) to a user; adding the same hash again is a no-op.
    async fn add_api_token(
        &self,
        user_id: i64,
        token_hash: &str,
        label: &str,
        now_us: i64,
    ) -> Result<()>;
    /// Starts a dashboard session: a token that stops working at `expires_at_us`.
    async fn start_session(
        &self,
        user_id: i64,
        token_hash: &str,
        expires_at_us: i64,
        now_us: i64,
    ) -> Result<()>;
    /// Revokes a token (signing out); revoking an unknown token is a no-op.
    async fn revoke_token(&self, token_hash: &str) -> Result<()>;
    /// The user owning an unexpired token.
    async fn user_by_token(&self, token_hash: &str) -> Result<Option<UserView>>;
    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>>;
    async fn list_users(&self) -> Result<Vec<UserView>>;
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

/// The two accessors `user_of` needs, for either backend's rows.
trait UserRow {
    fn text(&self, col: &str) -> Result<String>;
    fn int(&self, col: &str) -> Result<i64>;
}

impl UserRow for sqlx::sqlite::SqliteRow {
    fn text(&self, col: &str) -> Result<String> {
        Ok(self.try_get(col)?)
    }
    fn int(&self, col: &str) -> Result<i64> {
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
}

fn unique_violation(e: sqlx::Error, name: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(format!("user {name:?} already exists"))
        }
        _ => e.into(),
    }
}

/// Both backends' SQL, written once: `$n` placeholders work in SQLite too
/// (numbered in order of first use). `$write` and `$read` name the pools.
macro_rules! impl_users {
    ($store:ty, $write:ident, $read:ident) => {
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

            async fn add_api_token(&self, user_id: i64, token_hash: &str, label: &str, now_us: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO api_tokens (token_hash, user_id, label, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO NOTHING",
                )
                .bind(token_hash)
                .bind(user_id)
                .bind(label)
                .bind(now_us)
                .execute(self.$write())
                .await?;
                Ok(())
            }

            async fn start_session(&self, user_id: i64, token_hash: &str, expires_at_us: i64, now_us: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO api_tokens (token_hash, user_id, label, created_at, expires_at) VALUES ($1, $2, 'session', $3, $4)",
                )
                .bind(token_hash)
                .bind(user_id)
                .bind(now_us)
                .bind(expires_at_us)
                .execute(self.$write())
                .await?;
                // Expired sessions are of no use to anyone: drop them while here.
                sqlx::query("DELETE FROM api_tokens WHERE expires_at IS NOT NULL AND expires_at < $1")
                    .bind(now_us)
                    .execute(self.$write())
                    .await?;
                Ok(())
            }

            async fn revoke_token(&self, token_hash: &str) -> Result<()> {
                sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(self.$write())
                    .await?;
                Ok(())
            }

            async fn user_by_token(&self, token_hash: &str) -> Result<Option<UserView>> {
                let row = sqlx::query(
                    "SELECT u.id, u.name, u.role, u.created_at FROM api_tokens t JOIN users u ON u.id = t.user_id \
                     WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > $2)",
                )
                .bind(token_hash)
                .bind(crate::time::now_us())
                .fetch_optional(self.$read())
                .await?;
                row.as_ref().map(user_of).transpose()
            }

            async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
                let row = sqlx::query("SELECT id, name, role, created_at, password_hash FROM users WHERE name = $1")
                    .bind(name)
                    .fetch_optional(self.$read())
                    .await?;
                row.map(|r| Ok(UserRecord { user: user_of(&r)?, password_hash: r.try_get("password_hash")? })).transpose()
            }

            async fn list_users(&self) -> Result<Vec<UserView>> {
                let rows = sqlx::query("SELECT id, name, role, created_at FROM users ORDER BY name").fetch_all(self.$read()).await?;
                rows.iter().map(user_of).collect()
            }
        }
    };
}

impl_users!(SqliteStore, writer, reader);
impl_users!(PgStore, pool, pool);

delegate_to_backend!(UserStore {
    async fn create_user(&self, name: &str, role: Role, password_hash: Option<&str>, now_us: i64) -> Result<UserView>;
    async fn add_api_token(&self, user_id: i64, token_hash: &str, label: &str, now_us: i64) -> Result<()>;
    async fn start_session(&self, user_id: i64, token_hash: &str, expires_at_us: i64, now_us: i64) -> Result<()>;
    async fn revoke_token(&self, token_hash: &str) -> Result<()>;
    async fn user_by_token(&self, token_hash: &str) -> Result<Option<UserView>>;
    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>>;
    async fn list_users(&self) -> Result<Vec<UserView>>;
});
