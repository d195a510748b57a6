//! Who may report on a task, and the credentials agents register with, on
//! both backends: only the agent holding a lease can end it, an agent's key
//! resumes it after a restart, revoking cuts an agent off, and enrollment
//! tokens expire and are revoked.

use drover_engine::domain::{AgentSpec, TaskSpec};
use drover_engine::store::{
    Applied, EnrollmentStore, NewEnrollment, QueueStore, Registered, Registration,
};
use drover_engine::time::now_us;
use drover_engine::Store;
use drover_protocol::agent::{Lease, Outcome, TaskResult};
use drover_protocol::api::{AgentStatus, NewTask, TaskStatus};
use serde_json::json;

#[macro_use]
mod support;
use support::SCHED;

const TTL: i64 = 30_000_000;

fn spec(name: &str) -> AgentSpec {
    AgentSpec {
        name: name.into(),
        hostname: "host".into(),
        version: "test".into(),
        task_types: vec!["t".into()],
        labels: vec![],
        capacity: 10,
    }
}

async fn register_with(
    store: &Store,
    name: &str,
    key_hash: Option<&str>,
    resuming: &[Lease],
) -> Registered {
    let spec = spec(name);
    store
        .register_agent(
            &Registration {
                spec: &spec,
                session_hash: &format!("session-{name}-{}", now_us()),
                key_hash,
                enrollment_id: None,
                resuming,
            },
            now_us(),
        )
        .await
        .expect("registered")
}

async fn submit(store: &Store, n: usize) -> Vec<i64> {
    let specs: Vec<TaskSpec> = (0..n)
        .map(|_| {
            TaskSpec::parse(
                NewTask {
                    task_type: "t".into(),
                    ..Default::default()
                },
                &SCHED.weights,
                |_| true,
            )
            .expect("valid task")
        })
        .collect();
    store
        .submit(&specs, &SCHED, now_us())
        .await
        .expect("submitted")
        .into_iter()
        .map(|t| t.id)
        .collect()
}

fn success(lease: (i64, i64), by: &str) -> TaskResult {
    TaskResult {
        task_id: lease.0,
        lease_token: lease.1,
        outcome: Outcome::Succeeded {
            output: json!({ "by": by }),
        },
        started_at_us: None,
        finished_at_us: None,
    }
}

both_backends!(
    only_the_lease_holder_can_end_a_task,
    lease_tokens_are_random_not_counted,
    an_agent_key_resumes_the_agent_and_requeues_what_it_no_longer_runs,
    a_revoked_agent_is_cut_off_and_its_tasks_requeued,
    enrollment_tokens_expire_and_revoking_names_their_agents,
    a_revoked_bootstrap_token_stays_revoked,
    a_drained_agent_stays_drained_across_offline_and_back,
    a_drained_agent_stays_drained_across_a_restart,
);

async fn status_of(store: &Store, agent_id: i64) -> AgentStatus {
    store
        .list_agents()
        .await
        .expect("list")
        .into_iter()
        .find(|v| v.id == agent_id)
        .expect("listed")
        .status
}

/// Silence past the timeout: everything heard before `now` is too old.
async fn goes_silent(store: &Store, agent_id: i64) {
    let now = now_us() + 1;
    let sweep = store
        .mark_silent_agents_offline(now, now)
        .await
        .expect("duty");
    assert_eq!(sweep.agents_offline, vec![agent_id]);
    assert_eq!(status_of(store, agent_id).await, AgentStatus::Offline);
}

async fn a_drained_agent_stays_drained_across_offline_and_back(store: Store) {
    let a = register_with(&store, "a", Some("key-a"), &[])
        .await
        .agent_id;
    submit(&store, 1).await;
    store.set_agent_draining(a, true).await.expect("drained");

    // Silent, then heard from again: back, but still drained.
    goes_silent(&store, a).await;
    let beat = store
        .heartbeat(a, &[], now_us(), TTL, TTL)
        .await
        .expect("heartbeat");
    assert!(beat.drain, "the agent is told it is still drained");
    assert_eq!(status_of(&store, a).await, AgentStatus::Draining);
    let claim = store.claim(a, 1, now_us(), TTL).await.expect("claim");
    assert!(claim.tasks.is_empty() && claim.drain);

    // Silent, then restarted with its key: still drained.
    goes_silent(&store, a).await;
    let again = register_with(&store, "a", Some("key-a"), &[]).await;
    assert!(again.resumed);
    assert_eq!(status_of(&store, a).await, AgentStatus::Draining);

    // Re-enabled, the same round trip brings it back working.
    store.set_agent_draining(a, false).await.expect("enabled");
    goes_silent(&store, a).await;
    let beat = store
        .heartbeat(a, &[], now_us(), TTL, TTL)
        .await
        .expect("heartbeat");
    assert!(!beat.drain);
    assert_eq!(status_of(&store, a).await, AgentStatus::Online);
    let claim = store.claim(a, 1, now_us(), TTL).await.expect("claim");
    assert_eq!(claim.tasks.len(), 1);
}

async fn a_drained_agent_stays_drained_across_a_restart(store: Store) {
    let a = register_with(&store, "a", Some("key-a"), &[])
        .await
        .agent_id;
    store.set_agent_draining(a, true).await.expect("drained");
    // An orderly restart: the agent deregisters, then resumes with its key.
    store
        .deregister_agent(a, now_us())
        .await
        .expect("deregistered");
    assert_eq!(status_of(&store, a).await, AgentStatus::Deregistered);
    let again = register_with(&store, "a", Some("key-a"), &[]).await;
    assert!(again.resumed);
    assert_eq!(status_of(&store, a).await, AgentStatus::Draining);
    submit(&store, 1).await;
    let claim = store.claim(a, 1, now_us(), TTL).await.expect("claim");
    assert!(claim.tasks.is_empty() && claim.drain);
}

async fn only_the_lease_holder_can_end_a_task(store: Store) {
    let a = register_with(&store, "a", None, &[]).await.agent_id;
    let b = register_with(&store, "b", None, &[]).await.agent_id;
    let id = submit(&store, 1).await[0];
    let held = store.claim(a, 1, now_us(), TTL).await.expect("claim").tasks[0].clone();
    // B knows (or guesses) A's task id and lease token: every kind of
    // ending is refused and changes nothing.
    let lease = (id, held.lease_token);
    let forged = [
        success(lease, "b"),
        TaskResult {
            outcome: Outcome::Failed {
                error: "sabotage".into(),
                retryable: false,
            },
            ..success(lease, "b")
        },
        TaskResult {
            outcome: Outcome::Released {
                reason: "steal".into(),
            },
            ..success(lease, "b")
        },
    ];
    for result in forged {
        let done = store
            .complete(b, &[result], now_us())
            .await
            .expect("complete");
        assert_eq!(done.applied, vec![Applied::NotHolder]);
    }
    let task = store.get_task(id).await.expect("read").expect("exists");
    assert_eq!(task.task.status, TaskStatus::Running);
    assert_eq!(task.task.agent_id, Some(a));
    // The holder's own result is taken.
    let done = store
        .complete(a, &[success(lease, "a")], now_us())
        .await
        .expect("complete");
    assert_eq!(done.applied, vec![Applied::Yes(TaskStatus::Succeeded)]);
    let task = store.get_task(id).await.expect("read").expect("exists");
    assert_eq!(task.task.result, Some(json!({ "by": "a" })));
}

async fn lease_tokens_are_random_not_counted(store: Store) {
    let a = register_with(&store, "a", None, &[]).await.agent_id;
    submit(&store, 10).await;
    let claimed = store
        .claim(a, 10, now_us(), TTL)
        .await
        .expect("claim")
        .tasks;
    let mut tokens: Vec<i64> = claimed.iter().map(|t| t.lease_token).collect();
    // Counted tokens are 1 for every first claim; random ones differ and are
    // large (the chance that one of ten 64-bit draws is below 2^40 is 10 in 2^24).
    assert!(
        tokens.iter().all(|t| t.unsigned_abs() > 1 << 40),
        "{tokens:?}"
    );
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 10);
}

async fn an_agent_key_resumes_the_agent_and_requeues_what_it_no_longer_runs(store: Store) {
    let first = register_with(&store, "a", Some("key-of-a"), &[]).await;
    assert!(!first.resumed);
    let ids = submit(&store, 2).await;
    let claimed = store
        .claim(first.agent_id, 2, now_us(), TTL)
        .await
        .expect("claim")
        .tasks;
    assert_eq!(claimed.len(), 2);
    let (done, lost) = (&claimed[0], &claimed[1]);
    // The process dies with the first task's result in its outbox. Its
    // successor presents the key and names that lease.
    let keep = [Lease {
        task_id: done.task_id,
        lease_token: done.lease_token,
    }];
    // An admin had drained it: resuming does not undo that.
    store
        .set_agent_draining(first.agent_id, true)
        .await
        .expect("drained");
    let again = register_with(&store, "a", Some("key-of-a"), &keep).await;
    assert!(again.resumed);
    let row = store
        .list_agents()
        .await
        .expect("list")
        .into_iter()
        .find(|v| v.id == first.agent_id)
        .expect("listed");
    assert_eq!(row.status, AgentStatus::Draining);
    assert_eq!(again.agent_id, first.agent_id, "the same agent");
    assert_eq!(
        again.sweep.tasks_requeued, 1,
        "the task no one runs any more"
    );
    let lost_now = store
        .get_task(lost.task_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(lost_now.task.status, TaskStatus::Queued);
    // The outbox is delivered under the resumed agent.
    let applied = store
        .complete(
            again.agent_id,
            &[success((done.task_id, done.lease_token), "a")],
            now_us(),
        )
        .await
        .expect("complete")
        .applied;
    assert_eq!(applied, vec![Applied::Yes(TaskStatus::Succeeded)]);
    // Another agent, with another key, is another agent.
    let other = register_with(&store, "a", Some("key-of-another"), &[]).await;
    assert!(!other.resumed);
    assert_ne!(other.agent_id, first.agent_id);
    assert!(ids.contains(&lost.task_id));
}

async fn a_revoked_agent_is_cut_off_and_its_tasks_requeued(store: Store) {
    let reg = register_with(&store, "a", Some("key-a"), &[]).await;
    let a = reg.agent_id;
    let id = submit(&store, 1).await[0];
    store.claim(a, 1, now_us(), TTL).await.expect("claim");
    let sweep = store.revoke_agent(a, now_us()).await.expect("revoked");
    assert_eq!(sweep.tasks_requeued, 1);
    let task = store.get_task(id).await.expect("read").expect("exists");
    assert_eq!(task.task.status, TaskStatus::Queued);
    let agents = store.list_agents().await.expect("list");
    let row = agents.iter().find(|v| v.id == a).expect("listed");
    assert_eq!(row.status, AgentStatus::Revoked);
    // It gets no work, and its key no longer resumes it.
    assert!(store.claim(a, 1, now_us(), TTL).await.expect("claim").drain);
    let spec = spec("a");
    let again = store
        .register_agent(
            &Registration {
                spec: &spec,
                session_hash: "s-again",
                key_hash: Some("key-a"),
                enrollment_id: None,
                resuming: &[],
            },
            now_us(),
        )
        .await;
    assert!(
        matches!(again, Err(drover_engine::StoreError::Revoked(_))),
        "a revoked agent's key stays refused: {again:?}"
    );
    let rejoined = register_with(&store, "a", Some("a-new-key"), &[]).await;
    assert!(!rejoined.resumed);
    assert_ne!(rejoined.agent_id, a);
    assert!(matches!(
        store.revoke_agent(999_999, now_us()).await,
        Err(drover_engine::StoreError::NotFound)
    ));
}

fn enrollment<'a>(name: &'a str, hash: &'a str, expires_at_us: Option<i64>) -> NewEnrollment<'a> {
    NewEnrollment {
        name,
        token_hash: hash,
        prefix: "abcd1234",
        task_types: None,
        labels: None,
        created_by: "test",
        expires_at_us,
    }
}

async fn enrollment_tokens_expire_and_revoking_names_their_agents(store: Store) {
    let now = now_us();
    let resize_types = vec!["resize".to_string()];
    let scoped = store
        .create_enrollment_token(
            &NewEnrollment {
                task_types: Some(&resize_types),
                ..enrollment("resizers", "hash-1", None)
            },
            now,
        )
        .await
        .expect("created");
    assert_eq!(scoped.task_types, Some(resize_types.clone()));
    assert!(matches!(
        store
            .create_enrollment_token(&enrollment("resizers", "hash-2", None), now)
            .await,
        Err(drover_engine::StoreError::Conflict(_))
    ));
    store
        .create_enrollment_token(&enrollment("short", "hash-3", Some(now + 1_000)), now)
        .await
        .expect("created");
    assert!(store
        .usable_enrollment_token("hash-3", now)
        .await
        .expect("read")
        .is_some());
    assert!(
        store
            .usable_enrollment_token("hash-3", now + 2_000)
            .await
            .expect("read")
            .is_none(),
        "expired"
    );
    let spec = spec("r");
    let agent = store
        .register_agent(
            &Registration {
                spec: &spec,
                session_hash: "s-r",
                key_hash: None,
                enrollment_id: Some(scoped.id),
                resuming: &[],
            },
            now,
        )
        .await
        .expect("registered")
        .agent_id;
    assert!(store.agent_by_token("s-r").await.expect("read").is_some());
    let agents = store
        .revoke_enrollment_token(scoped.id, now)
        .await
        .expect("revoked");
    assert_eq!(agents, vec![agent]);
    // Its session is refused from now on, even before (or without) the
    // agent's own revocation: one that registered as the token was being
    // revoked cannot slip through.
    assert!(store.agent_by_token("s-r").await.expect("read").is_none());
    assert!(store
        .usable_enrollment_token("hash-1", now)
        .await
        .expect("read")
        .is_none());
    let listed = store.list_enrollment_tokens().await.expect("list");
    assert!(listed
        .iter()
        .any(|t| t.name == "resizers" && t.revoked_at_us.is_some()));
}

async fn a_revoked_bootstrap_token_stays_revoked(store: Store) {
    let now = now_us();
    // An agent from before enrollment tokens were recorded.
    let old = register_with(&store, "old", None, &[]).await.agent_id;
    let boot = enrollment("bootstrap-abcd1234", "boot-hash", None);
    store
        .ensure_enrollment_token(&boot, now)
        .await
        .expect("stored");
    let adopted = store.adopt_unenrolled_agents("boot-hash").await;
    assert_eq!(adopted.expect("adopted"), 1);
    let id = store
        .usable_enrollment_token("boot-hash", now)
        .await
        .expect("read")
        .expect("usable")
        .id;
    let revoked = store
        .revoke_enrollment_token(id, now)
        .await
        .expect("revoked");
    assert_eq!(
        revoked,
        vec![old],
        "revoking it reaches the agents it adopted"
    );
    // The next start stores it again, as it does every start.
    store
        .ensure_enrollment_token(&boot, now)
        .await
        .expect("no-op");
    assert!(store
        .usable_enrollment_token("boot-hash", now)
        .await
        .expect("read")
        .is_none());
}
