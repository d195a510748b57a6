//! The few aggregate counts the dashboard's overview shows, on both
//! backends. Its figures over time are in `overview_history`.

use super::{Result, Store};

/// Raw counts behind `GET /api/v1/overview`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OverviewCounts {
    /// Queued tasks below `edges[0]`, below `edges[1]`, and the rest.
    pub queued_by_band: [i64; 3],
    pub runs_running: i64,
    pub runs_waiting_approval: i64,
}

#[allow(async_fn_in_trait)]
pub trait OverviewStore {
    /// Queued tasks by priority band (split at `edges`) and active runs.
    async fn overview(&self, edges: [f64; 2]) -> Result<OverviewCounts>;
}

delegate_to_backend!(OverviewStore {
    async fn overview(&self, edges: [f64; 2]) -> Result<OverviewCounts>;
});
