//! Live logs: what command handlers print, shipped to the server while the
//! task runs.
//!
//! A handler's stdout and stderr are split into lines as they are read
//! ([`LineSplitter`]), cleaned (invalid UTF-8 and NUL replaced, configured
//! secrets replaced by `***`, cut at [`MAX_LOG_LINE_BYTES`]) and put in the
//! task's buffer. One loop ([`LogShipper::run`]) sends the buffers of every
//! running task in one request: at once when a line arrives after a quiet
//! spell, then at most every [`FLUSH_INTERVAL`] while lines keep coming, or
//! sooner when a buffer holds [`FLUSH_LINES`] or a task has finished.
//!
//! Shipping never holds a task up or fails it:
//! - pushing a line never waits: past [`MAX_PENDING_LINES`] per task the
//!   oldest pending lines are dropped, past [`MAX_PENDING_BYTES`] in all the
//!   new ones are; the count goes with the next batch and the server writes
//!   a note in their place;
//! - a failed request is not retried: its lines are dropped (and counted),
//!   and the next is sent after a backoff;
//! - a finished task's result waits for its last lines to be delivered (so
//!   the log is complete when the task is seen finished: the server takes
//!   no lines after that), but at most [`FINAL_FLUSH_WAIT`], and not at all
//!   while the server is failing;
//! - a task the server refuses lines for (not this agent's any more) has
//!   its further lines dropped.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use drover_protocol::agent::{AckStatus, LogsRequest, OutputLine, OutputStream, TaskLog};
use drover_protocol::limits::{
    LOG_CUT_MARK, MAX_LOG_LINES_PER_REQUEST, MAX_LOG_LINE_BYTES, MAX_LOG_TASKS_PER_REQUEST,
};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::client::ApiError;
use crate::session::Session;
use crate::stop::StopSignal;
use crate::time::now_us;

/// Least time between two requests while lines keep coming.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// A task with this many lines waiting is sent without waiting for the interval.
pub const FLUSH_LINES: usize = 500;
/// Most lines one task keeps waiting to be sent; past it the oldest go.
pub const MAX_PENDING_LINES: usize = 5_000;
/// Most bytes of lines all tasks together keep waiting; past it new lines go.
pub const MAX_PENDING_BYTES: usize = 16 << 20;
/// Most bytes of lines in one request: JSON escaping can make a line of
/// control characters six times longer, and the server's default body
/// limit is 8 MiB.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// The longest a finished task's result waits for its last lines to arrive.
pub const FINAL_FLUSH_WAIT: Duration = Duration::from_secs(2);
/// What a secret is replaced by.
pub const REDACTED: &str = "***";

/// Replaces configured secrets in log lines. Secrets are matched longest
/// first, so one that contains another is replaced whole.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// Never prints the secrets.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// Empty values are ignored (they would match everywhere).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Self { secrets }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The longest secret's length: how far past the line limit a line is
    /// kept before redacting, so a secret that straddles the cut is still
    /// recognised and no prefix of it survives.
    pub fn longest(&self) -> usize {
        self.secrets.first().map_or(0, String::len)
    }

    /// Removes an end of `line` that is the start of a secret (the rest of
    /// it was cut off).
    fn strip_secret_start(&self, line: &mut String) {
        for secret in &self.secrets {
            let longest = (secret.len() - 1).min(line.len());
            for n in (1..=longest).rev() {
                let start = line.len() - n;
                if line.is_char_boundary(start)
                    && secret.as_bytes().starts_with(&line.as_bytes()[start..])
                {
                    line.truncate(start);
                    return;
                }
            }
        }
    }

    pub fn redact<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(line);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }
}

/// A task's buffer, keyed by its lease (a task re-issued to this agent
/// while an older attempt still runs has two).
type Key = (i64, i64);

#[derive(Debug, Default)]
struct Buffer {
    lines: VecDeque<OutputLine>,
    /// Lines dropped since the last batch was taken.
    dropped: u64,
    /// The task has ended: what is left is sent, then the buffer goes.
    closed: bool,
    /// The server refused this task's lines: the rest are dropped.
    refused: bool,
    /// Requests carrying this task's lines that have not come back yet: its
    /// result waits for them too, or it could reach the server first and
    /// the lines be refused as late.
    in_flight: u32,
    /// Told once the task's last lines were sent (or given up on).
    flushed: Vec<oneshot::Sender<()>>,
}

impl Buffer {
    /// Lines (or a count of dropped ones) still to send.
    fn has_pending(&self) -> bool {
        !self.lines.is_empty() || self.dropped > 0
    }
}

#[derive(Debug, Default)]
struct State {
    tasks: BTreeMap<Key, Buffer>,
    pending_bytes: usize,
    /// Send without waiting for the interval (a task finished, a buffer filled).
    urgent: bool,
    /// The last request failed: finished tasks do not wait for their lines.
    failing: bool,
    /// Where the next request starts (see `take_batch`).
    next_from: Key,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Notify,
    redactor: Redactor,
}

/// The agent's log shipping: hands out per-task [`TaskLogWriter`]s and
/// sends what they gather ([`run`](Self::run)).
#[derive(Debug, Clone)]
pub struct LogShipper(Arc<Shared>);

impl LogShipper {
    pub fn new(redactor: Redactor) -> Self {
        Self(Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            redactor,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where the handler of the task holding this lease writes its lines.
    pub fn task(&self, task_id: i64, lease_token: i64) -> TaskLogWriter {
        self.lock()
            .tasks
            .insert((task_id, lease_token), Buffer::default());
        TaskLogWriter {
            shipper: self.clone(),
            key: (task_id, lease_token),
        }
    }

    fn push(&self, key: Key, line: OutputLine) {
        let wake = {
            let mut st = self.lock();
            let State {
                tasks,
                pending_bytes,
                urgent,
                ..
            } = &mut *st;
            let Some(buf) = tasks.get_mut(&key) else {
                return;
            };
            if buf.refused {
                return;
            }
            if *pending_bytes + line.line.len() > MAX_PENDING_BYTES {
                buf.dropped += 1;
                return;
            }
            *pending_bytes += line.line.len();
            buf.lines.push_back(line);
            if buf.lines.len() > MAX_PENDING_LINES {
                if let Some(old) = buf.lines.pop_front() {
                    *pending_bytes -= old.line.len();
                }
                buf.dropped += 1;
            }
            if buf.lines.len() >= FLUSH_LINES {
                *urgent = true;
            }
            // The first line after a quiet spell, or a full buffer.
            buf.lines.len() == 1 || *urgent
        };
        if wake {
            self.0.wake.notify_one();
        }
    }

    /// Sends the buffered lines until `stop`.
    pub async fn run(self, session: Arc<Session>, mut stop: StopSignal) {
        let mut last_sent: Option<Instant> = None;
        let mut backoff = Backoff::default();
        let mut retry_at: Option<Instant> = None;
        let mut refused_logged = false;
        loop {
            let (pending, urgent) = {
                let st = self.lock();
                let pending = st
                    .tasks
                    .values()
                    .any(|b| b.has_pending() || !b.flushed.is_empty());
                (pending, st.urgent)
            };
            if !pending {
                tokio::select! {
                    _ = self.0.wake.notified() => continue,
                    _ = stop.stopped() => return,
                }
            }
            let due = match (retry_at, last_sent) {
                (Some(at), _) => Some(at),
                (None, Some(sent)) if !urgent => Some(sent + FLUSH_INTERVAL),
                _ => None,
            };
            if let Some(due) = due.filter(|d| *d > Instant::now()) {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = self.0.wake.notified() => continue,
                    _ = stop.stopped() => return,
                }
            }
            let (request, keys, waiters) = self.take_batch();
            last_sent = Some(Instant::now());
            retry_at = None;
            if request.tasks.is_empty() {
                finished(waiters);
                continue;
            }
            let answer = tokio::select! {
                answer = session.logs(&request) => answer,
                _ = stop.stopped() => return,
            };
            match answer {
                Ok(acks) => {
                    backoff.reset();
                    refused_logged = false;
                    self.lock().failing = false;
                    self.refused(&keys, &acks.tasks);
                }
                Err(ApiError::Rejected { status, message }) => {
                    if !refused_logged {
                        tracing::error!(status, error = %message, "the server refused a batch of log lines; dropping it");
                        refused_logged = true;
                    }
                }
                Err(e) => {
                    // Unreachable or failing (logged by the client): the
                    // lines are dropped, the gap noted, the next batch waits.
                    if let ApiError::Protocol(_) = &e {
                        tracing::warn!(error = %e, "unexpected answer to log lines");
                    }
                    self.lost(&request);
                    retry_at = Some(Instant::now() + backoff.next_delay());
                }
            }
            finished(waiters);
            finished(self.landed(&keys));
        }
    }

    /// Takes what fits in one request; buffers of ended tasks that are
    /// emptied go, and whoever waits on them is returned. When not all
    /// fits, the next request starts after the last task served, so one
    /// task printing without pause cannot crowd the others out.
    fn take_batch(&self) -> (LogsRequest, Vec<Key>, Vec<oneshot::Sender<()>>) {
        let mut st = self.lock();
        let st = &mut *st;
        let order: Vec<Key> = st
            .tasks
            .range(st.next_from..)
            .chain(st.tasks.range(..st.next_from))
            .map(|(k, _)| *k)
            .collect();
        let mut room_lines = MAX_LOG_LINES_PER_REQUEST;
        let mut room_bytes = MAX_REQUEST_BYTES;
        let mut tasks = Vec::new();
        let mut keys = Vec::new();
        let mut waiters = Vec::new();
        let mut taken_bytes = 0;
        let mut full = false;
        for key in order {
            let Some(buf) = st.tasks.get_mut(&key) else {
                continue;
            };
            if buf.refused {
                taken_bytes += buf.lines.drain(..).map(|l| l.line.len()).sum::<usize>();
                buf.dropped = 0;
            }
            let mut lines = Vec::new();
            while let Some(front) = buf.lines.front() {
                let size = front.line.len() + 64;
                let first = lines.is_empty() && tasks.is_empty();
                if room_lines == 0 || (size > room_bytes && !first) {
                    full = true;
                    break;
                }
                room_lines -= 1;
                room_bytes = room_bytes.saturating_sub(size);
                taken_bytes += front.line.len();
                lines.extend(buf.lines.pop_front());
            }
            if !lines.is_empty() || buf.dropped > 0 {
                tasks.push(TaskLog {
                    task_id: key.0,
                    lease_token: key.1,
                    dropped: std::mem::take(&mut buf.dropped),
                    lines,
                });
                keys.push(key);
                buf.in_flight += 1;
            }
            // A task whose lines go in this request is released when it
            // comes back (`landed`).
            if buf.lines.is_empty() && buf.in_flight == 0 {
                waiters.append(&mut buf.flushed);
                if buf.closed {
                    st.tasks.remove(&key);
                }
            }
            if full || tasks.len() == MAX_LOG_TASKS_PER_REQUEST {
                // The rest go next, starting after this task.
                st.next_from = (key.0, key.1.saturating_add(1));
                full = true;
                break;
            }
        }
        st.pending_bytes -= taken_bytes;
        // What did not fit goes without waiting for the interval.
        st.urgent = full && st.tasks.values().any(|b| b.has_pending() && !b.refused);
        (LogsRequest { tasks }, keys, waiters)
    }

    /// The lines waiting to be sent, taken (for tests elsewhere in the crate).
    #[cfg(test)]
    pub(crate) fn take_lines(&self) -> Vec<(OutputStream, String)> {
        let (req, keys, _) = self.take_batch();
        finished(self.landed(&keys));
        req.tasks
            .into_iter()
            .flat_map(|t| t.lines)
            .map(|l| (l.stream, l.line))
            .collect()
    }

    /// A request came back (whatever its answer): the tasks it carried
    /// whose lines are all delivered release whoever waits on them, and
    /// ended ones go.
    fn landed(&self, keys: &[Key]) -> Vec<oneshot::Sender<()>> {
        let mut st = self.lock();
        let mut waiters = Vec::new();
        for key in keys {
            let Some(buf) = st.tasks.get_mut(key) else {
                continue;
            };
            buf.in_flight = buf.in_flight.saturating_sub(1);
            if buf.in_flight == 0 && (!buf.has_pending() || buf.refused) {
                waiters.append(&mut buf.flushed);
                if buf.closed {
                    st.tasks.remove(key);
                }
            }
        }
        waiters
    }

    /// Tasks the server refused lines for are not this agent's any more.
    fn refused(&self, keys: &[Key], acks: &[drover_protocol::agent::LogAck]) {
        let mut st = self.lock();
        for (key, ack) in keys.iter().zip(acks) {
            if ack.status == AckStatus::Stale {
                if let Some(buf) = st.tasks.get_mut(key) {
                    buf.refused = true;
                }
                tracing::debug!(
                    task_id = key.0,
                    "the server refused log lines of a task this agent no longer holds"
                );
            }
        }
    }

    /// A request that failed: its lines are gone, and counted where the
    /// task still runs, so its log says so.
    fn lost(&self, request: &LogsRequest) {
        let mut st = self.lock();
        st.failing = true;
        for t in &request.tasks {
            if let Some(buf) = st.tasks.get_mut(&(t.task_id, t.lease_token)) {
                buf.dropped += t.dropped + t.lines.len() as u64;
            }
        }
    }
}

fn finished(waiters: Vec<oneshot::Sender<()>>) {
    for w in waiters {
        let _ = w.send(());
    }
}

/// Where one task's handler writes its output lines. Dropping it (the task
/// was stopped) sends what is left without waiting for it.
#[derive(Debug)]
pub struct TaskLogWriter {
    shipper: LogShipper,
    key: Key,
}

impl TaskLogWriter {
    /// Adds one line as read from the handler (without its line break).
    pub fn line(&self, stream: OutputStream, raw: &[u8]) {
        self.add(stream, raw, false);
    }

    /// `cut`: the line went on past what was kept of it.
    fn add(&self, stream: OutputStream, raw: &[u8], cut: bool) {
        let line = clean(&self.shipper.0.redactor, raw, cut);
        self.shipper.push(
            self.key,
            OutputLine {
                stream,
                line,
                at_us: now_us(),
            },
        );
    }

    /// Splits a stream of the handler's output into lines.
    pub fn splitter(&self, stream: OutputStream) -> LineSplitter<'_> {
        LineSplitter {
            log: self,
            stream,
            partial: Vec::new(),
            overlong: false,
            keep: MAX_LOG_LINE_BYTES + self.shipper.0.redactor.longest(),
        }
    }

    /// The task ended: waits (at most `within`) until its last lines were
    /// sent, so its log is complete before its result is reported.
    pub async fn finish(self, within: Duration) {
        let wait = {
            let mut st = self.shipper.lock();
            let failing = st.failing;
            let buf = st.tasks.get_mut(&self.key);
            match buf {
                Some(buf) if (buf.has_pending() || buf.in_flight > 0) && !buf.refused => {
                    buf.closed = true;
                    if failing {
                        None
                    } else {
                        let (tx, rx) = oneshot::channel();
                        buf.flushed.push(tx);
                        st.urgent = true;
                        Some(rx)
                    }
                }
                _ => None,
            }
        };
        if let Some(rx) = wait {
            self.shipper.0.wake.notify_one();
            let _ = tokio::time::timeout(within, rx).await;
        }
    }
}

impl Drop for TaskLogWriter {
    fn drop(&mut self) {
        let mut st = self.shipper.lock();
        let State {
            tasks,
            pending_bytes,
            ..
        } = &mut *st;
        if let Some(buf) = tasks.get_mut(&self.key) {
            if buf.refused || (!buf.has_pending() && buf.in_flight == 0) {
                let bytes: usize = buf.lines.iter().map(|l| l.line.len()).sum();
                *pending_bytes -= bytes;
                let buf = tasks.remove(&self.key);
                finished(buf.map(|b| b.flushed).unwrap_or_default());
            } else {
                buf.closed = true;
            }
        }
    }
}

/// Cuts a stream of bytes into lines (`\n`, and a `\r` before it, end them;
/// the last, unterminated one is sent by [`finish`](Self::finish)). A line
/// is kept only up to the line limit (plus the longest secret's length, so
/// redaction still sees a secret across the cut); the rest is skipped.
pub struct LineSplitter<'a> {
    log: &'a TaskLogWriter,
    stream: OutputStream,
    partial: Vec<u8>,
    overlong: bool,
    keep: usize,
}

impl LineSplitter<'_> {
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (segment, ends) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], Some(i + 1)),
                None => (bytes, None),
            };
            let room = self.keep.saturating_sub(self.partial.len());
            if segment.len() > room {
                self.overlong = true;
            }
            self.partial
                .extend_from_slice(&segment[..segment.len().min(room)]);
            match ends {
                Some(next) => {
                    self.emit();
                    bytes = &bytes[next..];
                }
                None => break,
            }
        }
    }

    /// The end of the stream: sends an unterminated last line.
    pub fn finish(mut self) {
        if !self.partial.is_empty() || self.overlong {
            self.emit();
        }
    }

    fn emit(&mut self) {
        if self.partial.last() == Some(&b'\r') {
            self.partial.pop();
        }
        let line = std::mem::take(&mut self.partial);
        let cut = std::mem::take(&mut self.overlong);
        self.log.add(self.stream, &line, cut);
    }
}

/// A line as it is shipped: valid UTF-8 without NUL, secrets replaced,
/// at most [`MAX_LOG_LINE_BYTES`] (a longer one cut and marked). `cut`: the
/// line went on past `raw`, so `raw` may end in the start of a secret,
/// which goes too.
fn clean(redactor: &Redactor, raw: &[u8], cut: bool) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        text
    };
    let mut line = redactor.redact(&text).into_owned();
    if cut {
        redactor.strip_secret_start(&mut line);
    }
    if cut || line.len() > MAX_LOG_LINE_BYTES {
        let mut end = (MAX_LOG_LINE_BYTES - LOG_CUT_MARK.len()).min(line.len());
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str(LOG_CUT_MARK);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(shipper: &LogShipper) -> Vec<(OutputStream, String)> {
        shipper.take_lines()
    }

    /// The race behind a log found empty once: a handler printed and ended
    /// while its lines were on their way; the task's end did not wait for
    /// that request, so its result could reach the server first and the
    /// lines be refused as late.
    #[tokio::test]
    async fn a_task_ending_while_its_lines_are_on_the_way_waits_for_them() {
        let shipper = LogShipper::new(Redactor::default());
        let log = shipper.task(1, 10);
        log.line(OutputStream::Stdout, b"done");
        let (request, keys, waiters) = shipper.take_batch();
        assert_eq!(request.tasks.len(), 1);
        assert!(waiters.is_empty());
        let ending = tokio::spawn(log.finish(Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!ending.is_finished(), "ended before its lines arrived");
        finished(shipper.landed(&keys));
        tokio::time::timeout(Duration::from_secs(1), ending)
            .await
            .expect("released once the request came back")
            .expect("the task");
        assert!(
            shipper.lock().tasks.is_empty(),
            "the ended task's buffer is gone"
        );
    }

    #[test]
    fn secrets_are_replaced_longest_first() {
        let r = Redactor::new(["abc".to_string(), "abcdef".to_string(), String::new()]);
        assert_eq!(r.redact("x abcdef y abc z"), "x *** y *** z");
        assert_eq!(r.redact("nothing here"), "nothing here");
        assert_eq!(r.longest(), 6);
    }

    #[test]
    fn streams_are_split_into_clean_lines() {
        let shipper = LogShipper::new(Redactor::new(["hunter2".to_string()]));
        let log = shipper.task(1, 10);
        let mut out = log.splitter(OutputStream::Stdout);
        out.push(b"first\r\nsec");
        out.push(b"ond pw=hunter2\n\nbad \xff\0 bytes\nno newline");
        out.finish();
        assert_eq!(
            lines_of(&shipper),
            vec![
                (OutputStream::Stdout, "first".to_string()),
                (OutputStream::Stdout, "second pw=***".to_string()),
                (OutputStream::Stdout, String::new()),
                (
                    OutputStream::Stdout,
                    "bad \u{FFFD}\u{FFFD} bytes".to_string()
                ),
                (OutputStream::Stdout, "no newline".to_string()),
            ]
        );
    }

    #[test]
    fn long_lines_are_cut_and_a_secret_across_the_cut_is_still_hidden() {
        let secret = "s3cr3t-value".to_string();
        let shipper = LogShipper::new(Redactor::new([secret.clone()]));
        let log = shipper.task(1, 10);
        let mut out = log.splitter(OutputStream::Stderr);
        let mut long = "y".repeat(MAX_LOG_LINE_BYTES - 20).into_bytes();
        long.extend_from_slice(secret.as_bytes());
        long.extend_from_slice(&vec![b'z'; 100_000]);
        long.push(b'\n');
        out.push(&long);
        out.push(b"after\n");
        let lines = lines_of(&shipper);
        assert_eq!(lines.len(), 2);
        let cut = &lines[0].1;
        assert!(cut.len() <= MAX_LOG_LINE_BYTES, "{}", cut.len());
        assert!(cut.ends_with(LOG_CUT_MARK));
        assert!(
            !cut.contains("s3cr"),
            "no part of the secret survives the cut"
        );
        assert_eq!(lines[1].1, "after");
    }

    #[test]
    fn a_full_buffer_drops_its_oldest_lines_and_counts_them() {
        let shipper = LogShipper::new(Redactor::default());
        let log = shipper.task(5, 50);
        for i in 0..MAX_PENDING_LINES + 3 {
            log.line(OutputStream::Stdout, format!("{i}").as_bytes());
        }
        let (req, _, _) = shipper.take_batch();
        let t = &req.tasks[0];
        assert_eq!(t.dropped, 3);
        assert_eq!(t.lines.first().map(|l| l.line.as_str()), Some("3"));
        assert_eq!(t.lines.len(), MAX_PENDING_LINES);
    }

    #[test]
    fn a_task_printing_without_pause_does_not_crowd_the_others_out() {
        let shipper = LogShipper::new(Redactor::default());
        let busy = shipper.task(1, 10);
        let quiet = shipper.task(2, 20);
        let wide = vec![b'w'; 8_000];
        for _ in 0..300 {
            busy.line(OutputStream::Stdout, &wide);
        }
        quiet.line(OutputStream::Stdout, b"me too");
        let (first, _, _) = shipper.take_batch();
        assert_eq!(
            first.tasks.len(),
            1,
            "the first request is full of the busy task"
        );
        assert!(shipper.lock().urgent, "the rest goes at once");
        let (second, _, _) = shipper.take_batch();
        assert_eq!(second.tasks[0].task_id, 2, "the next starts after it");
        assert_eq!(second.tasks[0].lines[0].line, "me too");
        let sent: usize = [&first, &second]
            .iter()
            .map(|r| serde_json::to_vec(r).map_or(0, |v| v.len()))
            .max()
            .unwrap_or(0);
        assert!(sent <= MAX_REQUEST_BYTES + 64 * 1024, "{sent} bytes");
    }

    #[tokio::test]
    async fn a_finished_task_without_lines_does_not_wait_and_leaves_nothing() {
        let shipper = LogShipper::new(Redactor::default());
        let log = shipper.task(9, 90);
        tokio::time::timeout(
            Duration::from_millis(100),
            log.finish(Duration::from_secs(60)),
        )
        .await
        .expect("nothing to wait for");
        assert!(shipper.lock().tasks.is_empty());
        let stopped = shipper.task(10, 100);
        stopped.line(OutputStream::Stdout, b"left over");
        drop(stopped);
        assert_eq!(
            lines_of(&shipper).len(),
            1,
            "a stopped task's lines still go"
        );
        assert!(shipper.lock().tasks.is_empty(), "then its buffer does");
    }
}
