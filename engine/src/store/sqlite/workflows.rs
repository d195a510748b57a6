//! Versioned workflow definitions on SQLite.

use drover_protocol::workflow::{WorkflowStats, WorkflowVersion};

use super::SqliteStore;
use crate::store::rows::WorkflowRow;
use crate::store::sql::workflows as sql;
use crate::store::workflow_defs::run_stats;
use crate::store::{Result, WorkflowDefStore};

impl WorkflowDefStore for SqliteStore {
    async fn upload_workflow_source(
        &self,
        name: &str,
        definition: &serde_json::Value,
        source: Option<&str>,
        digest: &str,
        created_by: &str,
        now_us: i64,
    ) -> Result<(WorkflowVersion, bool)> {
        let mut tx = self.begin_write().await?;
        let latest = sqlx::query_as::<_, WorkflowRow>(sql::LATEST_OF)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let next = match latest {
            Some(row) if row.digest.as_deref() == Some(digest) => {
                tx.commit().await?;
                return Ok((row.try_into()?, false));
            }
            Some(row) => row.version + 1,
            None => 1,
        };
        let row = sqlx::query_as::<_, WorkflowRow>(sql::INSERT)
            .bind(name)
            .bind(next)
            .bind(definition.to_string())
            .bind(digest)
            .bind(created_by)
            .bind(now_us)
            .bind(source)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((row.try_into()?, true))
    }

    async fn list_workflows(&self) -> Result<Vec<WorkflowVersion>> {
        sqlx::query_as::<_, WorkflowRow>(sql::LIST_LATEST)
            .fetch_all(self.reader())
            .await?
            .into_iter()
            .map(WorkflowVersion::try_from)
            .collect()
    }

    async fn latest_workflow_id(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(sql::LATEST_ID)
            .fetch_one(self.reader())
            .await?)
    }

    async fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowVersion>> {
        sqlx::query_as::<_, WorkflowRow>(sql::VERSIONS)
            .bind(name)
            .fetch_all(self.reader())
            .await?
            .into_iter()
            .map(WorkflowVersion::try_from)
            .collect()
    }

    async fn workflow(&self, name: &str, version: Option<i64>) -> Result<Option<WorkflowVersion>> {
        sqlx::query_as::<_, WorkflowRow>(sql::ONE)
            .bind(name)
            .bind(version)
            .fetch_optional(self.reader())
            .await?
            .map(WorkflowVersion::try_from)
            .transpose()
    }

    async fn workflow_source(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<(WorkflowVersion, Option<String>)>> {
        let Some(mut row) = sqlx::query_as::<_, WorkflowRow>(sql::ONE_WITH_SOURCE)
            .bind(name)
            .bind(version)
            .fetch_optional(self.reader())
            .await?
        else {
            return Ok(None);
        };
        let source = row.source.take();
        Ok(Some((row.try_into()?, source)))
    }

    async fn workflow_run_stats(&self, name: &str, last: i64) -> Result<WorkflowStats> {
        let finished: Vec<(String, i64)> = sqlx::query_as(sql::FINISHED_RUNS)
            .bind(name)
            .bind(last)
            .fetch_all(self.reader())
            .await?;
        let active: i64 = sqlx::query_scalar(sql::ACTIVE_RUNS)
            .bind(name)
            .fetch_one(self.reader())
            .await?;
        Ok(run_stats(name, last, finished, active))
    }
}
