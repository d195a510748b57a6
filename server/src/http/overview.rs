//! `GET /api/v1/overview?range=`: the dashboard's first page, its counts
//! now and its figures over the range (viewer). The figures come from the
//! leader's rollups and samples (`OverviewHistoryStore`), so a week costs
//! about what fifteen minutes cost.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use drover_engine::domain::PRIORITY_INPUT_MAX;
use drover_engine::store::{DepthSample, OverviewHistoryStore, OverviewStore, QueueStore};
use drover_engine::time::now_us;
use drover_engine::FieldError;
use drover_protocol::api::{
    Overview, OverviewBucket, OverviewRange, OVERVIEW_BUCKETS, RECENT_FAILURES,
};
use serde::Deserialize;

use crate::error::ApiError;
use crate::http::auth::Caller;
use crate::http::extract::ApiQuery;
use crate::state::AppState;

/// First claims per bucket the wait percentiles are computed over.
pub const WAIT_SAMPLE: i64 = 100;
/// Task types the depth chart draws apart; the rest are summed as `other`.
const DEPTH_TYPES: usize = 4;
const OTHER: &str = "other";

pub fn router() -> Router<AppState> {
    Router::new().route("/overview", get(overview))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverviewQuery {
    /// The range of the figures over time: `15m`, `1h` (default), `6h`,
    /// `24h` or `7d`, each in 60 buckets.
    range: Option<String>,
}

fn parse_range(asked: Option<&str>) -> Result<OverviewRange, FieldError> {
    let Some(text) = asked else {
        return Ok(OverviewRange::default());
    };
    OverviewRange::parse(text.trim()).ok_or_else(|| {
        let names: Vec<&str> = OverviewRange::ALL.iter().map(|r| r.as_str()).collect();
        FieldError::new(
            "range",
            format!("must be one of {}, got {text:?}", names.join(", ")),
        )
    })
}

async fn overview(
    _caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<OverviewQuery>,
) -> Result<Json<Overview>, ApiError> {
    let range = parse_range(q.range.as_deref())?;
    let weights = state.scheduling.weights.as_array();
    let highest = weights.iter().sum::<f64>() * PRIORITY_INPUT_MAX as f64;
    let edges = [highest / 3.0, highest * 2.0 / 3.0];
    let at_us = now_us();
    let bucket_us = range.bucket_us();
    let buckets = OVERVIEW_BUCKETS as usize;
    // Aligned buckets, the last holding now.
    let since_us = at_us.div_euclid(bucket_us) * bucket_us - bucket_us * (OVERVIEW_BUCKETS - 1);
    let store = &state.store;
    let (stats, counts, finished, waits, depth, recent_failures) = tokio::try_join!(
        store.stats(),
        store.overview(edges),
        store.finish_series(since_us, bucket_us, buckets, at_us),
        store.wait_samples(since_us, bucket_us, buckets, WAIT_SAMPLE),
        store.depth_series(since_us, bucket_us, buckets),
        store.recent_failures(RECENT_FAILURES),
    )?;
    let (depth_types, depth) = depth_by_type(&depth);
    let buckets: Vec<OverviewBucket> = finished
        .iter()
        .zip(waits)
        .zip(depth)
        .enumerate()
        .map(
            |(i, ((&(succeeded, failed), waits), depth))| OverviewBucket {
                start_us: since_us + bucket_us * i as i64,
                succeeded,
                failed,
                waits_sampled: waits.len() as i64,
                wait_p50_us: percentile(&waits, 50),
                wait_p99_us: percentile(&waits, 99),
                depth,
            },
        )
        .collect();
    Ok(Json(Overview {
        stats,
        throughput: buckets.iter().map(|b| b.succeeded + b.failed).collect(),
        bucket_secs: bucket_us / 1_000_000,
        queued_by_band: counts.queued_by_band,
        band_edges: edges,
        runs_running: counts.runs_running,
        runs_waiting_approval: counts.runs_waiting_approval,
        priority_weights: weights,
        range: range.as_str().to_string(),
        since_us,
        at_us,
        bucket_us,
        buckets,
        depth_types,
        depth_interval_us: state.config.queue_depth_interval.as_micros() as i64,
        wait_sample: WAIT_SAMPLE,
        recent_failures,
    }))
}

/// The value at the nearest rank `p` % of a sorted sample.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// The busiest [`DEPTH_TYPES`] types over the range (by their largest
/// sample), then `other` when the samples' totals hold more, and each
/// sampled bucket's counts in that order.
fn depth_by_type(samples: &[Option<DepthSample>]) -> (Vec<String>, Vec<Option<Vec<i64>>>) {
    let mut peak: BTreeMap<&str, i64> = BTreeMap::new();
    for sample in samples.iter().flatten() {
        for (t, &n) in sample {
            if !t.is_empty() {
                let p = peak.entry(t.as_str()).or_default();
                *p = (*p).max(n);
            }
        }
    }
    let mut ranked: Vec<(&str, i64)> = peak.into_iter().filter(|(_, n)| *n > 0).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut types: Vec<String> = ranked
        .iter()
        .take(DEPTH_TYPES)
        .map(|(t, _)| t.to_string())
        .collect();
    let others = |s: &DepthSample| {
        let shown: i64 = types.iter().filter_map(|t| s.get(t)).sum();
        s.get("").copied().unwrap_or(shown) - shown
    };
    let any_other = samples.iter().flatten().any(|s| others(s) > 0);
    let rows = samples
        .iter()
        .map(|s| {
            s.as_ref().map(|s| {
                let mut row: Vec<i64> = types
                    .iter()
                    .map(|t| s.get(t).copied().unwrap_or(0))
                    .collect();
                if any_other {
                    row.push(others(s).max(0));
                }
                row
            })
        })
        .collect();
    if any_other {
        types.push(OTHER.to_string());
    }
    (types, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_one_of_the_names() {
        assert_eq!(parse_range(None).unwrap(), OverviewRange::H1);
        assert_eq!(parse_range(Some("7d")).unwrap(), OverviewRange::D7);
        let e = parse_range(Some("2h")).unwrap_err();
        assert_eq!(e.field, "range");
        assert!(e.message.contains("15m, 1h, 6h, 24h, 7d"), "{}", e.message);
    }

    #[test]
    fn depth_shows_the_busiest_types_and_sums_the_rest() {
        let sample = |pairs: &[(&str, i64)]| {
            Some(
                pairs
                    .iter()
                    .map(|(t, n)| (t.to_string(), *n))
                    .collect::<DepthSample>(),
            )
        };
        let samples = vec![
            sample(&[("", 16), ("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 6)]),
            None,
            sample(&[("", 0)]),
        ];
        let (types, rows) = depth_by_type(&samples);
        assert_eq!(types, ["e", "d", "c", "b", "other"]);
        assert_eq!(rows[0], Some(vec![6, 4, 3, 2, 1]));
        assert_eq!(rows[1], None);
        assert_eq!(rows[2], Some(vec![0, 0, 0, 0, 0]));
        // An empty queue throughout: no types, a zero-length row each.
        let (types, rows) = depth_by_type(&[sample(&[("", 0)])]);
        assert!(types.is_empty());
        assert_eq!(rows, vec![Some(vec![])]);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(
            (percentile(&v, 50), percentile(&v, 99)),
            (Some(50), Some(99))
        );
        assert_eq!(percentile(&[1, 2, 3], 99), Some(3));
    }
}
