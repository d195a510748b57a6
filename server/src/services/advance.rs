//! Moving workflow runs forward after something they wait on changed.
//!
//! Group commit: callers hand their run ids to the [`Advancer`] and wait;
//! a worker takes every run pending (up to [`MAX_BATCH`]) and advances them
//! all in one transaction (`RunStore::advance_runs`), then answers every
//! caller whose runs were in that batch. While a batch is being written, the
//! runs of the results that arrive meanwhile gather for the next one, so the
//! engine's cost per finished task falls as the load rises instead of each
//! task paying for its own transaction. Callers keep their semantics: when
//! `runs` returns, the runs have been advanced (or the attempt failed and
//! was logged).
//!
//! SQLite has one writer, so one worker; on PostgreSQL two workers take
//! disjoint sets of runs (a run in one worker's batch waits for the next
//! batch rather than joining the other's), and `advance_runs` locks runs in
//! id order, so batches of different instances cannot deadlock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use drover_engine::domain::Scheduling;
use drover_engine::store::{Advanced, RunStore};
use drover_engine::time::now_us;
use drover_engine::Store;
use tokio::sync::{oneshot, Notify};

use super::dispatcher::Dispatcher;
use super::events::EventBus;

/// Runs advanced in one transaction at most.
pub const MAX_BATCH: usize = 512;

/// Advances runs in batches; new tasks wake the dispatcher and new run
/// states go to the event bus.
pub struct Advancer {
    batches: Batches,
    store: Store,
    scheduling: Scheduling,
    dispatcher: Arc<Dispatcher>,
    events: Arc<EventBus>,
}

/// Runs waiting to be advanced, and the callers waiting on them.
struct Batches {
    pending: Mutex<Pending>,
    wake: Notify,
    workers: usize,
}

#[derive(Default)]
struct Pending {
    /// Run id → the callers waiting for its next advance.
    runs: HashMap<i64, Vec<oneshot::Sender<()>>>,
    /// The pending runs, first requested first, so that a steady stream of
    /// requests cannot starve any run of a batch.
    order: VecDeque<i64>,
    /// Runs in a batch being advanced now: they stay pending until it ends.
    in_flight: HashSet<i64>,
    /// After shutdown requests are answered at once (the leader's recovery
    /// pass advances whatever was left).
    closed: bool,
}

/// A batch taken by a worker.
struct Batch {
    runs: Vec<i64>,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Batches {
    /// `workers` batches may be in flight at once (1 for SQLite).
    fn new(workers: usize) -> Self {
        Self {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            workers: workers.max(1),
        }
    }

    /// Adds runs to the next batch; the receivers resolve once a batch that
    /// started after this call has advanced them.
    fn request(&self, run_ids: impl IntoIterator<Item = i64>) -> Vec<oneshot::Receiver<()>> {
        let mut receivers = Vec::new();
        let Ok(mut pending) = self.pending.lock() else {
            return receivers;
        };
        if pending.closed {
            return receivers;
        }
        for run_id in run_ids {
            let (tx, rx) = oneshot::channel();
            let Pending { runs, order, .. } = &mut *pending;
            runs.entry(run_id)
                .or_insert_with(|| {
                    order.push_back(run_id);
                    Vec::new()
                })
                .push(tx);
            receivers.push(rx);
        }
        drop(pending);
        if !receivers.is_empty() {
            self.wake.notify_one();
        }
        receivers
    }

    /// Takes up to `MAX_BATCH` pending runs that no other worker is advancing.
    fn take(&self) -> Option<Batch> {
        let mut pending = self.pending.lock().ok()?;
        let Pending {
            runs,
            order,
            in_flight,
            ..
        } = &mut *pending;
        let mut ids = Vec::new();
        let mut waiters = Vec::new();
        let mut left = VecDeque::new();
        while let Some(id) = order.pop_front() {
            if ids.len() == MAX_BATCH {
                order.push_front(id);
                break;
            }
            if in_flight.contains(&id) {
                left.push_back(id);
                continue;
            }
            waiters.extend(runs.remove(&id).unwrap_or_default());
            in_flight.insert(id);
            ids.push(id);
        }
        // Runs being advanced by another worker keep their place.
        while let Some(id) = left.pop_back() {
            order.push_front(id);
        }
        if ids.is_empty() {
            return None;
        }
        let more = order.iter().any(|id| !in_flight.contains(id));
        drop(pending);
        if more {
            // Another worker may take the rest now.
            self.wake.notify_one();
        }
        Some(Batch { runs: ids, waiters })
    }

    /// The batch is written: its callers are answered, and runs that were
    /// requested again meanwhile can be taken.
    fn finish(&self, batch: Batch) {
        for waiter in batch.waiters {
            let _ = waiter.send(());
        }
        if let Ok(mut pending) = self.pending.lock() {
            for id in &batch.runs {
                pending.in_flight.remove(id);
            }
            if !pending.runs.is_empty() {
                drop(pending);
                self.wake.notify_one();
            }
        }
    }

    /// Stops taking requests and answers the callers still waiting.
    fn close(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.closed = true;
            pending.runs.clear();
            pending.order.clear();
        }
        self.wake.notify_waiters();
    }
}

impl Advancer {
    /// As many workers as the store can advance batches at once.
    pub fn new(
        store: Store,
        scheduling: Scheduling,
        dispatcher: Arc<Dispatcher>,
        events: Arc<EventBus>,
    ) -> Self {
        Self {
            batches: Batches::new(store.advance_parallelism()),
            store,
            scheduling,
            dispatcher,
            events,
        }
    }

    pub fn workers(&self) -> usize {
        self.batches.workers
    }

    /// A worker: advances batches until `shutdown` resolves.
    pub async fn run_worker(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let batches = &self.batches;
        loop {
            let batch = loop {
                let woken = batches.wake.notified();
                if let Some(batch) = batches.take() {
                    break batch;
                }
                tokio::select! {
                    _ = &mut shutdown => {
                        batches.close();
                        return;
                    }
                    _ = woken => {}
                }
            };
            self.advance_batch(&batch.runs).await;
            batches.finish(batch);
        }
    }

    async fn advance_batch(&self, runs: &[i64]) {
        let started = std::time::Instant::now();
        let advanced = match self
            .store
            .advance_runs(runs, &self.scheduling, now_us())
            .await
        {
            Ok(advanced) => advanced,
            Err(e) => {
                tracing::warn!(runs = runs.len(), error = %e, "could not advance runs");
                return;
            }
        };
        let elapsed = started.elapsed();
        metrics::histogram!("drover_advance_batch_runs").record(runs.len() as f64);
        metrics::histogram!("drover_advance_batch_seconds").record(elapsed.as_secs_f64());
        tracing::debug!(
            runs = runs.len(),
            ms = elapsed.as_secs_f64() * 1000.0,
            "advanced a batch"
        );
        self.announce(&advanced);
    }

    /// Tells the dispatcher of the tasks these advances created, and the
    /// dashboard of the runs' new states.
    pub fn announce(&self, advanced: &[(i64, Advanced)]) {
        let mut created = 0;
        for (run_id, a) in advanced {
            if let Some(status) = a.status.filter(|s| s.is_terminal()) {
                tracing::debug!(run_id, status = status.as_str(), "run advanced to its end");
            }
            created += a.tasks_created;
        }
        if created > 0 {
            metrics::counter!("drover_workflow_tasks_created_total").increment(created as u64);
            self.dispatcher.kick();
        }
        if advanced.is_empty() {
            return;
        }
        // Child runs just started, and parents of child runs just ended:
        // their advance follows this commit (nobody waits for it).
        let follow: Vec<i64> = advanced
            .iter()
            .flat_map(|(_, a)| a.follow_up.iter().copied())
            .collect();
        if !follow.is_empty() {
            drop(self.batches.request(follow));
        }
        self.events.publish_many(
            "run",
            advanced
                .iter()
                .map(|(run_id, a)| (Some(*run_id), a.status.map(|s| s.as_str()))),
        );
        // Approvers' inboxes and the run's page offer the new decisions
        // live, not on the next reload.
        if advanced.iter().any(|(_, a)| a.approvals_opened > 0) {
            self.events.publish("approval", None, Some("pending"));
        }
    }

    /// Advances each run; new tasks wake the dispatcher. Returns once they
    /// have been advanced. Failures are logged, not returned: the caller's
    /// own change is already committed, and the leader's recovery pass
    /// advances any run left behind.
    pub async fn runs(&self, run_ids: impl IntoIterator<Item = i64>) {
        for done in self.batches.request(run_ids) {
            // An error means the advancer shut down: nothing more to wait for.
            let _ = done.await;
        }
    }

    /// Advances the runs owning these tasks (after their tasks finished).
    pub async fn runs_of_tasks(&self, task_ids: &[i64]) {
        if task_ids.is_empty() {
            return;
        }
        match self.store.runs_of_tasks(task_ids).await {
            Ok(runs) => self.runs(runs).await,
            Err(e) => tracing::warn!(error = %e, "could not find the runs of finished tasks"),
        }
    }

    /// Advances every active run: the leader's recovery pass.
    pub async fn all_active(&self) {
        match self.store.active_runs().await {
            Ok(runs) if !runs.is_empty() => {
                tracing::info!(runs = runs.len(), "advancing active runs");
                self.runs(runs).await
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not list active runs"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_pending_runs_once_and_leaves_in_flight_ones() {
        let a = Batches::new(2);
        let _r1 = a.request([3, 1, 2]);
        let first = a.take().unwrap();
        assert_eq!(first.runs, vec![3, 1, 2], "first asked, first taken");
        assert_eq!(first.waiters.len(), 3);
        assert!(a.take().is_none());
        // Run 2 is asked for again while its batch is in flight: it waits
        // for that batch to end; run 4 can go at once.
        let _r2 = a.request([2, 4]);
        let second = a.take().unwrap();
        assert_eq!(second.runs, vec![4]);
        a.finish(first);
        let third = a.take().unwrap();
        assert_eq!(third.runs, vec![2]);
    }

    #[tokio::test]
    async fn callers_are_answered_when_their_batch_ends_or_on_close() {
        let a = Batches::new(1);
        let waits = a.request(0..(MAX_BATCH as i64 + 1));
        let first = a.take().unwrap();
        assert_eq!(first.runs.len(), MAX_BATCH);
        a.finish(first);
        for w in waits.into_iter().take(MAX_BATCH) {
            w.await.unwrap();
        }
        let late = a.request([7]);
        a.close();
        for w in late {
            assert!(w.await.is_err(), "closing drops the waiters");
        }
        assert!(a.request([8]).is_empty(), "closed: nothing to wait for");
    }
}
