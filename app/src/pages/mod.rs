//! One module per page.

use leptos::prelude::*;

pub mod agents;
pub mod approvals;
pub mod overview;
pub mod run;
pub mod runs;
pub mod signin;
pub mod tasks;
pub mod workflows;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <section class="card empty-state" data-testid="not-found">
            <h1>"Not found"</h1>
            <p>"There is no page here. " <a href="/">"Back to the overview"</a></p>
        </section>
    }
}
