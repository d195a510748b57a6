//! Agents on other hosts, read as an attacker would: results only from the
//! agent holding the lease, enrollment tokens that limit what an agent may
//! take, revocation, and handlers that never see the agent's credentials.
//! Real server and agent processes over HTTP, on SQLite and PostgreSQL.

#[macro_use]
mod support;

use std::time::Duration;

use drover_protocol::api::{AgentStatus, TaskStatus};
use reqwest::Method;
use serde_json::{json, Value};
use support::{
    agent_config, eventually, fast_timeouts, new_task, AgentProcess, Backend, Database, RawAgent,
    Server, API_TOKEN, ENROLL_TOKEN,
};

on_both!(
    another_agents_result_is_stale_while_a_restarted_holder_delivers,
    a_scoped_enrollment_token_cannot_register_for_other_work,
    a_revoked_agent_is_refused_and_its_task_runs_elsewhere,
    handlers_never_see_the_enrollment_token,
    sign_ins_and_user_changes_are_audited,
    approvals_cancels_and_retries_are_audited,
    a_restarted_agent_delivers_its_outbox_as_itself,
    a_revoked_agent_process_stays_out,
    a_token_cannot_mint_one_that_outlives_it,
);

fn registration(name: &str, types: &[&str], key: Option<&str>, resuming: Value) -> Value {
    let mut body = json!({
        "name": name, "hostname": "test", "task_types": types, "capacity": 4,
        "labels": [], "version": "raw", "protocol": 1, "resuming": resuming,
    });
    if let Some(key) = key {
        body["agent_key"] = json!(key);
    }
    body
}

async fn start(backend: Backend, types: &str) -> (Database, Server) {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", types));
    let server = Server::start(&db, &env).await;
    (db, server)
}

async fn another_agents_result_is_stale_while_a_restarted_holder_delivers(backend: Backend) {
    let (_db, server) = start(backend, "echo").await;
    let key_a = "a".repeat(64);
    let a = RawAgent::register_with(
        &server,
        ENROLL_TOKEN,
        &registration("a", &["echo"], Some(&key_a), json!([])),
    )
    .await
    .expect("a registers");
    let b = RawAgent::register(&server, "b", 4, &["echo"]).await;
    let id = server.submit(vec![new_task("echo", json!({}))]).await[0];
    let held = a.claim(1, 0).await;
    assert_eq!(held.len(), 1);
    let (task_id, lease) = held[0];
    assert_eq!(task_id, id);

    // B sends A's exact lease: refused as stale, nothing changes.
    let forged = json!({ "results": [{ "task_id": id, "lease_token": lease,
        "outcome": { "status": "succeeded", "output": { "forged": true } } }] });
    let (status, body) = b.post("results", forged).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["results"][0]["status"], "stale");
    let (status, _) = b
        .post(
            "results",
            json!({ "results": [{ "task_id": id, "lease_token": lease,
            "outcome": { "status": "released", "reason": "mine now" } }] }),
        )
        .await;
    assert_eq!(status, 409);
    let task = server.task(id).await;
    assert_eq!(task.task.status, TaskStatus::Running);
    assert_eq!(task.task.agent_id, Some(a.id));
    let refused = server
        .metric("drover_task_results_refused_total{reason=\"not_holder\"} ")
        .await;
    assert_eq!(refused, Some(2.0), "refusals are counted");
    let (status, audit) = server.get("/api/v1/audit?action=results.refused").await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{audit}");
    assert_eq!(entries[0]["actor"], format!("agent:{}", b.id));
    assert_eq!(entries[0]["detail"]["tasks"], json!([id]));

    // A restarts: a new process, the same key, the result in its outbox.
    let a2 = RawAgent::register_with(
        &server,
        ENROLL_TOKEN,
        &registration(
            "a",
            &["echo"],
            Some(&key_a),
            json!([{ "task_id": id, "lease_token": lease }]),
        ),
    )
    .await
    .expect("a registers again");
    assert_eq!(a2.id, a.id, "the key resumes the same agent");
    let (status, body) = a2.succeed(id, lease).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["status"], "accepted");
    let task = server.task(id).await;
    assert_eq!(task.task.status, TaskStatus::Succeeded);
    assert_eq!(task.task.result, Some(json!({ "by": a.id })));

    // A different agent presenting a key of its own is someone else.
    let c = RawAgent::register_with(
        &server,
        ENROLL_TOKEN,
        &registration("a", &["echo"], Some(&"c".repeat(64)), json!([])),
    )
    .await
    .expect("c registers");
    assert_ne!(c.id, a.id);
    // A key too short to be a secret is refused, naming the field.
    let (status, body) = RawAgent::register_with(
        &server,
        ENROLL_TOKEN,
        &registration("d", &["echo"], Some("short"), json!([])),
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "agent_key");
    // So is a resuming list longer than any request of results.
    let leases: Vec<Value> = (0..10_001)
        .map(|i| json!({ "task_id": i, "lease_token": i }))
        .collect();
    let (status, body) = RawAgent::register_with(
        &server,
        ENROLL_TOKEN,
        &registration("e", &["echo"], Some(&key_a), json!(leases)),
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("resuming"))
    );
}

async fn a_scoped_enrollment_token_cannot_register_for_other_work(backend: Backend) {
    let (_db, server) = start(backend, "resize,deploy").await;
    let (status, created) = server
        .post(
            "/api/v1/enrollment-tokens",
            &json!({ "name": "resizers", "task_types": ["resize"], "labels": ["gpu"], "expires_in": "30d" }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"]
        .as_str()
        .expect("the token, shown once")
        .to_string();
    assert_eq!(created["name"], "resizers");
    assert!(created["expires_at_us"].as_i64().is_some());

    let refused = RawAgent::register_with(
        &server,
        &token,
        &registration("r", &["resize", "deploy"], None, json!([])),
    )
    .await
    .err()
    .expect("deploy is not allowed");
    assert_eq!(refused.0, 403, "{}", refused.1);
    assert!(refused.1["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("deploy"));
    let mut with_label = registration("r", &["resize"], None, json!([]));
    with_label["labels"] = json!(["prod"]);
    let refused = RawAgent::register_with(&server, &token, &with_label)
        .await
        .err()
        .expect("label not allowed");
    assert_eq!(refused.0, 403);
    let agent = RawAgent::register_with(
        &server,
        &token,
        &registration("r", &["resize"], None, json!([])),
    )
    .await
    .expect("resize is allowed");

    // Listing shows the prefix, never the token.
    let (status, list) = server.get("/api/v1/enrollment-tokens").await;
    assert_eq!(status, 200);
    assert!(
        !list.to_string().contains(&token),
        "the token is never listed"
    );
    let listed = list["tokens"].as_array().expect("tokens");
    let entry = listed
        .iter()
        .find(|t| t["name"] == "resizers")
        .expect("listed");
    assert_eq!(entry["prefix"].as_str(), Some(&token[..8]));

    // Bad input names its field; an operator may not manage tokens.
    let (status, body) = server
        .post(
            "/api/v1/enrollment-tokens",
            &json!({ "name": "x", "expires_in": "soon" }),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("expires_in"))
    );
    let (status, body) = server
        .post("/api/v1/enrollment-tokens", &json!({ "name": "resizers" }))
        .await;
    assert_eq!(status, 409, "{body}");
    let op_token = &server.create_user("olga", "operator").await;
    let (status, _) = server
        .call_as(
            op_token,
            Method::POST,
            "/api/v1/enrollment-tokens",
            Some(&json!({ "name": "mine" })),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .call_as(op_token, Method::GET, "/api/v1/enrollment-tokens", None)
        .await;
    assert_eq!(status, 403);

    // Revoking the token cuts off the agents it enrolled, and itself.
    let id = entry["id"].as_i64().expect("id");
    // Neither may an operator revoke a token or an agent.
    let (status, _) = server
        .call_as(
            op_token,
            Method::DELETE,
            &format!("/api/v1/enrollment-tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .call_as(
            op_token,
            Method::POST,
            &format!("/api/v1/agents/{}/revoke", agent.id),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 403);
    // Nor an agent, with its own session, reach the REST API.
    let (status, _) = server
        .call_as(&agent.token, Method::GET, "/api/v1/enrollment-tokens", None)
        .await;
    assert_eq!(status, 401);
    let (status, body) = server
        .call_as(
            API_TOKEN,
            Method::DELETE,
            &format!("/api/v1/enrollment-tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agents_revoked"], json!([agent.id]));
    let (status, _) = agent.post("claim", json!({ "max_tasks": 1 })).await;
    assert_eq!(status, 401);
    let refused = RawAgent::register_with(
        &server,
        &token,
        &registration("r", &["resize"], None, json!([])),
    )
    .await
    .err()
    .expect("a revoked token enrolls no one");
    assert_eq!(refused.0, 401);
}

async fn a_revoked_agent_is_refused_and_its_task_runs_elsewhere(backend: Backend) {
    let (db, server) = start(backend, "echo,sleep,flaky,fail").await;
    let rogue = RawAgent::register(&server, "rogue", 4, &["sleep"]).await;
    let id = server
        .submit(vec![new_task("sleep", json!({ "ms": 10 }))])
        .await[0];
    let held = rogue.claim(1, 0).await;
    assert_eq!(held.len(), 1);
    let (status, body) = server
        .post(&format!("/api/v1/agents/{}/revoke", rogue.id), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["requeued"], 1);
    // Its next call is refused; its result no longer counts.
    let (status, _) = rogue.post("heartbeat", json!({ "running": [] })).await;
    assert_eq!(status, 401);
    let (status, _) = rogue.succeed(held[0].0, held[0].1).await;
    assert_eq!(status, 401);
    let agents = server.agents().await;
    assert_eq!(
        agents.iter().find(|a| a.id == rogue.id).map(|a| a.status),
        Some(AgentStatus::Revoked)
    );
    // An honest agent runs the task.
    let _honest = AgentProcess::start(&server, db.dir(), "honest", &agent_config(2, &[]));
    eventually(
        Duration::from_secs(20),
        "the task to finish elsewhere",
        || async {
            let t = server.task(id).await;
            (t.task.status == TaskStatus::Succeeded).then_some(())
        },
    )
    .await;
    assert_ne!(server.task(id).await.task.agent_id, Some(rogue.id));
    let (status, _) = server
        .post("/api/v1/agents/999999/revoke", &json!({}))
        .await;
    assert_eq!(status, 404);
}

async fn handlers_never_see_the_enrollment_token(backend: Backend) {
    let (db, server) = start(backend, "env").await;
    let config = r#"capacity = 1

[handlers.env]
kind = "command"
program = "env"
"#;
    let _agent = AgentProcess::start_with_token_in_env(&server, db.dir(), "snoop", config);
    let id = server.submit(vec![new_task("env", json!({}))]).await[0];
    let task = eventually(Duration::from_secs(20), "the env task", || async {
        let t = server.task(id).await;
        (t.task.status == TaskStatus::Succeeded).then_some(t)
    })
    .await;
    let output = task.task.result.expect("output").to_string();
    assert!(output.contains("DROVER_TASK_ID="), "{output}");
    assert!(!output.contains(ENROLL_TOKEN), "the token leaked: {output}");
    assert!(!output.contains("DROVER_TOKEN"), "{output}");
}

async fn sign_ins_and_user_changes_are_audited(backend: Backend) {
    let (_db, server) = start(backend, "echo").await;
    let (status, _) = server
        .post(
            "/api/v1/users",
            &json!({ "name": "ann", "role": "viewer", "password": "ann-password-1" }),
        )
        .await;
    assert_eq!(status, 201);
    for password in ["wrong-password", "ann-password-1"] {
        let (status, _) = server
            .call_as(
                "",
                Method::POST,
                "/api/v1/session",
                Some(&json!({ "name": "ann", "password": password })),
            )
            .await;
        assert!(matches!(status, 200 | 201 | 401), "{status}");
    }
    let (status, body) = server
        .call_as(
            API_TOKEN,
            Method::PATCH,
            "/api/v1/users/ann",
            Some(&json!({ "role": "operator" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, audit) = server.get("/api/v1/audit?actor=ann").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["sign_in.succeeded", "sign_in.failed"], "{audit}");
    let (_, audit) = server.get("/api/v1/audit?action=user.").await;
    let entries = audit["entries"].as_array().expect("entries");
    let role = entries
        .iter()
        .find(|e| e["action"] == "user.role_changed")
        .expect("role change audited");
    assert_eq!(role["target"], "user:ann");
    assert_eq!(role["detail"]["role"], "operator");
    assert!(entries.iter().any(|e| e["action"] == "user.created"));
}

async fn approvals_cancels_and_retries_are_audited(backend: Backend) {
    let (db, server) = start(backend, "echo,sleep,flaky,fail").await;
    let _agent = AgentProcess::start(&server, db.dir(), "worker", &agent_config(4, &[]));
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/workflows/purchase-approval.yaml"
    ))
    .expect("example");
    let (status, body) = server.upload_workflow(API_TOKEN, &yaml).await;
    assert_eq!(status, 201, "{body}");
    let approver_token = server.create_user("pat", "approver").await;
    let inputs = json!({ "item": "laptop", "amount": 2500 });
    let (status, run) = server
        .post(
            "/api/v1/runs",
            &json!({ "workflow": "purchase-approval", "inputs": inputs }),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["id"].as_i64().expect("run id");
    let approval = eventually(Duration::from_secs(20), "the approval", || async {
        let (_, run) = server.get(&format!("/api/v1/runs/{run_id}")).await;
        run["approvals"][0]["id"].as_i64()
    })
    .await;
    let (status, body) = server
        .call_as(
            &approver_token,
            Method::POST,
            &format!("/api/v1/approvals/{approval}/decision"),
            Some(&json!({ "decision": "approve", "comment": "ok" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A task to cancel, then retry.
    let id = server
        .submit(vec![new_task("sleep", json!({ "ms": 60000 }))])
        .await[0];
    let (status, _) = server
        .post(&format!("/api/v1/tasks/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post(&format!("/api/v1/tasks/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 200);

    let (_, audit) = server.get("/api/v1/audit").await;
    let entries = audit["entries"].as_array().expect("entries");
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("{action} missing: {audit}"))
    };
    let decided = find("approval.approved");
    assert_eq!(decided["actor"], "pat");
    assert_eq!(decided["detail"]["version"], 1);
    assert_eq!(decided["detail"]["run_id"], run_id);
    let digest = decided["detail"]["inputs_sha256"].as_str().expect("digest");
    assert_eq!(digest.len(), 64);
    assert_eq!(find("workflow.uploaded")["detail"]["version"], 1);
    assert_eq!(find("task.cancelled")["target"], format!("task:{id}"));
    assert_eq!(find("task.retried")["target"], format!("task:{id}"));
}

/// The real agent: its task finishes while the server is down, so the
/// result waits in the outbox; the agent is then killed and started again
/// with the same state directory. It resumes its identity and delivers the
/// result, which is accepted because it is still the lease's holder.
async fn a_restarted_agent_delivers_its_outbox_as_itself(backend: Backend) {
    let db = Database::new(backend).await;
    let env = vec![
        ("DROVER_TASK_TYPES", "echo,sleep,flaky,fail"),
        ("DROVER_HEARTBEAT_INTERVAL", "300ms"),
        ("DROVER_HEARTBEAT_TIMEOUT", "30s"),
        ("DROVER_DUTY_INTERVAL", "200ms"),
    ];
    let mut server = Server::start(&db, &env).await;
    let mut agent = AgentProcess::start(&server, db.dir(), "keeper", &agent_config(1, &[]));
    let id = server
        .submit(vec![new_task("sleep", json!({ "ms": 1500 }))])
        .await[0];
    let first = eventually(Duration::from_secs(20), "the task to start", || async {
        let t = server.task(id).await;
        (t.task.status == TaskStatus::Running).then_some(t.task.agent_id)
    })
    .await;
    server.kill();
    let outbox = agent.state_dir.join("outbox.jsonl");
    eventually(
        Duration::from_secs(20),
        "the result in the outbox",
        || async {
            let text = std::fs::read_to_string(&outbox).unwrap_or_default();
            text.contains("succeeded").then_some(())
        },
    )
    .await;
    agent.kill();
    server.restart().await;
    agent.restart();
    let done = eventually(
        Duration::from_secs(20),
        "the outbox to be delivered",
        || async {
            let t = server.task(id).await;
            (t.task.status == TaskStatus::Succeeded).then_some(t)
        },
    )
    .await;
    assert_eq!(done.task.agent_id, first, "finished by the same agent");
    assert_eq!(
        done.attempt_history.len(),
        1,
        "no second attempt: {:?}",
        done.attempt_history
    );
    let agents = server.agents().await;
    assert_eq!(agents.len(), 1, "the restart resumed the agent: {agents:?}");
    assert!(
        agent.log_text().contains("registered"),
        "{}",
        agent.log_text()
    );
}

/// The real agent answers a refused session by registering again, with its
/// key and its still valid enrollment token: the key of a revoked agent is
/// refused, so it stays out until its key file is deleted.
async fn a_revoked_agent_process_stays_out(backend: Backend) {
    let (db, server) = start(backend, "echo,sleep,flaky,fail").await;
    let agent = AgentProcess::start(&server, db.dir(), "gone", &agent_config(2, &[]));
    let id = eventually(Duration::from_secs(20), "the agent online", || async {
        let agents = server.agents().await;
        agents
            .iter()
            .find(|a| a.status == AgentStatus::Online)
            .map(|a| a.id)
    })
    .await;
    let (status, body) = server
        .post(&format!("/api/v1/agents/{id}/revoke"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        Duration::from_secs(20),
        "the agent to hit the refusal",
        || async { agent.log_text().contains("was revoked").then_some(()) },
    )
    .await;
    let agents = server.agents().await;
    assert_eq!(agents.len(), 1, "no new agent: {agents:?}");
    assert_eq!(agents[0].status, AgentStatus::Revoked);
}

async fn a_token_cannot_mint_one_that_outlives_it(backend: Backend) {
    let (_db, server) = start(backend, "echo").await;
    let (status, short) = server
        .post(
            "/api/v1/tokens",
            &json!({ "name": "short", "expires_in": "1h" }),
        )
        .await;
    assert_eq!(status, 201, "{short}");
    let short_token = short["token"].as_str().expect("token");
    let until = short["expires_at_us"].as_i64().expect("expiry");
    for asked in [json!(null), json!("3650d")] {
        let (status, minted) = server
            .call_as(
                short_token,
                Method::POST,
                "/api/v1/tokens",
                Some(&json!({ "name": "forever", "expires_in": asked })),
            )
            .await;
        assert_eq!(status, 201, "{minted}");
        let minted_until = minted["expires_at_us"].as_i64().expect("it expires");
        assert!(minted_until <= until, "{minted_until} > {until}");
    }
}
