//! Cancelling a run or a task, with what must follow: the run's running
//! tasks cancelled, the dispatcher woken, dashboards told, runs advanced.
//! Shared by the API and by schedules that cancel the previous tick's run.

use drover_engine::store::{QueueStore, RunStore, WaitStore};
use drover_engine::time::now_us;
use drover_engine::{Store, StoreError};

use super::effects::{Change, Effects};

/// Cancels run `id` and its running tasks; `by` (a user, or what did it)
/// is recorded on the approvals it cancels.
pub async fn cancel_run(
    store: &Store,
    effects: &Effects,
    id: i64,
    by: &str,
) -> Result<(), StoreError> {
    let running = store.cancel_run(id, by, now_us()).await?;
    for task in running {
        match store.cancel_task(task, now_us()).await {
            Ok(_) | Err(StoreError::Conflict(_)) => {}
            Err(e) => {
                tracing::warn!(task, error = %e, "could not cancel a task of a cancelled run")
            }
        }
    }
    // A child run cancelled on its own failed its parent's step.
    let parent = match store.parent_run(id).await {
        Ok(parent) => parent,
        Err(e) => {
            tracing::warn!(run_id = id, error = %e, "could not look up the parent of a cancelled run");
            None
        }
    };
    effects
        .after(
            Change::new()
                .wake()
                .event("run", Some(id), Some("cancelled"))
                .event("approval", None, Some("cancelled"))
                .advance(parent),
        )
        .await;
    Ok(())
}

/// Cancels task `id`; returns its status after.
pub async fn cancel_task(
    store: &Store,
    effects: &Effects,
    id: i64,
) -> Result<drover_protocol::api::TaskStatus, StoreError> {
    let status = store.cancel_task(id, now_us()).await?;
    let change = Change::new()
        .wake()
        .event("task", Some(id), Some("cancelled"))
        .advance_runs_of(&[id]);
    effects.after(change).await;
    Ok(status)
}
