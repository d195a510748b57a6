//! Sign-in that holds: the limiter counts before any await and cannot be
//! used to lock the admin out, names and bodies are checked first, sign-in
//! from another site is refused, `next` stays on this site, errors are
//! fixed messages; and the safe defaults every response carries.

mod support;

use std::net::IpAddr;

use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use support::{Backend, Database, Server};

const ADMIN_PASSWORD: &str = "admin-password-for-tests";

async fn server(extra: &[(&str, &str)]) -> (Server, Database) {
    let db = Database::new(Backend::Sqlite).await;
    let mut env = vec![("DROVER_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    env.extend_from_slice(extra);
    // A process: these tests read process-wide metrics (Argon2 checks)
    // and the data directory a process is given.
    (Server::start(&db, &env).await, db)
}

/// A client connecting from `127.0.0.x` (the whole loopback range is
/// local on Linux), so tests can play several client addresses.
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .local_address(IpAddr::from([127, 0, 0, last]))
        .build()
        .expect("client")
}

async fn sign_in(http: &reqwest::Client, server: &Server, name: &str, password: &str) -> u16 {
    http.post(format!("{}/api/v1/session", server.url))
        .json(&json!({ "name": name, "password": password }))
        .send()
        .await
        .expect("sign in")
        .status()
        .as_u16()
}

/// Argon2 verifications so far (`drover_password_checks_total`).
async fn password_checks(server: &Server) -> u64 {
    let text = server
        .http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix("drover_password_checks_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test]
async fn parallel_wrong_passwords_reach_argon2_a_few_times_and_the_admin_still_signs_in() {
    let (server, _db) = server(&[]).await;
    let attacker = client_from(1);
    let guesses = (0..200).map(|i| {
        let (http, server) = (attacker.clone(), &server);
        async move { sign_in(&http, server, "admin", &format!("guess-{i}")).await }
    });
    let statuses = futures::future::join_all(guesses).await;
    let refused = statuses.iter().filter(|s| **s == 429).count();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(refused + checked, 200, "{statuses:?}");
    assert!(
        checked <= 5,
        "only the free attempts are checked: {checked}"
    );
    let checks = password_checks(&server).await;
    assert!(
        checks <= 5,
        "200 parallel guesses ran Argon2 {checks} times"
    );

    // The admin, from another address, is not locked out.
    let admin = client_from(2);
    assert_eq!(sign_in(&admin, &server, "admin", ADMIN_PASSWORD).await, 201);

    // An unknown name is checked against a dummy hash, like a known one.
    let before = password_checks(&server).await;
    assert_eq!(
        sign_in(&client_from(3), &server, "ghost", "whatever-it-is").await,
        401
    );
    assert_eq!(password_checks(&server).await, before + 1);
}

#[tokio::test]
async fn names_and_bodies_are_checked_before_the_limiter_sees_them() {
    let (server, _db) = server(&[]).await;
    let http = client_from(4);
    let long = "a".repeat(65);
    for name in [long.as_str(), "ad\nmin", "", "admin' OR 1=1"] {
        let res = http
            .post(format!("{}/api/v1/session", server.url))
            .json(&json!({ "name": name, "password": "x" }))
            .send()
            .await
            .expect("post");
        assert_eq!(res.status().as_u16(), 422, "{name:?}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"]["field"], json!("name"), "{body}");
    }
    for _ in 0..10 {
        let res = http
            .post(format!("{}/api/v1/session", server.url))
            .json(&json!({ "name": long, "password": "x" }))
            .send()
            .await
            .expect("post");
        assert_eq!(res.status().as_u16(), 422);
    }
    assert_eq!(password_checks(&server).await, 0, "no Argon2 for bad names");
    assert_eq!(
        sign_in(&http, &server, "admin", ADMIN_PASSWORD).await,
        201,
        "malformed attempts do not count against the address"
    );

    // Sign-in routes take small bodies only.
    let big = "p".repeat(8 * 1024);
    for path in ["/api/v1/session", "/api/v1/tokens"] {
        let res = http
            .post(format!("{}{path}", server.url))
            .json(&json!({ "name": "admin", "password": big }))
            .send()
            .await
            .expect("post");
        assert_eq!(res.status().as_u16(), 413, "{path}");
    }
    let res = http
        .post(format!("{}/signin", server.url))
        .form(&[("name", "admin"), ("password", big.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 413);
}

#[tokio::test]
async fn sign_in_from_another_site_is_refused() {
    let (server, _db) = server(&[]).await;
    let http = client_from(5);
    let host = format!("127.0.0.1:{}", server.port);
    let cases: [(&str, &str, u16); 5] = [
        ("origin", "https://evil.example", 403),
        ("origin", "null", 403),
        ("sec-fetch-site", "cross-site", 403),
        ("sec-fetch-site", "same-origin", 201),
        ("origin", "http://HOST", 201),
    ];
    for (header, value, expected) in cases {
        let value = value.replace("HOST", &host);
        let res = http
            .post(format!("{}/api/v1/session", server.url))
            .header(header, &value)
            .json(&json!({ "name": "admin", "password": ADMIN_PASSWORD }))
            .send()
            .await
            .expect("post");
        assert_eq!(res.status().as_u16(), expected, "{header}: {value}");
        if expected == 403 {
            assert!(res.headers().get(SET_COOKIE).is_none());
        }
    }
    let res = http
        .post(format!("{}/signin", server.url))
        .header("sec-fetch-site", "cross-site")
        .form(&[("name", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 403, "the dashboard's form too");
    assert!(res.headers().get(SET_COOKIE).is_none());
}

#[tokio::test]
async fn next_stays_on_this_site_and_errors_are_fixed_messages() {
    let (server, _db) = server(&[]).await;
    let http = client_from(6);
    for next in [
        "/%09/evil.example",
        "/\t/evil.example",
        "//evil.example",
        "/\\evil.example",
        "/%5Cevil.example",
        "https://evil.example/",
    ] {
        let res = http
            .post(format!("{}/signin", server.url))
            .form(&[
                ("name", "admin"),
                ("password", ADMIN_PASSWORD),
                ("next", next),
            ])
            .send()
            .await
            .expect("post");
        assert_eq!(res.status().as_u16(), 303);
        assert_eq!(res.headers()[LOCATION], "/", "{next:?}");
    }

    let res = http
        .post(format!("{}/signin", server.url))
        .form(&[("name", "admin"), ("password", "wrong-one")])
        .send()
        .await
        .expect("post");
    let location = res.headers()[LOCATION].to_str().expect("ascii").to_string();
    assert!(
        location.starts_with("/signin?error=bad_credentials"),
        "{location}"
    );
    assert!(
        location.contains("&name=admin&"),
        "the form gets the name back: {location}"
    );
    // A name no user can have is not sent back (the form body may hold
    // 4 KiB of one): the redirect stays short.
    let long = "x".repeat(3_000);
    let res = http
        .post(format!("{}/signin", server.url))
        .form(&[("name", long.as_str()), ("password", "wrong-one")])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 303);
    let echoed = res.headers()[LOCATION].to_str().expect("ascii");
    assert!(echoed.len() < 200 && echoed.contains("&name=&"), "{echoed}");
    let page = http
        .get(format!("{}{location}", server.url))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("Wrong name or password."),
        "the code's message"
    );

    let page = http
        .get(format!(
            "{}/signin?error=%3Cb%3EYour+account+is+locked%2C+call+555%3C%2Fb%3E",
            server.url
        ))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("html");
    assert!(!page.contains("call 555"), "query text is never shown");
    assert!(page.contains("Sign-in failed."));
}

#[tokio::test]
async fn responses_carry_safe_headers_and_metrics_can_need_a_token() {
    let (server, db) = server(&[("DROVER_METRICS_TOKEN", "metrics-secret")]).await;
    let http = client_from(7);
    for path in ["/healthz", "/api/v1/status", "/signin", "/tasks"] {
        let res = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .expect("get");
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(h.contains_key("referrer-policy"), "{path}");
    }
    let page = http
        .get(format!("{}/signin", server.url))
        .send()
        .await
        .expect("get");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    let html = page.text().await.expect("html");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("pages carry a script nonce");
    let scripts = html.matches("<script").count();
    assert!(scripts > 0);
    assert_eq!(
        html.matches(&format!("nonce=\"{nonce}\"")).count(),
        scripts,
        "every inline script runs under the policy"
    );

    let res = http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status().as_u16(), 401);
    let res = http
        .get(format!("{}/metrics", server.url))
        .bearer_auth("metrics-secret")
        .send()
        .await
        .expect("get");
    assert_eq!(res.status().as_u16(), 200);

    // The data directory and the database are the owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    let data_dir = db.dir().join(format!("server-{}", server.port));
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&db.dir().join("drover.db")), 0o600);
}
