//! The fleet: who is online, how loaded (L = C/M), and drain controls.

use drover_protocol::api::{AgentList, AgentView};
use leptos::prelude::*;

use crate::api;
use crate::components::{is_admin, outcome_view, session, use_me, Badge, Empty, ErrorBox, Loading};
use crate::format::{ago, fixed};
use crate::live::{use_live, Topic};

#[component]
pub fn Agents() -> impl IntoView {
    let live = use_live();
    let me = use_me();
    let agents = Resource::new(
        move || (live.watch(Topic::Agents), live.watch(Topic::Tasks)),
        |_| api::fetch("/agents"),
    );
    let toggle = Action::new(move |(id, drain): &(i64, bool)| {
        let (id, drain) = (*id, *drain);
        async move {
            let verb = if drain { "drain" } else { "enable" };
            api::post::<serde_json::Value>(&format!("/agents/{id}/{verb}"), &serde_json::json!({}))
                .await
                .map(|_| {
                    if drain {
                        format!("Agent {id} is draining: it finishes its work and takes no more.")
                    } else {
                        format!("Agent {id} takes work again.")
                    }
                })
        }
    });
    Effect::new(move |_| {
        if toggle.value().get().is_some() {
            agents.refetch();
        }
    });
    view! {
        <h1 class="page-title">"Agents"</h1>
        <p class="muted">"Work goes to the least-loaded agent that can take it: load L = running (C) / capacity (M)."</p>
        {move || outcome_view(toggle.value().get())}
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                let (list, me) = (api::parse::<AgentList>(agents.await), session(me.await));
                let admin = is_admin(&me);
                match list {
                    Ok(list) if list.agents.is_empty() => view! {
                        <Empty title="No agents yet">
                            "Start one on a worker host: " <code>"drover-agent --config agent.toml"</code>
                            " (see the README's agent section)."
                        </Empty>
                    }.into_any(),
                    Ok(list) => view! {
                        <div class="table-wrap">
                            <table class="data" data-testid="agents">
                                <thead><tr>
                                    <th>"Agent"</th><th>"Host"</th><th>"Version"</th><th>"Task types"</th>
                                    <th>"Labels"</th><th>"Load"</th><th>"Heartbeat"</th><th>"Status"</th>
                                    {admin.then(|| view! { <th></th> })}
                                </tr></thead>
                                <tbody>
                                    {list.agents.into_iter().map(|a| view! { <AgentRow a admin toggle/> }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }.into_any(),
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn AgentRow(
    a: AgentView,
    admin: bool,
    toggle: Action<(i64, bool), api::ApiResult<String>>,
) -> impl IntoView {
    let live = use_live();
    let status = a.status.as_str().to_string();
    let pct = if a.capacity > 0 {
        (a.running * 100 / a.capacity).min(100)
    } else {
        0
    };
    let beat = a.last_heartbeat_at_us;
    let id = a.id;
    let draining = status == "draining";
    let online = status == "online";
    view! {
        <tr data-testid="agent-row" data-agent=a.name.clone() data-status=status.clone()>
            <td><strong>{a.name.clone()}</strong> <span class="muted">" #" {a.id}</span></td>
            <td>{a.hostname.clone()}</td>
            <td class="muted">{a.version.clone()}</td>
            <td>{a.task_types.iter().map(|t| view! { <span class="chip">{t.clone()}</span> }).collect_view()}</td>
            <td>{a.labels.iter().map(|t| view! { <span class="chip label">{t.clone()}</span> }).collect_view()}</td>
            <td class="load">
                <div class="loadbar" title=format!("C/M = {}/{}", a.running, a.capacity)>
                    <div class="fill" class:hot={pct >= 90} style=format!("width:{pct}%")></div>
                </div>
                <span class="n" data-testid="agent-load">{a.running} "/" {a.capacity} " · L " {fixed(a.load, 2)}</span>
            </td>
            <td class="muted">{move || ago(live.now_us.get(), beat)}</td>
            <td><Badge status=status.clone()/></td>
            {admin.then(|| view! {
                <td>
                    {online.then(|| view! {
                        <button data-testid="drain" on:click=move |_| { toggle.dispatch((id, true)); }>"Drain"</button>
                    })}
                    {draining.then(|| view! {
                        <button data-testid="enable" on:click=move |_| { toggle.dispatch((id, false)); }>"Re-enable"</button>
                    })}
                </td>
            })}
        </tr>
    }
}
