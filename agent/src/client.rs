//! The HTTP calls of the agent protocol, and how their failures are classed.
//!
//! Callers only need to know one thing about a failure: retry it later
//! ([`ApiError::Transient`]), register again ([`ApiError::Unauthorized`]) or
//! accept that the server refuses it ([`ApiError::Rejected`]). Outages are
//! logged here, per endpoint: a warning when calls to it start failing and
//! an info line when it answers again, so the retry loops stay quiet. (Per
//! endpoint, because a server can fail one endpoint, say results, while
//! answering the others; a global flag would then warn on every retry.)

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use drover_protocol::agent::{
    ClaimRequest, ClaimResponse, HeartbeatRequest, HeartbeatResponse, LogsRequest, LogsResponse,
    RegisterRequest, RegisterResponse, ResultsRequest, ResultsResponse,
};
use drover_protocol::ErrorBody;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Timeout of calls that are not long-polls.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of a log request: log lines are not worth waiting long for,
/// and while one is in flight the next batch only grows.
pub const LOGS_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to a claim's `wait_ms` for the request timeout, so the server's own
/// "no work" answer always arrives before the agent gives up on it.
pub const CLAIM_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// How a protocol call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server does not know the bearer token (for a session: it was
    /// reset or deregistered; register again).
    #[error("unauthorized (401): {0}")]
    Unauthorized(String),
    /// Connection failure, timeout, 5xx, 408 or 429: try again later.
    #[error("{0}")]
    Transient(String),
    /// Any other 4xx: the server refuses this request and will keep doing so.
    #[error("HTTP {status}: {message}")]
    Rejected { status: u16, message: String },
    /// A 2xx whose body is not what the protocol says.
    #[error("unexpected response from the server: {0}")]
    Protocol(String),
}

impl ApiError {
    /// Whether retrying the same request later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Transient(_) | ApiError::Protocol(_))
    }
}

/// The agent protocol's endpoints on one server.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    /// Endpoints whose last call failed transiently, so only the first
    /// failure of an outage warns.
    failing: Mutex<HashSet<&'static str>>,
}

impl Client {
    /// `base` must end in `/` (see `config::Settings::server`). An `https`
    /// server must present a certificate that the system's roots or one of
    /// `extra_roots` (`--ca-file`) signed.
    pub fn new(
        base: reqwest::Url,
        extra_roots: &[reqwest::Certificate],
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("drover-agent/", env!("CARGO_PKG_VERSION")));
        for root in extra_roots {
            builder = builder.add_root_certificate(root.clone());
        }
        let http = builder.build()?;
        Ok(Self {
            http,
            base,
            failing: Mutex::new(HashSet::new()),
        })
    }

    pub async fn register(
        &self,
        enrollment_token: &str,
        req: &RegisterRequest,
    ) -> Result<RegisterResponse, ApiError> {
        let (status, body) = self
            .post("register", enrollment_token, req, CALL_TIMEOUT)
            .await?;
        decode(status, &body)
    }

    pub async fn heartbeat(
        &self,
        session: &str,
        req: &HeartbeatRequest,
        timeout: Duration,
    ) -> Result<HeartbeatResponse, ApiError> {
        let (status, body) = self.post("heartbeat", session, req, timeout).await?;
        decode(status, &body)
    }

    /// A long-poll: the request may be held by the server up to `wait_ms`.
    pub async fn claim(
        &self,
        session: &str,
        req: &ClaimRequest,
    ) -> Result<ClaimResponse, ApiError> {
        let timeout = Duration::from_millis(req.wait_ms) + CLAIM_TIMEOUT_MARGIN;
        let (status, body) = self.post("claim", session, req, timeout).await?;
        decode(status, &body)
    }

    pub async fn results(
        &self,
        session: &str,
        req: &ResultsRequest,
    ) -> Result<ResultsResponse, ApiError> {
        let (status, body) = self.post("results", session, req, CALL_TIMEOUT).await?;
        // The server answers 409 when every result of the request was stale;
        // the body still carries the acks.
        if status == StatusCode::CONFLICT {
            if let Ok(acks) = serde_json::from_slice::<ResultsResponse>(&body) {
                return Ok(acks);
            }
        }
        decode(status, &body)
    }

    /// Lines of running tasks. A 409 (every task refused) still carries the acks.
    pub async fn logs(&self, session: &str, req: &LogsRequest) -> Result<LogsResponse, ApiError> {
        let (status, body) = self.post("logs", session, req, LOGS_TIMEOUT).await?;
        if status == StatusCode::CONFLICT {
            if let Ok(acks) = serde_json::from_slice::<LogsResponse>(&body) {
                return Ok(acks);
            }
        }
        decode(status, &body)
    }

    pub async fn deregister(&self, session: &str, timeout: Duration) -> Result<(), ApiError> {
        let (status, body) = self
            .post("deregister", session, &serde_json::json!({}), timeout)
            .await?;
        decode::<serde_json::Value>(status, &body).map(|_| ())
    }

    /// Sends `body` to `api/v1/agent/{endpoint}` and classifies the answer.
    /// Returns the status and body of 2xx and non-retryable 4xx answers.
    async fn post<B: Serialize + ?Sized>(
        &self,
        endpoint: &'static str,
        token: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), ApiError> {
        let url = self
            .base
            .join(&format!("api/v1/agent/{endpoint}"))
            .map_err(|e| ApiError::Protocol(format!("bad endpoint URL: {e}")))?;
        let sent = self
            .http
            .post(url)
            .bearer_auth(token)
            .json(body)
            .timeout(timeout)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Err(self.unreachable(endpoint, describe(&e))),
        };
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => return Err(self.unreachable(endpoint, describe(&e))),
        };
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            return Err(self.unreachable(
                endpoint,
                format!("HTTP {status}: {}", error_message(&bytes)),
            ));
        }
        self.reachable(endpoint);
        if status == StatusCode::UNAUTHORIZED {
            return Err(ApiError::Unauthorized(error_message(&bytes)));
        }
        Ok((status, bytes))
    }

    fn unreachable(&self, endpoint: &'static str, detail: String) -> ApiError {
        if self.failing_set().insert(endpoint) {
            tracing::warn!(
                endpoint,
                error = %detail,
                "server unreachable or failing; retrying with backoff until it answers"
            );
        } else {
            tracing::debug!(endpoint, error = %detail, "server still unreachable or failing");
        }
        ApiError::Transient(detail)
    }

    fn reachable(&self, endpoint: &'static str) {
        if self.failing_set().remove(endpoint) {
            tracing::info!(endpoint, "server answering again");
        }
    }

    fn failing_set(&self) -> std::sync::MutexGuard<'_, HashSet<&'static str>> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads the PEM certificates of `path` (`--ca-file`), checking each so a
/// bad file stops the agent at start instead of failing every request.
pub fn load_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("not a PEM certificate bundle: {}", describe(&e)))?;
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".to_string());
    }
    for (i, cert) in certs.iter().enumerate() {
        // Certificates are parsed lazily; a client without the system roots
        // that trusts only this one parses it now.
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert.clone())
            .build()
            .map_err(|e| {
                format!(
                    "certificate {} is not a usable certificate: {}",
                    i + 1,
                    describe(&e)
                )
            })?;
    }
    Ok(certs)
}

/// A 2xx body as `T`; any other status as [`ApiError::Rejected`].
fn decode<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, ApiError> {
    if status.is_success() {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::Protocol(format!("{e} in body {:?}", tail(body, 200))))
    } else {
        Err(ApiError::Rejected {
            status: status.as_u16(),
            message: error_message(body),
        })
    }
}

/// The message of an [`ErrorBody`], or the end of whatever else was sent.
fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => match e.error.field {
            Some(field) => format!("{} ({}: {})", e.error.message, e.error.code, field),
            None => format!("{} ({})", e.error.message, e.error.code),
        },
        Err(_) if body.is_empty() => "(empty body)".to_string(),
        Err(_) => tail(body, 500),
    }
}

/// The last `max` bytes of `body` as text, starting on a character boundary.
pub fn tail(body: &[u8], max: usize) -> String {
    let mut start = body.len().saturating_sub(max);
    while start < body.len() && (body[start] & 0b1100_0000) == 0b1000_0000 {
        start += 1;
    }
    String::from_utf8_lossy(&body[start..]).trim().to_string()
}

/// A reqwest error with its causes, which name the real problem
/// ("connection refused") where the top level only says "error sending request".
pub fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_summarised() {
        let body =
            br#"{"error":{"code":"invalid_field","message":"must be 1","field":"capacity"}}"#;
        assert_eq!(error_message(body), "must be 1 (invalid_field: capacity)");
        assert_eq!(error_message(b"  oops \n"), "oops");
        assert_eq!(error_message(b""), "(empty body)");
    }

    #[test]
    fn tail_starts_on_a_char_boundary() {
        let s = "é".repeat(10); // 20 bytes
        assert_eq!(tail(s.as_bytes(), 5), "éé");
        assert_eq!(tail(b"abc", 10), "abc");
    }

    #[test]
    fn decode_classifies_statuses() {
        let ok: Result<serde_json::Value, _> = decode(StatusCode::OK, b"{}");
        assert!(ok.is_ok());
        let bad: Result<serde_json::Value, _> = decode(StatusCode::OK, b"<html>");
        assert!(matches!(bad, Err(ApiError::Protocol(_))));
        let refused: Result<serde_json::Value, _> = decode(StatusCode::UNPROCESSABLE_ENTITY, b"x");
        assert!(matches!(
            refused,
            Err(ApiError::Rejected { status: 422, .. })
        ));
    }
}
