//! Exponential backoff with jitter for retrying calls to the server.
//!
//! Jitter matters because every agent of a fleet sees the same outage: without
//! it they would all come back in lock-step and hammer the recovering server.

use std::time::Duration;

use rand::Rng;

/// First retry delay after a failure.
pub const BASE: Duration = Duration::from_millis(100);
/// Longest delay between retries while the server is down.
pub const CAP: Duration = Duration::from_secs(5);

/// Delays that double from `base` up to `cap`; each one is drawn uniformly
/// from the upper half of the current step (`[d/2, d]`), so the wait never
/// collapses to zero yet agents spread out.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    current: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(BASE, CAP)
    }
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        let base = base.max(Duration::from_millis(1));
        Self {
            base,
            cap: cap.max(base),
            current: base,
        }
    }

    /// The delay before the next retry; each call doubles the next one.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.cap);
        let high = step.as_millis() as u64;
        let low = high / 2;
        Duration::from_millis(rand::rng().random_range(low..=high))
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.current = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let steps = [100u64, 200, 400, 800, 1000, 1000];
        for step in steps {
            let d = b.next_delay().as_millis() as u64;
            assert!(
                d >= step / 2 && d <= step,
                "{d} not in [{}, {step}]",
                step / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
