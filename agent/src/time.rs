//! Wall-clock timestamps in the protocol's unit.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch by the agent's clock (0 if the clock is
/// set before 1970, which only a broken machine reports).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
