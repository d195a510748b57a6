//! One component per page.

use leptos::prelude::*;

/// The landing page. The counter is there to show at a glance (and to
/// tests) that the page has hydrated and reacts.
#[component]
pub fn Overview() -> impl IntoView {
    let clicks = RwSignal::new(0u32);
    view! {
        <section class="card">
            <h1>"Drover"</h1>
            <p>"A durable priority queue and workflow engine for a fleet of agents."</p>
            <p>"Server version " <strong data-testid="server-version">{crate::VERSION}</strong></p>
            <button data-testid="hydration-check" on:click=move |_| clicks.update(|c| *c += 1)>
                "Interactive: " {move || clicks.get()}
            </button>
        </section>
    }
}

#[component]
pub fn ComingSoon() -> impl IntoView {
    view! {
        <section class="card empty">
            <h1>"Coming soon"</h1>
            <p>"This page arrives with the live dashboard. Until then the REST API has it all: "
                <code>"/api/v1/agents"</code> ", " <code>"/api/v1/tasks"</code> "."</p>
        </section>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <section class="card empty">
            <h1>"Not found"</h1>
            <p>"There is no page here. " <a href="/">"Back to the overview"</a></p>
        </section>
    }
}
