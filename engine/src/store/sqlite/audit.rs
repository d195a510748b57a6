//! The audit log on SQLite.

use drover_protocol::credentials::AuditEntry;

use super::SqliteStore;
use crate::store::rows::AuditRow;
use crate::store::sql::audit as sql;
use crate::store::{AuditFilter, AuditStore, NewAuditEntry, Result};

impl AuditStore for SqliteStore {
    async fn append_audit(&self, entry: &NewAuditEntry<'_>, now_us: i64) -> Result<()> {
        sqlx::query(sql::APPEND)
            .bind(now_us)
            .bind(entry.actor)
            .bind(entry.action)
            .bind(entry.target)
            .bind(serde_json::to_string(entry.detail)?)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        sqlx::query_as::<_, AuditRow>(sql::LIST)
            .bind(filter.action_prefix.as_deref())
            .bind(filter.actor.as_deref())
            .bind(filter.before_id)
            .bind(filter.limit)
            .fetch_all(self.reader())
            .await?
            .into_iter()
            .map(AuditEntry::try_from)
            .collect()
    }

    async fn audit_about(&self, target: &str, limit: i64) -> Result<Vec<AuditEntry>> {
        sqlx::query_as::<_, AuditRow>(sql::ABOUT)
            .bind(target)
            .bind(limit)
            .fetch_all(self.reader())
            .await?
            .into_iter()
            .map(AuditEntry::try_from)
            .collect()
    }
}
