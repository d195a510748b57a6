//! The Drover dashboard, compiled twice: with `ssr` into the server (pages
//! render as HTML before any wasm loads, links are real URLs) and with
//! `hydrate` to wasm, which makes the rendered page interactive.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::StaticSegment;

mod pages;

/// The server's version: the app is built from the same workspace, so this
/// is the version of the server that rendered the page.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The HTML document around the app, rendered by the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
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

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/drover.css"/>
        <Title text="Drover"/>
        <Router>
            <header class="topbar">
                <A href="/" attr:class="brand">"Drover"</A>
                <nav>
                    <A href="/">"Overview"</A>
                    <A href="/agents">"Agents"</A>
                    <A href="/tasks">"Tasks"</A>
                </nav>
                <span class="version" data-testid="version">"v" {VERSION}</span>
            </header>
            <main>
                <Routes fallback=pages::NotFound>
                    <Route path=StaticSegment("") view=pages::Overview/>
                    <Route path=StaticSegment("agents") view=pages::ComingSoon/>
                    <Route path=StaticSegment("tasks") view=pages::ComingSoon/>
                </Routes>
            </main>
        </Router>
    }
}

/// The wasm entry point: attaches to the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
