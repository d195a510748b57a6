//! Workflow definitions, their versions, uploading a new one, and each
//! workflow's page: a version's graph before any run, its source and the
//! changes from another version, how its runs went, and the start-run form
//! generated from the definition's inputs (prefilled from an earlier run
//! with `?from_run=`).

mod history;
mod preview;
mod source;

use std::collections::BTreeMap;

use drover_protocol::workflow::{RunSummary, UploadedWorkflow, WorkflowList, WorkflowVersion};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use serde_json::{Map, Value};

use crate::api::{self, enc, ApiFailure};
use crate::components::{can_operate, my_name, session, use_me, Empty, ErrorBox, Loading};
use crate::dag::steps_of;
use crate::format::utc;
use crate::live::{use_live, Topic};
use history::RecentRuns;
use preview::GraphPreview;
use source::{page_href, Changes, SourceView};

#[component]
pub fn Workflows() -> impl IntoView {
    let live = use_live();
    let me = use_me();
    let list = Resource::new(
        move || live.watch(Topic::Workflows),
        |_| api::fetch("/workflows"),
    );
    view! {
        <Title text="Workflows"/>
        <h1 class="page-title">"Workflows"</h1>
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                match api::parse::<WorkflowList>(list.await) {
                    Ok(l) if l.workflows.is_empty() => view! {
                        <Empty title="No workflows yet">"Upload a definition below, or with " <code>"drover workflow upload FILE"</code> "."</Empty>
                    }.into_any(),
                    Ok(l) => view! {
                        <div class="table-wrap"><table class="data" data-testid="workflows">
                            <thead><tr><th>"Workflow"</th><th>"Latest"</th><th>"Steps"</th><th>"Description"</th><th>"Uploaded"</th></tr></thead>
                            <tbody>
                                {l.workflows.into_iter().map(|w| {
                                    let steps = steps_of(&w.definition).len();
                                    view! {
                                        <tr data-testid="workflow-row">
                                            <td><a href=format!("/workflows/{}", enc(&w.name))>{w.name.clone()}</a></td>
                                            <td>"v" {w.version}</td>
                                            <td class="n">{steps}</td>
                                            <td>{w.description.clone()}</td>
                                            <td class="muted">{w.created_by.clone()} ", " {utc(w.created_at_us)}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table></div>
                    }.into_any(),
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                }
            })}
        </Transition>
        // Outside the list's transition: a list refresh must not reset the form.
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move { can_operate(&session(me.await)).then(|| view! { <Upload/> }) })}
        </Suspense>
    }
}

/// Paste a YAML or JSON definition; a changed one becomes a new version.
#[component]
fn Upload() -> impl IntoView {
    let text = RwSignal::new(String::new());
    let navigate = use_navigate();
    let upload = Action::new(move |body: &String| {
        let body = body.clone();
        async move { api::post_text::<UploadedWorkflow>("/workflows", body).await }
    });
    // Straight to the new version, unless the server warned: then the
    // warnings stay on screen with a link, since a run would wait at those
    // steps in silence.
    Effect::new(move |_| {
        if let Some(Ok(up)) = upload.value().get() {
            if up.warnings.is_empty() {
                navigate(
                    &format!("/workflows/{}", enc(&up.workflow.name)),
                    Default::default(),
                );
            }
        }
    });
    let warned = move || {
        upload
            .value()
            .get()
            .and_then(Result::ok)
            .filter(|up| !up.warnings.is_empty())
    };
    view! {
        <section class="card">
            <h2>"Upload a definition"</h2>
            <form on:submit=move |ev| { ev.prevent_default(); upload.dispatch(text.get()); }>
                <textarea name="definition" rows="10" data-testid="definition" placeholder="name: my-workflow\nsteps:\n  - id: hello\n    type: task\n    task_type: echo"
                    prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))></textarea>
                {move || upload.value().get().and_then(Result::err).map(|e| view! { <p class="field-error" role="alert" data-testid="upload-error">{e.message}</p> })}
                {move || warned().map(|up| view! {
                    <div class="notice warning" role="status" data-testid="upload-warnings">
                        <p>{format!("Uploaded {} v{}, but no registered agent could take some of its steps:", up.workflow.name, up.workflow.version)}</p>
                        <ul>{up.warnings.iter().map(|w| view! { <li>{w.clone()}</li> }).collect_view()}</ul>
                        <a href=format!("/workflows/{}", enc(&up.workflow.name)) data-testid="open-uploaded">"Open " {up.workflow.name.clone()}</a>
                    </div>
                })}
                <button type="submit" class="primary" data-testid="upload" disabled=move || upload.pending().get()>"Upload"</button>
            </form>
        </section>
    }
}

#[component]
pub fn WorkflowPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let me = use_me();
    let name = Memo::new(move |_| params.with(|p| p.get("name")).unwrap_or_default());
    let number = move |key: &str| {
        query
            .with(|q| q.get(key))
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    // Memos: the page redraws when the version changes, not when only the
    // compared pair (`diff`) does.
    let wanted = Memo::new(move |_| number("version"));
    let from_run = Memo::new(move |_| number("from_run"));
    let versions = Resource::new(
        move || name.get(),
        |name| async move { api::fetch(&format!("/workflows/{}", enc(&name))).await },
    );
    // The run whose inputs prefill the form ("null" when none is asked for).
    let earlier = Resource::new(
        move || from_run.get(),
        |id| async move {
            match id {
                Some(id) => api::fetch(&format!("/runs/{id}")).await,
                None => Ok("null".to_string()),
            }
        },
    );
    view! {
        <Title text=move || format!("Workflow {}", name.get())/>
        <p class="crumbs"><a href="/workflows">"Workflows"</a> " / " {move || name.get()}</p>
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                let (versions, me) = (api::parse::<WorkflowList>(versions.await), session(me.await));
                let earlier = earlier.await;
                let wanted = wanted.get();
                match versions {
                    Ok(l) => {
                        let mut all = l.workflows;
                        all.sort_by_key(|w| -w.version);
                        let chosen = wanted.and_then(|v| all.iter().find(|w| w.version == v).cloned()).or_else(|| all.first().cloned());
                        let Some(wf) = chosen else {
                            return view! { <Empty title="No versions">""</Empty> }.into_any();
                        };
                        let missing = wanted.filter(|v| *v != wf.version);
                        let operate = can_operate(&me);
                        let numbers: Vec<i64> = all.iter().map(|w| w.version).collect();
                        let previous = numbers.iter().copied().filter(|v| *v < wf.version).max();
                        let name = wf.name.clone();
                        view! {
                            <section class="card">
                                <h1>{wf.name.clone()} " " <span class="muted">"v" {wf.version}</span></h1>
                                {missing.map(|v| view! {
                                    <p class="notice warning" role="status" data-testid="no-such-version">
                                        {format!("There is no v{v}; showing v{}.", wf.version)}</p>
                                })}
                                <p>{wf.description.clone()}</p>
                                <p class="versions">"Versions: "
                                    {all.iter().map(|w| {
                                        let current = w.version == wf.version;
                                        view! {
                                            <a href=page_href(&wf.name, w.version, None) class:current=current
                                                aria-current=current.then_some("page")>"v" {w.version}</a> " "
                                        }
                                    }).collect_view()}
                                    <span class="muted">{format!("(v{} uploaded by {}, {})", wf.version, wf.created_by, utc(wf.created_at_us))}</span>
                                </p>
                                <h2>"Steps"</h2>
                                <GraphPreview definition=wf.definition.clone()/>
                                <StepList wf=wf.clone()/>
                            </section>
                            {if operate {
                                view! { <StartForm wf=wf.clone() earlier=from_run.get_untracked().map(|id| (id, earlier))/> }.into_any()
                            } else {
                                view! { <p class="muted">{my_name(&me)} " may look but not start runs (that needs operator or admin)."</p> }.into_any()
                            }}
                            <RecentRuns name=name.clone() operate/>
                            <SourceView name=name.clone() version=wf.version previous/>
                            // One version has nothing to compare with.
                            {(numbers.len() > 1).then(|| view! { <Changes name versions=numbers shown=wf.version/> })}
                        }.into_any()
                    }
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn StepList(wf: WorkflowVersion) -> impl IntoView {
    let steps = steps_of(&wf.definition);
    view! {
        <ol class="step-list">
            {steps.into_iter().map(|s| view! {
                <li><code>{s.id.clone()}</code> " " <span class="chip">{s.kind.clone()}</span>
                    {s.fan_out.then(|| view! { <span class="chip">"for each"</span> })}
                    {s.conditional.then(|| view! { <span class="chip">"when"</span> })}
                    {s.wait.as_ref().map(|w| view! { <span class="muted">" " {w.summary()}</span> })}
                    {(!s.depends_on.is_empty()).then(|| view! { <span class="muted">" after " {s.depends_on.join(", ")}</span> })}
                </li>
            }).collect_view()}
        </ol>
    }
}

/// One input of the start form, from the definition.
#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    kind: String,
    required: bool,
    default: Option<Value>,
    values: Vec<String>,
    description: Option<String>,
}

/// The inputs in the order the definition declares them (`input_order`;
/// by name for a version stored before it was kept).
fn fields_of(definition: &Value) -> Vec<Field> {
    let order: Vec<&str> = definition
        .get("input_order")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    definition
        .get("inputs")
        .and_then(Value::as_object)
        .map(|inputs| {
            let mut named: Vec<(&String, &Value)> = inputs.iter().collect();
            named.sort_by_key(|(name, _)| {
                order.iter().position(|o| o == name).unwrap_or(usize::MAX)
            });
            named
                .into_iter()
                .map(|(name, spec)| Field {
                    name: name.clone(),
                    kind: spec
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("string")
                        .to_string(),
                    required: spec
                        .get("required")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    default: spec.get("default").cloned().filter(|v| !v.is_null()),
                    values: spec
                        .get("values")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default(),
                    description: spec
                        .get("description")
                        .and_then(Value::as_str)
                        .map(String::from),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn default_text(f: &Field) -> String {
    match &f.default {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// The form's text turned into typed inputs. A number that does not parse
/// is sent as typed, so the server's message says what is wrong with it.
fn typed_inputs(fields: &[Field], values: &BTreeMap<String, String>) -> Map<String, Value> {
    let mut out = Map::new();
    for f in fields {
        let raw = values.get(&f.name).cloned().unwrap_or_default();
        let value = match f.kind.as_str() {
            "boolean" => Value::Bool(raw == "true"),
            _ if raw.trim().is_empty() => continue,
            "number" => raw
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|n| {
                    serde_json::Number::from_f64(n).map(|n| {
                        if n.as_f64()
                            .is_some_and(|x| x.fract() == 0.0 && x.abs() < 9e15)
                        {
                            Value::from(n.as_f64().unwrap_or_default() as i64)
                        } else {
                            Value::Number(n)
                        }
                    })
                })
                .unwrap_or(Value::String(raw)),
            _ => Value::String(raw),
        };
        out.insert(f.name.clone(), value);
    }
    out
}

/// Whether a refusal is about the inputs, which the fields show.
fn is_about_inputs(e: &ApiFailure) -> bool {
    let about = |f: &str| f.starts_with("inputs.");
    e.field.as_deref().is_some_and(about) || e.errors.iter().any(|(f, _)| about(f))
}

/// An earlier run's input value as the form's text for it.
fn input_text(f: &Field, v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null if f.kind == "boolean" => "false".into(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The form's first text for `f`: the earlier run's value, else the default.
fn initial_text(f: &Field, earlier: Option<&Map<String, Value>>) -> String {
    if let Some(v) = earlier.and_then(|inputs| inputs.get(&f.name)) {
        return input_text(f, v);
    }
    if f.kind == "boolean" {
        if f.default == Some(Value::Bool(true)) {
            "true".into()
        } else {
            "false".into()
        }
    } else {
        default_text(f)
    }
}

/// Where the form's values came from, when `?from_run=` asked for a run's.
fn from_run_notice(
    wf: &WorkflowVersion,
    fields: &[Field],
    earlier: &Result<RunSummary, (i64, ApiFailure)>,
) -> AnyView {
    let run =
        match earlier {
            Err((id, e)) => return view! {
                <p class="notice warning" role="status" data-testid="from-run-notice">
                    {format!("Cannot read run #{id} ({}); the form shows the defaults.", e.message)}
                </p>
            }
            .into_any(),
            Ok(run) => run,
        };
    if run.workflow != wf.name {
        return view! {
            <p class="notice warning" role="status" data-testid="from-run-notice">
                {format!("Run #{} is a run of {}, not {}; the form shows the defaults. ", run.id, run.workflow, wf.name)}
                <a href=format!("/workflows/{}?from_run={}", enc(&run.workflow), run.id)>"Run " {run.workflow.clone()} " again"</a>
            </p>
        }
        .into_any();
    }
    let link = format!("/runs/{}", run.id);
    if run.version == wf.version {
        return view! {
            <p class="notice info" role="status" data-testid="from-run-notice">
                "The inputs of " <a href=link>"run #" {run.id}</a> {format!(" (v{}); change any before starting.", run.version)}
            </p>
        }
        .into_any();
    }
    let dropped: Vec<String> = run
        .inputs
        .as_object()
        .map(|inputs| {
            inputs
                .keys()
                .filter(|k| !fields.iter().any(|f| &f.name == *k))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let same_version = format!(
        "{}&from_run={}",
        source::page_href(&wf.name, run.version, None),
        run.id
    );
    view! {
        <div class="notice warning" role="status" data-testid="from-run-notice">
            <p>"The inputs of " <a href=link>"run #" {run.id}</a>
                {format!(", which ran v{}: this form starts v{}. ", run.version, wf.version)}
                <a href=same_version data-testid="start-run-version">{format!("Start v{} instead", run.version)}</a>
            </p>
            {(!dropped.is_empty()).then(|| view! {
                <p data-testid="inputs-dropped">{format!("v{} does not take {}, so {} left out.", wf.version, dropped.join(", "), if dropped.len() == 1 { "it is" } else { "they are" })}</p>
            })}
        </div>
    }
    .into_any()
}

#[component]
fn StartForm(
    wf: WorkflowVersion,
    /// `?from_run=`: that run's id and what reading it gave.
    earlier: Option<(i64, api::ApiResult<String>)>,
) -> impl IntoView {
    let fields = fields_of(&wf.definition);
    let earlier = earlier.map(|(id, read)| api::parse::<RunSummary>(read).map_err(|e| (id, e)));
    let prefill = earlier
        .as_ref()
        .and_then(|r| r.as_ref().ok())
        .filter(|r| r.workflow == wf.name)
        .and_then(|r| r.inputs.as_object());
    let values = RwSignal::new(
        fields
            .iter()
            .map(|f| (f.name.clone(), initial_text(f, prefill)))
            .collect::<BTreeMap<_, _>>(),
    );
    let notice = earlier.as_ref().map(|e| from_run_notice(&wf, &fields, e));
    let navigate = use_navigate();
    let (name, version) = (wf.name.clone(), wf.version);
    let start = Action::new({
        let fields = fields.clone();
        move |_: &()| {
            let inputs = typed_inputs(&fields, &values.get_untracked());
            let body =
                serde_json::json!({ "workflow": name, "version": version, "inputs": inputs });
            async move { api::post::<RunSummary>("/runs", &body).await }
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(run)) = start.value().get() {
            navigate(&format!("/runs/{}", run.id), Default::default());
        }
    });
    // The server names every input at fault at once; each shows by its field.
    let error_for = move |field: String| {
        move || match start.value().get() {
            Some(Err(e)) => e.message_for(&format!("inputs.{field}")),
            _ => None,
        }
    };
    let general_error = move || match start.value().get() {
        Some(Err(e)) if !is_about_inputs(&e) => Some(e.message),
        _ => None,
    };
    view! {
        <section class="card">
            <h2>"Start a run"</h2>
            {notice}
            <form class="start-form" data-testid="start-form" on:submit=move |ev| { ev.prevent_default(); start.dispatch(()); }>
                {fields.is_empty().then(|| view! { <p class="muted">"This workflow takes no inputs."</p> })}
                {fields.into_iter().map(|f| {
                    let name = f.name.clone();
                    let set = {
                        let name = name.clone();
                        move |v: String| values.update(|m| { m.insert(name.clone(), v); })
                    };
                    let current = {
                        let name = name.clone();
                        move || values.with(|m| m.get(&name).cloned().unwrap_or_default())
                    };
                    let control = match f.kind.as_str() {
                        "boolean" => {
                            let current = current.clone();
                            view! {
                                <input type="checkbox" name=name.clone() data-testid=format!("input-{name}")
                                    prop:checked=move || current() == "true"
                                    on:change=move |ev| set(event_target_checked(&ev).to_string())/>
                            }.into_any()
                        }
                        "enum" => view! {
                            <select name=name.clone() data-testid=format!("input-{name}") required=f.required
                                on:change=move |ev| set(event_target_value(&ev))>
                                {(!f.required).then(|| view! { <option value="">"—"</option> })}
                                {f.values.iter().map(|v| {
                                    let selected = current() == *v;
                                    view! { <option value=v.clone() selected=selected>{v.clone()}</option> }
                                }).collect_view()}
                            </select>
                        }.into_any(),
                        kind => view! {
                            <input type="text" inputmode=if kind == "number" { "decimal" } else { "text" }
                                name=name.clone() data-testid=format!("input-{name}") required=f.required
                                prop:value=current.clone() on:input=move |ev| set(event_target_value(&ev))/>
                        }.into_any(),
                    };
                    let error = error_for(name.clone());
                    let has_error = error.clone();
                    view! {
                        <div class="field" class:has-error=move || has_error().is_some()>
                            <label>
                                <span class="field-name">{name.clone()} {f.required.then_some(" *")}</span>
                                <span class="muted">" " {f.kind.clone()}</span>
                                {control}
                            </label>
                            {f.description.clone().map(|d| view! { <span class="hint">{d}</span> })}
                            {move || error().map(|m| view! { <span class="field-error" role="alert" data-testid=format!("error-{}", f.name)>{m}</span> })}
                        </div>
                    }
                }).collect_view()}
                {move || general_error().map(|m| view! { <p class="field-error" role="alert">{m}</p> })}
                <button type="submit" class="primary" data-testid="start" disabled=move || start.pending().get()>"Start run"</button>
            </form>
        </section>
    }
}
