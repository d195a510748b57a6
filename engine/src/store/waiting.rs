//! The queue ahead of a task, for "why is this task waiting?"
//! (`crate::explain`). One statement text serves both backends.
//!
//! The count walks the claim index (`rank DESC, id` over queued tasks) from
//! the top down to the task, and stops at a limit: a task far down a long
//! queue costs the limit, not the queue.

use super::keys::admitted_count;
use super::{Result, Store};
use crate::explain::{Ahead, KeyState};

#[allow(async_fn_in_trait)]
pub trait WaitingStore {
    /// The task's rank and the claimable queued tasks ranked before it
    /// (counted up to `limit`); `None` if it is not queued.
    async fn queue_ahead(
        &self,
        task_id: i64,
        task_type: &str,
        now_us: i64,
        limit: i64,
    ) -> Result<Option<(f64, Ahead)>>;
    /// A concurrency key's count, limit and some of the tasks holding it.
    async fn key_state(&self, key: &str) -> Result<Option<KeyState>>;
}

/// A key's admitted tasks and the limit its best held task is admitted
/// under (`keys.rs`); no row when nothing of the key is held.
const KEY: &str = concat!(
    "SELECT ",
    admitted_count!("$1"),
    ", h.concurrency_limit \
    FROM tasks h WHERE h.concurrency_key = $1 AND h.status = 'queued' AND h.held = 1 \
    ORDER BY h.rank DESC, h.id LIMIT 1"
);
/// Some of the tasks holding a key's slots, through `tasks_key_admitted`.
const HOLDERS: &str = "SELECT id FROM tasks WHERE concurrency_key = $1 \
    AND held = 0 AND status IN ('queued', 'running') ORDER BY id LIMIT $2";

const RANK: &str = "SELECT rank FROM tasks WHERE id = $1 AND status = 'queued'";
const AHEAD_PG: &str =
    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN task_type = $3 THEN 1 ELSE 0 END), 0) \
    FROM (SELECT task_type FROM tasks WHERE status = 'queued' AND held = 0 AND run_after <= $4 \
          AND rank >= $1 AND (rank > $1 OR id < $2) ORDER BY rank DESC, id LIMIT $5) a";
/// SQLite is told the index: left to choose, it walked every queued task
/// by status (23 ms with 100,000 queued).
const AHEAD_SQLITE: &str =
    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN task_type = $3 THEN 1 ELSE 0 END), 0) \
    FROM (SELECT task_type FROM tasks INDEXED BY tasks_claim WHERE status = 'queued' AND held = 0 \
          AND run_after <= $4 AND rank >= $1 AND (rank > $1 OR id < $2) ORDER BY rank DESC, id LIMIT $5) a";

macro_rules! waiting_store {
    ($store:ty, $read:ident, $ahead:expr) => {
        impl WaitingStore for $store {
            async fn queue_ahead(
                &self,
                task_id: i64,
                task_type: &str,
                now_us: i64,
                limit: i64,
            ) -> Result<Option<(f64, Ahead)>> {
                let rank: Option<f64> = sqlx::query_scalar(RANK)
                    .bind(task_id)
                    .fetch_optional(self.$read())
                    .await?;
                let Some(rank) = rank else { return Ok(None) };
                let (all, same_type): (i64, i64) = sqlx::query_as($ahead)
                    .bind(rank)
                    .bind(task_id)
                    .bind(task_type)
                    .bind(now_us)
                    .bind(limit)
                    .fetch_one(self.$read())
                    .await?;
                Ok(Some((
                    rank,
                    Ahead {
                        all,
                        same_type,
                        capped: all >= limit,
                    },
                )))
            }

            async fn key_state(&self, key: &str) -> Result<Option<KeyState>> {
                let counts: Option<(i64, Option<i64>)> = sqlx::query_as(KEY)
                    .bind(key)
                    .fetch_optional(self.$read())
                    .await?;
                let Some((admitted, limit)) = counts else {
                    return Ok(None);
                };
                let limit = limit.unwrap_or(1);
                let holders: Vec<i64> = sqlx::query_scalar(HOLDERS)
                    .bind(key)
                    .bind(drover_protocol::limits::KEY_HOLDERS_SHOWN)
                    .fetch_all(self.$read())
                    .await?;
                Ok(Some(KeyState {
                    key: key.to_string(),
                    limit,
                    admitted,
                    holders,
                }))
            }
        }
    };
}

waiting_store!(super::sqlite::SqliteStore, reader, AHEAD_SQLITE);
waiting_store!(super::postgres::PgStore, pool, AHEAD_PG);

delegate_to_backend!(WaitingStore {
    async fn queue_ahead(&self, task_id: i64, task_type: &str, now_us: i64, limit: i64) -> Result<Option<(f64, Ahead)>>;
    async fn key_state(&self, key: &str) -> Result<Option<KeyState>>;
});
