//! How fast tasks of each type started over the last minute on this
//! instance: what "why is this waiting?" turns into an estimated start.
//! Sixty one-second buckets per type, fed by every claim the instance
//! hands out (dispatcher rounds and eager refills).

use std::collections::HashMap;
use std::sync::Mutex;

use drover_protocol::agent::Assignment;

const WINDOW_S: usize = 60;

/// Per task type: the second each bucket counts, and its count.
type Buckets = [(i64, u32); WINDOW_S];

#[derive(Default)]
pub struct StartRates(Mutex<HashMap<String, Buckets>>);

impl StartRates {
    /// Counts `tasks` as started at `now_us`.
    pub fn record(&self, tasks: &[Assignment], now_us: i64) {
        if tasks.is_empty() {
            return;
        }
        let second = now_us.div_euclid(1_000_000);
        let slot = second.rem_euclid(WINDOW_S as i64) as usize;
        let Ok(mut types) = self.0.lock() else { return };
        for t in tasks {
            let buckets = match types.get_mut(&t.task_type) {
                Some(b) => b,
                None => types
                    .entry(t.task_type.clone())
                    .or_insert([(0, 0); WINDOW_S]),
            };
            let bucket = &mut buckets[slot];
            if bucket.0 != second {
                *bucket = (second, 0);
            }
            bucket.1 += 1;
        }
    }

    /// Starts per second of `task_type` over the last minute; `None` when
    /// none started.
    pub fn per_second(&self, task_type: &str, now_us: i64) -> Option<f64> {
        let second = now_us.div_euclid(1_000_000);
        let types = self.0.lock().ok()?;
        let started: u32 = types
            .get(task_type)?
            .iter()
            .filter(|(s, _)| second - s < WINDOW_S as i64)
            .map(|(_, n)| n)
            .sum();
        (started > 0).then(|| f64::from(started) / WINDOW_S as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks(task_type: &str, n: usize) -> Vec<Assignment> {
        (0..n)
            .map(|i| Assignment {
                task_id: i as i64,
                lease_token: 1,
                task_type: task_type.into(),
                payload: serde_json::Value::Null,
                attempt: 1,
                max_attempts: 1,
                timeout_ms: 1,
                priority: 0.0,
            })
            .collect()
    }

    #[test]
    fn the_rate_counts_the_last_minute_of_each_type() {
        let rates = StartRates::default();
        let t0 = 1_000_000_000_000;
        rates.record(&tasks("echo", 30), t0);
        rates.record(&tasks("echo", 30), t0 + 10_000_000);
        rates.record(&tasks("sleep", 6), t0);
        assert_eq!(rates.per_second("echo", t0 + 20_000_000), Some(1.0));
        assert_eq!(rates.per_second("sleep", t0), Some(0.1));
        assert_eq!(rates.per_second("resize", t0), None);
        // A minute on, the first batch no longer counts.
        assert_eq!(rates.per_second("echo", t0 + 65_000_000), Some(0.5));
        assert_eq!(rates.per_second("echo", t0 + 200_000_000), None);
    }
}
