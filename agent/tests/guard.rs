//! The handler guard, with the real `drover-agent` binary: it kills the
//! groups announced to it when its pipe closes (the agent died), and command
//! handlers run as before with it installed.

#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drover_agent::config::CommandConfig;
use drover_agent::handlers::command::CommandHandler;
use drover_agent::handlers::{guard, TaskContext};
use drover_protocol::agent::Outcome;
use serde_json::Value;

const AGENT: &str = env!("CARGO_BIN_EXE_drover-agent");

/// Whether `pid` is gone (or a zombie nobody reaped yet).
fn is_dead(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drover-guard-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn the_guard_kills_announced_groups_when_its_pipe_closes() {
    let dir = scratch("pipe");
    let pidfile = dir.join("pid");
    let mut guard = Command::new(AGENT)
        .arg(guard::GUARD_FLAG)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start the guard");
    let mut handler = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "sleep 30 & echo $! > '{0}.tmp' && mv '{0}.tmp' '{0}'; wait",
            pidfile.display()
        ))
        .process_group(0)
        .spawn()
        .expect("start a handler");
    let mut pipe = guard.stdin.take().expect("piped");
    writeln!(pipe, "+{}", handler.id()).expect("announce");
    // The pid file is renamed into place once written: an empty read here
    // would make `/proc//stat` (that is, `/proc/stat`) the "grandchild".
    wait_until("the handler's child", || pidfile.exists());
    let grandchild = std::fs::read_to_string(&pidfile).expect("pid");
    let grandchild: u32 = grandchild.trim().parse().expect("a pid in the pid file");
    let grandchild = grandchild.to_string();
    assert!(!is_dead(&grandchild));

    // The agent dies: its end of the pipe closes.
    drop(pipe);
    let status = handler.wait().expect("handler reaped");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    wait_until("the grandchild to die", || is_dead(&grandchild));
    assert!(guard.wait().expect("guard exits").success());
    let _ = std::fs::remove_dir_all(&dir);
}

fn ctx() -> TaskContext {
    TaskContext {
        task_id: 1,
        task_type: "t".into(),
        attempt: 1,
        payload: Value::Null,
        timeout: None,
        log: None,
    }
}

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

#[tokio::test]
async fn handlers_run_as_before_with_the_guard_installed() {
    let installed = guard::install(AGENT).expect("guard");
    let out = handler("sh", &["-c", "echo '{\"ok\": true}'"])
        .run(&ctx())
        .await;
    assert_eq!(
        out,
        Outcome::Succeeded {
            output: serde_json::json!({ "ok": true })
        }
    );
    let out = handler("/nonexistent/drover-guard-test", &[])
        .run(&ctx())
        .await;
    match out {
        Outcome::Failed { error, retryable } => {
            assert!(error.starts_with("cannot start"), "{error}");
            assert!(retryable);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let out = handler("sh", &["-c", "exit 3"]).run(&ctx()).await;
    assert!(matches!(out, Outcome::Failed { .. }), "{out:?}");
    assert!(installed.alive(), "the guard survived all of it");
}
