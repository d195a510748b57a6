//! How a workflow's runs went: the success rate of its newest finished
//! runs (`/workflows/{name}/stats`) and its last few runs, each with a
//! link to run it again with the same inputs.

use drover_protocol::workflow::{RunList, WorkflowStats};
use leptos::prelude::*;

use crate::api::{self, enc};
use crate::components::{started_by_view, Badge, ErrorBox, Loading};
use crate::format::{ago, duration_us};
use crate::live::{use_live, Topic};

/// Finished runs the success rate is taken over.
pub const RATE_OVER: i64 = 20;
/// Runs listed.
const RECENT: i64 = 10;

/// "85% of the last 20 finished runs succeeded (17 succeeded, 2 failed, 1 cancelled)".
fn rate_line(s: &WorkflowStats) -> String {
    match s.success_percent() {
        None => "No run has finished yet.".to_string(),
        Some(p) => format!(
            "{p}% of the last {} finished run{} succeeded ({} succeeded, {} failed, {} cancelled).",
            s.finished,
            if s.finished == 1 { "" } else { "s" },
            s.succeeded,
            s.failed,
            s.cancelled
        ),
    }
}

#[component]
pub fn RecentRuns(name: String, operate: bool) -> impl IntoView {
    let live = use_live();
    let runs_path = format!("/runs?workflow={}&limit={RECENT}", enc(&name));
    let stats_path = format!("/workflows/{}/stats?last={RATE_OVER}", enc(&name));
    let runs = Resource::new(
        move || live.watch(Topic::Runs),
        move |_| {
            let path = runs_path.clone();
            async move { api::fetch(&path).await }
        },
    );
    let stats = Resource::new(
        move || live.watch(Topic::Runs),
        move |_| {
            let path = stats_path.clone();
            async move { api::fetch(&path).await }
        },
    );
    let all_href = format!("/runs?workflow={}", enc(&name));
    view! {
        <section class="card" data-testid="recent-runs">
            <h2>"Recent runs"</h2>
            <Transition fallback=Loading>
                {move || Suspend::new(async move {
                    match api::parse::<WorkflowStats>(stats.await) {
                        Ok(s) => view! {
                            <p class="success-rate" data-testid="success-rate" data-percent=s.success_percent().map(|p| p.to_string())>
                                <strong>{rate_line(&s)}</strong>
                                {(s.active > 0).then(|| view! { " " <span class="muted">{s.active} " still going."</span> })}
                            </p>
                        }.into_any(),
                        Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                    }
                })}
            </Transition>
            <Transition fallback=Loading>
                {move || {
                    let name = name.clone();
                    let all_href = all_href.clone();
                    Suspend::new(async move {
                    match api::parse::<RunList>(runs.await) {
                        Ok(l) if l.runs.is_empty() => view! {
                            <p class="muted" data-testid="no-runs">"No runs yet."</p>
                        }.into_any(),
                        Ok(l) => view! {
                            <div class="table-wrap"><table class="data" data-testid="recent-runs-table">
                                <thead><tr><th>"Run"</th><th>"Version"</th><th>"Status"</th><th>"Started by"</th><th>"Started"</th><th>"Took"</th>
                                    {operate.then(|| view! { <th>"Again"</th> })}</tr></thead>
                                <tbody>
                                    {l.runs.into_iter().map(|r| {
                                        let created = r.created_at_us;
                                        view! {
                                            <tr data-testid="recent-run" data-run=r.id>
                                                <td><a href=format!("/runs/{}", r.id)>"#" {r.id}</a></td>
                                                <td>"v" {r.version}</td>
                                                <td><Badge status=r.status.as_str()/></td>
                                                <td>{started_by_view(r.started_by.clone())}</td>
                                                <td class="muted">{move || ago(live.now_us.get(), created)}</td>
                                                <td class="muted">{r.finished_at_us.map(|f| duration_us(f - created))}</td>
                                                {operate.then(|| view! {
                                                    <td><a href=format!("/workflows/{}?from_run={}", enc(&name), r.id)
                                                        data-testid="run-again" aria-label=format!("Run again with the inputs of run {}", r.id)>"Run again"</a></td>
                                                })}
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table></div>
                            <p><a href=all_href data-testid="all-runs">{format!("All runs of this workflow ({}{})", l.total, if l.total_more { "+" } else { "" })}</a></p>
                        }.into_any(),
                        Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                    }
                })}}
            </Transition>
        </section>
    }
}
