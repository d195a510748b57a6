//! The leader's load-history loop: every `DROVER_AGENT_LOAD_INTERVAL` it
//! records each connected agent's running count and capacity in one
//! statement (`AgentLoadStore::sample_agent_load`) and deletes samples
//! past `DROVER_AGENT_LOAD_RETENTION`. Only the leader samples, so two
//! instances on one database write one history, which both read.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use drover_engine::store::AgentLoadStore;
use drover_engine::time::now_us;
use drover_engine::Store;

/// Samples one delete removes: small, so a backlog (a shortened retention)
/// never holds the writer for long; it clears over a few ticks.
const PRUNE_PAGE: i64 = 1_000;
/// Deletes per tick at most: with the defaults, room for 1,000 samples a
/// second, the samples of a 5,000-agent fleet.
const PRUNE_PAGES: usize = 5;

pub struct LoadHistory {
    pub store: Store,
    pub leader: Arc<AtomicBool>,
    pub interval: Duration,
    pub retention: Duration,
}

impl LoadHistory {
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        super::leader_ticks::every(self.interval, &self.leader, shutdown, || self.pass()).await;
    }

    async fn pass(&self) {
        let now = now_us();
        match self.store.sample_agent_load(now).await {
            Ok(n) => metrics::counter!("drover_agent_load_samples_total").increment(n),
            Err(e) => tracing::warn!(error = %e, "sampling agent load failed"),
        }
        let before = now - self.retention.as_micros() as i64;
        for _ in 0..PRUNE_PAGES {
            match self.store.prune_agent_load(before, PRUNE_PAGE).await {
                Ok(n) if (n as i64) < PRUNE_PAGE => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "deleting old agent load samples failed");
                    return;
                }
            }
        }
    }
}
