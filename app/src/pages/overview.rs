//! The first page: how much work is where, and how fast it moves.

use drover_protocol::api::Overview as OverviewData;
use leptos::prelude::*;
use leptos_meta::Title;

use crate::api;
use crate::components::{ErrorBox, Loading};
use crate::format::num;
use crate::live::{use_live, Topic};

#[component]
pub fn Overview() -> impl IntoView {
    let live = use_live();
    let data = Resource::new(
        move || {
            (
                live.watch(Topic::Tasks),
                live.watch(Topic::Agents),
                live.watch(Topic::Runs),
                live.watch(Topic::Approvals),
                // The throughput window slides even when nothing happens.
                live.now_us.get() / 10_000_000,
            )
        },
        |_| api::fetch("/overview"),
    );
    view! {
        <Title text="Overview"/>
        <h1 class="page-title">"Overview"</h1>
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                match api::parse::<OverviewData>(data.await) {
                    Ok(o) => view! { <OverviewBody o/> }.into_any(),
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn OverviewBody(o: OverviewData) -> impl IntoView {
    let s = &o.stats;
    let tiles = [
        ("Queued", s.queued, "/tasks?status=queued", "queued"),
        ("Running", s.running, "/tasks?status=running", "running"),
        (
            "Succeeded",
            s.succeeded,
            "/tasks?status=succeeded",
            "succeeded",
        ),
        ("Failed", s.failed, "/tasks?status=failed", "failed"),
        ("Agents online", s.agents_online, "/agents", "agents"),
        (
            "Runs running",
            o.runs_running,
            "/runs?status=running",
            "runs",
        ),
        (
            "Waiting for approval",
            o.runs_waiting_approval,
            "/approvals",
            "approvals",
        ),
    ];
    let per_minute: i64 = o
        .throughput
        .iter()
        .rev()
        .take((60 / o.bucket_secs.max(1)) as usize)
        .sum();
    let [w_u, w_t, w_i] = o.priority_weights;
    view! {
        <div class="tiles">
            {tiles.into_iter().map(|(label, n, href, key)| view! {
                <a class="tile" href=href data-testid=format!("tile-{key}")>
                    <span class="tile-n">{n}</span>
                    <span class="tile-label">{label}</span>
                </a>
            }).collect_view()}
        </div>
        <div class="grid2">
            <section class="card">
                <h2>"Throughput"</h2>
                <p class="muted">{per_minute} " tasks finished in the last minute; "
                    {o.throughput.len() as i64 * o.bucket_secs / 60} " minutes shown, "
                    {o.bucket_secs} " s per bar."</p>
                <Sparkline values=o.throughput.clone()/>
            </section>
            <section class="card">
                <h2>"Queue depth by priority"</h2>
                <p class="muted">"P = " {num(w_u)} "·urgency + " {num(w_t)} "·time_sensitivity + " {num(w_i)} "·importance"</p>
                <Bands counts=o.queued_by_band edges=o.band_edges/>
            </section>
        </div>
    }
}

/// Bars of tasks finished per bucket, oldest on the left.
#[component]
fn Sparkline(values: Vec<i64>) -> impl IntoView {
    // Whole units only (10 per bar): the browser build then carries no float formatting.
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let h: i64 = 60;
    let w = values.len().max(1) as i64 * 10;
    view! {
        <svg class="sparkline" viewBox=format!("0 0 {w} {h}") preserveAspectRatio="none" role="img"
            aria-label="tasks finished over time">
            <line x1="0" y1=h - 1 x2=w y2=h - 1 class="baseline"></line>
            {values.iter().enumerate().map(|(i, &v)| {
                let bh = v * (h - 2) / max;
                view! {
                    <rect x=i as i64 * 10 + 1 y=h - bh width="8" height=bh>
                        <title>{v} " tasks"</title>
                    </rect>
                }
            }).collect_view()}
        </svg>
    }
}

#[component]
fn Bands(counts: [i64; 3], edges: [f64; 2]) -> impl IntoView {
    let total = counts.iter().sum::<i64>().max(1);
    let rows = [
        ("High", counts[2], format!("P ≥ {}", num(edges[1])), "high"),
        (
            "Medium",
            counts[1],
            format!("{} ≤ P < {}", num(edges[0]), num(edges[1])),
            "medium",
        ),
        ("Low", counts[0], format!("P < {}", num(edges[0])), "low"),
    ];
    view! {
        <table class="bands">
            <tbody>
                {rows.into_iter().map(|(label, n, range, key)| view! {
                    <tr data-testid=format!("band-{key}")>
                        <th>{label}</th>
                        <td class="muted">{range}</td>
                        <td class="bar-cell"><div class=format!("hbar {key}") style=format!("width:{}%", n * 100 / total)></div></td>
                        <td class="n">{n}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}
