//! Outgoing notifications' statements on both backends: rules are written,
//! changed and deleted (failing their pending deliveries); events are read
//! in `(time, id)` order after a cursor, ties and all; a delivery is
//! written once per rule and event; a claim counts the attempt and only
//! the claim that made an attempt records its outcome.

use drover_engine::domain::{AgentSpec, PriorityWeights, Scheduling, TaskSpec};
use drover_engine::store::{
    Attempted, Cursor, DeliveryFilter, NewDelivery, NotificationRuleDef, NotificationStore,
    QueueStore, Registration,
};
use drover_engine::time::now_us;
use drover_engine::{Store, StoreError};
use drover_protocol::agent::{Outcome, TaskResult};
use drover_protocol::api::NewTask;
use drover_protocol::notification::NotificationEvent;
use serde_json::json;

#[macro_use]
mod support;

both_backends!(
    rules_are_written_changed_and_deleted,
    failed_tasks_and_silent_agents_are_read_in_order_after_a_cursor,
    a_delivery_is_written_once_and_recorded_only_by_its_claim,
);

const SCHED: Scheduling = Scheduling {
    weights: PriorityWeights {
        urgency: 1.0,
        time_sensitivity: 1.0,
        importance: 1.0,
    },
    aging_points_per_minute: 1.0,
    max_for_each_items: 100,
    type_limits: drover_engine::domain::NO_TYPE_LIMITS,
};

fn def(name: &str) -> NotificationRuleDef<'_> {
    NotificationRuleDef {
        name,
        events: r#"["task_failed"]"#.into(),
        workflow: None,
        task_type: Some("t"),
        url: "https://example.com/hook",
        enabled: true,
    }
}

fn delivery(rule_id: i64, key: &str) -> NewDelivery {
    NewDelivery {
        rule_id,
        rule_name: "ops".into(),
        event: "task_failed".into(),
        event_key: key.into(),
        event_at: 1,
        summary: "text".into(),
        payload: "{}".into(),
    }
}

async fn rules_are_written_changed_and_deleted(store: Store) {
    let t0 = now_us();
    let rule = store
        .create_notification_rule(&def("ops"), Some("s3cret"), Some("s3cr"), "admin", t0)
        .await
        .unwrap();
    assert_eq!(rule.events(), vec![NotificationEvent::TaskFailed]);
    assert_eq!((rule.enabled, rule.enabled_at), (true, t0));
    assert!(matches!(
        store
            .create_notification_rule(&def("ops"), None, None, "admin", t0)
            .await,
        Err(StoreError::Conflict(_))
    ));

    // Disabling keeps its start; enabling again starts it anew.
    let mut off = def("ops");
    off.enabled = false;
    let r = store
        .update_notification_rule(rule.id, &off, "admin", t0 + 10)
        .await
        .unwrap();
    assert_eq!(
        (r.enabled, r.enabled_at, r.updated_at),
        (false, t0, t0 + 10)
    );
    let r = store
        .update_notification_rule(rule.id, &def("ops-2"), "root", t0 + 20)
        .await
        .unwrap();
    assert_eq!((r.enabled, r.enabled_at), (true, t0 + 20));
    assert_eq!((r.name.as_str(), r.updated_by.as_str()), ("ops-2", "root"));
    assert_eq!(
        r.secret.as_deref(),
        Some("s3cret"),
        "a change keeps the secret"
    );

    let ids = store
        .enqueue_deliveries(&[delivery(rule.id, "a"), delivery(rule.id, "b")], None, t0)
        .await
        .unwrap();
    let claimed = store.claim_due_deliveries(t0, t0 + 1_000, 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .record_delivery(
            claimed[0].id,
            1,
            &Attempted::Delivered { status_code: 200 },
            t0,
        )
        .await
        .unwrap();
    store
        .delete_notification_rule(rule.id, t0 + 30)
        .await
        .unwrap();
    assert!(store.notification_rule(rule.id).await.unwrap().is_none());
    assert!(matches!(
        store.delete_notification_rule(rule.id, t0).await,
        Err(StoreError::NotFound)
    ));
    // The history stays: the delivered one as it was, the pending one failed.
    let left = store
        .deliveries(&DeliveryFilter {
            limit: 10,
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    let status_of = |id: i64| {
        left.iter()
            .find(|d| d.id == id)
            .map(|d| (d.status.clone(), d.last_error.clone()))
    };
    assert_eq!(status_of(ids[0]).unwrap().0, "delivered");
    assert_eq!(
        status_of(ids[1]).unwrap(),
        ("failed".into(), Some("its rule was deleted".into()))
    );
}

async fn register(store: &Store, name: &str) -> i64 {
    let spec = AgentSpec {
        name: name.into(),
        hostname: "host-1".into(),
        version: "test".into(),
        task_types: vec!["t".into(), "u".into()],
        labels: vec![],
        capacity: 100,
    };
    store
        .register_agent(
            &Registration {
                spec: &spec,
                session_hash: &format!("{name}-session"),
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

fn task(max_attempts: i64) -> TaskSpec {
    TaskSpec::parse(
        NewTask {
            task_type: "t".into(),
            payload: json!({}),
            max_attempts: Some(max_attempts),
            ..Default::default()
        },
        &SCHED.weights,
        |_| true,
    )
    .unwrap()
}

async fn failed_tasks_and_silent_agents_are_read_in_order_after_a_cursor(store: Store) {
    let agent = register(&store, "a").await;
    let t0 = now_us();
    // Five tasks that fail for good in one batch (one finish time: a tie
    // the cursor must break by id) and one that will be retried.
    let mut specs: Vec<TaskSpec> = (0..5).map(|_| task(1)).collect();
    specs.push(task(3));
    store.submit(&specs, &SCHED, t0).await.unwrap();
    let claim = store.claim(agent, 10, t0, 60_000_000).await.unwrap();
    let results: Vec<TaskResult> = claim
        .tasks
        .iter()
        .map(|a| TaskResult {
            task_id: a.task_id,
            lease_token: a.lease_token,
            outcome: Outcome::Failed {
                error: "disk on fire".into(),
                retryable: true,
            },
            started_at_us: None,
            finished_at_us: None,
        })
        .collect();
    let t1 = t0 + 1_000;
    store.complete(agent, &results, t1).await.unwrap();

    let kind = NotificationEvent::TaskFailed;
    let all = store
        .notification_events(kind, Cursor::default(), t1, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 5, "the task that will be retried is no event");
    assert!(all.iter().all(|e| e.at_us == t1
        && e.attempts == Some(1)
        && e.task_type.as_deref() == Some("t")
        && e.error.as_deref() == Some("disk on fire")));
    assert!(all.windows(2).all(|w| w[0].subject_id < w[1].subject_id));
    // Pages of two, after each page's last row, read each once.
    let mut seen = Vec::new();
    let mut after = Cursor::default();
    loop {
        let page = store.notification_events(kind, after, t1, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Cursor {
            at: last.at_us,
            id: last.subject_id,
        };
        seen.extend(page.iter().map(|e| e.subject_id));
    }
    assert_eq!(seen, all.iter().map(|e| e.subject_id).collect::<Vec<_>>());
    assert!(store
        .notification_events(kind, Cursor::default(), t1 - 1, 100)
        .await
        .unwrap()
        .is_empty());

    // The cursor moves with the deliveries, and never back.
    assert_eq!(store.notification_cursor(kind).await.unwrap(), None);
    let c = Cursor { at: t1, id: 7 };
    store
        .enqueue_deliveries(&[], Some((kind, c)), t1)
        .await
        .unwrap();
    store
        .enqueue_deliveries(&[], Some((kind, Cursor { at: t0, id: 99 })), t1)
        .await
        .unwrap();
    assert_eq!(store.notification_cursor(kind).await.unwrap(), Some(c));

    // An agent found silent is an event, with its task types.
    let sweep = store
        .mark_silent_agents_offline(t1 + 60_000_000, t1 + 70_000_000)
        .await
        .unwrap();
    assert_eq!(sweep.agents_offline, vec![agent]);
    let offline = store
        .notification_events(
            NotificationEvent::AgentOffline,
            Cursor::default(),
            t1 + 70_000_000,
            10,
        )
        .await
        .unwrap();
    assert_eq!(offline.len(), 1);
    assert_eq!(offline[0].at_us, t1 + 70_000_000);
    assert_eq!(offline[0].name.as_deref(), Some("a"));
    assert_eq!(offline[0].hostname.as_deref(), Some("host-1"));
    assert_eq!(offline[0].task_types, vec!["t", "u"]);
}

async fn a_delivery_is_written_once_and_recorded_only_by_its_claim(store: Store) {
    let t0 = now_us();
    let rule = store
        .create_notification_rule(&def("ops"), None, None, "admin", t0)
        .await
        .unwrap();
    let first = store
        .enqueue_deliveries(&[delivery(rule.id, "k")], None, t0)
        .await
        .unwrap();
    let again = store
        .enqueue_deliveries(&[delivery(rule.id, "k"), delivery(rule.id, "k2")], None, t0)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(again.len(), 1, "the same event again writes nothing");
    assert_eq!(store.next_delivery_due().await.unwrap(), Some(t0));

    // Claimed: the attempt counts, and it is leased until t0 + 100.
    let c1 = store.claim_due_deliveries(t0, t0 + 100, 10).await.unwrap();
    assert_eq!(c1.len(), 2);
    assert!(c1.iter().all(|d| d.attempts == 1 && d.status == "pending"));
    assert!(store
        .claim_due_deliveries(t0 + 50, t0 + 150, 10)
        .await
        .unwrap()
        .is_empty());
    let id = first[0];
    let retry = Attempted::Retry {
        next_at: t0 + 10,
        status_code: Some(500),
        error: "HTTP 500".into(),
    };
    assert!(store.record_delivery(id, 1, &retry, t0).await.unwrap());
    // The lease of the other one ran out (its server died): claimed again.
    let c2 = store
        .claim_due_deliveries(t0 + 200, t0 + 300, 10)
        .await
        .unwrap();
    assert_eq!(c2.len(), 2);
    let other = c2.iter().find(|d| d.id != id).unwrap();
    assert_eq!(other.attempts, 2);
    // The first claim's late record of it changes nothing.
    let done = Attempted::Delivered { status_code: 200 };
    assert!(!store
        .record_delivery(other.id, 1, &done, t0 + 200)
        .await
        .unwrap());
    assert!(store
        .record_delivery(other.id, 2, &done, t0 + 200)
        .await
        .unwrap());
    let gave_up = Attempted::GaveUp {
        status_code: Some(503),
        error: "HTTP 503".into(),
    };
    assert!(store
        .record_delivery(id, 2, &gave_up, t0 + 200)
        .await
        .unwrap());
    let d = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(
        (
            d.status.as_str(),
            d.attempts,
            d.last_status_code,
            d.next_attempt_at
        ),
        ("failed", 2, Some(503), None)
    );
    let o = store.delivery(other.id).await.unwrap().unwrap();
    assert_eq!(
        (o.status.as_str(), o.delivered_at, o.last_status_code),
        ("delivered", Some(t0 + 200), Some(200))
    );
    assert_eq!(store.next_delivery_due().await.unwrap(), None);
    let failed = store
        .deliveries(&DeliveryFilter {
            rule_id: Some(rule.id),
            status: Some("failed"),
            limit: 10,
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.iter().map(|d| d.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(store.prune_deliveries(t0 + 201).await.unwrap(), 2);
}
