//! `/api/v1/workflows`: upload and read versioned workflow definitions,
//! the text each version was uploaded as, the changes between two
//! versions, and how a workflow's runs went.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use drover_engine::store::WorkflowDefStore;
use drover_engine::time::now_us;
use drover_engine::{explain, workflow, FieldError};
use drover_protocol::api::Role;
use drover_protocol::workflow::{
    UploadedWorkflow, WorkflowDiff, WorkflowList, WorkflowSource, WorkflowStats, WorkflowVersion,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::http::auth::Caller;
use crate::http::extract::{read_body, ApiQuery};
use crate::services::effects::Change;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workflows", get(list).post(upload))
        .route("/workflows/{name}", get(versions))
        .route("/workflows/{name}/versions/{version}", get(version))
        .route("/workflows/{name}/versions/{version}/source", get(source))
        .route("/workflows/{name}/diff", get(diff))
        .route("/workflows/{name}/stats", get(stats))
        .route("/schema/workflow.json", get(schema))
}

/// Takes the definition as YAML or JSON. A definition that differs from the
/// latest version becomes a new version; runs keep the version they started with.
async fn upload(
    caller: Caller,
    State(state): State<AppState>,
    req: Request,
) -> Result<(StatusCode, Json<UploadedWorkflow>), ApiError> {
    caller.require_operator()?;
    let body = read_body(req, &state).await?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::BadJson {
        message: "the definition is not UTF-8 text".into(),
        field: None,
    })?;
    // The text is kept as uploaded, and PostgreSQL cannot store a NUL.
    if text.contains('\0') {
        return Err(FieldError::new("definition", "must not contain the NUL character").into());
    }
    let mut def = workflow::parse_definition_with(text, state.scheduling.max_for_each_items)
        .map_err(ApiError::invalid_all)?;
    pin_child_workflows(&state, &mut def).await?;
    let json = serde_json::to_value(&def).map_err(|e| ApiError::Store(e.into()))?;
    // YAML's "\0" escapes too.
    crate::http::extract::refuse_nul(&json, "")?;
    if caller.0.role != Role::Admin {
        require_admin_for_approvals(&caller, &state, &def, &json).await?;
    }
    let digest = hex::encode(Sha256::digest(json.to_string().as_bytes()));
    let (workflow, created) = state
        .store
        .upload_workflow_source(
            &def.name,
            &json,
            Some(text),
            &digest,
            &caller.0.name,
            now_us(),
        )
        .await?;
    if created {
        let change = Change::new().event("workflow", Some(workflow.id), None);
        state.effects.after(change).await;
        tracing::info!(workflow = %workflow.name, version = workflow.version, by = %caller.0.name, "workflow uploaded");
        crate::audit::record(
            &state.store,
            &caller.0.name,
            "workflow.uploaded",
            Some(format!("workflow:{}", workflow.name)),
            serde_json::json!({ "version": workflow.version, "sha256": digest }),
        )
        .await;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let warnings = unreachable_steps(&state, &def).await?;
    Ok((
        status,
        Json(UploadedWorkflow {
            workflow,
            created,
            warnings,
        }),
    ))
}

/// Warnings for task steps no registered agent could ever take, in the
/// words a single submit's warning uses, each naming its step.
async fn unreachable_steps(
    state: &AppState,
    def: &workflow::Definition,
) -> Result<Vec<String>, ApiError> {
    let agents = state.registered_agents().await?;
    let mut warnings = Vec::new();
    for step in &def.steps {
        let workflow::Step::Task(t) = step else {
            continue;
        };
        let labels = if t.required_labels.is_empty() {
            &def.defaults.required_labels
        } else {
            &t.required_labels
        };
        if let Some(w) = explain::unreachable(&t.task_type, labels, &agents) {
            warnings.push(format!("step {:?}: {w}", t.id));
        }
    }
    Ok(warnings)
}

/// Pins each `workflow` step to a version that exists now (the latest when
/// it names none): a stored definition then never changes meaning when
/// its child gets a new version, and as a version can only name versions
/// older than itself, workflows cannot start each other in a circle.
async fn pin_child_workflows(
    state: &AppState,
    def: &mut workflow::Definition,
) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    for (i, step) in def.steps.iter_mut().enumerate() {
        let workflow::Step::Workflow(w) = step else {
            continue;
        };
        match state.store.workflow(&w.workflow, w.version).await? {
            Some(found) => w.version = Some(found.version),
            None => errors.push(drover_engine::FieldError::new(
                format!(
                    "steps[{i}].{}",
                    if w.version.is_some() {
                        "version"
                    } else {
                        "workflow"
                    }
                ),
                format!(
                    "step {:?}: no workflow {:?}{}",
                    w.id,
                    w.workflow,
                    w.version
                        .map(|v| format!(" version {v}"))
                        .unwrap_or_default()
                ),
            )),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_all(errors))
    }
}

/// An approval an operator could change could be removed: changing a
/// workflow that has (or gets) approval steps needs `admin`. Uploading the
/// latest version again unchanged is allowed.
async fn require_admin_for_approvals(
    caller: &Caller,
    state: &AppState,
    def: &workflow::Definition,
    json: &serde_json::Value,
) -> Result<(), ApiError> {
    let latest = state.store.workflow(&def.name, None).await?;
    if latest.as_ref().is_some_and(|l| &l.definition == json) {
        return Ok(());
    }
    let current: Option<workflow::Definition> = latest
        .map(|l| serde_json::from_value(l.definition))
        .transpose()
        .map_err(|e| ApiError::Store(e.into()))?;
    // A new workflow that runs a task type some approval protects would
    // run it without the approval.
    let gated = state.gated_types().await?;
    let runs_gated = def.steps.iter().find_map(|step| match step {
        workflow::Step::Task(t) => gated
            .get(&t.task_type)
            .filter(|gating| **gating != def.name)
            .map(|gating| format!("step {:?} runs task type {:?}, which runs after an approval in workflow {gating:?}", t.id, t.task_type)),
        _ => None,
    });
    match runs_gated.or_else(|| workflow::admin_needed_for(def, current.as_ref())) {
        None => Ok(()),
        Some(why) => Err(ApiError::Forbidden(format!(
            "{} is a{} {}; changing workflow {:?} needs admin: {why}",
            caller.0.name,
            if caller.0.role == Role::Operator {
                "n"
            } else {
                ""
            },
            caller.0.role.as_str(),
            def.name
        ))),
    }
}

async fn list(
    _caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<WorkflowList>, ApiError> {
    Ok(Json(WorkflowList {
        workflows: state.store.list_workflows().await?,
    }))
}

async fn versions(
    _caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<WorkflowList>, ApiError> {
    let workflows = state.store.workflow_versions(&name).await?;
    if workflows.is_empty() {
        return Err(ApiError::NotFound(format!("workflow {name:?}")));
    }
    Ok(Json(WorkflowList { workflows }))
}

async fn version(
    _caller: Caller,
    State(state): State<AppState>,
    Path((name, version)): Path<(String, i64)>,
) -> Result<Json<WorkflowVersion>, ApiError> {
    state
        .store
        .workflow(&name, Some(version))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("workflow {name:?} version {version}")))
}

fn no_version(name: &str, version: i64) -> ApiError {
    ApiError::NotFound(format!("workflow {name:?} version {version}"))
}

/// A version and the text it was uploaded as (none if stored before texts were kept).
async fn stored(
    state: &AppState,
    name: &str,
    version: i64,
) -> Result<(WorkflowVersion, Option<String>), ApiError> {
    state
        .store
        .workflow_source(name, version)
        .await?
        .ok_or_else(|| no_version(name, version))
}

/// A version's text as uploaded; for a version stored before texts were
/// kept, its definition rendered as YAML (`rendered` says which).
async fn source_of(state: &AppState, name: &str, version: i64) -> Result<WorkflowSource, ApiError> {
    let (wf, text) = stored(state, name, version).await?;
    let (text, rendered) = match text {
        Some(text) => (text, false),
        None => (workflow::render_yaml(&wf.definition)?, true),
    };
    Ok(WorkflowSource {
        name: wf.name,
        version: wf.version,
        text,
        rendered,
    })
}

async fn source(
    _caller: Caller,
    State(state): State<AppState>,
    Path((name, version)): Path<(String, i64)>,
) -> Result<Json<WorkflowSource>, ApiError> {
    Ok(Json(source_of(&state, &name, version).await?))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffQuery {
    /// The version to compare from (usually the older).
    from: Option<i64>,
    /// The version to compare to.
    to: Option<i64>,
}

/// A version number a query must give.
fn version_param(field: &'static str, value: Option<i64>) -> Result<i64, FieldError> {
    match value {
        None => Err(FieldError::new(field, "required: a version number")),
        Some(v) if v < 1 => Err(FieldError::new(
            field,
            "must be a version number (1 or more)",
        )),
        Some(v) => Ok(v),
    }
}

/// The line diff of two versions' texts. If either was stored before texts
/// were kept, both definitions are rendered and those compared instead,
/// since a text against a rendering would differ on every line.
async fn diff(
    _caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> Result<Json<WorkflowDiff>, ApiError> {
    let from = version_param("from", q.from)?;
    let to = version_param("to", q.to)?;
    let (old, new) = tokio::try_join!(stored(&state, &name, from), stored(&state, &name, to))?;
    let (rendered, old, new) = match (old, new) {
        ((_, Some(old)), (_, Some(new))) => (false, old, new),
        ((old, _), (new, _)) => (
            true,
            workflow::render_yaml(&old.definition)?,
            workflow::render_yaml(&new.definition)?,
        ),
    };
    // Up to a few hundred milliseconds on the largest texts: off the
    // request threads. (It fails only if the diff panicked.)
    let lines = tokio::task::spawn_blocking(move || workflow::line_diff(&old, &new))
        .await
        .map_err(|e| ApiError::Store(drover_engine::StoreError::Corrupt(format!("diff: {e}"))))?;
    Ok(Json(WorkflowDiff {
        name,
        from,
        to,
        rendered,
        added: lines.added,
        removed: lines.removed,
        hunks: lines.hunks,
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatsQuery {
    /// How many of the newest finished runs to count: 1 to 1000, 20 when not given.
    last: Option<i64>,
}

/// How the newest finished runs of a workflow ended (any version), and how
/// many are still going.
async fn stats(
    _caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<WorkflowStats>, ApiError> {
    let last = q.last.unwrap_or(20);
    if !(1..=1000).contains(&last) {
        return Err(FieldError::new("last", "must be between 1 and 1000").into());
    }
    if state.store.workflow(&name, None).await?.is_none() {
        return Err(ApiError::NotFound(format!("workflow {name:?}")));
    }
    Ok(Json(state.store.workflow_run_stats(&name, last).await?))
}

/// The JSON Schema of a definition (no token needed: editors fetch it).
async fn schema() -> Json<serde_json::Value> {
    Json(workflow::json_schema())
}
