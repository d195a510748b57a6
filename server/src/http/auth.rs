//! Authentication. Users present an API token as a bearer token, or the
//! dashboard's session cookie (see `super::session`); agents enroll with the
//! enrollment token and then use a per-session token. Tokens are stored only
//! as SHA-256 hashes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use drover_engine::store::{AgentSession, EnrollmentStore, QueueStore, UserStore};
use drover_engine::time::now_us;
use drover_protocol::api::{AgentStatus, Role, UserView};
use drover_protocol::credentials::EnrollmentTokenView;

use crate::error::ApiError;
use crate::http::cookies;
use crate::state::AppState;
use crate::tokens::hash_token;

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim())
}

/// A signed-in user: the caller presented one of the user's API tokens, or
/// a session cookie (with the CSRF value when the request changes state).
pub struct Caller(pub UserView, pub CallerToken);

/// What the caller's own credential allows beyond the user's role.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallerToken {
    /// When the token or session presented stops working: a token it mints
    /// must not outlive it.
    pub expires_at_us: Option<i64>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = match bearer(parts) {
            Some(token) => token,
            None => {
                let session =
                    cookies::session_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
                if !parts.method.is_safe() {
                    cookies::check_csrf(&parts.headers, session, None)?;
                }
                session
            }
        };
        // Expired and revoked tokens, ended sessions and disabled users all
        // fail this one lookup.
        let now = drover_engine::time::now_us();
        let hash = hash_token(token);
        if let Some(found) = state.auth_cache.get(&hash, now) {
            return Ok(Caller(
                found.user,
                CallerToken {
                    expires_at_us: found.expires_at_us,
                },
            ));
        }
        match state.store.user_by_token(&hash, now).await? {
            Some(found) => {
                state.auth_cache.put(hash, found.clone());
                // Last use is bookkeeping: written at most once a minute per
                // token, so busy API clients do not cost a write per request.
                if found
                    .last_used_at_us
                    .is_none_or(|t| now.saturating_sub(t) > LAST_USED_GRANULARITY_US)
                {
                    state.store.touch_token(found.token_id, now).await?;
                }
                Ok(Caller(
                    found.user,
                    CallerToken {
                        expires_at_us: found.expires_at_us,
                    },
                ))
            }
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// How stale a token's recorded last use may be.
const LAST_USED_GRANULARITY_US: i64 = 60_000_000;

impl Caller {
    /// Submitting, cancelling, uploading and starting need `operator` or `admin`.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        if self.0.role.can_operate() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{} is a {}; this needs operator or admin",
                self.0.name,
                self.0.role.as_str()
            )))
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{} is a {}; this needs admin",
                self.0.name,
                self.0.role.as_str()
            )))
        }
    }
}

/// A caller holding a usable enrollment token (may register agents, for
/// what the token allows).
pub struct Enrollment(pub EnrollmentTokenView);

impl FromRequestParts<AppState> for Enrollment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        // Looked up by hash: the database compares hashes, never the
        // token, so its timing tells nothing about the token.
        match state
            .store
            .usable_enrollment_token(&hash_token(token), now_us())
            .await?
        {
            Some(view) => Ok(Enrollment(view)),
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// An agent session. A deregistered or revoked session is refused, so the
/// agent knows to register again (which a revoked agent can do only with a
/// usable enrollment token, as a new agent).
pub struct Agent(pub AgentSession);

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        match state.store.agent_by_token(&hash_token(token)).await? {
            Some(session)
                if !matches!(
                    session.status,
                    AgentStatus::Deregistered | AgentStatus::Revoked
                ) =>
            {
                Ok(Agent(session))
            }
            _ => Err(ApiError::Unauthorized),
        }
    }
}
