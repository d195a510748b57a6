//! Outgoing notifications, the pure half (no database, no network): what
//! a valid rule is, which rules an event concerns, what a delivery says,
//! and when a failed one is tried again. The leader's loops
//! (`server/src/services/notifications/`) read events from the store and
//! post what this module writes.

use std::net::IpAddr;

use drover_protocol::limits::{
    name_problem, MAX_NOTIFICATION_QUOTE, MAX_NOTIFICATION_URL_LEN, MAX_RETRY_BACKOFF_MS,
};
use drover_protocol::notification::{
    NotificationEvent, NotificationPayload, PayloadAgent, PayloadApproval, PayloadRun, PayloadTask,
};
use rand::Rng;

use crate::error::FieldError;

/// A rule's definition as sent (a create, or a stored rule with a change
/// laid over it), before it is checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleInput {
    pub name: String,
    pub events: Vec<NotificationEvent>,
    pub workflow: Option<String>,
    pub task_type: Option<String>,
    pub url: String,
}

/// A checked rule: a valid name, at least one event (sorted, once each),
/// filters that apply to its events, and an http(s) URL.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    pub name: String,
    pub events: Vec<NotificationEvent>,
    pub workflow: Option<String>,
    pub task_type: Option<String>,
    pub url: String,
}

impl RuleSpec {
    /// Checks a rule. `allow_private`: whether the URL may name a
    /// loopback, private or link-local address (`DROVER_NOTIFY_ALLOW_PRIVATE`).
    pub fn parse(input: RuleInput, allow_private: bool) -> Result<Self, FieldError> {
        if let Some(problem) = name_problem(&input.name) {
            return Err(FieldError::new("name", problem));
        }
        let mut events = input.events;
        events.sort();
        events.dedup();
        if events.is_empty() {
            return Err(FieldError::new(
                "events",
                "name at least one of run_failed, approval_waiting, task_failed, agent_offline",
            ));
        }
        let blank = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let workflow = blank(input.workflow);
        let task_type = blank(input.task_type);
        if let Some(w) = &workflow {
            if let Some(problem) = name_problem(w) {
                return Err(FieldError::new("workflow", problem));
            }
            if events.contains(&NotificationEvent::AgentOffline) {
                return Err(FieldError::new(
                    "workflow",
                    "does not apply to agent_offline: make a separate rule for agents",
                ));
            }
        }
        if let Some(t) = &task_type {
            if let Some(problem) = name_problem(t) {
                return Err(FieldError::new("task_type", problem));
            }
            if let Some(e) = events.iter().find(|e| {
                matches!(
                    e,
                    NotificationEvent::RunFailed | NotificationEvent::ApprovalWaiting
                )
            }) {
                return Err(FieldError::new(
                    "task_type",
                    format!(
                        "does not apply to {}: it filters task_failed and agent_offline",
                        e.as_str()
                    ),
                ));
            }
        }
        check_url(&input.url, allow_private)?;
        Ok(Self {
            name: input.name,
            events,
            workflow,
            task_type,
            url: input.url.trim().to_string(),
        })
    }
}

/// Checks a webhook URL: http or https, a host, bounded; with
/// `allow_private` false, no literal loopback, private or link-local
/// address and no `localhost` (names that resolve to one are refused when
/// sending, where the address is known).
pub fn check_url(url: &str, allow_private: bool) -> Result<(), FieldError> {
    let err = |m: String| FieldError::new("url", m);
    let url = url.trim();
    if url.len() > MAX_NOTIFICATION_URL_LEN {
        return Err(err(format!(
            "must be at most {MAX_NOTIFICATION_URL_LEN} characters long"
        )));
    }
    let parsed = url::Url::parse(url).map_err(|e| err(format!("is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(err(format!(
            "must start with http:// or https://, not {}:",
            parsed.scheme()
        )));
    }
    let internal = match parsed.host() {
        None => return Err(err("has no host".into())),
        Some(url::Host::Ipv4(ip)) => is_internal(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_internal(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
    };
    if internal && !allow_private {
        return Err(err(
            "points at a loopback, private or link-local address; the server refuses those \
             unless DROVER_NOTIFY_ALLOW_PRIVATE=true"
                .into(),
        ));
    }
    Ok(())
}

/// Whether an address is not on the public internet: loopback, private
/// (RFC 1918, unique local), link-local (cloud metadata lives at
/// 169.254.169.254), carrier-grade NAT, unspecified, multicast, reserved,
/// or an IPv4 address of those inside IPv6.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return is_internal(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// A URL as shown after it was stored: its origin, and `/…` for the rest.
/// Webhook URLs often carry their credential in the path (Slack's do).
pub fn url_origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let origin = u.origin().ascii_serialization();
            let rest = u.path() != "/" || u.query().is_some();
            if rest {
                format!("{origin}/…")
            } else {
                origin
            }
        }
        Err(_) => "(invalid URL)".into(),
    }
}

/// Something a rule may be told about, as read from the rows that record
/// it. Which fields are set depends on the kind.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub kind: Option<NotificationEvent>,
    /// When it happened (µs): the run's or task's end, the approval's
    /// creation, the sweep that found the agent silent.
    pub at_us: i64,
    /// The run, task, approval or agent id.
    pub subject_id: i64,
    pub run_id: Option<i64>,
    pub step_id: Option<String>,
    pub workflow: Option<String>,
    pub workflow_version: Option<i64>,
    pub task_type: Option<String>,
    /// An agent's task types.
    pub task_types: Vec<String>,
    /// A run's `started_by`, an agent's name.
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub error: Option<String>,
    /// An approval's message.
    pub message: Option<String>,
    pub attempts: Option<i64>,
    pub last_heartbeat_at_us: Option<i64>,
}

impl Event {
    /// The same event always has the same key, and another event of the
    /// same subject another (a run that fails again after a retried step
    /// ends at another time): one delivery per rule and key.
    pub fn key(&self) -> String {
        let kind = self.kind.map(NotificationEvent::as_str).unwrap_or("event");
        format!("{kind}:{}:{}", self.subject_id, self.at_us)
    }
}

/// What a rule listens to, for matching.
#[derive(Debug, Clone, Copy)]
pub struct Filter<'a> {
    pub events: &'a [NotificationEvent],
    pub workflow: Option<&'a str>,
    pub task_type: Option<&'a str>,
    /// Events before this (the rule's creation or last enabling) are not its concern.
    pub since_us: i64,
}

/// Whether a rule with `filter` is told about `event`.
pub fn matches(filter: &Filter<'_>, event: &Event) -> bool {
    let Some(kind) = event.kind else { return false };
    if !filter.events.contains(&kind) || event.at_us < filter.since_us {
        return false;
    }
    if let Some(w) = filter.workflow {
        if event.workflow.as_deref() != Some(w) {
            return false;
        }
    }
    if let Some(t) = filter.task_type {
        let handles = match kind {
            NotificationEvent::AgentOffline => event.task_types.iter().any(|x| x == t),
            _ => event.task_type.as_deref() == Some(t),
        };
        if !handles {
            return false;
        }
    }
    true
}

/// A delivery's text and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The one line of `text`.
    pub summary: String,
    /// The JSON body, as sent at every attempt.
    pub body: String,
}

/// `text` cut to [`MAX_NOTIFICATION_QUOTE`] bytes on one line.
fn quote(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    if trimmed.len() <= MAX_NOTIFICATION_QUOTE {
        return trimmed.to_string();
    }
    let mut end = MAX_NOTIFICATION_QUOTE;
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &trimmed[..end])
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The dashboard's page for `path`, under the server's public URL.
fn link(public_url: Option<&str>, path: &str) -> Option<String> {
    public_url.map(|base| format!("{}{path}", base.trim_end_matches('/')))
}

/// What rule `rule` sends about `event`.
pub fn message(rule: &str, event: &Event, public_url: Option<&str>) -> Message {
    let mut payload = NotificationPayload {
        event: event
            .kind
            .map(NotificationEvent::as_str)
            .unwrap_or("event")
            .to_string(),
        text: String::new(),
        rule: rule.to_string(),
        key: event.key(),
        occurred_at: rfc3339(event.at_us),
        occurred_at_us: event.at_us,
        link: None,
        run: None,
        task: None,
        approval: None,
        agent: None,
    };
    let workflow = event.workflow.clone().unwrap_or_default();
    let error = event.error.as_deref().map(quote);
    let id = event.subject_id;
    let text = match event.kind {
        Some(NotificationEvent::RunFailed) => {
            payload.link = link(public_url, &format!("/runs/{id}"));
            payload.run = Some(PayloadRun {
                id,
                workflow: workflow.clone(),
                version: event.workflow_version.unwrap_or_default(),
                started_by: event.name.clone(),
                error: event.error.clone(),
            });
            match error {
                Some(e) => format!("Run #{id} of workflow {workflow} failed: {e}"),
                None => format!("Run #{id} of workflow {workflow} failed"),
            }
        }
        Some(NotificationEvent::ApprovalWaiting) => {
            let run = event.run_id.unwrap_or_default();
            let step = event.step_id.clone().unwrap_or_default();
            payload.link = link(public_url, &format!("/runs/{run}"));
            payload.approval = Some(PayloadApproval {
                id,
                run_id: run,
                step_id: step.clone(),
                workflow: workflow.clone(),
                message: event.message.clone().unwrap_or_default(),
            });
            let message = event.message.as_deref().map(quote).unwrap_or_default();
            format!(
                "Run #{run} of workflow {workflow} waits for approval at step {step}: {message}"
            )
        }
        Some(NotificationEvent::TaskFailed) => {
            let task_type = event.task_type.clone().unwrap_or_default();
            let attempts = event.attempts.unwrap_or_default();
            payload.link = link(public_url, &format!("/tasks/{id}"));
            payload.task = Some(PayloadTask {
                id,
                task_type: task_type.clone(),
                attempts,
                error: event.error.clone(),
                run_id: event.run_id,
                step_id: event.step_id.clone(),
                workflow: event.workflow.clone(),
            });
            let tries = if attempts == 1 {
                "1 attempt".to_string()
            } else {
                format!("{attempts} attempts")
            };
            let of_run = match (event.run_id, &event.step_id) {
                (Some(r), Some(s)) => format!(" (step {s} of run #{r}, workflow {workflow})"),
                _ => String::new(),
            };
            match error {
                Some(e) => {
                    format!("Task #{id} ({task_type}) failed for good after {tries}{of_run}: {e}")
                }
                None => format!("Task #{id} ({task_type}) failed for good after {tries}{of_run}"),
            }
        }
        Some(NotificationEvent::AgentOffline) => {
            let name = event.name.clone().unwrap_or_default();
            let host = event.hostname.clone().unwrap_or_default();
            let last = event.last_heartbeat_at_us.unwrap_or_default();
            payload.link = link(public_url, "/agents");
            payload.agent = Some(PayloadAgent {
                id,
                name: name.clone(),
                hostname: host.clone(),
                task_types: event.task_types.clone(),
                last_heartbeat_at_us: last,
            });
            format!(
                "Agent {name} (#{id} on {host}) is offline: no heartbeat since {}",
                rfc3339(last)
            )
        }
        None => format!("Event about #{id}"),
    };
    payload.text = with_link(format!("Drover: {text}"), payload.link.as_deref());
    finish(payload)
}

/// What a test send of rule `rule` says.
pub fn test_message(rule: &str, key: &str, now_us: i64, public_url: Option<&str>) -> Message {
    let link = link(public_url, "/notifications");
    let text = with_link(
        format!("Drover: a test notification from rule {rule}; if you read this, it works"),
        link.as_deref(),
    );
    finish(NotificationPayload {
        event: "test".into(),
        text,
        rule: rule.to_string(),
        key: key.to_string(),
        occurred_at: rfc3339(now_us),
        occurred_at_us: now_us,
        link,
        run: None,
        task: None,
        approval: None,
        agent: None,
    })
}

fn with_link(text: String, link: Option<&str>) -> String {
    match link {
        Some(l) => format!("{text} – {l}"),
        None => text,
    }
}

fn finish(payload: NotificationPayload) -> Message {
    Message {
        summary: payload.text.clone(),
        // Plain structs of strings and numbers: serializing cannot fail.
        body: serde_json::to_string(&payload).unwrap_or_default(),
    }
}

/// How long after failed attempt `attempt` (1-based) the next one starts:
/// `base·2^(attempt−1)`, at most an hour, with equal jitter (a random point
/// in the upper half) so receivers that come back are not hit by every
/// retry at once.
pub fn retry_delay_us(base_us: i64, attempt: i64) -> i64 {
    let cap = MAX_RETRY_BACKOFF_MS * 1000;
    let shift = (attempt - 1).clamp(0, 40) as u32;
    let full = base_us.max(1).saturating_mul(1i64 << shift).min(cap);
    let half = full / 2;
    half + rand::rng().random_range(0..=full - half)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(events: &[NotificationEvent]) -> RuleInput {
        RuleInput {
            name: "ops".into(),
            events: events.to_vec(),
            workflow: None,
            task_type: None,
            url: "https://hooks.example.com/services/T0/B0/secret".into(),
        }
    }

    #[test]
    fn a_rule_names_events_and_filters_that_apply_to_them() {
        use NotificationEvent::*;
        let ok = RuleSpec::parse(input(&[TaskFailed, RunFailed, TaskFailed]), false).unwrap();
        assert_eq!(ok.events, vec![RunFailed, TaskFailed]);
        let e = RuleSpec::parse(input(&[]), false).unwrap_err();
        assert_eq!(e.field, "events");
        let mut i = input(&[AgentOffline]);
        i.workflow = Some("etl".into());
        assert_eq!(RuleSpec::parse(i, false).unwrap_err().field, "workflow");
        let mut i = input(&[RunFailed]);
        i.task_type = Some("resize".into());
        assert_eq!(RuleSpec::parse(i, false).unwrap_err().field, "task_type");
        let mut i = input(&[TaskFailed, AgentOffline]);
        i.task_type = Some("resize".into());
        i.workflow = Some(" ".into());
        let spec = RuleSpec::parse(i, false).unwrap();
        assert_eq!(spec.workflow, None, "a blank filter is no filter");
        let mut i = input(&[RunFailed]);
        i.name = "two words".into();
        assert_eq!(RuleSpec::parse(i, false).unwrap_err().field, "name");
    }

    #[test]
    fn urls_are_http_and_not_internal_unless_allowed() {
        assert!(check_url("https://hooks.slack.com/services/x", false).is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "not a url",
            "http://",
            "gopher://127.0.0.1:25/",
        ] {
            assert_eq!(check_url(bad, true).unwrap_err().field, "url", "{bad}");
        }
        for internal in [
            "http://127.0.0.1:9000/x",
            "http://localhost/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://[::ffff:192.168.0.1]/",
            "http://[fd00::1]/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
        ] {
            assert!(check_url(internal, false).is_err(), "{internal}");
            assert!(check_url(internal, true).is_ok(), "{internal}");
        }
        assert!(check_url(&format!("https://x.com/{}", "a".repeat(3000)), true).is_err());
        assert!(!is_internal("8.8.8.8".parse().unwrap()));
        assert!(!is_internal("2606:4700::1111".parse().unwrap()));
        assert!(is_internal("64:ff9b::a00:1".parse().unwrap()));
    }

    #[test]
    fn a_stored_url_shows_only_its_origin() {
        assert_eq!(
            url_origin("https://hooks.slack.com/services/T0/B0/xyz"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            url_origin("http://user:pw@example.com:8080"),
            "http://example.com:8080"
        );
        assert_eq!(
            url_origin("http://example.com/?token=1"),
            "http://example.com/…"
        );
    }

    fn task_failed() -> Event {
        Event {
            kind: Some(NotificationEvent::TaskFailed),
            at_us: 1_700_000_000_000_000,
            subject_id: 42,
            run_id: Some(7),
            step_id: Some("load".into()),
            workflow: Some("etl".into()),
            task_type: Some("resize".into()),
            error: Some("exit code 3:\ndisk on fire".into()),
            attempts: Some(3),
            ..Event::default()
        }
    }

    #[test]
    fn rules_match_by_kind_filters_and_time() {
        use NotificationEvent::*;
        let e = task_failed();
        let f = |events: &'static [NotificationEvent], w, t, since| Filter {
            events,
            workflow: w,
            task_type: t,
            since_us: since,
        };
        assert!(matches(&f(&[TaskFailed], None, None, 0), &e));
        assert!(!matches(&f(&[RunFailed], None, None, 0), &e));
        assert!(matches(
            &f(&[TaskFailed], Some("etl"), Some("resize"), 0),
            &e
        ));
        assert!(!matches(&f(&[TaskFailed], Some("other"), None, 0), &e));
        assert!(!matches(&f(&[TaskFailed], None, Some("wc"), 0), &e));
        assert!(!matches(&f(&[TaskFailed], None, None, e.at_us + 1), &e));
        let agent = Event {
            kind: Some(AgentOffline),
            task_types: vec!["echo".into(), "resize".into()],
            ..Event::default()
        };
        assert!(matches(
            &f(&[AgentOffline], None, Some("resize"), 0),
            &agent
        ));
        assert!(!matches(&f(&[AgentOffline], None, Some("wc"), 0), &agent));
    }

    #[test]
    fn a_message_is_one_line_of_text_and_the_facts() {
        let e = task_failed();
        let m = message("ops", &e, Some("https://drover.example/"));
        assert_eq!(
            m.summary,
            "Drover: Task #42 (resize) failed for good after 3 attempts (step load of run #7, \
             workflow etl): exit code 3: disk on fire – https://drover.example/tasks/42"
        );
        let body: NotificationPayload = serde_json::from_str(&m.body).unwrap();
        assert_eq!(body.text, m.summary);
        assert_eq!(body.event, "task_failed");
        assert_eq!(body.key, "task_failed:42:1700000000000000");
        assert_eq!(body.occurred_at, "2023-11-14T22:13:20.000Z");
        assert_eq!(
            body.task.unwrap().error.as_deref(),
            Some("exit code 3:\ndisk on fire")
        );
        assert!(message("ops", &e, None).summary.ends_with("disk on fire"));
        let long = Event {
            error: Some("é".repeat(1000)),
            ..task_failed()
        };
        assert!(message("ops", &long, None).summary.len() < MAX_NOTIFICATION_QUOTE + 200);
    }

    #[test]
    fn retries_back_off_with_jitter_up_to_an_hour() {
        for _ in 0..100 {
            let d1 = retry_delay_us(1_000_000, 1);
            assert!((500_000..=1_000_000).contains(&d1));
            let d3 = retry_delay_us(1_000_000, 3);
            assert!((2_000_000..=4_000_000).contains(&d3));
            let d_far = retry_delay_us(1_000_000, 99);
            assert!((MAX_RETRY_BACKOFF_MS * 500..=MAX_RETRY_BACKOFF_MS * 1000).contains(&d_far));
        }
    }
}
