//! Queue health (`GET /api/v1/queues`): per task type and per concurrency
//! key, the depth, the oldest wait, submit→start latency over a window and
//! the leases lost in it. One statement text serves both backends; the
//! server adds the agents able to take each type.
//!
//! What the statements read:
//! - depth by type: queued tasks through the two partial claim indexes
//!   (`tasks_claim`, not held; `tasks_held`, held), one branch each, so
//!   neither backend walks finished tasks; running tasks through the
//!   running-only indexes (`tasks_leases`, `tasks_holder`);
//! - keys: the keyed admitted and held tasks through `tasks_key_admitted`
//!   and `tasks_held` (their predicates written out, so SQLite uses them
//!   too);
//! - the window: `task_attempts` by `claimed_at` (first claims) and by
//!   `finished_at` (lost leases). Neither column is indexed, so these two
//!   read every attempt row (on PostgreSQL about 30 ms per 300,000
//!   attempts, on two cores); their answers are bounded (a sample of
//!   [`QUEUE_HEALTH_SAMPLE`], one row per type). An index on
//!   `task_attempts (claimed_at)` would make the first a range scan.
//!
//! Every answer is bounded: at most [`QUEUE_HEALTH_ROWS`] types and keys
//! (one more is read to know there are more).

use std::collections::BTreeMap;

use drover_protocol::health::{
    KeyHealth, QueueHealth, TypeHealth, QUEUE_HEALTH_ROWS, QUEUE_HEALTH_SAMPLE,
};

use super::{Result, Store};

#[allow(async_fn_in_trait)]
pub trait QueueHealthStore {
    /// The queues as of `now_us`, with latencies and lost leases over the
    /// `window_us` before it. Agent figures are left at zero.
    ///
    /// Submit→start is `claimed_at − created_at` of first attempts
    /// (`attempt = 1`) claimed in the window, computed here over a bounded
    /// sample: the latest [`QUEUE_HEALTH_SAMPLE`] such claims (nearest-rank
    /// percentiles per type). A claim the agent released and that was
    /// claimed again also counts as attempt 1, with its longer wait.
    async fn queue_health(&self, now_us: i64, window_us: i64) -> Result<QueueHealth>;
}

/// Queued tasks per type: the unheld and the held branch each read their
/// own partial index; `$1` is now, `$2` the row limit.
const QUEUED: &str = "SELECT task_type, CAST(SUM(n) AS BIGINT), CAST(SUM(h) AS BIGINT), \
    CAST(SUM(d) AS BIGINT), MIN(oldest) FROM ( \
      SELECT task_type, COUNT(*) AS n, CAST(0 AS BIGINT) AS h, \
        CAST(SUM(CASE WHEN run_after > $1 THEN 1 ELSE 0 END) AS BIGINT) AS d, \
        MIN(CASE WHEN run_after <= $1 THEN run_after END) AS oldest \
      FROM tasks WHERE status = 'queued' AND held = 0 GROUP BY task_type \
      UNION ALL \
      SELECT task_type, COUNT(*) AS n, COUNT(*) AS h, \
        CAST(SUM(CASE WHEN run_after > $1 THEN 1 ELSE 0 END) AS BIGINT) AS d, \
        MIN(CASE WHEN run_after <= $1 THEN run_after END) AS oldest \
      FROM tasks WHERE status = 'queued' AND held = 1 GROUP BY task_type \
    ) q GROUP BY task_type ORDER BY SUM(n) DESC, task_type LIMIT $2";

const RUNNING: &str = "SELECT task_type, COUNT(*) FROM tasks WHERE status = 'running' \
    GROUP BY task_type ORDER BY COUNT(*) DESC, task_type LIMIT $1";

/// Keyed queued and running tasks per key, with the key's admitted count
/// (not held, or running) and its largest limit. The admitted and the held
/// tasks are read through their own indexes (`tasks_key_admitted`,
/// `tasks_held`), their predicates written out so SQLite uses them too.
const KEYS: &str = "SELECT concurrency_key, \
      CAST(SUM(CASE WHEN held = 0 THEN 1 ELSE 0 END) AS BIGINT), \
      CAST(MAX(concurrency_limit) AS BIGINT), \
      CAST(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END) AS BIGINT) AS queued, \
      CAST(SUM(CASE WHEN held = 1 THEN 1 ELSE 0 END) AS BIGINT) AS held, \
      CAST(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS BIGINT), \
      MIN(CASE WHEN status = 'queued' AND run_after <= $1 THEN run_after END) \
    FROM ( \
      SELECT concurrency_key, concurrency_limit, held, status, run_after FROM tasks \
        WHERE held = 0 AND status IN ('queued', 'running') AND concurrency_key IS NOT NULL \
      UNION ALL \
      SELECT concurrency_key, concurrency_limit, held, status, run_after FROM tasks \
        WHERE status = 'queued' AND held = 1 \
    ) k \
    GROUP BY concurrency_key ORDER BY held DESC, queued DESC, concurrency_key LIMIT $2";

/// The latest first claims in the window: type and submit→start.
const STARTS: &str = "SELECT t.task_type, a.claimed_at - t.created_at \
    FROM task_attempts a JOIN tasks t ON t.id = a.task_id \
    WHERE a.claimed_at >= $1 AND a.attempt = 1 ORDER BY a.claimed_at DESC LIMIT $2";

/// Attempts that lost their lease in the window, per type.
const LOST: &str = "SELECT t.task_type, COUNT(*) \
    FROM task_attempts a JOIN tasks t ON t.id = a.task_id \
    WHERE a.outcome = 'lost' AND a.finished_at >= $1 \
    GROUP BY t.task_type ORDER BY COUNT(*) DESC, t.task_type LIMIT $2";

type QueuedRow = (String, i64, i64, i64, Option<i64>);
type KeyRow = (String, i64, i64, i64, i64, i64, Option<i64>);

macro_rules! queue_health_store {
    ($store:ty, $read:ident) => {
        impl QueueHealthStore for $store {
            async fn queue_health(&self, now_us: i64, window_us: i64) -> Result<QueueHealth> {
                let rows = QUEUE_HEALTH_ROWS as i64 + 1;
                let since = now_us - window_us.max(0);
                let queued: Vec<QueuedRow> = sqlx::query_as(QUEUED)
                    .bind(now_us)
                    .bind(rows)
                    .fetch_all(self.$read())
                    .await?;
                let running: Vec<(String, i64)> = sqlx::query_as(RUNNING)
                    .bind(rows)
                    .fetch_all(self.$read())
                    .await?;
                let keys: Vec<KeyRow> = sqlx::query_as(KEYS)
                    .bind(now_us)
                    .bind(rows)
                    .fetch_all(self.$read())
                    .await?;
                let starts: Vec<(String, i64)> = sqlx::query_as(STARTS)
                    .bind(since)
                    .bind(QUEUE_HEALTH_SAMPLE + 1)
                    .fetch_all(self.$read())
                    .await?;
                let lost: Vec<(String, i64)> = sqlx::query_as(LOST)
                    .bind(since)
                    .bind(rows)
                    .fetch_all(self.$read())
                    .await?;
                Ok(assemble(
                    Figures {
                        queued,
                        running,
                        keys,
                        starts,
                        lost,
                    },
                    now_us,
                    window_us,
                ))
            }
        }
    };
}

queue_health_store!(super::sqlite::SqliteStore, reader);
queue_health_store!(super::postgres::PgStore, pool);

delegate_to_backend!(QueueHealthStore {
    async fn queue_health(&self, now_us: i64, window_us: i64) -> Result<QueueHealth>;
});

/// What the statements answered.
struct Figures {
    queued: Vec<QueuedRow>,
    running: Vec<(String, i64)>,
    keys: Vec<KeyRow>,
    starts: Vec<(String, i64)>,
    lost: Vec<(String, i64)>,
}

fn assemble(f: Figures, now_us: i64, window_us: i64) -> QueueHealth {
    let limit = QUEUE_HEALTH_ROWS;
    let mut more_types = f.queued.len() > limit || f.running.len() > limit;
    let mut types: BTreeMap<String, TypeHealth> = BTreeMap::new();
    for (t, queued, held, delayed, oldest) in f.queued.into_iter().take(limit) {
        let h = row(&mut types, t);
        h.queued = queued;
        h.held = held;
        h.delayed = delayed;
        h.oldest_since_us = oldest;
        h.oldest_wait_us = oldest.map(|o| (now_us - o).max(0));
    }
    for (t, n) in f.running.into_iter().take(limit) {
        row(&mut types, t).running = n;
    }
    let sample_capped = f.starts.len() as i64 > QUEUE_HEALTH_SAMPLE;
    let sample: Vec<(String, i64)> = f
        .starts
        .into_iter()
        .take(QUEUE_HEALTH_SAMPLE as usize)
        .collect();
    let sampled_starts = sample.len() as i64;
    let mut waits: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (t, wait) in sample {
        waits.entry(t).or_default().push(wait.max(0));
    }
    for (t, mut w) in waits {
        let h = row(&mut types, t);
        w.sort_unstable();
        h.starts = w.len() as i64;
        h.start_p50_us = percentile(&w, 50);
        h.start_p99_us = percentile(&w, 99);
    }
    for (t, n) in f.lost.into_iter().take(limit) {
        row(&mut types, t).leases_expired = n;
    }
    let mut types: Vec<TypeHealth> = types.into_values().collect();
    types.sort_by(|a, b| {
        (b.queued, b.running, b.starts)
            .cmp(&(a.queued, a.running, a.starts))
            .then_with(|| a.task_type.cmp(&b.task_type))
    });
    if types.len() > limit {
        types.truncate(limit);
        more_types = true;
    }
    let more_keys = f.keys.len() > limit;
    let keys = f
        .keys
        .into_iter()
        .take(limit)
        .map(
            |(key, admitted, max, queued, held, running, oldest)| KeyHealth {
                key,
                admitted,
                limit: max,
                queued,
                held,
                running,
                oldest_since_us: oldest,
                oldest_wait_us: oldest.map(|o| (now_us - o).max(0)),
            },
        )
        .collect();
    QueueHealth {
        types,
        keys,
        window_s: window_us / 1_000_000,
        at_us: now_us,
        more_types,
        more_keys,
        sampled_starts,
        sample_capped,
    }
}

/// A type's row, created empty when new.
fn row(types: &mut BTreeMap<String, TypeHealth>, task_type: String) -> &mut TypeHealth {
    types
        .entry(task_type.clone())
        .or_insert_with(|| TypeHealth {
            task_type,
            ..TypeHealth::default()
        })
}

/// The nearest-rank `p`th percentile of sorted values.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 99), Some(7));
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
        assert_eq!(percentile(&[1, 2, 3], 99), Some(3));
    }

    #[test]
    fn figures_merge_per_type_deepest_first() {
        let now = 1_000_000_000;
        let h = assemble(
            Figures {
                queued: vec![
                    ("resize".into(), 3, 1, 0, Some(now - 5_000_000)),
                    ("echo".into(), 1, 0, 1, None),
                ],
                running: vec![("echo".into(), 2), ("mail".into(), 1)],
                keys: vec![("customer:1".into(), 1, 1, 2, 1, 1, Some(now - 1))],
                starts: vec![
                    ("echo".into(), 10),
                    ("echo".into(), 30),
                    ("echo".into(), 20),
                ],
                lost: vec![("mail".into(), 2)],
            },
            now,
            60_000_000,
        );
        let names: Vec<&str> = h.types.iter().map(|t| t.task_type.as_str()).collect();
        assert_eq!(names, ["resize", "echo", "mail"]);
        assert_eq!(h.types[0].oldest_wait_us, Some(5_000_000));
        assert_eq!((h.types[0].queued, h.types[0].held), (3, 1));
        let echo = &h.types[1];
        assert_eq!((echo.running, echo.delayed, echo.starts), (2, 1, 3));
        assert_eq!((echo.start_p50_us, echo.start_p99_us), (Some(20), Some(30)));
        assert_eq!(h.types[2].leases_expired, 2);
        assert_eq!(h.keys[0].limit, 1);
        assert_eq!(h.window_s, 60);
        assert_eq!(h.sampled_starts, 3);
        assert!(!h.more_types && !h.more_keys && !h.sample_capped);
    }
}
