//! The agent's session with the server, and getting a new one when the
//! server forgets the old one.
//!
//! A 401 on a session call means the server no longer knows the session (its
//! database was reset, or an operator deregistered the agent). Every loop may
//! see that at once, so renewal is single-flight: the first caller registers
//! again, the others wait and then use the new token.

use std::sync::RwLock;
use std::time::Duration;

use drover_protocol::agent::{
    ClaimRequest, ClaimResponse, HeartbeatRequest, HeartbeatResponse, LogsRequest, LogsResponse,
    RegisterRequest, RegisterResponse, ResultsRequest, ResultsResponse,
};

use crate::backoff::Backoff;
use crate::client::{ApiError, Client};

/// Longest wait between registration attempts the server refuses (bad
/// enrollment token, validation): retrying faster cannot help.
const REFUSED_RETRY_CAP: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Current {
    /// Bumped by every registration, so a caller can tell whether the
    /// session it saw fail has already been replaced.
    generation: u64,
    info: RegisterResponse,
}

/// A registered agent session. All protocol calls after registration go
/// through it.
#[derive(Debug)]
pub struct Session {
    client: Client,
    enrollment_token: String,
    request: RegisterRequest,
    current: RwLock<Current>,
    renewing: tokio::sync::Mutex<()>,
}

impl Session {
    /// Registers once. The caller decides whether a failure is worth a retry.
    pub async fn register(
        client: Client,
        enrollment_token: String,
        request: RegisterRequest,
    ) -> Result<Self, (Client, ApiError)> {
        match client.register(&enrollment_token, &request).await {
            Ok(info) => Ok(Self {
                client,
                enrollment_token,
                // The leases kept on resuming were claimed: registering
                // again later must not keep them a second time.
                request: RegisterRequest {
                    resuming: vec![],
                    ..request
                },
                current: RwLock::new(Current {
                    generation: 0,
                    info,
                }),
                renewing: tokio::sync::Mutex::new(()),
            }),
            Err(e) => Err((client, e)),
        }
    }

    /// What the server said at the latest registration (intervals, agent id).
    pub fn info(&self) -> RegisterResponse {
        self.read().info
    }

    fn read(&self) -> Current {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub async fn heartbeat(
        &self,
        req: &HeartbeatRequest,
        timeout: Duration,
    ) -> Result<HeartbeatResponse, ApiError> {
        let client = &self.client;
        self.with_session(|token| async move { client.heartbeat(&token, req, timeout).await })
            .await
    }

    pub async fn claim(&self, req: &ClaimRequest) -> Result<ClaimResponse, ApiError> {
        let client = &self.client;
        self.with_session(|token| async move { client.claim(&token, req).await })
            .await
    }

    pub async fn results(&self, req: &ResultsRequest) -> Result<ResultsResponse, ApiError> {
        let client = &self.client;
        self.with_session(|token| async move { client.results(&token, req).await })
            .await
    }

    pub async fn logs(&self, req: &LogsRequest) -> Result<LogsResponse, ApiError> {
        let client = &self.client;
        self.with_session(|token| async move { client.logs(&token, req).await })
            .await
    }

    /// Ends the session. A 401 is fine: the server has already forgotten it.
    pub async fn deregister(&self, timeout: Duration) -> Result<(), ApiError> {
        let token = self.read().info.session_token;
        match self.client.deregister(&token, timeout).await {
            Ok(()) | Err(ApiError::Unauthorized(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs `call` with the session token; on a 401 registers again and
    /// retries once with the new token.
    async fn with_session<T, F, Fut>(&self, call: F) -> Result<T, ApiError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let seen = self.read();
        match call(seen.info.session_token).await {
            Err(ApiError::Unauthorized(message)) => {
                self.renew(seen.generation, &message).await;
                call(self.read().info.session_token).await
            }
            other => other,
        }
    }

    /// Registers again unless someone already did since `seen_generation`.
    /// Retries until it succeeds: without a session the agent can do nothing,
    /// and the loops calling this are cancelled from outside on shutdown.
    async fn renew(&self, seen_generation: u64, why: &str) {
        let _single_flight = self.renewing.lock().await;
        if self.read().generation != seen_generation {
            return;
        }
        tracing::warn!(reason = %why, "the server no longer knows this agent's session; registering again");
        let mut backoff = Backoff::default();
        let mut refused_backoff = Backoff::new(Duration::from_secs(1), REFUSED_RETRY_CAP);
        let mut refused_logged = false;
        loop {
            match self
                .client
                .register(&self.enrollment_token, &self.request)
                .await
            {
                Ok(info) => {
                    tracing::info!(agent_id = info.agent_id, "registered again");
                    let mut current = self
                        .current
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    current.generation += 1;
                    current.info = info;
                    return;
                }
                Err(e) if e.is_transient() => {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => {
                    if !refused_logged {
                        tracing::error!(error = %e, "the server refuses to register this agent again; retrying");
                        refused_logged = true;
                    }
                    tokio::time::sleep(refused_backoff.next_delay()).await;
                }
            }
        }
    }
}
