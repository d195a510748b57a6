//! The leader's retention loop: every `DROVER_RETENTION_INTERVAL` it deletes
//! finished tasks, finished runs and audit entries past their keep-for
//! (`RetentionStore`, whose module says how a batch is chosen). Batches are
//! small and spaced by four times their own time, so a backlog of a million
//! rows (retention first turned on, or shortened) drains over minutes and
//! takes at most a fifth of the database writer's time from claims and
//! results. Only
//! the leader deletes; the rows are gone for every instance.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_engine::store::{Batch, RetentionPolicy, RetentionStore};
use drover_engine::time::now_us;
use drover_engine::Store;

use crate::config::Config;

/// Rows one batch reads (and at most deletes).
const BATCH: i64 = 500;
/// Pause between batches: the writer is free for claims and results
/// between them.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);
/// A batch's time, times this, is the least pause after it (see
/// [`pause_after`]).
const PAUSE_FACTOR: u32 = 4;

/// A keep-for of 0 keeps for ever.
fn keep_us(keep: Duration) -> i64 {
    if keep.is_zero() {
        i64::MAX
    } else {
        i64::try_from(keep.as_micros()).unwrap_or(i64::MAX)
    }
}

impl From<&Config> for RetentionPolicy {
    fn from(config: &Config) -> Self {
        Self {
            default_us: keep_us(config.retention),
            by_type_us: config
                .retention_by_type
                .0
                .iter()
                .map(|(name, keep)| (name.clone(), keep_us(*keep)))
                .collect(),
            audit_us: keep_us(config.audit_retention),
        }
    }
}

pub struct Retention {
    pub store: Store,
    pub leader: Arc<AtomicBool>,
    pub policy: RetentionPolicy,
    pub interval: Duration,
}

impl Retention {
    /// A pass stopped by shutdown picks up from the front at the next
    /// leader's first tick.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        super::leader_ticks::every(self.interval, &self.leader, shutdown, || self.pass()).await;
    }

    async fn pass(&self) {
        let store = &self.store;
        let policy = &self.policy;
        self.walk("tasks", |after| {
            store.prune_tasks(policy, after, BATCH, now_us())
        })
        .await;
        self.walk("runs", |after| {
            store.prune_runs(policy, after, BATCH, now_us())
        })
        .await;
        self.walk("audit", |_| async move {
            let deleted = store.prune_audit(policy, BATCH, now_us()).await?;
            // The audit walk always starts at the front: what it deleted
            // is gone.
            let full = deleted >= BATCH as u64;
            Ok(Batch {
                deleted,
                next_after_id: full.then_some(0),
            })
        })
        .await;
    }

    /// Walks one table from the front, batch by batch, while the leader.
    async fn walk<F, Fut>(&self, what: &'static str, mut batch: F)
    where
        F: FnMut(i64) -> Fut,
        Fut: Future<Output = drover_engine::store::Result<Batch>>,
    {
        let mut after = 0;
        while self.leader.load(Ordering::SeqCst) {
            let started = Instant::now();
            match batch(after).await {
                Ok(done) => {
                    metrics::counter!("drover_retention_deleted_total", "what" => what)
                        .increment(done.deleted);
                    match done.next_after_id {
                        Some(next) => after = next,
                        None => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, what, "deleting old finished work failed");
                    return;
                }
            }
            tokio::time::sleep(pause_after(started.elapsed())).await;
        }
    }
}

/// The pause after a batch that took `took`: at least [`BETWEEN_BATCHES`],
/// and [`PAUSE_FACTOR`] times the batch's own time, so retention holds the
/// database's writer (SQLite has one) at most a fifth of the time however
/// slow its deletes get.
fn pause_after(took: Duration) -> Duration {
    (took * PAUSE_FACTOR).max(BETWEEN_BATCHES)
}
