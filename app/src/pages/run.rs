//! One run: its DAG drawn live (compensation steps in a lane of their
//! own), each step's details (a waiting step's wait in words, its history),
//! approvals, a Gantt chart of its steps and their task attempts, its
//! timeline as the run's events tell it, and the buttons to cancel the
//! run, retry a step, decide an approval, or send the event a step waits
//! for. The selected step is in the URL (`/runs/42?step=charge`), so a
//! reload or a shared link opens it.

use drover_protocol::api::TaskDetail;
use drover_protocol::workflow::{
    ApprovalList, ApprovalView, EventDelivered, RunDetail, RunEvent, RunEventKind, StepView,
    WorkflowVersion,
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::NavigateOptions;

use crate::api::{self, enc, ApiFailure, ApiResult};
use crate::components::{
    can_operate, my_name, outcome_view, session, started_by_view, use_me, Badge, ConfirmButton,
    ErrorBox, Loading,
};
use crate::dag::{edge_path, layout, steps_of, DagStep, WaitDef, NODE_H, NODE_W, PAD};
use crate::format::{count, duration_us, json, local, rfc3339, until, utc};
use crate::gantt::{self, Chart, What};
use crate::live::{use_live, Topic};
use crate::log_view::TaskLog;
use crate::pages::approvals::ApprovalCard;
use crate::pages::tasks::{agent_names, AttemptsTable};
use crate::pages::{route_id, subject, Missing, NotAnId};
use crate::waits::{describe, resumed_sentence, shell_word, Piece};

/// The workflow version a run started with. It never changes, so it is
/// loaded once per run, not on every live refresh of the run.
async fn load_definition(id: i64) -> ApiResult<String> {
    let run: RunDetail = api::parse(api::fetch(&format!("/runs/{id}")).await)?;
    api::fetch(&format!(
        "/workflows/{}/versions/{}",
        enc(&run.run.workflow),
        run.run.version
    ))
    .await
}

#[derive(Clone, Copy)]
struct RunCtx {
    /// The step whose details show: the URL's `?step=`, once in the browser.
    selected: RwSignal<Option<String>>,
    /// The step last clicked (or chosen with the keyboard): the page goes
    /// to its URL.
    pick: RwSignal<Option<String>>,
    act: Action<RunOp, ApiResult<String>>,
    /// The button whose confirmation is showing: `cancel-run`, or
    /// `retry:<step>`. Kept here so the run's live refreshes keep it.
    armed: RwSignal<Option<String>>,
    /// The approval whose rejection is being confirmed.
    rejecting: RwSignal<Option<i64>>,
}

/// Sends an event (`key`, JSON `data` as typed) and says what it resumed.
async fn send_event(key: String, data: String) -> ApiResult<String> {
    let data: serde_json::Value = serde_json::from_str(data.trim()).map_err(|e| ApiFailure {
        status: 0,
        message: format!("The data is not JSON: {e}"),
        field: Some("data".into()),
        errors: Vec::new(),
    })?;
    let answer: EventDelivered =
        api::post("/events", &serde_json::json!({ "key": key, "data": data })).await?;
    Ok(resumed_sentence(&key, &answer))
}

type SendEvent = Action<(String, String), ApiResult<String>>;

#[derive(Clone)]
enum RunOp {
    Cancel,
    Retry(String),
    Decide {
        id: i64,
        approve: bool,
        comment: String,
    },
}

#[component]
pub fn RunPage() -> impl IntoView {
    let id = route_id();
    view! {
        <Show
            when=move || id.get().is_some()
            fallback=|| view! { <Title text="Not a run id"/> <NotAnId what="run" list="/runs"/> }
        >
            <RunShown run_id=Signal::derive(move || id.get().unwrap_or_default())/>
        </Show>
    }
}

/// The page of a run whose id is a number (it may still not exist).
#[component]
fn RunShown(run_id: Signal<i64>) -> impl IntoView {
    let live = use_live();
    let me = use_me();
    let query = use_query_map();
    let id = move || run_id.get();
    // Blocking: a run that does not exist makes the page a 404.
    let run = Resource::new_blocking(
        move || (live.watch(Topic::Runs), live.watch(Topic::Tasks), id()),
        |(_, _, id)| subject(format!("/runs/{id}")),
    );
    let definition = Resource::new(id, load_definition);
    // Approvals have their own resource, refreshed only by approval events,
    // so a comment being typed survives the run's other updates.
    let approvals = Resource::new(
        move || (live.watch(Topic::Approvals), id()),
        |(_, id)| async move {
            let run = api::fetch(&format!("/runs/{id}")).await?;
            let inbox = api::fetch("/approvals?status=pending")
                .await
                .unwrap_or_else(|_| r#"{"approvals":[]}"#.into());
            Ok(format!("[{run},{inbox}]"))
        },
    );
    let act = Action::new(move |op: &RunOp| {
        let (op, id) = (op.clone(), id());
        async move {
            match op {
                RunOp::Cancel => api::post::<serde_json::Value>(
                    &format!("/runs/{id}/cancel"),
                    &serde_json::json!({}),
                )
                .await
                .map(|_| "Run cancelled; its running tasks are being stopped.".to_string()),
                RunOp::Retry(step) => api::post::<serde_json::Value>(
                    &format!("/runs/{id}/steps/{}/retry", enc(&step)),
                    &serde_json::json!({}),
                )
                .await
                .map(|_| format!("Step {step} is running again.")),
                RunOp::Decide {
                    id: approval,
                    approve,
                    comment,
                } => crate::pages::approvals::decide(approval, approve, comment)
                    .await
                    .map(|_| {
                        if approve {
                            "Approved.".to_string()
                        } else {
                            "Rejected.".to_string()
                        }
                    }),
            }
        }
    });
    Effect::new(move |_| {
        if act.value().get().is_some() {
            run.refetch();
            approvals.refetch();
        }
    });
    let ctx = RunCtx {
        selected: RwSignal::new(None),
        pick: RwSignal::new(None),
        act,
        armed: RwSignal::new(None),
        rejecting: RwSignal::new(None),
    };
    // The selection is the URL's `?step=ID` (a task page links its step
    // so; another run's page starts with none), applied once in the
    // browser: the server renders none selected.
    Effect::new(move |_| {
        id();
        let step = query.with(|q| q.get("step"));
        // A click selected it already: the panel is not drawn twice.
        if ctx.selected.get_untracked() != step {
            ctx.selected.set(step);
        }
    });
    // Picking a step puts it in the URL (in place of the last one), so
    // that a reload or a shared link opens it.
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(step) = ctx.pick.get() {
            let to = format!("/runs/{}?step={}", run_id.get_untracked(), enc(&step));
            let options = NavigateOptions {
                replace: true,
                scroll: false,
                ..Default::default()
            };
            navigate(&to, options);
        }
    });
    let send: SendEvent =
        Action::new(|(key, data): &(String, String)| send_event(key.clone(), data.clone()));
    Effect::new(move |_| {
        if let Some(Ok(_)) = send.value().get() {
            run.refetch();
        }
    });
    // A new selection forgets the answer to the last event sent.
    Effect::new(move |_| {
        ctx.selected.track();
        send.value().set(None);
    });
    // The key the selected step waits for, when an operator may send it.
    // The form sits outside the run's transition and depends on this memo
    // only, so live refreshes of the run do not wipe the data being typed.
    // Nothing is selected while the server renders, so it reads the run
    // only in the browser.
    let waiting_event = Memo::new(move |_| {
        let selected = ctx.selected.get()?;
        if !can_operate(&me.get().and_then(session)) {
            return None;
        }
        let run = api::parse::<RunDetail>(run.get()?).ok()?;
        let wait = run
            .steps
            .into_iter()
            .find(|s| s.step_id == selected)?
            .wait?;
        (wait.kind == "event" && wait.status == "waiting")
            .then_some(wait.event_key)
            .flatten()
    });
    let event_card = Memo::new(move |_| {
        waiting_event.with(Option::is_some) || send.value().with(Option::is_some)
    });
    // The selected step's task, when it runs one (a for-each step's tasks
    // each have their log on their own page): its latest.
    let step_log = Memo::new(move |_| {
        let step_id = ctx.selected.get()?;
        let run = api::parse::<RunDetail>(run.get()?).ok()?;
        let step = run.steps.into_iter().find(|s| s.step_id == step_id)?;
        if step.item_count.is_some() {
            return None;
        }
        Some((step_id, *step.task_ids.last()?))
    });
    view! {
        <Title text=move || match run.get() {
            Some(Err(e)) if e.status == 404 => "Run not found".to_string(),
            _ => format!("Run {}", id()),
        }/>
        <p class="crumbs"><a href="/runs">"Runs"</a> " / #" {id}</p>
        {move || outcome_view(act.value().get())}
        // The run's head (its one h1) comes first, then the approvals it
        // waits for, then its steps: headings in reading order.
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                let (run, me) = (api::parse::<RunDetail>(run.await), session(me.await));
                match run {
                    Ok(run) => view! { <RunHead run operate=can_operate(&me) ctx/> }.into_any(),
                    Err(e) if e.status == 404 => view! {
                        <Missing title="No such run">
                            {format!("There is no run {}. ", id())} <a href="/runs">"All runs"</a>
                        </Missing>
                    }.into_any(),
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                }
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let (list, inbox) = api::parse::<(RunDetail, ApprovalList)>(approvals.await)
                    .map(|(run, inbox)| (run.approvals, inbox.approvals))
                    .unwrap_or_default();
                let me = session(me.await);
                view! { <Approvals approvals=list inbox me=my_name(&me) ctx/> }
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let (run, wf) = (run.await, definition.await);
                let run = api::parse::<RunDetail>(run)
                    .and_then(|run| Ok((run, api::parse::<WorkflowVersion>(wf)?)));
                let me = session(me.await);
                run.ok().map(|(run, wf)| view! { <RunSteps run wf operate=can_operate(&me) ctx/> })
            })}
        </Transition>
        {move || event_card.get().then(|| view! {
            <section class="card send-event" data-testid="send-event">
                {move || waiting_event.get().map(|key| view! { <SendEventForm key send/> })}
                <div data-testid="event-answer">{move || outcome_view(send.value().get())}</div>
            </section>
        })}
        // The selected step's log, outside the run's transition: the run's
        // refreshes leave it (and where the reader scrolled it) alone. It
        // changes only when another task is to be shown.
        {move || step_log.get().map(|(step, task)| lazily(move || load_step_log(step.clone(), task)))}
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                api::parse::<RunDetail>(run.await).ok().map(|run| view! {
                    <Gantt run=run.clone()/>
                    <section class="card">
                        <h2>"Timeline"</h2>
                        <Timeline run/>
                    </section>
                })
            })}
        </Transition>
    }
}

/// The data of an event for the key a step waits on; posting it resumes
/// every step waiting for that key, in any run.
#[component]
fn SendEventForm(key: String, send: SendEvent) -> impl IntoView {
    let data: NodeRef<leptos::html::Textarea> = NodeRef::new();
    let hint = format!("drover event send {} --data '{{}}'", shell_word(&key));
    let submit = {
        let key = key.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let text = data.get().map(|el| el.value()).unwrap_or_default();
            send.dispatch((key.clone(), text));
        }
    };
    view! {
        <h2>"Send event " <code data-testid="send-event-key">{key}</code></h2>
        <form class="send-event-form" on:submit=submit>
            <label for="event-data">"Data (JSON): the resumed steps' output carries it as " <code>"data"</code></label>
            <textarea id="event-data" name="data" rows="3" spellcheck="false" data-testid="event-data" node_ref=data>"{}"</textarea>
            <p class="hint">"This resumes every step waiting for the key, in any run. From a shell: " <code>{hint}</code></p>
            <button type="submit" class="primary" data-testid="send-event-button"
                disabled=move || send.pending().get()>"Send event"</button>
        </form>
    }
}

/// What the run is: its workflow, who started it, how it ended, and the
/// button to cancel it while it is active.
#[component]
fn RunHead(run: RunDetail, operate: bool, ctx: RunCtx) -> impl IntoView {
    let r = &run.run;
    let active = matches!(r.status.as_str(), "running" | "waiting_approval");
    view! {
        <section class="card run-head">
            <h1>"Run #" {r.id} " " <span data-testid="run-status"><Badge status=r.status.as_str()/></span></h1>
            <dl class="facts">
                <dt>"Workflow"</dt><dd><a href=format!("/workflows/{}?version={}", enc(&r.workflow), r.version)>{r.workflow.clone()} " v" {r.version}</a></dd>
                <dt>"Started by"</dt><dd>{started_by_view(r.started_by.clone())} ", " {utc(r.created_at_us)}</dd>
                {r.parent_run_id.map(|p| view! {
                    <dt>"Parent"</dt>
                    <dd data-testid="parent-run">"Started by run " <a href=format!("/runs/{p}")>"#" {p}</a>
                        {r.parent_step_id.clone().map(|s| view! { ", step " <code>{s}</code> })}</dd>
                })}
                {r.finished_at_us.map(|f| view! { <dt>"Finished"</dt><dd>{utc(f)} " (" {duration_us(f - r.created_at_us)} ")"</dd> })}
                {r.error.clone().map(|e| view! { <dt>"Error"</dt><dd class="err-line">{e}</dd> })}
                <dt>"Inputs"</dt><dd><code class="inputs">{r.inputs.to_string()}</code></dd>
            </dl>
            {(operate && active).then(|| view! {
                <ConfirmButton armed=ctx.armed id="cancel-run".to_string() label="Cancel run" confirm_label="Confirm cancel run"
                    question="Cancel this run? Its running tasks are stopped and no further step starts." testid="cancel-run"
                    on_confirm=Callback::new(move |_| { ctx.act.dispatch(RunOp::Cancel); })/>
            })}
        </section>
    }
}

/// The run's steps as a graph, and the selected step's details.
#[component]
fn RunSteps(run: RunDetail, wf: WorkflowVersion, operate: bool, ctx: RunCtx) -> impl IntoView {
    let dag = steps_of(&wf.definition);
    let steps = run.steps.clone();
    let selected_view = {
        let steps = run.steps.clone();
        let approvals = run.approvals.clone();
        let events = run.events.clone();
        let start = run.run.created_at_us;
        let dag = dag.clone();
        move || {
            ctx.selected.get().and_then(|sel| {
                let def = dag.iter().find(|d| d.id == sel);
                let args = PanelArgs {
                    step: steps.iter().find(|s| s.step_id == sel)?.clone(),
                    kind: def.map(|d| d.kind.clone()).unwrap_or_default(),
                    wait_def: def.and_then(|d| d.wait.clone()),
                    approval: approvals.iter().find(|a| a.step_id == sel).cloned(),
                    history: events
                        .iter()
                        .filter(|e| e.step_id.as_deref() == Some(sel.as_str()))
                        .cloned()
                        .collect(),
                    start,
                    operate,
                    ctx,
                };
                Some(lazily(move || load_step_panel(args.clone())))
            })
        }
    };
    view! {
        <section class="card">
            <h2>"Steps"</h2>
            <Graph dag steps ctx/>
            <p class="muted legend">"Click a step, or Tab to it and press Enter, for its payload, output, attempts, timings and history. Dashed red lines lead to compensation steps, drawn in their own lane: they run only when a step they watch fails."</p>
        </section>
        {selected_view}
    }
}

fn status_of<'a>(steps: &'a [StepView], id: &str) -> Option<&'a StepView> {
    steps.iter().find(|s| s.step_id == id)
}

/// The DAG as SVG: steps as boxes coloured by state, dependencies as
/// curves; compensation steps in a lane below the main path, reached by
/// dashed square edges of their own.
#[component]
fn Graph(dag: Vec<DagStep>, steps: Vec<StepView>, ctx: RunCtx) -> impl IntoView {
    let l = layout(&dag);
    let edges =
        |compensation: bool| {
            l.edges
            .iter()
            .filter(|e| e.compensation == compensation)
            .map(|&e| {
                let marker = if compensation { "url(#arrow-comp)" } else { "url(#arrow)" };
                view! { <path d=edge_path(&l, e) class:comp=compensation marker-end=marker></path> }
            })
            .collect_view()
        };
    let (main_edges, comp_edges) = (edges(false), edges(true));
    let node = |i: usize, s: &DagStep| {
        let (x, y) = l.pos[i];
        let view_of = status_of(&steps, &s.id);
        let status = view_of
            .map(|v| v.shown_status().to_string())
            .unwrap_or_else(|| "pending".into());
        let count = view_of.and_then(|v| v.item_count).filter(|_| s.fan_out);
        let label: String = if s.id.chars().count() > 20 {
            s.id.chars().take(19).chain(['…']).collect()
        } else {
            s.id.clone()
        };
        let sub = match (&s.wait, s.kind.as_str(), count) {
            (Some(w), _, _) => w.label().to_string(),
            (None, "approval", _) => "approval".to_string(),
            (None, _, Some(n)) => format!("for each · {n} tasks"),
            _ if s.fan_out => "for each".to_string(),
            _ if s.compensates() => "compensation".to_string(),
            _ if s.conditional => "task · when".to_string(),
            _ => "task".to_string(),
        };
        // A waiting event step names its key when hovered.
        let waits_for = view_of
            .and_then(|v| v.wait.as_ref())
            .filter(|w| w.status == "waiting")
            .and_then(|w| w.event_key.clone())
            .map(|k| format!(" · event {k}"))
            .unwrap_or_default();
        let id = s.id.clone();
        let selected = {
            let id = id.clone();
            move || ctx.selected.get().as_deref() == Some(id.as_str())
        };
        let select = move || {
            ctx.selected.set(Some(id.clone()));
            ctx.pick.set(Some(id.clone()));
        };
        let select_by_key = select.clone();
        let name = format!("Step {} · {}{waits_for}", s.id, status.replace('_', " "));
        // A button for the keyboard and screen readers too: a tab stop,
        // Enter or Space opens the step as a click does.
        view! {
            <g class=format!("node s-{status}") class:selected=selected.clone() transform=format!("translate({x},{y})")
                data-testid=format!("step-{}", s.id) data-status=status.clone()
                role="button" tabindex="0" aria-pressed=move || selected().to_string()
                aria-label=name
                on:click=move |_| select()
                on:keydown=move |ev| {
                    if ev.key() == "Enter" || ev.key() == " " {
                        ev.prevent_default();
                        select_by_key();
                    }
                }>
                <title>{s.id.clone()} " · " {status.replace('_', " ")} {waits_for}</title>
                <rect width=NODE_W height=NODE_H rx="6"></rect>
                {s.fan_out.then(|| view! { <rect class="stack" x="4" y="-4" width=NODE_W height=NODE_H rx="6"></rect> })}
                <text x="10" y="17" class="node-id">{label}</text>
                <text x="10" y="32" class="node-sub">{sub} " · " {status.replace('_', " ")}</text>
            </g>
        }
    };
    let nodes = |compensation: bool| {
        dag.iter()
            .enumerate()
            .filter(|(_, s)| s.compensates() == compensation)
            .map(|(i, s)| node(i, s))
            .collect_view()
    };
    let (main_nodes, comp_nodes) = (nodes(false), nodes(true));
    let lane = l.lane_y.map(|y| view! {
        <g class="comp-lane" data-testid="compensation-lane" data-y=y role="group" aria-label="compensation steps">
            <line class="lane-rule" x1="0" y1=y x2=l.width y2=y></line>
            <text class="lane-name" x=l.width - PAD y=y + 16 text-anchor="end">"compensation"</text>
            {comp_nodes}
        </g>
    });
    view! {
        <div class="graph-wrap">
            <svg class="dag" width=l.width height=l.height viewBox=format!("0 0 {} {}", l.width, l.height) role="group" aria-label="workflow steps">
                <defs>
                    <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                        <path d="M 0 0 L 10 5 L 0 10 z"></path>
                    </marker>
                    <marker id="arrow-comp" class="comp" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                        <path d="M 0 0 L 10 5 L 0 10 z"></path>
                    </marker>
                </defs>
                <g class="edges">{main_edges}</g>
                <g class="edges comp-edges" data-testid="compensation-edges">{comp_edges}</g>
                <g class="main-path" data-testid="main-path" role="group" aria-label="main path">{main_nodes}</g>
                {lane}
            </svg>
        </div>
    }
}

/// What the step panel is drawn from.
#[derive(Clone)]
struct PanelArgs {
    step: StepView,
    kind: String,
    wait_def: Option<WaitDef>,
    approval: Option<ApprovalView>,
    /// The step's events, oldest first; `start` is the run's start.
    history: Vec<RunEvent>,
    start: i64,
    operate: bool,
    ctx: RunCtx,
}

// The step panel and the step's log are drawn only in the browser, once a
// step is chosen (nothing is selected while the server renders), so their
// code is split into the task page's group (`drover_pages_details`, see
// `pages::lazy_pages!`), which holds the attempts table and the log view
// they share with it: fetched on the first choice, not with the run page
// (232 KB less wasm on a first visit). A module of their own made 48 more
// shared chunks and a heavier task list. Built without `--split`, these
// are ordinary calls.

#[cfg_attr(
    feature = "hydrate",
    leptos::wasm_split::wasm_split(drover_pages_details, wasm_split_path = ::leptos::wasm_split)
)]
fn step_panel_view(args: PanelArgs) -> AnyView {
    view! { <StepPanel args/> }.into_any()
}

#[cfg_attr(
    feature = "hydrate",
    leptos::wasm_split::wasm_split(drover_pages_details, wasm_split_path = ::leptos::wasm_split)
)]
fn step_log_view(step: String, task: i64) -> AnyView {
    let heading = view! {
        "Log · step " <code>{step}</code> " · " <a href=format!("/tasks/{task}")>"task " {task}</a>
    }
    .into_any();
    view! { <TaskLog task_id=task heading/> }.into_any()
}

async fn load_step_panel(args: PanelArgs) -> AnyView {
    #[cfg(feature = "hydrate")]
    {
        send_wrapper::SendWrapper::new(step_panel_view(args)).await
    }
    #[cfg(not(feature = "hydrate"))]
    {
        step_panel_view(args)
    }
}

async fn load_step_log(step: String, task: i64) -> AnyView {
    #[cfg(feature = "hydrate")]
    {
        send_wrapper::SendWrapper::new(step_log_view(step, task)).await
    }
    #[cfg(not(feature = "hydrate"))]
    {
        step_log_view(step, task)
    }
}

/// A view whose code may still be loading: nothing until it has.
fn lazily<Fut>(load: impl Fn() -> Fut + Send + Sync + 'static) -> impl IntoView
where
    Fut: std::future::Future<Output = AnyView> + Send + 'static,
{
    view! { <Suspense fallback=|| ()>{move || Suspend::new(load())}</Suspense> }
}

#[component]
fn StepPanel(args: PanelArgs) -> impl IntoView {
    let PanelArgs {
        step,
        kind,
        wait_def,
        approval,
        history,
        start,
        operate,
        ctx,
    } = args;
    let live = use_live();
    let ids: Vec<i64> = step.task_ids.iter().copied().take(20).collect();
    let more = step.task_ids.len().saturating_sub(ids.len());
    let agents = Resource::new(move || live.watch(Topic::Agents), |_| api::fetch("/agents"));
    let tasks = Resource::new(
        move || live.watch(Topic::Tasks),
        move |_| {
            let ids = ids.clone();
            async move {
                let mut out = Vec::new();
                for id in ids {
                    out.push(api::fetch(&format!("/tasks/{id}")).await?);
                }
                Ok::<_, api::ApiFailure>(format!("[{}]", out.join(",")))
            }
        },
    );
    let failed = step.status == "failed";
    let step_id = step.step_id.clone();
    let retry_question = format!("Run step {step_id} again? Its tasks start anew.");
    view! {
        <section class="card step-panel" data-testid="step-panel">
            <h2>"Step " <code>{step.step_id.clone()}</code> " " <Badge status=step.shown_status().to_string()/> " " <span class="chip">{kind}</span></h2>
            {(step.shown_status() == "queued").then(|| view! {
                <p class="muted" data-testid="step-queued">"Started, but no agent has taken its task yet: the task's page says why it waits."</p>
            })}
            <dl class="facts">
                {step.started_at_us.map(|s| view! { <dt>"Started"</dt><dd>{utc(s)}</dd> })}
                {step.finished_at_us.map(|f| view! { <dt>"Finished"</dt><dd>{utc(f)} {step.started_at_us.map(|s| format!(" (took {})", duration_us(f - s)))}</dd> })}
                {step.item_count.map(|n| view! { <dt>"Items"</dt><dd>{n}</dd> })}
                {(step.generation > 0).then(|| view! { <dt>"Retried"</dt><dd>{step.generation} " time(s)"</dd> })}
            </dl>
            {step.wait.as_ref().map(|w| {
                let pieces = describe(w, wait_def.as_ref(), step.finished_at_us);
                view! {
                    <p class="wait-says" data-testid="wait-says" data-wait-status=w.status.clone()>
                        {pieces_view(pieces)}
                    </p>
                }
            })}
            {(operate && failed).then(|| view! {
                <ConfirmButton armed=ctx.armed id=format!("retry:{step_id}") label="Retry step" confirm_label="Confirm retry step"
                    plain=true question=retry_question testid="retry-step"
                    on_confirm=Callback::new(move |_| { ctx.act.dispatch(RunOp::Retry(step_id.clone())); })/>
            })}
            {step.error.clone().map(|e| view! { <h3>"Error"</h3><pre class="error-pre">{e}</pre> })}
            {step.output.as_ref().map(|o| view! { <h3>"Output"</h3><pre>{json(o)}</pre> })}
            {approval.map(|a| view! { <h3>"Approval"</h3><p>{a.message.clone()}</p> })}
            {(!history.is_empty()).then(|| view! {
                <h3>"History"</h3>
                <ol class="timeline" data-testid="step-history">
                    {history.iter().map(|e| event_line(e, start)).collect_view()}
                </ol>
            })}
            {(!step.task_ids.is_empty()).then(|| view! {
                <h3>"Tasks"</h3>
                <Transition fallback=Loading>
                    {move || Suspend::new(async move {
                        let names = agent_names(agents.await);
                        match api::parse::<Vec<TaskDetail>>(tasks.await) {
                            Ok(list) => list.into_iter().map(|d| {
                                let t = &d.task;
                                view! {
                                    <div class="step-task">
                                        <p><a href=format!("/tasks/{}", t.id)>"Task " {t.id}</a> " " <Badge status=t.status.as_str()/>
                                            " · " {t.task_type.clone()} " · P " {crate::format::num(t.priority)}</p>
                                        <details><summary>"Payload"</summary><pre>{json(&t.payload)}</pre></details>
                                        <AttemptsTable d=d.clone() names=names.clone()/>
                                    </div>
                                }
                            }).collect_view().into_any(),
                            Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                        }
                    })}
                </Transition>
                {(more > 0).then(|| view! { <p class="muted">"… and " {more} " more tasks."</p> })}
            })}
        </section>
    }
}

/// A sentence about a wait: times in the reader's zone (UTC on hover),
/// "in 2 min" counted down live, keys as code, runs as links. The panel is
/// drawn in the browser only (nothing is selected while the server
/// renders), so local times never differ from a server-rendered text.
fn pieces_view(pieces: Vec<Piece>) -> impl IntoView {
    let live = use_live();
    pieces
        .into_iter()
        .map(|p| match p {
            Piece::Text(t) => t.into_any(),
            Piece::Key(k) => view! { <code data-testid="wait-key">{k}</code> }.into_any(),
            Piece::At(t) => {
                view! { <span class="nowrap" title=utc(t)>{local(t)}</span> }.into_any()
            }
            Piece::Until(t) => (move || until(live.now_us.get(), t)).into_any(),
            Piece::Run(r) => view! {
                <a href=format!("/runs/{r}") data-testid="child-run">"#" {r}</a>
            }
            .into_any(),
        })
        .collect_view()
}

/// The run's approvals: decide the ones the signed-in user may; say why not otherwise.
#[component]
fn Approvals(
    approvals: Vec<ApprovalView>,
    inbox: Vec<ApprovalView>,
    me: String,
    ctx: RunCtx,
) -> impl IntoView {
    if approvals.is_empty() {
        return ().into_any();
    }
    view! {
        <section class="card approvals" data-testid="run-approvals">
            <h2>"Approvals"</h2>
            {approvals.into_iter().map(|a| {
                let mine = inbox.iter().any(|x| x.id == a.id);
                let decide = Callback::new(move |(id, approve, comment): (i64, bool, String)| {
                    ctx.act.dispatch(RunOp::Decide { id, approve, comment });
                });
                view! { <ApprovalCard a mine me=me.clone() decide armed=ctx.rejecting show_run=false/> }
            }).collect_view()}
        </section>
    }
    .into_any()
}

/// The run's history as its events tell it, in the order it happened: a
/// retried step's first failure stays, with who retried it and when.
#[component]
fn Timeline(run: RunDetail) -> impl IntoView {
    let start = run.run.created_at_us;
    if run.events.is_empty() {
        return view! { <p class="muted">"Nothing has happened yet."</p> }.into_any();
    }
    view! {
        {run.events_truncated.then(|| view! {
            <p class="muted" data-testid="timeline-truncated">
                "Only the newest " {count(drover_protocol::limits::RUN_EVENTS_SHOWN)} " events are shown."
            </p>
        })}
        <ol class="timeline" data-testid="timeline">
            {run.events.iter().map(|e| event_line(e, start)).collect_view()}
        </ol>
    }
    .into_any()
}

/// One event as a line: how long after the run's start (the time itself
/// on hover), then what happened, to which step, by whom.
fn event_line(e: &RunEvent, start: i64) -> impl IntoView + use<> {
    use RunEventKind as K;
    let step = e.step_id.clone().unwrap_or_default();
    let code = |s: &str| view! { <code>{s.to_string()}</code> };
    let retry = match e.generation {
        Some(g) if g > 0 && e.kind != K::StepRetried => Some(format!(" (retry {g})")),
        _ => None,
    };
    let by = |actor: &Option<String>| {
        actor
            .clone()
            .map(|a| view! { " by " <span class="actor">{started_by_view(a)}</span> })
    };
    let detail = e.detail.clone();
    let status = e.status.clone().unwrap_or_default();
    let words = match e.kind {
        K::RunStarted => view! {
            "Run started" {by(&e.actor)} {detail.map(|d| format!(" ({d})"))}
        }
        .into_any(),
        K::RunFinished => view! {
            "Run " <strong>{status.clone()}</strong> {detail.map(|d| format!(": {d}"))}
        }
        .into_any(),
        K::RunCancelled => view! {
            "Run " <strong>"cancelled"</strong> {by(&e.actor)} {detail.map(|d| format!(": {d}"))}
        }
        .into_any(),
        K::StepStarted => {
            let how = match status.as_str() {
                "waiting_approval" => " waits for approval",
                "waiting" => " is waiting",
                _ => " started",
            };
            view! { {code(&step)} {how} {retry} }.into_any()
        }
        K::StepSucceeded => view! { {code(&step)} " succeeded" {retry} }.into_any(),
        K::StepFailed => view! {
            {code(&step)} " " <strong>"failed"</strong> {retry} {detail.map(|d| view! { ": " <span class="err-line">{d}</span> })}
        }
        .into_any(),
        K::StepSkipped => view! { {code(&step)} " skipped" {detail.map(|d| format!(": {d}"))} }.into_any(),
        K::StepRetried => view! {
            {code(&step)} " " <strong>"retried"</strong> {by(&e.actor)}
        }
        .into_any(),
        K::CompensationStarted => view! { "Compensation " {code(&step)} " started" {retry} }.into_any(),
        K::CompensationFinished => view! {
            "Compensation " {code(&step)} " " {status.clone()} {retry} {detail.map(|d| format!(": {d}"))}
        }
        .into_any(),
        K::ApprovalDecided => view! {
            {code(&step)} " " <strong>{status.clone()}</strong> {by(&e.actor)}
            {detail.map(|d| format!(" — “{d}”"))}
        }
        .into_any(),
    };
    let failed = matches!(e.kind, K::StepFailed) || status == "failed" || status == "rejected";
    view! {
        <li data-testid="timeline-event" data-kind=e.kind.as_str() data-step=step.clone() class:bad=failed>
            <time class="muted t" datetime=rfc3339(e.at_us) title=utc(e.at_us)>"+" {duration_us(e.at_us - start)}</time>
            " " {words}
        </li>
    }
}

/// The Gantt chart of the run's steps and their task attempts over time,
/// with the same as a table for those who do not see it.
#[component]
fn Gantt(run: RunDetail) -> impl IntoView {
    let r = &run.run;
    let start = r.created_at_us;
    // A run still going is drawn up to the latest thing known of it.
    let latest = run
        .events
        .iter()
        .map(|e| e.at_us)
        .chain(
            run.attempts
                .iter()
                .flat_map(|a| [Some(a.claimed_at_us), a.started_at_us, a.finished_at_us])
                .flatten(),
        )
        .chain([r.updated_at_us])
        .max()
        .unwrap_or(start);
    let end = r.finished_at_us.unwrap_or(latest).max(latest);
    let order: Vec<String> = run.steps.iter().map(|s| s.step_id.clone()).collect();
    let c: Chart = gantt::chart(&order, &run.events, &run.attempts, start, end);
    if c.bars.is_empty() {
        return ().into_any();
    }
    let attempts = c
        .bars
        .iter()
        .filter(|b| matches!(b.what, What::Attempt { .. }))
        .count();
    let label = format!(
        "Gantt chart of run {}: {} steps over {}, {} bars of steps and {} of task attempts. The table below lists them.",
        r.id,
        c.rows.len(),
        duration_us(end - start),
        c.bars.len() - attempts,
        attempts
    );
    let title = label.clone();
    let height = c.height();
    let bottom = height - gantt::AXIS_H;
    let right = gantt::LABEL_W + gantt::PLOT_W;
    let rows = c.rows.iter().enumerate().map(|(i, step)| {
        let y = Chart::y_of(i);
        view! {
            <line class="row-rule" x1="0" y1=y + gantt::ROW_H x2=right y2=y + gantt::ROW_H></line>
            <text class="row-name" x=gantt::LABEL_W - 8 y=y + gantt::ROW_H / 2 + 4 text-anchor="end">{step.clone()}</text>
        }
    }).collect_view();
    let bars = c.bars.iter().map(|b| {
        let (x, w) = b.x_span(&c);
        let step = &c.rows[b.row];
        let y = Chart::y_of(b.row);
        let (kind, y, h, generation) = match &b.what {
            What::Step { generation } => ("step", y + 4, 13, *generation),
            What::Attempt { generation, .. } => ("attempt", y + 20, 6, *generation),
        };
        view! {
            <rect class=format!("bar {kind} s-{}", b.status) class:open=b.open x=x y=y width=w height=h rx="2"
                data-testid="gantt-bar" data-kind=kind data-step=step.clone() data-generation=generation data-status=b.status.clone()>
                <title>{b.describe(step)}</title>
            </rect>
        }
    }).collect_view();
    let ticks = c
        .ticks
        .iter()
        .map(|(x, text)| {
            view! {
                <line class="tick" x1=*x y1=gantt::TOP x2=*x y2=bottom></line>
                <text x=*x y=bottom + 14 text-anchor="middle">{text.clone()}</text>
            }
        })
        .collect_view();
    let table = c.bars.iter().map(|b| {
        let step = c.rows[b.row].clone();
        let what = match &b.what {
            What::Step { generation: 0 } => "the step".to_string(),
            What::Step { generation } => format!("the step, retry {generation}"),
            What::Attempt { task_id, attempt, item_index, .. } => format!("task {task_id}, item {item_index}, attempt {attempt}"),
        };
        let task = match b.what {
            What::Attempt { task_id, .. } => Some(task_id),
            What::Step { .. } => None,
        };
        view! {
            <tr data-testid="gantt-row">
                <td><code>{step}</code></td>
                <td>{match task {
                    Some(t) => view! { <a href=format!("/tasks/{t}")>{what}</a> }.into_any(),
                    None => what.into_any(),
                }}</td>
                <td class="n">"+" {duration_us(b.start_us - start)}</td>
                <td class="n">{if b.open { "still going".to_string() } else { format!("+{}", duration_us(b.end_us - start)) }}</td>
                <td class="n">{duration_us(b.end_us - b.start_us)}</td>
                <td><Badge status=b.status.clone()/></td>
            </tr>
        }
    }).collect_view();
    let rows_n = c.bars.len();
    view! {
        <section class="card" aria-labelledby="gantt-title">
            <h2 id="gantt-title">"Gantt"</h2>
            <div class="gantt-wrap">
                <svg class="gantt" viewBox=format!("0 0 {} {height}", gantt::WIDTH) role="img" aria-label=label data-testid="gantt">
                    <title>{title}</title>
                    <g class="grid">{ticks}</g>
                    <g class="rows">{rows}</g>
                    <g class="bars">{bars}</g>
                    <line class="axis" x1=gantt::LABEL_W y1=bottom x2=right y2=bottom></line>
                    <text class="axis-title" x=gantt::LABEL_W + gantt::PLOT_W / 2 y=bottom + 30 text-anchor="middle">"time since the run started"</text>
                </svg>
            </div>
            <p class="muted small">
                "Each step's thick bar runs from its start to its end (a retry is a new bar); the thin bars under it are its tasks' attempts, from an agent's claim to the result."
                {run.attempts_truncated.then(|| format!(" Only the first {} attempts are drawn.", count(drover_protocol::limits::RUN_ATTEMPTS_SHOWN)))}
            </p>
            <details data-testid="gantt-table">
                <summary>"The chart as a table (" {rows_n} {if rows_n == 1 { " bar" } else { " bars" }} ")"</summary>
                <table class="data compact">
                    <thead><tr><th>"Step"</th><th>"Bar"</th><th>"From"</th><th>"To"</th><th>"Took"</th><th>"Outcome"</th></tr></thead>
                    <tbody>{table}</tbody>
                </table>
            </details>
        </section>
    }
    .into_any()
}
