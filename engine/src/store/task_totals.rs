//! Task counts by status that do not read the whole history.
//!
//! Counting every finished task on each `GET /api/v1/stats` (and every
//! five seconds for the gauges) read ten million rows on a database grown
//! that large: about a second each time. Instead the finished tasks are
//! counted once, up to a mark (`task_totals_mark.upto`, a `finished_at`)
//! that the leader moves forward in bounded steps; a count reads the
//! totals, the finished tasks after the mark (a range of the
//! `tasks_finished` index) and the queued and running ones (their partial
//! indexes), in one read transaction, so it is one snapshot.
//!
//! Only two things take a counted task out of the counts: a retry by hand
//! (the task is queued again) and a retention delete. Both take it out of
//! the totals in their own transaction, under the mark's lock on
//! PostgreSQL, so a step of the mark and a retry or delete are always seen
//! in one order. Every other change to a task either finishes it (its
//! `finished_at` is then after the mark, so it is in the live part) or
//! happens before it finishes.
//!
//! The mark stays [`MARK_LAG_US`] behind the clock: a task's `finished_at`
//! is taken before its transaction commits, and on PostgreSQL by another
//! instance's clock, so a step must not pass rows that are still to come.

use super::{Result, Stats, Store};

/// How far behind the clock the mark stays.
pub const MARK_LAG_US: i64 = 60 * 1_000_000;

/// The most finished tasks one step of the mark counts in the server, so that a step
/// holds the writer (SQLite) for milliseconds even on a database that has
/// never been counted (after the upgrade that added the totals).
pub const MARK_STEP_ROWS: i64 = 20_000;

#[allow(async_fn_in_trait)]
pub trait TaskTotalsStore {
    /// Moves the mark forward towards `now_us` minus [`MARK_LAG_US`],
    /// counting the tasks it passes, at most `max_rows` of them (the server
    /// uses [`MARK_STEP_ROWS`]). Returns whether the mark reached that
    /// target (false: call again to catch up).
    async fn advance_task_totals(&self, now_us: i64, max_rows: i64) -> Result<bool>;
}

/// The totals up to the mark `$1`, the finished tasks after it (a range of
/// `tasks_finished`) and the queued and running tasks, as `(status, n)`.
/// The mark is bound, not read by a subquery, so PostgreSQL plans the range
/// for its value (a subquery's value is unknown when planning: it planned a
/// third of the table, with parallel workers and JIT). Queued tasks are
/// counted through their three partial indexes (not held, held by a key,
/// held by a rate), running ones through theirs: PostgreSQL has no index
/// on the status alone. `$finished` is where SQLite is told the index,
/// since its planner would otherwise walk the status index.
macro_rules! counts_sql {
    ($finished:literal) => {
        concat!(
            "SELECT status, CAST(SUM(n) AS BIGINT) AS n FROM ( \
               SELECT status, n FROM task_totals \
               UNION ALL \
               SELECT status, COUNT(*) AS n FROM tasks ",
            $finished,
            " WHERE finished_at > $1 \
                 AND status IN ('succeeded', 'failed', 'cancelled') GROUP BY status \
               UNION ALL SELECT 'queued', COUNT(*) FROM tasks WHERE status = 'queued' AND held = 0 \
               UNION ALL SELECT 'queued', COUNT(*) FROM tasks WHERE status = 'queued' AND held = 1 \
               UNION ALL SELECT 'queued', COUNT(*) FROM tasks WHERE status = 'queued' AND held = 2 \
               UNION ALL SELECT 'running', COUNT(*) FROM tasks WHERE status = 'running' \
             ) c GROUP BY status"
        )
    };
}
const AGENTS_ONLINE: &str = "SELECT COUNT(*) FROM agents WHERE status IN ('online', 'draining')";

/// The `MARK_STEP_ROWS`-th finished task after the mark, up to the target:
/// where a bounded step ends (none: the step can go all the way). `$index`
/// names `tasks_finished` on SQLite, whose planner otherwise walked the
/// status index, every finished task, for each step.
macro_rules! step_end_sql {
    ($index:literal) => {
        concat!(
            "SELECT finished_at FROM tasks ",
            $index,
            " WHERE finished_at > $1 AND finished_at <= $2 ORDER BY finished_at LIMIT 1 OFFSET $3"
        )
    };
}

/// Adds the finished tasks of `($1, $2]` to the totals.
macro_rules! add_step_sql {
    ($index:literal) => {
        concat!(
            "UPDATE task_totals SET n = task_totals.n + c.n FROM ( \
               SELECT status, COUNT(*) AS n FROM tasks ",
            $index,
            " WHERE finished_at > $1 AND finished_at <= $2 \
                 AND status IN ('succeeded', 'failed', 'cancelled') GROUP BY status \
             ) c WHERE task_totals.status = c.status"
        )
    };
}

const MOVE_MARK: &str = "UPDATE task_totals_mark SET upto = $1 WHERE id = 1";

/// Takes one counted task (finished at or before the mark) out of the
/// totals: `$1` its status, `$2` its `finished_at`, `$3` the mark.
const UNCOUNT_ONE: &str = "UPDATE task_totals SET n = n - 1 WHERE status = $1 AND $2 <= $3";

/// `$share` and `$exclusive` lock the mark's row for the rest of the
/// transaction on PostgreSQL; SQLite's one writer needs no lock.
macro_rules! task_totals_store {
    ($store:ty, $conn:ty, $share:literal, $exclusive:literal, $read:ident, $snapshot:literal, $finished:literal) => {
        impl $store {
            /// Tasks by status and agents online, read in one snapshot
            /// (the mark and the totals must agree).
            pub(in crate::store) async fn counted_stats(&self) -> Result<Stats> {
                let mut tx = self.$read().begin().await?;
                if !$snapshot.is_empty() {
                    sqlx::query($snapshot).execute(&mut *tx).await?;
                }
                let mark: i64 =
                    sqlx::query_scalar("SELECT upto FROM task_totals_mark WHERE id = 1")
                        .fetch_one(&mut *tx)
                        .await?;
                let rows: Vec<(String, i64)> = sqlx::query_as(counts_sql!($finished))
                    .bind(mark)
                    .fetch_all(&mut *tx)
                    .await?;
                let agents_online: i64 = sqlx::query_scalar(AGENTS_ONLINE)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                super::stats_of(rows.into_iter().map(Ok), agents_online)
            }

            /// The mark, held against a step of it until the transaction ends.
            pub(in crate::store) async fn totals_mark(conn: &mut $conn) -> Result<i64> {
                Ok(sqlx::query_scalar(concat!(
                    "SELECT upto FROM task_totals_mark WHERE id = 1",
                    $share
                ))
                .fetch_one(conn)
                .await?)
            }

            /// Takes a task that is queued again (a retry by hand) out of
            /// the totals if they hold it.
            pub(in crate::store) async fn uncount(
                conn: &mut $conn,
                status: &str,
                finished_at: Option<i64>,
            ) -> Result<()> {
                let mark = Self::totals_mark(&mut *conn).await?;
                sqlx::query(UNCOUNT_ONE)
                    .bind(status)
                    .bind(finished_at.unwrap_or(i64::MAX))
                    .bind(mark)
                    .execute(conn)
                    .await?;
                Ok(())
            }
        }

        impl TaskTotalsStore for $store {
            async fn advance_task_totals(&self, now_us: i64, max_rows: i64) -> Result<bool> {
                let target = now_us - MARK_LAG_US;
                let mut tx = self.begin_write().await?;
                let upto: i64 = sqlx::query_scalar(concat!(
                    "SELECT upto FROM task_totals_mark WHERE id = 1",
                    $exclusive
                ))
                .fetch_one(&mut *tx)
                .await?;
                if upto >= target {
                    return Ok(true);
                }
                let step_end: Option<i64> = sqlx::query_scalar(step_end_sql!($finished))
                    .bind(upto)
                    .bind(target)
                    .bind(max_rows.max(1) - 1)
                    .fetch_optional(&mut *tx)
                    .await?;
                let end = step_end.unwrap_or(target);
                sqlx::query(add_step_sql!($finished))
                    .bind(upto)
                    .bind(end)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(MOVE_MARK).bind(end).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(end >= target)
            }
        }
    };
}

// SQLite: a read transaction on the reader is one snapshot (WAL).
task_totals_store!(
    super::sqlite::SqliteStore,
    sqlx::SqliteConnection,
    "",
    "",
    reader,
    "",
    "INDEXED BY tasks_finished"
);
task_totals_store!(
    super::postgres::PgStore,
    sqlx::PgConnection,
    " FOR SHARE",
    " FOR UPDATE",
    pool,
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    ""
);

delegate_to_backend!(TaskTotalsStore {
    async fn advance_task_totals(&self, now_us: i64, max_rows: i64) -> Result<bool>;
});
