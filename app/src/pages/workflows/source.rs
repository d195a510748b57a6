//! A version's text with line numbers, and the changes between two
//! versions (`?diff=2..3`), both as the server answers them: the diff is
//! computed there, so this file only draws lines.

use drover_protocol::workflow::{LineChange, WorkflowDiff, WorkflowSource};
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::params::ParamsMap;

use crate::api::{self, enc};
use crate::components::{ErrorBox, Loading};

/// The two versions a page compares: `diff=2..3`, or `from=2&to=3` (what
/// the compare form sends when the page has no script yet).
pub fn diff_pair(q: &ParamsMap) -> Option<(i64, i64)> {
    let number = |s: &str| s.trim().parse::<i64>().ok().filter(|v| *v > 0);
    match q.get("diff") {
        Some(d) => {
            let (a, b) = d.split_once("..")?;
            Some((number(a)?, number(b)?))
        }
        None => Some((number(&q.get("from")?)?, number(&q.get("to")?)?)),
    }
}

/// The workflow page's address showing `version` and comparing `pair`.
pub fn page_href(name: &str, version: i64, pair: Option<(i64, i64)>) -> String {
    let mut href = format!("/workflows/{}?version={version}", enc(name));
    if let Some((a, b)) = pair {
        href.push_str(&format!("&diff={a}..{b}"));
    }
    href
}

#[component]
pub fn SourceView(name: String, version: i64, previous: Option<i64>) -> impl IntoView {
    let path = format!("/workflows/{}/versions/{version}/source", enc(&name));
    let source = Resource::new(
        || (),
        move |_| {
            let path = path.clone();
            async move { api::fetch(&path).await }
        },
    );
    let compare = previous.map(|p| {
        view! {
            <p><a href=page_href(&name, version, Some((p, version))) data-testid="compare-previous">
                "What changed since v" {p}</a></p>
        }
    });
    view! {
        <section class="card" data-testid="source-card">
            <h2>"Source of v" {version}</h2>
            {compare}
            <Transition fallback=Loading>
                {move || Suspend::new(async move {
                    match api::parse::<WorkflowSource>(source.await) {
                        Ok(s) => {
                            let lines = s.text.lines().enumerate().map(|(i, line)| view! {
                                <span class="line" data-line=i + 1>{line.to_string()}</span> "\n"
                            }).collect_view();
                            view! {
                                {s.rendered.then(|| view! {
                                    <p class="notice warning" data-testid="source-rendered">
                                        "v" {s.version} " was uploaded before Drover kept the text of definitions: "
                                        "this is its stored definition rendered as YAML, not the text as uploaded."
                                    </p>
                                })}
                                // Focusable: a long definition scrolls, and a keyboard must reach it.
                                <pre class="source" data-testid="source" tabindex="0"
                                    aria-label=format!("Source of {} v{}", s.name, s.version)>{lines}</pre>
                            }.into_any()
                        }
                        Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// Pick two versions; the diff of the pair in the URL, if any.
#[component]
pub fn Changes(name: String, versions: Vec<i64>, shown: i64) -> impl IntoView {
    let query = use_query_map();
    let pair = Memo::new(move |_| query.with(diff_pair));
    let diff = Resource::new(
        {
            let name = name.clone();
            move || (name.clone(), pair.get())
        },
        |(name, pair)| async move {
            match pair {
                Some((a, b)) => {
                    api::fetch(&format!("/workflows/{}/diff?from={a}&to={b}", enc(&name))).await
                }
                None => Ok("null".to_string()),
            }
        },
    );
    let (default_from, default_to) = pair.get_untracked().unwrap_or_else(|| {
        let older = versions.iter().copied().filter(|v| *v < shown).max();
        (older.unwrap_or(shown), shown)
    });
    let from = RwSignal::new(default_from.to_string());
    let to = RwSignal::new(default_to.to_string());
    let navigate = use_navigate();
    let submit = {
        let name = name.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let (Ok(a), Ok(b)) = (from.get().parse::<i64>(), to.get().parse::<i64>()) else {
                return;
            };
            navigate(&page_href(&name, shown, Some((a, b))), Default::default());
        }
    };
    let options = move |selected: i64| {
        versions
            .iter()
            .map(|v| {
                view! { <option value=v.to_string() selected=*v == selected>"v" {*v}</option> }
            })
            .collect_view()
    };
    view! {
        <section class="card" data-testid="changes-card" id="changes">
            <h2>"Compare versions"</h2>
            <form class="filters compare" method="get" data-testid="compare-form" on:submit=submit>
                <input type="hidden" name="version" value=shown.to_string()/>
                <label>"From " <select name="from" data-testid="compare-from"
                    on:change=move |ev| from.set(event_target_value(&ev))>{options.clone()(default_from)}</select></label>
                <label>"to " <select name="to" data-testid="compare-to"
                    on:change=move |ev| to.set(event_target_value(&ev))>{options(default_to)}</select></label>
                <button type="submit" data-testid="compare">"Show changes"</button>
            </form>
            <Transition fallback=Loading>
                {move || Suspend::new(async move {
                    match api::parse::<Option<WorkflowDiff>>(diff.await) {
                        Ok(Some(d)) => view! { <DiffTable d/> }.into_any(),
                        Ok(None) => ().into_any(),
                        Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn DiffTable(d: WorkflowDiff) -> impl IntoView {
    let summary = if d.hunks.is_empty() {
        format!("No changes between v{} and v{}.", d.from, d.to)
    } else {
        format!(
            "v{} → v{}: {} line{} added, {} removed.",
            d.from,
            d.to,
            d.added,
            if d.added == 1 { "" } else { "s" },
            d.removed
        )
    };
    let (from, to) = (d.from, d.to);
    let hunks = d
        .hunks
        .into_iter()
        .map(|h| {
            let header = format!(
                "@@ −{},{} +{},{} @@",
                h.from_start, h.from_lines, h.to_start, h.to_lines
            );
            let lines = h
                .lines
                .into_iter()
                .map(|l| {
                    let (class, mark, said) = match l.change {
                        LineChange::Added => ("added", "+", "added"),
                        LineChange::Removed => ("removed", "−", "removed"),
                        LineChange::Same => ("same", "", "unchanged"),
                    };
                    view! {
                        <tr class=format!("dl {class}") data-change=class data-testid="diff-line">
                            <td class="ln">{l.from_line}</td>
                            <td class="ln">{l.to_line}</td>
                            <td class="mark" title=said>{mark}</td>
                            <td class="code"><code>{l.text}</code></td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <tbody>
                    <tr class="hunk"><td colspan="4">{header}</td></tr>
                    {lines}
                </tbody>
            }
        })
        .collect_view();
    view! {
        <p data-testid="diff-summary">{summary}</p>
        {d.rendered.then(|| view! {
            <p class="notice warning" data-testid="diff-rendered">
                "A version here was uploaded before Drover kept the text of definitions, "
                "so both are compared as their stored definitions rendered as YAML."
            </p>
        })}
        <div class="table-wrap"><table class="diff" data-testid="diff">
            <thead><tr>
                <th scope="col">"v" {from}</th>
                <th scope="col">"v" {to}</th>
                <th scope="col">"Change"</th>
                <th scope="col">"Line"</th>
            </tr></thead>
            {hunks}
        </table></div>
    }
}
