//! The dashboard overview's counts on SQLite.

use super::SqliteStore;
use crate::store::sql::overview as sql;
use crate::store::{OverviewCounts, OverviewStore, Result};

impl OverviewStore for SqliteStore {
    async fn overview(&self, edges: [f64; 2]) -> Result<OverviewCounts> {
        let (low, medium, high): (i64, i64, i64) = sqlx::query_as(sql::QUEUED_BY_BAND)
            .bind(edges[0])
            .bind(edges[1])
            .fetch_one(self.reader())
            .await?;
        let (running, waiting): (i64, i64) = sqlx::query_as(sql::ACTIVE_RUNS)
            .fetch_one(self.reader())
            .await?;
        Ok(OverviewCounts {
            queued_by_band: [low, medium, high],
            runs_running: running,
            runs_waiting_approval: waiting,
        })
    }
}
