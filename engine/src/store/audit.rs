//! The audit log, on both backends: appended to, read back newest first,
//! never changed (the migrations' triggers refuse updates and deletes).

use drover_protocol::credentials::AuditEntry;
use sqlx::Row;

use super::{PgStore, Result, SqliteStore, Store};

/// One thing to record. `detail` is a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub detail: &'a serde_json::Value,
}

/// Which entries to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Only actions starting with this (`sign_in` finds `sign_in.failed`).
    pub action_prefix: Option<String>,
    pub actor: Option<String>,
    /// Keyset paging: only ids below this.
    pub before_id: Option<i64>,
    pub limit: i64,
}

#[allow(async_fn_in_trait)]
pub trait AuditStore {
    async fn append_audit(&self, entry: &NewAuditEntry<'_>, now_us: i64) -> Result<()>;
    /// Newest first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
}

/// Both backends' SQL, written once (`$n` placeholders work in SQLite too).
macro_rules! impl_audit {
    ($store:ty, $write:ident, $read:ident) => {
        impl AuditStore for $store {
            async fn append_audit(&self, entry: &NewAuditEntry<'_>, now_us: i64) -> Result<()> {
                sqlx::query("INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)")
                    .bind(now_us)
                    .bind(entry.actor)
                    .bind(entry.action)
                    .bind(entry.target)
                    .bind(serde_json::to_string(entry.detail)?)
                    .execute(self.$write())
                    .await?;
                Ok(())
            }

            async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
                // The prefix is matched with substr, not LIKE: no wildcard
                // in a user's filter can widen it.
                let rows = sqlx::query(
                    "SELECT id, at, actor, action, target, detail FROM audit_log \
                     WHERE ($1 IS NULL OR substr(action, 1, length($1)) = $1) \
                       AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR id < $3) \
                     ORDER BY id DESC LIMIT $4",
                )
                .bind(filter.action_prefix.as_deref())
                .bind(filter.actor.as_deref())
                .bind(filter.before_id)
                .bind(filter.limit)
                .fetch_all(self.$read())
                .await?;
                rows.iter()
                    .map(|row| {
                        let detail: Option<String> = row.try_get("detail")?;
                        Ok(AuditEntry {
                            id: row.try_get("id")?,
                            at_us: row.try_get("at")?,
                            actor: row.try_get("actor")?,
                            action: row.try_get("action")?,
                            target: row.try_get("target")?,
                            detail: match detail {
                                Some(text) => serde_json::from_str(&text)?,
                                None => serde_json::Value::Null,
                            },
                        })
                    })
                    .collect()
            }
        }
    };
}

impl_audit!(SqliteStore, writer, reader);
impl_audit!(PgStore, pool, pool);

delegate_to_backend!(AuditStore {
    async fn append_audit(&self, entry: &NewAuditEntry<'_>, now_us: i64) -> Result<()>;
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
});
