//! SQLite backend: the embedded, zero-set-up default for one server instance.
//!
//! One writer at a time, so transactions never meet `SQLITE_BUSY` and a
//! claim is naturally a single-writer `UPDATE … RETURNING`; reads use a
//! separate pool and WAL lets them run beside the writer. The queue's hot
//! writes (submits, claims, results) are jobs for the writer thread
//! (`writer.rs`, statements in `hot.rs`): prepared statements in a loop,
//! waiting jobs committed together. The rest writes through sqlx's pool of
//! exactly one connection, which is also the writer thread's turn; its
//! multi-row work is one statement over a JSON array unpacked by
//! `json_each`.

mod advance;
mod agents;
mod audit;
mod claim;
mod enrollment;
mod hot;
pub(super) mod keys;
mod lists;
mod overview;
mod queue;
mod results;
mod retry;
mod runs;
mod users;
mod workflows;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use drover_protocol::api::TaskStatus;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::Result;

/// Keeps the writer connection only if it is outside any transaction.
///
/// On some errors (a full disk) SQLite rolls a transaction back by itself,
/// after which sqlx's count of open transactions no longer matches the
/// connection's: its next `begin` would open a savepoint inside a
/// transaction that is never committed, and every later write would be
/// acknowledged and lost. A connection in that state is closed instead
/// (closing rolls back) and the pool opens a fresh one.
async fn outside_transaction(conn: &mut sqlx::SqliteConnection) -> sqlx::Result<bool> {
    let mut handle = conn.lock_handle().await?;
    // SAFETY: the handle is locked for us alone while we hold it, and
    // `sqlite3_get_autocommit` only reads the connection's state.
    let autocommit =
        unsafe { rusqlite::ffi::sqlite3_get_autocommit(handle.as_raw_handle().as_ptr()) };
    if autocommit == 0 {
        tracing::error!("SQLite writer connection left inside a transaction; closing it");
    }
    Ok(autocommit != 0)
}

#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The queue's hot writes (submit, claim, results): see `writer.rs`.
    hot: writer::Writer,
}

/// The migrations this build expects, run at connect and checked by
/// readiness.
pub(super) static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

impl SqliteStore {
    pub async fn connect(
        url: &str,
        max_readers: u32,
        group_commit: crate::store::GroupCommit,
    ) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // A connection to a local file does not break: sqlx's ping before
        // each acquire would only add a round trip to the database thread.
        let writer = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .after_release(|conn, _| Box::pin(outside_transaction(conn)))
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        MIGRATIONS.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(max_readers.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone().read_only(true))
            .await?;
        let hot = writer::Writer::start(options.get_filename(), writer.clone(), group_commit)?;
        Ok(Self {
            writer,
            reader,
            hot,
        })
    }

    pub(super) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The writer thread, for jobs outside the hot path that belong in its
    /// group commits (key admission).
    pub(super) fn hot(&self) -> &writer::Writer {
        &self.hot
    }

    pub(super) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// One instance per SQLite file: nobody else to tell of new work.
    pub(super) async fn notify_work(_tx: &mut Transaction<'_, Sqlite>) -> Result<()> {
        Ok(())
    }

    pub(super) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin().await?)
    }

    async fn event(
        tx: &mut Transaction<'_, Sqlite>,
        task_id: i64,
        at: i64,
        kind: &str,
        status: TaskStatus,
        agent_id: Option<i64>,
        detail: Option<&str>,
    ) -> Result<()> {
        sqlx::query("INSERT INTO task_events (task_id, at, kind, status, agent_id, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .bind(task_id)
            .bind(at)
            .bind(kind)
            .bind(status.as_str())
            .bind(agent_id)
            .bind(detail)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
