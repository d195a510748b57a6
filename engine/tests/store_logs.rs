//! Task logs on both backends: appends only by the lease holder while the
//! task runs, seqs without gaps, the bound with its note, the agent's drop
//! note, and reads after a seq or of the tail.

use drover_engine::domain::{AgentSpec, TaskSpec};
use drover_engine::logs::LogBatch;
use drover_engine::store::{Appended, LogRange, LogStore, QueueStore, Registration};
use drover_engine::time::now_us;
use drover_engine::Store;
use drover_protocol::agent::{Outcome, OutputLine, OutputStream, TaskResult};
use drover_protocol::api::{LogStream, NewTask, TaskLogPage, TaskStatus};
use serde_json::json;

#[macro_use]
mod support;
use support::SCHED;

const TTL: i64 = 30_000_000;
const BIG: i64 = 10_000;

both_backends!(
    the_holder_appends_in_order_and_others_are_refused,
    the_bound_keeps_the_newest_lines_and_one_note,
);

async fn register(store: &Store, name: &str) -> i64 {
    let spec = AgentSpec {
        name: name.into(),
        hostname: "host".into(),
        version: "test".into(),
        task_types: vec!["work".into()],
        labels: vec![],
        capacity: 4,
    };
    store
        .register_agent(
            &Registration {
                spec: &spec,
                session_hash: &format!("session-{name}"),
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

/// Submits `n` tasks and has `agent` claim them: (task id, lease token).
async fn running(store: &Store, agent: i64, n: usize) -> Vec<(i64, i64)> {
    let spec = TaskSpec::parse(
        NewTask {
            task_type: "work".into(),
            ..Default::default()
        },
        &SCHED.weights,
        |_| true,
    )
    .unwrap();
    store
        .submit(&vec![spec; n], &SCHED, now_us())
        .await
        .unwrap();
    let claim = store.claim(agent, n as i64, now_us(), TTL).await.unwrap();
    claim
        .tasks
        .iter()
        .map(|a| (a.task_id, a.lease_token))
        .collect()
}

fn batch(task_id: i64, lease_token: i64, lines: &[&str]) -> LogBatch {
    LogBatch {
        task_id,
        lease_token,
        dropped_by_agent: 0,
        lines: lines
            .iter()
            .enumerate()
            .map(|(i, l)| OutputLine {
                stream: if i % 2 == 0 {
                    OutputStream::Stdout
                } else {
                    OutputStream::Stderr
                },
                line: l.to_string(),
                at_us: 1_000 + i as i64,
            })
            .collect(),
    }
}

async fn page(store: &Store, task: i64, range: LogRange) -> TaskLogPage {
    store
        .task_log(task, range)
        .await
        .unwrap()
        .expect("the task")
}

fn all() -> LogRange {
    LogRange::After {
        after: -1,
        limit: 1_000,
    }
}

fn texts(page: &TaskLogPage) -> Vec<(i64, String)> {
    page.lines.iter().map(|l| (l.seq, l.line.clone())).collect()
}

async fn the_holder_appends_in_order_and_others_are_refused(store: Store) {
    let a = register(&store, "a").await;
    let b = register(&store, "b").await;
    let tasks = running(&store, a, 2).await;
    let ((t1, l1), (t2, l2)) = (tasks[0], tasks[1]);

    // Two tasks in one request, the higher id first: answers in request order.
    let answers = store
        .append_logs(
            a,
            &[batch(t2, l2, &["two"]), batch(t1, l1, &["one", "uno"])],
            BIG,
            now_us(),
        )
        .await
        .unwrap();
    assert_eq!(answers, [Appended::Yes, Appended::Yes]);
    let p = page(&store, t1, all()).await;
    assert_eq!(texts(&p), [(1, "one".into()), (2, "uno".into())]);
    assert_eq!(
        p.lines.iter().map(|l| l.stream).collect::<Vec<_>>(),
        [LogStream::Stdout, LogStream::Stderr]
    );
    assert_eq!(
        (p.status, p.last_seq, p.more, p.dropped),
        (TaskStatus::Running, 2, false, 0)
    );
    assert_eq!(p.lines[0].attempt, 1);
    assert_eq!(p.lines[0].at_us, 1_000);

    // Lines the agent dropped become a note in their place.
    let mut gap = batch(t1, l1, &["after the gap"]);
    gap.dropped_by_agent = 7;
    store.append_logs(a, &[gap], BIG, now_us()).await.unwrap();
    let p = page(
        &store,
        t1,
        LogRange::After {
            after: 2,
            limit: 10,
        },
    )
    .await;
    assert_eq!(p.lines.len(), 2);
    assert_eq!((p.lines[0].seq, p.lines[0].stream), (3, LogStream::Note));
    assert!(
        p.lines[0].line.contains("7 lines dropped by the agent"),
        "{:?}",
        p.lines[0]
    );
    assert_eq!(texts(&p)[1], (4, "after the gap".into()));

    // Someone else, a wrong lease, a task that does not exist: nothing written.
    let refused = store
        .append_logs(
            b,
            &[
                batch(t1, l1, &["not yours"]),
                batch(t2, l2 ^ 1, &["old lease"]),
            ],
            BIG,
            now_us(),
        )
        .await
        .unwrap();
    assert_eq!(refused, [Appended::NotHolder, Appended::Stale]);
    let unknown = store
        .append_logs(a, &[batch(999_999, 1, &["?"])], BIG, now_us())
        .await
        .unwrap();
    assert_eq!(unknown, [Appended::Stale]);

    // A finished task takes no more lines; its log stays.
    let done = TaskResult {
        task_id: t1,
        lease_token: l1,
        outcome: Outcome::Succeeded { output: json!(1) },
        started_at_us: None,
        finished_at_us: None,
    };
    store.complete(a, &[done], now_us()).await.unwrap();
    let late = store
        .append_logs(a, &[batch(t1, l1, &["too late"])], BIG, now_us())
        .await
        .unwrap();
    assert_eq!(late, [Appended::Stale]);
    let p = page(&store, t1, all()).await;
    assert_eq!(p.status, TaskStatus::Succeeded);
    assert_eq!(p.lines.len(), 4);

    // Paging, the tail, and a task nobody knows.
    let first = page(
        &store,
        t1,
        LogRange::After {
            after: -1,
            limit: 3,
        },
    )
    .await;
    assert_eq!(
        (first.lines.len(), first.more, first.last_seq),
        (3, true, 3)
    );
    let empty = page(&store, t1, LogRange::After { after: 4, limit: 3 }).await;
    assert_eq!(
        (empty.lines.len(), empty.more, empty.last_seq),
        (0, false, 4)
    );
    let tail = page(&store, t1, LogRange::Tail(2)).await;
    assert_eq!(tail.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(store.task_log(999_999, all()).await.unwrap().is_none());
    let other = page(&store, t2, all()).await;
    assert_eq!(texts(&other), [(1, "two".into())]);
}

async fn the_bound_keeps_the_newest_lines_and_one_note(store: Store) {
    let a = register(&store, "a").await;
    let (t, l) = running(&store, a, 1).await[0];
    let max = 5;
    let numbered = |from: usize, to: usize| -> Vec<String> {
        (from..=to).map(|i| format!("line {i}")).collect()
    };
    let append = |lines: Vec<String>| {
        let store = store.clone();
        async move {
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            store
                .append_logs(a, &[batch(t, l, &refs)], max, now_us())
                .await
                .unwrap()
        }
    };

    append(numbered(1, 4)).await;
    let p = page(&store, t, all()).await;
    assert_eq!(
        (p.lines.len(), p.dropped),
        (4, 0),
        "under the bound: all kept"
    );

    append(numbered(5, 7)).await;
    let p = page(&store, t, all()).await;
    assert_eq!(p.dropped, 2);
    assert_eq!((p.lines[0].seq, p.lines[0].stream), (0, LogStream::Note));
    assert!(
        p.lines[0].line.contains("2 earlier lines dropped"),
        "{}",
        p.lines[0].line
    );
    assert_eq!(
        p.lines[1..]
            .iter()
            .map(|l| l.line.clone())
            .collect::<Vec<_>>(),
        numbered(3, 7)
    );

    // A batch larger than the bound keeps its own end; the note is rewritten.
    append(numbered(8, 19)).await;
    let p = page(&store, t, all()).await;
    assert_eq!(p.dropped, 14);
    assert!(
        p.lines[0].line.contains("14 earlier lines dropped"),
        "{}",
        p.lines[0].line
    );
    assert_eq!(
        p.lines[1..]
            .iter()
            .map(|l| (l.seq, l.line.clone()))
            .collect::<Vec<_>>(),
        (15..=19)
            .map(|i| (i, format!("line {i}")))
            .collect::<Vec<_>>()
    );
    assert_eq!(p.last_seq, 19);
    // Followers past the note see only new lines.
    append(numbered(20, 20)).await;
    let p = page(
        &store,
        t,
        LogRange::After {
            after: 19,
            limit: 10,
        },
    )
    .await;
    assert_eq!(texts(&p), [(20, "line 20".into())]);
}
