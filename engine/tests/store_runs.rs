//! Run, step and approval statements the main store suite does not reach,
//! on both backends: listing runs and approvals, deciding and expiring
//! approvals, retrying a failed step, and the task types agents declared.
//! The store suite is what checks each backend's SQL (docs/ARCHITECTURE.md).

use drover_engine::domain::AgentSpec;
use drover_engine::error::StoreError;
use drover_engine::store::{QueueStore, Registration, RunFilter, RunStore, WorkflowDefStore};
use drover_engine::Store;
use drover_protocol::workflow::RunStatus;

#[macro_use]
mod support;
use support::SCHED;

const NOW: i64 = 1_000_000_000;

both_backends!(
    approvals_are_listed_decided_and_expired,
    a_failed_step_is_retried,
    known_task_types_are_those_agents_declared,
    a_step_whose_task_no_agent_took_reads_as_queued,
);

/// Uploads `yaml` as workflow `name` and starts `n` runs, advanced.
async fn started(store: &Store, name: &str, yaml: &str, n: usize) -> Vec<i64> {
    let def = drover_engine::workflow::parse_definition(yaml).unwrap();
    let json = serde_json::to_value(&def).unwrap();
    let (wf, _) = store
        .upload_workflow(name, &json, name, "ann", NOW)
        .await
        .unwrap();
    let mut runs = Vec::new();
    for _ in 0..n {
        let (id, _) = store
            .start_run(&wf, &serde_json::Map::new(), "ann", None, NOW)
            .await
            .unwrap();
        runs.push(id);
    }
    store.advance_runs(&runs, &SCHED, NOW).await.unwrap();
    runs
}

async fn approvals_are_listed_decided_and_expired(store: Store) {
    let gate = "name: gate\nsteps:\n  - id: ok\n    type: approval\n    approvers: { roles: [admin] }\n    message: go?\n    timeout_ms: 1000\n    on_timeout: approve\n";
    let runs = started(&store, "gate", gate, 2).await;
    assert_eq!(store.active_runs().await.unwrap(), runs);
    let list = |statuses: Vec<RunStatus>, workflow: Option<&str>, limit: i64| RunFilter {
        statuses,
        workflow: workflow.map(str::to_string),
        limit,
        ..RunFilter::default()
    };
    let waiting = store
        .list_runs(&list(vec![RunStatus::WaitingApproval], Some("gate"), 10))
        .await
        .unwrap();
    assert_eq!(waiting.len(), 2);
    let counted = store
        .count_runs(&list(vec![RunStatus::WaitingApproval], Some("gate"), 10))
        .await
        .unwrap();
    assert_eq!((counted.total, counted.more), (2, false));
    assert!(store
        .list_runs(&list(vec![RunStatus::Running], None, 10))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_runs(&list(vec![], Some("other"), 10))
        .await
        .unwrap()
        .is_empty());
    // Found by a word of the workflow's name in another case, and paged.
    let found = RunFilter {
        text: Some("GAT".into()),
        ..list(vec![], None, 10)
    };
    assert_eq!(store.list_runs(&found).await.unwrap().len(), 2);
    let second_page = RunFilter {
        before_id: Some(runs[1]),
        ..list(vec![], None, 10)
    };
    let older: Vec<i64> = store
        .list_runs(&second_page)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(older, vec![runs[0]]);
    let newest_first: Vec<i64> = store
        .list_runs(&list(vec![], None, 1))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(newest_first, vec![runs[1]]);

    let pending = store.list_approvals(Some("pending"), None).await.unwrap();
    assert_eq!(pending.len(), 2);
    let first = pending
        .iter()
        .find(|a| a.view.run_id == runs[0])
        .unwrap()
        .view
        .id;
    let record = store.approval(first).await.unwrap().unwrap();
    assert_eq!(
        (record.view.step_id.as_str(), record.view.message.as_str()),
        ("ok", "go?")
    );
    assert_eq!(
        (record.allow_self, record.on_reject_continue),
        (false, false)
    );
    assert_eq!(store.approval(first + 100).await.unwrap(), None);

    assert_eq!(
        store
            .decide_approval(first, true, "olga", Some("fine"), NOW + 1)
            .await
            .unwrap(),
        runs[0]
    );
    let again = store
        .decide_approval(first, false, "olga", None, NOW + 2)
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let missing = store
        .decide_approval(first + 100, true, "olga", None, NOW + 2)
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    let done = store.advance_run(runs[0], &SCHED, NOW + 3).await.unwrap();
    assert_eq!(done.status, Some(RunStatus::Succeeded));

    // Not due yet, then past its timeout: decided by `on_timeout`.
    assert!(store
        .expire_approvals(NOW + 500_000)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.expire_approvals(NOW + 2_000_000).await.unwrap(),
        vec![runs[1]]
    );
    let all = store.list_approvals(None, None).await.unwrap();
    let expired = &all.iter().find(|a| a.view.run_id == runs[1]).unwrap().view;
    assert_eq!(
        (expired.status.as_str(), expired.decided_by.as_deref()),
        ("approved", Some("timeout"))
    );
    assert!(store
        .list_approvals(Some("pending"), None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.active_runs().await.unwrap(), vec![runs[1]]);
}

async fn a_failed_step_is_retried(store: Store) {
    let one = "name: one\nsteps:\n  - id: a\n    type: task\n    task_type: t\n";
    let run = started(&store, "one", one, 1).await[0];
    let task = store.get_run(run).await.unwrap().unwrap().steps[0].task_ids[0];
    let running = store.retry_step(run, "a", NOW).await;
    assert!(
        matches!(running, Err(StoreError::Conflict(_))),
        "{running:?}"
    );
    store.cancel_task(task, NOW + 1).await.unwrap();
    store.advance_run(run, &SCHED, NOW + 2).await.unwrap();
    let failed = store.get_run(run).await.unwrap().unwrap();
    assert_eq!(
        (failed.run.status, failed.steps[0].status.as_str()),
        (RunStatus::Failed, "failed")
    );

    let missing = store.retry_step(run, "nope", NOW + 3).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    store.retry_step(run, "a", NOW + 3).await.unwrap();
    let advanced = store.advance_run(run, &SCHED, NOW + 4).await.unwrap();
    assert_eq!(
        (advanced.tasks_created, advanced.status),
        (1, Some(RunStatus::Running))
    );
    let retried = store.get_run(run).await.unwrap().unwrap();
    assert_eq!(retried.steps[0].generation, 1);
    assert_eq!(retried.steps[0].task_ids.len(), 1);
    assert_ne!(retried.steps[0].task_ids[0], task);

    store.cancel_run(run, "admin", NOW + 5).await.unwrap();
    let cancelled = store.retry_step(run, "a", NOW + 6).await;
    assert!(
        matches!(cancelled, Err(StoreError::Conflict(_))),
        "{cancelled:?}"
    );
}

async fn known_task_types_are_those_agents_declared(store: Store) {
    assert!(store.known_task_types().await.unwrap().is_empty());
    for (name, types) in [("a", vec!["t", "b"]), ("b", vec!["t"])] {
        let spec = AgentSpec {
            name: name.into(),
            hostname: "host".into(),
            version: "test".into(),
            task_types: types.into_iter().map(String::from).collect(),
            labels: Vec::new(),
            capacity: 1,
        };
        let session = format!("session-{name}");
        let reg = Registration {
            spec: &spec,
            session_hash: &session,
            key_hash: None,
            enrollment_id: None,
            resuming: &[],
        };
        store.register_agent(&reg, NOW).await.unwrap();
    }
    assert_eq!(
        store.known_task_types().await.unwrap(),
        vec!["b".to_string(), "t".to_string()]
    );
}

/// A running step whose task is still queued is shown as queued, not
/// running; once an agent takes the task it reads as running.
async fn a_step_whose_task_no_agent_took_reads_as_queued(store: Store) {
    let yaml = "name: one\nsteps:\n  - id: only\n    type: task\n    task_type: t\n";
    let runs = started(&store, "one", yaml, 1).await;
    let step = |detail: drover_protocol::workflow::RunDetail| detail.steps[0].clone();
    let before = step(store.get_run(runs[0]).await.unwrap().unwrap());
    assert_eq!(before.status, "running");
    assert_eq!((before.tasks_queued, before.task_ids.len()), (1, 1));
    assert_eq!(before.shown_status(), "queued");

    let spec = AgentSpec {
        name: "a".into(),
        hostname: "host".into(),
        version: "test".into(),
        task_types: vec!["t".into()],
        labels: Vec::new(),
        capacity: 1,
    };
    let reg = Registration {
        spec: &spec,
        session_hash: "session-a",
        key_hash: None,
        enrollment_id: None,
        resuming: &[],
    };
    let agent = store.register_agent(&reg, NOW).await.unwrap().agent_id;
    let claim = store.claim(agent, 1, NOW, 60_000_000).await.unwrap();
    assert_eq!(claim.tasks.len(), 1);
    let after = step(store.get_run(runs[0]).await.unwrap().unwrap());
    assert_eq!(after.tasks_queued, 0);
    assert_eq!(after.shown_status(), "running");
}
