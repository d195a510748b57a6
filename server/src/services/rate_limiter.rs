//! The leader's rate-limit loop: every few milliseconds while limits
//! exist, it refills their buckets and releases the rate-held tasks the
//! tokens allow (`RateLimitStore::release_rate_limited`), then wakes the
//! dispatcher so they start at once. The buckets live in the database, so
//! a new leader goes on where the last one stopped.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover_engine::store::RateLimitStore;
use drover_engine::time::now_us;
use drover_engine::Store;

use super::effects::{Change, Effects};

/// How often buckets are refilled while limits exist: a 20-a-second limit
/// releases one task a tick, and a release is never more than this late.
const TICK: Duration = Duration::from_millis(25);

pub struct RateLimiter {
    pub store: Store,
    pub effects: Arc<Effects>,
    pub leader: Arc<AtomicBool>,
    /// The sleep while there are no limits (or this instance does not lead).
    pub idle: Duration,
}

impl RateLimiter {
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let sleep = if self.leader.load(Ordering::SeqCst) {
                self.pass().await
            } else {
                self.idle
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn pass(&self) -> Duration {
        match self.store.release_rate_limited(now_us()).await {
            Ok((released, limits)) => {
                if released > 0 {
                    metrics::counter!("drover_rate_limited_released_total").increment(released);
                    self.effects.after(Change::new().wake()).await;
                }
                if limits == 0 {
                    self.idle
                } else {
                    TICK
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "rate-limit release failed");
                self.idle
            }
        }
    }
}
