//! One module per page.

use leptos::prelude::*;
use leptos_meta::Title;

pub mod agent;
pub mod agents;
pub mod approvals;
pub mod audit;
pub mod enrollment;
pub mod notifications;
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
    view! {
        <Title text="Not found"/>
        <Missing title="Not found">"There is no page here. " <a href="/">"Back to the overview"</a></Missing>
    }
}

/// What a page shows for something that is not there, answered with a 404
/// status (when the server renders it), so a link checker or a script
/// knows as well as a reader does.
#[component]
pub fn Missing(#[prop(into)] title: String, children: Children) -> impl IntoView {
    not_found_status();
    view! {
        <section class="card empty-state" data-testid="not-found">
            <h1>{title}</h1>
            <p>{children()}</p>
        </section>
    }
}

/// Makes the response a 404 while the server renders (a no-op in the
/// browser). Called before the first byte is sent: from a component the
/// server renders at once, or from a blocking resource's fetcher.
pub fn not_found_status() {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
}

/// A fetch of the thing a page is about (`/runs/{id}`): the API's 404
/// makes the page's own response a 404. Its resource must be blocking
/// (`Resource::new_blocking`), so the status is set before the headers go.
pub async fn subject(path: String) -> crate::api::ApiResult<String> {
    let fetched = crate::api::fetch(&path).await;
    if matches!(&fetched, Err(f) if f.status == 404) {
        not_found_status();
    }
    fetched
}

/// The route's `:id`, if it is a number (`/tasks/abc` is not a task).
pub fn route_id() -> Memo<Option<i64>> {
    let params = leptos_router::hooks::use_params_map();
    Memo::new(move |_| {
        params
            .with(|p| p.get("id"))
            .and_then(|s| s.parse::<i64>().ok())
    })
}

/// The page for `/tasks/abc` or `/runs/abc`: not an id at all.
#[component]
pub fn NotAnId(what: &'static str, list: &'static str) -> impl IntoView {
    view! {
        <Missing title=format!("This is not a {what} id")>
            {format!("A {what} id is a number, as in {list}/42. ")}
            <a href=list>{format!("All {what}s")}</a>
        </Missing>
    }
}

/// Makes pages lazily loaded routes, in groups. Built with `cargo leptos
/// build --split`, each group's code becomes one wasm module, fetched the
/// first time one of its pages is shown, so the first download holds only
/// the shell and what pages share; without `--split` they are ordinary
/// routes.
///
/// Why groups and not a module per page (`#[lazy_route]`): the splitter
/// puts code that several modules use into one chunk per *set* of modules
/// that use it, so 16 page modules made ~400 files and a first visit to
/// `/tasks` fetched 199 of them, most under 1 KB — each its own request
/// and compressed on its own. Pages that are used together share a group;
/// the task list (the page most visits start on) and the run page (the
/// heaviest) stay alone. See docs/ARCHITECTURE.md ("Split by page group").
macro_rules! lazy_pages {
    ($($group:ident { $($route:ident => $module:ident :: $page:ident;)* })*) => {$($(
        #[doc = concat!("The lazily loaded route of [`", stringify!($module), "::", stringify!($page), "`].")]
        pub struct $route;

        const _: () = {
            /// The page's view, split into its group's module.
            #[allow(non_snake_case)]
            #[cfg_attr(
                feature = "hydrate",
                ::leptos::wasm_split::wasm_split(
                    $group,
                    wasm_split_path = ::leptos::wasm_split,
                    preload(#[allow(non_snake_case)] preload_group)
                )
            )]
            fn $route(_this: $route) -> AnyView {
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

            impl leptos_router::LazyRoute for $route {
                fn data() -> Self {
                    Self
                }

                async fn view(this: Self) -> AnyView {
                    #[cfg(feature = "hydrate")]
                    {
                        $route(this).await
                    }
                    #[cfg(not(feature = "hydrate"))]
                    {
                        // The server names the group's files in the page
                        // (preload links), so they load beside the shell.
                        leptos::prefetch_lazy_fn_on_server(stringify!($group));
                        $route(this)
                    }
                }

                async fn preload() {
                    #[cfg(feature = "hydrate")]
                    preload_group().await;
                }
            }
        };
    )*)*};
}

lazy_pages! {
    drover_pages_sign_in {
        SignInRoute => signin::SignIn;
    }
    drover_pages_tasks {
        TasksRoute => tasks::Tasks;
    }
    drover_pages_details {
        TaskRoute => tasks::TaskPage;
        AgentRoute => agent::AgentPage;
        AgentsRoute => agents::Agents;
    }
    drover_pages_glance {
        OverviewRoute => overview::Overview;
        QueuesRoute => queues::Queues;
        ApprovalsRoute => approvals::Approvals;
    }
    drover_pages_run {
        RunRoute => run::RunPage;
    }
    drover_pages_workflows {
        WorkflowsRoute => workflows::Workflows;
        WorkflowRoute => workflows::WorkflowPage;
        RunsRoute => runs::Runs;
    }
    drover_pages_admin {
        SchedulesRoute => schedules::Schedules;
        NotificationsRoute => notifications::Notifications;
        EnrollmentRoute => enrollment::EnrollmentTokens;
        AuditRoute => audit::Audit;
    }
}
