//! What happens to a running task when its attempt ends.
//!
//! Both stores load the running task, ask [`decide`] and write the answer in
//! the same transaction, so the retry policy lives in one place and is tested
//! without a database.

use drover_protocol::api::TaskStatus;
use rand::Rng;
use serde_json::Value;

/// How an attempt ended, from whichever side noticed.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptEnd {
    Succeeded {
        output: Value,
    },
    Failed {
        error: String,
        retryable: bool,
    },
    /// Handed back by the agent (shutdown): requeued, the attempt not counted.
    Released {
        reason: String,
    },
    /// The agent went silent or the lease expired: requeued at once.
    Lost {
        reason: String,
    },
    /// The attempt ran past the task's timeout.
    TimedOut {
        timeout_ms: i64,
    },
    /// An operator cancelled the task.
    Cancelled,
}

impl AttemptEnd {
    /// The attempt row's `outcome` column.
    pub fn outcome(&self) -> &'static str {
        match self {
            AttemptEnd::Succeeded { .. } => "succeeded",
            AttemptEnd::Failed { .. } => "failed",
            AttemptEnd::Released { .. } => "released",
            AttemptEnd::Lost { .. } => "lost",
            AttemptEnd::TimedOut { .. } => "timed_out",
            AttemptEnd::Cancelled => "cancelled",
        }
    }

    pub fn error(&self) -> Option<String> {
        match self {
            AttemptEnd::Succeeded { .. } | AttemptEnd::Cancelled => None,
            AttemptEnd::Failed { error, .. } => Some(error.clone()),
            AttemptEnd::Released { reason } | AttemptEnd::Lost { reason } => Some(reason.clone()),
            AttemptEnd::TimedOut { timeout_ms } => Some(format!("timed out after {timeout_ms} ms")),
        }
    }
}

/// The running task's counters that the decision needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunningTask {
    pub attempts: i64,
    pub max_attempts: i64,
    pub retry_backoff_ms: i64,
}

/// The new state of a task whose attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub status: TaskStatus,
    /// Added to `attempts` (−1 undoes the count of a released claim).
    pub attempts_delta: i64,
    /// For a requeue: not before this time.
    pub run_after_us: Option<i64>,
    pub result: Option<String>,
    pub error: Option<String>,
    /// The event recorded for it (`succeeded`, `retry_scheduled`, `requeued`, ...).
    pub event: &'static str,
}

/// Largest delay between retries.
pub const MAX_BACKOFF_MS: i64 = 3_600_000;

/// Exponential backoff with equal jitter: attempt n waits a random time in
/// `[c / 2, c]` with `c = base·2^(n−1)`, capped, so a burst of failures does
/// not come back as a burst, yet no retry comes sooner than half its backoff.
pub fn backoff_ms(base_ms: i64, attempt: i64) -> i64 {
    if base_ms <= 0 {
        return 0;
    }
    let exp = (attempt - 1).clamp(0, 30) as u32;
    let ceiling = base_ms.saturating_mul(1_i64 << exp).min(MAX_BACKOFF_MS);
    rand::rng().random_range(ceiling / 2..=ceiling)
}

/// Decides the task's next state. `now_us` dates a delayed retry.
pub fn decide(task: RunningTask, end: &AttemptEnd, now_us: i64) -> Transition {
    let retries_left = task.attempts < task.max_attempts;
    let requeue_now = |event| Transition {
        status: TaskStatus::Queued,
        attempts_delta: 0,
        run_after_us: Some(now_us),
        result: None,
        error: end.error(),
        event,
    };
    let fail = |event| Transition {
        status: TaskStatus::Failed,
        attempts_delta: 0,
        run_after_us: None,
        result: None,
        error: end.error(),
        event,
    };
    match end {
        AttemptEnd::Succeeded { output } => Transition {
            status: TaskStatus::Succeeded,
            attempts_delta: 0,
            run_after_us: None,
            result: Some(output.to_string()),
            error: None,
            event: "succeeded",
        },
        AttemptEnd::Cancelled => Transition {
            status: TaskStatus::Cancelled,
            attempts_delta: 0,
            run_after_us: None,
            result: None,
            error: None,
            event: "cancelled",
        },
        AttemptEnd::Released { .. } => Transition {
            attempts_delta: -1,
            ..requeue_now("released")
        },
        AttemptEnd::Lost { .. } if retries_left => requeue_now("requeued"),
        AttemptEnd::Failed {
            retryable: true, ..
        }
        | AttemptEnd::TimedOut { .. }
            if retries_left =>
        {
            Transition {
                run_after_us: Some(
                    now_us + crate::time::ms(backoff_ms(task.retry_backoff_ms, task.attempts)),
                ),
                ..requeue_now("retry_scheduled")
            }
        }
        _ => fail("failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: RunningTask = RunningTask {
        attempts: 1,
        max_attempts: 3,
        retry_backoff_ms: 1000,
    };

    #[test]
    fn success_is_terminal_and_keeps_the_output() {
        let t = decide(
            TASK,
            &AttemptEnd::Succeeded {
                output: serde_json::json!({"ok": 1}),
            },
            0,
        );
        assert_eq!(t.status, TaskStatus::Succeeded);
        assert_eq!(t.result.as_deref(), Some(r#"{"ok":1}"#));
    }

    #[test]
    fn retryable_failure_waits_with_backoff_then_fails_when_attempts_run_out() {
        let end = AttemptEnd::Failed {
            error: "boom".into(),
            retryable: true,
        };
        let t = decide(TASK, &end, 1_000_000);
        assert_eq!(t.status, TaskStatus::Queued);
        let delay = t.run_after_us.unwrap() - 1_000_000;
        assert!((500_000..=1_000_000).contains(&delay), "delay {delay}");
        let last = RunningTask {
            attempts: 3,
            ..TASK
        };
        let t = decide(last, &end, 0);
        assert_eq!(t.status, TaskStatus::Failed);
        assert_eq!(t.error.as_deref(), Some("boom"));
    }

    #[test]
    fn non_retryable_failure_fails_at_once() {
        let end = AttemptEnd::Failed {
            error: "bad input".into(),
            retryable: false,
        };
        assert_eq!(decide(TASK, &end, 0).status, TaskStatus::Failed);
    }

    #[test]
    fn lost_attempts_are_requeued_immediately_and_counted() {
        let t = decide(
            TASK,
            &AttemptEnd::Lost {
                reason: "agent offline".into(),
            },
            42,
        );
        assert_eq!(
            (t.status, t.run_after_us, t.attempts_delta),
            (TaskStatus::Queued, Some(42), 0)
        );
        let last = RunningTask {
            attempts: 3,
            ..TASK
        };
        assert_eq!(
            decide(last, &AttemptEnd::Lost { reason: "x".into() }, 0).status,
            TaskStatus::Failed
        );
    }

    #[test]
    fn released_attempts_do_not_count() {
        let last = RunningTask {
            attempts: 3,
            ..TASK
        };
        let t = decide(
            last,
            &AttemptEnd::Released {
                reason: "shutdown".into(),
            },
            7,
        );
        assert_eq!((t.status, t.attempts_delta), (TaskStatus::Queued, -1));
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        for _ in 0..100 {
            let b = backoff_ms(100, 4);
            assert!((400..=800).contains(&b));
            assert!(backoff_ms(1000, 40) <= MAX_BACKOFF_MS);
        }
        assert_eq!(backoff_ms(0, 3), 0);
    }
}
