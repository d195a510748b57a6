//! Group commit for a write that many requests make at once: concurrent
//! callers' jobs are gathered and written together, in one statement and
//! one commit, instead of each paying for a transaction of its own.
//!
//! Gathering adds no wait at low load: a job that finds no write in flight
//! is written at once, alone. Jobs that arrive while writes are in flight
//! queue up, and the next write takes all of them (up to a size), so
//! batches grow with the load by themselves. An optional window makes the
//! first job wait a little for neighbours, trading latency for fewer
//! commits.
//!
//! Each caller hears back only after the commit that holds its rows. A
//! combined write that fails is retried job by job, so a job that cannot be
//! written fails alone and its neighbours still commit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::StoreError;
use crate::store::Result;

/// How concurrent writes are gathered (`DROVER_GROUP_COMMIT_*`).
#[derive(Clone, Copy, Debug)]
pub struct GroupCommit {
    /// Most requests written in one transaction.
    pub max_requests: usize,
    /// How long the first request of a batch waits for others; zero writes
    /// at once and batches only what queued up meanwhile.
    pub window: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            max_requests: 64,
            window: Duration::ZERO,
        }
    }
}

/// Rows a combined write takes at most, whatever the requests: a single
/// request larger than this is still written, alone.
const MAX_ROWS: usize = 5_000;

type Envelope<J, T> = (J, oneshot::Sender<Result<T>>);

/// Hands jobs to the gathering task; cheap to clone. The task stops when
/// every handle is dropped.
pub(crate) struct Combiner<J, T> {
    jobs: mpsc::UnboundedSender<Envelope<J, T>>,
}

impl<J, T> Clone for Combiner<J, T> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<J, T> std::fmt::Debug for Combiner<J, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Combiner")
    }
}

/// A job that can be gathered: how many rows it writes.
pub(crate) trait Job: Clone + Send + 'static {
    fn rows(&self) -> usize;
}

impl<J: Job, T: Send + 'static> Combiner<J, T> {
    /// Starts the gathering task. `write` writes a batch in one
    /// transaction and answers each job, in order, or fails as a whole.
    /// `name` labels its `drover_group_commit_requests` metric. Up to
    /// `in_flight` writes run at once; jobs are gathered only while all of
    /// them are busy, so below that concurrency each job is written as it
    /// comes, and above it the batches take the excess.
    pub(crate) fn start<W, F>(
        name: &'static str,
        settings: GroupCommit,
        in_flight: usize,
        write: W,
    ) -> Self
    where
        W: Fn(Vec<J>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Vec<T>>> + Send + 'static,
    {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(gather(name, settings, in_flight, queue, Arc::new(write)));
        Self { jobs }
    }

    /// Writes `job` with whatever else is waiting; returns once its
    /// transaction has committed.
    pub(crate) async fn run(&self, job: J) -> Result<T> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send((job, answer))
            .map_err(|_| StoreError::Config("the group commit task has stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Config("the group commit task dropped a write".into()))?
    }
}

async fn gather<J, T, W, F>(
    name: &'static str,
    settings: GroupCommit,
    in_flight: usize,
    mut queue: mpsc::UnboundedReceiver<Envelope<J, T>>,
    write: Arc<W>,
) where
    J: Job,
    T: Send + 'static,
    W: Fn(Vec<J>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Vec<T>>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));
    let max_requests = settings.max_requests.max(1);
    loop {
        // Wait for a free write first: jobs keep queueing meanwhile, and
        // the batch taken below holds all of them.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut rows = first.0.rows();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + settings.window;
        while batch.len() < max_requests && rows < MAX_ROWS {
            let next = match queue.try_recv() {
                Ok(job) => Some(job),
                Err(_) if settings.window.is_zero() => None,
                Err(_) => tokio::time::timeout_at(deadline, queue.recv())
                    .await
                    .ok()
                    .flatten(),
            };
            let Some(job) = next else { break };
            rows += job.0.rows();
            batch.push(job);
        }
        metrics::histogram!("drover_group_commit_requests", "write" => name)
            .record(batch.len() as f64);
        let write = Arc::clone(&write);
        tokio::spawn(async move {
            write_batch(batch, write.as_ref()).await;
            drop(slot);
        });
    }
}

/// Writes the batch together; if that fails, each job alone, so that only
/// the jobs that fail by themselves are answered with an error.
async fn write_batch<J, T, W, F>(batch: Vec<Envelope<J, T>>, write: &W)
where
    J: Job,
    W: Fn(Vec<J>) -> F,
    F: Future<Output = Result<Vec<T>>>,
{
    let (jobs, answers): (Vec<J>, Vec<_>) = batch.into_iter().unzip();
    if jobs.len() == 1 {
        let answer = write(jobs).await.and_then(|mut out| {
            out.pop()
                .ok_or_else(|| StoreError::Config("a write answered no job".into()))
        });
        if let Some(to) = answers.into_iter().next() {
            let _ = to.send(answer);
        }
        return;
    }
    match write(jobs.clone()).await {
        Ok(out) if out.len() == answers.len() => {
            for (to, answer) in answers.into_iter().zip(out) {
                // The caller may have gone; its job is written all the same.
                let _ = to.send(Ok(answer));
            }
        }
        combined => {
            if let Err(e) = &combined {
                tracing::debug!(jobs = jobs.len(), error = %e, "a combined write failed; writing its jobs one by one");
            }
            for (job, to) in jobs.into_iter().zip(answers) {
                let answer = write(vec![job]).await.and_then(|mut out| {
                    out.pop()
                        .ok_or_else(|| StoreError::Config("a write answered no job".into()))
                });
                let _ = to.send(answer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Clone)]
    struct N(i64);
    impl Job for N {
        fn rows(&self) -> usize {
            1
        }
    }

    /// Doubles each number; fails a batch holding a negative one.
    fn doubler(writes: Arc<AtomicUsize>) -> Combiner<N, i64> {
        Combiner::start("test", GroupCommit::default(), 2, move |jobs: Vec<N>| {
            let writes = Arc::clone(&writes);
            async move {
                writes.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                if jobs.iter().any(|n| n.0 < 0) {
                    return Err(StoreError::Config("negative".into()));
                }
                Ok(jobs.into_iter().map(|n| n.0 * 2).collect())
            }
        })
    }

    #[tokio::test]
    async fn concurrent_jobs_share_writes_and_a_bad_one_fails_alone() {
        let writes = Arc::new(AtomicUsize::new(0));
        let combiner = doubler(Arc::clone(&writes));
        let mut calls = Vec::new();
        for i in -1..200 {
            let c = combiner.clone();
            calls.push(tokio::spawn(async move { (i, c.run(N(i)).await) }));
        }
        for call in calls {
            let (i, out) = call.await.expect("task");
            match out {
                Ok(v) => assert_eq!(v, i * 2),
                Err(_) => assert_eq!(i, -1, "only the bad job fails"),
            }
        }
        // 201 jobs, each alone would be 201 writes.
        assert!(
            writes.load(Ordering::SeqCst) < 150,
            "jobs were not gathered: {} writes",
            writes.load(Ordering::SeqCst)
        );
    }

    #[tokio::test]
    async fn a_lone_job_is_written_at_once() {
        let combiner = doubler(Arc::new(AtomicUsize::new(0)));
        assert_eq!(combiner.run(N(21)).await.expect("write"), 42);
        assert!(combiner.run(N(-1)).await.is_err());
    }
}
