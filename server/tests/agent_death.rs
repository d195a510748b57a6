//! A handler never outlives its agent: when `drover-agent` is killed with
//! `kill -9`, the `command` handlers it started die with it, grandchildren
//! included, so their side effects do not happen after the agent is gone
//! (and then a second time on the agent that gets the task next). And an
//! agent drained before it died comes back drained.

#![cfg(target_os = "linux")]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use drover_protocol::api::{AgentStatus, TaskStatus};
use serde_json::json;
use support::{
    agent_config, eventually, fast_timeouts, new_task, AgentProcess, Backend, Database, Server,
};

/// Whether `pid` is gone (or a zombie nobody reaped yet).
fn is_dead(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// A command handler that records its own pid and its child's, writes
/// `started`, then `finished` 5 s later, from the shell after its child ends.
fn config(dir: &Path) -> String {
    format!(
        r#"capacity = 1

[handlers.side]
kind = "command"
program = "sh"
args = ["-c", "sleep 5 & echo $! >> \"$DIR/pids\"; echo $$ >> \"$DIR/pids\"; echo started >> \"$DIR/log\"; wait; echo finished >> \"$DIR/log\""]
env = {{ DIR = "{}" }}
"#,
        dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_handlers_die_with_their_agent() {
    let db = Database::new(Backend::Sqlite).await;
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "side"));
    let server = Server::start(&db, &env).await;
    let work = db.dir().join("side");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut agent = AgentProcess::start(&server, db.dir(), "mortal", &config(&work));
    server.submit(vec![new_task("side", json!({}))]).await;

    let log = work.join("log");
    eventually(Duration::from_secs(30), "the handler to start", || async {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("started"))
    })
    .await;
    let killed_at = Instant::now();
    agent.kill();

    let pids = std::fs::read_to_string(work.join("pids")).expect("the handler wrote its pids");
    let pids: Vec<&str> = pids.split_whitespace().collect();
    assert_eq!(pids.len(), 2, "the shell and its sleep: {pids:?}");
    eventually(
        Duration::from_secs(3),
        "the handler's processes to die",
        || async { pids.iter().all(|p| is_dead(p)).then_some(()) },
    )
    .await;

    // Past the moment the handler would have finished.
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(killed_at.elapsed())).await;
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        text,
        "started\n",
        "the handler went on after its agent died:\n{}",
        agent.log_text()
    );
    for pid in &pids {
        assert!(is_dead(pid), "handler process {pid} is still alive");
    }
}

async fn status_of(server: &Server, name: &str) -> Option<AgentStatus> {
    let agents = server.agents().await;
    agents.iter().find(|a| a.name == name).map(|a| a.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_agent_killed_and_restarted_comes_back_drained() {
    let db = Database::new(Backend::Sqlite).await;
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo,sleep"));
    let server = Server::start(&db, &env).await;
    let mut agent = AgentProcess::start(&server, db.dir(), "cordoned", &agent_config(1, &[]));
    let id = eventually(Duration::from_secs(20), "the agent online", || async {
        let agents = server.agents().await;
        agents
            .iter()
            .find(|a| a.name == "cordoned" && a.status == AgentStatus::Online)
            .map(|a| a.id)
    })
    .await;
    let (status, body) = server
        .post(&format!("/api/v1/agents/{id}/drain"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");

    // kill -9, silent past the heartbeat timeout, then started again with
    // the same state directory (its key): it resumes as itself, drained.
    agent.kill();
    eventually(Duration::from_secs(20), "the agent offline", || async {
        (status_of(&server, "cordoned").await == Some(AgentStatus::Offline)).then_some(())
    })
    .await;
    agent.restart();
    eventually(Duration::from_secs(20), "the agent back", || async {
        let status = status_of(&server, "cordoned").await;
        (status != Some(AgentStatus::Offline)).then_some(())
    })
    .await;
    assert_eq!(
        status_of(&server, "cordoned").await,
        Some(AgentStatus::Draining)
    );
    let task = server.submit(vec![new_task("echo", json!({}))]).await[0];
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(server.task(task).await.task.status, TaskStatus::Queued);
    assert_eq!(
        server.agents().await.len(),
        1,
        "the same agent, not a new one"
    );
}
