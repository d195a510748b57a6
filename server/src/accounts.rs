//! Users and their API tokens: the rules shared by the CLI
//! (`drover-server user …`) and the HTTP API (`/api/v1/users`, `/tokens`).

use std::time::Duration;

use drover_engine::domain::check_name;
use drover_engine::store::{NewToken, UserChange, UserStore};
use drover_engine::time::now_us;
use drover_engine::{FieldError, Store};
use drover_protocol::api::{Role, UserView, UserWithToken};

use crate::error::ApiError;
use crate::passwords::{hash_password, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
use crate::tokens::{hash_token, new_token};

/// Longest lifetime a token may be given.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Validates and creates a user, and issues their first API token.
pub async fn create(
    store: &Store,
    name: &str,
    role: Role,
    password: Option<&str>,
) -> Result<UserWithToken, ApiError> {
    check_name("name", name)?;
    let hash = match password {
        Some(p) => Some(hash_off_thread(p).await?),
        None => None,
    };
    let user = store
        .create_user(name, role, hash.as_deref(), now_us())
        .await?;
    let (token, _) = issue_token(store, user.id, "first token", Lifetime::default()).await?;
    Ok(UserWithToken { user, token })
}

/// Checks a new password's length and hashes it (slow on purpose: call it
/// through `hash_off_thread` from async code).
pub fn checked_hash(password: &str) -> Result<String, ApiError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(FieldError::new(
            "password",
            format!("must be at least {MIN_PASSWORD_LEN} characters"),
        )
        .into());
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(FieldError::new(
            "password",
            format!("must be at most {MAX_PASSWORD_LEN} bytes"),
        )
        .into());
    }
    hash_password(password).map_err(|e| FieldError::new("password", e).into())
}

/// The first characters of a token, shown in lists so its owner can tell
/// tokens apart: at most 8, and at most a quarter of the token.
pub fn token_prefix(token: &str) -> String {
    let n = (token.chars().count() / 4).min(8);
    token.chars().take(n).collect()
}

/// Issues a new API token for a user; returns it (shown once) and its id.
/// How long a new token lives: `length` from now (`None`: for ever), but
/// never past `not_after_us`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lifetime {
    pub length: Option<Duration>,
    pub not_after_us: Option<i64>,
}

impl From<Option<Duration>> for Lifetime {
    fn from(length: Option<Duration>) -> Self {
        Self {
            length,
            not_after_us: None,
        }
    }
}

pub async fn issue_token(
    store: &Store,
    user_id: i64,
    name: &str,
    lifetime: Lifetime,
) -> Result<(String, i64), ApiError> {
    check_token_name(name)?;
    let token = new_token();
    let now = now_us();
    let asked = lifetime
        .length
        .map(|d| now.saturating_add(d.as_micros() as i64));
    let expires_at_us = match (asked, lifetime.not_after_us) {
        (Some(a), Some(cap)) => Some(a.min(cap)),
        (a, cap) => a.or(cap),
    };
    let id = store
        .add_api_token(NewToken {
            user_id,
            token_hash: &hash_token(&token),
            name,
            prefix: &token_prefix(&token),
            expires_at_us,
            now_us: now,
        })
        .await?
        .ok_or_else(|| ApiError::Conflict("token collision; try again".into()))?;
    Ok((token, id))
}

/// Token names are labels for people: printable, at most 100 characters.
pub fn check_token_name(name: &str) -> Result<(), ApiError> {
    let n = name.chars().count();
    if n == 0 || n > 100 || name.chars().any(char::is_control) {
        return Err(FieldError::new("name", "must be 1 to 100 printable characters").into());
    }
    Ok(())
}

/// `expires_in` of a new token: whole seconds (`86400`) or a duration
/// (`"30d"`, `"12h"`, `"90days"`), more than zero and at most ten years.
pub fn parse_lifetime(value: &serde_json::Value) -> Result<Option<Duration>, ApiError> {
    let bad = |msg: &str| ApiError::from(FieldError::new("expires_in", msg));
    let d = match value {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Number(n) => Duration::from_secs(
            n.as_u64()
                .ok_or_else(|| bad("must be a whole number of seconds"))?,
        ),
        serde_json::Value::String(s) => parse_duration_text(s).map_err(|e| bad(&e))?,
        _ => return Err(bad("must be seconds or a duration such as \"30d\"")),
    };
    if d.is_zero() || d > MAX_TOKEN_LIFETIME {
        return Err(bad("must be more than zero and at most ten years"));
    }
    Ok(Some(d))
}

/// A duration such as `30d` or `12h`, as the CLI takes it.
pub fn parse_duration_text(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; use seconds or a duration such as \"30d\""))
}

/// The user named `name`, or 404.
pub async fn find(store: &Store, name: &str) -> Result<UserView, ApiError> {
    check_name("name", name)?;
    store
        .user_by_name(name)
        .await?
        .map(|r| r.user)
        .ok_or_else(|| ApiError::NotFound(format!("user {name}")))
}

/// Changes a role or disables/enables a user; never the last enabled admin.
pub async fn change(store: &Store, name: &str, change: UserChange) -> Result<UserView, ApiError> {
    let user = find(store, name).await?;
    store.change_user(user.id, change, now_us()).await?;
    find(store, name).await
}

/// Sets a user's password (their sessions end).
pub async fn set_password(store: &Store, user_id: i64, password: &str) -> Result<(), ApiError> {
    let hash = hash_off_thread(password).await?;
    store.set_password(user_id, &hash).await?;
    Ok(())
}

/// [`checked_hash`] on the blocking pool, off the async workers.
async fn hash_off_thread(password: &str) -> Result<String, ApiError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || checked_hash(&password))
        .await
        .map_err(|e| ApiError::Conflict(format!("hashing failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lifetimes_are_seconds_or_durations_within_bounds() {
        assert_eq!(parse_lifetime(&json!(null)).unwrap(), None);
        assert_eq!(
            parse_lifetime(&json!(60)).unwrap(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_lifetime(&json!("30d")).unwrap(),
            Some(Duration::from_secs(30 * 86400))
        );
        for bad in [
            json!(0),
            json!(-5),
            json!("soon"),
            json!("100years"),
            json!([]),
        ] {
            assert!(parse_lifetime(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_prefix_shows_little_of_a_short_token() {
        assert_eq!(token_prefix(&"a".repeat(64)), "aaaaaaaa");
        assert_eq!(token_prefix("test-operator-token"), "test");
    }
}
