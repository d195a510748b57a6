//! Incoming webhooks. Admins manage triggers (`/api/v1/triggers`; a trigger
//! is a credential: whoever holds its secret starts its workflow); a
//! delivery to `/api/v1/hooks/{name}` proves the secret and starts a run
//! with inputs picked out of its JSON body.
//!
//! A delivery with an unknown name or a wrong proof gets the same `401`,
//! so names cannot be probed, and starts nothing. HMAC deliveries sign
//! `<timestamp>.<body>` and are refused five minutes off the server's
//! clock, so a captured delivery cannot be replayed later; within that
//! window the sender's `Idempotency-Key` makes a retry start one run.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use drover_engine::domain::{check_idempotency_key, check_name};
use drover_engine::store::{NewTriggerRow, RunStore, TriggerRow, TriggerStore, WorkflowDefStore};
use drover_engine::time::now_us;
use drover_engine::{workflow, FieldError};
use drover_protocol::limits::{HOOK_KEY_PREFIX, HOOK_TIMESTAMP_TOLERANCE_S};
use drover_protocol::trigger::{
    CreatedTrigger, HookDelivered, NewTrigger, TriggerAuth, TriggerEvent, TriggerView,
};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::error::{not_found, ApiError};
use crate::http::auth::Caller;
use crate::http::extract::ApiJson;
use crate::services::effects::Change;
use crate::state::AppState;
use crate::tokens::{hash_token, new_token, token_prefix};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/triggers", get(list).post(create))
        .route("/triggers/{id}", delete(remove))
        .route("/hooks/{name}", post(deliver))
}

fn view(t: TriggerRow) -> TriggerView {
    TriggerView {
        path: format!("/api/v1/hooks/{}", t.name),
        id: t.id,
        name: t.name,
        workflow: t.workflow,
        version: t.workflow_version,
        inputs: serde_json::from_str(&t.inputs).unwrap_or_default(),
        auth: TriggerAuth::parse(&t.auth).unwrap_or_default(),
        prefix: t.prefix,
        created_by: t.created_by,
        created_at_us: t.created_at,
        last_fired_at_us: t.last_fired_at,
        fired_count: t.fired_count,
        event: t.event_key.map(|key| TriggerEvent {
            key,
            prefix: t.event_prefix.unwrap_or_default(),
        }),
    }
}

async fn list(caller: Caller, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let triggers: Vec<TriggerView> = state
        .store
        .triggers()
        .await?
        .into_iter()
        .map(view)
        .collect();
    Ok(Json(json!({ "triggers": triggers })))
}

async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewTrigger>,
) -> Result<(StatusCode, Json<CreatedTrigger>), ApiError> {
    caller.require_admin()?;
    check_name("name", &new.name)?;
    match (&new.event, new.workflow.is_empty()) {
        (Some(_), false) | (None, true) => {
            return Err(FieldError::new(
                "workflow",
                "name a workflow to start, or an event (not both)",
            )
            .into())
        }
        (Some(event), true) => {
            if !event.key.starts_with('/') {
                return Err(FieldError::new(
                    "event.key",
                    format!("{:?} is not a JSON pointer (\"/order/id\")", event.key),
                )
                .into());
            }
            if event.prefix.len() > drover_protocol::limits::MAX_EVENT_KEY_BYTES / 2 {
                return Err(FieldError::new("event.prefix", "is too long").into());
            }
            if !new.inputs.is_empty() || new.version.is_some() {
                return Err(FieldError::new(
                    "inputs",
                    "an event trigger starts no workflow: it takes no inputs or version",
                )
                .into());
            }
            return create_row(&caller, &state, &new, "").await;
        }
        (None, false) => {}
    }
    let wf = state
        .store
        .workflow(&new.workflow, new.version)
        .await?
        .ok_or_else(|| match new.version {
            Some(v) => FieldError::new(
                "version",
                format!("no workflow {:?} version {v}", new.workflow),
            ),
            None => FieldError::new("workflow", format!("no workflow {:?}", new.workflow)),
        })?;
    let def: workflow::Definition =
        serde_json::from_value(wf.definition).map_err(|e| ApiError::Store(e.into()))?;
    for (input, pointer) in &new.inputs {
        let field = format!("inputs.{input}");
        if !def.inputs.contains_key(input) {
            return Err(FieldError::new(
                field,
                format!("workflow {:?} declares no input {input:?}", new.workflow),
            )
            .into());
        }
        if !(pointer.is_empty() || pointer.starts_with('/')) {
            return Err(FieldError::new(
                field,
                format!("{pointer:?} is not a JSON pointer: it starts with \"/\" (\"/customer/id\"), or is \"\" for the whole body"),
            )
            .into());
        }
    }
    create_row(&caller, &state, &new, &new.workflow).await
}

/// Stores a checked trigger with a new secret, which the answer carries once.
async fn create_row(
    caller: &Caller,
    state: &AppState,
    new: &NewTrigger,
    workflow: &str,
) -> Result<(StatusCode, Json<CreatedTrigger>), ApiError> {
    let secret = new_token();
    let hash = hash_token(&secret);
    let prefix = token_prefix(&secret);
    let row = NewTriggerRow {
        name: &new.name,
        workflow,
        workflow_version: new.version,
        inputs: serde_json::to_string(&new.inputs).map_err(|e| ApiError::Store(e.into()))?,
        auth: new.auth.as_str(),
        secret: (new.auth == TriggerAuth::Hmac).then_some(secret.as_str()),
        secret_hash: (new.auth == TriggerAuth::Bearer).then_some(hash.as_str()),
        prefix: &prefix,
        created_by: &caller.0.name,
        event_key: new.event.as_ref().map(|e| e.key.as_str()),
        event_prefix: new.event.as_ref().map(|e| e.prefix.as_str()),
    };
    let trigger = view(state.store.create_trigger(&row, now_us()).await?);
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "trigger.created",
        Some(format!("trigger:{}", trigger.id)),
        json!({ "name": trigger.name, "workflow": trigger.workflow, "event": trigger.event, "auth": trigger.auth }),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedTrigger { trigger, secret }),
    ))
}

async fn remove(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    state
        .store
        .delete_trigger(id)
        .await
        .map_err(not_found(format!("trigger {id}")))?;
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "trigger.deleted",
        Some(format!("trigger:{id}")),
        Value::Null,
    )
    .await;
    Ok(Json(json!({ "id": id, "deleted": true })))
}

/// Whether the delivery proves it holds the trigger's secret.
fn proven(t: &TriggerRow, headers: &HeaderMap, body: &[u8], now_s: i64) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match TriggerAuth::parse(&t.auth) {
        Some(TriggerAuth::Bearer) => {
            let given = header("authorization").and_then(|v| v.strip_prefix("Bearer "));
            matches!((given, &t.secret_hash), (Some(token), Some(hash)) if hash_token(token) == *hash)
        }
        Some(TriggerAuth::Hmac) => {
            let (Some(secret), Some(ts), Some(sig)) = (
                t.secret.as_deref(),
                header("x-drover-timestamp"),
                header("x-drover-signature").and_then(|s| s.strip_prefix("sha256=")),
            ) else {
                return false;
            };
            let Ok(at) = ts.parse::<i64>() else {
                return false;
            };
            if (now_s - at).abs() > HOOK_TIMESTAMP_TOLERANCE_S {
                return false;
            }
            let (Ok(sig), Ok(mut mac)) = (
                hex::decode(sig),
                Hmac::<Sha256>::new_from_slice(secret.as_bytes()),
            ) else {
                return false;
            };
            mac.update(ts.as_bytes());
            mac.update(b".");
            mac.update(body);
            mac.verify_slice(&sig).is_ok()
        }
        None => false,
    }
}

async fn deliver(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let outcome = |o: &'static str| {
        metrics::counter!("drover_hook_deliveries_total", "outcome" => o).increment(1)
    };
    let now = now_us();
    let trigger = state.store.trigger_by_name(&name).await?;
    let Some(t) = trigger.filter(|t| proven(t, &headers, &body, now / 1_000_000)) else {
        outcome("refused");
        tracing::warn!(trigger = %name, "webhook delivery refused: unknown trigger or wrong proof");
        return Err(ApiError::Unauthorized);
    };
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadJson {
            message: e.to_string(),
            field: None,
        })?
    };
    // Parsed here rather than by `parse_json`, so the NUL check it makes
    // for every other body is made here too.
    if let Err(e) = crate::http::extract::refuse_nul(&body, "") {
        outcome("invalid");
        return Err(e);
    }
    if let Some(pointer) = &t.event_key {
        let value = match body.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                outcome("invalid");
                return Err(FieldError::new(
                    pointer.clone(),
                    "the body has no string or number here for the event's key",
                )
                .into());
            }
        };
        let event = drover_protocol::workflow::SendEvent {
            key: format!("{}{value}", t.event_prefix.as_deref().unwrap_or_default()),
            data: body,
        };
        let resumed = crate::http::waits::deliver(&state, &event).await?;
        outcome("event");
        state.store.trigger_fired(t.id, now).await?;
        tracing::info!(trigger = %name, key = %event.key, resumed = resumed.len(), "webhook delivered an event");
        return Ok((
            StatusCode::OK,
            Json(json!(drover_protocol::workflow::EventDelivered { resumed })),
        ));
    }
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .map_err(|_| FieldError::new("Idempotency-Key", "must be visible ASCII"))?;
            check_idempotency_key("Idempotency-Key", key)?;
            Some(format!("{HOOK_KEY_PREFIX}{}:{key}", t.id))
        }
    };
    let map: BTreeMap<String, String> = serde_json::from_str(&t.inputs).unwrap_or_default();
    let mut inputs = Map::new();
    for (input, pointer) in &map {
        if let Some(v) = body.pointer(pointer) {
            inputs.insert(input.clone(), v.clone());
        }
    }
    let wf = state
        .store
        .workflow(&t.workflow, t.workflow_version)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "trigger {name:?} starts workflow {:?}, which does not exist (any more)",
                t.workflow
            ))
        })?;
    let def: workflow::Definition =
        serde_json::from_value(wf.definition.clone()).map_err(|e| ApiError::Store(e.into()))?;
    let inputs = workflow::validate_inputs(&def, inputs)
        .inspect_err(|_| outcome("invalid"))
        .map_err(ApiError::invalid_all)?;
    let (run_id, created) = state
        .store
        .start_run(
            &wf,
            &inputs,
            &format!("trigger:{name}"),
            key.as_deref(),
            now,
        )
        .await?;
    if created {
        outcome("started");
        state.store.trigger_fired(t.id, now).await?;
        metrics::counter!("drover_runs_started_total").increment(1);
        state
            .effects
            .after(
                Change::new()
                    .advance([run_id])
                    .event("run", Some(run_id), Some("running")),
            )
            .await;
        tracing::info!(trigger = %name, run_id, "webhook started a run");
    } else {
        outcome("repeated");
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(HookDelivered { run_id, created }))))
}
