//! The first page: how much work is where, and how it went over a range
//! of time (`/?range=1h`): throughput, failure rate, queue wait and queue
//! depth by type, each drawn with a table alternative, and the latest
//! failures. Live: events refetch it, and the window slides on a clock.

use drover_protocol::api::{Overview as OverviewData, OverviewRange, RecentFailure};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api;
use crate::components::{ErrorBox, Loading};
use crate::format::{ago, duration_us, fixed, num, span, utc};
use crate::live::{use_live, Topic};
use crate::time_chart::{nice_max, Chart, Kind, Series, TimeChart};

#[component]
pub fn Overview() -> impl IntoView {
    let live = use_live();
    let query = use_query_map();
    let range = move || {
        query
            .with(|q| q.get("range"))
            .and_then(|r| OverviewRange::parse(&r))
            .unwrap_or_default()
    };
    let data = Resource::new(
        move || {
            (
                live.watch(Topic::Tasks),
                live.watch(Topic::Agents),
                live.watch(Topic::Runs),
                live.watch(Topic::Approvals),
                // The window slides even when nothing happens.
                live.now_us.get() / 10_000_000,
                range(),
            )
        },
        |(.., r)| async move { api::fetch(&format!("/overview?range={}", r.as_str())).await },
    );
    view! {
        <Title text="Overview"/>
        <h1 class="page-title">"Overview"</h1>
        <nav class="filters" aria-label="Time range" data-testid="overview-range">
            "Last "
            {OverviewRange::ALL.map(|r| view! {
                <a href=format!("/?range={}", r.as_str())
                    aria-current=move || (range() == r).then_some("page")
                    class:current=move || range() == r
                    data-testid=format!("range-{}", r.as_str())>{r.label()}</a>
            }).collect_view()}
        </nav>
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
    let [w_u, w_t, w_i] = o.priority_weights;
    let charts = charts(&o);
    view! {
        <div class="tiles">
            {tiles.into_iter().map(|(label, n, href, key)| view! {
                <a class="tile" href=href data-testid=format!("tile-{key}")>
                    <span class="tile-n">{n}</span>
                    <span class="tile-label">{label}</span>
                </a>
            }).collect_view()}
        </div>
        <div class="grid2 charts" data-testid="overview-charts" data-range=o.range.clone()>
            {charts.into_iter().map(|chart| view! { <TimeChart chart/> }).collect_view()}
        </div>
        <div class="grid2">
            <section class="card" aria-labelledby="failures-title">
                <h2 id="failures-title">"Recent failures"</h2>
                <RecentFailures failures=o.recent_failures.clone()/>
            </section>
            <section class="card" aria-labelledby="bands-title">
                <h2 id="bands-title">"Queue depth by priority"</h2>
                <p class="muted">"P = " {num(w_u)} "·urgency + " {num(w_t)} "·time_sensitivity + " {num(w_i)} "·importance"</p>
                <Bands counts=o.queued_by_band edges=o.band_edges/>
            </section>
        </div>
    }
}

/// A figure in whole units for the table.
fn whole(v: f64) -> String {
    fixed(v, 0)
}

fn percent(v: f64) -> String {
    format!("{} %", fixed(v, 1))
}

fn millis(v: f64) -> String {
    duration_us((v * 1000.0) as i64)
}

/// 0, half and the top of an axis, labelled by `label`.
fn ticks(max: f64, label: fn(f64) -> String) -> Vec<(f64, String)> {
    [0.0, max / 2.0, max]
        .into_iter()
        .map(|v| (v, label(v)))
        .collect()
}

/// The overview's four charts from its buckets.
fn charts(o: &OverviewData) -> Vec<Chart> {
    let range = OverviewRange::parse(&o.range).unwrap_or_default();
    let window_us = o.bucket_us * o.buckets.len() as i64;
    let (name, half) = (range.label().to_string(), span(window_us / 2));
    let bucket = span(o.bucket_us);
    let base = |key: &'static str,
                title: &str,
                unit: String,
                kind: Kind,
                series: Vec<Series>,
                max: f64,
                ticks: Vec<(f64, String)>,
                cell: fn(f64) -> String| Chart {
        key,
        title: title.to_string(),
        unit,
        summary: String::new(),
        note: String::new(),
        kind,
        since_us: o.since_us,
        bucket_us: o.bucket_us,
        range: name.clone(),
        half: half.clone(),
        max,
        ticks,
        series,
        cell,
    };
    let b = &o.buckets;

    // Throughput: finishes per bucket, succeeded under failed.
    let succeeded: i64 = b.iter().map(|b| b.succeeded).sum();
    let failed: i64 = b.iter().map(|b| b.failed).sum();
    let top = nice_max(
        b.iter()
            .map(|b| (b.succeeded + b.failed) as f64)
            .fold(0.0, f64::max),
    );
    let mut throughput = base(
        "throughput",
        "Throughput",
        format!("tasks per {bucket}"),
        Kind::Stacked,
        vec![
            Series {
                name: "succeeded".into(),
                values: b.iter().map(|b| Some(b.succeeded as f64)).collect(),
            },
            Series {
                name: "failed".into(),
                values: b.iter().map(|b| Some(b.failed as f64)).collect(),
            },
        ],
        top,
        ticks(top, num),
        whole,
    );
    throughput.summary = format!(
        "Tasks finished over the last {name}, per {bucket}: {succeeded} succeeded, {failed} failed."
    );
    throughput.note = format!("Tasks that finished in each {bucket}, by outcome.");

    // Failure rate: failed of finished, where any finished.
    let rate = |s: i64, f: i64| (s + f > 0).then(|| f as f64 * 100.0 / (s + f) as f64);
    let mut failure = base(
        "failure-rate",
        "Failure rate",
        "% of finished tasks".to_string(),
        Kind::Lines,
        vec![Series {
            name: "failed".into(),
            values: b.iter().map(|b| rate(b.succeeded, b.failed)).collect(),
        }],
        100.0,
        ticks(100.0, |v| fixed(v, 0)),
        percent,
    );
    failure.summary = match rate(succeeded, failed) {
        Some(r) => format!(
            "Failure rate over the last {name}: {} of {} finished tasks failed ({}).",
            failed,
            succeeded + failed,
            percent(r)
        ),
        None => format!("Failure rate over the last {name}: no task finished."),
    };
    failure.note = format!(
        "Failed tasks as a share of the tasks that finished in each {bucket}; no point where none finished."
    );

    // Queue wait: the buckets' p50 and p99, in milliseconds.
    let ms = |v: Option<i64>| v.map(|us| us as f64 / 1000.0);
    let p99_max = b
        .iter()
        .filter_map(|b| ms(b.wait_p99_us))
        .fold(0.0, f64::max);
    let top = nice_max(p99_max);
    let seconds = top >= 2000.0;
    let mut wait = base(
        "queue-wait",
        "Queue wait",
        if seconds {
            "wait (seconds)"
        } else {
            "wait (milliseconds)"
        }
        .to_string(),
        Kind::Lines,
        vec![
            Series {
                name: "p50".into(),
                values: b.iter().map(|b| ms(b.wait_p50_us)).collect(),
            },
            Series {
                name: "p99".into(),
                values: b.iter().map(|b| ms(b.wait_p99_us)).collect(),
            },
        ],
        top,
        if seconds {
            ticks(top, |v| num(v / 1000.0))
        } else {
            ticks(top, |v| fixed(v, 0))
        },
        millis,
    );
    let sampled: i64 = b.iter().map(|b| b.waits_sampled).sum();
    wait.summary = format!(
        "Queue wait over the last {name}: median and 99th percentile per {bucket}, peak p99 {}, from {sampled} claims.",
        millis(p99_max)
    );
    wait.note = format!(
        "Time from a task's creation (or its start-after time) to its first claim, for the tasks claimed in each {bucket}. \
         Percentiles are over at most the latest {} claims of each bucket.",
        o.wait_sample
    );

    // Depth by type, at the last sample of each bucket.
    let depth_max = b
        .iter()
        .filter_map(|b| b.depth.as_ref())
        .flat_map(|d| d.iter().copied())
        .max()
        .unwrap_or(0);
    let top = nice_max(depth_max as f64);
    let mut depth = base(
        "queue-depth",
        "Queue depth by type",
        "tasks queued".to_string(),
        Kind::Lines,
        o.depth_types
            .iter()
            .enumerate()
            .map(|(k, t)| Series {
                name: t.clone(),
                values: b
                    .iter()
                    .map(|b| b.depth.as_ref().and_then(|d| d.get(k)).map(|&n| n as f64))
                    .collect(),
            })
            .collect(),
        top,
        ticks(top, num),
        whole,
    );
    depth.summary = if o.depth_types.is_empty() {
        format!("Queue depth over the last {name}: nothing was queued.")
    } else {
        format!(
            "Queue depth over the last {name} for {}: peak {depth_max} queued.",
            o.depth_types.join(", ")
        )
    };
    depth.note = format!(
        "Queued tasks of the busiest types (the rest as other), as the leading server counted them every {}; \
         each bucket shows its last count, a gap means none was taken.",
        span(o.depth_interval_us)
    );
    vec![throughput, failure, wait, depth]
}

#[component]
fn RecentFailures(failures: Vec<RecentFailure>) -> impl IntoView {
    let live = use_live();
    if failures.is_empty() {
        return view! { <p class="muted" data-testid="no-failures">"No task has failed."</p> }
            .into_any();
    }
    view! {
        <div class="table-wrap">
            <table class="data compact" data-testid="recent-failures">
                <thead><tr><th scope="col">"Task"</th><th scope="col">"Type"</th><th scope="col">"Error"</th><th scope="col">"When"</th></tr></thead>
                <tbody>
                    {failures.into_iter().map(|f| {
                        let at = f.finished_at_us.unwrap_or(0);
                        let run = f.run_id.map(|r| view! {
                            " " <a href=format!("/runs/{r}") class="muted">"run #" {r}</a>
                        });
                        view! {
                            <tr data-testid="recent-failure">
                                <td class="nowrap"><a href=format!("/tasks/{}", f.id)>"Task " {f.id}</a> {run}</td>
                                <td><code>{f.task_type.clone()}</code></td>
                                <td class="error-cell">{f.error.clone().unwrap_or_default()}</td>
                                <td class="muted nowrap" title=utc(at)>{move || ago(live.now_us.get(), at)}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
        <p><a href="/tasks?status=failed">"All failed tasks"</a></p>
    }
    .into_any()
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
