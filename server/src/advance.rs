//! Moving workflow runs forward after something they wait on changed.

use drover_engine::store::RunStore;
use drover_engine::time::now_us;

use crate::state::AppState;

/// Advances each run; new tasks wake the dispatcher. Failures are logged,
/// not returned: the caller's own change is already committed, and the
/// leader's recovery pass advances any run left behind.
pub async fn runs(state: &AppState, run_ids: impl IntoIterator<Item = i64>) {
    use futures::stream::{self, StreamExt};
    // Different runs advance independently: on PostgreSQL they proceed in
    // parallel (each locks only its own run); SQLite serializes them anyway.
    let created: usize = stream::iter(run_ids)
        .map(|run_id| async move {
            match state
                .store
                .advance_run(run_id, &state.scheduling, now_us())
                .await
            {
                Ok(a) => {
                    state
                        .events
                        .publish("run", Some(run_id), a.status.map(|s| s.as_str()));
                    if let Some(status) = a.status.filter(|s| s.is_terminal()) {
                        tracing::debug!(
                            run_id,
                            status = status.as_str(),
                            "run advanced to its end"
                        );
                    }
                    a.tasks_created
                }
                Err(e) => {
                    tracing::warn!(run_id, error = %e, "could not advance run");
                    0
                }
            }
        })
        .buffer_unordered(ADVANCE_CONCURRENCY)
        .fold(0, |sum, n| async move { sum + n })
        .await;
    if created > 0 {
        metrics::counter!("drover_workflow_tasks_created_total").increment(created as u64);
        state.dispatcher.kick();
    }
}

/// Runs advanced at once by one caller.
const ADVANCE_CONCURRENCY: usize = 16;

/// Advances the runs owning these tasks (after their tasks finished).
pub async fn runs_of_tasks(state: &AppState, task_ids: &[i64]) {
    if task_ids.is_empty() {
        return;
    }
    match state.store.runs_of_tasks(task_ids).await {
        Ok(runs) => self::runs(state, runs).await,
        Err(e) => tracing::warn!(error = %e, "could not find the runs of finished tasks"),
    }
}

/// Advances every active run: the leader's recovery pass.
pub async fn all_active(state: &AppState) {
    match state.store.active_runs().await {
        Ok(runs) if !runs.is_empty() => {
            tracing::info!(runs = runs.len(), "advancing active runs");
            self::runs(state, runs).await
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not list active runs"),
    }
}
