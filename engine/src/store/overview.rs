//! The few aggregate counts the dashboard's overview shows, on both backends.

use super::{Result, Store};

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

impl OverviewCounts {
    /// Puts the `(bucket, finished)` counts into `buckets` slots, dropping
    /// any outside them.
    pub(super) fn new(
        finished: Vec<(i64, i64)>,
        buckets: usize,
        queued_by_band: [i64; 3],
        runs_running: i64,
        runs_waiting_approval: i64,
    ) -> Self {
        let mut throughput = vec![0; buckets];
        for (bucket, n) in finished {
            if let Some(slot) = usize::try_from(bucket)
                .ok()
                .and_then(|b| throughput.get_mut(b))
            {
                *slot += n;
            }
        }
        Self {
            throughput,
            queued_by_band,
            runs_running,
            runs_waiting_approval,
        }
    }
}

delegate_to_backend!(OverviewStore {
    async fn overview(&self, now_us: i64, bucket_us: i64, buckets: usize, edges: [f64; 2]) -> Result<OverviewCounts>;
});
