//! Finding tasks (`GET /api/v1/tasks`): every page reached through the
//! cursor, in id order and in claim order, with nothing skipped or twice;
//! text search by id, type and payload in any case; several statuses; a
//! time range; and totals that count the whole filter. Both backends.

use drover_engine::domain::TaskSpec;
use drover_engine::store::{QueueState, QueueStore, TaskFilter, COUNT_BOUND};
use drover_engine::Store;
use drover_protocol::api::{NewTask, TaskStatus};
use serde_json::json;

#[macro_use]
mod support;
use support::{submit_ids, SCHED};

both_backends!(
    pages_reach_every_task_once_in_id_and_claim_order,
    search_matches_ids_types_and_payloads_in_any_case,
    statuses_and_time_range_narrow_the_list_and_its_total,
    the_queue_splits_into_ready_scheduled_and_held,
    finished_after_lists_only_tasks_finished_in_the_window
);

const SECOND: i64 = 1_000_000;
/// A fixed clock: created times are what the test says they are.
const T0: i64 = 1_800_000_000 * SECOND;

fn task(task_type: &str, urgency: i64, payload: serde_json::Value) -> TaskSpec {
    TaskSpec::parse(
        NewTask {
            task_type: task_type.into(),
            urgency: Some(urgency),
            payload,
            ..Default::default()
        },
        &SCHED.weights,
        |_| true,
    )
    .unwrap()
}

async fn ids(store: &Store, filter: &TaskFilter) -> Vec<i64> {
    store
        .list_tasks(filter)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect()
}

/// Every page of `filter`, following the cursor as the API hands it out.
async fn all_pages(store: &Store, mut filter: TaskFilter) -> Vec<i64> {
    let mut seen = Vec::new();
    for _ in 0..1000 {
        let page = ids(store, &filter).await;
        let full = page.len() as i64 == filter.limit;
        seen.extend(&page);
        if !full {
            return seen;
        }
        filter.before_id = page.last().copied();
    }
    panic!("the cursor never reached the end");
}

async fn total(store: &Store, filter: &TaskFilter) -> i64 {
    let count = store.count_tasks(filter).await.unwrap();
    assert!(!count.more);
    count.total
}

async fn pages_reach_every_task_once_in_id_and_claim_order(store: Store) {
    // 23 tasks with urgencies that repeat, so equal ranks must be ordered
    // by id across a page boundary too.
    let specs: Vec<TaskSpec> = (0..23)
        .map(|i| task("t", (i * 7) % 5, json!({ "n": i })))
        .collect();
    let submitted = submit_ids(&store, &specs, T0).await;

    let newest_first: Vec<i64> = submitted.iter().rev().copied().collect();
    let by_id = TaskFilter {
        limit: 5,
        ..Default::default()
    };
    assert_eq!(all_pages(&store, by_id.clone()).await, newest_first);
    assert_eq!(total(&store, &by_id).await, 23);

    let queued = TaskFilter {
        statuses: vec![TaskStatus::Queued],
        limit: 1000,
        ..Default::default()
    };
    let claim_order = ids(&store, &queued).await;
    assert_eq!(claim_order.len(), 23);
    assert_ne!(claim_order, newest_first, "claim order is by rank, not id");
    for limit in [1, 4, 5, 22] {
        let paged = all_pages(
            &store,
            TaskFilter {
                limit,
                ..queued.clone()
            },
        )
        .await;
        assert_eq!(paged, claim_order, "pages of {limit}");
    }
    assert_eq!(total(&store, &queued).await, 23);
}

async fn search_matches_ids_types_and_payloads_in_any_case(store: Store) {
    let ids_of = submit_ids(
        &store,
        &[
            task("resize-image", 1, json!({ "path": "/photos/Cat.png" })),
            task("send-email", 1, json!({ "to": "ops@example.com" })),
            task(
                "send-sms",
                1,
                json!({ "to": "+4412345", "note": "100%_done" }),
            ),
        ],
        T0,
    )
    .await;
    let search = |text: &str| TaskFilter {
        text: Some(text.into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        ids(&store, &search("SEND")).await,
        vec![ids_of[2], ids_of[1]]
    );
    assert_eq!(ids(&store, &search("cat.PNG")).await, vec![ids_of[0]]);
    assert_eq!(total(&store, &search("example.com")).await, 1);
    // LIKE's wildcards are plain text here.
    assert_eq!(ids(&store, &search("%_")).await, vec![ids_of[2]]);
    assert!(ids(&store, &search("nothing like it")).await.is_empty());
    assert_eq!(total(&store, &search("nothing like it")).await, 0);
    // An id, with or without '#', finds that task (and any whose text
    // holds the digits).
    let id = ids_of[1];
    assert!(ids(&store, &search(&format!("#{id}"))).await.contains(&id));
    assert!(ids(&store, &search(&id.to_string())).await.contains(&id));
    // Search and an exact type together.
    let typed = TaskFilter {
        task_type: Some("send-sms".into()),
        ..search("send")
    };
    assert_eq!(ids(&store, &typed).await, vec![ids_of[2]]);
}

async fn statuses_and_time_range_narrow_the_list_and_its_total(store: Store) {
    let early = submit_ids(
        &store,
        &[task("t", 1, json!(1)), task("t", 1, json!(2))],
        T0,
    )
    .await;
    let late = submit_ids(&store, &[task("t", 1, json!(3))], T0 + 60 * SECOND).await;
    store.cancel_task(early[0], T0 + 61 * SECOND).await.unwrap();

    let of = |statuses: Vec<TaskStatus>| TaskFilter {
        statuses,
        limit: 100,
        ..Default::default()
    };
    let cancelled = of(vec![TaskStatus::Cancelled]);
    assert_eq!(ids(&store, &cancelled).await, vec![early[0]]);
    assert_eq!(total(&store, &cancelled).await, 1);
    // Several statuses list newest first, whatever the order asked.
    let both = of(vec![TaskStatus::Cancelled, TaskStatus::Queued]);
    assert_eq!(ids(&store, &both).await, vec![late[0], early[1], early[0]]);
    assert_eq!(total(&store, &both).await, 3);
    assert_eq!(total(&store, &of(vec![TaskStatus::Failed])).await, 0);

    let since = TaskFilter {
        created_after_us: Some(T0 + 30 * SECOND),
        ..of(vec![])
    };
    assert_eq!(ids(&store, &since).await, vec![late[0]]);
    assert_eq!(total(&store, &since).await, 1);
    let before = TaskFilter {
        created_before_us: Some(T0 + 60 * SECOND),
        ..of(vec![TaskStatus::Queued])
    };
    assert_eq!(ids(&store, &before).await, vec![early[1]]);
    assert_eq!(total(&store, &before).await, 1);
}

async fn the_queue_splits_into_ready_scheduled_and_held(store: Store) {
    let later = TaskSpec::parse(
        NewTask {
            task_type: "t".into(),
            run_after_us: Some(T0 + 3600 * SECOND),
            ..Default::default()
        },
        &SCHED.weights,
        |_| true,
    )
    .unwrap();
    let keyed = |urgency| {
        TaskSpec::parse(
            NewTask {
                task_type: "t".into(),
                urgency: Some(urgency),
                concurrency_key: Some("k".into()),
                concurrency_limit: Some(1),
                ..Default::default()
            },
            &SCHED.weights,
            |_| true,
        )
        .unwrap()
    };
    // Ready: a plain task and the first of key k; scheduled: the one
    // held for an hour; held: the second of key k.
    let sub = submit_ids(
        &store,
        &[task("t", 1, json!(1)), later, keyed(9), keyed(8)],
        T0,
    )
    .await;
    let state = |s: QueueState| TaskFilter {
        queue_state: Some(s),
        now_us: T0 + SECOND,
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        ids(&store, &state(QueueState::Ready)).await,
        vec![sub[2], sub[0]]
    );
    assert_eq!(
        ids(&store, &state(QueueState::Scheduled)).await,
        vec![sub[1]]
    );
    assert_eq!(ids(&store, &state(QueueState::Held)).await, vec![sub[3]]);
    for (s, n) in [
        (QueueState::Ready, 2),
        (QueueState::Scheduled, 1),
        (QueueState::Held, 1),
    ] {
        assert_eq!(total(&store, &state(s)).await, n, "{s:?}");
    }
    // An hour later the scheduled one is ready.
    let later_on = TaskFilter {
        now_us: T0 + 3601 * SECOND,
        ..state(QueueState::Ready)
    };
    assert_eq!(ids(&store, &later_on).await.len(), 3);
    // Paging the ready ones follows claim order too.
    let first = TaskFilter {
        limit: 1,
        ..state(QueueState::Ready)
    };
    let next = TaskFilter {
        before_id: Some(sub[2]),
        ..first.clone()
    };
    assert_eq!(ids(&store, &first).await, vec![sub[2]]);
    assert_eq!(ids(&store, &next).await, vec![sub[0]]);
}

async fn finished_after_lists_only_tasks_finished_in_the_window(store: Store) {
    let specs: Vec<TaskSpec> = (0..4).map(|i| task("t", 1, json!({ "n": i }))).collect();
    let sub = submit_ids(&store, &specs, T0).await;
    store.cancel_task(sub[0], T0 + 10 * SECOND).await.unwrap();
    store.cancel_task(sub[1], T0 + 20 * SECOND).await.unwrap();
    store.cancel_task(sub[2], T0 + 30 * SECOND).await.unwrap();
    let since = |t: i64| TaskFilter {
        finished_after_us: Some(t),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        ids(&store, &since(T0 + 20 * SECOND)).await,
        vec![sub[2], sub[1]]
    );
    assert_eq!(total(&store, &since(T0 + 20 * SECOND)).await, 2);
    assert_eq!(ids(&store, &since(T0)).await, vec![sub[2], sub[1], sub[0]]);
    assert!(ids(&store, &since(T0 + 31 * SECOND)).await.is_empty());
}

#[test]
fn the_count_bound_is_what_the_api_documents() {
    assert_eq!(COUNT_BOUND, 10_000);
}
