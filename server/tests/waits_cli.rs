//! The `drover` command line and durable waits, on SQLite and PostgreSQL:
//! the real binary sends the event a run waits for while `drover run
//! watch` says what the step waits on and sees it resume; a refused event
//! exits non-zero naming the field; a child run names its parent.

#[macro_use]
mod support;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{eventually, fast_timeouts, step, Backend, Database, Server, API_TOKEN};

on_both!(
    an_event_sent_from_the_cli_resumes_the_waiting_run,
    a_refused_event_exits_non_zero_naming_the_field,
    the_cli_names_a_child_runs_parent_and_the_child_its_parent_waits_for,
);

const PAYMENT: &str = r#"
name: payment
inputs:
  order: { type: string, required: true }
steps:
  - id: paid
    type: wait
    event: { key: "order:{{ inputs.order }}", timeout_ms: 600000 }
"#;

struct Fixture {
    server: Server,
    db: Database,
}

async fn fixture(backend: Backend) -> Fixture {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &fast_timeouts()).await;
    Fixture { server, db }
}

impl Fixture {
    fn command(&self, token: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(support::bin("drover"));
        cmd.arg("--server")
            .arg(&self.server.url)
            .args(args)
            .env("DROVER_TOKEN", token)
            .current_dir(self.db.dir());
        cmd
    }

    /// `drover ARGS` as the operator: whether it exited 0, and what it printed.
    fn cli(&self, args: &[&str]) -> (bool, String) {
        self.cli_as(API_TOKEN, args)
    }

    fn cli_as(&self, token: &str, args: &[&str]) -> (bool, String) {
        let out = self.command(token, args).output().expect("run drover");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `drover run watch ID`, running until [`Watch::finish`] collects it.
    fn watch(&self, id: i64) -> Watch {
        let mut child = self
            .command(API_TOKEN, &["run", "watch", &id.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start drover run watch");
        let output = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().expect("its output");
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Watch { child, output }
    }
}

/// A `drover run watch` under way and what it has printed so far.
struct Watch {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Watch {
    fn printed(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until it has printed `text` (so it saw what the test is about
    /// to change).
    async fn saw(&self, text: &str) {
        eventually(
            Duration::from_secs(30),
            &format!("drover run watch to print {text:?}"),
            || async { self.printed().contains(text).then_some(()) },
        )
        .await;
    }

    /// Waits (at most 30 s) for it to end: its exit code and its output.
    async fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll drover run watch") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("drover run watch did not end:\n{}", self.printed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // The reader thread takes the last bytes once the pipe closes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status.code(), self.printed())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn an_event_sent_from_the_cli_resumes_the_waiting_run(backend: Backend) {
    let f = fixture(backend).await;
    f.server.upload_ok(PAYMENT).await;
    let id = f
        .server
        .start_run("payment", json!({ "order": "42" }))
        .await;
    f.server.wait_step(id, "paid", "waiting").await;
    let watch = f.watch(id);
    watch.saw("waiting — for event order:42").await;

    let (ok, out) = f.cli(&["event", "send", "order:42", "--data", r#"{"amount": 17}"#]);
    assert!(ok, "{out}");
    assert!(out.contains("event order:42 resumed 1 step"), "{out}");
    assert!(out.contains(&format!("run {id}\tstep paid")), "{out}");

    // The watcher said what the step waited for, then saw it resume.
    let (code, watched) = watch.finish().await;
    assert_eq!(code, Some(0), "{watched}");
    let waiting = watched
        .lines()
        .find(|l| l.contains("paid") && l.contains("waiting"))
        .unwrap_or_else(|| panic!("no waiting line in {watched}"));
    assert!(
        waiting.contains("— for event order:42, times out in ")
            && waiting.ends_with(" min (drover event send order:42)"),
        "{waiting}"
    );
    assert!(
        watched.contains(&format!("run {id} succeeded")),
        "{watched}"
    );
    let run = f.server.run(id).await;
    assert_eq!(
        step(&run, "paid")["output"]["data"],
        json!({ "amount": 17 })
    );

    // The data may come from a file; an event nobody waits for resumes nothing.
    let id = f
        .server
        .start_run("payment", json!({ "order": "43" }))
        .await;
    f.server.wait_step(id, "paid", "waiting").await;
    let file = f.db.dir().join("event.json");
    std::fs::write(&file, r#"{"paid_by": "card"}"#).unwrap();
    let (ok, out) = f.cli(&[
        "event",
        "send",
        "order:43",
        "--data-file",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("run {id}\tstep paid")), "{out}");
    let run = f.server.wait_step(id, "paid", "succeeded").await;
    assert_eq!(step(&run, "paid")["output"]["data"]["paid_by"], "card");
    let (ok, out) = f.cli(&["event", "send", "order:43"]);
    assert!(ok, "{out}");
    assert!(out.contains("no step was waiting"), "{out}");
}

async fn a_refused_event_exits_non_zero_naming_the_field(backend: Backend) {
    let f = fixture(backend).await;
    f.server.upload_ok(PAYMENT).await;
    let id = f.server.start_run("payment", json!({ "order": "7" })).await;
    f.server.wait_step(id, "paid", "waiting").await;

    let (ok, out) = f.cli(&["event", "send", ""]);
    assert!(!ok, "an empty key was accepted: {out}");
    assert!(out.contains("422") && out.contains("(key)"), "{out}");
    let long = "k".repeat(drover_protocol::limits::MAX_EVENT_KEY_BYTES + 1);
    let (ok, out) = f.cli(&["event", "send", &long]);
    assert!(!ok && out.contains("(key)"), "{out}");
    let big = format!(
        r#"{{"blob": "{}"}}"#,
        "x".repeat(drover_protocol::limits::MAX_EVENT_DATA_BYTES)
    );
    let (ok, out) = f.cli(&["event", "send", "order:7", "--data", &big]);
    assert!(!ok && out.contains("(data)"), "{out}");
    // Data that is not JSON never reaches the server.
    let (ok, out) = f.cli(&["event", "send", "order:7", "--data", "{amount: 1"]);
    assert!(!ok && out.contains("--data is not JSON"), "{out}");
    // A viewer may not send events.
    let viewer = f.server.create_user("vera", "viewer").await;
    let (ok, out) = f.cli_as(&viewer, &["event", "send", "order:7"]);
    assert!(!ok && out.contains("403"), "{out}");
    // None of these resumed the step.
    assert_eq!(step(&f.server.run(id).await, "paid")["status"], "waiting");
}

const CHILD: &str = r#"
name: signoff
steps:
  - id: ack
    type: wait
    event: { key: "signoff" }
"#;

const PARENT: &str = r#"
name: release
steps:
  - id: approve
    type: workflow
    workflow: signoff
"#;

async fn the_cli_names_a_child_runs_parent_and_the_child_its_parent_waits_for(backend: Backend) {
    let f = fixture(backend).await;
    f.server.upload_ok(CHILD).await;
    f.server.upload_ok(PARENT).await;
    let parent = f.server.start_run("release", json!({})).await;
    let run = f.server.wait_step(parent, "approve", "waiting").await;
    let child = step(&run, "approve")["wait"]["child_run_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no child run in {run}"));
    f.server.wait_step(child, "ack", "waiting").await;

    let (ok, out) = f.cli(&["run", "list"]);
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{child}\t")))
        .unwrap_or_else(|| panic!("no run {child} in {out}"));
    assert!(
        line.ends_with(&format!("child of run {parent} (step approve)")),
        "{line}"
    );
    let (ok, out) = f.cli(&["run", "get", &child.to_string()]);
    assert!(ok, "{out}");
    let got: Value = serde_json::from_str(&out).expect("run get prints JSON");
    assert_eq!(got["parent_run_id"], parent);
    assert_eq!(step(&got, "ack")["wait"]["event_key"], "signoff");

    let watch_parent = f.watch(parent);
    let watch_child = f.watch(child);
    watch_parent.saw("waiting — for child run").await;
    watch_child.saw("waiting — for event signoff").await;
    let (ok, out) = f.cli(&["event", "send", "signoff"]);
    assert!(ok, "{out}");
    let (code, watched) = watch_child.finish().await;
    assert_eq!(code, Some(0), "{watched}");
    assert!(
        watched.contains(&format!(
            "run {child} was started by run {parent}, step approve"
        )),
        "{watched}"
    );
    let (code, watched) = watch_parent.finish().await;
    assert_eq!(code, Some(0), "{watched}");
    assert!(
        watched.contains(&format!(
            "waiting — for child run {child} (drover run watch {child})"
        )),
        "{watched}"
    );
    assert!(
        watched.contains(&format!("run {parent} succeeded")),
        "{watched}"
    );
}
