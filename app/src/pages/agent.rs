//! One agent: what it declared, its state, the tasks it runs, and its load
//! over time from the leader's samples (`GET /api/v1/agents/{id}/load`),
//! drawn as an inline SVG with a table for those who do not see it.

use drover_protocol::api::{AgentLoad, AgentView, LoadBucket, TaskList, DEFAULT_LOAD_WINDOW_S};
use drover_protocol::credentials::{AuditEntry, AuditList};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{self, enc};
use crate::components::{Badge, ErrorBox, Loading, Time};
use crate::format::{ago, duration_us, fixed, rfc3339, span, utc};
use crate::live::{paced_refresh, use_live, Topic};
use crate::load_chart::{self, HEIGHT, LEFT, PLOT_H, PLOT_W, TOP, WIDTH};

/// The windows offered, in seconds, with their names.
const WINDOWS: [(i64, &str); 3] = [(900, "15 min"), (3_600, "1 h"), (86_400, "24 h")];
/// Agent and task events refetch the history at most this often.
const MIN_REFRESH_US: i64 = 2_000_000;
/// New samples arrive without events: look again this often.
const POLL_US: i64 = 5_000_000;
/// Running tasks listed at most.
const RUNNING_SHOWN: i64 = 50;
/// Recently finished tasks listed at most, and how far back they are
/// looked for (the finish-time index reads only that window).
const RECENT_SHOWN: i64 = 20;
const RECENT_WINDOW_US: i64 = 3_600_000_000;

fn window_name(window_s: i64) -> String {
    WINDOWS
        .iter()
        .find(|(s, _)| *s == window_s)
        .map(|(_, name)| name.to_string())
        .unwrap_or_else(|| span(window_s * 1_000_000))
}

#[component]
pub fn AgentPage() -> impl IntoView {
    let live = use_live();
    let params = use_params_map();
    let query = use_query_map();
    let id = move || {
        params
            .with(|p| p.get("id"))
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let window = move || {
        query
            .with(|q| q.get("window"))
            .and_then(|w| w.parse::<i64>().ok())
            .filter(|w| WINDOWS.iter().any(|(s, _)| s == w))
            .unwrap_or(DEFAULT_LOAD_WINDOW_S)
    };
    let refresh = paced_refresh(live, [Topic::Tasks, Topic::Agents], MIN_REFRESH_US, POLL_US);
    let load = Resource::new(
        move || (refresh.get(), id(), window()),
        |(_, id, w)| async move { api::fetch(&format!("/agents/{id}/load?window_s={w}")).await },
    );
    let running = Resource::new(
        move || (live.watch(Topic::Tasks), live.watch(Topic::Agents), id()),
        |(_, _, id)| async move {
            api::fetch(&format!(
                "/tasks?status=running&agent_id={id}&limit={RUNNING_SHOWN}"
            ))
            .await
        },
    );
    // Paced like the load: on a busy agent every claim is a task event,
    // and each fetch reads the hour's finished tasks.
    let recent = Resource::new(
        move || (refresh.get(), id()),
        move |(_, id)| {
            let since = rfc3339(live.now_us.get_untracked() - RECENT_WINDOW_US);
            async move {
                api::fetch(&format!(
                    "/tasks?agent_id={id}&finished_after={}&limit={RECENT_SHOWN}",
                    enc(&since)
                ))
                .await
            }
        },
    );
    let history = Resource::new(
        move || (live.watch(Topic::Agents), id()),
        |(_, id)| async move { api::fetch(&format!("/agents/{id}/history")).await },
    );
    view! {
        // Named once its data is in; until then (and in the server's
        // first bytes) by its number.
        <Title text=move || {
            load.get()
                .and_then(|fetched| api::parse::<AgentLoad>(fetched).ok())
                .map(|l| format!("Agent {}", l.agent.name))
                .unwrap_or_else(|| format!("Agent {}", id()))
        }/>
        <p class="crumbs"><a href="/agents">"Agents"</a> " / " {id}</p>
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                match api::parse::<AgentLoad>(load.await) {
                    Ok(l) => view! { <AgentFacts a=l.agent.clone()/> <LoadSection l id=id() window=window()/> }.into_any(),
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                }
            })}
        </Transition>
        <section class="card" aria-labelledby="running-title">
            <h2 id="running-title">"Running tasks"</h2>
            <Transition fallback=Loading>
                {move || Suspend::new(async move {
                    match api::parse::<TaskList>(running.await) {
                        Ok(list) => view! { <RunningTasks list/> }.into_any(),
                        Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
        <section class="card" aria-labelledby="recent-title">
            <h2 id="recent-title">"Finished here in the last hour"</h2>
            <Transition fallback=Loading>
                {move || Suspend::new(async move {
                    match api::parse::<TaskList>(recent.await) {
                        Ok(list) => view! { <RecentTasks list/> }.into_any(),
                        Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
        <section class="card" aria-labelledby="history-title">
            <h2 id="history-title">"History"</h2>
            <Transition fallback=Loading>
                {move || Suspend::new(async move {
                    match api::parse::<AuditList>(history.await) {
                        Ok(list) => view! { <History list/> }.into_any(),
                        Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// The tasks this agent finished lately, newest first.
#[component]
fn RecentTasks(list: TaskList) -> impl IntoView {
    if list.tasks.is_empty() {
        return view! { <p class="muted" data-testid="no-recent">"None in the last hour."</p> }
            .into_any();
    }
    let more = list.next_before_id.is_some().then(|| {
        view! { <p class="muted">"Only the newest " {RECENT_SHOWN} " are shown."</p> }
    });
    view! {
        <table class="data compact" data-testid="recent-tasks">
            <thead><tr><th>"Task"</th><th>"Type"</th><th>"Outcome"</th><th>"Finished"</th><th>"Ran for"</th></tr></thead>
            <tbody>
                {list.tasks.into_iter().map(|t| {
                    let ran = t.started_at_us.zip(t.finished_at_us).map(|(s, f)| duration_us(f - s));
                    view! {
                        <tr data-testid="recent-task">
                            <td><a href=format!("/tasks/{}", t.id)>"Task " {t.id}</a></td>
                            <td><code>{t.task_type.clone()}</code></td>
                            <td><Badge status=t.status.as_str()/></td>
                            <td class="muted">{t.finished_at_us.map(|f| view! { <Time t_us=f/> })}</td>
                            <td class="muted">{ran}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        {more}
    }
    .into_any()
}

/// What happened to the agent, newest first, in words.
#[component]
fn History(list: AuditList) -> impl IntoView {
    if list.entries.is_empty() {
        return view! { <p class="muted">"Nothing recorded."</p> }.into_any();
    }
    view! {
        <ol class="timeline" data-testid="agent-history">
            {list.entries.into_iter().map(|e| view! {
                <li data-testid="history-entry" data-action=e.action.clone()>
                    <Time t_us=e.at_us/> " " {history_sentence(&e)}
                </li>
            }).collect_view()}
        </ol>
    }
    .into_any()
}

/// `drained by alice`, `registered (version 0.1.0, capacity 4)`.
fn history_sentence(e: &AuditEntry) -> String {
    let what = e.action.strip_prefix("agent.").unwrap_or(&e.action);
    let by_itself = e.actor.starts_with("agent:");
    let mut s = if by_itself {
        what.to_string()
    } else {
        format!("{what} by {}", e.actor)
    };
    let facts: Vec<String> = ["hostname", "capacity", "requeued"]
        .iter()
        .filter_map(|k| {
            e.detail
                .get(*k)
                .filter(|v| !v.is_null() && v.as_i64() != Some(0))
                .map(|v| {
                    format!(
                        "{} {}",
                        k.replace("requeued", "tasks requeued"),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    )
                })
        })
        .collect();
    if !facts.is_empty() {
        s.push_str(&format!(" ({})", facts.join(", ")));
    }
    s
}

#[component]
fn AgentFacts(a: AgentView) -> impl IntoView {
    let live = use_live();
    let beat = a.last_heartbeat_at_us;
    let status = a.status.as_str();
    view! {
        <section class="card" data-testid="agent-facts" data-agent=a.name.clone() data-status=status>
            <h1>{a.name.clone()} <span class="muted">" #" {a.id}</span> " " <Badge status=status/></h1>
            <dl class="facts">
                <dt>"Host"</dt><dd>{a.hostname.clone()}</dd>
                <dt>"Version"</dt><dd>{a.version.clone()}</dd>
                <dt>"Task types"</dt>
                <dd>{a.task_types.iter().map(|t| view! { <span class="chip">{t.clone()}</span> }).collect_view()}</dd>
                <dt>"Labels"</dt>
                <dd>
                    {a.labels.is_empty().then_some("none")}
                    {a.labels.iter().map(|t| view! { <span class="chip label">{t.clone()}</span> }).collect_view()}
                </dd>
                <dt>"Capacity M"</dt><dd>{a.capacity}</dd>
                <dt>"Running C"</dt>
                <dd data-testid="agent-now">{a.running} " of " {a.capacity} " · L " {fixed(a.load, 2)}</dd>
                <dt>"Drained"</dt>
                <dd data-testid="drained">{if a.drained { "yes: it gets no work until re-enabled" } else { "no" }}</dd>
                <dt>"Last heartbeat"</dt>
                <dd title=utc(beat)>{move || ago(live.now_us.get(), beat)}</dd>
                <dt>"Registered"</dt><dd><Time t_us=a.registered_at_us/></dd>
            </dl>
        </section>
    }
}

/// The window picker, the chart and its table.
#[component]
fn LoadSection(l: AgentLoad, id: i64, window: i64) -> impl IntoView {
    let name = window_name(l.window_s);
    let interval = span(l.interval_us);
    let retention = span(l.retention_us);
    view! {
        <section class="card" aria-labelledby="load-title">
            <h2 id="load-title">"Load over time"</h2>
            <nav class="filters" aria-label="Window">
                "Last "
                {WINDOWS.map(|(s, label)| view! {
                    <a href=format!("/agents/{id}?window={s}") aria-current=(s == window).then_some("page")
                        class:current=s == window data-testid="load-window">{label}</a>
                }).collect_view()}
            </nav>
            <LoadChart l=l.clone() name=name.clone()/>
            <p class="muted small">
                "L = running / capacity, sampled every " {interval} " by the leading server and kept for " {retention}
                ". The line is each bucket's mean, the band reaches its peak; a gap means the agent was not connected."
            </p>
            <details data-testid="load-table">
                <summary>
                    "The load as a table (" {l.buckets.len()} {if l.buckets.len() == 1 { " bucket" } else { " buckets" }}
                    " of " {duration_us(l.bucket_us)} ")"
                </summary>
                <LoadTable buckets=l.buckets.clone()/>
            </details>
        </section>
    }
}

#[component]
fn LoadChart(l: AgentLoad, name: String) -> impl IntoView {
    let window_us = l.window_s * 1_000_000;
    let segments = load_chart::segments(&l.buckets, l.since_us, window_us, l.bucket_us);
    let summary = load_chart::summary(&l.buckets);
    let a = &l.agent;
    let now = format!(
        "now {} of {} slots busy (L {})",
        a.running,
        a.capacity,
        fixed(a.load, 2)
    );
    let label = match summary {
        Some((mean, peak)) => format!(
            "Load of {} over the last {name}: mean L {}, peak L {}; {now}.",
            a.name,
            fixed(mean, 2),
            fixed(peak, 2)
        ),
        None => format!(
            "Load of {} over the last {name}: no samples (the agent was not connected); {now}.",
            a.name
        ),
    };
    let peak = summary.map(|(_, p)| fixed(p, 2)).unwrap_or_default();
    // The newest bucket's peak: what a reader (or a test) watches move.
    let last_peak = l
        .buckets
        .last()
        .map(|b| fixed(b.max_load, 2))
        .unwrap_or_default();
    let bottom = TOP + PLOT_H;
    let right = LEFT + PLOT_W;
    let grid = [(0.0, "0"), (0.5, "0.5"), (1.0, "1")];
    let half = span(window_us / 2);
    let title = label.clone();
    view! {
        <svg class="load-chart" viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=label
            data-testid="load-chart" data-peak=peak data-last-peak=last_peak data-buckets=l.buckets.len()>
            <title>{title}</title>
            <g class="grid">
                {grid.map(|(v, text)| {
                    let y = load_chart::y_of(v);
                    view! {
                        <line x1=LEFT y1=y x2=right y2=y></line>
                        <text x=LEFT - 6 y=y + 4 text-anchor="end">{text}</text>
                    }
                }).collect_view()}
            </g>
            <text class="axis-title" x="14" y=TOP + PLOT_H / 4 + 4 text-anchor="middle">"L"</text>
            <g class="axis">
                <line x1=LEFT y1=bottom x2=right y2=bottom></line>
                <text x=LEFT y=bottom + 16 text-anchor="start">"−" {name.clone()}</text>
                <text x=LEFT + PLOT_W / 2 y=bottom + 16 text-anchor="middle">"−" {half}</text>
                <text x=right y=bottom + 16 text-anchor="end">"now"</text>
                <text class="axis-title" x=LEFT + PLOT_W / 2 y=bottom + 30 text-anchor="middle">"time"</text>
            </g>
            {segments.into_iter().map(|s| view! {
                <polygon class="band" points=s.band></polygon>
                <polyline class="mean" points=s.mean></polyline>
            }).collect_view()}
        </svg>
    }
}

#[component]
fn LoadTable(buckets: Vec<LoadBucket>) -> impl IntoView {
    view! {
        <table class="data compact">
            <thead><tr>
                <th>"From"</th><th>"Samples"</th><th>"Mean L"</th><th>"Peak L"</th>
                <th>"Mean running"</th><th>"Peak running"</th><th>"Capacity"</th>
            </tr></thead>
            <tbody>
                {buckets.into_iter().rev().map(|b| view! {
                    <tr data-testid="load-row">
                        <td class="nowrap"><Time t_us=b.start_us/></td>
                        <td class="n">{b.samples}</td>
                        <td class="n">{fixed(b.mean_load, 2)}</td>
                        <td class="n">{fixed(b.max_load, 2)}</td>
                        <td class="n">{fixed(b.mean_running, 1)}</td>
                        <td class="n">{b.max_running}</td>
                        <td class="n">{b.capacity}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn RunningTasks(list: TaskList) -> impl IntoView {
    let live = use_live();
    if list.tasks.is_empty() {
        return view! { <p class="muted" data-testid="no-running">"None right now."</p> }
            .into_any();
    }
    let more = list.next_before_id.is_some().then(|| {
        view! { <p class="muted">"Only the newest " {RUNNING_SHOWN} " are shown."</p> }
    });
    view! {
        <table class="data compact" data-testid="running-tasks">
            <thead><tr><th>"Task"</th><th>"Type"</th><th>"Started"</th></tr></thead>
            <tbody>
                {list.tasks.into_iter().map(|t| {
                    let started = t.started_at_us.unwrap_or(t.updated_at_us);
                    view! {
                        <tr data-testid="running-task">
                            <td><a href=format!("/tasks/{}", t.id)>"Task " {t.id}</a></td>
                            <td><code>{t.task_type.clone()}</code></td>
                            <td class="muted">{move || ago(live.now_us.get(), started)}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        {more}
    }
    .into_any()
}
