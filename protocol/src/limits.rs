//! Every limit Drover enforces on what users and agents send, in one place.
//!
//! The upload validator, the task parser, the planner and the agent all read
//! these, so a definition that validates makes tasks the parser accepts, and
//! an agent refuses at start-up what the server would refuse at
//! registration. A limit that is configurable on the server has its default
//! here (`DEFAULT_*`).

/// Priority inputs (`urgency`, `time_sensitivity`, `importance`) are 0 to this.
pub const PRIORITY_INPUT_MAX: i64 = 10;

/// `max_attempts` is 1 to this.
pub const MAX_ATTEMPTS_LIMIT: i64 = 100;
pub const DEFAULT_MAX_ATTEMPTS: i64 = 3;

/// A task's `timeout_ms` is 1 to this (a week).
pub const MAX_TIMEOUT_MS: i64 = 7 * 24 * 3_600_000;
pub const DEFAULT_TIMEOUT_MS: i64 = 300_000;

/// A task's `retry_backoff_ms` is 0 to this (an hour).
pub const MAX_RETRY_BACKOFF_MS: i64 = 3_600_000;
pub const DEFAULT_RETRY_BACKOFF_MS: i64 = 1_000;

/// `run_after_us` is at most the end of year 9999, so adding any bounded
/// duration to it cannot overflow.
pub const MAX_TIMESTAMP_US: i64 = 253_402_300_799_000_000;

/// An approval's `timeout_ms` is 1 to this (a year): far enough for any
/// real decision, small enough that `now + timeout` cannot overflow.
pub const MAX_APPROVAL_TIMEOUT_MS: i64 = 366 * 24 * 3_600_000;

/// A wait step's `duration_ms` or event `timeout_ms` is 1 to this (a year).
pub const MAX_WAIT_MS: i64 = MAX_APPROVAL_TIMEOUT_MS;

/// An event's correlation key (`POST /api/v1/events`, a wait step's
/// rendered key) is 1 to this many bytes.
pub const MAX_EVENT_KEY_BYTES: usize = 256;

/// An event's data, as JSON, is at most this many bytes.
pub const MAX_EVENT_DATA_BYTES: usize = 64 * 1024;

/// A rate limit releases at most this many tasks a second, and its burst
/// is at most this many.
pub const MAX_RATE_PER_SECOND: f64 = 100_000.0;
/// At most this many rate limits exist.
pub const MAX_RATE_LIMITS: i64 = 1_000;

/// A task's payload, as JSON, is at most this many bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Default of the server's cap on a result's stored output, as JSON.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;

/// Task types, labels, step ids, workflow, input and user names: 1 to this
/// many characters of [`NAME_CHARS`].
pub const MAX_NAME_LEN: usize = 64;
/// What a name may contain besides ASCII letters and digits.
pub const NAME_CHARS: &str = "_ - . :";

/// A task's labels, and an agent's.
pub const MAX_LABELS: usize = 32;

/// An `idempotency_key` is 1 to this many bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

/// Idempotency keys starting with this belong to workflow steps
/// (`run:<id>:<step>:<item>:g<generation>`); an operator's task may not use
/// it, or it could take a step's key and stop the step's task from ever
/// being created.
pub const RESERVED_KEY_PREFIX: &str = "run:";

/// Idempotency keys starting with this belong to schedules
/// (`schedule:<id>:<tick in unix seconds>`): the key is what makes a tick
/// start its run or task once, so no client may take it.
pub const SCHEDULE_KEY_PREFIX: &str = "schedule:";

/// Run idempotency keys starting with this belong to webhook deliveries
/// (`hook:<trigger id>:<the delivery's Idempotency-Key>`).
pub const HOOK_KEY_PREFIX: &str = "hook:";
/// A task's concurrency limit is 1 to this.
pub const MAX_CONCURRENCY_LIMIT: i64 = 10_000;
/// Tasks of a full key named in "why is this waiting?".
pub const KEY_HOLDERS_SHOWN: i64 = 10;

/// Triggers one server keeps.
pub const MAX_TRIGGERS: i64 = 1_000;
/// How far a signed delivery's timestamp may be from the server's clock.
pub const HOOK_TIMESTAMP_TOLERANCE_S: i64 = 300;

/// Notification rules one server keeps.
pub const MAX_NOTIFICATION_RULES: i64 = 100;
/// A notification rule's URL is at most this many bytes.
pub const MAX_NOTIFICATION_URL_LEN: usize = 2_048;
/// An error, message or name quoted in a notification is cut to this many
/// bytes (the whole of it is on the dashboard's page).
pub const MAX_NOTIFICATION_QUOTE: usize = 500;
/// Deliveries listed at most in one answer.
pub const MAX_DELIVERIES_LISTED: i64 = 500;

/// Schedules one server keeps.
pub const MAX_SCHEDULES: i64 = 1_000;
/// A cron expression is at most this many bytes.
pub const MAX_CRON_LEN: usize = 256;
/// A schedule's description is at most this many bytes.
pub const MAX_SCHEDULE_DESCRIPTION: usize = 1_000;
/// Upcoming fire times shown with a schedule.
pub const SCHEDULE_UPCOMING: usize = 5;
/// Ticks of one schedule fired in one pass of the leader; the rest follow
/// in the next passes, so one schedule cannot hold the others up.
pub const MAX_FIRES_PER_PASS: usize = 100;
/// Missed ticks counted one by one after an outage; past it the count says
/// "at least".
pub const MAX_MISSED_COUNT: i64 = 10_000;

/// An agent's name, hostname and version are 1 to this many bytes.
pub const MAX_AGENT_TEXT_LEN: usize = 200;
/// The largest capacity an agent may declare.
pub const MAX_AGENT_CAPACITY: u32 = 10_000;

/// Default of the server's cap on tasks in one submit request.
pub const DEFAULT_MAX_BATCH: usize = 10_000;

/// A workflow definition's text is at most this many bytes.
pub const MAX_DEFINITION_BYTES: usize = 1 << 20;
/// Steps in one definition.
pub const MAX_STEPS: usize = 500;
/// Inputs one definition declares.
pub const MAX_INPUTS: usize = 100;

/// Default of the server's cap on a `for_each` step's items.
pub const DEFAULT_MAX_FOR_EACH_ITEMS: usize = 10_000;

/// Instructions one template or expression may execute (MiniJinja fuel):
/// ample for formatting a payload, a bounded time for a nested loop.
pub const TEMPLATE_FUEL: u64 = 1_000_000;
/// A template renders to at most this many bytes.
pub const MAX_RENDERED_BYTES: usize = MAX_PAYLOAD_BYTES;

/// Why `value` is not a valid name, if it is not (see [`MAX_NAME_LEN`]):
/// names are safe in URLs, logs and metrics.
pub fn name_problem(value: &str) -> Option<String> {
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Some(format!("must be 1 to {MAX_NAME_LEN} characters long"));
    }
    value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
        .map(|c| format!("contains {c:?}; only letters, digits and {NAME_CHARS} are allowed"))
}

/// `now_us` plus `ms` milliseconds, saturating instead of overflowing.
pub fn deadline_us(now_us: i64, ms: i64) -> i64 {
    now_us.saturating_add(ms.saturating_mul(1000))
}

/// Most events of a run `GET /api/v1/runs/{id}` returns (the newest;
/// `events_truncated` says when older ones were left out).
pub const RUN_EVENTS_SHOWN: i64 = 1_000;
/// Most task attempts of a run `GET /api/v1/runs/{id}` returns (the first
/// claimed; `attempts_truncated` says when later ones were left out).
pub const RUN_ATTEMPTS_SHOWN: i64 = 1_000;
/// Longest detail (an error, a comment) a run event keeps; the step and
/// its task keep the whole text.
pub const MAX_RUN_EVENT_DETAIL_BYTES: usize = 2 * 1024;

/// Most results (or resumed leases) in one agent request.
pub const MAX_RESULTS_PER_REQUEST: usize = 10_000;
/// Longest error message or release reason stored; the rest is cut.
pub const MAX_ERROR_BYTES: usize = 16 * 1024;
/// Shortest agent key accepted: 128 bits in hex (the agent makes 256).
pub const MIN_AGENT_KEY_LEN: usize = 32;
/// Longest agent key accepted.
pub const MAX_AGENT_KEY_LEN: usize = 256;
/// Most task types or labels one enrollment token may name.
pub const MAX_ENROLLMENT_SCOPE: usize = 256;

/// A log line is at most this many bytes: the agent cuts a longer one
/// (ending it with [`LOG_CUT_MARK`]) and the server refuses one that is not.
pub const MAX_LOG_LINE_BYTES: usize = 8 * 1024;
/// What ends a log line the agent cut at [`MAX_LOG_LINE_BYTES`].
pub const LOG_CUT_MARK: &str = "… (cut)";
/// Most log lines in one agent request, over all its tasks.
pub const MAX_LOG_LINES_PER_REQUEST: usize = 5_000;
/// Most tasks one agent request carries lines of.
pub const MAX_LOG_TASKS_PER_REQUEST: usize = 1_000;
/// Default of the server's bound on the lines it keeps per task (past it
/// the oldest go, and one note says how many).
pub const DEFAULT_MAX_LOG_LINES: usize = 10_000;
/// Bounds of that setting.
pub const MAX_LOG_LINES_LIMIT: usize = 1_000_000;
/// Lines one read of a task's log returns by default, and at most.
pub const DEFAULT_LOG_PAGE: i64 = 1_000;
pub const MAX_LOG_PAGE: i64 = 5_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_one_rule() {
        assert_eq!(name_problem("deploy.prod:eu-1_a"), None);
        assert!(name_problem("").is_some());
        assert!(name_problem(&"a".repeat(MAX_NAME_LEN + 1)).is_some());
        assert!(name_problem("a b").unwrap().contains("' '"));
    }

    #[test]
    fn deadlines_saturate() {
        assert_eq!(deadline_us(1_000, 2), 3_000);
        assert_eq!(deadline_us(1_700_000_000_000_000, i64::MAX), i64::MAX);
        assert!(deadline_us(1_700_000_000_000_000, MAX_APPROVAL_TIMEOUT_MS) < MAX_TIMESTAMP_US);
    }
}
