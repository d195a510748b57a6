//! The shape of the leader's periodic chores (load history, queue gauges,
//! retention): every `interval`, while this instance leads, one pass of
//! work; a shutdown stops the loop at once, mid-pass included (each pass
//! is a series of short transactions, and the next leader starts over).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Runs `pass` every `interval` while `leader` is set, until `shutdown`.
pub async fn every<F, Fut>(
    interval: Duration,
    leader: &AtomicBool,
    shutdown: impl Future<Output = ()>,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        if leader.load(Ordering::SeqCst) {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = pass() => {}
            }
        }
    }
}
