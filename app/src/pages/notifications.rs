//! Notifications: the webhook rules (admins create, disable, enable, test
//! and delete them) and the recent deliveries with their status, attempts
//! and last error (operators and admins), live: a delivery's every attempt
//! is an event.

use drover_protocol::notification::{
    CreatedNotificationRule, DeliveryList, DeliveryStatus, DeliveryView, NotificationEvent,
    NotificationRuleList, NotificationRuleView,
};
use leptos::prelude::*;
use leptos_meta::Title;
use serde_json::{json, Value};

use crate::api::{self, ApiFailure, ApiResult};
use crate::components::{
    admins_only_failure, can_operate, copy_text, is_admin, outcome_view, session, use_me, Badge,
    ConfirmButton, Empty, ErrorBox, Loading, Time,
};
use crate::format::{ago, until, utc};
use crate::live::{use_live, Topic};

/// What a rule's buttons do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Enable,
    Disable,
    Test,
    Delete,
}

type RuleAction = Action<(i64, String, Op), ApiResult<String>>;

/// What each event is called on the page.
fn event_label(event: &str) -> &'static str {
    match event {
        "run_failed" => "a run failed",
        "approval_waiting" => "a run waits for approval",
        "task_failed" => "a task failed for good",
        "agent_offline" => "an agent went offline",
        "test" => "test",
        _ => "event",
    }
}

#[component]
pub fn Notifications() -> impl IntoView {
    let me = use_me();
    let live = use_live();
    let rules = Resource::new(
        move || live.watch(Topic::Notifications),
        move |_| async move {
            if !is_admin(&session(me.await)) {
                return Err(admins_only_failure());
            }
            api::fetch("/notifications/rules").await
        },
    );
    let deliveries = Resource::new(
        move || live.watch(Topic::Notifications),
        |_| api::fetch("/notifications/deliveries?limit=50"),
    );
    let act: RuleAction = Action::new(move |(id, name, op): &(i64, String, Op)| {
        let (id, name, op) = (*id, name.clone(), *op);
        let path = format!("/notifications/rules/{id}");
        async move {
            match op {
                Op::Enable | Op::Disable => {
                    let on = op == Op::Enable;
                    api::patch::<NotificationRuleView>(&path, &json!({ "enabled": on }))
                        .await
                        .map(|_| {
                            if on {
                                format!("Rule {name} is enabled: it sends for events from now on.")
                            } else {
                                format!("Rule {name} is disabled: it sends nothing for new events.")
                            }
                        })
                }
                Op::Test => api::post::<DeliveryView>(&format!("{path}/test"), &json!({}))
                    .await
                    .map(|d| {
                        format!(
                            "Test delivery #{} of rule {name} is on its way: see its status below.",
                            d.id
                        )
                    }),
                Op::Delete => api::delete::<Value>(&path)
                    .await
                    .map(|_| format!("Rule {name} is deleted; its deliveries stay listed.")),
            }
        }
    });
    Effect::new(move |_| {
        if act.value().get().is_some() {
            rules.refetch();
            deliveries.refetch();
        }
    });
    let armed = RwSignal::new(None::<i64>);
    view! {
        <Title text="Notifications"/>
        <h1 class="page-title">"Notifications"</h1>
        <p class="muted">
            "Webhooks posted when a run fails, a run waits for an approval, a task fails for good or an agent goes offline: JSON with a one-line "
            <code>"text"</code> " (so a Slack or Mattermost incoming webhook shows it as is). Each delivery is tried until it is answered with a 2xx, with growing pauses."
        </p>
        {move || outcome_view(act.value().get())}
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                match api::parse::<NotificationRuleList>(rules.await) {
                    // Operators see the deliveries only.
                    Err(e) if e.status == 403 => ().into_any(),
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                    Ok(list) if list.rules.is_empty() => view! {
                        <h2>"Rules"</h2>
                        <Empty title="No notification rules">"Create one below."</Empty>
                    }.into_any(),
                    Ok(list) => view! {
                        <h2>"Rules"</h2>
                        <div class="table-wrap"><table class="data" data-testid="rules">
                            <thead><tr>
                                <th>"Name"</th><th>"Events"</th><th>"Only"</th><th>"Posts to"</th>
                                <th>"Signed"</th><th>"State"</th><th></th>
                            </tr></thead>
                            <tbody>
                                {list.rules.into_iter().map(|r| view! { <RuleRow r armed act/> }).collect_view()}
                            </tbody>
                        </table></div>
                    }.into_any(),
                }
            })}
        </Transition>
        // Outside the lists' transitions: a refresh must not reset the form,
        // nor hide a secret just shown.
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move { is_admin(&session(me.await)).then(|| view! { <CreateRule rules/> }) })}
        </Suspense>
        <h2>"Recent deliveries"</h2>
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                let (fetched, me) = (deliveries.await, session(me.await));
                match api::parse::<DeliveryList>(fetched) {
                    Err(_) if !can_operate(&me) => view! {
                        <p class="muted" data-testid="operators-only">"Deliveries are shown to operators and admins."</p>
                    }.into_any(),
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                    Ok(l) if l.deliveries.is_empty() => view! {
                        <Empty title="No deliveries yet">"They appear here as events happen (or a rule is tested)."</Empty>
                    }.into_any(),
                    Ok(l) => view! {
                        <div class="table-wrap"><table class="data" data-testid="deliveries">
                            <thead><tr>
                                <th>"#"</th><th>"When"</th><th>"Rule"</th><th>"Event"</th><th>"Status"</th>
                                <th>"Attempts"</th><th>"Last answer"</th><th>"Message"</th>
                            </tr></thead>
                            <tbody>
                                {l.deliveries.into_iter().map(|d| view! { <DeliveryRow d/> }).collect_view()}
                            </tbody>
                        </table></div>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn RuleRow(
    r: NotificationRuleView,
    armed: RwSignal<Option<i64>>,
    act: RuleAction,
) -> impl IntoView {
    let (id, name) = (r.id, r.name.clone());
    let events = r
        .events
        .iter()
        .map(|e| view! { <span class="chip" title=event_label(e.as_str())>{e.as_str()}</span> })
        .collect_view();
    let only = match (&r.workflow, &r.task_type) {
        (None, None) => view! { <span class="muted">"all"</span> }.into_any(),
        (w, t) => view! {
            {w.clone().map(|w| view! { <span class="chip">"workflow " {w}</span> })}
            {t.clone().map(|t| view! { <span class="chip">"task type " {t}</span> })}
        }
        .into_any(),
    };
    let state = if r.enabled { "enabled" } else { "disabled" };
    let toggle = {
        let name = name.clone();
        let (op, label, testid) = if r.enabled {
            (Op::Disable, "Disable", "disable")
        } else {
            (Op::Enable, "Enable", "enable")
        };
        view! {
            <button data-testid=testid disabled=move || act.pending().get()
                on:click=move |_| { act.dispatch((id, name.clone(), op)); }>{label}</button>
        }
    };
    let test = {
        let name = name.clone();
        view! {
            <button data-testid="test" disabled=move || act.pending().get()
                on:click=move |_| { act.dispatch((id, name.clone(), Op::Test)); }>"Send test"</button>
        }
    };
    let question = format!(
        "Delete rule {}? It sends nothing more; its pending deliveries fail, and its deliveries stay listed.",
        r.name
    );
    view! {
        <tr data-testid="rule-row" data-rule=r.name.clone() data-enabled=r.enabled.to_string() class:muted=!r.enabled>
            <td><strong>{r.name.clone()}</strong>
                <span class="hint">{r.created_by.clone()} ", " <Time t_us=r.created_at_us/></span></td>
            <td data-testid="rule-events">{events}</td>
            <td>{only}</td>
            <td><code data-testid="rule-url" title="Shown as its origin: a webhook URL is often a secret itself">{r.url.clone()}</code></td>
            <td>{match r.secret_prefix.clone() {
                Some(p) => view! { <code title="The secret's first characters">{p} "…"</code> }.into_any(),
                None => view! { <span class="muted">"no"</span> }.into_any(),
            }}</td>
            <td class="status"><Badge status=state/></td>
            <td class="row-actions">
                {toggle}
                {test}
                <ConfirmButton armed id label="Delete" confirm_label="Confirm delete" question testid="delete"
                    on_confirm=Callback::new(move |_| { act.dispatch((id, name.clone(), Op::Delete)); })/>
            </td>
        </tr>
    }
}

#[component]
fn DeliveryRow(d: DeliveryView) -> impl IntoView {
    let live = use_live();
    let created = d.created_at_us;
    let answer = match (d.last_status_code, d.last_error.clone()) {
        (_, Some(e)) => {
            view! { <span class="field-error" data-testid="last-error">{e}</span> }.into_any()
        }
        (Some(code), None) => view! { <span>"HTTP " {code}</span> }.into_any(),
        (None, None) => view! { <span class="muted">"—"</span> }.into_any(),
    };
    let next = match (d.status, d.next_attempt_at_us, d.delivered_at_us) {
        (DeliveryStatus::Pending, Some(t), _) if d.attempts > 0 => Some(
            view! { <span class="hint" data-testid="next-attempt">"next try " {move || until(live.now_us.get(), t)}</span> }
                .into_any(),
        ),
        (DeliveryStatus::Delivered, _, Some(t)) => Some(
            view! { <span class="hint">"delivered " <Time t_us=t/></span> }.into_any(),
        ),
        _ => None,
    };
    view! {
        <tr data-testid="delivery-row" data-delivery=d.id data-status=d.status.as_str() data-event=d.event.clone() data-rule=d.rule.clone()>
            <td class="n">{d.id}</td>
            <td class="nowrap" title=utc(created)>{move || ago(live.now_us.get(), created)}</td>
            <td>{d.rule.clone()}</td>
            <td><span class="chip" title=event_label(&d.event)>{d.event.clone()}</span></td>
            <td class="status" data-testid="delivery-status"><Badge status=d.status.as_str()/> {next}</td>
            <td class="n" data-testid="delivery-attempts">{d.attempts} " / " {d.max_attempts}</td>
            <td>{answer}</td>
            <td class="small" title=d.summary.clone()>{d.summary.clone()}</td>
        </tr>
    }
}

/// The form field a refusal is about; a conflict is a name already taken.
fn field_of(e: &ApiFailure) -> Option<&str> {
    match e.field.as_deref() {
        Some(f) => f.split(['[', '.']).next(),
        None if e.status == 409 => Some("name"),
        None => None,
    }
}

const FIELDS: [&str; 5] = ["name", "url", "events", "workflow", "task_type"];

#[component]
fn CreateRule(rules: Resource<ApiResult<String>>) -> impl IntoView {
    use leptos::html::Input;
    // Read from the elements on submit, so what was typed before the page
    // hydrated is not lost.
    let name: NodeRef<Input> = NodeRef::new();
    let url: NodeRef<Input> = NodeRef::new();
    let workflow: NodeRef<Input> = NodeRef::new();
    let task_type: NodeRef<Input> = NodeRef::new();
    let sign: NodeRef<Input> = NodeRef::new();
    let boxes: Vec<(NotificationEvent, NodeRef<Input>)> = NotificationEvent::ALL
        .into_iter()
        .map(|e| (e, NodeRef::new()))
        .collect();
    let value = |r: NodeRef<Input>| r.get().map(|el| el.value()).unwrap_or_default();
    let create = Action::new(move |body: &Value| {
        let body = body.clone();
        async move { api::post::<CreatedNotificationRule>("/notifications/rules", &body).await }
    });
    let created = RwSignal::new(None::<CreatedNotificationRule>);
    let copied = RwSignal::new(None::<bool>);
    Effect::new(move |_| {
        if let Some(Ok(c)) = create.value().get() {
            created.set(Some(c));
            copied.set(None);
            for r in [name, url, workflow, task_type] {
                if let Some(el) = r.get_untracked() {
                    el.set_value("");
                }
            }
            rules.refetch();
        }
    });
    let submit = {
        let boxes = boxes.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let events: Vec<&str> = boxes
                .iter()
                .filter(|(_, b)| b.get().is_some_and(|el| el.checked()))
                .map(|(e, _)| e.as_str())
                .collect();
            let blank = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_string());
            let body = json!({
                "name": value(name).trim(),
                "url": value(url).trim(),
                "events": events,
                "workflow": blank(value(workflow)),
                "task_type": blank(value(task_type)),
                "sign": sign.get().map(|el| el.checked()).unwrap_or(true),
            });
            create.dispatch(body);
        }
    };
    let error_for = move |field: &'static str| {
        move || match create.value().get() {
            Some(Err(e)) if field_of(&e) == Some(field) => Some(e.message),
            _ => None,
        }
    };
    let general_error = move || match create.value().get() {
        Some(Err(e)) if !field_of(&e).is_some_and(|f| FIELDS.contains(&f)) => Some(e.message),
        _ => None,
    };
    let text = move |key: &'static str,
                     label: &'static str,
                     hint: &'static str,
                     placeholder: &'static str,
                     node: NodeRef<Input>| {
        let error = error_for(key);
        let has_error = error_for(key);
        view! {
            <div class="field" class:has-error=move || has_error().is_some()>
                <label>
                    <span class="field-name">{label}</span>
                    <input type="text" name=key data-testid=format!("input-{key}") placeholder=placeholder node_ref=node/>
                </label>
                <span class="hint">{hint}</span>
                {move || error().map(|m| view! { <span class="field-error" role="alert" data-testid=format!("error-{key}")>{m}</span> })}
            </div>
        }
    };
    let events_error = error_for("events");
    let events_has_error = error_for("events");
    let secret_box: NodeRef<Input> = NodeRef::new();
    let copy = move |_| {
        if let Some(el) = secret_box.get() {
            el.select();
            copy_text(&el.value(), move |ok| copied.set(Some(ok)));
        }
    };
    view! {
        <section class="card">
            <h2>"Create a rule"</h2>
            {move || created.get().map(|c| view! {
                <div class="new-token" role="status" data-testid="rule-created">
                    <p><strong>"Rule " {c.rule.name.clone()} " created."</strong>
                        {if c.secret.is_some() {
                            " Deliveries carry X-Drover-Signature, an HMAC-SHA256 of \"<X-Drover-Timestamp>.<body>\" with this secret. Copy it now: it is not shown again."
                        } else {
                            " Its deliveries are not signed."
                        }}</p>
                    {c.secret.clone().map(|secret| view! {
                        <div class="copy-row">
                            <input type="text" readonly=true data-testid="rule-secret" aria-label="The rule's signing secret"
                                prop:value=secret node_ref=secret_box/>
                            <button type="button" data-testid="copy-secret" on:click=copy>"Copy"</button>
                        </div>
                    })}
                    {move || copied.get().map(|ok| if ok {
                        view! { <span class="hint">"Copied to the clipboard."</span> }.into_any()
                    } else {
                        view! { <span class="hint">"Selected: copy it with Ctrl+C (⌘C)."</span> }.into_any()
                    })}
                </div>
            })}
            <form class="token-form" data-testid="rule-form" on:submit=submit>
                {text("name", "Name", "Unique: ops-slack, etl-failures.", "ops-slack", name)}
                {text("url", "URL", "http(s); a Slack or Mattermost incoming webhook works as is. Shown back as its origin only.", "https://hooks.slack.com/services/…", url)}
                <fieldset class="field" class:has-error=move || events_has_error().is_some() style="grid-column: 1 / -1">
                    <legend class="field-name">"When"</legend>
                    {boxes.iter().map(|(e, node)| {
                        let (e, node) = (*e, *node);
                        let on = matches!(e, NotificationEvent::RunFailed | NotificationEvent::TaskFailed);
                        view! {
                            <label class="check">
                                <input type="checkbox" name="events" value=e.as_str() checked=on
                                    data-testid=format!("event-{}", e.as_str()) node_ref=node/>
                                " " {event_label(e.as_str())} " " <code class="muted">{e.as_str()}</code>
                            </label>
                        }
                    }).collect_view()}
                    {move || events_error().map(|m| view! { <span class="field-error" role="alert" data-testid="error-events">{m}</span> })}
                </fieldset>
                {text("workflow", "Only workflow", "Optional: runs of this workflow (and their tasks). Not for agent events.", "any", workflow)}
                {text("task_type", "Only task type", "Optional: tasks of this type, agents handling it. Not for run events.", "any", task_type)}
                <div class="field">
                    <label class="check">
                        <input type="checkbox" name="sign" checked=true data-testid="input-sign" node_ref=sign/>
                        " Sign deliveries (a secret is made and shown once)"
                    </label>
                </div>
                {move || general_error().map(|m| view! { <p class="field-error" role="alert">{m}</p> })}
                <button type="submit" class="primary" data-testid="create-rule" disabled=move || create.pending().get()>"Create rule"</button>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_find_their_field() {
        let refusal = |field: Option<&str>, status| ApiFailure {
            status,
            message: String::new(),
            field: field.map(String::from),
            errors: Vec::new(),
        };
        assert_eq!(field_of(&refusal(Some("events[0]"), 400)), Some("events"));
        assert_eq!(field_of(&refusal(Some("url"), 422)), Some("url"));
        assert_eq!(field_of(&refusal(None, 409)), Some("name"));
        assert_eq!(field_of(&refusal(None, 500)), None);
        assert_eq!(event_label("agent_offline"), "an agent went offline");
    }
}
