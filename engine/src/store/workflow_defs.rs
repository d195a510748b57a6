//! Versioned workflow definitions, on both backends.

use drover_protocol::workflow::WorkflowVersion;
use sqlx::Row;

use super::{PgStore, Result, SqliteStore, Store};

#[allow(async_fn_in_trait)]
pub trait WorkflowDefStore {
    /// Stores a validated definition as the next version of `name`, unless
    /// the latest version has the same digest; returns it and whether it is new.
    async fn upload_workflow(
        &self,
        name: &str,
        definition: &serde_json::Value,
        digest: &str,
        created_by: &str,
        now_us: i64,
    ) -> Result<(WorkflowVersion, bool)>;
    /// The latest version of every workflow.
    async fn list_workflows(&self) -> Result<Vec<WorkflowVersion>>;
    /// The id of the newest version of any workflow (0 when there is none):
    /// versions are only ever added, so it changes exactly when the set of
    /// latest versions does, and costs one index lookup.
    async fn latest_workflow_id(&self) -> Result<i64>;
    /// Every version of one workflow, newest first.
    async fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowVersion>>;
    /// One version, or the latest.
    async fn workflow(&self, name: &str, version: Option<i64>) -> Result<Option<WorkflowVersion>>;
}

const COLUMNS: &str = "id, name, version, definition, created_by, created_at";

macro_rules! version_of {
    ($row:expr) => {{
        let row = &$row;
        let definition: serde_json::Value =
            serde_json::from_str(&row.try_get::<String, _>("definition")?)?;
        WorkflowVersion {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            version: row.try_get("version")?,
            description: definition
                .get("description")
                .and_then(|d| d.as_str())
                .map(str::to_string),
            definition,
            created_by: row.try_get("created_by")?,
            created_at_us: row.try_get("created_at")?,
        }
    }};
}

/// The SQL of both backends, written once with `$n` placeholders (which
/// SQLite also accepts, numbered in order of first use).
macro_rules! impl_workflow_defs {
    ($store:ty, $begin:ident, $reader:ident) => {
        impl WorkflowDefStore for $store {
            async fn upload_workflow(&self, name: &str, definition: &serde_json::Value, digest: &str, created_by: &str, now_us: i64) -> Result<(WorkflowVersion, bool)> {
                let mut tx = self.$begin().await?;
                let latest = sqlx::query(&format!("SELECT {COLUMNS}, digest FROM workflows WHERE name = $1 ORDER BY version DESC LIMIT 1"))
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(row) = &latest {
                    if row.try_get::<String, _>("digest")? == digest {
                        let v = version_of!(row);
                        tx.commit().await?;
                        return Ok((v, false));
                    }
                }
                let next: i64 = match &latest {
                    Some(row) => row.try_get::<i64, _>("version")? + 1,
                    None => 1,
                };
                let row = sqlx::query(&format!(
                    "INSERT INTO workflows (name, version, definition, digest, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
                ))
                .bind(name)
                .bind(next)
                .bind(definition.to_string())
                .bind(digest)
                .bind(created_by)
                .bind(now_us)
                .fetch_one(&mut *tx)
                .await?;
                let v = version_of!(row);
                tx.commit().await?;
                Ok((v, true))
            }

            async fn list_workflows(&self) -> Result<Vec<WorkflowVersion>> {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM workflows w WHERE version = (SELECT MAX(version) FROM workflows x WHERE x.name = w.name) ORDER BY name"
                ))
                .fetch_all(self.$reader())
                .await?;
                rows.iter().map(|r| Ok(version_of!(r))).collect()
            }

            async fn latest_workflow_id(&self) -> Result<i64> {
                Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM workflows")
                    .fetch_one(self.$reader())
                    .await?)
            }

            async fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowVersion>> {
                let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM workflows WHERE name = $1 ORDER BY version DESC"))
                    .bind(name)
                    .fetch_all(self.$reader())
                    .await?;
                rows.iter().map(|r| Ok(version_of!(r))).collect()
            }

            async fn workflow(&self, name: &str, version: Option<i64>) -> Result<Option<WorkflowVersion>> {
                let row = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM workflows WHERE name = $1 AND ($2 IS NULL OR version = $2) ORDER BY version DESC LIMIT 1"
                ))
                .bind(name)
                .bind(version)
                .fetch_optional(self.$reader())
                .await?;
                row.map(|r| Ok(version_of!(r))).transpose()
            }
        }
    };
}

impl_workflow_defs!(SqliteStore, begin_write, reader);
impl_workflow_defs!(PgStore, begin_write, pool);

delegate_to_backend!(WorkflowDefStore {
    async fn upload_workflow(&self, name: &str, definition: &serde_json::Value, digest: &str, created_by: &str, now_us: i64) -> Result<(WorkflowVersion, bool)>;
    async fn list_workflows(&self) -> Result<Vec<WorkflowVersion>>;
    async fn latest_workflow_id(&self) -> Result<i64>;
    async fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowVersion>>;
    async fn workflow(&self, name: &str, version: Option<i64>) -> Result<Option<WorkflowVersion>>;
});
