//! Results on SQLite: agents' results, recorded by the writer thread and
//! followed by the advance of the runs whose tasks ended
//! (`RunStore::complete_and_advance`), and the server's own endings
//! (`end_attempts`: cancels and sweeps) inside sqlx transactions.

use drover_protocol::agent::TaskResult;
use sqlx::{Sqlite, Transaction};

use super::SqliteStore;
use crate::domain::Scheduling;
use crate::error::StoreError;
use crate::store::plan::{not_advanced, Ending};
use crate::store::rows::current_leases;
use crate::store::{Claim, Completed, FreedSlots, Recorded, Refill, Result, RunStore};

impl SqliteStore {
    /// `RunStore::complete_and_advance`: the writer thread records the
    /// results (the queue's hot path, committed on their own), then the
    /// runs they moved are advanced in one more transaction. Should that
    /// fail, the runs go back to the caller as `left`.
    ///
    /// Both steps run in a task of their own: the writer commits a job
    /// whether or not its caller still waits, so if the caller gave up (an
    /// agent's request cut off mid-way) the advance must still follow the
    /// commit, or the runs would wait for the next leader's recovery pass.
    pub(super) async fn record_and_advance(
        &self,
        agent_id: i64,
        results: &[TaskResult],
        sched: &Scheduling,
        now_us: i64,
        refill: Option<Refill>,
    ) -> Result<Recorded> {
        let (store, endings, sched) = (self.clone(), endings_of(agent_id, results), *sched);
        tokio::spawn(async move {
            store
                .record_then_advance(agent_id, endings, &sched, now_us, refill)
                .await
        })
        .await
        .map_err(|e| StoreError::Sqlite(format!("recording results stopped: {e}")))?
    }

    async fn record_then_advance(
        &self,
        agent_id: i64,
        endings: Vec<Ending>,
        sched: &Scheduling,
        now_us: i64,
        refill: Option<Refill>,
    ) -> Result<Recorded> {
        // The refill's claim runs in the results' transaction, in a
        // savepoint of its own: it sees the slots they freed, and if it
        // fails the results still commit.
        let (completed, refill) = self
            .hot
            .run(move |conn| {
                let completed = super::hot::end_attempts(conn, &endings, now_us)?;
                // Results that move workflow runs get no refill: it would
                // claim before the advance below creates the runs' next
                // steps, which the round that advance starts hands out.
                let refill = match refill {
                    Some(r) if completed.runs.is_empty() => Some(
                        super::writer::in_savepoint(conn, |conn| {
                            super::hot::claim(conn, agent_id, r.max_tasks, now_us, r.lease_ttl_us)
                        })
                        .unwrap_or_else(|e| {
                            tracing::warn!(agent_id, error = %e, "eager claim failed; the parked claim gets the work");
                            Claim::default()
                        }),
                    ),
                    _ => None,
                };
                Ok((completed, refill))
            })
            .await?;
        let mut recorded = Recorded {
            completed,
            refilled: refill.is_some(),
            refill: refill.unwrap_or_default(),
            ..Recorded::default()
        };
        if recorded.completed.runs.is_empty() {
            return Ok(recorded);
        }
        match self
            .advance_runs(&recorded.completed.runs, sched, now_us)
            .await
        {
            Ok(advanced) => {
                recorded.left = not_advanced(&recorded.completed.runs, &advanced);
                recorded.advanced = advanced;
            }
            Err(e) => {
                tracing::warn!(runs = recorded.completed.runs.len(), error = %e, "could not advance runs after their results; the caller advances them");
                recorded.left = recorded.completed.runs.clone();
            }
        }
        Ok(recorded)
    }
}

impl SqliteStore {
    /// Agent results, on the writer thread.
    pub(super) async fn complete_results(
        &self,
        agent_id: i64,
        results: &[TaskResult],
        now_us: i64,
    ) -> Result<Completed> {
        self.end_on_writer(endings_of(agent_id, results), now_us)
            .await
    }

    async fn end_on_writer(&self, endings: Vec<Ending>, now_us: i64) -> Result<Completed> {
        self.hot
            .run(move |conn| super::hot::end_attempts(conn, &endings, now_us))
            .await
    }

    /// Gives agents back the slots their ended attempts held (C -= n).
    async fn free_slots(tx: &mut Transaction<'_, Sqlite>, freed: &FreedSlots) -> Result<()> {
        for &(agent, n) in freed {
            sqlx::query("UPDATE agents SET running = MAX(running - ?1, 0) WHERE id = ?2")
                .bind(n)
                .bind(agent)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Ends attempts whose lease is current; stale ones change nothing.
    /// A fixed number of statements per batch: the rows travel as one JSON
    /// array that `json_each` unpacks inside SQLite. The server's own
    /// endings (sweeps, cancels) come here; agents' results go through the
    /// writer thread (`hot::end_attempts`).
    pub(super) async fn end_attempts(
        tx: &mut Transaction<'_, Sqlite>,
        endings: &[Ending],
        now_us: i64,
    ) -> Result<Completed> {
        if endings.is_empty() {
            return Ok(Completed::default());
        }
        let leases: Vec<[i64; 2]> = endings.iter().map(|e| [e.task_id, e.lease_token]).collect();
        // CROSS JOIN fixes the join order: by the leases, then each task by
        // its id. Left to itself SQLite walks every running task (the
        // status index) and probes the array for each: with a thousand
        // tasks running, milliseconds per batch of results on the writer.
        let rows = sqlx::query(
            "SELECT t.id, t.lease_token, t.attempts, t.max_attempts, t.retry_backoff_ms, t.agent_id, t.run_id \
             FROM json_each(?1) v CROSS JOIN tasks t ON t.id = json_extract(v.value, '$[0]') \
             WHERE t.lease_token = json_extract(v.value, '$[1]') AND t.status = 'running'",
        )
        .bind(serde_json::to_string(&leases)?)
        .fetch_all(&mut **tx)
        .await?;
        let current = current_leases!(rows);
        let (completed, rows) = crate::store::plan_endings(endings, &current, now_us);
        if rows.is_empty() {
            return Ok(completed);
        }
        let batch = serde_json::to_string(&rows)?;
        sqlx::query(
            "UPDATE tasks SET status = json_extract(v.value, '$.status'), \
               attempts = attempts + json_extract(v.value, '$.attempts_delta'), \
               run_after = COALESCE(json_extract(v.value, '$.run_after'), run_after), \
               result = json_extract(v.value, '$.result'), error = json_extract(v.value, '$.error'), \
               agent_id = CASE WHEN json_extract(v.value, '$.terminal') THEN agent_id ELSE NULL END, \
               lease_expires_at = NULL, updated_at = ?2, \
               finished_at = CASE WHEN json_extract(v.value, '$.terminal') THEN ?2 ELSE NULL END \
             FROM json_each(?1) v WHERE tasks.id = json_extract(v.value, '$.id')",
        )
        .bind(&batch)
        .bind(now_us)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE task_attempts SET outcome = json_extract(v.value, '$.outcome'), \
               error = json_extract(v.value, '$.attempt_error'), \
               finished_at = COALESCE(json_extract(v.value, '$.finished_at'), ?2), \
               started_at = COALESCE(json_extract(v.value, '$.started_at'), started_at) \
             FROM json_each(?1) v \
             WHERE task_attempts.task_id = json_extract(v.value, '$.id') \
               AND task_attempts.lease_token = json_extract(v.value, '$.lease_token')",
        )
        .bind(&batch)
        .bind(now_us)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO task_events (task_id, at, kind, status, agent_id, detail) \
             SELECT json_extract(value, '$.id'), ?2, json_extract(value, '$.event'), json_extract(value, '$.status'), \
                    json_extract(value, '$.agent_id'), json_extract(value, '$.error') FROM json_each(?1)",
        )
        .bind(&batch)
        .bind(now_us)
        .execute(&mut **tx)
        .await?;
        Self::free_slots(
            tx,
            &crate::store::freed_slots(rows.iter().filter_map(|r| r.agent_id)),
        )
        .await?;
        Ok(completed)
    }
}

/// The attempt endings the results `agent_id` sent ask for.
fn endings_of(agent_id: i64, results: &[TaskResult]) -> Vec<Ending> {
    results
        .iter()
        .map(|r| crate::store::ending_of_result(agent_id, r))
        .collect()
}
