//! Start-up, the running agent, and orderly shutdown.
//!
//! Start-up: open the outbox (fatal if the state directory is unusable),
//! build the handlers, register (retrying while the server is unreachable;
//! fatal if it refuses the registration), then start the reporter (which
//! first delivers what the outbox held), the heartbeat, the claim loop and
//! the log shipper (command handlers' output, live).
//!
//! Shutdown on SIGTERM / Ctrl-C: stop claiming; let running tasks finish for
//! up to the grace period (a second signal cuts it short); kill what is still
//! running and report it released; deliver the results (bounded by
//! [`crate::config::FLUSH_TIMEOUT`], after which they stay in the outbox for
//! the next start); deregister; exit 0.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use drover_protocol::agent::{Lease, RegisterRequest};
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::claimer::Claimer;
use crate::client::{describe, ApiError, Client};
use crate::config::Settings;
use crate::drain::Drain;
use crate::handlers::Handler;
use crate::logs::LogShipper;
use crate::outbox::{Outbox, OutboxError};
use crate::reporter::Reporter;
use crate::session::Session;
use crate::starter::Starter;
use crate::stop::{stop_pair, Signals};
use crate::tasks::TaskSet;

/// How long shutdown waits for the deregistration call.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// The reason given for tasks killed at shutdown.
pub const SHUTDOWN_REASON: &str = "agent shutting down";

/// Why the agent could not start. Once running, the agent does not fail: it
/// retries.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("cannot set up handler {task_type:?}: {message}")]
    Handler { task_type: String, message: String },
    #[error("cannot create the HTTP client: {0}")]
    HttpClient(String),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    #[error("the server at {server} refused the enrollment token (check --token / DROVER_TOKEN): {message}")]
    EnrollmentRefused { server: String, message: String },
    #[error("the server at {server} refused to register this agent: {error}")]
    RegisterRefused { server: String, error: ApiError },
}

/// Runs the agent until SIGTERM / Ctrl-C, then shuts down in order.
pub async fn run(settings: Settings) -> Result<(), AgentError> {
    let signals = Signals::install().map_err(AgentError::Signals)?;
    run_until(settings, signals).await
}

/// Runs the agent until `signals` asks it to stop, then shuts down in order.
pub async fn run_until(settings: Settings, mut signals: Signals) -> Result<(), AgentError> {
    let (outbox, leftovers) = Outbox::open(&settings.state_dir)?;
    if !leftovers.is_empty() {
        tracing::info!(
            count = leftovers.len(),
            path = %outbox.path().display(),
            "found undelivered results from an earlier run; delivering them after registering"
        );
    }
    let agent_key = crate::identity::load_or_create(&settings.state_dir)?;
    let handlers = build_handlers(&settings)?;
    let client = Client::new(settings.server.clone(), &settings.extra_roots)
        .map_err(|e| AgentError::HttpClient(describe(&e)))?;

    // The results still to deliver name the leases to keep: the server
    // requeues whatever else this agent held before it restarted.
    let resuming: Vec<Lease> = leftovers
        .iter()
        .map(|r| Lease {
            task_id: r.task_id,
            lease_token: r.lease_token,
        })
        .collect();
    let session = tokio::select! {
        session = register(client, &settings, agent_key, resuming) => Arc::new(session?),
        signal = signals.next() => {
            tracing::info!(signal, "stopping before registration");
            return Ok(());
        }
    };
    let info = session.info();
    tracing::info!(
        agent_id = info.agent_id,
        name = %settings.name,
        capacity = settings.capacity,
        task_types = ?settings.task_types(),
        server = %settings.server,
        config = %settings.config_path.display(),
        state_dir = %settings.state_dir.display(),
        "registered; waiting for tasks"
    );

    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let logs = LogShipper::new(settings.redactor.clone());
    let tasks = TaskSet::with_logs(settings.capacity, results_tx, Some(logs.clone()));
    let (stop_logs, logs_stop) = stop_pair();
    let log_shipper = tokio::spawn(logs.run(Arc::clone(&session), logs_stop));
    let drain = Arc::new(Drain::default());

    let (stop_reporter, reporter_stop) = stop_pair();
    let starter = Starter::new(Arc::clone(&tasks), handlers);
    let mut reporter = tokio::spawn(
        Reporter::new(Arc::clone(&session), outbox, leftovers, results_rx)
            .with_eager_dispatch(Arc::clone(&starter), Arc::clone(&drain))
            .run(reporter_stop),
    );
    let (stop_heartbeat, heartbeat_stop) = stop_pair();
    let heartbeat = tokio::spawn(crate::heartbeat::run(
        Arc::clone(&session),
        Arc::clone(&tasks),
        Arc::clone(&drain),
        heartbeat_stop,
    ));
    let (stop_claims, claims_stop) = stop_pair();
    let claimer = tokio::spawn(
        Claimer {
            session: Arc::clone(&session),
            starter: Arc::clone(&starter),
            drain: Arc::clone(&drain),
        }
        .run(claims_stop),
    );

    let signal = signals.next().await;

    // 1. No new work.
    tracing::info!(
        signal,
        running = tasks.running(),
        grace_ms = settings.shutdown_grace.as_millis() as u64,
        "shutting down: no longer claiming; waiting for running tasks"
    );
    stop_claims.stop();
    starter.close();
    let _ = claimer.await;

    // 2. Let running tasks finish, within the grace period.
    let finished = tokio::select! {
        _ = tasks.wait_idle() => true,
        _ = tokio::time::sleep(settings.shutdown_grace) => false,
        signal = signals.next() => {
            tracing::info!(signal, "second signal: not waiting for running tasks any longer");
            false
        }
    };
    if !finished {
        let released = tasks.release_all(SHUTDOWN_REASON).await;
        if released > 0 {
            tracing::warn!(
                released,
                "killed tasks still running at shutdown; the server requeues them"
            );
        }
    }

    // 3. Deliver every result (or keep it in the outbox).
    tasks.close_results();
    let undelivered = tokio::select! {
        left = &mut reporter => left.unwrap_or(0),
        _ = tokio::time::sleep(settings.flush_timeout) => {
            stop_reporter.stop();
            reporter.await.unwrap_or(0)
        }
    };
    stop_heartbeat.stop();
    let _ = heartbeat.await;
    // Finished tasks delivered their last lines before their results;
    // what else is left (stopped tasks) is not waited for.
    stop_logs.stop();
    let _ = log_shipper.await;
    if undelivered > 0 {
        tracing::warn!(
            undelivered,
            path = %settings.state_dir.join(crate::outbox::FILE_NAME).display(),
            "could not deliver every result; they stay in the outbox and are sent at the next start"
        );
    }

    // 4. Leave.
    match session.deregister(DEREGISTER_TIMEOUT).await {
        Ok(()) => tracing::info!("deregistered; bye"),
        Err(e) => {
            tracing::warn!(error = %e, "could not deregister; the server will mark this agent offline when its heartbeats stop")
        }
    }
    Ok(())
}

fn build_handlers(settings: &Settings) -> Result<HashMap<String, Arc<Handler>>, AgentError> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("drover-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AgentError::HttpClient(describe(&e)))?;
    settings
        .handlers
        .iter()
        .map(|(task_type, config)| {
            Handler::from_config(config, &http)
                .map(|h| (task_type.clone(), Arc::new(h)))
                .map_err(|message| AgentError::Handler {
                    task_type: task_type.clone(),
                    message,
                })
        })
        .collect()
}

/// Registers, retrying with backoff while the server is unreachable. A
/// refusal is fatal: the token or the configuration is wrong, and retrying
/// cannot fix that.
async fn register(
    mut client: Client,
    settings: &Settings,
    agent_key: String,
    resuming: Vec<Lease>,
) -> Result<Session, AgentError> {
    let request = RegisterRequest {
        name: settings.name.clone(),
        hostname: settings.hostname.clone(),
        task_types: settings.task_types(),
        capacity: settings.capacity,
        labels: settings.labels.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: drover_protocol::PROTOCOL_VERSION,
        agent_key: Some(agent_key),
        resuming,
    };
    let server = settings.server.to_string();
    let mut backoff = Backoff::default();
    loop {
        match Session::register(client, settings.enrollment_token.clone(), request.clone()).await {
            Ok(session) => return Ok(session),
            Err((c, ApiError::Transient(_))) => {
                client = c;
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err((_, ApiError::Unauthorized(message))) => {
                return Err(AgentError::EnrollmentRefused { server, message })
            }
            Err((_, error)) => return Err(AgentError::RegisterRefused { server, error }),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The whole agent against a scripted fake server.

    use std::collections::{BTreeMap, VecDeque};
    use std::sync::Mutex;

    use drover_protocol::agent::{Assignment, Lease, Outcome, TaskResult};
    use serde_json::{json, Value};

    use super::*;
    use crate::config::{BuiltinKind, HandlerConfig};
    use crate::test_util::{eventually, FakeServer, Reply, Request, TempDir};

    fn settings(server: &str, state_dir: &TempDir, capacity: u32) -> Settings {
        let mut handlers = BTreeMap::new();
        for (name, builtin) in [("echo", BuiltinKind::Echo), ("sleep", BuiltinKind::Sleep)] {
            handlers.insert(name.to_string(), HandlerConfig::Builtin { builtin });
        }
        Settings {
            server: reqwest::Url::parse(server).expect("valid URL"),
            extra_roots: Vec::new(),
            enrollment_token: "enroll".into(),
            name: "test-agent".into(),
            hostname: "test-host".into(),
            capacity,
            labels: vec![],
            state_dir: state_dir.0.clone(),
            handlers,
            shutdown_grace: Duration::from_millis(300),
            flush_timeout: Duration::from_millis(500),
            config_path: "agent.toml".into(),
            redactor: Default::default(),
        }
    }

    fn assignment(task_id: i64, task_type: &str, payload: Value) -> Value {
        serde_json::to_value(Assignment {
            task_id,
            lease_token: task_id * 10,
            task_type: task_type.into(),
            payload,
            attempt: 1,
            max_attempts: 3,
            timeout_ms: 60_000,
            priority: 1.0,
        })
        .expect("serializable")
    }

    fn registered(token: &str) -> Reply {
        Reply::ok(json!({
            "agent_id": 1,
            "session_token": token,
            "heartbeat_interval_ms": 50,
            "heartbeat_timeout_ms": 1000,
            "max_claim_wait_ms": 200,
        }))
    }

    /// Claims hand out the queue; an empty queue is a 200 ms long-poll.
    fn claim(queue: &mut VecDeque<Value>, req: &Request) -> Reply {
        let max = req.body["max_tasks"].as_u64().unwrap_or(0) as usize;
        assert!(max >= 1, "claims ask for at least one task: {:?}", req.body);
        let n = max.min(queue.len());
        let tasks: Vec<Value> = queue.drain(..n).collect();
        let mut reply = Reply::ok(json!({ "tasks": tasks, "drain": false }));
        if n == 0 {
            reply.delay = Duration::from_millis(200);
        }
        reply
    }

    fn accept_all(results: &mut Vec<TaskResult>, req: &Request) -> Reply {
        let batch: Vec<TaskResult> =
            serde_json::from_value(req.body["results"].clone()).expect("results parse");
        let acks: Vec<Value> = batch
            .iter()
            .map(|r| json!({"task_id": r.task_id, "status": "accepted"}))
            .collect();
        results.extend(batch);
        Reply::ok(json!({ "results": acks }))
    }

    #[derive(Default)]
    struct World {
        queue: VecDeque<Value>,
        results: Vec<TaskResult>,
        heartbeats: Vec<Vec<Lease>>,
        cancel_sent: bool,
        max_claim: u64,
        deregistered: bool,
        registers: u32,
        tokens_seen: Vec<String>,
    }

    #[tokio::test]
    async fn runs_cancels_and_releases_tasks() {
        let world = Arc::new(Mutex::new(World::default()));
        {
            let mut w = world.lock().expect("lock");
            w.queue.push_back(assignment(1, "echo", json!({"hi": 1})));
            w.queue
                .push_back(assignment(2, "sleep", json!({"ms": 60_000})));
            w.queue
                .push_back(assignment(4, "sleep", json!({"ms": 60_000})));
            w.queue.push_back(assignment(3, "nope", Value::Null));
        }
        let w2 = Arc::clone(&world);
        let server = FakeServer::start(move |req| {
            let mut w = w2.lock().expect("lock");
            if req.path != "/api/v1/agent/register" {
                assert_eq!(req.token, "s1", "session calls use the session token");
            }
            match req.path.as_str() {
                "/api/v1/agent/register" => {
                    assert_eq!(req.token, "enroll");
                    assert_eq!(req.body["task_types"], json!(["echo", "sleep"]));
                    assert_eq!(req.body["capacity"], json!(3));
                    registered("s1")
                }
                "/api/v1/agent/claim" => {
                    let max = req.body["max_tasks"].as_u64().unwrap_or(0);
                    w.max_claim = w.max_claim.max(max);
                    claim(&mut w.queue, req)
                }
                "/api/v1/agent/heartbeat" => {
                    let running: Vec<Lease> =
                        serde_json::from_value(req.body["running"].clone()).expect("leases");
                    let cancel = if !w.cancel_sent && running.iter().any(|l| l.task_id == 4) {
                        w.cancel_sent = true;
                        vec![4]
                    } else {
                        vec![]
                    };
                    w.heartbeats.push(running);
                    Reply::ok(json!({ "cancel": cancel, "drain": false }))
                }
                "/api/v1/agent/results" => accept_all(&mut w.results, req),
                "/api/v1/agent/deregister" => {
                    w.deregistered = true;
                    Reply::ok(json!({"ok": true}))
                }
                other => panic!("unexpected path {other}"),
            }
        })
        .await;

        let dir = TempDir::new("agent-e2e");
        let (stop, signals) = Signals::manual();
        let agent = tokio::spawn(run_until(settings(&server.url, &dir, 3), signals));

        eventually(10, "echo and no-handler results", || {
            let w = world.lock().expect("lock");
            let ids: Vec<i64> = w.results.iter().map(|r| r.task_id).collect();
            ids.contains(&1) && ids.contains(&3) && w.cancel_sent
        })
        .await;
        eventually(10, "a heartbeat without the cancelled task", || {
            let w = world.lock().expect("lock");
            w.heartbeats.last().is_some_and(|l| {
                l == &vec![Lease {
                    task_id: 2,
                    lease_token: 20,
                }]
            })
        })
        .await;

        stop.send("test").expect("agent listening");
        tokio::time::timeout(Duration::from_secs(10), agent)
            .await
            .expect("shuts down in time")
            .expect("no panic")
            .expect("clean exit");

        let w = world.lock().expect("lock");
        assert_eq!(w.max_claim, 3, "the first claim asks for every free slot");
        assert!(w.deregistered);
        let by_id = |id: i64| {
            w.results
                .iter()
                .filter(|r| r.task_id == id)
                .collect::<Vec<_>>()
        };
        assert_eq!(by_id(1).len(), 1);
        assert_eq!(
            by_id(1)[0].outcome,
            Outcome::Succeeded {
                output: json!({"hi": 1})
            }
        );
        assert_eq!(by_id(1)[0].lease_token, 10);
        assert!(by_id(1)[0].started_at_us.is_some() && by_id(1)[0].finished_at_us.is_some());
        assert!(
            matches!(&by_id(3)[0].outcome, Outcome::Failed { error, .. } if error.contains("no handler")),
            "{:?}",
            by_id(3)
        );
        assert_eq!(
            by_id(2)[0].outcome,
            Outcome::Released {
                reason: SHUTDOWN_REASON.into()
            }
        );
        assert!(by_id(4).is_empty(), "cancelled tasks are not reported");
        let outbox = std::fs::read_to_string(dir.0.join(crate::outbox::FILE_NAME)).expect("outbox");
        assert_eq!(outbox, "", "everything delivered, outbox empty");
    }

    #[tokio::test]
    async fn results_survive_an_outage_and_a_restart_and_401_re_registers() {
        let dir = TempDir::new("agent-outbox");

        // Run 1: results cannot be delivered.
        let world = Arc::new(Mutex::new(World::default()));
        world
            .lock()
            .expect("lock")
            .queue
            .push_back(assignment(10, "echo", json!("kept")));
        let w2 = Arc::clone(&world);
        let server = FakeServer::start(move |req| {
            let mut w = w2.lock().expect("lock");
            match req.path.as_str() {
                "/api/v1/agent/register" => registered("s1"),
                "/api/v1/agent/claim" => claim(&mut w.queue, req),
                "/api/v1/agent/heartbeat" => Reply::ok(json!({"cancel": [], "drain": false})),
                "/api/v1/agent/results" => {
                    w.registers += 1; // counts failed deliveries here
                    Reply::status(503)
                }
                _ => Reply::status(503),
            }
        })
        .await;
        let (stop, signals) = Signals::manual();
        let agent = tokio::spawn(run_until(settings(&server.url, &dir, 2), signals));
        eventually(10, "a failed delivery", || {
            world.lock().expect("lock").registers >= 2
        })
        .await;
        stop.send("test").expect("agent listening");
        tokio::time::timeout(Duration::from_secs(10), agent)
            .await
            .expect("shuts down in time")
            .expect("no panic")
            .expect("a server outage is not an error");
        drop(server);
        let outbox = std::fs::read_to_string(dir.0.join(crate::outbox::FILE_NAME)).expect("outbox");
        assert!(
            outbox.contains("\"task_id\":10"),
            "kept in the outbox: {outbox:?}"
        );

        // Run 2: the server forgets the first session; the agent registers
        // again and delivers the outbox.
        let world = Arc::new(Mutex::new(World::default()));
        let w2 = Arc::clone(&world);
        let server = FakeServer::start(move |req| {
            let mut w = w2.lock().expect("lock");
            w.tokens_seen.push(req.token.clone());
            if req.path == "/api/v1/agent/register" {
                w.registers += 1;
                return registered(&format!("s{}", w.registers));
            }
            if req.token == "s1" {
                return Reply::status(401);
            }
            match req.path.as_str() {
                "/api/v1/agent/claim" => claim(&mut w.queue, req),
                "/api/v1/agent/heartbeat" => Reply::ok(json!({"cancel": [], "drain": false})),
                "/api/v1/agent/results" => accept_all(&mut w.results, req),
                "/api/v1/agent/deregister" => {
                    w.deregistered = true;
                    Reply::ok(json!({"ok": true}))
                }
                other => panic!("unexpected path {other}"),
            }
        })
        .await;
        let (stop, signals) = Signals::manual();
        let agent = tokio::spawn(run_until(settings(&server.url, &dir, 2), signals));
        eventually(10, "the outbox delivered", || {
            !world.lock().expect("lock").results.is_empty()
        })
        .await;
        stop.send("test").expect("agent listening");
        tokio::time::timeout(Duration::from_secs(10), agent)
            .await
            .expect("shuts down in time")
            .expect("no panic")
            .expect("clean exit");

        let w = world.lock().expect("lock");
        assert_eq!(
            w.registers, 2,
            "one registration, one renewal after the 401"
        );
        assert_eq!(w.results.len(), 1);
        assert_eq!(w.results[0].task_id, 10);
        assert_eq!(
            w.results[0].outcome,
            Outcome::Succeeded {
                output: json!("kept")
            }
        );
        assert!(w.deregistered);
        let outbox = std::fs::read_to_string(dir.0.join(crate::outbox::FILE_NAME)).expect("outbox");
        assert_eq!(outbox, "");
    }

    /// Log shipping never holds a task up: with a server that takes log
    /// lines but answers only after a minute, a command task's result
    /// still arrives within the final flush's bound. The margin is wide
    /// (a loaded CI machine starts processes slowly) yet far below the
    /// minute the logs call would hold it.
    #[tokio::test]
    async fn a_server_slow_to_take_logs_does_not_hold_tasks_up() {
        use crate::config::CommandConfig;
        let world = Arc::new(Mutex::new(World::default()));
        world
            .lock()
            .expect("lock")
            .queue
            .push_back(assignment(1, "talk", Value::Null));
        let logged = Arc::new(Mutex::new(Vec::<Value>::new()));
        let (w2, l2) = (Arc::clone(&world), Arc::clone(&logged));
        let server = FakeServer::start(move |req| {
            let mut w = w2.lock().expect("lock");
            match req.path.as_str() {
                "/api/v1/agent/register" => registered("s1"),
                "/api/v1/agent/claim" => claim(&mut w.queue, req),
                "/api/v1/agent/heartbeat" => Reply::ok(json!({"cancel": [], "drain": false})),
                "/api/v1/agent/results" => accept_all(&mut w.results, req),
                "/api/v1/agent/logs" => {
                    l2.lock().expect("lock").push(req.body.clone());
                    let mut hang = Reply::ok(json!({"tasks": []}));
                    hang.delay = Duration::from_secs(60);
                    hang
                }
                "/api/v1/agent/deregister" => Reply::ok(json!({"ok": true})),
                other => panic!("unexpected path {other}"),
            }
        })
        .await;
        let dir = TempDir::new("agent-logs");
        let mut settings = settings(&server.url, &dir, 1);
        settings.handlers.insert(
            "talk".into(),
            HandlerConfig::Command(CommandConfig {
                program: "sh".into(),
                args: vec!["-c".into(), "echo hi; sleep 0.3; echo there >&2".into()],
                env: BTreeMap::new(),
                pass_env: vec![],
                workdir: None,
                timeout_ms: None,
            }),
        );
        let (stop, signals) = Signals::manual();
        let started = std::time::Instant::now();
        let agent = tokio::spawn(run_until(settings, signals));
        eventually(30, "the result", || {
            !world.lock().expect("lock").results.is_empty()
        })
        .await;
        let took = started.elapsed();
        assert!(
            took < crate::logs::FINAL_FLUSH_WAIT + Duration::from_secs(15),
            "the result waited {took:?} for the logs"
        );
        assert_eq!(
            world.lock().expect("lock").results[0].outcome,
            Outcome::Succeeded {
                output: json!("hi")
            }
        );
        let first = logged.lock().expect("lock")[0].clone();
        assert_eq!(first["tasks"][0]["task_id"], json!(1));
        assert_eq!(first["tasks"][0]["lease_token"], json!(10));
        assert_eq!(first["tasks"][0]["lines"][0]["line"], json!("hi"));
        stop.send("test").expect("agent listening");
        tokio::time::timeout(Duration::from_secs(10), agent)
            .await
            .expect("shuts down in time")
            .expect("no panic")
            .expect("clean exit");
    }

    #[tokio::test]
    async fn a_refused_enrollment_token_is_fatal() {
        let server = FakeServer::start(|_| Reply::status(401)).await;
        let dir = TempDir::new("agent-401");
        let (_stop, signals) = Signals::manual();
        let e = run_until(settings(&server.url, &dir, 1), signals)
            .await
            .expect_err("cannot run without registering");
        assert!(
            e.to_string().contains("refused the enrollment token"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_signal_while_the_server_is_down_exits_cleanly() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let url = format!("http://{}/", listener.local_addr().expect("address"));
        drop(listener);
        let dir = TempDir::new("agent-down");
        let (stop, signals) = Signals::manual();
        let agent = tokio::spawn(run_until(settings(&url, &dir, 1), signals));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !agent.is_finished(),
            "keeps retrying while the server is down"
        );
        stop.send("test").expect("agent listening");
        tokio::time::timeout(Duration::from_secs(5), agent)
            .await
            .expect("stops promptly")
            .expect("no panic")
            .expect("clean exit");
    }
}
