//! Slows down password guessing without handing anyone a lock-out.
//!
//! Attempts are counted per client address and per user name. Each key gets
//! a few free attempts; after that every further attempt must wait a delay
//! that doubles with each failure (capped), and attempts inside the delay are
//! refused (429) without touching the database or Argon2. The address limit
//! is tighter than the name limit, so one address guessing `admin` is
//! stopped long before the name itself slows down: the real admin signing in
//! from elsewhere is not affected. Many addresses guessing one name do slow
//! that name down, but only by a capped delay, never a lock.
//!
//! An attempt is recorded when it is admitted — before any await — and
//! cleared if it succeeds, so parallel requests cannot all slip past the
//! check while the first ones are still verifying.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How one kind of key is limited.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Attempts allowed without any delay.
    pub free: u32,
    /// The delay after the first attempt over `free`; doubles per attempt.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// A key quiet this long starts again from zero.
    pub forget_after: Duration,
}

impl Policy {
    fn delay(&self, attempts: u32) -> Duration {
        if attempts < self.free {
            return Duration::ZERO;
        }
        let doublings = (attempts - self.free).min(20);
        self.base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }
}

#[derive(Clone, Copy)]
struct Entry {
    attempts: u32,
    last: Instant,
}

/// Attempts per key, bounded in size.
struct Counter<K> {
    policy: Policy,
    entries: HashMap<K, Entry>,
}

/// Entries kept before stale ones are swept, so a spray of made-up names or
/// addresses cannot grow the map without bound.
const MAX_ENTRIES: usize = 100_000;

impl<K: Hash + Eq + Clone> Counter<K> {
    fn new(policy: Policy) -> Self {
        Self {
            policy,
            entries: HashMap::new(),
        }
    }

    /// How long `key` must still wait (zero: it may try now).
    fn wait(&mut self, key: &K, now: Instant) -> Duration {
        let Some(e) = self.entries.get(key).copied() else {
            return Duration::ZERO;
        };
        let since = now.saturating_duration_since(e.last);
        if since >= self.policy.forget_after {
            self.entries.remove(key);
            return Duration::ZERO;
        }
        self.policy.delay(e.attempts).saturating_sub(since)
    }

    fn record(&mut self, key: K, now: Instant) {
        if self.entries.len() >= MAX_ENTRIES {
            let forget = self.policy.forget_after;
            self.entries
                .retain(|_, e| now.saturating_duration_since(e.last) < forget);
            if self.entries.len() >= MAX_ENTRIES {
                // Still full of live keys: drop the oldest half.
                let mut lasts: Vec<Instant> = self.entries.values().map(|e| e.last).collect();
                lasts.sort_unstable();
                let cut = lasts[lasts.len() / 2];
                self.entries.retain(|_, e| e.last > cut);
            }
        }
        let e = self.entries.entry(key).or_insert(Entry {
            attempts: 0,
            last: now,
        });
        e.attempts = e.attempts.saturating_add(1);
        e.last = now;
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Takes back one counted attempt: it turned out to be a right password.
    fn forgive_one(&mut self, key: &K) {
        if let Some(e) = self.entries.get_mut(key) {
            e.attempts = e.attempts.saturating_sub(1);
            if e.attempts == 0 {
                self.entries.remove(key);
            }
        }
    }
}

/// The outcome of asking to try a password.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; the attempt is already counted.
    Admitted,
    /// Refused; try again after this long.
    Wait(Duration),
}

pub struct SignInLimiter {
    inner: Mutex<(Counter<IpAddr>, Counter<String>)>,
}

impl SignInLimiter {
    pub fn new(per_address: Policy, per_name: Policy) -> Self {
        Self {
            inner: Mutex::new((Counter::new(per_address), Counter::new(per_name))),
        }
    }

    /// The production limits: an address gets 5 free attempts then waits
    /// 5 s, 10 s, 20 s … up to 15 minutes; a name gets 20 free attempts
    /// (from any number of addresses) then waits 1 s, 2 s … up to a minute.
    pub fn standard() -> Self {
        Self::new(
            Policy {
                free: 5,
                base_delay: Duration::from_secs(5),
                max_delay: Duration::from_secs(15 * 60),
                forget_after: Duration::from_secs(60 * 60),
            },
            Policy {
                free: 20,
                base_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(60),
                forget_after: Duration::from_secs(15 * 60),
            },
        )
    }

    /// Admits and counts an attempt for `name` from `addr`, or says how long
    /// to wait. A refused attempt is not counted against the name, so one
    /// address hammering a name does not slow that name down for others.
    pub fn admit(&self, addr: Option<IpAddr>, name: &str) -> Admission {
        let Ok(mut guard) = self.inner.lock() else {
            return Admission::Wait(Duration::from_secs(1));
        };
        let (by_addr, by_name) = &mut *guard;
        let now = Instant::now();
        let addr = addr.map(limited_unit);
        let addr_wait = addr.map_or(Duration::ZERO, |a| by_addr.wait(&a, now));
        if !addr_wait.is_zero() {
            return Admission::Wait(addr_wait);
        }
        let name = name.to_string();
        let name_wait = by_name.wait(&name, now);
        if !name_wait.is_zero() {
            return Admission::Wait(name_wait);
        }
        if let Some(a) = addr {
            by_addr.record(a, now);
        }
        by_name.record(name, now);
        Admission::Admitted
    }

    /// A right password: the name starts afresh, and the address is not
    /// charged for this attempt, but keeps its failures — else anyone with
    /// an account of their own could sign in between guesses at another's
    /// and never be slowed down.
    pub fn succeeded(&self, addr: Option<IpAddr>, name: &str) {
        if let Ok(mut guard) = self.inner.lock() {
            let (by_addr, by_name) = &mut *guard;
            if let Some(a) = addr {
                by_addr.forgive_one(&limited_unit(a));
            }
            by_name.clear(&name.to_string());
        }
    }
}

/// What one client is, for the limits: an IPv4 address, or an IPv6 /64 —
/// a single host usually has a whole /64 to pick addresses from.
fn limited_unit(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(free: u32, base_ms: u64) -> Policy {
        Policy {
            free,
            base_delay: Duration::from_millis(base_ms),
            max_delay: Duration::from_millis(base_ms * 4),
            forget_after: Duration::from_secs(60),
        }
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn an_address_gets_a_few_attempts_then_a_growing_delay() {
        let l = SignInLimiter::new(policy(3, 40), policy(100, 40));
        for _ in 0..3 {
            assert_eq!(l.admit(ip(1), "ann"), Admission::Admitted);
        }
        assert!(matches!(l.admit(ip(1), "ann"), Admission::Wait(_)));
        assert!(
            matches!(l.admit(ip(1), "bob"), Admission::Wait(_)),
            "the address is slowed, whatever name it tries"
        );
        assert_eq!(l.admit(ip(2), "ann"), Admission::Admitted, "others are not");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(l.admit(ip(1), "ann"), Admission::Admitted);
        match l.admit(ip(1), "ann") {
            Admission::Wait(d) => assert!(d > Duration::from_millis(40), "doubled: {d:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_name_slows_down_only_after_many_addresses_tried_it() {
        let l = SignInLimiter::new(policy(2, 1000), policy(4, 1000));
        for _ in 0..10 {
            let _ = l.admit(ip(1), "admin");
        }
        assert_eq!(
            l.admit(ip(9), "admin"),
            Admission::Admitted,
            "refused attempts of one address do not count against the name"
        );
        for a in 2..4 {
            let _ = l.admit(ip(a), "admin");
        }
        assert!(matches!(l.admit(ip(10), "admin"), Admission::Wait(_)));
        l.succeeded(ip(10), "admin");
        assert_eq!(l.admit(ip(11), "admin"), Admission::Admitted);
    }

    #[test]
    fn the_delay_is_capped() {
        let p = policy(1, 10);
        assert_eq!(p.delay(0), Duration::ZERO);
        assert_eq!(p.delay(1), Duration::from_millis(10));
        assert_eq!(p.delay(2), Duration::from_millis(20));
        assert_eq!(p.delay(1000), Duration::from_millis(40));
    }

    #[test]
    fn signing_in_between_guesses_does_not_reset_an_address() {
        let l = SignInLimiter::new(policy(3, 60_000), policy(100, 1000));
        // Two wrong guesses at admin, one right sign-in of one's own: the
        // address keeps the two failures.
        for _ in 0..2 {
            assert_eq!(l.admit(ip(1), "admin"), Admission::Admitted);
        }
        assert_eq!(l.admit(ip(1), "mallory"), Admission::Admitted);
        l.succeeded(ip(1), "mallory");
        assert_eq!(l.admit(ip(1), "admin"), Admission::Admitted);
        assert!(
            matches!(l.admit(ip(1), "admin"), Admission::Wait(_)),
            "the fourth attempt after three failures waits"
        );
        // Someone signing in right every time is never slowed down.
        for _ in 0..10 {
            assert_eq!(l.admit(ip(2), "ann"), Admission::Admitted);
            l.succeeded(ip(2), "ann");
        }
    }

    #[test]
    fn an_ipv6_host_is_one_client_per_64() {
        let l = SignInLimiter::new(policy(1, 60_000), policy(100, 1000));
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(l.admit(Some(a), "admin"), Admission::Admitted);
        assert!(matches!(l.admit(Some(b), "admin"), Admission::Wait(_)));
        assert_eq!(l.admit(Some(c), "admin"), Admission::Admitted);
    }
}
