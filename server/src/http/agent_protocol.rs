//! The agent protocol, `/api/v1/agent/...` (see `docs/PROTOCOL.md`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use drover_engine::domain::AgentSpec;
use drover_engine::logs::LogBatch;
use drover_engine::store::{
    AgentSession, Appended, Applied, Claim, LogStore, QueueStore, Refill, Registration, RunStore,
};
use drover_engine::time::now_us;
use drover_engine::FieldError;
use drover_protocol::agent::{
    AckStatus, ClaimRequest, ClaimResponse, HeartbeatRequest, HeartbeatResponse, LogAck,
    LogsRequest, LogsResponse, Outcome, RegisterRequest, RegisterResponse, ResultAck,
    ResultsRequest, ResultsResponse, TaskResult,
};
use drover_protocol::api::TaskStatus;
use serde_json::Value;

use crate::error::ApiError;
use crate::http::auth::{Agent, Enrollment};
use crate::http::extract::ApiJson;
use crate::services::effects::Change;
use crate::state::AppState;
use crate::tokens::{hash_token, new_token};

/// Most results in one request.
const MAX_RESULTS: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/agent/register", post(register))
        .route("/agent/heartbeat", post(heartbeat))
        .route("/agent/claim", post(claim))
        .route("/agent/results", post(results))
        .route("/agent/logs", post(logs))
        .route("/agent/deregister", post(deregister))
}

async fn register(
    Enrollment(enrollment): Enrollment,
    State(state): State<AppState>,
    ApiJson(mut req): ApiJson<RegisterRequest>,
) -> Result<Json<RegisterResponse>, ApiError> {
    let agent_key = req.agent_key.take();
    let resuming = std::mem::take(&mut req.resuming);
    let spec = AgentSpec::parse(req)?;
    crate::credentials::check_enrollment_scope(&enrollment, &spec)?;
    let key_hash = agent_key
        .as_deref()
        .map(crate::credentials::agent_key_hash)
        .transpose()?;
    if resuming.len() > MAX_RESULTS {
        return Err(FieldError::new("resuming", format!("at most {MAX_RESULTS} leases")).into());
    }
    let token = new_token();
    let registered = state
        .store
        .register_agent(
            &Registration {
                spec: &spec,
                session_hash: &hash_token(&token),
                key_hash: key_hash.as_deref(),
                enrollment_id: Some(enrollment.id),
                resuming: &resuming,
            },
            now_us(),
        )
        .await?;
    let agent_id = registered.agent_id;
    state.learn_task_types(spec.task_types.iter().cloned());
    state.forget_registered_agents();
    tracing::info!(agent_id, name = %spec.name, host = %spec.hostname, capacity = spec.capacity,
        types = ?spec.task_types, enrollment = %enrollment.name, resumed = registered.resumed,
        requeued = registered.sweep.tasks_requeued, "agent registered");
    metrics::counter!("drover_agents_registered_total").increment(1);
    crate::audit::record(
        &state.store,
        &crate::audit::agent_actor(agent_id),
        if registered.resumed {
            "agent.resumed"
        } else {
            "agent.registered"
        },
        Some(crate::audit::agent_actor(agent_id)),
        serde_json::json!({
            "name": spec.name, "hostname": spec.hostname, "enrollment_token": enrollment.name,
            "task_types": spec.task_types, "labels": spec.labels, "capacity": spec.capacity,
            "requeued": registered.sweep.tasks_requeued,
        }),
    )
    .await;
    let mut change = Change::new().event("agent", Some(agent_id), Some("online"));
    if !registered.sweep.is_empty() {
        change = change
            .event("tasks", None, None)
            .advance(registered.sweep.runs)
            .wake();
    }
    state.effects.after(change).await;
    let config = &state.config;
    Ok(Json(RegisterResponse {
        agent_id,
        session_token: token,
        heartbeat_interval_ms: config.heartbeat_interval.as_millis() as u64,
        heartbeat_timeout_ms: config.heartbeat_timeout.as_millis() as u64,
        max_claim_wait_ms: config.max_claim_wait.as_millis() as u64,
        eager_dispatch: true,
    }))
}

async fn heartbeat(
    Agent(agent): Agent,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let reply = state
        .store
        .heartbeat(
            agent.id,
            &req.running,
            now_us(),
            state.dispatcher.lease_ttl_us(),
            state.config.heartbeat_timeout.as_micros() as i64,
        )
        .await?;
    if !reply.cancel.is_empty() {
        tracing::info!(agent_id = agent.id, tasks = ?reply.cancel, "telling agent to stop tasks it no longer holds");
    }
    Ok(Json(reply))
}

/// Long-poll: parks until the dispatcher hands this agent work or the wait
/// runs out.
async fn claim(
    Agent(agent): Agent,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> Result<Json<ClaimResponse>, ApiError> {
    state.queue_requests.fetch_add(1, Ordering::Relaxed);
    if req.max_tasks == 0 {
        return Err(FieldError::new("max_tasks", "must be at least 1").into());
    }
    if agent.status != drover_protocol::api::AgentStatus::Online {
        return Ok(Json(ClaimResponse {
            tasks: vec![],
            drain: true,
        }));
    }
    // The agent's own count of free slots may be ahead of ours while its
    // results are in flight, so the claim is parked even when we think the
    // agent is full: the store enforces the capacity when it claims, and the
    // results that free the slots wake the dispatcher.
    let max_tasks = i64::from(req.max_tasks).min(agent.capacity);
    let wait = Duration::from_millis(req.wait_ms).min(state.config.max_claim_wait);
    let claim = if wait.is_zero() {
        state
            .store
            .claim(
                agent.id,
                max_tasks,
                now_us(),
                state.dispatcher.lease_ttl_us(),
            )
            .await?
    } else {
        let load = agent.running as f64 / agent.capacity as f64;
        let mut ticket = state
            .dispatcher
            .park(agent.id, max_tasks, load, signature(&agent));
        match tokio::time::timeout(wait, &mut ticket.reply).await {
            Ok(Ok(claim)) => claim,
            _ => Claim::default(),
        }
    };
    if wait.is_zero() {
        metrics::counter!("drover_tasks_claimed_total").increment(claim.tasks.len() as u64);
        state.dispatcher.starts.record(&claim.tasks, now_us());
    }
    Ok(Json(ClaimResponse {
        tasks: claim.tasks,
        drain: claim.drain,
    }))
}

/// Records a batch of results. Results under a stale lease are refused and
/// change nothing; when every result of the request is stale the answer is
/// 409 (the body still lists each result's ack).
async fn results(
    Agent(agent): Agent,
    State(state): State<AppState>,
    ApiJson(mut req): ApiJson<ResultsRequest>,
) -> Result<(StatusCode, Json<ResultsResponse>), ApiError> {
    state.queue_requests.fetch_add(1, Ordering::Relaxed);
    if req.results.len() > MAX_RESULTS {
        return Err(FieldError::new(
            "results",
            format!("at most {MAX_RESULTS} results per request"),
        )
        .into());
    }
    for result in &mut req.results {
        bound_result(result, state.config.max_output_bytes);
    }
    let refill = eager_refill(&state, &agent, req.want, req.results.len());
    let started = std::time::Instant::now();
    let mut recorded = state
        .store
        .complete_and_advance(agent.id, &req.results, &state.scheduling, now_us(), refill)
        .await?;
    metrics::histogram!("drover_complete_seconds").record(started.elapsed().as_secs_f64());
    let completed = &recorded.completed;
    let mut acks = Vec::with_capacity(completed.applied.len());
    let mut stale = 0u64;
    let mut foreign = Vec::new();
    for (r, a) in req.results.iter().zip(&completed.applied) {
        let status = match a {
            Applied::Yes(s) => {
                metrics::counter!("drover_task_results_total", "status" => s.as_str()).increment(1);
                // How long handlers run, by the agent's clock: with the
                // results' rate and the fleet's slots it tells the time
                // slots spend between tasks.
                if let (Some(start), Some(end)) = (r.started_at_us, r.finished_at_us) {
                    if end >= start {
                        metrics::histogram!("drover_task_run_seconds")
                            .record((end - start) as f64 / 1e6);
                    }
                }
                AckStatus::Accepted
            }
            Applied::Stale => {
                stale += 1;
                AckStatus::Stale
            }
            // Answered like a stale lease: the sender learns nothing about
            // whose task it is.
            Applied::NotHolder => {
                stale += 1;
                foreign.push(r.task_id);
                AckStatus::Stale
            }
        };
        acks.push(ResultAck {
            task_id: r.task_id,
            status,
        });
    }
    if stale > 0 {
        tracing::info!(
            agent_id = agent.id,
            stale,
            "refused results under stale leases"
        );
        metrics::counter!("drover_task_results_stale_total").increment(stale);
    }
    if !foreign.is_empty() {
        tracing::warn!(agent_id = agent.id, name = %agent.name, tasks = ?foreign,
            "refused results for tasks another agent holds");
        metrics::counter!("drover_task_results_refused_total", "reason" => "not_holder")
            .increment(foreign.len() as u64);
        crate::audit::record(
            &state.store,
            &crate::audit::agent_actor(agent.id),
            "results.refused",
            None,
            serde_json::json!({ "reason": "another agent holds the lease", "tasks": foreign }),
        )
        .await;
    }
    let accepted = acks.len() - stale as usize;
    let tasks = std::mem::take(&mut recorded.refill.tasks);
    if !tasks.is_empty() {
        metrics::counter!("drover_tasks_claimed_total").increment(tasks.len() as u64);
        metrics::counter!("drover_tasks_eager_dispatched_total").increment(tasks.len() as u64);
        state.dispatcher.starts.record(&tasks, now_us());
    }
    let mut change = Change::new();
    if accepted > 0 {
        change = change.event("tasks", None, None);
    }
    state.effects.announce(&recorded.advanced);
    // Slots were freed (and failed tasks may be requeued): hand out work.
    // A refill already claimed for the freed slots, leaving nothing this
    // agent could take, so only requeued tasks call for a round (new tasks
    // of advanced runs start their own, `announce`).
    let requeued = recorded
        .completed
        .applied
        .iter()
        .any(|a| matches!(a, Applied::Yes(TaskStatus::Queued)));
    // An agent that asked for fewer tasks than it has free slots may have
    // room left for its parked claim.
    let room_left = refill.is_some_and(|r| {
        recorded.refill.running < recorded.refill.capacity && tasks.len() as i64 >= r.max_tasks
    });
    if !recorded.refilled || requeued || room_left {
        change = change.wake();
    }
    state.effects.after(change.advance(recorded.left)).await;
    let status = if stale > 0 && stale as usize == acks.len() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(ResultsResponse {
            results: acks,
            tasks,
        }),
    ))
}

/// Appends what the handlers of the agent's running tasks printed. Only
/// the agent holding a task, under the lease it names, may add to its log,
/// and only while the task runs; a batch for any other task is refused
/// (`stale`) and writes nothing, and a request whose every batch is refused
/// is answered 409. One `task_log` event per task written, so dashboards
/// fetch the new lines.
async fn logs(
    Agent(agent): Agent,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LogsRequest>,
) -> Result<(StatusCode, Json<LogsResponse>), ApiError> {
    let batches = LogBatch::parse_all(req)?;
    let appended = state
        .store
        .append_logs(
            agent.id,
            &batches,
            state.config.max_log_lines as i64,
            now_us(),
        )
        .await?;
    let mut acks = Vec::with_capacity(batches.len());
    let mut change = Change::new();
    let mut foreign = Vec::new();
    let mut lines = 0u64;
    for (batch, outcome) in batches.iter().zip(&appended) {
        let status = match outcome {
            Appended::Yes => {
                lines += batch.lines.len() as u64;
                if !batch.lines.is_empty() || batch.dropped_by_agent > 0 {
                    change = change.event("task_log", Some(batch.task_id), None);
                }
                AckStatus::Accepted
            }
            Appended::Stale => AckStatus::Stale,
            // Answered like a stale lease: the sender learns nothing about
            // whose task it is.
            Appended::NotHolder => {
                foreign.push(batch.task_id);
                AckStatus::Stale
            }
        };
        acks.push(LogAck {
            task_id: batch.task_id,
            status,
        });
    }
    metrics::counter!("drover_log_lines_total").increment(lines);
    if !foreign.is_empty() {
        tracing::warn!(agent_id = agent.id, name = %agent.name, tasks = ?foreign,
            "refused log lines for tasks another agent holds");
        metrics::counter!("drover_log_batches_refused_total", "reason" => "not_holder")
            .increment(foreign.len() as u64);
        crate::audit::record(
            &state.store,
            &crate::audit::agent_actor(agent.id),
            "logs.refused",
            None,
            serde_json::json!({ "reason": "another agent holds the lease", "tasks": foreign }),
        )
        .await;
    }
    state.effects.after(change).await;
    let refused = acks.iter().all(|a| a.status == AckStatus::Stale);
    let status = if refused && !acks.is_empty() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    Ok((status, Json(LogsResponse { tasks: acks })))
}

/// Agents with the same task types and labels compete for the same tasks.
fn signature(agent: &AgentSession) -> String {
    format!("{:?}|{:?}", agent.task_types, agent.labels)
}

/// Eager dispatch (`ResultsRequest::want`): the results' write also
/// claims work for the slots they free, which the answer carries, so the
/// agent's slots are refilled without a dispatcher round. The store caps it
/// at the agent's free capacity as for any claim. It yields to a
/// less-loaded agent of the same kind that is parked waiting for work, so
/// the least-loaded agent still gets work first.
fn eager_refill(
    state: &AppState,
    agent: &AgentSession,
    want: u32,
    reported: usize,
) -> Option<Refill> {
    if want == 0 || agent.status != drover_protocol::api::AgentStatus::Online {
        return None;
    }
    let load = (agent.running - reported as i64).max(0) as f64 / agent.capacity as f64;
    if state
        .dispatcher
        .less_loaded_waiting(agent.id, &signature(agent), load)
    {
        return None;
    }
    Some(Refill {
        max_tasks: i64::from(want).min(agent.capacity),
        lease_ttl_us: state.dispatcher.lease_ttl_us(),
    })
}

async fn deregister(
    Agent(agent): Agent,
    State(state): State<AppState>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let _ = body;
    let sweep = state.store.deregister_agent(agent.id, now_us()).await?;
    tracing::info!(agent_id = agent.id, name = %agent.name, requeued = sweep.tasks_requeued, "agent deregistered");
    let requeued = sweep.tasks_requeued;
    let change = Change::new()
        .wake()
        .event("agent", Some(agent.id), Some("deregistered"))
        .advance(sweep.runs);
    state.effects.after(change).await;
    Ok(Json(
        serde_json::json!({ "ok": true, "requeued": requeued }),
    ))
}

/// Longest error message or release reason stored; the rest is cut.
const MAX_ERROR_BYTES: usize = 16 * 1024;

/// Keeps what an agent reports within what the store takes: an output over
/// `max_output_bytes` turns the attempt into a failure that says so (not
/// retried: the handler would only make it again), and long error texts
/// are cut.
fn bound_result(result: &mut TaskResult, max_output_bytes: usize) {
    match &mut result.outcome {
        Outcome::Succeeded { output } => {
            let size = json_size(output);
            if size > max_output_bytes {
                result.outcome = Outcome::Failed {
                    error: format!(
                        "output of {size} bytes exceeds the limit of {max_output_bytes} bytes (DROVER_MAX_OUTPUT_BYTES)"
                    ),
                    retryable: false,
                };
            }
        }
        Outcome::Failed { error: text, .. } | Outcome::Released { reason: text } => {
            cut_to(text, MAX_ERROR_BYTES)
        }
    }
}

/// The length of `value` as JSON, counted without building the text: this
/// runs on every result, on the results path.
fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
fn cut_to(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str("… (cut)");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn succeeded(output: Value) -> TaskResult {
        TaskResult {
            task_id: 1,
            lease_token: 1,
            outcome: Outcome::Succeeded { output },
            started_at_us: None,
            finished_at_us: None,
        }
    }

    #[test]
    fn an_output_over_the_limit_fails_the_attempt_for_good() {
        let mut r = succeeded(Value::String("x".repeat(100)));
        bound_result(&mut r, 50);
        match r.outcome {
            Outcome::Failed { error, retryable } => {
                assert!(!retryable);
                assert!(error.contains("exceeds the limit of 50 bytes"), "{error}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        let mut small = succeeded(Value::String("x".into()));
        bound_result(&mut small, 50);
        assert!(matches!(small.outcome, Outcome::Succeeded { .. }));
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let mut text = "é".repeat(MAX_ERROR_BYTES);
        cut_to(&mut text, MAX_ERROR_BYTES);
        assert!(text.len() <= MAX_ERROR_BYTES + "… (cut)".len());
        assert!(text.ends_with("… (cut)"));
    }
}
