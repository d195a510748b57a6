//! Workflow runs, their steps and approvals on PostgreSQL. Advancing them is
//! `advance.rs`; recording results with their advance is `results.rs`.

use drover_protocol::agent::TaskResult;
use drover_protocol::workflow::{RunDetail, RunEventKind, RunStatus, RunSummary, WorkflowVersion};
use serde_json::{Map, Value};

use super::{lists, PgStore};
use crate::domain::Scheduling;
use crate::error::StoreError;
use crate::store::plan::decided_step;
use crate::store::rows::run_status;
use crate::store::rows::{step_views, ApprovalRow, RunRow, RunStepRow};
use crate::store::run_events::EventWrite;
use crate::store::sql::run_list;
use crate::store::sql::runs as sql;
use crate::store::waits::ChildEnd;
use crate::store::{
    Advanced, ApprovalRecord, ListCount, Recorded, Refill, Result, RunFilter, RunStore,
    APPROVAL_PAGE,
};
use crate::workflow::{Definition, StepStatus};
use sqlx::FromRow;

impl RunStore for PgStore {
    async fn start_run(
        &self,
        wf: &WorkflowVersion,
        inputs: &Map<String, Value>,
        started_by: &str,
        key: Option<&str>,
        now_us: i64,
    ) -> Result<(i64, bool)> {
        let def: Definition = serde_json::from_value(wf.definition.clone())?;
        let mut tx = self.begin_write().await?;
        if let Some(key) = key {
            let existing: Option<i64> = sqlx::query_scalar(sql::BY_KEY)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(id) = existing {
                return Ok((id, false));
            }
        }
        let id: Option<i64> = sqlx::query_scalar(sql::INSERT)
            .bind(wf.id)
            .bind(&wf.name)
            .bind(wf.version)
            .bind(Value::Object(inputs.clone()).to_string())
            .bind(started_by)
            .bind(key)
            .bind(now_us)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(id) = id else {
            // Started with this key since the look-up (two instances
            // firing one schedule tick): that run is the answer.
            tx.rollback().await?;
            let id: i64 = sqlx::query_scalar(sql::BY_KEY)
                .bind(key)
                .fetch_one(self.pool())
                .await?;
            return Ok((id, false));
        };
        // Every step in one statement: on PostgreSQL each is a round
        // trip, and a thousand runs started at once were eleven
        // thousand of them.
        sqlx::query(INSERT_STEPS)
            .bind(id)
            .bind(now_us)
            .bind(serde_json::to_string(&def.step_ids())?)
            .execute(&mut *tx)
            .await?;
        let started = EventWrite::run(id, RunEventKind::RunStarted).by(Some(started_by));
        Self::write_events(&mut tx, &[started], now_us).await?;
        tx.commit().await?;
        Ok((id, true))
    }

    async fn advance_run(&self, run_id: i64, sched: &Scheduling, now_us: i64) -> Result<Advanced> {
        self.advance_runs(&[run_id], sched, now_us)
            .await?
            .into_iter()
            .next()
            .map(|(_, advanced)| advanced)
            .ok_or(StoreError::NotFound)
    }

    async fn advance_runs(
        &self,
        run_ids: &[i64],
        sched: &Scheduling,
        now_us: i64,
    ) -> Result<Vec<(i64, Advanced)>> {
        let mut ids = run_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        match self.advance_in_one_transaction(&ids, sched, now_us).await {
            Ok(advanced) => Ok(advanced),
            Err(e) if ids.len() == 1 => Err(e),
            Err(e) => {
                // One bad run must not hold the others back: each in its own transaction.
                tracing::warn!(runs = ids.len(), error = %e, "advancing runs together failed; advancing them one by one");
                let mut out = Vec::with_capacity(ids.len());
                let mut first_error = None;
                for id in ids {
                    match self.advance_in_one_transaction(&[id], sched, now_us).await {
                        Ok(advanced) => out.extend(advanced),
                        Err(e) => {
                            tracing::warn!(run_id = id, error = %e, "could not advance run");
                            first_error.get_or_insert(e);
                        }
                    }
                }
                match first_error {
                    Some(e) if out.is_empty() => Err(e),
                    _ => Ok(out),
                }
            }
        }
    }

    async fn complete_and_advance(
        &self,
        agent_id: i64,
        results: &[TaskResult],
        sched: &Scheduling,
        now_us: i64,
        refill: Option<Refill>,
    ) -> Result<Recorded> {
        self.record_and_advance(agent_id, results, sched, now_us, refill)
            .await
    }

    async fn runs_of_tasks(&self, task_ids: &[i64]) -> Result<Vec<i64>> {
        let mut runs = Vec::new();
        for chunk in task_ids.chunks(500) {
            // The ids are written into the statement (integers, so
            // nothing to escape) and it is not prepared: planned with
            // its ids every time, it looks them up by primary key.
            // A prepared one on PostgreSQL runs a generic plan, which
            // on a new database scans the whole table for a minute.
            let ids: Vec<String> = chunk.iter().map(i64::to_string).collect();
            let sql = format!(
                "SELECT DISTINCT run_id FROM tasks WHERE id IN ({}) AND run_id IS NOT NULL",
                ids.join(", ")
            );
            for row in sqlx::raw_sql(&sql).fetch_all(self.pool()).await? {
                runs.push(sqlx::Row::try_get(&row, 0)?);
            }
        }
        runs.sort_unstable();
        runs.dedup();
        Ok(runs)
    }

    async fn active_runs(&self) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(sql::ACTIVE)
            .fetch_all(self.pool())
            .await?)
    }

    async fn get_run(&self, id: i64) -> Result<Option<RunDetail>> {
        let Some(run) = sqlx::query_as::<_, RunRow>(sql::SUMMARY)
            .bind(id)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let run = RunSummary::try_from(run)?;
        let ended = run.status.is_terminal();
        let tasks: Vec<(i64, String, i64, i64, String)> = sqlx::query_as(sql::TASKS_OF)
            .bind(id)
            .fetch_all(self.pool())
            .await?;
        let steps: Vec<RunStepRow> = sqlx::query_as(sql::STEPS_OF)
            .bind(id)
            .fetch_all(self.pool())
            .await?;
        let definition: Option<String> = sqlx::query_scalar(sql::DEFINITION_OF)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        let approvals = sqlx::query_as::<_, ApprovalRow>(sql::APPROVALS_OF)
            .bind(id)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|r| Ok(ApprovalRecord::try_from(r)?.view))
            .collect::<Result<Vec<_>>>()?;
        let history = self.history(id).await?;
        Ok(Some(RunDetail {
            run,
            steps: step_views(tasks, steps, definition, ended)?,
            approvals,
            events: history.events,
            events_truncated: history.events_truncated,
            attempts: history.attempts,
            attempts_truncated: history.attempts_truncated,
        }))
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let (statement, binds) = run_list::page(filter, &lists::SEARCH, sql::LIST_COLUMNS);
        let rows = lists::bind_all(sqlx::query(&statement), &binds)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| RunSummary::try_from(RunRow::from_row(row)?))
            .collect()
    }

    async fn count_runs(&self, filter: &RunFilter) -> Result<ListCount> {
        lists::count(self.pool(), run_list::count(filter, &lists::SEARCH)).await
    }

    async fn cancel_run(&self, id: i64, by: &str, now_us: i64) -> Result<Vec<i64>> {
        let mut tx = self.begin_write().await?;
        let status: Option<String> = sqlx::query_scalar(RUN_STATUS_LOCKED)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let status = run_status(&status.ok_or(StoreError::NotFound)?)?;
        if status.is_terminal() {
            return Err(StoreError::Conflict(format!(
                "run already {}",
                status.as_str()
            )));
        }
        sqlx::query(sql::CANCEL)
            .bind(now_us)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(sql::CANCEL_STEPS)
            .bind(now_us)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Self::cancel_queued_tasks(
            &mut tx,
            &serde_json::to_string(&[id])?,
            "its run was cancelled",
            now_us,
        )
        .await?;
        sqlx::query(sql::CANCEL_APPROVALS)
            .bind(id)
            .bind(by)
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
        let cancelled = EventWrite::run(id, RunEventKind::RunCancelled).by(Some(by));
        Self::write_events(&mut tx, &[cancelled], now_us).await?;
        // Its child runs are cancelled with it; a child cancelled on its
        // own fails its parent's step.
        let children = Self::cancel_children(&mut tx, &[id], now_us).await?;
        let cancelled = ChildEnd::of(id, RunStatus::Cancelled, None, &Default::default());
        Self::write_waits(&mut tx, &[], &[cancelled], &[], now_us).await?;
        let mut running = Vec::new();
        for run in std::iter::once(id).chain(children) {
            let tasks: Vec<i64> = sqlx::query_scalar(sql::RUNNING_TASKS)
                .bind(run)
                .fetch_all(&mut *tx)
                .await?;
            running.extend(tasks);
        }
        tx.commit().await?;
        Ok(running)
    }

    async fn retry_step(&self, run_id: i64, step_id: &str, by: &str, now_us: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let status: Option<String> = sqlx::query_scalar(STEP_STATUS_LOCKED)
            .bind(run_id)
            .bind(step_id)
            .fetch_optional(&mut *tx)
            .await?;
        match status.as_deref() {
            None => return Err(StoreError::NotFound),
            Some("failed") => {}
            Some(other) => {
                return Err(StoreError::Conflict(format!(
                    "step {step_id:?} is {other}; only a failed step can be retried"
                )))
            }
        }
        let run: String = sqlx::query_scalar(sql::STATUS)
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?;
        if run == "cancelled" {
            return Err(StoreError::Conflict("the run was cancelled".into()));
        }
        let generation: i64 = sqlx::query_scalar(sql::RETRY_STEP)
            .bind(now_us)
            .bind(run_id)
            .bind(step_id)
            .fetch_one(&mut *tx)
            .await?;
        let retried =
            EventWrite::step(run_id, RunEventKind::StepRetried, step_id, Some(generation))
                .by(Some(by))
                .status(StepStatus::Pending.as_str());
        Self::write_events(&mut tx, &[retried], now_us).await?;
        sqlx::query(sql::UNCANCEL_STEPS)
            .bind(now_us)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(sql::RESUME)
            .bind(now_us)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_approvals(
        &self,
        status: Option<&str>,
        before_id: Option<i64>,
    ) -> Result<Vec<ApprovalRecord>> {
        sqlx::query_as::<_, ApprovalRow>(sql::LIST_APPROVALS)
            .bind(status)
            .bind(before_id)
            .bind(APPROVAL_PAGE as i64)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(ApprovalRecord::try_from)
            .collect()
    }

    async fn approval(&self, id: i64) -> Result<Option<ApprovalRecord>> {
        sqlx::query_as::<_, ApprovalRow>(sql::APPROVAL)
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .map(ApprovalRecord::try_from)
            .transpose()
    }

    async fn decide_approval(
        &self,
        id: i64,
        approved: bool,
        by: &str,
        comment: Option<&str>,
        now_us: i64,
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let decided: Option<(i64, String, String)> = sqlx::query_as(sql::DECIDE)
            .bind(if approved { "approved" } else { "rejected" })
            .bind(by)
            .bind(comment)
            .bind(now_us)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((run_id, step_id, on_reject)) = decided else {
            let exists: Option<String> = sqlx::query_scalar(sql::APPROVAL_STATUS)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match exists {
                None => StoreError::NotFound,
                Some(s) => StoreError::Conflict(format!("approval already {s}")),
            });
        };
        let (status, output, error) = decided_step(approved, by, comment, on_reject == "continue");
        let generation: Option<i64> = sqlx::query_scalar(sql::SET_DECIDED_STEP)
            .bind(status.as_str())
            .bind(output.to_string())
            .bind(&error)
            .bind(now_us)
            .bind(run_id)
            .bind(&step_id)
            .fetch_optional(&mut *tx)
            .await?;
        let decided = EventWrite::step(run_id, RunEventKind::ApprovalDecided, &step_id, generation)
            .by(Some(by))
            .status(if approved { "approved" } else { "rejected" })
            .detail(comment);
        Self::write_events(&mut tx, &[decided], now_us).await?;
        tx.commit().await?;
        Ok(run_id)
    }

    async fn expire_approvals(&self, now_us: i64) -> Result<Vec<i64>> {
        let due: Vec<(i64, String)> = sqlx::query_as(sql::DUE_APPROVALS)
            .bind(now_us)
            .fetch_all(self.pool())
            .await?;
        let mut runs = Vec::new();
        for (id, on_timeout) in due {
            let approve = on_timeout == "approve";
            let why = Some("no decision before the timeout");
            match self
                .decide_approval(id, approve, "timeout", why, now_us)
                .await
            {
                Ok(run) => runs.push(run),
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(runs)
    }
}

/// Instances change runs side by side: the row is locked.
const RUN_STATUS_LOCKED: &str = "SELECT status FROM runs WHERE id = $1 FOR UPDATE";
const STEP_STATUS_LOCKED: &str =
    "SELECT status FROM run_steps WHERE run_id = $1 AND step_id = $2 FOR UPDATE";
/// The run's steps, from a JSON array of step ids.
const INSERT_STEPS: &str = "INSERT INTO run_steps (run_id, step_id, status, updated_at) \
    SELECT $1, step, 'pending', $2 FROM json_array_elements_text($3::json) AS s(step)";
