//! Slows down password guessing: after a few failed sign-ins for one user
//! name within a window, further attempts for that name are refused (429)
//! until the window has passed — right password or not, so the lock-out
//! cannot be used to confirm a guess.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct SignInLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl SignInLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an attempt for `name` may go ahead now.
    pub fn allows(&self, name: &str) -> bool {
        let Ok(mut map) = self.failures.lock() else {
            return true;
        };
        match map.get(name) {
            Some((_, since)) if since.elapsed() >= self.window => {
                map.remove(name);
                true
            }
            Some((n, _)) => *n < self.max_failures,
            None => true,
        }
    }

    pub fn failed(&self, name: &str) {
        if let Ok(mut map) = self.failures.lock() {
            if map.len() > 100_000 {
                // Bounded memory under a spray of made-up names.
                let window = self.window;
                map.retain(|_, (_, since)| since.elapsed() < window);
            }
            let entry = map.entry(name.to_string()).or_insert((0, Instant::now()));
            entry.0 += 1;
        }
    }

    pub fn succeeded(&self, name: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_a_name_out_after_repeated_failures_until_the_window_passes() {
        let l = SignInLimiter::new(3, Duration::from_millis(50));
        for _ in 0..3 {
            assert!(l.allows("ann"));
            l.failed("ann");
        }
        assert!(!l.allows("ann"));
        assert!(l.allows("bob"), "other names are not affected");
        std::thread::sleep(Duration::from_millis(60));
        assert!(l.allows("ann"));
    }
}
