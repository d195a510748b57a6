//! Sign-in: a plain HTML form posted to the server, so it works before (and
//! without) the wasm; the server sets the session cookies and redirects.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub fn SignIn() -> impl IntoView {
    let query = use_query_map();
    // Only fixed messages are shown: the query names a code, never the text.
    let error = move || {
        query
            .with(|q| q.get("error"))
            .map(|code| error_message(&code))
    };
    let next = move || query.with(|q| q.get("next")).unwrap_or_else(|| "/".into());
    // After a failed attempt the server sends back the name that was
    // typed: only the password is to be typed again.
    let name = move || query.with(|q| q.get("name")).unwrap_or_default();
    let has_name = move || !name().is_empty();
    view! {
        <Title text="Sign in"/>
        <section class="card signin">
            <h1>"Sign in to Drover"</h1>
            <form method="post" action="/signin">
                <input type="hidden" name="next" value=next/>
                <label>"Name" <input name="name" autocomplete="username" required value=name autofocus=move || !has_name()/></label>
                <label>"Password"
                    <input name="password" type="password" autocomplete="current-password" required autofocus=has_name/>
                </label>
                {move || error().map(|e| view! { <p class="field-error" role="alert" data-testid="signin-error">{e}</p> })}
                <button type="submit" class="primary">"Sign in"</button>
            </form>
            <p class="hint">"The first admin's password is printed when the server first starts (or set with DROVER_ADMIN_PASSWORD). More users: "
                <code>"drover-server user add NAME --role operator --password …"</code></p>
        </section>
    }
}

/// The message for an error code the server's sign-in form redirects with
/// (`server/src/session.rs`, `error_code`); unknown codes get a generic one.
pub fn error_message(code: &str) -> &'static str {
    match code {
        "bad_credentials" => "Wrong name or password.",
        "too_many_attempts" => "Too many failed attempts; wait a little and try again.",
        "refused" => "This sign-in was refused (the user may be disabled).",
        "unavailable" => "Signing in is not possible right now; try again later.",
        _ => "Sign-in failed.",
    }
}
