//! Agent load history on both backends (`agent_load`, migration 0019).
//!
//! The leader samples every connected agent (online or draining) every few
//! seconds with one `INSERT … SELECT` from `agents`, so a sample costs one
//! statement whatever the fleet's size or throughput, and deletes samples
//! past the retention a page at a time, so no delete holds the writer for
//! long. Reads downsample in the database: one agent's window is a range of
//! the primary key, grouped into at most [`LOAD_BUCKETS`] buckets, so an
//! answer is small whatever the window. One statement text serves both
//! backends.

use drover_protocol::api::{AgentView, LoadBucket, LOAD_BUCKETS};

use super::{Result, Store};

/// Samples the connected agents at `$1`. A second sampler at the very same
/// microsecond (two leaders during a handover) adds nothing.
const SAMPLE: &str = "INSERT INTO agent_load (agent_id, at_us, running, capacity) \
    SELECT id, $1, running, capacity FROM agents WHERE status IN ('online', 'draining') \
    ON CONFLICT (agent_id, at_us) DO NOTHING";

/// Deletes the oldest samples before `$1`, at most `$2` of them, through
/// `agent_load_by_time`.
const PRUNE: &str = "DELETE FROM agent_load WHERE (agent_id, at_us) IN ( \
    SELECT agent_id, at_us FROM agent_load WHERE at_us < $1 ORDER BY at_us LIMIT $2)";

/// One agent's samples in `$3 ..= $4`, grouped by `at_us / $2` (buckets
/// aligned to multiples of the width).
const BUCKETS: &str = "SELECT b, COUNT(*), \
    CAST(AVG(CAST(running AS DOUBLE PRECISION) / capacity) AS DOUBLE PRECISION), \
    CAST(MAX(CAST(running AS DOUBLE PRECISION) / capacity) AS DOUBLE PRECISION), \
    CAST(AVG(CAST(running AS DOUBLE PRECISION)) AS DOUBLE PRECISION), \
    MAX(running), MAX(capacity) \
    FROM (SELECT at_us / $2 AS b, running, capacity FROM agent_load \
      WHERE agent_id = $1 AND at_us >= $3 AND at_us <= $4) s \
    GROUP BY b ORDER BY b";

type BucketRow = (i64, i64, f64, f64, f64, i64, i64);

/// The width of a window's buckets: at most [`LOAD_BUCKETS`] aligned
/// buckets cover it (a window rarely starts on a bucket's edge, so it
/// spans one more than it divides into), each at least two sampling
/// intervals wide so a late sample never leaves a bucket empty, in whole
/// milliseconds.
pub fn bucket_width(window_us: i64, interval_us: i64) -> i64 {
    let even = (window_us.max(1) + LOAD_BUCKETS - 2) / (LOAD_BUCKETS - 1);
    let width = even.max(2 * interval_us.max(1));
    (width + 999) / 1_000 * 1_000
}

/// Load history on the backends.
#[allow(async_fn_in_trait)]
pub trait AgentLoadStore {
    /// Records every connected agent's running count and capacity as of
    /// `now_us`, in one statement; returns the samples written.
    async fn sample_agent_load(&self, now_us: i64) -> Result<u64>;
    /// Deletes at most `limit` samples taken before `before_us`, oldest
    /// first; returns how many went.
    async fn prune_agent_load(&self, before_us: i64, limit: i64) -> Result<u64>;
    /// One agent as `GET /api/v1/agents` shows it.
    async fn get_agent(&self, id: i64) -> Result<Option<AgentView>>;
    /// The agent's samples in `since_us ..= until_us`, in buckets of
    /// `bucket_us` aligned to its multiples, oldest first; buckets without
    /// samples are left out.
    async fn agent_load(
        &self,
        agent_id: i64,
        since_us: i64,
        until_us: i64,
        bucket_us: i64,
    ) -> Result<Vec<LoadBucket>>;
}

macro_rules! agent_load_store {
    ($store:ty, $write:ident, $read:ident) => {
        impl AgentLoadStore for $store {
            async fn sample_agent_load(&self, now_us: i64) -> Result<u64> {
                Ok(sqlx::query(SAMPLE)
                    .bind(now_us)
                    .execute(self.$write())
                    .await?
                    .rows_affected())
            }

            async fn prune_agent_load(&self, before_us: i64, limit: i64) -> Result<u64> {
                Ok(sqlx::query(PRUNE)
                    .bind(before_us)
                    .bind(limit)
                    .execute(self.$write())
                    .await?
                    .rows_affected())
            }

            async fn get_agent(&self, id: i64) -> Result<Option<AgentView>> {
                self.agent_view(id).await
            }

            async fn agent_load(
                &self,
                agent_id: i64,
                since_us: i64,
                until_us: i64,
                bucket_us: i64,
            ) -> Result<Vec<LoadBucket>> {
                let width = bucket_us.max(1);
                let rows: Vec<BucketRow> = sqlx::query_as(BUCKETS)
                    .bind(agent_id)
                    .bind(width)
                    .bind(since_us)
                    .bind(until_us)
                    .fetch_all(self.$read())
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(b, samples, mean_load, max_load, mean_running, max_running, capacity)| {
                            LoadBucket {
                                start_us: b * width,
                                samples,
                                mean_load,
                                max_load,
                                mean_running,
                                max_running,
                                capacity,
                            }
                        },
                    )
                    .collect())
            }
        }
    };
}

agent_load_store!(super::sqlite::SqliteStore, writer, reader);
agent_load_store!(super::postgres::PgStore, pool, pool);

delegate_to_backend!(AgentLoadStore {
    async fn sample_agent_load(&self, now_us: i64) -> Result<u64>;
    async fn prune_agent_load(&self, before_us: i64, limit: i64) -> Result<u64>;
    async fn get_agent(&self, id: i64) -> Result<Option<AgentView>>;
    async fn agent_load(&self, agent_id: i64, since_us: i64, until_us: i64, bucket_us: i64) -> Result<Vec<LoadBucket>>;
});

#[cfg(test)]
mod tests {
    use super::*;

    /// How many aligned buckets of `width` a window ending at `now` spans.
    fn spanned(now: i64, window: i64, width: i64) -> i64 {
        now / width - (now - window) / width + 1
    }

    #[test]
    fn any_window_fits_the_bucket_bound_and_buckets_hold_samples() {
        let second = 1_000_000;
        for (window, interval) in [
            (60 * second, 5 * second),
            (60 * second, 200_000),
            (900 * second, 5 * second),
            (3_600 * second, 5 * second),
            (86_400 * second, 5 * second),
            (7 * 86_400 * second, 1_000),
            (61 * second, 1),
        ] {
            let width = bucket_width(window, interval);
            assert!(width >= 2 * interval, "{window} {interval}: {width}");
            assert_eq!(width % 1_000, 0, "whole milliseconds");
            for now in [1_800_000_000 * second, 1_800_000_000 * second + 123_457] {
                let n = spanned(now, window, width);
                assert!(n <= LOAD_BUCKETS, "{window} {interval}: {n} buckets");
            }
        }
        // A day of 5 s samples: 120 buckets of about 12 minutes.
        assert_eq!(bucket_width(86_400 * second, 5 * second), 726_051_000);
        // A minute of 5 s samples: buckets of two samples, not 120 of none.
        assert_eq!(bucket_width(60 * second, 5 * second), 10 * second);
    }
}
