//! Enrollment tokens, on both backends: the credentials that let an agent
//! register, each named, optionally limited to task types and labels, with
//! an expiry, and revocable. Only their SHA-256 is stored.

use drover_protocol::credentials::EnrollmentTokenView;
use sqlx::Row;

use super::{PgStore, Result, SqliteStore, Store};
use crate::error::StoreError;

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

fn json_list(value: Option<&[String]>) -> Result<Option<String>> {
    Ok(value.map(serde_json::to_string).transpose()?)
}

fn view_of<R>(row: &R) -> Result<EnrollmentTokenView>
where
    R: Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let list = |col: &str| -> Result<Option<Vec<String>>> {
        let text: Option<String> = row.try_get(col)?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    };
    Ok(EnrollmentTokenView {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        task_types: list("task_types")?,
        labels: list("labels")?,
        created_by: row.try_get("created_by")?,
        created_at_us: row.try_get("created_at")?,
        expires_at_us: row.try_get("expires_at")?,
        revoked_at_us: row.try_get("revoked_at")?,
    })
}

const COLUMNS: &str =
    "id, name, prefix, task_types, labels, created_by, created_at, expires_at, revoked_at";

/// Both backends' SQL, written once (`$n` placeholders work in SQLite too).
macro_rules! impl_enrollment {
    ($store:ty, $write:ident, $read:ident) => {
        impl EnrollmentStore for $store {
            async fn create_enrollment_token(&self, new: &NewEnrollment<'_>, now_us: i64) -> Result<EnrollmentTokenView> {
                let row = sqlx::query(&format!(
                    "INSERT INTO enrollment_tokens (name, token_hash, prefix, task_types, labels, created_by, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
                ))
                .bind(new.name)
                .bind(new.token_hash)
                .bind(new.prefix)
                .bind(json_list(new.task_types)?)
                .bind(json_list(new.labels)?)
                .bind(new.created_by)
                .bind(now_us)
                .bind(new.expires_at_us)
                .fetch_one(self.$write())
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(
                        format!("an enrollment token named {:?} exists already", new.name),
                    ),
                    _ => e.into(),
                })?;
                view_of(&row)
            }

            async fn ensure_enrollment_token(&self, new: &NewEnrollment<'_>, now_us: i64) -> Result<()> {
                // A token with this hash (or name) exists already: leave it as it is.
                match self.create_enrollment_token(new, now_us).await {
                    Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            }

            async fn adopt_unenrolled_agents(&self, token_hash: &str) -> Result<u64> {
                Ok(sqlx::query(
                    "UPDATE agents SET enrollment_id = (SELECT id FROM enrollment_tokens WHERE token_hash = $1) \
                     WHERE enrollment_id IS NULL AND status <> 'revoked'",
                )
                .bind(token_hash)
                .execute(self.$write())
                .await?
                .rows_affected())
            }

            async fn usable_enrollment_token(&self, token_hash: &str, now_us: i64) -> Result<Option<EnrollmentTokenView>> {
                let row = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM enrollment_tokens WHERE token_hash = $1 \
                     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)"
                ))
                .bind(token_hash)
                .bind(now_us)
                .fetch_optional(self.$read())
                .await?;
                row.as_ref().map(view_of).transpose()
            }

            async fn list_enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenView>> {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM enrollment_tokens ORDER BY revoked_at IS NOT NULL, name"
                ))
                .fetch_all(self.$read())
                .await?;
                rows.iter().map(view_of).collect()
            }

            async fn revoke_enrollment_token(&self, id: i64, now_us: i64) -> Result<Vec<i64>> {
                let found: Option<i64> = sqlx::query_scalar(
                    "UPDATE enrollment_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING id",
                )
                .bind(id)
                .bind(now_us)
                .fetch_optional(self.$write())
                .await?;
                if found.is_none() {
                    return Err(StoreError::NotFound);
                }
                Ok(sqlx::query_scalar(
                    "SELECT id FROM agents WHERE enrollment_id = $1 AND status <> 'revoked' ORDER BY id",
                )
                .bind(id)
                .fetch_all(self.$write())
                .await?)
            }
        }
    };
}

impl_enrollment!(SqliteStore, writer, reader);
impl_enrollment!(PgStore, pool, pool);

delegate_to_backend!(EnrollmentStore {
    async fn create_enrollment_token(&self, new: &NewEnrollment<'_>, now_us: i64) -> Result<EnrollmentTokenView>;
    async fn ensure_enrollment_token(&self, new: &NewEnrollment<'_>, now_us: i64) -> Result<()>;
    async fn adopt_unenrolled_agents(&self, token_hash: &str) -> Result<u64>;
    async fn usable_enrollment_token(&self, token_hash: &str, now_us: i64) -> Result<Option<EnrollmentTokenView>>;
    async fn list_enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenView>>;
    async fn revoke_enrollment_token(&self, id: i64, now_us: i64) -> Result<Vec<i64>>;
});
