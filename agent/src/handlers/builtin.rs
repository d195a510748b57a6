//! Handlers built into the agent, for trying a deployment end to end and for
//! tests, with no external program involved.

use std::time::Duration;

use drover_protocol::agent::Outcome;
use serde_json::{json, Value};

use super::{failed_for_good, TaskContext};
use crate::config::BuiltinKind;

/// A built-in handler.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    kind: BuiltinKind,
}

impl Builtin {
    pub fn new(kind: BuiltinKind) -> Self {
        Self { kind }
    }

    pub async fn run(&self, ctx: &TaskContext) -> Outcome {
        match self.kind {
            BuiltinKind::Echo => Outcome::Succeeded {
                output: ctx.payload.clone(),
            },
            BuiltinKind::Sleep => sleep(&ctx.payload).await,
            BuiltinKind::Fail => fail(&ctx.payload),
        }
    }
}

/// `{"ms": N}` → sleeps N ms → `{"slept_ms": N}`. Dropping the future
/// (cancel, timeout, shutdown) ends it at once.
async fn sleep(payload: &Value) -> Outcome {
    let Some(ms) = payload.get("ms").and_then(Value::as_u64) else {
        return failed_for_good(format!(
            "sleep expects a payload like {{\"ms\": 250}}, got {}",
            short(payload)
        ));
    };
    sleep_precisely(Duration::from_millis(ms)).await;
    Outcome::Succeeded {
        output: json!({ "slept_ms": ms }),
    }
}

/// Sleeps `d` to within a fraction of a millisecond. tokio's timers fire on
/// whole milliseconds and late by about one, which would count as the
/// task's own time: the last stretch is slept on a blocking thread, whose
/// timer is exact (most of the wait holds no thread).
async fn sleep_precisely(d: Duration) {
    const EXACT_TAIL: Duration = Duration::from_millis(2);
    let deadline = tokio::time::Instant::now() + d;
    if d > EXACT_TAIL {
        tokio::time::sleep_until(deadline - EXACT_TAIL).await;
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if !left.is_zero() {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(left)).await;
    }
}

/// `{"error": "...", "retryable": bool}` → that failure. Both fields are
/// optional, for exercising the server's retry policy.
fn fail(payload: &Value) -> Outcome {
    let error = payload
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("failed on request (builtin fail)")
        .to_string();
    let retryable = payload
        .get("retryable")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Outcome::Failed { error, retryable }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 200 {
        format!("{}…", crate::client::tail(text.as_bytes(), 200))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{Handler, TaskContext};

    fn ctx(payload: Value, timeout_ms: Option<u64>) -> TaskContext {
        TaskContext {
            task_id: 1,
            task_type: "t".into(),
            attempt: 1,
            payload,
            timeout: timeout_ms.map(Duration::from_millis),
            log: None,
        }
    }

    #[tokio::test]
    async fn echo_returns_the_payload() {
        let p = json!({"a": [1, 2, {"b": null}]});
        let out = Builtin::new(BuiltinKind::Echo)
            .run(&ctx(p.clone(), None))
            .await;
        assert_eq!(out, Outcome::Succeeded { output: p });
    }

    #[tokio::test]
    async fn sleep_sleeps() {
        let started = std::time::Instant::now();
        let out = Builtin::new(BuiltinKind::Sleep)
            .run(&ctx(json!({"ms": 50}), None))
            .await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(
            out,
            Outcome::Succeeded {
                output: json!({"slept_ms": 50})
            }
        );
    }

    #[tokio::test]
    async fn sleep_rejects_bad_payloads_for_good() {
        for p in [
            json!({}),
            json!({"ms": -1}),
            json!("50"),
            json!({"ms": "50"}),
        ] {
            let out = Builtin::new(BuiltinKind::Sleep).run(&ctx(p, None)).await;
            assert!(
                matches!(&out, Outcome::Failed { retryable: false, error } if error.contains("sleep expects")),
                "{out:?}"
            );
        }
    }

    #[tokio::test]
    async fn sleep_is_cut_short_by_the_task_timeout() {
        let handler = Handler::Builtin(Builtin::new(BuiltinKind::Sleep));
        let started = std::time::Instant::now();
        let out = handler.run(&ctx(json!({"ms": 10_000}), Some(50))).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            out,
            Outcome::Failed {
                error: "timed out after 50 ms".into(),
                retryable: true
            }
        );
    }

    #[tokio::test]
    async fn sleep_is_cancellable() {
        let task = tokio::spawn(async {
            Builtin::new(BuiltinKind::Sleep)
                .run(&ctx(json!({"ms": 60_000}), None))
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        task.abort();
        let joined = tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("aborted promptly");
        assert!(joined.is_err_and(|e| e.is_cancelled()));
    }

    #[tokio::test]
    async fn fail_fails_as_asked() {
        let out = Builtin::new(BuiltinKind::Fail)
            .run(&ctx(json!({"error": "nope", "retryable": false}), None))
            .await;
        assert_eq!(
            out,
            Outcome::Failed {
                error: "nope".into(),
                retryable: false
            }
        );
        let out = Builtin::new(BuiltinKind::Fail)
            .run(&ctx(Value::Null, None))
            .await;
        assert!(matches!(
            out,
            Outcome::Failed {
                retryable: true,
                ..
            }
        ));
    }
}
