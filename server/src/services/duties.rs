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

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover_engine::store::{QueueStore, RunStore, WaitStore};
use drover_engine::time::now_us;
use drover_engine::Store;

use super::effects::{Change, Effects};

const LEADERSHIP: &str = "duties";

/// The duties of one instance and what they use.
pub struct Duties {
    pub store: Store,
    pub effects: Arc<Effects>,
    /// This instance's name in the leadership table.
    pub instance_id: String,
    /// Whether this instance leads now (shown in `/status`).
    pub leader: Arc<AtomicBool>,
    pub interval: Duration,
    pub heartbeat_timeout: Duration,
    pub leader_ttl: Duration,
}

impl Duties {
    /// Runs until `shutdown` resolves, then resigns leadership so another
    /// instance takes over at once instead of after the TTL. A sweep under
    /// way when `shutdown` resolves is abandoned (its transactions are
    /// atomic), so a stopping server does not declare agents dead.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leading_since: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            let round = async {
                if self.elect().await {
                    if leading_since.is_none() {
                        // Finish what a server that died mid-advance left behind.
                        self.effects.advance_all_active().await;
                    }
                    let since = *leading_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= self.heartbeat_timeout {
                        self.sweep().await;
                    }
                } else {
                    leading_since = None;
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = round => {}
            }
        }
        self.resign().await;
    }

    /// Gives leadership up, if held, so no sweep of this instance runs on.
    async fn resign(&self) {
        if self.leader.swap(false, Ordering::SeqCst) {
            if let Err(e) = self.store.resign(LEADERSHIP, &self.instance_id).await {
                tracing::warn!(error = %e, "could not resign leadership");
            }
            metrics::gauge!("drover_leader").set(0.0);
            tracing::info!("resigned leadership");
        }
    }

    async fn elect(&self) -> bool {
        let ttl = self.leader_ttl.as_micros() as i64;
        let leading = match self
            .store
            .try_lead(LEADERSHIP, &self.instance_id, now_us(), ttl)
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "leadership check failed");
                false
            }
        };
        let was = self.leader.swap(leading, Ordering::SeqCst);
        if leading != was {
            if leading {
                tracing::info!(instance = %self.instance_id, "became leader: running periodic duties");
            } else {
                tracing::warn!(instance = %self.instance_id, "lost leadership");
            }
        }
        metrics::gauge!("drover_leader").set(if leading { 1.0 } else { 0.0 });
        leading
    }

    /// Wakes due sleeps and times out event waits, then advances their
    /// runs; a backlog is taken in pages, each its own transaction.
    async fn resume_waits(&self, now: i64) {
        const PAGE: i64 = 500;
        for _ in 0..20 {
            match self.store.resume_due_waits(now, PAGE).await {
                Ok(runs) if runs.is_empty() => return,
                Ok(runs) => {
                    tracing::debug!(runs = runs.len(), "waits resumed");
                    let n = runs.len();
                    self.effects.after(Change::new().advance(runs)).await;
                    if (n as i64) < PAGE {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "resuming due waits failed");
                    return;
                }
            }
        }
    }

    async fn sweep(&self) {
        let now = now_us();
        let silent_since = now - self.heartbeat_timeout.as_micros() as i64;
        match self
            .store
            .mark_silent_agents_offline(silent_since, now)
            .await
        {
            Ok(s) if !s.is_empty() => {
                tracing::warn!(agents = ?s.agents_offline, requeued = s.tasks_requeued, failed = s.tasks_failed, "agents went silent: marked offline, their tasks requeued");
                metrics::counter!("drover_agents_lost_total")
                    .increment(s.agents_offline.len() as u64);
                metrics::counter!("drover_tasks_requeued_total").increment(s.tasks_requeued);
                let mut change = Change::new().wake().event("tasks", None, None);
                for agent in &s.agents_offline {
                    change = change.event("agent", Some(*agent), Some("offline"));
                }
                self.effects.after(change.advance(s.runs)).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "offline sweep failed"),
        }
        match self.store.expire_leases(now).await {
            Ok(s) if !s.is_empty() => {
                tracing::warn!(
                    requeued = s.tasks_requeued,
                    failed = s.tasks_failed,
                    "expired leases and timed-out tasks handled"
                );
                metrics::counter!("drover_tasks_requeued_total").increment(s.tasks_requeued);
                // A step whose last attempt timed out fails its run.
                self.effects
                    .after(Change::new().wake().advance(s.runs))
                    .await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "lease sweep failed"),
        }
        match self.store.expire_approvals(now).await {
            Ok(runs) if !runs.is_empty() => {
                tracing::info!(runs = ?runs, "approvals timed out");
                self.effects.after(Change::new().advance(runs)).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "approval timeout sweep failed"),
        }
        self.resume_waits(now).await;
    }
}
