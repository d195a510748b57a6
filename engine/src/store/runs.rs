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

use drover_protocol::agent::TaskResult;
use drover_protocol::api::{NewTask, TaskStatus};
use drover_protocol::workflow::{
    ApprovalView, Approvers, RunDetail, RunStatus, RunSummary, StepView, WorkflowVersion,
};
use serde_json::{Map, Value};
use sqlx::Row;

use super::{Completed, Ending, PgStore, QueueStore, Result, SqliteStore, Store};
use crate::domain::{Scheduling, TaskSpec};
use crate::error::StoreError;
use crate::workflow::{self, Action, Definition, ItemState, StepState, StepStatus};

mod pg_record;

pub(super) use pg_record::{write_batch, AdvanceRows};

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

/// What `RunStore::complete_and_advance` did.
#[derive(Debug, Default)]
pub struct Recorded {
    pub completed: Completed,
    /// The runs advanced with the results, in run id order.
    pub advanced: Vec<(i64, Advanced)>,
    /// Runs of `completed.runs` not advanced here: the caller advances them.
    pub left: Vec<i64>,
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
    /// Records a batch of agent results (as `QueueStore::complete`) and
    /// advances the runs whose tasks ended, in the same transaction: a
    /// step's successor exists the moment its result is recorded, and the
    /// step costs one commit instead of two. A run another transaction is
    /// advancing (PostgreSQL: its row is locked) is left in
    /// `Recorded::left` for the caller to advance on its own; if the advance
    /// fails, the results are recorded on their own and all their runs are
    /// left to the caller.
    async fn complete_and_advance(
        &self,
        agent_id: i64,
        results: &[TaskResult],
        sched: &Scheduling,
        now_us: i64,
    ) -> Result<Recorded>;
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
    /// Approvals with `status` (any if `None`), newest first: at most
    /// [`APPROVAL_PAGE`] of them, all older than `before_id` if given, so a
    /// caller that filters further pages on with the last id it saw.
    async fn list_approvals(
        &self,
        status: Option<&str>,
        before_id: Option<i64>,
    ) -> Result<Vec<ApprovalRecord>>;
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

/// Most approvals [`RunStore::list_approvals`] returns at once.
pub const APPROVAL_PAGE: usize = 500;

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
/// concurrently, and empty on SQLite, whose single writer serializes them;
/// `$try_lock` is the same without waiting for a run another transaction
/// holds (`SKIP LOCKED`).
macro_rules! impl_runs {
    ($store:ty, $db:ty, $reader:ident, $lock:literal, $try_lock:literal) => {
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
                // Every step in one statement: on PostgreSQL each is a round
                // trip, and a thousand runs started at once were eleven
                // thousand of them.
                let steps = def.step_ids();
                sqlx::query(&format!(
                    "INSERT INTO run_steps (run_id, step_id, status, updated_at) SELECT $1, step, 'pending', $2 FROM {}",
                    Self::texts_of(3)
                ))
                .bind(id)
                .bind(now_us)
                .bind(serde_json::to_string(&steps)?)
                .execute(&mut *tx)
                .await?;
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

            async fn complete_and_advance(&self, agent_id: i64, results: &[TaskResult], sched: &Scheduling, now_us: i64) -> Result<Recorded> {
                self.record_and_advance(agent_id, results, sched, now_us).await
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
                    let sql = format!("SELECT DISTINCT run_id FROM tasks WHERE id IN ({}) AND run_id IS NOT NULL", ids.join(", "));
                    for row in sqlx::raw_sql(&sql).fetch_all(self.$reader()).await? {
                        runs.push(row.try_get(0)?);
                    }
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
                Self::cancel_queued_tasks(&mut tx, &serde_json::to_string(&[id])?, "its run was cancelled", now_us).await?;
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

            async fn list_approvals(&self, status: Option<&str>, before_id: Option<i64>) -> Result<Vec<ApprovalRecord>> {
                let rows = sqlx::query(&format!(
                    "SELECT {APPROVAL_COLUMNS} FROM approvals a JOIN runs r ON r.id = a.run_id \
                     WHERE ($1 IS NULL OR a.status = $1) AND ($2 IS NULL OR a.id < $2) ORDER BY a.id DESC LIMIT {APPROVAL_PAGE}"
                ))
                .bind(status)
                .bind(before_id)
                .fetch_all(self.$reader())
                .await?;
                rows.iter().map(|r| Ok(approval_of!(r))).collect()
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
                let mut tx = self.begin_advance().await?;
                let advanced = Self::advance_in(&mut tx, run_ids, sched, now_us, $lock).await?;
                tx.commit().await?;
                self.announce_created(&advanced);
                Ok(advanced)
            }

            /// Advances runs inside `tx` (`run_ids` sorted and distinct),
            /// locking them with `lock`; runs that do not exist (or that
            /// `lock` skipped) are left out of the answer. A fixed
            /// number of statements loads every run of the batch, then each
            /// run's plan is written.
            async fn advance_in(tx: &mut sqlx::Transaction<'_, $db>, run_ids: &[i64], sched: &Scheduling, now_us: i64, lock: &str) -> Result<Vec<(i64, Advanced)>> {
                // Locked in id order, so two transactions locking overlapping
                // sets of runs (PostgreSQL) wait for each other instead of
                // deadlocking. The definition comes along (a sub-select, so
                // the workflow row is not locked) and is parsed once per
                // workflow version.
                let rows = sqlx::query(&format!(
                    "SELECT id, workflow_id, status, inputs, started_by, \
                       (SELECT definition FROM workflows w WHERE w.id = runs.workflow_id) AS definition \
                     FROM runs WHERE {} ORDER BY id {lock}",
                    Self::ids_in("id", 1),
                ))
                .bind(serde_json::to_string(run_ids)?)
                .fetch_all(&mut **tx)
                .await?;
                let mut runs = Vec::with_capacity(rows.len());
                let mut defs: HashMap<i64, Definition> = HashMap::new();
                for row in &rows {
                    let run = ActiveRun {
                        id: row.try_get("id")?,
                        workflow_id: row.try_get("workflow_id")?,
                        status: run_status(&row.try_get::<String, _>("status")?)?,
                        inputs: row.try_get("inputs")?,
                        started_by: row.try_get("started_by")?,
                    };
                    if !run.status.is_terminal() && !defs.contains_key(&run.workflow_id) {
                        let def = row.try_get::<Option<String>, _>("definition")?
                            .ok_or_else(|| StoreError::Corrupt(format!("run {} has no workflow {}", run.id, run.workflow_id)))?;
                        defs.insert(run.workflow_id, serde_json::from_str(&def)?);
                    }
                    runs.push(run);
                }
                let active: Vec<i64> = runs.iter().filter(|r| !r.status.is_terminal()).map(|r| r.id).collect();
                if active.is_empty() {
                    return Ok(plan_batch(sched, now_us, runs, &defs, HashMap::new(), false)?.0);
                }
                // Every step of the runs, then the tasks of their running
                // steps (current generation) in item order: the planner looks
                // at no other tasks, as other steps' outcomes are on their rows.
                let mut loaded: HashMap<i64, RunSteps> = HashMap::with_capacity(active.len());
                for row in sqlx::query(&format!(
                    "SELECT CAST(0 AS BIGINT) AS kind, run_id, step_id, status, output, error, item_count, generation, \
                       CAST(0 AS BIGINT) AS item_index FROM run_steps WHERE {} \
                     UNION ALL \
                     SELECT 1, t.run_id, t.step_id, t.status, t.result, t.error, NULL, NULL, t.item_index FROM run_steps s \
                     JOIN tasks t ON t.run_id = s.run_id AND t.step_id = s.step_id AND t.step_generation = s.generation \
                     WHERE {} AND s.status = 'running' \
                     ORDER BY kind, run_id, item_index",
                    Self::ids_in("run_id", 1),
                    Self::ids_in("s.run_id", 1)
                ))
                .bind(serde_json::to_string(&active)?)
                .fetch_all(&mut **tx)
                .await?
                {
                    let run = loaded.entry(row.try_get("run_id")?).or_default();
                    let step_id: String = row.try_get("step_id")?;
                    if row.try_get::<i64, _>("kind")? == 0 {
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
                    } else if let Some(state) = run.steps.get_mut(&step_id) {
                        state.items.push(ItemState {
                            index: row.try_get::<i64, _>("item_index")? as usize,
                            task_status: crate::store::rows::task_status(&row.try_get::<String, _>("status")?)?,
                            output: json_opt(row.try_get("output")?)?,
                            error: row.try_get("error")?,
                        });
                    }
                }
                let (out, writes) = plan_batch(sched, now_us, runs, &defs, loaded, run_ids.len() > 1)?;
                Self::write(tx, writes, now_us).await?;
                Ok(out)
            }

            /// Opens the approvals the plans asked for (an open one is kept).
            pub(super) async fn write_approvals(tx: &mut sqlx::Transaction<'_, $db>, approvals: &[ApprovalWrite], now_us: i64) -> Result<()> {
                for a in approvals {
                    sqlx::query(
                        "INSERT INTO approvals (run_id, step_id, message, approvers, allow_self, on_timeout, on_reject, status, expires_at, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9) ON CONFLICT (run_id, step_id) DO NOTHING",
                    )
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

            /// Cancels the queued tasks of the runs (a JSON array of ids),
            /// each with a `cancelled` event saying why.
            async fn cancel_queued_tasks(tx: &mut sqlx::Transaction<'_, $db>, runs: &str, why: &str, now_us: i64) -> Result<()> {
                // `status || ''` keeps SQLite on the run index: by the
                // status index it would walk every queued task.
                let cancelled: Vec<i64> = sqlx::query_scalar(&format!(
                    "UPDATE tasks SET status = 'cancelled', updated_at = $1, finished_at = $1 WHERE {} AND status || '' = 'queued' RETURNING id",
                    Self::ids_in("run_id", 2)
                ))
                .bind(now_us)
                .bind(runs)
                .fetch_all(&mut **tx)
                .await?;
                if !cancelled.is_empty() {
                    sqlx::query(&format!(
                        "INSERT INTO task_events (task_id, at, kind, status, detail) SELECT id, $1, 'cancelled', 'cancelled', $3 FROM tasks WHERE {}",
                        Self::ids_in("id", 2)
                    ))
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
            async fn write(tx: &mut sqlx::Transaction<'_, $db>, writes: Writes, now_us: i64) -> Result<()> {
                let steps = step_rows(writes.steps);
                write_rows(tx, &writes.tasks, &steps, &writes.runs, now_us).await?;
                Self::write_approvals(tx, &writes.approvals, now_us).await?;
                if !writes.finished.is_empty() {
                    // Nothing more of these runs will run: drop their queued work and open approvals.
                    let ids = serde_json::to_string(&writes.finished)?;
                    Self::cancel_queued_tasks(tx, &ids, "its run ended", now_us).await?;
                    sqlx::query(&format!("UPDATE approvals SET status = 'cancelled' WHERE {} AND status = 'pending'", Self::ids_in("run_id", 1)))
                        .bind(&ids)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }
        }
    };
}

/// What the runs of a batch write, gathered while planning them.
#[derive(Default)]
struct Writes {
    /// Rows of new tasks (see `step_task_row`).
    tasks: Vec<Value>,
    /// Each step's final state, by (run, step).
    steps: BTreeMap<(i64, String), StepWrite>,
    approvals: Vec<ApprovalWrite>,
    /// Rows of run updates: id, status, error, terminal.
    runs: Vec<Value>,
    /// Runs that ended.
    finished: Vec<i64>,
}

struct StepWrite {
    status: StepStatus,
    output: Option<Value>,
    error: Option<String>,
    item_count: Option<usize>,
}

struct ApprovalWrite {
    run_id: i64,
    step_id: String,
    message: String,
    approvers: String,
    allow_self: bool,
    on_timeout: &'static str,
    on_reject: &'static str,
    expires_at: Option<i64>,
}

impl Writes {
    fn merge(&mut self, other: Writes) {
        self.tasks.extend(other.tasks);
        self.steps.extend(other.steps);
        self.approvals.extend(other.approvals);
        self.runs.extend(other.runs);
        self.finished.extend(other.finished);
    }

    /// A later state of the same step replaces the earlier one (an item
    /// count, once known, is kept).
    fn set_step(&mut self, run_id: i64, step_id: &str, w: StepWrite) {
        match self.steps.entry((run_id, step_id.to_string())) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let item_count = w.item_count.or(e.get().item_count);
                *e.get_mut() = StepWrite { item_count, ..w };
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(w);
            }
        }
    }
}

/// Plans a batch of loaded runs (a run already ended is answered as it
/// is); the answers come in run id order. With `skip_failed`, a run whose
/// plan fails is left out (nothing of it is written) and the others go on.
fn plan_batch(
    sched: &Scheduling,
    now_us: i64,
    runs: Vec<ActiveRun>,
    defs: &HashMap<i64, Definition>,
    mut loaded: HashMap<i64, RunSteps>,
    skip_failed: bool,
) -> Result<(Vec<(i64, Advanced)>, Writes)> {
    let mut out = Vec::with_capacity(runs.len());
    let mut writes = Writes::default();
    for run in runs {
        if run.status.is_terminal() {
            out.push((
                run.id,
                Advanced {
                    tasks_created: 0,
                    status: Some(run.status),
                },
            ));
            continue;
        }
        let planned = defs
            .get(&run.workflow_id)
            .ok_or_else(|| StoreError::Corrupt(format!("run {} lost its definition", run.id)))
            .and_then(|def| {
                let inputs: Map<String, Value> = serde_json::from_str(&run.inputs)?;
                let steps = loaded.remove(&run.id).unwrap_or_default();
                plan_run(sched, now_us, &run, def, &inputs, steps)
            });
        match planned {
            Ok((advanced, run_writes)) => {
                writes.merge(run_writes);
                out.push((run.id, advanced));
            }
            Err(e) if skip_failed => {
                tracing::warn!(run_id = run.id, error = %e, "could not advance run")
            }
            Err(e) => return Err(e),
        }
    }
    out.sort_by_key(|(id, _)| *id);
    Ok((out, writes))
}

/// The runs of `runs` that `advanced` (in run id order) does not answer
/// (another transaction held them, or their plan failed): the caller
/// advances them.
fn not_advanced(runs: &[i64], advanced: &[(i64, Advanced)]) -> Vec<i64> {
    runs.iter()
        .copied()
        .filter(|id| advanced.binary_search_by_key(id, |(run, _)| *run).is_err())
        .collect()
}

/// The rows of the steps' new states, for a multi-row write.
fn step_rows(steps: BTreeMap<(i64, String), StepWrite>) -> Vec<Value> {
    steps
        .into_iter()
        .map(|((run_id, step_id), w)| {
            serde_json::json!({
                "run_id": run_id,
                "step_id": step_id,
                "status": w.status.as_str(),
                "output": w.output.as_ref().map(Value::to_string),
                "error": w.error,
                "item_count": w.item_count.map(|n| n as i64),
                "terminal": w.status.is_terminal(),
            })
        })
        .collect()
}

/// Plans one loaded run until nothing changes; returns what changed and what to write.
fn plan_run(
    sched: &Scheduling,
    now_us: i64,
    run: &ActiveRun,
    def: &Definition,
    inputs: &Map<String, Value>,
    loaded: RunSteps,
) -> Result<(Advanced, Writes)> {
    let run_id = run.id;
    let started_by = run.started_by.as_str();
    let RunSteps {
        mut steps,
        generations,
    } = loaded;
    let mut writes = Writes::default();
    let mut changed = false;
    let mut advanced = Advanced::default();
    let mut finished: Option<(RunStatus, Option<String>)> = None;
    // Plan until nothing changes: a skipped step can make the next one ready at once.
    for _ in 0..10_000 {
        let view = workflow::RunView {
            run_id,
            def,
            inputs,
            started_by,
            steps: &steps,
            max_items: sched.max_for_each_items,
        };
        let actions = workflow::plan(&view);
        if actions.is_empty() {
            break;
        }
        changed = true;
        'actions: for action in actions {
            match action {
                Action::CreateTasks { step_id, items } => {
                    let generation = generations.get(&step_id).copied().unwrap_or(0);
                    for (index, new) in items {
                        let row = match step_task_row(
                            sched, run_id, &step_id, index, generation, new, now_us,
                        ) {
                            Ok(row) => row,
                            Err(why) => {
                                // A task the step cannot make would leave the
                                // run running forever: it fails, saying why.
                                let error = why.to_string();
                                writes.set_step(
                                    run_id,
                                    &step_id,
                                    StepWrite {
                                        status: StepStatus::Failed,
                                        output: None,
                                        error: Some(error.clone()),
                                        item_count: None,
                                    },
                                );
                                finished = Some((
                                    RunStatus::Failed,
                                    Some(format!("step {step_id:?} failed: {error}")),
                                ));
                                break 'actions;
                            }
                        };
                        writes.tasks.push(row);
                        advanced.tasks_created += 1;
                        if let Some(state) = steps.get_mut(&step_id) {
                            state.items.push(ItemState {
                                index,
                                task_status: TaskStatus::Queued,
                                output: None,
                                error: None,
                            });
                        }
                    }
                }
                Action::SetStep {
                    step_id,
                    status,
                    output,
                    error,
                    item_count,
                } => {
                    writes.set_step(
                        run_id,
                        &step_id,
                        StepWrite {
                            status,
                            output: output.clone(),
                            error: error.clone(),
                            item_count,
                        },
                    );
                    if let Some(state) = steps.get_mut(&step_id) {
                        state.status = status;
                        state.output = output;
                        state.error = error;
                        if item_count.is_some() {
                            state.item_count = item_count;
                        }
                    }
                }
                Action::RequestApproval {
                    step_id,
                    message,
                    approvers,
                    timeout_ms,
                    allow_self_approval,
                    on_timeout_approve,
                    on_reject_continue,
                } => {
                    writes.approvals.push(ApprovalWrite {
                        run_id,
                        step_id,
                        message,
                        approvers: serde_json::to_string(&approvers)?,
                        allow_self: allow_self_approval,
                        on_timeout: if on_timeout_approve {
                            "approve"
                        } else {
                            "reject"
                        },
                        on_reject: if on_reject_continue {
                            "continue"
                        } else {
                            "fail"
                        },
                        expires_at: timeout_ms
                            .map(|t| drover_protocol::limits::deadline_us(now_us, t)),
                    });
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
            let view = workflow::RunView {
                run_id,
                def,
                inputs,
                started_by,
                steps: &steps,
                max_items: sched.max_for_each_items,
            };
            (workflow::run_status(&view), None)
        }
    };
    advanced.status = Some(new_status);
    if !changed && new_status == run.status {
        // Nothing happened: nothing to write.
        return Ok((advanced, writes));
    }
    writes.runs.push(serde_json::json!({
        "id": run_id,
        "status": new_status.as_str(),
        "error": error,
        "terminal": new_status.is_terminal(),
    }));
    if new_status.is_terminal() {
        writes.finished.push(run_id);
    }
    Ok((advanced, writes))
}

/// The row of one task of a step; its idempotency key makes inserting it
/// again change nothing.
fn step_task_row(
    sched: &Scheduling,
    run_id: i64,
    step_id: &str,
    index: usize,
    generation: i64,
    mut new: NewTask,
    now_us: i64,
) -> Result<Value> {
    // The key is the store's, in the prefix an operator's task may not use.
    let key = format!("run:{run_id}:{step_id}:{index}:g{generation}");
    new.idempotency_key = None;
    let spec = TaskSpec::parse(new, &sched.weights, |_| true)
        .map_err(|e| StoreError::Conflict(format!("it makes an invalid task: {e}")))?;
    Ok(serde_json::json!({
        "task_type": spec.task_type,
        "payload": spec.payload.to_string(),
        "urgency": spec.urgency,
        "time_sensitivity": spec.time_sensitivity,
        "importance": spec.importance,
        "priority": spec.priority,
        "rank": sched.rank(spec.priority, now_us),
        "max_attempts": spec.max_attempts,
        "timeout_ms": spec.timeout_ms,
        "retry_backoff_ms": spec.retry_backoff_ms,
        "required_labels": spec.required_labels,
        "idempotency_key": key,
        "run_id": run_id,
        "step_id": step_id,
        "item_index": index as i64,
        "step_generation": generation,
    }))
}

/// SQLite: the JSON rows are unpacked by `json_each` inside the database;
/// statements cost no network round trip, so each table gets its own.
mod sqlite_impl {
    use super::*;
    use sqlx::{Sqlite, Transaction};

    impl SqliteStore {
        /// `column` is one of the ids of the JSON array bound as `$param`.
        fn ids_in(column: &str, param: u8) -> String {
            format!("{column} IN (SELECT value FROM json_each(${param}))")
        }

        /// The strings of the JSON array bound as `$param`, as rows of `step`.
        fn texts_of(param: u8) -> String {
            format!("(SELECT value AS step FROM json_each(${param}))")
        }

        async fn begin_advance(&self) -> Result<Transaction<'static, Sqlite>> {
            self.begin_write().await
        }

        /// One process, one writer: no other instance to tell.
        fn announce_created(&self, _advanced: &[(i64, Advanced)]) {}

        /// [`RunStore::complete_and_advance`]: statements cost SQLite no
        /// round trip, so it takes them one by one: the endings, the
        /// advance of the runs that moved, then the agents' slots.
        async fn record_and_advance(
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
                        let completed =
                            QueueStore::complete(self, agent_id, results, now_us).await?;
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
                   item_index, step_generation) \
                 SELECT json_extract(value, '$.task_type'), json_extract(value, '$.payload'), json_extract(value, '$.urgency'), \
                   json_extract(value, '$.time_sensitivity'), json_extract(value, '$.importance'), json_extract(value, '$.priority'), \
                   json_extract(value, '$.rank'), 'queued', json_extract(value, '$.max_attempts'), json_extract(value, '$.timeout_ms'), \
                   json_extract(value, '$.retry_backoff_ms'), json_extract(value, '$.required_labels'), json_extract(value, '$.idempotency_key'), \
                   ?2, ?2, ?2, json_extract(value, '$.run_id'), json_extract(value, '$.step_id'), json_extract(value, '$.item_index'), \
                   json_extract(value, '$.step_generation') \
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

    impl_runs!(SqliteStore, sqlx::Sqlite, reader, "", "");
}

/// PostgreSQL: every statement is a network round trip, so the writes are
/// one statement whose CTEs each take a JSON array of rows as a record set.
mod postgres_impl {
    use super::*;
    use sqlx::{Postgres, Transaction};

    impl PgStore {
        /// Agents long-polling another instance hear of a run's new tasks
        /// once the advance is committed.
        fn announce_created(&self, advanced: &[(i64, Advanced)]) {
            if advanced.iter().any(|(_, a)| a.tasks_created > 0) {
                self.announce_work();
            }
        }

        /// `column` is one of the ids of the JSON array bound as `$param`.
        /// As `= ANY(array)` the planner probes the column's index; as
        /// `IN (set-returning function)` it guesses 100 ids and, past a few
        /// thousand rows, hashes them and scans the whole table instead.
        fn ids_in(column: &str, param: u8) -> String {
            format!("{column} = ANY(ARRAY(SELECT value::bigint FROM json_array_elements_text(${param}::json)))")
        }

        /// The strings of the JSON array bound as `$param`, as rows of `step`.
        fn texts_of(param: u8) -> String {
            format!("json_array_elements_text(${param}::json) AS s(step)")
        }

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
    }

    /// Inserts new step tasks (skipping keys that exist) and updates steps
    /// and runs (the caller tells the other instances of new tasks after
    /// commit: `announce_created`), with the statement that records results
    /// (`pg_record::write_batch`).
    async fn write_rows(
        tx: &mut Transaction<'_, Postgres>,
        tasks: &[Value],
        steps: &[Value],
        runs: &[Value],
        now_us: i64,
    ) -> Result<()> {
        if tasks.is_empty() && steps.is_empty() && runs.is_empty() {
            return Ok(());
        }
        // Ended runs' work is dropped by the caller (`write`), as on SQLite.
        let rows = pg_record::AdvanceRows {
            tasks,
            steps,
            runs,
            finished: &[],
        };
        let no_endings = crate::store::postgres::EndColumns::default();
        pg_record::write_batch(tx, &no_endings, &rows, &[], false, now_us).await?;
        Ok(())
    }

    impl_runs!(
        PgStore,
        sqlx::Postgres,
        pool,
        "FOR UPDATE",
        "FOR UPDATE SKIP LOCKED"
    );
}

delegate_to_backend!(RunStore {
    async fn start_run(&self, wf: &WorkflowVersion, inputs: &Map<String, Value>, started_by: &str, key: Option<&str>, now_us: i64) -> Result<(i64, bool)>;
    async fn advance_run(&self, run_id: i64, sched: &Scheduling, now_us: i64) -> Result<Advanced>;
    async fn advance_runs(&self, run_ids: &[i64], sched: &Scheduling, now_us: i64) -> Result<Vec<(i64, Advanced)>>;
    async fn complete_and_advance(&self, agent_id: i64, results: &[TaskResult], sched: &Scheduling, now_us: i64) -> Result<Recorded>;
    async fn runs_of_tasks(&self, task_ids: &[i64]) -> Result<Vec<i64>>;
    async fn active_runs(&self) -> Result<Vec<i64>>;
    async fn get_run(&self, id: i64) -> Result<Option<RunDetail>>;
    async fn list_runs(&self, status: Option<RunStatus>, workflow: Option<&str>, limit: i64) -> Result<Vec<RunSummary>>;
    async fn cancel_run(&self, id: i64, now_us: i64) -> Result<Vec<i64>>;
    async fn retry_step(&self, run_id: i64, step_id: &str, now_us: i64) -> Result<()>;
    async fn list_approvals(&self, status: Option<&str>, before_id: Option<i64>) -> Result<Vec<ApprovalRecord>>;
    async fn approval(&self, id: i64) -> Result<Option<ApprovalRecord>>;
    async fn decide_approval(&self, id: i64, approved: bool, by: &str, comment: Option<&str>, now_us: i64) -> Result<i64>;
    async fn expire_approvals(&self, now_us: i64) -> Result<Vec<i64>>;
});
