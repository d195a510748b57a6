//! Wall-clock time as microseconds since the Unix epoch, the unit of every
//! stored timestamp (exact enough for latency figures, one integer column).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Milliseconds to microseconds, saturating.
pub fn ms(ms: i64) -> i64 {
    ms.saturating_mul(1000)
}
