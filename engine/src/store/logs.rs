//! Task logs on both backends (one text per statement, stamped out per
//! backend by `log_store!`; only the lock on the task row differs).
//!
//! An append checks, per task, that the task is running under the lease
//! the batch names and that the sender holds it, and writes the batch in
//! the same transaction: on PostgreSQL the check takes the task row
//! `FOR SHARE`, so a result (which updates the row) waits for the append
//! to commit or the append sees the task ended — a finished task takes no
//! more lines, and a reader that saw it finished has seen all of them. On
//! SQLite the one writer gives the same order. Seqs come from the task's
//! head row (`UPDATE … RETURNING`), so an append never reads the lines, and
//! the bound is arithmetic on the head (`logs::plan_append`).

use drover_protocol::api::{LogStream, TaskLogLine, TaskLogPage, TaskStatus};

use super::{Result, Store};
use crate::error::StoreError;
use crate::logs::{dropped_note, plan_append, LogBatch};

/// What became of one task's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written (and the bound applied).
    Yes,
    /// The task is not running under that lease (finished, requeued, or
    /// no such task): nothing written.
    Stale,
    /// The lease is current but another agent holds it. Nothing written.
    NotHolder,
}

/// Which lines of a log to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRange {
    /// Lines with a seq above `after`, oldest first, at most `limit`.
    After { after: i64, limit: i64 },
    /// The last `n` lines.
    Tail(i64),
}

#[allow(async_fn_in_trait)]
pub trait LogStore {
    /// Appends each batch whose task `agent_id` holds under the batch's
    /// lease, keeping at most `max_lines` lines per task; one answer per
    /// batch, in order. One transaction.
    async fn append_logs(
        &self,
        agent_id: i64,
        batches: &[LogBatch],
        max_lines: i64,
        now_us: i64,
    ) -> Result<Vec<Appended>>;

    /// A page of a task's log; `None` if there is no such task.
    async fn task_log(&self, task_id: i64, range: LogRange) -> Result<Option<TaskLogPage>>;
}

#[derive(sqlx::FromRow)]
struct LineRow {
    seq: i64,
    attempt: i64,
    stream: String,
    line: String,
    at: i64,
}

impl TryFrom<LineRow> for TaskLogLine {
    type Error = StoreError;

    fn try_from(r: LineRow) -> Result<Self> {
        Ok(TaskLogLine {
            seq: r.seq,
            attempt: r.attempt,
            stream: LogStream::parse(&r.stream)
                .ok_or_else(|| StoreError::Corrupt(format!("log stream {:?}", r.stream)))?,
            line: r.line,
            at_us: r.at,
        })
    }
}

mod sql {
    /// The task's state, for the holder check; `{lock}` is `FOR SHARE` on
    /// PostgreSQL.
    pub fn holder(lock: &str) -> String {
        format!("SELECT status, agent_id, lease_token, attempts FROM tasks WHERE id = $1 {lock}")
    }

    /// Hands out `$2` seqs: the head as it is afterwards.
    pub const TAKE_SEQS: &str =
        "INSERT INTO task_log_heads (task_id, next_seq, first_seq, dropped) \
        VALUES ($1, $2 + 1, 1, 0) \
        ON CONFLICT (task_id) DO UPDATE SET next_seq = task_log_heads.next_seq + $2 \
        RETURNING next_seq, first_seq, dropped";
    pub const INSERT: &str = "INSERT INTO task_logs (task_id, seq, attempt, stream, line, at) ";
    pub const TRIM: &str = "DELETE FROM task_logs WHERE task_id = $1 AND seq >= $2 AND seq < $3";
    pub const MOVE_HEAD: &str =
        "UPDATE task_log_heads SET first_seq = $2, dropped = $3 WHERE task_id = $1";
    pub const NOTE: &str = "INSERT INTO task_logs (task_id, seq, attempt, stream, line, at) \
        VALUES ($1, 0, $2, 'note', $3, $4) \
        ON CONFLICT (task_id, seq) DO UPDATE SET attempt = $2, line = $3, at = $4";

    pub const STATUS: &str = "SELECT status FROM tasks WHERE id = $1";
    pub const DROPPED: &str = "SELECT dropped FROM task_log_heads WHERE task_id = $1";
    pub const AFTER: &str = "SELECT seq, attempt, stream, line, at FROM task_logs \
        WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
    pub const TAIL: &str = "SELECT seq, attempt, stream, line, at FROM task_logs \
        WHERE task_id = $1 ORDER BY seq DESC LIMIT $2";
}

/// Rows per INSERT statement: far below either backend's bind limit.
const INSERT_CHUNK: usize = 500;

/// The trait for one backend: `$db` its sqlx database, `$read` its read
/// pool, `$lock` the holder check's row lock.
macro_rules! log_store {
    ($store:ty, $db:ty, $read:ident, $lock:expr) => {
        impl LogStore for $store {
            async fn append_logs(
                &self,
                agent_id: i64,
                batches: &[LogBatch],
                max_lines: i64,
                now_us: i64,
            ) -> Result<Vec<Appended>> {
                let holder = sql::holder($lock);
                let mut answers = vec![Appended::Stale; batches.len()];
                // Tasks in id order: two requests naming the same tasks
                // lock them in the same order.
                let mut order: Vec<usize> = (0..batches.len()).collect();
                order.sort_by_key(|&i| batches[i].task_id);
                let mut tx = self.begin_write().await?;
                for i in order {
                    let batch = &batches[i];
                    let task: Option<(String, Option<i64>, Option<i64>, i64)> =
                        sqlx::query_as(&holder)
                            .bind(batch.task_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let Some((status, holder_id, lease, attempt)) = task else {
                        continue;
                    };
                    if status != TaskStatus::Running.as_str() || lease != Some(batch.lease_token) {
                        continue;
                    }
                    if holder_id != Some(agent_id) {
                        answers[i] = Appended::NotHolder;
                        continue;
                    }
                    answers[i] = Appended::Yes;
                    let rows = batch.rows();
                    if rows.is_empty() {
                        continue;
                    }
                    let added = rows.len() as i64;
                    let (next_seq, first_seq, dropped): (i64, i64, i64) =
                        sqlx::query_as(sql::TAKE_SEQS)
                            .bind(batch.task_id)
                            .bind(added)
                            .fetch_one(&mut *tx)
                            .await?;
                    let plan = plan_append(added, next_seq, first_seq, dropped, max_lines);
                    let kept: Vec<(i64, &(&'static str, String, Option<i64>))> = rows
                        .iter()
                        .enumerate()
                        .map(|(k, row)| (plan.start + k as i64, row))
                        .filter(|(seq, _)| *seq >= plan.keep_from)
                        .collect();
                    for chunk in kept.chunks(INSERT_CHUNK) {
                        let mut insert = sqlx::QueryBuilder::<$db>::new(sql::INSERT);
                        insert.push_values(chunk, |mut b, (seq, (stream, line, at))| {
                            b.push_bind(batch.task_id)
                                .push_bind(*seq)
                                .push_bind(attempt)
                                .push_bind(*stream)
                                .push_bind(line.as_str())
                                .push_bind(at.unwrap_or(now_us));
                        });
                        insert.build().execute(&mut *tx).await?;
                    }
                    if plan.drops(first_seq) {
                        sqlx::query(sql::TRIM)
                            .bind(batch.task_id)
                            .bind(first_seq)
                            .bind(plan.keep_from)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query(sql::MOVE_HEAD)
                            .bind(batch.task_id)
                            .bind(plan.keep_from)
                            .bind(plan.dropped)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query(sql::NOTE)
                            .bind(batch.task_id)
                            .bind(attempt)
                            .bind(dropped_note(plan.dropped, max_lines))
                            .bind(now_us)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(answers)
            }

            async fn task_log(&self, task_id: i64, range: LogRange) -> Result<Option<TaskLogPage>> {
                // The status first: a line is only written while the task
                // runs, so lines read after seeing it finished are all of them.
                let status: Option<String> = sqlx::query_scalar(sql::STATUS)
                    .bind(task_id)
                    .fetch_optional(self.$read())
                    .await?;
                let Some(status) = status else {
                    return Ok(None);
                };
                let status = super::rows::task_status(&status)?;
                let (rows, after, more) = match range {
                    LogRange::After { after, limit } => {
                        let mut rows: Vec<LineRow> = sqlx::query_as(sql::AFTER)
                            .bind(task_id)
                            .bind(after)
                            .bind(limit + 1)
                            .fetch_all(self.$read())
                            .await?;
                        let more = rows.len() as i64 > limit;
                        rows.truncate(limit.max(0) as usize);
                        (rows, after, more)
                    }
                    LogRange::Tail(n) => {
                        let mut rows: Vec<LineRow> = sqlx::query_as(sql::TAIL)
                            .bind(task_id)
                            .bind(n)
                            .fetch_all(self.$read())
                            .await?;
                        rows.reverse();
                        (rows, -1, false)
                    }
                };
                let dropped: Option<i64> = sqlx::query_scalar(sql::DROPPED)
                    .bind(task_id)
                    .fetch_optional(self.$read())
                    .await?;
                let lines = rows
                    .into_iter()
                    .map(TaskLogLine::try_from)
                    .collect::<Result<Vec<_>>>()?;
                Ok(Some(TaskLogPage {
                    task_id,
                    status,
                    last_seq: lines.last().map_or(after, |l| l.seq),
                    lines,
                    more,
                    dropped: dropped.unwrap_or(0),
                }))
            }
        }
    };
}

log_store!(super::sqlite::SqliteStore, sqlx::Sqlite, reader, "");
log_store!(super::postgres::PgStore, sqlx::Postgres, pool, "FOR SHARE");

delegate_to_backend!(LogStore {
    async fn append_logs(&self, agent_id: i64, batches: &[LogBatch], max_lines: i64, now_us: i64) -> Result<Vec<Appended>>;
    async fn task_log(&self, task_id: i64, range: LogRange) -> Result<Option<TaskLogPage>>;
});
