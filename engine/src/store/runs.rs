//! Workflow runs, their steps and approvals, on both backends.
//!
//! Runs advance in [`RunStore::advance_runs`]: one transaction for a whole
//! batch of runs that locks them (in id order, on PostgreSQL), loads their
//! definitions, steps and the tasks of their running steps with one query
//! each, asks the pure planner (`crate::workflow::plan`) what to do for each
//! run, and writes the answers. If that transaction fails, each run is
//! advanced in its own. Tasks a step creates carry the idempotency key
//! `run:<id>:<step>:<item>:g<generation>`, so a step's task is never created
//! twice, whoever advances the run and however often. The server advances a
//! run the moment one of its tasks finishes or an approval is decided
//! (batching the runs of whatever finished meanwhile); the leader also
//! advances every active run when it takes over, which finishes the work of a
//! server that died between committing a result and advancing its run.

use std::collections::{BTreeMap, HashMap};

use drover_protocol::api::{NewTask, TaskStatus};
use drover_protocol::workflow::{
    ApprovalView, Approvers, RunDetail, RunStatus, RunSummary, StepView, WorkflowVersion,
};
use serde_json::{Map, Value};
use sqlx::Row;

use super::{PgStore, Result, SqliteStore, Store};
use crate::domain::{Scheduling, TaskSpec};
use crate::error::StoreError;
use crate::workflow::{self, Action, Definition, ItemState, StepState, StepStatus};

/// What an advance changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advanced {
    pub tasks_created: usize,
    pub status: Option<RunStatus>,
}

/// An approval with what deciding it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRecord {
    pub view: ApprovalView,
    pub allow_self: bool,
    pub on_reject_continue: bool,
}

#[allow(async_fn_in_trait)]
pub trait RunStore {
    /// Creates a run (its steps pending); with an idempotency key that was
    /// used before, returns that run instead. `(run id, created)`.
    async fn start_run(
        &self,
        wf: &WorkflowVersion,
        inputs: &Map<String, Value>,
        started_by: &str,
        key: Option<&str>,
        now_us: i64,
    ) -> Result<(i64, bool)>;
    /// Moves the run as far as its state allows.
    async fn advance_run(&self, run_id: i64, sched: &Scheduling, now_us: i64) -> Result<Advanced>;
    /// Moves each run as far as its state allows, all in one transaction
    /// (runs that do not exist are left out of the answer, which is in run
    /// id order). If that transaction fails, each run is advanced in its own,
    /// so one bad run cannot hold the others back; the error is returned only
    /// when no run could be advanced.
    async fn advance_runs(
        &self,
        run_ids: &[i64],
        sched: &Scheduling,
        now_us: i64,
    ) -> Result<Vec<(i64, Advanced)>>;
    /// Runs owning any of these tasks.
    async fn runs_of_tasks(&self, task_ids: &[i64]) -> Result<Vec<i64>>;
    /// Runs still running or waiting for an approval.
    async fn active_runs(&self) -> Result<Vec<i64>>;
    async fn get_run(&self, id: i64) -> Result<Option<RunDetail>>;
    async fn list_runs(
        &self,
        status: Option<RunStatus>,
        workflow: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RunSummary>>;
    /// Cancels the run, its queued tasks and pending approvals; returns the
    /// ids of its running tasks for the caller to cancel.
    async fn cancel_run(&self, id: i64, now_us: i64) -> Result<Vec<i64>>;
    /// Puts a failed step back to pending (a new generation) and the run back to running.
    async fn retry_step(&self, run_id: i64, step_id: &str, now_us: i64) -> Result<()>;
    async fn list_approvals(&self, status: Option<&str>) -> Result<Vec<ApprovalView>>;
    async fn approval(&self, id: i64) -> Result<Option<ApprovalRecord>>;
    /// Records a decision on a pending approval and sets its step's state.
    /// `Conflict` if it was already decided.
    async fn decide_approval(
        &self,
        id: i64,
        approved: bool,
        by: &str,
        comment: Option<&str>,
        now_us: i64,
    ) -> Result<i64>;
    /// Decides pending approvals past their timeout by their `on_timeout`; returns the runs touched.
    async fn expire_approvals(&self, now_us: i64) -> Result<Vec<i64>>;
}

fn run_status(s: &str) -> Result<RunStatus> {
    RunStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown run status {s:?}")))
}

fn step_status(s: &str) -> Result<StepStatus> {
    StepStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown step status {s:?}")))
}

fn json_opt(s: Option<String>) -> Result<Option<Value>> {
    Ok(s.map(|s| serde_json::from_str(&s)).transpose()?)
}

/// The step's output after an approval decision, and the error when a rejection fails the run.
fn decided_step(
    approved: bool,
    by: &str,
    comment: Option<&str>,
    on_reject_continue: bool,
) -> (StepStatus, Value, Option<String>) {
    let output = serde_json::json!({ "approved": approved, "decided_by": by, "comment": comment });
    if approved || on_reject_continue {
        (StepStatus::Succeeded, output, None)
    } else {
        let why = comment.map(|c| format!(": {c}")).unwrap_or_default();
        (
            StepStatus::Failed,
            output,
            Some(format!("rejected by {by}{why}")),
        )
    }
}

/// A run being advanced, as loaded.
struct ActiveRun {
    id: i64,
    workflow_id: i64,
    status: RunStatus,
    inputs: String,
    started_by: String,
}

/// A run's step states, and each step's current generation.
#[derive(Default)]
struct RunSteps {
    steps: BTreeMap<String, StepState>,
    generations: BTreeMap<String, i64>,
}

const RUN_COLUMNS: &str = "id, workflow_name, workflow_version, inputs, status, error, started_by, created_at, updated_at, finished_at";

macro_rules! summary_of {
    ($row:expr) => {{
        let row = &$row;
        RunSummary {
            id: row.try_get("id")?,
            workflow: row.try_get("workflow_name")?,
            version: row.try_get("workflow_version")?,
            status: run_status(&row.try_get::<String, _>("status")?)?,
            error: row.try_get("error")?,
            started_by: row.try_get("started_by")?,
            inputs: serde_json::from_str(&row.try_get::<String, _>("inputs")?)?,
            created_at_us: row.try_get("created_at")?,
            updated_at_us: row.try_get("updated_at")?,
            finished_at_us: row.try_get("finished_at")?,
        }
    }};
}

const APPROVAL_COLUMNS: &str = "a.id, a.run_id, a.step_id, a.message, a.approvers, a.allow_self, a.on_reject, a.status, \
    a.decided_by, a.comment, a.decided_at, a.expires_at, a.created_at, r.workflow_name, r.started_by, r.inputs";

macro_rules! approval_of {
    ($row:expr) => {{
        let row = &$row;
        let approvers: Approvers = serde_json::from_str(&row.try_get::<String, _>("approvers")?)?;
        ApprovalRecord {
            view: ApprovalView {
                id: row.try_get("id")?,
                run_id: row.try_get("run_id")?,
                step_id: row.try_get("step_id")?,
                workflow: row.try_get("workflow_name")?,
                message: row.try_get("message")?,
                approvers,
                status: row.try_get("status")?,
                requested_by: row.try_get("started_by")?,
                decided_by: row.try_get("decided_by")?,
                comment: row.try_get("comment")?,
                decided_at_us: row.try_get("decided_at")?,
                expires_at_us: row.try_get("expires_at")?,
                created_at_us: row.try_get("created_at")?,
                inputs: serde_json::from_str(&row.try_get::<String, _>("inputs")?)?,
            },
            allow_self: row.try_get("allow_self")?,
            on_reject_continue: row.try_get::<String, _>("on_reject")? == "continue",
        }
    }};
}

/// The SQL of both backends, written once: `$n` placeholders (SQLite numbers
/// them in order of first use, so each statement uses them in order), and
/// `$lock` is `FOR UPDATE` on PostgreSQL, where instances advance runs
/// concurrently, and empty on SQLite, whose single writer serializes them.
macro_rules! impl_runs {
    ($store:ty, $db:ty, $reader:ident, $lock:literal) => {
        impl RunStore for $store {
            async fn start_run(&self, wf: &WorkflowVersion, inputs: &Map<String, Value>, started_by: &str, key: Option<&str>, now_us: i64) -> Result<(i64, bool)> {
                let def: Definition = serde_json::from_value(wf.definition.clone())?;
                let mut tx = self.begin_write().await?;
                if let Some(key) = key {
                    let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM runs WHERE idempotency_key = $1")
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(id) = existing {
                        return Ok((id, false));
                    }
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO runs (workflow_id, workflow_name, workflow_version, inputs, status, started_by, idempotency_key, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $7) RETURNING id",
                )
                .bind(wf.id)
                .bind(&wf.name)
                .bind(wf.version)
                .bind(Value::Object(inputs.clone()).to_string())
                .bind(started_by)
                .bind(key)
                .bind(now_us)
                .fetch_one(&mut *tx)
                .await?;
                for step in def.step_ids() {
                    sqlx::query("INSERT INTO run_steps (run_id, step_id, status, updated_at) VALUES ($1, $2, 'pending', $3)")
                        .bind(id)
                        .bind(step)
                        .bind(now_us)
                        .execute(&mut *tx)
                        .await?;
                }
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

            async fn advance_runs(&self, run_ids: &[i64], sched: &Scheduling, now_us: i64) -> Result<Vec<(i64, Advanced)>> {
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

            async fn runs_of_tasks(&self, task_ids: &[i64]) -> Result<Vec<i64>> {
                let mut runs = Vec::new();
                for chunk in task_ids.chunks(500) {
                    let ids = serde_json::to_string(chunk)?;
                    let found: Vec<i64> = sqlx::query_scalar(&format!(
                        "SELECT DISTINCT run_id FROM tasks WHERE id IN ({}) AND run_id IS NOT NULL",
                        Self::id_list_sql()
                    ))
                    .bind(ids)
                    .fetch_all(self.$reader())
                    .await?;
                    runs.extend(found);
                }
                runs.sort_unstable();
                runs.dedup();
                Ok(runs)
            }

            async fn active_runs(&self) -> Result<Vec<i64>> {
                Ok(sqlx::query_scalar("SELECT id FROM runs WHERE status IN ('running', 'waiting_approval') ORDER BY id")
                    .fetch_all(self.$reader())
                    .await?)
            }

            async fn get_run(&self, id: i64) -> Result<Option<RunDetail>> {
                let Some(row) = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(self.$reader())
                    .await?
                else {
                    return Ok(None);
                };
                let run = summary_of!(row);
                let mut task_ids: BTreeMap<String, Vec<(i64, i64, i64)>> = BTreeMap::new();
                for t in sqlx::query("SELECT id, step_id, item_index, step_generation FROM tasks WHERE run_id = $1 ORDER BY item_index, id")
                    .bind(id)
                    .fetch_all(self.$reader())
                    .await?
                {
                    task_ids.entry(t.try_get("step_id")?).or_default().push((t.try_get("step_generation")?, t.try_get("item_index")?, t.try_get("id")?));
                }
                let mut steps = Vec::new();
                for s in sqlx::query("SELECT * FROM run_steps WHERE run_id = $1")
                    .bind(id)
                    .fetch_all(self.$reader())
                    .await?
                {
                    let step_id: String = s.try_get("step_id")?;
                    let generation: i64 = s.try_get("generation")?;
                    steps.push(StepView {
                        task_ids: task_ids.get(&step_id).map(|v| v.iter().filter(|t| t.0 == generation).map(|t| t.2).collect()).unwrap_or_default(),
                        step_id,
                        status: s.try_get("status")?,
                        output: json_opt(s.try_get("output")?)?,
                        error: s.try_get("error")?,
                        item_count: s.try_get("item_count")?,
                        generation,
                        started_at_us: s.try_get("started_at")?,
                        finished_at_us: s.try_get("finished_at")?,
                    });
                }
                // Steps in the definition's order.
                if let Some(def) = sqlx::query_scalar::<_, String>("SELECT w.definition FROM runs r JOIN workflows w ON w.id = r.workflow_id WHERE r.id = $1")
                    .bind(id)
                    .fetch_optional(self.$reader())
                    .await?
                {
                    let def: Definition = serde_json::from_str(&def)?;
                    let order: Vec<&str> = def.step_ids();
                    steps.sort_by_key(|s| order.iter().position(|o| *o == s.step_id).unwrap_or(usize::MAX));
                }
                let approvals = sqlx::query(&format!("SELECT {APPROVAL_COLUMNS} FROM approvals a JOIN runs r ON r.id = a.run_id WHERE a.run_id = $1 ORDER BY a.id"))
                    .bind(id)
                    .fetch_all(self.$reader())
                    .await?
                    .iter()
                    .map(|r| Ok(approval_of!(r).view))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Some(RunDetail { run, steps, approvals }))
            }

            async fn list_runs(&self, status: Option<RunStatus>, workflow: Option<&str>, limit: i64) -> Result<Vec<RunSummary>> {
                let rows = sqlx::query(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR workflow_name = $2) ORDER BY id DESC LIMIT $3"
                ))
                .bind(status.map(RunStatus::as_str))
                .bind(workflow)
                .bind(limit)
                .fetch_all(self.$reader())
                .await?;
                rows.iter().map(|r| Ok(summary_of!(r))).collect()
            }

            async fn cancel_run(&self, id: i64, now_us: i64) -> Result<Vec<i64>> {
                let mut tx = self.begin_write().await?;
                let status: Option<String> = sqlx::query_scalar(concat!("SELECT status FROM runs WHERE id = $1 ", $lock))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let status = run_status(&status.ok_or(StoreError::NotFound)?)?;
                if status.is_terminal() {
                    return Err(StoreError::Conflict(format!("run already {}", status.as_str())));
                }
                sqlx::query("UPDATE runs SET status = 'cancelled', updated_at = $1, finished_at = $1 WHERE id = $2")
                    .bind(now_us)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE run_steps SET status = 'cancelled', updated_at = $1 WHERE run_id = $2 AND status IN ('pending', 'running', 'waiting_approval')")
                    .bind(now_us)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE tasks SET status = 'cancelled', updated_at = $1, finished_at = $1 WHERE run_id = $2 AND status = 'queued'")
                    .bind(now_us)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE approvals SET status = 'cancelled' WHERE run_id = $1 AND status = 'pending'")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let running: Vec<i64> = sqlx::query_scalar("SELECT id FROM tasks WHERE run_id = $1 AND status = 'running'")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(running)
            }

            async fn retry_step(&self, run_id: i64, step_id: &str, now_us: i64) -> Result<()> {
                let mut tx = self.begin_write().await?;
                let status: Option<String> = sqlx::query_scalar(concat!("SELECT status FROM run_steps WHERE run_id = $1 AND step_id = $2 ", $lock))
                    .bind(run_id)
                    .bind(step_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                match status.as_deref() {
                    None => return Err(StoreError::NotFound),
                    Some("failed") => {}
                    Some(other) => return Err(StoreError::Conflict(format!("step {step_id:?} is {other}; only a failed step can be retried"))),
                }
                let run: String = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1").bind(run_id).fetch_one(&mut *tx).await?;
                if run == "cancelled" {
                    return Err(StoreError::Conflict("the run was cancelled".into()));
                }
                sqlx::query(
                    "UPDATE run_steps SET status = 'pending', output = NULL, error = NULL, item_count = NULL, generation = generation + 1, \
                     started_at = NULL, finished_at = NULL, updated_at = $1 WHERE run_id = $2 AND step_id = $3",
                )
                .bind(now_us)
                .bind(run_id)
                .bind(step_id)
                .execute(&mut *tx)
                .await?;
                // Steps that were cancelled when the run failed get another chance too.
                sqlx::query("UPDATE run_steps SET status = 'pending', updated_at = $1 WHERE run_id = $2 AND status = 'cancelled'")
                    .bind(now_us)
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE runs SET status = 'running', error = NULL, finished_at = NULL, updated_at = $1 WHERE id = $2")
                    .bind(now_us)
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_approvals(&self, status: Option<&str>) -> Result<Vec<ApprovalView>> {
                let rows = sqlx::query(&format!(
                    "SELECT {APPROVAL_COLUMNS} FROM approvals a JOIN runs r ON r.id = a.run_id WHERE ($1 IS NULL OR a.status = $1) ORDER BY a.id DESC LIMIT 500"
                ))
                .bind(status)
                .fetch_all(self.$reader())
                .await?;
                rows.iter().map(|r| Ok(approval_of!(r).view)).collect()
            }

            async fn approval(&self, id: i64) -> Result<Option<ApprovalRecord>> {
                let row = sqlx::query(&format!("SELECT {APPROVAL_COLUMNS} FROM approvals a JOIN runs r ON r.id = a.run_id WHERE a.id = $1"))
                    .bind(id)
                    .fetch_optional(self.$reader())
                    .await?;
                row.map(|r| Ok(approval_of!(r))).transpose()
            }

            async fn decide_approval(&self, id: i64, approved: bool, by: &str, comment: Option<&str>, now_us: i64) -> Result<i64> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "UPDATE approvals SET status = $1, decided_by = $2, comment = $3, decided_at = $4 WHERE id = $5 AND status = 'pending' \
                     RETURNING run_id, step_id, on_reject",
                )
                .bind(if approved { "approved" } else { "rejected" })
                .bind(by)
                .bind(comment)
                .bind(now_us)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    let exists: Option<String> = sqlx::query_scalar("SELECT status FROM approvals WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
                    return Err(match exists {
                        None => StoreError::NotFound,
                        Some(s) => StoreError::Conflict(format!("approval already {s}")),
                    });
                };
                let run_id: i64 = row.try_get("run_id")?;
                let step_id: String = row.try_get("step_id")?;
                let (status, output, error) = decided_step(approved, by, comment, row.try_get::<String, _>("on_reject")? == "continue");
                sqlx::query("UPDATE run_steps SET status = $1, output = $2, error = $3, finished_at = $4, updated_at = $4 WHERE run_id = $5 AND step_id = $6")
                    .bind(status.as_str())
                    .bind(output.to_string())
                    .bind(&error)
                    .bind(now_us)
                    .bind(run_id)
                    .bind(&step_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(run_id)
            }

            async fn expire_approvals(&self, now_us: i64) -> Result<Vec<i64>> {
                let due = sqlx::query("SELECT id, on_timeout FROM approvals WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= $1")
                    .bind(now_us)
                    .fetch_all(self.$reader())
                    .await?;
                let mut runs = Vec::new();
                for row in due {
                    let approve = row.try_get::<String, _>("on_timeout")? == "approve";
                    match self.decide_approval(row.try_get("id")?, approve, "timeout", Some("no decision before the timeout"), now_us).await {
                        Ok(run) => runs.push(run),
                        Err(StoreError::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(runs)
            }
        }

        impl $store {
            async fn advance_in_one_transaction(&self, run_ids: &[i64], sched: &Scheduling, now_us: i64) -> Result<Vec<(i64, Advanced)>> {
                let mut tx = self.begin_write().await?;
                let advanced = Self::advance_in(&mut tx, run_ids, sched, now_us).await?;
                tx.commit().await?;
                Ok(advanced)
            }

            /// Advances runs inside `tx` (`run_ids` sorted and distinct);
            /// runs that do not exist are left out of the answer. A fixed
            /// number of statements loads every run of the batch, then each
            /// run's plan is written.
            async fn advance_in(tx: &mut sqlx::Transaction<'_, $db>, run_ids: &[i64], sched: &Scheduling, now_us: i64) -> Result<Vec<(i64, Advanced)>> {
                // Locked in id order, so two transactions locking overlapping
                // sets of runs (PostgreSQL) wait for each other instead of deadlocking.
                let rows = sqlx::query(&format!(
                    "SELECT id, workflow_id, status, inputs, started_by FROM runs WHERE id IN ({}) ORDER BY id {}",
                    Self::id_list_sql(),
                    $lock
                ))
                .bind(serde_json::to_string(run_ids)?)
                .fetch_all(&mut **tx)
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                let mut active = Vec::with_capacity(rows.len());
                for row in &rows {
                    let id: i64 = row.try_get("id")?;
                    let status = run_status(&row.try_get::<String, _>("status")?)?;
                    if status.is_terminal() {
                        out.push((id, Advanced { tasks_created: 0, status: Some(status) }));
                    } else {
                        active.push(ActiveRun {
                            id,
                            workflow_id: row.try_get("workflow_id")?,
                            status,
                            inputs: row.try_get("inputs")?,
                            started_by: row.try_get("started_by")?,
                        });
                    }
                }
                if active.is_empty() {
                    return Ok(out);
                }
                let active_ids = serde_json::to_string(&active.iter().map(|r| r.id).collect::<Vec<_>>())?;
                // Each workflow version's definition, parsed once for the batch.
                let mut workflow_ids: Vec<i64> = active.iter().map(|r| r.workflow_id).collect();
                workflow_ids.sort_unstable();
                workflow_ids.dedup();
                let mut defs: HashMap<i64, Definition> = HashMap::with_capacity(workflow_ids.len());
                for row in sqlx::query(&format!("SELECT id, definition FROM workflows WHERE id IN ({})", Self::id_list_sql()))
                    .bind(serde_json::to_string(&workflow_ids)?)
                    .fetch_all(&mut **tx)
                    .await?
                {
                    defs.insert(row.try_get("id")?, serde_json::from_str(&row.try_get::<String, _>("definition")?)?);
                }
                let mut loaded: HashMap<i64, RunSteps> = HashMap::with_capacity(active.len());
                for row in sqlx::query(&format!(
                    "SELECT run_id, step_id, status, output, error, item_count, generation FROM run_steps WHERE run_id IN ({})",
                    Self::id_list_sql()
                ))
                .bind(&active_ids)
                .fetch_all(&mut **tx)
                .await?
                {
                    let run = loaded.entry(row.try_get("run_id")?).or_default();
                    let step_id: String = row.try_get("step_id")?;
                    run.generations.insert(step_id.clone(), row.try_get("generation")?);
                    run.steps.insert(
                        step_id,
                        StepState {
                            status: step_status(&row.try_get::<String, _>("status")?)?,
                            output: json_opt(row.try_get("output")?)?,
                            error: row.try_get("error")?,
                            items: Vec::new(),
                            item_count: row.try_get::<Option<i64>, _>("item_count")?.map(|n| n as usize),
                        },
                    );
                }
                // The planner looks at the tasks of running steps only (their
                // current generation): the others' outcomes are on their step rows.
                for row in sqlx::query(&format!(
                    "SELECT t.run_id, t.step_id, t.item_index, t.status, t.result, t.error FROM run_steps s \
                     JOIN tasks t ON t.run_id = s.run_id AND t.step_id = s.step_id AND t.step_generation = s.generation \
                     WHERE s.run_id IN ({}) AND s.status = 'running' ORDER BY t.run_id, t.item_index",
                    Self::id_list_sql()
                ))
                .bind(&active_ids)
                .fetch_all(&mut **tx)
                .await?
                {
                    let run_id: i64 = row.try_get("run_id")?;
                    let step_id: String = row.try_get("step_id")?;
                    if let Some(state) = loaded.get_mut(&run_id).and_then(|r| r.steps.get_mut(&step_id)) {
                        state.items.push(ItemState {
                            index: row.try_get::<i64, _>("item_index")? as usize,
                            task_status: crate::store::rows::task_status(&row.try_get::<String, _>("status")?)?,
                            output: json_opt(row.try_get("result")?)?,
                            error: row.try_get("error")?,
                        });
                    }
                }
                for run in active {
                    let def = defs
                        .get(&run.workflow_id)
                        .ok_or_else(|| StoreError::Corrupt(format!("run {} has no workflow {}", run.id, run.workflow_id)))?;
                    let inputs: Map<String, Value> = serde_json::from_str(&run.inputs)?;
                    let steps = loaded.remove(&run.id).unwrap_or_default();
                    let advanced = Self::advance_loaded(tx, sched, now_us, &run, def, &inputs, steps).await?;
                    out.push((run.id, advanced));
                }
                out.sort_by_key(|(id, _)| *id);
                Ok(out)
            }

            /// Plans one loaded run until nothing changes and writes the result.
            #[allow(clippy::too_many_arguments)]
            async fn advance_loaded(
                tx: &mut sqlx::Transaction<'_, $db>,
                sched: &Scheduling,
                now_us: i64,
                run: &ActiveRun,
                def: &Definition,
                inputs: &Map<String, Value>,
                loaded: RunSteps,
            ) -> Result<Advanced> {
                let run_id = run.id;
                let started_by = run.started_by.as_str();
                let RunSteps { mut steps, generations } = loaded;
                let mut changed = false;
                let mut advanced = Advanced::default();
                let mut finished: Option<(RunStatus, Option<String>)> = None;
                // Plan until nothing changes: a skipped step can make the next one ready at once.
                for _ in 0..10_000 {
                    let view = workflow::RunView { run_id, def, inputs, started_by, steps: &steps };
                    let actions = workflow::plan(&view);
                    if actions.is_empty() {
                        break;
                    }
                    changed = true;
                    for action in actions {
                        match action {
                            Action::CreateTasks { step_id, items } => {
                                let generation = generations.get(&step_id).copied().unwrap_or(0);
                                for (index, new) in items {
                                    insert_step_task(tx, sched, run_id, &step_id, index, generation, new, now_us).await?;
                                    advanced.tasks_created += 1;
                                    if let Some(state) = steps.get_mut(&step_id) {
                                        state.items.push(ItemState { index, task_status: TaskStatus::Queued, output: None, error: None });
                                    }
                                }
                            }
                            Action::SetStep { step_id, status, output, error, item_count } => {
                                sqlx::query(
                                    "UPDATE run_steps SET status = $1, output = $2, error = $3, item_count = COALESCE($4, item_count), \
                                     started_at = COALESCE(started_at, $5), finished_at = $6, updated_at = $5 WHERE run_id = $7 AND step_id = $8",
                                )
                                .bind(status.as_str())
                                .bind(output.as_ref().map(Value::to_string))
                                .bind(&error)
                                .bind(item_count.map(|n| n as i64))
                                .bind(now_us)
                                .bind(status.is_terminal().then_some(now_us))
                                .bind(run_id)
                                .bind(&step_id)
                                .execute(&mut **tx)
                                .await?;
                                if let Some(state) = steps.get_mut(&step_id) {
                                    state.status = status;
                                    state.output = output;
                                    state.error = error;
                                    if item_count.is_some() {
                                        state.item_count = item_count;
                                    }
                                }
                            }
                            Action::RequestApproval { step_id, message, approvers, timeout_ms, allow_self_approval, on_timeout_approve, on_reject_continue } => {
                                sqlx::query(
                                    "INSERT INTO approvals (run_id, step_id, message, approvers, allow_self, on_timeout, on_reject, status, expires_at, created_at) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9) ON CONFLICT (run_id, step_id) DO NOTHING",
                                )
                                .bind(run_id)
                                .bind(&step_id)
                                .bind(&message)
                                .bind(serde_json::to_string(&approvers)?)
                                .bind(allow_self_approval)
                                .bind(if on_timeout_approve { "approve" } else { "reject" })
                                .bind(if on_reject_continue { "continue" } else { "fail" })
                                .bind(timeout_ms.map(|t| now_us + t * 1000))
                                .bind(now_us)
                                .execute(&mut **tx)
                                .await?;
                            }
                            Action::FinishRun { status, error } => {
                                finished = Some((status, error));
                            }
                        }
                    }
                    if finished.is_some() {
                        break;
                    }
                }
                let (new_status, error) = match finished {
                    Some((status, error)) => (status, error),
                    None => {
                        let view = workflow::RunView { run_id, def, inputs, started_by, steps: &steps };
                        (workflow::run_status(&view), None)
                    }
                };
                if !changed && new_status == run.status {
                    // Nothing happened: no write.
                    return Ok(Advanced { tasks_created: 0, status: Some(new_status) });
                }
                sqlx::query("UPDATE runs SET status = $1, error = COALESCE($2, error), updated_at = $3, finished_at = $4 WHERE id = $5")
                    .bind(new_status.as_str())
                    .bind(&error)
                    .bind(now_us)
                    .bind(new_status.is_terminal().then_some(now_us))
                    .bind(run_id)
                    .execute(&mut **tx)
                    .await?;
                if new_status.is_terminal() {
                    // Nothing more of this run will run: drop its queued work and open approvals.
                    sqlx::query("UPDATE tasks SET status = 'cancelled', updated_at = $1, finished_at = $1 WHERE run_id = $2 AND status = 'queued'")
                        .bind(now_us)
                        .bind(run_id)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query("UPDATE approvals SET status = 'cancelled' WHERE run_id = $1 AND status = 'pending'")
                        .bind(run_id)
                        .execute(&mut **tx)
                        .await?;
                }
                advanced.status = Some(new_status);
                Ok(advanced)
            }
        }
    };
}

/// Inserts one task of a step (idempotently, by its key) and returns its id.
macro_rules! impl_insert_step_task {
    ($name:ident, $db:ty) => {
        #[allow(clippy::too_many_arguments)]
        async fn $name(
            tx: &mut sqlx::Transaction<'_, $db>,
            sched: &Scheduling,
            run_id: i64,
            step_id: &str,
            index: usize,
            generation: i64,
            mut new: NewTask,
            now_us: i64,
        ) -> Result<i64> {
            let key = format!("run:{run_id}:{step_id}:{index}:g{generation}");
            new.idempotency_key = Some(key.clone());
            let spec = TaskSpec::parse(new, &sched.weights, |_| true)
                .map_err(|e| StoreError::Conflict(format!("step {step_id:?} makes an invalid task: {e}")))?;
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO tasks (task_type, payload, urgency, time_sensitivity, importance, priority, rank, status, max_attempts, \
                 timeout_ms, retry_backoff_ms, required_labels, idempotency_key, run_after, created_at, updated_at, run_id, step_id, \
                 item_index, step_generation) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, $10, $11, $12, $13, $13, $13, $14, $15, $16, $17) \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            )
            .bind(&spec.task_type)
            .bind(spec.payload.to_string())
            .bind(spec.urgency)
            .bind(spec.time_sensitivity)
            .bind(spec.importance)
            .bind(spec.priority)
            .bind(sched.rank(spec.priority, now_us))
            .bind(spec.max_attempts)
            .bind(spec.timeout_ms)
            .bind(spec.retry_backoff_ms)
            .bind(labels_value(&spec.required_labels)?)
            .bind(&key)
            .bind(now_us)
            .bind(run_id)
            .bind(step_id)
            .bind(index as i64)
            .bind(generation)
            .fetch_optional(&mut **tx)
            .await?;
            match id {
                Some(id) => {
                    sqlx::query("INSERT INTO task_events (task_id, at, kind, status) VALUES ($1, $2, 'submitted', 'queued')")
                        .bind(id)
                        .bind(now_us)
                        .execute(&mut **tx)
                        .await?;
                    Ok(id)
                }
                None => Ok(sqlx::query_scalar("SELECT id FROM tasks WHERE idempotency_key = $1").bind(&key).fetch_one(&mut **tx).await?),
            }
        }
    };
}

mod sqlite_impl {
    use super::*;

    fn labels_value(labels: &[String]) -> Result<String> {
        Ok(serde_json::to_string(labels)?)
    }

    impl_insert_step_task!(insert_step_task, sqlx::Sqlite);

    impl SqliteStore {
        fn id_list_sql() -> &'static str {
            "SELECT value FROM json_each($1)"
        }
    }

    impl_runs!(SqliteStore, sqlx::Sqlite, reader, "");
}

mod postgres_impl {
    use super::*;

    fn labels_value(labels: &[String]) -> Result<Vec<String>> {
        Ok(labels.to_vec())
    }

    impl_insert_step_task!(insert_step_task, sqlx::Postgres);

    impl PgStore {
        fn id_list_sql() -> &'static str {
            "SELECT value::bigint FROM json_array_elements_text($1::json)"
        }
    }

    impl_runs!(PgStore, sqlx::Postgres, pool, "FOR UPDATE");
}

macro_rules! delegate_runs {
    ($( async fn $name:ident(&self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )*) => {
        impl RunStore for Store {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        Store::Sqlite(s) => s.$name($($arg),*).await,
                        Store::Postgres(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate_runs! {
    async fn start_run(&self, wf: &WorkflowVersion, inputs: &Map<String, Value>, started_by: &str, key: Option<&str>, now_us: i64) -> Result<(i64, bool)>;
    async fn advance_run(&self, run_id: i64, sched: &Scheduling, now_us: i64) -> Result<Advanced>;
    async fn advance_runs(&self, run_ids: &[i64], sched: &Scheduling, now_us: i64) -> Result<Vec<(i64, Advanced)>>;
    async fn runs_of_tasks(&self, task_ids: &[i64]) -> Result<Vec<i64>>;
    async fn active_runs(&self) -> Result<Vec<i64>>;
    async fn get_run(&self, id: i64) -> Result<Option<RunDetail>>;
    async fn list_runs(&self, status: Option<RunStatus>, workflow: Option<&str>, limit: i64) -> Result<Vec<RunSummary>>;
    async fn cancel_run(&self, id: i64, now_us: i64) -> Result<Vec<i64>>;
    async fn retry_step(&self, run_id: i64, step_id: &str, now_us: i64) -> Result<()>;
    async fn list_approvals(&self, status: Option<&str>) -> Result<Vec<ApprovalView>>;
    async fn approval(&self, id: i64) -> Result<Option<ApprovalRecord>>;
    async fn decide_approval(&self, id: i64, approved: bool, by: &str, comment: Option<&str>, now_us: i64) -> Result<i64>;
    async fn expire_approvals(&self, now_us: i64) -> Result<Vec<i64>>;
}
