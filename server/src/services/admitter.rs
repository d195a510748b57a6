//! The leader's key admission loop (`KeyStore::admit_keys`): lets held
//! tasks of concurrency keys with room into the claim order, then runs a
//! claim round so they start at once.
//!
//! It runs when the dispatcher is kicked on this instance (a submit, a
//! result, a cancel: anything that may need or free a slot) and on a short
//! tick for changes made on other instances. Passes are at least
//! [`MIN_GAP`] apart: under load the kicks come faster than that, and one
//! pass admits for every key at once.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover_engine::store::KeyStore;
use drover_engine::Store;

use super::dispatcher::Dispatcher;

/// The longest a key's free slot waits for a pass when nothing on this
/// instance kicks (a task ended on another instance).
const TICK: Duration = Duration::from_millis(25);
/// The shortest time between two passes.
const MIN_GAP: Duration = Duration::from_millis(50);

pub struct Admitter {
    pub store: Store,
    pub dispatcher: Arc<Dispatcher>,
    pub leader: Arc<AtomicBool>,
    /// The sleep while this instance does not lead.
    pub idle: Duration,
}

impl Admitter {
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let wait = if self.leader.load(Ordering::SeqCst) {
                self.pass().await;
                TICK
            } else {
                self.idle
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.dispatcher.admission_wanted() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            tokio::time::sleep(MIN_GAP).await;
        }
    }

    async fn pass(&self) {
        match self.store.admit_keys().await {
            Ok(0) => {}
            Ok(admitted) => {
                metrics::counter!("drover_key_admitted_total").increment(admitted);
                self.dispatcher.kick_claims();
            }
            Err(e) => tracing::warn!(error = %e, "concurrency key admission failed"),
        }
    }
}
