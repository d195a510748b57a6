//! Incoming webhooks, on SQLite and PostgreSQL: a signed delivery starts
//! the trigger's workflow with inputs picked out of its body; a bad or
//! stale signature, a wrong bearer token or an unknown trigger is refused
//! with 401 and starts nothing; a retried delivery with one Idempotency-Key
//! starts one run; only admins manage triggers.

#[macro_use]
mod support;

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use support::{fast_timeouts, Backend, Database, Server, API_TOKEN};

on_both!(
    a_signed_delivery_starts_a_run_and_a_bad_one_starts_nothing,
    a_bearer_trigger_and_idempotent_retries,
    only_admins_manage_triggers_and_definitions_are_checked,
);

const FLOW: &str = r#"
name: onboard
inputs:
  customer: { type: string, required: true }
  plan: { type: string, default: "free" }
steps:
  - id: greet
    type: task
    task_type: echo
    payload: { who: "{{ inputs.customer }}" }
"#;

fn env() -> Vec<(&'static str, &'static str)> {
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo"));
    env
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn sign(secret: &str, ts: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{ts}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts a delivery with these headers; status and body.
async fn deliver(
    server: &Server,
    name: &str,
    body: &str,
    headers: &[(&str, String)],
) -> (u16, Value) {
    let mut r = server
        .http
        .post(format!("{}/api/v1/hooks/{name}", server.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let r = r.send().await.expect("deliver");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn runs(server: &Server) -> Vec<Value> {
    let (_, body) = server.get("/api/v1/runs?workflow=onboard").await;
    body["runs"].as_array().cloned().unwrap_or_default()
}

async fn a_signed_delivery_starts_a_run_and_a_bad_one_starts_nothing(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    server.upload_workflow(API_TOKEN, FLOW).await;
    let (status, created) = server
        .post(
            "/api/v1/triggers",
            &json!({"name": "crm", "workflow": "onboard",
                    "inputs": {"customer": "/customer/id", "plan": "/plan"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().expect("secret").to_string();
    assert_eq!(created["path"], "/api/v1/hooks/crm");
    let body = r#"{"customer": {"id": "acme"}, "plan": "pro", "extra": 1}"#;
    let ts = now_s();

    // Refused, each with 401 and no run: a wrong signature, a body changed
    // after signing, a stale timestamp, no signature, an unknown trigger.
    let wrong = sign("not the secret", ts, body);
    let good = sign(&secret, ts, body);
    let stale = sign(&secret, ts - 600, body);
    for (name, sent, headers) in [
        (
            "crm",
            body,
            vec![
                ("x-drover-timestamp", ts.to_string()),
                ("x-drover-signature", wrong),
            ],
        ),
        (
            "crm",
            r#"{"customer": {"id": "evil"}}"#,
            vec![
                ("x-drover-timestamp", ts.to_string()),
                ("x-drover-signature", good.clone()),
            ],
        ),
        (
            "crm",
            body,
            vec![
                ("x-drover-timestamp", (ts - 600).to_string()),
                ("x-drover-signature", stale),
            ],
        ),
        ("crm", body, vec![]),
        (
            "nope",
            body,
            vec![
                ("x-drover-timestamp", ts.to_string()),
                ("x-drover-signature", good.clone()),
            ],
        ),
    ] {
        let (status, answer) = deliver(&server, name, sent, &headers).await;
        assert_eq!(status, 401, "{name} {sent}: {answer}");
    }
    assert!(runs(&server).await.is_empty(), "nothing started");

    // Signed right: a run with the mapped inputs.
    let (status, answer) = deliver(
        &server,
        "crm",
        body,
        &[
            ("x-drover-timestamp", ts.to_string()),
            ("x-drover-signature", good),
        ],
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let run_id = answer["run_id"].as_i64().expect("run");
    let (_, run) = server.get(&format!("/api/v1/runs/{run_id}")).await;
    let run = if run["run"].is_object() {
        &run["run"]
    } else {
        &run
    };
    assert_eq!(
        run["inputs"],
        json!({"customer": "acme", "plan": "pro"}),
        "{run}"
    );
    assert_eq!(run["started_by"], "trigger:crm");

    // A body without a required input: 422 naming it, nothing started.
    let body = r#"{"plan": "pro"}"#;
    let (status, answer) = deliver(
        &server,
        "crm",
        body,
        &[
            ("x-drover-timestamp", ts.to_string()),
            ("x-drover-signature", sign(&secret, ts, body)),
        ],
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["field"], "inputs.customer");
    assert_eq!(runs(&server).await.len(), 1);
    let (_, list) = server.get("/api/v1/triggers").await;
    assert_eq!(list["triggers"][0]["fired_count"], 1, "{list}");
    assert!(
        list["triggers"][0].get("secret").is_none(),
        "the secret is shown once"
    );
}

async fn a_bearer_trigger_and_idempotent_retries(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    server.upload_workflow(API_TOKEN, FLOW).await;
    let (status, created) = server
        .post(
            "/api/v1/triggers",
            &json!({"name": "simple", "workflow": "onboard", "auth": "bearer",
                    "inputs": {"customer": "/who"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().expect("secret").to_string();
    let body = r#"{"who": "globex"}"#;
    let (status, _) = deliver(
        &server,
        "simple",
        body,
        &[("authorization", "Bearer wrong".into())],
    )
    .await;
    assert_eq!(status, 401);
    let headers = [
        ("authorization", format!("Bearer {secret}")),
        ("idempotency-key", "delivery-7".to_string()),
    ];
    let (status, first) = deliver(&server, "simple", body, &headers).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = deliver(&server, "simple", body, &headers).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["run_id"], first["run_id"]);
    assert_eq!(again["created"], false);
    assert_eq!(runs(&server).await.len(), 1);
    // A bad key is named.
    let (status, answer) = deliver(
        &server,
        "simple",
        body,
        &[
            ("authorization", format!("Bearer {secret}")),
            ("idempotency-key", "x".repeat(300)),
        ],
    )
    .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (422, Some("Idempotency-Key")),
        "{answer}"
    );
    // A payload with NUL text is refused by where it is (PostgreSQL could
    // store it nowhere), and starts nothing.
    let (status, answer) = deliver(
        &server,
        "simple",
        r#"{"who": "glo\u0000bex"}"#,
        &[("authorization", format!("Bearer {secret}"))],
    )
    .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (422, Some("who")),
        "{answer}"
    );
    assert_eq!(runs(&server).await.len(), 1);
    // Deleted: refused from then on.
    let id = created["id"].as_i64().expect("id");
    let (status, _) = server
        .call_as(
            API_TOKEN,
            Method::DELETE,
            &format!("/api/v1/triggers/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = deliver(&server, "simple", body, &headers).await;
    assert_eq!(status, 401);
}

async fn only_admins_manage_triggers_and_definitions_are_checked(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &env()).await;
    server.upload_workflow(API_TOKEN, FLOW).await;
    for (body, field) in [
        (json!({"name": "a b", "workflow": "onboard"}), "name"),
        (json!({"name": "t", "workflow": "nope"}), "workflow"),
        (
            json!({"name": "t", "workflow": "onboard", "inputs": {"color": "/c"}}),
            "inputs.color",
        ),
        (
            json!({"name": "t", "workflow": "onboard", "inputs": {"customer": "id"}}),
            "inputs.customer",
        ),
    ] {
        let (status, err) = server.post("/api/v1/triggers", &body).await;
        assert_eq!(status, 422, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
    }
    let operator = server.create_user("otto", "operator").await;
    let body = json!({"name": "t", "workflow": "onboard"});
    let (status, _) = server
        .call_as(&operator, Method::POST, "/api/v1/triggers", Some(&body))
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .call_as(&operator, Method::GET, "/api/v1/triggers", None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = server.post("/api/v1/triggers", &body).await;
    assert_eq!(status, 201);
    let (status, _) = server.post("/api/v1/triggers", &body).await;
    assert_eq!(status, 409, "the name is taken");
    let (_, audit) = server.get("/api/v1/audit?action=trigger.").await;
    assert!(
        !audit["entries"].as_array().expect("entries").is_empty(),
        "{audit}"
    );
}
