//! The audit log (admins): who did what to what, newest first, filtered by
//! action prefix and actor, paged backwards. The filters and pages are
//! query parameters, so every view of the log is a link.

use drover_protocol::credentials::{AuditEntry, AuditList};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use serde_json::Value;

use crate::api::{self, enc};
use crate::components::{
    admins_only_failure, is_admin, session, use_me, AdminsOnly, Empty, ErrorBox, Loading, Time,
};
use crate::format::utc;

/// Entries per page, unless the link says (`?limit=`, up to the server's 500).
const PAGE: i64 = 50;

/// What one view of the log shows.
#[derive(Debug, Clone, PartialEq, Default)]
struct Filter {
    action: Option<String>,
    actor: Option<String>,
    limit: Option<i64>,
}

/// `?action=…&actor=…&limit=…&before_id=…` (what is not set left out).
fn audit_query(f: &Filter, before_id: Option<i64>) -> String {
    let Filter {
        action,
        actor,
        limit,
    } = f;
    let mut parts = Vec::new();
    if let Some(a) = action {
        parts.push(format!("action={}", enc(a)));
    }
    if let Some(a) = actor {
        parts.push(format!("actor={}", enc(a)));
    }
    if let Some(l) = limit {
        parts.push(format!("limit={l}"));
    }
    if let Some(b) = before_id {
        parts.push(format!("before_id={b}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[component]
pub fn Audit() -> impl IntoView {
    let me = use_me();
    let query = use_query_map();
    let param = move |key: &'static str| {
        move || {
            query
                .with(|q| q.get(key))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        }
    };
    let (action, actor, limit, before_id) = (
        param("action"),
        param("actor"),
        param("limit"),
        param("before_id"),
    );
    let filter = move || Filter {
        action: action(),
        actor: actor(),
        limit: limit().and_then(|l| l.parse().ok()),
    };
    let before_id = move || before_id().and_then(|b| b.parse::<i64>().ok());
    let entries = Resource::new(
        move || (filter(), before_id()),
        move |(filter, before_id)| async move {
            if !is_admin(&session(me.await)) {
                return Err(admins_only_failure());
            }
            let asked = Filter {
                limit: Some(filter.limit.unwrap_or(PAGE)),
                ..filter
            };
            api::fetch(&format!("/audit{}", audit_query(&asked, before_id))).await
        },
    );
    view! {
        <Title text="Audit log"/>
        <h1 class="page-title">"Audit log"</h1>
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                let list = match api::parse::<AuditList>(entries.await) {
                    Err(e) if e.status == 403 => return view! { <AdminsOnly/> }.into_any(),
                    Err(e) => return view! { <ErrorBox failure=e/> }.into_any(),
                    Ok(list) => list,
                };
                let (f, before) = (filter(), before_id());
                let (action, actor) = (f.action.clone(), f.actor.clone());
                let filtered = action.is_some() || actor.is_some();
                let older = list.next_before_id.map(|n| format!("/audit{}", audit_query(&f, Some(n))));
                let newest = before.map(|_| format!("/audit{}", audit_query(&f, None)));
                view! {
                    <form class="filters" method="get" action="/audit" data-testid="audit-filters">
                        <label>"Action starts with "
                            <input name="action" data-testid="filter-action" placeholder="e.g. agent."
                                value=action.clone().unwrap_or_default()/>
                        </label>
                        <label>"Actor "
                            <input name="actor" data-testid="filter-actor" placeholder="e.g. admin or agent:7"
                                value=actor.clone().unwrap_or_default()/>
                        </label>
                        {f.limit.map(|l| view! { <input type="hidden" name="limit" value=l/> })}
                        <button type="submit" data-testid="filter">"Filter"</button>
                        {filtered.then(|| view! { <a href="/audit" data-testid="clear-filter">"Show all"</a> })}
                        <span class="muted">"Newest first."</span>
                    </form>
                    {if list.entries.is_empty() {
                        view! {
                            <Empty title="Nothing recorded here">
                                {if filtered { "No entry matches these filters." } else { "What people and agents change is recorded here as it happens." }}
                            </Empty>
                        }.into_any()
                    } else {
                        view! {
                            <div class="table-wrap"><table class="data" data-testid="audit">
                                <thead><tr><th>"When"</th><th>"Actor"</th><th>"Action"</th><th>"Target"</th><th>"Details"</th></tr></thead>
                                <tbody>
                                    {list.entries.into_iter().map(|e| view! { <EntryRow e/> }).collect_view()}
                                </tbody>
                            </table></div>
                        }.into_any()
                    }}
                    <p class="pager">
                        {newest.map(|href| view! { <a href=href data-testid="newest">"← Newest"</a> })}
                        {older.map(|href| view! { <a href=href data-testid="older">"Older →"</a> })}
                    </p>
                }.into_any()
            })}
        </Transition>
    }
}

/// Where a target such as `run:3` or `task:7` is shown, if it has a page.
fn target_href(target: &str) -> Option<String> {
    let (kind, id) = target.split_once(':')?;
    let id: i64 = id.parse().ok()?;
    match kind {
        "run" => Some(format!("/runs/{id}")),
        "task" => Some(format!("/tasks/{id}")),
        "schedule" => Some(format!("/schedules#schedule-{id}")),
        _ => None,
    }
}

/// A detail value as text: strings without their quotes, lists as
/// `a, b`, times (`…_at_us`) as dates.
fn detail_text(key: &str, v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if key.ends_with("_at_us") => {
            n.as_i64().map(utc).unwrap_or_else(|| n.to_string())
        }
        Value::Array(items) if items.is_empty() => "none".into(),
        Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => items
            .iter()
            .map(|i| detail_text("", i))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

#[component]
fn EntryRow(e: AuditEntry) -> impl IntoView {
    let details: Vec<(String, String)> = match &e.detail {
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                // `expires_at_us` reads as `expires_at`: it is shown as a date.
                let shown = k.strip_suffix("_us").filter(|_| v.is_i64()).unwrap_or(k);
                (shown.to_string(), detail_text(k, v))
            })
            .collect(),
        Value::Null => Vec::new(),
        other => vec![(String::new(), other.to_string())],
    };
    let target = e.target.clone().map(|t| match target_href(&t) {
        Some(href) => view! { <a href=href>{t}</a> }.into_any(),
        None => view! { <code>{t}</code> }.into_any(),
    });
    view! {
        <tr data-testid="audit-row" data-action=e.action.clone() data-actor=e.actor.clone()>
            <td class="muted nowrap"><Time t_us=e.at_us/></td>
            <td>{e.actor.clone()}</td>
            <td><code class="action">{e.action.clone()}</code></td>
            <td>{target}</td>
            <td class="details">
                {details.into_iter().map(|(k, v)| view! {
                    <span class="kv">{(!k.is_empty()).then(|| view! { <span class="muted">{k} " "</span> })}{v}</span>
                }).collect_view()}
            </td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_links_and_targets_link_to_their_pages() {
        assert_eq!(audit_query(&Filter::default(), None), "");
        let f = Filter {
            action: Some("agent.".into()),
            actor: Some("agent:7".into()),
            limit: Some(5),
        };
        assert_eq!(
            audit_query(&f, Some(42)),
            "?action=agent.&actor=agent%3A7&limit=5&before_id=42"
        );
        assert_eq!(target_href("run:3").as_deref(), Some("/runs/3"));
        assert_eq!(
            target_href("schedule:4").as_deref(),
            Some("/schedules#schedule-4")
        );
        assert_eq!(
            detail_text("task_types", &serde_json::json!(["echo", "wc"])),
            "echo, wc"
        );
        assert_eq!(detail_text("labels", &serde_json::json!([])), "none");
        assert_eq!(
            detail_text("expires_at_us", &serde_json::json!(0)),
            "1970-01-01 00:00:00 UTC"
        );
        assert_eq!(detail_text("requeued", &serde_json::json!(2)), "2");
        assert_eq!(target_href("agent:3"), None);
        assert_eq!(target_href("task:x"), None);
    }
}
