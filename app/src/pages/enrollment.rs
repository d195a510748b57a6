//! Enrollment tokens (admins): the credentials agents register with, each
//! scoped to task types and labels and expiring; creating one shows the
//! token once, revoking one revokes the agents enrolled with it.

use drover_protocol::credentials::{CreatedEnrollmentToken, EnrollmentTokenView};
use leptos::prelude::*;
use leptos_meta::Title;
use serde::Deserialize;

use crate::api::{self, ApiFailure, ApiResult};
use crate::components::{
    admins_only_failure, copy_text, is_admin, outcome_view, session, use_me, AdminsOnly, Badge,
    ConfirmButton, Empty, ErrorBox, Loading, Time,
};
use crate::live::use_live;

/// `GET /api/v1/enrollment-tokens`.
#[derive(Debug, Clone, Deserialize)]
struct TokenList {
    tokens: Vec<EnrollmentTokenView>,
}

#[component]
pub fn EnrollmentTokens() -> impl IntoView {
    let me = use_me();
    let live = use_live();
    let tokens = Resource::new(
        || (),
        move |_| async move {
            if !is_admin(&session(me.await)) {
                return Err(admins_only_failure());
            }
            api::fetch("/enrollment-tokens").await
        },
    );
    let revoke = Action::new(move |(id, name): &(i64, String)| {
        let (id, name) = (*id, name.clone());
        async move {
            #[derive(Deserialize)]
            struct Revoked {
                #[serde(default)]
                agents_revoked: Vec<i64>,
            }
            api::delete::<Revoked>(&format!("/enrollment-tokens/{id}"))
                .await
                .map(|r| match r.agents_revoked.len() {
                    0 => format!("Token {name} is revoked; no agent was enrolled with it."),
                    1 => {
                        format!("Token {name} is revoked, and the one agent enrolled with it too.")
                    }
                    n => {
                        format!("Token {name} is revoked, and the {n} agents enrolled with it too.")
                    }
                })
        }
    });
    Effect::new(move |_| {
        if revoke.value().get().is_some() {
            tokens.refetch();
        }
    });
    let armed = RwSignal::new(None::<i64>);
    view! {
        <Title text="Enrollment tokens"/>
        <h1 class="page-title">"Enrollment tokens"</h1>
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                let now = live.now_us.get_untracked();
                match api::parse::<TokenList>(tokens.await) {
                    Err(e) if e.status == 403 => view! { <AdminsOnly/> }.into_any(),
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                    Ok(list) => view! {
                        <p class="muted">
                            "Agents register with one of these (" <code>"drover-agent --token …"</code>
                            "). A token allows only the task types and labels it names; revoking it revokes the agents enrolled with it."
                        </p>
                        {move || outcome_view(revoke.value().get())}
                        {if list.tokens.is_empty() {
                            view! { <Empty title="No enrollment tokens">"Create one below."</Empty> }.into_any()
                        } else {
                            view! {
                                <div class="table-wrap"><table class="data" data-testid="enrollment-tokens">
                                    <thead><tr>
                                        <th>"Name"</th><th>"Token"</th><th>"Task types"</th><th>"Labels"</th>
                                        <th>"Created"</th><th>"Expires"</th><th>"Status"</th><th></th>
                                    </tr></thead>
                                    <tbody>
                                        {list.tokens.into_iter().map(|t| view! { <TokenRow t now armed revoke/> }).collect_view()}
                                    </tbody>
                                </table></div>
                            }.into_any()
                        }}
                    }.into_any(),
                }
            })}
        </Transition>
        // Outside the list's transition: a list refresh must not reset the
        // form, nor hide the token just created.
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move { is_admin(&session(me.await)).then(|| view! { <CreateToken tokens/> }) })}
        </Suspense>
    }
}

/// Task types or labels: the list, or "any" when the token names none.
fn scope_view(scope: Option<Vec<String>>, class: &'static str) -> AnyView {
    match scope {
        None => view! { <span class="muted">"any"</span> }.into_any(),
        Some(items) => items
            .into_iter()
            .map(|s| view! { <span class=class>{s}</span> })
            .collect_view()
            .into_any(),
    }
}

#[component]
fn TokenRow(
    t: EnrollmentTokenView,
    now: i64,
    armed: RwSignal<Option<i64>>,
    revoke: Action<(i64, String), ApiResult<String>>,
) -> impl IntoView {
    let status = if t.revoked_at_us.is_some() {
        "revoked"
    } else if t.expires_at_us.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    };
    let (id, name) = (t.id, t.name.clone());
    let question = format!(
        "Revoke {}? No agent can register with it any more, and the agents enrolled with it are revoked too.",
        t.name
    );
    view! {
        <tr data-testid="token-row" data-token=t.name.clone() data-status=status class:revoked=status == "revoked">
            <td><strong>{t.name.clone()}</strong></td>
            <td><code data-testid="token-prefix">{t.prefix.clone()} "…"</code></td>
            <td data-testid="token-task-types">{scope_view(t.task_types.clone(), "chip")}</td>
            <td data-testid="token-labels">{scope_view(t.labels.clone(), "chip label")}</td>
            <td class="muted">{t.created_by.clone()} ", " <Time t_us=t.created_at_us/></td>
            <td class="muted">{match t.expires_at_us { Some(e) => view! { <Time t_us=e/> }.into_any(), None => "never".into_any() }}</td>
            <td class="status">
                <Badge status=status/>
                {t.revoked_at_us.map(|r| view! { <span class="muted small">" " <Time t_us=r/></span> })}
            </td>
            <td class="row-actions">
                {(status != "revoked").then(|| view! {
                    <ConfirmButton armed id label="Revoke" confirm_label="Confirm revoke" question testid="revoke"
                        on_confirm=Callback::new(move |_| { revoke.dispatch((id, name.clone())); })/>
                })}
            </td>
        </tr>
    }
}

/// Comma-separated names as a scope: none written means any.
fn scope_of(text: &str) -> Option<Vec<String>> {
    let items: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    (!items.is_empty()).then_some(items)
}

/// The form field a refusal is about: `task_types[2]` is the task types
/// field, and a conflict is a name already taken.
fn field_of(e: &ApiFailure) -> Option<&str> {
    match e.field.as_deref() {
        Some(f) => f.split('[').next(),
        None if e.status == 409 => Some("name"),
        None => None,
    }
}

const FIELDS: [&str; 4] = ["name", "task_types", "labels", "expires_in"];

#[component]
fn CreateToken(tokens: Resource<ApiResult<String>>) -> impl IntoView {
    // Read from the elements on submit, so text typed before the page
    // hydrated is not lost.
    let name: NodeRef<leptos::html::Input> = NodeRef::new();
    let task_types: NodeRef<leptos::html::Input> = NodeRef::new();
    let labels: NodeRef<leptos::html::Input> = NodeRef::new();
    let expires: NodeRef<leptos::html::Input> = NodeRef::new();
    let value = |r: NodeRef<leptos::html::Input>| r.get().map(|el| el.value()).unwrap_or_default();
    let create = Action::new(move |body: &serde_json::Value| {
        let body = body.clone();
        async move { api::post::<CreatedEnrollmentToken>("/enrollment-tokens", &body).await }
    });
    let copied = RwSignal::new(None::<bool>);
    // The token last created, kept while the form is used again (a later
    // refusal must not hide a token that is never shown again).
    let created = RwSignal::new(None::<CreatedEnrollmentToken>);
    Effect::new(move |_| {
        if let Some(Ok(c)) = create.value().get() {
            created.set(Some(c));
            for r in [name, task_types, labels, expires] {
                if let Some(el) = r.get_untracked() {
                    el.set_value("");
                }
            }
            copied.set(None);
            tokens.refetch();
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let expires_in = value(expires).trim().to_string();
        let body = serde_json::json!({
            "name": value(name).trim(),
            "task_types": scope_of(&value(task_types)),
            "labels": scope_of(&value(labels)),
            "expires_in": (!expires_in.is_empty()).then_some(expires_in),
        });
        create.dispatch(body);
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
    let field = move |key: &'static str,
                      label: &'static str,
                      hint: &'static str,
                      placeholder: &'static str,
                      node: NodeRef<leptos::html::Input>| {
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
    let new_token: NodeRef<leptos::html::Input> = NodeRef::new();
    let copy = move |_| {
        if let Some(el) = new_token.get() {
            el.select();
            copy_text(&el.value(), move |ok| copied.set(Some(ok)));
        }
    };
    view! {
        <section class="card">
            <h2>"Create a token"</h2>
            {move || created.get().map(|c| view! {
                <div class="new-token" role="status" data-testid="new-token-box">
                    <p><strong>"Token " {c.view.name.clone()} " created."</strong>
                        " Copy it now: it is not shown again (the server keeps only a hash of it)."</p>
                    <div class="copy-row">
                        <input type="text" readonly=true data-testid="new-token" aria-label="The new enrollment token"
                            prop:value=c.token.clone() node_ref=new_token
                            on:focus=move |ev| { event_target::<leptos::web_sys::HtmlInputElement>(&ev).select(); }/>
                        <button type="button" data-testid="copy-token" on:click=copy>"Copy"</button>
                    </div>
                    {move || copied.get().map(|ok| if ok {
                        view! { <span class="hint" data-testid="copied">"Copied to the clipboard."</span> }.into_any()
                    } else {
                        view! { <span class="hint">"Selected: copy it with Ctrl+C (⌘C)."</span> }.into_any()
                    })}
                </div>
            })}
            <form class="token-form" data-testid="token-form" on:submit=submit>
                {field("name", "Name", "Unique, so you recognise it: gpu-pool, ci-runners.", "gpu-pool", name)}
                {field("task_types", "Task types", "Comma-separated; empty allows any.", "any", task_types)}
                {field("labels", "Labels", "Comma-separated; empty allows any.", "any", labels)}
                {field("expires_in", "Expires in", "Like 30d, 12h or 90m; empty lasts until revoked.", "never", expires)}
                {move || general_error().map(|m| view! { <p class="field-error" role="alert">{m}</p> })}
                <button type="submit" class="primary" data-testid="create-token" disabled=move || create.pending().get()>"Create token"</button>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_scopes_mean_any_and_errors_find_their_field() {
        assert_eq!(scope_of(" , "), None);
        assert_eq!(
            scope_of("echo, wc ,"),
            Some(vec!["echo".to_string(), "wc".to_string()])
        );
        let refusal = |field: Option<&str>, status| ApiFailure {
            status,
            message: String::new(),
            field: field.map(String::from),
            errors: Vec::new(),
        };
        assert_eq!(
            field_of(&refusal(Some("task_types[1]"), 400)),
            Some("task_types")
        );
        assert_eq!(field_of(&refusal(None, 409)), Some("name"));
        assert_eq!(field_of(&refusal(None, 500)), None);
    }
}
