//! The queue end to end: real server and agent processes over HTTP, on
//! SQLite and on PostgreSQL.

#[macro_use]
mod support;

use std::collections::HashSet;
use std::time::Duration;

use drover_protocol::api::{NewTask, TaskStatus};
use serde_json::json;
use support::{
    agent_config, eventually, fast_timeouts, new_task, AgentProcess, Backend, Database, RawAgent,
    Server,
};

on_both!(
    tasks_run_in_priority_order,
    capacity_is_never_exceeded,
    least_loaded_agent_gets_the_work,
    killed_agents_task_is_requeued_and_finished_by_another,
    stale_result_gets_409_and_the_task_completes_once,
    server_restart_loses_no_task,
    failing_command_is_retried_then_failed_with_its_stderr,
    cancelled_running_task_is_stopped_on_the_agent,
);

fn with_types(env: &mut Vec<(&'static str, &'static str)>) {
    env.push(("DROVER_TASK_TYPES", "echo,sleep,flaky,fail"));
}

async fn tasks_run_in_priority_order(backend: Backend) {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    with_types(&mut env);
    let server = Server::spawn_app(&db, &env).await;
    // Queue first, then one single-slot agent drains the queue in P order.
    let specs: Vec<(i64, i64, i64)> = vec![
        (1, 0, 0),
        (9, 9, 9),
        (5, 0, 0),
        (5, 5, 0),
        (0, 0, 10),
        (9, 9, 9),
    ];
    let tasks: Vec<NewTask> = specs
        .iter()
        .map(|&(u, t, i)| NewTask {
            urgency: Some(u),
            time_sensitivity: Some(t),
            importance: Some(i),
            ..new_task("echo", json!({}))
        })
        .collect();
    let ids = server.submit(tasks).await;
    let _agent = AgentProcess::start(&server, db.dir(), "solo", &agent_config(1, &[]));
    server
        .wait_finished(ids.len() as i64, Duration::from_secs(30))
        .await;
    let mut started = Vec::new();
    for id in &ids {
        let t = server.task(*id).await;
        assert_eq!(t.task.status, TaskStatus::Succeeded);
        started.push((t.task.started_at_us.unwrap(), *id));
    }
    started.sort();
    let order: Vec<i64> = started.iter().map(|(_, id)| *id).collect();
    // P: 1, 27, 5, 10, 10, 27 -> 27 (older first), 27, 10 (older first), 10, 5, 1.
    assert_eq!(order, vec![ids[1], ids[5], ids[3], ids[4], ids[2], ids[0]]);
}

async fn capacity_is_never_exceeded(backend: Backend) {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    with_types(&mut env);
    let server = Server::spawn_app(&db, &env).await;
    let _agent = AgentProcess::start(&server, db.dir(), "three", &agent_config(3, &[]));
    let ids = server
        .submit(
            (0..15)
                .map(|_| new_task("sleep", json!({"ms": 150})))
                .collect(),
        )
        .await;
    let mut max_seen = 0;
    loop {
        let agents = server.agents().await;
        if let Some(a) = agents.first() {
            assert!(
                a.running <= 3,
                "agent ran {} tasks with capacity 3",
                a.running
            );
            max_seen = max_seen.max(a.running);
        }
        let s = server.stats().await;
        if s.succeeded == 15 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(max_seen, 3, "the agent used its capacity");
    // From the recorded attempts: never more than 3 overlapping.
    let mut edges = Vec::new();
    for id in ids {
        let a = &server.task(id).await.attempt_history[0];
        edges.push((a.claimed_at_us, 1));
        edges.push((a.finished_at_us.unwrap(), -1));
    }
    edges.sort();
    let mut running = 0;
    for (_, d) in edges {
        running += d;
        assert!(running <= 3);
    }
}

async fn least_loaded_agent_gets_the_work(backend: Backend) {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    with_types(&mut env);
    // A process: the test reads its claim-waiters gauge, which is
    // process-wide (apps in one process would share it).
    let server = Server::start(&db, &env).await;
    let a = AgentProcess::start(&server, db.dir(), "busy", &agent_config(4, &["a"]));
    let b = AgentProcess::start(&server, db.dir(), "idle", &agent_config(4, &["b"]));
    eventually(Duration::from_secs(10), "two agents online", || async {
        (server.agents().await.len() == 2).then_some(())
    })
    .await;
    // Load A to 3/4 and B to 1/4 with long tasks pinned by label.
    let pinned = |label: &str| NewTask {
        required_labels: vec![label.into()],
        ..new_task("sleep", json!({"ms": 20_000}))
    };
    server
        .submit(vec![pinned("a"), pinned("a"), pinned("a"), pinned("b")])
        .await;
    eventually(Duration::from_secs(10), "loads 0.75 and 0.25", || async {
        let agents = server.agents().await;
        let load = |n: &str| agents.iter().find(|x| x.name == n).map(|x| x.load);
        (load("busy") == Some(0.75) && load("idle") == Some(0.25)).then_some(())
    })
    .await;
    // Free work now goes to the less loaded agent, every time.
    for _ in 0..3 {
        // Once both have asked for more: the least-loaded agent is chosen
        // among the agents waiting for work, and one that has just been
        // handed a task is not waiting until its next claim arrives.
        eventually(
            Duration::from_secs(10),
            "both agents' claims parked",
            || async { (server.claim_waiters().await == Some(2)).then_some(()) },
        )
        .await;
        let id = server.submit(vec![new_task("echo", json!({}))]).await[0];
        let t = eventually(Duration::from_secs(10), "echo done", || async {
            let t = server.task(id).await;
            (t.task.status == TaskStatus::Succeeded).then_some(t)
        })
        .await;
        let idle = server
            .agents()
            .await
            .into_iter()
            .find(|x| x.name == "idle")
            .unwrap();
        assert_eq!(
            t.task.agent_id,
            Some(idle.id),
            "went to the agent with L = 0.25"
        );
        assert_eq!(t.attempt_history[0].agent_load, 0.25);
    }
    drop((a, b));
}

async fn killed_agents_task_is_requeued_and_finished_by_another(backend: Backend) {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    with_types(&mut env);
    let server = Server::spawn_app(&db, &env).await;
    let mut first = AgentProcess::start(&server, db.dir(), "doomed", &agent_config(1, &[]));
    // `flaky` hangs on its first attempt only.
    let id = server.submit(vec![new_task("flaky", json!({}))]).await[0];
    eventually(Duration::from_secs(10), "task running", || async {
        (server.task(id).await.task.status == TaskStatus::Running).then_some(())
    })
    .await;
    first.kill();
    let _second = AgentProcess::start(&server, db.dir(), "rescuer", &agent_config(1, &[]));
    let t = eventually(
        Duration::from_secs(20),
        "task finished by the second agent",
        || async {
            let t = server.task(id).await;
            (t.task.status == TaskStatus::Succeeded).then_some(t)
        },
    )
    .await;
    assert_eq!(t.task.result, Some(json!({"attempt": 2})));
    let outcomes: Vec<&str> = t
        .attempt_history
        .iter()
        .map(|a| a.outcome.as_str())
        .collect();
    assert_eq!(outcomes, vec!["lost", "succeeded"]);
    let agents = server.agents().await;
    let doomed = agents.iter().find(|a| a.name == "doomed").unwrap();
    assert_eq!(doomed.status, drover_protocol::api::AgentStatus::Offline);
    assert_ne!(t.attempt_history[0].agent_id, t.attempt_history[1].agent_id);
}

async fn stale_result_gets_409_and_the_task_completes_once(backend: Backend) {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    with_types(&mut env);
    let server = Server::spawn_app(&db, &env).await;
    let slow = RawAgent::register(&server, "slow", 1, &["echo"]).await;
    let id = server.submit(vec![new_task("echo", json!({}))]).await[0];
    let (task, old_token) = slow.claim(1, 5_000).await[0];
    assert_eq!(task, id);
    // `slow` never heartbeats: it goes offline and the task is requeued.
    let fast = RawAgent::register(&server, "fast", 1, &["echo"]).await;
    let claimed = eventually(Duration::from_secs(15), "task reassigned", || async {
        fast.post("heartbeat", json!({ "running": [] })).await;
        let c = fast.claim(1, 500).await;
        (!c.is_empty()).then_some(c)
    })
    .await;
    let (task, new_token) = claimed[0];
    assert_eq!(task, id);
    let (status, body) = slow.succeed(id, old_token).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["results"][0]["status"], "stale");
    assert_eq!(
        server.task(id).await.task.status,
        TaskStatus::Running,
        "the stale result changed nothing"
    );
    assert_eq!(fast.succeed(id, new_token).await.0, 200);
    assert_eq!(
        fast.succeed(id, new_token).await.0,
        409,
        "a repeat is refused too"
    );
    let t = server.task(id).await;
    assert_eq!(t.task.status, TaskStatus::Succeeded);
    assert_eq!(t.task.result, Some(json!({"by": fast.id})));
    assert_eq!(t.events.iter().filter(|e| e.kind == "succeeded").count(), 1);
}

async fn server_restart_loses_no_task(backend: Backend) {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    with_types(&mut env);
    // A process: the restart is a kill -9.
    let mut server = Server::start(&db, &env).await;
    let mut ids: HashSet<i64> = server
        .submit(
            (0..200)
                .map(|i| new_task("echo", json!({ "i": i })))
                .collect(),
        )
        .await
        .into_iter()
        .collect();
    let _agent = AgentProcess::start(&server, db.dir(), "worker", &agent_config(8, &[]));
    // Crash the server while work flows, then bring it back on the same port.
    ids.extend(
        server
            .submit(
                (0..200)
                    .map(|i| new_task("sleep", json!({ "ms": 5, "i": i })))
                    .collect(),
            )
            .await,
    );
    server.restart().await;
    ids.extend(
        server
            .submit(
                (0..100)
                    .map(|i| new_task("echo", json!({ "late": i })))
                    .collect(),
            )
            .await,
    );
    assert_eq!(ids.len(), 500);
    let stats = server.wait_finished(500, Duration::from_secs(60)).await;
    assert_eq!(
        (stats.succeeded, stats.failed, stats.queued, stats.running),
        (500, 0, 0, 0)
    );
}

async fn failing_command_is_retried_then_failed_with_its_stderr(backend: Backend) {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    with_types(&mut env);
    let server = Server::spawn_app(&db, &env).await;
    let _agent = AgentProcess::start(&server, db.dir(), "worker", &agent_config(2, &[]));
    let task = NewTask {
        max_attempts: Some(3),
        retry_backoff_ms: Some(50),
        ..new_task("fail", json!({}))
    };
    let id = server.submit(vec![task]).await[0];
    let t = eventually(Duration::from_secs(20), "task failed", || async {
        let t = server.task(id).await;
        (t.task.status == TaskStatus::Failed).then_some(t)
    })
    .await;
    assert_eq!(t.task.attempts, 3);
    assert_eq!(t.attempt_history.len(), 3);
    let error = t.task.error.unwrap_or_default();
    assert!(
        error.contains("exit code 3") && error.contains("disk on fire"),
        "{error}"
    );
}

async fn cancelled_running_task_is_stopped_on_the_agent(backend: Backend) {
    let db = Database::new(backend).await;
    let mut env = fast_timeouts();
    with_types(&mut env);
    let server = Server::spawn_app(&db, &env).await;
    let _agent = AgentProcess::start(&server, db.dir(), "worker", &agent_config(1, &[]));
    let long = server
        .submit(vec![new_task("sleep", json!({"ms": 60_000}))])
        .await[0];
    eventually(Duration::from_secs(10), "long task running", || async {
        (server.task(long).await.task.status == TaskStatus::Running).then_some(())
    })
    .await;
    let (status, _) = server
        .post(&format!("/api/v1/tasks/{long}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    // The slot frees at once and the agent stops the task on its next heartbeat,
    // so the single-slot agent can run the next task well before 60 s.
    let next = server.submit(vec![new_task("echo", json!({}))]).await[0];
    eventually(Duration::from_secs(10), "next task done", || async {
        (server.task(next).await.task.status == TaskStatus::Succeeded).then_some(())
    })
    .await;
    assert_eq!(server.task(long).await.task.status, TaskStatus::Cancelled);
}
