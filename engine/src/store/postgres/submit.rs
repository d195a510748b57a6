//! Submits on PostgreSQL, with group commit: the tasks of concurrent
//! submit requests are inserted by one statement in one transaction
//! ([`Combiner`](crate::store::combine)), so a hundred clients that each
//! send one task cost a few commits, not a hundred.

use std::collections::HashMap;

use drover_protocol::api::{SubmittedTask, TaskStatus};
use sqlx::PgPool;

use super::notifier::Notifier;
use crate::store::combine::{Combiner, GroupCommit, Job};
use crate::store::keys::admitted_count;
use crate::store::plan::TaskRow;
use crate::store::rows::task_status;
use crate::store::Result;

/// One request's tasks, waiting for the combined insert.
#[derive(Clone, Debug)]
pub(super) struct Rows(pub(super) Vec<TaskRow>);

impl Job for Rows {
    fn rows(&self) -> usize {
        self.0.len()
    }
}

/// The insert's columns: PostgreSQL takes each as one array (`unnest`).
#[derive(Default)]
struct Columns {
    task_type: Vec<String>,
    payload: Vec<String>,
    urgency: Vec<i64>,
    time_sensitivity: Vec<i64>,
    importance: Vec<i64>,
    priority: Vec<f64>,
    rank: Vec<f64>,
    max_attempts: Vec<i64>,
    timeout_ms: Vec<i64>,
    backoff: Vec<i64>,
    labels: Vec<String>,
    key: Vec<Option<String>>,
    run_after: Vec<i64>,
    created_at: Vec<i64>,
    concurrency_key: Vec<Option<String>>,
    concurrency_limit: Vec<Option<i64>>,
}

impl FromIterator<TaskRow> for Columns {
    fn from_iter<I: IntoIterator<Item = TaskRow>>(rows: I) -> Self {
        let mut c = Self::default();
        for t in rows {
            c.task_type.push(t.task_type);
            c.payload.push(t.payload);
            c.urgency.push(t.urgency);
            c.time_sensitivity.push(t.time_sensitivity);
            c.importance.push(t.importance);
            c.priority.push(t.priority);
            c.rank.push(t.rank);
            c.max_attempts.push(t.max_attempts);
            c.timeout_ms.push(t.timeout_ms);
            c.backoff.push(t.retry_backoff_ms);
            c.labels.push(t.required_labels);
            c.key.push(t.idempotency_key);
            c.run_after.push(t.run_after);
            c.created_at.push(t.created_at);
            c.concurrency_key.push(t.concurrency_key);
            c.concurrency_limit.push(t.concurrency_limit);
        }
        c
    }
}

/// The submits' gathering task.
pub(super) fn combiner(
    settings: GroupCommit,
    pool: PgPool,
    notifier: Notifier,
) -> Combiner<Rows, Vec<SubmittedTask>> {
    // Two inserts at once: one commits while the next batch gathers. Each
    // is one statement, so more would only queue in the database.
    Combiner::start("submits", settings, 2, move |jobs| {
        let (pool, notifier) = (pool.clone(), notifier.clone());
        async move { insert(&pool, &notifier, jobs).await }
    })
}

/// Inserts the requests' tasks in one statement (one transaction) and
/// answers each request with its tasks, in order. Ids are drawn per input
/// in order (`ord`), so each input maps to its row whatever an idempotency
/// key skips; a key met twice, in one request or in two, makes one task.
async fn insert(
    pool: &PgPool,
    notifier: &Notifier,
    jobs: Vec<Rows>,
) -> Result<Vec<Vec<SubmittedTask>>> {
    let sizes: Vec<usize> = jobs.iter().map(Job::rows).collect();
    let all: Columns = jobs.into_iter().flat_map(|job| job.0).collect();
    // Keyed tasks are admitted as they arrive where their key's lock is
    // free (`store/keys.rs`); the rest arrive held, for the leader's pass.
    let mut keys: Vec<String> = all.concurrency_key.iter().flatten().cloned().collect();
    keys.sort();
    keys.dedup();
    // A deadlock (two inserts waiting on each other's idempotency keys, met
    // in different orders) is retried, as PostgreSQL asks.
    let mut tries = 0;
    let rows: Vec<(i64, bool)> = loop {
        tries += 1;
        let attempt = if keys.is_empty() {
            insert_rows(pool, &all, &[]).await
        } else {
            insert_keyed(pool, &all, &keys).await
        };
        match attempt {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("40P01") && tries < 5 => {
                tracing::warn!(tries, "submit insert deadlocked: retried");
            }
            other => break other?,
        }
    };
    // Inputs whose key was taken are answered with the task that has it.
    let taken: Vec<String> = rows
        .iter()
        .zip(&all.key)
        .filter(|((_, inserted), _)| !inserted)
        .filter_map(|(_, key)| key.clone())
        .collect();
    let existing = existing_tasks(pool, &taken).await?;
    let mut answers = Vec::with_capacity(sizes.len());
    let mut inputs = rows.iter().zip(&all.priority).zip(&all.key);
    for size in sizes {
        let mut answer = Vec::with_capacity(size);
        for ((&(id, inserted), &priority), key) in inputs.by_ref().take(size) {
            let task = if inserted {
                SubmittedTask {
                    id,
                    status: TaskStatus::Queued,
                    priority,
                    created: true,
                }
            } else {
                key.as_ref()
                    .and_then(|k| existing.get(k))
                    .cloned()
                    .ok_or_else(|| {
                        crate::error::StoreError::Config(
                            "a task skipped for its idempotency key was not found".into(),
                        )
                    })?
            };
            answer.push(task);
        }
        answers.push(answer);
    }
    // After the commit, through the notifier: a notice inside the
    // transaction is one more round trip, and holds the database-wide
    // notify lock through the commit's flush.
    if rows.iter().any(|&(_, inserted)| inserted) {
        notifier.notify(super::WORK_CHANNEL, super::instance_tag().to_string());
    }
    Ok(answers)
}

/// Inserts keyed tasks in a transaction that first takes the admission
/// locks of their keys it can, so the insert may admit them at once.
async fn insert_keyed(
    pool: &PgPool,
    all: &Columns,
    keys: &[String],
) -> sqlx::Result<Vec<(i64, bool)>> {
    let mut tx = pool.begin().await?;
    let locked = crate::store::keys::lock_keys_pg(&mut tx, keys).await?;
    let rows = insert_rows(&mut *tx, all, &locked).await?;
    tx.commit().await?;
    Ok(rows)
}

/// The insert, one statement. A keyed task of a key in `$17` (whose lock
/// this transaction holds; counted in this later statement, so it sees the
/// previous holder's commit) is admitted while its key has room: the limit
/// of the key's first task in the batch, less its admitted tasks, none
/// while the key has held tasks (they come first, by rank). The same rule
/// as SQLite's arrivals (`sqlite/keys.rs`). Every other keyed task arrives
/// held.
const INSERT: &str = concat!(
    "WITH v AS ( \
       SELECT u.*, row_number() OVER (PARTITION BY u.ckey ORDER BY u.ord) AS nth, \
         first_value(u.climit) OVER (PARTITION BY u.ckey ORDER BY u.ord) AS key_limit \
       FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::float8[], \
         $7::float8[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[], $12::text[], $13::bigint[], \
         $14::bigint[], $15::text[], $16::bigint[]) \
         WITH ORDINALITY AS u(task_type, payload, urgency, time_sensitivity, importance, priority, rank, \
              max_attempts, timeout_ms, backoff, labels, key, run_after, created_at, ckey, climit, ord)), \
     room AS MATERIALIZED ( \
       SELECT k.key, CASE WHEN EXISTS (SELECT 1 FROM tasks h WHERE h.status = 'queued' AND h.held = 1 \
           AND h.concurrency_key = k.key) THEN 0 \
         ELSE COALESCE((SELECT v.key_limit FROM v WHERE v.ckey = k.key LIMIT 1), 1) - ",
    admitted_count!("k.key"),
    " END AS n FROM unnest($17::text[]) AS k(key)), \
     ids AS MATERIALIZED (SELECT ord, nextval('tasks_id_seq') AS id FROM v ORDER BY ord), \
     ins AS ( \
       INSERT INTO tasks (id, task_type, payload, urgency, time_sensitivity, importance, priority, rank, status, \
         max_attempts, timeout_ms, retry_backoff_ms, required_labels, idempotency_key, run_after, created_at, updated_at, \
         concurrency_key, concurrency_limit, held) \
       SELECT ids.id, v.task_type, v.payload, v.urgency, v.time_sensitivity, v.importance, v.priority, v.rank, 'queued', \
         v.max_attempts, v.timeout_ms, v.backoff, \
         ARRAY(SELECT json_array_elements_text(v.labels::json)), v.key, v.run_after, v.created_at, v.created_at, \
         v.ckey, v.climit, \
         CASE WHEN v.ckey IS NULL THEN 0 \
              WHEN v.nth <= COALESCE((SELECT room.n FROM room WHERE room.key = v.ckey), 0) THEN 0 \
              ELSE 1 END \
       FROM v JOIN ids USING (ord) \
       ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id) \
     SELECT ids.id, ins.id IS NOT NULL FROM ids LEFT JOIN ins ON ins.id = ids.id ORDER BY ids.ord"
);

/// Runs [`INSERT`]; `locked` are the keys whose admission lock is held.
async fn insert_rows<'e>(
    db: impl sqlx::PgExecutor<'e>,
    all: &Columns,
    locked: &[String],
) -> sqlx::Result<Vec<(i64, bool)>> {
    sqlx::query_as(INSERT)
        .bind(&all.task_type)
        .bind(&all.payload)
        .bind(&all.urgency)
        .bind(&all.time_sensitivity)
        .bind(&all.importance)
        .bind(&all.priority)
        .bind(&all.rank)
        .bind(&all.max_attempts)
        .bind(&all.timeout_ms)
        .bind(&all.backoff)
        .bind(&all.labels)
        .bind(&all.key)
        .bind(&all.run_after)
        .bind(&all.created_at)
        .bind(&all.concurrency_key)
        .bind(&all.concurrency_limit)
        .bind(locked)
        .fetch_all(db)
        .await
}

/// The tasks that hold `keys`, by key.
async fn existing_tasks(pool: &PgPool, keys: &[String]) -> Result<HashMap<String, SubmittedTask>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64, String, f64)> = sqlx::query_as(
        "SELECT idempotency_key, id, status, priority FROM tasks WHERE idempotency_key = ANY($1)",
    )
    .bind(keys)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(key, id, status, priority)| {
            Ok((
                key,
                SubmittedTask {
                    id,
                    status: task_status(&status)?,
                    priority,
                    created: false,
                },
            ))
        })
        .collect()
}
