//! Durable waits and sub-workflows on SQLite and PostgreSQL, with real
//! agents: a `wait` step that sleeps across a server `kill -9`, one that
//! waits for an event (and times out by its rule), and a `workflow` step
//! whose child run's outputs reach the parent, with cancel and retry
//! flowing between them.

#[macro_use]
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{
    agent_config, eventually, fast_timeouts, step, AgentProcess, Backend, Database, Server,
};

on_both!(
    a_sleep_resumes_at_its_time_after_the_server_is_killed,
    an_event_resumes_the_waiting_step_with_its_data,
    an_event_wait_times_out_by_its_rule,
    a_webhook_event_trigger_resumes_the_waiting_step,
    a_sub_workflow_hands_its_outputs_to_the_next_step,
    cancel_flows_from_parent_to_child_and_a_cancelled_child_fails_its_step,
    retrying_a_failed_workflow_step_starts_a_new_child,
);

struct Fixture {
    server: Server,
    _agent: AgentProcess,
    _db: Database,
}

async fn fixture(backend: Backend, process: bool) -> Fixture {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo,sleep,fail"));
    let server = if process {
        Server::start(&db, &env).await
    } else {
        Server::spawn_app(&db, &env).await
    };
    let agent = AgentProcess::start(&server, db.dir(), "worker", &agent_config(4, &[]));
    Fixture {
        server,
        _agent: agent,
        _db: db,
    }
}

impl Fixture {
    async fn event(&self, key: &str, data: Value) -> (u16, Value) {
        self.server
            .post("/api/v1/events", &json!({ "key": key, "data": data }))
            .await
    }
}

const NAP: &str = r#"
name: nap
steps:
  - id: before
    type: task
    task_type: echo
    payload: start
  - id: nap
    type: wait
    depends_on: [before]
    duration_ms: 3000
  - id: after
    type: task
    depends_on: [nap]
    task_type: echo
    payload: "{{ steps.nap.output.woke_at }}"
"#;

async fn a_sleep_resumes_at_its_time_after_the_server_is_killed(backend: Backend) {
    let mut f = fixture(backend, true).await;
    f.server.upload_ok(NAP).await;
    let id = f.server.start_run("nap", json!({})).await;
    let run = f.server.wait_step(id, "nap", "waiting").await;
    let wait = &step(&run, "nap")["wait"];
    assert_eq!(wait["kind"], "sleep", "{run}");
    assert_eq!(wait["status"], "waiting");
    let wake_at = wait["wake_at_us"].as_i64().unwrap();
    // The wait holds no slot: nothing of the run is running on an agent.
    assert_eq!(f.server.stats().await.running, 0);
    f.server.restart().await;
    let run = f.server.wait_run(id, "succeeded").await;
    let nap = step(&run, "nap");
    let woke = nap["finished_at_us"].as_i64().unwrap();
    assert!(woke >= wake_at, "woke {woke} before its time {wake_at}");
    assert!(
        woke - wake_at < 3_000_000,
        "woke {} ms late",
        (woke - wake_at) / 1000
    );
    assert_eq!(nap["wait"]["status"], "resumed");
    assert!(step(&run, "after")["output"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
}

const PAYMENT: &str = r#"
name: payment
inputs:
  order: { type: string, required: true }
steps:
  - id: paid
    type: wait
    event: { key: "order:{{ inputs.order }}" }
  - id: ship
    type: task
    depends_on: [paid]
    task_type: echo
    payload: { amount: "{{ steps.paid.output.data.amount }}" }
"#;

async fn an_event_resumes_the_waiting_step_with_its_data(backend: Backend) {
    let f = fixture(backend, false).await;
    f.server.upload_ok(PAYMENT).await;
    let a = f
        .server
        .start_run("payment", json!({ "order": "42" }))
        .await;
    let b = f
        .server
        .start_run("payment", json!({ "order": "43" }))
        .await;
    f.server.wait_step(a, "paid", "waiting").await;
    f.server.wait_step(b, "paid", "waiting").await;
    // No one waits for this key: nothing resumes, and nothing is kept.
    let (s, body) = f.event("order:99", json!({})).await;
    assert_eq!((s, &body["resumed"]), (200, &json!([])), "{body}");
    let (s, body) = f.event("order:42", json!({ "amount": 17 })).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["resumed"], json!([{ "run_id": a, "step_id": "paid" }]));
    let run = f.server.wait_run(a, "succeeded").await;
    assert_eq!(step(&run, "paid")["output"]["data"]["amount"], 17);
    assert_eq!(step(&run, "ship")["output"], json!({ "amount": 17 }));
    // The other order still waits; a second event for the first resumes nothing.
    assert_eq!(step(&f.server.run(b).await, "paid")["status"], "waiting");
    let (_, body) = f.event("order:42", json!({})).await;
    assert_eq!(body["resumed"], json!([]));

    // Bad input is refused with the field named; a viewer may not send.
    let (s, body) = f.event("", json!({})).await;
    assert_eq!(
        (s, body["error"]["field"].as_str()),
        (422, Some("key")),
        "{body}"
    );
    let big = "x".repeat(drover_protocol::limits::MAX_EVENT_DATA_BYTES);
    let (s, body) = f.event("order:43", json!({ "blob": big })).await;
    assert_eq!(
        (s, body["error"]["field"].as_str()),
        (422, Some("data")),
        "{body}"
    );
    let viewer = f.server.create_user("vera", "viewer").await;
    let (s, _) = f
        .server
        .call_as(
            &viewer,
            reqwest::Method::POST,
            "/api/v1/events",
            Some(&json!({ "key": "order:43" })),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(step(&f.server.run(b).await, "paid")["status"], "waiting");
}

async fn a_webhook_event_trigger_resumes_the_waiting_step(backend: Backend) {
    let f = fixture(backend, false).await;
    f.server.upload_ok(PAYMENT).await;
    let run = f.server.start_run("payment", json!({ "order": "7" })).await;
    f.server.wait_step(run, "paid", "waiting").await;
    let admin = f.server.create_user("ada", "admin").await;
    let (s, trigger) = f
        .server
        .call_as(
            &admin,
            reqwest::Method::POST,
            "/api/v1/triggers",
            Some(&json!({
                "name": "payments",
                "event": { "key": "/order/id", "prefix": "order:" },
                "auth": "bearer",
            })),
        )
        .await;
    assert_eq!(s, 201, "{trigger}");
    assert_eq!(trigger["event"]["key"], "/order/id");
    let secret = trigger["secret"].as_str().unwrap().to_string();
    let hook = |token: String, body: Value| {
        let f = &f;
        async move {
            let r = f
                .server
                .http
                .post(format!("{}/api/v1/hooks/payments", f.server.url))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // A wrong secret resumes nothing.
    let (s, _) = hook("nope".into(), json!({ "order": { "id": 7 }, "amount": 17 })).await;
    assert_eq!(s, 401);
    assert_eq!(step(&f.server.run(run).await, "paid")["status"], "waiting");
    // A body without the key is refused, naming where it looked.
    let (s, body) = hook(secret.clone(), json!({ "amount": 17 })).await;
    assert_eq!(
        (s, body["error"]["field"].as_str()),
        (422, Some("/order/id")),
        "{body}"
    );
    // The key may be a number in the body.
    let (s, body) = hook(secret, json!({ "order": { "id": 7 }, "amount": 17 })).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["resumed"],
        json!([{ "run_id": run, "step_id": "paid" }])
    );
    let done = f.server.wait_run(run, "succeeded").await;
    assert_eq!(step(&done, "ship")["output"], json!({ "amount": 17 }));

    // A trigger is a workflow or an event, not both.
    let (s, body) = f
        .server
        .call_as(
            &admin,
            reqwest::Method::POST,
            "/api/v1/triggers",
            Some(&json!({ "name": "both", "workflow": "payment", "event": { "key": "/x" } })),
        )
        .await;
    assert_eq!(
        (s, body["error"]["field"].as_str()),
        (422, Some("workflow")),
        "{body}"
    );
}

async fn an_event_wait_times_out_by_its_rule(backend: Backend) {
    let f = fixture(backend, false).await;
    f.server.upload_ok(
        "name: strict\nsteps:\n  - id: ack\n    type: wait\n    event: { key: ack, timeout_ms: 400 }\n",
    )
    .await;
    f.server.upload_ok("name: lenient\nsteps:\n  - id: ack\n    type: wait\n    event: { key: ack2, timeout_ms: 400, on_timeout: continue }\n  - id: next\n    type: task\n    depends_on: [ack]\n    task_type: echo\n    payload: \"{{ steps.ack.output.timed_out }}\"\n").await;
    let strict = f.server.start_run("strict", json!({})).await;
    let lenient = f.server.start_run("lenient", json!({})).await;
    let run = f.server.wait_run(strict, "failed").await;
    let ack = step(&run, "ack");
    assert_eq!(ack["status"], "failed");
    assert_eq!(ack["wait"]["status"], "timed_out");
    assert!(run["error"].as_str().unwrap().contains("\"ack\""), "{run}");
    let run = f.server.wait_run(lenient, "succeeded").await;
    assert_eq!(step(&run, "next")["output"], json!(true));
}

const CHILD: &str = r#"
name: child
inputs:
  x: { type: number, required: true }
steps:
  - id: double
    type: task
    task_type: echo
    payload: { v: "{{ inputs.x * 2 }}" }
"#;

const PARENT: &str = r#"
name: parent
inputs:
  n: { type: number, required: true }
steps:
  - id: sub
    type: workflow
    workflow: child
    inputs: { x: "{{ inputs.n }}" }
  - id: use
    type: task
    depends_on: [sub]
    task_type: echo
    payload: "{{ steps.sub.output.steps.double.v }}"
"#;

async fn a_sub_workflow_hands_its_outputs_to_the_next_step(backend: Backend) {
    let f = fixture(backend, false).await;
    f.server.upload_ok(CHILD).await;
    f.server.upload_ok(PARENT).await;
    // The parent was pinned to the child's version at upload.
    let (_, wf) = f.server.get("/api/v1/workflows/parent/versions/1").await;
    assert_eq!(wf["definition"]["steps"][0]["version"], 1, "{wf}");
    // A new child version does not change the stored parent.
    f.server
        .upload_ok(&CHILD.replace("inputs.x * 2", "inputs.x * 3"))
        .await;
    let id = f.server.start_run("parent", json!({ "n": 21 })).await;
    let run = f.server.wait_run(id, "succeeded").await;
    assert_eq!(step(&run, "use")["output"], json!(42), "{run}");
    let sub = step(&run, "sub");
    let child = sub["wait"]["child_run_id"].as_i64().unwrap();
    assert_eq!(sub["output"]["run_id"], child);
    let child_run = f.server.run(child).await;
    assert_eq!(child_run["status"], "succeeded");
    assert_eq!(child_run["version"], 1);
    assert_eq!(child_run["parent_run_id"], id);
    assert_eq!(child_run["parent_step_id"], "sub");
    assert_eq!(child_run["inputs"], json!({ "x": 21 }));

    // Bad inputs for the child fail the step, naming them.
    f.server.upload_ok("name: badparent\nsteps:\n  - id: sub\n    type: workflow\n    workflow: child\n    inputs: { y: 1 }\n").await;
    let bad = f.server.start_run("badparent", json!({})).await;
    let run = f.server.wait_run(bad, "failed").await;
    assert!(
        step(&run, "sub")["error"].as_str().unwrap().contains('y'),
        "{run}"
    );
}

const WAITING_CHILD: &str = r#"
name: waiter
steps:
  - id: hold
    type: wait
    event: { key: "never" }
"#;

const WAITING_PARENT: &str = r#"
name: holder
steps:
  - id: sub
    type: workflow
    workflow: waiter
"#;

async fn child_of(f: &Fixture, parent: i64) -> i64 {
    let run = f.server.wait_step(parent, "sub", "waiting").await;
    step(&run, "sub")["wait"]["child_run_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no child run in {run}"))
}

async fn cancel_flows_from_parent_to_child_and_a_cancelled_child_fails_its_step(backend: Backend) {
    let f = fixture(backend, false).await;
    f.server.upload_ok(WAITING_CHILD).await;
    f.server.upload_ok(WAITING_PARENT).await;

    let parent = f.server.start_run("holder", json!({})).await;
    let child = child_of(&f, parent).await;
    f.server.wait_step(child, "hold", "waiting").await;
    let (s, body) = f
        .server
        .post(&format!("/api/v1/runs/{parent}/cancel"), &json!({}))
        .await;
    assert_eq!(s, 200, "{body}");
    let child_run = f.server.wait_run(child, "cancelled").await;
    assert_eq!(step(&child_run, "hold")["status"], "cancelled");
    // The cancelled child's wait no longer resumes on its event.
    let (_, body) = f.event("never", json!({})).await;
    assert_eq!(body["resumed"], json!([]));

    let parent = f.server.start_run("holder", json!({})).await;
    let child = child_of(&f, parent).await;
    let (s, _) = f
        .server
        .post(&format!("/api/v1/runs/{child}/cancel"), &json!({}))
        .await;
    assert_eq!(s, 200);
    let run = f.server.wait_run(parent, "failed").await;
    assert!(
        step(&run, "sub")["error"]
            .as_str()
            .unwrap()
            .contains(&format!("run {child} cancelled")),
        "{run}"
    );
}

async fn retrying_a_failed_workflow_step_starts_a_new_child(backend: Backend) {
    let f = fixture(backend, false).await;
    f.server.upload_ok("name: flaky\nsteps:\n  - id: ack\n    type: wait\n    event: { key: flaky, timeout_ms: 300 }\n").await;
    f.server
        .upload_ok("name: outer\nsteps:\n  - id: sub\n    type: workflow\n    workflow: flaky\n")
        .await;
    let parent = f.server.start_run("outer", json!({})).await;
    let first = child_of(&f, parent).await;
    let run = f.server.wait_run(parent, "failed").await;
    assert_eq!(step(&run, "sub")["status"], "failed");
    assert_eq!(f.server.run(first).await["status"], "failed");

    let (s, body) = f
        .server
        .post(
            &format!("/api/v1/runs/{parent}/steps/sub/retry"),
            &json!({}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let second = eventually(Duration::from_secs(10), "a second child", || async {
        let run = f.server.run(parent).await;
        step(&run, "sub")["wait"]["child_run_id"]
            .as_i64()
            .filter(|c| *c != first)
    })
    .await;
    f.server.wait_step(second, "ack", "waiting").await;
    let (_, body) = f.event("flaky", json!({ "ok": true })).await;
    assert_eq!(
        body["resumed"],
        json!([{ "run_id": second, "step_id": "ack" }])
    );
    let run = f.server.wait_run(parent, "succeeded").await;
    assert_eq!(
        step(&run, "sub")["output"]["steps"]["ack"]["data"],
        json!({ "ok": true })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_wait_and_workflow_steps_are_refused_at_upload() {
    let db = Database::new(Backend::Sqlite).await;
    let server = Server::spawn_app(&db, &fast_timeouts()).await;
    for (text, field, words) in [
        (
            "name: w\nsteps:\n  - id: a\n    type: wait\n",
            "steps[0]",
            "exactly one",
        ),
        (
            "name: w\nsteps:\n  - id: a\n    type: wait\n    duration_ms: 5\n    until: \"2030-01-01T00:00:00Z\"\n",
            "steps[0]",
            "exactly one",
        ),
        (
            "name: w\nsteps:\n  - id: a\n    type: wait\n    until: tomorrow\n",
            "steps[0].until",
            "RFC 3339",
        ),
        (
            "name: w\nsteps:\n  - id: a\n    type: wait\n    duration_ms: 0\n",
            "steps[0].duration_ms",
            "between 1",
        ),
        (
            "name: w\nsteps:\n  - id: a\n    type: wait\n    event: { key: \"\" }\n",
            "steps[0].event.key",
            "1 to",
        ),
        (
            "name: w\nsteps:\n  - id: a\n    type: workflow\n    workflow: nowhere\n",
            "steps[0].workflow",
            "no workflow",
        ),
    ] {
        let (s, body) = server.upload_workflow(support::API_TOKEN, text).await;
        assert_eq!(s, 422, "{text}: {body}");
        assert_eq!(body["error"]["field"], field, "{text}: {body}");
        assert!(body.to_string().contains(words), "{text}: {body}");
    }
}
