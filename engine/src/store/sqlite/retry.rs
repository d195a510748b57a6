//! Retrying a failed or cancelled task by hand on SQLite.

use super::SqliteStore;
use crate::domain::Scheduling;
use crate::error::StoreError;
use crate::store::rows::RetryRow;
use crate::store::sql::retry as sql;
use crate::store::{Result, TaskRetryStore};

impl TaskRetryStore for SqliteStore {
    async fn retry_task(&self, id: i64, sched: &Scheduling, now_us: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let task = sqlx::query_as::<_, RetryRow>(READ_TASK)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        task.retryable(id)?;
        Self::uncount(&mut tx, &task.status, task.finished_at).await?;
        sqlx::query(sql::REQUEUE)
            .bind(now_us)
            .bind(sched.rank(task.priority, now_us))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(sql::EVENT)
            .bind(id)
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
        Self::notify_work(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// SQLite's single writer serialises retries: no row lock needed.
const READ_TASK: &str =
    "SELECT status, priority, run_id, step_id, finished_at FROM tasks WHERE id = $1";
