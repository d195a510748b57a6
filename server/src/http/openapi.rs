//! The API described as OpenAPI 3.1, generated from the code: every route
//! is one row of [`OPERATIONS`] naming the Rust types its handler reads and
//! answers, and the JSON Schemas come from those types (`schemars`, the
//! same derive the wire types carry under `drover-protocol/openapi`), so a
//! field added to a type is in the description at once. Served at
//! `/api/openapi.json`, rendered for people at `/api/docs`.
//!
//! A test (`server/tests/openapi.rs`) fails when a route the routers mount
//! is missing here, and schemathesis checks the live server against it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use drover_protocol::{agent, api, credentials, health, notification, schedule, trigger, workflow};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};

use crate::state::AppState;

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// A query string's fields, each its own parameter.
fn query<T: JsonSchema>(_: &mut SchemaGenerator) -> Schema {
    SchemaGenerator::new(settings()).into_root_schema_for::<T>()
}

fn any(_: &mut SchemaGenerator) -> Schema {
    Schema::default()
}

/// Who may call an operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// Nobody needs to sign in.
    Open,
    /// A user: an API token (`Authorization: Bearer`) or the dashboard's
    /// session cookie (with `X-CSRF-Token` on changes). The summary names
    /// the least role.
    User,
    /// An agent's token, from registering.
    Agent,
    /// An enrollment token.
    Enrollment,
    /// `DROVER_METRICS_TOKEN` when it is set.
    Metrics,
    /// The trigger's own secret (bearer or HMAC signature).
    Hook,
}

enum Body {
    None,
    Json(SchemaFn),
    /// A workflow definition as YAML or JSON text.
    Definition,
    /// A trigger's payload, whatever its sender posts.
    Raw,
    Form(SchemaFn),
}

enum Answer {
    Json(SchemaFn),
    /// Nothing (204).
    Empty,
    /// Prometheus' text format.
    Metrics,
    /// `text/event-stream`.
    Events,
    /// A redirect (303) to the dashboard.
    Redirect,
    /// A page for people.
    Html,
}

struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    auth: Auth,
    query: Option<SchemaFn>,
    body: Body,
    status: u16,
    answer: Answer,
}

macro_rules! op {
    ($method:literal $path:literal, $id:literal, $tag:literal, $summary:literal, $auth:ident,
     query: $query:expr, body: $body:expr, $status:literal => $answer:expr) => {
        Op {
            method: $method,
            path: $path,
            id: $id,
            tag: $tag,
            summary: $summary,
            auth: Auth::$auth,
            query: $query,
            body: $body,
            status: $status,
            answer: $answer,
        }
    };
}

use super::workflows as workflows_http;
use super::{agents as agents_http, approvals as approvals_http, audit as audit_http};
use super::{notifications as notifications_http, overview as overview_http};
use super::{queues as queues_http, runs as runs_http};
use super::{session as session_http, tasks as tasks_http, users as users_http};

/// Every route the server mounts, in the order the README lists them.
static OPERATIONS: &[Op] = &[
    // Tasks
    op!("post" "/api/v1/tasks", "submitTasks", "tasks", "Submit one task, or `{\"tasks\": [...]}` (operator). 201 if any was created, 200 if all existed (idempotency keys).", User,
        query: None, body: Body::Json(of::<SubmitBody>), 201 => Answer::Json(of::<SubmitAnswer>)),
    op!("get" "/api/v1/tasks", "listTasks", "tasks", "Tasks, newest first, by status and type (viewer).", User,
        query: Some(query::<tasks_http::ListQuery>), body: Body::None, 200 => Answer::Json(of::<api::TaskList>)),
    op!("get" "/api/v1/tasks/{id}", "getTask", "tasks", "A task with its attempts, and what holds it if it waits (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<api::TaskDetail>)),
    op!("get" "/api/v1/tasks/{id}/logs", "getTaskLogs", "tasks", "A page of what the task's handlers printed (viewer).", User,
        query: Some(query::<tasks_http::LogQuery>), body: Body::None, 200 => Answer::Json(of::<api::TaskLogPage>)),
    op!("post" "/api/v1/tasks/{id}/cancel", "cancelTask", "tasks", "Cancel a queued or running task (operator).", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("post" "/api/v1/tasks/{id}/retry", "retryTask", "tasks", "Queue a failed or cancelled task again (operator).", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("get" "/api/v1/queues", "queueHealth", "tasks", "Per task type: depth, oldest wait, agents that take it, start rate (viewer).", User,
        query: Some(query::<queues_http::HealthQuery>), body: Body::None, 200 => Answer::Json(of::<health::QueueHealth>)),
    op!("get" "/api/v1/rate-limits", "listRateLimits", "tasks", "Start-rate limits per task type or key (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<api::RateLimitList>)),
    op!("put" "/api/v1/rate-limits/{scope}", "setRateLimit", "tasks", "Set a start-rate limit (admin).", User,
        query: None, body: Body::Json(of::<api::PutRateLimit>), 200 => Answer::Json(of::<api::RateLimitView>)),
    op!("delete" "/api/v1/rate-limits/{scope}", "removeRateLimit", "tasks", "Remove a start-rate limit (admin).", User,
        query: None, body: Body::None, 204 => Answer::Empty),
    // Agents
    op!("get" "/api/v1/agents", "listAgents", "agents", "Agents with their load (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<api::AgentList>)),
    op!("get" "/api/v1/agents/{id}/load", "agentLoad", "agents", "An agent's load over a window (viewer).", User,
        query: Some(query::<agents_http::LoadQuery>), body: Body::None, 200 => Answer::Json(of::<api::AgentLoad>)),
    op!("get" "/api/v1/agents/{id}/history", "agentHistory", "agents", "What happened to an agent, newest first: registered, drained, enabled, revoked, by whom (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<credentials::AuditList>)),
    op!("post" "/api/v1/agents/{id}/drain", "drainAgent", "agents", "Give an agent no new work (admin).", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("post" "/api/v1/agents/{id}/enable", "enableAgent", "agents", "Give a drained agent work again (admin).", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("post" "/api/v1/agents/{id}/revoke", "revokeAgent", "agents", "Revoke an agent's token; its tasks go back to the queue (admin).", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("get" "/api/v1/enrollment-tokens", "listEnrollmentTokens", "agents", "Enrollment tokens, without their secrets (admin).", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("post" "/api/v1/enrollment-tokens", "createEnrollmentToken", "agents", "Create an enrollment token, shown once (admin).", User,
        query: None, body: Body::Json(of::<credentials::NewEnrollmentToken>), 201 => Answer::Json(of::<credentials::CreatedEnrollmentToken>)),
    op!("delete" "/api/v1/enrollment-tokens/{id}", "revokeEnrollmentToken", "agents", "Revoke an enrollment token (admin).", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    // The agent protocol
    op!("post" "/api/v1/agent/register", "agentRegister", "agent protocol", "Register an agent: its task types, labels and capacity; answers its own token.", Enrollment,
        query: None, body: Body::Json(of::<agent::RegisterRequest>), 200 => Answer::Json(of::<agent::RegisterResponse>)),
    op!("post" "/api/v1/agent/heartbeat", "agentHeartbeat", "agent protocol", "Keep the agent and its leases alive; answers what to cancel.", Agent,
        query: None, body: Body::Json(of::<agent::HeartbeatRequest>), 200 => Answer::Json(of::<agent::HeartbeatResponse>)),
    op!("post" "/api/v1/agent/claim", "agentClaim", "agent protocol", "Long-poll for up to `max_tasks` tasks.", Agent,
        query: None, body: Body::Json(of::<agent::ClaimRequest>), 200 => Answer::Json(of::<agent::ClaimResponse>)),
    op!("post" "/api/v1/agent/results", "agentResults", "agent protocol", "Report finished attempts (and, when asked, take the next tasks).", Agent,
        query: None, body: Body::Json(of::<agent::ResultsRequest>), 200 => Answer::Json(of::<agent::ResultsResponse>)),
    op!("post" "/api/v1/agent/logs", "agentLogs", "agent protocol", "Lines running tasks printed.", Agent,
        query: None, body: Body::Json(of::<agent::LogsRequest>), 200 => Answer::Json(of::<agent::LogsResponse>)),
    op!("post" "/api/v1/agent/deregister", "agentDeregister", "agent protocol", "Leave the fleet; running tasks go back to the queue.", Agent,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    // Workflows and runs
    op!("get" "/api/v1/workflows", "listWorkflows", "workflows", "Workflows, newest version of each (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<workflow::WorkflowList>)),
    op!("post" "/api/v1/workflows", "uploadWorkflow", "workflows", "Upload a definition (YAML or JSON) as a new version (operator; admin if it has approvals).", User,
        query: None, body: Body::Definition, 201 => Answer::Json(of::<workflow::UploadedWorkflow>)),
    op!("get" "/api/v1/workflows/{name}", "workflowVersions", "workflows", "Every version of a workflow (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<workflow::WorkflowList>)),
    op!("get" "/api/v1/workflows/{name}/versions/{version}", "workflowVersion", "workflows", "One version with its definition (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<workflow::WorkflowVersion>)),
    op!("get" "/api/v1/workflows/{name}/versions/{version}/source", "workflowSource", "workflows", "The text a version was uploaded as; for one stored before texts were kept, its definition as YAML, marked `rendered` (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<workflow::WorkflowSource>)),
    op!("get" "/api/v1/workflows/{name}/diff", "workflowDiff", "workflows", "The line diff between two versions' texts, as hunks (viewer).", User,
        query: Some(query::<workflows_http::DiffQuery>), body: Body::None, 200 => Answer::Json(of::<workflow::WorkflowDiff>)),
    op!("get" "/api/v1/workflows/{name}/stats", "workflowStats", "workflows", "How the newest finished runs of a workflow ended, and how many are still going (viewer).", User,
        query: Some(query::<workflows_http::StatsQuery>), body: Body::None, 200 => Answer::Json(of::<workflow::WorkflowStats>)),
    op!("get" "/api/v1/schema/workflow.json", "workflowSchema", "workflows", "The JSON Schema of workflow definitions.", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("post" "/api/v1/runs", "startRun", "workflows", "Start a run of a workflow with inputs (operator).", User,
        query: None, body: Body::Json(of::<workflow::StartRun>), 201 => Answer::Json(of::<workflow::RunDetail>)),
    op!("get" "/api/v1/runs", "listRuns", "workflows", "Runs, newest first (viewer).", User,
        query: Some(query::<runs_http::ListQuery>), body: Body::None, 200 => Answer::Json(of::<workflow::RunList>)),
    op!("get" "/api/v1/runs/{id}", "getRun", "workflows", "A run with its steps, its history (`events`, the newest 1,000) and its tasks' attempts (the first 1,000) (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<workflow::RunDetail>)),
    op!("post" "/api/v1/runs/{id}/cancel", "cancelRun", "workflows", "Cancel a run and what it runs (operator).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<workflow::RunDetail>)),
    op!("post" "/api/v1/runs/{id}/steps/{step}/retry", "retryStep", "workflows", "Retry a failed step of a run (operator).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<workflow::RunDetail>)),
    op!("post" "/api/v1/events", "sendEvent", "workflows", "Send an event that waiting steps resume on (operator).", User,
        query: None, body: Body::Json(of::<workflow::SendEvent>), 200 => Answer::Json(of::<workflow::EventDelivered>)),
    op!("get" "/api/v1/approvals", "listApprovals", "workflows", "Approvals, the caller's to decide first (viewer).", User,
        query: Some(query::<approvals_http::ListQuery>), body: Body::None, 200 => Answer::Json(of::<workflow::ApprovalList>)),
    op!("get" "/api/v1/approvals/{id}", "getApproval", "workflows", "One approval (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<workflow::ApprovalView>)),
    op!("post" "/api/v1/approvals/{id}/decision", "decideApproval", "workflows", "Approve or reject (a user the step's policy names).", User,
        query: None, body: Body::Json(of::<workflow::DecideApproval>), 200 => Answer::Json(of::<workflow::ApprovalView>)),
    // Schedules and triggers
    op!("get" "/api/v1/schedules", "listSchedules", "schedules", "Schedules with their next fire time (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<schedule::ScheduleList>)),
    op!("post" "/api/v1/schedules", "createSchedule", "schedules", "Create a schedule (operator).", User,
        query: None, body: Body::Json(of::<schedule::NewSchedule>), 201 => Answer::Json(of::<schedule::ScheduleView>)),
    op!("get" "/api/v1/schedules/{id}", "getSchedule", "schedules", "One schedule (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<schedule::ScheduleView>)),
    op!("patch" "/api/v1/schedules/{id}", "changeSchedule", "schedules", "Change a schedule (operator).", User,
        query: None, body: Body::Json(of::<schedule::ScheduleChange>), 200 => Answer::Json(of::<schedule::ScheduleView>)),
    op!("delete" "/api/v1/schedules/{id}", "deleteSchedule", "schedules", "Delete a schedule (operator).", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("post" "/api/v1/schedules/{id}/pause", "pauseSchedule", "schedules", "Pause a schedule (operator).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<schedule::ScheduleView>)),
    op!("post" "/api/v1/schedules/{id}/resume", "resumeSchedule", "schedules", "Resume a schedule (operator).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<schedule::ScheduleView>)),
    op!("get" "/api/v1/triggers", "listTriggers", "schedules", "Webhook triggers, without their secrets (admin).", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("post" "/api/v1/triggers", "createTrigger", "schedules", "Create a webhook trigger that starts a workflow; its secret is shown once (admin).", User,
        query: None, body: Body::Json(of::<trigger::NewTrigger>), 201 => Answer::Json(of::<trigger::CreatedTrigger>)),
    op!("delete" "/api/v1/triggers/{id}", "deleteTrigger", "schedules", "Delete a trigger (admin).", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("post" "/api/v1/hooks/{name}", "deliverHook", "schedules", "A webhook: starts the trigger's workflow with the posted payload.", Hook,
        query: None, body: Body::Raw, 201 => Answer::Json(any)),
    // Notifications
    op!("get" "/api/v1/notifications/rules", "listNotificationRules", "notifications", "Notification rules (admin).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<notification::NotificationRuleList>)),
    op!("post" "/api/v1/notifications/rules", "createNotificationRule", "notifications", "Create a rule (admin).", User,
        query: None, body: Body::Json(of::<notification::NewNotificationRule>), 201 => Answer::Json(of::<notification::CreatedNotificationRule>)),
    op!("get" "/api/v1/notifications/rules/{id}", "getNotificationRule", "notifications", "One rule (admin).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<notification::NotificationRuleView>)),
    op!("patch" "/api/v1/notifications/rules/{id}", "changeNotificationRule", "notifications", "Change a rule (admin).", User,
        query: None, body: Body::Json(of::<notification::NotificationRuleChange>), 200 => Answer::Json(of::<notification::NotificationRuleView>)),
    op!("delete" "/api/v1/notifications/rules/{id}", "deleteNotificationRule", "notifications", "Delete a rule (admin).", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("post" "/api/v1/notifications/rules/{id}/test", "testNotificationRule", "notifications", "Send a test notification now (admin).", User,
        query: None, body: Body::None, 202 => Answer::Json(of::<notification::DeliveryView>)),
    op!("get" "/api/v1/notifications/deliveries", "listDeliveries", "notifications", "Notifications sent and failing (operator).", User,
        query: Some(query::<notifications_http::DeliveryQuery>), body: Body::None, 200 => Answer::Json(of::<notification::DeliveryList>)),
    // Users, sessions and audit
    op!("get" "/api/v1/me", "me", "users", "Who the caller is.", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<api::UserView>)),
    op!("get" "/api/v1/users", "listUsers", "users", "Users (admin).", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("post" "/api/v1/users", "createUser", "users", "Create a user with a first API token (admin).", User,
        query: None, body: Body::Json(of::<api::NewUser>), 201 => Answer::Json(of::<api::UserWithToken>)),
    op!("patch" "/api/v1/users/{name}", "updateUser", "users", "Change a user's role, or disable them (admin).", User,
        query: None, body: Body::Json(of::<users_http::UserUpdate>), 200 => Answer::Json(any)),
    op!("put" "/api/v1/users/{name}/password", "changePassword", "users", "Change a password (one's own with the current one, or an admin).", User,
        query: None, body: Body::Json(of::<users_http::PasswordChange>), 204 => Answer::Empty),
    op!("get" "/api/v1/tokens", "listTokens", "users", "API tokens, without their secrets (one's own; an admin anyone's).", User,
        query: Some(query::<users_http::TokenQuery>), body: Body::None, 200 => Answer::Json(any)),
    op!("post" "/api/v1/tokens", "createToken", "users", "Create an API token, shown once (signed in, or with name and password).", Open,
        query: None, body: Body::Json(of::<users_http::NewTokenRequest>), 201 => Answer::Json(of::<users_http::CreatedToken>)),
    op!("delete" "/api/v1/tokens/{id}", "revokeToken", "users", "Revoke an API token.", User,
        query: None, body: Body::None, 204 => Answer::Empty),
    op!("post" "/api/v1/session", "signIn", "users", "Sign in: sets the session and CSRF cookies.", Open,
        query: None, body: Body::Json(of::<session_http::Credentials>), 201 => Answer::Json(any)),
    op!("get" "/api/v1/session", "currentSession", "users", "The caller and the session's CSRF value.", User,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("delete" "/api/v1/session", "signOut", "users", "Sign out: ends the session.", User,
        query: None, body: Body::None, 204 => Answer::Empty),
    op!("post" "/signin", "signInForm", "users", "The dashboard's sign-in form.", Open,
        query: Some(query::<session_http::SignInQuery>), body: Body::Form(of::<session_http::SignInForm>), 303 => Answer::Redirect),
    op!("post" "/signout", "signOutForm", "users", "The dashboard's sign-out form.", Open,
        query: None, body: Body::Form(of::<session_http::SignOutForm>), 303 => Answer::Redirect),
    op!("get" "/api/v1/audit", "listAudit", "users", "The audit log, newest first (admin).", User,
        query: Some(query::<audit_http::AuditQuery>), body: Body::None, 200 => Answer::Json(of::<credentials::AuditList>)),
    // The server
    op!("get" "/api/v1/status", "serverStatus", "server", "This instance: version, database, leader (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<api::ServerStatus>)),
    op!("get" "/api/v1/stats", "stats", "server", "Counts of tasks by status and agents (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Json(of::<api::Stats>)),
    op!("get" "/api/v1/overview", "overview", "server", "The dashboard's overview figures, now and over a range (viewer).", User,
        query: Some(query::<overview_http::OverviewQuery>), body: Body::None, 200 => Answer::Json(of::<api::Overview>)),
    op!("get" "/api/v1/events", "events", "server", "Server-sent events: what changed, for live pages (viewer).", User,
        query: None, body: Body::None, 200 => Answer::Events),
    op!("get" "/api/openapi.json", "openapi", "server", "This description.", Open,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("get" "/api/docs", "docs", "server", "This description, rendered.", Open,
        query: None, body: Body::None, 200 => Answer::Html),
    op!("get" "/healthz", "healthz", "server", "The process is up.", Open,
        query: None, body: Body::None, 200 => Answer::Json(any)),
    op!("get" "/readyz", "readyz", "server", "The instance can serve: database reachable, migrations applied, PostgreSQL listener up (503 naming the failed check otherwise).", Open,
        query: None, body: Body::None, 200 => Answer::Json(of::<Readiness>)),
    op!("get" "/metrics", "metrics", "server", "Prometheus metrics.", Metrics,
        query: None, body: Body::None, 200 => Answer::Metrics),
];

/// `POST /api/v1/tasks` takes one task or a batch.
#[derive(JsonSchema)]
#[allow(dead_code)]
#[serde(untagged)]
enum SubmitBody {
    One(Box<api::NewTask>),
    Batch(api::NewTaskBatch),
}

/// What a submit answers: the task (or the batch), and warnings when no
/// registered agent could take a type.
#[derive(JsonSchema)]
#[allow(dead_code)]
#[serde(untagged)]
enum SubmitAnswer {
    One {
        #[serde(flatten)]
        task: api::SubmittedTask,
        #[serde(default)]
        warnings: Vec<String>,
    },
    Batch {
        #[serde(flatten)]
        batch: api::SubmitBatchResponse,
        #[serde(default)]
        warnings: Vec<String>,
    },
}

/// `/readyz`: each check is "ok" or what failed.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Readiness {
    ready: bool,
    checks: BTreeMap<String, String>,
}

fn settings() -> SchemaSettings {
    SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "#/components/schemas/".into();
        s.meta_schema = None;
    })
}

/// The description, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> Value {
    let mut g = SchemaGenerator::new(settings());
    let error = of::<drover_protocol::ErrorBody>(&mut g);
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for op in OPERATIONS {
        let mut operation = json!({
            "operationId": op.id,
            "tags": [op.tag],
            "summary": op.summary,
        });
        let mut parameters: Vec<Value> = path_parameters(op.path);
        if let Some(query) = op.query {
            parameters.extend(query_parameters(query(&mut g)));
        }
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = request_body(&op.body, &mut g) {
            operation["requestBody"] = body;
        }
        let mut responses = Map::new();
        responses.insert(op.status.to_string(), answer(&op.answer, &mut g));
        if op.path == "/readyz" {
            responses.insert("503".into(), answer(&op.answer, &mut g));
        }
        responses.insert(
            "4XX".into(),
            json!({
                "description": "Refused: the body names the field at fault and why.",
                "content": { "application/json": { "schema": error } },
            }),
        );
        operation["responses"] = Value::Object(responses);
        operation["security"] = security(op.auth);
        paths
            .entry(op.path)
            .or_default()
            .insert(op.method.to_string(), operation);
    }
    let schemas = g.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Drover",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The REST API and the agent protocol of a Drover server. Errors are JSON: `{\"error\": {\"code\", \"message\", \"field\"}}`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": { "type": "http", "scheme": "bearer", "description": "A user's API token (`drover token create`), an agent's token (from registering), an enrollment token (for registering only) or the metrics token, as the operation says." },
                "session": { "type": "apiKey", "in": "cookie", "name": "drover_session", "description": "The dashboard's session (`__Host-drover_session` over HTTPS); changes also need the `X-CSRF-Token` header." },
            },
        },
    })
}

fn security(auth: Auth) -> Value {
    match auth {
        Auth::Open | Auth::Hook => json!([]),
        Auth::User => json!([{ "token": [] }, { "session": [] }]),
        Auth::Agent | Auth::Enrollment | Auth::Metrics => json!([{ "token": [] }]),
    }
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = match name {
                "id" | "version" => json!({ "type": "integer", "format": "int64" }),
                _ => json!({ "type": "string" }),
            };
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect()
}

fn query_parameters(schema: Schema) -> Vec<Value> {
    let value = schema.to_value();
    let required: Vec<&str> = value["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    value["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(name, schema)| {
                    json!({
                        "name": name,
                        "in": "query",
                        "required": required.contains(&name.as_str()),
                        "schema": schema,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn request_body(body: &Body, g: &mut SchemaGenerator) -> Option<Value> {
    let content = match body {
        Body::None => return None,
        Body::Json(schema) => json!({ "application/json": { "schema": schema(g) } }),
        Body::Form(schema) => {
            json!({ "application/x-www-form-urlencoded": { "schema": schema(g) } })
        }
        // The same definition either way; YAML is text to a schema.
        Body::Definition => json!({
            "application/yaml": { "schema": { "type": "string" } },
            "application/json": {
                "schema": g.subschema_for::<drover_engine::workflow::Definition>()
            },
        }),
        Body::Raw => json!({ "application/json": { "schema": {} } }),
    };
    Some(json!({ "required": true, "content": content }))
}

fn answer(answer: &Answer, g: &mut SchemaGenerator) -> Value {
    match answer {
        Answer::Json(schema) => json!({
            "description": "OK",
            "content": { "application/json": { "schema": schema(g) } },
        }),
        Answer::Empty => json!({ "description": "Done; no body." }),
        Answer::Metrics => json!({
            "description": "Prometheus' text format.",
            "content": { "text/plain": { "schema": { "type": "string" } } },
        }),
        Answer::Events => json!({
            "description": "A stream of events, each named by what changed (`task`, `run`, `approval`, …).",
            "content": { "text/event-stream": { "schema": { "type": "string" } } },
        }),
        Answer::Redirect => json!({ "description": "To the dashboard (or back to the form)." }),
        Answer::Html => json!({
            "description": "HTML.",
            "content": { "text/html": { "schema": { "type": "string" } } },
        }),
    }
}

/// `/api/openapi.json` and `/api/docs`, open to all: they describe, they
/// hold nothing.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(|| async { Json(document()) }))
        .route("/api/docs", get(docs))
}

/// A plain reference page: each operation with its method, path, who may
/// call it, its parameters and the types it takes and answers (links into
/// the JSON description). No script, nothing from elsewhere.
async fn docs() -> Response {
    let doc = document();
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>API · Drover</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{font:15px/1.45 system-ui,sans-serif;max-width:980px;margin:1.5rem auto;padding:0 1rem}\
         code{background:#f2f2f2;padding:0 .25rem;border-radius:3px}.m{font-weight:700;text-transform:uppercase;display:inline-block;width:4.2rem}\
         section{border-top:1px solid #ddd;padding:.5rem 0}</style></head><body>\
         <h1>Drover API</h1><p>The REST API and the agent protocol. Machine-readable: \
         <a href=\"/api/openapi.json\">/api/openapi.json</a> (OpenAPI 3.1).</p>",
    );
    let mut by_tag: BTreeMap<String, Vec<(String, String, &Value)>> = BTreeMap::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, methods) in paths {
            for (method, op) in methods.as_object().into_iter().flatten() {
                let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
                by_tag
                    .entry(tag)
                    .or_default()
                    .push((method.clone(), path.clone(), op));
            }
        }
    }
    for (tag, ops) in by_tag {
        html.push_str(&format!("<h2>{}</h2>", escape(&tag)));
        for (method, path, op) in ops {
            html.push_str(&format!(
                "<section id=\"{id}\"><p><span class=\"m\">{method}</span> <code>{path}</code></p><p>{summary}</p>",
                id = escape(op["operationId"].as_str().unwrap_or_default()),
                method = escape(&method),
                path = escape(&path),
                summary = escape(op["summary"].as_str().unwrap_or_default()),
            ));
            let params: Vec<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "<code>{}</code> ({}{})",
                        escape(p["name"].as_str().unwrap_or_default()),
                        escape(p["in"].as_str().unwrap_or_default()),
                        if p["required"] == true {
                            ", required"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            if !params.is_empty() {
                html.push_str(&format!("<p>Parameters: {}</p>", params.join(", ")));
            }
            for (label, content) in [
                ("Takes", &op["requestBody"]["content"]),
                ("Answers", &first_success(op)),
            ] {
                if let Some(types) = content.as_object() {
                    let named: Vec<String> = types
                        .iter()
                        .map(|(media, v)| format!("{} {}", escape(media), type_name(&v["schema"])))
                        .collect();
                    html.push_str(&format!("<p>{label}: {}</p>", named.join("; ")));
                }
            }
            html.push_str("</section>");
        }
    }
    html.push_str("</body></html>");
    ([(CONTENT_TYPE, "text/html; charset=utf-8")], Html(html)).into_response()
}

fn first_success(op: &Value) -> Value {
    op["responses"]
        .as_object()
        .and_then(|r| r.iter().find(|(code, _)| code.starts_with('2')))
        .map(|(_, v)| v["content"].clone())
        .unwrap_or(Value::Null)
}

fn type_name(schema: &Value) -> String {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => format!("<code>{}</code>", escape(r.rsplit('/').next().unwrap_or(r))),
        None => "JSON".to_string(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
