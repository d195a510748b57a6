//! Task counts by status stay exact while the finished tasks' count mark
//! moves (task_totals.rs): through finishes, a retry by hand and retention
//! deletes; and the queued list, read through the partial indexes of queued
//! tasks, keeps the claim order across held and unheld tasks. Both backends.

use std::collections::HashMap;

use drover_engine::domain::{AgentSpec, TaskSpec};
use drover_engine::store::{
    QueueStore, Registration, RetentionPolicy, RetentionStore, TaskFilter, TaskRetryStore,
    TaskTotalsStore, MARK_LAG_US,
};
use drover_engine::time::now_us;
use drover_engine::Store;
use drover_protocol::agent::{Outcome, TaskResult};
use drover_protocol::api::{NewTask, Stats, TaskStatus};
use serde_json::json;

#[macro_use]
mod support;
use support::{submit_ids, SCHED};

both_backends!(
    counts_stay_exact_as_the_mark_moves,
    queued_list_merges_held_and_unheld_tasks_in_claim_order
);

const SECOND: i64 = 1_000_000;

fn counts(s: &Stats) -> [i64; 5] {
    [s.queued, s.running, s.succeeded, s.failed, s.cancelled]
}

fn result(task_id: i64, lease_token: i64, ok: bool) -> TaskResult {
    TaskResult {
        task_id,
        lease_token,
        outcome: if ok {
            Outcome::Succeeded { output: json!(1) }
        } else {
            Outcome::Failed {
                error: "boom".into(),
                retryable: false,
            }
        },
        started_at_us: None,
        finished_at_us: None,
    }
}

/// Advances the mark in steps of `rows` until it has caught up with `now`,
/// checking the counts after every step; returns the steps taken.
async fn catch_up(store: &Store, now: i64, rows: i64, expect: [i64; 5]) -> usize {
    for step in 1..=100 {
        let done = store.advance_task_totals(now, rows).await.unwrap();
        assert_eq!(
            counts(&store.stats().await.unwrap()),
            expect,
            "after step {step} of {rows} rows"
        );
        if done {
            return step;
        }
    }
    panic!("the mark never caught up");
}

async fn counts_stay_exact_as_the_mark_moves(store: Store) {
    let spec = AgentSpec {
        name: "a".into(),
        hostname: "h".into(),
        version: "test".into(),
        task_types: vec!["t".into()],
        labels: vec![],
        capacity: 100,
    };
    let agent = store
        .register_agent(
            &Registration {
                spec: &spec,
                session_hash: "session",
                key_hash: None,
                enrollment_id: None,
                resuming: &[],
            },
            now_us(),
        )
        .await
        .unwrap()
        .agent_id;
    let now = now_us();
    let early = now - 3600 * SECOND;
    let task = TaskSpec::parse(
        NewTask {
            task_type: "t".into(),
            ..Default::default()
        },
        &SCHED.weights,
        |_| true,
    )
    .unwrap();
    let ids = submit_ids(&store, &vec![task; 8], early).await;
    // An hour ago, a second apart: five succeed, two fail, one is cancelled.
    let claimed = store.claim(agent, 7, early, 300 * SECOND).await.unwrap();
    for (i, c) in claimed.tasks.iter().enumerate() {
        let at = early + (i as i64 + 1) * SECOND;
        store
            .complete(agent, &[result(c.task_id, c.lease_token, i < 5)], at)
            .await
            .unwrap();
    }
    let queued = ids
        .iter()
        .find(|id| claimed.tasks.iter().all(|c| c.task_id != **id))
        .copied()
        .unwrap();
    store.cancel_task(queued, early + 8 * SECOND).await.unwrap();
    let all = [0, 0, 5, 2, 1];
    assert_eq!(counts(&store.stats().await.unwrap()), all);

    // The mark moves two tasks at a time, then catches up: exact throughout.
    assert!(catch_up(&store, now, 2, all).await >= 4);
    assert!(store.advance_task_totals(now, 2).await.unwrap());

    // A counted failure retried by hand is queued again, not failed.
    let failed = claimed.tasks[5].task_id;
    store.retry_task(failed, &SCHED, now).await.unwrap();
    assert_eq!(counts(&store.stats().await.unwrap()), [1, 0, 5, 1, 1]);
    let again = store.claim(agent, 1, now, 300 * SECOND).await.unwrap();
    assert_eq!(again.tasks[0].task_id, failed);
    store
        .complete(
            agent,
            &[result(failed, again.tasks[0].lease_token, true)],
            now,
        )
        .await
        .unwrap();
    let after_retry = [0, 0, 6, 1, 1];
    assert_eq!(counts(&store.stats().await.unwrap()), after_retry);
    // Counted once the mark passes its new finish, not twice.
    catch_up(&store, now + MARK_LAG_US + SECOND, 100_000, after_retry).await;

    // Retention deletes the tasks finished an hour ago (the retried one
    // finished just now and stays): they leave the totals.
    let policy = RetentionPolicy {
        default_us: 1800 * SECOND,
        by_type_us: HashMap::new(),
        audit_us: 365 * 86_400 * SECOND,
    };
    let batch = store.prune_tasks(&policy, 0, 100, now).await.unwrap();
    assert_eq!(batch.deleted, 7);
    assert_eq!(counts(&store.stats().await.unwrap()), [0, 0, 1, 0, 0]);
    catch_up(&store, now + 2 * MARK_LAG_US, 100_000, [0, 0, 1, 0, 0]).await;
}

fn spec(urgency: i64, key: Option<&str>) -> TaskSpec {
    TaskSpec::parse(
        NewTask {
            task_type: "t".into(),
            urgency: Some(urgency),
            concurrency_key: key.map(str::to_string),
            concurrency_limit: key.map(|_| 1),
            ..Default::default()
        },
        &SCHED.weights,
        |_| true,
    )
    .unwrap()
}

async fn queued(store: &Store, limit: i64) -> Vec<i64> {
    store
        .list_tasks(&TaskFilter {
            statuses: vec![TaskStatus::Queued],
            limit,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect()
}

async fn queued_list_merges_held_and_unheld_tasks_in_claim_order(store: Store) {
    let now = now_us();
    // Urgency 9 and 7 on key k (limit 1: the second is held), then 8, 5, 3
    // without a key; held or not, the list is in claim order.
    let ids = submit_ids(
        &store,
        &[
            spec(9, Some("k")),
            spec(7, Some("k")),
            spec(8, None),
            spec(5, None),
            spec(3, None),
        ],
        now,
    )
    .await;
    let held = store.get_task(ids[1]).await.unwrap().unwrap().task;
    assert!(held.held, "the second task of key k waits for its slot");
    let order = vec![ids[0], ids[2], ids[1], ids[3], ids[4]];
    assert_eq!(queued(&store, 10).await, order);
    assert_eq!(queued(&store, 3).await, order[..3].to_vec());
    assert_eq!(queued(&store, 1).await, order[..1].to_vec());
}
