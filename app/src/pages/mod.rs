//! One module per page.

use leptos::prelude::*;

pub mod agents;
pub mod approvals;
pub mod audit;
pub mod enrollment;
pub mod overview;
pub mod queues;
pub mod run;
pub mod runs;
pub mod schedules;
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
                // hydrated, `<body data-page>` names it (and this mount of
                // it): the shell is live before a lazy page is, and tests
                // wait for both. The page takes its mark away when it goes,
                // unless the next page has already put its own.
                Effect::new(|_| {
                    static MOUNTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                    let mark = format!(
                        "{}-{}",
                        stringify!($route),
                        MOUNTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    );
                    if let Some(body) = document().body() {
                        let _ = body.set_attribute("data-page", &mark);
                    }
                    on_cleanup(move || {
                        if let Some(body) = document().body() {
                            if body.get_attribute("data-page").as_deref() == Some(mark.as_str()) {
                                let _ = body.remove_attribute("data-page");
                            }
                        }
                    });
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
    QueuesRoute => queues::Queues;
    WorkflowsRoute => workflows::Workflows;
    WorkflowRoute => workflows::WorkflowPage;
    RunsRoute => runs::Runs;
    RunRoute => run::RunPage;
    SchedulesRoute => schedules::Schedules;
    ApprovalsRoute => approvals::Approvals;
    EnrollmentRoute => enrollment::EnrollmentTokens;
    AuditRoute => audit::Audit;
    SignInRoute => signin::SignIn;
}
