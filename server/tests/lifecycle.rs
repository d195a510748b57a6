//! Processes starting and stopping: graceful shutdown of the server and of
//! agents, and results that survive the server being away.

mod support;

use std::time::{Duration, Instant};

use drover_protocol::api::{AgentStatus, TaskStatus};
use serde_json::json;
use support::{
    agent_config, eventually, fast_timeouts, new_task, AgentProcess, Backend, Database, RawAgent,
    Server,
};

fn env() -> Vec<(&'static str, &'static str)> {
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo,sleep"));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stops_promptly_on_sigterm_while_agents_long_poll() {
    let db = Database::new(Backend::Sqlite).await;
    let mut server = Server::start(&db, &env()).await;
    let agent = RawAgent::register(&server, "poller", 1, &["echo"]).await;
    let poll = tokio::spawn(async move { agent.claim(1, 30_000).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        poll.await.unwrap().is_empty(),
        "the parked claim was answered with no work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_finishes_its_work_and_deregisters_on_sigterm() {
    let db = Database::new(Backend::Sqlite).await;
    let server = Server::start(&db, &env()).await;
    let mut agent = AgentProcess::start(&server, db.dir(), "worker", &agent_config(2, &[]));
    let id = server
        .submit(vec![new_task("sleep", json!({"ms": 1500}))])
        .await[0];
    eventually(Duration::from_secs(10), "task running", || async {
        (server.task(id).await.task.status == TaskStatus::Running).then_some(())
    })
    .await;
    let status = agent.stop(Duration::from_secs(15)).expect("agent exited");
    assert!(
        status.success(),
        "agent exit status {status}:\n{}",
        agent.log_text()
    );
    let t = server.task(id).await;
    assert_eq!(
        t.task.status,
        TaskStatus::Succeeded,
        "the running task was finished, not dropped"
    );
    assert_eq!(server.agents().await[0].status, AgentStatus::Deregistered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_hands_back_what_it_cannot_finish_within_the_grace_period() {
    let db = Database::new(Backend::Sqlite).await;
    let server = Server::start(&db, &env()).await;
    let mut agent = AgentProcess::start_with(
        &server,
        db.dir(),
        "worker",
        &agent_config(1, &[]),
        &["--shutdown-grace-ms", "300"],
    );
    let id = server
        .submit(vec![new_task("sleep", json!({"ms": 60_000}))])
        .await[0];
    eventually(Duration::from_secs(10), "task running", || async {
        (server.task(id).await.task.status == TaskStatus::Running).then_some(())
    })
    .await;
    let status = agent.stop(Duration::from_secs(15)).expect("agent exited");
    assert!(
        status.success(),
        "agent exit status {status}:\n{}",
        agent.log_text()
    );
    let t = server.task(id).await;
    assert_eq!(
        t.task.status,
        TaskStatus::Queued,
        "handed back for another agent"
    );
    assert_eq!(t.task.attempts, 0, "a released attempt does not count");
    assert_eq!(t.attempt_history[0].outcome, "released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keeps_results_while_the_server_is_down_and_delivers_them_later() {
    let db = Database::new(Backend::Sqlite).await;
    let mut server = Server::start(&db, &env()).await;
    let _agent = AgentProcess::start(&server, db.dir(), "worker", &agent_config(4, &[]));
    let ids = server
        .submit(
            (0..4)
                .map(|_| new_task("sleep", json!({"ms": 1500})))
                .collect(),
        )
        .await;
    eventually(Duration::from_secs(10), "tasks running", || async {
        (server.stats().await.running == 4).then_some(())
    })
    .await;
    // The server dies while the tasks run; they finish while it is away.
    server.kill();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.restart().await;
    let stats = server.wait_finished(4, Duration::from_secs(20)).await;
    assert_eq!(stats.succeeded, 4);
    for id in ids {
        let t = server.task(id).await;
        assert_eq!(
            t.attempt_history.len(),
            1,
            "delivered late under the original lease, not rerun"
        );
    }
}

/// SIGTERM with a dashboard's event stream open and an agent mid-task:
/// the server exits cleanly within seconds, and as the leader it stopped
/// its duties first, so it did not mark the agent (which it could no
/// longer hear) offline or requeue its task on the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stops_promptly_on_sigterm_with_an_event_stream_open_and_spares_its_agents() {
    let db = Database::new(Backend::Sqlite).await;
    let mut server = Server::start(&db, &env()).await;
    let _agent = AgentProcess::start(&server, db.dir(), "worker", &agent_config(2, &[]));
    let id = server
        .submit(vec![new_task("sleep", json!({"ms": 60_000}))])
        .await[0];
    eventually(Duration::from_secs(10), "task running", || async {
        (server.task(id).await.task.status == TaskStatus::Running).then_some(())
    })
    .await;
    let events = server
        .http
        .get(format!("{}/api/v1/events", server.url))
        .bearer_auth(support::API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status().as_u16(), 200);
    let started = Instant::now();
    // Longer than the heartbeat timeout (2 s): a server that kept its
    // duties running while no longer answering would sweep the agent.
    let status = server.stop_within(Duration::from_secs(8)).await;
    let took = started.elapsed();

    let store = drover_engine::Store::connect(&db.url, 1).await.unwrap();
    use drover_engine::store::QueueStore;
    let agents = store.list_agents().await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(
        agents[0].status,
        AgentStatus::Online,
        "the stopping leader must not mark its agents offline"
    );
    let task = store.get_task(id).await.unwrap().unwrap();
    assert_eq!(
        task.task.status,
        TaskStatus::Running,
        "the stopping leader must not requeue its agents' tasks"
    );
    let status = status.unwrap_or_else(|| panic!("still running after {took:?}"));
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
