//! Recording agent results on SQLite together with the advance of the
//! runs whose tasks ended ([`RunStore::complete_and_advance`]).

use drover_protocol::agent::TaskResult;

use super::SqliteStore;
use crate::domain::Scheduling;
use crate::store::plan::{not_advanced, Ending};
#[allow(unused_imports)]
use crate::store::RunStore;
use crate::store::{QueueStore, Recorded, Result};

impl SqliteStore {
    /// [`RunStore::complete_and_advance`]: statements cost SQLite no
    /// round trip, so it takes them one by one: the endings, the
    /// advance of the runs that moved, then the agents' slots.
    pub(super) async fn record_and_advance(
        &self,
        agent_id: i64,
        results: &[TaskResult],
        sched: &Scheduling,
        now_us: i64,
    ) -> Result<Recorded> {
        let endings: Vec<Ending> = results
            .iter()
            .map(|r| crate::store::ending_of_result(agent_id, r))
            .collect();
        let mut tx = self.begin_advance().await?;
        let (completed, freed) =
            Self::end_attempts_holding_slots(&mut tx, &endings, now_us).await?;
        let mut recorded = Recorded {
            completed,
            ..Recorded::default()
        };
        if !recorded.completed.runs.is_empty() {
            // The single writer holds everything: no row locks.
            match Self::advance_in(&mut tx, &recorded.completed.runs, sched, now_us, "").await {
                Ok(advanced) => {
                    recorded.left = not_advanced(&recorded.completed.runs, &advanced);
                    recorded.advanced = advanced;
                }
                Err(e) => {
                    // Not worth a savepoint on every batch (two more
                    // round trips): on the rare failure the results
                    // are recorded again on their own, and the runs
                    // go to the caller.
                    tracing::warn!(runs = recorded.completed.runs.len(), error = %e, "could not advance runs with their results; advancing them on their own");
                    tx.rollback().await?;
                    let completed = QueueStore::complete(self, agent_id, results, now_us).await?;
                    return Ok(Recorded {
                        left: completed.runs.clone(),
                        completed,
                        ..Recorded::default()
                    });
                }
            }
        }
        // Last: claims for these agents wait on their rows.
        Self::free_slots(&mut tx, &freed).await?;
        tx.commit().await?;
        Ok(recorded)
    }
}
