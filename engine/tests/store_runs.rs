//! Run, step and approval statements the main store suite does not reach,
//! on both backends: listing runs and approvals, deciding and expiring
//! approvals, retrying a failed step, and the task types agents declared.
//! The store suite is what checks each backend's SQL (docs/ARCHITECTURE.md).

use drover_engine::domain::AgentSpec;
use drover_engine::error::StoreError;
use drover_engine::store::{QueueStore, Registration, RunFilter, RunStore, WorkflowDefStore};
use drover_engine::Store;
use drover_protocol::agent::{Outcome, TaskResult};
use drover_protocol::workflow::{RunDetail, RunEventKind, RunStatus};

#[macro_use]
mod support;
use support::SCHED;

const NOW: i64 = 1_000_000_000;

both_backends!(
    approvals_are_listed_decided_and_expired,
    a_failed_step_is_retried,
    known_task_types_are_those_agents_declared,
    a_step_whose_task_no_agent_took_reads_as_queued,
    a_retried_step_keeps_its_first_failure_in_the_history,
    who_cancelled_a_run_and_who_decided_its_approval_are_kept,
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
    let running = store.retry_step(run, "a", "olga", NOW).await;
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

    let missing = store.retry_step(run, "nope", "olga", NOW + 3).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    store.retry_step(run, "a", "olga", NOW + 3).await.unwrap();
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
    let cancelled = store.retry_step(run, "a", "olga", NOW + 6).await;
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

/// Registers an agent for task type `t`; its id.
async fn agent_for_t(store: &Store) -> i64 {
    let spec = AgentSpec {
        name: "worker".into(),
        hostname: "host".into(),
        version: "test".into(),
        task_types: vec!["t".into()],
        labels: Vec::new(),
        capacity: 10,
    };
    let reg = Registration {
        spec: &spec,
        session_hash: "session-worker",
        key_hash: None,
        enrollment_id: None,
        resuming: &[],
    };
    store.register_agent(&reg, NOW).await.unwrap().agent_id
}

/// Claims the one queued task and reports `outcome` for it at `at`,
/// advancing its run.
async fn finish_one(store: &Store, agent: i64, outcome: Outcome, at: i64) {
    let claim = store.claim(agent, 10, at, 60_000_000).await.unwrap();
    assert_eq!(claim.tasks.len(), 1, "one task queued: {claim:?}");
    let task = &claim.tasks[0];
    let result = TaskResult {
        task_id: task.task_id,
        lease_token: task.lease_token,
        outcome,
        started_at_us: Some(at),
        finished_at_us: Some(at + 1),
    };
    let recorded = store
        .complete_and_advance(agent, &[result], &SCHED, at + 2, None)
        .await
        .unwrap();
    assert!(recorded.left.is_empty(), "{recorded:?}");
}

/// `(kind, step, generation)` of each event of the run, in order.
fn told(run: &RunDetail) -> Vec<(&'static str, Option<&str>, Option<i64>)> {
    run.events
        .iter()
        .map(|e| (e.kind.as_str(), e.step_id.as_deref(), e.generation))
        .collect()
}

/// The defect the run page showed: retrying a step rewrote the run's
/// history. The events keep it: the first failure with its error, the
/// compensation after it, who retried, then the retried step's success —
/// in the order it happened. A step the failed run never reached reads as
/// skipped, not pending.
async fn a_retried_step_keeps_its_first_failure_in_the_history(store: Store) {
    let yaml = "name: order\nsteps:\n  - id: charge\n    type: task\n    task_type: t\n    max_attempts: 1\n  - id: ship\n    type: task\n    task_type: t\n    depends_on: [charge]\n  - id: refund\n    type: task\n    task_type: t\n    on_failure_of: [charge]\n";
    let run = started(&store, "order", yaml, 1).await[0];
    let agent = agent_for_t(&store).await;
    let declined = Outcome::Failed {
        error: "card declined".into(),
        retryable: false,
    };
    finish_one(&store, agent, declined, NOW + 10).await;
    let ok = || Outcome::Succeeded {
        output: serde_json::json!("ok"),
    };
    finish_one(&store, agent, ok(), NOW + 20).await;
    let failed = store.get_run(run).await.unwrap().unwrap();
    assert_eq!(failed.run.status, RunStatus::Failed);
    let status = |run: &RunDetail, id: &str| {
        let step = run.steps.iter().find(|s| s.step_id == id).unwrap();
        step.status.clone()
    };
    assert_eq!(status(&failed, "ship"), "skipped", "never ran: {failed:?}");

    store
        .retry_step(run, "charge", "olga", NOW + 30)
        .await
        .unwrap();
    store.advance_run(run, &SCHED, NOW + 31).await.unwrap();
    finish_one(&store, agent, ok(), NOW + 40).await;
    finish_one(&store, agent, ok(), NOW + 50).await;
    let done = store.get_run(run).await.unwrap().unwrap();
    assert_eq!(done.run.status, RunStatus::Succeeded, "{done:?}");
    assert_eq!(status(&done, "ship"), "succeeded");
    assert_eq!(
        told(&done),
        vec![
            ("run_started", None, None),
            ("step_started", Some("charge"), Some(0)),
            ("step_failed", Some("charge"), Some(0)),
            ("compensation_started", Some("refund"), Some(0)),
            ("compensation_finished", Some("refund"), Some(0)),
            ("step_skipped", Some("ship"), Some(0)),
            ("run_finished", None, None),
            ("step_retried", Some("charge"), Some(1)),
            ("step_started", Some("charge"), Some(1)),
            ("step_succeeded", Some("charge"), Some(1)),
            ("step_started", Some("ship"), Some(0)),
            ("step_succeeded", Some("ship"), Some(0)),
            ("run_finished", None, None),
        ]
    );
    let e = &done.events;
    assert_eq!(e[0].actor.as_deref(), Some("ann"));
    assert_eq!(e[2].detail.as_deref(), Some("card declined"));
    assert_eq!(e[2].at_us, NOW + 12);
    assert_eq!(e[4].status.as_deref(), Some("succeeded"));
    assert!(
        e[5].detail.as_deref() == Some("the run failed before it ran"),
        "{:?}",
        e[5]
    );
    assert_eq!(
        (e[6].status.as_deref(), e[6].detail.as_deref()),
        (
            Some("failed"),
            Some("step \"charge\" failed: card declined")
        )
    );
    assert_eq!(
        (e[7].actor.as_deref(), e[7].at_us),
        (Some("olga"), NOW + 30)
    );
    assert_eq!(e[12].status.as_deref(), Some("succeeded"));
    assert!(
        e.windows(2)
            .all(|w| (w[0].at_us, w[0].seq) < (w[1].at_us, w[1].seq)),
        "in time order: {e:?}"
    );
    assert!(!done.events_truncated);

    // Every attempt of every generation, in claim order.
    let attempts: Vec<(&str, i64, &str)> = done
        .attempts
        .iter()
        .map(|a| (a.step_id.as_str(), a.generation, a.outcome.as_str()))
        .collect();
    assert_eq!(
        attempts,
        vec![
            ("charge", 0, "failed"),
            ("refund", 0, "succeeded"),
            ("charge", 1, "succeeded"),
            ("ship", 0, "succeeded"),
        ]
    );
    assert_eq!(
        (
            done.attempts[0].started_at_us,
            done.attempts[0].finished_at_us
        ),
        (Some(NOW + 10), Some(NOW + 11))
    );
    assert!(!done.attempts_truncated);
}

/// A cancel keeps who cancelled; an approval's decision who decided, how
/// and with what comment.
async fn who_cancelled_a_run_and_who_decided_its_approval_are_kept(store: Store) {
    let gate = "name: gate\nsteps:\n  - id: ok\n    type: approval\n    approvers: { roles: [admin] }\n    message: go?\n  - id: after\n    type: approval\n    depends_on: [ok]\n    approvers: { roles: [admin] }\n    message: again?\n";
    let runs = started(&store, "gate", gate, 2).await;
    let pending = store.list_approvals(Some("pending"), None).await.unwrap();
    let first = pending.iter().find(|a| a.view.run_id == runs[0]).unwrap();
    store
        .decide_approval(first.view.id, false, "bob", Some("too dear"), NOW + 5)
        .await
        .unwrap();
    store.advance_run(runs[0], &SCHED, NOW + 6).await.unwrap();
    let rejected = store.get_run(runs[0]).await.unwrap().unwrap();
    let decided = rejected
        .events
        .iter()
        .find(|e| e.kind == RunEventKind::ApprovalDecided)
        .unwrap();
    assert_eq!(
        (
            decided.step_id.as_deref(),
            decided.actor.as_deref(),
            decided.status.as_deref(),
            decided.detail.as_deref(),
            decided.at_us
        ),
        (
            Some("ok"),
            Some("bob"),
            Some("rejected"),
            Some("too dear"),
            NOW + 5
        )
    );
    assert_eq!(
        told(&rejected).last(),
        Some(&("run_finished", None, None)),
        "{:?}",
        rejected.events
    );

    store.cancel_run(runs[1], "olga", NOW + 7).await.unwrap();
    let cancelled = store.get_run(runs[1]).await.unwrap().unwrap();
    let last = cancelled.events.last().unwrap();
    assert_eq!(
        (last.kind, last.actor.as_deref(), last.at_us),
        (RunEventKind::RunCancelled, Some("olga"), NOW + 7)
    );
    assert_eq!(
        told(&cancelled),
        vec![
            ("run_started", None, None),
            ("step_started", Some("ok"), Some(0)),
            ("run_cancelled", None, None),
        ]
    );
}
