//! The SQLite writer thread: the queue's hot writes (submits, claims,
//! results) run here as jobs on one `rusqlite` connection, with prepared
//! statements executed in a loop.
//!
//! Why not sqlx for these: sqlx-sqlite runs each statement on its own
//! worker thread and answers through a channel, so a batch costs one round
//! trip per statement; to keep batches fast the old code packed rows into
//! JSON and unpacked them with `json_each` inside SQLite, which cost more
//! than the writes themselves (≈ 100 µs of SQLite time per task). A job here
//! is one channel round trip however many rows it writes, and each row is a
//! cached prepared statement (a few µs).
//!
//! Group commit: the thread takes every job that is waiting (up to
//! `GroupCommit::max_requests`, after waiting `GroupCommit::window` for
//! more if that is set) and runs them in one transaction, each inside its own
//! savepoint, so a job that fails is rolled back alone and its neighbours
//! still commit. A job's caller hears back only after the commit that holds
//! its rows (or its failure), so nothing is acknowledged before it is
//! durable (WAL, `synchronous = NORMAL`: see docs/ARCHITECTURE.md).
//!
//! One writer at a time: the rest of the SQLite store writes through sqlx's
//! one-connection writer pool. While a batch runs, the thread holds that
//! pool's only connection, so the two never write at once and neither meets
//! `SQLITE_BUSY`; the pool hands its connection out first come, first served.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::oneshot;

use crate::error::StoreError;
use crate::store::GroupCommit;

/// What runs on the writer thread; returns what to do once the commit's
/// outcome is known.
type Job = Box<dyn FnOnce(&rusqlite::Connection) -> Reply + Send>;
/// Answers the job's caller with the commit's outcome (`Err` = its message).
type Reply = Box<dyn FnOnce(Result<(), &str>) + Send>;

/// Hands jobs to the writer thread; cheap to clone. The thread stops when
/// every handle is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Opens the database file (already migrated) and starts the thread.
    /// `gate` is the sqlx writer pool it takes turns with.
    pub(crate) fn start(
        path: &Path,
        gate: SqlitePool,
        group_commit: GroupCommit,
    ) -> Result<Self, StoreError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA cache_size = -32000;",
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        let runtime = tokio::runtime::Handle::current();
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("drover-sqlite-writer".into())
            .spawn(move || write_all(conn, queue, gate, runtime, group_commit))
            .map_err(|e| StoreError::Sqlite(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `f` in the next transaction and returns its value once that
    /// transaction has committed. An error of `f` rolls back its own writes.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let out = in_savepoint(conn, f);
            Box::new(move |committed| {
                let out = match (out, committed) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(StoreError::Sqlite(format!("commit failed: {e}"))),
                };
                // The caller may have gone (its request was dropped).
                let _ = answer.send(out);
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Sqlite("the writer thread has stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Sqlite("the writer thread dropped a job".into()))?
    }
}

/// Runs `f` inside a savepoint: its writes stay if it succeeds and are
/// undone if it fails, whatever the other jobs of the batch do.
pub(crate) fn in_savepoint<T>(
    conn: &rusqlite::Connection,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(conn) {
        Ok(value) => {
            conn.execute_batch("RELEASE job")?;
            Ok(value)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

/// The thread's loop: a batch of waiting jobs, one transaction, then the
/// answers. A job that cannot run is dropped, and its caller is told so.
fn write_all(
    conn: rusqlite::Connection,
    queue: mpsc::Receiver<Job>,
    gate: SqlitePool,
    runtime: tokio::runtime::Handle,
    group_commit: GroupCommit,
) {
    let max_jobs = group_commit.max_requests.max(1);
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        let deadline = std::time::Instant::now() + group_commit.window;
        while batch.len() < max_jobs {
            let next = match queue.try_recv() {
                Ok(job) => Some(job),
                Err(_) => deadline
                    .checked_duration_since(std::time::Instant::now())
                    .and_then(|left| queue.recv_timeout(left).ok()),
            };
            match next {
                Some(job) => batch.push(job),
                None => break,
            }
        }
        metrics::histogram!("drover_group_commit_requests", "write" => "sqlite")
            .record(batch.len() as f64);
        // sqlx gives a connection back to its pool on the runtime.
        let _runtime = runtime.enter();
        let turn = match runtime.block_on(gate.acquire()) {
            Ok(turn) => turn,
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "SQLite writer: cannot take the write turn");
                continue;
            }
        };
        let answered = run_batch(&conn, batch);
        drop(turn);
        if let Some((replies, committed)) = answered {
            for reply in replies {
                reply(committed.as_ref().map(|_| ()).map_err(String::as_str));
            }
        }
    }
}

/// One transaction for the batch: the replies and the commit's outcome.
fn run_batch(
    conn: &rusqlite::Connection,
    batch: Vec<Job>,
) -> Option<(Vec<Reply>, Result<(), String>)> {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, jobs = batch.len(), "SQLite writer: cannot begin");
        return None;
    }
    let mut replies = Vec::with_capacity(batch.len());
    for job in batch {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn))) {
            Ok(reply) => replies.push(reply),
            Err(_) => {
                // Its caller is told the job was dropped; its writes go.
                tracing::error!("SQLite writer: a job panicked");
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            }
        }
    }
    let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
    // Whatever failed (SQLite rolls back by itself on some errors, such as
    // a full disk, and keeps the transaction open on others), the next
    // batch must start outside any transaction, or its writes would land
    // in one that is never committed.
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    Some((replies, committed))
}
