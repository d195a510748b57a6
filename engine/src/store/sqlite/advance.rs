//! Advancing workflow runs on SQLite: the run loader (`advance_in`) and
//! the writing of what the planner decided. The JSON rows are unpacked by
//! `json_each` inside the database; statements cost no network round trip,
//! so each table gets its own.

use serde_json::Value;
use sqlx::{Sqlite, Transaction};

use super::SqliteStore;
use crate::domain::Scheduling;
use crate::store::plan::{
    attach_follow_ups, plan_loaded, step_rows, ApprovalWrite, Loaded, Writes,
};
use crate::store::rows::run_status;
use crate::store::rows::{split_loaded, LoadedRow, RunStateRow};
use crate::store::sql::runs as sql;
use crate::store::{Advanced, Result};

/// The runs of a JSON array of ids with their definitions (a sub-select,
/// so the workflow row is not locked), in id order.
const LOAD_RUNS: &str = "SELECT id, workflow_id, status, inputs, started_by, parent_run_id, \
    (SELECT definition FROM workflows w WHERE w.id = runs.workflow_id) AS definition \
    FROM runs WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id";

/// Every step of the runs, then the tasks of their running steps (current
/// generation) in item order: the planner looks at no other tasks, as
/// other steps' outcomes are on their rows.
const LOAD_STEPS: &str = "SELECT CAST(0 AS BIGINT) AS kind, CAST(0 AS BIGINT) AS task_id, run_id, \
    step_id, status, output, error, item_count, generation, CAST(0 AS BIGINT) AS item_index \
    FROM run_steps WHERE run_id IN (SELECT value FROM json_each($1)) \
    UNION ALL \
    SELECT 1, t.id, t.run_id, t.step_id, t.status, t.result, t.error, NULL, NULL, t.item_index \
    FROM run_steps s JOIN tasks t ON t.run_id = s.run_id AND t.step_id = s.step_id \
    AND t.step_generation = s.generation \
    WHERE s.run_id IN (SELECT value FROM json_each($1)) AND s.status = 'running' \
    ORDER BY kind, run_id, item_index";

impl SqliteStore {
    pub(super) async fn begin_advance(&self) -> Result<Transaction<'static, Sqlite>> {
        self.begin_write().await
    }

    pub(super) async fn advance_in_one_transaction(
        &self,
        run_ids: &[i64],
        sched: &Scheduling,
        now_us: i64,
    ) -> Result<Vec<(i64, Advanced)>> {
        let mut tx = self.begin_advance().await?;
        let advanced = Self::advance_in(&mut tx, run_ids, sched, now_us, "").await?;
        tx.commit().await?;
        Ok(advanced)
    }

    /// Advances runs inside `tx` (`run_ids` sorted and distinct); runs
    /// that do not exist are left out of the answer. Two statements load
    /// every run of the batch, then each run's plan is written. `_lock` is
    /// empty: the single writer holds everything.
    pub(super) async fn advance_in(
        tx: &mut Transaction<'_, Sqlite>,
        run_ids: &[i64],
        sched: &Scheduling,
        now_us: i64,
        _lock: &str,
    ) -> Result<Vec<(i64, Advanced)>> {
        let runs: Vec<RunStateRow> = sqlx::query_as(LOAD_RUNS)
            .bind(serde_json::to_string(run_ids)?)
            .fetch_all(&mut **tx)
            .await?;
        let active: Vec<i64> = runs
            .iter()
            .filter(|r| run_status(&r.status).map_or(true, |s| !s.is_terminal()))
            .map(|r| r.id)
            .collect();
        let (steps, items) = if active.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let rows: Vec<LoadedRow> = sqlx::query_as(LOAD_STEPS)
                .bind(serde_json::to_string(&active)?)
                .fetch_all(&mut **tx)
                .await?;
            split_loaded(rows)
        };
        let loaded = Loaded {
            runs,
            defs: Vec::new(),
            steps,
            items,
        };
        let (mut out, writes) = plan_loaded(sched, now_us, loaded, &[], run_ids.len() > 1)?;
        if !active.is_empty() {
            let follow = Self::write(tx, writes, now_us).await?;
            attach_follow_ups(&mut out, follow);
        }
        Ok(out)
    }

    /// Opens the approvals the plans asked for (an open one is kept).
    pub(super) async fn write_approvals(
        tx: &mut Transaction<'_, Sqlite>,
        approvals: &[ApprovalWrite],
        now_us: i64,
    ) -> Result<()> {
        for a in approvals {
            sqlx::query(sql::OPEN_APPROVAL)
                .bind(a.run_id)
                .bind(&a.step_id)
                .bind(&a.message)
                .bind(&a.approvers)
                .bind(a.allow_self)
                .bind(a.on_timeout)
                .bind(a.on_reject)
                .bind(a.expires_at)
                .bind(now_us)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Cancels the queued tasks of the runs (a JSON array of ids), each
    /// with a `cancelled` event saying why.
    pub(crate) async fn cancel_queued_tasks(
        tx: &mut Transaction<'_, Sqlite>,
        runs: &str,
        why: &str,
        now_us: i64,
    ) -> Result<()> {
        // `status || ''` keeps SQLite on the run index: by the status
        // index it would walk every queued task.
        let cancelled: Vec<i64> = sqlx::query_scalar(
            "UPDATE tasks SET status = 'cancelled', updated_at = $1, finished_at = $1 \
             WHERE run_id IN (SELECT value FROM json_each($2)) AND status || '' = 'queued' RETURNING id",
        )
        .bind(now_us)
        .bind(runs)
        .fetch_all(&mut **tx)
        .await?;
        if !cancelled.is_empty() {
            sqlx::query(
                "INSERT INTO task_events (task_id, at, kind, status, detail) \
                 SELECT id, $1, 'cancelled', 'cancelled', $3 FROM tasks \
                 WHERE id IN (SELECT value FROM json_each($2))",
            )
            .bind(now_us)
            .bind(serde_json::to_string(&cancelled)?)
            .bind(why)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Writes what the batch's plans decided: a fixed number of
    /// statements however many runs moved.
    async fn write(
        tx: &mut Transaction<'_, Sqlite>,
        writes: Writes,
        now_us: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let steps = step_rows(writes.steps);
        write_rows(tx, &writes.tasks, &steps, &writes.runs, now_us).await?;
        Self::write_events(tx, &writes.events, now_us).await?;
        Self::write_approvals(tx, &writes.approvals, now_us).await?;
        let follow = Self::write_waits(
            tx,
            &writes.waits,
            &writes.child_ends,
            &writes.ended_waiting,
            now_us,
        )
        .await?;
        if !writes.finished.is_empty() {
            // Nothing more of these runs will run: drop their queued work and open approvals.
            let ids = serde_json::to_string(&writes.finished)?;
            Self::cancel_queued_tasks(tx, &ids, "its run ended", now_us).await?;
            sqlx::query(
                "UPDATE approvals SET status = 'cancelled' \
                 WHERE run_id IN (SELECT value FROM json_each($1)) AND status = 'pending'",
            )
            .bind(&ids)
            .execute(&mut **tx)
            .await?;
        }
        Ok(follow)
    }
}

/// Inserts new step tasks (skipping keys that exist) and updates steps
/// and runs.
async fn write_rows(
    tx: &mut Transaction<'_, Sqlite>,
    tasks: &[Value],
    steps: &[Value],
    runs: &[Value],
    now_us: i64,
) -> Result<()> {
    if !tasks.is_empty() {
        sqlx::query(
            "INSERT INTO tasks (task_type, payload, urgency, time_sensitivity, importance, priority, rank, status, max_attempts, \
               timeout_ms, retry_backoff_ms, required_labels, idempotency_key, run_after, created_at, updated_at, run_id, step_id, \
               item_index, step_generation, concurrency_key, concurrency_limit, held) \
             SELECT json_extract(value, '$.task_type'), json_extract(value, '$.payload'), json_extract(value, '$.urgency'), \
               json_extract(value, '$.time_sensitivity'), json_extract(value, '$.importance'), json_extract(value, '$.priority'), \
               json_extract(value, '$.rank'), 'queued', json_extract(value, '$.max_attempts'), json_extract(value, '$.timeout_ms'), \
               json_extract(value, '$.retry_backoff_ms'), json_extract(value, '$.required_labels'), json_extract(value, '$.idempotency_key'), \
               ?2, ?2, ?2, json_extract(value, '$.run_id'), json_extract(value, '$.step_id'), json_extract(value, '$.item_index'), \
               json_extract(value, '$.step_generation'), json_extract(value, '$.concurrency_key'), \
               json_extract(value, '$.concurrency_limit'), \
               CASE WHEN json_extract(value, '$.concurrency_key') IS NULL THEN 0 ELSE 1 END \
             FROM json_each(?1) WHERE true ORDER BY key \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(serde_json::to_string(tasks)?)
        .bind(now_us)
        .execute(&mut **tx)
        .await?;
    }
    if !steps.is_empty() {
        sqlx::query(
            "UPDATE run_steps SET status = json_extract(v.value, '$.status'), output = json_extract(v.value, '$.output'), \
               error = json_extract(v.value, '$.error'), item_count = COALESCE(json_extract(v.value, '$.item_count'), item_count), \
               started_at = COALESCE(started_at, ?2), \
               finished_at = CASE WHEN json_extract(v.value, '$.terminal') THEN ?2 ELSE NULL END, updated_at = ?2 \
             FROM json_each(?1) v \
             WHERE run_steps.run_id = json_extract(v.value, '$.run_id') AND run_steps.step_id = json_extract(v.value, '$.step_id')",
        )
        .bind(serde_json::to_string(steps)?)
        .bind(now_us)
        .execute(&mut **tx)
        .await?;
    }
    if !runs.is_empty() {
        sqlx::query(
            "UPDATE runs SET status = json_extract(v.value, '$.status'), error = COALESCE(json_extract(v.value, '$.error'), error), \
               updated_at = ?2, finished_at = CASE WHEN json_extract(v.value, '$.terminal') THEN ?2 ELSE NULL END \
             FROM json_each(?1) v WHERE runs.id = json_extract(v.value, '$.id')",
        )
        .bind(serde_json::to_string(runs)?)
        .bind(now_us)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
