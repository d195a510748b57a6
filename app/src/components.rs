//! Small pieces every page uses: badges, states, the signed-in user.

use drover_protocol::api::{Role, UserView};
use leptos::prelude::*;

use crate::api::{self, ApiFailure, ApiResult};
use crate::format::{local, rfc3339, utc};

/// The signed-in user and the CSRF value of their session.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionInfo {
    pub user: UserView,
    pub csrf_token: Option<String>,
}

/// Who is signed in, for the whole page (fails on the sign-in page).
#[derive(Clone, Copy)]
pub struct Me(pub Resource<ApiResult<String>>);

pub fn provide_me() {
    // Nobody is signed in on the sign-in page: asking would only be refused.
    let signing_in = on_sign_in_page();
    let me = Resource::new(
        || (),
        move |_| async move {
            if signing_in {
                Err(ApiFailure {
                    status: 401,
                    message: "not signed in".into(),
                    field: None,
                    errors: Vec::new(),
                })
            } else {
                api::fetch("/session").await
            }
        },
    );
    provide_context(Me(me));
}

/// Whether this document is the sign-in page, which needs no session and
/// no event stream. Signing in posts a form and loads a new document, so
/// this holds for the document's whole life.
pub fn on_sign_in_page() -> bool {
    const SIGN_IN: &str = "/signin";
    #[cfg(feature = "ssr")]
    {
        use_context::<http::request::Parts>().is_some_and(|p| p.uri.path() == SIGN_IN)
    }
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        web_sys::window()
            .and_then(|w| w.location().pathname().ok())
            .is_some_and(|p| p == SIGN_IN)
    }
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    {
        false
    }
}

pub fn use_me() -> Resource<ApiResult<String>> {
    expect_context::<Me>().0
}

/// The session a fetched `/session` describes, if signed in.
pub fn session(fetched: ApiResult<String>) -> Option<SessionInfo> {
    api::parse(fetched).ok()
}

/// What a role may do, mirrored from the server (which enforces it).
pub fn can_operate(me: &Option<SessionInfo>) -> bool {
    me.as_ref().is_some_and(|s| s.user.role.can_operate())
}

pub fn is_admin(me: &Option<SessionInfo>) -> bool {
    me.as_ref().is_some_and(|s| s.user.role == Role::Admin)
}

pub fn my_name(me: &Option<SessionInfo>) -> String {
    me.as_ref().map(|s| s.user.name.clone()).unwrap_or_default()
}

#[component]
pub fn Badge(#[prop(into)] status: String) -> impl IntoView {
    let class = format!("badge s-{status}");
    view! { <span class=class data-status=status.clone()>{status.replace('_', " ")}</span> }
}

#[component]
pub fn Loading() -> impl IntoView {
    view! { <p class="loading" aria-busy="true">"Loading…"</p> }
}

#[component]
pub fn ErrorBox(failure: ApiFailure) -> impl IntoView {
    let title = match failure.status {
        0 => "Cannot reach the server",
        401 => "Signed out",
        403 => "Not allowed",
        404 => "Not found",
        _ => "Something went wrong",
    };
    view! {
        <div class="error-box" role="alert">
            <strong>{title}</strong>
            <span>{failure.message}</span>
        </div>
    }
}

#[component]
pub fn Empty(#[prop(into)] title: String, children: Children) -> impl IntoView {
    view! {
        <div class="empty-state">
            <strong>{title}</strong>
            <div>{children()}</div>
        </div>
    }
}

/// Who started a run: a schedule's runs (`schedule:<id>`) link to the
/// schedules page, at that schedule's row.
pub fn started_by_view(started_by: String) -> AnyView {
    match started_by
        .strip_prefix("schedule:")
        .and_then(|id| id.parse::<i64>().ok())
    {
        Some(id) => view! {
            <a href=format!("/schedules#schedule-{id}") data-testid="started-by-schedule"
                title="Started by this schedule">{started_by}</a>
        }
        .into_any(),
        None => started_by.into_any(),
    }
}

/// A message after a button was pressed: what happened, or why not.
pub fn outcome_view(outcome: Option<ApiResult<String>>) -> impl IntoView {
    outcome.map(|o| match o {
        Ok(msg) => view! { <span class="flash ok" role="status">{msg}</span> }.into_any(),
        Err(e) => view! { <span class="flash err" role="alert">{e.message}</span> }.into_any(),
    })
}

/// A refusal without asking, for someone who is not an admin: the page
/// then does not call an API the server would refuse anyway.
pub fn admins_only_failure() -> ApiFailure {
    ApiFailure {
        status: 403,
        message: "admins only".into(),
        field: None,
        errors: Vec::new(),
    }
}

/// Shown instead of an admin page to everyone else (the server refuses
/// them the data anyway).
#[component]
pub fn AdminsOnly() -> impl IntoView {
    view! {
        <section class="card empty-state" data-testid="admins-only">
            <h1>"Admins only"</h1>
            <p>"This page is for administrators. Ask one if you need something here."</p>
        </section>
    }
}

/// A button for something that cannot be undone, or that acts at once on
/// work in flight (cancel, retry, drain, reject). Pressing it asks first:
/// the button becomes the question, "Confirm …" and "Keep" (focused, so
/// Enter or Escape keeps). Which item is being asked about lives in the
/// page (`armed`), so a live refresh of the list does not lose the question;
/// a page with several such buttons per item keys them by item and verb.
#[component]
pub fn ConfirmButton<K>(
    /// The item whose question is showing, if any.
    armed: RwSignal<Option<K>>,
    /// This item.
    id: K,
    label: &'static str,
    confirm_label: &'static str,
    /// What will happen, in a sentence.
    #[prop(into)]
    question: String,
    /// `data-testid` of the button; the confirming one gets `confirm-` before it.
    testid: &'static str,
    on_confirm: Callback<()>,
    /// Drawn as an ordinary button until pressed (a retry, which undoes
    /// nothing): the question still comes before it acts.
    #[prop(optional)]
    plain: bool,
) -> impl IntoView
where
    K: Clone + PartialEq + Send + Sync + 'static,
{
    let keep: NodeRef<leptos::html::Button> = NodeRef::new();
    Effect::new(move |_| {
        if let Some(button) = keep.get() {
            let _ = button.focus();
        }
    });
    move || {
        let id = id.clone();
        if armed.with(|a| a.as_ref() == Some(&id)) {
            view! {
                <span class="confirm" role="group" aria-label=question.clone()
                    on:keydown=move |ev| { if ev.key() == "Escape" { armed.set(None) } }>
                    <span class="confirm-q" data-testid="confirm-question">{question.clone()}</span>
                    <button class="danger solid" data-testid=format!("confirm-{testid}")
                        on:click=move |_| { armed.set(None); on_confirm.run(()); }>{confirm_label}</button>
                    <button data-testid="keep" node_ref=keep on:click=move |_| armed.set(None)>"Keep"</button>
                </span>
            }
            .into_any()
        } else {
            view! {
                <button class:danger=!plain data-testid=testid on:click=move |_| armed.set(Some(id.clone()))>{label}</button>
            }
            .into_any()
        }
    }
}

/// Freezes a live list while the reader works in it: rows stop moving
/// under the pointer as events arrive (see `Live::watch_unless`). The
/// connection stays open; the reader's own actions still show.
#[component]
pub fn PauseLive(paused: RwSignal<bool>) -> impl IntoView {
    view! {
        <span class="pause-live">
            <button type="button" data-testid="pause-live" aria-pressed=move || paused.get().to_string()
                on:click=move |_| paused.update(|p| *p = !*p)>
                {move || if paused.get() { "Resume live updates" } else { "Pause live updates" }}
            </button>
            <span class="muted" role="status" data-testid="pause-state">
                {move || paused.get().then_some("Paused: the list stays as it is until you resume.")}
            </span>
        </span>
    }
}

/// Puts text on the clipboard, then says whether it got there (false
/// where the browser does not allow it: the reader then copies it).
#[cfg(feature = "hydrate")]
pub fn copy_text(text: &str, done: impl Fn(bool) + 'static) {
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::{JsCast, JsValue};
    let get = |on: &JsValue, key: &str| js_sys::Reflect::get(on, &JsValue::from_str(key)).ok();
    let promise = web_sys::window()
        .and_then(|w| get(w.as_ref(), "navigator"))
        .and_then(|n| get(&n, "clipboard"))
        .filter(|c| !c.is_undefined())
        .and_then(|clipboard| {
            let write = get(&clipboard, "writeText")?
                .dyn_into::<js_sys::Function>()
                .ok()?;
            write.call1(&clipboard, &JsValue::from_str(text)).ok()
        })
        .and_then(|p| p.dyn_into::<js_sys::Promise>().ok());
    let Some(promise) = promise else {
        return done(false);
    };
    let done = std::rc::Rc::new(done);
    let failed = done.clone();
    let on_ok = Closure::once(move |_: JsValue| done(true));
    let on_err = Closure::once(move |_: JsValue| failed(false));
    let _ = promise.then2(&on_ok, &on_err);
    // Each runs at most once, when the browser answers.
    on_ok.forget();
    on_err.forget();
}

#[cfg(not(feature = "hydrate"))]
pub fn copy_text(_text: &str, done: impl Fn(bool) + 'static) {
    done(false)
}

/// A moment in the reader's own zone, with UTC on hover and in `datetime`.
/// The server renders UTC (it does not know the reader's zone); the
/// browser switches to local time once the page is live, so hydration
/// sees the same text the server sent.
#[component]
pub fn Time(t_us: i64) -> impl IntoView {
    let shown = RwSignal::new(utc(t_us));
    Effect::new(move |_| shown.set(local(t_us)));
    view! { <time class="nowrap" datetime=rfc3339(t_us) title=utc(t_us)>{shown}</time> }
}
