//! The Drover dashboard, compiled twice: with `ssr` into the server (pages
//! render as HTML before any wasm loads, links are real URLs) and with
//! `hydrate` to wasm, which makes the rendered page interactive and live.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::{path, Lazy};

pub mod api;
#[cfg(feature = "hydrate")]
mod browser;
mod components;
mod dag;
pub mod format;
mod gantt;
mod live;
mod load_chart;
mod log_view;
mod pages;
mod paging;
mod time_chart;
mod waits;

use components::{can_operate, is_admin, provide_me, session, use_me};

/// The server's version: the app is built from the same workspace, so this
/// is the version of the server that rendered the page.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The HTML document around the app, rendered by the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    content_security_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Pages get a stricter policy than the server's default (see
/// `server/src/http/mod.rs`): inline scripts run only with this response's
/// nonce, which leptos_axum puts on the hydration and resource scripts.
#[cfg(feature = "ssr")]
fn content_security_policy() {
    let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) else {
        return;
    };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(value) = http::HeaderValue::from_str(&policy) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_me();
    live::provide_live();
    // Effects run only in the browser, after hydration: tests and the
    // benchmark read this to know the page is interactive.
    #[cfg(feature = "hydrate")]
    Effect::new(|_| {
        if let Some(body) = leptos::prelude::document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    let main_ref: NodeRef<leptos::html::Main> = NodeRef::new();
    view! {
        <Stylesheet id="leptos" href="/pkg/drover.css"/>
        // Each page names itself with its own `<Title text=…/>`, which
        // stacks on this one; the formatter adds the product, so a tab
        // reads "Tasks · Drover".
        <Title text="" formatter=|page: String| if page.is_empty() { "Drover".to_string() } else { format!("{page} · Drover") }/>
        <SkipLink main=main_ref/>
        <Router>
            <TopBar/>
            // Focusable from script only: the skip link moves focus here.
            <main id="main" tabindex="-1" node_ref=main_ref>
                <Routes fallback=pages::NotFound>
                    <Route path=path!("/") view={Lazy::<pages::OverviewRoute>::new()}/>
                    <Route path=path!("/agents") view={Lazy::<pages::AgentsRoute>::new()}/>
                    <Route path=path!("/agents/:id") view={Lazy::<pages::AgentRoute>::new()}/>
                    <Route path=path!("/tasks") view={Lazy::<pages::TasksRoute>::new()}/>
                    <Route path=path!("/tasks/:id") view={Lazy::<pages::TaskRoute>::new()}/>
                    <Route path=path!("/queues") view={Lazy::<pages::QueuesRoute>::new()}/>
                    <Route path=path!("/workflows") view={Lazy::<pages::WorkflowsRoute>::new()}/>
                    <Route path=path!("/workflows/:name") view={Lazy::<pages::WorkflowRoute>::new()}/>
                    <Route path=path!("/runs") view={Lazy::<pages::RunsRoute>::new()}/>
                    <Route path=path!("/runs/:id") view={Lazy::<pages::RunRoute>::new()}/>
                    <Route path=path!("/schedules") view={Lazy::<pages::SchedulesRoute>::new()}/>
                    <Route path=path!("/notifications") view={Lazy::<pages::NotificationsRoute>::new()}/>
                    <Route path=path!("/approvals") view={Lazy::<pages::ApprovalsRoute>::new()}/>
                    <Route path=path!("/enrollment-tokens") view={Lazy::<pages::EnrollmentRoute>::new()}/>
                    <Route path=path!("/audit") view={Lazy::<pages::AuditRoute>::new()}/>
                    <Route path=path!("/signin") view={Lazy::<pages::SignInRoute>::new()}/>
                </Routes>
            </main>
        </Router>
    }
}

/// The first thing Tab reaches: past the navigation to the page itself.
/// Hidden until focused. Before hydration the browser follows `#main`;
/// after it, the router would only scroll, so focus is moved here.
#[component]
fn SkipLink(main: NodeRef<leptos::html::Main>) -> impl IntoView {
    view! {
        <a class="skip-link" href="#main" data-testid="skip-link"
            on:click=move |ev| {
                if let Some(main) = main.get() {
                    ev.prevent_default();
                    let _ = main.focus();
                    main.scroll_into_view();
                }
            }>"Skip to content"</a>
    }
}

/// Navigation, the live-connection dot, and who is signed in.
#[component]
fn TopBar() -> impl IntoView {
    let me = use_me();
    let live = live::use_live();
    view! {
        <header class="topbar">
            <A href="/" attr:class="brand">"Drover"</A>
            <nav>
                <A href="/" exact=true>"Overview"</A>
                <A href="/agents">"Agents"</A>
                <A href="/tasks">"Tasks"</A>
                <A href="/queues">"Queues"</A>
                <A href="/workflows">"Workflows"</A>
                <A href="/runs">"Runs"</A>
                <A href="/schedules">"Schedules"</A>
                <A href="/approvals">"Approvals" <ApprovalsToDecide/></A>
                // What a role may not do is not offered.
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        let me = session(me.await);
                        view! {
                            {can_operate(&me).then(|| view! { <A href="/notifications">"Notifications"</A> })}
                            {is_admin(&me).then(|| view! {
                                <A href="/enrollment-tokens">"Enrollment tokens"</A>
                                <A href="/audit">"Audit"</A>
                            })}
                        }
                    })}
                </Transition>
            </nav>
            <span
                class="live-dot"
                class:on=move || live.connected.get() && !live.lost.get()
                class:lost=move || live.lost.get()
                title=move || if live.connected.get() { "Live: updates arrive as they happen" } else { "Not connected: reload to see changes" }
                data-testid="live"
                data-connected=move || live.connected.get().to_string()
            ></span>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    session(me.await).map(|s| {
                        let csrf = s.csrf_token.clone().unwrap_or_default();
                        view! {
                            <span class="who" data-testid="who">
                                {s.user.name.clone()} " "
                                <span class="role" data-testid="role">{s.user.role.as_str()}</span>
                            </span>
                            <form method="post" action="/signout" class="signout">
                                <input type="hidden" name="csrf" value=csrf/>
                                <button type="submit" class="link">"Sign out"</button>
                            </form>
                        }
                    })
                })}
            </Transition>
            <span class="version" data-testid="version">"v" {VERSION}</span>
        </header>
        <Show when=move || live.lost.get()>
            <p class="lost" role="alert" data-testid="lost">
                "The server cannot be reached: what you do now is not saved. "
                "This page reconnects on its own."
            </p>
        </Show>
    }
}

/// Beside "Approvals" in the navigation: how many approvals the signed-in
/// user may decide now, live on approval events. It asks the inbox's own
/// route, whose filter is the server's rule of who may decide (a viewer's
/// or operator's inbox is empty), so the number never leads to an inbox
/// that says "Nothing for you to decide". Nothing is shown at zero.
#[component]
fn ApprovalsToDecide() -> impl IntoView {
    let live = live::use_live();
    // Nobody is signed in there: asking would send the page to sign in.
    let signing_in = components::on_sign_in_page();
    let inbox = Resource::new(
        move || live.watch(live::Topic::Approvals),
        move |_| async move {
            if signing_in {
                return None;
            }
            api::parse::<drover_protocol::workflow::ApprovalList>(
                api::fetch("/approvals?status=pending").await,
            )
            .ok()
            .map(|l| l.approvals.len())
        },
    );
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                inbox.await.filter(|n| *n > 0).map(|n| {
                    // The inbox answers at most 500.
                    let shown = if n >= 500 { "500+".to_string() } else { n.to_string() };
                    let label = format!("{shown} to decide");
                    view! {
                        <span class="nav-count" data-testid="approvals-count" data-count=n
                            title=label.clone()>
                            <span aria-hidden="true">{shown}</span>
                            <span class="visually-hidden">{format!(", {label}")}</span>
                        </span>
                    }
                })
            })}
        </Transition>
    }
}

/// The wasm entry point: attaches to the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Lazy: pages are separate wasm chunks (see `pages::lazy_pages!`), and
    // hydration waits for the current page's chunk.
    leptos::mount::hydrate_lazy(App);
}
