//! PostgreSQL: the one statement that writes task endings and advances
//! (results, plain completions, sweeps and the advancer all use it, each
//! leaving out what it has not got).

use serde_json::Value;

use crate::store::plan::EndRow;
use crate::store::run_events::{pg_insert_events, EventWrite};
use crate::store::Result;

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
/// pending approval). An ending that would queue again a task of a run
/// that ends in the same batch cancels it instead (`v`): the statement's
/// CTEs all see the rows as they were, so cancelling the run's queued
/// tasks (`fin`) cannot see it requeued, as SQLite's later statement does.
/// The runs' events (`$25`, in the plans' order) are appended by `rev`.
const WRITE_BATCH: &str = concat!("\
WITH e AS ( \
   SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], \
     $7::text[], $8::bool[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::text[], $14::bigint[]) \
   AS e(id, lease_token, status, attempts_delta, run_after, result, error, terminal, outcome, event, \
        started_at, finished_at, attempt_error, agent_id)), \
 v AS ( \
   SELECT e.id, e.lease_token, CASE WHEN x.cancel THEN 'cancelled' ELSE e.status END AS status, \
     e.attempts_delta, CASE WHEN x.cancel THEN NULL ELSE e.run_after END AS run_after, e.result, e.error, \
     e.terminal OR x.cancel AS terminal, e.outcome, CASE WHEN x.cancel THEN 'cancelled' ELSE e.event END AS event, \
     e.started_at, e.finished_at, e.attempt_error, e.agent_id \
   FROM e CROSS JOIN LATERAL (SELECT e.status = 'queued' AND cardinality($19::bigint[]) > 0 \
     AND EXISTS (SELECT 1 FROM tasks k WHERE k.id = e.id AND k.run_id = ANY($19)) AS cancel) x), \
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
     item_index, step_generation, concurrency_key, concurrency_limit, held) \
   SELECT n.task_type, n.payload, n.urgency, n.time_sensitivity, n.importance, n.priority, n.rank, 'queued', n.max_attempts, \
     n.timeout_ms, n.retry_backoff_ms, ARRAY(SELECT json_array_elements_text(n.required_labels)), n.idempotency_key, \
     $15, $15, $15, n.run_id, n.step_id, n.item_index, n.step_generation, n.concurrency_key, n.concurrency_limit, \
     CASE WHEN n.concurrency_key IS NULL THEN 0 ELSE 1 END \
   FROM json_to_recordset($16::json) AS n(task_type text, payload text, urgency bigint, time_sensitivity bigint, \
     importance bigint, priority float8, rank float8, max_attempts bigint, timeout_ms bigint, retry_backoff_ms bigint, \
     required_labels json, idempotency_key text, run_id bigint, step_id text, item_index bigint, step_generation bigint, \
     concurrency_key text, concurrency_limit bigint) \
   ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id), \
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
 rev AS (", pg_insert_events!("$25", "$15"), "), \
 freed AS (UPDATE agents a SET running = GREATEST(a.running - f.n, 0) \
   FROM unnest($20::bigint[], $21::bigint[]) AS f(id, n) WHERE a.id = f.id AND a.id = ANY($20) \
   RETURNING a.running + f.n >= a.capacity AS was_full) \
SELECT $22 OR EXISTS (SELECT 1 FROM v WHERE v.status = 'queued') OR EXISTS (SELECT 1 FROM ins) \
  OR EXISTS (SELECT 1 FROM freed WHERE was_full) AS opened");

/// The columns of a batched attempt ending, one array per column.
#[derive(Default)]
pub(super) struct EndColumns {
    pub(super) id: Vec<i64>,
    pub(super) lease_token: Vec<i64>,
    pub(super) status: Vec<String>,
    pub(super) attempts_delta: Vec<i64>,
    pub(super) run_after: Vec<Option<i64>>,
    pub(super) result: Vec<Option<String>>,
    pub(super) error: Vec<Option<String>>,
    pub(super) terminal: Vec<bool>,
    pub(super) outcome: Vec<String>,
    pub(super) event: Vec<String>,
    pub(super) started_at: Vec<Option<i64>>,
    pub(super) finished_at: Vec<Option<i64>>,
    pub(super) attempt_error: Vec<Option<String>>,
    pub(super) agent_id: Vec<Option<i64>>,
}

impl FromIterator<EndRow> for EndColumns {
    fn from_iter<I: IntoIterator<Item = EndRow>>(rows: I) -> Self {
        let mut cols = Self::default();
        for row in rows {
            cols.push(row);
        }
        cols
    }
}

impl EndColumns {
    fn push(&mut self, r: EndRow) {
        self.id.push(r.id);
        self.lease_token.push(r.lease_token);
        self.status.push(r.status.to_string());
        self.attempts_delta.push(r.attempts_delta);
        self.run_after.push(r.run_after);
        self.result.push(r.result);
        self.error.push(r.error);
        self.terminal.push(r.terminal);
        self.outcome.push(r.outcome.to_string());
        self.event.push(r.event.to_string());
        self.started_at.push(r.started_at);
        self.finished_at.push(r.finished_at);
        self.attempt_error.push(r.attempt_error);
        self.agent_id.push(r.agent_id);
    }
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
    /// What happened, in order (`run_events`).
    pub events: &'a [EventWrite],
}

impl AdvanceRows<'_> {
    pub(in crate::store) const NONE: AdvanceRows<'static> = AdvanceRows {
        tasks: &[],
        steps: &[],
        runs: &[],
        finished: &[],
        events: &[],
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
        .bind(serde_json::to_string(rows.events)?)
        .fetch_one(&mut **tx)
        .await?)
}
