//! PostgreSQL: a batch of results recorded and its runs advanced in four
//! round trips — `BEGIN`, one statement that locks and reads everything the
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

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use sqlx::postgres::PgRow;

use super::*;
use crate::lifecycle::RunningTask;
use crate::store::postgres::EndColumns;
use crate::store::{Current, EndRow};

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

/// Ends the attempts, creates the new tasks, updates steps and runs, drops
/// the queued work and open approvals of runs that ended, gives the agents
/// their slots back, and answers whether work became claimable (new or
/// requeued tasks, or a full agent with a free slot), which the other
/// instances are told after commit. New tasks, steps and runs are JSON
/// record sets, parsed once each; the keys of the steps and runs to update
/// come as arrays beside them (`$23`, `$24`), looked up by index (the
/// planner guesses 100 rows for a record set, and extracting the keys from
/// the JSON parsed it again: 5 ms of a 10 ms write of 200 steps). The
/// endings are column arrays. `status || ''` keeps the cancelling on the
/// run indexes: by a status index it would walk every queued task (or
/// pending approval).
const WRITE_BATCH: &str = "\
WITH v AS ( \
   SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], \
     $7::text[], $8::bool[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::text[], $14::bigint[]) \
   AS v(id, lease_token, status, attempts_delta, run_after, result, error, terminal, outcome, event, \
        started_at, finished_at, attempt_error, agent_id)), \
 upd AS (UPDATE tasks t SET status = v.status, attempts = t.attempts + v.attempts_delta, \
     run_after = COALESCE(v.run_after, t.run_after), result = v.result, error = v.error, \
     agent_id = CASE WHEN v.terminal THEN t.agent_id END, lease_expires_at = NULL, updated_at = $15, \
     finished_at = CASE WHEN v.terminal THEN $15 END \
   FROM v WHERE t.id = v.id AND t.id = ANY($1)), \
 att AS (UPDATE task_attempts a SET outcome = v.outcome, error = v.attempt_error, \
     finished_at = COALESCE(v.finished_at, $15), started_at = COALESCE(v.started_at, a.started_at) \
   FROM v WHERE a.task_id = v.id AND a.lease_token = v.lease_token AND a.task_id = ANY($1)), \
 ev AS (INSERT INTO task_events (task_id, at, kind, status, agent_id, detail) \
   SELECT v.id, $15, v.event, v.status, v.agent_id, v.error FROM v), \
 ins AS ( \
   INSERT INTO tasks (task_type, payload, urgency, time_sensitivity, importance, priority, rank, status, max_attempts, \
     timeout_ms, retry_backoff_ms, required_labels, idempotency_key, run_after, created_at, updated_at, run_id, step_id, \
     item_index, step_generation) \
   SELECT n.task_type, n.payload, n.urgency, n.time_sensitivity, n.importance, n.priority, n.rank, 'queued', n.max_attempts, \
     n.timeout_ms, n.retry_backoff_ms, ARRAY(SELECT json_array_elements_text(n.required_labels)), n.idempotency_key, \
     $15, $15, $15, n.run_id, n.step_id, n.item_index, n.step_generation \
   FROM json_to_recordset($16::json) AS n(task_type text, payload text, urgency bigint, time_sensitivity bigint, \
     importance bigint, priority float8, rank float8, max_attempts bigint, timeout_ms bigint, retry_backoff_ms bigint, \
     required_labels json, idempotency_key text, run_id bigint, step_id text, item_index bigint, step_generation bigint) \
   ON CONFLICT (idempotency_key) DO NOTHING RETURNING id), \
 st AS (UPDATE run_steps s SET status = n.status, output = n.output, error = n.error, \
     item_count = COALESCE(n.item_count, s.item_count), started_at = COALESCE(s.started_at, $15), \
     finished_at = CASE WHEN n.terminal THEN $15 ELSE NULL END, updated_at = $15 \
   FROM json_to_recordset($17::json) AS n(run_id bigint, step_id text, status text, output text, error text, \
     item_count bigint, terminal boolean) \
   WHERE s.run_id = n.run_id AND s.step_id = n.step_id \
     AND s.run_id = ANY($23)), \
 ru AS (UPDATE runs r SET status = n.status, error = COALESCE(n.error, r.error), updated_at = $15, \
     finished_at = CASE WHEN n.terminal THEN $15 ELSE NULL END \
   FROM json_to_recordset($18::json) AS n(id bigint, status text, error text, terminal boolean) \
   WHERE r.id = n.id AND r.id = ANY($24)), \
 fin AS (UPDATE tasks SET status = 'cancelled', updated_at = $15, finished_at = $15 \
   WHERE run_id = ANY($19) AND status || '' = 'queued' RETURNING id), \
 finev AS (INSERT INTO task_events (task_id, at, kind, status, detail) \
   SELECT id, $15, 'cancelled', 'cancelled', 'its run ended' FROM fin), \
 fina AS (UPDATE approvals SET status = 'cancelled' WHERE run_id = ANY($19) AND status || '' = 'pending'), \
 freed AS (UPDATE agents a SET running = GREATEST(a.running - f.n, 0) \
   FROM unnest($20::bigint[], $21::bigint[]) AS f(id, n) WHERE a.id = f.id AND a.id = ANY($20) \
   RETURNING a.running + f.n >= a.capacity AS was_full) \
SELECT $22 OR EXISTS (SELECT 1 FROM ins) OR EXISTS (SELECT 1 FROM freed WHERE was_full) AS opened";

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
struct RunRow {
    id: i64,
    workflow_id: i64,
    status: String,
    inputs: String,
    started_by: String,
}

#[derive(Deserialize)]
struct DefinitionRow {
    id: i64,
    definition: String,
}

struct StepRow {
    run_id: i64,
    step_id: String,
    status: String,
    output: Option<String>,
    error: Option<String>,
    item_count: Option<i64>,
    generation: i64,
}

struct ItemRow {
    id: i64,
    run_id: i64,
    step_id: String,
    status: String,
    output: Option<String>,
    error: Option<String>,
    item_index: i64,
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

/// The ids under `key` of JSON rows, bound beside the rows so that the
/// statement looks them up by index without parsing the JSON again.
fn ids_of(rows: &[Value], key: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.iter().filter_map(|r| r[key].as_i64()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// What an advance writes, as `write_batch` takes it.
pub(in crate::store) struct AdvanceRows<'a> {
    pub tasks: &'a [Value],
    pub steps: &'a [Value],
    pub runs: &'a [Value],
    /// Runs that ended: their queued work and open approvals are dropped.
    pub finished: &'a [i64],
}

impl AdvanceRows<'_> {
    pub(in crate::store) const NONE: AdvanceRows<'static> = AdvanceRows {
        tasks: &[],
        steps: &[],
        runs: &[],
        finished: &[],
    };
}

/// Runs [`WRITE_BATCH`]: the one statement that writes task endings and
/// advances on PostgreSQL (results, plain completions and the `Advancer`
/// all use it, each leaving out what it has not got). Answers whether work
/// became claimable.
pub(in crate::store) async fn write_batch(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ends: &EndColumns,
    rows: &AdvanceRows<'_>,
    freed: &[(i64, i64)],
    requeued: bool,
    now_us: i64,
) -> Result<bool> {
    let (agents, counts): (Vec<i64>, Vec<i64>) = freed.iter().copied().unzip();
    Ok(sqlx::query_scalar(WRITE_BATCH)
        .bind(&ends.id)
        .bind(&ends.lease_token)
        .bind(&ends.status)
        .bind(&ends.attempts_delta)
        .bind(&ends.run_after)
        .bind(&ends.result)
        .bind(&ends.error)
        .bind(&ends.terminal)
        .bind(&ends.outcome)
        .bind(&ends.event)
        .bind(&ends.started_at)
        .bind(&ends.finished_at)
        .bind(&ends.attempt_error)
        .bind(&ends.agent_id)
        .bind(now_us)
        .bind(serde_json::to_string(rows.tasks)?)
        .bind(serde_json::to_string(rows.steps)?)
        .bind(serde_json::to_string(rows.runs)?)
        .bind(rows.finished)
        .bind(&agents)
        .bind(&counts)
        .bind(requeued)
        .bind(ids_of(rows.steps, "run_id"))
        .bind(ids_of(rows.runs, "id"))
        .fetch_one(&mut **tx)
        .await?)
}

impl PgStore {
    /// [`RunStore::complete_and_advance`] on PostgreSQL. If the batch cannot
    /// be written with its runs' advance, the results are recorded on their
    /// own and the runs go to the caller.
    pub(super) async fn record_and_advance(
        &self,
        agent_id: i64,
        results: &[TaskResult],
        sched: &Scheduling,
        now_us: i64,
    ) -> Result<Recorded> {
        match self
            .record_and_advance_together(agent_id, results, sched, now_us)
            .await
        {
            Ok(recorded) => Ok(recorded),
            Err(e) => {
                tracing::warn!(results = results.len(), error = %e, "could not record results with their runs' advance; recording them on their own");
                let completed = QueueStore::complete(self, agent_id, results, now_us).await?;
                Ok(Recorded {
                    left: completed.runs.clone(),
                    completed,
                    ..Recorded::default()
                })
            }
        }
    }

    async fn record_and_advance_together(
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
        let (completed, mut ends) = crate::store::plan_endings(&endings, &current, now_us);
        if ends.is_empty() {
            // Every lease was stale: nothing to write.
            tx.rollback().await?;
            return Ok(Recorded {
                completed,
                ..Recorded::default()
            });
        }

        let (advanced, writes) = plan_loaded(&read, &completed.runs, &ends, sched, now_us)?;
        let left = not_advanced(&completed.runs, &advanced);
        cancel_retries_of_ended_runs(&mut ends, &current, &writes.finished);

        let freed = crate::store::freed_slots(ends.iter().filter_map(|e| e.agent_id));
        let requeued = ends.iter().any(|e| e.status == TaskStatus::Queued.as_str());
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
        let opened = write_batch(&mut tx, &cols, &rows, &freed, requeued, now_us).await?;
        phases.end("write");
        tx.commit().await?;
        phases.end("commit");
        if opened {
            self.announce_work();
        }
        Ok(Recorded {
            completed,
            advanced,
            left,
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
/// read with the batch's endings laid over their tasks.
fn plan_loaded(
    read: &PgRow,
    to_advance: &[i64],
    ends: &[EndRow],
    sched: &Scheduling,
    now_us: i64,
) -> Result<(Vec<(i64, Advanced)>, Writes)> {
    let wanted = |id: &i64| to_advance.binary_search(id).is_ok();
    let mut runs = Vec::new();
    for r in rows_of::<RunRow>(read, "runs")? {
        if wanted(&r.id) {
            runs.push(ActiveRun {
                id: r.id,
                workflow_id: r.workflow_id,
                status: run_status(&r.status)?,
                inputs: r.inputs,
                started_by: r.started_by,
            });
        }
    }
    if runs.is_empty() {
        return Ok((Vec::new(), Writes::default()));
    }
    let mut defs: HashMap<i64, Definition> = HashMap::new();
    for d in rows_of::<DefinitionRow>(read, "defs")? {
        if runs
            .iter()
            .any(|r| r.workflow_id == d.id && !r.status.is_terminal())
        {
            defs.insert(d.id, serde_json::from_str(&d.definition)?);
        }
    }
    let mut loaded: HashMap<i64, RunSteps> = HashMap::with_capacity(runs.len());
    for s in steps_of(read)? {
        if !wanted(&s.run_id) {
            continue;
        }
        let run = loaded.entry(s.run_id).or_default();
        run.generations.insert(s.step_id.clone(), s.generation);
        run.steps.insert(
            s.step_id,
            StepState {
                status: step_status(&s.status)?,
                output: json_opt(s.output)?,
                error: s.error,
                items: Vec::new(),
                item_count: s.item_count.map(|n| n as usize),
            },
        );
    }
    let ended: HashMap<i64, &EndRow> = ends.iter().map(|e| (e.id, e)).collect();
    for item in items_of(read)? {
        let Some(state) = loaded
            .get_mut(&item.run_id)
            .and_then(|run| run.steps.get_mut(&item.step_id))
        else {
            continue;
        };
        let (status, output, error) = match ended.get(&item.id) {
            Some(end) => (end.status, end.result.clone(), end.error.clone()),
            None => (item.status.as_str(), item.output, item.error),
        };
        state.items.push(ItemState {
            index: item.item_index as usize,
            task_status: crate::store::rows::task_status(status)?,
            output: json_opt(output)?,
            error,
        });
    }
    plan_batch(sched, now_us, runs, &defs, loaded, to_advance.len() > 1)
}

/// A task of a run that ended in this batch is not retried: the ending
/// that would queue it again cancels it instead (what the cancelling of
/// the run's queued tasks would have done to it, had it been written
/// first).
fn cancel_retries_of_ended_runs(ends: &mut [EndRow], current: &Current, finished: &[i64]) {
    if finished.is_empty() {
        return;
    }
    for end in ends.iter_mut() {
        let run = current
            .get(&(end.id, end.lease_token))
            .and_then(|(_, _, run)| *run);
        if end.status == TaskStatus::Queued.as_str() && run.is_some_and(|r| finished.contains(&r)) {
            end.status = TaskStatus::Cancelled.as_str();
            end.terminal = true;
            end.run_after = None;
            end.event = "cancelled";
        }
    }
}
