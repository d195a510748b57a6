//! Retention: finished work older than its keep-for is deleted, in small
//! batches, by the leader (`server/src/services/retention.rs`).
//!
//! Nothing here adds to the hot path: it needs no index of its own (the
//! finish-time index `tasks_finished` exists for the counts,
//! `task_totals.rs`). Each batch walks the table by primary key
//! from the oldest row — ids grow with time, so old work is at the front —
//! decides in Rust which rows are finished and old enough, and deletes them
//! with what hangs off them in one short transaction. A walk stops at the
//! first row created after the shortest cutoff: nothing after it can be old
//! enough. Rows at the front that must stay (a run waiting for approval
//! for months, a type kept longer) are read again by each pass; at most a
//! batch per step.

use std::collections::HashMap;

use super::{Result, Store};

/// How long finished work is kept, in µs.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionPolicy {
    /// Finished tasks (not in a run) and finished runs with their tasks.
    pub default_us: i64,
    /// Finished tasks of these types, instead of the default.
    pub by_type_us: HashMap<String, i64>,
    /// The audit log.
    pub audit_us: i64,
}

impl RetentionPolicy {
    fn task_keep_us(&self, task_type: &str) -> i64 {
        self.by_type_us
            .get(task_type)
            .copied()
            .unwrap_or(self.default_us)
    }

    /// The shortest keep-for of any task: no task created later than
    /// `now` less this can be due.
    fn shortest_task_keep_us(&self) -> i64 {
        self.by_type_us
            .values()
            .copied()
            .fold(self.default_us, i64::min)
    }
}

/// What one batch did, and where the next batch of the same walk starts
/// (`None`: the walk reached recent rows, start from the front next pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Batch {
    pub deleted: u64,
    pub next_after_id: Option<i64>,
}

const FINISHED: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// A task row as the walk reads it.
type TaskRow = (i64, String, String, Option<i64>, i64, Option<i64>);
/// A run row as the walk reads it.
type RunRow = (i64, String, Option<i64>, i64);

#[allow(async_fn_in_trait)]
pub trait RetentionStore {
    /// Deletes the due tasks (finished, in no run) among the `batch` after
    /// `after_id`, with their attempts, events and logs.
    async fn prune_tasks(
        &self,
        policy: &RetentionPolicy,
        after_id: i64,
        batch: i64,
        now_us: i64,
    ) -> Result<Batch>;
    /// Deletes the due runs (finished before the default cutoff) among the
    /// `batch` after `after_id`, with their steps, approvals, waits and
    /// tasks.
    async fn prune_runs(
        &self,
        policy: &RetentionPolicy,
        after_id: i64,
        batch: i64,
        now_us: i64,
    ) -> Result<Batch>;
    /// Deletes audit entries older than the audit keep-for, at most `batch`.
    async fn prune_audit(&self, policy: &RetentionPolicy, batch: i64, now_us: i64) -> Result<u64>;
}

/// Which of the walked task rows are due, and where the walk goes on.
fn due_tasks(
    policy: &RetentionPolicy,
    rows: &[TaskRow],
    batch: i64,
    now_us: i64,
) -> (Vec<i64>, Option<i64>) {
    let horizon = now_us - policy.shortest_task_keep_us();
    let mut due = Vec::new();
    for (id, task_type, status, finished_at, created_at, run_id) in rows {
        if *created_at >= horizon {
            return (due, None);
        }
        let old = finished_at.is_some_and(|at| at < now_us - policy.task_keep_us(task_type));
        if run_id.is_none() && FINISHED.contains(&status.as_str()) && old {
            due.push(*id);
        }
    }
    (due, next(rows.last().map(|r| r.0), rows.len(), batch))
}

/// Which of the walked runs are due, and where the walk goes on.
fn due_runs(
    policy: &RetentionPolicy,
    rows: &[RunRow],
    batch: i64,
    now_us: i64,
) -> (Vec<i64>, Option<i64>) {
    let cutoff = now_us - policy.default_us;
    let mut due = Vec::new();
    for (id, status, finished_at, created_at) in rows {
        if *created_at >= cutoff {
            return (due, None);
        }
        if FINISHED.contains(&status.as_str()) && finished_at.is_some_and(|at| at < cutoff) {
            due.push(*id);
        }
    }
    (due, next(rows.last().map(|r| r.0), rows.len(), batch))
}

fn next(last: Option<i64>, read: usize, batch: i64) -> Option<i64> {
    last.filter(|_| read as i64 >= batch)
}

const WALK_TASKS: &str = "SELECT id, task_type, status, finished_at, created_at, run_id \
    FROM tasks WHERE id > $1 ORDER BY id LIMIT $2";
const WALK_RUNS: &str =
    "SELECT id, status, finished_at, created_at FROM runs WHERE id > $1 ORDER BY id LIMIT $2";
const WALK_AUDIT: &str = "SELECT id, at FROM audit_log ORDER BY id LIMIT $1";
const DELETE_AUDIT: &str = "DELETE FROM audit_log WHERE id <= $1 AND at < $2";

/// The deletes of a list of ids `$1`, children first; `$in` is the
/// backend's "is in the list" (SQLite: a JSON array; PostgreSQL: an array).
macro_rules! deletes {
    ($in:literal) => {
        (
            // Tasks and what hangs off them.
            [
                concat!("DELETE FROM task_attempts WHERE task_id ", $in),
                concat!("DELETE FROM task_events WHERE task_id ", $in),
                concat!("DELETE FROM task_logs WHERE task_id ", $in),
                concat!("DELETE FROM task_log_heads WHERE task_id ", $in),
                concat!("DELETE FROM tasks WHERE id ", $in),
            ],
            // Runs' own rows, after their tasks.
            [
                concat!("DELETE FROM run_steps WHERE run_id ", $in),
                concat!("DELETE FROM approvals WHERE run_id ", $in),
                concat!("DELETE FROM waits WHERE run_id ", $in),
                concat!("DELETE FROM run_events WHERE run_id ", $in),
                concat!("DELETE FROM runs WHERE id ", $in),
            ],
            // The tasks of runs.
            concat!("SELECT id FROM tasks WHERE run_id ", $in),
            // Counted tasks leave the totals (task_totals.rs); `$2` is the mark.
            concat!(
                "UPDATE task_totals SET n = task_totals.n - c.n FROM ( \
                   SELECT status, COUNT(*) AS n FROM tasks WHERE finished_at <= $2 AND id ",
                $in,
                " GROUP BY status) c WHERE task_totals.status = c.status"
            ),
        )
    };
}

macro_rules! retention_store {
    ($store:ty, $pool:ident, $in:literal, $ids:expr) => {
        impl $store {
            /// Deletes the tasks `tasks` and the runs `runs` (with their
            /// tasks), with everything that hangs off them, in one
            /// transaction; returns how many tasks (runs, if any) went.
            async fn delete_finished(&self, tasks: &[i64], runs: &[i64]) -> Result<u64> {
                let (task_deletes, run_deletes, tasks_of_runs, uncount) = deletes!($in);
                let mut tx = self.$pool().begin().await?;
                let mut tasks = tasks.to_vec();
                if !runs.is_empty() {
                    let of_runs: Vec<i64> = sqlx::query_scalar(tasks_of_runs)
                        .bind($ids(runs))
                        .fetch_all(&mut *tx)
                        .await?;
                    tasks.extend(of_runs);
                }
                if !tasks.is_empty() {
                    let mark = Self::totals_mark(&mut tx).await?;
                    sqlx::query(uncount)
                        .bind($ids(&tasks[..]))
                        .bind(mark)
                        .execute(&mut *tx)
                        .await?;
                }
                let mut deleted = 0;
                for (statements, ids) in [(&task_deletes[..], &tasks[..]), (&run_deletes[..], runs)]
                {
                    if ids.is_empty() {
                        continue;
                    }
                    let ids = $ids(ids);
                    for statement in statements {
                        deleted = sqlx::query(statement)
                            .bind(&ids)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                    }
                }
                tx.commit().await?;
                Ok(deleted)
            }
        }

        impl RetentionStore for $store {
            async fn prune_tasks(
                &self,
                policy: &RetentionPolicy,
                after_id: i64,
                batch: i64,
                now_us: i64,
            ) -> Result<Batch> {
                let rows: Vec<TaskRow> = sqlx::query_as(WALK_TASKS)
                    .bind(after_id)
                    .bind(batch)
                    .fetch_all(self.$pool())
                    .await?;
                let (due, next_after_id) = due_tasks(policy, &rows, batch, now_us);
                let deleted = if due.is_empty() {
                    0
                } else {
                    self.delete_finished(&due, &[]).await?
                };
                Ok(Batch {
                    deleted,
                    next_after_id,
                })
            }

            async fn prune_runs(
                &self,
                policy: &RetentionPolicy,
                after_id: i64,
                batch: i64,
                now_us: i64,
            ) -> Result<Batch> {
                let rows: Vec<RunRow> = sqlx::query_as(WALK_RUNS)
                    .bind(after_id)
                    .bind(batch)
                    .fetch_all(self.$pool())
                    .await?;
                let (due, next_after_id) = due_runs(policy, &rows, batch, now_us);
                let deleted = if due.is_empty() {
                    0
                } else {
                    self.delete_finished(&[], &due).await?
                };
                Ok(Batch {
                    deleted,
                    next_after_id,
                })
            }

            async fn prune_audit(
                &self,
                policy: &RetentionPolicy,
                batch: i64,
                now_us: i64,
            ) -> Result<u64> {
                let cutoff = now_us - policy.audit_us;
                let rows: Vec<(i64, i64)> = sqlx::query_as(WALK_AUDIT)
                    .bind(batch)
                    .fetch_all(self.$pool())
                    .await?;
                let Some(last) = rows.iter().take_while(|(_, at)| *at < cutoff).last() else {
                    return Ok(0);
                };
                Ok(sqlx::query(DELETE_AUDIT)
                    .bind(last.0)
                    .bind(cutoff)
                    .execute(self.$pool())
                    .await?
                    .rows_affected())
            }
        }
    };
}

retention_store!(
    super::sqlite::SqliteStore,
    writer,
    "IN (SELECT value FROM json_each($1))",
    |ids: &[i64]| serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
);
retention_store!(
    super::postgres::PgStore,
    pool,
    "= ANY($1)",
    |ids: &[i64]| ids.to_vec()
);

delegate_to_backend!(RetentionStore {
    async fn prune_tasks(&self, policy: &RetentionPolicy, after_id: i64, batch: i64, now_us: i64) -> Result<Batch>;
    async fn prune_runs(&self, policy: &RetentionPolicy, after_id: i64, batch: i64, now_us: i64) -> Result<Batch>;
    async fn prune_audit(&self, policy: &RetentionPolicy, batch: i64, now_us: i64) -> Result<u64>;
});

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetentionPolicy {
        RetentionPolicy {
            default_us: 100,
            by_type_us: HashMap::from([("long".to_string(), 500), ("short".to_string(), 10)]),
            audit_us: 1_000,
        }
    }

    fn row(
        id: i64,
        t: &str,
        status: &str,
        finished: Option<i64>,
        created: i64,
        run: Option<i64>,
    ) -> TaskRow {
        (id, t.into(), status.into(), finished, created, run)
    }

    #[test]
    fn only_finished_tasks_in_no_run_past_their_types_keep_for_are_due() {
        let now = 1_000;
        let rows = [
            row(1, "t", "succeeded", Some(800), 700, None), // 200 old: due
            row(2, "t", "running", None, 700, None),        // running
            row(3, "t", "failed", Some(950), 700, None),    // 50 old: kept
            row(4, "long", "failed", Some(800), 700, None), // kept 500
            row(5, "short", "cancelled", Some(985), 900, None), // 15 old > 10: due
            row(6, "t", "succeeded", Some(800), 700, Some(9)), // a run's: with it
            row(7, "t", "succeeded", Some(995), 992, None), // created after the horizon: stop
            row(8, "t", "succeeded", Some(100), 50, None),  // never reached
        ];
        assert_eq!(due_tasks(&policy(), &rows, 8, now), (vec![1, 5], None));
        // A full batch with nothing recent goes on after its last row.
        assert_eq!(due_tasks(&policy(), &rows[..3], 3, now), (vec![1], Some(3)));
        assert_eq!(due_tasks(&policy(), &rows[..3], 4, now), (vec![1], None));
    }

    #[test]
    fn finished_runs_past_the_default_are_due() {
        let rows: [RunRow; 3] = [
            (1, "succeeded".into(), Some(850), 800),
            (2, "waiting_approval".into(), None, 800),
            (3, "failed".into(), Some(960), 850),
        ];
        assert_eq!(due_runs(&policy(), &rows, 3, 1_000), (vec![1], Some(3)));
    }
}
