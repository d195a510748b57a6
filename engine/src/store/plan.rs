//! Pure planning, no SQL: what an ending, a sweep or an advance makes
//! happen next, as rows for the backends to write. Both backends load
//! state, call these, and write the answer; the decisions are made here
//! once (what a failed attempt becomes comes from [`crate::lifecycle`],
//! what a run does next from [`crate::workflow::plan`]).

use std::collections::{BTreeMap, HashMap};

use drover_protocol::agent::TaskResult;
use drover_protocol::api::{NewTask, TaskStatus};
use drover_protocol::workflow::{RunEventKind, RunStatus};
use serde_json::{Map, Value};

use super::rows::{json_opt, run_status, step_status, ItemRow, StepRow};
use super::run_events::{never_ran, step_change, EventWrite, StepKind};
use super::waits::{ChildEnd, WaitWrite};
use super::{Advanced, Applied, Completed, Result, Sweep};
use crate::domain::{Scheduling, TaskSpec};
use crate::error::StoreError;
use crate::workflow::{self, Action, Definition, ItemState, StepState, StepStatus};

/// A task to insert, as both backends write it: owned, so that it can wait
/// for a shared commit (PostgreSQL's gathering task, SQLite's writer
/// thread).
#[derive(Clone, Debug)]
pub(crate) struct TaskRow {
    pub(crate) task_type: String,
    pub(crate) payload: String,
    pub(crate) urgency: i64,
    pub(crate) time_sensitivity: i64,
    pub(crate) importance: i64,
    pub(crate) priority: f64,
    pub(crate) rank: f64,
    pub(crate) max_attempts: i64,
    pub(crate) timeout_ms: i64,
    pub(crate) retry_backoff_ms: i64,
    /// JSON text (PostgreSQL arrays cannot nest).
    pub(crate) required_labels: String,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) run_after: i64,
    pub(crate) created_at: i64,
    pub(crate) concurrency_key: Option<String>,
    pub(crate) concurrency_limit: Option<i64>,
}

impl TaskRow {
    /// The rows of `specs`, submitted together at `now_us`.
    pub(crate) fn all(specs: &[TaskSpec], sched: &Scheduling, now_us: i64) -> Result<Vec<Self>> {
        specs
            .iter()
            .map(|spec| {
                let concurrency = sched.concurrency_of(spec);
                Ok(Self {
                    task_type: spec.task_type.clone(),
                    payload: spec.payload.to_string(),
                    urgency: spec.urgency,
                    time_sensitivity: spec.time_sensitivity,
                    importance: spec.importance,
                    priority: spec.priority,
                    rank: sched.rank(spec.priority, now_us),
                    max_attempts: spec.max_attempts,
                    timeout_ms: spec.timeout_ms,
                    retry_backoff_ms: spec.retry_backoff_ms,
                    required_labels: serde_json::to_string(&spec.required_labels)?,
                    idempotency_key: spec.idempotency_key.clone(),
                    run_after: spec.run_after_us.unwrap_or(now_us),
                    created_at: now_us,
                    concurrency_limit: concurrency.as_ref().map(|c| c.1),
                    concurrency_key: concurrency.map(|c| c.0),
                })
            })
            .collect()
    }
}

/// One attempt to end: which lease, how, and the agent's timings.
#[derive(Debug, Clone)]
pub(super) struct Ending {
    pub(super) task_id: i64,
    pub(super) lease_token: i64,
    /// The agent that sent the result: it applies only if this agent holds
    /// the lease. `None` for the server's own endings (sweeps, cancels).
    pub(super) holder: Option<i64>,
    pub(super) end: crate::lifecycle::AttemptEnd,
    pub(super) started_at_us: Option<i64>,
    pub(super) finished_at_us: Option<i64>,
}

/// Slots to give back, as (agent id, how many), by agent id.
pub(super) type FreedSlots = Vec<(i64, i64)>;

/// Counts the slots freed per agent, one per ended attempt's agent.
pub(super) fn freed_slots(agents: impl Iterator<Item = i64>) -> FreedSlots {
    let mut freed = std::collections::BTreeMap::<i64, i64>::new();
    for agent in agents {
        *freed.entry(agent).or_default() += 1;
    }
    freed.into_iter().collect()
}

/// Why a sweep ends the running attempts it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SweptBecause {
    Deregistered,
    Offline,
    LeaseExpired,
    Restarted,
    Revoked,
}

impl SweptBecause {
    pub(super) fn reason(self) -> &'static str {
        match self {
            SweptBecause::Deregistered => "agent deregistered",
            SweptBecause::Offline => "agent went offline",
            SweptBecause::LeaseExpired => "lease expired",
            SweptBecause::Restarted => "agent restarted",
            SweptBecause::Revoked => "agent revoked",
        }
    }
}

/// The attempt ending the result `agent_id` sent asks for.
pub(super) fn ending_of_result(agent_id: i64, r: &TaskResult) -> Ending {
    let end = match &r.outcome {
        drover_protocol::agent::Outcome::Succeeded { output } => {
            crate::lifecycle::AttemptEnd::Succeeded {
                output: output.clone(),
            }
        }
        drover_protocol::agent::Outcome::Failed { error, retryable } => {
            crate::lifecycle::AttemptEnd::Failed {
                error: error.clone(),
                retryable: *retryable,
            }
        }
        drover_protocol::agent::Outcome::Released { reason } => {
            crate::lifecycle::AttemptEnd::Released {
                reason: reason.clone(),
            }
        }
    };
    Ending {
        task_id: r.task_id,
        lease_token: r.lease_token,
        holder: Some(agent_id),
        end,
        started_at_us: r.started_at_us,
        finished_at_us: r.finished_at_us,
    }
}

pub(super) fn sweep_of(ended: Completed) -> Sweep {
    let mut sweep = Sweep {
        runs: ended.runs,
        ..Sweep::default()
    };
    for a in &ended.applied {
        match a {
            Applied::Yes(TaskStatus::Queued) => sweep.tasks_requeued += 1,
            Applied::Yes(TaskStatus::Failed) => sweep.tasks_failed += 1,
            _ => {}
        }
    }
    sweep
}

/// How a running task found by a sweep ends: timed out if it ran past its
/// timeout, otherwise lost (its agent or lease is gone) for `reason`.
pub(super) fn ending_of_sweep(
    task_id: i64,
    lease_token: i64,
    started_at_us: i64,
    timeout_ms: i64,
    why: SweptBecause,
    now_us: i64,
) -> Ending {
    let reason = why.reason().to_string();
    let end = if now_us >= started_at_us + crate::time::ms(timeout_ms) {
        crate::lifecycle::AttemptEnd::TimedOut { timeout_ms }
    } else if why == SweptBecause::Deregistered {
        // An agent deregisters after it has finished or released what it
        // ran, so what it still holds was handed to a claim it gave up on
        // as it stopped: never started, the attempt does not count.
        crate::lifecycle::AttemptEnd::Released { reason }
    } else {
        crate::lifecycle::AttemptEnd::Lost { reason }
    };
    Ending {
        task_id,
        lease_token,
        holder: None,
        end,
        started_at_us: None,
        finished_at_us: None,
    }
}

/// The running task behind a current lease, as the stores load it.
/// Keyed by (task id, lease token): the task, its agent and its run.
pub(super) type Current = std::collections::HashMap<
    (i64, i64),
    (crate::lifecycle::RunningTask, Option<i64>, Option<i64>),
>;

/// One attempt ending to write: the decided transition, flattened for a
/// multi-row statement (arrays on PostgreSQL, a JSON array on SQLite).
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct EndRow {
    pub(super) id: i64,
    pub(super) lease_token: i64,
    pub(super) status: &'static str,
    pub(super) attempts_delta: i64,
    pub(super) run_after: Option<i64>,
    pub(super) result: Option<String>,
    pub(super) error: Option<String>,
    pub(super) terminal: bool,
    pub(super) outcome: &'static str,
    pub(super) event: &'static str,
    pub(super) started_at: Option<i64>,
    pub(super) finished_at: Option<i64>,
    pub(super) attempt_error: Option<String>,
    pub(super) agent_id: Option<i64>,
}

/// Decides every ending against the current leases: a stale lease, one
/// held by another agent than the sender, or the same lease twice in one
/// batch changes nothing.
pub(super) fn plan_endings(
    endings: &[Ending],
    current: &Current,
    now_us: i64,
) -> (Completed, Vec<EndRow>) {
    let mut applied = Vec::with_capacity(endings.len());
    let mut rows = Vec::with_capacity(endings.len());
    let mut runs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in endings {
        let key = (e.task_id, e.lease_token);
        match current.get(&key) {
            Some((_, agent, _)) if e.holder.is_some() && *agent != e.holder => {
                applied.push(Applied::NotHolder)
            }
            Some((task, agent, run)) if seen.insert(key) => {
                let t = crate::lifecycle::decide(*task, &e.end, now_us);
                rows.push(EndRow {
                    id: e.task_id,
                    lease_token: e.lease_token,
                    status: t.status.as_str(),
                    attempts_delta: t.attempts_delta,
                    run_after: t.run_after_us,
                    result: t.result,
                    error: t.error,
                    terminal: t.status.is_terminal(),
                    outcome: e.end.outcome(),
                    event: t.event,
                    started_at: e.started_at_us,
                    finished_at: e.finished_at_us,
                    attempt_error: e.end.error(),
                    agent_id: *agent,
                });
                if t.status.is_terminal() {
                    runs.extend(*run);
                }
                applied.push(Applied::Yes(t.status));
            }
            _ => applied.push(Applied::Stale),
        }
    }
    runs.sort_unstable();
    runs.dedup();
    (Completed { applied, runs }, rows)
}

/// The step's output after an approval decision, and the error when a rejection fails the run.
pub(super) fn decided_step(
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
pub(super) struct ActiveRun {
    pub(super) id: i64,
    pub(super) workflow_id: i64,
    pub(super) status: RunStatus,
    pub(super) inputs: String,
    pub(super) started_by: String,
    pub(super) parent_run_id: Option<i64>,
}

/// A run's step states, and each step's current generation.
#[derive(Default)]
pub(super) struct RunSteps {
    pub(super) steps: BTreeMap<String, StepState>,
    pub(super) generations: BTreeMap<String, i64>,
}

/// What the runs of a batch write, gathered while planning them.
#[derive(Default)]
pub(super) struct Writes {
    /// Rows of new tasks (see `step_task_row`).
    pub(super) tasks: Vec<Value>,
    /// Each step's final state, by (run, step).
    pub(super) steps: BTreeMap<(i64, String), StepWrite>,
    pub(super) approvals: Vec<ApprovalWrite>,
    /// Durable waits to open (`store::waits`).
    pub(super) waits: Vec<WaitWrite>,
    /// Child runs that ended, to resolve their parents' steps.
    pub(super) child_ends: Vec<ChildEnd>,
    /// Runs that ended with a step still waiting: their waits (and child
    /// runs) are cancelled. Only these: most runs end with none, and the
    /// look-up would cost each a statement.
    pub(super) ended_waiting: Vec<i64>,
    /// Rows of run updates: id, status, error, terminal.
    pub(super) runs: Vec<Value>,
    /// Runs that ended.
    pub(super) finished: Vec<i64>,
    /// What happened, in the order the plans made it happen (`run_events`).
    pub(super) events: Vec<EventWrite>,
}

pub(super) struct StepWrite {
    pub(super) status: StepStatus,
    pub(super) output: Option<Value>,
    pub(super) error: Option<String>,
    pub(super) item_count: Option<usize>,
}

pub(super) struct ApprovalWrite {
    pub(super) run_id: i64,
    pub(super) step_id: String,
    pub(super) message: String,
    pub(super) approvers: String,
    pub(super) allow_self: bool,
    pub(super) on_timeout: &'static str,
    pub(super) on_reject: &'static str,
    pub(super) expires_at: Option<i64>,
}

impl Writes {
    fn merge(&mut self, other: Writes) {
        self.tasks.extend(other.tasks);
        self.steps.extend(other.steps);
        self.approvals.extend(other.approvals);
        self.waits.extend(other.waits);
        self.child_ends.extend(other.child_ends);
        self.ended_waiting.extend(other.ended_waiting);
        self.runs.extend(other.runs);
        self.finished.extend(other.finished);
        self.events.extend(other.events);
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
pub(super) fn plan_batch(
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
                    approvals_opened: 0,
                    status: Some(run.status),
                    follow_up: Vec::new(),
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
pub(super) fn not_advanced(runs: &[i64], advanced: &[(i64, Advanced)]) -> Vec<i64> {
    runs.iter()
        .copied()
        .filter(|id| advanced.binary_search_by_key(id, |(run, _)| *run).is_err())
        .collect()
}

/// Hangs the runs a write started or must advance again (`(run, next)`
/// pairs from `write_waits`) on the advances that caused them.
pub(super) fn attach_follow_ups(out: &mut [(i64, Advanced)], follow: Vec<(i64, i64)>) {
    for (run, next) in follow {
        if let Ok(i) = out.binary_search_by_key(&run, |(id, _)| *id) {
            out[i].1.follow_up.push(next);
        }
    }
}

/// The rows of the steps' new states, for a multi-row write.
pub(super) fn step_rows(steps: BTreeMap<(i64, String), StepWrite>) -> Vec<Value> {
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
pub(super) fn plan_run(
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
    let step_kind = |id: &str| {
        let step = def.steps.iter().find(|s| s.id() == id);
        StepKind {
            compensation: step.is_some_and(|s| !s.on_failure_of().is_empty()),
            conditional: step.is_some_and(|s| s.when().is_some()),
        }
    };
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
                                let before = steps.get(&step_id).map(|s| s.status);
                                writes.events.extend(step_change(
                                    run_id,
                                    &step_id,
                                    generation,
                                    step_kind(&step_id),
                                    before.unwrap_or(StepStatus::Pending),
                                    StepStatus::Failed,
                                    Some(&error),
                                ));
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
                    let before = steps.get(&step_id).map(|s| s.status);
                    writes.events.extend(step_change(
                        run_id,
                        &step_id,
                        generations.get(&step_id).copied().unwrap_or(0),
                        step_kind(&step_id),
                        before.unwrap_or(StepStatus::Pending),
                        status,
                        error.as_deref(),
                    ));
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
                    advanced.approvals_opened += 1;
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
                Action::Wait { step_id, wait } => {
                    writes.waits.push(WaitWrite {
                        run_id,
                        generation: generations.get(&step_id).copied().unwrap_or(0),
                        step_id,
                        wait,
                        started_by: started_by.to_string(),
                        opened_at_us: now_us,
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
        // The steps it never reached are skipped, as the run page shows them.
        for id in def.step_ids() {
            if steps
                .get(id)
                .is_none_or(|s| s.status == StepStatus::Pending)
            {
                let generation = generations.get(id).copied().unwrap_or(0);
                writes
                    .events
                    .push(never_ran(run_id, id, generation, new_status.as_str()));
            }
        }
        writes.events.push(
            EventWrite::run(run_id, RunEventKind::RunFinished)
                .status(new_status.as_str())
                .detail(error.as_deref()),
        );
        writes.finished.push(run_id);
        if steps.values().any(|s| s.status == StepStatus::Waiting) {
            writes.ended_waiting.push(run_id);
        }
        if let Some(parent) = run.parent_run_id {
            writes
                .child_ends
                .push(ChildEnd::of(run_id, new_status, error.as_deref(), &steps));
            advanced.follow_up.push(parent);
        }
    }
    Ok((advanced, writes))
}

/// The row of one task of a step; its idempotency key makes inserting it
/// again change nothing.
pub(super) fn step_task_row(
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
    let mut spec = TaskSpec::parse(new, &sched.weights, |_| true)
        .map_err(|e| StoreError::Conflict(format!("it makes an invalid task: {e}")))?;
    spec.concurrency = sched.concurrency_of(&spec);
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
        "concurrency_key": spec.concurrency.as_ref().map(|c| &c.0),
        "concurrency_limit": spec.concurrency.as_ref().map(|c| c.1),
    }))
}

/// What an advance loaded, as either backend reads it.
pub(super) struct Loaded {
    /// The runs to advance, in id order.
    pub(super) runs: Vec<super::rows::RunStateRow>,
    /// Definitions by workflow id, when not on the run rows.
    pub(super) defs: Vec<(i64, String)>,
    /// Steps and items of runs not in `runs` are ignored.
    pub(super) steps: Vec<StepRow>,
    /// In run, step and item order.
    pub(super) items: Vec<ItemRow>,
}

/// The one run loader's pure half: turns what a backend loaded into run
/// states and plans them. `ended` are endings of this transaction not yet
/// written: they are laid over their tasks, which is what the database
/// would have returned after writing them. With `skip_failed` (several
/// runs), a run whose plan fails is left out and the others go on.
pub(super) fn plan_loaded(
    sched: &Scheduling,
    now_us: i64,
    loaded: Loaded,
    ended: &[EndRow],
    skip_failed: bool,
) -> Result<(Vec<(i64, Advanced)>, Writes)> {
    let mut runs = Vec::with_capacity(loaded.runs.len());
    let mut texts: HashMap<i64, String> = loaded.defs.into_iter().collect();
    let mut defs: HashMap<i64, Definition> = HashMap::new();
    for r in loaded.runs {
        let status = run_status(&r.status)?;
        if !status.is_terminal() && !defs.contains_key(&r.workflow_id) {
            if let Some(text) = r.definition.or_else(|| texts.remove(&r.workflow_id)) {
                defs.insert(r.workflow_id, serde_json::from_str(&text)?);
            }
        }
        runs.push(ActiveRun {
            id: r.id,
            workflow_id: r.workflow_id,
            status,
            inputs: r.inputs,
            started_by: r.started_by,
            parent_run_id: r.parent_run_id,
        });
    }
    let wanted: HashMap<i64, ()> = runs.iter().map(|r| (r.id, ())).collect();
    let mut steps: HashMap<i64, RunSteps> = HashMap::with_capacity(runs.len());
    for s in loaded.steps {
        if !wanted.contains_key(&s.run_id) {
            continue;
        }
        let run = steps.entry(s.run_id).or_default();
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
    let ended: HashMap<i64, &EndRow> = ended.iter().map(|e| (e.id, e)).collect();
    for item in loaded.items {
        let Some(state) = steps
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
            task_status: super::rows::task_status(status)?,
            output: json_opt(output)?,
            error,
        });
    }
    plan_batch(sched, now_us, runs, &defs, steps, skip_failed)
}
