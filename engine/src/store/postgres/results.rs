//! Results on PostgreSQL: attempts ended (`end_attempts`, used by plain
//! completions, cancels and sweeps), and a batch of results recorded with
//! its runs advanced in four round trips — `BEGIN`, one statement that locks and reads everything the
//! batch needs, one that writes everything, `COMMIT`.
//!
//! Every statement is a round trip to another process, and on a busy
//! machine each costs far more in waiting for the two processes to be
//! scheduled than in work (the statement-by-statement way took eight; see
//! docs/BENCHMARKS.md). The read returns the leases, the runs (locked, or
//! skipped if another transaction holds them), their definitions, steps and
//! the tasks of their running steps, in one row (the few leases, runs and
//! definitions as JSON; the many steps and tasks as one array per column,
//! which PostgreSQL builds far more cheaply than a JSON object per row).
//! It reads the tasks
//! as they were before this batch; the batch's own endings are laid over
//! them before planning, which is what the database would have returned
//! after writing them.

use drover_protocol::agent::TaskResult;
use drover_protocol::api::TaskStatus;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::batch::{write_batch, AdvanceRows, EndColumns};
use super::{instance_tag, PgStore, WORK_CHANNEL};
use crate::domain::Scheduling;
use crate::lifecycle::RunningTask;
use crate::store::plan::{
    not_advanced, plan_loaded, step_rows, Current, EndRow, Ending, FreedSlots, Loaded, Writes,
};
use crate::store::rows::{current_leases, RunStateRow};
use crate::store::rows::{ItemRow, StepRow};
use crate::store::{Advanced, Claim, Completed, QueueStore, Recorded, Refill, Result};

/// Locks the batch's tasks (by id, in id order) and then their runs
/// (without waiting: a run another transaction holds is left to the
/// caller), and reads what planning them needs.
const READ_BATCH: &str = "\
WITH t AS MATERIALIZED ( \
   SELECT id, lease_token, attempts, max_attempts, retry_backoff_ms, agent_id, run_id FROM tasks \
   WHERE id = ANY($1) AND status = 'running' ORDER BY id FOR UPDATE), \
 r AS MATERIALIZED ( \
   SELECT id, workflow_id, status, inputs, started_by FROM runs \
   WHERE id = ANY(ARRAY(SELECT run_id FROM t WHERE run_id IS NOT NULL)) ORDER BY id FOR UPDATE SKIP LOCKED) \
SELECT \
 (SELECT json_agg(t)::text FROM t) AS leases, \
 (SELECT json_agg(r)::text FROM r) AS runs, \
 (SELECT json_agg(json_build_object('id', w.id, 'definition', w.definition))::text FROM workflows w \
    WHERE w.id = ANY(ARRAY(SELECT workflow_id FROM r))) AS defs, \
 st.*, it.* \
FROM \
 (SELECT array_agg(s.run_id) AS step_run_ids, array_agg(s.step_id) AS step_ids, array_agg(s.status) AS step_statuses, \
    array_agg(s.output) AS step_outputs, array_agg(s.error) AS step_errors, array_agg(s.item_count) AS step_item_counts, \
    array_agg(s.generation) AS step_generations \
  FROM run_steps s WHERE s.run_id = ANY(ARRAY(SELECT id FROM r))) st, \
 (SELECT array_agg(k.id ORDER BY k.run_id, k.step_id, k.item_index) AS item_ids, \
    array_agg(k.run_id ORDER BY k.run_id, k.step_id, k.item_index) AS item_run_ids, \
    array_agg(k.step_id ORDER BY k.run_id, k.step_id, k.item_index) AS item_step_ids, \
    array_agg(k.status ORDER BY k.run_id, k.step_id, k.item_index) AS item_statuses, \
    array_agg(k.result ORDER BY k.run_id, k.step_id, k.item_index) AS item_outputs, \
    array_agg(k.error ORDER BY k.run_id, k.step_id, k.item_index) AS item_errors, \
    array_agg(k.item_index ORDER BY k.run_id, k.step_id, k.item_index) AS item_indexes \
  FROM run_steps s JOIN tasks k ON k.run_id = s.run_id AND k.step_id = s.step_id AND k.step_generation = s.generation \
  WHERE s.run_id = ANY(ARRAY(SELECT id FROM r)) AND s.status = 'running') it";

#[derive(Deserialize)]
struct LeaseRow {
    id: i64,
    lease_token: i64,
    attempts: i64,
    max_attempts: i64,
    retry_backoff_ms: i64,
    agent_id: Option<i64>,
    run_id: Option<i64>,
}

#[derive(Deserialize)]
struct DefinitionRow {
    id: i64,
    definition: String,
}

/// An array column of the read (NULL when it found no rows).
fn column<T>(row: &PgRow, name: &str) -> Result<Vec<T>>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    Vec<T>: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    Ok(row.try_get::<Option<Vec<T>>, _>(name)?.unwrap_or_default())
}

/// The runs' steps, read as one array per column: building a JSON object
/// per row cost PostgreSQL ~10 us a row (it looks up every argument's type
/// on every call), most of the read.
fn steps_of(read: &PgRow) -> Result<Vec<StepRow>> {
    let run_ids = column::<i64>(read, "step_run_ids")?;
    let step_ids = column::<String>(read, "step_ids")?;
    let statuses = column::<String>(read, "step_statuses")?;
    let outputs = column::<Option<String>>(read, "step_outputs")?;
    let errors = column::<Option<String>>(read, "step_errors")?;
    let item_counts = column::<Option<i64>>(read, "step_item_counts")?;
    let generations = column::<i64>(read, "step_generations")?;
    Ok(run_ids
        .into_iter()
        .zip(step_ids)
        .zip(statuses)
        .zip(outputs)
        .zip(errors)
        .zip(item_counts)
        .zip(generations)
        .map(
            |((((((run_id, step_id), status), output), error), item_count), generation)| StepRow {
                run_id,
                step_id,
                status,
                output,
                error,
                item_count,
                generation,
            },
        )
        .collect())
}

/// The tasks of the runs' running steps, in run, step and item order.
fn items_of(read: &PgRow) -> Result<Vec<ItemRow>> {
    let ids = column::<i64>(read, "item_ids")?;
    let run_ids = column::<i64>(read, "item_run_ids")?;
    let step_ids = column::<String>(read, "item_step_ids")?;
    let statuses = column::<String>(read, "item_statuses")?;
    let outputs = column::<Option<String>>(read, "item_outputs")?;
    let errors = column::<Option<String>>(read, "item_errors")?;
    let indexes = column::<i64>(read, "item_indexes")?;
    Ok(ids
        .into_iter()
        .zip(run_ids)
        .zip(step_ids)
        .zip(statuses)
        .zip(outputs)
        .zip(errors)
        .zip(indexes)
        .map(
            |((((((id, run_id), step_id), status), output), error), item_index)| ItemRow {
                id,
                run_id,
                step_id,
                status,
                output,
                error,
                item_index,
            },
        )
        .collect())
}

/// A JSON array column of the read (NULL when it found no rows).
fn rows_of<T: DeserializeOwned>(row: &PgRow, column: &str) -> Result<Vec<T>> {
    Ok(match row.try_get::<Option<String>, _>(column)? {
        Some(text) => serde_json::from_str(&text)?,
        None => Vec::new(),
    })
}

impl PgStore {
    /// `RunStore::complete_and_advance` on PostgreSQL. If the batch cannot
    /// be written with its runs' advance, the results are recorded on their
    /// own and the runs go to the caller.
    pub(super) async fn record_and_advance(
        &self,
        agent_id: i64,
        results: &[TaskResult],
        sched: &Scheduling,
        now_us: i64,
        refill: Option<Refill>,
    ) -> Result<Recorded> {
        let mut recorded = match self
            .record_and_advance_together(agent_id, results, sched, now_us, refill)
            .await
        {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::warn!(results = results.len(), error = %e, "could not record results with their runs' advance; recording them on their own");
                let completed = QueueStore::complete(self, agent_id, results, now_us).await?;
                Recorded {
                    left: completed.runs.clone(),
                    completed,
                    ..Recorded::default()
                }
            }
        };
        // Not claimed inside the results' transaction (every lease was
        // stale, or that transaction failed): the agent's ordinary claim.
        if let (Some(r), false) = (refill, recorded.refilled) {
            recorded.refill = self
                .claim_for_agent(agent_id, r.max_tasks, now_us, r.lease_ttl_us)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(agent_id, error = %e, "eager claim failed; the parked claim gets the work");
                    Claim::default()
                });
        }
        Ok(recorded)
    }

    async fn record_and_advance_together(
        &self,
        agent_id: i64,
        results: &[TaskResult],
        sched: &Scheduling,
        now_us: i64,
        refill: Option<Refill>,
    ) -> Result<Recorded> {
        let endings: Vec<Ending> = results
            .iter()
            .map(|r| crate::store::ending_of_result(agent_id, r))
            .collect();
        if endings.is_empty() {
            return Ok(Recorded::default());
        }
        let ids: Vec<i64> = endings.iter().map(|e| e.task_id).collect();
        let mut phases = Phases::start();
        let mut tx = self.begin_advance().await?;
        phases.end("begin");
        let read = sqlx::query(READ_BATCH)
            .bind(&ids)
            .fetch_one(&mut *tx)
            .await?;
        phases.end("read");
        let current: Current = rows_of::<LeaseRow>(&read, "leases")?
            .into_iter()
            .map(|l| {
                let task = RunningTask {
                    attempts: l.attempts,
                    max_attempts: l.max_attempts,
                    retry_backoff_ms: l.retry_backoff_ms,
                };
                ((l.id, l.lease_token), (task, l.agent_id, l.run_id))
            })
            .collect();
        let (completed, ends) = crate::store::plan_endings(&endings, &current, now_us);
        if ends.is_empty() {
            // Every lease was stale: nothing to write.
            tx.rollback().await?;
            return Ok(Recorded {
                completed,
                ..Recorded::default()
            });
        }

        let (advanced, writes) = plan_read(&read, &completed.runs, &ends, sched, now_us)?;
        let left = not_advanced(&completed.runs, &advanced);
        // A retry of a task whose run ends here is cancelled by the write
        // itself (`WRITE_BATCH`), which also says whether anything was
        // requeued.
        let freed = crate::store::freed_slots(ends.iter().filter_map(|e| e.agent_id));
        let cols: EndColumns = ends.into_iter().collect();
        Self::lock_agents_in_order(&mut tx, &freed).await?;
        Self::write_approvals(&mut tx, &writes.approvals, now_us).await?;
        let rows = AdvanceRows {
            tasks: &writes.tasks,
            steps: &step_rows(writes.steps),
            runs: &writes.runs,
            finished: &writes.finished,
        };
        phases.end("plan");
        let opened = write_batch(&mut tx, &cols, &rows, &freed, false, now_us).await?;
        phases.end("write");
        // Eager dispatch: the claim for the freed slots shares the commit.
        // Should it fail, the transaction fails with it and the caller
        // records the results on their own.
        let mut refilled = None;
        if let Some(r) = refill {
            let mut claims =
                Self::claim_group_on(&mut *tx, &[(agent_id, r.max_tasks)], now_us, r.lease_ttl_us)
                    .await?;
            refilled = Some(claims.pop().unwrap_or_default());
            phases.end("refill");
        }
        tx.commit().await?;
        phases.end("commit");
        if opened {
            self.announce_work();
        }
        Ok(Recorded {
            completed,
            advanced,
            left,
            refilled: refilled.is_some(),
            refill: refilled.unwrap_or_default(),
        })
    }
}

/// Times the parts of a results transaction into
/// `drover_results_phase_seconds{phase}`: a step's overhead is mostly its
/// batch's transaction, and this says which part of it grew.
struct Phases(std::time::Instant);

impl Phases {
    fn start() -> Self {
        Self(std::time::Instant::now())
    }

    /// Ends `phase` (begun when the last one ended).
    fn end(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        metrics::histogram!("drover_results_phase_seconds", "phase" => phase)
            .record(now.duration_since(self.0).as_secs_f64());
        self.0 = now;
    }
}

/// Plans the runs of `to_advance` that the read locked, from the state it
/// read with the batch's endings laid over their tasks (the one run
/// loader's pure half, `plan_loaded`).
fn plan_read(
    read: &PgRow,
    to_advance: &[i64],
    ends: &[EndRow],
    sched: &Scheduling,
    now_us: i64,
) -> Result<(Vec<(i64, Advanced)>, Writes)> {
    let runs: Vec<RunStateRow> = rows_of::<RunStateRow>(read, "runs")?
        .into_iter()
        .filter(|r| to_advance.binary_search(&r.id).is_ok())
        .collect();
    if runs.is_empty() {
        return Ok((Vec::new(), Writes::default()));
    }
    let loaded = Loaded {
        runs,
        defs: rows_of::<DefinitionRow>(read, "defs")?
            .into_iter()
            .map(|d| (d.id, d.definition))
            .collect(),
        steps: steps_of(read)?,
        items: items_of(read)?,
    };
    plan_loaded(sched, now_us, loaded, ends, to_advance.len() > 1)
}

impl PgStore {
    pub(super) async fn complete_results(
        &self,
        agent_id: i64,
        results: &[TaskResult],
        now_us: i64,
    ) -> Result<Completed> {
        let endings: Vec<Ending> = results
            .iter()
            .map(|r| crate::store::ending_of_result(agent_id, r))
            .collect();
        let mut tx = self.pool.begin().await?;
        let completed = Self::end_attempts(&mut tx, &endings, now_us).await?;
        tx.commit().await?;
        Ok(completed)
    }

    /// Ends attempts whose lease is current (one locking read, one write
    /// statement for the whole batch, one for the agents' counts); stale
    /// ones change nothing.
    pub(super) async fn end_attempts(
        tx: &mut Transaction<'_, Postgres>,
        endings: &[Ending],
        now_us: i64,
    ) -> Result<Completed> {
        let (completed, freed) = Self::end_attempts_holding_slots(tx, endings, now_us).await?;
        Self::free_slots(tx, &freed).await?;
        Ok(completed)
    }

    /// Gives agents back the slots their ended attempts held (C -= n). Last
    /// in a transaction: an agent's row is what every claim for it locks,
    /// so the less time a transaction holds it, the less claims wait.
    pub(super) async fn free_slots(
        tx: &mut Transaction<'_, Postgres>,
        freed: &FreedSlots,
    ) -> Result<()> {
        if freed.is_empty() {
            return Ok(());
        }
        Self::lock_agents_in_order(tx, freed).await?;
        let (agents, counts): (Vec<i64>, Vec<i64>) = freed.iter().copied().unzip();
        // An agent that was full may have a claim parked on another
        // instance, which hears of the free slot only by a notification.
        sqlx::query(
            "WITH freed AS ( \
               UPDATE agents a SET running = GREATEST(a.running - f.n, 0) \
               FROM unnest($1::bigint[], $2::bigint[]) AS f(id, n) WHERE a.id = f.id AND a.id = ANY($1) \
               RETURNING a.running + f.n >= a.capacity AS was_full) \
             SELECT pg_notify($3, $4) FROM (SELECT 1 FROM freed WHERE was_full LIMIT 1) AS opened",
        )
        .bind(&agents)
        .bind(&counts)
        .bind(WORK_CHANNEL)
        .bind(instance_tag())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Locks the rows of the agents getting slots back in id order, as a
    /// group claim locks them: a batch freeing slots on several agents (a
    /// sweep) must not take them in another order and deadlock with a
    /// claim. One agent's row needs no lock ahead of its update.
    pub(super) async fn lock_agents_in_order(
        tx: &mut Transaction<'_, Postgres>,
        freed: &FreedSlots,
    ) -> Result<()> {
        if freed.len() > 1 {
            let agents: Vec<i64> = freed.iter().map(|(id, _)| *id).collect();
            sqlx::query("SELECT id FROM agents WHERE id = ANY($1) ORDER BY id FOR UPDATE")
                .bind(&agents)
                .fetch_all(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// [`end_attempts`](Self::end_attempts) without giving the agents their
    /// slots back: the caller does that with [`free_slots`](Self::free_slots)
    /// at the end of its transaction.
    pub(super) async fn end_attempts_holding_slots(
        tx: &mut Transaction<'_, Postgres>,
        endings: &[Ending],
        now_us: i64,
    ) -> Result<(Completed, FreedSlots)> {
        if endings.is_empty() {
            return Ok((Completed::default(), FreedSlots::default()));
        }
        let ids: Vec<i64> = endings.iter().map(|e| e.task_id).collect();
        // By id only (`= ANY`, an index probe whatever the statistics say;
        // a join on the leases was planned as a walk over every running
        // task while a new database had no statistics yet); which leases are
        // current is decided from the rows (`plan_endings`).
        let rows = sqlx::query(
            "SELECT t.id, t.lease_token, t.attempts, t.max_attempts, t.retry_backoff_ms, t.agent_id, t.run_id FROM tasks t \
             WHERE t.id = ANY($1) AND t.status = 'running' ORDER BY t.id FOR UPDATE OF t",
        )
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
        let current = current_leases!(rows);
        let (completed, rows) = crate::store::plan_endings(endings, &current, now_us);
        let cols: EndColumns = rows.into_iter().collect();
        if cols.id.is_empty() {
            return Ok((completed, FreedSlots::default()));
        }
        let freed = crate::store::freed_slots(cols.agent_id.iter().flatten().copied());
        let requeued = cols.status.iter().any(|s| s == TaskStatus::Queued.as_str());
        // The slots are given back by the caller (`free_slots`), last.
        let opened = super::batch::write_batch(
            tx,
            &cols,
            &super::batch::AdvanceRows::NONE,
            &[],
            requeued,
            now_us,
        )
        .await?;
        if opened {
            Self::notify_work(tx).await?;
        }
        Ok((completed, freed))
    }
}
