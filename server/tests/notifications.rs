//! Outgoing notifications, on SQLite and PostgreSQL, with real server and
//! agent processes and a small webhook receiver in the test: an endpoint
//! that fails twice gets the message on the third try, and it is delivered
//! once; each of the four events makes a delivery (a task that will be
//! retried does not); the same event is not delivered twice across
//! restarts, and an attempt cut short by a `kill -9` is sent again with
//! the same Idempotency-Key; a delivery gives up after its last attempt;
//! only admins write rules, operators read deliveries, and bad URLs are
//! refused with 422.

#[macro_use]
mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use support::{
    agent_config, eventually, fast_timeouts, new_task, AgentProcess, Backend, Database, RawAgent,
    Server, API_TOKEN,
};

on_both!(
    an_endpoint_failing_twice_gets_the_message_on_the_third_try_once,
    each_event_makes_a_delivery_and_a_task_that_will_retry_none,
    the_same_event_is_not_delivered_twice_across_restarts,
    a_delivery_gives_up_after_its_last_attempt,
    only_admins_write_rules_and_bad_urls_are_refused,
);

/// What the receiver answers to one request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// Holds the request open (until the sender gives up or dies).
    Hang,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    raw: String,
    body: Value,
}

#[derive(Clone, Default)]
struct Hook {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answers to give, in order; then 200.
    plan: Arc<Mutex<VecDeque<Answer>>>,
}

/// A webhook receiver on a port of its own: records every request and
/// answers as planned.
struct Receiver {
    url: String,
    hook: Hook,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, raw: String) -> StatusCode {
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    hook.got
        .lock()
        .unwrap()
        .push(Received { headers, raw, body });
    let answer = hook
        .plan
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Answer::Status(200));
    match answer {
        Answer::Status(s) => StatusCode::from_u16(s).unwrap(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            StatusCode::OK
        }
    }
}

impl Receiver {
    async fn start(plan: &[Answer]) -> Self {
        let hook = Hook::default();
        hook.plan.lock().unwrap().extend(plan.iter().copied());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(hook.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, hook, task }
    }

    fn got(&self) -> Vec<Received> {
        self.hook.got.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.hook.got.lock().unwrap().len()
    }
}

fn header(r: &Received, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// `env` with `key` set to `value` (replacing it).
fn with(
    mut env: Vec<(&'static str, &'static str)>,
    key: &'static str,
    value: &'static str,
) -> Vec<(&'static str, &'static str)> {
    env.retain(|(k, _)| *k != key);
    env.push((key, value));
    env
}

fn env() -> Vec<(&'static str, &'static str)> {
    let mut env = fast_timeouts();
    env.extend([
        ("DROVER_TASK_TYPES", "fail,echo"),
        ("DROVER_NOTIFY_RETRY_BACKOFF", "200ms"),
        ("DROVER_NOTIFY_TIMEOUT", "2s"),
        ("DROVER_NOTIFY_ALLOW_PRIVATE", "true"),
        ("DROVER_PUBLIC_URL", "https://drover.example/"),
    ]);
    env
}

/// Creates a rule; its id and secret.
async fn create_rule(server: &Server, rule: &Value) -> (i64, Option<String>) {
    let (status, body) = server.post("/api/v1/notifications/rules", rule).await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_i64().expect("rule id"),
        body["secret"].as_str().map(String::from),
    )
}

async fn deliveries(server: &Server, rule: i64) -> Vec<Value> {
    let (status, body) = server
        .get(&format!("/api/v1/notifications/deliveries?rule={rule}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().cloned().unwrap_or_default()
}

/// Waits until the rule has `n` deliveries, all finished; answers them.
async fn finished(server: &Server, rule: i64, n: usize, within: Duration) -> Vec<Value> {
    eventually(
        within,
        &format!("{n} finished deliveries of rule {rule}"),
        || async {
            let d = deliveries(server, rule).await;
            (d.len() == n && d.iter().all(|d| d["status"] != "pending")).then_some(d)
        },
    )
    .await
}

fn failing_task(max_attempts: i64) -> drover_protocol::api::NewTask {
    let mut t = new_task("fail", json!({}));
    t.max_attempts = Some(max_attempts);
    t.retry_backoff_ms = Some(3_600_000);
    t
}

async fn an_endpoint_failing_twice_gets_the_message_on_the_third_try_once(backend: Backend) {
    let db = Database::new(backend).await;
    let hook = Receiver::start(&[Answer::Status(500), Answer::Status(500)]).await;
    let server = Server::start(&db, &env()).await;
    let _agent = AgentProcess::start(&server, db.dir(), "w1", &agent_config(2, &[]));
    let (rule, secret) = create_rule(
        &server,
        &json!({"name": "ops", "events": ["task_failed"], "task_type": "fail", "url": hook.url}),
    )
    .await;
    let secret = secret.expect("a signed rule's secret");
    let task = server.submit(vec![failing_task(1)]).await[0];

    let done = finished(&server, rule, 1, Duration::from_secs(60)).await;
    // Nothing more arrives once it is delivered.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let d = &deliveries(&server, rule).await[0];
    assert_eq!(done.len(), 1);
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(d["attempts"], 3, "{d}");
    assert_eq!(d["last_status_code"], 200, "{d}");
    assert_eq!(d["event"], "task_failed");
    let got = hook.got();
    assert_eq!(got.len(), 3, "two refused, one accepted: {got:?}");
    // The same message each time, under one idempotency key.
    assert!(got.iter().all(|r| r.raw == got[0].raw));
    let key = header(&got[0], "idempotency-key");
    assert_eq!(key, format!("drover-delivery-{}", d["id"]));
    assert!(got.iter().all(|r| header(r, "idempotency-key") == key));
    let attempts: Vec<String> = got.iter().map(|r| header(r, "x-drover-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    // What it says.
    let body = &got[2].body;
    assert_eq!(body["event"], "task_failed");
    assert_eq!(body["task"]["id"], task);
    assert_eq!(body["task"]["task_type"], "fail");
    assert_eq!(body["rule"], "ops");
    assert_eq!(body["link"], format!("https://drover.example/tasks/{task}"));
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "Drover: Task #{task} (fail) failed for good after 1 attempt"
        )),
        "{text}"
    );
    assert!(text.contains("disk on fire"), "{text}");
    // Signed like an incoming trigger's delivery.
    let last = &got[2];
    let ts = header(last, "x-drover-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{}", last.raw).as_bytes());
    assert_eq!(
        header(last, "x-drover-signature"),
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    assert_eq!(header(last, "content-type"), "application/json");
}

const DOOMED: &str = "name: doomed\nsteps:\n  - id: boom\n    type: task\n    task_type: fail\n    max_attempts: 1\n";
const GATED: &str = "name: gated\nsteps:\n  - id: ok\n    type: approval\n    approvers: { roles: [admin] }\n    message: ship it?\n";

async fn each_event_makes_a_delivery_and_a_task_that_will_retry_none(backend: Backend) {
    let db = Database::new(backend).await;
    let hook = Receiver::start(&[]).await;
    let server = Server::start(&db, &env()).await;
    let _agent = AgentProcess::start(&server, db.dir(), "w1", &agent_config(2, &[]));
    for def in [DOOMED, GATED] {
        let (status, body) = server.upload_workflow(API_TOKEN, def).await;
        assert_eq!(status, 201, "{body}");
    }
    let (all, _) = create_rule(
        &server,
        &json!({"name": "all", "url": hook.url, "sign": false,
                "events": ["run_failed", "approval_waiting", "task_failed", "agent_offline"]}),
    )
    .await;
    // A filter no event passes.
    let (none, _) = create_rule(
        &server,
        &json!({"name": "other-workflow", "url": hook.url, "workflow": "other",
                "events": ["run_failed", "approval_waiting", "task_failed"]}),
    )
    .await;

    // A task that fails and will be retried (in an hour) is no event.
    let retrying = server.submit(vec![failing_task(3)]).await[0];
    eventually(
        Duration::from_secs(30),
        "the first attempt to fail",
        || async {
            let t = server.task(retrying).await;
            (t.task.attempts == 1 && t.task.status == drover_protocol::api::TaskStatus::Queued)
                .then_some(())
        },
    )
    .await;
    let (_, run) = server
        .post("/api/v1/runs", &json!({"workflow": "doomed"}))
        .await;
    let failed_run = run["id"].as_i64().expect("run id");
    let (_, run) = server
        .post("/api/v1/runs", &json!({"workflow": "gated"}))
        .await;
    let gated_run = run["id"].as_i64().expect("run id");
    // An agent that registers and falls silent.
    let silent = RawAgent::register(&server, "silent", 1, &["echo"]).await;

    let done = finished(&server, all, 4, Duration::from_secs(60)).await;
    assert!(done.iter().all(|d| d["status"] == "delivered"), "{done:?}");
    let mut events: Vec<String> = done
        .iter()
        .map(|d| d["event"].as_str().unwrap().to_string())
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            "agent_offline",
            "approval_waiting",
            "run_failed",
            "task_failed"
        ]
    );
    let got = hook.got();
    assert_eq!(got.len(), 4, "{got:?}");
    let body = |event: &str| {
        got.iter()
            .find(|r| r.body["event"] == event)
            .map(|r| r.body.clone())
            .unwrap_or_else(|| panic!("no {event} delivery"))
    };
    let run_failed = body("run_failed");
    assert_eq!(run_failed["run"]["id"], failed_run);
    assert_eq!(run_failed["run"]["workflow"], "doomed");
    assert_eq!(
        run_failed["link"],
        format!("https://drover.example/runs/{failed_run}")
    );
    let task_failed = body("task_failed");
    assert_eq!(task_failed["task"]["run_id"], failed_run);
    assert_eq!(task_failed["task"]["step_id"], "boom");
    assert_ne!(task_failed["task"]["id"], retrying);
    let approval = body("approval_waiting");
    assert_eq!(approval["approval"]["run_id"], gated_run);
    assert_eq!(approval["approval"]["message"], "ship it?");
    assert!(approval["text"]
        .as_str()
        .unwrap()
        .contains("waits for approval at step ok: ship it?"));
    let agent = body("agent_offline");
    assert_eq!(agent["agent"]["id"], silent.id);
    assert_eq!(agent["agent"]["name"], "silent");
    assert_eq!(agent["agent"]["task_types"], json!(["echo"]));
    assert!(got
        .iter()
        .all(|r| header(r, "x-drover-signature").is_empty()));

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(deliveries(&server, none).await.is_empty());
    assert_eq!(hook.count(), 4);
}

async fn the_same_event_is_not_delivered_twice_across_restarts(backend: Backend) {
    let db = Database::new(backend).await;
    // The first attempt hangs: the server is killed during it.
    let hook = Receiver::start(&[Answer::Hang]).await;
    let env = with(env(), "DROVER_NOTIFY_TIMEOUT", "3s");
    let mut server = Server::start(&db, &env).await;
    let _agent = AgentProcess::start(&server, db.dir(), "w1", &agent_config(2, &[]));
    let (rule, _) = create_rule(
        &server,
        &json!({"name": "ops", "events": ["task_failed"], "url": hook.url}),
    )
    .await;
    server.submit(vec![failing_task(1)]).await;
    eventually(Duration::from_secs(60), "the first attempt", || async {
        (hook.count() == 1).then_some(())
    })
    .await;
    server.restart().await; // kill -9, start again

    // Its lease over (timeout + 5 s), the attempt is made again, with the
    // same key: at least once, and the receiver can tell.
    let done = finished(&server, rule, 1, Duration::from_secs(60)).await;
    assert_eq!(done[0]["status"], "delivered", "{done:?}");
    assert_eq!(done[0]["attempts"], 2, "{done:?}");
    let got = hook.got();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        header(&got[0], "idempotency-key"),
        header(&got[1], "idempotency-key")
    );
    assert_eq!(got[0].raw, got[1].raw);

    // Another restart, then passes of the new leader (the first of which
    // reads the last ten minutes again): the event is the same, and makes
    // no second delivery.
    server.restart().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let d = deliveries(&server, rule).await;
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(hook.count(), 2);
}

async fn a_delivery_gives_up_after_its_last_attempt(backend: Backend) {
    let db = Database::new(backend).await;
    let hook = Receiver::start(&[Answer::Status(500); 10]).await;
    let env = with(env(), "DROVER_NOTIFY_MAX_ATTEMPTS", "3");
    let server = Server::start(&db, &env).await;
    let (rule, _) = create_rule(
        &server,
        &json!({"name": "ops", "events": ["run_failed"], "url": hook.url}),
    )
    .await;
    let (status, sent) = server
        .post(
            &format!("/api/v1/notifications/rules/{rule}/test"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!(
        (sent["event"].as_str(), sent["status"].as_str()),
        (Some("test"), Some("pending"))
    );
    let done = finished(&server, rule, 1, Duration::from_secs(30)).await;
    let d = &done[0];
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(
        (d["attempts"].as_i64(), d["max_attempts"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!(d["last_status_code"], 500);
    assert!(
        d["last_error"].as_str().unwrap().starts_with("HTTP 500"),
        "{d}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hook.count(), 3);
    assert_eq!(hook.got()[0].body["event"], "test");

    // Nobody listening: the connection is refused, each attempt.
    let closed = support::free_port();
    let (dead, _) = create_rule(
        &server,
        &json!({"name": "dead", "events": ["run_failed"], "url": format!("http://127.0.0.1:{closed}/")}),
    )
    .await;
    server
        .post(
            &format!("/api/v1/notifications/rules/{dead}/test"),
            &json!({}),
        )
        .await;
    let done = finished(&server, dead, 1, Duration::from_secs(30)).await;
    assert_eq!(
        (done[0]["status"].as_str(), done[0]["attempts"].as_i64()),
        (Some("failed"), Some(3))
    );
    assert!(
        done[0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("could not connect"),
        "{}",
        done[0]
    );
    let failed = server
        .get("/api/v1/notifications/deliveries?status=failed")
        .await
        .1;
    assert_eq!(failed["deliveries"].as_array().unwrap().len(), 2);
}

async fn only_admins_write_rules_and_bad_urls_are_refused(backend: Backend) {
    let db = Database::new(backend).await;
    // DROVER_NOTIFY_ALLOW_PRIVATE is off here.
    let server = Server::spawn_app(&db, &fast_timeouts()).await;
    let rules = "/api/v1/notifications/rules";
    let good = json!({"name": "slack", "events": ["run_failed"],
                      "url": "https://hooks.example.com/services/T0/B0/very-secret"});
    for (body, field) in [
        (
            json!({"name": "x", "events": ["run_failed"], "url": "ftp://example.com/"}),
            "url",
        ),
        (
            json!({"name": "x", "events": ["run_failed"], "url": "no url"}),
            "url",
        ),
        (
            json!({"name": "x", "events": ["run_failed"], "url": "http://127.0.0.1:9000/"}),
            "url",
        ),
        (
            json!({"name": "x", "events": ["run_failed"], "url": "http://169.254.169.254/latest/"}),
            "url",
        ),
        (
            json!({"name": "x", "events": ["run_failed"], "url": "http://localhost/"}),
            "url",
        ),
        (
            json!({"name": "x", "events": [], "url": "https://example.com/"}),
            "events",
        ),
        (
            json!({"name": "x y", "events": ["run_failed"], "url": "https://example.com/"}),
            "name",
        ),
        (
            json!({"name": "x", "events": ["run_failed"], "task_type": "t", "url": "https://example.com/"}),
            "task_type",
        ),
        (
            json!({"name": "x", "events": ["agent_offline"], "workflow": "w", "url": "https://example.com/"}),
            "workflow",
        ),
    ] {
        let (status, answer) = server.post(rules, &body).await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert_eq!(answer["error"]["field"], field, "{body} → {answer}");
    }
    let (status, _) = server
        .post(
            rules,
            &json!({"name": "x", "events": ["run_exploded"], "url": "https://example.com/"}),
        )
        .await;
    assert_eq!(status, 400);

    let (status, created) = server.post(rules, &good).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    // The URL is a credential: shown back as its origin only.
    assert_eq!(created["url"], "https://hooks.example.com/…");
    assert_eq!(created["secret"].as_str().map(str::len), Some(64));
    assert_eq!(server.post(rules, &good).await.0, 409, "the name is taken");
    let (_, list) = server.get(rules).await;
    assert!(!list.to_string().contains("very-secret"));

    let operator = server.create_user("olga", "operator").await;
    let viewer = server.create_user("vic", "viewer").await;
    let one = format!("{rules}/{id}");
    let test = format!("{rules}/{id}/test");
    for token in [&operator, &viewer] {
        for (method, path, body) in [
            (Method::GET, rules, None),
            (Method::POST, rules, Some(&good)),
            (Method::GET, one.as_str(), None),
            (
                Method::PATCH,
                one.as_str(),
                Some(&json!({"enabled": false})),
            ),
            (Method::DELETE, one.as_str(), None),
            (Method::POST, test.as_str(), Some(&json!({}))),
        ] {
            let (status, answer) = server.call_as(token, method.clone(), path, body).await;
            assert_eq!(status, 403, "{method} {path}: {answer}");
        }
    }
    let deliveries = "/api/v1/notifications/deliveries";
    assert_eq!(
        server
            .call_as(&operator, Method::GET, deliveries, None)
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .call_as(&viewer, Method::GET, deliveries, None)
            .await
            .0,
        403
    );
    let (status, answer) = server.get(&format!("{deliveries}?status=lost")).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (422, Some("status"))
    );

    // Admins change and delete; each change is audited.
    let patch = |body: Value| {
        let (server, one) = (&server, one.clone());
        async move {
            server
                .call_as(API_TOKEN, Method::PATCH, &one, Some(&body))
                .await
        }
    };
    let (status, answer) = patch(json!({"url": "gopher://example.com/"})).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (422, Some("url"))
    );
    let (status, answer) = patch(json!({"task_type": "resize"})).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (422, Some("task_type")),
        "run_failed has no task type"
    );
    let (status, changed) =
        patch(json!({"enabled": false, "events": ["task_failed"], "task_type": "resize"})).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["enabled"], false);
    assert_eq!(changed["task_type"], "resize");
    let (status, answer) =
        patch(json!({"events": ["task_failed", "run_failed"], "task_type": ""})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events"], json!(["run_failed", "task_failed"]));
    assert_eq!(
        answer["task_type"],
        Value::Null,
        "an empty filter removes it"
    );
    let (status, _) = server.call_as(API_TOKEN, Method::DELETE, &one, None).await;
    assert_eq!(status, 200);
    assert_eq!(server.get(&one).await.0, 404);
    let (_, audit) = server.get("/api/v1/audit?action=notification_rule").await;
    let mut actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            "notification_rule.changed",
            "notification_rule.changed",
            "notification_rule.created",
            "notification_rule.deleted"
        ]
    );

    // A name is checked where it is resolved: this host's own name is a
    // loopback address, refused when sending.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let loopback = match tokio::net::lookup_host((host.as_str(), 80)).await {
        Ok(mut addrs) => addrs.next().is_some_and(|a| a.ip().is_loopback()),
        Err(_) => false,
    };
    if loopback && !host.is_empty() && host != "localhost" {
        let (status, created) = server
            .post(
                rules,
                &json!({"name": "sneaky", "events": ["run_failed"], "url": format!("http://{host}:9/")}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_i64().unwrap();
        server.post(&format!("{rules}/{id}/test"), &json!({})).await;
        let done = finished(&server, id, 1, Duration::from_secs(30)).await;
        assert_eq!(
            (done[0]["status"].as_str(), done[0]["attempts"].as_i64()),
            (Some("failed"), Some(1))
        );
        assert!(
            done[0]["last_error"]
                .as_str()
                .unwrap()
                .starts_with("refused:"),
            "{}",
            done[0]
        );
    }
}
