//! Durable waits of workflow steps, on both backends: a `wait` step's sleep
//! or event, and a `workflow` step's child run. A wait is a row of `waits`;
//! nothing in memory, so it survives restarts and holds no agent slot.
//!
//! - The advance that makes a step wait opens its row (and, for a workflow
//!   step, inserts the child run) in its own transaction ([`write_waits`]).
//! - The leader wakes due rows: sleeps, and events past their deadline
//!   ([`WaitStore::resume_due_waits`]).
//! - An event resolves every row waiting for its key
//!   ([`WaitStore::send_event`]).
//! - A child run's end resolves its parent's row in the transaction that
//!   ends it; a run that ends cancels the child runs it still waits on.
//!
//! Resolving a row sets its step's state; the caller advances the runs
//! returned, as after an approval decision. The statements are the same
//! text on SQLite and PostgreSQL: `wait_store!` stamps them out for each.

use std::collections::BTreeMap;

use drover_protocol::workflow::{RunEventKind, RunStatus};
use serde_json::{json, Map, Value};

use super::run_events::{step_change, EventWrite, StepKind};
use super::{Result, Store};
use crate::workflow::{StepState, StepStatus, WaitRequest};

/// A wait the planner asked for, to open in the advance's transaction.
#[derive(Debug, Clone)]
pub(super) struct WaitWrite {
    pub(super) run_id: i64,
    pub(super) step_id: String,
    pub(super) generation: i64,
    pub(super) wait: WaitRequest,
    /// The parent run's starter: a child run is started by the same person
    /// (approvals' self-approval rule holds across the two).
    pub(super) started_by: String,
    pub(super) opened_at_us: i64,
}

/// A child run that ended, for its parent's step.
#[derive(Debug, Clone)]
pub(super) struct ChildEnd {
    pub(super) run_id: i64,
    pub(super) succeeded: bool,
    /// The parent step's output (JSON).
    pub(super) output: String,
    pub(super) error: Option<String>,
}

impl ChildEnd {
    /// The parent step's output: the child's id, status and the outputs of
    /// its steps that succeeded.
    pub(super) fn of(
        run_id: i64,
        status: RunStatus,
        error: Option<&str>,
        steps: &BTreeMap<String, StepState>,
    ) -> Self {
        let outputs: Map<String, Value> = steps
            .iter()
            .filter(|(_, s)| s.status == StepStatus::Succeeded)
            .map(|(id, s)| (id.clone(), s.output.clone().unwrap_or(Value::Null)))
            .collect();
        let succeeded = status == RunStatus::Succeeded;
        Self {
            run_id,
            succeeded,
            output: json!({ "run_id": run_id, "status": status.as_str(), "steps": outputs })
                .to_string(),
            error: (!succeeded).then(|| match error {
                Some(e) => format!("run {run_id} {}: {e}", status.as_str()),
                None => format!("run {run_id} {}", status.as_str()),
            }),
        }
    }
}

/// A wait as the run page shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WaitRow {
    pub step_id: String,
    pub generation: i64,
    pub kind: String,
    pub status: String,
    pub wake_at: Option<i64>,
    pub event_key: Option<String>,
    pub child_run_id: Option<i64>,
}

/// Waits on the backends.
#[allow(async_fn_in_trait)]
pub trait WaitStore {
    /// Wakes sleeps whose time has come and times out event waits past
    /// their deadline (at most `limit`); returns the runs to advance.
    async fn resume_due_waits(&self, now_us: i64, limit: i64) -> Result<Vec<i64>>;
    /// The next time a wait is due, if any (the leader sleeps until then).
    async fn next_wait_due(&self) -> Result<Option<i64>>;
    /// An event: every step waiting for `key` resumes with `data`. Returns
    /// the (run, step) pairs resumed; their runs are to be advanced.
    async fn send_event(&self, key: &str, data: &Value, now_us: i64) -> Result<Vec<(i64, String)>>;
    /// The waits of a run's steps, current and past generations.
    async fn waits_of_run(&self, run_id: i64) -> Result<Vec<WaitRow>>;
    /// The run whose workflow step started `run_id`, if one did.
    async fn parent_run(&self, run_id: i64) -> Result<Option<i64>>;
}

mod sql {
    pub const OPEN: &str =
        "INSERT INTO waits (run_id, step_id, generation, kind, status, wake_at, \
        event_key, on_timeout, child_run_id, created_at) \
        VALUES ($1, $2, $3, $4, 'waiting', $5, $6, $7, $8, $9) \
        ON CONFLICT (run_id, step_id, generation) DO NOTHING";
    pub const WORKFLOW: &str = "SELECT id, version, definition FROM workflows \
        WHERE name = $1 AND ($2 = 0 OR version = $2) ORDER BY version DESC LIMIT 1";
    pub const START_CHILD: &str = "INSERT INTO runs (workflow_id, workflow_name, workflow_version, \
        inputs, status, started_by, idempotency_key, created_at, updated_at, parent_run_id, parent_step_id) \
        VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $7, $8, $9) \
        ON CONFLICT (idempotency_key) DO NOTHING RETURNING id";
    pub const RUN_BY_KEY: &str = "SELECT id FROM runs WHERE idempotency_key = $1";
    pub const CHILD_STEP: &str =
        "INSERT INTO run_steps (run_id, step_id, status, updated_at) VALUES ($1, $2, 'pending', $3) \
         ON CONFLICT (run_id, step_id) DO NOTHING";
    /// A waiting step's end (it may have been cancelled meanwhile).
    pub const SET_STEP: &str = "UPDATE run_steps SET status = $3, output = $4, error = $5, \
        finished_at = $6, updated_at = $6 WHERE run_id = $1 AND step_id = $2 AND status = 'waiting' \
        RETURNING generation";
    pub const END_CHILD: &str = "UPDATE waits SET status = $2, output = $3, resolved_at = $4 \
        WHERE child_run_id = $1 AND status = 'waiting' RETURNING run_id, step_id";
    pub const CHILDREN_OF: &str = "SELECT child_run_id FROM waits \
        WHERE run_id = $1 AND status = 'waiting' AND child_run_id IS NOT NULL";
    pub const CANCEL_WAITS_OF: &str = "UPDATE waits SET status = 'cancelled', resolved_at = $2 \
        WHERE run_id = $1 AND status = 'waiting'";
    pub const CANCEL_RUN: &str =
        "UPDATE runs SET status = 'cancelled', error = $3, updated_at = $2, \
        finished_at = $2 WHERE id = $1 AND status IN ('running', 'waiting_approval')";
    pub const DUE: &str = "SELECT id, run_id, step_id, kind, on_timeout, event_key FROM waits \
        WHERE status = 'waiting' AND wake_at IS NOT NULL AND wake_at <= $1 ORDER BY wake_at LIMIT $2";
    pub const NEXT_DUE: &str =
        "SELECT MIN(wake_at) FROM waits WHERE status = 'waiting' AND wake_at IS NOT NULL";
    pub const RESOLVE: &str = "UPDATE waits SET status = $2, output = $3, resolved_at = $4 \
        WHERE id = $1 AND status = 'waiting' RETURNING run_id, step_id";
    pub const OF_KEY: &str =
        "SELECT id, run_id, step_id FROM waits WHERE event_key = $1 AND status = 'waiting' ORDER BY run_id";
    pub const OF_RUN: &str =
        "SELECT step_id, generation, kind, status, wake_at, event_key, child_run_id \
        FROM waits WHERE run_id = $1 ORDER BY id";
    pub const PARENT: &str = "SELECT parent_run_id FROM runs WHERE id = $1";
}

/// How a due wait ends: its status, its step's status, output and error.
fn due_outcome(
    kind: &str,
    on_timeout: Option<&str>,
    key: Option<&str>,
    now_us: i64,
) -> (&'static str, StepStatus, Value, Option<String>) {
    if kind == "sleep" {
        let output = json!({ "woke_at": crate::schedule::rfc3339(now_us) });
        return ("resumed", StepStatus::Succeeded, output, None);
    }
    let output = json!({ "timed_out": true, "key": key });
    if on_timeout == Some("continue") {
        ("timed_out", StepStatus::Succeeded, output, None)
    } else {
        let error = format!(
            "no event with key {:?} came before the timeout",
            key.unwrap_or_default()
        );
        ("timed_out", StepStatus::Failed, output, Some(error))
    }
}

macro_rules! wait_store {
    ($store:ty, $db:ty, $read:ident, $lock:literal) => {
        impl $store {
            /// Opens the waits an advance asked for, starts the child runs of
            /// workflow steps, resolves the parents of child runs that ended
            /// and cancels the waits and children of the runs that ended
            /// waiting (`ended_waiting`). Returns the runs
            /// to advance after commit (children started, parents whose step
            /// failed to start one).
            pub(super) async fn write_waits(
                tx: &mut sqlx::Transaction<'_, $db>,
                waits: &[WaitWrite],
                ends: &[ChildEnd],
                ended_waiting: &[i64],
                now_us: i64,
            ) -> Result<Vec<(i64, i64)>> {
                let mut follow = Vec::new();
                for w in waits {
                    match &w.wait {
                        WaitRequest::Sleep {
                            until_us,
                            duration_ms,
                        } => {
                            let wake = until_us.unwrap_or_else(|| {
                                drover_protocol::limits::deadline_us(
                                    w.opened_at_us,
                                    duration_ms.unwrap_or(0),
                                )
                            });
                            Self::open_wait(tx, w, "sleep", Some(wake), None, None, None).await?;
                        }
                        WaitRequest::Event {
                            key,
                            timeout_ms,
                            continue_on_timeout,
                        } => {
                            let deadline = timeout_ms
                                .map(|t| drover_protocol::limits::deadline_us(w.opened_at_us, t));
                            let on_timeout = if *continue_on_timeout { "continue" } else { "fail" };
                            Self::open_wait(tx, w, "event", deadline, Some(key), Some(on_timeout), None)
                                .await?;
                        }
                        WaitRequest::Workflow {
                            workflow,
                            version,
                            inputs,
                        } => match Self::start_child(tx, w, workflow, *version, inputs).await? {
                            Ok(child) => {
                                Self::open_wait(tx, w, "workflow", None, None, None, Some(child))
                                    .await?;
                                follow.push((w.run_id, child));
                            }
                            Err(why) => {
                                Self::set_waited_step(
                                    tx,
                                    w.run_id,
                                    &w.step_id,
                                    StepStatus::Failed,
                                    None,
                                    Some(&why),
                                    now_us,
                                )
                                .await?;
                                follow.push((w.run_id, w.run_id));
                            }
                        },
                    }
                }
                for end in ends {
                    let status = if end.succeeded { "resumed" } else { "failed" };
                    let parents: Vec<(i64, String)> = sqlx::query_as(sql::END_CHILD)
                        .bind(end.run_id)
                        .bind(status)
                        .bind(&end.output)
                        .bind(now_us)
                        .fetch_all(&mut **tx)
                        .await?;
                    for (run_id, step_id) in parents {
                        let step = if end.succeeded {
                            StepStatus::Succeeded
                        } else {
                            StepStatus::Failed
                        };
                        Self::set_waited_step(
                            tx,
                            run_id,
                            &step_id,
                            step,
                            Some(end.output.clone()),
                            end.error.as_deref(),
                            now_us,
                        )
                        .await?;
                    }
                }
                Self::cancel_children(tx, ended_waiting, now_us).await?;
                Ok(follow)
            }

            async fn open_wait(
                tx: &mut sqlx::Transaction<'_, $db>,
                w: &WaitWrite,
                kind: &str,
                wake_at: Option<i64>,
                key: Option<&str>,
                on_timeout: Option<&str>,
                child: Option<i64>,
            ) -> Result<()> {
                sqlx::query(sql::OPEN)
                    .bind(w.run_id)
                    .bind(&w.step_id)
                    .bind(w.generation)
                    .bind(kind)
                    .bind(wake_at)
                    .bind(key)
                    .bind(on_timeout)
                    .bind(child)
                    .bind(w.opened_at_us)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// Inserts the child run of a workflow step (once: its key is
            /// the step's generation), or says why it cannot start.
            async fn start_child(
                tx: &mut sqlx::Transaction<'_, $db>,
                w: &WaitWrite,
                workflow: &str,
                version: Option<i64>,
                inputs: &Map<String, Value>,
            ) -> Result<std::result::Result<i64, String>> {
                let found: Option<(i64, i64, String)> = sqlx::query_as(sql::WORKFLOW)
                    .bind(workflow)
                    .bind(version.unwrap_or(0))
                    .fetch_optional(&mut **tx)
                    .await?;
                let Some((workflow_id, version, definition)) = found else {
                    return Ok(Err(match version {
                        Some(v) => format!("workflow {workflow:?} has no version {v}"),
                        None => format!("no workflow named {workflow:?}"),
                    }));
                };
                let def: crate::workflow::Definition = serde_json::from_str(&definition)?;
                let inputs = match crate::workflow::validate_inputs(&def, inputs.clone()) {
                    Ok(inputs) => inputs,
                    Err(e) => {
                        return Ok(Err(format!(
                            "the inputs of workflow {workflow:?} v{version}: {}",
                            crate::workflow::input_errors_text(&e)
                        )))
                    }
                };
                let key = format!("run:{}:{}:g{}", w.run_id, w.step_id, w.generation);
                let id: Option<i64> = sqlx::query_scalar(sql::START_CHILD)
                    .bind(workflow_id)
                    .bind(workflow)
                    .bind(version)
                    .bind(Value::Object(inputs).to_string())
                    .bind(&w.started_by)
                    .bind(&key)
                    .bind(w.opened_at_us)
                    .bind(w.run_id)
                    .bind(&w.step_id)
                    .fetch_optional(&mut **tx)
                    .await?;
                let id = match id {
                    Some(id) => {
                        for step in def.step_ids() {
                            sqlx::query(sql::CHILD_STEP)
                                .bind(id)
                                .bind(step)
                                .bind(w.opened_at_us)
                                .execute(&mut **tx)
                                .await?;
                        }
                        let parent = format!("by step {} of run {}", w.step_id, w.run_id);
                        let started = EventWrite::run(id, RunEventKind::RunStarted)
                            .by(Some(&w.started_by))
                            .detail(Some(&parent));
                        Self::write_events(tx, &[started], w.opened_at_us).await?;
                        id
                    }
                    None => {
                        sqlx::query_scalar(sql::RUN_BY_KEY)
                            .bind(&key)
                            .fetch_one(&mut **tx)
                            .await?
                    }
                };
                Ok(Ok(id))
            }

            /// Cancels the child runs the ended `runs` still wait on, and
            /// theirs in turn (their queued tasks and open approvals with
            /// them); returns every run cancelled. Their running tasks run
            /// out, as an ended run's own do.
            pub(super) async fn cancel_children(
                tx: &mut sqlx::Transaction<'_, $db>,
                runs: &[i64],
                now_us: i64,
            ) -> Result<Vec<i64>> {
                let mut cancelled = Vec::new();
                let mut level: Vec<(i64, i64)> = Vec::new();
                for run in runs {
                    let children: Vec<i64> = sqlx::query_scalar(sql::CHILDREN_OF)
                        .bind(run)
                        .fetch_all(&mut **tx)
                        .await?;
                    level.extend(children.into_iter().map(|c| (*run, c)));
                }
                // Versions are pinned to older ones, so the tree is finite;
                // the bound only guards a corrupt database.
                for _ in 0..64 {
                    if level.is_empty() {
                        break;
                    }
                    let mut next = Vec::new();
                    for (parent, child) in level {
                        for run in [parent, child] {
                            sqlx::query(sql::CANCEL_WAITS_OF)
                                .bind(run)
                                .bind(now_us)
                                .execute(&mut **tx)
                                .await?;
                        }
                        let why = format!("its parent run {parent} ended");
                        let done = sqlx::query(sql::CANCEL_RUN)
                            .bind(child)
                            .bind(now_us)
                            .bind(&why)
                            .execute(&mut **tx)
                            .await?;
                        if done.rows_affected() == 0 {
                            continue;
                        }
                        let event =
                            EventWrite::run(child, RunEventKind::RunCancelled).detail(Some(&why));
                        Self::write_events(tx, &[event], now_us).await?;
                        sqlx::query(super::sql::runs::CANCEL_STEPS)
                            .bind(now_us)
                            .bind(child)
                            .execute(&mut **tx)
                            .await?;
                        // Nobody cancelled these: their run's parent ended.
                        sqlx::query(super::sql::runs::CANCEL_APPROVALS)
                            .bind(child)
                            .bind(Option::<&str>::None)
                            .bind(now_us)
                            .execute(&mut **tx)
                            .await?;
                        Self::cancel_queued_tasks(
                            tx,
                            &serde_json::to_string(&[child])?,
                            "its parent run ended",
                            now_us,
                        )
                        .await?;
                        cancelled.push(child);
                        let grandchildren: Vec<i64> = sqlx::query_scalar(sql::CHILDREN_OF)
                            .bind(child)
                            .fetch_all(&mut **tx)
                            .await?;
                        next.extend(grandchildren.into_iter().map(|g| (child, g)));
                    }
                    level = next;
                }
                for run in runs {
                    sqlx::query(sql::CANCEL_WAITS_OF)
                        .bind(run)
                        .bind(now_us)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(cancelled)
            }

            /// Sets the step of a resolved wait (`output` JSON text), and
            /// tells its end in the run's history; a step no longer
            /// waiting (cancelled meanwhile) is left as it is.
            async fn set_waited_step(
                tx: &mut sqlx::Transaction<'_, $db>,
                run_id: i64,
                step_id: &str,
                status: StepStatus,
                output: Option<String>,
                error: Option<&str>,
                now_us: i64,
            ) -> Result<()> {
                let generation: Option<i64> = sqlx::query_scalar(sql::SET_STEP)
                    .bind(run_id)
                    .bind(step_id)
                    .bind(status.as_str())
                    .bind(output)
                    .bind(error)
                    .bind(now_us)
                    .fetch_optional(&mut **tx)
                    .await?;
                if let Some(generation) = generation {
                    let ended = step_change(
                        run_id,
                        step_id,
                        generation,
                        StepKind::PLAIN,
                        StepStatus::Waiting,
                        status,
                        error,
                    );
                    Self::write_events(tx, ended.as_slice(), now_us).await?;
                }
                Ok(())
            }

            /// Locks the runs in id order, as advances do, so resolving a
            /// wait cannot deadlock with an advance of its run.
            async fn lock_runs(tx: &mut sqlx::Transaction<'_, $db>, runs: &[i64]) -> Result<()> {
                let mut runs = runs.to_vec();
                runs.sort_unstable();
                runs.dedup();
                for run in runs {
                    sqlx::query(concat!("SELECT id FROM runs WHERE id = $1", $lock))
                        .bind(run)
                        .fetch_optional(&mut **tx)
                        .await?;
                }
                Ok(())
            }
        }

        impl WaitStore for $store {
            async fn resume_due_waits(&self, now_us: i64, limit: i64) -> Result<Vec<i64>> {
                type Due = (i64, i64, String, String, Option<String>, Option<String>);
                let due: Vec<Due> = sqlx::query_as(sql::DUE)
                    .bind(now_us)
                    .bind(limit)
                    .fetch_all(self.$read())
                    .await?;
                if due.is_empty() {
                    return Ok(Vec::new());
                }
                let mut tx = self.begin_write().await?;
                let runs: Vec<i64> = due.iter().map(|d| d.1).collect();
                Self::lock_runs(&mut tx, &runs).await?;
                let mut resumed = Vec::new();
                for (id, _, _, kind, on_timeout, key) in due {
                    let (status, step, output, error) =
                        due_outcome(&kind, on_timeout.as_deref(), key.as_deref(), now_us);
                    let row: Option<(i64, String)> = sqlx::query_as(sql::RESOLVE)
                        .bind(id)
                        .bind(status)
                        .bind(output.to_string())
                        .bind(now_us)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some((run_id, step_id)) = row {
                        Self::set_waited_step(
                            &mut tx,
                            run_id,
                            &step_id,
                            step,
                            Some(output.to_string()),
                            error.as_deref(),
                            now_us,
                        )
                        .await?;
                        resumed.push(run_id);
                    }
                }
                tx.commit().await?;
                resumed.sort_unstable();
                resumed.dedup();
                Ok(resumed)
            }

            async fn next_wait_due(&self) -> Result<Option<i64>> {
                Ok(sqlx::query_scalar(sql::NEXT_DUE)
                    .fetch_one(self.$read())
                    .await?)
            }

            async fn send_event(
                &self,
                key: &str,
                data: &Value,
                now_us: i64,
            ) -> Result<Vec<(i64, String)>> {
                let mut tx = self.begin_write().await?;
                let waiting: Vec<(i64, i64, String)> = sqlx::query_as(sql::OF_KEY)
                    .bind(key)
                    .fetch_all(&mut *tx)
                    .await?;
                if waiting.is_empty() {
                    return Ok(Vec::new());
                }
                let runs: Vec<i64> = waiting.iter().map(|w| w.1).collect();
                Self::lock_runs(&mut tx, &runs).await?;
                let output = json!({
                    "key": key,
                    "data": data,
                    "received_at": crate::schedule::rfc3339(now_us),
                });
                let mut resumed = Vec::new();
                for (id, _, _) in waiting {
                    let row: Option<(i64, String)> = sqlx::query_as(sql::RESOLVE)
                        .bind(id)
                        .bind("resumed")
                        .bind(output.to_string())
                        .bind(now_us)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some((run_id, step_id)) = row {
                        Self::set_waited_step(
                            &mut tx,
                            run_id,
                            &step_id,
                            StepStatus::Succeeded,
                            Some(output.to_string()),
                            None,
                            now_us,
                        )
                        .await?;
                        resumed.push((run_id, step_id));
                    }
                }
                tx.commit().await?;
                Ok(resumed)
            }

            async fn waits_of_run(&self, run_id: i64) -> Result<Vec<WaitRow>> {
                Ok(sqlx::query_as::<_, WaitRow>(sql::OF_RUN)
                    .bind(run_id)
                    .fetch_all(self.$read())
                    .await?)
            }

            async fn parent_run(&self, run_id: i64) -> Result<Option<i64>> {
                Ok(sqlx::query_scalar::<_, Option<i64>>(sql::PARENT)
                    .bind(run_id)
                    .fetch_optional(self.$read())
                    .await?
                    .flatten())
            }
        }
    };
}

wait_store!(super::sqlite::SqliteStore, sqlx::Sqlite, reader, "");
wait_store!(
    super::postgres::PgStore,
    sqlx::Postgres,
    pool,
    " FOR UPDATE"
);

delegate_to_backend!(WaitStore {
    async fn resume_due_waits(&self, now_us: i64, limit: i64) -> Result<Vec<i64>>;
    async fn next_wait_due(&self) -> Result<Option<i64>>;
    async fn send_event(&self, key: &str, data: &Value, now_us: i64) -> Result<Vec<(i64, String)>>;
    async fn waits_of_run(&self, run_id: i64) -> Result<Vec<WaitRow>>;
    async fn parent_run(&self, run_id: i64) -> Result<Option<i64>>;
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_event_fails_or_continues_by_its_rule_and_a_sleep_resumes() {
        let (status, step, _, error) = due_outcome("sleep", None, None, 0);
        assert_eq!(
            (status, step, error),
            ("resumed", StepStatus::Succeeded, None)
        );
        let (status, step, output, error) = due_outcome("event", Some("fail"), Some("k:1"), 0);
        assert_eq!((status, step), ("timed_out", StepStatus::Failed));
        assert!(error.unwrap().contains("k:1"));
        assert_eq!(output["timed_out"], true);
        let (_, step, _, error) = due_outcome("event", Some("continue"), Some("k:1"), 0);
        assert_eq!((step, error), (StepStatus::Succeeded, None));
    }

    #[test]
    fn a_child_end_names_its_run_and_keeps_only_succeeded_outputs() {
        let mut steps = BTreeMap::new();
        steps.insert(
            "a".to_string(),
            StepState {
                status: StepStatus::Succeeded,
                output: Some(json!(1)),
                ..StepState::default()
            },
        );
        steps.insert(
            "b".to_string(),
            StepState {
                status: StepStatus::Failed,
                error: Some("x".into()),
                ..StepState::default()
            },
        );
        let end = ChildEnd::of(7, RunStatus::Failed, Some("step b failed"), &steps);
        assert!(!end.succeeded);
        assert_eq!(end.error.as_deref(), Some("run 7 failed: step b failed"));
        let output: Value = serde_json::from_str(&end.output).unwrap();
        assert_eq!(
            output,
            json!({"run_id": 7, "status": "failed", "steps": {"a": 1}})
        );
    }
}
