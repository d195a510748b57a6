//! Queue gauges for Prometheus, refreshed by the leader every few seconds:
//! tasks by status and agents online (`stats`), and per task type, from the
//! same figures as the Queues page (`QueueHealthStore`), depth, held, the
//! oldest due task's wait, and the online agents that take the type. Alert rules and the Grafana dashboard in
//! `deploy/` read them (`max by (task_type)`: only the leader sets them).
//!
//! Before reading, the leader moves the finished tasks' count mark forward
//! (`TaskTotalsStore`), so that a count reads only what finished since.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_engine::store::{QueueHealthStore, QueueStore, TaskTotalsStore, MARK_STEP_ROWS};
use drover_engine::time::now_us;
use drover_engine::Store;

/// How often the gauges are refreshed.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// The window of the figures read (start latencies; unused by the gauges
/// but part of the read): short, so the read stays small.
const WINDOW_US: i64 = 60_000_000;

pub struct QueueGauges {
    pub store: Store,
    pub leader: Arc<AtomicBool>,
    pub interval: Duration,
}

/// How long one refresh may spend moving the count mark. A database that
/// was never counted (just upgraded) catches up in several refreshes.
const TOTALS_BUDGET: Duration = Duration::from_secs(2);

impl QueueGauges {
    /// Steps the count mark until it has caught up or the budget is spent,
    /// pausing as long as each step took: a catch-up holds SQLite's writer
    /// at most half the time.
    async fn advance_totals(&self) {
        let started = std::time::Instant::now();
        while started.elapsed() < TOTALS_BUDGET {
            let step = std::time::Instant::now();
            match self
                .store
                .advance_task_totals(now_us(), MARK_STEP_ROWS)
                .await
            {
                Ok(true) => return,
                Ok(false) => tokio::time::sleep(step.elapsed()).await,
                Err(e) => {
                    tracing::warn!(error = %e, "counting finished tasks failed");
                    return;
                }
            }
        }
    }

    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        // Types reported before: one that empties is set to 0, not left
        // at its last figure.
        let seen = Mutex::new(BTreeSet::new());
        super::leader_ticks::every(self.interval, &self.leader, shutdown, || {
            self.refresh(&seen)
        })
        .await;
    }

    async fn refresh(&self, seen: &Mutex<BTreeSet<String>>) {
        self.advance_totals().await;
        match self.store.stats().await {
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
            Err(e) => tracing::warn!(error = %e, "reading task counts for the gauges failed"),
        }
        let health = match self.store.queue_health(now_us(), WINDOW_US).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "reading queue figures for the gauges failed");
                return;
            }
        };
        let mut now_seen = BTreeSet::new();
        for t in &health.types {
            let labels = [("task_type", t.task_type.clone())];
            metrics::gauge!("drover_queue_depth", &labels).set(t.queued as f64);
            metrics::gauge!("drover_queue_held", &labels).set(t.held as f64);
            let oldest = t.oldest_wait_us.unwrap_or(0) as f64 / 1e6;
            metrics::gauge!("drover_queue_oldest_wait_seconds", &labels).set(oldest);
            metrics::gauge!("drover_queue_agents", &labels).set(t.agents as f64);
            now_seen.insert(t.task_type.clone());
        }
        let mut seen = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for gone in seen.difference(&now_seen) {
            let labels = [("task_type", gone.clone())];
            for name in [
                "drover_queue_depth",
                "drover_queue_held",
                "drover_queue_oldest_wait_seconds",
            ] {
                metrics::gauge!(name, &labels).set(0.0);
            }
        }
        *seen = now_seen;
    }
}
