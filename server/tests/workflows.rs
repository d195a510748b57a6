//! Workflows end to end: definitions uploaded over the API, runs advanced by
//! the server as real agents finish tasks, approvals decided by users with
//! roles — on SQLite and PostgreSQL.

#[macro_use]
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{
    agent_config, eventually, fast_timeouts, AgentProcess, Backend, Database, RawAgent, Server,
};

on_both!(
    purchase_approval_waits_for_a_manager_and_refuses_self_approval,
    small_purchases_skip_the_approval,
    a_rejection_fails_the_run,
    for_each_fans_out_and_gathers_outputs_in_order,
    cancelling_a_run_stops_its_tasks,
    a_failed_step_can_be_retried,
    killing_the_server_mid_run_finishes_every_step_once,
    approval_timeout_follows_its_rule,
    a_step_whose_last_attempt_times_out_fails_the_run,
);

const PURCHASE: &str = r#"
name: purchase
description: Buy something; a manager approves above 1000
inputs:
  item: { type: string, required: true }
  amount: { type: number, required: true }
steps:
  - id: request
    type: task
    task_type: echo
    payload: { item: "{{ inputs.item }}", amount: "{{ inputs.amount }}" }
  - id: manager
    type: approval
    depends_on: [request]
    when: "inputs.amount > 1000"
    approvers: { roles: [approver] }
    message: "Approve {{ inputs.item }} for {{ inputs.amount }}?"
  - id: finance
    type: task
    depends_on: [manager]
    task_type: echo
    payload: { booked: "{{ steps.request.output.amount }}" }
"#;

struct Fixture {
    server: Server,
    _agent: AgentProcess,
    db: Database,
}

/// The server runs in this process; see [`fixture_process`].
async fn fixture(backend: Backend) -> Fixture {
    fixture_on(backend, false).await
}

/// The server is a process, for a test that kills it.
async fn fixture_process(backend: Backend) -> Fixture {
    fixture_on(backend, true).await
}

async fn fixture_on(backend: Backend, process: bool) -> Fixture {
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
        db,
    }
}

impl Fixture {
    async fn user(&self, name: &str, role: &str) -> String {
        self.server.create_user(name, role).await
    }

    async fn upload(&self, text: &str) -> (u16, Value) {
        self.server.upload_workflow(support::API_TOKEN, text).await
    }

    async fn as_user(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .server
            .http
            .post(format!("{}{path}", self.server.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn start(&self, token: &str, workflow: &str, inputs: Value) -> i64 {
        let (s, run) = self
            .as_user(
                token,
                "/api/v1/runs",
                json!({ "workflow": workflow, "inputs": inputs }),
            )
            .await;
        assert_eq!(s, 201, "{run}");
        run["id"].as_i64().unwrap()
    }

    async fn run(&self, id: i64) -> Value {
        self.server.get(&format!("/api/v1/runs/{id}")).await.1
    }

    async fn wait_status(&self, id: i64, status: &str) -> Value {
        eventually(
            Duration::from_secs(30),
            &format!("run {id} {status}"),
            || async {
                let run = self.run(id).await;
                (run["status"] == status).then_some(run)
            },
        )
        .await
    }
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step_id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {run}"))
}

async fn purchase_approval_waits_for_a_manager_and_refuses_self_approval(backend: Backend) {
    let f = fixture(backend).await;
    assert_eq!(f.upload(PURCHASE).await.0, 201);
    let otto = f.user("otto", "operator").await;
    let vera = f.user("vera", "viewer").await;
    let ann = f.user("ann", "approver").await;
    let id = f
        .start(
            &otto,
            "purchase",
            json!({ "item": "laptop", "amount": 2500 }),
        )
        .await;
    let run = f.wait_status(id, "waiting_approval").await;
    assert_eq!(step(&run, "request")["status"], "succeeded");
    assert_eq!(step(&run, "finance")["status"], "pending");
    let approval = &run["approvals"][0];
    assert_eq!(approval["message"], "Approve laptop for 2500?");
    let path = format!("/api/v1/approvals/{}/decision", approval["id"]);
    // The viewer may not decide; ann's inbox has it; vera's does not.
    assert_eq!(
        f.as_user(&vera, &path, json!({ "decision": "approve" }))
            .await
            .0,
        403
    );
    let inbox = |token: String| {
        let f = &f;
        async move {
            let r = f
                .server
                .http
                .get(format!("{}/api/v1/approvals", f.server.url))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()["approvals"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(inbox(ann.clone()).await, 1);
    assert_eq!(inbox(vera.clone()).await, 0);
    // otto is an operator, not an approver; make him one to check separation of duties.
    let (s, body) = f
        .as_user(&otto, &path, json!({ "decision": "approve" }))
        .await;
    assert_eq!(s, 403, "{body}");
    let (s, body) = f
        .as_user(
            &ann,
            &path,
            json!({ "decision": "approve", "comment": "fine" }),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(body["decided_by"], "ann");
    let run = f.wait_status(id, "succeeded").await;
    assert_eq!(step(&run, "finance")["output"], json!({ "booked": 2500 }));
    assert_eq!(
        f.as_user(&ann, &path, json!({ "decision": "reject" }))
            .await
            .0,
        409,
        "decided once"
    );
}

async fn small_purchases_skip_the_approval(backend: Backend) {
    let f = fixture(backend).await;
    f.upload(PURCHASE).await;
    let id = f
        .start(
            support::API_TOKEN,
            "purchase",
            json!({ "item": "pen", "amount": 3 }),
        )
        .await;
    let run = f.wait_status(id, "succeeded").await;
    assert_eq!(step(&run, "manager")["status"], "skipped");
    assert_eq!(step(&run, "finance")["status"], "succeeded");
    assert!(run["approvals"].as_array().unwrap().is_empty());
}

async fn a_rejection_fails_the_run(backend: Backend) {
    let f = fixture(backend).await;
    f.upload(PURCHASE).await;
    let ann = f.user("ann", "approver").await;
    let id = f
        .start(
            support::API_TOKEN,
            "purchase",
            json!({ "item": "yacht", "amount": 900000 }),
        )
        .await;
    let run = f.wait_status(id, "waiting_approval").await;
    let path = format!("/api/v1/approvals/{}/decision", run["approvals"][0]["id"]);
    assert_eq!(
        f.as_user(
            &ann,
            &path,
            json!({ "decision": "reject", "comment": "no" })
        )
        .await
        .0,
        200
    );
    let run = f.wait_status(id, "failed").await;
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("rejected by ann"),
        "{run}"
    );
    assert_eq!(
        step(&run, "finance")["task_ids"],
        json!([]),
        "nothing after the rejection ran"
    );
}

async fn for_each_fans_out_and_gathers_outputs_in_order(backend: Backend) {
    let f = fixture(backend).await;
    let def = r#"
name: etl
inputs:
  parts: { type: number, default: 6 }
steps:
  - id: extract
    type: task
    task_type: echo
    payload: { partitions: ["p0", "p1", "p2", "p3", "p4", "p5"] }
  - id: transform
    type: task
    depends_on: [extract]
    task_type: sleep
    for_each: "steps.extract.output.partitions"
    max_parallel: 2
    payload: { ms: 50, part: "{{ item }}", n: "{{ index }}" }
  - id: load
    type: task
    depends_on: [transform]
    task_type: echo
    payload: { rows: "{{ steps.transform.output | length }}" }
"#;
    let (s, body) = f.upload(def).await;
    assert_eq!(s, 201, "{body}");
    let id = f.start(support::API_TOKEN, "etl", json!({})).await;
    let run = f.wait_status(id, "succeeded").await;
    let transform = step(&run, "transform");
    assert_eq!(transform["item_count"], 6);
    let tasks = transform["task_ids"].as_array().unwrap();
    assert_eq!(tasks.len(), 6);
    assert_eq!(step(&run, "load")["output"], json!({ "rows": 6 }));
    // Outputs gathered in item order; never more than 2 running at once.
    let mut windows = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        let task = f.server.task(t.as_i64().unwrap()).await;
        assert_eq!(task.task.payload["part"], json!(format!("p{i}")));
        // Each names its run and step (the task page links them).
        assert_eq!(task.task.run_id, Some(id));
        assert_eq!(task.task.step_id.as_deref(), Some("transform"));
        let a = &task.attempt_history[0];
        windows.push((a.claimed_at_us, a.finished_at_us.unwrap()));
    }
    for (start, _) in &windows {
        let overlapping = windows
            .iter()
            .filter(|(s, e)| s <= start && e > start)
            .count();
        assert!(overlapping <= 2, "max_parallel 2 exceeded");
    }
}

async fn cancelling_a_run_stops_its_tasks(backend: Backend) {
    let f = fixture(backend).await;
    let def = "name: slow\nsteps:\n  - id: wait\n    type: task\n    task_type: sleep\n    payload: { ms: 60000 }\n  - id: after\n    type: task\n    depends_on: [wait]\n    task_type: echo\n";
    assert_eq!(f.upload(def).await.0, 201);
    let id = f.start(support::API_TOKEN, "slow", json!({})).await;
    let run = eventually(Duration::from_secs(10), "task running", || async {
        let run = f.run(id).await;
        let t = step(&run, "wait")["task_ids"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_i64)?;
        (f.server.task(t).await.task.status == drover_protocol::api::TaskStatus::Running)
            .then_some(run)
    })
    .await;
    let task = step(&run, "wait")["task_ids"][0].as_i64().unwrap();
    let (s, body) = f
        .server
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!((s, body["status"].as_str()), (200, Some("cancelled")));
    assert_eq!(
        f.server.task(task).await.task.status,
        drover_protocol::api::TaskStatus::Cancelled
    );
    // The agent is told to stop: its slot is free again well before 60 s.
    eventually(Duration::from_secs(10), "agent idle", || async {
        (f.server.agents().await[0].running == 0).then_some(())
    })
    .await;
    assert_eq!(
        f.server
            .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
            .await
            .0,
        409
    );
    // Its history says who cancelled it, and when.
    let run = f.run(id).await;
    let last = run["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "run_cancelled", "{run}");
    assert_eq!(last["actor"], run["started_by"], "{run}");
    assert_eq!(last["at_us"], run["finished_at_us"], "{run}");
}

async fn a_failed_step_can_be_retried(backend: Backend) {
    let f = fixture(backend).await;
    let def = "name: flaky\ninputs:\n  mode: { type: string, default: fail }\nsteps:\n  - id: risky\n    type: task\n    task_type: fail\n    max_attempts: 1\n  - id: after\n    type: task\n    depends_on: [risky]\n    task_type: echo\n";
    assert_eq!(f.upload(def).await.0, 201);
    let id = f.start(support::API_TOKEN, "flaky", json!({})).await;
    let run = f.wait_status(id, "failed").await;
    assert_eq!(step(&run, "risky")["status"], "failed");
    assert!(step(&run, "risky")["error"]
        .as_str()
        .unwrap_or_default()
        .contains("disk on fire"));
    let (s, body) = f
        .server
        .post(&format!("/api/v1/runs/{id}/steps/after/retry"), &json!({}))
        .await;
    assert_eq!(s, 409, "only a failed step can be retried: {body}");
    // A step the failed run never reached reads as skipped.
    assert_eq!(step(&run, "after")["status"], "skipped");
    let otto = f.user("otto", "operator").await;
    let (s, body) = f
        .as_user(
            &otto,
            &format!("/api/v1/runs/{id}/steps/risky/retry"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let run = f.wait_status(id, "failed").await;
    let risky = step(&run, "risky");
    assert_eq!(risky["generation"], 1);
    assert_eq!(
        risky["task_ids"].as_array().unwrap().len(),
        1,
        "one task for the new generation"
    );
    // The history keeps the first failure, who retried, and the second.
    let told: Vec<(String, Value, Value)> = run["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["step_id"].clone(),
                e["generation"].clone(),
            )
        })
        .collect();
    let at = |kind: &str, step: &str, generation: i64| {
        told.iter()
            .position(|t| t == &(kind.to_string(), json!(step), json!(generation)))
            .unwrap_or_else(|| panic!("no {kind} of {step} g{generation} in {run}"))
    };
    let first = at("step_failed", "risky", 0);
    let retried = at("step_retried", "risky", 1);
    let second = at("step_failed", "risky", 1);
    assert!(first < retried && retried < second, "{run}");
    let events = run["events"].as_array().unwrap();
    assert!(events[first]["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("disk on fire"));
    assert_eq!(events[retried]["actor"], "otto", "{run}");
    assert_eq!(run["events_truncated"], false);
    // Both generations' attempts, for the run page's Gantt chart.
    let generations: Vec<&Value> = run["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["step_id"] == "risky")
        .map(|a| &a["generation"])
        .collect();
    assert_eq!(generations, [&json!(0), &json!(1)], "{run}");
}

async fn killing_the_server_mid_run_finishes_every_step_once(backend: Backend) {
    let mut f = fixture_process(backend).await;
    let mut def = String::from("name: chain\nsteps:\n");
    for i in 0..8 {
        def.push_str(&format!(
            "  - id: s{i}\n    type: task\n    task_type: sleep\n    payload: {{ ms: 150 }}\n"
        ));
        if i > 0 {
            def.push_str(&format!("    depends_on: [s{}]\n", i - 1));
        }
    }
    assert_eq!(f.upload(&def).await.0, 201);
    let id = f.start(support::API_TOKEN, "chain", json!({})).await;
    eventually(Duration::from_secs(10), "a few steps done", || async {
        let run = f.run(id).await;
        (step(&run, "s2")["status"] == "succeeded").then_some(())
    })
    .await;
    f.server.restart().await;
    let run = f.wait_status(id, "succeeded").await;
    for i in 0..8 {
        let s = step(&run, &format!("s{i}"));
        assert_eq!(
            s["task_ids"].as_array().unwrap().len(),
            1,
            "step s{i} ran once: {s}"
        );
    }
    let mut conn_count = 0;
    if f.db.backend == Backend::Postgres {
        let mut c = f.db.pg().await;
        conn_count = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tasks WHERE run_id = $1")
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap();
    }
    assert!(conn_count == 0 || conn_count == 8);
}

async fn approval_timeout_follows_its_rule(backend: Backend) {
    let f = fixture(backend).await;
    let def = "name: gate\nsteps:\n  - id: ok\n    type: approval\n    approvers: { roles: [approver] }\n    message: go?\n    timeout_ms: 500\n    on_timeout: approve\n  - id: after\n    type: task\n    depends_on: [ok]\n    task_type: echo\n    payload: \"{{ steps.ok.output.approved }}\"\n";
    let (s, body) = f.upload(def).await;
    assert_eq!(s, 201, "{body}");
    let id = f.start(support::API_TOKEN, "gate", json!({})).await;
    let run = f.wait_status(id, "succeeded").await;
    assert_eq!(run["approvals"][0]["status"], "approved");
    assert_eq!(run["approvals"][0]["decided_by"], "timeout");
    assert_eq!(step(&run, "after")["output"], json!(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_definitions_and_inputs_are_rejected_with_the_step_and_problem_named() {
    let f = fixture(Backend::Sqlite).await;
    let cases = [
        ("name: x\nsteps:\n  - id: a\n    type: teleport\n", "teleport"),
        ("name: x\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    depends_on: [ghost]\n", "ghost"),
        ("name: x\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    depends_on: [b]\n  - id: b\n    type: task\n    task_type: echo\n    depends_on: [a]\n", "cycle"),
        ("name: x\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n  - id: a\n    type: task\n    task_type: echo\n", "duplicate"),
        ("name: x\ninputs:\n  amount: { type: number }\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    payload: \"{{ inputs.amout }}\"\n", "amout"),
    ];
    for (def, needle) in cases {
        let (s, body) = f.upload(def).await;
        assert_eq!(s, 422, "{def} -> {body}");
        let msg = body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
        assert!(
            body["error"]["field"]
                .as_str()
                .is_some_and(|f| f.starts_with("steps")),
            "{body}"
        );
    }
    f.upload(PURCHASE).await;
    for (inputs, field) in [
        (json!({ "item": "pen" }), "inputs.amount"),
        (json!({ "item": "pen", "amount": "lots" }), "inputs.amount"),
        (
            json!({ "item": "pen", "amount": 3, "color": "red" }),
            "inputs.color",
        ),
    ] {
        let (s, body) = f
            .server
            .post(
                "/api/v1/runs",
                &json!({ "workflow": "purchase", "inputs": inputs }),
            )
            .await;
        assert_eq!(
            (s, body["error"]["field"].as_str()),
            (422, Some(field)),
            "{body}"
        );
    }
    // Every input at fault is named in one answer, so a form marks them
    // all at once; `field` and `message` still lead with the first.
    let (s, body) = f
        .server
        .post(
            "/api/v1/runs",
            &json!({ "workflow": "purchase", "inputs": { "amount": "lots", "color": "red" } }),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["error"]["field"], "inputs.color", "{body}");
    let named: Vec<&str> = body["error"]["errors"]
        .as_array()
        .map(|all| all.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        named,
        ["inputs.color", "inputs.amount", "inputs.item"],
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("and 2 more")),
        "{body}"
    );
    let (s, _) = f
        .server
        .post("/api/v1/runs", &json!({ "workflow": "nope" }))
        .await;
    assert_eq!(s, 422);
    // Uploading a changed definition makes a new version; the same one does not.
    let (s, v) = f.upload(PURCHASE).await;
    assert_eq!((s, v["workflow"]["version"].as_i64()), (200, Some(1)));
    let (s, v) = f
        .upload(&PURCHASE.replace("Buy something", "Buy anything"))
        .await;
    assert_eq!((s, v["workflow"]["version"].as_i64()), (201, Some(2)));
    let schema = f
        .server
        .http
        .get(format!("{}/api/v1/schema/workflow.json", f.server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(schema.status().as_u16(), 200);
}

/// Every shipped example runs to its end with the demo agent's configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_examples_run_to_the_end_with_the_demo_agent() {
    let db = Database::new(Backend::Sqlite).await;
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo,sleep,charge-card"));
    let server = Server::spawn_app(&db, &env).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = std::fs::read_to_string(root.join("examples/agent.toml")).unwrap();
    let _agent = AgentProcess::start(&server, db.dir(), "demo", &config);
    let f = Fixture { server, _agent, db };
    let ann = f.user("ann", "approver").await;
    for file in [
        "purchase-approval",
        "nightly-etl",
        "service-orchestration",
        "firmware-rollout",
    ] {
        let text =
            std::fs::read_to_string(root.join(format!("examples/workflows/{file}.yaml"))).unwrap();
        let (s, body) = f.upload(&text).await;
        assert_eq!(s, 201, "{file}: {body}");
    }
    let approve_all = |id: i64| {
        let f = &f;
        let ann = ann.clone();
        async move {
            eventually(Duration::from_secs(30), &format!("run {id} to end"), || {
                let ann = ann.clone();
                async move {
                    let run = f.run(id).await;
                    for a in run["approvals"].as_array().unwrap() {
                        if a["status"] == "pending" {
                            f.as_user(
                                &ann,
                                &format!("/api/v1/approvals/{}/decision", a["id"]),
                                json!({ "decision": "approve" }),
                            )
                            .await;
                        }
                    }
                    let status = run["status"].as_str().unwrap_or_default().to_string();
                    ["succeeded", "failed", "cancelled"]
                        .contains(&status.as_str())
                        .then_some(run)
                }
            })
            .await
        }
    };
    let admin = support::API_TOKEN;
    let run = approve_all(
        f.start(
            admin,
            "purchase-approval",
            json!({ "item": "laptop", "amount": 2500 }),
        )
        .await,
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(step(&run, "finance")["output"]["approved_by"], "ann");
    let run = approve_all(
        f.start(admin, "nightly-etl", json!({ "date": "2026-11-24" }))
            .await,
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(step(&run, "load")["output"]["partitions_loaded"], 6);
    let run = approve_all(
        f.start(admin, "service-orchestration", json!({ "order": "A-17" }))
            .await,
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(step(&run, "compensate")["status"], "skipped");
    let run = approve_all(
        f.start(
            admin,
            "service-orchestration",
            json!({ "order": "A-18", "decline": true }),
        )
        .await,
    )
    .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(
        step(&run, "compensate")["status"],
        "succeeded",
        "the compensation ran: {run}"
    );
    assert!(
        step(&run, "compensate")["output"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("card declined"),
        "{run}"
    );
    // It never ran: the run ended first.
    assert_eq!(step(&run, "ship")["status"], "skipped");
    let run = approve_all(
        f.start(
            admin,
            "firmware-rollout",
            json!({ "version": "2.4.1", "devices": "cam-1,cam-2,cam-3,cam-4,cam-5,cam-6,cam-7" }),
        )
        .await,
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(step(&run, "wave1")["item_count"], 2);
    assert_eq!(step(&run, "wave2")["item_count"], 5);
    assert_eq!(
        step(&run, "summary")["output"],
        "2.4.1 rolled out to 7 devices"
    );
}

/// The `drover` CLI uploads, starts, watches and approves; its exit code
/// follows the run's outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_a_workflow_and_exits_with_its_outcome() {
    let f = fixture(Backend::Sqlite).await;
    let ann = f.user("ann", "approver").await;
    let cli =
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_drover-server")).with_file_name("drover");
    assert!(
        cli.exists(),
        "build the CLI first (cargo build --workspace --bins)"
    );
    let dir = f.db.dir().to_path_buf();
    let def = dir.join("purchase.yaml");
    std::fs::write(&def, PURCHASE).unwrap();
    let run = |token: &str, args: &[&str]| {
        std::process::Command::new(&cli)
            .args(args)
            .env("DROVER_SERVER", &f.server.url)
            .env("DROVER_TOKEN", token)
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let out = run(
        support::API_TOKEN,
        &["workflow", "upload", def.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("uploaded: purchase version 1"));

    // A small purchase needs no approval: watch exits 0.
    let out = run(
        support::API_TOKEN,
        &[
            "run", "start", "purchase", "-i", "item=pen", "-i", "amount=3", "--watch",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("manager") && stdout.contains("skipped") && stdout.contains("succeeded"),
        "{stdout}"
    );

    // A big one waits; ann rejects it from her inbox; watch exits 1.
    let out = run(
        support::API_TOKEN,
        &[
            "run",
            "start",
            "purchase",
            "-i",
            "item=boat",
            "-i",
            "amount=50000",
        ],
    );
    assert!(out.status.success());
    let approval = eventually(
        Duration::from_secs(20),
        "approval in ann's inbox",
        || async {
            let out = run(&ann, &["approvals", "list"]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.lines()
                .next()
                .and_then(|l| l.split('\t').next())
                .and_then(|id| id.parse::<i64>().ok())
        },
    )
    .await;
    let out = run(
        &ann,
        &[
            "approvals",
            "reject",
            &approval.to_string(),
            "-m",
            "too expensive",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(support::API_TOKEN, &["run", "watch", "2"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Bad input is a clear message and exit 3.
    let out = run(
        support::API_TOKEN,
        &[
            "run",
            "start",
            "purchase",
            "-i",
            "item=x",
            "-i",
            "amount=lots",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("inputs.amount"), "{stderr}");
}

/// The lease sweep ends an attempt that ran past its step's timeout (here the
/// agent took the task and went quiet); when it was the last attempt the run
/// must fail then, not wait for some later event.
async fn a_step_whose_last_attempt_times_out_fails_the_run(backend: Backend) {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "manual,echo"));
    let server = Server::spawn_app(&db, &env).await;
    let def = "name: slow\nsteps:\n  - id: stuck\n    type: task\n    task_type: manual\n    timeout_ms: 300\n    max_attempts: 1\n  - id: after\n    type: task\n    depends_on: [stuck]\n    task_type: echo\n";
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/workflows", server.url))
        .bearer_auth(support::API_TOKEN)
        .body(def)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (s, run) = server
        .post("/api/v1/runs", &json!({ "workflow": "slow" }))
        .await;
    assert_eq!(s, 201, "{run}");
    let id = run["id"].as_i64().unwrap();
    let agent = RawAgent::register(&server, "quiet", 1, &["manual"]).await;
    assert_eq!(
        agent.claim(1, 5_000).await.len(),
        1,
        "the step's task is taken, then never reported"
    );
    let run = eventually(Duration::from_secs(10), "the run fails", || async {
        let (_, run) = server.get(&format!("/api/v1/runs/{id}")).await;
        (run["status"] == "failed").then_some(run)
    })
    .await;
    assert_eq!(step(&run, "stuck")["status"], "failed");
    assert_ne!(step(&run, "after")["status"], "succeeded");
}

/// A definition with a step no registered agent could take is stored (the
/// agent may come), but the answer warns and names the step.
#[tokio::test]
async fn an_upload_names_the_steps_no_registered_agent_could_take() {
    let f = fixture(Backend::Sqlite).await;
    let def = "name: lonely\nsteps:\n  - id: render\n    type: task\n    task_type: render-video\n";
    let (s, body) = f.upload(def).await;
    assert_eq!(s, 201, "{body}");
    let warnings = body["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{body}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.starts_with("step \"render\": ") && w.contains("render-video"),
        "{w}"
    );
    // The same definition again: unchanged, and still warned about.
    let (s, body) = f.upload(def).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["warnings"].as_array().map(Vec::len), Some(1), "{body}");
}
