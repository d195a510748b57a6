//! Password hashing with argon2 (the PHC string keeps salt and parameters).
//!
//! Verifying costs tens of milliseconds of CPU and memory on purpose, so it
//! runs on the blocking pool behind a semaphore: a flood of sign-ins waits
//! its turn instead of stalling the async workers that serve long-polls and
//! heartbeats.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use tokio::sync::Semaphore;

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted (Argon2 would take more, but nobody types this).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Counts every Argon2 verification, real or dummy.
pub const CHECKS_METRIC: &str = "drover_password_checks_total";

pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    metrics::counter!(CHECKS_METRIC).increment(1);
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of a random password with the same parameters as real ones:
/// unknown names are checked against it so they take as long as known ones.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut secret = [0u8; 16];
        rand::rng().fill_bytes(&mut secret);
        hash_password(&hex::encode(secret)).unwrap_or_default()
    })
}

/// Computes the dummy hash now, so the first unknown name is not slower.
pub fn warm_up() {
    let _ = dummy_hash();
}

/// At most this many verifications at once: the rest queue.
fn permits() -> &'static Semaphore {
    static SEM: OnceLock<Semaphore> = OnceLock::new();
    SEM.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Semaphore::new(cores.clamp(1, 8))
    })
}

/// Verifies `password` against `phc` (or, when there is none, against the
/// dummy hash and answers false) on the blocking pool.
pub async fn verify_off_thread(password: &str, phc: Option<&str>) -> bool {
    let Ok(_permit) = permits().acquire().await else {
        return false;
    };
    let password = password.to_string();
    let real = phc.map(str::to_string);
    tokio::task::spawn_blocking(move || match real {
        Some(h) => verify_password(&password, &h),
        None => {
            verify_password(&password, dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("correct horse").unwrap();
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[tokio::test]
    async fn an_unknown_user_is_checked_against_the_dummy_and_refused() {
        assert!(!verify_off_thread("anything", None).await);
        let h = hash_password("correct horse").unwrap();
        assert!(verify_off_thread("correct horse", Some(&h)).await);
    }
}
