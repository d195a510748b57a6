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

/// Makes a page a lazily loaded route. Built with `cargo leptos build
/// --split`, each page's code becomes its own wasm chunk, fetched the first
/// time the page is shown, so the first download holds only the shell and
/// what pages share; without `--split` it is an ordinary route.
macro_rules! lazy_page {
    ($($route:ident => $module:ident :: $page:ident;)*) => {$(
        #[doc = concat!("The lazily loaded route of [`", stringify!($module), "::", stringify!($page), "`].")]
        pub struct $route;

        #[leptos_router::lazy_route]
        impl leptos_router::LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> AnyView {
                use $module::$page;
                // In the browser, once this page's code has loaded and
                // hydrated, `<body data-page>` names it: the shell is live
                // before a lazy page is, and tests wait for both.
                Effect::new(|_| {
                    if let Some(body) = document().body() {
                        let _ = body.set_attribute("data-page", stringify!($route));
                    }
                });
                view! { <$page/> }.into_any()
            }
        }
    )*};
}

lazy_page! {
    OverviewRoute => overview::Overview;
    AgentsRoute => agents::Agents;
    TasksRoute => tasks::Tasks;
    TaskRoute => tasks::TaskPage;
    WorkflowsRoute => workflows::Workflows;
    WorkflowRoute => workflows::WorkflowPage;
    RunsRoute => runs::Runs;
    RunRoute => run::RunPage;
    ApprovalsRoute => approvals::Approvals;
    SignInRoute => signin::SignIn;
}
