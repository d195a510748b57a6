//! Live logs, the pure half: what an agent may send ([`LogBatch::parse_all`])
//! and what keeping a task's log within its bound does ([`plan_append`]).
//! The store (`store/logs.rs`) writes what these decide, on both backends.
//!
//! A task's lines are numbered 1, 2, … across its attempts; the server keeps
//! the newest `max_lines` of them. Past the bound the oldest go, and one note
//! (seq 0, rewritten as more go) says how many: a reader sees the log's end,
//! which is what explains how a task ended, and is told what is missing.

use drover_protocol::agent::{LogsRequest, OutputLine, OutputStream};
use drover_protocol::limits::{
    MAX_LOG_LINES_PER_REQUEST, MAX_LOG_LINE_BYTES, MAX_LOG_TASKS_PER_REQUEST, MAX_TIMESTAMP_US,
};

use crate::error::FieldError;

/// New lines of one task, checked: at most [`MAX_LOG_LINE_BYTES`] each, no
/// NUL (PostgreSQL text cannot hold it), times in range.
#[derive(Debug, Clone, PartialEq)]
pub struct LogBatch {
    pub task_id: i64,
    pub lease_token: i64,
    /// Lines the agent dropped before these: a note takes their place.
    pub dropped_by_agent: u64,
    pub lines: Vec<OutputLine>,
}

impl LogBatch {
    /// Checks a whole request: one bad line refuses it all, naming the line
    /// (`tasks[2].lines[40].line`). A task appears at most once.
    pub fn parse_all(req: LogsRequest) -> Result<Vec<LogBatch>, FieldError> {
        if req.tasks.len() > MAX_LOG_TASKS_PER_REQUEST {
            return Err(FieldError::new(
                "tasks",
                format!("at most {MAX_LOG_TASKS_PER_REQUEST} tasks per request"),
            ));
        }
        let total: usize = req.tasks.iter().map(|t| t.lines.len()).sum();
        if total > MAX_LOG_LINES_PER_REQUEST {
            return Err(FieldError::new(
                "tasks",
                format!("at most {MAX_LOG_LINES_PER_REQUEST} lines per request, got {total}"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        let mut batches = Vec::with_capacity(req.tasks.len());
        for (i, task) in req.tasks.into_iter().enumerate() {
            if !seen.insert(task.task_id) {
                return Err(FieldError::new(
                    format!("tasks[{i}].task_id"),
                    format!("task {} appears twice in one request", task.task_id),
                ));
            }
            for (j, line) in task.lines.iter().enumerate() {
                let field = |f: &str| format!("tasks[{i}].lines[{j}].{f}");
                if line.line.len() > MAX_LOG_LINE_BYTES {
                    return Err(FieldError::new(
                        field("line"),
                        format!(
                            "at most {MAX_LOG_LINE_BYTES} bytes, got {}",
                            line.line.len()
                        ),
                    ));
                }
                if line.line.contains('\0') {
                    return Err(FieldError::new(field("line"), "must not contain NUL"));
                }
                if !(0..=MAX_TIMESTAMP_US).contains(&line.at_us) {
                    return Err(FieldError::new(
                        field("at_us"),
                        format!("must be between 0 and {MAX_TIMESTAMP_US}"),
                    ));
                }
            }
            batches.push(LogBatch {
                task_id: task.task_id,
                lease_token: task.lease_token,
                dropped_by_agent: task.dropped,
                lines: task.lines,
            });
        }
        Ok(batches)
    }

    /// The rows this batch adds, in order: the agent's note (if it dropped
    /// lines), then the lines.
    pub fn rows(&self) -> Vec<(&'static str, String, Option<i64>)> {
        let mut rows = Vec::with_capacity(self.lines.len() + 1);
        if self.dropped_by_agent > 0 {
            rows.push((
                "note",
                format!(
                    "… {} lines dropped by the agent (it could not send them as fast as they came)",
                    self.dropped_by_agent
                ),
                None,
            ));
        }
        rows.extend(self.lines.iter().map(|l| {
            let stream = match l.stream {
                OutputStream::Stdout => "stdout",
                OutputStream::Stderr => "stderr",
            };
            (stream, l.line.clone(), Some(l.at_us))
        }));
        rows
    }
}

/// What appending `added` rows to a log does, given its head after the
/// seqs were handed out (`next_seq` is one past the batch's last row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendPlan {
    /// The batch's first row gets this seq.
    pub start: i64,
    /// The oldest seq kept afterwards: rows of the batch below it are not
    /// written, and stored lines below it are deleted.
    pub keep_from: i64,
    /// All lines dropped at the bound so far, this batch's included.
    pub dropped: i64,
}

impl AppendPlan {
    /// Whether this append dropped lines (the note must be rewritten).
    pub fn drops(&self, first_seq: i64) -> bool {
        self.keep_from > first_seq
    }
}

/// Plans an append of `added` rows to a log whose head now reads
/// `next_seq` (already moved past them), `first_seq` and `dropped`, kept to
/// `max_lines`. Every seq in `[first_seq, next_seq)` is a stored line (seqs
/// are handed out without gaps), so the count dropped is plain arithmetic.
pub fn plan_append(
    added: i64,
    next_seq: i64,
    first_seq: i64,
    dropped: i64,
    max_lines: i64,
) -> AppendPlan {
    let keep_from = first_seq.max(next_seq - max_lines.max(1));
    AppendPlan {
        start: next_seq - added,
        keep_from,
        dropped: dropped + (keep_from - first_seq),
    }
}

/// The note at seq 0 of a log that lost its oldest lines.
pub fn dropped_note(dropped: i64, max_lines: i64) -> String {
    format!(
        "… {dropped} earlier lines dropped (the server keeps the last {max_lines} lines of a task)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_protocol::agent::TaskLog;

    fn line(text: &str) -> OutputLine {
        OutputLine {
            stream: OutputStream::Stdout,
            line: text.into(),
            at_us: 1,
        }
    }

    fn request(lines: Vec<OutputLine>) -> LogsRequest {
        LogsRequest {
            tasks: vec![TaskLog {
                task_id: 1,
                lease_token: 2,
                dropped: 0,
                lines,
            }],
        }
    }

    #[test]
    fn a_log_under_its_bound_keeps_everything() {
        // Lines 1..=3 stored, two more arrive: next_seq moved to 6.
        let p = plan_append(2, 6, 1, 0, 10);
        assert_eq!(
            p,
            AppendPlan {
                start: 4,
                keep_from: 1,
                dropped: 0
            }
        );
        assert!(!p.drops(1));
    }

    #[test]
    fn past_the_bound_the_oldest_go_and_are_counted() {
        // 10 kept of 1..=10, three more: 11..=13; keep 4..=13.
        let p = plan_append(3, 14, 1, 0, 10);
        assert_eq!((p.start, p.keep_from, p.dropped), (11, 4, 3));
        assert!(p.drops(1));
        // Then one more: 5..=14 kept, four dropped in all.
        let p = plan_append(1, 15, 4, 3, 10);
        assert_eq!((p.start, p.keep_from, p.dropped), (14, 5, 4));
    }

    #[test]
    fn a_batch_larger_than_the_bound_keeps_its_own_end() {
        // Empty log, 25 rows with a bound of 10: rows 16..=25 are written.
        let p = plan_append(25, 26, 1, 0, 10);
        assert_eq!((p.start, p.keep_from, p.dropped), (1, 16, 15));
    }

    #[test]
    fn requests_within_the_limits_parse() {
        let batches = LogBatch::parse_all(request(vec![line("hello"), line("")])).expect("valid");
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].rows().len(), 2);
    }

    #[test]
    fn long_lines_nul_and_big_requests_are_refused_by_field() {
        let long = "x".repeat(MAX_LOG_LINE_BYTES + 1);
        let e = LogBatch::parse_all(request(vec![line("ok"), line(&long)])).unwrap_err();
        assert_eq!(e.field, "tasks[0].lines[1].line");
        let e = LogBatch::parse_all(request(vec![line("a\0b")])).unwrap_err();
        assert_eq!(e.field, "tasks[0].lines[0].line");
        let many = (0..=MAX_LOG_LINES_PER_REQUEST).map(|_| line("x")).collect();
        let e = LogBatch::parse_all(request(many)).unwrap_err();
        assert_eq!(e.field, "tasks");
        let mut twice = request(vec![]);
        twice.tasks.push(twice.tasks[0].clone());
        assert_eq!(
            LogBatch::parse_all(twice).unwrap_err().field,
            "tasks[1].task_id"
        );
    }

    #[test]
    fn lines_the_agent_dropped_become_a_note_before_the_batch() {
        let mut req = request(vec![line("after the gap")]);
        req.tasks[0].dropped = 7;
        let rows = LogBatch::parse_all(req).expect("valid")[0].rows();
        assert_eq!(rows[0].0, "note");
        assert!(
            rows[0].1.contains("7 lines dropped by the agent"),
            "{}",
            rows[0].1
        );
        assert_eq!(rows[1].1, "after the gap");
    }
}
