//! The overview's figures over time (overview_history.rs, migration 0025):
//! finishes per bucket from the leader's slots and from the tasks after its
//! mark, first-claim waits sampled per bucket, queue depth samples by type,
//! the latest failures, and the pruning of old rows. Both backends.

use drover_engine::domain::{AgentSpec, TaskSpec};
use drover_engine::store::{OverviewHistoryStore, QueueStore, Registration, MARK_LAG_US};
use drover_engine::time::now_us;
use drover_engine::Store;
use drover_protocol::agent::{Outcome, TaskResult};
use drover_protocol::api::NewTask;
use serde_json::json;

#[macro_use]
mod support;
use support::{submit_ids, SCHED};

both_backends!(
    finishes_and_waits_land_in_their_buckets,
    depth_samples_keep_the_last_of_each_bucket_and_are_pruned
);

const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;

async fn agent(store: &Store, types: &[&str]) -> i64 {
    let spec = AgentSpec {
        name: "a".into(),
        hostname: "h".into(),
        version: "test".into(),
        task_types: types.iter().map(|t| t.to_string()).collect(),
        labels: vec![],
        capacity: 100,
    };
    store
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
        .agent_id
}

fn task(task_type: &str, run_after_us: Option<i64>) -> TaskSpec {
    TaskSpec::parse(
        NewTask {
            task_type: task_type.into(),
            run_after_us,
            ..Default::default()
        },
        &SCHED.weights,
        |_| true,
    )
    .unwrap()
}

async fn finish(
    store: &Store,
    agent: i64,
    task_id: i64,
    lease_token: i64,
    error: Option<&str>,
    at: i64,
) {
    let outcome = match error {
        None => Outcome::Succeeded { output: json!(1) },
        Some(e) => Outcome::Failed {
            error: e.into(),
            retryable: false,
        },
    };
    let result = TaskResult {
        task_id,
        lease_token,
        outcome,
        started_at_us: None,
        finished_at_us: None,
    };
    store.complete(agent, &[result], at).await.unwrap();
}

/// Claims one task at `at`: its id and lease.
async fn claim_one(store: &Store, agent: i64, at: i64) -> (i64, i64) {
    let c = store.claim(agent, 1, at, 300 * SECOND).await.unwrap();
    assert_eq!(c.tasks.len(), 1, "a task to claim at {at}");
    (c.tasks[0].task_id, c.tasks[0].lease_token)
}

async fn finishes_and_waits_land_in_their_buckets(store: Store) {
    let agent = agent(&store, &["t", "u"]).await;
    // An hour ago, on a minute's edge; buckets of a minute from there.
    let t0 = (now_us() / MINUTE - 60) * MINUTE;
    // The leader's first pass starts counting at the current slot.
    assert!(store
        .roll_finish_counts(t0 + MARK_LAG_US, 120)
        .await
        .unwrap());

    // Minute 0: three tasks wait 20 s; two succeed, one fails.
    submit_ids(
        &store,
        &[task("t", None), task("t", None), task("t", None)],
        t0,
    )
    .await;
    let long_error = "x".repeat(300);
    for (i, error) in [None, Some(long_error.as_str()), None]
        .into_iter()
        .enumerate()
    {
        let (id, lease) = claim_one(&store, agent, t0 + 20 * SECOND).await;
        finish(
            &store,
            agent,
            id,
            lease,
            error,
            t0 + (30 + i as i64) * SECOND,
        )
        .await;
    }
    // Minute 1: waits of 1 s and 10 s, and a task due at +100 s claimed at
    // +105 s: it waited 5 s (from when it was due, not from its submit).
    submit_ids(&store, &[task("u", None), task("u", None)], t0 + MINUTE).await;
    submit_ids(&store, &[task("u", Some(t0 + 100 * SECOND))], t0).await;
    let mut failed = Vec::new();
    for at in [61, 70, 105] {
        let (id, lease) = claim_one(&store, agent, t0 + at * SECOND).await;
        finish(
            &store,
            agent,
            id,
            lease,
            Some("boom"),
            t0 + (at + 5) * SECOND,
        )
        .await;
        failed.push(id);
    }

    let expected = vec![(2, 1), (0, 3), (0, 0)];
    // Before the leader counts them, the finishes are read from the tasks.
    let now = t0 + 150 * SECOND;
    assert_eq!(
        store.finish_series(t0, MINUTE, 3, now).await.unwrap(),
        expected
    );

    // The leader counts ten slots a pass, so a backlog takes passes.
    let later = t0 + 10 * MINUTE + MARK_LAG_US;
    let mut passes = 1;
    while !store.roll_finish_counts(later, 10).await.unwrap() {
        passes += 1;
        assert!(passes < 100, "the counts never caught up");
    }
    assert_eq!(passes, 12, "120 slots of 5 s, 10 a pass");
    // An hour on, the tasks after the mark are not read at all (the tail
    // is five minutes at most): these come from the leader's slots.
    let hour_on = t0 + 70 * MINUTE;
    assert_eq!(
        store.finish_series(t0, MINUTE, 3, hour_on).await.unwrap(),
        expected
    );
    // Buckets of two minutes sum the slots.
    assert_eq!(
        store
            .finish_series(t0, 2 * MINUTE, 2, hour_on)
            .await
            .unwrap(),
        vec![(2, 4), (0, 0)]
    );

    // Waits of first claims, sorted, per bucket; a bounded sample takes
    // the latest.
    let waits = store.wait_samples(t0, MINUTE, 3, 100).await.unwrap();
    assert_eq!(
        waits,
        vec![
            vec![20 * SECOND; 3],
            vec![SECOND, 5 * SECOND, 10 * SECOND],
            vec![]
        ]
    );
    let sampled = store.wait_samples(t0, MINUTE, 2, 2).await.unwrap();
    assert_eq!(sampled[1], vec![5 * SECOND, 10 * SECOND]);

    // The latest failures first, errors cut to 200 characters.
    let recent = store.recent_failures(3).await.unwrap();
    let ids: Vec<i64> = recent.iter().map(|f| f.id).collect();
    assert_eq!(ids, failed.iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(recent[0].task_type, "u");
    assert_eq!(recent[0].error.as_deref(), Some("boom"));
    assert_eq!(recent[0].finished_at_us, Some(t0 + 110 * SECOND));
    let all = store.recent_failures(10).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].error.as_ref().map(|e| e.len()), Some(200));

    // Slots older than the cut are pruned (minute 0's three finishes
    // share one slot); the later ones stay.
    assert_eq!(
        store
            .prune_overview_history(t0 + MINUTE, 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .prune_overview_history(t0 + MINUTE, 100)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.finish_series(t0, MINUTE, 3, hour_on).await.unwrap(),
        vec![(0, 0), (0, 3), (0, 0)]
    );
}

async fn depth_samples_keep_the_last_of_each_bucket_and_are_pruned(store: Store) {
    // It takes only `t`, so the claim below takes a `t`.
    let agent = agent(&store, &["t"]).await;
    let t0 = (now_us() / MINUTE - 60) * MINUTE;
    submit_ids(
        &store,
        &[
            task("t", None),
            task("t", None),
            task("t", None),
            task("u", None),
        ],
        t0,
    )
    .await;
    // A sample is a row per type and one for the total.
    assert_eq!(store.sample_queue_depth(t0 + SECOND, 20).await.unwrap(), 3);
    submit_ids(&store, &[task("t", None)], t0 + 2 * SECOND).await;
    assert_eq!(
        store.sample_queue_depth(t0 + 9 * SECOND, 20).await.unwrap(),
        3
    );
    // Minute 1: one task claimed, and only the busiest type kept.
    claim_one(&store, agent, t0 + MINUTE).await;
    assert_eq!(
        store.sample_queue_depth(t0 + 65 * SECOND, 1).await.unwrap(),
        2
    );

    let series = store.depth_series(t0, MINUTE, 3).await.unwrap();
    let sample =
        |pairs: &[(&str, i64)]| Some(pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect());
    assert_eq!(series[0], sample(&[("", 5), ("t", 4), ("u", 1)]));
    assert_eq!(series[1], sample(&[("", 4), ("t", 3)]));
    assert_eq!(series[2], None);

    // Samples before the cut go; the later one stays.
    assert_eq!(
        store.prune_overview_history(t0 + MINUTE, 4).await.unwrap(),
        4
    );
    assert_eq!(
        store
            .prune_overview_history(t0 + MINUTE, 100)
            .await
            .unwrap(),
        2
    );
    let series = store.depth_series(t0, MINUTE, 3).await.unwrap();
    assert_eq!(series[0], None);
    assert_eq!(series[1], sample(&[("", 4), ("t", 3)]));
}
