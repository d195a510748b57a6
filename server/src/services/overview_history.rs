//! The leader's overview-history loop: every `DROVER_QUEUE_DEPTH_INTERVAL`
//! it counts the tasks finished in the five-second slots it has not
//! counted yet into `finish_counts`, counts the queued tasks by type into
//! `queue_depth`, and deletes both past the overview's longest range
//! (seven days). Only the leader writes, so two instances on one database
//! draw the same charts. `OverviewHistoryStore` has the statements.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use drover_engine::store::{OverviewHistoryStore, OVERVIEW_HISTORY_US};
use drover_engine::time::now_us;
use drover_engine::Store;

/// Slots one pass counts at most (ten minutes): after an outage the
/// counts catch up at sixty times the clock, each pass a short read.
const SLOTS_PER_PASS: i64 = 120;
/// Task types kept per depth sample; the chart shows the busiest few of
/// them and sums the rest (with the total) as "other".
const TYPES_PER_SAMPLE: i64 = 20;
/// Rows one delete removes, and deletes per pass: a backlog clears over
/// a few passes without holding the writer.
const PRUNE_PAGE: i64 = 1_000;
const PRUNE_PAGES: usize = 5;

pub struct OverviewHistory {
    pub store: Store,
    pub leader: Arc<AtomicBool>,
    pub interval: Duration,
}

impl OverviewHistory {
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        super::leader_ticks::every(self.interval, &self.leader, shutdown, || self.pass()).await;
    }

    async fn pass(&self) {
        let now = now_us();
        if let Err(e) = self.store.roll_finish_counts(now, SLOTS_PER_PASS).await {
            tracing::warn!(error = %e, "counting finished tasks for the overview failed");
        }
        match self.store.sample_queue_depth(now, TYPES_PER_SAMPLE).await {
            Ok(n) => metrics::counter!("drover_queue_depth_samples_total").increment(n),
            Err(e) => tracing::warn!(error = %e, "sampling the queue depth failed"),
        }
        let before = now - OVERVIEW_HISTORY_US;
        for _ in 0..PRUNE_PAGES {
            match self.store.prune_overview_history(before, PRUNE_PAGE).await {
                Ok(n) if (n as i64) < PRUNE_PAGE => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "deleting old overview history failed");
                    return;
                }
            }
        }
    }
}
