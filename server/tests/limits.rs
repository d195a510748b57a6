//! The engine's limits, end to end: what the task parser would refuse is
//! refused at upload, and a run that meets a limit while it runs fails
//! with the reason instead of staying `running` — on SQLite and PostgreSQL.

#[macro_use]
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{agent_config, eventually, fast_timeouts, AgentProcess, Backend, Database, Server};

on_both!(
    settings_over_the_task_caps_are_refused_at_upload,
    a_step_whose_task_cannot_be_made_fails_the_run,
    a_runaway_template_fails_its_run_and_the_writer_goes_on,
    a_million_item_for_each_is_refused,
    the_run_prefix_of_idempotency_keys_is_reserved,
);

struct Fixture {
    server: Server,
    _agent: AgentProcess,
    _db: Database,
}

async fn fixture(backend: Backend, extra: &[(&'static str, &'static str)]) -> Fixture {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo,sleep,fail"));
    env.extend_from_slice(extra);
    let server = Server::spawn_app(&db, &env).await;
    let agent = AgentProcess::start(&server, db.dir(), "worker", &agent_config(4, &[]));
    Fixture {
        server,
        _agent: agent,
        _db: db,
    }
}

impl Fixture {
    async fn upload(&self, text: &str) -> (u16, Value) {
        self.server.upload_workflow(support::API_TOKEN, text).await
    }

    async fn start(&self, workflow: &str, inputs: Value) -> i64 {
        let (s, run) = self
            .server
            .post(
                "/api/v1/runs",
                &json!({ "workflow": workflow, "inputs": inputs }),
            )
            .await;
        assert_eq!(s, 201, "{run}");
        run["id"].as_i64().unwrap()
    }

    async fn wait_status(&self, id: i64, status: &str) -> Value {
        eventually(
            Duration::from_secs(30),
            &format!("run {id} {status}"),
            || async {
                let run = self.server.get(&format!("/api/v1/runs/{id}")).await.1;
                (run["status"] == status).then_some(run)
            },
        )
        .await
    }
}

/// Asserts a 422 naming `field`, and returns the message.
fn refused(reply: (u16, Value), field: &str) -> String {
    let (status, body) = reply;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn settings_over_the_task_caps_are_refused_at_upload(backend: Backend) {
    let f = fixture(backend, &[]).await;
    // Before, this uploaded and its run stayed `running` for ever.
    let m = refused(
        f.upload("name: many\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    max_attempts: 1000\n")
            .await,
        "steps[0].max_attempts",
    );
    assert!(m.contains("between 1 and 100"), "{m}");
    refused(
        f.upload("name: slow\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    timeout_ms: 99999999999\n")
            .await,
        "steps[0].timeout_ms",
    );
    refused(
        f.upload("name: d\ndefaults: { retry_backoff_ms: 99999999999 }\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n")
            .await,
        "defaults.retry_backoff_ms",
    );
    // An approval timeout near i64::MAX would overflow `now + t·1000`.
    let m = refused(
        f.upload(&format!("name: gate\nsteps:\n  - id: ok\n    type: approval\n    approvers: {{ roles: [approver] }}\n    message: go?\n    timeout_ms: {}\n", i64::MAX - 1))
            .await,
        "steps[0].timeout_ms",
    );
    assert!(m.contains("a year"), "{m}");
    // At the caps it uploads, and runs.
    let (s, body) = f
        .upload("name: edge\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    max_attempts: 100\n    timeout_ms: 604800000\n    payload: hi\n")
        .await;
    assert_eq!(s, 201, "{body}");
    let id = f.start("edge", json!({})).await;
    f.wait_status(id, "succeeded").await;
}

async fn a_step_whose_task_cannot_be_made_fails_the_run(backend: Backend) {
    let f = fixture(backend, &[]).await;
    // Each string renders under the template cap; together the payload is
    // over the task's: the task parser refuses it when the run makes it.
    let def = "name: big\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    payload: { x: \"{{ 'x' * 600000 }}\", y: \"{{ 'y' * 600000 }}\" }\n  - id: b\n    type: task\n    depends_on: [a]\n    task_type: echo\n";
    let (s, body) = f.upload(def).await;
    assert_eq!(s, 201, "{body}");
    let id = f.start("big", json!({})).await;
    let run = f.wait_status(id, "failed").await;
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("step \"a\"") && error.contains("payload"),
        "{run}"
    );
    let a = &run["steps"][0];
    assert_eq!(a["status"], "failed", "{run}");
    assert!(a["task_ids"].as_array().unwrap().is_empty(), "{run}");
    assert_ne!(run["steps"][1]["status"], "running", "{run}");
}

async fn a_runaway_template_fails_its_run_and_the_writer_goes_on(backend: Backend) {
    let f = fixture(backend, &[]).await;
    let def = "name: loops\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    payload: \"{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}\"\n";
    let (s, body) = f.upload(def).await;
    assert_eq!(s, 201, "{body}");
    let started = std::time::Instant::now();
    let id = f.start("loops", json!({})).await;
    let run = f.wait_status(id, "failed").await;
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("fuel") || error.contains("larger than the limit"),
        "{run}"
    );
    // Nested loops over an input (which the old validator let through)
    // hung the writer; now they run out of fuel too.
    let def = "name: chars\ninputs:\n  s: { type: string, required: true }\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    payload: \"{% for a in inputs.s %}{% for b in inputs.s %}{% for c in inputs.s %}{{ c }}{% endfor %}{% endfor %}{% endfor %}\"\n";
    let (s, body) = f.upload(def).await;
    assert_eq!(s, 201, "{body}");
    let id = f.start("chars", json!({ "s": "x".repeat(10_000) })).await;
    let run = f.wait_status(id, "failed").await;
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("fuel") || error.contains("larger than the limit"),
        "{run}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // The single writer is free: other work goes on.
    let (s, body) = f
        .upload(
            "name: ok\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    payload: hi\n",
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let id = f.start("ok", json!({})).await;
    f.wait_status(id, "succeeded").await;
}

async fn a_million_item_for_each_is_refused(backend: Backend) {
    let f = fixture(backend, &[]).await;
    // Literal: refused at upload.
    let each = |expr: &str| {
        format!("name: fan\ninputs:\n  n: {{ type: number, required: true }}\nsteps:\n  - id: each\n    type: task\n    task_type: echo\n    for_each: \"{expr}\"\n    payload: \"{{{{ item }}}}\"\n")
    };
    let m = refused(
        f.upload(&each("range(1000) * 1000")).await,
        "steps[0].for_each",
    );
    assert!(m.contains("more than 10000 items"), "{m}");
    // Known only when the run starts: the run fails with the reason, and no task is made.
    let (s, body) = f.upload(&each("range(inputs.n) * inputs.n")).await;
    assert_eq!(s, 201, "{body}");
    let id = f.start("fan", json!({ "n": 1000 })).await;
    let run = f.wait_status(id, "failed").await;
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("more than 10000 items"),
        "{run}"
    );
    assert!(
        run["steps"][0]["task_ids"].as_array().unwrap().is_empty(),
        "{run}"
    );
    // Under the cap it fans out.
    let id = f.start("fan", json!({ "n": 3 })).await;
    let run = f.wait_status(id, "succeeded").await;
    assert_eq!(run["steps"][0]["item_count"], 9, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_for_each_cap_is_the_servers_to_set() {
    let f = fixture(Backend::Sqlite, &[("DROVER_MAX_FOR_EACH_ITEMS", "5")]).await;
    let def = "name: fan\nsteps:\n  - id: list\n    type: task\n    task_type: echo\n    payload: [1, 2, 3, 4, 5, 6]\n  - id: each\n    type: task\n    depends_on: [list]\n    task_type: echo\n    for_each: \"steps.list.output\"\n    payload: \"{{ item }}\"\n";
    let (s, body) = f.upload(def).await;
    assert_eq!(s, 201, "{body}");
    let id = f.start("fan", json!({})).await;
    let run = f.wait_status(id, "failed").await;
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("more than 5 items"),
        "{run}"
    );
    refused(
        f.upload("name: lit\nsteps:\n  - id: each\n    type: task\n    task_type: echo\n    for_each: \"[1, 2, 3, 4, 5, 6]\"\n    payload: \"{{ item }}\"\n")
            .await,
        "steps[0].for_each",
    );
}

async fn the_run_prefix_of_idempotency_keys_is_reserved(backend: Backend) {
    let f = fixture(backend, &[]).await;
    let (s, body) = f
        .upload(
            "name: w\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    payload: hi\n",
        )
        .await;
    assert_eq!(s, 201, "{body}");
    // Before, this key took the first run's step: its task was never made.
    let (s, body) = f
        .server
        .post(
            "/api/v1/tasks",
            &json!({ "task_type": "echo", "idempotency_key": "run:1:a:0:g0" }),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["error"]["field"], "idempotency_key", "{body}");
    let (s, body) = f
        .server
        .post(
            "/api/v1/tasks",
            &json!({ "tasks": [{ "task_type": "echo" }, { "task_type": "echo", "idempotency_key": "run:1:a:0:g0" }] }),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["error"]["field"], "tasks[1].idempotency_key", "{body}");
    let id = f.start("w", json!({})).await;
    assert_eq!(id, 1);
    f.wait_status(id, "succeeded").await;
}
