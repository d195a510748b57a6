//! Putting a failed or cancelled task back in the queue by hand.

use drover_protocol::api::TaskStatus;
use sqlx::Row;

use super::{PgStore, Result, SqliteStore, Store};
use crate::domain::Scheduling;
use crate::error::StoreError;

#[allow(async_fn_in_trait)]
pub trait TaskRetryStore {
    /// Queues a failed or cancelled task again with its whole retry budget
    /// (attempts so far plus its original allowance), keeping its history.
    /// A task of a workflow run is retried through its step instead, so the
    /// run sees the new attempt.
    async fn retry_task(&self, id: i64, sched: &Scheduling, now_us: i64) -> Result<()>;
}

macro_rules! impl_retry {
    ($store:ty, $lock:literal) => {
        impl TaskRetryStore for $store {
            async fn retry_task(&self, id: i64, sched: &Scheduling, now_us: i64) -> Result<()> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(concat!("SELECT status, priority, run_id, step_id FROM tasks WHERE id = $1 ", $lock))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                if let Some(run_id) = row.try_get::<Option<i64>, _>("run_id")? {
                    let step: Option<String> = row.try_get("step_id")?;
                    return Err(StoreError::Conflict(format!(
                        "task {id} belongs to run {run_id}; retry its step {:?} from the run instead",
                        step.unwrap_or_default()
                    )));
                }
                let status = super::rows::task_status(&row.try_get::<String, _>("status")?)?;
                if !matches!(status, TaskStatus::Failed | TaskStatus::Cancelled) {
                    return Err(StoreError::Conflict(format!(
                        "task {id} is {}; only failed or cancelled tasks can be retried",
                        status.as_str()
                    )));
                }
                let priority: f64 = row.try_get("priority")?;
                sqlx::query(
                    "UPDATE tasks SET status = 'queued', max_attempts = attempts + max_attempts, error = NULL, result = NULL, \
                     agent_id = NULL, finished_at = NULL, run_after = $1, updated_at = $1, rank = $2 WHERE id = $3",
                )
                .bind(now_us)
                .bind(sched.rank(priority, now_us))
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("INSERT INTO task_events (task_id, at, kind, status) VALUES ($1, $2, 'retried', 'queued')")
                    .bind(id)
                    .bind(now_us)
                    .execute(&mut *tx)
                    .await?;
                Self::notify_work(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

impl_retry!(SqliteStore, "");
impl_retry!(PgStore, "FOR UPDATE");

delegate_to_backend!(TaskRetryStore {
    async fn retry_task(&self, id: i64, sched: &Scheduling, now_us: i64) -> Result<()>;
});
