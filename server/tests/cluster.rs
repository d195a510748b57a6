//! Several server instances on one PostgreSQL database.

mod support;

use std::time::Duration;

use serde_json::json;
use sqlx::Row;
use support::{
    agent_config, eventually, fast_timeouts, new_task, AgentProcess, Backend, Database, RawAgent,
    Server,
};

/// Two server instances on one fresh PostgreSQL database (the database
/// comes first: it must outlive the servers).
async fn two_instances(env: &[(&str, &str)]) -> (Database, Server, Server) {
    let db = Database::new(Backend::Postgres).await;
    let one = Server::start(&db, env).await;
    let two = Server::start(&db, env).await;
    (db, one, two)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_hand_one_task_to_two_agents() {
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo"));
    let (db, one, two) = two_instances(&env).await;
    let _agents: Vec<AgentProcess> = (0..4)
        .map(|i| {
            let server = if i % 2 == 0 { &one } else { &two };
            AgentProcess::start(server, db.dir(), &format!("w{i}"), &agent_config(16, &[]))
        })
        .collect();
    const TASKS: usize = 4_000;
    for chunk in 0..(TASKS / 500) {
        let server = if chunk % 2 == 0 { &one } else { &two };
        server
            .submit(
                (0..500)
                    .map(|i| new_task("echo", json!({ "chunk": chunk, "i": i })))
                    .collect(),
            )
            .await;
    }
    let stats = one
        .wait_finished(TASKS as i64, Duration::from_secs(120))
        .await;
    assert_eq!(stats.succeeded, TASKS as i64);
    let mut conn = db.pg().await;
    let claimed_twice: i64 = sqlx::query_scalar("SELECT count(*) FROM (SELECT task_id FROM task_attempts GROUP BY task_id HAVING count(*) > 1) d")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(claimed_twice, 0, "a task was claimed more than once");
    let per_agent =
        sqlx::query("SELECT agent_id, count(*) AS n FROM task_attempts GROUP BY agent_id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        per_agent.len(),
        4,
        "all four agents, behind both instances, took work"
    );
    let total: i64 = per_agent.iter().map(|r| r.get::<i64, _>("n")).sum();
    assert_eq!(total, TASKS as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_instance_takes_over_the_duties_when_the_leader_dies() {
    let db = Database::new(Backend::Postgres).await;
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo"));
    let mut first = Server::start(&db, &env).await;
    eventually(Duration::from_secs(10), "first instance leads", || async {
        first.status().await.filter(|s| s.leader).map(|_| ())
    })
    .await;
    let second = Server::start(&db, &env).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !second.status().await.unwrap().leader,
        "one leader at a time"
    );

    // An agent of the second instance claims a task and then falls silent.
    let silent = RawAgent::register(&second, "silent", 1, &["echo"]).await;
    let id = second.submit(vec![new_task("echo", json!({}))]).await[0];
    assert_eq!(silent.claim(1, 2_000).await[0].0, id);
    first.kill();

    eventually(Duration::from_secs(10), "second instance leads", || async {
        second.status().await.filter(|s| s.leader).map(|_| ())
    })
    .await;
    // The new leader runs the duties: the silent agent goes offline and its task is requeued.
    let t = eventually(
        Duration::from_secs(10),
        "task requeued by the new leader",
        || async {
            let t = second.task(id).await;
            (t.task.status == drover_protocol::api::TaskStatus::Queued).then_some(t)
        },
    )
    .await;
    assert_eq!(t.attempt_history[0].outcome, "lost");
    let agents = second.agents().await;
    assert_eq!(agents[0].status, drover_protocol::api::AgentStatus::Offline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_submitted_to_one_instance_wakes_an_agent_polling_another() {
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo"));
    let (_db, one, two) = two_instances(&env).await;
    let agent = RawAgent::register(&two, "poller", 1, &["echo"]).await;
    let waiting = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let got = agent.claim(1, 20_000).await;
        (got, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = one.submit(vec![new_task("echo", json!({}))]).await[0];
    let (got, waited) = waiting.await.unwrap();
    assert_eq!(got[0].0, id);
    assert!(
        waited < Duration::from_secs(2),
        "woken by NOTIFY, not by a timeout ({waited:?})"
    );
}

/// A step's task is created by the instance that recorded its predecessor's
/// result; an agent long-polling another instance must hear of it at once
/// (through `NOTIFY`), not at that instance's next periodic round (~1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_made_ready_on_one_instance_wakes_an_agent_polling_another() {
    let (_db, one, two) = two_instances(&[("DROVER_TASK_TYPES", "echo")]).await;
    let steps: Vec<serde_json::Value> = (0..4)
        .map(|i| {
            let after: Vec<String> = (i > 0).then(|| format!("s{}", i - 1)).into_iter().collect();
            json!({ "id": format!("s{i}"), "type": "task", "task_type": "echo", "depends_on": after })
        })
        .collect();
    let (status, body) = one
        .post(
            "/api/v1/workflows",
            &json!({ "name": "hops", "steps": steps }),
        )
        .await;
    assert!(status == 200 || status == 201, "{body}");
    let (status, run) = one
        .post("/api/v1/runs", &json!({ "workflow": "hops" }))
        .await;
    assert_eq!(status, 201, "{run}");
    // The agents take turns: each step is finished through one instance while
    // the agent that gets the next step waits on the other.
    let agents = [
        RawAgent::register(&one, "on-one", 1, &["echo"]).await,
        RawAgent::register(&two, "on-two", 1, &["echo"]).await,
    ];
    let mut held = agents[0].claim(1, 5_000).await;
    assert_eq!(
        held.len(),
        1,
        "the first step reaches the agent on instance one"
    );
    for hop in 0..3 {
        let (finisher, poller) = (&agents[hop % 2], &agents[(hop + 1) % 2]);
        let instance = [&one, &two][(hop + 1) % 2];
        let (got, woken) = claim_woken_by(instance, poller, async {
            let (status, body) = finisher.succeed(held[0].0, held[0].1).await;
            assert_eq!(status, 200, "{body}");
        })
        .await;
        assert_eq!(
            got.len(),
            1,
            "hop {hop}: the next step reached the other instance"
        );
        assert_woken_by_the_other_instance(woken, &format!("hop {hop}"));
        held = got;
    }
}

/// A task retried by hand through one instance reaches an agent polling
/// another at once (the retry notifies), not at its next periodic round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_retried_on_one_instance_wakes_an_agent_polling_another() {
    let (_db, one, two) = two_instances(&[("DROVER_TASK_TYPES", "echo")]).await;
    let id = one.submit(vec![new_task("echo", json!({}))]).await[0];
    let first = RawAgent::register(&one, "fails-it", 1, &["echo"]).await;
    let held = first.claim(1, 5_000).await;
    assert_eq!(held[0].0, id);
    let (status, body) = first
        .post(
            "results",
            json!({ "results": [{ "task_id": id, "lease_token": held[0].1,
                "outcome": { "status": "failed", "error": "no", "retryable": false } }] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let poller = RawAgent::register(&two, "poller", 1, &["echo"]).await;
    let (got, woken) = claim_woken_by(&two, &poller, async {
        let (status, body) = one
            .post(&format!("/api/v1/tasks/{id}/retry"), &json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    })
    .await;
    assert_eq!(got.iter().map(|t| t.0).collect::<Vec<_>>(), vec![id]);
    assert_woken_by_the_other_instance(woken, "the retry");
}

/// An agent's results go through one instance while its claim is parked on
/// another (agents keep a claim parked even when full): the slot the
/// results free is filled at once, because taking an agent from full to not
/// full notifies, not at the other instance's next periodic round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_freed_on_one_instance_is_filled_through_a_claim_parked_on_another() {
    let (_db, one, two) = two_instances(&[("DROVER_TASK_TYPES", "echo")]).await;
    let agent = RawAgent::register(&one, "full", 1, &["echo"]).await;
    let ids = one
        .submit(vec![
            new_task("echo", json!({ "n": 1 })),
            new_task("echo", json!({ "n": 2 })),
        ])
        .await;
    let held = agent.claim(1, 5_000).await;
    assert_eq!(held.len(), 1, "the agent is full");
    let (got, woken) = claim_woken_by(&two, &agent.via(&two), async {
        let (status, body) = agent.succeed(held[0].0, held[0].1).await;
        assert_eq!(status, 200, "{body}");
    })
    .await;
    let other = if held[0].0 == ids[0] { ids[1] } else { ids[0] };
    assert_eq!(got.iter().map(|t| t.0).collect::<Vec<_>>(), vec![other]);
    assert_woken_by_the_other_instance(woken, "the freed slot");
}

/// Long-polls `poller` (an agent of `instance`) for one task, runs `act`
/// once the claim has parked, and answers what the claim got and how many
/// work signals from the other instance `instance` relayed meanwhile.
async fn claim_woken_by(
    instance: &Server,
    poller: &RawAgent,
    act: impl std::future::Future<Output = ()>,
) -> (Vec<(i64, i64)>, f64) {
    let act = async {
        eventually(Duration::from_secs(5), "the claim parked", || async {
            (instance.claim_waiters().await >= Some(1)).then_some(())
        })
        .await;
        let before = work_signals(instance).await;
        act.await;
        before
    };
    let (got, before) = tokio::join!(poller.claim(1, 20_000), act);
    (got, work_signals(instance).await - before)
}

/// Work signals the instance received from the others (`relay.rs`).
async fn work_signals(instance: &Server) -> f64 {
    instance
        .metric("drover_relay_signals_total{signal=\"work\"} ")
        .await
        .unwrap_or(0.0)
}

/// The claim was answered after the other instance's NOTIFY arrived: a
/// change that forgot to notify would be found only by the periodic round
/// (about a second later), with no signal counted. An event, not a
/// wall-clock threshold, so a loaded machine cannot make it flaky.
fn assert_woken_by_the_other_instance(signals: f64, what: &str) {
    assert!(
        signals >= 1.0,
        "{what}: no work signal from the other instance; the claim was found by a periodic round"
    );
}

/// A per-second schedule on two instances: every tick from the first to the
/// last starts exactly one task, also while the leader is killed (`kill -9`)
/// and the standby takes over (its late ticks fire late, within the grace,
/// not twice and not never).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_fire_each_schedule_tick_once_across_a_leader_kill() {
    let mut env = fast_timeouts();
    env.push(("DROVER_TASK_TYPES", "echo"));
    let (db, mut one, two) = two_instances(&env).await;
    let (status, view) = one
        .post(
            "/api/v1/schedules",
            &json!({"name": "tick", "task": {"task_type": "echo"}, "cron": "* * * * * *"}),
        )
        .await;
    assert_eq!(status, 201, "{view}");
    let id = view["id"].as_i64().expect("id");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader_is_one = one.status().await.is_some_and(|s| s.leader);
    let mut two = two;
    let (killed, survivor) = if leader_is_one {
        (&mut one, &two)
    } else {
        (&mut two, &one)
    };
    killed.kill();
    eventually(Duration::from_secs(10), "the standby to lead", || async {
        survivor.status().await.filter(|s| s.leader).map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut conn = db.pg().await;
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT idempotency_key FROM tasks WHERE idempotency_key LIKE $1 ORDER BY idempotency_key",
    )
    .bind(format!("schedule:{id}:%"))
    .fetch_all(&mut conn)
    .await
    .expect("keys");
    let mut seconds: Vec<i64> = keys
        .iter()
        .filter_map(|k| k.rsplit(':').next().and_then(|s| s.parse().ok()))
        .collect();
    seconds.sort_unstable();
    assert!(seconds.len() >= 7, "{seconds:?}");
    for pair in seconds.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1,
            "a tick missed or fired twice: {seconds:?}"
        );
    }
}
