//! A short memory of verified bearer tokens, so that a busy API client does
//! not cost a database lookup per request (with many small clients that
//! lookup was as much work as the submit itself).
//!
//! An entry lives for `DROVER_AUTH_CACHE_TTL` (1 s by default; 0 turns the
//! cache off). Revoking a token, ending a session, or changing, disabling
//! or re-passwording a user through this instance empties it at once;
//! through another instance (or `drover-server tokens revoke`), the change
//! takes effect here within the TTL. An expiring token is checked against
//! its expiry on every hit. Only tokens that verified are kept, so unknown
//! tokens cannot fill it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use drover_engine::store::TokenUser;

/// Entries kept at most; past it the cache starts over.
const MAX_ENTRIES: usize = 10_000;

pub struct AuthCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, TokenUser)>>,
}

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The user of a token verified less than the TTL ago and not expired.
    pub fn get(&self, token_hash: &str, now_us: i64) -> Option<TokenUser> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let (at, user) = entries.get(token_hash)?;
        let live = at.elapsed() < self.ttl && user.expires_at_us.is_none_or(|t| now_us < t);
        live.then(|| user.clone())
    }

    pub fn put(&self, token_hash: String, user: TokenUser) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(token_hash, (Instant::now(), user));
        }
    }

    /// Forgets every token: credentials or users changed.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_protocol::api::{Role, UserView};

    fn user(expires_at_us: Option<i64>) -> TokenUser {
        TokenUser {
            user: UserView {
                id: 1,
                name: "ann".into(),
                role: Role::Operator,
                created_at_us: 0,
            },
            token_id: 7,
            last_used_at_us: None,
            expires_at_us,
        }
    }

    #[test]
    fn a_token_is_remembered_until_expiry_ttl_or_clear() {
        let cache = AuthCache::new(Duration::from_secs(60));
        cache.put("live".into(), user(None));
        cache.put("expiring".into(), user(Some(1_000)));
        assert!(cache.get("live", 2_000).is_some());
        assert!(cache.get("expiring", 999).is_some());
        assert!(cache.get("expiring", 1_000).is_none(), "expired on a hit");
        assert!(cache.get("unknown", 0).is_none());
        cache.clear();
        assert!(
            cache.get("live", 2_000).is_none(),
            "cleared by a revocation"
        );

        let off = AuthCache::new(Duration::ZERO);
        off.put("live".into(), user(None));
        assert!(off.get("live", 0).is_none(), "0s asks every time");
        let short = AuthCache::new(Duration::from_millis(1));
        short.put("live".into(), user(None));
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.get("live", 0).is_none(), "past its TTL");
    }
}
