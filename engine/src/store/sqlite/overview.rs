//! The dashboard overview's counts on SQLite.

use super::SqliteStore;
use crate::store::sql::overview as sql;
use crate::store::{OverviewCounts, OverviewStore, Result};

impl OverviewStore for SqliteStore {
    async fn overview(
        &self,
        now_us: i64,
        bucket_us: i64,
        buckets: usize,
        edges: [f64; 2],
    ) -> Result<OverviewCounts> {
        let since = now_us - bucket_us * buckets as i64;
        let finished: Vec<(i64, i64)> = sqlx::query_as(sql::THROUGHPUT_SQLITE)
            .bind(since)
            .bind(bucket_us)
            .fetch_all(self.reader())
            .await?;
        let (low, medium, high): (i64, i64, i64) = sqlx::query_as(sql::QUEUED_BY_BAND)
            .bind(edges[0])
            .bind(edges[1])
            .fetch_one(self.reader())
            .await?;
        let (running, waiting): (i64, i64) = sqlx::query_as(sql::ACTIVE_RUNS)
            .fetch_one(self.reader())
            .await?;
        Ok(OverviewCounts::new(
            finished,
            buckets,
            [low, medium, high],
            running,
            waiting,
        ))
    }
}
