//! Workflow runs, their steps and approvals: the interface. Each backend
//! implements it in `<backend>/runs.rs` (reads and changes),
//! `<backend>/advance.rs` (the run loader and the writing of plans) and
//! `<backend>/results.rs` (results recorded with their runs' advance).
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

use drover_protocol::agent::TaskResult;
use drover_protocol::workflow::{ApprovalView, RunDetail, RunStatus, RunSummary, WorkflowVersion};
use serde_json::{Map, Value};

use super::{Claim, Completed, ListCount, Result, Store};
use crate::domain::Scheduling;

/// What an advance changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advanced {
    pub tasks_created: usize,
    /// Approvals this advance asked for: approvers' inboxes change.
    pub approvals_opened: usize,
    pub status: Option<RunStatus>,
    /// Runs to advance next, after this commit: child runs this advance
    /// started, and the parent of a child run it ended.
    pub follow_up: Vec<i64>,
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
    /// Work claimed for the reporting agent with its results (eager
    /// dispatch, [`Refill`]); empty if none was asked for or none could be
    /// claimed.
    pub refill: Claim,
    /// The refill was claimed in the results' own write.
    pub refilled: bool,
}

/// Eager dispatch: with an agent's results, claim work for the slots they
/// free, in the same write where the backend can (SQLite: the same
/// transaction), so that the slots are filled without a dispatcher round.
/// The claim is the agent's ordinary claim (capacity, labels, priority);
/// if it fails the results still stand.
#[derive(Debug, Clone, Copy)]
pub struct Refill {
    pub max_tasks: i64,
    pub lease_ttl_us: i64,
}

/// Most approvals [`RunStore::list_approvals`] returns at once.
pub const APPROVAL_PAGE: usize = 500;

/// Filters of `GET /api/v1/runs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Any of these (none: every status).
    pub statuses: Vec<RunStatus>,
    /// The workflow's name, exactly.
    pub workflow: Option<String>,
    /// Who started it, exactly (`admin`, `schedule:3`, `trigger:7`).
    pub started_by: Option<String>,
    /// Matches a run whose id it is, or whose workflow, starter or inputs
    /// contain it (ignoring ASCII case).
    pub text: Option<String>,
    pub created_after_us: Option<i64>,
    pub created_before_us: Option<i64>,
    /// Another order than newest first.
    pub sort: Option<super::Sort<super::RunSort>>,
    /// Keyset pagination: the list continues after this run, in the
    /// list's order.
    pub before_id: Option<i64>,
    pub limit: i64,
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
        refill: Option<Refill>,
    ) -> Result<Recorded>;
    /// Runs owning any of these tasks.
    async fn runs_of_tasks(&self, task_ids: &[i64]) -> Result<Vec<i64>>;
    /// Runs still running or waiting for an approval.
    async fn active_runs(&self) -> Result<Vec<i64>>;
    async fn get_run(&self, id: i64) -> Result<Option<RunDetail>>;
    /// Runs matching `filter`, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>>;
    /// How many runs `filter` matches (its cursor and limit aside), up to
    /// [`COUNT_BOUND`](super::COUNT_BOUND).
    async fn count_runs(&self, filter: &RunFilter) -> Result<ListCount>;
    /// Cancels the run, its queued tasks and pending approvals; returns the
    /// ids of its running tasks for the caller to cancel. `by` is recorded
    /// on the approvals it cancels and in the run's history.
    async fn cancel_run(&self, id: i64, by: &str, now_us: i64) -> Result<Vec<i64>>;
    /// Puts a failed step back to pending (a new generation) and the run
    /// back to running; `by` is recorded in the run's history.
    async fn retry_step(&self, run_id: i64, step_id: &str, by: &str, now_us: i64) -> Result<()>;
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

delegate_to_backend!(RunStore {
    async fn start_run(&self, wf: &WorkflowVersion, inputs: &Map<String, Value>, started_by: &str, key: Option<&str>, now_us: i64) -> Result<(i64, bool)>;
    async fn advance_run(&self, run_id: i64, sched: &Scheduling, now_us: i64) -> Result<Advanced>;
    async fn advance_runs(&self, run_ids: &[i64], sched: &Scheduling, now_us: i64) -> Result<Vec<(i64, Advanced)>>;
    async fn complete_and_advance(&self, agent_id: i64, results: &[TaskResult], sched: &Scheduling, now_us: i64, refill: Option<Refill>) -> Result<Recorded>;
    async fn runs_of_tasks(&self, task_ids: &[i64]) -> Result<Vec<i64>>;
    async fn active_runs(&self) -> Result<Vec<i64>>;
    async fn get_run(&self, id: i64) -> Result<Option<RunDetail>>;
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>>;
    async fn count_runs(&self, filter: &RunFilter) -> Result<ListCount>;
    async fn cancel_run(&self, id: i64, by: &str, now_us: i64) -> Result<Vec<i64>>;
    async fn retry_step(&self, run_id: i64, step_id: &str, by: &str, now_us: i64) -> Result<()>;
    async fn list_approvals(&self, status: Option<&str>, before_id: Option<i64>) -> Result<Vec<ApprovalRecord>>;
    async fn approval(&self, id: i64) -> Result<Option<ApprovalRecord>>;
    async fn decide_approval(&self, id: i64, approved: bool, by: &str, comment: Option<&str>, now_us: i64) -> Result<i64>;
    async fn expire_approvals(&self, now_us: i64) -> Result<Vec<i64>>;
});
