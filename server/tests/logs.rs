//! Live logs: a command handler's stdout and stderr reach the task's log
//! while it runs, in order, bounded, with the agent's secrets redacted;
//! only the agent holding a task may write to its log, and only while it
//! runs; bad input is refused by field; `drover task logs --follow` prints
//! the lines and exits when the task has finished. Real server and agent
//! processes, on SQLite and PostgreSQL.

#[macro_use]
mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use drover_protocol::api::{LogStream, TaskLogPage, TaskStatus};
use drover_protocol::limits::{MAX_LOG_LINES_PER_REQUEST, MAX_LOG_LINE_BYTES};
use serde_json::{json, Value};
use support::{
    eventually, fast_timeouts, new_task, AgentProcess, Backend, Database, RawAgent, Server,
    TempDir, API_TOKEN,
};

on_both!(
    lines_arrive_in_order_while_the_task_runs,
    the_server_keeps_the_last_lines_and_notes_the_rest,
    secrets_configured_on_the_agent_are_redacted,
    only_the_agent_holding_a_task_writes_its_log,
    bad_input_is_refused_by_field,
    follow_prints_the_lines_and_exits_when_the_task_ends,
);

const WITHIN: Duration = Duration::from_secs(30);

/// An agent whose command handlers print and wait for files in `dir`.
fn agent_config(dir: &Path) -> String {
    let go = dir.join("go");
    format!(
        r#"capacity = 2

# Prints to both streams with pauses (so their order is known), then waits
# for the test's go-ahead file before its last line.
[handlers.talk]
kind = "command"
program = "sh"
args = ["-c", '''
echo "out 1"
sleep 0.2
echo "err 1" >&2
sleep 0.2
echo "out 2"
while [ ! -f "{go}" ]; do sleep 0.05; done
echo "err 2" >&2
sleep 0.2
echo "out 3"
''']

[handlers.chatty]
kind = "command"
program = "sh"
args = ["-c", 'i=1; while [ $i -le 250 ]; do echo "line $i"; i=$((i+1)); done']

[handlers.secretive]
kind = "command"
program = "sh"
args = ["-c", 'echo "key=$API_KEY pw=hunter2-literal token=$ENROLL"; echo "done"']
env = {{ API_KEY = "sk-live-5up3r-s3cr3t", ENROLL = "{enroll}" }}
"#,
        go = go.display(),
        enroll = support::ENROLL_TOKEN,
    )
}

async fn log(server: &Server, task: i64, query: &str) -> TaskLogPage {
    let (status, body) = server
        .get(&format!("/api/v1/tasks/{task}/logs{query}"))
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).expect("a log page")
}

fn texts(page: &TaskLogPage) -> Vec<(LogStream, String)> {
    page.lines
        .iter()
        .map(|l| (l.stream, l.line.clone()))
        .collect()
}

async fn finished(server: &Server, task: i64) -> TaskStatus {
    eventually(WITHIN, "the task to finish", || async {
        let t = server.task(task).await.task;
        (!matches!(t.status, TaskStatus::Queued | TaskStatus::Running)).then_some(t.status)
    })
    .await
}

/// Submits one task of `task_type` as soon as the agent handling it has
/// registered (a submit of an unknown type is refused until then).
async fn submit_once_registered(server: &Server, task_type: &str) -> i64 {
    eventually(WITHIN, "the agent to register", || async {
        let (status, body) = server
            .post("/api/v1/tasks", &json!({ "task_type": task_type }))
            .await;
        (status == 201).then(|| body["id"].as_i64().expect("id"))
    })
    .await
}

async fn lines_arrive_in_order_while_the_task_runs(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db, &fast_timeouts()).await;
    let dir = TempDir::new("logs-order");
    let _agent = AgentProcess::start(&server, &dir.0, "talker", &agent_config(&dir.0));
    let task = submit_once_registered(&server, "talk").await;

    // The handler is still running (it waits for the go-ahead), and its
    // first lines are there already, in the order it printed them.
    let started = Instant::now();
    let page = eventually(WITHIN, "the first three lines", || async {
        let page = log(&server, task, "").await;
        (page.lines.len() >= 3).then_some(page)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "lines took {:?}",
        started.elapsed()
    );
    assert_eq!(page.status, TaskStatus::Running);
    assert_eq!(
        texts(&page),
        [
            (LogStream::Stdout, "out 1".to_string()),
            (LogStream::Stderr, "err 1".to_string()),
            (LogStream::Stdout, "out 2".to_string()),
        ]
    );
    assert_eq!(
        page.lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(page.lines.iter().all(|l| l.attempt == 1));
    assert_eq!(server.task(task).await.task.status, TaskStatus::Running);

    // Following from the last seq gives only what came after.
    let after = page.last_seq;
    std::fs::write(dir.0.join("go"), "").expect("go-ahead");
    assert_eq!(finished(&server, task).await, TaskStatus::Succeeded);
    let rest = log(&server, task, &format!("?after={after}")).await;
    assert_eq!(
        texts(&rest),
        [
            (LogStream::Stderr, "err 2".to_string()),
            (LogStream::Stdout, "out 3".to_string()),
        ]
    );
    assert!(!rest.more);
    assert_eq!(rest.last_seq, 5);
    // Nothing follows a finished task's last line.
    let past = log(&server, task, "?after=5").await;
    assert!(past.lines.is_empty());
    assert_eq!(past.last_seq, 5);

    // The result is what it always was: stdout as the output.
    let detail = server.task(task).await;
    assert_eq!(
        detail.task.result,
        Some(json!("out 1\nout 2\nout 3")),
        "{detail:?}"
    );
    // Pages of two, and the tail.
    let first = log(&server, task, "?limit=2").await;
    assert_eq!(first.lines.len(), 2);
    assert!(first.more);
    assert_eq!(first.last_seq, 2);
    let tail = log(&server, task, "?tail=2").await;
    assert_eq!(tail.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [4, 5]);
}

async fn the_server_keeps_the_last_lines_and_notes_the_rest(backend: Backend) {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    env.push(("DROVER_MAX_LOG_LINES", "100"));
    let server = Server::start(&db, &env).await;
    let dir = TempDir::new("logs-bound");
    let _agent = AgentProcess::start(&server, &dir.0, "chatty", &agent_config(&dir.0));
    let task = submit_once_registered(&server, "chatty").await;
    assert_eq!(finished(&server, task).await, TaskStatus::Succeeded);

    let page = log(&server, task, "").await;
    assert_eq!(page.dropped, 150);
    assert_eq!(page.lines.len(), 101, "the note and the last 100 lines");
    let note = &page.lines[0];
    assert_eq!((note.seq, note.stream), (0, LogStream::Note));
    assert!(
        note.line.contains("150 earlier lines dropped"),
        "{}",
        note.line
    );
    let kept: Vec<String> = page.lines[1..].iter().map(|l| l.line.clone()).collect();
    let expected: Vec<String> = (151..=250).map(|i| format!("line {i}")).collect();
    assert_eq!(kept, expected);
    assert_eq!(page.lines[1].seq, 151);
    assert_eq!(page.last_seq, 250);
}

async fn secrets_configured_on_the_agent_are_redacted(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db, &fast_timeouts()).await;
    let dir = TempDir::new("logs-redact");
    let _agent = AgentProcess::start_with(
        &server,
        &dir.0,
        "careful",
        &agent_config(&dir.0),
        &["--redact-env", "API_KEY", "--redact", "hunter2-literal"],
    );
    let task = submit_once_registered(&server, "secretive").await;
    assert_eq!(finished(&server, task).await, TaskStatus::Succeeded);
    let page = log(&server, task, "").await;
    assert_eq!(
        texts(&page),
        [
            (LogStream::Stdout, "key=*** pw=*** token=***".to_string()),
            (LogStream::Stdout, "done".to_string()),
        ],
        "the env value, the literal and the enrollment token are redacted"
    );
}

async fn only_the_agent_holding_a_task_writes_its_log(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db, &fast_timeouts()).await;
    let holder = RawAgent::register(&server, "holder", 1, &["work"]).await;
    let other = RawAgent::register(&server, "other", 1, &["work"]).await;
    let task = server.submit(vec![new_task("work", json!({}))]).await[0];
    let (claimed, lease) = holder.claim(1, 0).await[0];
    assert_eq!(claimed, task);
    let batch = |lease: i64, text: &str| {
        json!({ "tasks": [{ "task_id": task, "lease_token": lease,
            "lines": [{ "stream": "stdout", "line": text, "at_us": 1_700_000_000_000_000i64 }] }] })
    };

    let mut events = server
        .http
        .get(format!("{}/api/v1/events", server.url))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("events");
    let (status, body) = holder.post("logs", batch(lease, "mine")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["tasks"],
        json!([{ "task_id": task, "status": "accepted" }])
    );
    wait_for_log_event(&mut events, task).await;

    // Another agent, even with the right lease, is refused and writes nothing.
    let (status, body) = other.post("logs", batch(lease, "not yours")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["tasks"],
        json!([{ "task_id": task, "status": "stale" }])
    );
    // So is the holder under a lease it does not hold.
    let (status, _) = holder.post("logs", batch(lease ^ 1, "old lease")).await;
    assert_eq!(status, 409);
    // And a finished task takes no more lines.
    let (status, body) = holder.succeed(task, lease).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = holder.post("logs", batch(lease, "too late")).await;
    assert_eq!(status, 409, "{body}");
    // Nor does a task that does not exist.
    let (status, _) = other
        .post(
            "logs",
            json!({ "tasks": [{ "task_id": 999_999, "lease_token": 1, "lines": [] }] }),
        )
        .await;
    assert_eq!(status, 409);
    // No session, no append.
    let r = server
        .http
        .post(format!("{}/api/v1/agent/logs", server.url))
        .json(&batch(lease, "anonymous"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);

    let page = log(&server, task, "").await;
    assert_eq!(texts(&page), [(LogStream::Stdout, "mine".to_string())]);
    assert_eq!(page.status, TaskStatus::Succeeded);
}

/// Reads the event stream until a `task_log` notice for `task` arrives.
async fn wait_for_log_event(events: &mut reqwest::Response, task: i64) {
    let mut seen = String::new();
    let deadline = Instant::now() + WITHIN;
    while !(seen.contains("event: task_log\n") && seen.contains(&format!("\"id\":{task}"))) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, events.chunk())
            .await
            .unwrap_or_else(|_| panic!("no task_log event; got {seen:?}"))
            .expect("stream")
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

async fn bad_input_is_refused_by_field(backend: Backend) {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    env.push(("DROVER_MAX_BODY_BYTES", "400000"));
    let server = Server::start(&db, &env).await;
    let agent = RawAgent::register(&server, "hostile", 1, &["work"]).await;
    let task = server.submit(vec![new_task("work", json!({}))]).await[0];
    let (_, lease) = agent.claim(1, 0).await[0];
    let with_lines = |lines: Vec<Value>| json!({ "tasks": [{ "task_id": task, "lease_token": lease, "lines": lines }] });
    let line = |text: &str| json!({ "stream": "stderr", "line": text, "at_us": 1 });
    let field = |body: &Value| body["error"]["field"].as_str().unwrap_or("").to_string();

    let long = "x".repeat(MAX_LOG_LINE_BYTES + 1);
    let (status, body) = agent
        .post("logs", with_lines(vec![line("ok"), line(&long)]))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(field(&body), "tasks[0].lines[1].line");

    let many = vec![line("x"); MAX_LOG_LINES_PER_REQUEST + 1];
    let (status, body) = agent.post("logs", with_lines(many)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(field(&body), "tasks");

    let (status, body) = agent.post("logs", with_lines(vec![line("a\0b")])).await;
    assert_eq!(status, 422, "{body}");

    let (status, body) = agent
        .post(
            "logs",
            with_lines(vec![
                json!({ "stream": "note", "line": "forged", "at_us": 1 }),
            ]),
        )
        .await;
    assert_eq!(status, 400, "an agent cannot write Drover's notes: {body}");
    let (status, body) = agent
        .post(
            "logs",
            json!({ "tasks": [{ "task_id": task, "lease_token": lease, "lines": [], "extra": 1 }] }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_json");

    // A body over the server's limit is refused before it is read whole.
    let huge = vec![line(&"y".repeat(MAX_LOG_LINE_BYTES)); 60];
    let (status, body) = agent.post("logs", with_lines(huge)).await;
    assert_eq!(status, 413, "{body}");

    // Nothing of it was stored.
    let page = log(&server, task, "").await;
    assert!(page.lines.is_empty(), "{page:?}");

    // The read side checks its parameters too.
    for (query, field_name) in [
        ("?limit=0", "limit"),
        ("?limit=5001", "limit"),
        ("?tail=0", "tail"),
        ("?tail=5&after=3", "tail"),
    ] {
        let (status, body) = server
            .get(&format!("/api/v1/tasks/{task}/logs{query}"))
            .await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(field(&body), field_name, "{query}");
    }
    let (status, _) = server.get("/api/v1/tasks/424242/logs").await;
    assert_eq!(status, 404);
    // Any signed-in user may read a log, as they may read the task.
    let viewer = server.create_user("vic", "viewer").await;
    let (status, _) = server
        .call_as(
            &viewer,
            reqwest::Method::GET,
            &format!("/api/v1/tasks/{task}/logs"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let r = server
        .http
        .get(format!("{}/api/v1/tasks/{task}/logs", server.url))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
}

async fn follow_prints_the_lines_and_exits_when_the_task_ends(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db, &fast_timeouts()).await;
    let dir = TempDir::new("logs-follow");
    let _agent = AgentProcess::start(&server, &dir.0, "talker", &agent_config(&dir.0));
    let task = submit_once_registered(&server, "talk").await;
    eventually(WITHIN, "the first lines", || async {
        (log(&server, task, "").await.lines.len() >= 3).then_some(())
    })
    .await;

    let stdout = std::fs::File::create(dir.0.join("follow.out")).expect("file");
    let stderr = std::fs::File::create(dir.0.join("follow.err")).expect("file");
    let mut follow = std::process::Command::new(support::bin("drover"))
        .args([
            "--server",
            &server.url,
            "task",
            "logs",
            &task.to_string(),
            "--follow",
        ])
        .env("DROVER_TOKEN", API_TOKEN)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("run drover");
    let read = |name: &str| std::fs::read_to_string(dir.0.join(name)).unwrap_or_default();
    eventually(WITHIN, "the lines so far", || async {
        read("follow.out").contains("out 2").then_some(())
    })
    .await;
    assert!(
        follow.try_wait().expect("wait").is_none(),
        "it keeps following while the task runs"
    );

    std::fs::write(dir.0.join("go"), "").expect("go-ahead");
    let deadline = Instant::now() + WITHIN;
    let status = loop {
        if let Some(status) = follow.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "drover task logs --follow did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}: {}", read("follow.err"));
    assert_eq!(read("follow.out"), "out 1\nout 2\nout 3\n");
    let err = read("follow.err");
    assert!(err.starts_with("err 1\nerr 2\n"), "{err}");
    assert!(err.contains(&format!("task {task} succeeded")), "{err}");

    // Without --follow it prints what there is and exits.
    let out = std::process::Command::new(support::bin("drover"))
        .args(["--server", &server.url, "task", "logs", &task.to_string()])
        .env("DROVER_TOKEN", API_TOKEN)
        .output()
        .expect("run drover");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "out 1\nout 2\nout 3\n"
    );
}
