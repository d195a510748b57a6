//! Lists sorted by a column (`sort=` on `GET /api/v1/tasks` and `/runs`):
//! every order either way, ties by id, each page reached through the
//! cursor with nothing skipped or twice, and a sort in place of the queue's
//! claim order. Both backends.

use drover_engine::domain::TaskSpec;
use drover_engine::store::{
    QueueStore, RunFilter, RunSort, RunStore, Sort, SortColumn, TaskFilter, TaskSort,
    WorkflowDefStore,
};
use drover_engine::Store;
use drover_protocol::api::{NewTask, TaskStatus, TaskView};
use drover_protocol::workflow::RunSummary;
use serde_json::json;
use std::cmp::Ordering;

#[macro_use]
mod support;
use support::{submit_ids, SCHED};

both_backends!(
    tasks_sort_by_every_column_either_way_across_pages,
    runs_sort_by_every_column_either_way_across_pages
);

const NOW: i64 = 1_800_000_000_000_000;

fn task(task_type: &str, urgency: i64) -> TaskSpec {
    TaskSpec::parse(
        NewTask {
            task_type: task_type.into(),
            urgency: Some(urgency),
            payload: json!({}),
            ..Default::default()
        },
        &SCHED.weights,
        |_| true,
    )
    .unwrap()
}

/// `rows` ordered as the list must give them: by the column, ties by id,
/// both the same way.
fn expected<T>(
    rows: &[T],
    descending: bool,
    id: impl Fn(&T) -> i64,
    by: impl Fn(&T, &T) -> Ordering,
) -> Vec<i64> {
    let mut sorted: Vec<&T> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        let o = by(a, b).then(id(a).cmp(&id(b)));
        if descending {
            o.reverse()
        } else {
            o
        }
    });
    sorted.into_iter().map(id).collect()
}

async fn task_pages(store: &Store, mut filter: TaskFilter) -> Vec<i64> {
    let mut seen = Vec::new();
    loop {
        let page: Vec<i64> = store
            .list_tasks(&filter)
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        seen.extend(&page);
        if (page.len() as i64) < filter.limit {
            return seen;
        }
        filter.before_id = page.last().copied();
        assert!(seen.len() < 1000, "the cursor never reached the end");
    }
}

fn task_order(column: TaskSort) -> impl Fn(&TaskView, &TaskView) -> Ordering {
    move |a, b| match column {
        TaskSort::Id => a.id.cmp(&b.id),
        TaskSort::Type => a.task_type.cmp(&b.task_type),
        TaskSort::Status => a.status.as_str().cmp(b.status.as_str()),
        TaskSort::Priority => a.priority.total_cmp(&b.priority),
        TaskSort::Attempts => a.attempts.cmp(&b.attempts),
    }
}

async fn tasks_sort_by_every_column_either_way_across_pages(store: Store) {
    // Types and urgencies repeat, so ties fall across page boundaries.
    let specs: Vec<TaskSpec> = (0..17)
        .map(|i| task(["beta", "alpha", "gamma"][i % 3], (i as i64 * 7) % 4))
        .collect();
    let ids = submit_ids(&store, &specs, NOW).await;
    for id in [ids[1], ids[5], ids[9]] {
        store.cancel_task(id, NOW).await.unwrap();
    }
    let all = store
        .list_tasks(&TaskFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 17);
    for &column in TaskSort::ALL {
        for descending in [false, true] {
            let want = expected(&all, descending, |t| t.id, task_order(column));
            for limit in [1, 4, 17] {
                let filter = TaskFilter {
                    sort: Some(Sort { column, descending }),
                    limit,
                    ..Default::default()
                };
                assert_eq!(
                    task_pages(&store, filter).await,
                    want,
                    "{}{} in pages of {limit}",
                    if descending { "-" } else { "" },
                    column.word()
                );
            }
        }
    }
    // A sort replaces the queue's claim order, within the same filter.
    let queued: Vec<TaskView> = all
        .iter()
        .filter(|t| t.status == TaskStatus::Queued)
        .cloned()
        .collect();
    let filter = TaskFilter {
        statuses: vec![TaskStatus::Queued],
        sort: Some(Sort {
            column: TaskSort::Type,
            descending: false,
        }),
        limit: 5,
        ..Default::default()
    };
    assert_eq!(
        task_pages(&store, filter).await,
        expected(&queued, false, |t| t.id, task_order(TaskSort::Type))
    );
}

async fn run_pages(store: &Store, mut filter: RunFilter) -> Vec<i64> {
    let mut seen = Vec::new();
    loop {
        let page: Vec<i64> = store
            .list_runs(&filter)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        seen.extend(&page);
        if (page.len() as i64) < filter.limit {
            return seen;
        }
        filter.before_id = page.last().copied();
        assert!(seen.len() < 1000, "the cursor never reached the end");
    }
}

fn run_order(column: RunSort) -> impl Fn(&RunSummary, &RunSummary) -> Ordering {
    move |a, b| match column {
        RunSort::Id => a.id.cmp(&b.id),
        RunSort::Workflow => a.workflow.cmp(&b.workflow),
        RunSort::Status => a.status.as_str().cmp(b.status.as_str()),
        RunSort::StartedBy => a.started_by.cmp(&b.started_by),
    }
}

async fn runs_sort_by_every_column_either_way_across_pages(store: Store) {
    let mut versions = Vec::new();
    for name in ["beta", "alpha", "gamma"] {
        let yaml =
            format!("name: {name}\nsteps:\n  - id: s\n    type: task\n    task_type: echo\n");
        let def = drover_engine::workflow::parse_definition(&yaml).unwrap();
        let json = serde_json::to_value(&def).unwrap();
        let (wf, _) = store
            .upload_workflow(name, &json, name, "ann", NOW)
            .await
            .unwrap();
        versions.push(wf);
    }
    let mut runs = Vec::new();
    for i in 0..11 {
        let starter = ["zoe", "ann", "max"][i % 3];
        let (id, _) = store
            .start_run(
                &versions[(i * 2) % 3],
                &serde_json::Map::new(),
                starter,
                None,
                NOW,
            )
            .await
            .unwrap();
        runs.push(id);
    }
    for id in [runs[2], runs[7]] {
        store.cancel_run(id, "ann", NOW).await.unwrap();
    }
    let all = store
        .list_runs(&RunFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 11);
    for &column in RunSort::ALL {
        for descending in [false, true] {
            let want = expected(&all, descending, |r| r.id, run_order(column));
            for limit in [1, 3, 11] {
                let filter = RunFilter {
                    sort: Some(Sort { column, descending }),
                    limit,
                    ..Default::default()
                };
                assert_eq!(
                    run_pages(&store, filter).await,
                    want,
                    "{}{} in pages of {limit}",
                    if descending { "-" } else { "" },
                    column.word()
                );
            }
        }
    }
}
