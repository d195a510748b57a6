//! What the dashboard sends, as a browser sees it: pages and static files
//! compressed when asked for and revalidated before reuse, the event stream
//! never compressed (so never held back), small answers left alone; and a
//! page for something that does not exist answers 404.

mod support;

use std::time::Duration;

use reqwest::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
    COOKIE, IF_MODIFIED_SINCE, LAST_MODIFIED, SET_COOKIE, VARY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use reqwest::redirect::Policy;
use serde_json::json;
use support::{new_task, Backend, Database, Server, API_TOKEN};

const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// A script big enough to be worth compressing.
fn script() -> String {
    "export function hello(name) { return `hello ${name}`; }\n".repeat(200)
}

async fn server() -> (Server, Database) {
    let db = Database::new(Backend::Sqlite).await;
    let env = [
        ("DROVER_TASK_TYPES", "echo"),
        ("DROVER_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ];
    let server = Server::spawn_app(&db, &env).await;
    let pkg = server.site_root().join("pkg");
    std::fs::create_dir_all(&pkg).expect("site dir");
    std::fs::write(pkg.join("drover.js"), script()).expect("write the script");
    (server, db)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// The admin's session cookies, as a browser would send them back.
async fn signed_in(server: &Server) -> String {
    let res = client()
        .post(format!("{}/api/v1/session", server.url))
        .json(&json!({ "name": "admin", "password": ADMIN_PASSWORD }))
        .send()
        .await
        .expect("sign in");
    assert_eq!(res.status().as_u16(), 201);
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(String::from))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(format!("{}{path}", server.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("get")
}

fn header(res: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

#[tokio::test]
async fn static_files_are_compressed_and_revalidated() {
    let (server, _db) = server().await;
    let path = "/pkg/drover.js";

    let plain = get(&server, path, &[]).await;
    assert_eq!(plain.status().as_u16(), 200);
    assert_eq!(header(&plain, CONTENT_ENCODING), None, "not asked for");
    assert_eq!(header(&plain, CACHE_CONTROL).as_deref(), Some("no-cache"));
    let modified = header(&plain, LAST_MODIFIED).expect("Last-Modified");
    // Never a document: none of a document's headers, but no sniffing.
    assert_eq!(header(&plain, CONTENT_SECURITY_POLICY), None);
    assert_eq!(header(&plain, X_FRAME_OPTIONS), None);
    assert_eq!(
        header(&plain, X_CONTENT_TYPE_OPTIONS).as_deref(),
        Some("nosniff")
    );
    assert_eq!(plain.text().await.expect("body"), script());

    for (accepted, used) in [("gzip", "gzip"), ("br, gzip", "br"), ("gzip, br", "br")] {
        let res = get(&server, path, &[(ACCEPT_ENCODING.as_str(), accepted)]).await;
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(
            header(&res, CONTENT_ENCODING).as_deref(),
            Some(used),
            "{accepted}"
        );
        assert_eq!(header(&res, CACHE_CONTROL).as_deref(), Some("no-cache"));
        assert!(header(&res, VARY)
            .unwrap_or_default()
            .contains("accept-encoding"));
        let sent = res.bytes().await.expect("body").len();
        assert!(sent < script().len() / 4, "{used}: {sent} bytes");
    }

    // Kept by the browser, asked about again: not sent again.
    let again = get(
        &server,
        path,
        &[
            (IF_MODIFIED_SINCE.as_str(), &modified),
            (ACCEPT_ENCODING.as_str(), "br, gzip"),
        ],
    )
    .await;
    assert_eq!(again.status().as_u16(), 304);
    assert_eq!(header(&again, CONTENT_ENCODING), None);

    let missing = get(&server, "/pkg/nothing.wasm", &[]).await;
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test]
async fn pages_are_compressed_and_never_reused_unasked() {
    let (server, _db) = server().await;
    let cookies = signed_in(&server).await;
    let res = get(
        &server,
        "/tasks",
        &[
            (COOKIE.as_str(), &cookies),
            (ACCEPT_ENCODING.as_str(), "gzip"),
        ],
    )
    .await;
    assert_eq!(res.status().as_u16(), 200);
    assert!(header(&res, CONTENT_TYPE)
        .unwrap_or_default()
        .starts_with("text/html"));
    assert_eq!(header(&res, CONTENT_ENCODING).as_deref(), Some("gzip"));
    assert_eq!(header(&res, CACHE_CONTROL).as_deref(), Some("no-cache"));
    assert!(header(&res, CONTENT_SECURITY_POLICY).is_some());
    assert_eq!(header(&res, X_FRAME_OPTIONS).as_deref(), Some("DENY"));
    let body = res.bytes().await.expect("body");
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip stream");

    // The sign-in redirect of a visitor without a session is not kept either.
    let redirect = get(&server, "/tasks", &[]).await;
    assert_eq!(redirect.status().as_u16(), 303);
    assert_eq!(
        header(&redirect, CACHE_CONTROL).as_deref(),
        Some("no-cache")
    );
}

#[tokio::test]
async fn small_answers_and_the_event_stream_are_sent_as_they_are() {
    let (server, _db) = server().await;
    let status = get(
        &server,
        "/healthz",
        &[(ACCEPT_ENCODING.as_str(), "gzip, br")],
    )
    .await;
    assert_eq!(status.status().as_u16(), 200);
    assert_eq!(header(&status, CONTENT_ENCODING), None, "too small to gain");

    let mut stream = client()
        .get(format!("{}/api/v1/events", server.url))
        .bearer_auth(API_TOKEN)
        .header(ACCEPT_ENCODING, "gzip, br")
        .send()
        .await
        .expect("events");
    assert_eq!(stream.status().as_u16(), 200);
    assert!(header(&stream, CONTENT_TYPE)
        .unwrap_or_default()
        .starts_with("text/event-stream"));
    assert_eq!(header(&stream, CONTENT_ENCODING), None);
    // An event arrives as it happens, not when a compressor's buffer fills.
    server.submit(vec![new_task("echo", json!({}))]).await;
    let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .expect("an event within 5 s")
        .expect("read")
        .expect("a chunk");
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("event: task"), "{text}");
}

#[tokio::test]
async fn pages_for_what_does_not_exist_answer_404() {
    let (server, _db) = server().await;
    let cookies = signed_in(&server).await;
    let id = server.submit(vec![new_task("echo", json!({}))]).await[0];
    let page = |path: String| {
        let cookies = cookies.clone();
        let server = &server;
        async move {
            let res = get(server, &path, &[(COOKIE.as_str(), &cookies)]).await;
            let status = res.status().as_u16();
            (status, res.text().await.expect("html"))
        }
    };
    let (status, html) = page(format!("/tasks/{id}")).await;
    assert_eq!(status, 200, "{html}");
    for (path, says) in [
        ("/runs/9999".to_string(), "No such run"),
        ("/runs/abc".to_string(), "This is not a run id"),
        ("/tasks/9999".to_string(), "No such task"),
        ("/tasks/abc".to_string(), "This is not a task id"),
        ("/no/such/page".to_string(), "Not found"),
    ] {
        let (status, html) = page(path.clone()).await;
        assert_eq!(status, 404, "{path}");
        assert!(html.contains(says), "{path}: {html}");
    }
}
