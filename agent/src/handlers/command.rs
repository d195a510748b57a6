//! The `command` handler: runs a program once per task.
//!
//! Contract with the program:
//! - the payload (JSON) is written to its stdin, which is then closed, and is
//!   also in `DROVER_PAYLOAD` unless larger than [`MAX_ENV_PAYLOAD_BYTES`]
//!   (the kernel limits one environment string to 128 KiB; over the limit
//!   the variable is left unset and stdin is the only copy);
//! - `DROVER_TASK_ID`, `DROVER_TASK_TYPE`, `DROVER_ATTEMPT` describe the task;
//! - the environment is not the agent's: the program gets only
//!   [`INHERITED_ENV`] and the configured `pass_env` names from the agent's
//!   environment, then the configured `env`, then the task's variables. The
//!   enrollment token (`DROVER_TOKEN`), whatever else the agent was started
//!   with, never reaches a task;
//! - exit 0 is success, and stdout is the output: JSON if it parses, else the
//!   trimmed text as a JSON string (empty → `null`). Stdout over
//!   [`MAX_OUTPUT_BYTES`] fails the attempt (not retryable) rather than being
//!   truncated;
//! - a non-zero exit fails with `exit code N: <last 2000 bytes of stderr>`;
//! - a program that cannot be started fails (retryable: another agent may have it);
//! - every line of stdout and stderr is also shipped to the server as it is
//!   printed (the task's live log, `crate::logs`), redacted and bounded;
//!   the output and error above are made exactly as without it.
//!
//! The program runs in its own process group. If the attempt is stopped
//! (timeout, cancellation by the server, agent shutdown) the whole group is
//! sent SIGKILL, so `sh -c '...'` wrappers do not leave their children
//! running. After a normal exit nothing is killed: background processes a
//! program deliberately leaves behind are its own business.
//!
//! On Linux a handler never outlives its agent: the group is announced to
//! the agent's guard process before the program starts, and the guard kills
//! it if the agent dies (even by `kill -9`) while the handler runs; see
//! [`super::guard`] for why a guard rather than `PR_SET_PDEATHSIG` alone
//! (which the handler's first process also gets).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use drover_protocol::agent::{Outcome, OutputStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::{
    failed, failed_for_good, output_value, TaskContext, ERROR_TAIL_BYTES, MAX_OUTPUT_BYTES,
};
use crate::client::tail;
use crate::config::CommandConfig;
use crate::logs::LineSplitter;

/// The variables of the agent's environment every program gets: what
/// programs need to find binaries, a home, a locale and a time zone.
pub const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
];

/// Largest payload also passed in `DROVER_PAYLOAD`.
pub const MAX_ENV_PAYLOAD_BYTES: usize = 64 * 1024;

/// A program to run per task, from `[handlers.x] kind = "command"`.
#[derive(Debug, Clone)]
pub struct CommandHandler {
    program: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    pass_env: Vec<String>,
    workdir: Option<PathBuf>,
    timeout: Option<Duration>,
}

impl CommandHandler {
    pub fn new(config: &CommandConfig) -> Self {
        Self {
            program: config.program.clone(),
            args: config.args.clone(),
            env: config.env.clone(),
            pass_env: config.pass_env.clone(),
            workdir: config.workdir.clone(),
            timeout: config.timeout_ms.map(Duration::from_millis),
        }
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Runs the program for one task. The time limit is applied by the
    /// caller ([`super::Handler::run`]); dropping this future kills the
    /// process group.
    pub async fn run(&self, ctx: &TaskContext) -> Outcome {
        let payload = ctx.payload.to_string();
        let mut cmd = Command::new(&self.program);
        cmd.env_clear();
        let inherited = INHERITED_ENV
            .iter()
            .copied()
            .chain(self.pass_env.iter().map(String::as_str));
        for name in inherited {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        cmd.args(&self.args)
            .envs(&self.env)
            .env("DROVER_TASK_ID", ctx.task_id.to_string())
            .env("DROVER_TASK_TYPE", &ctx.task_type)
            .env("DROVER_ATTEMPT", ctx.attempt.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if payload.len() <= MAX_ENV_PAYLOAD_BYTES {
            cmd.env("DROVER_PAYLOAD", &payload);
        }
        if let Some(dir) = &self.workdir {
            cmd.current_dir(dir);
        }
        #[cfg(unix)]
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        let guard = super::guard::current();
        #[cfg(target_os = "linux")]
        {
            let agent = std::process::id();
            let announce_to = guard.map(|g| g.fd());
            // SAFETY: the hook runs in the forked child, after `setpgid`
            // made it the leader of its own group, and only makes
            // async-signal-safe calls (see `guard::prepare_child`).
            unsafe {
                cmd.pre_exec(move || super::guard::prepare_child(agent, announce_to));
            }
        }

        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                // The child may have announced itself before its exec failed.
                #[cfg(target_os = "linux")]
                if let Some(guard) = guard {
                    guard.prune();
                }
                let place = match &self.workdir {
                    Some(dir) => format!(" in {}", dir.display()),
                    None => String::new(),
                };
                return failed(format!("cannot start {:?}{place}: {e}", self.program));
            }
        };
        let mut child = GroupGuard::new(child);
        let stdin = child.child.stdin.take();
        let stdout = child.child.stdout.take();
        let stderr = child.child.stderr.take();

        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A program that exits without reading stdin closes the pipe;
                // that is its choice, not an error.
                let _ = stdin.write_all(payload.as_bytes()).await;
                let _ = stdin.shutdown().await;
            }
        };
        // Both streams are also cut into lines as they come, for the live
        // log; what the result is made of is unchanged.
        let out_lines = ctx.log.as_ref().map(|l| l.splitter(OutputStream::Stdout));
        let err_lines = ctx.log.as_ref().map(|l| l.splitter(OutputStream::Stderr));
        let (_, (out, overflow), err, status) = tokio::join!(
            feed,
            read_capped(stdout, MAX_OUTPUT_BYTES, out_lines),
            read_tail(stderr, ERROR_TAIL_BYTES, err_lines),
            child.child.wait(),
        );
        let status = match status {
            Ok(status) => {
                child.exited();
                status
            }
            Err(e) => return failed(format!("waiting for {:?} failed: {e}", self.program)),
        };
        let stderr_tail = tail(&err, ERROR_TAIL_BYTES);
        let with_stderr = |head: String| {
            if stderr_tail.is_empty() {
                head
            } else {
                format!("{head}: {stderr_tail}")
            }
        };
        if !status.success() {
            return failed(with_stderr(describe_exit(status)));
        }
        if overflow {
            return failed_for_good(format!(
                "stdout exceeded the {MAX_OUTPUT_BYTES}-byte output limit"
            ));
        }
        Outcome::Succeeded {
            output: output_value(&out),
        }
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    format!("exited abnormally ({status})")
}

/// Owns the child; unless it was seen to exit, kills its whole process group
/// when dropped (the `Child` itself is then killed and reaped by tokio's
/// `kill_on_drop`). Either way the group is then withdrawn from the agent's
/// guard, which must not kill that id later.
struct GroupGuard {
    child: Child,
    /// The group to kill: the child's pid, as it leads its own group.
    group: Option<u32>,
    /// The group as announced to the guard, until withdrawn.
    #[cfg(target_os = "linux")]
    announced: Option<(u32, &'static super::guard::Guard)>,
}

impl GroupGuard {
    fn new(child: Child) -> Self {
        let group = child.id();
        Self {
            #[cfg(target_os = "linux")]
            announced: group.zip(super::guard::current()),
            child,
            group,
        }
    }

    /// The child was reaped: its pid may be reused, so never signal it.
    fn exited(&mut self) {
        self.group = None;
        self.withdraw();
    }

    fn withdraw(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some((pgid, guard)) = self.announced.take() {
            guard.forget(pgid);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pgid) = self.group.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) has no memory-safety preconditions. The child
            // has not been reaped (we never saw it exit), so its pid still
            // names this group and cannot belong to an unrelated process.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        self.withdraw();
    }
}

/// Reads everything; keeps at most `cap` bytes. Past the cap it keeps
/// reading (and discarding), so the program is not blocked on a full pipe,
/// and reports the overflow. Every byte also goes to `lines`, if given.
async fn read_capped<R: AsyncRead + Unpin>(
    reader: Option<R>,
    cap: usize,
    mut lines: Option<LineSplitter<'_>>,
) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut overflow = false;
    let Some(mut reader) = reader else {
        return (kept, overflow);
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(lines) = &mut lines {
                    lines.push(&buf[..n]);
                }
                if overflow || kept.len() + n > cap {
                    overflow = true;
                } else {
                    kept.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
    if let Some(lines) = lines {
        lines.finish();
    }
    if overflow {
        kept.clear();
    }
    (kept, overflow)
}

/// Reads everything; keeps roughly the last `keep` bytes. Every byte also
/// goes to `lines`, if given.
async fn read_tail<R: AsyncRead + Unpin>(
    reader: Option<R>,
    keep: usize,
    mut lines: Option<LineSplitter<'_>>,
) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut reader) = reader else {
        return kept;
    };
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(lines) = &mut lines {
                    lines.push(&buf[..n]);
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > keep * 2 {
                    kept.drain(..kept.len() - keep);
                }
            }
        }
    }
    if let Some(lines) = lines {
        lines.finish();
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::Handler;
    use crate::test_util::TempDir;
    use serde_json::{json, Value};
    use std::time::Instant;

    fn handler(program: &str, args: &[&str]) -> CommandHandler {
        CommandHandler::new(&CommandConfig {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            pass_env: vec![],
            workdir: None,
            timeout_ms: None,
        })
    }

    fn sh(script: &str) -> CommandHandler {
        handler("sh", &["-c", script])
    }

    fn ctx(payload: Value) -> TaskContext {
        TaskContext {
            task_id: 7,
            task_type: "resize".into(),
            attempt: 2,
            payload,
            timeout: None,
            log: None,
        }
    }

    fn failure(out: Outcome) -> (String, bool) {
        match out {
            Outcome::Failed { error, retryable } => (error, retryable),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn json_stdout_is_the_output() {
        let out = handler("cat", &[]).run(&ctx(json!({"x": [1, 2]}))).await;
        assert_eq!(
            out,
            Outcome::Succeeded {
                output: json!({"x": [1, 2]})
            }
        );
    }

    #[tokio::test]
    async fn text_stdout_is_a_string() {
        let out = handler("echo", &["  hello", "world  "])
            .run(&ctx(Value::Null))
            .await;
        assert_eq!(
            out,
            Outcome::Succeeded {
                output: json!("hello world")
            }
        );
    }

    #[tokio::test]
    async fn task_details_are_in_the_environment() {
        let mut h = sh(
            r#"printf '%s|%s|%s|%s|%s' "$DROVER_TASK_ID" "$DROVER_TASK_TYPE" "$DROVER_ATTEMPT" "$DROVER_PAYLOAD" "$FOO""#,
        );
        h.env.insert("FOO".into(), "bar".into());
        let out = h.run(&ctx(json!({"a": 1}))).await;
        assert_eq!(
            out,
            Outcome::Succeeded {
                output: json!(r#"7|resize|2|{"a":1}|bar"#)
            }
        );
    }

    /// The test runner's environment is full of variables (CARGO_*, and
    /// whatever the shell had): none of them may reach the program, only
    /// the allowlist, `pass_env` and the task's own.
    #[tokio::test]
    async fn programs_see_only_the_allowed_environment() {
        let mut h = handler("env", &[]);
        h.env.insert("FOO".into(), "bar".into());
        h.pass_env = vec!["CARGO_PKG_NAME".into()];
        let Outcome::Succeeded { output } = h.run(&ctx(json!({}))).await else {
            panic!("env failed");
        };
        let text = output.as_str().expect("text output").to_string();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        let task_vars = [
            "DROVER_TASK_ID",
            "DROVER_TASK_TYPE",
            "DROVER_ATTEMPT",
            "DROVER_PAYLOAD",
        ];
        for name in &names {
            assert!(
                INHERITED_ENV.contains(name)
                    || task_vars.contains(name)
                    || ["FOO", "CARGO_PKG_NAME"].contains(name),
                "{name} leaked into the program's environment:\n{text}"
            );
        }
        assert!(
            names.contains(&"FOO") && names.contains(&"CARGO_PKG_NAME"),
            "{text}"
        );
        assert!(!names.contains(&"CARGO_MANIFEST_DIR"), "{text}");
    }

    #[tokio::test]
    async fn large_payloads_go_through_stdin_only() {
        let big = "x".repeat(MAX_ENV_PAYLOAD_BYTES + 10);
        let out = sh(r#"test -z "$DROVER_PAYLOAD" && wc -c"#)
            .run(&ctx(json!(big)))
            .await;
        // The payload is a JSON string: two quotes around it.
        assert_eq!(
            out,
            Outcome::Succeeded {
                output: json!(big.len() + 2)
            }
        );
    }

    #[tokio::test]
    async fn programs_that_ignore_stdin_are_fine() {
        let out = handler("true", &[])
            .run(&ctx(json!("y".repeat(1 << 20))))
            .await;
        assert_eq!(
            out,
            Outcome::Succeeded {
                output: Value::Null
            }
        );
    }

    #[tokio::test]
    async fn workdir_is_used() {
        let dir = TempDir::create("cmd-workdir");
        let mut h = handler("pwd", &[]);
        h.workdir = Some(dir.0.clone());
        let out = h.run(&ctx(Value::Null)).await;
        let expected = std::fs::canonicalize(&dir.0).expect("exists");
        assert_eq!(
            out,
            Outcome::Succeeded {
                output: json!(expected.display().to_string())
            }
        );
    }

    #[tokio::test]
    async fn non_zero_exit_fails_with_the_stderr_tail() {
        let out = sh("echo 'not this'; echo 'bad input' >&2; exit 3")
            .run(&ctx(Value::Null))
            .await;
        assert_eq!(failure(out), ("exit code 3: bad input".to_string(), true));

        let out = sh("exit 4").run(&ctx(Value::Null)).await;
        assert_eq!(failure(out).0, "exit code 4");

        let out = sh("i=0; while [ $i -lt 500 ]; do echo 'noise noise noise' >&2; i=$((i+1)); done; echo LAST >&2; exit 1")
            .run(&ctx(Value::Null))
            .await;
        let (error, _) = failure(out);
        assert!(error.starts_with("exit code 1: "), "{error}");
        assert!(error.ends_with("LAST"), "{error}");
        assert!(
            error.len() <= "exit code 1: ".len() + ERROR_TAIL_BYTES,
            "{}",
            error.len()
        );
    }

    /// Both streams go to the live log line by line; the outcome is made
    /// exactly as without it.
    #[tokio::test]
    async fn output_lines_also_go_to_the_log() {
        use crate::logs::{LogShipper, Redactor};
        let shipper = LogShipper::new(Redactor::new(["s3cret".to_string()]));
        let mut c = ctx(Value::Null);
        c.log = Some(shipper.task(c.task_id, 70));
        let out = sh("echo one; sleep 0.1; echo 'two s3cret' >&2; sleep 0.1; printf three")
            .run(&c)
            .await;
        assert_eq!(
            out,
            Outcome::Succeeded {
                output: json!("one\nthree")
            }
        );
        assert_eq!(
            shipper.take_lines(),
            [
                (OutputStream::Stdout, "one".to_string()),
                (OutputStream::Stderr, "two ***".to_string()),
                (OutputStream::Stdout, "three".to_string()),
            ]
        );
        let out = sh("echo 'bad s3cret' >&2; exit 2").run(&c).await;
        assert_eq!(
            failure(out).0,
            "exit code 2: bad s3cret",
            "the error is the handler's own words"
        );
    }

    #[tokio::test]
    async fn killed_by_a_signal() {
        let out = sh("kill -9 $$").run(&ctx(Value::Null)).await;
        assert_eq!(failure(out).0, "killed by signal 9");
    }

    #[tokio::test]
    async fn missing_program_is_a_failure() {
        let out = handler("/nonexistent/drover-test-program", &[])
            .run(&ctx(Value::Null))
            .await;
        let (error, retryable) = failure(out);
        assert!(
            error.starts_with("cannot start \"/nonexistent/drover-test-program\""),
            "{error}"
        );
        assert!(retryable);
    }

    #[tokio::test]
    async fn oversized_stdout_fails() {
        let out = sh("head -c 2000000 /dev/zero").run(&ctx(Value::Null)).await;
        let (error, retryable) = failure(out);
        assert!(error.contains("output limit"), "{error}");
        assert!(!retryable);
    }

    /// Whether `pid` is gone (or a zombie nobody reaped yet).
    fn is_dead(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = TempDir::create("cmd-timeout");
        let pidfile = dir.0.join("pid");
        let mut h = sh(&format!(
            "sleep 30 & echo $! > '{}'; wait",
            pidfile.display()
        ));
        h.timeout = Some(Duration::from_millis(300));
        let handler = Handler::Command(h);
        let started = Instant::now();
        let out = handler.run(&ctx(Value::Null)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(failure(out), ("timed out after 300 ms".to_string(), true));

        let pid = std::fs::read_to_string(&pidfile).expect("the script wrote its child's pid");
        let pid = pid.trim();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_dead(pid) {
            assert!(
                Instant::now() < deadline,
                "grandchild {pid} survived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn task_timeout_and_handler_timeout_the_smaller_wins() {
        let mut h = handler("sleep", &["30"]);
        h.timeout = Some(Duration::from_secs(60));
        let mut c = ctx(Value::Null);
        c.timeout = Some(Duration::from_millis(100));
        let out = Handler::Command(h).run(&c).await;
        assert_eq!(failure(out).0, "timed out after 100 ms");
    }
}
