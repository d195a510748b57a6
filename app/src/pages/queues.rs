//! Queue health: per task type, how much waits (and how much of it a full
//! concurrency key holds), how long the oldest has waited, how fast tasks
//! start, the leases lost lately and the agents able to take the work; per
//! concurrency key, its slots and what waits for them.

use drover_protocol::health::{
    KeyHealth, QueueHealth, TypeHealth, DEFAULT_HEALTH_WINDOW_S, QUEUE_HEALTH_ROWS,
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::{self, enc};
use crate::components::{Empty, ErrorBox, Loading};
use crate::format::duration_us;
use crate::live::{paced_refresh, use_live, Topic};

/// The windows offered, in seconds.
const WINDOWS: [(i64, &str); 4] = [
    (60, "1 min"),
    (300, "5 min"),
    (900, "15 min"),
    (3600, "1 hour"),
];
/// Events refetch the figures at most this often: on a busy queue every
/// claim is an event, and the latency figures read a window of attempts.
const MIN_REFRESH_US: i64 = 2_000_000;
/// Without events the figures still move (ages grow, the window slides).
const POLL_US: i64 = 15_000_000;

/// Shown in place of a missing figure.
const NONE: &str = "—";

#[component]
pub fn Queues() -> impl IntoView {
    let live = use_live();
    let query = use_query_map();
    let window = move || {
        query
            .with(|q| q.get("window"))
            .and_then(|w| w.parse::<i64>().ok())
            .filter(|w| WINDOWS.iter().any(|(s, _)| s == w))
            .unwrap_or(DEFAULT_HEALTH_WINDOW_S)
    };
    let refresh = paced_refresh(live, [Topic::Tasks, Topic::Agents], MIN_REFRESH_US, POLL_US);
    let data = Resource::new(
        move || (refresh.get(), window()),
        |(_, w)| async move { api::fetch(&format!("/queues?window={w}")).await },
    );
    view! {
        <Title text="Queues"/>
        <h1 class="page-title">"Queues"</h1>
        <form class="filters" method="get" action="/queues">
            <label>"Latency and lost leases over the last "
                <select name="window" data-testid="window">
                    {WINDOWS.map(|(s, label)| view! {
                        <option value=s selected=move || window() == s>{label}</option>
                    }).collect_view()}
                </select>
            </label>
            <button type="submit">"Show"</button>
        </form>
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                match api::parse::<QueueHealth>(data.await) {
                    Ok(h) => view! { <HealthView h/> }.into_any(),
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn HealthView(h: QueueHealth) -> impl IntoView {
    let window = WINDOWS
        .iter()
        .find(|(s, _)| *s == h.window_s)
        .map(|(_, label)| label.to_string())
        .unwrap_or_else(|| format!("{} s", h.window_s));
    let sample = if h.sample_capped {
        format!("the latest {} first claims", h.sampled_starts)
    } else {
        match h.sampled_starts {
            1 => "1 first claim".to_string(),
            n => format!("{n} first claims"),
        }
    };
    let more_types = h.more_types.then(|| {
        view! { <p class="muted" data-testid="more-types">"Only the " {QUEUE_HEALTH_ROWS} " deepest task types are shown."</p> }
    });
    let more_keys = h.more_keys.then(|| {
        view! { <p class="muted" data-testid="more-keys">"Only the " {QUEUE_HEALTH_ROWS} " keys with the most held tasks are shown."</p> }
    });
    let types = if h.types.is_empty() {
        view! {
            <Empty title="No queues yet">
                "Nothing is queued or running, and no online agent declared a task type."
            </Empty>
        }
        .into_any()
    } else {
        view! {
            <div class="table-wrap">
                <table class="data" data-testid="queue-types">
                    <thead><tr>
                        <th>"Task type"</th>
                        <th title="queued tasks, including held and delayed ones">"Queued"</th>
                        <th title="queued tasks waiting for a slot of their concurrency key">"Held"</th>
                        <th>"Running"</th>
                        <th title="how long the longest-waiting due task has waited">"Oldest wait"</th>
                        <th title="submission to first claim, median">"Start p50"</th>
                        <th title="submission to first claim, 99th percentile">"Start p99"</th>
                        <th title="attempts whose lease expired or whose agent went offline">"Lost leases"</th>
                        <th title="online agents that declared the type, and their free slots">"Able agents"</th>
                        <th>"Health"</th>
                    </tr></thead>
                    <tbody>
                        {h.types.into_iter().map(|t| view! { <TypeRow t/> }).collect_view()}
                    </tbody>
                </table>
            </div>
        }
        .into_any()
    };
    let keys = (!h.keys.is_empty()).then(|| {
        view! {
            <h2 id="keys">"Concurrency keys"</h2>
            <p class="muted">"Named limits shared across task types and workflows. A task whose key is full is held: it waits without blocking others."</p>
            <div class="table-wrap">
                <table class="data" data-testid="queue-keys">
                    <thead><tr>
                        <th>"Key"</th>
                        <th title="tasks holding a slot (queued and admitted, or running) of the limit">"Slots"</th>
                        <th>"Queued"</th>
                        <th>"Held"</th>
                        <th>"Running"</th>
                        <th>"Oldest wait"</th>
                    </tr></thead>
                    <tbody>
                        {h.keys.into_iter().map(|k| view! { <KeyRow k/> }).collect_view()}
                    </tbody>
                </table>
            </div>
        }
    });
    view! {
        <p class="muted" data-testid="queues-summary">
            "Start latency is submission to first claim, from " {sample} " in the last " {window}
            "; lost leases count attempts whose lease expired (or whose agent went offline) in that time."
        </p>
        {types}
        {more_types}
        {keys}
        {more_keys}
    }
}

/// How long the oldest due task has waited, on the page's clock.
fn wait_view(since: Option<i64>) -> AnyView {
    let live = use_live();
    match since {
        Some(t) => {
            view! { <span data-testid="oldest">{move || duration_us(live.now_us.get() - t)}</span> }
                .into_any()
        }
        None => view! { <span class="muted" data-testid="oldest">{NONE}</span> }.into_any(),
    }
}

fn latency(us: Option<i64>) -> String {
    us.map(duration_us).unwrap_or_else(|| NONE.to_string())
}

#[component]
fn TypeRow(t: TypeHealth) -> impl IntoView {
    let stranded = t.stranded();
    let full = !stranded && t.queued > t.delayed && t.free_slots == 0;
    let health = if stranded {
        view! {
            <span class="badge s-offline" data-testid="no-agent">"No online agent takes this type"</span>
        }
        .into_any()
    } else if full {
        view! {
            <span class="badge s-queued" data-testid="agents-full">"Every able agent is full"</span>
        }
        .into_any()
    } else if t.queued > 0 {
        view! { <span class="muted">"Flowing"</span> }.into_any()
    } else {
        view! { <span class="muted">"Idle"</span> }.into_any()
    };
    let held = if t.held > 0 {
        view! { <a href="#keys" data-testid="held">{t.held}</a> }.into_any()
    } else {
        view! { <span data-testid="held">{t.held}</span> }.into_any()
    };
    let delayed = (t.delayed > 0).then(|| {
        view! { <span class="hint" title="not due yet: run_after or a retry's backoff ahead">{t.delayed} " not due yet"</span> }
    });
    let href = format!("/tasks?status=queued&type={}", enc(&t.task_type));
    view! {
        <tr data-testid="queue-type" data-type=t.task_type.clone() data-stranded=stranded.to_string()>
            <td><a href=href><code>{t.task_type.clone()}</code></a></td>
            <td class="n"><span data-testid="depth">{t.queued}</span> {delayed}</td>
            <td class="n">{held}</td>
            <td class="n" data-testid="running">{t.running}</td>
            <td class="nowrap">{wait_view(t.oldest_since_us)}</td>
            <td class="nowrap" data-testid="p50" title=format!("{} first claims", t.starts)>{latency(t.start_p50_us)}</td>
            <td class="nowrap" data-testid="p99">{latency(t.start_p99_us)}</td>
            <td class="n" data-testid="lost">{t.leases_expired}</td>
            <td class="nowrap" data-testid="able">
                {t.agents} {if t.agents == 1 { " agent" } else { " agents" }}
                <span class="muted">" · " {t.free_slots} {if t.free_slots == 1 { " free slot" } else { " free slots" }}</span>
            </td>
            <td>{health}</td>
        </tr>
    }
}

#[component]
fn KeyRow(k: KeyHealth) -> impl IntoView {
    let full = k.limit > 0 && k.admitted >= k.limit;
    view! {
        <tr data-testid="queue-key" data-key=k.key.clone() data-full=full.to_string()>
            <td><code>{k.key.clone()}</code></td>
            <td class="nowrap">
                <span data-testid="slots">{k.admitted} "/" {k.limit}</span>
                {full.then(|| view! { <span class="muted">" (full)"</span> })}
            </td>
            <td class="n">{k.queued}</td>
            <td class="n" data-testid="key-held">{k.held}</td>
            <td class="n">{k.running}</td>
            <td class="nowrap">{wait_view(k.oldest_since_us)}</td>
        </tr>
    }
}
