//! The few aggregate counts the dashboard's overview shows, on both backends.

use sqlx::Row;

use super::{PgStore, Result, SqliteStore, Store};

/// Raw counts behind `GET /api/v1/overview`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OverviewCounts {
    /// Tasks finished per bucket, oldest first.
    pub throughput: Vec<i64>,
    /// Queued tasks below `edges[0]`, below `edges[1]`, and the rest.
    pub queued_by_band: [i64; 3],
    pub runs_running: i64,
    pub runs_waiting_approval: i64,
}

#[allow(async_fn_in_trait)]
pub trait OverviewStore {
    /// `buckets` buckets of `bucket_us` each, the last ending at `now_us`.
    async fn overview(
        &self,
        now_us: i64,
        bucket_us: i64,
        buckets: usize,
        edges: [f64; 2],
    ) -> Result<OverviewCounts>;
}

macro_rules! impl_overview {
    ($store:ty, $read:ident) => {
        impl OverviewStore for $store {
            async fn overview(&self, now_us: i64, bucket_us: i64, buckets: usize, edges: [f64; 2]) -> Result<OverviewCounts> {
                let since = now_us - bucket_us * buckets as i64;
                let mut throughput = vec![0; buckets];
                for row in sqlx::query(
                    "SELECT (finished_at - $1) / $2 AS bucket, COUNT(*) AS n FROM tasks \
                     WHERE finished_at IS NOT NULL AND finished_at >= $1 AND status IN ('succeeded', 'failed') GROUP BY 1",
                )
                .bind(since)
                .bind(bucket_us)
                .fetch_all(self.$read())
                .await?
                {
                    let bucket: i64 = row.try_get("bucket")?;
                    if let Some(slot) = usize::try_from(bucket).ok().and_then(|b| throughput.get_mut(b)) {
                        *slot += row.try_get::<i64, _>("n")?;
                    }
                }
                let bands = sqlx::query(
                    "SELECT COALESCE(SUM(CASE WHEN priority < $1 THEN 1 ELSE 0 END), 0) AS low, \
                     COALESCE(SUM(CASE WHEN priority >= $1 AND priority < $2 THEN 1 ELSE 0 END), 0) AS medium, \
                     COALESCE(SUM(CASE WHEN priority >= $2 THEN 1 ELSE 0 END), 0) AS high \
                     FROM tasks WHERE status = 'queued'",
                )
                .bind(edges[0])
                .bind(edges[1])
                .fetch_one(self.$read())
                .await?;
                let runs = sqlx::query(
                    "SELECT COALESCE(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END), 0) AS running, \
                     COALESCE(SUM(CASE WHEN status = 'waiting_approval' THEN 1 ELSE 0 END), 0) AS waiting \
                     FROM runs WHERE status IN ('running', 'waiting_approval')",
                )
                .fetch_one(self.$read())
                .await?;
                Ok(OverviewCounts {
                    throughput,
                    queued_by_band: [bands.try_get("low")?, bands.try_get("medium")?, bands.try_get("high")?],
                    runs_running: runs.try_get("running")?,
                    runs_waiting_approval: runs.try_get("waiting")?,
                })
            }
        }
    };
}

impl_overview!(SqliteStore, reader);
impl_overview!(PgStore, pool);

delegate_to_backend!(OverviewStore {
    async fn overview(&self, now_us: i64, bucket_us: i64, buckets: usize, edges: [f64; 2]) -> Result<OverviewCounts>;
});
