//! Approvals an operator cannot remove: changing a workflow with approval
//! steps, or one whose approvals decide themselves, needs `admin`, and the
//! task types that run after an approval are submitted by runs or admins
//! only — on SQLite and PostgreSQL.

#[macro_use]
mod support;

use serde_json::{json, Value};
use support::{fast_timeouts, Backend, Database, Server};

on_both!(
    an_operator_cannot_upload_a_version_that_drops_an_approval,
    an_operator_cannot_make_an_approval_decide_itself,
    an_operator_cannot_submit_a_gated_task_type_directly,
    an_operator_cannot_run_a_gated_task_type_from_a_workflow_of_their_own,
);

const RELEASE: &str = "name: release\nsteps:\n  - id: build\n    type: task\n    task_type: echo\n  - id: ok\n    type: approval\n    depends_on: [build]\n    approvers: { roles: [approver] }\n    message: ship?\n  - id: deploy\n    type: task\n    depends_on: [ok]\n    task_type: sleep\n";
const RELEASE_WITHOUT_APPROVAL: &str = "name: release\nsteps:\n  - id: build\n    type: task\n    task_type: echo\n  - id: deploy\n    type: task\n    depends_on: [build]\n    task_type: sleep\n";

struct Fixture {
    server: Server,
    _db: Database,
    /// An operator's API token.
    otto: String,
}

async fn fixture(backend: Backend) -> Fixture {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo,sleep"));
    let server = Server::spawn_app(&db, &env).await;
    let otto = server.create_user("otto", "operator").await;
    Fixture {
        server,
        _db: db,
        otto,
    }
}

impl Fixture {
    async fn upload_as(&self, token: &str, text: &str) -> (u16, Value) {
        self.server.upload_workflow(token, text).await
    }

    async fn submit_as(&self, token: &str, body: Value) -> (u16, Value) {
        let r = self
            .server
            .http
            .post(format!("{}/api/v1/tasks", self.server.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn latest_version(&self, name: &str) -> i64 {
        let (s, body) = self.server.get(&format!("/api/v1/workflows/{name}")).await;
        assert_eq!(s, 200, "{body}");
        body["workflows"][0]["version"].as_i64().unwrap()
    }
}

fn forbidden(reply: (u16, Value), says: &str) {
    let (status, body) = reply;
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("needs admin") || message.contains("admin may"),
        "{body}"
    );
    assert!(message.contains(says), "{body}");
}

async fn an_operator_cannot_upload_a_version_that_drops_an_approval(backend: Backend) {
    let f = fixture(backend).await;
    let admin = support::API_TOKEN;
    // Without approvals, operators change workflows as before.
    assert_eq!(f.upload_as(&f.otto, RELEASE_WITHOUT_APPROVAL).await.0, 201);
    // Adding an approval is an admin's change.
    forbidden(
        f.upload_as(&f.otto, RELEASE).await,
        "the new version has the approval step \"ok\"",
    );
    assert_eq!(f.upload_as(admin, RELEASE).await.0, 201);
    assert_eq!(f.latest_version("release").await, 2);
    // Dropping it is refused to the operator, and nothing changes.
    forbidden(
        f.upload_as(&f.otto, RELEASE_WITHOUT_APPROVAL).await,
        "current version has the approval step \"ok\"",
    );
    // So is changing anything else of a workflow with an approval.
    forbidden(
        f.upload_as(&f.otto, &RELEASE.replace("ship?", "ship now?"))
            .await,
        "current version",
    );
    assert_eq!(f.latest_version("release").await, 2);
    // Uploading the current version again changes nothing and is allowed.
    let (s, body) = f.upload_as(&f.otto, RELEASE).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["created"], false);
    // An admin may drop it.
    assert_eq!(f.upload_as(admin, RELEASE_WITHOUT_APPROVAL).await.0, 201);
    assert_eq!(f.latest_version("release").await, 3);
}

async fn an_operator_cannot_make_an_approval_decide_itself(backend: Backend) {
    let f = fixture(backend).await;
    let self_approving = RELEASE.replace(
        "message: ship?",
        "message: ship?\n    allow_self_approval: true",
    );
    forbidden(
        f.upload_as(&f.otto, &self_approving).await,
        "allow_self_approval",
    );
    let on_timeout = RELEASE.replace(
        "message: ship?",
        "message: ship?\n    timeout_ms: 1\n    on_timeout: approve",
    );
    forbidden(
        f.upload_as(&f.otto, &on_timeout).await,
        "on_timeout: approve",
    );
    let (s, body) = f.server.get("/api/v1/workflows").await;
    assert_eq!(s, 200);
    assert_eq!(body["workflows"], json!([]), "nothing stored: {body}");
    assert_eq!(f.upload_as(support::API_TOKEN, &on_timeout).await.0, 201);
}

async fn an_operator_cannot_submit_a_gated_task_type_directly(backend: Backend) {
    let f = fixture(backend).await;
    // Before any workflow gates `sleep`, operators submit it.
    let (s, body) = f.submit_as(&f.otto, json!({ "task_type": "sleep" })).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(f.upload_as(support::API_TOKEN, RELEASE).await.0, 201);
    // `sleep` runs after the approval in `release`: gated, alone or in a batch.
    forbidden(
        f.submit_as(&f.otto, json!({ "task_type": "sleep" })).await,
        "\"release\"",
    );
    forbidden(
        f.submit_as(
            &f.otto,
            json!({ "tasks": [{ "task_type": "echo" }, { "task_type": "sleep" }] }),
        )
        .await,
        "\"sleep\"",
    );
    // `echo` runs before it: not gated.
    let (s, body) = f.submit_as(&f.otto, json!({ "task_type": "echo" })).await;
    assert_eq!(s, 201, "{body}");
    // An admin may.
    let (s, body) = f
        .submit_as(support::API_TOKEN, json!({ "task_type": "sleep" }))
        .await;
    assert_eq!(s, 201, "{body}");
}

/// The way around the gate on `POST /tasks`: a new workflow of the
/// operator's own whose step runs the protected type.
async fn an_operator_cannot_run_a_gated_task_type_from_a_workflow_of_their_own(backend: Backend) {
    let f = fixture(backend).await;
    assert_eq!(f.upload_as(support::API_TOKEN, RELEASE).await.0, 201);
    let hotfix = "name: hotfix\nsteps:\n  - id: deploy\n    type: task\n    task_type: sleep\n";
    forbidden(
        f.upload_as(&f.otto, hotfix).await,
        "runs after an approval in workflow \"release\"",
    );
    let (status, body) = f.server.get("/api/v1/workflows/hotfix").await;
    assert_eq!(status, 404, "nothing was stored: {body}");
    // Workflows running ungated types are the operator's to change.
    let build_only = "name: builds\nsteps:\n  - id: build\n    type: task\n    task_type: echo\n";
    assert_eq!(f.upload_as(&f.otto, build_only).await.0, 201);
    // An admin may.
    assert_eq!(f.upload_as(support::API_TOKEN, hotfix).await.0, 201);
}
