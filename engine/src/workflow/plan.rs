//! The planner: given a run's definition, inputs and the state of its
//! steps, what happens next. Pure and idempotent — planning the same state
//! twice asks for nothing twice, because tasks already created are in the
//! state — so the store may plan after every change.

use std::collections::BTreeMap;

use drover_protocol::api::{NewTask, TaskStatus};
use drover_protocol::workflow::{Approvers, RunStatus};
use serde_json::{json, Map, Value};

use super::definition::{
    ApprovalStep, Definition, OnReject, OnTimeout, OnWaitTimeout, Step, TaskStep, WaitStep,
    WorkflowStep,
};
use super::template;
use drover_protocol::limits::MAX_APPROVAL_TIMEOUT_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Pending,
    Running,
    WaitingApproval,
    /// A wait step sleeping or waiting for its event, or a workflow step
    /// whose run has not ended: the store resumes it.
    Waiting,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl StepStatus {
    const ALL: [StepStatus; 8] = [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::WaitingApproval,
        StepStatus::Waiting,
        StepStatus::Succeeded,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::WaitingApproval => "waiting_approval",
            StepStatus::Waiting => "waiting",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded
                | StepStatus::Failed
                | StepStatus::Skipped
                | StepStatus::Cancelled
        )
    }

    /// Done in a way that lets dependents start.
    fn satisfies(self) -> bool {
        matches!(self, StepStatus::Succeeded | StepStatus::Skipped)
    }
}

/// One task of a step (one per `for_each` item).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemState {
    pub index: usize,
    pub task_status: TaskStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepState {
    pub status: StepStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    /// The step's tasks of its current generation.
    pub items: Vec<ItemState>,
    /// For `for_each`: the list's length once known.
    pub item_count: Option<usize>,
}

impl Default for StepState {
    fn default() -> Self {
        Self {
            status: StepStatus::Pending,
            output: None,
            error: None,
            items: Vec::new(),
            item_count: None,
        }
    }
}

pub struct RunView<'a> {
    pub run_id: i64,
    pub def: &'a Definition,
    pub inputs: &'a Map<String, Value>,
    pub started_by: &'a str,
    pub steps: &'a BTreeMap<String, StepState>,
    /// Most items a `for_each` step may have; a longer list fails the run.
    pub max_items: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create these tasks (item index, task) for the step.
    CreateTasks {
        step_id: String,
        items: Vec<(usize, NewTask)>,
    },
    SetStep {
        step_id: String,
        status: StepStatus,
        output: Option<Value>,
        error: Option<String>,
        item_count: Option<usize>,
    },
    RequestApproval {
        step_id: String,
        message: String,
        approvers: Approvers,
        timeout_ms: Option<i64>,
        allow_self_approval: bool,
        on_timeout_approve: bool,
        on_reject_continue: bool,
    },
    /// Open a durable wait for the step (its status is set `waiting`).
    Wait { step_id: String, wait: WaitRequest },
    FinishRun {
        status: RunStatus,
        error: Option<String>,
    },
}

/// What a waiting step waits for; the store keeps it as a row and resumes
/// the step when it comes.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitRequest {
    /// Wake at `until_us`, or `duration_ms` after the wait opens.
    Sleep {
        until_us: Option<i64>,
        duration_ms: Option<i64>,
    },
    /// An event with this correlation key; after `timeout_ms` the step
    /// fails, or succeeds with `{"timed_out": true}` when `continue_on_timeout`.
    Event {
        key: String,
        timeout_ms: Option<i64>,
        continue_on_timeout: bool,
    },
    /// A run of another workflow (its latest version when `None`).
    Workflow {
        workflow: String,
        version: Option<i64>,
        inputs: Map<String, Value>,
    },
}

/// The template context: inputs, finished steps' outputs and statuses, the run.
fn context(view: &RunView) -> template::Context {
    let mut steps = Map::new();
    for (id, s) in view.steps {
        steps.insert(
            id.clone(),
            json!({ "output": s.output, "status": s.status.as_str(), "error": s.error }),
        );
    }
    template::context(
        &json!({ "inputs": view.inputs, "steps": steps, "run": { "id": view.run_id, "started_by": view.started_by } }),
    )
}

fn fail(step_id: &str, error: String) -> Vec<Action> {
    vec![
        Action::SetStep {
            step_id: step_id.to_string(),
            status: StepStatus::Failed,
            output: None,
            error: Some(error.clone()),
            item_count: None,
        },
        Action::FinishRun {
            status: RunStatus::Failed,
            error: Some(format!("step {step_id:?} failed: {error}")),
        },
    ]
}

/// The task a step makes: its own settings, else the definition's defaults.
pub(super) fn new_task(
    def: &Definition,
    step: &TaskStep,
    payload: Value,
    key: Option<String>,
) -> NewTask {
    let d = &def.defaults;
    let limit = step
        .concurrency
        .as_ref()
        .or(d.concurrency.as_ref())
        .map(|c| c.limit);
    NewTask {
        task_type: step.task_type.clone(),
        payload,
        urgency: step.urgency.or(d.urgency),
        time_sensitivity: step.time_sensitivity.or(d.time_sensitivity),
        importance: step.importance.or(d.importance),
        max_attempts: step.max_attempts.or(d.max_attempts),
        timeout_ms: step.timeout_ms.or(d.timeout_ms),
        retry_backoff_ms: step.retry_backoff_ms.or(d.retry_backoff_ms),
        required_labels: if step.required_labels.is_empty() {
            d.required_labels.clone()
        } else {
            step.required_labels.clone()
        },
        idempotency_key: None,
        run_after_us: None,
        concurrency_limit: key.as_ref().and(limit),
        concurrency_key: key,
    }
}

/// The concurrency key a step's task takes, rendered (its own, else the
/// definition's default).
fn concurrency_key(
    def: &Definition,
    step: &TaskStep,
    ctx: &template::Context,
) -> Result<Option<String>, String> {
    match step
        .concurrency
        .as_ref()
        .or(def.defaults.concurrency.as_ref())
    {
        None => Ok(None),
        Some(c) if !c.key.contains("{{") && !c.key.contains("{%") => Ok(Some(c.key.clone())),
        Some(c) => template::render_text(&c.key, ctx).map(Some),
    }
}

/// The items of a `for_each` step (evaluated again whenever needed: its
/// inputs are finished upstream outputs, so the list does not change), at
/// most `max`.
fn for_each_items(expr: &str, ctx: &template::Context, max: usize) -> Result<Vec<Value>, String> {
    template::eval_list(expr, ctx, max)
}

/// Creates the next items of a task step, up to `max_parallel` unfinished.
fn next_items<'a>(
    def: &Definition,
    step: &TaskStep,
    state: &StepState,
    max_items: usize,
    ctx: impl Fn() -> &'a template::Context,
) -> Result<Vec<(usize, NewTask)>, String> {
    let created = state.items.len();
    let unfinished = state
        .items
        .iter()
        .filter(|i| !i.task_status.is_terminal())
        .count();
    let limit = step
        .max_parallel
        .unwrap_or(usize::MAX)
        .saturating_sub(unfinished);
    match &step.for_each {
        None if created == 0 => {
            let payload = if template::has_templates(&step.payload) {
                template::render(&step.payload, ctx())?
            } else {
                step.payload.clone()
            };
            let key = match step
                .concurrency
                .as_ref()
                .or(def.defaults.concurrency.as_ref())
            {
                None => None,
                Some(_) => concurrency_key(def, step, ctx())?,
            };
            Ok(vec![(0, new_task(def, step, payload, key))])
        }
        None => Ok(vec![]),
        Some(expr) => {
            let ctx = ctx();
            let items = for_each_items(expr, ctx, max_items)?;
            let mut out = Vec::new();
            for (index, item) in items.iter().enumerate().skip(created).take(limit) {
                let item_ctx = template::with_item(ctx, item, index);
                let payload = template::render(&step.payload, &item_ctx)?;
                let key = concurrency_key(def, step, &item_ctx)?;
                out.push((index, new_task(def, step, payload, key)));
            }
            Ok(out)
        }
    }
}

/// What to do next. See the module docs.
pub fn plan(view: &RunView) -> Vec<Action> {
    // Built on first use: it copies every finished step's output, and most
    // plans (a step finished, the next has a payload without templates)
    // never read it.
    let built = std::cell::OnceCell::new();
    let ctx = || built.get_or_init(|| context(view));
    let default = StepState::default();
    let state_of = |id: &str| view.steps.get(id).unwrap_or(&default);
    let mut actions = Vec::new();
    for step in &view.def.steps {
        let id = step.id();
        let state = state_of(id);
        match state.status {
            StepStatus::Pending => {
                let watched = step.on_failure_of();
                if !watched.is_empty() {
                    // A compensation step: runs once a watched step failed,
                    // is skipped once they all finished without failing.
                    let failed = watched
                        .iter()
                        .any(|w| state_of(w).status == StepStatus::Failed);
                    if watched.iter().all(|w| state_of(w).status.satisfies()) {
                        actions.push(Action::SetStep {
                            step_id: id.into(),
                            status: StepStatus::Skipped,
                            output: None,
                            error: None,
                            item_count: None,
                        });
                        continue;
                    }
                    if !failed {
                        continue;
                    }
                } else if !step
                    .depends_on()
                    .iter()
                    .all(|d| state_of(d).status.satisfies())
                {
                    continue;
                }
                if let Some(when) = step.when() {
                    match template::truthy(when, ctx()) {
                        Ok(true) => {}
                        Ok(false) => {
                            actions.push(Action::SetStep {
                                step_id: id.into(),
                                status: StepStatus::Skipped,
                                output: None,
                                error: None,
                                item_count: None,
                            });
                            continue;
                        }
                        Err(e) => return fail(id, format!("when: {e}")),
                    }
                }
                match step {
                    Step::Task(t) => {
                        let item_count = match &t.for_each {
                            Some(expr) => match for_each_items(expr, ctx(), view.max_items) {
                                Ok(items) if items.is_empty() => {
                                    actions.push(Action::SetStep {
                                        step_id: id.into(),
                                        status: StepStatus::Succeeded,
                                        output: Some(json!([])),
                                        error: None,
                                        item_count: Some(0),
                                    });
                                    continue;
                                }
                                Ok(items) => Some(items.len()),
                                Err(e) => return fail(id, e),
                            },
                            None => None,
                        };
                        match next_items(view.def, t, state, view.max_items, ctx) {
                            Ok(items) => {
                                actions.push(Action::SetStep {
                                    step_id: id.into(),
                                    status: StepStatus::Running,
                                    output: None,
                                    error: None,
                                    item_count,
                                });
                                actions.push(Action::CreateTasks {
                                    step_id: id.into(),
                                    items,
                                });
                            }
                            Err(e) => return fail(id, e),
                        }
                    }
                    Step::Wait(w) => match wait_request(w, ctx()) {
                        Ok(wait) => actions.extend(waiting(id, wait)),
                        Err(e) => return fail(id, e),
                    },
                    Step::Workflow(w) => match workflow_request(w, ctx()) {
                        Ok(wait) => actions.extend(waiting(id, wait)),
                        Err(e) => return fail(id, e),
                    },
                    Step::Approval(a) => match approval_request(a, ctx()) {
                        Ok(request) => {
                            actions.push(Action::SetStep {
                                step_id: id.into(),
                                status: StepStatus::WaitingApproval,
                                output: None,
                                error: None,
                                item_count: None,
                            });
                            actions.push(request);
                        }
                        Err(e) => return fail(id, e),
                    },
                }
            }
            StepStatus::Running => {
                let Step::Task(t) = step else { continue };
                if let Some(bad) = state
                    .items
                    .iter()
                    .find(|i| matches!(i.task_status, TaskStatus::Failed | TaskStatus::Cancelled))
                {
                    let error = bad.error.clone().unwrap_or_else(|| {
                        format!("task {} was {}", bad.index, bad.task_status.as_str())
                    });
                    if compensated(view.def, id) {
                        // Its compensation steps run before the run ends.
                        actions.push(Action::SetStep {
                            step_id: id.into(),
                            status: StepStatus::Failed,
                            output: None,
                            error: Some(error),
                            item_count: state.item_count,
                        });
                        continue;
                    }
                    return fail(id, error);
                }
                let expected = state.item_count.unwrap_or(1);
                let done = state
                    .items
                    .iter()
                    .filter(|i| i.task_status == TaskStatus::Succeeded)
                    .count();
                if done == expected && state.items.len() == expected {
                    let mut items: Vec<&ItemState> = state.items.iter().collect();
                    items.sort_by_key(|i| i.index);
                    let output = if t.for_each.is_some() {
                        Value::Array(
                            items
                                .iter()
                                .map(|i| i.output.clone().unwrap_or(Value::Null))
                                .collect(),
                        )
                    } else {
                        items
                            .first()
                            .and_then(|i| i.output.clone())
                            .unwrap_or(Value::Null)
                    };
                    actions.push(Action::SetStep {
                        step_id: id.into(),
                        status: StepStatus::Succeeded,
                        output: Some(output),
                        error: None,
                        item_count: state.item_count,
                    });
                } else if t.for_each.is_some() && state.items.len() < expected {
                    match next_items(view.def, t, state, view.max_items, ctx) {
                        Ok(items) if !items.is_empty() => actions.push(Action::CreateTasks {
                            step_id: id.into(),
                            items,
                        }),
                        Ok(_) => {}
                        Err(e) => return fail(id, e),
                    }
                }
            }
            StepStatus::Failed => {
                let compensating = view.def.steps.iter().any(|s| {
                    s.on_failure_of().iter().any(|w| w == id)
                        && !state_of(s.id()).status.is_terminal()
                });
                if compensating {
                    continue;
                }
                let error = state.error.clone().unwrap_or_else(|| "failed".into());
                return vec![Action::FinishRun {
                    status: RunStatus::Failed,
                    error: Some(format!("step {id:?} failed: {error}")),
                }];
            }
            StepStatus::WaitingApproval
            | StepStatus::Waiting
            | StepStatus::Succeeded
            | StepStatus::Skipped
            | StepStatus::Cancelled => {}
        }
    }
    if actions.is_empty()
        && view
            .def
            .steps
            .iter()
            .all(|s| state_of(s.id()).status.satisfies())
    {
        actions.push(Action::FinishRun {
            status: RunStatus::Succeeded,
            error: None,
        });
    }
    actions
}

/// Whether some compensation step handles this step's failure.
fn compensated(def: &Definition, id: &str) -> bool {
    def.steps
        .iter()
        .any(|s| s.on_failure_of().iter().any(|w| w == id))
}

/// The two actions of a step that starts waiting.
fn waiting(step_id: &str, wait: WaitRequest) -> [Action; 2] {
    [
        Action::SetStep {
            step_id: step_id.into(),
            status: StepStatus::Waiting,
            output: None,
            error: None,
            item_count: None,
        },
        Action::Wait {
            step_id: step_id.into(),
            wait,
        },
    ]
}

fn wait_request(w: &WaitStep, ctx: &template::Context) -> Result<WaitRequest, String> {
    if let Some(e) = &w.event {
        let key = template::render_text(&e.key, ctx)?;
        crate::domain::check_event_key(&key).map_err(|why| format!("event key {key:?}: {why}"))?;
        return Ok(WaitRequest::Event {
            key,
            timeout_ms: e
                .timeout_ms
                .map(|t| t.clamp(1, drover_protocol::limits::MAX_WAIT_MS)),
            continue_on_timeout: e.on_timeout == OnWaitTimeout::Continue,
        });
    }
    if let Some(until) = &w.until {
        let text = template::render_text(until, ctx)?;
        let at = chrono::DateTime::parse_from_rfc3339(text.trim())
            .map_err(|e| format!("until {text:?} is not an RFC 3339 time: {e}"))?;
        let until_us = at
            .timestamp_micros()
            .clamp(0, drover_protocol::limits::MAX_TIMESTAMP_US);
        return Ok(WaitRequest::Sleep {
            until_us: Some(until_us),
            duration_ms: None,
        });
    }
    Ok(WaitRequest::Sleep {
        until_us: None,
        duration_ms: Some(
            w.duration_ms
                .unwrap_or(1)
                .clamp(1, drover_protocol::limits::MAX_WAIT_MS),
        ),
    })
}

fn workflow_request(w: &WorkflowStep, ctx: &template::Context) -> Result<WaitRequest, String> {
    let mut inputs = Map::new();
    for (name, value) in &w.inputs {
        let value = if template::has_templates(value) {
            template::render(value, ctx)?
        } else {
            value.clone()
        };
        inputs.insert(name.clone(), value);
    }
    Ok(WaitRequest::Workflow {
        workflow: w.workflow.clone(),
        version: w.version,
        inputs,
    })
}

fn approval_request(a: &ApprovalStep, ctx: &template::Context) -> Result<Action, String> {
    Ok(Action::RequestApproval {
        step_id: a.id.clone(),
        message: template::render_text(&a.message, ctx)?,
        approvers: (&a.approvers).into(),
        // Upload refuses longer ones; a definition stored before that rule
        // is held to it here, so the deadline cannot overflow.
        timeout_ms: a.timeout_ms.map(|t| t.clamp(1, MAX_APPROVAL_TIMEOUT_MS)),
        allow_self_approval: a.allow_self_approval,
        on_timeout_approve: a.on_timeout == OnTimeout::Approve,
        on_reject_continue: a.on_reject == OnReject::Continue,
    })
}

/// The run's status from its steps (when the planner did not end it).
pub fn run_status(view: &RunView) -> RunStatus {
    let statuses: Vec<StepStatus> = view
        .def
        .steps
        .iter()
        .map(|s| {
            view.steps
                .get(s.id())
                .map(|x| x.status)
                .unwrap_or(StepStatus::Pending)
        })
        .collect();
    let active = |s: &StepStatus| matches!(s, StepStatus::Running | StepStatus::Waiting);
    if statuses.contains(&StepStatus::Failed) && !statuses.iter().any(active) {
        RunStatus::Failed
    } else if statuses.iter().all(|s| s.satisfies()) {
        RunStatus::Succeeded
    } else if statuses.contains(&StepStatus::WaitingApproval) && !statuses.iter().any(active) {
        RunStatus::WaitingApproval
    } else {
        RunStatus::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::parse_definition;
    use drover_protocol::limits::DEFAULT_MAX_FOR_EACH_ITEMS;

    struct Sim {
        def: Definition,
        inputs: Map<String, Value>,
        steps: BTreeMap<String, StepState>,
        max_items: usize,
    }

    impl Sim {
        fn new(yaml: &str, inputs: Value) -> Self {
            Self {
                def: parse_definition(yaml).unwrap(),
                inputs: inputs.as_object().unwrap().clone(),
                steps: BTreeMap::new(),
                max_items: DEFAULT_MAX_FOR_EACH_ITEMS,
            }
        }

        /// Plans once and applies the actions the way the store does.
        fn step(&mut self) -> Vec<Action> {
            let actions = plan(&RunView {
                run_id: 1,
                def: &self.def,
                inputs: &self.inputs,
                started_by: "u",
                steps: &self.steps,
                max_items: self.max_items,
            });
            for a in &actions {
                match a {
                    Action::CreateTasks { step_id, items } => {
                        let s = self.steps.entry(step_id.clone()).or_default();
                        for (index, _) in items {
                            s.items.push(ItemState {
                                index: *index,
                                task_status: TaskStatus::Queued,
                                output: None,
                                error: None,
                            });
                        }
                    }
                    Action::SetStep {
                        step_id,
                        status,
                        output,
                        error,
                        item_count,
                    } => {
                        let s = self.steps.entry(step_id.clone()).or_default();
                        s.status = *status;
                        s.output = output.clone();
                        s.error = error.clone();
                        if item_count.is_some() {
                            s.item_count = *item_count;
                        }
                    }
                    _ => {}
                }
            }
            actions
        }

        fn finish(&mut self, step: &str, index: usize, status: TaskStatus, output: Value) {
            let item = self
                .steps
                .get_mut(step)
                .unwrap()
                .items
                .iter_mut()
                .find(|i| i.index == index)
                .unwrap();
            item.task_status = status;
            item.output = Some(output);
            item.error = (status == TaskStatus::Failed).then(|| "boom".into());
        }
    }

    const PURCHASE: &str = "name: p\ninputs:\n  amount: { type: number, required: true }\nsteps:\n  - id: request\n    type: task\n    task_type: echo\n    payload: { amount: \"{{ inputs.amount }}\" }\n  - id: manager\n    type: approval\n    depends_on: [request]\n    when: \"inputs.amount > 1000\"\n    approvers: { roles: [approver] }\n    message: \"Approve {{ inputs.amount }}?\"\n  - id: finance\n    type: task\n    depends_on: [manager]\n    task_type: echo\n    payload: \"{{ steps.request.output }}\"\n";

    #[test]
    fn skipped_steps_satisfy_their_dependents_and_outputs_flow() {
        let mut sim = Sim::new(PURCHASE, json!({"amount": 10}));
        let a = sim.step();
        assert!(
            matches!(&a[1], Action::CreateTasks { items, .. } if items[0].1.payload == json!({"amount": 10}))
        );
        assert!(sim.step().is_empty(), "nothing twice");
        sim.finish("request", 0, TaskStatus::Succeeded, json!({"amount": 10}));
        sim.step(); // request succeeded
        let a = sim.step(); // manager skipped, finance may not start in the same pass
        assert!(a.iter().any(|x| matches!(x, Action::SetStep { step_id, status: StepStatus::Skipped, .. } if step_id == "manager")));
        let a = sim.step();
        assert!(
            matches!(&a[1], Action::CreateTasks { step_id, items } if step_id == "finance" && items[0].1.payload == json!({"amount": 10}))
        );
        sim.finish("finance", 0, TaskStatus::Succeeded, json!("ok"));
        sim.step();
        assert_eq!(
            sim.step(),
            vec![Action::FinishRun {
                status: RunStatus::Succeeded,
                error: None
            }]
        );
    }

    #[test]
    fn approvals_are_requested_with_the_rendered_message() {
        let mut sim = Sim::new(PURCHASE, json!({"amount": 5000}));
        sim.step();
        sim.finish("request", 0, TaskStatus::Succeeded, json!({}));
        sim.step();
        let a = sim.step();
        assert!(a.iter().any(
            |x| matches!(x, Action::RequestApproval { message, .. } if message == "Approve 5000?")
        ));
        assert_eq!(
            run_status(&RunView {
                run_id: 1,
                def: &sim.def,
                inputs: &sim.inputs,
                started_by: "u",
                steps: &sim.steps,
                max_items: DEFAULT_MAX_FOR_EACH_ITEMS,
            }),
            RunStatus::WaitingApproval
        );
        assert!(sim.step().is_empty());
    }

    #[test]
    fn for_each_respects_max_parallel_and_gathers_in_order() {
        let yaml = "name: f\nsteps:\n  - id: list\n    type: task\n    task_type: echo\n  - id: each\n    type: task\n    depends_on: [list]\n    task_type: echo\n    for_each: \"steps.list.output\"\n    max_parallel: 2\n    payload: { x: \"{{ item }}\", i: \"{{ index }}\" }\n";
        let mut sim = Sim::new(yaml, json!({}));
        sim.step();
        sim.finish("list", 0, TaskStatus::Succeeded, json!(["a", "b", "c"]));
        sim.step();
        let a = sim.step();
        assert!(
            matches!(&a[1], Action::CreateTasks { items, .. } if items.len() == 2 && items[1].1.payload == json!({"x": "b", "i": 1}))
        );
        assert!(sim.step().is_empty(), "two unfinished: no third yet");
        sim.finish("each", 1, TaskStatus::Succeeded, json!("B"));
        let a = sim.step();
        assert!(
            matches!(&a[0], Action::CreateTasks { items, .. } if items.len() == 1 && items[0].0 == 2)
        );
        sim.finish("each", 2, TaskStatus::Succeeded, json!("C"));
        sim.finish("each", 0, TaskStatus::Succeeded, json!("A"));
        let a = sim.step();
        assert!(a.iter().any(
            |x| matches!(x, Action::SetStep { output: Some(o), .. } if *o == json!(["A", "B", "C"]))
        ));
    }

    #[test]
    fn a_compensation_step_runs_when_a_watched_step_fails_then_the_run_fails() {
        let yaml = "name: o\nsteps:\n  - id: charge\n    type: task\n    task_type: pay\n  - id: ship\n    type: task\n    depends_on: [charge]\n    task_type: ship\n  - id: refund\n    type: task\n    task_type: refund\n    on_failure_of: [charge, ship]\n";
        let mut sim = Sim::new(yaml, json!({}));
        sim.step();
        sim.finish("charge", 0, TaskStatus::Failed, json!(null));
        let a = sim.step();
        assert!(
            !a.iter().any(|x| matches!(x, Action::FinishRun { .. })),
            "waits for the compensation: {a:?}"
        );
        let a = sim.step();
        assert!(
            a.iter()
                .any(|x| matches!(x, Action::CreateTasks { step_id, .. } if step_id == "refund")),
            "{a:?}"
        );
        assert!(sim.step().is_empty());
        sim.finish("refund", 0, TaskStatus::Succeeded, json!("refunded"));
        sim.step();
        let a = sim.step();
        assert!(
            matches!(a.last(), Some(Action::FinishRun { status: RunStatus::Failed, error: Some(e) }) if e.contains("charge")),
            "{a:?}"
        );

        // When nothing fails, the compensation is skipped and the run succeeds.
        let mut sim = Sim::new(yaml, json!({}));
        sim.step();
        sim.finish("charge", 0, TaskStatus::Succeeded, json!(1));
        sim.step();
        sim.step();
        sim.finish("ship", 0, TaskStatus::Succeeded, json!(2));
        for _ in 0..3 {
            sim.step();
        }
        assert_eq!(sim.steps["refund"].status, StepStatus::Skipped);
        assert_eq!(
            sim.step(),
            vec![Action::FinishRun {
                status: RunStatus::Succeeded,
                error: None
            }]
        );
    }

    #[test]
    fn a_failed_task_fails_the_step_and_the_run() {
        let mut sim = Sim::new(PURCHASE, json!({"amount": 1}));
        sim.step();
        sim.finish("request", 0, TaskStatus::Failed, json!(null));
        let a = sim.step();
        assert!(
            matches!(a.last(), Some(Action::FinishRun { status: RunStatus::Failed, error: Some(e) }) if e.contains("boom"))
        );
    }

    #[test]
    fn a_for_each_over_the_cap_fails_the_run_with_the_reason() {
        let yaml = "name: f\nsteps:\n  - id: list\n    type: task\n    task_type: echo\n  - id: each\n    type: task\n    depends_on: [list]\n    task_type: echo\n    for_each: \"steps.list.output\"\n    payload: \"{{ item }}\"\n";
        let mut sim = Sim::new(yaml, json!({}));
        sim.step();
        let million: Vec<u32> = (0..1_000_000).collect();
        sim.finish("list", 0, TaskStatus::Succeeded, json!(million));
        sim.step();
        let a = sim.step();
        assert!(
            matches!(a.last(), Some(Action::FinishRun { status: RunStatus::Failed, error: Some(e) }) if e.contains("more than 10000 items")),
            "{a:?}"
        );
        assert!(!a.iter().any(|x| matches!(x, Action::CreateTasks { .. })));

        // The cap is the server's to set.
        let mut sim = Sim::new(yaml, json!({}));
        sim.max_items = 2;
        sim.step();
        sim.finish("list", 0, TaskStatus::Succeeded, json!([1, 2, 3]));
        sim.step();
        let a = sim.step();
        assert!(
            matches!(a.last(), Some(Action::FinishRun { status: RunStatus::Failed, error: Some(e) }) if e.contains("more than 2 items")),
            "{a:?}"
        );
    }

    #[test]
    fn a_runaway_template_fails_the_run_with_a_limit_error() {
        let yaml = "name: t\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    payload: \"{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}\"\n";
        let started = std::time::Instant::now();
        let mut sim = Sim::new(yaml, json!({}));
        let a = sim.step();
        assert!(
            matches!(a.last(), Some(Action::FinishRun { status: RunStatus::Failed, error: Some(e) }) if e.contains("fuel") || e.contains("larger than")),
            "{a:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn an_approval_timeout_from_an_old_definition_is_clamped() {
        let yaml = "name: a\nsteps:\n  - id: ok\n    type: approval\n    approvers: { roles: [approver] }\n    message: hi\n";
        let mut sim = Sim::new(yaml, json!({}));
        if let Step::Approval(a) = &mut sim.def.steps[0] {
            a.timeout_ms = Some(i64::MAX);
        }
        let a = sim.step();
        assert!(
            a.iter().any(|x| matches!(x, Action::RequestApproval { timeout_ms: Some(t), .. } if *t == MAX_APPROVAL_TIMEOUT_MS)),
            "{a:?}"
        );
    }
}
