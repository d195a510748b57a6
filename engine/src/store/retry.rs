//! Putting a failed or cancelled task back in the queue by hand.

use drover_protocol::api::TaskStatus;

use super::rows::RetryRow;
use super::{Result, Store};
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

impl RetryRow {
    /// Refuses a task of a workflow run (retried through its step) and one
    /// that is not failed or cancelled.
    pub(super) fn retryable(&self, id: i64) -> Result<()> {
        if let Some(run_id) = self.run_id {
            return Err(StoreError::Conflict(format!(
                "task {id} belongs to run {run_id}; retry its step {:?} from the run instead",
                self.step_id.clone().unwrap_or_default()
            )));
        }
        let status = super::rows::task_status(&self.status)?;
        if !matches!(status, TaskStatus::Failed | TaskStatus::Cancelled) {
            return Err(StoreError::Conflict(format!(
                "task {id} is {}; only failed or cancelled tasks can be retried",
                status.as_str()
            )));
        }
        Ok(())
    }
}

delegate_to_backend!(TaskRetryStore {
    async fn retry_task(&self, id: i64, sched: &Scheduling, now_us: i64) -> Result<()>;
});
