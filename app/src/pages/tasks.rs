//! The queue: tasks in the order the scheduler takes them, why each has its
//! priority, and who ran it at what load.

use std::collections::{BTreeSet, HashMap};

use drover_protocol::api::{
    AgentGap, AgentList, AgentStatus, AgentView, ServerStatus, TaskDetail, TaskList, TaskStatus,
    TaskView, WaitReason, Waiting,
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::{self, enc};
use crate::components::{
    can_operate, outcome_view, session, use_me, Badge, ConfirmButton, Empty, ErrorBox, Loading,
    PauseLive, Time,
};
use crate::format::{ago, duration_us, fixed, json, num, until, utc};
use crate::live::{use_live, Topic};
use crate::log_view::TaskLog;
use crate::pages::{route_id, subject, Missing, NotAnId};
use crate::paging::{self, page_links, range_line, sort_heading, with_query, PAGE, SINCE};

const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

/// α, β, γ, fetched once per page (`/status`).
fn weights() -> Resource<api::ApiResult<String>> {
    Resource::new(|| (), |_| api::fetch("/status"))
}

fn weights_of(fetched: api::ApiResult<String>) -> Option<[f64; 3]> {
    api::parse::<ServerStatus>(fetched)
        .ok()
        .map(|s| s.priority_weights)
}

/// `P = α·u + β·t + γ·i = …` with the numbers.
pub fn priority_formula(t: &TaskView, w: Option<[f64; 3]>) -> String {
    match w {
        Some([a, b, c]) => format!(
            "{}·{} + {}·{} + {}·{} = {}",
            num(a),
            t.urgency,
            num(b),
            t.time_sensitivity,
            num(c),
            t.importance,
            num(t.priority)
        ),
        None => format!(
            "urgency {}, time sensitivity {}, importance {}",
            t.urgency, t.time_sensitivity, t.importance
        ),
    }
}

type TaskAction = Action<(i64, &'static str), api::ApiResult<String>>;

/// The task and verb (`cancel`, `retry`) whose confirmation is showing.
type Armed = RwSignal<Option<(i64, &'static str)>>;

fn task_action() -> TaskAction {
    Action::new(move |(id, verb): &(i64, &'static str)| {
        let (id, verb) = (*id, *verb);
        async move {
            api::post::<serde_json::Value>(&format!("/tasks/{id}/{verb}"), &serde_json::json!({}))
                .await
                .map(|_| match verb {
                    "cancel" => format!("Task {id} cancelled."),
                    _ => format!("Task {id} queued again."),
                })
        }
    })
}

/// The list's filters, as the page's URL carries them (so a filtered list
/// can be bookmarked and shared).
#[derive(Debug, Clone, Default, PartialEq)]
struct Filter {
    statuses: Vec<String>,
    /// An id, or text in the type or payload.
    text: Option<String>,
    task_type: Option<String>,
    /// One of [`SINCE`]'s words.
    since: Option<String>,
    /// The queue's tab ([`QUEUE_TABS`]); only when the list is the queue.
    state: Option<String>,
    /// `word` or `-word` of [`SORTABLE`]; none: newest first (the queue
    /// in claim order).
    sort: Option<String>,
}

/// The columns the list sorts by, as the API names them.
const SORTABLE: [&str; 5] = ["id", "type", "status", "priority", "attempts"];

/// The queue split by what can happen now: URL word, tab label, what the
/// tab holds. "ready" is what the scheduler takes next, in its order.
const QUEUE_TABS: [(&str, &str, &str); 4] = [
    ("ready", "Ready", "An agent may take these now, in the order the scheduler takes them (highest rank first: P plus ageing)"),
    ("scheduled", "Scheduled", "Not before a set time: a delay, or a retry's backoff"),
    ("held", "Held", "Waiting for a slot of their concurrency key or a rate limit's token"),
    ("all", "All queued", "Every queued task, in claim order"),
];

impl Filter {
    fn from_query(q: &leptos_router::params::ParamsMap) -> Self {
        Self {
            statuses: paging::statuses(q, &STATUSES),
            text: paging::param(q, "q"),
            task_type: paging::param(q, "type"),
            since: paging::since(q),
            state: paging::param(q, "state").filter(|w| QUEUE_TABS.iter().any(|(k, _, _)| k == w)),
            sort: paging::sort(q, &SORTABLE),
        }
    }

    fn is_set(&self) -> bool {
        *self != Self::default()
    }

    /// The list is the queue (its tabs show).
    fn is_queue(&self) -> bool {
        self.statuses == ["queued"]
    }

    /// The queue's tab: "ready" unless another is chosen.
    fn tab(&self) -> Option<&str> {
        self.is_queue()
            .then(|| self.state.as_deref().unwrap_or("ready"))
    }

    /// This filter on another tab of the queue.
    fn on_tab(&self, tab: &str) -> Self {
        Self {
            state: Some(tab.to_string()),
            ..self.clone()
        }
    }

    /// `k=v` pairs shared by the page's URL and the API's.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if !self.statuses.is_empty() {
            p.push(("status", self.statuses.join(",")));
        }
        if let Some(t) = &self.text {
            p.push(("q", t.clone()));
        }
        if let Some(s) = &self.sort {
            p.push(("sort", s.clone()));
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

    /// The list is in the scheduler's order, which the headings keep.
    fn in_claim_order(&self) -> bool {
        self.is_queue() && self.sort.is_none()
    }

    /// This list's page URL, from `before` on.
    fn href(&self, before: Option<i64>) -> String {
        let mut p = self.pairs();
        if let Some(t) = &self.task_type {
            p.push(("type", t.clone()));
        }
        if let Some(s) = &self.since {
            p.push(("since", s.clone()));
        }
        if let (true, Some(s)) = (self.is_queue(), &self.state) {
            p.push(("state", s.clone()));
        }
        if let Some(b) = before {
            p.push(("before", b.to_string()));
        }
        with_query("/tasks", &p)
    }

    /// The API call for one page of `limit` rows.
    fn api_path(&self, before: Option<i64>, now_us: i64, limit: usize) -> String {
        let mut p = self.pairs();
        p.push(("limit", limit.to_string()));
        if let Some(tab) = self.tab().filter(|t| *t != "all") {
            p.push(("state", tab.to_string()));
        }
        if let Some(t) = &self.task_type {
            p.push(("task_type", t.clone()));
        }
        if let Some(after) = paging::created_after(self.since.as_deref(), now_us) {
            p.push(("created_after", after));
        }
        if let Some(b) = before {
            p.push(("before_id", b.to_string()));
        }
        with_query("/tasks", &p)
    }
}

/// The tasks ticked on the list, kept across live refreshes and pages.
type Selection = RwSignal<BTreeSet<i64>>;

type BulkAction = Action<(Vec<i64>, &'static str), api::ApiResult<String>>;

/// Cancels or retries each selected task in turn, as its own call (each
/// checked and audited like a single one), and says what came of it:
/// tasks that finished or changed meanwhile are reported, not hidden.
fn bulk_action() -> BulkAction {
    Action::new(move |(ids, verb): &(Vec<i64>, &'static str)| {
        let (ids, verb) = (ids.clone(), *verb);
        async move {
            let mut done = 0;
            let mut refused = Vec::new();
            for id in &ids {
                let path = format!("/tasks/{id}/{verb}");
                match api::post::<serde_json::Value>(&path, &serde_json::json!({})).await {
                    Ok(_) => done += 1,
                    Err(e) if e.status == 0 || e.status >= 500 => return Err(e),
                    Err(e) => refused.push(format!("{id} ({})", e.message)),
                }
            }
            let did = if verb == "cancel" {
                "cancelled"
            } else {
                "queued again"
            };
            let mut msg = format!("{done} of {} tasks {did}.", ids.len());
            if !refused.is_empty() {
                msg.push_str(&format!(" Not changed: {}.", refused.join(", ")));
            }
            Ok(msg)
        }
    })
}

#[component]
pub fn Tasks() -> impl IntoView {
    let live = use_live();
    let me = use_me();
    let query = use_query_map();
    let filter = Memo::new(move |_| query.with(Filter::from_query));
    let position = Memo::new(move |_| query.with(paging::position));
    let weights = weights();
    let agents = Resource::new(move || live.watch(Topic::Agents), |_| api::fetch("/agents"));
    let act = task_action();
    let bulk = bulk_action();
    let selected: Selection = RwSignal::new(BTreeSet::new());
    let bulk_armed: RwSignal<Option<&'static str>> = RwSignal::new(None);
    // Done: the selection has served.
    Effect::new(move |_| {
        if bulk.value().with(Option::is_some) {
            selected.set(BTreeSet::new());
        }
    });
    let paused = RwSignal::new(false);
    let changes = live.watch_unless(Topic::Tasks, paused);
    // The reader's own cancel or retry shows even while paused.
    let tasks = Resource::new(
        move || {
            (
                changes.get(),
                act.version().get() + bulk.version().get(),
                filter.get(),
                position.get().0,
            )
        },
        move |(_, _, filter, before)| {
            let path = filter.api_path(before, live.now_us.get_untracked(), PAGE);
            async move { api::fetch(&path).await }
        },
    );
    // The queue's tabs show how many each holds: a one-row page's total.
    let tab_totals = Resource::new(
        move || {
            (
                changes.get(),
                act.version().get() + bulk.version().get(),
                filter.get(),
            )
        },
        move |(_, _, filter)| {
            let now = live.now_us.get_untracked();
            let paths: Vec<String> = QUEUE_TABS
                .iter()
                .map(|(tab, _, _)| filter.on_tab(tab).api_path(None, now, 1))
                .collect();
            async move {
                if !filter.is_queue() {
                    return Vec::new();
                }
                let mut totals = Vec::new();
                for path in paths {
                    totals.push(
                        api::parse::<TaskList>(api::fetch(&path).await)
                            .ok()
                            .map(|l| (l.total, l.total_more)),
                    );
                }
                totals
            }
        },
    );
    let armed: Armed = RwSignal::new(None);
    view! {
        <Title text="Tasks"/>
        <h1 class="page-title">"Tasks"</h1>
        <form class="filters" method="get" action="/tasks" data-testid="task-filters">
            <fieldset class="statuses">
                <legend>"Status"</legend>
                {STATUSES.map(|s| view! {
                    <label><input type="checkbox" name="status" value=s data-testid=format!("filter-status-{s}")
                        checked=move || filter.with(|f| f.statuses.iter().any(|x| x == s))/>{s}</label>
                }).collect_view()}
            </fieldset>
            <label>"Search " <input type="search" name="q" data-testid="filter-q" maxlength="200"
                placeholder="id, type or payload text" value=move || filter.with(|f| f.text.clone().unwrap_or_default())/></label>
            <label>"Created "
                <select name="since" data-testid="filter-since">
                    <option value="" selected=move || filter.with(|f| f.since.is_none())>"any time"</option>
                    {SINCE.map(|(k, label, _)| view! {
                        <option value=k selected=move || filter.with(|f| f.since.as_deref() == Some(k))>{label}</option>
                    }).collect_view()}
                </select>
            </label>
            {move || filter.with(|f| f.task_type.clone()).map(|t| view! { <input type="hidden" name="type" value=t/> })}
            {move || filter.with(|f| f.sort.clone()).map(|s| view! { <input type="hidden" name="sort" value=s/> })}
            <button type="submit" data-testid="filter">"Filter"</button>
            {move || filter.with(Filter::is_set).then(|| view! { <a href="/tasks" data-testid="clear-filter">"Show all"</a> })}
            <span class="muted">{move || filter.with(|f| if f.is_queue() || f.sort.is_some() { "" } else { "Newest first." })}</span>
            <PauseLive paused/>
        </form>
        {move || outcome_view(act.value().get())}
        {move || outcome_view(bulk.value().get())}
        {move || filter.with(Filter::is_queue).then(|| view! { <QueueTabs filter totals=tab_totals/> })}
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                let (list, me, w) = (api::parse::<TaskList>(tasks.await), session(me.await), weights_of(weights.await));
                let agents = api::parse::<AgentList>(agents.await).map(|l| l.agents).unwrap_or_default();
                let names: HashMap<i64, String> = agents.iter().map(|a| (a.id, a.name.clone())).collect();
                let now = live.now_us.get_untracked();
                let operate = can_operate(&me);
                let (f, first) = (filter.get_untracked(), position.get_untracked().1);
                match list {
                    Ok(list) if list.tasks.is_empty() && f.is_set() => view! {
                        <Empty title="No task matches these filters">
                            <a href="/tasks">"Show all tasks"</a>
                        </Empty>
                    }.into_any(),
                    Ok(list) if list.tasks.is_empty() => view! {
                        <Empty title="No tasks yet">"Submit some with " <code>"POST /api/v1/tasks"</code> " or start a workflow run."</Empty>
                    }.into_any(),
                    Ok(list) => {
                        let shown = list.tasks.len();
                        let is_queue = f.is_queue();
                        let links = page_links(first, shown, list.next_before_id, { let f = f.clone(); move |b| f.href(b) });
                        let page_ids: Vec<i64> = list.tasks.iter().map(|t| t.id).collect();
                        view! {
                            {range_line(first, shown, list.total, list.total_more)}
                            {operate.then(|| view! { <BulkBar selected bulk armed=bulk_armed/> })}
                            <div class="table-wrap">
                                <table class="data" data-testid="tasks">
                                    <thead><tr>
                                        {operate.then(|| {
                                            let ids = page_ids.clone();
                                            let all_ticked = {
                                                let ids = ids.clone();
                                                move || selected.with(|sel| !ids.is_empty() && ids.iter().all(|i| sel.contains(i)))
                                            };
                                            view! {
                                                <th class="pick"><input type="checkbox" data-testid="select-page" aria-label="Select every task on this page"
                                                    prop:checked=all_ticked
                                                    on:change=move |ev| {
                                                        let on = event_target_checked(&ev);
                                                        selected.update(|sel| for i in &ids { if on { sel.insert(*i); } else { sel.remove(i); } });
                                                    }/></th>
                                            }
                                        })}
                                        {if f.in_claim_order() {
                                            view! {
                                                <th>"#"</th><th>"Type"</th><th>"Status"</th><th>"Priority P = α·u + β·t + γ·i"</th>
                                                <th>"Agent"</th><th>"Attempts"</th><th>"Age"</th>
                                            }.into_any()
                                        } else {
                                            let counted = (list.total, list.total_more);
                                            let current = f.sort.as_deref();
                                            let href = |sort: Option<String>| f.sorted(sort).href(None);
                                            view! {
                                                {sort_heading("#", "id", current, counted, &href)}
                                                {sort_heading("Type", "type", current, counted, &href)}
                                                {sort_heading("Status", "status", current, counted, &href)}
                                                {sort_heading("Priority P = α·u + β·t + γ·i", "priority", current, counted, &href)}
                                                <th>"Agent"</th>
                                                {sort_heading("Attempts", "attempts", current, counted, &href)}
                                                <th>"Age"</th>
                                            }.into_any()
                                        }}
                                        {operate.then(|| view! { <th></th> })}
                                    </tr></thead>
                                    <tbody>
                                        {list.tasks.into_iter().map(|t| {
                                            let agent = t.agent_id.map(|id| (id, agent_name(&names, id)));
                                            // In the queue's view only: elsewhere a row stays one line.
                                            let note = is_queue.then(|| queue_note(&t, &agents, now)).flatten();
                                            view! { <TaskRow t w agent note operate act armed selected/> }
                                        }).collect_view()}
                                    </tbody>
                                </table>
                            </div>
                            {links}
                        }.into_any()
                    }
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The queue's tabs, each with how many tasks it holds, and what the
/// chosen one means.
#[component]
fn QueueTabs(filter: Memo<Filter>, totals: Resource<Vec<Option<(i64, bool)>>>) -> impl IntoView {
    let tabs = move |counts: Vec<Option<(i64, bool)>>| {
        let f = filter.get_untracked();
        let chosen = f.tab().unwrap_or("ready").to_string();
        let links = QUEUE_TABS.iter().enumerate().map(|(i, (tab, label, _))| {
            let count = counts.get(i).copied().flatten().map(|(n, more)| {
                format!(" ({}{})", crate::format::count(n), if more { "+" } else { "" })
            });
            let current = chosen == *tab;
            view! {
                <a href=f.on_tab(tab).href(None) class:current=current aria-current=current.then_some("page")
                    data-testid=format!("queue-tab-{tab}")>{*label}{count}</a>
            }
        }).collect_view();
        let meaning = QUEUE_TABS
            .iter()
            .find(|(t, _, _)| *t == chosen)
            .map(|(_, _, meaning)| format!("{meaning}."));
        view! {
            <nav class="filters queue-tabs" aria-label="Queued tasks by what can happen now" data-testid="queue-tabs">
                {links}
                <span class="muted" data-testid="queue-tab-meaning">{meaning}</span>
            </nav>
        }
    };
    view! {
        <Transition fallback=move || tabs(Vec::new())>
            {move || Suspend::new(async move { tabs(totals.await) })}
        </Transition>
    }
}

/// What holds a queued task back, in words, or nothing for a task an
/// online agent may take now. The same reasons the task's page gives in
/// full ("Why is this waiting?").
fn queue_note(t: &TaskView, agents: &[AgentView], now_us: i64) -> Option<String> {
    if t.status != TaskStatus::Queued {
        return None;
    }
    if t.held {
        return Some(match (&t.concurrency_key, t.rate_limited) {
            (_, true) => "held: rate-limited".to_string(),
            (Some(key), false) => format!("held: key {key} is full"),
            (None, false) => "held".to_string(),
        });
    }
    if t.run_after_us > now_us {
        return Some(format!("starts {}", until(now_us, t.run_after_us)));
    }
    let taken = agents.iter().any(|a| {
        a.status == AgentStatus::Online
            && a.task_types.contains(&t.task_type)
            && t.required_labels.iter().all(|l| a.labels.contains(l))
    });
    (!taken).then(|| {
        if t.required_labels.is_empty() {
            format!("no online agent takes {}", t.task_type)
        } else {
            format!(
                "no online agent takes {} with labels {}",
                t.task_type,
                t.required_labels.join(", ")
            )
        }
    })
}

/// Agents' names by id, from a fetched `/agents` (none if it failed).
pub fn agent_names(fetched: api::ApiResult<String>) -> HashMap<i64, String> {
    api::parse::<AgentList>(fetched)
        .map(|l| l.agents.into_iter().map(|a| (a.id, a.name)).collect())
        .unwrap_or_default()
}

/// An agent's name, or its number when it is not in the list (revoked).
pub fn agent_name(names: &HashMap<i64, String>, id: i64) -> String {
    names
        .get(&id)
        .cloned()
        .unwrap_or_else(|| format!("agent #{id}"))
}

/// The task's own error: only a task that ended badly has one. The
/// server keeps the last attempt's error on a task that is queued again or
/// running; that error belongs to its attempt's row, not to the task.
pub fn current_error(t: &TaskView) -> Option<String> {
    matches!(t.status.as_str(), "failed" | "cancelled")
        .then(|| t.error.clone())
        .flatten()
}

#[component]
fn TaskRow(
    t: TaskView,
    w: Option<[f64; 3]>,
    /// The agent's id and name.
    agent: Option<(i64, String)>,
    /// What holds a queued task back, if anything.
    note: Option<String>,
    operate: bool,
    act: TaskAction,
    armed: Armed,
    selected: Selection,
) -> impl IntoView {
    let live = use_live();
    let id = t.id;
    let status = t.status.as_str();
    let created = t.created_at_us;
    let formula = priority_formula(&t, w);
    let cancellable = matches!(status, "queued" | "running");
    let retryable = matches!(status, "failed" | "cancelled");
    view! {
        <tr data-testid="task-row" data-status=status class:picked=move || selected.with(|s| s.contains(&id))>
            {operate.then(|| view! {
                <td class="pick"><input type="checkbox" data-testid="select-task" aria-label=format!("Select task {id}")
                    prop:checked=move || selected.with(|s| s.contains(&id))
                    on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        selected.update(|s| { if on { s.insert(id); } else { s.remove(&id); } });
                    }/></td>
            })}
            <td><a href=format!("/tasks/{id}")>{id}</a></td>
            <td>{t.task_type.clone()}</td>
            <td><Badge status=status/>{note.map(|n| view! { <div class="muted queue-note" data-testid="queue-note">{n}</div> })}{current_error(&t).map(|e| { let title = e.clone(); view! { <div class="err-line" title=title>{e}</div> } })}</td>
            <td class="formula"><strong>{num(t.priority)}</strong> <span class="muted">" = " {formula}</span></td>
            <td>{agent.map(|(agent_id, name)| view! {
                <a href=format!("/agents/{agent_id}")>{name}</a>
                {t.claim_load.map(|l| view! {
                    <span class="muted" title="its load L = C/M when it was given the task: the least loaded agent gets the work">{format!(" at L {}", fixed(l, 2))}</span>
                })}
            })}</td>
            <td class="n">{t.attempts} "/" {t.max_attempts}</td>
            <td class="muted">{move || ago(live.now_us.get(), created)}</td>
            // A table cell, not a flex box: `.actions` would make this cell
            // taller than its row's others and offset its borders.
            {operate.then(|| view! {
                <td class="row-actions"><TaskButtons id cancellable retryable act armed/></td>
            })}
        </tr>
    }
}

/// What to do with the ticked tasks: each verb asks first, naming how
/// many tasks it will touch.
#[component]
fn BulkBar(
    selected: Selection,
    bulk: BulkAction,
    armed: RwSignal<Option<&'static str>>,
) -> impl IntoView {
    let count = move || selected.with(BTreeSet::len);
    let run = move |verb: &'static str| {
        let ids: Vec<i64> = selected.with(|s| s.iter().copied().collect());
        bulk.dispatch((ids, verb));
    };
    move || {
        let n = count();
        (n > 0).then(|| view! {
            <div class="bulk-bar" role="group" aria-label="Selected tasks" data-testid="bulk-bar">
                <span data-testid="selected-count">{format!("{n} selected")}</span>
                <ConfirmButton armed id="cancel" label="Cancel selected" confirm_label="Confirm cancel"
                    question=format!("Cancel {n} tasks? Running attempts are stopped.") testid="cancel-selected"
                    on_confirm=Callback::new(move |_| run("cancel"))/>
                <ConfirmButton armed id="retry" label="Retry selected" confirm_label="Confirm retry" plain=true
                    question=format!("Run {n} failed or cancelled tasks again?") testid="retry-selected"
                    on_confirm=Callback::new(move |_| run("retry"))/>
                <button class="link" data-testid="clear-selection" on:click=move |_| selected.set(BTreeSet::new())>"Clear selection"</button>
            </div>
        })
    }
}

/// Cancel or Retry, each asking first: one press on a moving list must
/// not stop or restart work.
#[component]
fn TaskButtons(
    id: i64,
    cancellable: bool,
    retryable: bool,
    act: TaskAction,
    armed: Armed,
) -> impl IntoView {
    view! {
        {cancellable.then(|| view! {
            <ConfirmButton armed id=(id, "cancel") label="Cancel" confirm_label="Confirm cancel"
                question=format!("Cancel task {id}? A running attempt is stopped.") testid="cancel"
                on_confirm=Callback::new(move |_| { act.dispatch((id, "cancel")); })/>
        })}
        {retryable.then(|| view! {
            <ConfirmButton armed id=(id, "retry") label="Retry" confirm_label="Confirm retry" plain=true
                question=format!("Run task {id} again?") testid="retry"
                on_confirm=Callback::new(move |_| { act.dispatch((id, "retry")); })/>
        })}
    }
}

/// How often a queued task's page asks again why it waits.
const WAITING_POLL_US: i64 = 10_000_000;

#[component]
pub fn TaskPage() -> impl IntoView {
    let id = route_id();
    view! {
        <Show
            when=move || id.get().is_some()
            fallback=|| view! { <Title text="Not a task id"/> <NotAnId what="task" list="/tasks"/> }
        >
            <TaskShown task_id=Signal::derive(move || id.get().unwrap_or_default())/>
        </Show>
    }
}

/// The page of a task whose id is a number (it may still not exist).
#[component]
fn TaskShown(task_id: Signal<i64>) -> impl IntoView {
    let live = use_live();
    let me = use_me();
    let weights = weights();
    let id = move || task_id.get();
    // What holds a queued task also changes with the agents (one comes
    // online, drains, goes offline), and with time alone: its priority
    // ages, its run_after passes, the queue ahead moves.
    let poll = RwSignal::new(0u64);
    // Blocking: a task that does not exist makes the page a 404.
    let task = Resource::new_blocking(
        move || {
            (
                live.watch(Topic::Tasks),
                live.watch(Topic::Agents),
                poll.get(),
                id(),
            )
        },
        |(_, _, _, id)| subject(format!("/tasks/{id}")),
    );
    let agents = Resource::new(move || live.watch(Topic::Agents), |_| api::fetch("/agents"));
    // While the task waits, look again every few seconds on the page's clock.
    let poll_slot = Memo::new(move |_| live.now_us.get() / WAITING_POLL_US);
    Effect::new(move |ran: Option<()>| {
        // Read, not only tracked: a memo nobody reads never runs, so never changes.
        let _ = poll_slot.get();
        let waiting = || {
            task.get_untracked()
                .and_then(|fetched| api::parse::<TaskDetail>(fetched).ok())
                .is_some_and(|d| d.waiting.is_some())
        };
        if ran.is_some() && waiting() {
            poll.update(|n| *n += 1);
        }
    });
    let act = task_action();
    let armed: Armed = RwSignal::new(None);
    view! {
        <Title text=move || match task.get() {
            Some(Err(e)) if e.status == 404 => "Task not found".to_string(),
            _ => format!("Task {}", id()),
        }/>
        <p class="crumbs"><a href="/tasks">"Tasks"</a> " / " {id}</p>
        {move || outcome_view(act.value().get())}
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                let (task, me, w) = (api::parse::<TaskDetail>(task.await), session(me.await), weights_of(weights.await));
                let names = agent_names(agents.await);
                match task {
                    Ok(d) => view! { <TaskDetailView d w names operate=can_operate(&me) act armed/> }.into_any(),
                    Err(e) if e.status == 404 => view! {
                        <Missing title="No such task">
                            {format!("There is no task {}. ", id())} <a href="/tasks">"All tasks"</a>
                        </Missing>
                    }.into_any(),
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                }
            })}
        </Transition>
        // Outside the transition: the task's refreshes leave the log (and
        // where the reader scrolled it) alone.
        {move || view! { <TaskLog task_id=id()/> }}
    }
}

#[component]
pub fn TaskDetailView(
    d: TaskDetail,
    w: Option<[f64; 3]>,
    names: HashMap<i64, String>,
    operate: bool,
    act: TaskAction,
    armed: Armed,
) -> impl IntoView {
    let t = &d.task;
    let id = t.id;
    let status = t.status.as_str();
    let formula = priority_formula(t, w);
    view! {
        <section class="card task-detail">
            <h1>"Task " {id} " · " {t.task_type.clone()} " " <Badge status=status/></h1>
            <dl class="facts">
                <dt>"Priority"</dt><dd><strong>{num(t.priority)}</strong> " = " {formula}</dd>
                <dt>"Attempts"</dt><dd>{t.attempts} " of " {t.max_attempts} ", timeout " {duration_us(t.timeout_ms * 1000)}</dd>
                <dt>"Created"</dt><dd><Time t_us=t.created_at_us/></dd>
                {t.finished_at_us.map(|f| view! { <dt>"Finished"</dt><dd><Time t_us=f/> " (" {duration_us(f - t.created_at_us)} " after creation)"</dd> })}
                {(!t.required_labels.is_empty()).then(|| view! { <dt>"Needs labels"</dt><dd>{t.required_labels.join(", ")}</dd> })}
                {t.run_id.map(|run| view! {
                    <dt>"Run"</dt>
                    <dd>
                        <a href=format!("/runs/{run}") data-testid="task-run">"Run " {run}</a>
                        {t.step_id.clone().map(|step| view! {
                            ", step "
                            <a href=format!("/runs/{run}?step={}", enc(&step)) data-testid="task-step">{step.clone()}</a>
                        })}
                    </dd>
                })}
            </dl>
            {operate.then(|| view! {
                <div class="actions">
                    <TaskButtons id act armed
                        cancellable=matches!(status, "queued" | "running")
                        retryable=matches!(status, "failed" | "cancelled")/>
                </div>
            })}
            {d.waiting.clone().map(|w| view! { <WaitingView w/> })}
            {current_error(t).map(|e| view! { <h2>"Error"</h2><pre class="error-pre" data-testid="task-error">{e}</pre> })}
            <div class="grid2">
                <div><h2>"Payload"</h2><pre>{json(&t.payload)}</pre></div>
                <div><h2>"Result"</h2><pre>{t.result.as_ref().map(json).unwrap_or_else(|| "—".into())}</pre></div>
            </div>
            <h2>"Attempts"</h2>
            <AttemptsTable d=d.clone() names=names.clone()/>
            <h2>"Events"</h2>
            <ol class="timeline">
                {d.events.iter().map(|e| view! {
                    <li><span class="muted"><Time t_us=e.at_us/></span> " " {e.kind.clone()} " → " <Badge status=e.status.as_str()/>
                        {e.agent_id.map(|a| format!(" ({})", agent_name(&names, a)))} {e.detail.clone().map(|x| format!(": {x}"))}</li>
                }).collect_view()}
            </ol>
        </section>
    }
}

/// Each claim: which agent, its load L when it got the task (why it was
/// chosen: the least loaded), and how the attempt ended.
#[component]
pub fn AttemptsTable(d: TaskDetail, names: HashMap<i64, String>) -> impl IntoView {
    if d.attempt_history.is_empty() {
        return view! { <p class="muted">"Not claimed yet."</p> }.into_any();
    }
    view! {
        <table class="data compact" data-testid="attempts">
            <thead><tr><th>"#"</th><th>"Agent"</th><th>"L at claim"</th><th>"Claimed"</th><th>"Ran for"</th><th>"Outcome"</th><th>"Error"</th></tr></thead>
            <tbody>
                {d.attempt_history.iter().map(|a| view! {
                    <tr data-testid="attempt" data-agent=a.agent_id>
                        <td>{a.attempt}</td>
                        <td><a href=format!("/agents/{}", a.agent_id)>{agent_name(&names, a.agent_id)}</a></td>
                        <td title="the agent's load L = C/M when it was given the task">{fixed(a.agent_load, 2)}</td>
                        <td class="muted"><Time t_us=a.claimed_at_us/></td>
                        <td>{a.finished_at_us.map(|f| duration_us(f - a.started_at_us.unwrap_or(a.claimed_at_us)))}</td>
                        <td><Badge status=a.outcome.clone()/></td>
                        <td class="err-line">{a.error.clone()}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }.into_any()
}

/// Why a queued task is not running yet: the server's sentence, then each
/// thing that holds it, its aged priority and when it should start.
#[component]
pub fn WaitingView(w: Waiting) -> impl IntoView {
    let live = use_live();
    let plus = if w.ahead_capped { "+" } else { "" };
    let no_agent = w
        .reasons
        .iter()
        .any(|r| matches!(r, WaitReason::NoAgent { .. }));
    let estimate = w.estimated_start_us;
    view! {
        <section class="waiting" data-testid="waiting" aria-labelledby="waiting-title">
            <h2 id="waiting-title">"Why is this waiting?"</h2>
            <p data-testid="waiting-summary" style=SUMMARY_STYLE>
                <strong>{capitalized(&w.summary)} "."</strong>
            </p>
            <ul data-testid="waiting-reasons">
                {w.reasons.into_iter().map(|r| reason_view(r, plus)).collect_view()}
            </ul>
            <dl class="facts">
                <dt>"Aged priority"</dt>
                <dd data-testid="aged-priority">
                    <strong>{num(w.aged_priority)}</strong>
                    <span class="muted">" (P plus ageing for the time it has waited: what orders the claim)"</span>
                </dd>
                <dt>"Ahead of it"</dt>
                <dd data-testid="waiting-ahead">{ahead_text(w.ahead, w.ahead_same_type, plus)}</dd>
                <dt>"Estimated start"</dt>
                <dd data-testid="estimated-start">{move || match estimate {
                    Some(at) => format!("{} ({})", starts(live.now_us.get(), at), utc(at)),
                    None if no_agent => "unknown: no online agent can run it".to_string(),
                    None => "unknown: too few tasks of its type started lately to tell".to_string(),
                }}</dd>
            </dl>
        </section>
    }
}

/// The summary stands out from the lines below it (a rule beside it, not
/// only colour).
const SUMMARY_STYLE: &str = "margin:0.2rem 0 0.5rem;padding:0.35rem 0.75rem;\
     border-left:3px solid var(--warn);background:var(--bg);font-size:1.05rem";

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// "3 tasks ahead (2 of this type)", with "+" when the count stopped at its limit.
fn ahead_text(ahead: i64, same_type: i64, plus: &str) -> String {
    if ahead == 0 {
        return "no task ahead in the claim order".into();
    }
    let tasks = if ahead == 1 && plus.is_empty() {
        "task"
    } else {
        "tasks"
    };
    format!("{ahead}{plus} {tasks} ahead ({same_type}{plus} of this type)")
}

/// "starts in about 40 s", from the page's ticking clock.
fn starts(now_us: i64, at_us: i64) -> String {
    match until(now_us, at_us).strip_prefix("in ") {
        Some(span) => format!("starts in about {span}"),
        None => "should start any moment now".into(),
    }
}

/// One thing that holds the task, as a line: a short tag, then the words.
fn reason_view(r: WaitReason, plus: &'static str) -> AnyView {
    let live = use_live();
    match r {
        WaitReason::NotBefore { until_us, cause } => {
            let why = if cause == "retry_backoff" {
                "the backoff before its next attempt"
            } else {
                "its run_after time"
            };
            view! {
                <li data-kind="not_before">
                    <span class="chip">"not before"</span>
                    " Not before " <strong><Time t_us=until_us/></strong>
                    " (" <span data-testid="not-before-in">{move || until(live.now_us.get(), until_us)}</span> "): "
                    {why} "."
                </li>
            }
            .into_any()
        }
        WaitReason::NoAgent {
            task_type,
            required_labels,
            closest,
        } => {
            let labels = if required_labels.is_empty() {
                String::new()
            } else {
                format!(" with the labels {}", required_labels.join(", "))
            };
            view! {
                <li data-kind="no_agent">
                    <span class="chip">"no agent"</span>
                    " No online agent runs " <code>{task_type}</code> {labels} "."
                    {if closest.is_empty() {
                        view! { " No agent is registered." }.into_any()
                    } else {
                        view! {
                            " Closest:"
                            <ul data-testid="closest-agents">
                                {closest.into_iter().map(gap_view).collect_view()}
                            </ul>
                        }
                        .into_any()
                    }}
                </li>
            }
            .into_any()
        }
        WaitReason::RateLimited {
            scope,
            per_second,
            next_release_us,
        } => view! {
            <li data-kind="rate_limited">
                <span class="chip">"rate-limited"</span>
                " Rate limit " <code>{scope}</code> {format!(" lets {per_second} task(s) a second start; its next release is ")}
                <strong><Time t_us=next_release_us/></strong>
                " (" {move || until(live.now_us.get(), next_release_us)} ")."
            </li>
        }
        .into_any(),
        WaitReason::AgentsFull {
            agents,
            running,
            capacity,
        } => view! {
            <li data-kind="agents_full">
                <span class="chip">"agents full"</span>
                {format!(
                    " All {agents} agent{} able to run it {} full: {running} of {capacity} slots in use.",
                    if agents == 1 { "" } else { "s" },
                    if agents == 1 { "is" } else { "are" },
                )}
            </li>
        }
        .into_any(),
        WaitReason::KeyFull {
            key,
            limit,
            admitted,
            held_by,
        } => view! {
            <li data-kind="key_full">
                <span class="chip">"key full"</span>
                " Its concurrency key " <code>{key}</code>
                {format!(" is full: {admitted} of {limit} admitted")}
                {(!held_by.is_empty()).then(|| view! {
                    ", held by "
                    {held_by.into_iter().enumerate().map(|(i, id)| view! {
                        {(i > 0).then_some(", ")}
                        <a href=format!("/tasks/{id}")>"task " {id}</a>
                    }).collect_view()}
                })}
                ". It waits until one of them ends."
            </li>
        }
        .into_any(),
        WaitReason::QueuedBehind {
            ahead,
            ahead_same_type,
        } => view! {
            <li data-kind="queued_behind">
                <span class="chip">"queued behind"</span>
                " " {ahead_text(ahead, ahead_same_type, plus)} ", taken first in the claim order."
            </li>
        }
        .into_any(),
        WaitReason::Ready { free_slots } => view! {
            <li data-kind="ready">
                <span class="chip">"ready"</span>
                {format!(
                    " Nothing holds it: {free_slots} free slot{} on agents able to run it; the next claim takes it.",
                    if free_slots == 1 { "" } else { "s" },
                )}
            </li>
        }
        .into_any(),
    }
}

/// An agent that comes close, linked to its row on the agents page, and what it lacks.
fn gap_view(g: AgentGap) -> impl IntoView {
    view! {
        <li data-testid="closest-agent" data-agent=g.name.clone()>
            <a href=format!("/agents#agent-{}", g.agent_id)>{g.name.clone()}</a>
            " " <Badge status=g.status.as_str()/> " "
            {g.missing.join(", ")}
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_words_read_naturally() {
        assert_eq!(ahead_text(0, 0, ""), "no task ahead in the claim order");
        assert_eq!(ahead_text(1, 1, ""), "1 task ahead (1 of this type)");
        assert_eq!(ahead_text(3, 2, ""), "3 tasks ahead (2 of this type)");
        assert_eq!(
            ahead_text(10_000, 9_000, "+"),
            "10000+ tasks ahead (9000+ of this type)"
        );
        assert_eq!(starts(0, 40_000_000), "starts in about 40 s");
        assert_eq!(starts(0, 3_600_000_000), "starts in about 1 h");
        assert_eq!(starts(5, 5), "should start any moment now");
        assert_eq!(
            capitalized("not before its run_after time"),
            "Not before its run_after time"
        );
        assert_eq!(capitalized(""), "");
    }
}
