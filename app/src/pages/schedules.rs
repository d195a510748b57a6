//! Schedules: workflow runs or single tasks started by a cron expression in
//! a time zone, or once at a given time. The list says when each fires next
//! and what its last tick did; operators pause, resume, delete and create
//! them.

use drover_protocol::schedule::{ScheduleList, ScheduleView};
use drover_protocol::workflow::WorkflowList;
use leptos::prelude::*;
use leptos_meta::Title;
use serde_json::{json, Map, Value};

use crate::api::{self, enc, ApiFailure, ApiResult};
use crate::components::{
    can_operate, outcome_view, session, use_me, Badge, ConfirmButton, Empty, ErrorBox, Loading,
    Time,
};
use crate::format::{ago, until, utc};
use crate::live::{use_live, Topic};

/// What a row's buttons do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Pause,
    Resume,
    Delete,
}

type RowAction = Action<(i64, String, Op), ApiResult<String>>;

#[component]
pub fn Schedules() -> impl IntoView {
    let me = use_me();
    let live = use_live();
    // A tick records itself (a "schedule" event) and starts a run: either
    // changes what the list shows.
    let list = Resource::new(
        move || (live.watch(Topic::Schedules), live.watch(Topic::Runs)),
        |_| api::fetch("/schedules"),
    );
    let act: RowAction = Action::new(move |(id, name, op): &(i64, String, Op)| {
        let (id, name, op) = (*id, name.clone(), *op);
        async move {
            match op {
                Op::Pause => {
                    api::post::<ScheduleView>(&format!("/schedules/{id}/pause"), &json!({}))
                        .await
                        .map(|_| {
                            format!("Schedule {name} is paused: it starts nothing until resumed.")
                        })
                }
                Op::Resume => {
                    api::post::<ScheduleView>(&format!("/schedules/{id}/resume"), &json!({}))
                        .await
                        .map(|s| match s.next_fire_at_us {
                            Some(t) => {
                                format!("Schedule {name} is resumed; it fires next at {}.", utc(t))
                            }
                            None => format!("Schedule {name} is resumed."),
                        })
                }
                Op::Delete => api::delete::<Value>(&format!("/schedules/{id}"))
                    .await
                    .map(|_| {
                        format!(
                            "Schedule {name} is deleted; the runs and tasks it started are kept."
                        )
                    }),
            }
        }
    });
    Effect::new(move |_| {
        if act.value().get().is_some() {
            list.refetch();
        }
    });
    let armed = RwSignal::new(None::<i64>);
    view! {
        <Title text="Schedules"/>
        <h1 class="page-title">"Schedules"</h1>
        <p class="muted">
            "Workflow runs and tasks started by a cron expression, or once at a time. Runs a schedule starts show "
            <code>"schedule:<id>"</code> " as who started them."
        </p>
        {move || outcome_view(act.value().get())}
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                let (fetched, me) = (list.await, session(me.await));
                let operate = can_operate(&me);
                match api::parse::<ScheduleList>(fetched) {
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                    Ok(l) if l.schedules.is_empty() => view! {
                        <Empty title="No schedules">
                            {if operate { "Create one below." } else { "An operator can create one." }}
                        </Empty>
                    }.into_any(),
                    Ok(l) => view! {
                        <div class="table-wrap"><table class="data" data-testid="schedules">
                            <thead><tr>
                                <th>"Name"</th><th>"Starts"</th><th>"When"</th><th>"Next"</th>
                                <th>"Last tick"</th><th>"Fired"</th><th>"Missed"</th><th>"State"</th>
                                {operate.then(|| view! { <th></th> })}
                            </tr></thead>
                            <tbody>
                                {l.schedules.into_iter().map(|s| view! { <ScheduleRow s operate armed act/> }).collect_view()}
                            </tbody>
                        </table></div>
                    }.into_any(),
                }
            })}
        </Transition>
        // Outside the list's transition: a list refresh (one a second for a
        // busy schedule) must not reset the form.
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move { can_operate(&session(me.await)).then(|| view! { <CreateSchedule list/> }) })}
        </Suspense>
    }
}

#[component]
fn ScheduleRow(
    s: ScheduleView,
    operate: bool,
    armed: RwSignal<Option<i64>>,
    act: RowAction,
) -> impl IntoView {
    let live = use_live();
    let target = match (&s.workflow, &s.task) {
        (Some(w), _) => {
            let href = match s.version {
                Some(v) => format!("/workflows/{}?version={v}", enc(w)),
                None => format!("/workflows/{}", enc(w)),
            };
            view! {
                <a href=href data-testid="schedule-workflow">{w.clone()}</a>
                {s.version.map(|v| view! { <span class="muted">" v" {v}</span> })}
            }
            .into_any()
        }
        (None, Some(t)) => view! {
            <span class="chip">"task"</span> <code data-testid="schedule-task-type">{t.task_type.clone()}</code>
        }
        .into_any(),
        (None, None) => view! { <span class="muted">"—"</span> }.into_any(),
    };
    let when = match (&s.cron, s.at_us) {
        (Some(cron), _) => view! {
            <code>{cron.clone()}</code> " " <span class="muted">{s.time_zone.clone()}</span>
            {s.cron_description.clone().map(|d| view! { <span class="hint">{d}</span> })}
        }
        .into_any(),
        (None, Some(at)) => {
            view! { "once at " <span class="nowrap"><Time t_us=at/></span> }.into_any()
        }
        (None, None) => ().into_any(),
    };
    let next = s.next_fire_at_us;
    let upcoming = (!s.upcoming_us.is_empty()).then(|| {
        let times: Vec<String> = s.upcoming_us.iter().map(|t| utc(*t)).collect();
        format!("Upcoming:\n{}", times.join("\n"))
    });
    let next_view = match next {
        Some(t) => view! {
            <span class="nowrap"><Time t_us=t/></span> " "
            <span class="muted" data-testid="next-fire-in">"(" {move || until(live.now_us.get(), t)} ")"</span>
        }
        .into_any(),
        None => view! { <span class="muted">"—"</span> }.into_any(),
    };
    let last = s.last_outcome.clone().map(|outcome| {
        let link = match (s.last_run_id, s.last_task_id) {
            (Some(r), _) => Some(view! { <a href=format!("/runs/{r}") data-testid="last-run">"run #" {r}</a> }.into_any()),
            (None, Some(t)) => Some(view! { <a href=format!("/tasks/{t}") data-testid="last-task">"task #" {t}</a> }.into_any()),
            (None, None) => None,
        };
        view! {
            <Badge status=outcome/> " " {link}
            {s.last_tick_us.map(|t| view! { <span class="muted small">" " {move || ago(live.now_us.get(), t)}</span> })}
        }
    });
    let actions = operate.then(|| {
        let (id, name) = (s.id, s.name.clone());
        let toggle = match s.state.as_str() {
            "active" => Some((Op::Pause, "Pause", "pause")),
            "paused" => Some((Op::Resume, "Resume", "resume")),
            _ => None,
        };
        let question = format!(
            "Delete schedule {}? It starts nothing more; the runs and tasks it started are kept.",
            s.name
        );
        let toggle = toggle.map(|(op, label, testid)| {
            let name = name.clone();
            view! {
                <button data-testid=testid disabled=move || act.pending().get()
                    on:click=move |_| { act.dispatch((id, name.clone(), op)); }>{label}</button>
            }
        });
        view! {
            <td class="row-actions">
                {toggle}
                <ConfirmButton armed id label="Delete" confirm_label="Confirm delete" question testid="delete"
                    on_confirm=Callback::new(move |_| { act.dispatch((id, name.clone(), Op::Delete)); })/>
            </td>
        }
    });
    view! {
        <tr data-testid="schedule-row" id=format!("schedule-{}", s.id) data-schedule=s.name.clone() data-state=s.state.clone()>
            <td>
                <strong>{s.name.clone()}</strong>
                {s.description.clone().map(|d| view! { <span class="hint">{d}</span> })}
            </td>
            <td>{target}</td>
            <td data-testid="schedule-when">{when}</td>
            <td data-testid="next-fire" data-at=next.map(|t| t.to_string()) title=upcoming>{next_view}</td>
            <td data-testid="last-tick" title=s.last_detail.clone()>
                {last.map(IntoAny::into_any).unwrap_or_else(|| view! { <span class="muted">"not yet"</span> }.into_any())}
            </td>
            <td class="n" data-testid="fired-count">{s.fired_count}</td>
            <td class="n" data-testid="missed-count">{s.missed_count}</td>
            <td class="status" data-testid="schedule-state"><Badge status=s.state.clone()/></td>
            {actions}
        </tr>
    }
}

/// What the create form holds when it is sent.
#[derive(Debug, Clone, Default, PartialEq)]
struct Form {
    name: String,
    description: String,
    /// `workflow` or `task`.
    target: String,
    workflow: String,
    inputs: String,
    task_type: String,
    payload: String,
    /// `cron` or `once`.
    timing: String,
    cron: String,
    time_zone: String,
    /// A `datetime-local` value, read as UTC.
    at: String,
    missed: String,
    overlap: String,
    paused: bool,
}

/// A refusal found before sending, named by its field like the server's.
fn refusal(field: &str, message: impl Into<String>) -> ApiFailure {
    ApiFailure {
        status: 0,
        message: message.into(),
        field: Some(field.to_string()),
        errors: Vec::new(),
    }
}

/// JSON text as a value; empty text is `{}`.
fn json_text(text: &str, field: &str) -> Result<Value, ApiFailure> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(text).map_err(|e| refusal(field, format!("is not JSON: {e}")))
}

/// A `datetime-local` value (`2026-12-24T18:00`, seconds optional) as an
/// RFC 3339 time in UTC; a time that names its offset is kept.
fn rfc3339_utc(local: &str) -> String {
    let t = local.trim();
    let zoned = t.ends_with('Z')
        || t.ends_with('z')
        || t.get(10..).is_some_and(|time| time.contains(['+', '-']));
    if zoned {
        return t.to_string();
    }
    match t.split_once('T') {
        Some((_, time)) if time.len() == 5 => format!("{t}:00Z"),
        _ => format!("{t}Z"),
    }
}

/// The `POST /api/v1/schedules` body of a filled-in form.
fn schedule_body(f: &Form) -> Result<Value, ApiFailure> {
    let mut body = Map::new();
    body.insert("name".into(), json!(f.name.trim()));
    if !f.description.trim().is_empty() {
        body.insert("description".into(), json!(f.description.trim()));
    }
    if f.target == "task" {
        let payload = json_text(&f.payload, "task.payload")?;
        body.insert(
            "task".into(),
            json!({ "task_type": f.task_type.trim(), "payload": payload }),
        );
    } else {
        let inputs = json_text(&f.inputs, "inputs")?;
        if !inputs.is_object() {
            return Err(refusal(
                "inputs",
                "must be a JSON object of the workflow's inputs, such as {\"item\": \"paper\"}",
            ));
        }
        body.insert("workflow".into(), json!(f.workflow));
        body.insert("inputs".into(), inputs);
    }
    if f.timing == "once" {
        if f.at.trim().is_empty() {
            return Err(refusal("at", "choose the date and time it runs"));
        }
        body.insert("at".into(), json!(rfc3339_utc(&f.at)));
    } else {
        body.insert("cron".into(), json!(f.cron.trim()));
        if !f.time_zone.trim().is_empty() {
            body.insert("time_zone".into(), json!(f.time_zone.trim()));
        }
    }
    body.insert("missed".into(), json!(f.missed));
    body.insert("overlap".into(), json!(f.overlap));
    body.insert("paused".into(), json!(f.paused));
    Ok(Value::Object(body))
}

/// The form field a refusal is about (`task.payload.x` is the payload
/// field, `inputs.amount` the inputs); a conflict is a name already taken.
fn field_of(e: &ApiFailure) -> Option<&'static str> {
    let Some(f) = e.field.as_deref() else {
        return (e.status == 409).then_some("name");
    };
    let head = f.split(['.', '[']).next().unwrap_or(f);
    Some(match head {
        "name" => "name",
        "description" => "description",
        "workflow" | "version" => "workflow",
        "inputs" => "inputs",
        "task" if f.starts_with("task.payload") => "payload",
        "task" => "task_type",
        "cron" => "cron",
        "time_zone" => "time_zone",
        "at" => "at",
        "missed" => "missed",
        "overlap" => "overlap",
        _ => return None,
    })
}

/// Whether a field's control is on show for this target and timing.
fn shown(field: &str, target: &str, timing: &str) -> bool {
    match field {
        "workflow" | "inputs" => target != "task",
        "task_type" | "payload" => target == "task",
        "cron" | "time_zone" => timing != "once",
        "at" => timing == "once",
        _ => true,
    }
}

/// One labelled control with its hint and the error about it.
fn field(
    key: &'static str,
    label: &'static str,
    hint: &'static str,
    wide: bool,
    control: AnyView,
    problem: RwSignal<Option<ApiFailure>>,
    visible: impl Fn() -> bool + Send + Sync + 'static,
) -> impl IntoView {
    let error = move || {
        problem
            .get()
            .filter(|e| field_of(e) == Some(key))
            .map(|e| e.message)
    };
    view! {
        <div class="field" class:has-error=move || error().is_some() hidden=move || !visible()
            style=wide.then_some("grid-column: 1 / -1")>
            <label>
                <span class="field-name">{label}</span>
                {control}
            </label>
            {(!hint.is_empty()).then(|| view! { <span class="hint">{hint}</span> })}
            {move || error().map(|m| view! { <span class="field-error" role="alert" data-testid=format!("error-{key}")>{m}</span> })}
        </div>
    }
}

#[component]
fn CreateSchedule(list: Resource<ApiResult<String>>) -> impl IntoView {
    use leptos::html::{Input, Select, Textarea};
    let live = use_live();
    let workflows = Resource::new(
        move || live.watch(Topic::Workflows),
        |_| api::fetch("/workflows"),
    );
    let target = RwSignal::new("workflow".to_string());
    let timing = RwSignal::new("cron".to_string());
    // The workflow chosen, kept when a new upload refreshes the choices.
    let chosen = RwSignal::new(None::<String>);
    // Read from the elements on submit, so text typed before the page
    // hydrated is not lost.
    let name: NodeRef<Input> = NodeRef::new();
    let description: NodeRef<Input> = NodeRef::new();
    let target_el: NodeRef<Select> = NodeRef::new();
    let workflow: NodeRef<Select> = NodeRef::new();
    let inputs: NodeRef<Textarea> = NodeRef::new();
    let task_type: NodeRef<Input> = NodeRef::new();
    let payload: NodeRef<Textarea> = NodeRef::new();
    let timing_el: NodeRef<Select> = NodeRef::new();
    let cron: NodeRef<Input> = NodeRef::new();
    let time_zone: NodeRef<Input> = NodeRef::new();
    let at: NodeRef<Input> = NodeRef::new();
    let missed: NodeRef<Select> = NodeRef::new();
    let overlap: NodeRef<Select> = NodeRef::new();
    let paused: NodeRef<Input> = NodeRef::new();

    let problem = RwSignal::new(None::<ApiFailure>);
    let created = RwSignal::new(None::<String>);
    let create = Action::new(move |body: &Value| {
        let body = body.clone();
        async move { api::post::<ScheduleView>("/schedules", &body).await }
    });
    Effect::new(move |_| match create.value().get() {
        Some(Ok(s)) => {
            problem.set(None);
            created.set(Some(match s.next_fire_at_us {
                Some(t) => format!("Schedule {} created; it fires next at {}.", s.name, utc(t)),
                None => format!("Schedule {} created, paused.", s.name),
            }));
            if let Some(el) = name.get_untracked() {
                el.set_value("");
            }
            list.refetch();
        }
        Some(Err(e)) => {
            created.set(None);
            problem.set(Some(e));
        }
        None => {}
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let input = |r: NodeRef<Input>| r.get().map(|el| el.value()).unwrap_or_default();
        let select = |r: NodeRef<Select>, or: String| r.get().map(|el| el.value()).unwrap_or(or);
        let text = |r: NodeRef<Textarea>| r.get().map(|el| el.value()).unwrap_or_default();
        let form = Form {
            name: input(name),
            description: input(description),
            target: select(target_el, target.get_untracked()),
            workflow: select(workflow, chosen.get_untracked().unwrap_or_default()),
            inputs: text(inputs),
            task_type: input(task_type),
            payload: text(payload),
            timing: select(timing_el, timing.get_untracked()),
            cron: input(cron),
            time_zone: input(time_zone),
            at: input(at),
            missed: select(missed, "skip".into()),
            overlap: select(overlap, "allow".into()),
            paused: paused.get().is_some_and(|el| el.checked()),
        };
        target.set(form.target.clone());
        timing.set(form.timing.clone());
        created.set(None);
        match schedule_body(&form) {
            Ok(body) => {
                problem.set(None);
                create.dispatch(body);
            }
            Err(e) => problem.set(Some(e)),
        }
    };
    let general_error = move || {
        problem
            .get()
            .filter(|e| !field_of(e).is_some_and(|f| shown(f, &target.get(), &timing.get())))
    };
    let is = |signal: RwSignal<String>, value: &'static str| move || signal.with(|v| v == value);

    let workflow_select = view! {
        <Transition fallback=|| view! { <select disabled=true><option>"Loading…"</option></select> }>
            {move || Suspend::new(async move {
                let names: Vec<String> = api::parse::<WorkflowList>(workflows.await)
                    .map(|l| l.workflows.into_iter().map(|w| w.name).collect())
                    .unwrap_or_default();
                view! {
                    <select name="workflow" data-testid="input-workflow" node_ref=workflow
                        on:change=move |ev| chosen.set(Some(event_target_value(&ev)))>
                        {names.is_empty().then(|| view! { <option value="">"No workflows yet: upload one first"</option> })}
                        {names.into_iter().map(|n| {
                            let (this, label) = (n.clone(), n.clone());
                            view! { <option value=n selected=move || chosen.with(|c| c.as_deref() == Some(this.as_str()))>{label}</option> }
                        }).collect_view()}
                    </select>
                }
            })}
        </Transition>
    }
    .into_any();

    view! {
        <section class="card">
            <h2>"Create a schedule"</h2>
            {move || created.get().map(|m| view! { <p class="flash ok" role="status" data-testid="schedule-created">{m}</p> })}
            <form class="token-form" data-testid="schedule-form" on:submit=submit>
                {field("name", "Name", "Unique: nightly-report, hourly-sync.", false,
                    view! { <input type="text" name="name" data-testid="input-name" placeholder="nightly-report" node_ref=name/> }.into_any(),
                    problem, || true)}
                {field("description", "Description", "Optional.", false,
                    view! { <input type="text" name="description" data-testid="input-description" node_ref=description/> }.into_any(),
                    problem, || true)}
                {field("target", "Starts", "A run of a workflow, or one task.", false,
                    view! {
                        <select name="target" data-testid="input-target" node_ref=target_el
                            on:change=move |ev| target.set(event_target_value(&ev))>
                            <option value="workflow" selected=true>"a workflow run"</option>
                            <option value="task">"a single task"</option>
                        </select>
                    }.into_any(),
                    problem, || true)}
                {field("workflow", "Workflow", "Its latest version when each tick fires.", false,
                    workflow_select, problem, is(target, "workflow"))}
                {field("inputs", "Inputs (JSON)", "The workflow's inputs, as a JSON object.", true,
                    view! { <textarea name="inputs" rows="3" data-testid="input-inputs" node_ref=inputs>"{}"</textarea> }.into_any(),
                    problem, is(target, "workflow"))}
                {field("task_type", "Task type", "The task type an agent runs.", false,
                    view! { <input type="text" name="task_type" data-testid="input-task_type" placeholder="echo" node_ref=task_type/> }.into_any(),
                    problem, is(target, "task"))}
                {field("payload", "Payload (JSON)", "What the task is given.", true,
                    view! { <textarea name="payload" rows="3" data-testid="input-payload" node_ref=payload>"{}"</textarea> }.into_any(),
                    problem, is(target, "task"))}
                {field("timing", "Fires", "", false,
                    view! {
                        <select name="timing" data-testid="input-timing" node_ref=timing_el
                            on:change=move |ev| timing.set(event_target_value(&ev))>
                            <option value="cron" selected=true>"repeatedly (cron)"</option>
                            <option value="once">"once"</option>
                        </select>
                    }.into_any(),
                    problem, || true)}
                {field("cron", "Cron", "Five fields (minute first), six (second first), or @daily, @hourly…", false,
                    view! { <input type="text" name="cron" data-testid="input-cron" placeholder="0 2 * * *" node_ref=cron/> }.into_any(),
                    problem, is(timing, "cron"))}
                {field("time_zone", "Time zone", "An IANA name such as Europe/Berlin.", false,
                    view! { <input type="text" name="time_zone" data-testid="input-time_zone" value="UTC" node_ref=time_zone/> }.into_any(),
                    problem, is(timing, "cron"))}
                {field("at", "At (UTC)", "The date and time it runs, in UTC.", false,
                    view! { <input type="datetime-local" step="1" name="at" data-testid="input-at" node_ref=at/> }.into_any(),
                    problem, is(timing, "once"))}
                {field("missed", "Ticks missed", "While no server ran.", false,
                    view! {
                        <select name="missed" data-testid="input-missed" node_ref=missed>
                            <option value="skip" selected=true>"skip them (counted)"</option>
                            <option value="run_once">"run once for the latest"</option>
                        </select>
                    }.into_any(),
                    problem, || true)}
                {field("overlap", "Overlap", "When a tick comes while the previous one's run or task is active.", false,
                    view! {
                        <select name="overlap" data-testid="input-overlap" node_ref=overlap>
                            <option value="allow" selected=true>"start anyway"</option>
                            <option value="skip">"skip the tick"</option>
                            <option value="cancel_previous">"cancel the previous, then start"</option>
                        </select>
                    }.into_any(),
                    problem, || true)}
                <div class="field">
                    <label>
                        <span class="field-name">"Create paused"</span>
                        <input type="checkbox" name="paused" data-testid="input-paused" node_ref=paused/>
                    </label>
                    <span class="hint">"It fires once resumed."</span>
                </div>
                {move || general_error().map(|e| view! { <p class="field-error" role="alert" data-testid="schedule-error">{e.message}</p> })}
                <button type="submit" class="primary" data-testid="create-schedule" disabled=move || create.pending().get()>"Create schedule"</button>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> Form {
        Form {
            name: " nightly ".into(),
            target: "workflow".into(),
            workflow: "report".into(),
            inputs: "{\"item\": \"paper\"}".into(),
            timing: "cron".into(),
            cron: "0 2 * * *".into(),
            time_zone: "Europe/Berlin".into(),
            missed: "skip".into(),
            overlap: "allow".into(),
            ..Form::default()
        }
    }

    #[test]
    fn a_form_becomes_the_body_the_server_takes() {
        let body = schedule_body(&form()).unwrap();
        assert_eq!(
            body,
            json!({
                "name": "nightly", "workflow": "report", "inputs": {"item": "paper"},
                "cron": "0 2 * * *", "time_zone": "Europe/Berlin",
                "missed": "skip", "overlap": "allow", "paused": false,
            })
        );
        let task = Form {
            target: "task".into(),
            task_type: "echo".into(),
            payload: String::new(),
            timing: "once".into(),
            at: "2026-12-24T18:00".into(),
            ..form()
        };
        let body = schedule_body(&task).unwrap();
        assert_eq!(body["task"], json!({"task_type": "echo", "payload": {}}));
        assert_eq!(body["at"], "2026-12-24T18:00:00Z");
        assert!(body.get("workflow").is_none() && body.get("cron").is_none());
    }

    #[test]
    fn bad_json_and_a_missing_time_are_refused_by_their_field() {
        let field = |f: Form| schedule_body(&f).unwrap_err().field;
        assert_eq!(
            field(Form {
                inputs: "{".into(),
                ..form()
            })
            .as_deref(),
            Some("inputs")
        );
        assert_eq!(
            field(Form {
                inputs: "[1]".into(),
                ..form()
            })
            .as_deref(),
            Some("inputs")
        );
        let task = Form {
            target: "task".into(),
            payload: "nope".into(),
            ..form()
        };
        assert_eq!(field(task).as_deref(), Some("task.payload"));
        let once = Form {
            timing: "once".into(),
            ..form()
        };
        assert_eq!(field(once).as_deref(), Some("at"));
    }

    #[test]
    fn times_and_refusals_find_their_place() {
        assert_eq!(rfc3339_utc("2026-12-24T18:00:30"), "2026-12-24T18:00:30Z");
        assert_eq!(
            rfc3339_utc("2026-12-24T18:00:00+01:00"),
            "2026-12-24T18:00:00+01:00"
        );
        let refusal = |field: Option<&str>, status| ApiFailure {
            status,
            message: String::new(),
            field: field.map(String::from),
            errors: Vec::new(),
        };
        assert_eq!(
            field_of(&refusal(Some("task.payload.x"), 422)),
            Some("payload")
        );
        assert_eq!(
            field_of(&refusal(Some("task.task_type"), 422)),
            Some("task_type")
        );
        assert_eq!(
            field_of(&refusal(Some("inputs.amount"), 422)),
            Some("inputs")
        );
        assert_eq!(field_of(&refusal(Some("version"), 422)), Some("workflow"));
        assert_eq!(field_of(&refusal(None, 409)), Some("name"));
        assert_eq!(field_of(&refusal(None, 403)), None);
        assert!(!shown("cron", "workflow", "once"));
        assert!(shown("payload", "task", "cron"));
    }
}
