//! `/api/v1/queues`: queue health per task type and per concurrency key
//! (depth, oldest wait, submit→start latency, lost leases), with the
//! online agents able to take each type. Anyone signed in reads it.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use drover_engine::store::{QueueHealthStore, QueueStore};
use drover_engine::time::now_us;
use drover_engine::FieldError;
use drover_protocol::api::{AgentStatus, AgentView};
use drover_protocol::health::{
    QueueHealth, TypeHealth, DEFAULT_HEALTH_WINDOW_S, MAX_HEALTH_WINDOW_S, MIN_HEALTH_WINDOW_S,
    QUEUE_HEALTH_ROWS,
};
use serde::Deserialize;

use crate::error::ApiError;
use crate::http::auth::Caller;
use crate::http::extract::ApiQuery;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/queues", get(health))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthQuery {
    /// Seconds of history for the latency and lease figures.
    window: Option<i64>,
}

async fn health(
    _caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<HealthQuery>,
) -> Result<Json<QueueHealth>, ApiError> {
    let window_s = q.window.unwrap_or(DEFAULT_HEALTH_WINDOW_S);
    if !(MIN_HEALTH_WINDOW_S..=MAX_HEALTH_WINDOW_S).contains(&window_s) {
        return Err(FieldError::new(
            "window",
            format!("must be between {MIN_HEALTH_WINDOW_S} and {MAX_HEALTH_WINDOW_S} seconds"),
        )
        .into());
    }
    let (mut health, agents) = tokio::try_join!(
        state.store.queue_health(now_us(), window_s * 1_000_000),
        state.store.list_agents()
    )?;
    with_agents(&mut health, &agents);
    Ok(Json(health))
}

/// Adds to each type the online agents that declared it and their free
/// slots, then lists (while there is room) the types online agents handle
/// that have no work now. Labels are not matched here: a task needing a
/// label no such agent has is explained on its own page.
fn with_agents(health: &mut QueueHealth, agents: &[AgentView]) {
    let online: Vec<&AgentView> = agents
        .iter()
        .filter(|a| a.status == AgentStatus::Online)
        .collect();
    let mut idle: Vec<&str> = online
        .iter()
        .flat_map(|a| a.task_types.iter().map(String::as_str))
        .filter(|t| !health.types.iter().any(|h| h.task_type == *t))
        .collect();
    idle.sort_unstable();
    idle.dedup();
    for t in idle {
        if health.types.len() >= QUEUE_HEALTH_ROWS {
            break;
        }
        health.types.push(TypeHealth {
            task_type: t.to_string(),
            ..TypeHealth::default()
        });
    }
    for h in &mut health.types {
        for a in online
            .iter()
            .filter(|a| a.task_types.contains(&h.task_type))
        {
            h.agents += 1;
            h.free_slots += (a.capacity - a.running).max(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(
        name: &str,
        status: AgentStatus,
        types: &[&str],
        capacity: i64,
        running: i64,
    ) -> AgentView {
        AgentView {
            id: 1,
            name: name.into(),
            hostname: "h".into(),
            version: "v".into(),
            task_types: types.iter().map(|t| t.to_string()).collect(),
            labels: vec![],
            capacity,
            running,
            load: 0.0,
            status,
            drained: false,
            registered_at_us: 0,
            last_heartbeat_at_us: 0,
        }
    }

    #[test]
    fn online_agents_count_for_the_types_they_declared() {
        let mut health = QueueHealth {
            types: vec![
                TypeHealth {
                    task_type: "echo".into(),
                    queued: 2,
                    ..TypeHealth::default()
                },
                TypeHealth {
                    task_type: "resize".into(),
                    queued: 1,
                    ..TypeHealth::default()
                },
            ],
            ..QueueHealth::default()
        };
        let agents = [
            agent("a", AgentStatus::Online, &["echo", "sleep"], 4, 1),
            agent("b", AgentStatus::Online, &["echo"], 2, 3),
            agent("c", AgentStatus::Draining, &["echo", "resize"], 4, 0),
            agent("d", AgentStatus::Offline, &["resize"], 4, 0),
        ];
        with_agents(&mut health, &agents);
        let echo = &health.types[0];
        assert_eq!((echo.agents, echo.free_slots), (2, 3));
        assert!(health.types[1].stranded());
        assert_eq!(health.types[2].task_type, "sleep");
        assert_eq!((health.types[2].agents, health.types[2].free_slots), (1, 3));
        assert_eq!(health.types.len(), 3);
    }
}
