//! The leader's deliverer: posts due deliveries and records what came of
//! each attempt.
//!
//! A pass claims up to [`BATCH`] due deliveries (each claim counts the
//! attempt and leases the delivery past the attempt's timeout), posts them
//! all at once, and records each outcome: a 2xx answer is delivered;
//! anything else — another status, a redirect (never followed), a timeout,
//! a refused connection — is retried after `base·2^(n−1)` (with jitter, at
//! most an hour) until the last attempt, which marks it failed. Between
//! passes it sleeps until the next delivery is due (at most one duty
//! interval), or until woken by new deliveries.
//!
//! **What a receiver may learn and what it may not.** The server keeps the
//! receiver's status code and a short reason, never its answer's body:
//! an admin's URL pointed at an internal service must not turn the
//! dashboard into a way to read it. With `DROVER_NOTIFY_ALLOW_PRIVATE`
//! off, names that resolve to loopback, private or link-local addresses are
//! refused at connect time (the check runs on the addresses actually
//! connected to, so a name that changes its answer cannot slip past), and
//! no proxy is used, since a proxy would resolve the name itself.

use std::collections::HashMap;
use std::error::Error as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_engine::notification::{is_internal, retry_delay_us};
use drover_engine::store::{Attempted, DeliveryRow, NotificationRuleRow, NotificationStore};
use drover_engine::time::now_us;
use drover_engine::Store;
use hmac::{Hmac, Mac};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::Sha256;
use tokio::sync::Notify;

use super::EVENT_KIND;
use crate::services::events::EventBus;

/// Deliveries attempted at once.
pub const BATCH: i64 = 16;
/// How long past its timeout an attempt's lease lasts: a delivery claimed
/// by a server that died is tried again after this.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// The shortest sleep between passes.
const MIN_SLEEP: Duration = Duration::from_millis(5);
/// How often delivered and failed deliveries past the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Longest reason kept for a failed attempt.
const MAX_REASON: usize = 300;

pub struct Deliverer {
    pub store: Store,
    pub events: Arc<EventBus>,
    pub leader: Arc<AtomicBool>,
    /// Notified when deliveries are written (a scan, a test send).
    pub wake: Arc<Notify>,
    pub interval: Duration,
    pub http: reqwest::Client,
    pub max_attempts: i64,
    pub backoff: Duration,
    pub timeout: Duration,
    pub retention: Duration,
    /// `DROVER_NOTIFY_ALLOW_PRIVATE`.
    pub allow_private: bool,
}

/// Why an attempt failed.
enum Failure {
    /// Worth trying again (a 5xx, a timeout, a refused connection …).
    Retry(Option<i64>, String),
    /// Trying again cannot help (the address is refused by policy).
    Final(String),
}

impl Deliverer {
    /// The HTTP client deliveries are posted with: the timeout, no
    /// redirects, no proxy, and (unless `allow_private`) a resolver that
    /// refuses internal addresses.
    pub fn client(timeout: Duration, allow_private: bool) -> reqwest::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("drover/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        builder.build()
    }

    /// Runs passes while this instance leads, until `shutdown` resolves. An
    /// attempt under way then is abandoned: its delivery is sent again
    /// when its lease is over (at least once).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_prune: Option<Instant> = None;
        loop {
            let sleep = if self.leader.load(Ordering::SeqCst) {
                if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                    last_prune = Some(Instant::now());
                    self.prune().await;
                }
                tokio::select! {
                    _ = &mut shutdown => break,
                    s = self.pass() => s,
                }
            } else {
                self.interval
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Attempts what is due; returns how long to sleep.
    async fn pass(&self) -> Duration {
        loop {
            let now = now_us();
            let lease = now + (self.timeout + LEASE_MARGIN).as_micros() as i64;
            let claimed = match self.store.claim_due_deliveries(now, lease, BATCH).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim notification deliveries");
                    return self.interval;
                }
            };
            if claimed.is_empty() {
                break;
            }
            let rules: HashMap<i64, NotificationRuleRow> =
                match self.store.notification_rules().await {
                    Ok(rules) => rules.into_iter().map(|r| (r.id, r)).collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the notification rules");
                        return self.interval;
                    }
                };
            let full = claimed.len() as i64 == BATCH;
            futures::future::join_all(
                claimed
                    .into_iter()
                    .map(|d| self.attempt(rules.get(&d.rule_id), d)),
            )
            .await;
            if !full {
                break;
            }
        }
        match self.store.next_delivery_due().await {
            Ok(Some(next)) => Duration::from_micros((next - now_us()).max(0) as u64)
                .clamp(MIN_SLEEP, self.interval),
            Ok(None) => self.interval,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the next notification due");
                self.interval
            }
        }
    }

    /// One attempt of a claimed delivery, and its record.
    async fn attempt(&self, rule: Option<&NotificationRuleRow>, d: DeliveryRow) {
        let result = match rule {
            None => Err(Failure::Final("its rule was deleted".into())),
            Some(_) if d.attempts > self.max_attempts => Err(Failure::Final(format!(
                "no attempt left: the last one ({} of {}) was cut short by a server stop",
                d.attempts - 1,
                self.max_attempts
            ))),
            Some(rule) => match self.send(rule, &d).await {
                Ok(code) if (200..300).contains(&code) => Ok(code),
                Ok(code) => Err(Failure::Retry(Some(code), format!("HTTP {code}"))),
                Err(f) => Err(f),
            },
        };
        let now = now_us();
        let outcome = match result {
            Ok(status_code) => Attempted::Delivered { status_code },
            Err(Failure::Final(error)) => Attempted::GaveUp {
                status_code: None,
                error,
            },
            Err(Failure::Retry(status_code, error)) if d.attempts >= self.max_attempts => {
                Attempted::GaveUp {
                    status_code,
                    error: format!(
                        "{error} (attempt {} of {}: gave up)",
                        d.attempts, self.max_attempts
                    ),
                }
            }
            Err(Failure::Retry(status_code, error)) => Attempted::Retry {
                next_at: now + retry_delay_us(self.backoff.as_micros() as i64, d.attempts),
                status_code,
                error,
            },
        };
        let (status, label) = match &outcome {
            Attempted::Delivered { .. } => ("delivered", "delivered"),
            Attempted::Retry { .. } => ("pending", "retry"),
            Attempted::GaveUp { .. } => ("failed", "failed"),
        };
        metrics::counter!("drover_notification_attempts_total", "outcome" => label).increment(1);
        match self
            .store
            .record_delivery(d.id, d.attempts, &outcome, now)
            .await
        {
            Ok(true) => {
                match &outcome {
                    Attempted::Delivered { .. } => {
                        tracing::info!(delivery = d.id, rule = %d.rule_name, attempt = d.attempts, "notification delivered")
                    }
                    Attempted::Retry { error, .. } => {
                        tracing::warn!(delivery = d.id, rule = %d.rule_name, attempt = d.attempts, %error, "notification attempt failed; will retry")
                    }
                    Attempted::GaveUp { error, .. } => {
                        tracing::warn!(delivery = d.id, rule = %d.rule_name, attempt = d.attempts, %error, "notification failed for good")
                    }
                }
                self.events.publish(EVENT_KIND, Some(d.id), Some(status));
            }
            Ok(false) => {
                tracing::info!(
                    delivery = d.id,
                    "notification attempt not recorded: claimed again since"
                )
            }
            Err(e) => {
                tracing::warn!(delivery = d.id, error = %e, "could not record a notification attempt; it is sent again after its lease")
            }
        }
    }

    /// Posts one delivery; the receiver's status, or why there was none.
    async fn send(&self, rule: &NotificationRuleRow, d: &DeliveryRow) -> Result<i64, Failure> {
        if !self.allows(&rule.url) {
            return Err(Failure::Final(
                "refused: the URL names a loopback, private or link-local address \
                 (DROVER_NOTIFY_ALLOW_PRIVATE is off)"
                    .into(),
            ));
        }
        let mut request = self
            .http
            .post(&rule.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", format!("drover-delivery-{}", d.id))
            .header("X-Drover-Delivery", d.id.to_string())
            .header("X-Drover-Event", &d.event)
            .header("X-Drover-Attempt", d.attempts.to_string());
        if let Some(secret) = &rule.secret {
            let ts = (now_us() / 1_000_000).to_string();
            if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
                mac.update(ts.as_bytes());
                mac.update(b".");
                mac.update(d.payload.as_bytes());
                let sig = hex::encode(mac.finalize().into_bytes());
                request = request
                    .header("X-Drover-Timestamp", ts)
                    .header("X-Drover-Signature", format!("sha256={sig}"));
            }
        }
        match request.body(d.payload.clone()).send().await {
            Ok(response) => {
                // The answer's body is neither read nor kept (see the module docs).
                Ok(i64::from(response.status().as_u16()))
            }
            Err(e) => Err(self.reason(e)),
        }
    }

    /// Whether the URL's host, when it is an address, may be reached (a
    /// name is checked by the resolver).
    fn allows(&self, url: &str) -> bool {
        if self.allow_private {
            return true;
        }
        let Ok(url) = reqwest::Url::parse(url) else {
            return false;
        };
        let host = url.host_str().unwrap_or_default();
        match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
        {
            Ok(ip) => !is_internal(ip),
            Err(_) => true,
        }
    }

    /// A failed request as a short reason, without the URL (it may hold a
    /// credential).
    fn reason(&self, e: reqwest::Error) -> Failure {
        let e = e.without_url();
        if e.is_timeout() {
            return Failure::Retry(None, format!("timed out after {:?}", self.timeout));
        }
        let mut chain = Vec::new();
        let mut source = e.source();
        while let Some(s) = source {
            if let Some(refused) = s.downcast_ref::<Refused>() {
                return Failure::Final(refused.to_string());
            }
            chain.push(s.to_string());
            source = s.source();
        }
        let what = if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        let mut reason = match chain.last() {
            Some(cause) => format!("{what}: {cause}"),
            None => what.to_string(),
        };
        if reason.len() > MAX_REASON {
            let mut end = MAX_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Failure::Retry(None, reason)
    }

    async fn prune(&self) {
        let before = now_us() - self.retention.as_micros() as i64;
        match self.store.prune_deliveries(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "old notification deliveries deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete old notification deliveries"),
        }
    }
}

/// A connection refused by the address policy.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused: {} resolves only to loopback, private or link-local addresses \
             (DROVER_NOTIFY_ALLOW_PRIVATE is off)",
            self.0
        )
    }
}

impl std::error::Error for Refused {}

/// Resolves names with the system's resolver and keeps only public
/// addresses: the connection is made to what this returns, so the check
/// holds for the address actually used.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                found.into_iter().filter(|a| !is_internal(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(Refused(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}
