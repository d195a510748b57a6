//! A step's durable wait in words: a sleep until a time, a wait for an
//! event with its time-out rule, or a child run. Pure (the run page renders
//! the pieces: times in the reader's zone, counted down live, and links to
//! runs), so every sentence is unit-tested here.

use drover_protocol::workflow::{EventDelivered, StepWait};

use crate::dag::WaitDef;

/// A part of a sentence about a wait.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    /// An event's correlation key, shown as code.
    Key(String),
    /// A time, shown in the reader's zone.
    At(i64),
    /// How long until a time, counted down live ("in 2 min").
    Until(i64),
    /// A run, shown as a link to its page.
    Run(i64),
}

fn text(s: impl Into<String>) -> Piece {
    Piece::Text(s.into())
}

/// What the wait of a step is or was. `def` is the step's definition (the
/// event's time-out rule, the child workflow); `finished_at_us` the step's
/// end, when the wait ended it.
pub fn describe(wait: &StepWait, def: Option<&WaitDef>, finished_at_us: Option<i64>) -> Vec<Piece> {
    let status = wait.status.as_str();
    match wait.kind.as_str() {
        "sleep" => sleep(status, wait.wake_at_us),
        "event" => event(wait, def, finished_at_us),
        "workflow" => child(wait, def),
        other => vec![text(format!("Waits ({other}, {status})."))],
    }
}

fn sleep(status: &str, wake_at: Option<i64>) -> Vec<Piece> {
    let Some(at) = wake_at else {
        return vec![text(format!("A sleep: {}.", status.replace('_', " ")))];
    };
    match status {
        "waiting" => vec![
            text("Sleeping until "),
            Piece::At(at),
            text(" ("),
            Piece::Until(at),
            text(")."),
        ],
        "resumed" => vec![text("Slept until "), Piece::At(at), text(".")],
        "cancelled" => vec![
            text("Was sleeping until "),
            Piece::At(at),
            text(" when it was cancelled."),
        ],
        _ => vec![
            text("Was to sleep until "),
            Piece::At(at),
            text("; the wait failed."),
        ],
    }
}

fn event(wait: &StepWait, def: Option<&WaitDef>, finished_at_us: Option<i64>) -> Vec<Piece> {
    let key = Piece::Key(match (&wait.event_key, def) {
        (Some(k), _) => k.clone(),
        (None, Some(WaitDef::Event { key, .. })) => key.clone(),
        (None, _) => String::new(),
    });
    let continues = matches!(
        def,
        Some(WaitDef::Event {
            continues: true,
            ..
        })
    );
    match (wait.status.as_str(), wait.wake_at_us) {
        ("waiting", Some(deadline)) => vec![
            text("Waiting for event "),
            key,
            text(" — times out at "),
            Piece::At(deadline),
            text(" ("),
            Piece::Until(deadline),
            text(if continues {
                "), then continues."
            } else {
                "), then fails."
            }),
        ],
        ("waiting", None) => vec![
            text("Waiting for event "),
            key,
            text(" — no time-out: it waits until the event comes or the run is cancelled."),
        ],
        ("resumed", _) => {
            let mut s = vec![text("Event "), key, text(" arrived")];
            if let Some(at) = finished_at_us {
                s.extend([text(" at "), Piece::At(at)]);
            }
            s.push(text("; its data is the step's output."));
            s
        }
        ("timed_out", deadline) => {
            let mut s = vec![text("No event "), key];
            if let Some(at) = deadline {
                s.extend([text(" came by "), Piece::At(at)]);
            } else {
                s.push(text(" came in time"));
            }
            s.push(text(if continues {
                ": timed out, so the step continued (its output says timed_out)."
            } else {
                ": timed out, so the step failed."
            }));
            s
        }
        ("cancelled", _) => vec![
            text("Stopped waiting for event "),
            key,
            text(": cancelled."),
        ],
        (other, _) => vec![
            text("Waiting for event "),
            key,
            text(format!(" ended: {}.", other.replace('_', " "))),
        ],
    }
}

fn child(wait: &StepWait, def: Option<&WaitDef>) -> Vec<Piece> {
    let what = match def {
        Some(WaitDef::Workflow {
            name,
            version: Some(v),
        }) => format!("workflow {name} v{v}"),
        Some(WaitDef::Workflow {
            name,
            version: None,
        }) => format!("workflow {name}"),
        _ => "the child workflow".to_string(),
    };
    let Some(run) = wait.child_run_id else {
        return vec![text(format!("Could not start {what}."))];
    };
    match wait.status.as_str() {
        "waiting" => vec![
            text(format!("Running {what} as run ")),
            Piece::Run(run),
            text("."),
        ],
        "resumed" => vec![
            text(format!("Ran {what} as run ")),
            Piece::Run(run),
            text(", which succeeded; its step outputs are this step's output."),
        ],
        "cancelled" => vec![
            text(format!("Ran {what} as run ")),
            Piece::Run(run),
            text(", cancelled with this run."),
        ],
        _ => vec![
            text(format!("Ran {what} as run ")),
            Piece::Run(run),
            text(", which did not succeed."),
        ],
    }
}

/// The answer to a sent event: which steps it resumed, or that none waited.
pub fn resumed_sentence(key: &str, answer: &EventDelivered) -> String {
    const SHOWN: usize = 5;
    let n = answer.resumed.len();
    if n == 0 {
        return format!(
            "Event {key} resumed no step: nothing was waiting for it (events are not kept for later)."
        );
    }
    let mut which: Vec<String> = answer
        .resumed
        .iter()
        .take(SHOWN)
        .map(|r| format!("run #{}, step {}", r.run_id, r.step_id))
        .collect();
    if n > SHOWN {
        which.push(format!("and {} more", n - SHOWN));
    }
    let steps = if n == 1 { "step" } else { "steps" };
    format!("Event {key} resumed {n} {steps}: {}.", which.join("; "))
}

/// A word as a POSIX shell reads it back: quoted unless it is plain.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_-./@%+=,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sentence as plain text (times in UTC), as the tests read it.
    fn plain(pieces: &[Piece], now_us: i64) -> String {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Key(k) => format!("`{k}`"),
                Piece::At(t) => crate::format::utc(*t),
                Piece::Until(t) => crate::format::until(now_us, *t),
                Piece::Run(r) => format!("#{r}"),
            })
            .collect()
    }

    const MIN: i64 = 60_000_000;

    fn wait(kind: &str, status: &str) -> StepWait {
        StepWait {
            kind: kind.into(),
            status: status.into(),
            wake_at_us: None,
            event_key: None,
            child_run_id: None,
        }
    }

    fn event_def(timeout: bool, continues: bool) -> WaitDef {
        WaitDef::Event {
            key: "order:{{ inputs.order }}".into(),
            timeout_ms: timeout.then_some(120_000),
            continues,
        }
    }

    #[test]
    fn a_sleep_says_until_when_and_how_long() {
        let w = StepWait {
            wake_at_us: Some(2 * MIN),
            ..wait("sleep", "waiting")
        };
        assert_eq!(
            plain(&describe(&w, None, None), 0),
            "Sleeping until 1970-01-01 00:02:00 UTC (in 2 min)."
        );
        let w = StepWait {
            status: "resumed".into(),
            ..w
        };
        assert_eq!(
            plain(&describe(&w, None, None), 0),
            "Slept until 1970-01-01 00:02:00 UTC."
        );
    }

    #[test]
    fn an_event_wait_names_its_key_and_its_time_out_rule() {
        let w = StepWait {
            wake_at_us: Some(2 * MIN),
            event_key: Some("order:42".into()),
            ..wait("event", "waiting")
        };
        assert_eq!(
            plain(&describe(&w, Some(&event_def(true, false)), None), 0),
            "Waiting for event `order:42` — times out at 1970-01-01 00:02:00 UTC (in 2 min), then fails."
        );
        assert!(plain(&describe(&w, Some(&event_def(true, true)), None), 0)
            .ends_with("then continues."));
        let forever = StepWait {
            wake_at_us: None,
            ..w.clone()
        };
        assert!(
            plain(&describe(&forever, Some(&event_def(false, false)), None), 0)
                .starts_with("Waiting for event `order:42` — no time-out")
        );
    }

    #[test]
    fn a_resolved_event_wait_says_what_happened() {
        let w = StepWait {
            wake_at_us: Some(2 * MIN),
            event_key: Some("order:42".into()),
            ..wait("event", "resumed")
        };
        assert_eq!(
            plain(&describe(&w, None, Some(MIN)), 0),
            "Event `order:42` arrived at 1970-01-01 00:01:00 UTC; its data is the step's output."
        );
        let timed_out = StepWait {
            status: "timed_out".into(),
            ..w.clone()
        };
        assert_eq!(
            plain(
                &describe(&timed_out, Some(&event_def(true, false)), None),
                0
            ),
            "No event `order:42` came by 1970-01-01 00:02:00 UTC: timed out, so the step failed."
        );
        assert!(
            plain(&describe(&timed_out, Some(&event_def(true, true)), None), 0)
                .contains("so the step continued")
        );
        let cancelled = StepWait {
            status: "cancelled".into(),
            ..w
        };
        assert_eq!(
            plain(&describe(&cancelled, None, None), 0),
            "Stopped waiting for event `order:42`: cancelled."
        );
    }

    #[test]
    fn an_answer_counts_the_steps_it_resumed() {
        use drover_protocol::workflow::ResumedStep;
        let step = |run_id| ResumedStep {
            run_id,
            step_id: "paid".into(),
        };
        let answer = |resumed| EventDelivered { resumed };
        assert_eq!(
            resumed_sentence("order:42", &answer(vec![step(5)])),
            "Event order:42 resumed 1 step: run #5, step paid."
        );
        assert_eq!(
            resumed_sentence("k", &answer((1..=7).map(step).collect())),
            "Event k resumed 7 steps: run #1, step paid; run #2, step paid; run #3, step paid; \
             run #4, step paid; run #5, step paid; and 2 more."
        );
        assert!(resumed_sentence("k", &answer(vec![])).contains("resumed no step"));
    }

    #[test]
    fn shell_words_are_quoted_when_they_need_it() {
        assert_eq!(shell_word("order:42"), "order:42");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("{}"), "'{}'");
    }

    #[test]
    fn a_workflow_step_links_its_child_run() {
        let def = WaitDef::Workflow {
            name: "child".into(),
            version: Some(1),
        };
        let w = StepWait {
            child_run_id: Some(7),
            ..wait("workflow", "waiting")
        };
        let pieces = describe(&w, Some(&def), None);
        assert!(pieces.contains(&Piece::Run(7)));
        assert_eq!(plain(&pieces, 0), "Running workflow child v1 as run #7.");
        let failed = StepWait {
            status: "failed".into(),
            ..w
        };
        assert_eq!(
            plain(&describe(&failed, Some(&def), None), 0),
            "Ran workflow child v1 as run #7, which did not succeed."
        );
    }
}
