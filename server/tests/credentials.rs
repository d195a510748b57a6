//! User credentials with a lifecycle, on SQLite and PostgreSQL: named API
//! tokens listed by prefix, expiring and revoked; disabled users; roles and
//! passwords changed; never the last admin removed; and a revoked
//! bootstrap `DROVER_API_TOKEN` that stays revoked across restarts.

mod support;

use std::time::Duration;

use reqwest::header::COOKIE;
use serde_json::{json, Value};
use support::{Backend, Database, Server, API_TOKEN};

const ADMIN_PASSWORD: &str = "admin-password-for-tests";
const ANN_PASSWORD: &str = "ann-password-1";

async fn server(backend: Backend) -> (Server, Database) {
    let db = Database::new(backend).await;
    let env = [
        ("DROVER_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("DROVER_TASK_TYPES", "echo"),
    ];
    (Server::spawn_app(&db, &env).await, db)
}

/// One request with a bearer token; the status and JSON body.
async fn call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server
        .http
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get(server: &Server, path: &str, token: &str) -> (u16, Value) {
    call(server, reqwest::Method::GET, path, token, None).await
}

async fn post(server: &Server, path: &str, token: &str, body: Value) -> (u16, Value) {
    call(server, reqwest::Method::POST, path, token, Some(body)).await
}

async fn patch(server: &Server, path: &str, token: &str, body: Value) -> (u16, Value) {
    call(server, reqwest::Method::PATCH, path, token, Some(body)).await
}

async fn put(server: &Server, path: &str, token: &str, body: Value) -> (u16, Value) {
    call(server, reqwest::Method::PUT, path, token, Some(body)).await
}

async fn delete(server: &Server, path: &str, token: &str) -> u16 {
    call(server, reqwest::Method::DELETE, path, token, None)
        .await
        .0
}

/// Creates `ann` (operator, with a password) and returns her first token.
async fn add_ann(server: &Server) -> String {
    let (status, body) = post(
        server,
        "/api/v1/users",
        API_TOKEN,
        json!({ "name": "ann", "role": "operator", "password": ANN_PASSWORD }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().expect("token").to_string()
}

async fn session_cookie(server: &Server, name: &str, password: &str) -> (u16, String) {
    let res = server
        .http
        .post(format!("{}/api/v1/session", server.url))
        .json(&json!({ "name": name, "password": password }))
        .send()
        .await
        .expect("sign in");
    let cookies = res
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(String::from))
        .collect::<Vec<_>>()
        .join("; ");
    (res.status().as_u16(), cookies)
}

async fn whoami_with_cookie(server: &Server, cookies: &str) -> u16 {
    server
        .http
        .get(format!("{}/api/v1/me", server.url))
        .header(COOKIE, cookies)
        .send()
        .await
        .expect("me")
        .status()
        .as_u16()
}

async fn tokens_are_named_listed_by_prefix_expire_and_are_revoked(backend: Backend) {
    let (server, _db) = server(backend).await;
    let ann = add_ann(&server).await;

    let (status, laptop) = post(
        &server,
        "/api/v1/tokens",
        &ann,
        json!({ "name": "laptop", "expires_in": "30d" }),
    )
    .await;
    assert_eq!(status, 201, "{laptop}");
    let laptop_token = laptop["token"].as_str().expect("token").to_string();
    assert_eq!(laptop["name"], json!("laptop"));
    assert_eq!(laptop["user"]["name"], json!("ann"));
    let expires = laptop["expires_at_us"].as_i64().expect("expiry");
    let created = laptop["created_at_us"].as_i64().expect("created");
    assert_eq!(expires - created, 30 * 86_400 * 1_000_000);
    assert_eq!(get(&server, "/api/v1/me", &laptop_token).await.0, 200);

    let (_, short) = post(
        &server,
        "/api/v1/tokens",
        &ann,
        json!({ "name": "short", "expires_in": 1 }),
    )
    .await;
    let short_token = short["token"].as_str().expect("token").to_string();
    let (status, body) = post(
        &server,
        "/api/v1/tokens",
        &ann,
        json!({ "name": "bad", "expires_in": "whenever" }),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], json!("expires_in"));

    // Listed with their prefix only, never the token.
    let (status, list) = get(&server, "/api/v1/tokens", &ann).await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(!text.contains(&laptop_token) && !text.contains(&ann));
    let tokens = list["tokens"].as_array().expect("tokens");
    let names: Vec<&str> = tokens.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(
        names,
        ["short", "laptop", "first token"],
        "ann's own, newest first"
    );
    assert_eq!(tokens[1]["prefix"], json!(&laptop_token[..8]));
    assert!(
        tokens[2]["last_used_at_us"].as_i64().is_some(),
        "use is recorded: {}",
        tokens[2]
    );

    // Expired tokens are refused.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get(&server, "/api/v1/me", &short_token).await.0, 401);

    // Revoked tokens are refused; only the owner or an admin may revoke.
    let laptop_id = laptop["id"].as_i64().expect("id");
    let (_, admin_list) = get(&server, "/api/v1/tokens", API_TOKEN).await;
    let admin_token_id = admin_list["tokens"][0]["id"].as_i64().expect("id");
    assert_eq!(
        delete(&server, &format!("/api/v1/tokens/{admin_token_id}"), &ann).await,
        404,
        "not ann's to revoke"
    );
    assert_eq!(get(&server, "/api/v1/tokens?all=true", &ann).await.0, 403);
    let (_, all) = get(&server, "/api/v1/tokens?all=true", API_TOKEN).await;
    assert!(all["tokens"].as_array().expect("all").len() >= 4);
    assert_eq!(
        delete(&server, &format!("/api/v1/tokens/{laptop_id}"), &ann).await,
        204
    );
    assert_eq!(get(&server, "/api/v1/me", &laptop_token).await.0, 401);
    let (_, list) = get(&server, "/api/v1/tokens", &ann).await;
    assert!(list["tokens"][1]["revoked_at_us"].as_i64().is_some());

    // The CLI's password exchange gives a named token with an expiry.
    let (status, exchanged) = post(
        &server,
        "/api/v1/tokens",
        "",
        json!({ "user": "ann", "password": ANN_PASSWORD, "name": "drover login" }),
    )
    .await;
    assert_eq!(status, 201, "{exchanged}");
    assert!(exchanged["expires_at_us"].as_i64().is_some());
    let (status, _) = post(
        &server,
        "/api/v1/tokens",
        "",
        json!({ "user": "ann", "password": "not-her-password" }),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        post(&server, "/api/v1/tokens", "", json!({ "name": "x" }))
            .await
            .0,
        401,
        "without a password the caller must be signed in"
    );
}

async fn users_are_disabled_change_role_and_password_but_the_last_admin_stays(backend: Backend) {
    let (server, _db) = server(backend).await;
    let ann = add_ann(&server).await;
    let (status, cookies) = session_cookie(&server, "ann", ANN_PASSWORD).await;
    assert_eq!(status, 201);
    assert_eq!(whoami_with_cookie(&server, &cookies).await, 200);

    // Disabled: tokens and sessions refused at once, sign-in refused.
    let (status, body) = patch(
        &server,
        "/api/v1/users/ann",
        API_TOKEN,
        json!({ "disabled": true }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["disabled"], json!(true));
    assert_eq!(get(&server, "/api/v1/me", &ann).await.0, 401);
    assert_eq!(whoami_with_cookie(&server, &cookies).await, 401);
    assert_eq!(session_cookie(&server, "ann", ANN_PASSWORD).await.0, 403);
    let (_, users) = get(&server, "/api/v1/users", API_TOKEN).await;
    assert!(users["users"]
        .as_array()
        .expect("users")
        .iter()
        .any(|u| u["name"] == "ann" && u["disabled"] == true));
    let (status, _) = patch(
        &server,
        "/api/v1/users/ann",
        API_TOKEN,
        json!({ "disabled": false }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(get(&server, "/api/v1/me", &ann).await.0, 200);

    // Roles: only an admin changes them; a viewer cannot submit.
    assert_eq!(
        patch(
            &server,
            "/api/v1/users/ann",
            &ann,
            json!({ "role": "admin" })
        )
        .await
        .0,
        403
    );
    let (status, body) = patch(
        &server,
        "/api/v1/users/ann",
        API_TOKEN,
        json!({ "role": "viewer" }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["user"]["role"], json!("viewer"));
    let task = json!({ "task_type": "echo", "payload": {} });
    assert_eq!(post(&server, "/api/v1/tasks", &ann, task).await.0, 403);

    // The last enabled admin can be neither demoted nor disabled.
    for change in [json!({ "role": "operator" }), json!({ "disabled": true })] {
        let (status, body) = patch(&server, "/api/v1/users/admin", API_TOKEN, change).await;
        assert_eq!(status, 409, "{body}");
    }
    assert_eq!(
        get(&server, "/api/v1/me", API_TOKEN).await.1["role"],
        json!("admin")
    );

    // Passwords: yourself with the old one, or an admin.
    let (status, body) = put(
        &server,
        "/api/v1/users/ann/password",
        &ann,
        json!({ "password": "new-password-2" }),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], json!("old_password"));
    let (status, _) = put(
        &server,
        "/api/v1/users/ann/password",
        &ann,
        json!({ "password": "new-password-2", "old_password": "wrong-old-one" }),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = put(
        &server,
        "/api/v1/users/admin/password",
        &ann,
        json!({ "password": "new-password-2" }),
    )
    .await;
    assert_eq!(status, 403, "not someone else's");
    let (status, _) = put(
        &server,
        "/api/v1/users/ann/password",
        &ann,
        json!({ "password": "new-password-2", "old_password": ANN_PASSWORD }),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(session_cookie(&server, "ann", ANN_PASSWORD).await.0, 401);
    assert_eq!(
        session_cookie(&server, "ann", "new-password-2").await.0,
        201
    );
    let (status, _) = put(
        &server,
        "/api/v1/users/ann/password",
        API_TOKEN,
        json!({ "password": "third-password-3" }),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        session_cookie(&server, "ann", "third-password-3").await.0,
        201
    );

    // With a second admin, the first may step down.
    let (status, _) = patch(
        &server,
        "/api/v1/users/ann",
        API_TOKEN,
        json!({ "role": "admin" }),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = patch(
        &server,
        "/api/v1/users/admin",
        &ann,
        json!({ "disabled": true }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(get(&server, "/api/v1/me", API_TOKEN).await.0, 401);
}

async fn a_revoked_bootstrap_token_stays_revoked_after_a_restart(backend: Backend) {
    let (mut server, _db) = server(backend).await;
    let (status, spare) = post(
        &server,
        "/api/v1/tokens",
        API_TOKEN,
        json!({ "name": "spare" }),
    )
    .await;
    assert_eq!(status, 201);
    let spare = spare["token"].as_str().expect("token").to_string();
    let (_, list) = get(&server, "/api/v1/tokens", &spare).await;
    let bootstrap = list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["name"] == "DROVER_API_TOKEN")
        .cloned()
        .expect("the bootstrap token is listed");
    assert_eq!(bootstrap["prefix"], json!(&API_TOKEN[..4]));
    let id = bootstrap["id"].as_i64().expect("id");
    assert_eq!(
        delete(&server, &format!("/api/v1/tokens/{id}"), &spare).await,
        204
    );
    assert_eq!(get(&server, "/api/v1/me", API_TOKEN).await.0, 401);

    server.restart().await;
    assert_eq!(
        get(&server, "/api/v1/me", API_TOKEN).await.0,
        401,
        "DROVER_API_TOKEN is still set, but a revoked token does not come back"
    );
    assert_eq!(get(&server, "/api/v1/me", &spare).await.0, 200);
}

async fn the_server_cli_manages_users_and_tokens(backend: Backend) {
    let (server, db) = server(backend).await;
    add_ann(&server).await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_drover-server"))
            .args(args)
            .env("DROVER_DATABASE_URL", &db.url)
            .env("DROVER_DATA_DIR", db.dir().join("cli-data"))
            .env("RUST_LOG", "warn")
            .output()
            .expect("run drover-server");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = cli(&[
        "user",
        "add-token",
        "ann",
        "--label",
        "ci",
        "--expires-in",
        "7d",
    ]);
    assert!(ok, "{out}");
    let token = out.trim().rsplit(' ').next().expect("token").to_string();
    assert_eq!(get(&server, "/api/v1/me", &token).await.0, 200);
    let (ok, out) = cli(&["user", "tokens", "ann"]);
    assert!(
        ok && out.contains("\tci\t") && !out.contains(&token),
        "{out}"
    );
    let id = out
        .lines()
        .find(|l| l.contains("\tci\t"))
        .and_then(|l| l.split('\t').next())
        .expect("id")
        .to_string();
    let (ok, out) = cli(&["user", "revoke-token", &id]);
    assert!(ok, "{out}");
    // Another process revoked it: the server trusts the token it verified
    // a moment ago for DROVER_AUTH_CACHE_TTL (1 s) at most.
    let revoked = std::time::Instant::now();
    while get(&server, "/api/v1/me", &token).await.0 != 401 {
        assert!(
            revoked.elapsed() < std::time::Duration::from_secs(3),
            "a token revoked from the command line still works after 3 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let (ok, out) = cli(&["user", "disable", "admin"]);
    assert!(!ok && out.contains("last enabled admin"), "{out}");
    let (ok, out) = cli(&["user", "role", "ann", "viewer"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["user", "disable", "ann"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["user", "list"]);
    assert!(ok && out.contains("ann\tviewer\tdisabled"), "{out}");
    let (ok, out) = cli(&["user", "enable", "ann"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["user", "password", "ann", "--password", "cli-password-9"]);
    assert!(ok, "{out}");
    assert_eq!(
        session_cookie(&server, "ann", "cli-password-9").await.0,
        201
    );
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )*
        }
    };
}

on_both_backends!(
    tokens_are_named_listed_by_prefix_expire_and_are_revoked,
    users_are_disabled_change_role_and_password_but_the_last_admin_stays,
    a_revoked_bootstrap_token_stays_revoked_after_a_restart,
    the_server_cli_manages_users_and_tokens,
);
