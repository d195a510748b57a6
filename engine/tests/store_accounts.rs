//! The store's users, tokens, enrollment, workflow, overview and retry
//! statements, run on both backends: the store suite is what checks each
//! backend's SQL (see docs/ARCHITECTURE.md), so every statement runs here.
//! The shared statements number their parameters out of order (`$2` before
//! `$1`, `$1` twice), which SQLite must bind by number as PostgreSQL does.

use drover_engine::domain::TaskSpec;
use drover_engine::error::StoreError;
use drover_engine::store::{
    EnrollmentStore, NewEnrollment, NewToken, OverviewStore, QueueStore, TaskRetryStore,
    UserChange, UserStore, WorkflowDefStore,
};
use drover_engine::Store;
use drover_protocol::api::{NewTask, Role, TaskStatus};
use serde_json::json;

#[macro_use]
mod support;
use support::SCHED;

both_backends!(
    users_tokens_and_sessions,
    the_last_enabled_admin_stays,
    enrollment_tokens,
    workflow_versions,
    overview_and_retry,
);

async fn users_tokens_and_sessions(store: Store) {
    let now = 1_000_000;
    let ann = store
        .create_user("ann", Role::Operator, Some("hash"), now)
        .await
        .unwrap();
    assert_eq!(
        (ann.name.as_str(), ann.role, ann.created_at_us),
        ("ann", Role::Operator, now)
    );
    let again = store.create_user("ann", Role::Viewer, None, now).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");

    let token = NewToken {
        user_id: ann.id,
        token_hash: "h1",
        name: "ci",
        prefix: "drv_ab",
        expires_at_us: Some(now + 10),
        now_us: now,
    };
    let id = store.add_api_token(token).await.unwrap().expect("stored");
    assert_eq!(
        store.add_api_token(token).await.unwrap(),
        None,
        "same hash twice"
    );
    let listed = store.api_token(id).await.unwrap().expect("listed");
    assert_eq!(
        (listed.user_name.as_str(), listed.name.as_str()),
        ("ann", "ci")
    );
    assert_eq!(listed.expires_at_us, Some(now + 10));

    let found = store
        .user_by_token("h1", now + 1)
        .await
        .unwrap()
        .expect("live");
    assert_eq!(
        (found.user.id, found.token_id, found.last_used_at_us),
        (ann.id, id, None)
    );
    assert!(
        store.user_by_token("h1", now + 10).await.unwrap().is_none(),
        "expired"
    );
    store.touch_token(id, now + 2).await.unwrap();
    let found = store.user_by_token("h1", now + 3).await.unwrap().unwrap();
    assert_eq!(found.last_used_at_us, Some(now + 2));

    assert!(!store.token_revoked("h1").await.unwrap());
    assert!(store.revoke_api_token(id, now + 4).await.unwrap());
    assert!(
        !store.revoke_api_token(id, now + 5).await.unwrap(),
        "revoked before"
    );
    assert!(store.token_revoked("h1").await.unwrap());
    assert!(!store.token_revoked("unknown").await.unwrap());
    let mine = store.list_api_tokens(Some(ann.id)).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].revoked_at_us, Some(now + 4));
    assert!(store
        .list_api_tokens(Some(ann.id + 1))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.list_api_tokens(None).await.unwrap().len(), 1);

    store
        .start_session(ann.id, "s1", now + 100, now)
        .await
        .unwrap();
    assert!(store.user_by_token("s1", now + 1).await.unwrap().is_some());
    // A new session drops the expired ones.
    store
        .start_session(ann.id, "s2", now + 1000, now + 200)
        .await
        .unwrap();
    assert!(store.user_by_token("s1", now).await.unwrap().is_none());
    store.end_session("s2").await.unwrap();
    assert!(store
        .user_by_token("s2", now + 201)
        .await
        .unwrap()
        .is_none());

    let record = store.user_by_name("ann").await.unwrap().unwrap();
    assert_eq!(
        (record.password_hash.as_deref(), record.disabled),
        (Some("hash"), false)
    );
    store
        .start_session(ann.id, "s3", now + 1000, now)
        .await
        .unwrap();
    store.set_password(ann.id, "new").await.unwrap();
    assert!(
        store.user_by_token("s3", now).await.unwrap().is_none(),
        "sessions end"
    );
    let missing = store.set_password(ann.id + 100, "x").await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    let record = store.user_by_name("ann").await.unwrap().unwrap();
    assert_eq!(record.password_hash.as_deref(), Some("new"));
    assert!(store.user_by_name("nobody").await.unwrap().is_none());
}

async fn the_last_enabled_admin_stays(store: Store) {
    let root = store
        .create_user("root", Role::Admin, None, 1)
        .await
        .unwrap();
    let bob = store
        .create_user("bob", Role::Viewer, None, 1)
        .await
        .unwrap();
    let last = store
        .change_user(root.id, UserChange::Disabled(true), 2)
        .await;
    assert!(matches!(last, Err(StoreError::Conflict(_))), "{last:?}");
    store
        .change_user(bob.id, UserChange::Role(Role::Admin), 2)
        .await
        .unwrap();
    store
        .start_session(root.id, "root-s", 100, 2)
        .await
        .unwrap();
    store
        .change_user(root.id, UserChange::Disabled(true), 3)
        .await
        .unwrap();
    assert!(
        store.user_by_token("root-s", 4).await.unwrap().is_none(),
        "disabling ends sessions"
    );
    let users = store.list_users().await.unwrap();
    let names: Vec<_> = users
        .iter()
        .map(|u| (u.user.name.as_str(), u.user.role, u.disabled))
        .collect();
    assert_eq!(
        names,
        [("bob", Role::Admin, false), ("root", Role::Admin, true)]
    );
    let last = store
        .change_user(bob.id, UserChange::Role(Role::Viewer), 4)
        .await;
    assert!(matches!(last, Err(StoreError::Conflict(_))), "{last:?}");
    store
        .change_user(root.id, UserChange::Disabled(false), 5)
        .await
        .unwrap();
    store
        .change_user(bob.id, UserChange::Role(Role::Viewer), 6)
        .await
        .unwrap();
    let missing = store
        .change_user(bob.id + 100, UserChange::Disabled(true), 7)
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

async fn enrollment_tokens(store: Store) {
    let types = ["build".to_string()];
    let new = NewEnrollment {
        name: "ci",
        token_hash: "e1",
        prefix: "drv_e",
        task_types: Some(&types),
        labels: None,
        created_by: "ann",
        expires_at_us: Some(100),
    };
    let view = store.create_enrollment_token(&new, 10).await.unwrap();
    assert_eq!(
        (view.task_types.clone(), view.labels.clone()),
        (Some(vec!["build".into()]), None)
    );
    let twice = store.create_enrollment_token(&new, 11).await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    store.ensure_enrollment_token(&new, 12).await.unwrap();
    assert_eq!(
        store.usable_enrollment_token("e1", 50).await.unwrap(),
        Some(view.clone())
    );
    assert_eq!(
        store.usable_enrollment_token("e1", 100).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(store.adopt_unenrolled_agents("e1").await.unwrap(), 0);
    assert_eq!(
        store.revoke_enrollment_token(view.id, 20).await.unwrap(),
        Vec::<i64>::new()
    );
    let listed = store.list_enrollment_tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at_us, Some(20));
    assert_eq!(
        store.usable_enrollment_token("e1", 50).await.unwrap(),
        None,
        "revoked"
    );
    let missing = store.revoke_enrollment_token(view.id + 1, 21).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

async fn workflow_versions(store: Store) {
    assert_eq!(store.latest_workflow_id().await.unwrap(), 0);
    let def = json!({"description": "first", "steps": []});
    let (v1, new) = store
        .upload_workflow("wf", &def, "d1", "ann", 1)
        .await
        .unwrap();
    assert!(new);
    assert_eq!((v1.version, v1.description.as_deref()), (1, Some("first")));
    let (same, new) = store
        .upload_workflow("wf", &def, "d1", "ann", 2)
        .await
        .unwrap();
    assert!(!new);
    assert_eq!(same, v1);
    let (v2, _) = store
        .upload_workflow("wf", &json!({"steps": []}), "d2", "ann", 3)
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(store.latest_workflow_id().await.unwrap(), v2.id);
    assert_eq!(store.list_workflows().await.unwrap(), vec![v2.clone()]);
    assert_eq!(
        store.workflow_versions("wf").await.unwrap(),
        vec![v2.clone(), v1.clone()]
    );
    assert_eq!(store.workflow("wf", Some(1)).await.unwrap(), Some(v1));
    assert_eq!(store.workflow("wf", None).await.unwrap(), Some(v2));
    assert_eq!(store.workflow("other", None).await.unwrap(), None);
}

async fn overview_and_retry(store: Store) {
    let now = 10_000_000;
    let spec = TaskSpec::parse(
        NewTask {
            task_type: "t".into(),
            payload: json!({}),
            ..Default::default()
        },
        &SCHED.weights,
        |_| true,
    )
    .unwrap();
    let id = store.submit(&[spec], &SCHED, now).await.unwrap()[0].id;
    let counts = store.overview([f64::MIN, f64::MAX]).await.unwrap();
    assert_eq!(counts.queued_by_band, [0, 1, 0]);
    assert_eq!((counts.runs_running, counts.runs_waiting_approval), (0, 0));

    let queued = store.retry_task(id, &SCHED, now).await;
    assert!(matches!(queued, Err(StoreError::Conflict(_))), "{queued:?}");
    assert_eq!(
        store.cancel_task(id, now + 1).await.unwrap(),
        TaskStatus::Cancelled
    );
    let before = store.get_task(id).await.unwrap().unwrap().task;
    store.retry_task(id, &SCHED, now + 2).await.unwrap();
    let task = store.get_task(id).await.unwrap().unwrap().task;
    assert_eq!(
        (task.status, task.error, task.run_after_us),
        (TaskStatus::Queued, None, now + 2)
    );
    assert_eq!(task.max_attempts, before.attempts + before.max_attempts);
    let missing = store.retry_task(id + 1, &SCHED, now).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}
