//! The leader's retention loop: every `DROVER_RETENTION_INTERVAL` it deletes
//! finished tasks, finished runs and audit entries past their keep-for
//! (`RetentionStore`, whose module says how a batch is chosen). Only the
//! leader deletes; the rows are gone for every instance.
//!
//! Retention yields to the queue. While the queue is quiet, batches of
//! [`BATCH`] rows are spaced by four times their own time, so a backlog of
//! a million rows (retention first turned on, or shortened) drains in
//! minutes and takes at most a fifth of the database writer's time. While
//! it is busy (more than [`BUSY_REQUESTS_PER_SECOND`] submits, claims and
//! results served since the last batch), a batch is [`BUSY_BATCH`] rows
//! and the next waits [`BUSY_PAUSE`]: deletes hold SQLite's one writer
//! (and PostgreSQL's row locks and I/O) for about a millisecond a second,
//! so claims do not wait on them, and a day that is busy throughout still
//! deletes ten million rows.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_engine::store::{Batch, RetentionPolicy, RetentionStore};
use drover_engine::time::now_us;
use drover_engine::Store;

use crate::config::Config;

/// Rows one batch reads (and at most deletes) while the queue is quiet.
const BATCH: i64 = 500;
/// Rows one batch reads while the queue is busy.
const BUSY_BATCH: i64 = 25;
/// Queue requests per second above which the queue is busy.
const BUSY_REQUESTS_PER_SECOND: f64 = 20.0;
/// Pause after a batch while the queue is busy: 125 rows a second, ten
/// million a day, keeps up with a queue that never rests.
const BUSY_PAUSE: Duration = Duration::from_millis(200);
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
    /// Submits, claims and results served (`AppState::queue_requests`).
    pub queue_requests: Arc<AtomicU64>,
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
        self.walk("tasks", |after, size| {
            store.prune_tasks(policy, after, size, now_us())
        })
        .await;
        self.walk("runs", |after, size| {
            store.prune_runs(policy, after, size, now_us())
        })
        .await;
        self.walk("audit", |_, size| async move {
            let deleted = store.prune_audit(policy, size, now_us()).await?;
            // The audit walk always starts at the front: what it deleted
            // is gone.
            let full = deleted >= size as u64;
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
        F: FnMut(i64, i64) -> Fut,
        Fut: Future<Output = drover_engine::store::Result<Batch>>,
    {
        let mut after = 0;
        let mut load = Load::new(&self.queue_requests);
        // The first batch is a small one, as if busy: the rate is known
        // only after a pause.
        let mut busy = true;
        while self.leader.load(Ordering::SeqCst) {
            let size = if busy { BUSY_BATCH } else { BATCH };
            let started = Instant::now();
            match batch(after, size).await {
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
            let pause = if busy {
                BUSY_PAUSE
            } else {
                pause_after(started.elapsed())
            };
            tokio::time::sleep(pause).await;
            busy = load.busy(&self.queue_requests);
        }
    }
}

/// The queue's request rate between two looks.
struct Load {
    seen: u64,
    at: Instant,
}

impl Load {
    fn new(requests: &AtomicU64) -> Self {
        Self {
            seen: requests.load(Ordering::Relaxed),
            at: Instant::now(),
        }
    }

    /// Whether more than [`BUSY_REQUESTS_PER_SECOND`] came since the last
    /// look.
    fn busy(&mut self, requests: &AtomicU64) -> bool {
        let now = requests.load(Ordering::Relaxed);
        let rate = per_second(now - self.seen, self.at.elapsed());
        *self = Self {
            seen: now,
            at: Instant::now(),
        };
        rate > BUSY_REQUESTS_PER_SECOND
    }
}

fn per_second(count: u64, over: Duration) -> f64 {
    count as f64 / over.as_secs_f64().max(0.001)
}

/// The pause after a batch that took `took`: at least [`BETWEEN_BATCHES`],
/// and [`PAUSE_FACTOR`] times the batch's own time, so retention holds the
/// database's writer (SQLite has one) at most a fifth of the time however
/// slow its deletes get.
fn pause_after(took: Duration) -> Duration {
    (took * PAUSE_FACTOR).max(BETWEEN_BATCHES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_busy_above_the_request_rate() {
        let requests = AtomicU64::new(0);
        let mut load = Load::new(&requests);
        requests.fetch_add(100, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        assert!(load.busy(&requests), "1,000 requests a second");
        requests.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
        assert!(!load.busy(&requests), "5 requests a second");
    }
}
