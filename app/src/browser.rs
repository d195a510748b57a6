//! What only the browser has: cookies, navigation, the event stream.

use leptos::prelude::*;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;

use crate::live::{Live, Topic};

/// The CSRF value the server set beside the session cookie: named
/// `__Host-drover_csrf` over HTTPS, `drover_csrf` over plain HTTP.
pub fn csrf_token() -> Option<String> {
    let doc = web_sys::window()?
        .document()?
        .dyn_into::<web_sys::HtmlDocument>()
        .ok()?;
    let cookies = doc.cookie().ok()?;
    let pairs: Vec<(&str, &str)> = cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .collect();
    ["__Host-drover_csrf", "drover_csrf"]
        .iter()
        .find_map(|name| pairs.iter().find(|(k, _)| k == name))
        .map(|(_, v)| v.to_string())
}

/// The session ended (expired or signed out elsewhere): sign in again.
pub fn go_to_sign_in() {
    if let Some(window) = web_sys::window() {
        let location = window.location();
        let here = location.pathname().unwrap_or_default();
        if here != "/signin" {
            let _ = location.set_href(&format!("/signin?next={}", crate::api::enc(&here)));
        }
    }
}

pub fn now_us() -> i64 {
    (js_sys::Date::now() * 1000.0) as i64
}

thread_local! {
    /// The page's live state, for what has no reactive owner at hand (a
    /// request that failed).
    static LIVE: std::cell::Cell<Option<Live>> = const { std::cell::Cell::new(None) };
}

/// A request could not reach the server: the header's dot turns red and
/// the page says so until the event stream opens again.
pub fn server_unreachable() {
    if let Some(live) = LIVE.with(std::cell::Cell::get) {
        live.connected.set(false);
        live.lost.set(true);
    }
}

/// Opens the server's event stream and turns its events into refetches.
/// Events are coalesced for a tick, so a burst costs one refetch per page.
pub fn connect_events(live: Live) {
    LIVE.with(|cell| cell.set(Some(live)));
    let Ok(source) = web_sys::EventSource::new("/api/v1/events") else {
        return;
    };
    let dirty = std::rc::Rc::new(std::cell::Cell::new(0u32));
    for (kind, topics) in [
        ("task", &[Topic::Tasks, Topic::Agents][..]),
        ("tasks", &[Topic::Tasks, Topic::Agents][..]),
        ("agent", &[Topic::Agents][..]),
        ("run", &[Topic::Runs][..]),
        ("approval", &[Topic::Approvals, Topic::Runs][..]),
        ("workflow", &[Topic::Workflows][..]),
        ("schedule", &[Topic::Schedules][..]),
        ("notification", &[Topic::Notifications][..]),
        // The stream dropped notices for this client: refetch everything.
        (
            "resync",
            &[
                Topic::Tasks,
                Topic::Agents,
                Topic::Runs,
                Topic::Approvals,
                Topic::Workflows,
                Topic::Schedules,
                Topic::Notifications,
            ][..],
        ),
    ] {
        let dirty = dirty.clone();
        let mask = topics.iter().fold(0, |m, t| m | t.bit());
        let on_event = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            dirty.set(dirty.get() | mask);
        });
        let _ = source.add_event_listener_with_callback(kind, on_event.as_ref().unchecked_ref());
        on_event.forget();
    }
    // Log notices name their task: only its log views fetch.
    let logs = std::rc::Rc::new(std::cell::RefCell::new(LogNotices::default()));
    {
        let notices = logs.clone();
        let on_log =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                let id = e
                    .data()
                    .as_string()
                    .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
                    .and_then(|v| v["id"].as_i64());
                let mut notices = notices.borrow_mut();
                match id {
                    Some(id) => notices.ids.push(id),
                    None => notices.all = true,
                }
            });
        let _ =
            source.add_event_listener_with_callback("task_log", on_log.as_ref().unchecked_ref());
        on_log.forget();
        let notices = logs.clone();
        let on_resync =
            Closure::<dyn FnMut(web_sys::Event)>::new(move |_| notices.borrow_mut().all = true);
        let _ =
            source.add_event_listener_with_callback("resync", on_resync.as_ref().unchecked_ref());
        on_resync.forget();
    }
    {
        let dirty = dirty.clone();
        let logs = logs.clone();
        // After a (re)connect anything may have changed meanwhile.
        let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            live.connected.set(true);
            live.lost.set(false);
            dirty.set(u32::MAX);
            logs.borrow_mut().all = true;
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        on_open.forget();
        // The stream dropped (the server stopped or the network went): the
        // browser retries on its own, and `on_open` clears this.
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            live.connected.set(false);
            live.lost.set(true);
        });
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_error.forget();
    }
    std::mem::forget(source);
    let _ = set_interval_with_handle(
        move || {
            let bits = dirty.replace(0);
            if bits != 0 {
                live.bump(bits);
            }
            let notices = std::mem::take(&mut *logs.borrow_mut());
            if notices.all {
                live.logs.set(None);
            } else if !notices.ids.is_empty() {
                live.logs.set(Some(notices.ids));
            }
        },
        std::time::Duration::from_millis(100),
    );
    let _ = set_interval_with_handle(
        move || live.now_us.set(now_us()),
        std::time::Duration::from_secs(1),
    );
}

/// `task_log` notices gathered between two ticks.
#[derive(Default)]
struct LogNotices {
    ids: Vec<i64>,
    /// Any log may have grown (a reconnect, a notice without an id).
    all: bool,
}
