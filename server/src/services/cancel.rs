//! Cancelling a run or a task, with what must follow: the run's running
//! tasks cancelled, the dispatcher woken, dashboards told, runs advanced.
//! Shared by the API and by schedules that cancel the previous tick's run.

use drover_engine::store::{QueueStore, RunStore};
use drover_engine::time::now_us;
use drover_engine::{Store, StoreError};

use super::effects::{Change, Effects};

/// Cancels run `id` and its running tasks.
pub async fn cancel_run(store: &Store, effects: &Effects, id: i64) -> Result<(), StoreError> {
    let running = store.cancel_run(id, now_us()).await?;
    for task in running {
        match store.cancel_task(task, now_us()).await {
            Ok(_) | Err(StoreError::Conflict(_)) => {}
            Err(e) => {
                tracing::warn!(task, error = %e, "could not cancel a task of a cancelled run")
            }
        }
    }
    effects
        .after(
            Change::new()
                .wake()
                .event("run", Some(id), Some("cancelled")),
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
