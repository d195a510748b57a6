//! `POST /api/v1/events`: an event resumes the workflow steps waiting for
//! its correlation key (`wait` steps with `event:`), with its data.

use axum::extract::State;
use axum::Json;
use drover_engine::store::WaitStore;
use drover_engine::time::now_us;
use drover_engine::FieldError;
use drover_protocol::limits::MAX_EVENT_DATA_BYTES;
use drover_protocol::workflow::{EventDelivered, ResumedStep, SendEvent};

use crate::error::ApiError;
use crate::http::auth::Caller;
use crate::http::extract::ApiJson;
use crate::services::effects::Change;
use crate::state::AppState;

/// Operators and admins send events; the runs it resumes are advanced
/// before the answer, so a client sees them moving.
pub async fn send_event(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(event): ApiJson<SendEvent>,
) -> Result<Json<EventDelivered>, ApiError> {
    caller.require_operator()?;
    let resumed = deliver(&state, &event).await?;
    tracing::info!(key = %event.key, resumed = resumed.len(), by = %caller.0.name, "event sent");
    Ok(Json(EventDelivered { resumed }))
}

/// Checks an event and resumes its waits: shared by the API and webhook
/// triggers of kind event.
pub async fn deliver(state: &AppState, event: &SendEvent) -> Result<Vec<ResumedStep>, ApiError> {
    drover_engine::domain::check_event_key(&event.key)
        .map_err(|why| FieldError::new("key", why))?;
    if event.data.to_string().len() > MAX_EVENT_DATA_BYTES {
        return Err(FieldError::new(
            "data",
            format!("must be at most {MAX_EVENT_DATA_BYTES} bytes as JSON"),
        )
        .into());
    }
    let resumed = state
        .store
        .send_event(&event.key, &event.data, now_us())
        .await?;
    let runs: Vec<i64> = resumed.iter().map(|(run, _)| *run).collect();
    if !runs.is_empty() {
        metrics::counter!("drover_wait_events_resumed_total").increment(runs.len() as u64);
        state.effects.after(Change::new().advance(runs)).await;
    }
    Ok(resumed
        .into_iter()
        .map(|(run_id, step_id)| ResumedStep { run_id, step_id })
        .collect())
}
