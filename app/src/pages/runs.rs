//! Workflow runs, newest first, filterable by status and workflow; a
//! child run (started by a `workflow` step) names its parent.

use drover_protocol::workflow::{RunList, RunStatus};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::{self, enc};
use crate::components::{started_by_view, Badge, Empty, ErrorBox, Loading, PauseLive};
use crate::format::{ago, duration_us};
use crate::live::{use_live, Topic};

#[component]
pub fn Runs() -> impl IntoView {
    let live = use_live();
    let query = use_query_map();
    let status = move || query.with(|q| q.get("status")).filter(|s| !s.is_empty());
    let workflow = move || query.with(|q| q.get("workflow")).filter(|s| !s.is_empty());
    let paused = RwSignal::new(false);
    let changes = live.watch_unless(Topic::Runs, paused);
    let runs = Resource::new(
        move || (changes.get(), status(), workflow()),
        |(_, status, workflow)| async move {
            let mut path = "/runs?limit=200".to_string();
            if let Some(s) = status {
                path.push_str(&format!("&status={}", enc(&s)));
            }
            if let Some(w) = workflow {
                path.push_str(&format!("&workflow={}", enc(&w)));
            }
            api::fetch(&path).await
        },
    );
    view! {
        <Title text="Runs"/>
        <h1 class="page-title">"Runs"</h1>
        <form class="filters" method="get" action="/runs">
            <label>"Status "
                <select name="status">
                    <option value="" selected=move || status().is_none()>"any"</option>
                    {RunStatus::ALL.map(|s| view! { <option value=s.as_str() selected=move || status().as_deref() == Some(s.as_str())>{s.as_str().replace('_', " ")}</option> }).collect_view()}
                </select>
            </label>
            <label>"Workflow " <input name="workflow" value=move || workflow().unwrap_or_default() placeholder="any"/></label>
            <button type="submit">"Filter"</button>
            <PauseLive paused/>
        </form>
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                match api::parse::<RunList>(runs.await) {
                    Ok(l) if l.runs.is_empty() => view! {
                        <Empty title="No runs">"Start one from a " <a href="/workflows">"workflow"</a> "."</Empty>
                    }.into_any(),
                    Ok(l) => view! {
                        <div class="table-wrap"><table class="data" data-testid="runs">
                            <thead><tr><th>"Run"</th><th>"Workflow"</th><th>"Status"</th><th>"Started by"</th><th>"Started"</th><th>"Took"</th></tr></thead>
                            <tbody>
                                {l.runs.into_iter().map(|r| {
                                    let created = r.created_at_us;
                                    view! {
                                        <tr data-testid="run-row">
                                            <td><a href=format!("/runs/{}", r.id)>"#" {r.id}</a>
                                                {r.parent_run_id.map(|p| view! {
                                                    <span class="child-of" data-testid="child-of" title=format!("Started by a workflow step of run #{p}")>
                                                        "↳ of " <a href=format!("/runs/{p}")>"#" {p}</a>
                                                    </span>
                                                })}
                                            </td>
                                            <td><a href=format!("/workflows/{}?version={}", enc(&r.workflow), r.version)>{r.workflow.clone()} " v" {r.version}</a></td>
                                            <td><Badge status=r.status.as_str()/></td>
                                            <td>{started_by_view(r.started_by.clone())}</td>
                                            <td class="muted">{move || ago(live.now_us.get(), created)}</td>
                                            <td class="muted">{r.finished_at_us.map(|f| duration_us(f - created))}</td>
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
    }
}
