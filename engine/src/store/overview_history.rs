//! The overview's figures over time, on both backends (migration 0025):
//! tasks finished per bucket, first-claim waits, queue depth by type, and
//! the latest failures.
//!
//! Every read is bounded whatever the history's size:
//! - finishes come from `finish_counts`, five-second slots the leader
//!   counts once each ([`OverviewHistoryStore::roll_finish_counts`]), so a
//!   week is at most 120,960 small rows of one primary-key range; only the
//!   finishes after the leader's mark (about a minute of them) are read
//!   from `tasks_finished`;
//! - waits read, per bucket, the latest `per_bucket` first claims through
//!   `task_attempts_claimed` (one `LIMIT` branch per bucket, in one
//!   statement), so the percentiles are over a bounded sample;
//! - depth reads, per bucket, the last sample's rows (`queue_depth`'s key);
//! - failures read the newest entries of `tasks_failed_at`.
//!
//! The leader's writes are as small: a count of a few slots of
//! `tasks_finished` per pass, and one row per busy task type per sample.

use std::collections::BTreeMap;

use drover_protocol::api::RecentFailure;

use super::{Result, Store, MARK_LAG_US};

/// The width of one `finish_counts` slot; every overview bucket is a
/// multiple of it.
pub const FINISH_SLOT_US: i64 = 5_000_000;
/// The longest range the overview shows: older history is pruned.
pub const OVERVIEW_HISTORY_US: i64 = 7 * 86_400 * 1_000_000;
/// Finishes after the mark read from the tasks at most this far back: a
/// leader that stopped counting leaves a gap, not a long read.
const TAIL_MAX_US: i64 = 5 * 60 * 1_000_000;

/// Where the overview's queued total is kept in `queue_depth`: no task
/// type is empty.
const TOTAL: &str = "";

/// One depth sample: queued tasks per type, with the total under "".
pub type DepthSample = BTreeMap<String, i64>;

#[allow(async_fn_in_trait)]
pub trait OverviewHistoryStore {
    /// Counts the tasks finished in the slots between the mark and
    /// `now_us` less [`MARK_LAG_US`] (at most `max_slots` of them) into
    /// `finish_counts` and moves the mark; returns whether it caught up.
    /// A database never counted starts at the current slot: history from
    /// before the upgrade is not rolled up.
    async fn roll_finish_counts(&self, now_us: i64, max_slots: i64) -> Result<bool>;
    /// Counts the queued tasks by type and records the `top` busiest and
    /// the total as of `now_us`; returns the rows written.
    async fn sample_queue_depth(&self, now_us: i64, top: i64) -> Result<u64>;
    /// Deletes at most `limit` slots and at most `limit` depth rows older
    /// than `before_us`, oldest first; returns how many went.
    async fn prune_overview_history(&self, before_us: i64, limit: i64) -> Result<u64>;
    /// Succeeded and failed per bucket of `bucket_us` (a multiple of
    /// [`FINISH_SLOT_US`]) from `since_us`, `buckets` of them.
    async fn finish_series(
        &self,
        since_us: i64,
        bucket_us: i64,
        buckets: usize,
        now_us: i64,
    ) -> Result<Vec<(i64, i64)>>;
    /// The waits (µs) of the latest `per_bucket` first claims of each
    /// bucket, sorted ascending.
    async fn wait_samples(
        &self,
        since_us: i64,
        bucket_us: i64,
        buckets: usize,
        per_bucket: i64,
    ) -> Result<Vec<Vec<i64>>>;
    /// Each bucket's last depth sample, if the leader took one in it.
    async fn depth_series(
        &self,
        since_us: i64,
        bucket_us: i64,
        buckets: usize,
    ) -> Result<Vec<Option<DepthSample>>>;
    /// The latest failed tasks, newest first.
    async fn recent_failures(&self, limit: i64) -> Result<Vec<RecentFailure>>;
}

const MARK: &str = "SELECT upto FROM finish_counts_mark WHERE id = 1";
const MOVE_MARK: &str = "UPDATE finish_counts_mark SET upto = $1 WHERE id = 1";

/// Finished tasks in `$1 .. $2` per slot and outcome, through
/// `tasks_finished` (`$index` names it for SQLite's planner).
macro_rules! per_slot_sql {
    ($index:literal) => {
        concat!(
            "SELECT finished_at / 5000000, status, COUNT(*) FROM tasks ",
            $index,
            " WHERE finished_at >= $1 AND finished_at < $2 \
              AND status IN ('succeeded', 'failed') GROUP BY 1, 2"
        )
    };
}

/// The rolled-up slots in `$1 .. $3` per bucket of `$2`.
const ROLLED: &str = "SELECT (slot_us - $1) / $2, CAST(SUM(succeeded) AS BIGINT), \
    CAST(SUM(failed) AS BIGINT) FROM finish_counts \
    WHERE slot_us >= $1 AND slot_us < $3 GROUP BY 1";

/// Finishes from `$3` on, per bucket of `$2` from `$1`.
macro_rules! tail_sql {
    ($index:literal) => {
        concat!(
            "SELECT (finished_at - $1) / $2, status, COUNT(*) FROM tasks ",
            $index,
            " WHERE finished_at >= $3 AND status IN ('succeeded', 'failed') GROUP BY 1, 2"
        )
    };
}

/// Queued tasks per type, each partial index of queued tasks in a branch.
const QUEUED_BY_TYPE: &str = "SELECT task_type, CAST(SUM(n) AS BIGINT) FROM ( \
      SELECT task_type, COUNT(*) AS n FROM tasks WHERE status = 'queued' AND held = 0 GROUP BY task_type \
      UNION ALL SELECT task_type, COUNT(*) AS n FROM tasks WHERE status = 'queued' AND held = 1 GROUP BY task_type \
      UNION ALL SELECT task_type, COUNT(*) AS n FROM tasks WHERE status = 'queued' AND held = 2 GROUP BY task_type \
    ) q GROUP BY task_type";

const PRUNE_SLOTS: &str = "DELETE FROM finish_counts WHERE slot_us IN ( \
    SELECT slot_us FROM finish_counts WHERE slot_us < $1 ORDER BY slot_us LIMIT $2)";
const PRUNE_DEPTH: &str = "DELETE FROM queue_depth WHERE (at_us, task_type) IN ( \
    SELECT at_us, task_type FROM queue_depth WHERE at_us < $1 ORDER BY at_us LIMIT $2)";

/// The latest failures through `tasks_failed_at`, errors cut to 200
/// characters.
macro_rules! failures_sql {
    ($index:literal) => {
        concat!(
            "SELECT id, task_type, SUBSTR(error, 1, 200), finished_at, run_id FROM tasks ",
            $index,
            " WHERE status = 'failed' AND finished_at IS NOT NULL \
              ORDER BY finished_at DESC LIMIT $1"
        )
    };
}

/// Bucket `i`'s bounds.
fn bucket_bounds(since_us: i64, bucket_us: i64, i: usize) -> (i64, i64) {
    let lo = since_us + bucket_us * i as i64;
    (lo, lo + bucket_us)
}

/// One branch per bucket: the latest `per_bucket` first claims in it and
/// their waits. Bounds are whole numbers written in (no placeholders: a
/// statement of sixty branches would need 180).
fn waits_sql(since_us: i64, bucket_us: i64, buckets: usize, per_bucket: i64) -> String {
    (0..buckets)
        .map(|i| {
            let (lo, hi) = bucket_bounds(since_us, bucket_us, i);
            format!(
                "SELECT * FROM (SELECT CAST({i} AS BIGINT) AS b, a.claimed_at - \
                   CASE WHEN t.run_after > t.created_at AND t.run_after <= a.claimed_at \
                   THEN t.run_after ELSE t.created_at END AS w \
                 FROM task_attempts a JOIN tasks t ON t.id = a.task_id \
                 WHERE a.claimed_at >= {lo} AND a.claimed_at < {hi} AND a.attempt = 1 \
                 ORDER BY a.claimed_at DESC LIMIT {per_bucket}) s{i}"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// The rows of each bucket's last depth sample: the sample times through
/// the key, one branch per bucket, then their rows.
fn depth_sql(since_us: i64, bucket_us: i64, buckets: usize) -> String {
    let times = (0..buckets)
        .map(|i| {
            let (lo, hi) = bucket_bounds(since_us, bucket_us, i);
            format!(
                "SELECT at_us FROM (SELECT at_us FROM queue_depth \
                 WHERE at_us >= {lo} AND at_us < {hi} ORDER BY at_us DESC LIMIT 1) s{i}"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    format!("SELECT at_us, task_type, queued FROM queue_depth WHERE at_us IN ({times})")
}

/// The slot that `t_us` is in.
fn slot_of(t_us: i64) -> i64 {
    t_us.div_euclid(FINISH_SLOT_US) * FINISH_SLOT_US
}

/// Adds `(bucket, status, n)` rows into per-bucket pairs.
fn add_counts(series: &mut [(i64, i64)], rows: Vec<(i64, String, i64)>) {
    for (b, status, n) in rows {
        if let Some(slot) = usize::try_from(b).ok().and_then(|b| series.get_mut(b)) {
            match status.as_str() {
                "succeeded" => slot.0 += n,
                "failed" => slot.1 += n,
                _ => {}
            }
        }
    }
}

/// The `top` busiest types of a count, and the total under [`TOTAL`].
fn depth_rows(mut counts: Vec<(String, i64)>, top: i64) -> Vec<(String, i64)> {
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(top.max(0) as usize);
    counts.push((TOTAL.to_string(), total));
    counts
}

type FailureRow = (i64, String, Option<String>, Option<i64>, Option<i64>);

macro_rules! overview_history_store {
    ($store:ty, $db:ty, $lock:literal, $read:ident, $write:ident, $finished:literal, $failed:literal) => {
        impl OverviewHistoryStore for $store {
            async fn roll_finish_counts(&self, now_us: i64, max_slots: i64) -> Result<bool> {
                let target = slot_of(now_us - MARK_LAG_US);
                let mut tx = self.begin_write().await?;
                let upto: i64 = sqlx::query_scalar(concat!(
                    "SELECT upto FROM finish_counts_mark WHERE id = 1",
                    $lock
                ))
                .fetch_one(&mut *tx)
                .await?;
                if upto >= target {
                    return Ok(true);
                }
                // Never counted: start now (no backfill of the history).
                let from = if upto == 0 { target } else { slot_of(upto) };
                let end = target.min(from + max_slots.max(1) * FINISH_SLOT_US);
                let rows: Vec<(i64, String, i64)> = if from < end {
                    sqlx::query_as(per_slot_sql!($finished))
                        .bind(from)
                        .bind(end)
                        .fetch_all(&mut *tx)
                        .await?
                } else {
                    Vec::new()
                };
                let mut slots: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
                for (slot, status, n) in rows {
                    let counts = slots.entry(slot * FINISH_SLOT_US).or_default();
                    match status.as_str() {
                        "succeeded" => counts.0 += n,
                        _ => counts.1 += n,
                    }
                }
                if !slots.is_empty() {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO finish_counts (slot_us, succeeded, failed) ",
                    );
                    insert.push_values(slots, |mut row, (slot, (s, f))| {
                        row.push_bind(slot).push_bind(s).push_bind(f);
                    });
                    // A slot counted again (a mark moved back by hand) is
                    // counted anew.
                    insert.push(
                        " ON CONFLICT (slot_us) DO UPDATE SET succeeded = excluded.succeeded, \
                         failed = excluded.failed",
                    );
                    insert.build().execute(&mut *tx).await?;
                }
                sqlx::query(MOVE_MARK).bind(end).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(end >= target)
            }

            async fn sample_queue_depth(&self, now_us: i64, top: i64) -> Result<u64> {
                // Counted on the reader: a deep queue's count never holds
                // SQLite's writer; the write is a few rows.
                let counts: Vec<(String, i64)> = sqlx::query_as(QUEUED_BY_TYPE)
                    .fetch_all(self.$read())
                    .await?;
                let rows = depth_rows(counts, top);
                let mut insert = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO queue_depth (at_us, task_type, queued) ",
                );
                insert.push_values(rows, |mut row, (t, n)| {
                    row.push_bind(now_us).push_bind(t).push_bind(n);
                });
                // Two leaders in one microsecond (a handover) write one sample.
                insert.push(" ON CONFLICT (at_us, task_type) DO NOTHING");
                Ok(insert.build().execute(self.$write()).await?.rows_affected())
            }

            async fn prune_overview_history(&self, before_us: i64, limit: i64) -> Result<u64> {
                let slots = sqlx::query(PRUNE_SLOTS)
                    .bind(before_us)
                    .bind(limit)
                    .execute(self.$write())
                    .await?
                    .rows_affected();
                let depth = sqlx::query(PRUNE_DEPTH)
                    .bind(before_us)
                    .bind(limit)
                    .execute(self.$write())
                    .await?
                    .rows_affected();
                Ok(slots + depth)
            }

            async fn finish_series(
                &self,
                since_us: i64,
                bucket_us: i64,
                buckets: usize,
                now_us: i64,
            ) -> Result<Vec<(i64, i64)>> {
                let width = bucket_us.max(1);
                let mut series = vec![(0, 0); buckets];
                // Slots before the mark are complete in `finish_counts`
                // whatever the leader does meanwhile; the rest are read
                // from the tasks.
                let mark: i64 = sqlx::query_scalar(MARK).fetch_one(self.$read()).await?;
                let until = since_us + width * buckets as i64;
                let rolled: Vec<(i64, i64, i64)> = sqlx::query_as(ROLLED)
                    .bind(since_us)
                    .bind(width)
                    .bind(mark.min(until))
                    .fetch_all(self.$read())
                    .await?;
                for (b, s, f) in rolled {
                    if let Some(slot) = usize::try_from(b).ok().and_then(|b| series.get_mut(b)) {
                        slot.0 += s;
                        slot.1 += f;
                    }
                }
                let tail_from = mark.max(since_us).max(now_us - TAIL_MAX_US);
                let tail: Vec<(i64, String, i64)> = sqlx::query_as(tail_sql!($finished))
                    .bind(since_us)
                    .bind(width)
                    .bind(tail_from)
                    .fetch_all(self.$read())
                    .await?;
                add_counts(&mut series, tail);
                Ok(series)
            }

            async fn wait_samples(
                &self,
                since_us: i64,
                bucket_us: i64,
                buckets: usize,
                per_bucket: i64,
            ) -> Result<Vec<Vec<i64>>> {
                let mut samples = vec![Vec::new(); buckets];
                if buckets == 0 {
                    return Ok(samples);
                }
                let sql = waits_sql(since_us, bucket_us.max(1), buckets, per_bucket.max(1));
                let rows: Vec<(i64, i64)> = sqlx::query_as(&sql).fetch_all(self.$read()).await?;
                for (b, w) in rows {
                    if let Some(s) = usize::try_from(b).ok().and_then(|b| samples.get_mut(b)) {
                        s.push(w.max(0));
                    }
                }
                for s in &mut samples {
                    s.sort_unstable();
                }
                Ok(samples)
            }

            async fn depth_series(
                &self,
                since_us: i64,
                bucket_us: i64,
                buckets: usize,
            ) -> Result<Vec<Option<DepthSample>>> {
                let mut series: Vec<Option<DepthSample>> = vec![None; buckets];
                if buckets == 0 {
                    return Ok(series);
                }
                let width = bucket_us.max(1);
                let sql = depth_sql(since_us, width, buckets);
                let rows: Vec<(i64, String, i64)> =
                    sqlx::query_as(&sql).fetch_all(self.$read()).await?;
                for (at, t, n) in rows {
                    let b = (at - since_us).div_euclid(width);
                    if let Some(s) = usize::try_from(b).ok().and_then(|b| series.get_mut(b)) {
                        s.get_or_insert_with(BTreeMap::new).insert(t, n);
                    }
                }
                Ok(series)
            }

            async fn recent_failures(&self, limit: i64) -> Result<Vec<RecentFailure>> {
                let rows: Vec<FailureRow> = sqlx::query_as(failures_sql!($failed))
                    .bind(limit)
                    .fetch_all(self.$read())
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(id, task_type, error, finished_at_us, run_id)| RecentFailure {
                            id,
                            task_type,
                            error,
                            finished_at_us,
                            run_id,
                        },
                    )
                    .collect())
            }
        }
    };
}

overview_history_store!(
    super::sqlite::SqliteStore,
    sqlx::Sqlite,
    "",
    reader,
    writer,
    "INDEXED BY tasks_finished",
    "INDEXED BY tasks_failed_at"
);
overview_history_store!(
    super::postgres::PgStore,
    sqlx::Postgres,
    " FOR UPDATE",
    pool,
    pool,
    "",
    ""
);

delegate_to_backend!(OverviewHistoryStore {
    async fn roll_finish_counts(&self, now_us: i64, max_slots: i64) -> Result<bool>;
    async fn sample_queue_depth(&self, now_us: i64, top: i64) -> Result<u64>;
    async fn prune_overview_history(&self, before_us: i64, limit: i64) -> Result<u64>;
    async fn finish_series(&self, since_us: i64, bucket_us: i64, buckets: usize, now_us: i64) -> Result<Vec<(i64, i64)>>;
    async fn wait_samples(&self, since_us: i64, bucket_us: i64, buckets: usize, per_bucket: i64) -> Result<Vec<Vec<i64>>>;
    async fn depth_series(&self, since_us: i64, bucket_us: i64, buckets: usize) -> Result<Vec<Option<DepthSample>>>;
    async fn recent_failures(&self, limit: i64) -> Result<Vec<RecentFailure>>;
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_depth_sample_keeps_the_busiest_types_and_the_total() {
        let rows = depth_rows(vec![("a".into(), 1), ("b".into(), 5), ("c".into(), 3)], 2);
        assert_eq!(
            rows,
            vec![("b".into(), 5), ("c".into(), 3), (String::new(), 9)]
        );
        assert_eq!(depth_rows(Vec::new(), 2), vec![(String::new(), 0)]);
    }

    #[test]
    fn the_branches_read_one_bucket_each() {
        let sql = waits_sql(100, 10, 3, 50);
        assert_eq!(sql.matches("UNION ALL").count(), 2);
        assert!(sql.contains("a.claimed_at >= 120 AND a.claimed_at < 130"));
        assert!(sql.contains("LIMIT 50"));
        let sql = depth_sql(100, 10, 2);
        assert!(sql.contains("at_us >= 110 AND at_us < 120"));
    }
}
