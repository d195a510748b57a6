//! Workflow runs, newest first, paged, found by status, workflow, starter,
//! text and time; a child run (started by a `workflow` step) names its parent.

use drover_protocol::workflow::{RunList, RunStatus};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::{self, enc};
use crate::components::{started_by_view, Badge, Empty, ErrorBox, Loading, PauseLive};
use crate::format::{ago, duration_us};
use crate::live::{use_live, Topic};
use crate::paging::{self, page_links, range_line, sort_heading, with_query, PAGE, SINCE};

/// The list's filters, as the page's URL carries them.
#[derive(Debug, Clone, Default, PartialEq)]
struct Filter {
    statuses: Vec<String>,
    /// A run id, or text in its workflow, starter or inputs.
    text: Option<String>,
    workflow: Option<String>,
    started_by: Option<String>,
    since: Option<String>,
    /// `word` or `-word` of [`SORTABLE`]; none: newest first.
    sort: Option<String>,
}

/// The columns the list sorts by, as the API names them.
const SORTABLE: [&str; 4] = ["id", "workflow", "status", "started_by"];

impl Filter {
    fn from_query(q: &leptos_router::params::ParamsMap) -> Self {
        let known: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
        Self {
            statuses: paging::statuses(q, &known),
            text: paging::param(q, "q"),
            workflow: paging::param(q, "workflow"),
            started_by: paging::param(q, "started_by"),
            since: paging::since(q),
            sort: paging::sort(q, &SORTABLE),
        }
    }

    fn is_set(&self) -> bool {
        *self != Self::default()
    }

    /// The pairs the page's URL and the API's share.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if !self.statuses.is_empty() {
            p.push(("status", self.statuses.join(",")));
        }
        for (k, v) in [
            ("q", &self.text),
            ("workflow", &self.workflow),
            ("started_by", &self.started_by),
            ("sort", &self.sort),
        ] {
            if let Some(v) = v {
                p.push((k, v.clone()));
            }
        }
        p
    }

    /// This filter in another order.
    fn sorted(&self, sort: Option<String>) -> Self {
        Self {
            sort,
            ..self.clone()
        }
    }

    fn href(&self, before: Option<i64>) -> String {
        let mut p = self.pairs();
        if let Some(s) = &self.since {
            p.push(("since", s.clone()));
        }
        if let Some(b) = before {
            p.push(("before", b.to_string()));
        }
        with_query("/runs", &p)
    }

    fn api_path(&self, before: Option<i64>, now_us: i64) -> String {
        let mut p = self.pairs();
        p.push(("limit", PAGE.to_string()));
        if let Some(after) = paging::created_after(self.since.as_deref(), now_us) {
            p.push(("created_after", after));
        }
        if let Some(b) = before {
            p.push(("before_id", b.to_string()));
        }
        with_query("/runs", &p)
    }
}

#[component]
pub fn Runs() -> impl IntoView {
    let live = use_live();
    let query = use_query_map();
    let filter = Memo::new(move |_| query.with(Filter::from_query));
    let position = Memo::new(move |_| query.with(paging::position));
    let paused = RwSignal::new(false);
    let changes = live.watch_unless(Topic::Runs, paused);
    let runs = Resource::new(
        move || (changes.get(), filter.get(), position.get().0),
        move |(_, filter, before)| {
            let path = filter.api_path(before, live.now_us.get_untracked());
            async move { api::fetch(&path).await }
        },
    );
    let text = move |get: fn(&Filter) -> Option<String>| {
        move || filter.with(|f| get(f).unwrap_or_default())
    };
    view! {
        <Title text="Runs"/>
        <h1 class="page-title">"Runs"</h1>
        <form class="filters" method="get" action="/runs" data-testid="run-filters">
            <fieldset class="statuses">
                <legend>"Status"</legend>
                {RunStatus::ALL.map(|s| {
                    let word = s.as_str();
                    view! {
                        <label><input type="checkbox" name="status" value=word data-testid=format!("filter-status-{word}")
                            checked=move || filter.with(|f| f.statuses.iter().any(|x| x == word))/>{word.replace('_', " ")}</label>
                    }
                }).collect_view()}
            </fieldset>
            <label>"Search " <input type="search" name="q" data-testid="filter-q" maxlength="200"
                placeholder="id, workflow, starter or inputs" value=text(|f| f.text.clone())/></label>
            <label>"Workflow " <input name="workflow" data-testid="filter-workflow" value=text(|f| f.workflow.clone()) placeholder="any"/></label>
            <label>"Started by " <input name="started_by" data-testid="filter-started-by" value=text(|f| f.started_by.clone()) placeholder="anyone"/></label>
            <label>"Started "
                <select name="since" data-testid="filter-since">
                    <option value="" selected=move || filter.with(|f| f.since.is_none())>"any time"</option>
                    {SINCE.map(|(k, label, _)| view! {
                        <option value=k selected=move || filter.with(|f| f.since.as_deref() == Some(k))>{label}</option>
                    }).collect_view()}
                </select>
            </label>
            {move || filter.with(|f| f.sort.clone()).map(|s| view! { <input type="hidden" name="sort" value=s/> })}
            <button type="submit" data-testid="filter">"Filter"</button>
            {move || filter.with(Filter::is_set).then(|| view! { <a href="/runs" data-testid="clear-filter">"Show all"</a> })}
            <PauseLive paused/>
        </form>
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                let (f, first) = (filter.get_untracked(), position.get_untracked().1);
                match api::parse::<RunList>(runs.await) {
                    Ok(l) if l.runs.is_empty() && f.is_set() => view! {
                        <Empty title="No run matches these filters"><a href="/runs">"Show all runs"</a></Empty>
                    }.into_any(),
                    Ok(l) if l.runs.is_empty() => view! {
                        <Empty title="No runs">"Start one from a " <a href="/workflows">"workflow"</a> "."</Empty>
                    }.into_any(),
                    Ok(l) => {
                        let shown = l.runs.len();
                        let links = page_links(first, shown, l.next_before_id, { let f = f.clone(); move |b| f.href(b) });
                        view! {
                        {range_line(first, shown, l.total, l.total_more)}
                        <div class="table-wrap"><table class="data" data-testid="runs">
                            <thead><tr>{
                                let counted = (l.total, l.total_more);
                                let current = f.sort.as_deref();
                                let href = |sort: Option<String>| f.sorted(sort).href(None);
                                view! {
                                    {sort_heading("Run", "id", current, counted, &href)}
                                    {sort_heading("Workflow", "workflow", current, counted, &href)}
                                    {sort_heading("Status", "status", current, counted, &href)}
                                    {sort_heading("Started by", "started_by", current, counted, &href)}
                                    <th>"Started"</th><th>"Took"</th>
                                }
                            }</tr></thead>
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
                        {links}
                    }.into_any()
                    }
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                }
            })}
        </Transition>
    }
}
