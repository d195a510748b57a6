//! Delivers task results to the server, in batches, durably.
//!
//! Results arrive on a channel. The reporter takes everything available,
//! appends it to the outbox (fsynced), sends one request and, once the server
//! acknowledges it, truncates the outbox. While a request is in flight new
//! results queue up on the channel and go in the next request, so batches
//! grow with load without any added delay.
//!
//! Failures:
//! - server unreachable / 5xx: the batch is kept and retried with backoff;
//!   new results keep being appended to the outbox meanwhile;
//! - `stale` acks (and the server's 409 "all stale"): dropped, the task
//!   belongs to someone else now;
//! - a request refused outright (4xx): the batch is halved until the refused
//!   result is alone, and that one result is dropped with an error log, so one
//!   bad result cannot block the others forever;
//! - 401: handled by the session (registers again, then the batch is resent
//!   and most likely acknowledged as stale).
//!
//! The fsync of the first result to arrive is also what gathers a batch:
//! the results that finish meanwhile go in the same request. (Sending that
//! first result at once, with its append beside the request, made requests
//! of one result under load, and workflow steps waited longer: 1,000
//! concurrent chains of no-op steps, 12 → 19 ms from one step's end to the
//! next one's start, on SQLite.)
//!
//! Eager dispatch: when the server offers it, each request also asks for
//! as many tasks as there are free slots (`want`), and the tasks in the
//! answer are started at once, so a slot a result frees is filled in the
//! same round trip rather than one dispatcher round later.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use drover_protocol::agent::{AckStatus, ResultsRequest, TaskResult};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::backoff::Backoff;
use crate::client::ApiError;
use crate::drain::Drain;
use crate::outbox::{Outbox, OutboxError};
use crate::session::Session;
use crate::starter::Starter;
use crate::stop::StopSignal;

/// Most results in one request.
pub const MAX_BATCH: usize = 500;
/// Most (serialized) bytes in one request; the server's default body limit is 8 MiB.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// A result waiting for an acknowledgement.
#[derive(Debug)]
struct Pending {
    result: TaskResult,
    bytes: usize,
}

/// The result reporter; see the module docs.
pub struct Reporter {
    session: Arc<Session>,
    outbox: Arc<Mutex<Outbox>>,
    results: UnboundedReceiver<TaskResult>,
    pending: VecDeque<Pending>,
    /// The channel is closed: no more results will come.
    closed: bool,
    /// Set while the outbox cannot be written, so the error is logged once.
    outbox_failing: bool,
    /// Where tasks that come with an answer are started (eager dispatch).
    eager: Option<(Arc<Starter>, Arc<Drain>)>,
}

impl Reporter {
    /// `leftovers` are results loaded from the outbox at start-up (already on disk).
    pub fn new(
        session: Arc<Session>,
        outbox: Outbox,
        leftovers: Vec<TaskResult>,
        results: UnboundedReceiver<TaskResult>,
    ) -> Self {
        let pending = leftovers
            .into_iter()
            .map(|result| Pending {
                bytes: serde_json::to_vec(&result).map(|v| v.len()).unwrap_or(0),
                result,
            })
            .collect();
        Self {
            session,
            outbox: Arc::new(Mutex::new(outbox)),
            results,
            pending,
            closed: false,
            outbox_failing: false,
            eager: None,
        }
    }

    /// Asks for work with each request and starts what comes back.
    pub fn with_eager_dispatch(mut self, starter: Arc<Starter>, drain: Arc<Drain>) -> Self {
        self.eager = Some((starter, drain));
        self
    }

    /// Tasks to ask for with the next request.
    fn wanted(&self) -> u32 {
        match &self.eager {
            Some((starter, drain)) if self.session.info().eager_dispatch => starter.wanted(drain),
            _ => 0,
        }
    }

    /// Runs until the channel is closed and everything is delivered, or
    /// until `stop`, when whatever is left is made durable in the outbox.
    /// Returns how many results are left undelivered.
    pub async fn run(mut self, mut stop: StopSignal) -> usize {
        let mut backoff = Backoff::default();
        let mut refused_logged = false;
        let mut limit = MAX_BATCH;
        loop {
            if self.pending.is_empty() {
                if self.closed {
                    return 0;
                }
                tokio::select! {
                    received = self.results.recv() => match received {
                        Some(r) => self.take(vec![r]).await,
                        None => {
                            self.closed = true;
                            continue;
                        }
                    },
                    _ = stop.stopped() => return self.give_up().await,
                }
            }
            let fresh = self.drain_channel();
            self.take(fresh).await;

            let n = batch_len(&self.pending, limit);
            let request = ResultsRequest {
                results: self
                    .pending
                    .iter()
                    .take(n)
                    .map(|p| p.result.clone())
                    .collect(),
                want: self.wanted(),
            };
            let answer = tokio::select! {
                answer = self.session.results(&request) => answer,
                _ = stop.stopped() => return self.give_up().await,
            };
            match answer {
                Ok(mut acks) => {
                    backoff.reset();
                    refused_logged = false;
                    let tasks = std::mem::take(&mut acks.tasks);
                    if let (Some((starter, _)), false) = (&self.eager, tasks.is_empty()) {
                        let starter = Arc::clone(starter);
                        tokio::spawn(async move { starter.start_all(tasks).await });
                    }
                    log_acks(&request.results, &acks.results);
                    self.pending.drain(..n);
                    if self.pending.is_empty() {
                        limit = MAX_BATCH;
                    }
                    self.rewrite().await;
                }
                Err(ApiError::Rejected { status, message }) if n > 1 => {
                    if !refused_logged {
                        tracing::warn!(status, error = %message, batch = n, "the server refused a batch of results; retrying in smaller batches to find the refused one");
                        refused_logged = true;
                    }
                    limit = (n / 2).max(1);
                }
                Err(ApiError::Rejected { status, message }) => {
                    let dropped = self.pending.pop_front();
                    tracing::error!(
                        task_id = dropped.map(|p| p.result.task_id),
                        status,
                        error = %message,
                        "the server refused a task result; dropping it"
                    );
                    limit = MAX_BATCH;
                    self.rewrite().await;
                }
                Err(e) => {
                    // Transient (logged by the client) or a garbled answer:
                    // resending is safe, a recorded result comes back stale.
                    if let ApiError::Protocol(_) = &e {
                        tracing::warn!(error = %e, "unexpected answer to results; resending");
                    }
                    let delay = backoff.next_delay();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.stopped() => return self.give_up().await,
                    }
                }
            }
        }
    }

    /// Everything waiting on the channel right now.
    fn drain_channel(&mut self) -> Vec<TaskResult> {
        let mut fresh = Vec::new();
        while !self.closed {
            match self.results.try_recv() {
                Ok(r) => fresh.push(r),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.closed = true,
            }
        }
        fresh
    }

    /// Makes `fresh` durable and queues it for delivery.
    async fn take(&mut self, fresh: Vec<TaskResult>) {
        if fresh.is_empty() {
            return;
        }
        let mut lines = Vec::with_capacity(fresh.len());
        for result in fresh {
            match serde_json::to_string(&result) {
                Ok(line) => {
                    self.pending.push_back(Pending {
                        bytes: line.len(),
                        result,
                    });
                    lines.push(line);
                }
                // A Value always serializes; kept only to avoid a panic path.
                Err(e) => {
                    tracing::error!(task_id = result.task_id, error = %e, "cannot serialize a result; dropping it")
                }
            }
        }
        let outcome = self.with_outbox(move |o| o.append(&lines)).await;
        self.note_outbox(outcome);
    }

    /// Rewrites the outbox to hold exactly the pending results.
    async fn rewrite(&mut self) {
        let left: Vec<TaskResult> = self.pending.iter().map(|p| p.result.clone()).collect();
        let outcome = self.with_outbox(move |o| o.replace(&left)).await;
        self.note_outbox(outcome);
    }

    /// Stops trying: moves whatever is still on the channel to the outbox.
    async fn give_up(mut self) -> usize {
        let fresh = self.drain_channel();
        self.take(fresh).await;
        self.pending.len()
    }

    async fn with_outbox<F>(&self, f: F) -> Result<(), OutboxError>
    where
        F: FnOnce(&mut Outbox) -> Result<(), OutboxError> + Send + 'static,
    {
        let outbox = Arc::clone(&self.outbox);
        // fsync blocks; keep it off the async workers.
        let joined = tokio::task::spawn_blocking(move || {
            let mut outbox = outbox.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut outbox)
        })
        .await;
        match joined {
            Ok(outcome) => outcome,
            Err(e) => Err(OutboxError::Write {
                path: self
                    .outbox
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .path()
                    .to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }

    fn note_outbox(&mut self, outcome: Result<(), OutboxError>) {
        match outcome {
            Ok(()) if self.outbox_failing => {
                tracing::info!("the result outbox is writable again");
                self.outbox_failing = false;
            }
            Ok(()) => {}
            Err(e) if !self.outbox_failing => {
                tracing::error!(error = %e, "results are kept in memory only until the outbox is writable again; they would be lost if the agent stopped now");
                self.outbox_failing = true;
            }
            Err(e) => tracing::debug!(error = %e, "outbox still failing"),
        }
    }
}

/// How many of the first pending results go in the next request: at most
/// `limit` and [`MAX_BATCH_BYTES`], and always at least one.
fn batch_len(pending: &VecDeque<Pending>, limit: usize) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for p in pending.iter().take(limit) {
        if n > 0 && bytes + p.bytes > MAX_BATCH_BYTES {
            break;
        }
        bytes += p.bytes;
        n += 1;
    }
    n.max(1).min(pending.len())
}

fn log_acks(sent: &[TaskResult], acks: &[drover_protocol::agent::ResultAck]) {
    let stale: Vec<i64> = acks
        .iter()
        .filter(|a| a.status == AckStatus::Stale)
        .map(|a| a.task_id)
        .collect();
    if !stale.is_empty() {
        tracing::info!(tasks = ?stale, "the server refused results under stale leases; dropped them");
    }
    if acks.len() != sent.len() {
        tracing::warn!(
            sent = sent.len(),
            acked = acks.len(),
            "the server acknowledged a different number of results than were sent"
        );
    }
    tracing::debug!(
        delivered = sent.len(),
        stale = stale.len(),
        "results delivered"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_protocol::agent::Outcome;

    fn pending(bytes: usize) -> Pending {
        Pending {
            result: TaskResult {
                task_id: 1,
                lease_token: 1,
                outcome: Outcome::Released {
                    reason: String::new(),
                },
                started_at_us: None,
                finished_at_us: None,
            },
            bytes,
        }
    }

    #[test]
    fn batches_respect_count_and_size() {
        let q: VecDeque<Pending> = (0..1000).map(|_| pending(10)).collect();
        assert_eq!(batch_len(&q, MAX_BATCH), MAX_BATCH);
        assert_eq!(batch_len(&q, 7), 7);
        let q: VecDeque<Pending> = (0..10).map(|_| pending(MAX_BATCH_BYTES / 3)).collect();
        assert_eq!(batch_len(&q, MAX_BATCH), 3);
        let q: VecDeque<Pending> = (0..2).map(|_| pending(MAX_BATCH_BYTES * 2)).collect();
        assert_eq!(
            batch_len(&q, MAX_BATCH),
            1,
            "an oversized result still goes alone"
        );
    }
}
