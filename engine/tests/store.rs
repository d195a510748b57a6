//! The store contract, run against both backends: every test exists once for
//! SQLite (a fresh file) and once for PostgreSQL (a fresh database on
//! `DROVER_TEST_PG`, default `postgres://postgres@127.0.0.1:5432/postgres`).

use std::collections::{HashMap, HashSet};

use drover_engine::domain::{AgentSpec, TaskSpec};
use drover_engine::store::{Applied, QueueStore, Registration, RunStore, WorkflowDefStore};
use drover_engine::time::now_us;
use drover_engine::Store;
use drover_protocol::agent::{Lease, Outcome, TaskResult};
use drover_protocol::api::{AgentStatus, NewTask, TaskStatus};
use drover_protocol::workflow::RunStatus;
use serde_json::json;

#[macro_use]
mod support;
use support::{submit_ids, SCHED};

const TTL: i64 = 30_000_000;

fn task(task_type: &str, urgency: i64) -> TaskSpec {
    TaskSpec::parse(
        NewTask {
            task_type: task_type.into(),
            urgency: Some(urgency),
            payload: json!({"u": urgency}),
            ..Default::default()
        },
        &SCHED.weights,
        |_| true,
    )
    .unwrap()
}

fn agent(name: &str, capacity: i64, types: &[&str], labels: &[&str]) -> AgentSpec {
    AgentSpec {
        name: name.into(),
        hostname: "host".into(),
        version: "test".into(),
        task_types: types.iter().map(|s| s.to_string()).collect(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        capacity,
    }
}

async fn register(store: &Store, spec: AgentSpec) -> i64 {
    let token = format!("{}-{}", spec.name, rand_suffix());
    store
        .register_agent(
            &Registration {
                spec: &spec,
                session_hash: &token,
                key_hash: None,
                enrollment_id: None,
                resuming: &[],
            },
            now_us(),
        )
        .await
        .unwrap()
        .agent_id
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn success(task_id: i64, lease_token: i64) -> TaskResult {
    TaskResult {
        task_id,
        lease_token,
        outcome: Outcome::Succeeded {
            output: json!("ok"),
        },
        started_at_us: None,
        finished_at_us: None,
    }
}

fn failure(task_id: i64, lease_token: i64) -> TaskResult {
    TaskResult {
        task_id,
        lease_token,
        outcome: Outcome::Failed {
            error: "boom".into(),
            retryable: true,
        },
        started_at_us: None,
        finished_at_us: None,
    }
}

both_backends_with_guard!(results_are_recorded_when_their_runs_cannot_advance);

both_backends!(
    claims_highest_priority_first_then_oldest,
    aging_lets_old_low_priority_work_overtake,
    never_exceeds_capacity,
    group_claim_fills_the_least_loaded_agent_first,
    group_claim_goes_by_the_load_now_not_the_order_given,
    claims_only_handled_types_and_matching_labels,
    stale_result_is_refused_and_changes_nothing,
    failure_retries_with_backoff_then_fails,
    history_lists_submission_claims_and_endings_in_order,
    released_task_is_requeued_without_counting_the_attempt,
    idempotency_key_returns_the_first_task,
    keyed_tasks_are_admitted_as_they_arrive_and_as_their_key_frees,
    silent_agent_goes_offline_and_its_tasks_are_requeued,
    heartbeat_extends_leases_and_names_tasks_to_stop,
    heartbeat_renews_only_leases_running_low,
    deregistering_hands_back_held_tasks_without_counting_an_attempt,
    timed_out_attempt_is_failed_and_retried,
    cancel_queued_and_running_tasks,
    leadership_is_exclusive_until_it_expires,
    concurrent_claims_never_hand_out_a_task_twice,
    delayed_tasks_wait_for_their_time,
    batch_advance_creates_each_next_task_once,
    results_advance_their_runs_in_the_same_transaction,
    a_run_failing_in_a_batch_cancels_the_retry_beside_it,
    a_fan_out_finished_in_one_batch_gathers_in_item_order,
    queued_tasks_of_an_ended_run_are_cancelled_with_an_event,
    a_stored_definition_over_the_limits_fails_its_run_instead_of_hanging,
);

async fn claims_highest_priority_first_then_oldest(store: Store) {
    let a = register(&store, agent("a", 10, &["t"], &[])).await;
    let now = now_us();
    let ids: Vec<i64> = store
        .submit(
            &[task("t", 1), task("t", 9), task("t", 5), task("t", 9)],
            &SCHED,
            now,
        )
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    let claim = store.claim(a, 4, now, TTL).await.unwrap();
    let order: Vec<i64> = claim.tasks.iter().map(|t| t.task_id).collect();
    assert_eq!(order, vec![ids[1], ids[3], ids[2], ids[0]]);
    assert_eq!(claim.tasks[0].priority, 9.0);
    assert_eq!((claim.running, claim.capacity), (4, 10));
}

async fn aging_lets_old_low_priority_work_overtake(store: Store) {
    let a = register(&store, agent("a", 1, &["t"], &[])).await;
    let now = now_us();
    let old = store
        .submit(&[task("t", 0)], &SCHED, now - 31 * 60_000_000)
        .await
        .unwrap()[0]
        .id;
    store
        .submit(&[task("t", 10), task("t", 10)], &SCHED, now)
        .await
        .unwrap();
    let claim = store.claim(a, 1, now, TTL).await.unwrap();
    // Waiting 31 minutes earns 31 points: more than the 10-point gap... and
    // it would still win against P = 30 (the maximum with unit weights).
    assert_eq!(claim.tasks[0].task_id, old);
}

async fn never_exceeds_capacity(store: Store) {
    let a = register(&store, agent("a", 3, &["t"], &[])).await;
    let now = now_us();
    store
        .submit(
            &(0..10).map(|_| task("t", 1)).collect::<Vec<_>>(),
            &SCHED,
            now,
        )
        .await
        .unwrap();
    let first = store.claim(a, 2, now, TTL).await.unwrap();
    assert_eq!(first.tasks.len(), 2);
    let second = store.claim(a, 10, now, TTL).await.unwrap();
    assert_eq!(second.tasks.len(), 1, "only one slot was left");
    let third = store.claim(a, 10, now, TTL).await.unwrap();
    assert!(third.tasks.is_empty());
    assert_eq!(third.running, 3);
    // Finishing one frees exactly one slot.
    let t = &first.tasks[0];
    assert_eq!(
        store
            .complete(a, &[success(t.task_id, t.lease_token)], now)
            .await
            .unwrap()
            .applied,
        vec![Applied::Yes(TaskStatus::Succeeded)]
    );
    assert_eq!(store.claim(a, 10, now, TTL).await.unwrap().tasks.len(), 1);
    let agents = store.list_agents().await.unwrap();
    assert_eq!(
        (agents[0].running, agents[0].capacity, agents[0].load),
        (3, 3, 1.0)
    );
}

fn task_ids_per_claim(claims: &[drover_engine::store::Claim]) -> Vec<Vec<i64>> {
    claims
        .iter()
        .map(|c| c.tasks.iter().map(|t| t.task_id).collect())
        .collect()
}

async fn group_claim_fills_the_least_loaded_agent_first(store: Store) {
    let idle = register(&store, agent("idle", 4, &["t"], &[])).await;
    let full = register(&store, agent("full", 1, &["t"], &[])).await;
    let busy = register(&store, agent("busy", 4, &["t"], &[])).await;
    let now = now_us();
    let occupying = store.submit(&[task("t", 0)], &SCHED, now).await.unwrap()[0].id;
    assert_eq!(
        store.claim(full, 1, now, TTL).await.unwrap().tasks[0].task_id,
        occupying
    );
    let ids = submit_ids(&store, &[1, 6, 4, 5, 3, 2].map(|u| task("t", u)), now).await;
    // Least-loaded first: `idle` asks for 2, `full` has no free slot left,
    // `busy` asks for 3 but only 4 tasks remain after `idle`'s.
    let claims = store
        .claim_group(&[(idle, 2), (full, 5), (busy, 3)], now, TTL)
        .await
        .unwrap();
    let got = task_ids_per_claim(&claims);
    assert_eq!(
        got,
        vec![vec![ids[1], ids[3]], vec![], vec![ids[2], ids[4], ids[5]]]
    );
    let counts: Vec<(i64, i64, bool)> = claims
        .iter()
        .map(|c| (c.running, c.capacity, c.drain))
        .collect();
    assert_eq!(counts, vec![(2, 4, false), (1, 1, false), (3, 4, false)]);
    // The queue holds the last task; an unknown agent is told to drain; an
    // agent listed twice gets nothing more the second time.
    store.submit(&[task("t", 0)], &SCHED, now).await.unwrap();
    let late = store
        .claim_group(&[(busy, 4), (i64::MAX, 1), (busy, 4)], now, TTL)
        .await
        .unwrap();
    assert_eq!(
        late[0].tasks.iter().map(|t| t.task_id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    assert!(late[1].drain && late[1].tasks.is_empty());
    assert!(!late[2].drain && late[2].tasks.is_empty());
    let agents = store.list_agents().await.unwrap();
    let running: HashMap<i64, i64> = agents.iter().map(|a| (a.id, a.running)).collect();
    assert_eq!((running[&idle], running[&full], running[&busy]), (2, 1, 4));
}

async fn group_claim_goes_by_the_load_now_not_the_order_given(store: Store) {
    let busy = register(&store, agent("busy", 4, &["t"], &[])).await;
    let idle = register(&store, agent("idle", 4, &["t"], &[])).await;
    let now = now_us();
    store
        .submit(&[task("t", 1), task("t", 1), task("t", 1)], &SCHED, now)
        .await
        .unwrap();
    assert_eq!(store.claim(busy, 3, now, TTL).await.unwrap().tasks.len(), 3);
    let ids = submit_ids(&store, &[task("t", 9), task("t", 8)], now).await;
    // `busy` is listed first (it parked when it was idle), but runs 3 of 4
    // now: the idle agent gets the work.
    let claims = store
        .claim_group(&[(busy, 4), (idle, 4)], now, TTL)
        .await
        .unwrap();
    let got = task_ids_per_claim(&claims);
    assert_eq!(got, vec![vec![], ids]);
}

async fn claims_only_handled_types_and_matching_labels(store: Store) {
    let plain = register(&store, agent("plain", 10, &["t"], &[])).await;
    let gpu = register(&store, agent("gpu", 10, &["t", "other"], &["gpu", "eu"])).await;
    let now = now_us();
    let mut needs_gpu = task("t", 5);
    needs_gpu.required_labels = vec!["gpu".into()];
    let ids: Vec<i64> = store
        .submit(&[needs_gpu, task("other", 5), task("t", 1)], &SCHED, now)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    let got: Vec<i64> = store
        .claim(plain, 10, now, TTL)
        .await
        .unwrap()
        .tasks
        .iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(
        got,
        vec![ids[2]],
        "plain agent takes neither the gpu task nor the other type"
    );
    let got: HashSet<i64> = store
        .claim(gpu, 10, now, TTL)
        .await
        .unwrap()
        .tasks
        .iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(got, HashSet::from([ids[0], ids[1]]));
}

async fn stale_result_is_refused_and_changes_nothing(store: Store) {
    let a = register(&store, agent("a", 1, &["t"], &[])).await;
    let b = register(&store, agent("b", 1, &["t"], &[])).await;
    let now = now_us();
    let id = store.submit(&[task("t", 1)], &SCHED, now).await.unwrap()[0].id;
    let first = store.claim(a, 1, now, TTL).await.unwrap().tasks[0].clone();
    // A's lease runs out; the task goes to B under a new token.
    let sweep = store.expire_leases(now + TTL + 1).await.unwrap();
    assert_eq!(sweep.tasks_requeued, 1);
    let second = store.claim(b, 1, now + TTL + 2, TTL).await.unwrap().tasks[0].clone();
    assert_eq!(second.task_id, id);
    assert_ne!(second.lease_token, first.lease_token);
    // A's late result is refused; B's is taken; a repeat of B's is refused.
    assert_eq!(
        store
            .complete(a, &[success(id, first.lease_token)], now)
            .await
            .unwrap()
            .applied,
        vec![Applied::Stale]
    );
    let t = store.get_task(id).await.unwrap().unwrap();
    assert_eq!(t.task.status, TaskStatus::Running);
    assert_eq!(t.task.agent_id, Some(b));
    assert_eq!(
        store
            .complete(b, &[success(id, second.lease_token)], now)
            .await
            .unwrap()
            .applied,
        vec![Applied::Yes(TaskStatus::Succeeded)]
    );
    assert_eq!(
        store
            .complete(b, &[success(id, second.lease_token)], now)
            .await
            .unwrap()
            .applied,
        vec![Applied::Stale]
    );
    let t = store.get_task(id).await.unwrap().unwrap();
    assert_eq!(t.task.status, TaskStatus::Succeeded);
    let outcomes: Vec<&str> = t
        .attempt_history
        .iter()
        .map(|a| a.outcome.as_str())
        .collect();
    assert_eq!(outcomes, vec!["lost", "succeeded"]);
    assert_eq!(t.events.iter().filter(|e| e.kind == "succeeded").count(), 1);
}

async fn failure_retries_with_backoff_then_fails(store: Store) {
    let a = register(&store, agent("a", 1, &["t"], &[])).await;
    let mut spec = task("t", 1);
    spec.max_attempts = 2;
    spec.retry_backoff_ms = 10_000;
    let now = now_us();
    let id = store.submit(&[spec], &SCHED, now).await.unwrap()[0].id;
    let c = store.claim(a, 1, now, TTL).await.unwrap().tasks[0].clone();
    assert_eq!(
        store
            .complete(a, &[failure(id, c.lease_token)], now)
            .await
            .unwrap()
            .applied,
        vec![Applied::Yes(TaskStatus::Queued)]
    );
    // Not claimable during the backoff (5–10 s for the first retry).
    assert!(store
        .claim(a, 1, now + 1_000_000, TTL)
        .await
        .unwrap()
        .tasks
        .is_empty());
    let next = store.next_run_after(now).await.unwrap().unwrap();
    assert!(
        (now + 5_000_000..=now + 10_000_000).contains(&next),
        "retry at +{} us",
        next - now
    );
    let c = store
        .claim(a, 1, now + 10_000_001, TTL)
        .await
        .unwrap()
        .tasks[0]
        .clone();
    assert_eq!(c.attempt, 2);
    assert_eq!(
        store
            .complete(a, &[failure(id, c.lease_token)], now)
            .await
            .unwrap()
            .applied,
        vec![Applied::Yes(TaskStatus::Failed)]
    );
    let t = store.get_task(id).await.unwrap().unwrap().task;
    assert_eq!(
        (t.status, t.attempts, t.error.as_deref()),
        (TaskStatus::Failed, 2, Some("boom"))
    );
}

/// `submitted` and `claimed` come from the task and attempt rows, the
/// endings from the event log: the history interleaves them in time order.
async fn history_lists_submission_claims_and_endings_in_order(store: Store) {
    let a = register(&store, agent("a", 1, &["t"], &[])).await;
    let b = register(&store, agent("b", 1, &["t"], &[])).await;
    let mut spec = task("t", 1);
    spec.max_attempts = 2;
    spec.retry_backoff_ms = 1;
    let t0 = now_us();
    let id = store.submit(&[spec], &SCHED, t0).await.unwrap()[0].id;
    let first = store.claim(a, 1, t0 + 10, TTL).await.unwrap().tasks[0].clone();
    store
        .complete(a, &[failure(id, first.lease_token)], t0 + 20)
        .await
        .unwrap();
    let second = store.claim(b, 1, t0 + 1_000_000, TTL).await.unwrap().tasks[0].clone();
    store
        .complete(b, &[success(id, second.lease_token)], t0 + 1_000_010)
        .await
        .unwrap();
    let history: Vec<(String, TaskStatus, Option<i64>, i64)> = store
        .get_task(id)
        .await
        .unwrap()
        .unwrap()
        .events
        .into_iter()
        .map(|e| (e.kind, e.status, e.agent_id, e.at_us - t0))
        .collect();
    assert_eq!(
        history,
        vec![
            ("submitted".into(), TaskStatus::Queued, None, 0),
            ("claimed".into(), TaskStatus::Running, Some(a), 10),
            ("retry_scheduled".into(), TaskStatus::Queued, Some(a), 20),
            ("claimed".into(), TaskStatus::Running, Some(b), 1_000_000),
            (
                "succeeded".into(),
                TaskStatus::Succeeded,
                Some(b),
                1_000_010
            ),
        ]
    );
}

async fn released_task_is_requeued_without_counting_the_attempt(store: Store) {
    let a = register(&store, agent("a", 1, &["t"], &[])).await;
    let mut spec = task("t", 1);
    spec.max_attempts = 1;
    let now = now_us();
    let id = store.submit(&[spec], &SCHED, now).await.unwrap()[0].id;
    let c = store.claim(a, 1, now, TTL).await.unwrap().tasks[0].clone();
    let release = TaskResult {
        task_id: id,
        lease_token: c.lease_token,
        outcome: Outcome::Released {
            reason: "shutdown".into(),
        },
        started_at_us: None,
        finished_at_us: None,
    };
    assert_eq!(
        store.complete(a, &[release], now).await.unwrap().applied,
        vec![Applied::Yes(TaskStatus::Queued)]
    );
    let c = store.claim(a, 1, now, TTL).await.unwrap().tasks[0].clone();
    assert_eq!(
        c.attempt, 1,
        "the released claim did not use up the only attempt"
    );
}

async fn idempotency_key_returns_the_first_task(store: Store) {
    let mut spec = task("t", 1);
    spec.idempotency_key = Some("order-42".into());
    let now = now_us();
    let first = store.submit(&[spec.clone()], &SCHED, now).await.unwrap();
    let again = store
        .submit(&[spec.clone(), task("t", 2), spec], &SCHED, now)
        .await
        .unwrap();
    assert!(first[0].created);
    assert_eq!(again[0].id, first[0].id);
    assert!(!again[0].created && again[1].created && !again[2].created);
    assert_eq!(again[2].id, first[0].id);
    assert_eq!(store.stats().await.unwrap().queued, 2);
}

fn keyed(key: &str, limit: i64) -> TaskSpec {
    TaskSpec::parse(
        NewTask {
            task_type: "t".into(),
            concurrency_key: Some(key.into()),
            concurrency_limit: Some(limit),
            ..Default::default()
        },
        &SCHED.weights,
        |_| true,
    )
    .unwrap()
}

/// The write paths admit without the leader's pass (`admit_keys` is never
/// called here): a submit while the key has room, a result that frees it.
async fn keyed_tasks_are_admitted_as_they_arrive_and_as_their_key_frees(store: Store) {
    let a = register(&store, agent("a", 10, &["t"], &[])).await;
    let now = now_us();
    let tasks = [keyed("k", 2), keyed("k", 2), keyed("k", 2), task("t", 1)];
    store.submit(&tasks, &SCHED, now).await.unwrap();
    let claimed = store.claim(a, 10, now, TTL).await.unwrap().tasks;
    assert_eq!(claimed.len(), 3, "two of the key and the unkeyed task");
    // The key is full and has a held task: a newcomer waits behind it.
    store.submit(&[keyed("k", 2)], &SCHED, now).await.unwrap();
    assert!(store.claim(a, 10, now, TTL).await.unwrap().tasks.is_empty());
    let ended = claimed
        .iter()
        .find(|c| c.task_type == "t" && c.payload.get("u").is_none())
        .unwrap();
    store
        .complete(a, &[success(ended.task_id, ended.lease_token)], now)
        .await
        .unwrap();
    let next = store.claim(a, 10, now, TTL).await.unwrap().tasks;
    assert_eq!(next.len(), 1, "the freed slot went to one held task");
    assert!(store.claim(a, 10, now, TTL).await.unwrap().tasks.is_empty());
}

async fn silent_agent_goes_offline_and_its_tasks_are_requeued(store: Store) {
    let a = register(&store, agent("a", 2, &["t"], &[])).await;
    let b = register(&store, agent("b", 2, &["t"], &[])).await;
    let now = now_us();
    store
        .submit(&[task("t", 1), task("t", 1)], &SCHED, now)
        .await
        .unwrap();
    assert_eq!(store.claim(a, 2, now, TTL).await.unwrap().tasks.len(), 2);
    store
        .heartbeat(b, &[], now + 10_000_000, TTL, TTL)
        .await
        .unwrap();
    let sweep = store
        .mark_silent_agents_offline(now + 5_000_000, now + 10_000_000)
        .await
        .unwrap();
    assert_eq!(sweep.agents_offline, vec![a]);
    assert_eq!(sweep.tasks_requeued, 2);
    let agents = store.list_agents().await.unwrap();
    let a_view = agents.iter().find(|x| x.id == a).unwrap();
    assert_eq!((a_view.status, a_view.running), (AgentStatus::Offline, 0));
    let claim = store.claim(b, 2, now + 10_000_000, TTL).await.unwrap();
    assert_eq!(claim.tasks.len(), 2);
    assert!(
        claim.tasks.iter().all(|t| t.attempt == 2),
        "the lost attempt counts"
    );
    // The offline agent is not given work.
    assert!(store.claim(a, 2, now, TTL).await.unwrap().drain);
}

/// An agent of capacity 2 holding two tasks claimed at `now`: (agent, now,
/// the claimed tasks, their leases).
async fn agent_holding_two(
    store: &Store,
) -> (
    i64,
    i64,
    Vec<drover_protocol::agent::Assignment>,
    Vec<Lease>,
) {
    let a = register(store, agent("a", 2, &["t"], &[])).await;
    let now = now_us();
    store
        .submit(&[task("t", 2), task("t", 1)], &SCHED, now)
        .await
        .unwrap();
    let c = store.claim(a, 2, now, TTL).await.unwrap().tasks;
    let leases = c
        .iter()
        .map(|t| Lease {
            task_id: t.task_id,
            lease_token: t.lease_token,
        })
        .collect();
    (a, now, c, leases)
}

async fn heartbeat_extends_leases_and_names_tasks_to_stop(store: Store) {
    let (a, now, c, leases) = agent_holding_two(&store).await;
    store.cancel_task(c[1].task_id, now).await.unwrap();
    let reply = store
        .heartbeat(a, &leases, now + TTL - 1, TTL, TTL)
        .await
        .unwrap();
    assert_eq!(reply.cancel, vec![c[1].task_id]);
    assert!(!reply.drain);
    // The kept lease now runs past the original expiry.
    assert_eq!(
        store
            .expire_leases(now + TTL + 1)
            .await
            .unwrap()
            .tasks_requeued,
        0
    );
    store.set_agent_draining(a, true).await.unwrap();
    assert!(
        store
            .heartbeat(a, &leases[..1], now, TTL, TTL)
            .await
            .unwrap()
            .drain
    );
}

async fn heartbeat_renews_only_leases_running_low(store: Store) {
    let (a, now, c, leases) = agent_holding_two(&store).await;
    // Early on both leases have more than half left: neither is renewed.
    let early = store
        .heartbeat(a, &leases, now + 1_000, TTL, TTL / 2)
        .await
        .unwrap();
    assert!(early.cancel.is_empty());
    // Later the second one runs low and is renewed.
    store
        .heartbeat(a, &leases[1..], now + TTL * 6 / 10, TTL, TTL / 2)
        .await
        .unwrap();
    // Past the claim's lease, only the first one (never renewed) expires.
    let sweep = store.expire_leases(now + TTL + 1).await.unwrap();
    assert_eq!(sweep.tasks_requeued, 1);
    let second = store.get_task(c[1].task_id).await.unwrap().unwrap();
    assert_eq!(second.task.status, TaskStatus::Running);
}

async fn deregistering_hands_back_held_tasks_without_counting_an_attempt(store: Store) {
    let a = register(&store, agent("a", 1, &["t"], &[])).await;
    let mut spec = task("t", 1);
    spec.max_attempts = 1;
    let id = store.submit(&[spec], &SCHED, now_us()).await.unwrap()[0].id;
    assert_eq!(
        store.claim(a, 1, now_us(), TTL).await.unwrap().tasks[0].task_id,
        id
    );
    // The agent stops cleanly; the task it still holds went to a claim it
    // gave up on. Its one attempt is not spent.
    let sweep = store.deregister_agent(a, now_us()).await.unwrap();
    assert_eq!((sweep.tasks_requeued, sweep.tasks_failed), (1, 0));
    let t = store.get_task(id).await.unwrap().unwrap();
    assert_eq!(t.task.status, TaskStatus::Queued);
    assert_eq!(t.attempt_history[0].outcome, "released");
}

async fn timed_out_attempt_is_failed_and_retried(store: Store) {
    let a = register(&store, agent("a", 1, &["t"], &[])).await;
    let mut spec = task("t", 1);
    spec.timeout_ms = 1_000;
    spec.retry_backoff_ms = 0;
    let now = now_us();
    let id = store.submit(&[spec], &SCHED, now).await.unwrap()[0].id;
    let c = store.claim(a, 1, now, TTL).await.unwrap().tasks[0].clone();
    // Heartbeats cannot stretch a lease past the timeout.
    store
        .heartbeat(
            a,
            &[Lease {
                task_id: id,
                lease_token: c.lease_token,
            }],
            now + 500_000,
            TTL,
            TTL,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .expire_leases(now + 999_000)
            .await
            .unwrap()
            .tasks_requeued,
        0
    );
    assert_eq!(
        store
            .expire_leases(now + 1_000_001)
            .await
            .unwrap()
            .tasks_requeued,
        1
    );
    let t = store.get_task(id).await.unwrap().unwrap();
    assert_eq!(t.attempt_history[0].outcome, "timed_out");
    assert_eq!(t.task.error.as_deref(), Some("timed out after 1000 ms"));
    assert_eq!(t.task.status, TaskStatus::Queued);
}

async fn cancel_queued_and_running_tasks(store: Store) {
    let a = register(&store, agent("a", 1, &["t"], &[])).await;
    let now = now_us();
    let ids: Vec<i64> = store
        .submit(&[task("t", 9), task("t", 1)], &SCHED, now)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    let running = store.claim(a, 1, now, TTL).await.unwrap().tasks[0].clone();
    assert_eq!(running.task_id, ids[0]);
    assert_eq!(
        store.cancel_task(ids[1], now).await.unwrap(),
        TaskStatus::Cancelled
    );
    assert_eq!(
        store.cancel_task(ids[0], now).await.unwrap(),
        TaskStatus::Cancelled
    );
    assert!(matches!(
        store.cancel_task(ids[0], now).await,
        Err(drover_engine::StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.cancel_task(999_999, now).await,
        Err(drover_engine::StoreError::NotFound)
    ));
    assert_eq!(
        store
            .complete(a, &[success(ids[0], running.lease_token)], now)
            .await
            .unwrap()
            .applied,
        vec![Applied::Stale]
    );
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.cancelled, stats.running, stats.queued), (2, 0, 0));
    assert_eq!(
        store.list_agents().await.unwrap()[0].running,
        0,
        "the cancelled task's slot is free"
    );
}

async fn leadership_is_exclusive_until_it_expires(store: Store) {
    let now = now_us();
    assert!(store
        .try_lead("duties", "one", now, 5_000_000)
        .await
        .unwrap());
    assert!(!store
        .try_lead("duties", "two", now + 1_000_000, 5_000_000)
        .await
        .unwrap());
    assert!(
        store
            .try_lead("duties", "one", now + 2_000_000, 5_000_000)
            .await
            .unwrap(),
        "renewal"
    );
    assert!(
        !store
            .try_lead("duties", "two", now + 6_000_000, 5_000_000)
            .await
            .unwrap(),
        "renewed lease still holds"
    );
    assert!(
        store
            .try_lead("duties", "two", now + 7_000_001, 5_000_000)
            .await
            .unwrap(),
        "takeover after expiry"
    );
    assert!(!store
        .try_lead("duties", "one", now + 7_000_002, 5_000_000)
        .await
        .unwrap());
    store.resign("duties", "two").await.unwrap();
    assert!(
        store
            .try_lead("duties", "one", now + 7_000_003, 5_000_000)
            .await
            .unwrap(),
        "resigning hands over at once"
    );
}

async fn concurrent_claims_never_hand_out_a_task_twice(store: Store) {
    const TASKS: usize = 2_000;
    let now = now_us();
    for chunk in 0..(TASKS / 500) {
        let batch: Vec<TaskSpec> = (0..500)
            .map(|i| task("t", ((i + chunk) % 11) as i64))
            .collect();
        store.submit(&batch, &SCHED, now).await.unwrap();
    }
    let mut workers = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        let id = register(&store, agent(&format!("w{w}"), 50, &["t"], &[])).await;
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let claim = store.claim(id, 50, now_us(), TTL).await.unwrap();
                if claim.tasks.is_empty() {
                    return seen;
                }
                let results: Vec<TaskResult> = claim
                    .tasks
                    .iter()
                    .map(|t| success(t.task_id, t.lease_token))
                    .collect();
                let applied = store
                    .complete(id, &results, now_us())
                    .await
                    .unwrap()
                    .applied;
                assert!(applied
                    .iter()
                    .all(|a| *a == Applied::Yes(TaskStatus::Succeeded)));
                seen.extend(claim.tasks.iter().map(|t| t.task_id));
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), TASKS, "every task claimed once");
    assert_eq!(unique.len(), TASKS);
    assert_eq!(store.stats().await.unwrap().succeeded, TASKS as i64);
}

async fn delayed_tasks_wait_for_their_time(store: Store) {
    let a = register(&store, agent("a", 5, &["t"], &[])).await;
    let now = now_us();
    let mut later = task("t", 10);
    later.run_after_us = Some(now + 60_000_000);
    let ids: Vec<i64> = store
        .submit(&[later, task("t", 0)], &SCHED, now)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    let got: Vec<i64> = store
        .claim(a, 5, now, TTL)
        .await
        .unwrap()
        .tasks
        .iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(got, vec![ids[1]]);
    assert_eq!(
        store.next_run_after(now).await.unwrap(),
        Some(now + 60_000_000)
    );
    let got: Vec<i64> = store
        .claim(a, 5, now + 60_000_000, TTL)
        .await
        .unwrap()
        .tasks
        .iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(got, vec![ids[0]]);
}

/// (run, tasks its advance created), per advanced run.
fn created(advanced: &[(i64, drover_engine::store::Advanced)]) -> Vec<(i64, usize)> {
    advanced
        .iter()
        .map(|(id, a)| (*id, a.tasks_created))
        .collect()
}

async fn batch_advance_creates_each_next_task_once(store: Store) {
    let runs = start_pairs(&store, 5).await;
    // Out of order, with a duplicate and a run that does not exist.
    let mut asked: Vec<i64> = runs.iter().rev().copied().collect();
    asked.push(runs[2]);
    asked.push(runs[4] + 1000);
    let first = store.advance_runs(&asked, &SCHED, now_us()).await.unwrap();
    assert_eq!(
        created(&first),
        runs.iter().map(|&id| (id, 1)).collect::<Vec<_>>()
    );
    assert!(first
        .iter()
        .all(|(_, a)| a.status == Some(RunStatus::Running)));
    let again = store.advance_runs(&asked, &SCHED, now_us()).await.unwrap();
    assert_eq!(
        created(&again),
        runs.iter().map(|&id| (id, 0)).collect::<Vec<_>>()
    );

    // The first steps finish: each run's second step gets its task, once.
    let a = register(&store, agent("a", 100, &["t"], &[])).await;
    let claimed = store.claim(a, 100, now_us(), TTL).await.unwrap().tasks;
    assert_eq!(claimed.len(), 5);
    let results: Vec<TaskResult> = claimed
        .iter()
        .map(|t| success(t.task_id, t.lease_token))
        .collect();
    // The runs owning the finished tasks come back with the results.
    assert_eq!(
        store.complete(a, &results, now_us()).await.unwrap().runs,
        runs
    );
    let ids: Vec<i64> = claimed.iter().map(|t| t.task_id).collect();
    assert_eq!(store.runs_of_tasks(&ids).await.unwrap(), runs);
    let second = store.advance_runs(&runs, &SCHED, now_us()).await.unwrap();
    assert_eq!(
        created(&second),
        runs.iter().map(|&id| (id, 1)).collect::<Vec<_>>()
    );
    let again = store.advance_runs(&runs, &SCHED, now_us()).await.unwrap();
    assert_eq!(
        created(&again),
        runs.iter().map(|&id| (id, 0)).collect::<Vec<_>>()
    );
    for &id in &runs {
        let run = store.get_run(id).await.unwrap().unwrap();
        let per_step: Vec<(String, usize)> = run
            .steps
            .iter()
            .map(|s| (s.step_id.clone(), s.task_ids.len()))
            .collect();
        assert_eq!(per_step, vec![("a".to_string(), 1), ("b".to_string(), 1)]);
    }

    // The second steps finish: every run succeeds, and nothing more is created.
    let claimed = store.claim(a, 100, now_us(), TTL).await.unwrap().tasks;
    assert_eq!(claimed.len(), 5);
    let results: Vec<TaskResult> = claimed
        .iter()
        .map(|t| success(t.task_id, t.lease_token))
        .collect();
    assert_eq!(
        store.complete(a, &results, now_us()).await.unwrap().runs,
        runs
    );
    let done = store.advance_runs(&runs, &SCHED, now_us()).await.unwrap();
    assert_eq!(
        created(&done),
        runs.iter().map(|&id| (id, 0)).collect::<Vec<_>>()
    );
    assert!(done
        .iter()
        .all(|(_, a)| a.status == Some(RunStatus::Succeeded)));
    assert_eq!(store.stats().await.unwrap().succeeded, 10);
    assert_eq!(store.stats().await.unwrap().queued, 0);
    // The single-run call agrees, and a missing run is an error there.
    let one = store.advance_run(runs[0], &SCHED, now_us()).await.unwrap();
    assert_eq!(one.status, Some(RunStatus::Succeeded));
    assert!(store
        .advance_run(runs[4] + 1000, &SCHED, now_us())
        .await
        .is_err());
}

/// Uploads `yaml` as the workflow `name` and starts `n` runs of it (not
/// advanced yet).
async fn start_runs(store: &Store, name: &str, yaml: &str, n: usize) -> Vec<i64> {
    let def = drover_engine::workflow::parse_definition(yaml).unwrap();
    let json = serde_json::to_value(&def).unwrap();
    let (wf, _) = store
        .upload_workflow(name, &json, "digest", "test", now_us())
        .await
        .unwrap();
    let mut runs = Vec::new();
    for _ in 0..n {
        let (id, created) = store
            .start_run(&wf, &serde_json::Map::new(), "test", None, now_us())
            .await
            .unwrap();
        assert!(created);
        runs.push(id);
    }
    runs
}

/// Uploads a two-step chain (`a` then `b`, both of task type `t`) and
/// starts `n` runs of it (not advanced yet).
async fn start_pairs(store: &Store, n: usize) -> Vec<i64> {
    start_runs(
        store,
        "pair",
        "name: pair\nsteps:\n  - id: a\n    type: task\n    task_type: t\n  - id: b\n    type: task\n    task_type: t\n    depends_on: [a]\n",
        n,
    )
    .await
}

/// Reports one claimed task's success through `complete_and_advance`.
async fn succeed_and_advance(
    store: &Store,
    agent: i64,
    claimed: &drover_protocol::agent::Assignment,
) -> drover_engine::store::Recorded {
    store
        .complete_and_advance(
            agent,
            &[success(claimed.task_id, claimed.lease_token)],
            &SCHED,
            now_us(),
            None,
        )
        .await
        .unwrap()
}

/// [`start_pairs`], with the runs' first tasks created.
async fn pairs(store: &Store, n: usize) -> Vec<i64> {
    let runs = start_pairs(store, n).await;
    store.advance_runs(&runs, &SCHED, now_us()).await.unwrap();
    runs
}

async fn results_advance_their_runs_in_the_same_transaction(store: Store) {
    let runs = pairs(&store, 3).await;
    let a = register(&store, agent("a", 100, &["t"], &[])).await;
    let claimed = store.claim(a, 100, now_us(), TTL).await.unwrap().tasks;
    assert_eq!(claimed.len(), 3);
    let mut results: Vec<TaskResult> = claimed
        .iter()
        .map(|t| success(t.task_id, t.lease_token))
        .collect();
    // A stale result beside them changes nothing and advances nothing.
    results.push(success(claimed[0].task_id, claimed[0].lease_token + 7));
    let recorded = store
        .complete_and_advance(a, &results, &SCHED, now_us(), None)
        .await
        .unwrap();
    assert_eq!(
        recorded.completed.applied[..3],
        [Applied::Yes(TaskStatus::Succeeded); 3]
    );
    assert_eq!(recorded.completed.applied[3], Applied::Stale);
    assert_eq!(recorded.completed.runs, runs);
    assert_eq!(
        created(&recorded.advanced),
        runs.iter().map(|&id| (id, 1)).collect::<Vec<_>>()
    );
    assert!(
        recorded.left.is_empty(),
        "nothing left: {:?}",
        recorded.left
    );
    // The next steps are claimable at once, and the agent's slots are free.
    let next = store.claim(a, 100, now_us(), TTL).await.unwrap();
    assert_eq!(next.tasks.len(), 3);
    assert_eq!(next.running, 3);
    let results: Vec<TaskResult> = next
        .tasks
        .iter()
        .map(|t| success(t.task_id, t.lease_token))
        .collect();
    let done = store
        .complete_and_advance(a, &results, &SCHED, now_us(), None)
        .await
        .unwrap();
    assert!(done
        .advanced
        .iter()
        .all(|(_, a)| a.status == Some(RunStatus::Succeeded) && a.tasks_created == 0));
    assert_eq!(done.advanced.len(), 3);
    // Results of tasks outside any run advance nothing.
    let plain = store
        .submit(&[task("t", 1)], &SCHED, now_us())
        .await
        .unwrap();
    let claimed = store.claim(a, 100, now_us(), TTL).await.unwrap().tasks;
    assert_eq!(claimed[0].task_id, plain[0].id);
    let recorded = succeed_and_advance(&store, a, &claimed[0]).await;
    assert!(
        recorded.completed.runs.is_empty()
            && recorded.advanced.is_empty()
            && recorded.left.is_empty()
    );
}

/// Uploads `yaml` as a workflow and starts one run of it, advanced.
async fn start_one(store: &Store, name: &str, yaml: &str) -> i64 {
    let id = start_runs(store, name, yaml, 1).await[0];
    store.advance_runs(&[id], &SCHED, now_us()).await.unwrap();
    id
}

/// One batch fails a step for good (the run fails) and fails a parallel
/// step's task that has retries left: that task is not queued again for a
/// run that ended.
async fn a_run_failing_in_a_batch_cancels_the_retry_beside_it(store: Store) {
    let run = start_one(
        &store,
        "split",
        "name: split\nsteps:\n  - id: once\n    type: task\n    task_type: t\n    max_attempts: 1\n  - id: again\n    type: task\n    task_type: t\n    max_attempts: 5\n",
    )
    .await;
    let a = register(&store, agent("a", 10, &["t"], &[])).await;
    let claimed = store.claim(a, 10, now_us(), TTL).await.unwrap().tasks;
    assert_eq!(claimed.len(), 2);
    let results: Vec<TaskResult> = claimed
        .iter()
        .map(|t| failure(t.task_id, t.lease_token))
        .collect();
    let recorded = store
        .complete_and_advance(a, &results, &SCHED, now_us(), None)
        .await
        .unwrap();
    assert_eq!(recorded.completed.runs, vec![run]);
    assert_eq!(
        recorded.advanced,
        vec![(
            run,
            drover_engine::store::Advanced {
                tasks_created: 0,
                approvals_opened: 0,
                status: Some(RunStatus::Failed),
                follow_up: Vec::new(),
            }
        )]
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.queued, stats.running, stats.failed, stats.cancelled),
        (0, 0, 1, 1),
        "the retry was cancelled with its run"
    );
    assert!(store
        .claim(a, 10, now_us() + 3_600_000_000, TTL)
        .await
        .unwrap()
        .tasks
        .is_empty());
}

/// Every item of a `for_each` step finishes in one batch (in reverse
/// order): the step succeeds with the outputs in item order and the next
/// step gets them.
async fn a_fan_out_finished_in_one_batch_gathers_in_item_order(store: Store) {
    let run = start_one(
        &store,
        "fan",
        "name: fan\nsteps:\n  - id: each\n    type: task\n    task_type: t\n    for_each: \"[1, 2, 3]\"\n    payload: { n: \"{{ item }}\" }\n  - id: after\n    type: task\n    task_type: t\n    depends_on: [each]\n    payload: { got: \"{{ steps.each.output }}\" }\n",
    )
    .await;
    let a = register(&store, agent("a", 10, &["t"], &[])).await;
    let mut claimed = store.claim(a, 10, now_us(), TTL).await.unwrap().tasks;
    assert_eq!(claimed.len(), 3);
    claimed.sort_by_key(|t| std::cmp::Reverse(t.task_id));
    let results: Vec<TaskResult> = claimed
        .iter()
        .map(|t| TaskResult {
            outcome: Outcome::Succeeded {
                output: t.payload["n"].clone(),
            },
            ..success(t.task_id, t.lease_token)
        })
        .collect();
    let recorded = store
        .complete_and_advance(a, &results, &SCHED, now_us(), None)
        .await
        .unwrap();
    assert_eq!(created(&recorded.advanced), vec![(run, 1)]);
    let detail = store.get_run(run).await.unwrap().unwrap();
    let each = detail.steps.iter().find(|s| s.step_id == "each").unwrap();
    assert_eq!(each.output, Some(json!([1, 2, 3])));
    let next = store.claim(a, 10, now_us(), TTL).await.unwrap().tasks;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].payload, json!({ "got": [1, 2, 3] }));
}

async fn results_are_recorded_when_their_runs_cannot_advance(store: Store, guard: support::Guard) {
    let runs = pairs(&store, 1).await;
    let a = register(&store, agent("a", 100, &["t"], &[])).await;
    let claimed = store.claim(a, 100, now_us(), TTL).await.unwrap().tasks;
    // A definition that no longer parses makes the advance fail.
    let url = guard.database_url().unwrap();
    let corrupt = "UPDATE workflows SET definition = '{'";
    if url.starts_with("sqlite") {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(corrupt).execute(&mut c).await.unwrap();
    } else {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(corrupt).execute(&mut c).await.unwrap();
    }
    let recorded = succeed_and_advance(&store, a, &claimed[0]).await;
    assert_eq!(
        recorded.completed.applied,
        vec![Applied::Yes(TaskStatus::Succeeded)]
    );
    assert!(recorded.advanced.is_empty());
    assert_eq!(recorded.left, runs, "the run is left to the caller");
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.succeeded, stats.running),
        (1, 0),
        "the result counts, and its slot is free"
    );
    assert_eq!(store.claim(a, 100, now_us(), TTL).await.unwrap().running, 0);
}

/// PostgreSQL: a run whose row another transaction holds is not waited for
/// (that transaction may be waiting for the tasks this one holds); it is
/// left to the caller, and the results are recorded all the same.
#[tokio::test]
async fn postgres_results_leave_a_run_locked_elsewhere_to_the_caller() {
    use sqlx::{Connection, Executor};
    let (store, guard) = support::postgres().await;
    let runs = pairs(&store, 2).await;
    let a = register(&store, agent("a", 100, &["t"], &[])).await;
    let claimed = store.claim(a, 100, now_us(), TTL).await.unwrap().tasks;
    let mut other = sqlx::PgConnection::connect(&guard.database_url().unwrap())
        .await
        .unwrap();
    other.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT id FROM runs WHERE id = $1 FOR UPDATE")
        .bind(runs[0])
        .execute(&mut other)
        .await
        .unwrap();
    let results: Vec<TaskResult> = claimed
        .iter()
        .map(|t| success(t.task_id, t.lease_token))
        .collect();
    let recorded = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.complete_and_advance(a, &results, &SCHED, now_us(), None),
    )
    .await
    .expect("waited for the run another transaction holds")
    .unwrap();
    assert_eq!(recorded.completed.runs, runs);
    assert_eq!(recorded.left, vec![runs[0]]);
    assert_eq!(created(&recorded.advanced), vec![(runs[1], 1)]);
    other.execute("ROLLBACK").await.unwrap();
    // The caller advances the one left behind.
    let later = store
        .advance_runs(&recorded.left, &SCHED, now_us())
        .await
        .unwrap();
    assert_eq!(later[0].1.tasks_created, 1);
    assert_eq!(store.stats().await.unwrap().queued, 2);
}

/// PostgreSQL: a claim that finds nothing queued for its agents locks none
/// of their rows (so it writes nothing and waits for no one), and still
/// answers each agent's capacity and count; with work queued it does lock
/// them, and waits.
#[tokio::test]
async fn postgres_a_claim_with_nothing_queued_locks_no_agent() {
    use sqlx::{Connection, Executor};
    let (store, guard) = support::postgres().await;
    let a = register(&store, agent("a", 3, &["t"], &[])).await;
    store
        .submit(&[task("other", 1)], &SCHED, now_us())
        .await
        .unwrap();
    let mut other = sqlx::PgConnection::connect(&guard.database_url().unwrap())
        .await
        .unwrap();
    other.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT id FROM agents WHERE id = $1 FOR UPDATE")
        .bind(a)
        .execute(&mut other)
        .await
        .unwrap();
    let wait = std::time::Duration::from_secs(3);
    let empty = tokio::time::timeout(wait, store.claim_group(&[(a, 3)], now_us(), TTL))
        .await
        .expect("a claim with nothing to claim waited for the agent's row")
        .unwrap();
    assert!(empty[0].tasks.is_empty());
    assert_eq!(
        (empty[0].capacity, empty[0].running, empty[0].drain),
        (3, 0, false)
    );
    // With a task of its type queued, the claim needs the row.
    store
        .submit(&[task("t", 1)], &SCHED, now_us())
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(wait, store.claim_group(&[(a, 3)], now_us(), TTL))
            .await
            .is_err(),
        "a claim with work to hand out did not lock the agent"
    );
    other.execute("ROLLBACK").await.unwrap();
}

/// The pools do not ping a connection before every use, only one that sat
/// idle: connections the database dropped while idle (a restart, an
/// administrator) are replaced, and the next calls succeed.
#[tokio::test]
async fn postgres_connections_dropped_while_idle_are_replaced() {
    use sqlx::Connection;
    let (store, guard) = support::postgres().await;
    let a = register(&store, agent("a", 4, &["t"], &[])).await;
    let now = now_us();
    store.submit(&[task("t", 1)], &SCHED, now).await.unwrap();
    assert_eq!(store.claim(a, 4, now, TTL).await.unwrap().tasks.len(), 1);
    let url = guard.database_url().unwrap();
    let name = url.rsplit_once('/').unwrap().1.to_string();
    let mut admin = sqlx::PgConnection::connect(&support::admin_url())
        .await
        .unwrap();
    let dropped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()) t",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(dropped > 0, "the store had no open connection to drop");
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let id = store
        .submit(&[task("t", 1)], &SCHED, now_us())
        .await
        .unwrap()[0]
        .id;
    let claimed = store.claim(a, 4, now_us(), TTL).await.unwrap().tasks;
    assert_eq!(
        claimed.iter().map(|c| c.task_id).collect::<Vec<_>>(),
        vec![id]
    );
    assert_eq!(
        store
            .complete(a, &[success(id, claimed[0].lease_token)], now_us())
            .await
            .unwrap()
            .applied,
        vec![Applied::Yes(TaskStatus::Succeeded)]
    );
}

/// A run that is cancelled, or fails, takes its queued tasks with it; each
/// task's history says why.
async fn queued_tasks_of_an_ended_run_are_cancelled_with_an_event(store: Store) {
    let last_event = |store: &Store, id: i64| {
        let store = store.clone();
        async move {
            let t = store.get_task(id).await.unwrap().unwrap();
            let e = t.events.last().unwrap().clone();
            (t.task.status, e.kind, e.detail)
        }
    };
    // Cancelled: its first step's task is still queued.
    let runs = pairs(&store, 1).await;
    let queued = store.get_run(runs[0]).await.unwrap().unwrap().steps[0].task_ids[0];
    store.cancel_run(runs[0], "admin", now_us()).await.unwrap();
    assert_eq!(
        last_event(&store, queued).await,
        (
            TaskStatus::Cancelled,
            "cancelled".to_string(),
            Some("its run was cancelled".to_string())
        )
    );
    // Failed: one branch fails while the other's task waits in the queue.
    let yaml = "name: branches\nsteps:\n  - id: a\n    type: task\n    task_type: t\n    max_attempts: 1\n  - id: b\n    type: task\n    task_type: u\n";
    let runs = start_runs(&store, "branches", yaml, 1).await;
    store.advance_runs(&runs, &SCHED, now_us()).await.unwrap();
    let a = register(&store, agent("a", 1, &["t"], &[])).await;
    let claimed = store.claim(a, 1, now_us(), TTL).await.unwrap().tasks;
    let recorded = store
        .complete_and_advance(
            a,
            &[failure(claimed[0].task_id, claimed[0].lease_token)],
            &SCHED,
            now_us(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(recorded.advanced[0].1.status, Some(RunStatus::Failed));
    let run = store.get_run(runs[0]).await.unwrap().unwrap();
    let b = run
        .steps
        .iter()
        .find(|s| s.step_id == "b")
        .unwrap()
        .task_ids[0];
    assert_eq!(
        last_event(&store, b).await,
        (
            TaskStatus::Cancelled,
            "cancelled".to_string(),
            Some("its run ended".to_string())
        )
    );
}

/// Uploads `def` as stored JSON without validating it (a definition stored
/// before a limit existed), and starts one run of it, advanced.
async fn start_unvalidated(store: &Store, name: &str, def: serde_json::Value) -> i64 {
    let (wf, _) = store
        .upload_workflow(name, &def, name, "test", now_us())
        .await
        .unwrap();
    let (id, _) = store
        .start_run(&wf, &serde_json::Map::new(), "test", None, now_us())
        .await
        .unwrap();
    store.advance_runs(&[id], &SCHED, now_us()).await.unwrap();
    id
}

/// A definition stored before today's limits: a step whose task the parser
/// refuses fails its run with the reason (before, the run stayed `running`
/// for ever), a runaway template fails it too, and an approval timeout near
/// `i64::MAX` gets a deadline instead of an overflow. A good run advanced
/// beside a bad one is not held back.
async fn a_stored_definition_over_the_limits_fails_its_run_instead_of_hanging(store: Store) {
    let def = |steps: serde_json::Value| json!({ "name": "old", "steps": steps });
    let bad = start_unvalidated(
        &store,
        "attempts",
        def(json!([
            { "id": "a", "type": "task", "task_type": "t", "max_attempts": 1000 },
            { "id": "b", "type": "task", "task_type": "t" }
        ])),
    )
    .await;
    let run = store.get_run(bad).await.unwrap().unwrap();
    assert_eq!(run.run.status, RunStatus::Failed, "{run:?}");
    let error = run.run.error.clone().unwrap_or_default();
    assert!(
        error.contains("step \"a\"") && error.contains("max_attempts"),
        "{error}"
    );
    assert!(run.steps[0].task_ids.is_empty());
    // No task of the failed run is left to run.
    let queued = store
        .list_tasks(&drover_engine::store::TaskFilter {
            statuses: vec![TaskStatus::Queued],
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(queued.is_empty(), "{queued:?}");

    let looping = start_unvalidated(
        &store,
        "loops",
        def(json!([{ "id": "a", "type": "task", "task_type": "t",
            "payload": "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}" }])),
    )
    .await;
    let run = store.get_run(looping).await.unwrap().unwrap();
    assert_eq!(run.run.status, RunStatus::Failed, "{run:?}");

    let before = now_us();
    let gate = start_unvalidated(
        &store,
        "gate",
        def(
            json!([{ "id": "ok", "type": "approval", "approvers": { "roles": ["admin"] },
            "message": "go?", "timeout_ms": i64::MAX }]),
        ),
    )
    .await;
    let run = store.get_run(gate).await.unwrap().unwrap();
    assert_eq!(run.run.status, RunStatus::WaitingApproval, "{run:?}");
    let expires = run.approvals[0].expires_at_us.unwrap();
    let year_us = drover_protocol::limits::MAX_APPROVAL_TIMEOUT_MS * 1000;
    assert!(expires >= before + year_us && expires <= now_us() + year_us);

    // Advanced together, the good run moves and the bad one fails.
    let good_def = drover_engine::workflow::parse_definition(
        "name: good\nsteps:\n  - id: a\n    type: task\n    task_type: t\n",
    )
    .unwrap();
    let (good_wf, _) = store
        .upload_workflow(
            "good",
            &serde_json::to_value(&good_def).unwrap(),
            "good",
            "test",
            now_us(),
        )
        .await
        .unwrap();
    let (bad_wf, _) = store
        .upload_workflow(
            "attempts2",
            &def(json!([{ "id": "a", "type": "task", "task_type": "t", "timeout_ms": i64::MAX }])),
            "attempts2",
            "test",
            now_us(),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for wf in [&good_wf, &bad_wf] {
        let (id, _) = store
            .start_run(wf, &serde_json::Map::new(), "test", None, now_us())
            .await
            .unwrap();
        ids.push(id);
    }
    let advanced = store.advance_runs(&ids, &SCHED, now_us()).await.unwrap();
    assert_eq!(advanced.len(), 2, "{advanced:?}");
    assert_eq!(advanced[0].1.status, Some(RunStatus::Running));
    assert_eq!(advanced[0].1.tasks_created, 1);
    assert_eq!(advanced[1].1.status, Some(RunStatus::Failed));
}
