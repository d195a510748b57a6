//! Advancing workflow runs on PostgreSQL: the run loader (`advance_in`)
//! and the writing of what the planner decided, which goes through the
//! one write statement (`batch.rs`). Instances advance runs side by side,
//! so the runs are locked, in id order.

use sqlx::{Postgres, Transaction};

use super::batch::{write_batch, AdvanceRows, EndColumns};
use super::PgStore;
use crate::domain::Scheduling;
use crate::store::plan::{
    attach_follow_ups, plan_loaded, step_rows, ApprovalWrite, Loaded, Writes,
};
use crate::store::rows::run_status;
use crate::store::rows::{split_loaded, LoadedRow, RunStateRow};
use crate::store::sql::runs as sql;
use crate::store::{Advanced, Result};

/// The runs of an array of ids with their definitions (a sub-select, so
/// the workflow row is not locked), locked in id order: two transactions
/// locking overlapping sets wait for each other instead of deadlocking.
/// As `= ANY(array)` the planner probes the index; as `IN (set-returning
/// function)` it guesses 100 ids and, past a few thousand rows, hashes
/// them and scans the whole table instead.
const LOAD_RUNS: &str = "SELECT id, workflow_id, status, inputs, started_by, parent_run_id, \
    (SELECT definition FROM workflows w WHERE w.id = runs.workflow_id) AS definition \
    FROM runs WHERE id = ANY($1) ORDER BY id FOR UPDATE";

/// Every step of the runs, then the tasks of their running steps (current
/// generation) in item order: the planner looks at no other tasks, as
/// other steps' outcomes are on their rows.
const LOAD_STEPS: &str = "SELECT CAST(0 AS BIGINT) AS kind, CAST(0 AS BIGINT) AS task_id, run_id, \
    step_id, status, output, error, item_count, generation, CAST(0 AS BIGINT) AS item_index \
    FROM run_steps WHERE run_id = ANY($1) \
    UNION ALL \
    SELECT 1, t.id, t.run_id, t.step_id, t.status, t.result, t.error, NULL, NULL, t.item_index \
    FROM run_steps s JOIN tasks t ON t.run_id = s.run_id AND t.step_id = s.step_id \
    AND t.step_generation = s.generation \
    WHERE s.run_id = ANY($1) AND s.status = 'running' \
    ORDER BY kind, run_id, item_index";

impl PgStore {
    /// Keeps an advance's statements on their indexes and planned once
    /// per connection: every statement here looks rows up by key. A
    /// generic plan made while the tables were small (a new database)
    /// would keep its sequential scans until they are next analyzed, and
    /// a bitmap scan would AND the lookup by id with every running
    /// task's status entry; with both priced out the generic plans are
    /// index lookups. They are forced because PostgreSQL otherwise
    /// replanned the results write (a dozen CTEs, ~0.9 ms) on every
    /// batch, custom plans looking cheaper for the batch's array sizes.
    /// JIT is off so that a misjudged estimate cannot cost a compile.
    pub(super) async fn begin_advance(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self
            .pool()
            .begin_with("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off")
            .await?)
    }

    /// Agents long-polling another instance hear of a run's new tasks
    /// once the advance is committed.
    fn announce_created(&self, advanced: &[(i64, Advanced)]) {
        if advanced.iter().any(|(_, a)| a.tasks_created > 0) {
            self.announce_work();
        }
    }

    pub(super) async fn advance_in_one_transaction(
        &self,
        run_ids: &[i64],
        sched: &Scheduling,
        now_us: i64,
    ) -> Result<Vec<(i64, Advanced)>> {
        let mut tx = self.begin_advance().await?;
        let advanced = Self::advance_in(&mut tx, run_ids, sched, now_us).await?;
        tx.commit().await?;
        self.announce_created(&advanced);
        Ok(advanced)
    }

    /// Advances runs inside `tx` (`run_ids` sorted and distinct), locking
    /// them; runs that do not exist are left out of the answer. Two
    /// statements load every run of the batch, then each run's plan is
    /// written.
    async fn advance_in(
        tx: &mut Transaction<'_, Postgres>,
        run_ids: &[i64],
        sched: &Scheduling,
        now_us: i64,
    ) -> Result<Vec<(i64, Advanced)>> {
        let runs: Vec<RunStateRow> = sqlx::query_as(LOAD_RUNS)
            .bind(run_ids)
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
                .bind(&active)
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
        tx: &mut Transaction<'_, Postgres>,
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
        tx: &mut Transaction<'_, Postgres>,
        runs: &str,
        why: &str,
        now_us: i64,
    ) -> Result<()> {
        let runs: Vec<i64> = serde_json::from_str(runs)?;
        // `status || ''` keeps the cancelling on the run index.
        sqlx::query(
            "WITH c AS (UPDATE tasks SET status = 'cancelled', updated_at = $1, finished_at = $1 \
               WHERE run_id = ANY($2) AND status || '' = 'queued' RETURNING id) \
             INSERT INTO task_events (task_id, at, kind, status, detail) \
             SELECT id, $1, 'cancelled', 'cancelled', $3 FROM c",
        )
        .bind(now_us)
        .bind(&runs)
        .bind(why)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Writes what the batch's plans decided: new tasks, steps and runs
    /// in the one write statement with no endings, then the dropping of
    /// ended runs' queued work (including tasks just created) and open
    /// approvals. The caller tells the other instances of new tasks after
    /// commit (`announce_created`).
    async fn write(
        tx: &mut Transaction<'_, Postgres>,
        writes: Writes,
        now_us: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let steps = step_rows(writes.steps);
        let nothing = writes.tasks.is_empty()
            && steps.is_empty()
            && writes.runs.is_empty()
            && writes.events.is_empty();
        if !nothing {
            let rows = AdvanceRows {
                tasks: &writes.tasks,
                steps: &steps,
                runs: &writes.runs,
                finished: &[],
                events: &writes.events,
            };
            write_batch(tx, &EndColumns::default(), &rows, &[], false, now_us).await?;
        }
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
            sqlx::query("UPDATE approvals SET status = 'cancelled' WHERE run_id = ANY($1) AND status = 'pending'")
                .bind(&writes.finished)
                .execute(&mut **tx)
                .await?;
        }
        Ok(follow)
    }
}
