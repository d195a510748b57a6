//! The fleet: who is online, how loaded (L = C/M), drain controls, and
//! revoking an agent that is no longer trusted.

use drover_protocol::api::{AgentList, AgentView};
use leptos::prelude::*;
use leptos_meta::Title;

use crate::api;
use crate::components::{
    is_admin, outcome_view, session, use_me, Badge, ConfirmButton, Empty, ErrorBox, Loading,
};
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
    let revoke = Action::new(move |id: &i64| {
        let id = *id;
        async move {
            api::post::<serde_json::Value>(&format!("/agents/{id}/revoke"), &serde_json::json!({}))
                .await
                .map(|answer| {
                    let requeued = answer
                        .get("requeued")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0);
                    let moved = match requeued {
                        0 => String::new(),
                        1 => "; its running task goes to another agent".into(),
                        n => format!("; its {n} running tasks go to other agents"),
                    };
                    format!("Agent {id} is revoked: the server refuses its calls{moved}.")
                })
        }
    });
    // The last button's outcome, whichever it was.
    let flash = RwSignal::new(None);
    Effect::new(move |_| {
        if let Some(outcome) = toggle.value().get() {
            flash.set(Some(outcome));
            agents.refetch();
        }
    });
    Effect::new(move |_| {
        if let Some(outcome) = revoke.value().get() {
            flash.set(Some(outcome));
            agents.refetch();
        }
    });
    // The agent and button (`drain`, `revoke`) whose question is showing.
    let armed = RwSignal::new(None::<(i64, &'static str)>);
    view! {
        <Title text="Agents"/>
        <h1 class="page-title">"Agents"</h1>
        <p class="muted">"Work goes to the least-loaded agent that can take it: load L = running (C) / capacity (M)."</p>
        {move || outcome_view(flash.get())}
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
                    Ok(mut list) => {
                        // Revoked agents last: they will not be back.
                        list.agents.sort_by_key(|a| a.status.as_str() == "revoked");
                        view! {
                        <div class="table-wrap">
                            <table class="data" data-testid="agents">
                                <thead><tr>
                                    <th>"Agent"</th><th>"Host"</th><th>"Version"</th><th>"Task types"</th>
                                    <th>"Labels"</th><th>"Load"</th><th>"Heartbeat"</th><th>"Status"</th>
                                    {admin.then(|| view! { <th></th> })}
                                </tr></thead>
                                <tbody>
                                    {list.agents.into_iter().map(|a| view! { <AgentRow a admin toggle revoke armed/> }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }.into_any()
                    }
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
    revoke: Action<i64, api::ApiResult<String>>,
    armed: RwSignal<Option<(i64, &'static str)>>,
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
    let revoked = status == "revoked";
    let revocable = !revoked && status != "deregistered";
    let question = format!(
        "Revoke {}? The server refuses its calls from now on and its running tasks go to other agents.",
        a.name
    );
    let drain_question = format!(
        "Drain {}? It finishes its running tasks and takes no new ones.",
        a.name
    );
    view! {
        <tr data-testid="agent-row" id=format!("agent-{id}") data-agent=a.name.clone() data-status=status.clone() class:revoked=revoked>
            <td><a href=format!("/agents/{id}") data-testid="agent-link"><strong>{a.name.clone()}</strong></a> <span class="muted">" #" {a.id}</span></td>
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
            <td class="status"><Badge status=status.clone()/></td>
            {admin.then(|| view! {
                <td class="row-actions">
                    {online.then(|| view! {
                        <ConfirmButton armed id=(id, "drain") label="Drain" confirm_label="Confirm drain" plain=true
                            question=drain_question testid="drain"
                            on_confirm=Callback::new(move |_| { toggle.dispatch((id, true)); })/>
                    })}
                    {draining.then(|| view! {
                        <button data-testid="enable" on:click=move |_| { toggle.dispatch((id, false)); }>"Re-enable"</button>
                    })}
                    {revocable.then(|| view! {
                        <ConfirmButton armed id=(id, "revoke") label="Revoke" confirm_label="Confirm revoke" question testid="revoke"
                            on_confirm=Callback::new(move |_| { revoke.dispatch(id); })/>
                    })}
                </td>
            })}
        </tr>
    }
}
