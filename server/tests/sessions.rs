//! Dashboard sessions: cookies with the right flags, CSRF on every
//! cookie-authenticated change, sign-out and expiry, the sign-in redirect
//! for pages, and the endpoints the dashboard added (overview, task retry).

mod support;

use std::time::Duration;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use support::{new_task, Backend, Database, Server};

const ADMIN_PASSWORD: &str = "admin-password-for-tests";

async fn server(extra: &[(&str, &str)]) -> (Server, Database) {
    let db = Database::new(Backend::Sqlite).await;
    let mut env = vec![
        ("DROVER_TASK_TYPES", "echo"),
        ("DROVER_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ];
    env.extend_from_slice(extra);
    (Server::spawn_app(&db, &env).await, db)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// The `name=value` pairs of a response's cookies, and their full headers.
fn cookies(res: &reqwest::Response) -> (String, Vec<String>) {
    let headers: Vec<String> = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(String::from))
        .collect();
    let pairs = headers
        .iter()
        .filter_map(|h| h.split(';').next())
        .collect::<Vec<_>>()
        .join("; ");
    (pairs, headers)
}

fn cookie_value(pairs: &str, name: &str) -> String {
    pairs
        .split("; ")
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .unwrap_or_default()
        .to_string()
}

/// A GET as a browser with these cookies (`""` for none) would send it.
async fn get_as(server: &Server, path: &str, cookies: &str) -> reqwest::Response {
    let mut req = client().get(format!("{}{path}", server.url));
    if !cookies.is_empty() {
        req = req.header(COOKIE, cookies);
    }
    req.send().await.expect("get")
}

/// A form POST as a browser with these cookies (`""` for none) would send it.
async fn post_form<F: serde::Serialize + ?Sized>(
    server: &Server,
    path: &str,
    cookies: &str,
    form: &F,
) -> reqwest::Response {
    let mut req = client().post(format!("{}{path}", server.url)).form(form);
    if !cookies.is_empty() {
        req = req.header(COOKIE, cookies);
    }
    req.send().await.expect("post")
}

async fn sign_in(server: &Server, forwarded_https: bool) -> (String, Vec<String>, Value) {
    let mut req = client()
        .post(format!("{}/api/v1/session", server.url))
        .json(&json!({ "name": "admin", "password": ADMIN_PASSWORD }));
    if forwarded_https {
        req = req.header("x-forwarded-proto", "https");
    }
    let res = req.send().await.expect("sign in");
    assert_eq!(res.status().as_u16(), 201);
    let (pairs, headers) = cookies(&res);
    (pairs, headers, res.json().await.expect("json"))
}

#[tokio::test]
async fn a_session_cookie_is_httponly_and_changes_need_its_csrf_token() {
    let (server, _db) = server(&[]).await;
    let http = client();
    let (pairs, headers, body) = sign_in(&server, false).await;
    let session = headers
        .iter()
        .find(|h| h.starts_with("drover_session="))
        .expect("session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(
        !session.contains("Secure"),
        "plain HTTP: no Secure flag: {session}"
    );
    let csrf = cookie_value(&pairs, "drover_csrf");
    assert_eq!(body["csrf_token"], json!(csrf));
    assert_eq!(body["user"]["role"], json!("admin"));

    // Reads need only the cookie.
    let res = get_as(&server, "/api/v1/agents", &pairs).await;
    assert_eq!(res.status().as_u16(), 200);

    // Changes need the CSRF token too: missing or wrong is 403 and stores nothing.
    let task = json!({ "task_type": "echo", "payload": {} });
    for token in [None, Some("0000")] {
        let mut req = http
            .post(format!("{}/api/v1/tasks", server.url))
            .header(COOKIE, &pairs)
            .json(&task);
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        let res = req.send().await.expect("post");
        assert_eq!(res.status().as_u16(), 403);
        let body: Value = res.json().await.expect("json");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("CSRF"),
            "{body}"
        );
    }
    assert_eq!(
        server.stats().await.queued,
        0,
        "refused changes store nothing"
    );
    let res = http
        .post(format!("{}/api/v1/tasks", server.url))
        .header(COOKIE, &pairs)
        .header("x-csrf-token", &csrf)
        .json(&task)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 201);

    // Signing out ends the session for good.
    let res = http
        .delete(format!("{}/api/v1/session", server.url))
        .header(COOKIE, &pairs)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status().as_u16(), 204);
    assert!(cookies(&res).1.iter().all(|c| c.contains("Max-Age=0")));
    let res = get_as(&server, "/api/v1/agents", &pairs).await;
    assert_eq!(res.status().as_u16(), 401);

    // Over HTTPS (a proxy or the TLS listener says so) the cookies are
    // Secure and `__Host-` prefixed, and the session works under that name.
    let (pairs, headers, body) = sign_in(&server, true).await;
    assert!(
        headers
            .iter()
            .all(|h| h.contains("; Secure") && h.starts_with("__Host-drover_")),
        "{headers:?}"
    );
    let csrf = cookie_value(&pairs, "__Host-drover_csrf");
    assert_eq!(body["csrf_token"], json!(csrf));
    // A browser sends `__Host-` cookies over HTTPS only.
    let over_https = |path: &str| {
        client()
            .get(format!("{}{path}", server.url))
            .header(COOKIE, &pairs)
            .header("x-forwarded-proto", "https")
    };
    let res = over_https("/api/v1/session").send().await.expect("get");
    assert_eq!(res.status().as_u16(), 200);
    let res = get_as(&server, "/api/v1/session", &pairs).await;
    assert_eq!(
        res.status().as_u16(),
        401,
        "a `__Host-` name is not read off a plain HTTP request"
    );
    let res = http
        .post(format!("{}/api/v1/tasks", server.url))
        .header(COOKIE, &pairs)
        .header("x-forwarded-proto", "https")
        .header("x-csrf-token", &csrf)
        .json(&task)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 201);
}

#[tokio::test]
async fn sessions_expire_and_wrong_passwords_are_rate_limited() {
    let (server, _db) = server(&[("DROVER_SESSION_TTL", "1s")]).await;
    let http = client();
    let (pairs, _, _) = sign_in(&server, false).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let res = get_as(&server, "/api/v1/session", &pairs).await;
    assert_eq!(res.status().as_u16(), 401, "an expired session is refused");

    let mut statuses = Vec::new();
    for _ in 0..6 {
        let res = http
            .post(format!("{}/api/v1/session", server.url))
            .json(&json!({ "name": "admin", "password": "wrong-password" }))
            .send()
            .await
            .expect("post");
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    // Even the right password waits out the lock.
    let res = http
        .post(format!("{}/api/v1/session", server.url))
        .json(&json!({ "name": "admin", "password": ADMIN_PASSWORD }))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 429);
}

#[tokio::test]
async fn pages_send_strangers_to_sign_in_and_back_afterwards() {
    let (server, _db) = server(&[]).await;
    let res = get_as(&server, "/tasks?status=queued", "").await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(
        res.headers()[LOCATION],
        "/signin?next=%2Ftasks%3Fstatus%3Dqueued"
    );
    let res = get_as(&server, "/signin", "").await;
    assert_eq!(res.status().as_u16(), 200);

    let form = [("name", "admin"), ("password", "nope"), ("next", "/tasks")];
    let res = post_form(&server, "/signin", "", &form).await;
    assert_eq!(res.status().as_u16(), 303);
    let location = res.headers()[LOCATION]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        location.starts_with("/signin?error=bad_credentials&"),
        "a fixed code, never text: {location}"
    );
    assert!(cookies(&res).1.is_empty());

    // Only same-site paths are followed after signing in.
    let form = [
        ("name", "admin"),
        ("password", ADMIN_PASSWORD),
        ("next", "//evil.example/"),
    ];
    let res = post_form(&server, "/signin", "", &form).await;
    assert_eq!(res.headers()[LOCATION], "/");
    let form = [
        ("name", "admin"),
        ("password", ADMIN_PASSWORD),
        ("next", "/tasks"),
    ];
    let res = post_form(&server, "/signin", "", &form).await;
    assert_eq!(res.headers()[LOCATION], "/tasks");
    let (pairs, _) = cookies(&res);
    let page = get_as(&server, "/tasks", &pairs).await;
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("<h1 class=\"page-title\">Tasks"),
        "server-rendered page"
    );
    let missing = get_as(&server, "/no-such-page", &pairs).await;
    assert_eq!(missing.status().as_u16(), 404);
    assert!(missing.text().await.expect("html").contains("Not found"));

    // The sign-out form needs the CSRF field.
    let res = post_form(&server, "/signout", &pairs, &[("csrf", "x")]).await;
    assert_eq!(res.status().as_u16(), 403);
    let csrf = cookie_value(&pairs, "drover_csrf");
    let res = post_form(&server, "/signout", &pairs, &[("csrf", csrf.as_str())]).await;
    assert_eq!(res.status().as_u16(), 303);
    let res = get_as(&server, "/tasks", &pairs).await;
    assert_eq!(
        res.status().as_u16(),
        303,
        "signed out: back to the sign-in page"
    );
}

#[tokio::test]
async fn the_overview_counts_and_a_cancelled_task_can_be_retried() {
    let (server, _db) = server(&[]).await;
    let mut urgent = new_task("echo", json!({}));
    urgent.urgency = Some(10);
    urgent.time_sensitivity = Some(10);
    urgent.importance = Some(10);
    let ids = server
        .submit(vec![new_task("echo", json!({})), urgent])
        .await;
    let (status, overview) = server.get("/api/v1/overview").await;
    assert_eq!(status, 200);
    assert_eq!(overview["stats"]["queued"], json!(2));
    assert_eq!(overview["queued_by_band"], json!([1, 0, 1]), "{overview}");
    // The default range, an hour, in 60 buckets of a minute.
    assert_eq!(overview["throughput"].as_array().map(Vec::len), Some(60));
    assert_eq!(overview["bucket_secs"], json!(60));

    let (status, _) = server
        .post(&format!("/api/v1/tasks/{}/retry", ids[0]), &json!({}))
        .await;
    assert_eq!(status, 409, "a queued task is not retried");
    let (status, _) = server
        .post(&format!("/api/v1/tasks/{}/cancel", ids[0]), &json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .post(&format!("/api/v1/tasks/{}/retry", ids[0]), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let task = server.task(ids[0]).await;
    assert_eq!(task.task.status.as_str(), "queued");
    assert!(task.events.iter().any(|e| e.kind == "retried"));
    let (status, _) = server.post("/api/v1/tasks/999999/retry", &json!({})).await;
    assert_eq!(status, 404);
}
