//! Small pieces every page uses: badges, states, the signed-in user.

use drover_protocol::api::{Role, UserView};
use leptos::prelude::*;

use crate::api::{self, ApiFailure, ApiResult};

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
    let me = Resource::new(|| (), |_| api::fetch("/session"));
    provide_context(Me(me));
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

/// A message after a button was pressed: what happened, or why not.
pub fn outcome_view(outcome: Option<ApiResult<String>>) -> impl IntoView {
    outcome.map(|o| match o {
        Ok(msg) => view! { <span class="flash ok" role="status">{msg}</span> }.into_any(),
        Err(e) => view! { <span class="flash err" role="alert">{e.message}</span> }.into_any(),
    })
}
