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
use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::batch::{write_batch, AdvanceRows, EndColumns};
use super::{instance_tag, PgStore, WORK_CHANNEL};
use crate::domain::Scheduling;
use crate::lifecycle::RunningTask;
use crate::store::combine::{Combiner, GroupCommit, Job};
use crate::store::plan::{
    not_advanced, plan_loaded, step_rows, Current, EndRow, Ending, FreedSlots, Loaded, Writes,
};
use crate::store::rows::{current_leases, RunStateRow};
use crate::store::rows::{ItemRow, StepRow};
use crate::store::{Advanced, Claim, Completed, Recorded, Refill, Result};

/// Locks the batch's tasks (by id, in id order), then their runs (without
/// waiting: a run another transaction holds is left to the caller), and
/// reads what planning them needs.
const READ_BATCH: &str = "\
WITH t AS MATERIALIZED ( \
   SELECT id, lease_token, attempts, max_attempts, retry_backoff_ms, agent_id, run_id, concurrency_key FROM tasks \
   WHERE id = ANY($1) AND status = 'running' ORDER BY id FOR UPDATE), \
 r AS MATERIALIZED ( \
   SELECT id, workflow_id, status, inputs, started_by, parent_run_id FROM runs \
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
    concurrency_key: Option<String>,
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

/// One agent's results request, waiting to share a results transaction
/// with other agents' (group commit; shared, so a retry alone is cheap).
#[derive(Clone)]
pub(super) struct ResultsJob(Arc<ResultsRequestJob>);

pub(super) struct ResultsRequestJob {
    agent_id: i64,
    endings: Vec<Ending>,
    refill: Option<Refill>,
    sched: Scheduling,
    now_us: i64,
}

impl Job for ResultsJob {
    fn rows(&self) -> usize {
        self.0.endings.len()
    }
}

/// The results' gathering task. It holds a store without one of its own,
/// so the two do not keep each other alive.
pub(super) fn combiner(
    settings: GroupCommit,
    in_flight: usize,
    store: PgStore,
) -> Combiner<ResultsJob, Recorded> {
    Combiner::start("results", settings, in_flight, move |jobs| {
        let store = store.clone();
        async move { store.record_many(jobs).await }
    })
}

impl PgStore {
    /// `RunStore::complete_and_advance` on PostgreSQL: through the results'
    /// gathering task, so that concurrent requests of many agents share a
    /// transaction.
    pub(super) async fn record_and_advance(
        &self,
        agent_id: i64,
        results: &[TaskResult],
        sched: &Scheduling,
        now_us: i64,
        refill: Option<Refill>,
    ) -> Result<Recorded> {
        let job = ResultsJob(Arc::new(ResultsRequestJob {
            agent_id,
            endings: results
                .iter()
                .map(|r| crate::store::ending_of_result(agent_id, r))
                .collect(),
            refill,
            sched: *sched,
            now_us,
        }));
        match &self.results {
            Some(combiner) => combiner.run(job).await,
            None => self.record_one(&job.0).await,
        }
    }

    /// Writes gathered results requests: one alone as itself, several in
    /// one transaction whose outcome is split back per request (the runs
    /// it advanced go with the first). If that transaction fails the
    /// gathering task writes each request alone.
    pub(super) async fn record_many(&self, jobs: Vec<ResultsJob>) -> Result<Vec<Recorded>> {
        if let [job] = jobs.as_slice() {
            return Ok(vec![self.record_one(&job.0).await?]);
        }
        let Some(first) = jobs.first().map(|j| &j.0) else {
            return Ok(Vec::new());
        };
        let endings: Vec<Ending> = jobs
            .iter()
            .flat_map(|j| j.0.endings.iter().cloned())
            .collect();
        // One refill per agent (an agent with two requests here gets it once).
        let mut refills: Vec<(i64, Refill)> = Vec::new();
        for j in &jobs {
            if let Some(r) = j.0.refill {
                if !refills.iter().any(|(a, _)| *a == j.0.agent_id) {
                    refills.push((j.0.agent_id, r));
                }
            }
        }
        let (mut recorded, mut claims) = self
            .record_and_advance_together(&endings, &refills, &first.sched, first.now_us)
            .await?;
        let refilled = recorded.refilled || recorded.completed.runs.is_empty();
        if !recorded.refilled && refilled {
            claims = self.refill_alone(&refills, first.now_us).await;
        }
        let mut applied = std::mem::take(&mut recorded.completed.applied).into_iter();
        let mut out = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            let mut mine = if i == 0 {
                Recorded {
                    completed: Completed {
                        applied: Vec::new(),
                        runs: std::mem::take(&mut recorded.completed.runs),
                    },
                    advanced: std::mem::take(&mut recorded.advanced),
                    left: std::mem::take(&mut recorded.left),
                    ..Recorded::default()
                }
            } else {
                Recorded::default()
            };
            mine.completed.applied = applied.by_ref().take(job.0.endings.len()).collect();
            mine.refilled = refilled && job.0.refill.is_some();
            if mine.refilled {
                if let Some(at) = refills.iter().position(|(a, _)| *a == job.0.agent_id) {
                    if let Some(claim) = claims.get_mut(at) {
                        mine.refill = std::mem::take(claim);
                    }
                }
            }
            out.push(mine);
        }
        Ok(out)
    }

    /// One request. If its results cannot be written with their runs'
    /// advance, they are recorded on their own and the runs go to the
    /// caller.
    async fn record_one(&self, job: &ResultsRequestJob) -> Result<Recorded> {
        let refills: Vec<(i64, Refill)> =
            job.refill.map(|r| (job.agent_id, r)).into_iter().collect();
        let mut recorded = match self
            .record_and_advance_together(&job.endings, &refills, &job.sched, job.now_us)
            .await
        {
            Ok((mut recorded, claims)) => {
                recorded.refill = claims.into_iter().next().unwrap_or_default();
                recorded
            }
            Err(e) => {
                tracing::warn!(results = job.endings.len(), error = %e, "could not record results with their runs' advance; recording them on their own");
                let completed = self.complete_endings(&job.endings, job.now_us).await?;
                Recorded {
                    left: completed.runs.clone(),
                    completed,
                    ..Recorded::default()
                }
            }
        };
        // Not claimed inside the results' transaction (every lease was
        // stale, or that transaction failed): the agent's ordinary claim,
        // unless runs moved (see `record_and_advance_together`).
        let refilled = recorded.refilled || recorded.completed.runs.is_empty();
        if !recorded.refilled && refilled {
            recorded.refill = self
                .refill_alone(&refills, job.now_us)
                .await
                .into_iter()
                .next()
                .unwrap_or_default();
        }
        recorded.refilled = refilled && job.refill.is_some();
        Ok(recorded)
    }

    /// Each agent's ordinary claim, outside any results transaction.
    async fn refill_alone(&self, refills: &[(i64, Refill)], now_us: i64) -> Vec<Claim> {
        let mut claims = Vec::with_capacity(refills.len());
        for &(agent_id, r) in refills {
            claims.push(
                self.claim_for_agent(agent_id, r.max_tasks, now_us, r.lease_ttl_us)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(agent_id, error = %e, "eager claim failed; the parked claim gets the work");
                        Claim::default()
                    }),
            );
        }
        claims
    }

    /// Records `endings` with the advance of their runs, and claims each
    /// `refills` agent's work, all in one transaction. The claims come back
    /// in `refills`' order (none if every lease was stale).
    async fn record_and_advance_together(
        &self,
        endings: &[Ending],
        refills: &[(i64, Refill)],
        sched: &Scheduling,
        now_us: i64,
    ) -> Result<(Recorded, Vec<Claim>)> {
        if endings.is_empty() {
            return Ok((Recorded::default(), Vec::new()));
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
        let leases = rows_of::<LeaseRow>(&read, "leases")?;
        let mut key_of = HashMap::new();
        for l in &leases {
            if let Some(key) = &l.concurrency_key {
                key_of.insert(l.id, key.clone());
            }
        }
        let current: Current = leases
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
        let (completed, ends) = crate::store::plan_endings(endings, &current, now_us);
        if ends.is_empty() {
            // Every lease was stale: nothing to write.
            tx.rollback().await?;
            return Ok((
                Recorded {
                    completed,
                    ..Recorded::default()
                },
                Vec::new(),
            ));
        }

        let (mut advanced, writes) = plan_read(&read, &completed.runs, &ends, sched, now_us)?;
        let left = not_advanced(&completed.runs, &advanced);
        // A retry of a task whose run ends here is cancelled by the write
        // itself (`WRITE_BATCH`), which also says whether anything was
        // requeued.
        let freed = crate::store::freed_slots(ends.iter().filter_map(|e| e.agent_id));
        let freed_keys = freed_keys(&ends, &key_of);
        let cols: EndColumns = ends.into_iter().collect();
        Self::lock_agents_in_order(&mut tx, &freed).await?;
        Self::write_approvals(&mut tx, &writes.approvals, now_us).await?;
        let rows = AdvanceRows {
            tasks: &writes.tasks,
            steps: &step_rows(writes.steps),
            runs: &writes.runs,
            finished: &writes.finished,
            events: &writes.events,
        };
        phases.end("plan");
        let opened = write_batch(&mut tx, &cols, &rows, &freed, false, now_us).await?;
        let follow = Self::write_waits(
            &mut tx,
            &writes.waits,
            &writes.child_ends,
            &writes.ended_waiting,
            now_us,
        )
        .await?;
        crate::store::plan::attach_follow_ups(&mut advanced, follow);
        if !freed_keys.is_empty() {
            crate::store::keys::refill_pg(&mut tx, &freed_keys).await?;
        }
        phases.end("write");
        // Eager dispatch: the claim for the freed slots shares the commit.
        // Should it fail, the transaction fails with it and the caller
        // records the results on their own.
        // A batch that moves workflow runs gets no refill: the claims would
        // hold the agents' rows through the rest of this longer
        // transaction, where every dispatcher round claiming for those
        // agents waits on them (1,000 concurrent chains of no-op steps took
        // 13 % longer with it); their next steps are handed out by the
        // round the advance starts.
        let refills = if completed.runs.is_empty() {
            refills
        } else {
            &[]
        };
        // Agents in id order, as every claim locks them.
        let mut order: Vec<usize> = (0..refills.len()).collect();
        order.sort_by_key(|&i| refills[i].0);
        let mut claims = vec![Claim::default(); refills.len()];
        for i in order {
            let (agent_id, r) = refills[i];
            let mut claimed =
                Self::claim_group_on(&mut *tx, &[(agent_id, r.max_tasks)], now_us, r.lease_ttl_us)
                    .await?;
            claims[i] = claimed.pop().unwrap_or_default();
        }
        if !refills.is_empty() {
            phases.end("refill");
        }
        tx.commit().await?;
        phases.end("commit");
        if opened {
            self.announce_work();
        }
        Ok((
            Recorded {
                completed,
                advanced,
                left,
                refilled: !refills.is_empty(),
                refill: Claim::default(),
            },
            claims,
        ))
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
        self.complete_endings(&endings, now_us).await
    }

    /// Ends the attempts in a transaction of their own.
    async fn complete_endings(&self, endings: &[Ending], now_us: i64) -> Result<Completed> {
        let mut tx = self.pool.begin().await?;
        let completed = Self::end_attempts(&mut tx, endings, now_us).await?;
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
        let read = sqlx::query(
            "SELECT t.id, t.lease_token, t.attempts, t.max_attempts, t.retry_backoff_ms, t.agent_id, t.run_id, \
             t.concurrency_key FROM tasks t \
             WHERE t.id = ANY($1) AND t.status = 'running' ORDER BY t.id FOR UPDATE OF t",
        )
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
        let current = current_leases!(read);
        let (completed, rows) = crate::store::plan_endings(endings, &current, now_us);
        let freed_keys = freed_keys(&rows, &keys_by_id(&read)?);
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
        // Refilled here, as the results batch does.
        let admitted = if freed_keys.is_empty() {
            0
        } else {
            crate::store::keys::refill_pg(tx, &freed_keys).await?
        };
        if opened || admitted > 0 {
            Self::notify_work(tx).await?;
        }
        Ok((completed, freed))
    }
}

/// The concurrency keys of the tasks read, by task id.
fn keys_by_id(rows: &[PgRow]) -> Result<HashMap<i64, String>> {
    let mut keys = HashMap::new();
    for row in rows {
        if let Some(key) = row.try_get::<Option<String>, _>("concurrency_key")? {
            keys.insert(row.try_get("id")?, key);
        }
    }
    Ok(keys)
}

/// The keys whose slots `ends` give back for good (a retry keeps its
/// task's slot through its backoff, as on SQLite), once each, in key
/// order: the order admissions take their locks in.
fn freed_keys(ends: &[EndRow], key_of: &HashMap<i64, String>) -> Vec<String> {
    ends.iter()
        .filter(|e| e.terminal)
        .filter_map(|e| key_of.get(&e.id).cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}
