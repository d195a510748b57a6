//! A task's log, tailed live: the task page's "Log" section and the run
//! page's step panel show it.
//!
//! The last [`TAIL`] lines are a resource, so the server renders them with
//! the page (a finished task's log reads without any wasm). In the browser
//! the view then follows the event stream: each `task_log` notice for this
//! task (and every reconnect, when notices may have been missed) fetches
//! the lines after the last one shown, appended in place — the lines
//! already on screen are never rendered again. The box keeps to its bottom
//! while the reader is there, and stays put once they scroll up.

use drover_protocol::api::{TaskLogLine, TaskLogPage, TaskStatus};
use leptos::prelude::*;

use crate::api;
use crate::components::ErrorBox;
use crate::format::utc;
use crate::live::use_live;

/// Lines shown when the page opens: the end of the log, which says how the
/// task is doing (or how it ended).
pub const TAIL: i64 = 1_000;

/// One line, and whether it starts another attempt's output.
type Shown = (TaskLogLine, bool);

/// `heading` replaces the plain "Log" (the run page names the step).
#[component]
pub fn TaskLog(task_id: i64, #[prop(optional)] heading: Option<AnyView>) -> impl IntoView {
    let live = use_live();
    let first = Resource::new(
        move || task_id,
        |id| async move { api::fetch(&format!("/tasks/{id}/logs?tail={TAIL}")).await },
    );
    // Lines that arrived after the first page, in the browser.
    let more = RwSignal::new(Vec::<Shown>::new());
    let pulling = StoredValue::new(false);
    let again = StoredValue::new(false);
    let stick = StoredValue::new(true);
    let frame: NodeRef<leptos::html::Div> = NodeRef::new();

    let to_bottom = move || {
        if stick.get_value() {
            request_animation_frame(move || {
                if let Some(el) = frame.get_untracked() {
                    el.set_scroll_top(el.scroll_height());
                }
            });
        }
    };

    // Where the shown lines end: the last appended one, else the first page's.
    let end = move || -> Option<(i64, Option<i64>)> {
        if let Some((l, _)) = more.with_untracked(|m| m.last().cloned()) {
            return Some((l.seq, Some(l.attempt)));
        }
        match first.get_untracked()? {
            Ok(text) => api::parse::<TaskLogPage>(Ok(text))
                .ok()
                .map(|p| (p.last_seq, p.lines.last().map(|l| l.attempt))),
            Err(_) => Some((-1, None)),
        }
    };

    // Fetches what follows the shown lines, until nothing does; a notice
    // arriving meanwhile makes it ask once more.
    let pull = move || {
        if pulling.get_value() {
            again.set_value(true);
            return;
        }
        let Some((mut after, mut attempt)) = end() else {
            again.set_value(true);
            return;
        };
        pulling.set_value(true);
        again.set_value(false);
        leptos::task::spawn_local(async move {
            loop {
                let path = format!("/tasks/{task_id}/logs?after={after}&limit=1000");
                let page = api::parse::<TaskLogPage>(api::fetch(&path).await);
                let Ok(page) = page else { break };
                let fresh: Vec<Shown> = page
                    .lines
                    .into_iter()
                    .filter(|l| l.seq > after)
                    .map(|l| {
                        let new_attempt = attempt.is_some_and(|a| a != l.attempt);
                        attempt = Some(l.attempt);
                        (l, new_attempt)
                    })
                    .collect();
                after = after.max(page.last_seq);
                if !fresh.is_empty() {
                    more.update(|m| m.extend(fresh));
                    to_bottom();
                }
                if !page.more && !again.get_value() {
                    break;
                }
                again.set_value(false);
            }
            pulling.set_value(false);
        });
    };

    let loaded = Memo::new(move |_| first.with(|f| f.is_some()));
    Effect::new(move |_| {
        let mine = live
            .logs
            .with(|n| n.as_ref().is_none_or(|ids| ids.contains(&task_id)));
        if loaded.get() {
            if mine || again.get_value() {
                pull();
            }
            to_bottom();
        } else if mine {
            again.set_value(true);
        }
    });

    let on_scroll = move |_| {
        if let Some(el) = frame.get_untracked() {
            stick.set_value(el.scroll_top() + el.client_height() >= el.scroll_height() - 8);
        }
    };

    view! {
        <section class="card task-log" data-testid="task-log">
            <h2>{heading.unwrap_or_else(|| "Log".into_any())}</h2>
            <div class="log-frame" node_ref=frame on:scroll=on_scroll>
                <Suspense fallback=|| view! { <p class="muted">"Loading the log…"</p> }>
                    {move || Suspend::new(async move {
                        match api::parse::<TaskLogPage>(first.await) {
                            Ok(page) => first_page(task_id, page, more).into_any(),
                            // No such task: the page says so already.
                            Err(e) if e.status == 404 => ().into_any(),
                            Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                        }
                    })}
                </Suspense>
                <For each=move || more.get() key=|(l, _)| l.seq
                    children=|(l, new_attempt)| line_view(&l, new_attempt)/>
            </div>
        </section>
    }
}

/// The first page: its lines, what is not shown before them, or that
/// nothing was printed (until lines arrive).
fn first_page(task_id: i64, page: TaskLogPage, more: RwSignal<Vec<Shown>>) -> impl IntoView {
    // Seq 1 is the first line ever; seq 0 the note of lines dropped at the
    // server's bound, which says so itself.
    let earlier = page.lines.first().is_some_and(|l| l.seq > 1);
    let finished = !matches!(page.status, TaskStatus::Queued | TaskStatus::Running);
    let empty = page.lines.is_empty();
    let mut attempt = None;
    let lines = page
        .lines
        .into_iter()
        .map(|l| {
            let new_attempt = attempt.is_some_and(|a| a != l.attempt);
            attempt = Some(l.attempt);
            line_view(&l, new_attempt)
        })
        .collect_view();
    view! {
        {earlier.then(|| view! {
            <p class="log-earlier muted">
                "Earlier lines are not shown here; " <code>{format!("drover task logs {task_id}")}</code> " prints them all."
            </p>
        })}
        {empty.then(|| view! {
            <p class="log-empty muted" data-testid="log-empty"
                style:display=move || if more.with(|m| m.is_empty()) { "" } else { "none" }>
                {if finished { "Its handlers printed nothing." } else { "Nothing printed yet." }}
            </p>
        })}
        {lines}
    }
}

fn line_view(l: &TaskLogLine, new_attempt: bool) -> impl IntoView {
    view! {
        {new_attempt.then(|| view! { <div class="log-attempt">"attempt " {l.attempt}</div> })}
        <div class="log-line" data-testid="log-line" data-stream=l.stream.as_str() data-seq=l.seq
            title=utc(l.at_us)>{l.line.clone()}</div>
    }
}
