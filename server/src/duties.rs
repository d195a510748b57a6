//! Leader-only periodic duties: agents silent past the heartbeat timeout go
//! offline and their tasks are requeued; expired leases are requeued; tasks
//! past their timeout fail their attempt.
//!
//! A new leader waits one heartbeat timeout before its first sweep: while no
//! instance led (a restart, a failover) agents may have been unable to
//! heartbeat, and they deserve the time to reconnect before they are
//! declared dead and their tasks (and finished results) thrown away.
//!
//! Leadership is a row in the `leadership` table with an expiry, renewed
//! every duty interval by the holder and taken over by any instance once it
//! has expired (see `QueueStore::try_lead`). With SQLite there is one
//! instance and it always leads; the same code runs.

use std::sync::atomic::Ordering;

use drover_engine::store::{QueueStore, RunStore};
use drover_engine::time::now_us;

use crate::state::AppState;

const LEADERSHIP: &str = "duties";

/// Runs until `shutdown` resolves, then resigns leadership so another
/// instance takes over at once instead of after the TTL.
pub async fn run(state: AppState, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(state.config.duty_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading_since: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        if elect(&state).await {
            if leading_since.is_none() {
                // Finish what a server that died mid-advance left behind.
                crate::advance::all_active(&state).await;
            }
            let since = *leading_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= state.config.heartbeat_timeout {
                sweep(&state).await;
            }
        } else {
            leading_since = None;
        }
    }
    if state.is_leader() {
        if let Err(e) = state.store.resign(LEADERSHIP, &state.instance_id).await {
            tracing::warn!(error = %e, "could not resign leadership");
        }
        state.leader.store(false, Ordering::Relaxed);
        tracing::info!("resigned leadership");
    }
}

async fn elect(state: &AppState) -> bool {
    let ttl = state.config.leader_ttl.as_micros() as i64;
    let leading = match state
        .store
        .try_lead(LEADERSHIP, &state.instance_id, now_us(), ttl)
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "leadership check failed");
            false
        }
    };
    let was = state.leader.swap(leading, Ordering::Relaxed);
    if leading != was {
        if leading {
            tracing::info!(instance = %state.instance_id, "became leader: running periodic duties");
        } else {
            tracing::warn!(instance = %state.instance_id, "lost leadership");
        }
    }
    metrics::gauge!("drover_leader").set(if leading { 1.0 } else { 0.0 });
    leading
}

async fn sweep(state: &AppState) {
    let now = now_us();
    let silent_since = now - state.config.heartbeat_timeout.as_micros() as i64;
    match state
        .store
        .mark_silent_agents_offline(silent_since, now)
        .await
    {
        Ok(s) if !s.is_empty() => {
            tracing::warn!(agents = ?s.agents_offline, requeued = s.tasks_requeued, failed = s.tasks_failed, "agents went silent: marked offline, their tasks requeued");
            metrics::counter!("drover_agents_lost_total").increment(s.agents_offline.len() as u64);
            for agent in &s.agents_offline {
                state.events.publish("agent", Some(*agent), Some("offline"));
            }
            state.events.publish("tasks", None, None);
            metrics::counter!("drover_tasks_requeued_total").increment(s.tasks_requeued);
            state.dispatcher.kick();
            crate::advance::runs(state, s.runs).await;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "offline sweep failed"),
    }
    match state.store.expire_leases(now).await {
        Ok(s) if !s.is_empty() => {
            tracing::warn!(
                requeued = s.tasks_requeued,
                failed = s.tasks_failed,
                "expired leases and timed-out tasks handled"
            );
            metrics::counter!("drover_tasks_requeued_total").increment(s.tasks_requeued);
            state.dispatcher.kick();
            // A step whose last attempt timed out fails its run.
            crate::advance::runs(state, s.runs).await;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "lease sweep failed"),
    }
    match state.store.expire_approvals(now).await {
        Ok(runs) if !runs.is_empty() => {
            tracing::info!(runs = ?runs, "approvals timed out");
            crate::advance::runs(state, runs).await;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "approval timeout sweep failed"),
    }
    match state.store.stats().await {
        Ok(stats) => {
            for (status, n) in [
                ("queued", stats.queued),
                ("running", stats.running),
                ("succeeded", stats.succeeded),
                ("failed", stats.failed),
                ("cancelled", stats.cancelled),
            ] {
                metrics::gauge!("drover_tasks", "status" => status).set(n as f64);
            }
            metrics::gauge!("drover_agents_online").set(stats.agents_online as f64);
        }
        Err(e) => tracing::warn!(error = %e, "stats failed"),
    }
}
