//! The tasks this agent is running: slots, leases, cancellation, results.
//!
//! Each task runs in its own tokio task holding one of `capacity` semaphore
//! permits, so the agent never runs more than M at once, whatever a claim
//! brings. The map of running tasks (task id → lease) is what
//! heartbeats report and what cancellation and shutdown act on.
//!
//! A task's result is reported only if the task is still in the map when it
//! finishes: cancelling removes it first, so a task the server took back is
//! never reported (the server would refuse it anyway).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use drover_protocol::agent::{Assignment, Lease, Outcome, TaskResult};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::handlers::{Handler, TaskContext};
use crate::logs::{LogShipper, FINAL_FLUSH_WAIT};
use crate::time::now_us;

/// How long shutdown waits for killed tasks to unwind (their process groups
/// to be signalled) before moving on.
const ABORT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Entry {
    lease_token: i64,
    started_at_us: i64,
    handle: JoinHandle<()>,
    /// Its handler has ended and it waits for its last log lines to be
    /// sent: a cancel no longer stops it, and its result goes out as it
    /// would have without the wait (see `TaskSet::start`).
    finishing: bool,
}

#[derive(Debug)]
struct Inner {
    running: HashMap<i64, Entry>,
    /// Where finished results go (the reporter). `None` once shutdown has
    /// closed it.
    results: Option<UnboundedSender<TaskResult>>,
}

/// The running tasks and the slots they occupy.
#[derive(Debug)]
pub struct TaskSet {
    inner: Mutex<Inner>,
    slots: Arc<Semaphore>,
    capacity: u32,
    /// Where handlers' output lines go (see `crate::logs`).
    logs: Option<LogShipper>,
}

impl TaskSet {
    pub fn new(capacity: u32, results: UnboundedSender<TaskResult>) -> Arc<Self> {
        Self::with_logs(capacity, results, None)
    }

    /// A task set whose command handlers' output is shipped by `logs`.
    pub fn with_logs(
        capacity: u32,
        results: UnboundedSender<TaskResult>,
        logs: Option<LogShipper>,
    ) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                running: HashMap::new(),
                results: Some(results),
            }),
            slots: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
            logs,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Slots free right now.
    pub fn free_slots(&self) -> u32 {
        self.slots.available_permits() as u32
    }

    /// M: the most tasks this agent runs at once.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// A free slot for a task about to start, waiting at most `within` for
    /// one; `None` if every slot stays taken.
    pub async fn free_slot(&self, within: Duration) -> Option<OwnedSemaphorePermit> {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            return Some(slot);
        }
        tokio::time::timeout(within, Arc::clone(&self.slots).acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Runs `assignment` through `handler` in its own tokio task, holding `slot`.
    pub fn start(
        self: &Arc<Self>,
        assignment: Assignment,
        handler: Arc<Handler>,
        slot: OwnedSemaphorePermit,
    ) {
        let task_id = assignment.task_id;
        let lease_token = assignment.lease_token;
        let log = match &self.logs {
            Some(logs) if handler.has_output() => Some(logs.task(task_id, lease_token)),
            _ => None,
        };
        let mut ctx = TaskContext {
            task_id,
            task_type: assignment.task_type,
            attempt: assignment.attempt,
            payload: assignment.payload,
            timeout: (assignment.timeout_ms > 0)
                .then(|| Duration::from_millis(assignment.timeout_ms)),
            log,
        };
        let started_at_us = now_us();
        let set = Arc::clone(self);
        // Held while spawning, so the task cannot finish before it is in the map.
        let mut inner = self.lock();
        // Every line the attempt logs (the handler's, the log shipper's)
        // carries which task and attempt it is about.
        let span = tracing::info_span!("task", task_id, attempt = ctx.attempt);
        let handle = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _slot = slot;
                tracing::debug!(task_id, task_type = %ctx.task_type, attempt = ctx.attempt, "task started");
                let clock = Instant::now();
                let outcome = handler.run(&ctx).await;
                let finished_at_us = now_us();
                // The log is complete before the result is reported: the
                // server takes no lines for a finished task. The task is past
                // cancelling by then (its handler has ended), so a cancel that
                // arrives during the wait — after an outage, say — does not
                // swallow a result that would otherwise have gone out (to be
                // refused as stale, as before).
                if let Some(log) = ctx.log.take() {
                    if set.finishing(task_id, lease_token) {
                        log.finish(FINAL_FLUSH_WAIT).await;
                    }
                }
                let elapsed_ms = clock.elapsed().as_millis() as u64;
                match &outcome {
                    Outcome::Failed { error, retryable } => tracing::warn!(
                        task_id, task_type = %ctx.task_type, attempt = ctx.attempt, elapsed_ms,
                        retryable, error = %error, "task failed"
                    ),
                    _ => {
                        tracing::debug!(task_id, task_type = %ctx.task_type, elapsed_ms, "task succeeded")
                    }
                }
                set.finish(task_id, lease_token, outcome, started_at_us, finished_at_us);
            },
            span,
        ));
        let entry = Entry {
            lease_token,
            started_at_us,
            handle,
            finishing: false,
        };
        if let Some(older) = inner.running.insert(task_id, entry) {
            // The server re-issued a task we still run (new lease): the older
            // attempt is superseded and its result would be refused.
            if !older.finishing {
                older.handle.abort();
            }
            tracing::warn!(
                task_id,
                old_lease = older.lease_token,
                new_lease = lease_token,
                "the server handed out a task this agent was still running; stopped the older attempt"
            );
        }
    }

    /// Reports `outcome` for an assignment that is not run at all (no handler
    /// for its type, no free slot).
    pub fn refuse(&self, assignment: &Assignment, outcome: Outcome) {
        let now = now_us();
        let inner = self.lock();
        send(
            &inner,
            TaskResult {
                task_id: assignment.task_id,
                lease_token: assignment.lease_token,
                outcome,
                started_at_us: Some(now),
                finished_at_us: Some(now),
            },
        );
    }

    fn finish(
        &self,
        task_id: i64,
        lease_token: i64,
        outcome: Outcome,
        started_at_us: i64,
        finished_at_us: i64,
    ) {
        let mut inner = self.lock();
        match inner.running.get(&task_id) {
            Some(entry) if entry.lease_token == lease_token => {
                inner.running.remove(&task_id);
            }
            _ => {
                tracing::debug!(
                    task_id,
                    "task finished after the server took it back; not reporting it"
                );
                return;
            }
        }
        send(
            &inner,
            TaskResult {
                task_id,
                lease_token,
                outcome,
                started_at_us: Some(started_at_us),
                finished_at_us: Some(finished_at_us),
            },
        );
    }

    /// The leases of every running task, for the heartbeat.
    pub fn leases(&self) -> Vec<Lease> {
        self.lock()
            .running
            .iter()
            .map(|(&task_id, e)| Lease {
                task_id,
                lease_token: e.lease_token,
            })
            .collect()
    }

    pub fn running(&self) -> usize {
        self.lock().running.len()
    }

    /// Stops a task at once, without reporting it. False if it was not running.
    /// A task whose handler has ended (finishing) is not stopped: there is
    /// nothing left to stop, and its result is on its way.
    pub fn cancel(&self, task_id: i64) -> bool {
        let mut inner = self.lock();
        if inner.running.get(&task_id).is_none_or(|e| e.finishing) {
            return false;
        }
        match inner.running.remove(&task_id) {
            Some(entry) => {
                entry.handle.abort();
                true
            }
            None => false,
        }
    }

    /// Marks the task's handler as ended; false if the task is no longer
    /// this attempt's (cancelled or superseded).
    fn finishing(&self, task_id: i64, lease_token: i64) -> bool {
        match self.lock().running.get_mut(&task_id) {
            Some(entry) if entry.lease_token == lease_token => {
                entry.finishing = true;
                true
            }
            _ => false,
        }
    }

    /// Waits until no task holds a slot.
    pub async fn wait_idle(&self) {
        // All permits back means every task has finished and been dropped.
        let _all = self.slots.acquire_many(self.capacity).await;
    }

    /// Stops every running task and reports each as released with `reason`,
    /// so the server requeues it without counting the attempt. Returns how
    /// many there were.
    pub async fn release_all(&self, reason: &str) -> usize {
        let handles: Vec<JoinHandle<()>> = {
            let mut inner = self.lock();
            // Finishing tasks are left to report their own results.
            let stopping: Vec<i64> = inner
                .running
                .iter()
                .filter(|(_, e)| !e.finishing)
                .map(|(id, _)| *id)
                .collect();
            let entries: Vec<(i64, Entry)> = stopping
                .into_iter()
                .filter_map(|id| inner.running.remove(&id).map(|e| (id, e)))
                .collect();
            let now = now_us();
            let mut handles = Vec::with_capacity(entries.len());
            for (task_id, entry) in entries {
                entry.handle.abort();
                send(
                    &inner,
                    TaskResult {
                        task_id,
                        lease_token: entry.lease_token,
                        outcome: Outcome::Released {
                            reason: reason.to_string(),
                        },
                        started_at_us: Some(entry.started_at_us),
                        finished_at_us: Some(now),
                    },
                );
                handles.push(entry.handle);
            }
            handles
        };
        let count = handles.len();
        // Let the aborted tasks unwind, which kills their processes.
        let unwind = async {
            for handle in handles {
                let _ = handle.await;
            }
        };
        if tokio::time::timeout(ABORT_WAIT, unwind).await.is_err() {
            tracing::warn!("some stopped tasks did not unwind in time");
        }
        // And finishing ones send their results (within the final flush's
        // bound) before the results channel closes.
        if tokio::time::timeout(ABORT_WAIT, self.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!("some finished tasks did not report in time");
        }
        count
    }

    /// No more results will be produced: lets the reporter finish.
    pub fn close_results(&self) {
        self.lock().results = None;
    }
}

fn send(inner: &Inner, result: TaskResult) {
    let task_id = result.task_id;
    let delivered = inner
        .results
        .as_ref()
        .is_some_and(|tx| tx.send(result).is_ok());
    if !delivered {
        tracing::warn!(
            task_id,
            "result produced after the reporter stopped; it is lost"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BuiltinKind;
    use crate::handlers::builtin::Builtin;
    use serde_json::{json, Value};
    use tokio::sync::mpsc;

    fn assignment(task_id: i64, task_type: &str, payload: Value) -> Assignment {
        Assignment {
            task_id,
            lease_token: task_id + 100,
            task_type: task_type.into(),
            payload,
            attempt: 1,
            max_attempts: 3,
            timeout_ms: 60_000,
            priority: 1.0,
        }
    }

    fn builtin(kind: BuiltinKind) -> Arc<Handler> {
        Arc::new(Handler::Builtin(Builtin::new(kind)))
    }

    const WAIT: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn runs_reports_and_frees_the_slot() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let set = TaskSet::new(2, tx);
        let slot = set.free_slot(WAIT).await.expect("a slot");
        let other = set.free_slot(WAIT).await.expect("a second slot");
        assert!(
            set.free_slot(Duration::from_millis(10)).await.is_none(),
            "only two slots"
        );
        drop(other);
        set.start(
            assignment(1, "echo", json!({"a": 1})),
            builtin(BuiltinKind::Echo),
            slot,
        );
        let r = rx.recv().await.expect("a result");
        assert_eq!(r.task_id, 1);
        assert_eq!(r.lease_token, 101);
        assert_eq!(
            r.outcome,
            Outcome::Succeeded {
                output: json!({"a": 1})
            }
        );
        assert!(r.started_at_us <= r.finished_at_us);
        tokio::time::timeout(Duration::from_secs(2), set.wait_idle())
            .await
            .expect("idle once the task is done");
        assert_eq!(set.running(), 0);
    }

    #[tokio::test]
    async fn cancelled_tasks_are_not_reported() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let set = TaskSet::new(1, tx);
        let slot = set.free_slot(WAIT).await.expect("a slot");
        set.start(
            assignment(2, "sleep", json!({"ms": 60_000})),
            builtin(BuiltinKind::Sleep),
            slot,
        );
        assert_eq!(
            set.leases(),
            vec![Lease {
                task_id: 2,
                lease_token: 102
            }]
        );
        assert!(set.cancel(2));
        assert!(!set.cancel(2));
        tokio::time::timeout(Duration::from_secs(2), set.wait_idle())
            .await
            .expect("the slot is freed by the cancel");
        set.close_results();
        assert!(rx.recv().await.is_none(), "nothing reported");
    }

    /// A task whose handler has ended waits for its last log lines; a
    /// cancel then (the server took it back during an outage, say) does
    /// not swallow its result, which goes out as it always did.
    #[tokio::test]
    async fn a_task_waiting_for_its_log_still_reports() {
        use crate::config::CommandConfig;
        use crate::handlers::command::CommandHandler;
        use crate::logs::{LogShipper, Redactor};
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Nobody ships these lines: the task waits the whole final flush.
        let set = TaskSet::with_logs(1, tx, Some(LogShipper::new(Redactor::default())));
        let handler = Arc::new(Handler::Command(CommandHandler::new(&CommandConfig {
            program: "echo".into(),
            args: vec!["hi".into()],
            env: Default::default(),
            pass_env: vec![],
            workdir: None,
            timeout_ms: None,
        })));
        let slot = set.free_slot(WAIT).await.expect("a slot");
        set.start(assignment(6, "talk", Value::Null), handler, slot);
        let finishing = || set.lock().running.get(&6).is_some_and(|e| e.finishing);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !finishing() {
            assert!(Instant::now() < deadline, "the handler never ended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!set.cancel(6), "nothing left to stop");
        assert_eq!(set.leases().len(), 1, "it holds its lease until it reports");
        let r = tokio::time::timeout(FINAL_FLUSH_WAIT + Duration::from_secs(2), rx.recv())
            .await
            .expect("reported within the final flush's bound")
            .expect("a result");
        assert_eq!(
            r.outcome,
            Outcome::Succeeded {
                output: json!("hi")
            }
        );
        assert_eq!(set.running(), 0);
    }

    #[tokio::test]
    async fn release_all_hands_tasks_back() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let set = TaskSet::new(2, tx);
        for id in [3, 4] {
            let slot = set.free_slot(WAIT).await.expect("a slot");
            set.start(
                assignment(id, "sleep", json!({"ms": 60_000})),
                builtin(BuiltinKind::Sleep),
                slot,
            );
        }
        assert_eq!(set.release_all("agent shutting down").await, 2);
        set.close_results();
        let mut ids = Vec::new();
        while let Some(r) = rx.recv().await {
            assert_eq!(
                r.outcome,
                Outcome::Released {
                    reason: "agent shutting down".into()
                }
            );
            ids.push(r.task_id);
        }
        ids.sort();
        assert_eq!(ids, [3, 4]);
        tokio::time::timeout(Duration::from_secs(2), set.wait_idle())
            .await
            .expect("all slots free");
    }
}
