//! Outgoing notifications (`/api/v1/notifications`). Admins manage rules:
//! a rule's URL receives what Drover knows about failures, and is often a
//! credential itself (a Slack webhook URL), so it is shown back only as
//! its origin. Operators read the deliveries and their status; the leader's
//! loops (`services/notifications`) do the sending.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_engine::notification::{test_message, url_origin, RuleInput, RuleSpec};
use drover_engine::store::{
    DeliveryFilter, DeliveryRow, NewDelivery, NotificationRuleDef, NotificationRuleRow,
    NotificationStore,
};
use drover_engine::time::now_us;
use drover_engine::FieldError;
use drover_protocol::limits::MAX_DELIVERIES_LISTED;
use drover_protocol::notification::{
    CreatedNotificationRule, DeliveryList, DeliveryStatus, DeliveryView, NewNotificationRule,
    NotificationRuleChange, NotificationRuleList, NotificationRuleView,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{not_found, ApiError};
use crate::http::auth::Caller;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::services::notifications::EVENT_KIND;
use crate::state::AppState;
use crate::tokens::{new_token, token_prefix};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/notifications/rules", get(list_rules).post(create_rule))
        .route(
            "/notifications/rules/{id}",
            get(get_rule).patch(change_rule).delete(remove_rule),
        )
        .route("/notifications/rules/{id}/test", post(test_rule))
        .route("/notifications/deliveries", get(list_deliveries))
}

fn rule_view(r: NotificationRuleRow) -> NotificationRuleView {
    NotificationRuleView {
        events: r.events(),
        url: url_origin(&r.url),
        signed: r.secret.is_some(),
        id: r.id,
        name: r.name,
        workflow: r.workflow,
        task_type: r.task_type,
        secret_prefix: r.prefix,
        enabled: r.enabled,
        created_by: r.created_by,
        updated_by: r.updated_by,
        created_at_us: r.created_at,
        updated_at_us: r.updated_at,
    }
}

fn delivery_view(d: DeliveryRow, max_attempts: i64) -> DeliveryView {
    DeliveryView {
        id: d.id,
        rule_id: d.rule_id,
        rule: d.rule_name,
        event: d.event,
        event_at_us: d.event_at,
        summary: d.summary,
        status: DeliveryStatus::parse(&d.status).unwrap_or(DeliveryStatus::Pending),
        attempts: d.attempts,
        max_attempts,
        next_attempt_at_us: d.next_attempt_at,
        last_attempt_at_us: d.last_attempt_at,
        last_status_code: d.last_status_code,
        last_error: d.last_error,
        delivered_at_us: d.delivered_at,
        created_at_us: d.created_at,
    }
}

/// The checked definition as the store writes it.
fn def_of(spec: &RuleSpec, enabled: bool) -> NotificationRuleDef<'_> {
    let events: Vec<&str> = spec.events.iter().map(|e| e.as_str()).collect();
    NotificationRuleDef {
        name: &spec.name,
        events: serde_json::to_string(&events).unwrap_or_else(|_| "[]".into()),
        workflow: spec.workflow.as_deref(),
        task_type: spec.task_type.as_deref(),
        url: &spec.url,
        enabled,
    }
}

fn rule_changed(state: &AppState) {
    state.events.publish(EVENT_KIND, None, Some("rule"));
}

async fn list_rules(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<NotificationRuleList>, ApiError> {
    caller.require_admin()?;
    let rules = state.store.notification_rules().await?;
    Ok(Json(NotificationRuleList {
        rules: rules.into_iter().map(rule_view).collect(),
    }))
}

async fn get_rule(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<NotificationRuleView>, ApiError> {
    caller.require_admin()?;
    let rule = state
        .store
        .notification_rule(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("notification rule {id}")))?;
    Ok(Json(rule_view(rule)))
}

async fn create_rule(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewNotificationRule>,
) -> Result<(StatusCode, Json<CreatedNotificationRule>), ApiError> {
    caller.require_admin()?;
    let spec = RuleSpec::parse(
        RuleInput {
            name: new.name,
            events: new.events,
            workflow: new.workflow,
            task_type: new.task_type,
            url: new.url,
        },
        state.config.notify_allow_private,
    )?;
    let secret = new.sign.then(new_token);
    let prefix = secret.as_deref().map(token_prefix);
    let row = state
        .store
        .create_notification_rule(
            &def_of(&spec, new.enabled),
            secret.as_deref(),
            prefix.as_deref(),
            &caller.0.name,
            now_us(),
        )
        .await?;
    let rule = rule_view(row);
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "notification_rule.created",
        Some(format!("notification_rule:{}", rule.id)),
        json!({ "name": rule.name, "events": rule.events, "url": rule.url,
                "workflow": rule.workflow, "task_type": rule.task_type,
                "signed": rule.signed, "enabled": rule.enabled }),
    )
    .await;
    rule_changed(&state);
    Ok((
        StatusCode::CREATED,
        Json(CreatedNotificationRule { rule, secret }),
    ))
}

async fn change_rule(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    ApiJson(change): ApiJson<NotificationRuleChange>,
) -> Result<Json<NotificationRuleView>, ApiError> {
    caller.require_admin()?;
    let old = state
        .store
        .notification_rule(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("notification rule {id}")))?;
    let mut changed: Vec<&str> = Vec::new();
    for (field, given) in [
        ("name", change.name.is_some()),
        ("events", change.events.is_some()),
        ("workflow", change.workflow.is_some()),
        ("task_type", change.task_type.is_some()),
        ("url", change.url.is_some()),
        ("enabled", change.enabled.is_some()),
    ] {
        if given {
            changed.push(field);
        }
    }
    let enabled = change.enabled.unwrap_or(old.enabled);
    let spec = RuleSpec::parse(
        RuleInput {
            name: change.name.unwrap_or_else(|| old.name.clone()),
            events: change.events.unwrap_or_else(|| old.events()),
            workflow: change.workflow.or_else(|| old.workflow.clone()),
            task_type: change.task_type.or_else(|| old.task_type.clone()),
            url: change.url.unwrap_or_else(|| old.url.clone()),
        },
        state.config.notify_allow_private,
    )?;
    let row = state
        .store
        .update_notification_rule(id, &def_of(&spec, enabled), &caller.0.name, now_us())
        .await
        .map_err(not_found(format!("notification rule {id}")))?;
    let rule = rule_view(row);
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "notification_rule.changed",
        Some(format!("notification_rule:{id}")),
        json!({ "name": rule.name, "changed": changed, "events": rule.events, "url": rule.url,
                "workflow": rule.workflow, "task_type": rule.task_type, "enabled": rule.enabled }),
    )
    .await;
    rule_changed(&state);
    Ok(Json(rule))
}

async fn remove_rule(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let old = state.store.notification_rule(id).await?;
    state
        .store
        .delete_notification_rule(id, now_us())
        .await
        .map_err(not_found(format!("notification rule {id}")))?;
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "notification_rule.deleted",
        Some(format!("notification_rule:{id}")),
        json!({ "name": old.map(|r| r.name) }),
    )
    .await;
    rule_changed(&state);
    Ok(Json(json!({ "id": id, "deleted": true })))
}

/// Queues a test delivery of the rule (also of a disabled one) and answers
/// it as it stands; its status follows on the event stream.
async fn test_rule(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    caller.require_admin()?;
    let rule = state
        .store
        .notification_rule(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("notification rule {id}")))?;
    let now = now_us();
    let key = format!("test:{now}:{}", &new_token()[..8]);
    let m = test_message(&rule.name, &key, now, state.config.public_url.as_deref());
    let new = NewDelivery {
        rule_id: rule.id,
        rule_name: rule.name.clone(),
        event: "test".into(),
        event_key: key,
        event_at: now,
        summary: m.summary,
        payload: m.body,
    };
    let written = state.store.enqueue_deliveries(&[new], None, now).await?;
    let id = written
        .first()
        .copied()
        .ok_or_else(|| ApiError::Conflict("the test delivery was not written".into()))?;
    let delivery = state
        .store
        .delivery(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("delivery {id}")))?;
    crate::audit::record(
        &state.store,
        &caller.0.name,
        "notification_rule.tested",
        Some(format!("notification_rule:{}", rule.id)),
        json!({ "name": rule.name, "delivery": id }),
    )
    .await;
    state
        .events
        .publish(EVENT_KIND, Some(id), Some(DeliveryStatus::Pending.as_str()));
    state.notify_wake.notify_one();
    let max = i64::from(state.config.notify_max_attempts);
    Ok((StatusCode::ACCEPTED, Json(delivery_view(delivery, max))))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryQuery {
    /// A rule's id or name.
    rule: Option<String>,
    status: Option<String>,
    before_id: Option<i64>,
    limit: Option<i64>,
}

async fn list_deliveries(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    caller.require_operator()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_DELIVERIES_LISTED).contains(&limit) {
        return Err(FieldError::new(
            "limit",
            format!("must be between 1 and {MAX_DELIVERIES_LISTED}"),
        )
        .into());
    }
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            DeliveryStatus::parse(s)
                .ok_or_else(|| FieldError::new("status", "one of pending, delivered, failed"))?
                .as_str(),
        ),
    };
    let rule_id = match q.rule.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(r) => match r.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => Some(
                state
                    .store
                    .notification_rules()
                    .await?
                    .into_iter()
                    .find(|x| x.name == r)
                    .map(|x| x.id)
                    .ok_or_else(|| FieldError::new("rule", format!("no rule named {r:?}")))?,
            ),
        },
    };
    let rows = state
        .store
        .deliveries(&DeliveryFilter {
            rule_id,
            status,
            before_id: q.before_id,
            limit,
        })
        .await?;
    let max = i64::from(state.config.notify_max_attempts);
    Ok(Json(DeliveryList {
        deliveries: rows.into_iter().map(|d| delivery_view(d, max)).collect(),
    }))
}
